//! [`HostError`]: what the host's services answer when they cannot do what was asked. The HTTP
//! layer maps it to status codes in one place.

use crate::ports::{BusError, StoreError};
use crate::validation::ValidationError;

/// Why a host operation failed, in terms a caller can act on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// The request's fields are wrong (each field is named).
    #[error("invalid request: {0}")]
    Invalid(#[from] ValidationError),
    /// What it refers to does not exist.
    #[error("{what} does not exist")]
    NotFound {
        /// E.g. `config 3`.
        what: String,
    },
    /// It clashes with the current state (a taken name, an instance that has ended).
    #[error("{what}: {detail}")]
    Conflict {
        /// What clashes.
        what: String,
        /// How, and what to do.
        detail: String,
    },
    /// The caller is not authenticated (no token, an unknown, revoked or expired one).
    #[error("not authenticated: {detail}")]
    Unauthenticated {
        /// Why, and what to do.
        detail: String,
    },
    /// The caller is authenticated but may not do this.
    #[error("forbidden: {detail}")]
    Forbidden {
        /// What it lacks.
        detail: String,
    },
    /// No worker can take the instance.
    #[error("no worker can run this: {detail}")]
    NoWorker {
        /// Why none fits.
        detail: String,
    },
    /// A backend (store, bus) is unavailable now: retry later.
    #[error("temporarily unavailable: {detail}")]
    Unavailable {
        /// Which backend and why.
        detail: String,
    },
    /// A bug or a broken backend.
    #[error("internal error: {detail}")]
    Internal {
        /// What failed.
        detail: String,
    },
}

impl HostError {
    /// `Conflict` about `what`.
    pub fn conflict(what: &(impl std::fmt::Display + ?Sized), detail: impl Into<String>) -> Self {
        Self::Conflict {
            what: what.to_string(),
            detail: detail.into(),
        }
    }
}

impl From<StoreError> for HostError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { what } => Self::NotFound { what },
            StoreError::Conflict { what, detail } => Self::Conflict { what, detail },
            StoreError::Invalid { detail } => {
                Self::Invalid(ValidationError::field("request", detail))
            }
            StoreError::Unavailable { source } => Self::Unavailable {
                detail: format!("the store: {source}"),
            },
            other => Self::Internal {
                detail: other.to_string(),
            },
        }
    }
}

impl From<BusError> for HostError {
    fn from(e: BusError) -> Self {
        if e.is_transient() {
            Self::Unavailable {
                detail: format!("the message bus: {e}"),
            }
        } else {
            Self::Internal {
                detail: e.to_string(),
            }
        }
    }
}
