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
        /// Which backend and why (the source's text included, for a one-line answer).
        detail: String,
        /// The backend's own error ([`StoreError`], [`BusError`]), to downcast or walk.
        #[source]
        source: Option<ErrorSource>,
    },
    /// A bug or a broken backend.
    #[error("internal error: {detail}")]
    Internal {
        /// What failed (the source's text included, for a one-line answer).
        detail: String,
        /// The backend's own error, to downcast or walk.
        #[source]
        source: Option<ErrorSource>,
    },
}

/// The cause a [`HostError`] keeps: the error of the backend that failed.
pub type ErrorSource = Box<dyn std::error::Error + Send + Sync + 'static>;

impl HostError {
    /// `Unavailable` without a backend error to keep (e.g. a service that is not running).
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::Unavailable {
            detail: detail.into(),
            source: None,
        }
    }

    /// `Internal` without a backend error to keep.
    pub fn internal(detail: impl Into<String>) -> Self {
        Self::Internal {
            detail: detail.into(),
            source: None,
        }
    }

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
                source: Some(Box::new(StoreError::Unavailable { source })),
            },
            other => Self::Internal {
                detail: other.to_string(),
                source: Some(Box::new(other)),
            },
        }
    }
}

impl From<BusError> for HostError {
    fn from(e: BusError) -> Self {
        if e.is_transient() {
            Self::Unavailable {
                detail: format!("the message bus: {e}"),
                source: Some(Box::new(e)),
            }
        } else {
            Self::Internal {
                detail: e.to_string(),
                source: Some(Box::new(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error;

    #[test]
    fn a_backend_failure_keeps_the_backend_error_as_its_source() {
        let store = StoreError::Unavailable {
            source: "connection refused".into(),
        };
        let host = HostError::from(store);
        assert_eq!(
            host.to_string(),
            "temporarily unavailable: the store: connection refused"
        );
        let source = host.source().expect("a source");
        assert!(
            matches!(
                source.downcast_ref::<StoreError>(),
                Some(StoreError::Unavailable { .. })
            ),
            "the store's own error: {source:?}"
        );
        assert_eq!(
            source.source().map(ToString::to_string).as_deref(),
            Some("connection refused"),
            "and its cause below it"
        );
        let broken = HostError::from(StoreError::Other {
            source: "disk I/O error".into(),
        });
        assert!(matches!(broken, HostError::Internal { .. }));
        assert!(broken.source().is_some_and(|s| s.is::<StoreError>()));
        assert!(HostError::unavailable("not connected").source().is_none());
    }
}
