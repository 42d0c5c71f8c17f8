//! [`RabbitSettings`]: how to reach RabbitMQ and how patient to be when it is away.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Connection settings of a [`crate::RabbitBus`]. `Debug` never shows the password.
#[derive(Clone)]
#[non_exhaustive]
pub struct RabbitSettings {
    /// `amqp://user:password@host:5672/%2f` (or `amqps://…` with the `tls` feature). Query
    /// parameters of the URL (`heartbeat`, `connection_timeout`, `frame_max`, …) win over the
    /// settings below.
    pub url: String,
    /// The connection's name in the broker's tools (`rabbitmqctl list_connections
    /// client_properties`): the service, e.g. `manman-host` or `manman-worker`. Also the first
    /// word of temporary queue names.
    pub connection_name: String,
    /// Heartbeat timeout asked of the broker: a connection silent for this long is dead and is
    /// recovered. Whole seconds; zero turns heartbeats off.
    pub heartbeat: Duration,
    /// Longest a publisher waits for the broker to come back before its publish fails with
    /// `BusError::Unavailable`.
    pub publish_wait: Duration,
    /// Longest [`crate::RabbitBus::connect`] keeps trying to reach the broker at start.
    pub connect_timeout: Duration,
    /// Longest pause between two reconnection attempts while the broker is away (the pauses
    /// start at 100 ms and double up to this).
    pub reconnect_max_delay: Duration,
    /// A PEM file of CA certificates trusted for `amqps://`, besides the operating system's
    /// roots (feature `tls`).
    pub ca_file: Option<PathBuf>,
}

impl RabbitSettings {
    /// Defaults for everything but the URL: connection name `manman`, 10 s heartbeat, publishers
    /// wait up to 30 s for the broker, 30 s to connect at start, reconnection pauses up to 5 s,
    /// no extra CA file.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            connection_name: "manman".to_owned(),
            heartbeat: Duration::from_secs(10),
            publish_wait: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(30),
            reconnect_max_delay: Duration::from_secs(5),
            ca_file: None,
        }
    }

    /// Names the connection after the service using it.
    pub fn connection_name(mut self, name: impl Into<String>) -> Self {
        self.connection_name = name.into();
        self
    }

    /// With this heartbeat timeout.
    pub fn heartbeat(mut self, heartbeat: Duration) -> Self {
        self.heartbeat = heartbeat;
        self
    }

    /// With this longest wait of a publisher for an absent broker.
    pub fn publish_wait(mut self, wait: Duration) -> Self {
        self.publish_wait = wait;
        self
    }

    /// With this longest wait for the broker at start.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// With this longest pause between reconnection attempts.
    pub fn reconnect_max_delay(mut self, delay: Duration) -> Self {
        self.reconnect_max_delay = delay;
        self
    }

    /// Trusts the CA certificates of this PEM file too (for `amqps://`).
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// The URL with its password replaced by `***`, for logs and errors.
    pub fn redacted_url(&self) -> String {
        redacted(&self.url)
    }
}

/// The URL with its password replaced by `***`.
pub(crate) fn redacted(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    match rest[..at].split_once(':') {
        Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end], &rest[at..]),
        None => url.to_owned(),
    }
}

impl fmt::Debug for RabbitSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RabbitSettings")
            .field("url", &redacted(&self.url))
            .field("connection_name", &self.connection_name)
            .field("heartbeat", &self.heartbeat)
            .field("publish_wait", &self.publish_wait)
            .field("connect_timeout", &self.connect_timeout)
            .field("reconnect_max_delay", &self.reconnect_max_delay)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_password() {
        let settings = RabbitSettings::new("amqp://manman:hunter2@broker:5672/%2f");
        let debug = format!("{settings:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(
            debug.contains("amqp://manman:***@broker:5672/%2f"),
            "{debug}"
        );
    }

    #[test]
    fn redaction_leaves_urls_without_password_alone() {
        assert_eq!(redacted("amqp://broker/%2f"), "amqp://broker/%2f");
        assert_eq!(redacted("amqp://guest@broker"), "amqp://guest@broker");
        assert_eq!(redacted("not a url"), "not a url");
        assert_eq!(
            redacted("amqps://u:p@ss@broker:5671/v?heartbeat=5"),
            "amqps://u:***@broker:5671/v?heartbeat=5"
        );
    }
}
