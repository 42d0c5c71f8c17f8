//! Games and configs.

use crate::error::{store_error, violated_foreign_key};
use crate::store::PgStore;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use manman_core::config::{ConfigSpec, GameServerConfig};
use manman_core::game_server::{GameServer, NewGameServer, ServerType};
use manman_core::id::{ConfigId, GameServerId, InstanceId};
use manman_core::ports::{CatalogueRepository, ConfigBundle, StoreError};
use manman_core::status::Status;
use sqlx::FromRow;

#[derive(FromRow)]
struct GameRow {
    id: i64,
    name: String,
    server_type: String,
    app_id: Option<i64>,
    path: Option<String>,
    created_at: DateTime<Utc>,
}

impl TryFrom<GameRow> for GameServer {
    type Error = StoreError;

    fn try_from(row: GameRow) -> Result<Self, StoreError> {
        let server_type = match (row.server_type.as_str(), row.app_id, row.path) {
            ("steam", Some(app_id), _) => ServerType::Steam {
                app_id: u32::try_from(app_id)
                    .map_err(|_| corrupt(row.id, "app_id out of range"))?,
            },
            ("local", _, Some(path)) => ServerType::Local { path },
            _ => return Err(corrupt(row.id, "server_type does not match its fields")),
        };
        Ok(Self {
            id: GameServerId(row.id),
            name: row.name,
            server_type,
            created_at: row.created_at,
        })
    }
}

fn corrupt(id: i64, what: &str) -> StoreError {
    StoreError::Other {
        source: format!("game server {id} in the database: {what}").into(),
    }
}

#[derive(FromRow)]
struct ConfigRow {
    id: i64,
    game_server_id: i64,
    spec: sqlx::types::Json<ConfigSpec>,
    created_at: DateTime<Utc>,
}

/// A config's row and its game's, read together.
#[derive(FromRow)]
struct BundleRow {
    id: i64,
    game_server_id: i64,
    spec: sqlx::types::Json<ConfigSpec>,
    created_at: DateTime<Utc>,
    name: String,
    server_type: String,
    app_id: Option<i64>,
    path: Option<String>,
    game_created_at: DateTime<Utc>,
}

impl From<ConfigRow> for GameServerConfig {
    fn from(row: ConfigRow) -> Self {
        Self {
            id: ConfigId(row.id),
            game_server_id: GameServerId(row.game_server_id),
            created_at: row.created_at,
            spec: row.spec.0,
        }
    }
}

#[async_trait]
impl CatalogueRepository for PgStore {
    async fn create_game(
        &self,
        game: &NewGameServer,
        at: DateTime<Utc>,
    ) -> Result<GameServer, StoreError> {
        let (kind, app_id, path) = columns(&game.server_type);
        let what = format!("game server {:?}", game.name);
        let row: GameRow = sqlx::query_as(
            "INSERT INTO manman.game_servers (name, server_type, app_id, path, created_at)
             VALUES ($1, $2, $3, $4, $5)
             RETURNING id, name, server_type, app_id, path, created_at",
        )
        .bind(&game.name)
        .bind(kind)
        .bind(app_id)
        .bind(path)
        .bind(at)
        .fetch_one(self.pool())
        .await
        .map_err(|e| store_error(e, &what))?;
        row.try_into()
    }

    async fn get_game(&self, id: GameServerId) -> Result<GameServer, StoreError> {
        let row: GameRow = sqlx::query_as(
            "SELECT id, name, server_type, app_id, path, created_at FROM manman.game_servers WHERE id = $1",
        )
        .bind(id.get())
        .fetch_one(self.pool())
        .await
        .map_err(|e| store_error(e, &id))?;
        row.try_into()
    }

