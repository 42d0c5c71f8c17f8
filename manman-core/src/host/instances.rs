//! [`Instances`]: what operators run — a config placed on a worker and started, then stopped,
//! restarted, killed or sent console lines, each as a recorded command.

use crate::command::{Command, CommandRecord, Origin};
use crate::console::ConsoleTail;
use crate::host::placement::{Wanted, place};
use crate::host::{CommandSender, HostError};
use crate::id::{ConfigId, InstanceId, WorkerId};
use crate::instance::{Instance, InstanceFilter, NewInstance};
use crate::ports::{Clock, StatusChange};
use crate::status::{Entity, StatusEvent};
use crate::store::Store;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use uuid::Uuid;

/// A start request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct StartRequest {
    /// The config to run.
    pub config_id: ConfigId,
    /// Run it on this worker (by name); else the host chooses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    /// Run it on a worker with these labels (each with this value).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl StartRequest {
    /// A start of `config_id` wherever the host chooses.
    pub fn new(config_id: ConfigId) -> Self {
        Self {
            config_id,
            worker: None,
            labels: BTreeMap::new(),
        }
    }
}

/// What a start returns at once (HTTP 202): the instance and the command to follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Started {
    /// The new instance.
    pub instance_id: InstanceId,
    /// The start command sent to the worker.
    pub command_id: Uuid,
    /// The worker chosen.
    pub worker_id: WorkerId,
}

/// How long a start that failed keeps trying to record its instance `crashed` (`undelivered`)
/// while the store is unavailable.
const UNDELIVERED_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);

/// Instances: placement, the commands that drive them, their records.
#[derive(Debug, Clone)]
pub struct Instances {
    store: Store,
    clock: Arc<dyn Clock>,
    sender: CommandSender,
}

impl Instances {
    /// Instances kept in `store`, driven by commands `sender` sends.
    pub fn new(store: Store, clock: Arc<dyn Clock>, sender: CommandSender) -> Self {
        Self {
            store,
            clock,
            sender,
        }
    }

    /// Starts a config: places it, creates the instance, sends the start command — which
    /// carries the game and config it placed, so the worker need not ask for them.
    ///
    /// The reads placement needs (the config and its game, the workers, the active instances
    /// per worker and those of this config) go to the store together: a start waits for the
    /// slowest of them (the config then its game: two round trips), not for the sum of five.
    /// `NotFound` naming the config when there is none.
    pub async fn start(
        &self,
        request: &StartRequest,
        origin: impl Into<Origin>,
    ) -> Result<Started, HostError> {
        let catalogue = &self.store.catalogue;
        let bundle = catalogue.get_config_bundle(request.config_id);
        // Counted by the store from its index of active instances: the cost does not grow with
        // the history.
        // The instance's id is reserved with the reads, so that its start command can name it
        // and both be written in one go after placement.
        let (bundle, workers, active, running, id) = tokio::try_join!(
            bundle,
            self.store.workers.list_workers(),
            self.store.instances.count_active_by_worker(),
            self.store
                .instances
                .active_instances_of_config(request.config_id),
            self.store.instances.reserve_instance_id(),
        )?;
        let active: HashMap<WorkerId, u32> = active
            .into_iter()
            .map(|(worker, n)| (worker, u32::try_from(n).unwrap_or(u32::MAX)))
            .collect();
        let running: HashMap<WorkerId, InstanceId> = running
            .into_iter()
            .map(|instance| (instance.worker_id, instance.id))
            .collect();
        let wanted = Wanted {
            name: request.worker.as_deref(),
            labels: &request.labels,
            running: &running,
        };
        let worker = place(&workers, &active, wanted)?;
        let new = NewInstance {
            config_id: bundle.config.id,
            worker_id: worker.id,
            worker_epoch: worker.epoch,
            created_at: self.clock.now(),
        };
        let command = Command::Start {
            instance_id: id,
            config_id: bundle.config.id,
            bundle: Some(Box::new(bundle)),
        };
        let envelope = self.sender.envelope(command, origin.into());
        let instance = self
            .store
            .instances
            .create_started_instance(
                id,
                &new,
                &CommandRecord::pending(worker.id, envelope.clone()),
            )
            .await?;
        let command_id = match self
            .sender
            .publish_recorded((worker.id, worker.epoch), &envelope)
            .await
        {
            Ok(id) => id,
            Err(e) => {
                self.end_undelivered(instance.id, &e).await;
                return Err(e);
            }
        };
        Ok(Started {
            instance_id: instance.id,
            command_id,
            worker_id: worker.id,
        })
    }

