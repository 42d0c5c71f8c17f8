//! An adapter of your own, proven by the conformance suite: `AuditedStore` implements every
//! repository port by keeping an audit log of each change (here in memory; yours might ship it
//! elsewhere) and delegating to another store — here the in-memory one; a real adapter talks to
//! its database instead. Run it: it runs the store conformance suite against itself, the same
//! suite the memory, PostgreSQL and SQLite adapters pass (`docs/adapters.md`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use manman_core::auth::{ApiToken, Scope, SecretHash, WorkerCredential};
use manman_core::command::{CommandRecord, CommandState};
use manman_core::config::{ConfigSpec, GameServerConfig};
use manman_core::console::ConsoleTail;
use manman_core::game_server::{GameServer, NewGameServer};
use manman_core::id::{ConfigId, GameServerId, InstanceId, TokenId, WorkerId};
use manman_core::instance::{Instance, InstanceFilter, NewInstance};
use manman_core::memory::MemoryStore;
use manman_core::ports::{
    ApplyOutcome, CatalogueRepository, CommandRepository, ConsoleTailRepository,
    CredentialRepository, CurrentStatus, InstanceRepository, StatusChange, StatusRepository,
    StoreError, WorkerRepository,
};
use manman_core::signing::BusSecret;
use manman_core::status::{Entity, Status, StatusEvent};
use manman_core::store::Store;
use manman_core::worker::{Worker, WorkerRegistration};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use uuid::Uuid;

/// Every port of `inner`, with each change written to an audit log first.
#[derive(Debug, Clone)]
struct AuditedStore {
    inner: Store,
    log: Arc<Mutex<Vec<&'static str>>>,
}

impl AuditedStore {
    fn new(inner: Store) -> Self {
        Self {
            inner,
            log: Arc::default(),
        }
    }

    fn audit(&self, change: &'static str) {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(change);
    }

    /// How many of each change were made.
    fn summary(&self) -> BTreeMap<&'static str, usize> {
        let mut counts = BTreeMap::new();
        for change in self
            .log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            *counts.entry(*change).or_default() += 1;
        }
        counts
    }
}

#[tokio::main]
async fn main() {
    let audited = AuditedStore::new(Store::from_adapter(MemoryStore::new()));
    manman_core::testing::store::run_all(&Store::from_adapter(audited.clone())).await;
    let summary = audited.summary();
    println!(
        "the store conformance suite passed on AuditedStore; {} changes audited:",
        summary.values().sum::<usize>()
    );
    for (change, count) in summary {
        println!("  {change}: {count}");
    }
}

#[async_trait]
impl CatalogueRepository for AuditedStore {
    async fn create_game(
        &self,
        game: &NewGameServer,
        at: DateTime<Utc>,
    ) -> Result<GameServer, StoreError> {
        self.audit("create_game");
        self.inner.catalogue.create_game(game, at).await
    }

    async fn get_game(&self, id: GameServerId) -> Result<GameServer, StoreError> {
        self.inner.catalogue.get_game(id).await
    }

    async fn find_game(&self, name: &str) -> Result<Option<GameServer>, StoreError> {
        self.inner.catalogue.find_game(name).await
    }

    async fn list_games(&self) -> Result<Vec<GameServer>, StoreError> {
        self.inner.catalogue.list_games().await
    }

    async fn create_config(
        &self,
        game: GameServerId,
        spec: &ConfigSpec,
        at: DateTime<Utc>,
    ) -> Result<GameServerConfig, StoreError> {
        self.audit("create_config");
        self.inner.catalogue.create_config(game, spec, at).await
    }

    async fn get_config(&self, id: ConfigId) -> Result<GameServerConfig, StoreError> {
        self.inner.catalogue.get_config(id).await
    }

    async fn list_configs(
        &self,
        game: Option<GameServerId>,
    ) -> Result<Vec<GameServerConfig>, StoreError> {
        self.inner.catalogue.list_configs(game).await
    }

    async fn update_game(
        &self,
        id: GameServerId,
        game: &NewGameServer,
    ) -> Result<GameServer, StoreError> {
        self.audit("update_game");
        self.inner.catalogue.update_game(id, game).await
    }

    async fn delete_game(&self, id: GameServerId) -> Result<(), StoreError> {
        self.audit("delete_game");
        self.inner.catalogue.delete_game(id).await
    }

