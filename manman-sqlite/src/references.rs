//! Which reference a failed foreign key is about. SQLite only says "FOREIGN KEY constraint
//! failed"; the operation knows what it refers to, and asks which of those rows is missing (in
//! its own transaction, so the answer is about the same state).

use crate::error::{is_foreign_key_violation, store_error};
use manman_core::id::{ConfigId, InstanceId, WorkerId};
use manman_core::ports::StoreError;
use sqlx::SqliteConnection;
use std::fmt::{self, Display};

/// A row an insert refers to.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Reference {
    /// A config.
    Config(ConfigId),
    /// A worker.
    Worker(WorkerId),
    /// An instance.
    Instance(InstanceId),
}

impl Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config(id) => id.fmt(f),
            Self::Worker(id) => id.fmt(f),
            Self::Instance(id) => id.fmt(f),
        }
    }
}

impl Reference {
    async fn exists(self, conn: &mut SqliteConnection) -> Result<bool, sqlx::Error> {
        let (sql, id) = match self {
            Self::Config(id) => (
                "SELECT EXISTS (SELECT 1 FROM game_server_configs WHERE id = ?1)",
                id.get(),
            ),
            Self::Worker(id) => (
                "SELECT EXISTS (SELECT 1 FROM workers WHERE id = ?1)",
                id.get(),
            ),
            Self::Instance(id) => (
                "SELECT EXISTS (SELECT 1 FROM instances WHERE id = ?1)",
                id.get(),
            ),
        };
        sqlx::query_scalar(sql).bind(id).fetch_one(conn).await
    }
}

/// Maps an error of a statement that refers to `references` about `what`: a foreign-key
/// violation becomes `NotFound` for the first of them that is missing; anything else is
/// mapped as usual.
pub(crate) async fn missing_or(
    error: sqlx::Error,
    conn: &mut SqliteConnection,
    references: &[Reference],
    what: &str,
) -> StoreError {
    if is_foreign_key_violation(&error) {
        for reference in references {
            match reference.exists(conn).await {
                Ok(true) => {}
                Ok(false) => return StoreError::not_found(reference),
                Err(e) => return store_error(e, &what),
            }
        }
    }
    store_error(error, &what)
}
