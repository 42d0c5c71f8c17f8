//! Driver errors mapped to core's [`StoreError`], in one place; and [`ConnectError`] for
//! setting the store up.

use manman_core::ports::StoreError;
use std::fmt::Display;

/// Why the store could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The URL does not parse.
    #[error("not a valid PostgreSQL URL: {url}")]
    Url {
        /// The URL, password hidden.
        url: String,
        /// Why.
        #[source]
        source: sqlx::Error,
    },
    /// The server could not be reached.
    #[error("cannot connect to PostgreSQL at {url}")]
    Connect {
        /// The URL, password hidden.
        url: String,
        /// Why.
        #[source]
        source: sqlx::Error,
    },
    /// The database was migrated by a newer ManMan: this build does not know its schema.
    #[error(
        "the database was migrated by a newer ManMan (migration {version} is unknown to this build): \
         run that version or a newer one, or restore a backup taken before the upgrade"
    )]
    NewerSchema {
        /// The first migration this build does not know.
        version: i64,
    },
    /// The migrations could not be applied.
    #[error("cannot migrate the `manman` schema")]
    Migrate {
        /// Why.
        #[source]
        source: sqlx::migrate::MigrateError,
    },
}

/// Maps a driver error about `what` (e.g. `config 3`) to core's error.
pub(crate) fn store_error(error: sqlx::Error, what: &dyn Display) -> StoreError {
    match error {
        sqlx::Error::RowNotFound => StoreError::not_found(what),
        sqlx::Error::Database(db) => {
            let constraint = db.constraint().unwrap_or_default().to_owned();
            if db.is_unique_violation() {
                return StoreError::conflict(what, unique_detail(&constraint));
            }
            if db.is_foreign_key_violation() {
                return StoreError::Invalid {
                    detail: format!(
                        "{what} refers to something that does not exist ({})",
                        reference(&constraint)
                    ),
                };
            }
            if db.is_check_violation() {
                return StoreError::Invalid {
                    detail: format!(
                        "{what} breaks the schema's rule {constraint}: {}",
                        db.message()
                    ),
                };
            }
            let code = db.code().unwrap_or_default().into_owned();
            if is_transient_code(&code) {
                StoreError::Unavailable { source: db.into() }
            } else {
                StoreError::Other { source: db.into() }
            }
        }
        e @ (sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed) => StoreError::Unavailable { source: e.into() },
        other => StoreError::Other {
            source: other.into(),
        },
    }
}

/// SQLSTATE classes that mean "try again later": connection exceptions (08), insufficient
/// resources (53), operator intervention such as a shutdown or a terminated backend (57),
/// serialization failures and deadlocks (40001, 40P01), and a database refusing connections
/// (55000 "object not in prerequisite state").
fn is_transient_code(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("53")
        || code.starts_with("57")
        || matches!(code, "40001" | "40P01" | "55000")
}

/// What a unique violation means, by constraint.
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
        "api_tokens_name_key" => "a token with this name exists: choose another name",
        "api_tokens_token_hash_key" => "this secret is already a token",
        "worker_credentials_pkey" => "this client id exists",
        "workers_name_key" => "a worker registered under this name at the same moment: try again",
        _ => "it already exists",
    }
}

/// The missing reference a foreign key names.
fn reference(constraint: &str) -> &'static str {
    match constraint {
        "game_server_configs_game_server_id_fkey" => "the game server",
        "instances_config_id_fkey" => "the config",
        "instances_worker_id_fkey" | "command_records_worker_id_fkey" => "the worker",
        "command_records_instance_id_fkey" => "the instance",
        _ => "a referenced row",
    }
}

/// The name of the foreign key an error violated, if it is one.
pub(crate) fn violated_foreign_key(error: &sqlx::Error) -> Option<String> {
    match error {
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
            db.constraint().map(str::to_owned)
        }
        _ => None,
    }
}