    async fn update_config(
        &self,
        id: ConfigId,
        spec: &ConfigSpec,
    ) -> Result<GameServerConfig, StoreError> {
        self.audit("update_config");
        self.inner.catalogue.update_config(id, spec).await
    }

    async fn delete_config(&self, id: ConfigId) -> Result<(), StoreError> {
        self.audit("delete_config");
        self.inner.catalogue.delete_config(id).await
    }
}

#[async_trait]
impl WorkerRepository for AuditedStore {
    async fn register_worker(
        &self,
        registration: &WorkerRegistration,
        at: DateTime<Utc>,
    ) -> Result<Worker, StoreError> {
        self.audit("register_worker");
        self.inner.workers.register_worker(registration, at).await
    }

    async fn record_heartbeat(
        &self,
        id: WorkerId,
        epoch: i64,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.audit("record_heartbeat");
        self.inner.workers.record_heartbeat(id, epoch, at).await
    }

    async fn get_worker(&self, id: WorkerId) -> Result<Worker, StoreError> {
        self.inner.workers.get_worker(id).await
    }

    async fn list_workers(&self) -> Result<Vec<Worker>, StoreError> {
        self.inner.workers.list_workers().await
    }

    async fn expire_leases(
        &self,
        stale_before: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Result<Vec<WorkerId>, StoreError> {
        self.audit("expire_leases");
        self.inner.workers.expire_leases(stale_before, at).await
    }
}

#[async_trait]
impl InstanceRepository for AuditedStore {
    async fn create_instance(&self, new: &NewInstance) -> Result<Instance, StoreError> {
        self.audit("create_instance");
        self.inner.instances.create_instance(new).await
    }

    async fn reserve_instance_id(&self) -> Result<InstanceId, StoreError> {
        self.inner.instances.reserve_instance_id().await
    }

    async fn create_started_instance(
        &self,
        id: InstanceId,
        new: &NewInstance,
        start: &CommandRecord,
    ) -> Result<Instance, StoreError> {
        self.audit("create_started_instance");
        self.inner
            .instances
            .create_started_instance(id, new, start)
            .await
    }

    async fn get_instance(&self, id: InstanceId) -> Result<Instance, StoreError> {
        self.inner.instances.get_instance(id).await
    }

    async fn list_instances(&self, filter: &InstanceFilter) -> Result<Vec<Instance>, StoreError> {
        self.inner.instances.list_instances(filter).await
    }

    async fn count_by_status(&self) -> Result<Vec<(Status, u64)>, StoreError> {
        self.inner.instances.count_by_status().await
    }

    async fn active_instances(
        &self,
        worker: Option<WorkerId>,
    ) -> Result<Vec<Instance>, StoreError> {
        self.inner.instances.active_instances(worker).await
    }

    async fn active_instances_of_config(
        &self,
        config: ConfigId,
    ) -> Result<Vec<Instance>, StoreError> {
        self.inner
            .instances
            .active_instances_of_config(config)
            .await
    }

    async fn count_active_by_worker(&self) -> Result<Vec<(WorkerId, u64)>, StoreError> {
        self.inner.instances.count_active_by_worker().await
    }

    async fn take_over_instances(
        &self,
        worker: WorkerId,
        epoch: i64,
        instances: &[InstanceId],
    ) -> Result<Vec<InstanceId>, StoreError> {
        self.inner
            .instances
            .take_over_instances(worker, epoch, instances)
            .await
    }
}

#[async_trait]
impl StatusRepository for AuditedStore {
    async fn apply_status(&self, change: &StatusChange) -> Result<ApplyOutcome, StoreError> {
        self.audit("apply_status");
        self.inner.status.apply_status(change).await
    }

    async fn status_history(
        &self,
        entity: Entity,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Vec<StatusEvent>, StoreError> {
        self.inner.status.status_history(entity, after, limit).await
    }

    async fn apply_statuses(
        &self,
        changes: &[StatusChange],
    ) -> Result<Vec<Result<ApplyOutcome, StoreError>>, StoreError> {
        self.audit("apply_statuses");
        self.inner.status.apply_statuses(changes).await
    }

    async fn current_statuses(
        &self,
        entities: &[Entity],
    ) -> Result<Vec<Option<CurrentStatus>>, StoreError> {
        self.inner.status.current_statuses(entities).await
    }

    async fn prune_history(&self, before: DateTime<Utc>, limit: u32) -> Result<u64, StoreError> {
        self.audit("prune_history");
        self.inner.status.prune_history(before, limit).await
    }
}

#[async_trait]
impl CommandRepository for AuditedStore {
    async fn insert_command(&self, record: &CommandRecord) -> Result<(), StoreError> {
        self.audit("insert_command");
        self.inner.commands.insert_command(record).await
    }

