//! [`Store`]: the repository ports of one adapter, held together.

use crate::ports::{
    CatalogueRepository, CommandRepository, ConsoleTailRepository, CredentialRepository,
    InstanceRepository, StatusRepository, WorkerRepository,
};
use std::sync::Arc;

/// The host's repositories. Usually all seven come from one adapter ([`Store::from_adapter`]).
#[derive(Debug, Clone)]
pub struct Store {
    /// Games and configs.
    pub catalogue: Arc<dyn CatalogueRepository>,
    /// Workers.
    pub workers: Arc<dyn WorkerRepository>,
    /// Instances.
    pub instances: Arc<dyn InstanceRepository>,
    /// Status history and current status.
    pub status: Arc<dyn StatusRepository>,
    /// Command records.
    pub commands: Arc<dyn CommandRepository>,
    /// Operator tokens and worker credentials.
    pub credentials: Arc<dyn CredentialRepository>,
    /// The console tails of ended instances.
    pub console_tails: Arc<dyn ConsoleTailRepository>,
}

impl Store {
    /// Every repository from one adapter value.
    pub fn from_adapter<A>(adapter: A) -> Self
    where
        A: CatalogueRepository
            + WorkerRepository
            + InstanceRepository
            + StatusRepository
            + CommandRepository
            + CredentialRepository
            + ConsoleTailRepository
            + Clone,
    {
        Self {
            catalogue: Arc::new(adapter.clone()),
            workers: Arc::new(adapter.clone()),
            instances: Arc::new(adapter.clone()),
            status: Arc::new(adapter.clone()),
            commands: Arc::new(adapter.clone()),
            credentials: Arc::new(adapter.clone()),
            console_tails: Arc::new(adapter),
        }
    }
}
