//! Worker credentials (`admin`: create, list, revoke) and their exchange for a worker token
//! (`POST /api/v1/auth/token`, the one route a worker calls without a token).

use crate::api::ApiState;
use crate::auth::{Access, AdminScope};
use crate::extract::{ApiJson, ApiPath};
use crate::problem::ApiError;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use manman_client::{CreatedWorkerCredential, NewWorkerCredential, TokenRequest};
use manman_core::auth::WorkerCredential;
use manman_core::host::WorkerToken;

#[utoipa::path(
    post,
    path = "/api/v1/worker-credentials",
    operation_id = "create_worker_credential",
    tag = "tokens",
    request_body = NewWorkerCredential,
    responses(
        (status = 201, description = "created; the secret is shown this once", body = CreatedWorkerCredential),
        (status = 401, description = "no valid bearer token", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 403, description = "the token may not do this", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "a conflict; the detail says which", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, description = "a field fails validation (`errors` names it): `worker_name` follows the rules of worker names", body = crate::problem::Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn create(
    _access: Access<AdminScope>,
    State(state): State<ApiState>,
    ApiJson(new): ApiJson<NewWorkerCredential>,
) -> Result<(StatusCode, Json<CreatedWorkerCredential>), ApiError> {
    let (credential, secret) = state
        .auth
        .create_worker_credential(&new.worker_name)
        .await?;
    tracing::info!(client_id = %credential.client_id, worker = %credential.worker_name, "worker credentials created");
    Ok((
        StatusCode::CREATED,
        Json(CreatedWorkerCredential {
            credential,
            client_secret: secret.expose().to_owned(),
        }),
    ))
}

#[utoipa::path(
    get,
    path = "/api/v1/worker-credentials",
    operation_id = "list_worker_credentials",
    tag = "tokens",
    responses(
        (status = 200, description = "every credential, never a secret", body = Vec<WorkerCredential>),
        (status = 401, description = "no valid bearer token", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 403, description = "the token may not do this", body = crate::problem::Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn list(
    _access: Access<AdminScope>,
    State(state): State<ApiState>,
) -> Result<Json<Vec<WorkerCredential>>, ApiError> {
    Ok(Json(state.auth.list_worker_credentials().await?))
}

#[utoipa::path(
    delete,
    path = "/api/v1/worker-credentials/{client_id}",
    operation_id = "revoke_worker_credential",
    tag = "tokens",
    params(("client_id" = String, Path, description = "the client id")),
    responses(
        (status = 200, description = "revoked", body = WorkerCredential),
        (status = 401, description = "no valid bearer token", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 403, description = "the token may not do this", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "it does not exist", body = crate::problem::Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn revoke(
    _access: Access<AdminScope>,
    State(state): State<ApiState>,
    ApiPath(client_id): ApiPath<String>,
) -> Result<Json<WorkerCredential>, ApiError> {
    let credential = state.auth.revoke_worker_credential(&client_id).await?;
    tracing::info!(client_id = %credential.client_id, "worker credentials revoked");
    Ok(Json(credential))
}

#[utoipa::path(
    post,
    path = "/api/v1/auth/token",
    operation_id = "exchange_worker_token",
    tag = "tokens",
    request_body = TokenRequest,
    responses(
        (status = 200, description = "a worker token", body = WorkerToken),
        (status = 401, description = "unknown client id, wrong secret or revoked credentials", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, description = "a field fails validation (`errors` names it)", body = crate::problem::Problem, content_type = "application/problem+json")
    ),
)]
pub(crate) async fn exchange(
    State(state): State<ApiState>,
    ApiJson(request): ApiJson<TokenRequest>,
) -> Result<Json<WorkerToken>, ApiError> {
    Ok(Json(
        state
            .auth
            .exchange(&request.client_id, &request.client_secret)
            .await?,
    ))
}
