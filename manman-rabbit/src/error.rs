//! lapin errors mapped to core's [`BusError`], in one place; and [`ConnectError`] for setting
//! the bus up.

use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::{Error as LapinError, ErrorKind};
use manman_core::ports::BusError;
use std::path::PathBuf;

/// Why [`crate::RabbitBus::connect`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The URL does not parse.
    #[error("not a valid AMQP URL ({url}): {detail}")]
    Url {
        /// The URL, password hidden.
        url: String,
        /// What is wrong with it.
        detail: String,
    },
    /// An `amqps://` URL in a build without TLS.
    #[error(
        "{url} asks for TLS, but this build of manman-rabbit has no TLS: build it with the `tls` \
         feature (the ManMan binaries have it) or use an amqp:// URL"
    )]
    TlsNotEnabled {
        /// The URL, password hidden.
        url: String,
    },
    /// The CA file could not be read.
    #[error("cannot read the CA file {path}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The broker could not be reached, or refused the connection, within the connect timeout.
    #[error("cannot connect to RabbitMQ at {url}: is the broker running and the URL right?")]
    Connect {
        /// The URL, password hidden.
        url: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// The AMQP reply code of a channel-level error, if `error` is one.
pub(crate) fn soft_error(error: &LapinError) -> Option<(AMQPSoftError, String)> {
    match error.kind() {
        ErrorKind::ProtocolError(amqp) => match amqp.kind() {
            AMQPErrorKind::Soft(soft) => Some((soft.clone(), amqp.get_message().to_string())),
            AMQPErrorKind::Hard(_) => None,
        },
        _ => None,
    }
}

/// Whether `error` is the broker's NOT_FOUND.
pub(crate) fn is_not_found(error: &LapinError) -> bool {
    matches!(soft_error(error), Some((AMQPSoftError::NOTFOUND, _)))
}

/// Whether `error` means "the connection or channel went away: retry once it is back". These
/// are what lapin recovers from.
pub(crate) fn is_transient(error: &LapinError) -> bool {
    match soft_error(error) {
        // A channel-level refusal is about the request, not the link.
        Some(_) => false,
        None => error.can_be_recovered(),
    }
}

/// Maps a lapin error about `what` (e.g. `queue "worker.3.commands"`) to core's error.
pub(crate) fn bus_error(error: LapinError, what: &str) -> BusError {
    if let Some((code, text)) = soft_error(&error) {
        return match code {
            AMQPSoftError::NOTFOUND => BusError::NotFound {
                what: what.to_owned(),
            },
            AMQPSoftError::PRECONDITIONFAILED
            | AMQPSoftError::RESOURCELOCKED
            | AMQPSoftError::ACCESSREFUSED => BusError::Conflict {
                what: what.to_owned(),
                detail: format!(
                    "the broker refused it ({text}): delete it or declare it the same way"
                ),
            },
            AMQPSoftError::CONTENTTOOLARGE
            | AMQPSoftError::NOROUTE
            | AMQPSoftError::NOCONSUMERS => BusError::Unavailable {
                source: format!("{what}: {text}").into(),
            },
        };
    }
    if error.can_be_recovered() {
        return BusError::Unavailable {
            source: Box::new(Context::new(what.to_owned(), error)),
        };
    }
    match error.kind() {
        ErrorKind::RuntimeShutdownError(_) => BusError::Closed,
        _ => BusError::Unavailable {
            source: Box::new(Context::new(what.to_owned(), error)),
        },
    }
}

/// A lapin error with what it was about.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub(crate) struct Context {
    what: String,
    #[source]
    source: LapinError,
}

impl Context {
    /// `source`, about `what`.
    pub(crate) fn new(what: String, source: LapinError) -> Self {
        Self { what, source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::protocol::AMQPError;

    fn soft(code: u16, text: &str) -> LapinError {
        let error = AMQPError::from_id(code, text.into()).expect("a known reply code");
        ErrorKind::ProtocolError(error).into()
    }

    #[test]
    fn broker_refusals_become_actionable_errors() {
        let what = r#"queue "worker.3.commands""#;
        assert!(matches!(
            bus_error(soft(404, "NOT_FOUND - no queue"), what),
            BusError::NotFound { what: w } if w == what
        ));
        assert!(matches!(
            bus_error(soft(406, "PRECONDITION_FAILED - inequivalent arg"), what),
            BusError::Conflict { what: w, .. } if w == what
        ));
        assert!(!is_transient(&soft(404, "NOT_FOUND")));
        assert!(is_not_found(&soft(404, "NOT_FOUND")));
    }

    #[test]
    fn a_lost_connection_is_transient() {
        let error: LapinError = std::io::Error::from(std::io::ErrorKind::ConnectionReset).into();
        assert!(is_transient(&error));
        let mapped = bus_error(error, r#"exchange "manman.events""#);
        assert!(mapped.is_transient());
        assert!(mapped.to_string().contains("unavailable"), "{mapped}");
    }
}
