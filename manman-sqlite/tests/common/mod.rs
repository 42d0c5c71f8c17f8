//! What the tests of the database file and of writes share: temp files, stores, a connection
//! from outside the store, and a placed instance.

use chrono::{SubsecRound, Utc};
use manman_core::config::ConfigSpec;
use manman_core::game_server::{NewGameServer, ServerType};
use manman_core::instance::{Instance, NewInstance};
use manman_core::ports::{EntityUpdate, StatusChange};
use manman_core::status::{Cause, Entity, Status};
use manman_core::store::Store;
use manman_core::worker::WorkerRegistration;
use manman_sqlite::{SqliteSettings, SqliteStore};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, SqliteConnection};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tempfile::TempDir;

pub(crate) fn temp() -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("manman.db");
    (dir, path)
}

pub(crate) async fn open(path: &Path) -> SqliteStore {
    let store = SqliteStore::open(&SqliteSettings::new(path))
        .await
        .expect("open");
    store.migrate().await.expect("migrate");
    store
}

/// A connection of another program (or a test) to the file, outside the store.
pub(crate) async fn raw(path: &Path) -> SqliteConnection {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .busy_timeout(Duration::from_secs(5))
        .connect()
        .await
        .expect("raw connection")
}

pub(crate) fn local_game(name: &str) -> NewGameServer {
    NewGameServer {
        name: name.to_owned(),
        server_type: ServerType::Local {
            path: format!("games/{name}"),
        },
    }
}

pub(crate) fn registration(name: &str) -> WorkerRegistration {
    WorkerRegistration {
        name: name.to_owned(),
        version: "1.0".to_owned(),
        capacity: 2,
        labels: Default::default(),
        taken_up: Vec::new(),
    }
}

pub(crate) fn change(entity: Entity, from: Status, to: Status) -> StatusChange {
    let now = Utc::now().trunc_subsecs(6);
    StatusChange {
        event_id: uuid::Uuid::new_v4(),
        entity,
        from,
        to,
        cause: Cause::User,
        detail: None,
        as_of: now,
        reported_at: now,
        update: EntityUpdate::default(),
        sequence: None,
    }
}

/// A game, a config, a worker and an instance on it.
pub(crate) async fn placed(store: &Store, name: &str) -> Instance {
    let now = Utc::now().trunc_subsecs(6);
    let game = store
        .catalogue
        .create_game(&local_game(name), now)
        .await
        .expect("game");
    let config = store
        .catalogue
        .create_config(game.id, &ConfigSpec::new("main", "server"), now)
        .await
        .expect("config");
    let worker = store
        .workers
        .register_worker(&registration(name), now)
        .await
        .expect("worker");
    store
        .instances
        .create_instance(&NewInstance {
            config_id: config.id,
            worker_id: worker.id,
            worker_epoch: worker.epoch,
            created_at: now,
        })
        .await
        .expect("instance")
}