    /// Asks an instance to stop gracefully.
    pub async fn stop(&self, id: InstanceId, origin: impl Into<Origin>) -> Result<Uuid, HostError> {
        self.instance_command(id, Command::Stop { instance_id: id }, origin.into())
            .await
    }

    /// Restarts an instance in place: stopped gracefully and started again as the same
    /// instance (its restart count grows by one).
    pub async fn restart(
        &self,
        id: InstanceId,
        origin: impl Into<Origin>,
    ) -> Result<Uuid, HostError> {
        self.instance_command(id, Command::Restart { instance_id: id }, origin.into())
            .await
    }

    /// Kills an instance (SIGKILL to its process group).
    pub async fn kill(&self, id: InstanceId, origin: impl Into<Origin>) -> Result<Uuid, HostError> {
        self.instance_command(id, Command::Kill { instance_id: id }, origin.into())
            .await
    }

    /// Sends a console line to an instance. `Invalid` (naming `line`) when it is not one line
    /// without NUL of at most [`crate::command::MAX_STDIN_LINE_BYTES`].
    pub async fn stdin(
        &self,
        id: InstanceId,
        line: &str,
        origin: impl Into<Origin>,
    ) -> Result<Uuid, HostError> {
        if let Err(refused) = crate::command::check_stdin_line(line) {
            return Err(
                crate::validation::ValidationError::field("line", refused.to_string()).into(),
            );
        }
        let command = Command::Stdin {
            instance_id: id,
            line: line.to_owned(),
        };
        self.instance_command(id, command, origin.into()).await
    }

    /// Asks the worker of a live `instance` to hand over its console tail (the host has not seen
    /// its console from the start); the tail arrives through
    /// [`WorkerGateway::keep_console_tail`](crate::host::WorkerGateway::keep_console_tail).
    pub async fn request_console_tail(
        &self,
        instance: &Instance,
        origin: impl Into<Origin>,
    ) -> Result<Uuid, HostError> {
        let command = Command::SendConsoleTail {
            instance_id: instance.id,
        };
        self.sender
            .send(
                (instance.worker_id, instance.worker_epoch),
                command,
                origin.into(),
            )
            .await
    }

    /// The console tail kept for `instance`, if one is.
    pub async fn console_tail(
        &self,
        instance: InstanceId,
    ) -> Result<Option<ConsoleTail>, HostError> {
        Ok(self.store.console_tails.console_tail(instance).await?)
    }

    /// One instance.
    pub async fn get_instance(&self, id: InstanceId) -> Result<Instance, HostError> {
        Ok(self.store.instances.get_instance(id).await?)
    }

    /// A page of instances.
    pub async fn list_instances(
        &self,
        filter: &InstanceFilter,
    ) -> Result<Vec<Instance>, HostError> {
        Ok(self.store.instances.list_instances(filter).await?)
    }

