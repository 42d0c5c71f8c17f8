//! [`MemoryStore`]: every repository port in one process, with the constraints of the SQL
//! schema (unique names, one default config per game, conditional status and command updates).

use super::credentials::Credentials;
use crate::command::{CommandRecord, CommandState};
use crate::config::{ConfigSpec, GameServerConfig};
use crate::console::ConsoleTail;
use crate::game_server::{GameServer, NewGameServer, ServerType};
use crate::id::{ConfigId, GameServerId, InstanceId, WorkerId};
use crate::instance::{Instance, InstanceFilter, NewInstance};
use crate::ports::{
    ApplyOutcome, CatalogueRepository, CommandRepository, ConsoleTailRepository, CurrentStatus,
    InstanceRepository, StatusChange, StatusRepository, StoreError, WorkerRepository,
};
use crate::status::{Cause, Entity, Sequence, Status, StatusEvent};
use crate::worker::{Worker, WorkerRegistration};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use uuid::Uuid;

/// Every repository port, in memory. Cloning shares the data.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
    credentials: Arc<Mutex<Credentials>>,
}

#[derive(Debug, Default)]
struct State {
    games: BTreeMap<GameServerId, GameServer>,
    configs: BTreeMap<ConfigId, GameServerConfig>,
    workers: BTreeMap<WorkerId, Worker>,
    instances: BTreeMap<InstanceId, Instance>,
    history: Vec<StatusEvent>,
    applied_events: HashSet<Uuid>,
    /// The last numbered report applied to each entity (a column beside the status in SQL).
    sequences: HashMap<Entity, Sequence>,
    commands: HashMap<Uuid, CommandRecord>,
    console_tails: HashMap<InstanceId, ConsoleTail>,
    last_ids: Ids,
}

/// The last id given out per table, as identity columns count.
#[derive(Debug, Default)]
struct Ids {
    game: i64,
    config: i64,
    worker: i64,
    instance: i64,
    event: i64,
}

/// `NotFound` when the config or the worker of a new instance is missing.
fn check_placement(s: &State, new: &NewInstance) -> Result<(), StoreError> {
    if !s.configs.contains_key(&new.config_id) {
        return Err(StoreError::not_found(&new.config_id));
    }
    if !s.workers.contains_key(&new.worker_id) {
        return Err(StoreError::not_found(&new.worker_id));
    }
    Ok(())
}

fn next(last: &mut i64) -> i64 {
    *last += 1;
    *last
}

impl State {
    /// A game's name and Steam app must be its own (`except`: the game being changed).
    fn check_game(
        &self,
        game: &NewGameServer,
        except: Option<GameServerId>,
    ) -> Result<(), StoreError> {
        let others = || self.games.values().filter(|g| Some(g.id) != except);
        if others().any(|g| g.name == game.name) {
            return Err(StoreError::conflict(
                &format!("game server {:?}", game.name),
                "the name is taken: choose another",
            ));
        }
        if let ServerType::Steam { app_id } = game.server_type
            && others().any(|g| g.server_type == ServerType::Steam { app_id })
        {
            return Err(StoreError::conflict(
                &format!("Steam app {app_id}"),
                "another game server installs this app: add a config to it instead",
            ));
        }
        Ok(())
    }

    /// A config's name must be its own in its game, and one default at most.
    fn check_config(
        &self,
        game: GameServerId,
        spec: &ConfigSpec,
        except: Option<ConfigId>,
    ) -> Result<(), StoreError> {
        let siblings = || {
            self.configs
                .values()
                .filter(|c| c.game_server_id == game && Some(c.id) != except)
        };
        if siblings().any(|c| c.spec.name == spec.name) {
            return Err(StoreError::conflict(
                &format!("config {:?} of {game}", spec.name),
                "the name is taken for this game: choose another",
            ));
        }
        if spec.is_default && siblings().any(|c| c.spec.is_default) {
            return Err(StoreError::conflict(
                &format!("default config of {game}"),
                "the game already has a default config: unset it first or create this one without is_default",
            ));
        }
        Ok(())
    }