    async fn get_command(&self, id: Uuid) -> Result<CommandRecord, StoreError> {
        self.inner.commands.get_command(id).await
    }

    async fn transition_command(
        &self,
        id: Uuid,
        to: CommandState,
        detail: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<CommandRecord, StoreError> {
        self.audit("transition_command");
        self.inner
            .commands
            .transition_command(id, to, detail, at)
            .await
    }

    async fn mark_delivered(&self, id: Uuid, at: DateTime<Utc>) -> Result<bool, StoreError> {
        self.audit("mark_delivered");
        self.inner.commands.mark_delivered(id, at).await
    }

    async fn prune_commands(&self, before: DateTime<Utc>, limit: u32) -> Result<u64, StoreError> {
        self.audit("prune_commands");
        self.inner.commands.prune_commands(before, limit).await
    }

    async fn expire_commands(
        &self,
        before: DateTime<Utc>,
        detail: &str,
        at: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<CommandRecord>, StoreError> {
        self.audit("expire_commands");
        self.inner
            .commands
            .expire_commands(before, detail, at, limit)
            .await
    }
}

#[async_trait]
impl CredentialRepository for AuditedStore {
    async fn create_token(
        &self,
        name: &str,
        scope: Scope,
        hash: &SecretHash,
        at: DateTime<Utc>,
    ) -> Result<ApiToken, StoreError> {
        self.audit("create_token");
        self.inner
            .credentials
            .create_token(name, scope, hash, at)
            .await
    }

    async fn token_by_hash(&self, hash: &SecretHash) -> Result<Option<ApiToken>, StoreError> {
        self.inner.credentials.token_by_hash(hash).await
    }

    async fn list_tokens(&self) -> Result<Vec<ApiToken>, StoreError> {
        self.inner.credentials.list_tokens().await
    }

    async fn revoke_token(&self, id: TokenId, at: DateTime<Utc>) -> Result<ApiToken, StoreError> {
        self.audit("revoke_token");
        self.inner.credentials.revoke_token(id, at).await
    }

    async fn create_worker_credential(
        &self,
        client_id: &str,
        worker_name: &str,
        secret_hash: &SecretHash,
        at: DateTime<Utc>,
    ) -> Result<WorkerCredential, StoreError> {
        self.audit("create_worker_credential");
        self.inner
            .credentials
            .create_worker_credential(client_id, worker_name, secret_hash, at)
            .await
    }

    async fn worker_credential(
        &self,
        client_id: &str,
    ) -> Result<Option<(WorkerCredential, SecretHash)>, StoreError> {
        self.inner.credentials.worker_credential(client_id).await
    }

    async fn list_worker_credentials(&self) -> Result<Vec<WorkerCredential>, StoreError> {
        self.inner.credentials.list_worker_credentials().await
    }

    async fn revoke_worker_credential(
        &self,
        client_id: &str,
        at: DateTime<Utc>,
    ) -> Result<WorkerCredential, StoreError> {
        self.audit("revoke_worker_credential");
        self.inner
            .credentials
            .revoke_worker_credential(client_id, at)
            .await
    }

    async fn bus_secret(&self, candidate: &BusSecret) -> Result<BusSecret, StoreError> {
        self.audit("bus_secret");
        self.inner.credentials.bus_secret(candidate).await
    }
}

#[async_trait]
impl ConsoleTailRepository for AuditedStore {
    async fn keep_console_tail(
        &self,
        instance: InstanceId,
        tail: &ConsoleTail,
    ) -> Result<(), StoreError> {
        self.audit("keep_console_tail");
        self.inner
            .console_tails
            .keep_console_tail(instance, tail)
            .await
    }

    async fn console_tail(&self, instance: InstanceId) -> Result<Option<ConsoleTail>, StoreError> {
        self.inner.console_tails.console_tail(instance).await
    }

    async fn prune_console_tails(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<u64, StoreError> {
        self.audit("prune_console_tails");
        self.inner
            .console_tails
            .prune_console_tails(before, limit)
            .await
    }
}
