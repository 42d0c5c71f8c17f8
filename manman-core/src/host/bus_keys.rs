//! [`BusKeys`]: the host's side of signed messages ([`crate::signing`]) — its secret, read once
//! from the store (where the first host to start put it), and each worker registration's key
//! derived from it.

use crate::id::WorkerId;
use crate::ports::{CredentialRepository, StoreError};
use crate::signing::{BusSecret, WorkerKey};
use crate::store::Store;
use std::sync::Arc;
use tokio::sync::OnceCell;

/// Derives the key of any worker registration. Cloning shares the secret once read.
#[derive(Debug, Clone)]
pub struct BusKeys {
    credentials: Arc<dyn CredentialRepository>,
    secret: Arc<OnceCell<BusSecret>>,
}

impl BusKeys {
    /// The keys of the host whose store is `store`.
    pub fn new(store: &Store) -> Self {
        Self {
            credentials: Arc::clone(&store.credentials),
            secret: Arc::default(),
        }
    }

    /// The hosts' own key ([`BusSecret::host_key`]), from the same secret.
    pub async fn host_key(&self) -> Result<WorkerKey, StoreError> {
        Ok(self.secret().await?.host_key())
    }

    async fn secret(&self) -> Result<&BusSecret, StoreError> {
        self.secret
            .get_or_try_init(|| async { self.credentials.bus_secret(&BusSecret::generate()).await })
            .await
    }

    /// The key of `worker_id`'s registration `epoch`. Reads the secret from the store the
    /// first time (storing a new one if there is none): `Unavailable` while the store is.
    pub async fn worker_key(
        &self,
        worker_id: WorkerId,
        epoch: i64,
    ) -> Result<WorkerKey, StoreError> {
        Ok(self.secret().await?.worker_key(worker_id, epoch))
    }
}
