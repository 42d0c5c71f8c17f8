//! [`PgStore`]: the pool, the migrator, and the repository ports on PostgreSQL.

use crate::error::ConnectError;
use crate::settings::{PgSettings, redacted};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use std::str::FromStr;

/// The embedded migrations of schema `manman` (its migration table is `manman._sqlx_migrations`).
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Every repository port of `manman-core` on PostgreSQL. Cloning shares the pool.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

/// A pooled connection idle at least this long is pinged before it is handed out.
const PING_IF_IDLE_FOR: std::time::Duration = std::time::Duration::from_secs(5);

impl PgStore {
    /// Opens a pool (checking one connection now, so a wrong URL fails at start). Does not
    /// migrate: call [`PgStore::migrate`].
    pub async fn connect(settings: &PgSettings) -> Result<Self, ConnectError> {
        let url = redacted(&settings.url);
        let options = PgConnectOptions::from_str(&settings.url)
            .map_err(|source| ConnectError::Url {
                url: url.clone(),
                source,
            })?
            .application_name("manman")
            .options([(
                "statement_timeout",
                format!("{}", settings.statement_timeout.as_millis()),
            )]);
        let pool = PgPoolOptions::new()
            // sqlx pings a pooled connection each time it is handed out: a round trip more for
            // every query. A connection in use is known to be alive; only one idle for a while
            // (whose server may have restarted, or whose peer a firewall forgot) is pinged.
            .test_before_acquire(false)
            .before_acquire(|connection, meta| {
                Box::pin(async move {
                    if meta.idle_for >= PING_IF_IDLE_FOR {
                        sqlx::Connection::ping(connection).await?;
                    }
                    Ok(true)
                })
            })
            .max_connections(settings.max_connections)
            .min_connections(settings.min_connections)
            .acquire_timeout(settings.acquire_timeout)
            .connect_with(options)
            .await
            .map_err(|source| ConnectError::Connect { url, source })?;
        Ok(Self { pool })
    }

    /// A store on an existing pool.
    pub fn from_pool(pool: PgPool) -> Self {
        Self { pool }
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Applies the embedded migrations that are missing (idempotent). A database migrated by a
    /// newer ManMan (unknown migrations) is refused.
    pub async fn migrate(&self) -> Result<(), ConnectError> {
        MIGRATOR
            .run(&self.pool)
            .await
            .map_err(|source| match source {
                sqlx::migrate::MigrateError::VersionMissing(version) => {
                    ConnectError::NewerSchema { version }
                }
                source => ConnectError::Migrate { source },
            })
    }
}
