//! The repository ports: the host's truth (catalogue, workers, instances, status history,
//! command records, credentials). Every method is one atomic change.

use crate::auth::{ApiToken, Scope, SecretHash, WorkerCredential};
use crate::command::{CommandRecord, CommandState};
use crate::config::{ConfigSpec, GameServerConfig};
use crate::console::ConsoleTail;
use crate::game_server::{GameServer, NewGameServer};
use crate::id::{ConfigId, GameServerId, InstanceId, TokenId, WorkerId};
use crate::instance::{Instance, InstanceFilter, NewInstance};
use crate::signing::BusSecret;
use crate::status::{Cause, Entity, Sequence, Status, StatusEvent};
use crate::worker::{Worker, WorkerRegistration};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::fmt::Debug;
use uuid::Uuid;

/// What can go wrong in a store. Each variant names what it is about.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// It does not exist.
    #[error("{what} does not exist")]
    NotFound {
        /// What was looked for, e.g. `config 3`.
        what: String,
    },
    /// It clashes with what is stored (a unique name, a concurrent change).
    #[error("{what}: {detail}")]
    Conflict {
        /// What clashes, e.g. `game server "cs2"`.
        what: String,
        /// How, and what to do.
        detail: String,
    },
    /// It refers to something missing or breaks a rule of the schema.
    #[error("{detail}")]
    Invalid {
        /// What is wrong.
        detail: String,
    },
    /// The store cannot be reached now: retry later.
    #[error("the store is unavailable: {source}")]
    Unavailable {
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Anything else; a bug or a broken store.
    #[error("store failure: {source}")]
    Other {
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl StoreError {
    /// `NotFound` for `what`.
    pub fn not_found(what: &(impl std::fmt::Display + ?Sized)) -> Self {
        Self::NotFound {
            what: what.to_string(),
        }
    }

    /// `Conflict` about `what`.
    pub fn conflict(what: &(impl std::fmt::Display + ?Sized), detail: impl Into<String>) -> Self {
        Self::Conflict {
            what: what.to_string(),
            detail: detail.into(),
        }
    }

    /// `Conflict`: a game with configs cannot be deleted.
    pub fn game_has_configs(game: GameServerId, configs: &[ConfigId]) -> Self {
        let configs: Vec<String> = configs.iter().map(ToString::to_string).collect();
        Self::conflict(
            &game,
            format!("it still has {}: delete them first", configs.join(", ")),
        )
    }

    /// `Conflict`: a config with active instances cannot be deleted.
    pub fn config_in_use(config: ConfigId, active: &[InstanceId]) -> Self {
        let active: Vec<String> = active.iter().map(ToString::to_string).collect();
        let verb = if active.len() == 1 { "is" } else { "are" };
        Self::conflict(
            &config,
            format!("{} {verb} still active: stop them first", active.join(", ")),
        )
    }

    /// Whether retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

/// Games and their configs.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait CatalogueRepository: Send + Sync + Debug + 'static {
    /// Adds a game. `Conflict` when the name (or a Steam app id) is taken.
    async fn create_game(
        &self,
        game: &NewGameServer,
        at: DateTime<Utc>,
    ) -> Result<GameServer, StoreError>;
    /// One game.
    async fn get_game(&self, id: GameServerId) -> Result<GameServer, StoreError>;
    /// A game by its unique name.
    async fn find_game(&self, name: &str) -> Result<Option<GameServer>, StoreError>;
    /// Every game, by id.
    async fn list_games(&self) -> Result<Vec<GameServer>, StoreError>;
    /// Adds a config to a game. `NotFound` for a missing game; `Conflict` for a taken name or a
    /// second default.
    async fn create_config(
        &self,
        game: GameServerId,
        spec: &ConfigSpec,
        at: DateTime<Utc>,
    ) -> Result<GameServerConfig, StoreError>;
    /// One config.
    async fn get_config(&self, id: ConfigId) -> Result<GameServerConfig, StoreError>;
    /// One config with its game, as a start carries it; a store that can reads both at once.
    async fn get_config_bundle(
        &self,
        id: ConfigId,
    ) -> Result<crate::ports::ConfigBundle, StoreError> {
        let config = self.get_config(id).await?;
        let game = self.get_game(config.game_server_id).await?;
        Ok(crate::ports::ConfigBundle { game, config })
    }
    /// Configs of one game, or of all games, by id.
    async fn list_configs(
        &self,
        game: Option<GameServerId>,
    ) -> Result<Vec<GameServerConfig>, StoreError>;
    /// Renames a game or changes its type. `NotFound`; `Conflict` for a taken name or app id.
    async fn update_game(
        &self,
        id: GameServerId,
        game: &NewGameServer,
    ) -> Result<GameServer, StoreError>;
    /// Deletes a game. `NotFound`; `Conflict` (naming them) while it has configs.
    async fn delete_game(&self, id: GameServerId) -> Result<(), StoreError>;
    /// Replaces a config's spec (instances started later use it). `NotFound`; `Conflict` for a
    /// taken name or a second default.
    async fn update_config(
        &self,
        id: ConfigId,
        spec: &ConfigSpec,
    ) -> Result<GameServerConfig, StoreError>;
    /// Deletes a config with the records of its ended instances (their history and commands go
    /// too). `NotFound`; `Conflict` (naming them) while an instance of it is active, and then
    /// nothing is deleted.
    async fn delete_config(&self, id: ConfigId) -> Result<(), StoreError>;
}

/// Workers, their epochs and leases.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait WorkerRepository: Send + Sync + Debug + 'static {
    /// Registers a worker by name: a new one gets epoch 1, a known one the next epoch. Its
    /// status becomes `created` (recorded in the history with cause `registered`).
    async fn register_worker(
        &self,
        registration: &WorkerRegistration,
        at: DateTime<Utc>,
    ) -> Result<Worker, StoreError>;
    /// Records a heartbeat if `epoch` is still the worker's epoch; `false` when it is not
    /// (a newer registration superseded it).
    async fn record_heartbeat(
        &self,
        id: WorkerId,
        epoch: i64,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// One worker.
    async fn get_worker(&self, id: WorkerId) -> Result<Worker, StoreError>;
    /// Every worker, by id.
    async fn list_workers(&self) -> Result<Vec<Worker>, StoreError>;
    /// The lease sweep: marks `lost` every live worker (`created`, `initializing`, `running`)
    /// whose last heartbeat is older than `stale_before`, and the active instances of each, with
    /// history rows (cause `lease-expired`, host clock `at`). Returns the workers it marked. Safe
    /// with several host replicas: each worker is marked by exactly one caller.
    async fn expire_leases(
        &self,
        stale_before: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Result<Vec<WorkerId>, StoreError>;
}

/// Instances.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait InstanceRepository: Send + Sync + Debug + 'static {
    /// Creates an instance in status `created` (history cause `placed`). `NotFound` when the
    /// config or the worker is missing.
    async fn create_instance(&self, new: &NewInstance) -> Result<Instance, StoreError>;
    /// A new instance id, for [`Self::create_started_instance`]: its start command names the
    /// instance before both are written together. Each call gives an id no instance has had
    /// or will be given otherwise; one never used leaves a gap.
    async fn reserve_instance_id(&self) -> Result<InstanceId, StoreError>;
    /// Creates instance `id` (reserved with [`Self::reserve_instance_id`]) as
    /// [`Self::create_instance`] does, and records its start command `start` (`pending`, sent
    /// to the instance's worker), in one transaction: both or neither. `NotFound` when the
    /// config or the worker is missing; `Conflict` when the id or the command's id is taken.
    async fn create_started_instance(
        &self,
        id: InstanceId,
        new: &NewInstance,
        start: &CommandRecord,
    ) -> Result<Instance, StoreError>;
    /// One instance.
    async fn get_instance(&self, id: InstanceId) -> Result<Instance, StoreError>;
    /// A page of instances, by id.
    async fn list_instances(&self, filter: &InstanceFilter) -> Result<Vec<Instance>, StoreError>;
    /// How many instances have each status (statuses without any are left out).
    async fn count_by_status(&self) -> Result<Vec<(Status, u64)>, StoreError>;
    /// Every instance not ended (`created`, `initializing`, `running`, `lost`) — of `worker`
    /// only, when given — by id. Its cost follows the active instances, never the history:
    /// placement, start and every heartbeat's reconciliation ask it.
    async fn active_instances(&self, worker: Option<WorkerId>)
    -> Result<Vec<Instance>, StoreError>;
    /// The active instances of `config`, by id: where it runs already (placement refuses a
    /// second on one worker). From the same index as [`Self::active_instances`].
    async fn active_instances_of_config(
        &self,
        config: ConfigId,
    ) -> Result<Vec<Instance>, StoreError>;
    /// How many active instances each worker has (workers without any are left out): what
    /// placement balances on. Counted from the index of active instances, never the history.
    async fn count_active_by_worker(&self) -> Result<Vec<(WorkerId, u64)>, StoreError>;
    /// Makes registration `epoch` of `worker` the one that runs `instances`: those of them
    /// placed on an older registration of the same worker and not ended (a restarted worker
    /// took their servers up again). Returns the ones it took over; the others are left as
    /// they are.
    async fn take_over_instances(
        &self,
        worker: WorkerId,
        epoch: i64,
        instances: &[InstanceId],
    ) -> Result<Vec<InstanceId>, StoreError>;
}

/// A status change to apply: history row and current status together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusChange {
    /// Id of the message that caused it; applying the same id twice is a no-op.
    pub event_id: Uuid,
    /// Whose status.
    pub entity: Entity,
    /// The status it must have now (a conditional update: else `Conflict`).
    pub from: Status,
    /// The new status.
    pub to: Status,
    /// Why.
    pub cause: Cause,
    /// For a person.
    pub detail: Option<String>,
    /// Host clock.
    pub as_of: DateTime<Utc>,
    /// Sender clock.
    pub reported_at: DateTime<Utc>,
    /// Fields of the entity to set along with the status.
    pub update: EntityUpdate,
    /// The sender's number of the report that caused it, when it has one: then the change is
    /// also conditional on it — applied only when the entity has no last applied sequence or
    /// one below it (a compare-and-set beside the status's, else `Conflict` and nothing
    /// written) — and it becomes the entity's last applied sequence, with the status. `None`
    /// (changes the host makes, reports of older senders) leaves the last applied sequence as
    /// it is.
    pub sequence: Option<Sequence>,
}

impl StatusChange {
    /// An instance whose start never ran: `created` → `crashed` (cause `undelivered`), ended
    /// `now`. Whoever notices it (the start that failed to publish, the dead-letter watcher,
    /// the command sweep) records the same change; `event_id` (the start command's id where
    /// there is one) makes a second record of it a duplicate.
    pub fn undelivered(
        event_id: Uuid,
        instance: InstanceId,
        detail: String,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            event_id,
            entity: Entity::Instance(instance),
            from: Status::Created,
            to: Status::Crashed,
            cause: Cause::Undelivered,
            detail: Some(detail),
            as_of: now,
            reported_at: now,
            update: EntityUpdate {
                ended_at: Some(now),
                ..EntityUpdate::default()
            },
            sequence: None,
        }
    }
}

