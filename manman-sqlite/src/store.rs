//! [`SqliteStore`]: the writer connection, the reader pool, the migrator.

use crate::error::OpenError;
use crate::file_kind;
use crate::settings::SqliteSettings;
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};
use std::fmt;
use std::sync::Arc;

/// The embedded migrations (their history is the table `_sqlx_migrations`).
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// The table sqlx keeps the migration history in (its default; this crate has no `sqlx.toml`).
pub(crate) const MIGRATIONS_TABLE: &str = "_sqlx_migrations";

/// Every repository port of `manman-core` on one SQLite file. Cloning shares the connections.
///
/// Every write goes through one connection (a pool of one), in `BEGIN IMMEDIATE` transactions;
/// reads go to a pool of read-only connections, which WAL lets read while the writer writes.
#[derive(Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    location: Arc<str>,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &&*self.location)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens the database: the file (created with its directory when missing, unless the
    /// settings say not to), in WAL mode, foreign keys on, with the busy timeout. A file that
    /// is not a ManMan database is refused with [`OpenError::NotManMan`] before anything in it
    /// changes. Does not migrate: call [`SqliteStore::migrate`].
    pub async fn open(settings: &SqliteSettings) -> Result<Self, OpenError> {
        let location: Arc<str> = settings.display().into();
        let open_error = |source| OpenError::Open {
            path: location.to_string(),
            source,
        };
        let writer_pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(settings.acquire_timeout)
            // The connection is kept: an in-memory database lives as long as it does, and a
            // file keeps its WAL index open.
            .idle_timeout(None)
            .max_lifetime(None)
            // A connection in this process does not go stale: no ping before each use.
            .test_before_acquire(false);
        let options = SqliteConnectOptions::new()
            .filename(&settings.path)
            .foreign_keys(true)
            .busy_timeout(settings.busy_timeout);
        if settings.is_memory() {
            let writer = writer_pool
                .connect_with(options.filename(":memory:").in_memory(true))
                .await
                .map_err(open_error)?;
            // One connection holds the whole database: it reads too.
            let reader = writer.clone();
            return Ok(Self {
                writer,
                reader,
                location,
            });
        }

        file_kind::inspect(&settings.path, settings.busy_timeout)
            .await?
            .accept(&location)?;
        if settings.create_if_missing
            && let Some(dir) = settings.path.parent()
            && !dir.as_os_str().is_empty()
        {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|source| OpenError::CreateDir {
                    path: dir.display().to_string(),
                    source,
                })?;
        }
        let writer = writer_pool
            .connect_with(
                options
                    .clone()
                    .create_if_missing(settings.create_if_missing)
                    .journal_mode(SqliteJournalMode::Wal)
                    // With WAL, NORMAL loses no committed transaction when the process dies;
                    // only a power cut may take back the last ones.
                    .synchronous(SqliteSynchronous::Normal),
            )
            .await
            .map_err(|e| refusal_or(e, &location))?;
        let reader = SqlitePoolOptions::new()
            .max_connections(settings.readers.max(1))
            .acquire_timeout(settings.acquire_timeout)
            .test_before_acquire(false)
            .connect_with(options.read_only(true))
            .await
            .map_err(open_error)?;
        Ok(Self {
            writer,
            reader,
            location,
        })
    }

    /// Applies the embedded migrations that are missing (idempotent), all in one transaction:
    /// a database from an older ManMan is brought up to date, or left as it was if a migration
    /// fails. A database migrated by a newer ManMan (a migration this build does not know) is
    /// refused with [`OpenError::NewerSchema`].
    pub async fn migrate(&self) -> Result<(), OpenError> {
        let fail = |source| match source {
            MigrateError::VersionMissing(version) => OpenError::NewerSchema {
                path: self.location.to_string(),
                version,
            },
            source => OpenError::Migrate {
                path: self.location.to_string(),
                source,
            },
        };
        let mut tx = self
            .begin_write()
            .await
            .map_err(|e| fail(MigrateError::Execute(e)))?;
        MIGRATOR.run(&mut *tx).await.map_err(fail)?;
        tx.commit()
            .await
            .map_err(|e| fail(MigrateError::Execute(e)))
    }

    /// Closes every connection and waits for them (the last one folds the WAL back into the
    /// file). Dropping every clone of the store closes them too, without waiting.
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }

    /// The database file, or `sqlite::memory:`.
    pub fn path(&self) -> &str {
        &self.location
    }

    /// The read-only pool, for single statements that only read.
    pub(crate) fn reader(&self) -> &SqlitePool {
        &self.reader
    }

    /// The one writer connection, for single statements that write.
    pub(crate) fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    /// A write transaction on the writer connection. `IMMEDIATE` takes the file's write lock at
    /// the start, so a transaction that reads before it writes never fails half-way because
    /// another process wrote in between (it waits up to the busy timeout instead).
    pub(crate) async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
        self.writer.begin_with("BEGIN IMMEDIATE").await
    }
}

/// Opening the writer failed: a file that is not a database is refused as such.
fn refusal_or(error: sqlx::Error, path: &str) -> OpenError {
    if file_kind::is_not_a_database(&error) {
        return OpenError::NotManMan {
            path: path.to_owned(),
            reason: file_kind::NOT_SQLITE,
        };
    }
    OpenError::Open {
        path: path.to_owned(),
        source: error,
    }
}
