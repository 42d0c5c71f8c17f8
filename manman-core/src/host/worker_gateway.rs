//! [`WorkerGateway`]: what the host answers a worker — registration, heartbeats (with the
//! reconciliation of their inventory), the config of an instance to start, console tails.

use crate::command::{Command, Origin};
use crate::console::ConsoleTail;
use crate::host::{Catalogue, CommandSender, HostError, RECONCILIATION};
use crate::id::{InstanceId, WorkerId};
use crate::ports::{Clock, ConfigBundle};
use crate::store::Store;
use crate::validation::ValidationError;
use crate::worker::{Heartbeat, Registered, WorkerRegistration};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// The host as its workers reach it.
#[derive(Debug, Clone)]
pub struct WorkerGateway {
    store: Store,
    clock: Arc<dyn Clock>,
    sender: CommandSender,
    catalogue: Catalogue,
    /// When reconciliation last asked a worker to stop each instance it must not run: asked
    /// again only after a command's time to live.
    reconciliation_stops: Arc<Mutex<HashMap<InstanceId, tokio::time::Instant>>>,
}

impl WorkerGateway {
    /// The gateway to the workers registered in `store`, commanded through `sender`.
    pub fn new(store: Store, clock: Arc<dyn Clock>, sender: CommandSender) -> Self {
        Self {
            catalogue: Catalogue::new(store.clone(), Arc::clone(&clock)),
            store,
            clock,
            sender,
            reconciliation_stops: Arc::default(),
        }
    }

    /// Registers a worker (a new epoch) and declares its command queue.
    pub async fn register_worker(
        &self,
        registration: &WorkerRegistration,
    ) -> Result<Registered, HostError> {
        registration.validate()?;
        let worker = self
            .store
            .workers
            .register_worker(registration, self.clock.now())
            .await?;
        if !registration.taken_up.is_empty() {
            let taken = self
                .store
                .instances
                .take_over_instances(worker.id, worker.epoch, &registration.taken_up)
                .await?;
            tracing::info!(worker_id = worker.id.get(), epoch = worker.epoch, taken_up = ?taken, asked = registration.taken_up.len(), "a restarted worker took up the servers its last run left running");
        }
        self.sender.bus().declare_worker_queue(worker.id).await?;
        let key = self
            .sender
            .keys()
            .worker_key(worker.id, worker.epoch)
            .await?;
        Ok(Registered {
            worker_id: worker.id,
            epoch: worker.epoch,
            bus_key: key.bus_key().clone(),
        })
    }

    /// Records a heartbeat and reconciles its inventory (see `docs/worker.md`): a server the
    /// worker runs but the host shows ended is stopped (a `stop` command issued by
    /// [`RECONCILIATION`]). `Conflict` when the epoch was superseded.
    pub async fn heartbeat(&self, heartbeat: &Heartbeat) -> Result<(), HostError> {
        let current = self
            .store
            .workers
            .record_heartbeat(heartbeat.worker_id, heartbeat.epoch, self.clock.now())
            .await?;
        if !current {
            return Err(HostError::conflict(
                &heartbeat.worker_id,
                format!(
                    "epoch {} was superseded by a newer registration",
                    heartbeat.epoch
                ),
            ));
        }
        let unwanted =
            super::reconcile::reconcile(&self.store, self.clock.as_ref(), heartbeat).await?;
        for instance_id in unwanted {
            self.stop_unwanted((heartbeat.worker_id, heartbeat.epoch), instance_id)
                .await;
        }
        Ok(())
    }