/// An entity's current status and the last numbered report applied to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CurrentStatus {
    /// The status.
    pub status: Status,
    /// The sequence of the last numbered report applied ([`StatusChange::sequence`]); `None`
    /// before the first.
    pub sequence: Option<Sequence>,
    /// The worker it belongs to: an instance's worker, a worker itself.
    pub owner: WorkerId,
}

/// Fields set together with a status; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntityUpdate {
    /// Instance: first spawn.
    pub started_at: Option<DateTime<Utc>>,
    /// Instance: became ready.
    pub ready_at: Option<DateTime<Utc>>,
    /// Instance or worker: ended.
    pub ended_at: Option<DateTime<Utc>>,
    /// Instance: exit code.
    pub exit_code: Option<i32>,
    /// Instance: exit signal.
    pub exit_signal: Option<i32>,
    /// Instance: restarts so far.
    pub restart_count: Option<u32>,
}

/// The result of applying a status change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// Recorded.
    Applied(StatusEvent),
    /// This event id was applied before; nothing changed.
    Duplicate,
}

/// Status history and current status.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait StatusRepository: Send + Sync + Debug + 'static {
    /// Appends the history row and sets the current status in one transaction, only if the
    /// entity's status is still `change.from` and, for a numbered change, its last applied
    /// sequence is below `change.sequence` (else `Conflict`, nothing written).
    async fn apply_status(&self, change: &StatusChange) -> Result<ApplyOutcome, StoreError>;
    /// History of one entity, oldest first, rows with `id > after`, at most `limit`.
    async fn status_history(
        &self,
        entity: Entity,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Vec<StatusEvent>, StoreError>;
    /// Applies several changes, in order, as one transaction where the store has them (one
    /// commit for the lot). Each change is conditional and deduplicated as in
    /// [`StatusRepository::apply_status`]; a change that fails does not stop the others, and
    /// changes of one entity may chain (the second's `from` is the first's `to`, its sequence
    /// above the first's). The outer
    /// error is for a store that could not be used at all (nothing was written).
    async fn apply_statuses(
        &self,
        changes: &[StatusChange],
    ) -> Result<Vec<Result<ApplyOutcome, StoreError>>, StoreError>;
    /// The current status of each entity and its last applied sequence, in order (`None`: it
    /// does not exist).
    async fn current_statuses(
        &self,
        entities: &[Entity],
    ) -> Result<Vec<Option<CurrentStatus>>, StoreError>;
    /// Retention: deletes at most `limit` history rows recorded before `before`; returns how
    /// many. (Current statuses are on the entities and are kept.)
    async fn prune_history(&self, before: DateTime<Utc>, limit: u32) -> Result<u64, StoreError>;
}

