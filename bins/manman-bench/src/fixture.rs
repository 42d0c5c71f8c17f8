//! What several scenarios start from: a game, a config, a worker and instances of it in a store.

use chrono::Utc;
use manman_core::config::ConfigSpec;
use manman_core::game_server::{NewGameServer, ServerType};
use manman_core::host::BusKeys;
use manman_core::id::InstanceId;
use manman_core::instance::NewInstance;
use manman_core::signing::WorkerKey;
use manman_core::store::Store;
use manman_core::worker::WorkerRegistration;

/// Creates a game, a config and a worker named `bench`, and `count` instances (`created`).
pub(crate) async fn instances(
    store: &Store,
    count: usize,
) -> anyhow::Result<(Vec<InstanceId>, WorkerKey)> {
    let now = Utc::now();
    let game = store
        .catalogue
        .create_game(
            &NewGameServer {
                name: "bench".into(),
                server_type: ServerType::Local {
                    path: "bench".into(),
                },
            },
            now,
        )
        .await?;
    let config = store
        .catalogue
        .create_config(game.id, &ConfigSpec::new("bench", "server"), now)
        .await?;
    let worker = store
        .workers
        .register_worker(
            &WorkerRegistration {
                name: "bench".into(),
                version: "1".into(),
                capacity: 1,
                labels: Default::default(),
                taken_up: Vec::new(),
            },
            now,
        )
        .await?;
    let mut ids = Vec::with_capacity(count);
    for _ in 0..count {
        let instance = store
            .instances
            .create_instance(&NewInstance {
                config_id: config.id,
                worker_id: worker.id,
                worker_epoch: worker.epoch,
                created_at: now,
            })
            .await?;
        ids.push(instance.id);
    }
    let key = BusKeys::new(store)
        .worker_key(worker.id, worker.epoch)
        .await?;
    Ok((ids, key))
}
