//! [`HostService`]: the host's parts over one store and one bus — the [`Catalogue`], the
//! [`Instances`], the [`Workers`] and the [`WorkerGateway`] — with its readiness and what
//! `/metrics` reads from the store.

use crate::bus::Bus;
use crate::host::{
    Catalogue, CommandSender, Consumption, HostError, Instances, StoreSnapshot, WorkerGateway,
    Workers,
};
use crate::ports::Clock;
use crate::store::Store;
use std::sync::Arc;

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

/// The host's parts over one store and one bus. Cloning shares them.
///
/// Each part is small and usable alone (`Catalogue::new(store, clock)`); this assembles them
/// with one command sender, so that they agree on the command time to live and share one bus
/// secret.
#[derive(Debug, Clone)]
pub struct HostService {
    store: Store,
    bus: Bus,
    clock: Arc<dyn Clock>,
    command_ttl: std::time::Duration,
    embedded_worker: Option<String>,
    status_consumption: Consumption,
    catalogue: Catalogue,
    instances: Instances,
    workers: Workers,
    gateway: WorkerGateway,
}

/// Who a stop issued by reconciliation is recorded as issued by.
pub const RECONCILIATION: &str = "reconciliation";

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
        let ttl = crate::command::DEFAULT_COMMAND_TTL
            .to_std()
            .unwrap_or(std::time::Duration::from_secs(60));
        Self::assemble(store, bus, clock, ttl, None)
    }

    fn assemble(
        store: Store,
        bus: Bus,
        clock: Arc<dyn Clock>,
        command_ttl: std::time::Duration,
        embedded_worker: Option<String>,
    ) -> Self {
        let sender = CommandSender::new(store.clone(), bus.clone(), Arc::clone(&clock))
            .with_ttl(command_ttl);
        Self {
            catalogue: Catalogue::new(store.clone(), Arc::clone(&clock)),
            instances: Instances::new(store.clone(), Arc::clone(&clock), sender.clone()),
            workers: Workers::new(store.clone(), sender.clone(), embedded_worker.clone()),
            gateway: WorkerGateway::new(store.clone(), Arc::clone(&clock), sender),
            store,
            bus,
            clock,
            command_ttl,
            embedded_worker,
            status_consumption: Consumption::new(),
        }
    }

    /// Names the worker that runs in this host's own process (`manman up`'s): shutting it
    /// down would take the API down with it, so [`Workers::shutdown_worker`] refuses it.
    pub fn with_embedded_worker(self, name: impl Into<String>) -> Self {
        let ttl = self.command_ttl;
        self.reassembled(ttl, Some(name.into()))
    }

    /// How long a command stays deliverable (default 60 s); then it is dead-lettered and
    /// recorded `expired`.
    pub fn with_command_ttl(mut self, ttl: std::time::Duration) -> Self {
        let embedded_worker = self.embedded_worker.take();
        self.reassembled(ttl, embedded_worker)
    }

    /// The parts built again with these settings (they hold them), readiness kept.
    fn reassembled(
        self,
        command_ttl: std::time::Duration,
        embedded_worker: Option<String>,
    ) -> Self {
        Self {
            status_consumption: self.status_consumption,
            ..Self::assemble(
                self.store,
                self.bus,
                self.clock,
                command_ttl,
                embedded_worker,
            )
        }
    }

    /// Games and configs.
    pub fn catalogue(&self) -> &Catalogue {
        &self.catalogue
    }

    /// Instances: placement and commands.
    pub fn instances(&self) -> &Instances {
        &self.instances
    }

    /// Workers, as operators see them.
    pub fn workers(&self) -> &Workers {
        &self.workers
    }

    /// What workers ask of the host.
    pub fn gateway(&self) -> &WorkerGateway {
        &self.gateway
    }

    /// Whether this host's status processor consumes its queue: give it to the processor
    /// ([`crate::host::StatusProcessor::with_consumption`]) and [`Self::readiness`] says so.
    pub fn status_consumption(&self) -> &Consumption {
        &self.status_consumption
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
}