    /// What `worker` starts `instance` with, if it is its own to start: placed on it, on its
    /// current registration, and not ended. `Forbidden` for another worker's instance,
    /// `Conflict` for an ended one or one of an older registration, `NotFound` for none.
    pub async fn instance_config(
        &self,
        worker: WorkerId,
        instance: InstanceId,
    ) -> Result<ConfigBundle, HostError> {
        let found = self
            .own_instance(worker, instance, "starts only its own instances")
            .await?;
        let current = self.store.workers.get_worker(worker).await?;
        if found.worker_epoch != current.epoch {
            return Err(HostError::conflict(
                &instance,
                format!(
                    "was placed on epoch {} of {worker}, whose registration is now epoch {}: a \
                     restarted worker does not start the instances of its past",
                    found.worker_epoch, current.epoch
                ),
            ));
        }
        if found.status.is_terminal() {
            return Err(HostError::conflict(
                &instance,
                format!(
                    "is {}: it has ended, and an ended instance never runs again",
                    found.status
                ),
            ));
        }
        self.catalogue.config_bundle(found.config_id).await
    }

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
        self.own_instance(worker, instance, "sends only its own instances' consoles")
            .await?;
        self.store
            .console_tails
            .keep_console_tail(instance, tail)
            .await?;
        Ok(())
    }

    /// `instance`, when it is placed on `worker` (any registration of it); `Forbidden`, saying
    /// that a worker `rule`, when it is another's.
    async fn own_instance(
        &self,
        worker: WorkerId,
        instance: InstanceId,
        rule: &str,
    ) -> Result<crate::instance::Instance, HostError> {
        let found = self.store.instances.get_instance(instance).await?;
        if found.worker_id != worker {
            return Err(HostError::Forbidden {
                detail: format!(
                    "{instance} is placed on {}, not {worker}: a worker {rule}",
                    found.worker_id
                ),
            });
        }
        Ok(found)
    }

    /// Asks `worker` to stop an instance it must not run, unless that was asked within a
    /// command's time to live. A failure is logged: the next heartbeat asks again.
    async fn stop_unwanted(&self, (worker, epoch): (WorkerId, i64), instance_id: InstanceId) {
        let now = tokio::time::Instant::now();
        let ttl = self.sender.ttl();
        {
            let mut asked = self
                .reconciliation_stops
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            asked.retain(|_, at| now.duration_since(*at) < ttl);
            if asked.contains_key(&instance_id) {
                return;
            }
            asked.insert(instance_id, now);
        }
        let command = Command::Stop { instance_id };
        if let Err(e) = self
            .sender
            .send((worker, epoch), command, Origin::from(RECONCILIATION))
            .await
        {
            tracing::warn!(instance_id = instance_id.get(), worker_id = worker.get(), error = %e, "could not ask a worker to stop an instance the host shows ended");
            self.reconciliation_stops
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&instance_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::ConsoleLine;
    use crate::host::{HostService, StartRequest};
    use crate::testing::fixture;
    use std::collections::BTreeMap;

    fn registration(name: &str) -> WorkerRegistration {
        WorkerRegistration {
            name: name.to_owned(),
            version: "1".to_owned(),
            capacity: 4,
            labels: BTreeMap::new(),
            taken_up: Vec::new(),
        }
    }

    #[tokio::test]
    async fn a_superseded_registration_is_refused_its_heartbeat_and_its_instances_config() {
        let host = HostService::in_memory().await.expect("host");
        let gateway = host.gateway();
        let first = gateway.register_worker(&registration("w")).await.unwrap();
        let config = fixture::config(host.store()).await;
        let started = host
            .instances()
            .start(&StartRequest::new(config), "test")
            .await
            .unwrap();
        let bundle = gateway
            .instance_config(first.worker_id, started.instance_id)
            .await
            .expect("its own instance");
        assert_eq!(bundle.config.id, config);

        let second = gateway.register_worker(&registration("w")).await.unwrap();
        assert_eq!(second.worker_id, first.worker_id);
        assert!(second.epoch > first.epoch, "a new epoch");
        let beat = |epoch| Heartbeat {
            worker_id: first.worker_id,
            epoch,
            inventory: Vec::new(),
        };
        let refused = gateway.heartbeat(&beat(first.epoch)).await.unwrap_err();
        assert!(
            matches!(&refused, HostError::Conflict { detail, .. } if detail.contains("superseded")),
            "{refused}"
        );
        gateway
            .heartbeat(&beat(second.epoch))
            .await
            .expect("current epoch");
        let refused = gateway
            .instance_config(first.worker_id, started.instance_id)
            .await
            .unwrap_err();
        assert!(
            matches!(&refused, HostError::Conflict { detail, .. } if detail.contains("epoch")),
            "a restarted worker does not start its past's instances: {refused}"
        );
    }

    #[tokio::test]
    async fn a_worker_reads_and_sends_only_its_own_instances() {
        let host = HostService::in_memory().await.expect("host");
        let gateway = host.gateway();
        let owner = gateway
            .register_worker(&registration("owner"))
            .await
            .unwrap();
        let config = fixture::config(host.store()).await;
        let mut request = StartRequest::new(config);
        request.worker = Some("owner".to_owned());
        let started = host.instances().start(&request, "test").await.unwrap();
        let other = gateway
            .register_worker(&registration("other"))
            .await
            .unwrap();
        let refused = gateway
            .instance_config(other.worker_id, started.instance_id)
            .await
            .unwrap_err();
        assert!(matches!(refused, HostError::Forbidden { .. }), "{refused}");
        let tail = ConsoleTail::newest(vec![ConsoleLine {
            instance_id: started.instance_id,
            seq: 1,
            stream: crate::console::ConsoleStream::Stdout,
            text: "hello".to_owned(),
            at: fixture::now(),
        }]);
        let refused = gateway
            .keep_console_tail(other.worker_id, started.instance_id, &tail)
            .await
            .unwrap_err();
        assert!(matches!(refused, HostError::Forbidden { .. }), "{refused}");
        gateway
            .keep_console_tail(owner.worker_id, started.instance_id, &tail)
            .await
            .expect("its own");
        assert_eq!(
            host.instances()
                .console_tail(started.instance_id)
                .await
                .unwrap()
                .map(|t| t.lines.len()),
            Some(1)
        );
    }
}
