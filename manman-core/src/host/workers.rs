//! [`Workers`]: the workers as operators see them — listed, read, and asked to shut down.

use crate::command::{Command, Origin};
use crate::host::{CommandSender, HostError};
use crate::id::WorkerId;
use crate::store::Store;
use crate::worker::Worker;
use uuid::Uuid;

/// The workers, for operators.
#[derive(Debug, Clone)]
pub struct Workers {
    store: Store,
    sender: CommandSender,
    embedded_worker: Option<String>,
}

impl Workers {
    /// The workers registered in `store`, sent commands by `sender`; `embedded_worker` names
    /// the worker that runs in the host's own process (`manman up`'s), if any.
    pub fn new(store: Store, sender: CommandSender, embedded_worker: Option<String>) -> Self {
        Self {
            store,
            sender,
            embedded_worker,
        }
    }

    /// Every worker.
    pub async fn list_workers(&self) -> Result<Vec<Worker>, HostError> {
        Ok(self.store.workers.list_workers().await?)
    }

    /// One worker.
    pub async fn get_worker(&self, id: WorkerId) -> Result<Worker, HostError> {
        Ok(self.store.workers.get_worker(id).await?)
    }

    /// Asks a worker to stop every instance and exit. The embedded worker (shutting it down
    /// would take the API down with it) and workers that are not live are a `Conflict`.
    pub async fn shutdown_worker(
        &self,
        id: WorkerId,
        origin: impl Into<Origin>,
    ) -> Result<Uuid, HostError> {
        let worker = self.store.workers.get_worker(id).await?;
        if self.embedded_worker.as_deref() == Some(worker.name.as_str()) {
            return Err(HostError::conflict(
                &id,
                format!(
                    "is {:?}, the worker inside this host's own process (`manman up`): shutting \
                     it down would stop the API too; stop `manman up` instead (Ctrl-C or SIGTERM)",
                    worker.name
                ),
            ));
        }
        if !worker.status.is_live() {
            return Err(HostError::conflict(
                &id,
                format!(
                    "is {}: there is no running worker to shut down",
                    worker.status
                ),
            ));
        }
        self.sender
            .send((id, worker.epoch), Command::ShutdownWorker, origin.into())
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::CommandState;
    use crate::host::HostService;
    use crate::worker::WorkerRegistration;
    use std::collections::BTreeMap;

    #[tokio::test]
    async fn only_a_live_worker_outside_the_host_is_shut_down() {
        let host = HostService::in_memory()
            .await
            .expect("host")
            .with_embedded_worker("inside");
        let register = |name: &str| WorkerRegistration {
            name: name.to_owned(),
            version: "1".to_owned(),
            capacity: 1,
            labels: BTreeMap::new(),
            taken_up: Vec::new(),
        };
        let inside = host
            .gateway()
            .register_worker(&register("inside"))
            .await
            .unwrap();
        let outside = host
            .gateway()
            .register_worker(&register("outside"))
            .await
            .unwrap();
        let refused = host
            .workers()
            .shutdown_worker(inside.worker_id, "test")
            .await
            .unwrap_err();
        assert!(
            matches!(&refused, HostError::Conflict { detail, .. } if detail.contains("manman up")),
            "{refused}"
        );
        let command = host
            .workers()
            .shutdown_worker(outside.worker_id, "test")
            .await
            .expect("a live worker");
        let record = host.instances().get_command(command).await.unwrap();
        assert_eq!(record.state, CommandState::Delivered);
        assert_eq!(record.worker_id, outside.worker_id);

        let later = crate::testing::fixture::now() + chrono::Duration::hours(1);
        let lost = host
            .store()
            .workers
            .expire_leases(later, later)
            .await
            .unwrap();
        assert!(!lost.is_empty(), "the leases ran out");
        let refused = host
            .workers()
            .shutdown_worker(outside.worker_id, "test")
            .await
            .unwrap_err();
        assert!(
            matches!(&refused, HostError::Conflict { detail, .. } if detail.contains("no running worker")),
            "{refused}"
        );
    }
}
