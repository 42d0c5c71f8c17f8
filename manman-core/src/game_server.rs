//! The catalogue's games: what to install (or find) on the workers.

use crate::id::GameServerId;
use crate::validation::{ValidationError, check_name, check_relative_path};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A game the host knows how to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GameServer {
    /// Its identity.
    pub id: GameServerId,
    /// Unique name, e.g. `cs2`.
    pub name: String,
    /// Where its files come from.
    pub server_type: ServerType,
    /// When it entered the catalogue (host clock).
    pub created_at: DateTime<Utc>,
}

/// Where a game's files come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ServerType {
    /// Installed and updated by SteamCMD; `app_id` is unique in the catalogue.
    Steam {
        /// The Steam application id of the dedicated server.
        app_id: u32,
    },
    /// Already on the worker machines, nothing to install. `path` is relative to the worker's
    /// install directory and stays inside it (absolute paths, `..` and links that point out
    /// are refused).
    Local {
        /// The directory that holds the game's files.
        path: String,
    },
}

/// What it takes to add a game to the catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewGameServer {
    /// Unique name.
    pub name: String,
    /// Where its files come from.
    pub server_type: ServerType,
}

impl NewGameServer {
    /// Checks the name and the type's fields.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let mut errors = ValidationError::default();
        check_name(&mut errors, "name", &self.name);
        match &self.server_type {
            ServerType::Steam { app_id } => {
                if *app_id == 0 {
                    errors.push(
                        "server_type.app_id",
                        "must be a Steam app id greater than 0",
                    );
                }
            }
            ServerType::Local { path } => {
                check_relative_path(&mut errors, "server_type.path", path);
            }
        }
        errors.into_result()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_type_is_tagged_json() {
        let steam: ServerType =
            serde_json::from_str(r#"{"type":"steam","app_id":896660}"#).unwrap();
        assert_eq!(steam, ServerType::Steam { app_id: 896660 });
        let err =
            serde_json::from_str::<ServerType>(r#"{"type":"docker","image":"x"}"#).unwrap_err();
        assert!(err.to_string().contains("docker"), "{err}");
    }

    #[test]
    fn validation_names_each_bad_field() {
        let game = NewGameServer {
            name: "bad name".into(),
            server_type: ServerType::Steam { app_id: 0 },
        };
        let err = game.validate().unwrap_err();
        let fields: Vec<_> = err.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["name", "server_type.app_id"]);
    }

    #[test]
    fn a_local_path_stays_inside_the_install_dir() {
        let local = |path: &str| NewGameServer {
            name: "g".into(),
            server_type: ServerType::Local { path: path.into() },
        };
        assert!(local("games/demo").validate().is_ok());
        for bad in ["/bin", "../x", "games/../../x", "a\0b", "a\u{1b}b", ""] {
            let err = local(bad).validate().unwrap_err();
            assert_eq!(err.errors[0].field, "server_type.path", "{bad:?}");
        }
    }
}
