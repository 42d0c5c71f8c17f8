//! Who may call the host: operator [`ApiToken`]s with a [`Scope`], [`WorkerCredential`]s that
//! a worker exchanges for a short-lived token, and the [`Secret`]s behind both (kept only as a
//! [`SecretHash`]).

use crate::id::TokenId;
use crate::unknown_name::UnknownName;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;
use subtle::ConstantTimeEq;

/// What an operator token may do. Each scope includes the ones before it. Admins define what
/// runs (the catalogue); `operate` runs what they defined; `read` sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Read everything: catalogue, workers, instances, commands, history, consoles, events.
    Read,
    /// Read, and run what admins defined: start, stop, restart and kill instances, send them
    /// console lines (stdin). Cannot change the catalogue or shut a worker down.
    Operate,
    /// Operate, and define what runs: create, change and delete games and configs; shut
    /// workers down; manage operator tokens and worker credentials.
    Admin,
}

impl Scope {
    /// Every scope, the narrowest first.
    pub const ALL: [Self; 3] = [Self::Read, Self::Operate, Self::Admin];

    /// The name used in the API and the database.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Operate => "operate",
            Self::Admin => "admin",
        }
    }

    /// Whether a token of this scope may do what `needed` allows.
    pub fn allows(self, needed: Self) -> bool {
        self >= needed
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        UnknownName::find("scope", s, &Self::ALL, Self::as_str)
    }
}

/// An operator token as the host keeps it (the secret itself is never stored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiToken {
    /// Identity.
    pub id: TokenId,
    /// A unique name saying whose or what for (`ci`, `alice`).
    pub name: String,
    /// What it may do.
    pub scope: Scope,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was revoked; a revoked token authenticates nothing.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A worker's credentials as the host keeps them: exchanged at `POST /api/v1/auth/token` for a
/// token that lets the worker named `worker_name` use the worker API for itself only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkerCredential {
    /// The public half, sent with the secret.
    pub client_id: String,
    /// The worker (by its registration name) these credentials act for.
    pub worker_name: String,
    /// When they were created.
    pub created_at: DateTime<Utc>,
    /// When they were revoked; revoked credentials are not exchanged.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A freshly generated secret: 32 random bytes, shown once as `<prefix>_<64 hex digits>`.
/// Its `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// A new random secret, e.g. `mm_3f…` for an operator token.
    pub fn generate(prefix: &str) -> Self {
        let mut bytes = [0u8; 32];
        // The operating system's random source failing is not something to carry on from.
        getrandom::fill(&mut bytes).expect("the operating system's random source failed");
        Self(format!("{prefix}_{}", hex::encode(bytes)))
    }

    /// A secret the operator supplied (e.g. read from `MANMAN_ADMIN_TOKEN_FILE`).
    pub fn from_supplied(secret: &str) -> Self {
        Self(secret.trim().to_owned())
    }

    /// The secret text, to show once or to send.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What the host stores instead of the secret.
    pub fn hash(&self) -> SecretHash {
        SecretHash::of(&self.0)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// The SHA-256 of a secret. The secrets are 256 random bits, so a fast hash is enough: what it
/// guards against is a leaked database, not guessing. Compared in constant time.
#[derive(Clone, Copy, Hash, PartialEq, Eq)]
pub struct SecretHash(pub [u8; 32]);

impl SecretHash {
    /// The hash of `secret` as presented.
    pub fn of(secret: &str) -> Self {
        Self(Sha256::digest(secret.as_bytes()).into())
    }

    /// Equality that takes the same time wherever the first difference is.
    pub fn matches(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretHash({}…)", hex::encode(&self.0[..4]))
    }
}

/// Who made a request, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// An operator token.
    Operator {
        /// The token.
        token_id: TokenId,
        /// Its name.
        name: String,
        /// What it may do.
        scope: Scope,
    },
    /// A worker, with a token from [`WorkerCredential`]s.
    Worker {
        /// The worker name the credentials act for.
        worker_name: String,
        /// The credentials' client id.
        client_id: String,
    },
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Operator { name, scope, .. } => write!(f, "token {name:?} ({scope})"),
            Self::Worker { worker_name, .. } => write!(f, "worker {worker_name:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_include_the_narrower_ones_and_parse() {
        assert!(Scope::Admin.allows(Scope::Operate));
        assert!(Scope::Operate.allows(Scope::Read));
        assert!(!Scope::Read.allows(Scope::Operate));
        assert!(!Scope::Operate.allows(Scope::Admin));
        for scope in Scope::ALL {
            assert_eq!(scope.as_str().parse::<Scope>().unwrap(), scope);
        }
        assert!(
            "root"
                .parse::<Scope>()
                .unwrap_err()
                .to_string()
                .contains("read, operate, admin")
        );
    }

    #[test]
    fn secrets_are_random_hashed_and_never_debug_printed() {
        let a = Secret::generate("mm");
        let b = Secret::generate("mm");
        assert_ne!(a, b);
        assert!(a.expose().starts_with("mm_") && a.expose().len() == 3 + 64);
        assert!(a.hash().matches(&SecretHash::of(a.expose())));
        assert!(!a.hash().matches(&b.hash()));
        assert!(!format!("{a:?}").contains(&a.expose()[3..]));
    }
}
