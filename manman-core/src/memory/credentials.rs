//! [`CredentialRepository`] for [`MemoryStore`]: tokens and worker credentials with the unique
//! names and hashes of the SQL schema.

use super::MemoryStore;
use crate::auth::{ApiToken, Scope, SecretHash, WorkerCredential};
use crate::id::TokenId;
use crate::ports::{CredentialRepository, StoreError};
use crate::signing::BusSecret;
use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// The credentials part of a [`MemoryStore`].
#[derive(Debug, Default)]
pub(super) struct Credentials {
    tokens: Vec<(ApiToken, SecretHash)>,
    workers: Vec<(WorkerCredential, SecretHash)>,
    bus_secret: Option<BusSecret>,
}

#[async_trait]
impl CredentialRepository for MemoryStore {
    async fn create_token(
        &self,
        name: &str,
        scope: Scope,
        hash: &SecretHash,
        at: DateTime<Utc>,
    ) -> Result<ApiToken, StoreError> {
        let mut credentials = self.credentials();
        if credentials.tokens.iter().any(|(t, _)| t.name == name) {
            return Err(StoreError::conflict(
                &format!("token {name:?}"),
                "a token with this name exists: choose another name",
            ));
        }
        if credentials.tokens.iter().any(|(_, h)| h.matches(hash)) {
            return Err(StoreError::conflict(
                &format!("token {name:?}"),
                "this secret is already a token",
            ));
        }
        let id = i64::try_from(credentials.tokens.len()).unwrap_or(i64::MAX) + 1;
        let token = ApiToken {
            id: TokenId(id),
            name: name.to_owned(),
            scope,
            created_at: at,
            revoked_at: None,
        };
        credentials.tokens.push((token.clone(), *hash));
        Ok(token)
    }

    async fn token_by_hash(&self, hash: &SecretHash) -> Result<Option<ApiToken>, StoreError> {
        Ok(self
            .credentials()
            .tokens
            .iter()
            .find(|(_, h)| h.matches(hash))
            .map(|(t, _)| t.clone()))
    }

    async fn list_tokens(&self) -> Result<Vec<ApiToken>, StoreError> {
        Ok(self
            .credentials()
            .tokens
            .iter()
            .map(|(t, _)| t.clone())
            .collect())
    }

    async fn revoke_token(&self, id: TokenId, at: DateTime<Utc>) -> Result<ApiToken, StoreError> {
        let mut credentials = self.credentials();
        let (token, _) = credentials
            .tokens
            .iter_mut()
            .find(|(t, _)| t.id == id)
            .ok_or_else(|| StoreError::not_found(&id))?;
        token.revoked_at = token.revoked_at.or(Some(at));
        Ok(token.clone())
    }

    async fn create_worker_credential(
        &self,
        client_id: &str,
        worker_name: &str,
        secret_hash: &SecretHash,
        at: DateTime<Utc>,
    ) -> Result<WorkerCredential, StoreError> {
        let mut credentials = self.credentials();
        if credentials
            .workers
            .iter()
            .any(|(c, _)| c.client_id == client_id)
        {
            return Err(StoreError::conflict(
                &format!("worker credentials {client_id:?}"),
                "this client id exists",
            ));
        }
        let credential = WorkerCredential {
            client_id: client_id.to_owned(),
            worker_name: worker_name.to_owned(),
            created_at: at,
            revoked_at: None,
        };
        credentials.workers.push((credential.clone(), *secret_hash));
        Ok(credential)
    }

    async fn worker_credential(
        &self,
        client_id: &str,
    ) -> Result<Option<(WorkerCredential, SecretHash)>, StoreError> {
        Ok(self
            .credentials()
            .workers
            .iter()
            .find(|(c, _)| c.client_id == client_id)
            .cloned())
    }

    async fn list_worker_credentials(&self) -> Result<Vec<WorkerCredential>, StoreError> {
        Ok(self
            .credentials()
            .workers
            .iter()
            .map(|(c, _)| c.clone())
            .collect())
    }

    async fn revoke_worker_credential(
        &self,
        client_id: &str,
        at: DateTime<Utc>,
    ) -> Result<WorkerCredential, StoreError> {
        let mut credentials = self.credentials();
        let (credential, _) = credentials
            .workers
            .iter_mut()
            .find(|(c, _)| c.client_id == client_id)
            .ok_or_else(|| StoreError::not_found(&format!("worker credentials {client_id:?}")))?;
        credential.revoked_at = credential.revoked_at.or(Some(at));
        Ok(credential.clone())
    }

    async fn bus_secret(&self, candidate: &BusSecret) -> Result<BusSecret, StoreError> {
        Ok(self
            .credentials()
            .bus_secret
            .get_or_insert_with(|| candidate.clone())
            .clone())
    }
}
