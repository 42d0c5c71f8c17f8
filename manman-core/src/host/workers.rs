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
