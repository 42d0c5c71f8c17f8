//! Games and configs.

use crate::api::ApiState;
use crate::auth::{Access, OperateScope, ReadScope};
use crate::extract::{ApiJson, ApiPath};
use crate::problem::ApiError;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use manman_core::config::{ConfigSpec, GameServerConfig};
use manman_core::game_server::{GameServer, NewGameServer};
use manman_core::id::{ConfigId, GameServerId};

pub(crate) async fn create_game(
    _access: Access<OperateScope>,
    State(state): State<ApiState>,
    ApiJson(game): ApiJson<NewGameServer>,
) -> Result<(StatusCode, Json<GameServer>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(state.host.create_game(&game).await?),
    ))
}

pub(crate) async fn list_games(
    _access: Access<ReadScope>,
    State(state): State<ApiState>,
) -> Result<Json<Vec<GameServer>>, ApiError> {
    Ok(Json(state.host.list_games().await?))
}

pub(crate) async fn get_game(
    _access: Access<ReadScope>,
    State(state): State<ApiState>,
    ApiPath(id): ApiPath<GameServerId>,
) -> Result<Json<GameServer>, ApiError> {
    Ok(Json(state.host.get_game(id).await?))
}

pub(crate) async fn create_config(
    _access: Access<OperateScope>,
    State(state): State<ApiState>,
    ApiPath(game): ApiPath<GameServerId>,
    ApiJson(spec): ApiJson<ConfigSpec>,
) -> Result<(StatusCode, Json<GameServerConfig>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(state.host.create_config(game, &spec).await?),
    ))
}

pub(crate) async fn list_game_configs(
    _access: Access<ReadScope>,
    State(state): State<ApiState>,
    ApiPath(game): ApiPath<GameServerId>,
) -> Result<Json<Vec<GameServerConfig>>, ApiError> {
    Ok(Json(state.host.list_configs(Some(game)).await?))
}

pub(crate) async fn list_configs(
    _access: Access<ReadScope>,
    State(state): State<ApiState>,
) -> Result<Json<Vec<GameServerConfig>>, ApiError> {
    Ok(Json(state.host.list_configs(None).await?))
}

pub(crate) async fn get_config(
    _access: Access<ReadScope>,
    State(state): State<ApiState>,
    ApiPath(id): ApiPath<ConfigId>,
) -> Result<Json<GameServerConfig>, ApiError> {
    Ok(Json(state.host.get_config(id).await?))
}

pub(crate) async fn update_game(
    _access: Access<OperateScope>,
    State(state): State<ApiState>,
    ApiPath(id): ApiPath<GameServerId>,
    ApiJson(game): ApiJson<NewGameServer>,
) -> Result<Json<GameServer>, ApiError> {
    Ok(Json(state.host.update_game(id, &game).await?))
}

/// `204` when deleted; `409` naming its configs while it has any.
pub(crate) async fn delete_game(
    _access: Access<OperateScope>,
    State(state): State<ApiState>,
    ApiPath(id): ApiPath<GameServerId>,
) -> Result<StatusCode, ApiError> {
    state.host.delete_game(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn update_config(
    _access: Access<OperateScope>,
    State(state): State<ApiState>,
    ApiPath(id): ApiPath<ConfigId>,
    ApiJson(spec): ApiJson<ConfigSpec>,
) -> Result<Json<GameServerConfig>, ApiError> {
    Ok(Json(state.host.update_config(id, &spec).await?))
}

/// `204` when deleted (with its ended instances' records); `409` naming the active instances
/// while any is.
pub(crate) async fn delete_config(
    _access: Access<OperateScope>,
    State(state): State<ApiState>,
    ApiPath(id): ApiPath<ConfigId>,
) -> Result<StatusCode, ApiError> {
    state.host.delete_config(id).await?;
    Ok(StatusCode::NO_CONTENT)
}
