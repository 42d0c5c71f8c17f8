//! [`Authenticator`]: who is calling. Operator tokens are looked up by the hash of their
//! secret (and remembered for [`CACHE_TTL`]); worker tokens are signed by the host and checked
//! without the store, and the routes that need it ask
//! [`Authenticator::check_worker_credential`] whether their credentials were revoked since.

use super::HostError;
use crate::auth::{ApiToken, Caller, Scope, Secret, SecretHash, WorkerCredential};
use crate::id::TokenId;
use crate::ports::{Clock, CredentialRepository};
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long a worker token lasts; the worker exchanges its credentials again before then.
pub const WORKER_TOKEN_TTL: Duration = Duration::from_secs(15 * 60);
/// How long a checked operator token is remembered: a token revoked on another host replica
/// stops working within this time (at once on the replica that revoked it). Under 5 s, so a
/// stream that checks its token again every second ends within 5 s of a revocation anywhere.
pub const CACHE_TTL: Duration = Duration::from_secs(4);
/// Operator tokens remembered at most; the memory is cleared when it is full.
const CACHE_CAPACITY: usize = 10_000;
/// Worker tokens start with this, operator tokens do not.
const WORKER_TOKEN_PREFIX: &str = "mmw.";
/// The shortest signing key accepted, in bytes.
pub const MIN_SIGNING_KEY: usize = 32;

/// The key worker tokens are signed with. Host replicas behind one address must share it
/// (`MANMAN_TOKEN_SIGNING_KEY`); a random one per process works for a single host, whose workers
/// simply exchange their credentials again after it restarts.
#[derive(Clone)]
pub struct SigningKey(Vec<u8>);

impl SigningKey {
    /// A random key.
    pub fn random() -> Self {
        Self(Secret::generate("key").expose().as_bytes().to_vec())
    }

    /// The key from configuration; at least [`MIN_SIGNING_KEY`] bytes.
    pub fn from_config(key: &str) -> Result<Self, String> {
        if key.len() < MIN_SIGNING_KEY {
            return Err(format!(
                "the token signing key is {} bytes long; use at least {MIN_SIGNING_KEY} random bytes \
                 (e.g. `openssl rand -hex 32`)",
                key.len()
            ));
        }
        Ok(Self(key.as_bytes().to_vec()))
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC takes keys of any length.
        Hmac::<Sha256>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!())
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(…)")
    }
}

/// A token a worker got for its credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkerToken {
    /// The bearer token to send.
    pub access_token: String,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
}

/// What a worker token says, signed.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    /// The worker name.
    worker: String,
    /// The credentials' client id.
    client: String,
    /// Expiry, seconds since the epoch.
    exp: i64,
}

/// Operator tokens checked lately, and how many revocations this replica has made. A lookup
/// remembers its answer only if no revocation happened since it began: a token read from the
/// store just before its revocation is never put back after the revocation cleared it.
#[derive(Default)]
struct TokenCache {
    entries: HashMap<SecretHash, (Caller, Instant)>,
    revocations: u64,
}

/// Authenticates callers and manages tokens and worker credentials.
#[derive(Clone)]
pub struct Authenticator {
    credentials: Arc<dyn CredentialRepository>,
    clock: Arc<dyn Clock>,
    key: SigningKey,
    cache: Arc<Mutex<TokenCache>>,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator").finish_non_exhaustive()
    }
}

fn unauthenticated(detail: impl Into<String>) -> HostError {
    HostError::Unauthenticated {
        detail: detail.into(),
    }
}

impl Authenticator {
    /// Checks tokens against `credentials`, signs worker tokens with `key`.
    pub fn new(
        credentials: Arc<dyn CredentialRepository>,
        clock: Arc<dyn Clock>,
        key: SigningKey,
    ) -> Self {
        Self {
            credentials,
            clock,
            key,
            cache: Arc::default(),
        }
    }

