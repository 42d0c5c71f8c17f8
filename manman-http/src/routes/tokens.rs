//! Operator tokens (`admin`): create (the secret is shown once), list, revoke (never the last
//! unrevoked admin token).

use crate::api::ApiState;
use crate::auth::{Access, AdminScope};
use crate::extract::{ApiJson, ApiPath};
use crate::problem::ApiError;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use manman_client::{CreatedToken, NewToken};
use manman_core::auth::ApiToken;
use manman_core::id::TokenId;

#[utoipa::path(
    post,
    path = "/api/v1/tokens",
    operation_id = "create_token",
    tag = "tokens",
    request_body = NewToken,
    responses(
        (status = 201, description = "created; the secret is shown this once", body = CreatedToken),
        (status = 401, description = "no valid bearer token", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 403, description = "the token may not do this", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "a conflict; the detail says which", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, description = "a field fails validation (`errors` names it): the name follows the rules of worker names", body = crate::problem::Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn create(
    _access: Access<AdminScope>,
    State(state): State<ApiState>,
    ApiJson(new): ApiJson<NewToken>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    let (token, secret) = state.auth.create_token(&new.name, new.scope).await?;
    tracing::info!(token = %token.name, scope = %token.scope, "token created");
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            token,
            secret: secret.expose().to_owned(),
        }),
    ))
}

#[utoipa::path(
    get,
    path = "/api/v1/tokens",
    operation_id = "list_tokens",
    tag = "tokens",
    responses(
        (status = 200, description = "every token, never a secret", body = Vec<ApiToken>),
        (status = 401, description = "no valid bearer token", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 403, description = "the token may not do this", body = crate::problem::Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn list(
    _access: Access<AdminScope>,
    State(state): State<ApiState>,
) -> Result<Json<Vec<ApiToken>>, ApiError> {
    Ok(Json(state.auth.list_tokens().await?))
}

#[utoipa::path(
    delete,
    path = "/api/v1/tokens/{id}",
    operation_id = "revoke_token",
    tag = "tokens",
    params(("id" = i64, Path, description = "the token")),
    responses(
        (status = 200, description = "revoked", body = ApiToken),
        (status = 401, description = "no valid bearer token", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 403, description = "the token may not do this", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "it does not exist", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "it is the last unrevoked admin token: create another admin token first", body = crate::problem::Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn revoke(
    _access: Access<AdminScope>,
    State(state): State<ApiState>,
    ApiPath(id): ApiPath<TokenId>,
) -> Result<Json<ApiToken>, ApiError> {
    let token = state.auth.revoke_token(id).await?;
    tracing::info!(token = %token.name, "token revoked");
    Ok(Json(token))
}
