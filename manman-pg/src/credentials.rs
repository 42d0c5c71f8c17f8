//! Operator tokens and worker credentials, kept as hashes of their secrets.

use crate::error::store_error;
use crate::store::PgStore;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use manman_core::auth::{ApiToken, Scope, SecretHash, WorkerCredential};
use manman_core::id::TokenId;
use manman_core::ports::{CredentialRepository, StoreError};
use manman_core::signing::BusSecret;
use sqlx::FromRow;

const TOKEN_COLUMNS: &str = "id, name, scope, created_at, revoked_at";
const CREDENTIAL_COLUMNS: &str = "client_id, worker_name, created_at, revoked_at";

#[derive(FromRow)]
struct TokenRow {
    id: i64,
    name: String,
    scope: String,
    created_at: DateTime<Utc>,
    revoked_at: Option<DateTime<Utc>>,
}

impl TryFrom<TokenRow> for ApiToken {
    type Error = StoreError;

    fn try_from(row: TokenRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: TokenId(row.id),
            name: row.name,
            scope: row
                .scope
                .parse()
                .map_err(
                    |e: manman_core::unknown_name::UnknownName| StoreError::Other {
                        source: format!("{e} in the database").into(),
                    },
                )?,
            created_at: row.created_at,
            revoked_at: row.revoked_at,
        })
    }
}

#[derive(FromRow)]
struct CredentialRow {
    client_id: String,
    worker_name: String,
    created_at: DateTime<Utc>,
    revoked_at: Option<DateTime<Utc>>,
}

impl From<CredentialRow> for WorkerCredential {
    fn from(row: CredentialRow) -> Self {
        Self {
            client_id: row.client_id,
            worker_name: row.worker_name,
            created_at: row.created_at,
            revoked_at: row.revoked_at,
        }
    }
}

fn hash_of(bytes: &[u8]) -> Result<SecretHash, StoreError> {
    bytes
        .try_into()
        .map(SecretHash)
        .map_err(|_| StoreError::Other {
            source: "a stored secret hash is not 32 bytes long".into(),
        })
}

fn client(client_id: &str) -> String {
    format!("worker credentials {client_id:?}")
}

