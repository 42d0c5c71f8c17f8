//! What an existing file holds — nothing yet, a ManMan database, or something else — found out
//! read-only, before the store changes anything in it.

use crate::error::OpenError;
use crate::store::{MIGRATIONS_TABLE, MIGRATOR};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, SqliteConnection};
use std::path::Path;
use std::time::Duration;

/// SQLite's result code for "file is not a database".
const SQLITE_NOTADB: &str = "26";

/// Why a file that is not SQLite is refused.
pub(crate) const NOT_SQLITE: &str = "it is not a SQLite database";

/// What a file is, for the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileKind {
    /// No file, an empty file, or a SQLite database without tables: the migrations create the
    /// schema.
    Fresh,
    /// A database with ManMan's migration history (of this build or another).
    ManMan,
    /// Anything else; the reason says what was found.
    Foreign(&'static str),
}

impl FileKind {
    /// Refuses a foreign file.
    pub(crate) fn accept(self, path: &str) -> Result<(), OpenError> {
        match self {
            Self::Fresh | Self::ManMan => Ok(()),
            Self::Foreign(reason) => Err(OpenError::NotManMan {
                path: path.to_owned(),
                reason,
            }),
        }
    }
}

/// Whether a driver error says the file is not a SQLite database.
pub(crate) fn is_not_a_database(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.code().as_deref() == Some(SQLITE_NOTADB))
}

/// Looks at the file at `path` through a read-only connection (nothing is written, not even the
/// journal mode).
pub(crate) async fn inspect(path: &Path, busy_timeout: Duration) -> Result<FileKind, OpenError> {
    let display = path.display().to_string();
    match tokio::fs::metadata(path).await {
        Ok(meta) if meta.len() == 0 => return Ok(FileKind::Fresh),
        Ok(meta) if meta.is_dir() => return Ok(FileKind::Foreign("it is a directory")),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(FileKind::Fresh),
        // Let opening it report the problem.
        Err(_) => return Ok(FileKind::Fresh),
    }
    let opened = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .busy_timeout(busy_timeout)
        .connect()
        .await;
    let mut conn = match opened {
        Ok(conn) => conn,
        Err(e) if is_not_a_database(&e) => {
            return Ok(FileKind::Foreign(NOT_SQLITE));
        }
        Err(source) => {
            return Err(OpenError::Open {
                path: display,
                source,
            });
        }
    };
    let kind = classify(&mut conn).await;
    // Closing a read-only connection writes nothing.
    let _ = conn.close().await;
    match kind {
        Ok(kind) => Ok(kind),
        Err(e) if is_not_a_database(&e) => Ok(FileKind::Foreign(NOT_SQLITE)),
        Err(source) => Err(OpenError::Open {
            path: display,
            source,
        }),
    }
}

async fn classify(conn: &mut SqliteConnection) -> Result<FileKind, sqlx::Error> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'",
    )
    .fetch_all(&mut *conn)
    .await?;
    let history = MIGRATIONS_TABLE;
    if !tables.iter().any(|t| t == history) {
        return Ok(if tables.is_empty() {
            FileKind::Fresh
        } else {
            FileKind::Foreign("it holds tables of another program and no ManMan migration history")
        });
    }
    let first = MIGRATOR.iter().next().map_or(0, |m| m.version);
    let (ours, applied): (bool, i64) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT EXISTS (SELECT 1 FROM \"{history}\" WHERE version = ?1), (SELECT count(*) FROM \"{history}\")"
    )))
    .bind(first)
    .fetch_one(&mut *conn)
    .await?;
    Ok(if ours {
        FileKind::ManMan
    } else if applied == 0 && tables.len() == 1 {
        // A first migration that never finished: only the empty history table was created.
        FileKind::Fresh
    } else {
        FileKind::Foreign("its migration history is another program's")
    })
}