    async fn find_game(&self, name: &str) -> Result<Option<GameServer>, StoreError> {
        let row: Option<GameRow> = sqlx::query_as(
            "SELECT id, name, server_type, app_id, path, created_at FROM manman.game_servers WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(self.pool())
        .await
        .map_err(|e| store_error(e, &format!("game server {name:?}")))?;
        row.map(TryInto::try_into).transpose()
    }

    async fn list_games(&self) -> Result<Vec<GameServer>, StoreError> {
        let rows: Vec<GameRow> = sqlx::query_as(
            "SELECT id, name, server_type, app_id, path, created_at FROM manman.game_servers ORDER BY id",
        )
        .fetch_all(self.pool())
        .await
        .map_err(|e| store_error(e, &"the game servers"))?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn create_config(
        &self,
        game: GameServerId,
        spec: &ConfigSpec,
        at: DateTime<Utc>,
    ) -> Result<GameServerConfig, StoreError> {
        let what = format!("config {:?} of {game}", spec.name);
        let row: ConfigRow = sqlx::query_as(
            "INSERT INTO manman.game_server_configs (game_server_id, name, is_default, is_visible, spec, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             RETURNING id, game_server_id, spec, created_at",
        )
        .bind(game.get())
        .bind(&spec.name)
        .bind(spec.is_default)
        .bind(spec.is_visible)
        .bind(sqlx::types::Json(spec))
        .bind(at)
        .fetch_one(self.pool())
        .await
        .map_err(|e| match violated_foreign_key(&e).as_deref() {
            Some("game_server_configs_game_server_id_fkey") => StoreError::not_found(&game),
            _ => store_error(e, &what),
        })?;
        Ok(row.into())
    }

    async fn get_config(&self, id: ConfigId) -> Result<GameServerConfig, StoreError> {
        let row: ConfigRow = sqlx::query_as(
            "SELECT id, game_server_id, spec, created_at FROM manman.game_server_configs WHERE id = $1",
        )
        .bind(id.get())
        .fetch_one(self.pool())
        .await
        .map_err(|e| store_error(e, &id))?;
        Ok(row.into())
    }

    async fn get_config_bundle(&self, id: ConfigId) -> Result<ConfigBundle, StoreError> {
        let row: BundleRow = sqlx::query_as(
            "SELECT c.id, c.game_server_id, c.spec, c.created_at,
                    g.name, g.server_type, g.app_id, g.path, g.created_at AS game_created_at
             FROM manman.game_server_configs c JOIN manman.game_servers g ON g.id = c.game_server_id
             WHERE c.id = $1",
        )
        .bind(id.get())
        .fetch_one(self.pool())
        .await
        .map_err(|e| store_error(e, &id))?;
        let game = GameRow {
            id: row.game_server_id,
            name: row.name,
            server_type: row.server_type,
            app_id: row.app_id,
            path: row.path,
            created_at: row.game_created_at,
        }
        .try_into()?;
        let config = ConfigRow {
            id: row.id,
            game_server_id: row.game_server_id,
            spec: row.spec,
            created_at: row.created_at,
        }
        .into();
        Ok(ConfigBundle { game, config })
    }

    async fn list_configs(
        &self,
        game: Option<GameServerId>,
    ) -> Result<Vec<GameServerConfig>, StoreError> {
        let rows: Vec<ConfigRow> = sqlx::query_as(
            "SELECT id, game_server_id, spec, created_at FROM manman.game_server_configs
             WHERE $1::bigint IS NULL OR game_server_id = $1 ORDER BY id",
        )
        .bind(game.map(GameServerId::get))
        .fetch_all(self.pool())
        .await
        .map_err(|e| store_error(e, &"the configs"))?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn update_game(
        &self,
        id: GameServerId,
        game: &NewGameServer,
    ) -> Result<GameServer, StoreError> {
        let (kind, app_id, path) = columns(&game.server_type);
        let row: GameRow = sqlx::query_as(
            "UPDATE manman.game_servers SET name = $2, server_type = $3, app_id = $4, path = $5
             WHERE id = $1
             RETURNING id, name, server_type, app_id, path, created_at",
        )
        .bind(id.get())
        .bind(&game.name)
        .bind(kind)
        .bind(app_id)
        .bind(path)
        .fetch_one(self.pool())
        .await
        .map_err(|e| match e {
            sqlx::Error::RowNotFound => StoreError::not_found(&id),
            e => store_error(e, &format!("game server {:?}", game.name)),
        })?;
        row.try_into()
    }

    async fn delete_game(&self, id: GameServerId) -> Result<(), StoreError> {
        let fail = |e| store_error(e, &id);
        let mut tx = self.pool().begin().await.map_err(fail)?;
        // The lock keeps a config from being added meanwhile (its foreign key check waits).
        sqlx::query("SELECT id FROM manman.game_servers WHERE id = $1 FOR UPDATE")
            .bind(id.get())
            .fetch_one(&mut *tx)
            .await
            .map_err(fail)?;
        let configs: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM manman.game_server_configs WHERE game_server_id = $1 ORDER BY id",
        )
        .bind(id.get())
        .fetch_all(&mut *tx)
        .await
        .map_err(fail)?;
        if !configs.is_empty() {
            let configs: Vec<ConfigId> = configs.into_iter().map(ConfigId).collect();
            return Err(StoreError::game_has_configs(id, &configs));
        }
        sqlx::query("DELETE FROM manman.game_servers WHERE id = $1")
            .bind(id.get())
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
        tx.commit().await.map_err(fail)
    }

    async fn update_config(
        &self,
        id: ConfigId,
        spec: &ConfigSpec,
    ) -> Result<GameServerConfig, StoreError> {
        let row: ConfigRow = sqlx::query_as(
            "UPDATE manman.game_server_configs SET name = $2, is_default = $3, is_visible = $4, spec = $5
             WHERE id = $1
             RETURNING id, game_server_id, spec, created_at",
        )
        .bind(id.get())
        .bind(&spec.name)
        .bind(spec.is_default)
        .bind(spec.is_visible)
        .bind(sqlx::types::Json(spec))
        .fetch_one(self.pool())
        .await
        .map_err(|e| match e {
            sqlx::Error::RowNotFound => StoreError::not_found(&id),
            e => store_error(e, &format!("config {:?} ({id})", spec.name)),
        })?;
        Ok(row.into())
    }

    async fn delete_config(&self, id: ConfigId) -> Result<(), StoreError> {
        let fail = |e| store_error(e, &id);
        let mut tx = self.pool().begin().await.map_err(fail)?;
        // The lock keeps an instance from being created meanwhile (its foreign key check waits).
        sqlx::query("SELECT id FROM manman.game_server_configs WHERE id = $1 FOR UPDATE")
            .bind(id.get())
            .fetch_one(&mut *tx)
            .await
            .map_err(fail)?;
        let active: Vec<&str> = Status::ALL
            .into_iter()
            .filter(|s| s.is_active())
            .map(Status::as_str)
            .collect();
        let busy: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM manman.instances WHERE config_id = $1 AND status = ANY($2) ORDER BY id",
        )
        .bind(id.get())
        .bind(&active)
        .fetch_all(&mut *tx)
        .await
        .map_err(fail)?;
        if !busy.is_empty() {
            let busy: Vec<InstanceId> = busy.into_iter().map(InstanceId).collect();
            return Err(StoreError::config_in_use(id, &busy));
        }
        // Their history and command records go with them (ON DELETE CASCADE).
        sqlx::query("DELETE FROM manman.instances WHERE config_id = $1")
            .bind(id.get())
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
        sqlx::query("DELETE FROM manman.game_server_configs WHERE id = $1")
            .bind(id.get())
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
        tx.commit().await.map_err(fail)
    }
}

/// A game's type as its columns: kind, app id, path.
fn columns(server_type: &ServerType) -> (&'static str, Option<i64>, Option<&str>) {
    match server_type {
        ServerType::Steam { app_id } => ("steam", Some(i64::from(*app_id)), None),
        ServerType::Local { path } => ("local", None, Some(path.as_str())),
    }
}
