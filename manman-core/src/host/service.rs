//! [`HostService`]: the operator's and the worker's requests, turned into records and commands.

use crate::bus::Bus;
use crate::command::{Command, CommandEnvelope, CommandRecord, CommandState, Origin};
use crate::config::{ConfigSpec, GameServerConfig};
use crate::game_server::{GameServer, NewGameServer};
use crate::host::placement::{Wanted, place};
use crate::host::{BusKeys, Consumption, HostError, StoreSnapshot};
use crate::id::{ConfigId, GameServerId, InstanceId, WorkerId};
use crate::instance::{Instance, InstanceFilter, NewInstance};
use crate::ports::{Clock, ConfigBundle, StatusChange};
use crate::status::{Entity, StatusEvent};
use crate::store::Store;
use crate::worker::{Heartbeat, Registered, Worker, WorkerRegistration};
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

/// Whether the host's backends answer and its status processor consumes (`/readyz`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    /// The store: `Err` says why it is not ready.
    pub store: Result<(), String>,
    /// The message bus: `Err` says why it is not ready.
    pub bus: Result<(), String>,
    /// The status processor consumes its queue, declared and bound to `manman.events`: `Err`
    /// says why not (statuses would go nowhere, or wait unread).
    pub status_processor: Result<(), String>,
}

impl Readiness {
    /// Both answer and the status processor consumes.
    pub fn is_ready(&self) -> bool {
        self.store.is_ok() && self.bus.is_ok() && self.status_processor.is_ok()
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

/// The host's orchestration: catalogue, placement, commands and their records.
#[derive(Debug, Clone)]
pub struct HostService {
    store: Store,
    bus: Bus,
    clock: Arc<dyn Clock>,
    keys: BusKeys,
    command_ttl: chrono::Duration,
    embedded_worker: Option<String>,
    status_consumption: Consumption,
    /// When reconciliation last asked a worker to stop each instance it must not run: asked
    /// again only after a command's time to live.
    reconciliation_stops: Arc<std::sync::Mutex<HashMap<InstanceId, tokio::time::Instant>>>,
}

/// Who a stop issued by reconciliation is recorded as issued by.
pub const RECONCILIATION: &str = "reconciliation";

/// How long a start that failed keeps trying to record its instance `crashed` (`undelivered`)
/// while the store is unavailable.
const UNDELIVERED_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);

impl HostService {
    /// A host whose store and bus live in this process ([`crate::memory`]), on the system
    /// clock: nothing is kept. For trying things out, embedding and tests.
    #[cfg(feature = "memory")]
    pub async fn in_memory() -> Result<Self, crate::ports::BusError> {
        Ok(Self::new(
            Store::from_adapter(crate::memory::MemoryStore::new()),
            Bus::in_memory().await?,
            Arc::new(crate::ports::SystemClock),
        ))
    }

    /// A host over a store and a bus.
    pub fn new(store: Store, bus: Bus, clock: Arc<dyn Clock>) -> Self {
        Self {
            keys: BusKeys::new(&store),
            store,
            bus,
            clock,
            command_ttl: crate::command::DEFAULT_COMMAND_TTL,
            embedded_worker: None,
            status_consumption: Consumption::new(),
            reconciliation_stops: Arc::default(),
        }
    }

    /// Whether this host's status processor consumes its queue: give it to the processor
    /// ([`crate::host::StatusProcessor::with_consumption`]) and [`Self::readiness`] says so.
    pub fn status_consumption(&self) -> &Consumption {
        &self.status_consumption
    }

    /// Names the worker that runs in this host's own process (`manman up`'s): shutting it
    /// down would take the API down with it, so [`Self::shutdown_worker`] refuses it.
    pub fn with_embedded_worker(mut self, name: impl Into<String>) -> Self {
        self.embedded_worker = Some(name.into());
        self
    }

    /// How long a command stays deliverable (default 60 s); then it is dead-lettered and
    /// recorded `expired`.
    pub fn with_command_ttl(mut self, ttl: std::time::Duration) -> Self {
        self.command_ttl =
            chrono::Duration::from_std(ttl).unwrap_or(crate::command::DEFAULT_COMMAND_TTL);
        self
    }

    /// The store it uses.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The bus it uses.
    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// The clock that orders its records.
    pub fn clock(&self) -> Arc<dyn Clock> {
        Arc::clone(&self.clock)
    }

    /// Adds a game to the catalogue.
    pub async fn create_game(&self, game: &NewGameServer) -> Result<GameServer, HostError> {
        game.validate()?;
        Ok(self
            .store
            .catalogue
            .create_game(game, self.clock.now())
            .await?)
    }

    /// Every game.
    pub async fn list_games(&self) -> Result<Vec<GameServer>, HostError> {
        Ok(self.store.catalogue.list_games().await?)
    }

