//! Games and configs: every token reads them (`read`); only admins define what runs (`admin`):
//! create, change, delete.

use crate::api::ApiState;
use crate::auth::{Access, AdminScope, ReadScope};
use crate::extract::{ApiJson, ApiPath};
use crate::problem::ApiError;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use manman_core::config::{ConfigSpec, GameServerConfig};
use manman_core::game_server::{GameServer, NewGameServer};
use manman_core::id::{ConfigId, GameServerId};

#[utoipa::path(
    post,
    path = "/api/v1/games",
    operation_id = "create_game",
    tag = "catalogue",
    request_body = NewGameServer,
    responses(
        (status = 201, description = "created", body = GameServer),
        (status = 401, description = "no valid bearer token", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 403, description = "not an admin token: games and configs are defined by admins", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "a conflict; the detail says which", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, description = "a field fails validation (`errors` names it)", body = crate::problem::Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn create_game(
    _access: Access<AdminScope>,
    State(state): State<ApiState>,
    ApiJson(game): ApiJson<NewGameServer>,
) -> Result<(StatusCode, Json<GameServer>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(state.host.catalogue().create_game(&game).await?),
    ))
}

#[utoipa::path(
    get,
    path = "/api/v1/games",
    operation_id = "list_games",
    tag = "catalogue",
    responses(
        (status = 200, description = "every game", body = Vec<GameServer>),
        (status = 401, description = "no valid bearer token", body = crate::problem::Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn list_games(
    _access: Access<ReadScope>,
    State(state): State<ApiState>,
) -> Result<Json<Vec<GameServer>>, ApiError> {
    Ok(Json(state.host.catalogue().list_games().await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/games/{id}",
    operation_id = "get_game",
    tag = "catalogue",
    params(("id" = i64, Path, description = "the game")),
    responses(
        (status = 200, description = "the game", body = GameServer),
        (status = 401, description = "no valid bearer token", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "it does not exist", body = crate::problem::Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn get_game(
    _access: Access<ReadScope>,
    State(state): State<ApiState>,
    ApiPath(id): ApiPath<GameServerId>,
) -> Result<Json<GameServer>, ApiError> {
    Ok(Json(state.host.catalogue().get_game(id).await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/games/{id}/configs",
    operation_id = "create_config",
    tag = "catalogue",
    params(("id" = i64, Path, description = "the game")),
    request_body = ConfigSpec,
    responses(
        (status = 201, description = "created", body = GameServerConfig),
        (status = 401, description = "no valid bearer token", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 403, description = "not an admin token: games and configs are defined by admins", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "it does not exist", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "a conflict; the detail says which", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, description = "a field fails validation (`errors` names it)", body = crate::problem::Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn create_config(
    _access: Access<AdminScope>,
    State(state): State<ApiState>,
    ApiPath(game): ApiPath<GameServerId>,
    ApiJson(spec): ApiJson<ConfigSpec>,
) -> Result<(StatusCode, Json<GameServerConfig>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(state.host.catalogue().create_config(game, &spec).await?),
    ))
}

#[utoipa::path(
    get,
    path = "/api/v1/games/{id}/configs",
    operation_id = "list_game_configs",
    tag = "catalogue",
    params(("id" = i64, Path, description = "the game")),
    responses(
        (status = 200, description = "its configs", body = Vec<GameServerConfig>),
        (status = 401, description = "no valid bearer token", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "it does not exist", body = crate::problem::Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn list_game_configs(
    _access: Access<ReadScope>,
    State(state): State<ApiState>,
    ApiPath(game): ApiPath<GameServerId>,
) -> Result<Json<Vec<GameServerConfig>>, ApiError> {
    Ok(Json(state.host.catalogue().list_configs(Some(game)).await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/configs",
    operation_id = "list_configs",
    tag = "catalogue",
    responses(
        (status = 200, description = "every config", body = Vec<GameServerConfig>),
        (status = 401, description = "no valid bearer token", body = crate::problem::Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn list_configs(
    _access: Access<ReadScope>,
    State(state): State<ApiState>,
) -> Result<Json<Vec<GameServerConfig>>, ApiError> {
    Ok(Json(state.host.catalogue().list_configs(None).await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/configs/{id}",
    operation_id = "get_config",
    tag = "catalogue",
    params(("id" = i64, Path, description = "the config")),
    responses(
        (status = 200, description = "the config", body = GameServerConfig),
        (status = 401, description = "no valid bearer token", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "it does not exist", body = crate::problem::Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn get_config(
    _access: Access<ReadScope>,
    State(state): State<ApiState>,
    ApiPath(id): ApiPath<ConfigId>,
) -> Result<Json<GameServerConfig>, ApiError> {
    Ok(Json(state.host.catalogue().get_config(id).await?))
}

#[utoipa::path(
    put,
    path = "/api/v1/games/{id}",
    operation_id = "update_game",
    tag = "catalogue",
    params(("id" = i64, Path, description = "the game")),
    request_body = NewGameServer,
    responses(
        (status = 200, description = "updated", body = GameServer),
        (status = 401, description = "no valid bearer token", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 403, description = "not an admin token: games and configs are defined by admins", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "it does not exist", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "a conflict; the detail says which", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, description = "a field fails validation (`errors` names it)", body = crate::problem::Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn update_game(
    _access: Access<AdminScope>,
    State(state): State<ApiState>,
    ApiPath(id): ApiPath<GameServerId>,
    ApiJson(game): ApiJson<NewGameServer>,
) -> Result<Json<GameServer>, ApiError> {
    Ok(Json(state.host.catalogue().update_game(id, &game).await?))
}

/// `204` when deleted; `409` naming its configs while it has any.
#[utoipa::path(
    delete,
    path = "/api/v1/games/{id}",
    operation_id = "delete_game",
    tag = "catalogue",
    params(("id" = i64, Path, description = "the game")),
    responses(
        (status = 204, description = "deleted"),
        (status = 401, description = "no valid bearer token", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 403, description = "not an admin token: games and configs are defined by admins", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "it does not exist", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "it still has configs (named)", body = crate::problem::Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn delete_game(
    _access: Access<AdminScope>,
    State(state): State<ApiState>,
    ApiPath(id): ApiPath<GameServerId>,
) -> Result<StatusCode, ApiError> {
    state.host.catalogue().delete_game(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    put,
    path = "/api/v1/configs/{id}",
    operation_id = "update_config",
    tag = "catalogue",
    params(("id" = i64, Path, description = "the config")),
    request_body = ConfigSpec,
    responses(
        (status = 200, description = "updated; later starts use it", body = GameServerConfig),
        (status = 401, description = "no valid bearer token", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 403, description = "not an admin token: games and configs are defined by admins", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "it does not exist", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "a conflict; the detail says which", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, description = "a field fails validation (`errors` names it)", body = crate::problem::Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn update_config(
    _access: Access<AdminScope>,
    State(state): State<ApiState>,
    ApiPath(id): ApiPath<ConfigId>,
    ApiJson(spec): ApiJson<ConfigSpec>,
) -> Result<Json<GameServerConfig>, ApiError> {
    Ok(Json(state.host.catalogue().update_config(id, &spec).await?))
}

/// `204` when deleted (with its ended instances' records); `409` naming the active instances
/// while any is.
#[utoipa::path(
    delete,
    path = "/api/v1/configs/{id}",
    operation_id = "delete_config",
    tag = "catalogue",
    params(("id" = i64, Path, description = "the config")),
    responses(
        (status = 204, description = "deleted with its ended instances' records"),
        (status = 401, description = "no valid bearer token", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 403, description = "not an admin token: games and configs are defined by admins", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "it does not exist", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "an instance of it is active (named)", body = crate::problem::Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn delete_config(
    _access: Access<AdminScope>,
    State(state): State<ApiState>,
    ApiPath(id): ApiPath<ConfigId>,
) -> Result<StatusCode, ApiError> {
    state.host.catalogue().delete_config(id).await?;
    Ok(StatusCode::NO_CONTENT)
}
