//! What many tests start from, made in any store: a worker, a config of a local game, and
//! instances of that config placed on that worker. Names are unique, so fixtures share a
//! store.

use crate::config::ConfigSpec;
use crate::game_server::{NewGameServer, ServerType};
use crate::id::ConfigId;
use crate::instance::{Instance, NewInstance};
use crate::store::Store;
use crate::testing::unique;
use crate::worker::{Worker, WorkerRegistration};
use chrono::{DateTime, SubsecRound, Utc};
use std::collections::BTreeMap;

/// Now, at the microsecond precision SQL timestamps keep.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// A local game named `name`, in `games/{name}`.
pub fn local_game(name: &str) -> NewGameServer {
    NewGameServer {
        name: name.to_owned(),
        server_type: ServerType::Local {
            path: format!("games/{name}"),
        },
    }
}

/// A newly registered worker (room for 4, label `region=eu`).
///
/// # Panics
///
/// When the store refuses.
pub async fn worker(store: &Store) -> Worker {
    let registration = WorkerRegistration {
        name: unique("w"),
        version: "1.0".to_owned(),
        capacity: 4,
        labels: BTreeMap::from([("region".to_owned(), "eu".to_owned())]),
        taken_up: Vec::new(),
    };
    store
        .workers
        .register_worker(&registration, now())
        .await
        .expect("register")
}

/// A config `main` (executable `server`) of a new local game.
///
/// # Panics
///
/// When the store refuses.
pub async fn config(store: &Store) -> ConfigId {
    let game = store
        .catalogue
        .create_game(&local_game(&unique("g")), now())
        .await
        .expect("game");
    let spec = ConfigSpec::new("main", "server");
    store
        .catalogue
        .create_config(game.id, &spec, now())
        .await
        .expect("config")
        .id
}

/// `count` instances (`created`) of a new config, placed on `worker`'s current registration.
///
/// # Panics
///
/// When the store refuses.
pub async fn instances_on(store: &Store, worker: &Worker, count: usize) -> Vec<Instance> {
    let config_id = config(store).await;
    let mut instances = Vec::with_capacity(count);
    for _ in 0..count {
        let instance = store
            .instances
            .create_instance(&NewInstance {
                config_id,
                worker_id: worker.id,
                worker_epoch: worker.epoch,
                created_at: now(),
            })
            .await
            .expect("instance");
        instances.push(instance);
    }
    instances
}

/// One instance (`created`) of a new config on a new worker.
///
/// # Panics
///
/// When the store refuses.
pub async fn instance(store: &Store) -> (Instance, Worker) {
    let worker = worker(store).await;
    let instance = instances_on(store, &worker, 1).await.remove(0);
    (instance, worker)
}