#[async_trait]
impl CredentialRepository for PgStore {
    async fn create_token(
        &self,
        name: &str,
        scope: Scope,
        hash: &SecretHash,
        at: DateTime<Utc>,
    ) -> Result<ApiToken, StoreError> {
        let row: TokenRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "INSERT INTO manman.api_tokens (name, token_hash, scope, created_at)
             VALUES ($1, $2, $3, $4) RETURNING {TOKEN_COLUMNS}"
        )))
        .bind(name)
        .bind(&hash.0[..])
        .bind(scope.as_str())
        .bind(at)
        .fetch_one(self.pool())
        .await
        .map_err(|e| store_error(e, &format!("token {name:?}")))?;
        row.try_into()
    }

    async fn token_by_hash(&self, hash: &SecretHash) -> Result<Option<ApiToken>, StoreError> {
        let row: Option<TokenRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {TOKEN_COLUMNS} FROM manman.api_tokens WHERE token_hash = $1"
        )))
        .bind(&hash.0[..])
        .fetch_optional(self.pool())
        .await
        .map_err(|e| store_error(e, &"a token"))?;
        row.map(ApiToken::try_from).transpose()
    }

    async fn list_tokens(&self) -> Result<Vec<ApiToken>, StoreError> {
        let rows: Vec<TokenRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {TOKEN_COLUMNS} FROM manman.api_tokens ORDER BY id"
        )))
        .fetch_all(self.pool())
        .await
        .map_err(|e| store_error(e, &"the tokens"))?;
        rows.into_iter().map(ApiToken::try_from).collect()
    }

    async fn revoke_token(&self, id: TokenId, at: DateTime<Utc>) -> Result<ApiToken, StoreError> {
        let row: TokenRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE manman.api_tokens SET revoked_at = COALESCE(revoked_at, $2)
             WHERE id = $1 RETURNING {TOKEN_COLUMNS}"
        )))
        .bind(id.get())
        .bind(at)
        .fetch_one(self.pool())
        .await
        .map_err(|e| store_error(e, &id))?;
        row.try_into()
    }

    async fn create_worker_credential(
        &self,
        client_id: &str,
        worker_name: &str,
        secret_hash: &SecretHash,
        at: DateTime<Utc>,
    ) -> Result<WorkerCredential, StoreError> {
        let row: CredentialRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "INSERT INTO manman.worker_credentials (client_id, secret_hash, worker_name, created_at)
             VALUES ($1, $2, $3, $4) RETURNING {CREDENTIAL_COLUMNS}"
        )))
        .bind(client_id)
        .bind(&secret_hash.0[..])
        .bind(worker_name)
        .bind(at)
        .fetch_one(self.pool())
        .await
        .map_err(|e| store_error(e, &client(client_id)))?;
        Ok(row.into())
    }

    async fn worker_credential(
        &self,
        client_id: &str,
    ) -> Result<Option<(WorkerCredential, SecretHash)>, StoreError> {
        let row: Option<(
            String,
            String,
            DateTime<Utc>,
            Option<DateTime<Utc>>,
            Vec<u8>,
        )> = sqlx::query_as(
            "SELECT client_id, worker_name, created_at, revoked_at, secret_hash
                 FROM manman.worker_credentials WHERE client_id = $1",
        )
        .bind(client_id)
        .fetch_optional(self.pool())
        .await
        .map_err(|e| store_error(e, &client(client_id)))?;
        row.map(|(client_id, worker_name, created_at, revoked_at, hash)| {
            let credential = CredentialRow {
                client_id,
                worker_name,
                created_at,
                revoked_at,
            };
            Ok((credential.into(), hash_of(&hash)?))
        })
        .transpose()
    }

    async fn list_worker_credentials(&self) -> Result<Vec<WorkerCredential>, StoreError> {
        let rows: Vec<CredentialRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {CREDENTIAL_COLUMNS} FROM manman.worker_credentials ORDER BY created_at, client_id"
        )))
        .fetch_all(self.pool())
        .await
        .map_err(|e| store_error(e, &"the worker credentials"))?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn revoke_worker_credential(
        &self,
        client_id: &str,
        at: DateTime<Utc>,
    ) -> Result<WorkerCredential, StoreError> {
        let row: CredentialRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE manman.worker_credentials SET revoked_at = COALESCE(revoked_at, $2)
             WHERE client_id = $1 RETURNING {CREDENTIAL_COLUMNS}"
        )))
        .bind(client_id)
        .bind(at)
        .fetch_one(self.pool())
        .await
        .map_err(|e| store_error(e, &client(client_id)))?;
        Ok(row.into())
    }

    async fn bus_secret(&self, candidate: &BusSecret) -> Result<BusSecret, StoreError> {
        // Two first callers at once: one insert wins, both read the winner's.
        let secret: Vec<u8> = sqlx::query_scalar(
            "WITH inserted AS (
                 INSERT INTO manman.bus_secret (id, secret) VALUES (1, $1)
                 ON CONFLICT (id) DO NOTHING RETURNING secret
             )
             SELECT secret FROM inserted
             UNION ALL SELECT secret FROM manman.bus_secret WHERE id = 1
             LIMIT 1",
        )
        .bind(candidate.as_bytes().as_slice())
        .fetch_one(self.pool())
        .await
        .map_err(|e| store_error(e, &"the bus secret"))?;
        stored_secret(&secret)
    }
}

/// A stored secret, checked for its length.
fn stored_secret(bytes: &[u8]) -> Result<BusSecret, StoreError> {
    let bytes: [u8; 32] = bytes.try_into().map_err(|_| StoreError::Invalid {
        detail: format!(
            "the stored bus secret is {} bytes long, not 32: the table manman.bus_secret was edited by hand",
            bytes.len()
        ),
    })?;
    Ok(BusSecret::from_bytes(bytes))
}
