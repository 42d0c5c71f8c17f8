//! Identifiers: `i64` newtypes for the rows the host keeps, [`Uuid`]s for messages and commands.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
pub use uuid::Uuid;

macro_rules! row_id {
    ($(#[$doc:meta])* $name:ident, $label:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl $name {
            /// The raw database value.
            pub const fn get(self) -> i64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{} {}", $label, self.0)
            }
        }

        impl FromStr for $name {
            type Err = std::num::ParseIntError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.parse().map(Self)
            }
        }
    };
}

row_id!(
    /// Identity of a [`Worker`](crate::worker::Worker), stable across its registrations.
    WorkerId,
    "worker"
);
row_id!(
    /// Identity of a [`GameServer`](crate::game_server::GameServer).
    GameServerId,
    "game server"
);
row_id!(
    /// Identity of a [`GameServerConfig`](crate::config::GameServerConfig).
    ConfigId,
    "config"
);
row_id!(
    /// Identity of an [`Instance`](crate::instance::Instance): one run of a config on a worker.
    InstanceId,
    "instance"
);
row_id!(
    /// Identity of an operator [`ApiToken`](crate::auth::ApiToken).
    TokenId,
    "token"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_serialize_as_plain_numbers_and_display_their_kind() {
        assert_eq!(serde_json::to_string(&InstanceId(42)).unwrap(), "42");
        assert_eq!(InstanceId(42).to_string(), "instance 42");
        assert_eq!("7".parse::<ConfigId>().unwrap(), ConfigId(7));
    }
}