    /// Creates instance `id` (`created`, cause `placed`) with its first history row.
    fn create_instance(&mut self, id: InstanceId, new: &NewInstance) -> Instance {
        let instance = Instance {
            id,
            config_id: new.config_id,
            worker_id: new.worker_id,
            worker_epoch: new.worker_epoch,
            status: Status::Created,
            cause: Cause::Placed,
            detail: Some(format!("placed on {}", new.worker_id)),
            created_at: new.created_at,
            started_at: None,
            ready_at: None,
            ended_at: None,
            exit_code: None,
            exit_signal: None,
            restart_count: 0,
            last_heartbeat_at: None,
        };
        self.instances.insert(id, instance.clone());
        let instance = self.read_instance(&instance);
        self.push_history(
            Entity::Instance(id),
            None,
            Status::Created,
            Cause::Placed,
            Some(format!("placed on {}", new.worker_id)),
            new.created_at,
        );
        instance
    }

    fn push_history(
        &mut self,
        entity: Entity,
        from: Option<Status>,
        status: Status,
        cause: Cause,
        detail: Option<String>,
        at: DateTime<Utc>,
    ) -> StatusEvent {
        let event = StatusEvent {
            id: next(&mut self.last_ids.event),
            event_id: Uuid::new_v4(),
            entity,
            from,
            status,
            cause,
            detail,
            as_of: at,
            reported_at: at,
        };
        self.applied_events.insert(event.event_id);
        self.history.push(event.clone());
        event
    }

    /// `instance` as the SQL stores read it: an instance not ended carries the last heartbeat
    /// of the worker registration it was placed on.
    fn read_instance(&self, instance: &Instance) -> Instance {
        let mut read = instance.clone();
        read.last_heartbeat_at = if instance.ended_at.is_none() {
            self.workers
                .get(&instance.worker_id)
                .filter(|w| w.epoch == instance.worker_epoch)
                .and_then(|w| w.last_heartbeat_at)
        } else {
            None
        };
        read
    }