/// Command records.
///
/// It has no mock with the `mocks` feature: mockall cannot mock `transition_command`, whose
/// `detail: Option<&str>` holds a reference with an elided lifetime inside another type, and
/// naming that lifetime would make every adapter's signature name it too. A test wraps a
/// [`crate::memory::MemoryStore`] instead, to inject a failure.
#[async_trait]
pub trait CommandRepository: Send + Sync + Debug + 'static {
    /// Records a new command. `Conflict` when the id exists.
    async fn insert_command(&self, record: &CommandRecord) -> Result<(), StoreError>;
    /// One command.
    async fn get_command(&self, id: Uuid) -> Result<CommandRecord, StoreError>;
    /// Moves a command to `to` if its state allows ([`CommandState::can_become`]); else
    /// `Conflict` and nothing changes.
    async fn transition_command(
        &self,
        id: Uuid,
        to: CommandState,
        detail: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<CommandRecord, StoreError>;
    /// Records `worker`'s answer to command `id`: moves it to `to` as
    /// [`Self::transition_command`] does, only if it was sent to `worker` — in one statement
    /// where the store can. `None` when nothing moved: there is no such command, it was sent to
    /// another worker, or its state does not allow `to` (the caller reads it to tell which).
    async fn answer_command(
        &self,
        id: Uuid,
        worker: WorkerId,
        to: CommandState,
        detail: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<Option<CommandRecord>, StoreError> {
        match self.get_command(id).await {
            Ok(record) if record.worker_id == worker => {
                match self.transition_command(id, to, detail, at).await {
                    Ok(record) => Ok(Some(record)),
                    Err(StoreError::Conflict { .. }) => Ok(None),
                    Err(e) => Err(e),
                }
            }
            Ok(_) | Err(StoreError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
    /// Records that the bus accepted command `id`: moves it from `pending` to `delivered`,
    /// changed at `at`, in one statement. `true` when it moved; `false` when it was not
    /// `pending` any more (the worker answered first, the sweep expired it) — then nothing
    /// changes, its state, detail and `updated_at` stay as they are, and that is no error. An
    /// unknown id is `false` too: telling it apart would take a second query, and the caller
    /// has just inserted the record.
    async fn mark_delivered(&self, id: Uuid, at: DateTime<Utc>) -> Result<bool, StoreError>;
    /// Retention: deletes at most `limit` records older than `before`, whatever their state, so
    /// that no record (nor the stdin line it holds) outlives the retention period; returns how
    /// many. A finished record (`succeeded`, `failed`, `expired`) is older when it was last
    /// changed before `before`; an unfinished one (`pending` or `delivered` for ever: its
    /// worker died, its dead letter was lost) when its last change and its `expires_at` are
    /// both before `before` — a command that may still be delivered is never deleted.
    async fn prune_commands(&self, before: DateTime<Utc>, limit: u32) -> Result<u64, StoreError>;
    /// The command sweep: moves to `expired` (with `detail`, changed at `at`) at most `limit`
    /// commands still `pending` or `delivered` whose `expires_at` is before `before`, the
    /// earliest expiry first, and returns them as they are now. Safe with several host
    /// replicas: the change is conditional on the state, so each command is moved (and
    /// returned) by exactly one caller.
    async fn expire_commands(
        &self,
        before: DateTime<Utc>,
        detail: &str,
        at: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<CommandRecord>, StoreError>;
}

/// The console tails of ended instances: their last lines, so that their console can be read
/// after any restart of host or worker (the worker sends it when an instance ends).
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait ConsoleTailRepository: Send + Sync + Debug + 'static {
    /// Keeps `tail` as `instance`'s, replacing what was kept before. `NotFound` when the
    /// instance does not exist.
    async fn keep_console_tail(
        &self,
        instance: InstanceId,
        tail: &ConsoleTail,
    ) -> Result<(), StoreError>;
    /// The tail kept for `instance`, if one is.
    async fn console_tail(&self, instance: InstanceId) -> Result<Option<ConsoleTail>, StoreError>;
    /// Retention: deletes the tails of at most `limit` instances that ended before `before`;
    /// returns how many. (A tail goes with its instance, too.)
    async fn prune_console_tails(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<u64, StoreError>;
}

/// Operator tokens and worker credentials, kept as hashes of their secrets.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait CredentialRepository: Send + Sync + Debug + 'static {
    /// Stores a new operator token. `Conflict` when the name or the hash is taken.
    async fn create_token(
        &self,
        name: &str,
        scope: Scope,
        hash: &SecretHash,
        at: DateTime<Utc>,
    ) -> Result<ApiToken, StoreError>;
    /// The token whose secret hashes to `hash`, revoked or not; `None` when there is none.
    async fn token_by_hash(&self, hash: &SecretHash) -> Result<Option<ApiToken>, StoreError>;
    /// Every token, revoked ones too, oldest first.
    async fn list_tokens(&self) -> Result<Vec<ApiToken>, StoreError>;
    /// Revokes a token (a revoked one stays revoked at its first time).
    async fn revoke_token(&self, id: TokenId, at: DateTime<Utc>) -> Result<ApiToken, StoreError>;
    /// Stores new worker credentials. `Conflict` when the client id is taken.
    async fn create_worker_credential(
        &self,
        client_id: &str,
        worker_name: &str,
        secret_hash: &SecretHash,
        at: DateTime<Utc>,
    ) -> Result<WorkerCredential, StoreError>;
    /// Credentials and their secret's hash; `None` when there are none with this client id.
    async fn worker_credential(
        &self,
        client_id: &str,
    ) -> Result<Option<(WorkerCredential, SecretHash)>, StoreError>;
    /// Every worker credential, revoked ones too, oldest first.
    async fn list_worker_credentials(&self) -> Result<Vec<WorkerCredential>, StoreError>;
    /// Revokes worker credentials (a revoked one stays revoked at its first time).
    async fn revoke_worker_credential(
        &self,
        client_id: &str,
        at: DateTime<Utc>,
    ) -> Result<WorkerCredential, StoreError>;
    /// The host's secret for signing bus messages ([`crate::signing`]): the stored one, or
    /// `candidate` stored now when there is none yet. Every replica gets the same, across
    /// restarts; two first callers at once agree on one of their candidates.
    async fn bus_secret(&self, candidate: &BusSecret) -> Result<BusSecret, StoreError>;
}