    /// Status history of a worker or an instance.
    pub async fn status_history(
        &self,
        entity: Entity,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Vec<StatusEvent>, HostError> {
        Ok(self
            .store
            .status
            .status_history(entity, after, limit.clamp(1, 500))
            .await?)
    }

    /// One command record.
    pub async fn get_command(&self, id: Uuid) -> Result<CommandRecord, HostError> {
        Ok(self.store.commands.get_command(id).await?)
    }

    /// An instance whose start never reached its worker is `crashed`, not left `created`.
    async fn end_undelivered(&self, id: InstanceId, error: &HostError) {
        let now = self.clock.now();
        let change = StatusChange::undelivered(Uuid::new_v4(), id, error.to_string(), now);
        // The store may be what failed the start: it is asked again for a few seconds (the
        // same change, so a write that did land is not made twice), or the instance would stay
        // `created` for ever.
        let deadline = tokio::time::Instant::now() + UNDELIVERED_PATIENCE;
        let mut pause = std::time::Duration::from_millis(50);
        loop {
            match self.store.status.apply_status(&change).await {
                // Recorded, or no longer `created` (the command sweep ended it meanwhile, or it
                // started after all): its status stands.
                Ok(_) | Err(crate::ports::StoreError::Conflict { .. }) => return,
                Err(e) if e.is_transient() && tokio::time::Instant::now() + pause < deadline => {
                    tracing::warn!(instance_id = id.get(), error = %e, retry_in = ?pause, "could not record an undelivered start yet");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(std::time::Duration::from_secs(1));
                }
                Err(e) => {
                    tracing::error!(instance_id = id.get(), error = %e, "could not record an undelivered start");
                    return;
                }
            }
        }
    }

    async fn instance_command(
        &self,
        id: InstanceId,
        command: Command,
        origin: Origin,
    ) -> Result<Uuid, HostError> {
        let instance = self.store.instances.get_instance(id).await?;
        if instance.status.is_terminal() {
            return Err(HostError::conflict(
                &id,
                format!(
                    "is {}: it has ended; start its config again for a new instance",
                    instance.status
                ),
            ));
        }
        // Sealed for the registration that runs it: if its worker restarted since, the new
        // registration refuses it (the instance is ended by reconciliation).
        self.sender
            .send((instance.worker_id, instance.worker_epoch), command, origin)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::CommandState;
    use crate::host::HostService;
    use crate::status::Status;
    use crate::testing::fixture;
    use crate::worker::{Registered, WorkerRegistration};

    async fn register(host: &HostService, name: &str, capacity: u32) -> Registered {
        host.gateway()
            .register_worker(&WorkerRegistration {
                name: name.to_owned(),
                version: "1".to_owned(),
                capacity,
                labels: BTreeMap::new(),
                taken_up: Vec::new(),
            })
            .await
            .expect("register")
    }

    #[tokio::test]
    async fn a_start_goes_to_the_least_busy_worker_and_its_command_is_delivered() {
        let host = HostService::in_memory().await.expect("host");
        let busy = register(&host, "busy", 4).await;
        let idle = register(&host, "idle", 4).await;
        let config = fixture::config(host.store()).await;
        let other = fixture::config(host.store()).await;
        let mut on_busy = StartRequest::new(other);
        on_busy.worker = Some("busy".to_owned());
        host.instances()
            .start(&on_busy, "test")
            .await
            .expect("start on busy");
        assert_eq!(
            host.store()
                .instances
                .count_active_by_worker()
                .await
                .unwrap(),
            [(busy.worker_id, 1)]
        );

        let started = host
            .instances()
            .start(&StartRequest::new(config), "test")
            .await
            .expect("start");
        assert_eq!(
            started.worker_id, idle.worker_id,
            "the one with none running"
        );
        let command = host
            .instances()
            .get_command(started.command_id)
            .await
            .unwrap();
        assert_eq!(command.state, CommandState::Delivered);
        assert_eq!(command.worker_id, idle.worker_id);
        let instance = host
            .instances()
            .get_instance(started.instance_id)
            .await
            .unwrap();
        assert_eq!(instance.status, Status::Created);
        assert_eq!(instance.worker_epoch, idle.epoch);

        // A second of the same config: not where it runs already.
        let second = host
            .instances()
            .start(&StartRequest::new(config), "test")
            .await
            .expect("second start");
        assert_eq!(second.worker_id, busy.worker_id);
        let mut again = StartRequest::new(config);
        again.worker = Some("idle".to_owned());
        let refused = host.instances().start(&again, "test").await.unwrap_err();
        assert!(
            matches!(&refused, HostError::NoWorker { detail } if detail.contains(&started.instance_id.to_string())),
            "names the instance that runs it there: {refused}"
        );
    }

    #[tokio::test]
    async fn a_start_command_carries_the_game_and_config_it_placed() {
        let host = HostService::in_memory().await.expect("host");
        let worker = register(&host, "w", 4).await;
        let config = fixture::config(host.store()).await;
        let mut commands = host
            .bus()
            .consume_commands(worker.worker_id, 1)
            .await
            .expect("the worker's queue");
        let started = host
            .instances()
            .start(&StartRequest::new(config), "test")
            .await
            .expect("start");
        let delivery = tokio::time::timeout(std::time::Duration::from_secs(5), commands.next())
            .await
            .expect("a command in time")
            .expect("a command")
            .expect("no bus error");
        let published: crate::command::CommandEnvelope =
            delivery.message.decode().expect("an envelope");
        delivery.ack().await.expect("ack");
        let placed = host
            .catalogue()
            .config_bundle(config)
            .await
            .expect("bundle");
        assert_eq!(published.id, started.command_id);
        assert_eq!(
            published.command,
            Command::Start {
                instance_id: started.instance_id,
                config_id: config,
                bundle: Some(Box::new(placed)),
            }
        );
        let record = host
            .instances()
            .get_command(started.command_id)
            .await
            .unwrap();
        assert_eq!(record.envelope, published, "recorded as sent");
    }

    #[tokio::test]
    async fn a_start_of_a_missing_config_is_not_found_and_names_it() {
        let host = HostService::in_memory().await.expect("host");
        register(&host, "w", 4).await;
        let refused = host
            .instances()
            .start(&StartRequest::new(ConfigId(404)), "test")
            .await
            .unwrap_err();
        assert!(
            matches!(&refused, HostError::NotFound { .. }) && refused.to_string().contains("404"),
            "{refused}"
        );
    }

    #[tokio::test]
    async fn a_start_with_no_worker_creates_nothing() {
        let host = HostService::in_memory().await.expect("host");
        let config = fixture::config(host.store()).await;
        let refused = host
            .instances()
            .start(&StartRequest::new(config), "test")
            .await
            .unwrap_err();
        assert!(matches!(refused, HostError::NoWorker { .. }), "{refused}");
        let all = host
            .instances()
            .list_instances(&InstanceFilter::default())
            .await
            .unwrap();
        assert!(all.is_empty(), "no instance left behind: {all:?}");
    }

    #[tokio::test]
    async fn commands_to_an_ended_instance_and_bad_console_lines_are_refused() {
        let host = HostService::in_memory().await.expect("host");
        register(&host, "w", 4).await;
        let config = fixture::config(host.store()).await;
        let started = host
            .instances()
            .start(&StartRequest::new(config), "test")
            .await
            .unwrap();
        let id = started.instance_id;
        let refused = host
            .instances()
            .stdin(id, "two\nlines", "test")
            .await
            .unwrap_err();
        assert!(
            matches!(&refused, HostError::Invalid(v) if v.to_string().contains("line")),
            "{refused}"
        );
        let crashed = StatusChange::undelivered(Uuid::new_v4(), id, "test".into(), fixture::now());
        host.store().status.apply_status(&crashed).await.unwrap();
        for refused in [
            host.instances().stop(id, "test").await.unwrap_err(),
            host.instances().kill(id, "test").await.unwrap_err(),
            host.instances().restart(id, "test").await.unwrap_err(),
            host.instances()
                .stdin(id, "say hi", "test")
                .await
                .unwrap_err(),
        ] {
            assert!(
                matches!(&refused, HostError::Conflict { detail, .. } if detail.contains("ended")),
                "{refused}"
            );
        }
    }
}