    fn status_of(&self, entity: Entity) -> Result<Status, StoreError> {
        match entity {
            Entity::Worker(id) => self.workers.get(&id).map(|w| w.status),
            Entity::Instance(id) => self.instances.get(&id).map(|i| i.status),
        }
        .ok_or_else(|| StoreError::not_found(&entity))
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every change below is checked before it is written, so a poisoned lock still guards
        // consistent data.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The tokens and worker credentials (a lock of their own).
    pub(super) fn credentials(&self) -> MutexGuard<'_, Credentials> {
        self.credentials
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl CatalogueRepository for MemoryStore {
    async fn create_game(
        &self,
        game: &NewGameServer,
        at: DateTime<Utc>,
    ) -> Result<GameServer, StoreError> {
        let mut s = self.lock();
        s.check_game(game, None)?;
        let id = GameServerId(next(&mut s.last_ids.game));
        let created = GameServer {
            id,
            name: game.name.clone(),
            server_type: game.server_type.clone(),
            created_at: at,
        };
        s.games.insert(id, created.clone());
        Ok(created)
    }

    async fn get_game(&self, id: GameServerId) -> Result<GameServer, StoreError> {
        self.lock()
            .games
            .get(&id)
            .cloned()
            .ok_or_else(|| StoreError::not_found(&id))
    }

    async fn find_game(&self, name: &str) -> Result<Option<GameServer>, StoreError> {
        Ok(self.lock().games.values().find(|g| g.name == name).cloned())
    }

    async fn list_games(&self) -> Result<Vec<GameServer>, StoreError> {
        Ok(self.lock().games.values().cloned().collect())
    }

    async fn create_config(
        &self,
        game: GameServerId,
        spec: &ConfigSpec,
        at: DateTime<Utc>,
    ) -> Result<GameServerConfig, StoreError> {
        let mut s = self.lock();
        if !s.games.contains_key(&game) {
            return Err(StoreError::not_found(&game));
        }
        s.check_config(game, spec, None)?;
        let id = ConfigId(next(&mut s.last_ids.config));
        let config = GameServerConfig {
            id,
            game_server_id: game,
            created_at: at,
            spec: spec.clone(),
        };
        s.configs.insert(id, config.clone());
        Ok(config)
    }

    async fn get_config(&self, id: ConfigId) -> Result<GameServerConfig, StoreError> {
        self.lock()
            .configs
            .get(&id)
            .cloned()
            .ok_or_else(|| StoreError::not_found(&id))
    }

    async fn list_configs(
        &self,
        game: Option<GameServerId>,
    ) -> Result<Vec<GameServerConfig>, StoreError> {
        Ok(self
            .lock()
            .configs
            .values()
            .filter(|c| game.is_none_or(|g| c.game_server_id == g))
            .cloned()
            .collect())
    }

    async fn update_game(
        &self,
        id: GameServerId,
        game: &NewGameServer,
    ) -> Result<GameServer, StoreError> {
        let mut s = self.lock();
        if !s.games.contains_key(&id) {
            return Err(StoreError::not_found(&id));
        }
        s.check_game(game, Some(id))?;
        let stored = s
            .games
            .get_mut(&id)
            .ok_or_else(|| StoreError::not_found(&id))?;
        stored.name = game.name.clone();
        stored.server_type = game.server_type.clone();
        Ok(stored.clone())
    }

    async fn delete_game(&self, id: GameServerId) -> Result<(), StoreError> {
        let mut s = self.lock();
        if !s.games.contains_key(&id) {
            return Err(StoreError::not_found(&id));
        }
        let configs: Vec<ConfigId> = s
            .configs
            .values()
            .filter(|c| c.game_server_id == id)
            .map(|c| c.id)
            .collect();
        if !configs.is_empty() {
            return Err(StoreError::game_has_configs(id, &configs));
        }
        s.games.remove(&id);
        Ok(())
    }

    async fn update_config(
        &self,
        id: ConfigId,
        spec: &ConfigSpec,
    ) -> Result<GameServerConfig, StoreError> {
        let mut s = self.lock();
        let game = s
            .configs
            .get(&id)
            .ok_or_else(|| StoreError::not_found(&id))?
            .game_server_id;
        s.check_config(game, spec, Some(id))?;
        let stored = s
            .configs
            .get_mut(&id)
            .ok_or_else(|| StoreError::not_found(&id))?;
        stored.spec = spec.clone();
        Ok(stored.clone())
    }

    async fn delete_config(&self, id: ConfigId) -> Result<(), StoreError> {
        let mut s = self.lock();
        if !s.configs.contains_key(&id) {
            return Err(StoreError::not_found(&id));
        }
        let of_config: Vec<&Instance> =
            s.instances.values().filter(|i| i.config_id == id).collect();
        let active: Vec<InstanceId> = of_config
            .iter()
            .filter(|i| i.status.is_active())
            .map(|i| i.id)
            .collect();
        if !active.is_empty() {
            return Err(StoreError::config_in_use(id, &active));
        }
        let ended: HashSet<InstanceId> = of_config.iter().map(|i| i.id).collect();
        s.instances.retain(|i, _| !ended.contains(i));
        s.console_tails.retain(|i, _| !ended.contains(i));
        s.sequences
            .retain(|e, _| !matches!(e, Entity::Instance(i) if ended.contains(i)));
        s.history
            .retain(|e| !matches!(e.entity, Entity::Instance(i) if ended.contains(&i)));
        s.commands.retain(|_, c| {
            c.envelope
                .command
                .instance_id()
                .is_none_or(|i| !ended.contains(&i))
        });
        s.configs.remove(&id);
        Ok(())
    }
}

#[async_trait]
impl WorkerRepository for MemoryStore {
    async fn register_worker(
        &self,
        registration: &WorkerRegistration,
        at: DateTime<Utc>,
    ) -> Result<Worker, StoreError> {
        let mut s = self.lock();
        let existing = s
            .workers
            .values()
            .find(|w| w.name == registration.name)
            .cloned();
        let (id, epoch, from) = match existing {
            Some(w) => (w.id, w.epoch + 1, Some(w.status)),
            None => (WorkerId(next(&mut s.last_ids.worker)), 1, None),
        };
        let worker = Worker {
            id,
            name: registration.name.clone(),
            epoch,
            status: Status::Created,
            version: registration.version.clone(),
            labels: registration.labels.clone(),
            capacity: registration.capacity,
            started_at: at,
            last_heartbeat_at: Some(at),
            ended_at: None,
        };
        s.workers.insert(id, worker.clone());
        s.push_history(
            Entity::Worker(id),
            from,
            Status::Created,
            Cause::Registered,
            Some(format!("epoch {epoch}")),
            at,
        );
        Ok(worker)
    }

    async fn record_heartbeat(
        &self,
        id: WorkerId,
        epoch: i64,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut s = self.lock();
        let worker = s
            .workers
            .get_mut(&id)
            .ok_or_else(|| StoreError::not_found(&id))?;
        if worker.epoch != epoch {
            return Ok(false);
        }
        worker.last_heartbeat_at = Some(at);
        Ok(true)
    }

    async fn get_worker(&self, id: WorkerId) -> Result<Worker, StoreError> {
        self.lock()
            .workers
            .get(&id)
            .cloned()
            .ok_or_else(|| StoreError::not_found(&id))
    }

    async fn list_workers(&self) -> Result<Vec<Worker>, StoreError> {
        Ok(self.lock().workers.values().cloned().collect())
    }

    async fn expire_leases(
        &self,
        stale_before: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Result<Vec<WorkerId>, StoreError> {
        let mut s = self.lock();
        let expired: Vec<(WorkerId, Status)> = s
            .workers
            .values()
            .filter(|w| w.status.is_live() && w.last_heartbeat_at.is_none_or(|h| h < stale_before))
            .map(|w| (w.id, w.status))
            .collect();
        for (id, from) in &expired {
            s.workers.get_mut(id).expect("listed above").status = Status::Lost;
            s.push_history(
                Entity::Worker(*id),
                Some(*from),
                Status::Lost,
                Cause::LeaseExpired,
                None,
                at,
            );
            let instances: Vec<(InstanceId, Status)> = s
                .instances
                .values()
                .filter(|i| i.worker_id == *id && i.status.is_active() && i.status != Status::Lost)
                .map(|i| (i.id, i.status))
                .collect();
            for (instance, was) in instances {
                s.instances.get_mut(&instance).expect("listed above").status = Status::Lost;
                s.push_history(
                    Entity::Instance(instance),
                    Some(was),
                    Status::Lost,
                    Cause::LeaseExpired,
                    Some(format!("{id} stopped heartbeating")),
                    at,
                );
            }
        }
        Ok(expired.into_iter().map(|(id, _)| id).collect())
    }
}

#[async_trait]
impl InstanceRepository for MemoryStore {
    async fn create_instance(&self, new: &NewInstance) -> Result<Instance, StoreError> {
        let mut s = self.lock();
        check_placement(&s, new)?;
        let id = InstanceId(next(&mut s.last_ids.instance));
        Ok(s.create_instance(id, new))
    }

    async fn reserve_instance_id(&self) -> Result<InstanceId, StoreError> {
        Ok(InstanceId(next(&mut self.lock().last_ids.instance)))
    }

    async fn create_started_instance(
        &self,
        id: InstanceId,
        new: &NewInstance,
        start: &CommandRecord,
    ) -> Result<Instance, StoreError> {
        let mut s = self.lock();
        check_placement(&s, new)?;
        if s.instances.contains_key(&id) {
            return Err(StoreError::conflict(&id, "the id exists"));
        }
        if s.commands.contains_key(&start.id) {
            return Err(StoreError::conflict(
                &format!("command {}", start.id),
                "the id exists",
            ));
        }
        let instance = s.create_instance(id, new);
        s.commands.insert(start.id, start.clone());
        Ok(instance)
    }

    async fn get_instance(&self, id: InstanceId) -> Result<Instance, StoreError> {
        let s = self.lock();
        s.instances
            .get(&id)
            .map(|i| s.read_instance(i))
            .ok_or_else(|| StoreError::not_found(&id))
    }

    async fn count_by_status(&self) -> Result<Vec<(Status, u64)>, StoreError> {
        let s = self.lock();
        Ok(Status::ALL
            .into_iter()
            .map(|status| {
                let n = s.instances.values().filter(|i| i.status == status).count();
                (status, n as u64)
            })
            .filter(|(_, n)| *n > 0)
            .collect())
    }

    async fn active_instances(
        &self,
        worker: Option<WorkerId>,
    ) -> Result<Vec<Instance>, StoreError> {
        let s = self.lock();
        Ok(s.instances
            .values()
            .filter(|i| i.status.is_active() && worker.is_none_or(|w| i.worker_id == w))
            .map(|i| s.read_instance(i))
            .collect())
    }

    async fn active_instances_of_config(
        &self,
        config: ConfigId,
    ) -> Result<Vec<Instance>, StoreError> {
        let s = self.lock();
        Ok(s.instances
            .values()
            .filter(|i| i.status.is_active() && i.config_id == config)
            .map(|i| s.read_instance(i))
            .collect())
    }

    async fn count_active_by_worker(&self) -> Result<Vec<(WorkerId, u64)>, StoreError> {
        let s = self.lock();
        let mut counts = std::collections::BTreeMap::<WorkerId, u64>::new();
        for instance in s.instances.values().filter(|i| i.status.is_active()) {
            *counts.entry(instance.worker_id).or_default() += 1;
        }
        Ok(counts.into_iter().collect())
    }

    async fn take_over_instances(
        &self,
        worker: WorkerId,
        epoch: i64,
        instances: &[InstanceId],
    ) -> Result<Vec<InstanceId>, StoreError> {
        let mut s = self.lock();
        let mut taken = Vec::new();
        for id in instances {
            if let Some(instance) = s.instances.get_mut(id)
                && instance.worker_id == worker
                && instance.worker_epoch < epoch
                && instance.status.is_active()
            {
                instance.worker_epoch = epoch;
                taken.push(*id);
            }
        }
        taken.sort();
        taken.dedup();
        Ok(taken)
    }

    async fn list_instances(&self, filter: &InstanceFilter) -> Result<Vec<Instance>, StoreError> {
        let s = self.lock();
        Ok(s.instances
            .values()
            .filter(|i| filter.matches(i))
            .take(filter.effective_limit())
            .map(|i| s.read_instance(i))
            .collect())
    }
}

#[async_trait]
impl StatusRepository for MemoryStore {
    async fn apply_status(&self, change: &StatusChange) -> Result<ApplyOutcome, StoreError> {
        let mut s = self.lock();
        if s.applied_events.contains(&change.event_id) {
            return Ok(ApplyOutcome::Duplicate);
        }
        let current = s.status_of(change.entity)?;
        if current != change.from {
            return Err(StoreError::conflict(
                &change.entity,
                format!("is {current}, not {} as the change expected", change.from),
            ));
        }
        if let (Some(sequence), Some(last)) = (change.sequence, s.sequences.get(&change.entity))
            && sequence <= *last
        {
            return Err(StoreError::conflict(
                &change.entity,
                format!("has had report {last} applied, and report {sequence} is not after it"),
            ));
        }
        let u = &change.update;
        match change.entity {
            Entity::Worker(id) => {
                let w = s.workers.get_mut(&id).expect("status_of found it");
                w.status = change.to;
                if u.ended_at.is_some() {
                    w.ended_at = u.ended_at;
                }
            }
            Entity::Instance(id) => {
                let i = s.instances.get_mut(&id).expect("status_of found it");
                i.status = change.to;
                i.cause = change.cause;
                i.detail.clone_from(&change.detail);
                i.started_at = u.started_at.or(i.started_at);
                i.ready_at = u.ready_at.or(i.ready_at);
                i.ended_at = u.ended_at.or(i.ended_at);
                if u.exit_code.is_some() || u.exit_signal.is_some() || change.to == Status::Running
                {
                    i.exit_code = u.exit_code;
                    i.exit_signal = u.exit_signal;
                }
                i.restart_count = u.restart_count.unwrap_or(i.restart_count);
            }
        }
        let event = StatusEvent {
            id: next(&mut s.last_ids.event),
            event_id: change.event_id,
            entity: change.entity,
            from: Some(change.from),
            status: change.to,
            cause: change.cause,
            detail: change.detail.clone(),
            as_of: change.as_of,
            reported_at: change.reported_at,
        };
        s.applied_events.insert(change.event_id);
        if let Some(sequence) = change.sequence {
            s.sequences.insert(change.entity, sequence);
        }
        s.history.push(event.clone());
        Ok(ApplyOutcome::Applied(event))
    }

    async fn status_history(
        &self,
        entity: Entity,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Vec<StatusEvent>, StoreError> {
        let s = self.lock();
        s.status_of(entity)?;
        Ok(s.history
            .iter()
            .filter(|e| e.entity == entity && after.is_none_or(|a| e.id > a))
            .take(limit as usize)
            .cloned()
            .collect())
    }

    async fn apply_statuses(
        &self,
        changes: &[StatusChange],
    ) -> Result<Vec<Result<ApplyOutcome, StoreError>>, StoreError> {
        let mut outcomes = Vec::with_capacity(changes.len());
        for change in changes {
            outcomes.push(self.apply_status(change).await);
        }
        Ok(outcomes)
    }

    async fn current_statuses(
        &self,
        entities: &[Entity],
    ) -> Result<Vec<Option<CurrentStatus>>, StoreError> {
        let s = self.lock();
        Ok(entities
            .iter()
            .map(|e| {
                let status = s.status_of(*e).ok()?;
                let owner = match e {
                    Entity::Worker(id) => *id,
                    Entity::Instance(id) => s.instances.get(id)?.worker_id,
                };
                Some(CurrentStatus {
                    status,
                    sequence: s.sequences.get(e).copied(),
                    owner,
                })
            })
            .collect())
    }

    async fn prune_history(&self, before: DateTime<Utc>, limit: u32) -> Result<u64, StoreError> {
        let mut s = self.lock();
        let mut pruned = 0u64;
        s.history.retain(|e| {
            let prune = e.as_of < before && pruned < u64::from(limit);
            pruned += u64::from(prune);
            !prune
        });
        Ok(pruned)
    }
}

#[async_trait]
impl CommandRepository for MemoryStore {
    async fn insert_command(&self, record: &CommandRecord) -> Result<(), StoreError> {
        let mut s = self.lock();
        if s.commands.contains_key(&record.id) {
            return Err(StoreError::conflict(
                &format!("command {}", record.id),
                "the id exists",
            ));
        }
        if !s.workers.contains_key(&record.worker_id) {
            return Err(StoreError::not_found(&record.worker_id));
        }
        if let Some(instance) = record.envelope.command.instance_id()
            && !s.instances.contains_key(&instance)
        {
            return Err(StoreError::not_found(&instance));
        }
        s.commands.insert(record.id, record.clone());
        Ok(())
    }

    async fn get_command(&self, id: Uuid) -> Result<CommandRecord, StoreError> {
        self.lock()
            .commands
            .get(&id)
            .cloned()
            .ok_or_else(|| StoreError::not_found(&format!("command {id}")))
    }

    async fn transition_command(
        &self,
        id: Uuid,
        to: CommandState,
        detail: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<CommandRecord, StoreError> {
        let mut s = self.lock();
        let record = s
            .commands
            .get_mut(&id)
            .ok_or_else(|| StoreError::not_found(&format!("command {id}")))?;
        if !record.state.can_become(to) {
            return Err(StoreError::conflict(
                &format!("command {id}"),
                format!("is {}, cannot become {to}", record.state),
            ));
        }
        record.state = to;
        if let Some(detail) = detail {
            record.detail = Some(detail.to_owned());
        }
        record.updated_at = at;
        Ok(record.clone())
    }

    async fn mark_delivered(&self, id: Uuid, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut s = self.lock();
        match s.commands.get_mut(&id) {
            Some(record) if record.state == CommandState::Pending => {
                record.state = CommandState::Delivered;
                record.updated_at = at;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn prune_commands(&self, before: DateTime<Utc>, limit: u32) -> Result<u64, StoreError> {
        let mut s = self.lock();
        let old: Vec<Uuid> = s
            .commands
            .values()
            .filter(|c| {
                c.updated_at < before && (c.state.is_final() || c.envelope.expires_at < before)
            })
            .map(|c| c.id)
            .take(limit as usize)
            .collect();
        for id in &old {
            s.commands.remove(id);
        }
        Ok(old.len() as u64)
    }

    async fn expire_commands(
        &self,
        before: DateTime<Utc>,
        detail: &str,
        at: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<CommandRecord>, StoreError> {
        let mut s = self.lock();
        let mut due: Vec<&mut CommandRecord> = s
            .commands
            .values_mut()
            .filter(|c| !c.state.is_final() && c.envelope.expires_at < before)
            .collect();
        due.sort_by_key(|c| c.envelope.expires_at);
        Ok(due
            .into_iter()
            .take(limit as usize)
            .map(|record| {
                record.state = CommandState::Expired;
                record.detail = Some(detail.to_owned());
                record.updated_at = at;
                record.clone()
            })
            .collect())
    }
}

#[async_trait]
impl ConsoleTailRepository for MemoryStore {
    async fn keep_console_tail(
        &self,
        instance: InstanceId,
        tail: &ConsoleTail,
    ) -> Result<(), StoreError> {
        let mut s = self.lock();
        if !s.instances.contains_key(&instance) {
            return Err(StoreError::not_found(&instance));
        }
        s.console_tails.insert(instance, tail.clone());
        Ok(())
    }

    async fn console_tail(&self, instance: InstanceId) -> Result<Option<ConsoleTail>, StoreError> {
        Ok(self.lock().console_tails.get(&instance).cloned())
    }

    async fn prune_console_tails(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<u64, StoreError> {
        let mut s = self.lock();
        let old: Vec<InstanceId> = s
            .console_tails
            .keys()
            .filter(|id| {
                s.instances
                    .get(id)
                    .and_then(|i| i.ended_at)
                    .is_some_and(|ended| ended < before)
            })
            .take(limit as usize)
            .copied()
            .collect();
        for id in &old {
            s.console_tails.remove(id);
        }
        Ok(old.len() as u64)
    }
}