    /// One game.
    pub async fn get_game(&self, id: GameServerId) -> Result<GameServer, HostError> {
        Ok(self.store.catalogue.get_game(id).await?)
    }

    /// Adds a config to a game.
    pub async fn create_config(
        &self,
        game: GameServerId,
        spec: &ConfigSpec,
    ) -> Result<GameServerConfig, HostError> {
        spec.validate()?;
        Ok(self
            .store
            .catalogue
            .create_config(game, spec, self.clock.now())
            .await?)
    }

    /// What `/metrics` reads from the store: instances by status and the workers.
    pub async fn store_snapshot(&self) -> Result<StoreSnapshot, HostError> {
        Ok(StoreSnapshot {
            instances: self.store.instances.count_by_status().await?,
            workers: self.store.workers.list_workers().await?,
            at: self.clock.now(),
        })
    }

    /// Whether the store and the bus answer, each within `timeout`, and whether the status
    /// processor consumes its bound queue: `Err` says why not.
    pub async fn readiness(&self, timeout: std::time::Duration) -> Readiness {
        let store = async {
            // A read by a unique index: one round trip, whatever the catalogue's size.
            match tokio::time::timeout(timeout, self.store.catalogue.find_game("")).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no answer within {timeout:?}")),
            }
        };
        let bus = async {
            match tokio::time::timeout(timeout, self.bus.probe()).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no answer within {timeout:?}")),
            }
        };
        let (store, bus) = tokio::join!(store, bus);
        Readiness {
            store,
            bus,
            status_processor: self.status_consumption.check(),
        }
    }

    /// Renames a game or changes its type (instances started later use it).
    pub async fn update_game(
        &self,
        id: GameServerId,
        game: &NewGameServer,
    ) -> Result<GameServer, HostError> {
        game.validate()?;
        Ok(self.store.catalogue.update_game(id, game).await?)
    }

    /// Deletes a game without configs (`Conflict` naming them otherwise).
    pub async fn delete_game(&self, id: GameServerId) -> Result<(), HostError> {
        Ok(self.store.catalogue.delete_game(id).await?)
    }

    /// Replaces a config's spec; running instances keep what they started with.
    pub async fn update_config(
        &self,
        id: ConfigId,
        spec: &ConfigSpec,
    ) -> Result<GameServerConfig, HostError> {
        spec.validate()?;
        Ok(self.store.catalogue.update_config(id, spec).await?)
    }

    /// Deletes a config and the records of its ended instances; `Conflict` naming the active
    /// ones while any is.
    pub async fn delete_config(&self, id: ConfigId) -> Result<(), HostError> {
        Ok(self.store.catalogue.delete_config(id).await?)
    }

    /// Configs of one game (which must exist), or of all games.
    pub async fn list_configs(
        &self,
        game: Option<GameServerId>,
    ) -> Result<Vec<GameServerConfig>, HostError> {
        if let Some(game) = game {
            self.store.catalogue.get_game(game).await?;
        }
        Ok(self.store.catalogue.list_configs(game).await?)
    }

    /// One config.
    pub async fn get_config(&self, id: ConfigId) -> Result<GameServerConfig, HostError> {
        Ok(self.store.catalogue.get_config(id).await?)
    }

    /// A config with its game, as a worker needs it.
    pub async fn config_bundle(&self, id: ConfigId) -> Result<ConfigBundle, HostError> {
        let config = self.store.catalogue.get_config(id).await?;
        let game = self.store.catalogue.get_game(config.game_server_id).await?;
        Ok(ConfigBundle { game, config })
    }

    /// What `worker` starts `instance` with, if it is its own to start: placed on it, on its
    /// current registration, and not ended. `Forbidden` for another worker's instance,
    /// `Conflict` for an ended one or one of an older registration, `NotFound` for none.
    pub async fn instance_config(
        &self,
        worker: WorkerId,
        instance: InstanceId,
    ) -> Result<ConfigBundle, HostError> {
        let found = self.store.instances.get_instance(instance).await?;
        if found.worker_id != worker {
            return Err(HostError::Forbidden {
                detail: format!(
                    "{instance} is placed on {}, not {worker}: a worker starts only its own instances",
                    found.worker_id
                ),
            });
        }
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
        self.config_bundle(found.config_id).await
    }

    /// Every worker.
    pub async fn list_workers(&self) -> Result<Vec<Worker>, HostError> {
        Ok(self.store.workers.list_workers().await?)
    }

    /// One worker.
    pub async fn get_worker(&self, id: WorkerId) -> Result<Worker, HostError> {
        Ok(self.store.workers.get_worker(id).await?)
    }

    /// Asks a worker to stop every instance and exit. The embedded worker (see
    /// [`Self::with_embedded_worker`]) and workers that are not live are a `Conflict`.
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
        self.send((id, worker.epoch), Command::ShutdownWorker, origin.into())
            .await
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

    /// Starts a config: places it, creates the instance, sends the start command.
    pub async fn start(
        &self,
        request: &StartRequest,
        origin: impl Into<Origin>,
    ) -> Result<Started, HostError> {
        let config = self.store.catalogue.get_config(request.config_id).await?;
        let workers = self.store.workers.list_workers().await?;
        let mut active = HashMap::new();
        let mut running = HashMap::new();
        // Active instances only (an index of them), never the whole history.
        for instance in self.store.instances.active_instances(None).await? {
            *active.entry(instance.worker_id).or_insert(0u32) += 1;
            if instance.config_id == config.id {
                running.insert(instance.worker_id, instance.id);
            }
        }
        let wanted = Wanted {
            name: request.worker.as_deref(),
            labels: &request.labels,
            running: &running,
        };
        let worker = place(&workers, &active, wanted)?;
        let instance = self
            .store
            .instances
            .create_instance(&NewInstance {
                config_id: config.id,
                worker_id: worker.id,
                worker_epoch: worker.epoch,
                created_at: self.clock.now(),
            })
            .await?;
        let command = Command::Start {
            instance_id: instance.id,
            config_id: config.id,
        };
        let command_id = match self
            .send((worker.id, worker.epoch), command, origin.into())
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
        self.bus.declare_worker_queue(worker.id).await?;
        let key = self.keys.worker_key(worker.id, worker.epoch).await?;
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
        if current {
            let unwanted =
                super::reconcile::reconcile(&self.store, self.clock.as_ref(), heartbeat).await?;
            for instance_id in unwanted {
                self.stop_unwanted((heartbeat.worker_id, heartbeat.epoch), instance_id)
                    .await;
            }
            Ok(())
        } else {
            Err(HostError::conflict(
                &heartbeat.worker_id,
                format!(
                    "epoch {} was superseded by a newer registration",
                    heartbeat.epoch
                ),
            ))
        }
    }

    /// Asks `worker` to stop an instance it must not run, unless that was asked within a
    /// command's time to live. A failure is logged: the next heartbeat asks again.
    async fn stop_unwanted(&self, (worker, epoch): (WorkerId, i64), instance_id: InstanceId) {
        let now = tokio::time::Instant::now();
        let ttl = self.command_ttl.to_std().unwrap_or_default();
        {
            let mut asked = self
                .reconciliation_stops
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            asked.retain(|_, at| now.duration_since(*at) < ttl);
            if asked.contains_key(&instance_id) {
                return;
            }
            asked.insert(instance_id, now);
        }
        let command = Command::Stop { instance_id };
        if let Err(e) = self
            .send((worker, epoch), command, Origin::from(RECONCILIATION))
            .await
        {
            tracing::warn!(instance_id = instance_id.get(), worker_id = worker.get(), error = %e, "could not ask a worker to stop an instance the host shows ended");
            self.reconciliation_stops
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&instance_id);
        }
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
        self.send((instance.worker_id, instance.worker_epoch), command, origin)
            .await
    }

    /// Records a command `pending`, publishes it, then marks it `delivered` (or `failed` with
    /// the reason when the bus refused it).
    pub(super) async fn send(
        &self,
        (worker, epoch): (WorkerId, i64),
        command: Command,
        origin: Origin,
    ) -> Result<Uuid, HostError> {
        let key = self.keys.worker_key(worker, epoch).await?;
        let now = self.clock.now();
        let mut envelope = CommandEnvelope::new(command, origin.issued_by, now);
        envelope.correlation_id = origin.correlation_id;
        envelope.expires_at = now + self.command_ttl;
        let id = envelope.id;
        self.store
            .commands
            .insert_command(&CommandRecord {
                id,
                worker_id: worker,
                envelope: envelope.clone(),
                state: CommandState::Pending,
                detail: None,
                updated_at: now,
            })
            .await?;
        match self.bus.send_command(&key, &envelope).await {
            Ok(()) => {
                // The worker may already have answered: a final state stays as it is.
                let _ = self
                    .store
                    .commands
                    .transition_command(id, CommandState::Delivered, None, self.clock.now())
                    .await;
                Ok(id)
            }
            Err(e) => {
                let detail = format!("could not be sent to {worker}: {e}");
                match self
                    .store
                    .commands
                    .transition_command(id, CommandState::Failed, Some(&detail), self.clock.now())
                    .await
                {
                    // Already final: the command sweep expired it while the bus kept it waiting.
                    Ok(_) | Err(crate::ports::StoreError::Conflict { .. }) => {}
                    Err(store) => return Err(store.into()),
                }
                Err(e.into())
            }
        }
    }
}