    /// Who presents `bearer` (the text after `Bearer `).
    pub async fn authenticate(&self, bearer: &str) -> Result<Caller, HostError> {
        if let Some(token) = bearer.strip_prefix(WORKER_TOKEN_PREFIX) {
            return self.verify_worker_token(token);
        }
        let hash = SecretHash::of(bearer);
        let revocations = {
            let cache = self.cache();
            let cached = cache
                .entries
                .get(&hash)
                .filter(|(_, at)| at.elapsed() < CACHE_TTL);
            if let Some((caller, _)) = cached {
                return Ok(caller.clone());
            }
            cache.revocations
        };
        let token = self
            .credentials
            .token_by_hash(&hash)
            .await?
            .ok_or_else(|| {
                unauthenticated(
                    "the bearer token is not one this host issued: use a token from \
                     `manman tokens create` or the admin token the host printed at its first start",
                )
            })?;
        if token.revoked_at.is_some() {
            return Err(unauthenticated(format!(
                "token {:?} was revoked; ask an admin for a new one",
                token.name
            )));
        }
        let caller = Caller::Operator {
            token_id: token.id,
            name: token.name,
            scope: token.scope,
        };
        let mut cache = self.cache();
        // A revocation since the lookup began may concern this token: answer, but do not
        // remember (the next request reads the store again).
        if cache.revocations == revocations {
            if cache.entries.len() >= CACHE_CAPACITY {
                cache.entries.clear();
            }
            cache.entries.insert(hash, (caller.clone(), Instant::now()));
        }
        Ok(caller)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, TokenCache> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new operator token; the secret is shown once, here.
    pub async fn create_token(
        &self,
        name: &str,
        scope: Scope,
    ) -> Result<(ApiToken, Secret), HostError> {
        check_name("name", name)?;
        let secret = Secret::generate("mm");
        let token = self
            .credentials
            .create_token(name, scope, &secret.hash(), self.clock.now())
            .await?;
        Ok((token, secret))
    }

    /// Every operator token (never their secrets).
    pub async fn list_tokens(&self) -> Result<Vec<ApiToken>, HostError> {
        Ok(self.credentials.list_tokens().await?)
    }

    /// Revokes a token; on this replica it stops working at once. The last unrevoked admin
    /// token is not revoked (`Conflict`): nobody could manage tokens any more.
    pub async fn revoke_token(&self, id: TokenId) -> Result<ApiToken, HostError> {
        let tokens = self.credentials.list_tokens().await?;
        let is_last_admin = tokens
            .iter()
            .any(|t| t.id == id && t.scope == Scope::Admin && t.revoked_at.is_none())
            && !tokens
                .iter()
                .any(|t| t.id != id && t.scope == Scope::Admin && t.revoked_at.is_none());
        if is_last_admin {
            return Err(HostError::conflict(
                &id,
                "is the last unrevoked admin token: create another admin token first \
                 (`manman tokens create NAME --scope admin`), then revoke this one with it",
            ));
        }
        let token = self.credentials.revoke_token(id, self.clock.now()).await?;
        let mut cache = self.cache();
        cache.revocations += 1;
        cache.entries.retain(
            |_, (caller, _)| !matches!(caller, Caller::Operator { token_id, .. } if *token_id == id),
        );
        Ok(token)
    }

    /// New credentials for the worker named `worker_name`; the secret is shown once, here.
    pub async fn create_worker_credential(
        &self,
        worker_name: &str,
    ) -> Result<(WorkerCredential, Secret), HostError> {
        check_name("worker_name", worker_name)?;
        let client_id = Secret::generate("mmc").expose()[..20].to_owned();
        let secret = Secret::generate("mms");
        let credential = self
            .credentials
            .create_worker_credential(&client_id, worker_name, &secret.hash(), self.clock.now())
            .await?;
        Ok((credential, secret))
    }

    /// Every worker credential (never their secrets).
    pub async fn list_worker_credentials(&self) -> Result<Vec<WorkerCredential>, HostError> {
        Ok(self.credentials.list_worker_credentials().await?)
    }

    /// Revokes worker credentials: they are not exchanged again, and the tokens already given
    /// out are refused by the routes that call [`Self::check_worker_credential`] (register,
    /// heartbeat, config fetch).
    pub async fn revoke_worker_credential(
        &self,
        client_id: &str,
    ) -> Result<WorkerCredential, HostError> {
        Ok(self
            .credentials
            .revoke_worker_credential(client_id, self.clock.now())
            .await?)
    }

    /// Whether the credentials a worker token was given for (its `client_id`) still stand:
    /// `Unauthenticated`, naming the revocation, when they were revoked or are gone. One read of
    /// the store by its key; the worker routes call it at each request, so a revocation takes
    /// effect at the worker's next heartbeat.
    pub async fn check_worker_credential(&self, client_id: &str) -> Result<(), HostError> {
        match self.credentials.worker_credential(client_id).await? {
            Some((credential, _)) => match credential.revoked_at {
                None => Ok(()),
                Some(at) => Err(unauthenticated(format!(
                    "the worker credentials {client_id:?} (worker {:?}) were revoked at {}: \
                     this worker token no longer works; have an admin create new credentials \
                     (`manman credentials create {}`) and restart the worker with them",
                    credential.worker_name,
                    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    credential.worker_name
                ))),
            },
            None => Err(unauthenticated(format!(
                "the worker credentials {client_id:?} this token was given for no longer exist: \
                 have an admin create new ones (`manman credentials create <name>`)"
            ))),
        }
    }

    /// A signed worker token for valid, unrevoked credentials.
    pub async fn exchange(&self, client_id: &str, secret: &str) -> Result<WorkerToken, HostError> {
        let refused = || {
            unauthenticated(
                "unknown client id or wrong secret: check MANMAN_WORKER_SA_CLIENT_ID and \
                 MANMAN_WORKER_SA_CLIENT_SECRET, or have an admin run `manman credentials create <name>`",
            )
        };
        let (credential, hash) = self
            .credentials
            .worker_credential(client_id)
            .await?
            .ok_or_else(refused)?;
        if !hash.matches(&SecretHash::of(secret)) {
            return Err(refused());
        }
        if credential.revoked_at.is_some() {
            return Err(unauthenticated(format!(
                "the credentials {client_id:?} were revoked; ask an admin for new ones"
            )));
        }
        let ttl = chrono::Duration::from_std(WORKER_TOKEN_TTL).unwrap_or(chrono::Duration::zero());
        let expires_at = self.clock.now() + ttl;
        let claims = Claims {
            worker: credential.worker_name,
            client: credential.client_id,
            exp: expires_at.timestamp(),
        };
        let payload = hex::encode(serde_json::to_vec(&claims).unwrap_or_default());
        let mut mac = self.key.mac();
        mac.update(payload.as_bytes());
        let signature = hex::encode(mac.finalize().into_bytes());
        Ok(WorkerToken {
            access_token: format!("{WORKER_TOKEN_PREFIX}{payload}.{signature}"),
            expires_at,
        })
    }

    fn verify_worker_token(&self, token: &str) -> Result<Caller, HostError> {
        let malformed =
            || unauthenticated("the worker token is malformed: exchange the credentials again");
        let (payload, signature) = token.split_once('.').ok_or_else(malformed)?;
        let signature = hex::decode(signature).map_err(|_| malformed())?;
        let mut mac = self.key.mac();
        mac.update(payload.as_bytes());
        mac.verify_slice(&signature).map_err(|_| {
            unauthenticated(
                "the worker token's signature does not match (signed by another host, or altered): \
                 exchange the credentials again",
            )
        })?;
        let claims: Claims = hex::decode(payload)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or_else(malformed)?;
        if self.clock.now().timestamp() >= claims.exp {
            return Err(unauthenticated(
                "the worker token expired: exchange the credentials again",
            ));
        }
        Ok(Caller::Worker {
            worker_name: claims.worker,
            client_id: claims.client,
        })
    }

    /// Makes sure an admin can get in. With `supplied` (the content of
    /// `MANMAN_ADMIN_TOKEN_FILE`), that secret becomes an admin token if it is not one yet.
    /// Without, when no unrevoked admin token exists, a new one is created and returned, to be
    /// shown once.
    pub async fn ensure_admin(
        &self,
        supplied: Option<&Secret>,
    ) -> Result<Option<Secret>, HostError> {
        if let Some(secret) = supplied {
            if secret.expose().len() < 16 {
                return Err(HostError::Invalid(
                    crate::validation::ValidationError::field(
                        "MANMAN_ADMIN_TOKEN_FILE",
                        "the admin token in the file is shorter than 16 characters: use a long random one",
                    ),
                ));
            }
            let hash = secret.hash();
            if self.credentials.token_by_hash(&hash).await?.is_none() {
                let name = format!("admin-file-{}", &hex::encode(hash.0)[..8]);
                self.credentials
                    .create_token(&name, Scope::Admin, &hash, self.clock.now())
                    .await?;
            }
            return Ok(None);
        }
        let tokens = self.credentials.list_tokens().await?;
        if tokens
            .iter()
            .any(|t| t.scope == Scope::Admin && t.revoked_at.is_none())
        {
            return Ok(None);
        }
        let name = if tokens.iter().any(|t| t.name == "admin") {
            format!("admin-{}", self.clock.now().format("%Y%m%d%H%M%S"))
        } else {
            "admin".to_owned()
        };
        let (_, secret) = self.create_token(&name, Scope::Admin).await?;
        Ok(Some(secret))
    }
}

/// Token names and the worker names of credentials follow the rules of worker names
/// ([`crate::validation::check_name`]), so credentials made for a name a worker could never
/// register under are refused at creation.
fn check_name(field: &str, name: &str) -> Result<(), HostError> {
    let mut errors = crate::validation::ValidationError::default();
    crate::validation::check_name(&mut errors, field, name);
    Ok(errors.into_result()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryStore;
    use crate::ports::SystemClock;

    /// The memory store, whose next token lookup (once asked to) reads the store, says so, and
    /// waits to be released before it answers: a revocation can be put exactly between the
    /// read and the answer.
    #[derive(Debug, Default)]
    struct PausingLookups {
        inner: MemoryStore,
        pause_next: std::sync::atomic::AtomicBool,
        looked_up: tokio::sync::Notify,
        release: tokio::sync::Notify,
    }

    #[async_trait::async_trait]
    impl CredentialRepository for PausingLookups {
        async fn create_token(
            &self,
            name: &str,
            scope: Scope,
            hash: &SecretHash,
            at: DateTime<Utc>,
        ) -> Result<ApiToken, crate::ports::StoreError> {
            self.inner.create_token(name, scope, hash, at).await
        }
        async fn token_by_hash(
            &self,
            hash: &SecretHash,
        ) -> Result<Option<ApiToken>, crate::ports::StoreError> {
            let found = self.inner.token_by_hash(hash).await;
            if self
                .pause_next
                .swap(false, std::sync::atomic::Ordering::SeqCst)
            {
                self.looked_up.notify_one();
                self.release.notified().await;
            }
            found
        }
        async fn list_tokens(&self) -> Result<Vec<ApiToken>, crate::ports::StoreError> {
            self.inner.list_tokens().await
        }
        async fn revoke_token(
            &self,
            id: TokenId,
            at: DateTime<Utc>,
        ) -> Result<ApiToken, crate::ports::StoreError> {
            self.inner.revoke_token(id, at).await
        }
        async fn create_worker_credential(
            &self,
            client_id: &str,
            worker_name: &str,
            secret_hash: &SecretHash,
            at: DateTime<Utc>,
        ) -> Result<WorkerCredential, crate::ports::StoreError> {
            self.inner
                .create_worker_credential(client_id, worker_name, secret_hash, at)
                .await
        }
        async fn worker_credential(
            &self,
            client_id: &str,
        ) -> Result<Option<(WorkerCredential, SecretHash)>, crate::ports::StoreError> {
            self.inner.worker_credential(client_id).await
        }
        async fn list_worker_credentials(
            &self,
        ) -> Result<Vec<WorkerCredential>, crate::ports::StoreError> {
            self.inner.list_worker_credentials().await
        }
        async fn revoke_worker_credential(
            &self,
            client_id: &str,
            at: DateTime<Utc>,
        ) -> Result<WorkerCredential, crate::ports::StoreError> {
            self.inner.revoke_worker_credential(client_id, at).await
        }
        async fn bus_secret(
            &self,
            candidate: &crate::signing::BusSecret,
        ) -> Result<crate::signing::BusSecret, crate::ports::StoreError> {
            self.inner.bus_secret(candidate).await
        }
    }

    #[tokio::test]
    async fn a_token_revoked_while_it_is_looked_up_is_not_put_back_in_the_cache() {
        let store = Arc::new(PausingLookups::default());
        let auth = Authenticator::new(store.clone(), Arc::new(SystemClock), SigningKey::random());
        let (token, secret) = auth.create_token("ci", Scope::Read).await.unwrap();
        store
            .pause_next
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let lookup = tokio::spawn({
            let auth = auth.clone();
            let secret = secret.expose().to_owned();
            async move { auth.authenticate(&secret).await }
        });
        // The lookup has read the token, not revoked yet; now it is revoked, then answered.
        store.looked_up.notified().await;
        auth.revoke_token(token.id).await.unwrap();
        store.release.notify_one();
        assert!(
            lookup.await.unwrap().is_ok(),
            "the request that began before the revocation is answered as read"
        );
        let refused = auth.authenticate(secret.expose()).await.unwrap_err();
        assert!(
            refused.to_string().contains("revoked"),
            "the stale answer was not remembered: {refused}"
        );
    }

    #[tokio::test]
    async fn a_worker_credential_check_names_the_revocation() {
        let auth = authenticator(SigningKey::random());
        let (credential, _) = auth.create_worker_credential("box-1").await.unwrap();
        auth.check_worker_credential(&credential.client_id)
            .await
            .unwrap();
        auth.revoke_worker_credential(&credential.client_id)
            .await
            .unwrap();
        let refused = auth
            .check_worker_credential(&credential.client_id)
            .await
            .unwrap_err();
        assert!(
            matches!(&refused, HostError::Unauthenticated { detail } if detail.contains("revoked") && detail.contains(&credential.client_id)),
            "{refused}"
        );
        assert!(matches!(
            auth.check_worker_credential("mmc_unknown").await,
            Err(HostError::Unauthenticated { .. })
        ));
    }

    fn authenticator(key: SigningKey) -> Authenticator {
        Authenticator::new(Arc::new(MemoryStore::new()), Arc::new(SystemClock), key)
    }

    #[tokio::test]
    async fn operator_tokens_authenticate_until_revoked() {
        let auth = authenticator(SigningKey::random());
        let (token, secret) = auth.create_token("ci", Scope::Read).await.unwrap();
        let caller = auth.authenticate(secret.expose()).await.unwrap();
        assert_eq!(
            caller,
            Caller::Operator {
                token_id: token.id,
                name: "ci".into(),
                scope: Scope::Read
            }
        );
        assert!(matches!(
            auth.authenticate("mm_not-a-token").await,
            Err(HostError::Unauthenticated { .. })
        ));
        auth.revoke_token(token.id).await.unwrap();
        let revoked = auth.authenticate(secret.expose()).await.unwrap_err();
        assert!(revoked.to_string().contains("revoked"), "{revoked}");
    }

    #[tokio::test]
    async fn worker_tokens_are_signed_scoped_and_refused_when_altered() {
        let auth = authenticator(SigningKey::random());
        let (credential, secret) = auth.create_worker_credential("game-1").await.unwrap();
        assert!(
            auth.exchange(&credential.client_id, "wrong").await.is_err(),
            "a wrong secret is refused"
        );
        let token = auth
            .exchange(&credential.client_id, secret.expose())
            .await
            .unwrap();
        let caller = auth.authenticate(&token.access_token).await.unwrap();
        assert_eq!(
            caller,
            Caller::Worker {
                worker_name: "game-1".into(),
                client_id: credential.client_id.clone()
            }
        );
        // Another worker's name in the claims, the signature kept: refused.
        let (payload, signature) = token.access_token[4..].split_once('.').unwrap();
        let mut claims: Claims = serde_json::from_slice(&hex::decode(payload).unwrap()).unwrap();
        claims.worker = "game-2".into();
        let forged = format!(
            "mmw.{}.{signature}",
            hex::encode(serde_json::to_vec(&claims).unwrap())
        );
        let refused = auth.authenticate(&forged).await.unwrap_err();
        assert!(refused.to_string().contains("signature"), "{refused}");
        // Signed by another host's key: refused.
        let other = authenticator(SigningKey::random());
        assert!(other.authenticate(&token.access_token).await.is_err());
        // Revoked credentials are not exchanged again.
        auth.revoke_worker_credential(&credential.client_id)
            .await
            .unwrap();
        let revoked = auth
            .exchange(&credential.client_id, secret.expose())
            .await
            .unwrap_err();
        assert!(revoked.to_string().contains("revoked"), "{revoked}");
    }

    #[tokio::test]
    async fn the_first_admin_token_is_made_once_or_taken_from_the_file() {
        let auth = authenticator(SigningKey::random());
        let first = auth
            .ensure_admin(None)
            .await
            .unwrap()
            .expect("a new admin token");
        assert!(
            auth.ensure_admin(None).await.unwrap().is_none(),
            "only once"
        );
        let caller = auth.authenticate(first.expose()).await.unwrap();
        assert!(matches!(
            caller,
            Caller::Operator {
                scope: Scope::Admin,
                ..
            }
        ));

        let supplied = Secret::from_supplied("  a-long-operator-chosen-secret\n");
        assert_eq!(auth.ensure_admin(Some(&supplied)).await.unwrap(), None);
        assert_eq!(
            auth.ensure_admin(Some(&supplied)).await.unwrap(),
            None,
            "idempotent"
        );
        let caller = auth
            .authenticate("a-long-operator-chosen-secret")
            .await
            .unwrap();
        assert!(matches!(
            caller,
            Caller::Operator {
                scope: Scope::Admin,
                ..
            }
        ));
        assert!(
            auth.ensure_admin(Some(&Secret::from_supplied("short")))
                .await
                .is_err()
        );
    }
}
