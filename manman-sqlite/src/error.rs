//! Driver errors mapped to core's [`StoreError`], in one place (as `manman-pg` maps them); and
//! [`OpenError`] for setting the store up.

use manman_core::ports::StoreError;
use sqlx::error::ErrorKind;
use std::fmt::Display;

/// Why the store could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The URL is not a `sqlite:` URL this store understands.
    #[error("not a SQLite URL ManMan understands: {url}: {why}")]
    Url {
        /// The URL.
        url: String,
        /// What is wrong with it.
        why: String,
    },
    /// The directory for a new database file could not be created.
    #[error("cannot create the directory {path} for the database")]
    CreateDir {
        /// The directory.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file could not be opened (missing and not to be created, no permission, locked by
    /// another program for longer than the busy timeout, …).
    #[error("cannot open the SQLite database {path}")]
    Open {
        /// The database file.
        path: String,
        /// Why.
        #[source]
        source: sqlx::Error,
    },
    /// The file holds something else: it was left as it was.
    #[error(
        "this is not a ManMan database: {path} ({reason}); ManMan left it unchanged: \
         give another path (a new file is created), or move this file away"
    )]
    NotManMan {
        /// The file.
        path: String,
        /// What was found instead.
        reason: &'static str,
    },
    /// The database was migrated by a newer ManMan: this build does not know its schema.
    #[error(
        "the database {path} was migrated by a newer ManMan (migration {version} is unknown to \
         this build): run that version or a newer one, or restore a backup taken before the upgrade"
    )]
    NewerSchema {
        /// The database file.
        path: String,
        /// The first migration this build does not know.
        version: i64,
    },
    /// The migrations could not be applied.
    #[error("cannot migrate the database {path}")]
    Migrate {
        /// The database file.
        path: String,
        /// Why.
        #[source]
        source: sqlx::migrate::MigrateError,
    },
}

/// Maps a driver error about `what` (e.g. `config 3`) to core's error.
pub(crate) fn store_error(error: sqlx::Error, what: &dyn Display) -> StoreError {
    match error {
        sqlx::Error::RowNotFound => StoreError::not_found(what),
        sqlx::Error::Database(db) => match db.kind() {
            ErrorKind::UniqueViolation => {
                StoreError::conflict(what, unique_detail(unique_constraint(db.message())))
            }
            // SQLite does not say which foreign key failed: the operations that know their
            // references find the missing one (`references.rs`) before they get here.
            ErrorKind::ForeignKeyViolation => StoreError::Invalid {
                detail: format!("{what} refers to something that does not exist"),
            },
            ErrorKind::CheckViolation => {
                let message = db.message();
                let rule = message
                    .strip_prefix("CHECK constraint failed: ")
                    .unwrap_or(message);
                StoreError::Invalid {
                    detail: format!("{what} breaks the schema's rule {rule}"),
                }
            }
            _ => {
                let code = db
                    .code()
                    .and_then(|code| code.parse::<i32>().ok())
                    .unwrap_or_default();
                if is_transient_code(code) {
                    StoreError::Unavailable { source: db.into() }
                } else {
                    StoreError::Other { source: db.into() }
                }
            }
        },
        e @ (sqlx::Error::Io(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed) => StoreError::Unavailable { source: e.into() },
        other => StoreError::Other {
            source: other.into(),
        },
    }
}

/// SQLite result codes (the primary code, the low byte of the extended one) that mean "try
/// again later": the file is locked by another connection past the busy timeout (`BUSY`, 5),
/// a table is locked (`LOCKED`, 6), the disk failed to read or write (`IOERR`, 10), the disk is
/// full (`FULL`, 13), the file cannot be opened now (`CANTOPEN`, 14), the locking protocol
/// failed (`PROTOCOL`, 15).
fn is_transient_code(extended: i32) -> bool {
    matches!(extended & 0xff, 5 | 6 | 10 | 13 | 14 | 15)
}

/// The name the schema gives the unique constraint a message is about. SQLite names the
/// columns (`UNIQUE constraint failed: game_servers.name`), not the constraint.
fn unique_constraint(message: &str) -> &'static str {
    let columns = message
        .strip_prefix("UNIQUE constraint failed: ")
        .unwrap_or(message);
    match columns {
        "game_servers.name" => "game_servers_name_key",
        "game_servers.app_id" => "game_servers_app_id_key",
        "game_server_configs.game_server_id, game_server_configs.name" => {
            "game_server_configs_game_server_id_name_key"
        }
        // The partial unique index over the game's default config.
        "game_server_configs.game_server_id" => "game_server_configs_one_default_idx",
        "command_records.id" => "command_records_pkey",
        "workers.name" => "workers_name_key",
        "status_events.event_id" => "status_events_event_id_key",
        "api_tokens.name" => "api_tokens_name_key",
        "api_tokens.token_hash" => "api_tokens_token_hash_key",
        "worker_credentials.client_id" => "worker_credentials_pkey",
        _ => "",
    }
}

/// What a unique violation means, by constraint (the same words as `manman-pg`).
fn unique_detail(constraint: &str) -> &'static str {
    match constraint {
        "game_servers_name_key" => "the name is taken: choose another",
        "game_servers_app_id_key" => {
            "another game server installs this app: add a config to it instead"
        }
        "game_server_configs_game_server_id_name_key" => {
            "the name is taken for this game: choose another"
        }
        "game_server_configs_one_default_idx" => {
            "the game already has a default config: unset it first or create this one without is_default"
        }
        "command_records_pkey" => "the id exists",
        "workers_name_key" => "a worker registered under this name at the same moment: try again",
        "api_tokens_name_key" => "a token with this name exists: choose another name",
        "api_tokens_token_hash_key" => "this secret is already a token",
        "worker_credentials_pkey" => "this client id exists",
        _ => "it already exists",
    }
}

/// Whether an error is a foreign-key violation.
pub(crate) fn is_foreign_key_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.kind() == ErrorKind::ForeignKeyViolation)
}

/// Whether an error says this event id is in the history already.
pub(crate) fn is_duplicate_event(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db)
        if db.kind() == ErrorKind::UniqueViolation
            && unique_constraint(db.message()) == "status_events_event_id_key")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_messages_name_the_constraint_and_what_to_do() {
        assert_eq!(
            unique_detail(unique_constraint(
                "UNIQUE constraint failed: game_servers.name"
            )),
            "the name is taken: choose another"
        );
        assert_eq!(
            unique_constraint(
                "UNIQUE constraint failed: game_server_configs.game_server_id, game_server_configs.name"
            ),
            "game_server_configs_game_server_id_name_key"
        );
        assert_eq!(
            unique_detail(unique_constraint("UNIQUE constraint failed: other.x")),
            "it already exists"
        );
    }

    #[test]
    fn busy_locked_and_io_are_transient() {
        // SQLITE_BUSY, SQLITE_BUSY_SNAPSHOT (517), SQLITE_LOCKED, SQLITE_IOERR_WRITE (778).
        for code in [5, 517, 6, 10, 778, 13, 14] {
            assert!(is_transient_code(code), "{code}");
        }
        // SQLITE_ERROR, SQLITE_CORRUPT, SQLITE_NOTADB, SQLITE_CONSTRAINT_NOTNULL (1299).
        for code in [1, 11, 26, 1299] {
            assert!(!is_transient_code(code), "{code}");
        }
    }
}
