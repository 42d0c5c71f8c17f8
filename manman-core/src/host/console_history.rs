//! Console history that outlives the process: when an instance ends, its worker sends the last
//! lines of its log (a [`ConsoleTail`]) and the host keeps them in the store, so that the console
//! of an ended instance can be read after any restart of host or worker, and on any replica.

use crate::command::{Command, Origin};
use crate::console::ConsoleTail;
use crate::host::{HostError, HostService};
use crate::id::{InstanceId, WorkerId};
use crate::instance::Instance;
use crate::validation::ValidationError;
use uuid::Uuid;

impl HostService {
    /// Keeps `tail` as the console tail of `instance`, sent by `worker`: only the worker the
    /// instance was placed on (any registration of it: a restarted worker sends the tails of
    /// the instances its last run left) may send it. `Forbidden` for another worker's instance,
    /// `Invalid` for lines that are not a tail of this instance's console.
    pub async fn keep_console_tail(
        &self,
        worker: WorkerId,
        instance: InstanceId,
        tail: &ConsoleTail,
    ) -> Result<(), HostError> {
        tail.check(instance)
            .map_err(|message| ValidationError::field("lines", message))?;
        let found = self.store().instances.get_instance(instance).await?;
        if found.worker_id != worker {
            return Err(HostError::Forbidden {
                detail: format!(
                    "{instance} is placed on {}, not {worker}: a worker sends only its own \
                     instances' consoles",
                    found.worker_id
                ),
            });
        }
        self.store()
            .console_tails
            .keep_console_tail(instance, tail)
            .await?;
        Ok(())
    }

    /// Asks the worker of a live `instance` to hand over its console tail (the host has not seen
    /// its console from the start); the tail arrives through
    /// [`keep_console_tail`](Self::keep_console_tail).
    pub async fn request_console_tail(
        &self,
        instance: &Instance,
        origin: impl Into<Origin>,
    ) -> Result<Uuid, HostError> {
        self.send(
            (instance.worker_id, instance.worker_epoch),
            Command::SendConsoleTail {
                instance_id: instance.id,
            },
            origin.into(),
        )
        .await
    }

    /// The console tail kept for `instance`, if one is.
    pub async fn console_tail(
        &self,
        instance: InstanceId,
    ) -> Result<Option<ConsoleTail>, HostError> {
        Ok(self.store().console_tails.console_tail(instance).await?)
    }
}
