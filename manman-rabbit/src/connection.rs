//! [`Link`]: the process's one connection to RabbitMQ.
//!
//! lapin recovers the connection by itself (`enable_auto_recover`): it reconnects with
//! exponential backoff and reopens every channel with its confirms, prefetch, declarations and
//! consumers. If lapin gives up (the broker stayed away longer than its backoff, or a recovery
//! step failed), the connection ends in an error state; the next caller of
//! [`Link::connection`] then opens a new one from scratch.

use crate::error::ConnectError;
use crate::settings::{RabbitSettings, redacted};
use lapin::tcp::OwnedTLSConfig;
use lapin::uri::{AMQPScheme, AMQPUri};
use lapin::{Connection, ConnectionProperties, ConnectionStatus};
use manman_core::ports::BusError;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

/// First pause between attempts to reach the broker; it doubles up to the settings' maximum.
pub(crate) const FIRST_PAUSE: Duration = Duration::from_millis(100);
/// How long one attempt to reach the broker may take (also the TCP timeout when the URL does not
/// set one).
const TCP_ATTEMPT: Duration = Duration::from_secs(5);
/// How many reconnection attempts lapin makes before giving up (about ten minutes at the
/// default 5 s maximum pause); then [`Link`] starts over with a new connection.
const LAPIN_ATTEMPTS: usize = 120;

/// Where and how to connect.
#[derive(Debug)]
struct Target {
    uri: AMQPUri,
    tls: OwnedTLSConfig,
    redacted_url: String,
}

/// The current connection and how many times it was replaced.
#[derive(Debug)]
pub(crate) struct Link {
    settings: RabbitSettings,
    target: Target,
    current: tokio::sync::Mutex<Arc<Connection>>,
    /// The current connection's status, readable without waiting.
    status: RwLock<ConnectionStatus>,
    generation: AtomicU64,
}

impl Link {
    /// Connects, trying until the settings' connect timeout.
    pub(crate) async fn connect(settings: &RabbitSettings) -> Result<Self, ConnectError> {
        let target = target(settings)?;
        let connection = open(settings, &target).await?;
        Ok(Self {
            settings: settings.clone(),
            status: RwLock::new(connection.status().clone()),
            current: tokio::sync::Mutex::new(Arc::new(connection)),
            target,
            generation: AtomicU64::new(0),
        })
    }

    /// The settings it was made with.
    pub(crate) fn settings(&self) -> &RabbitSettings {
        &self.settings
    }

    /// How many times the connection was opened again from scratch.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Whether the connection is up now (not recovering).
    pub(crate) fn is_connected(&self) -> bool {
        self.status
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .connected()
    }

    /// The connection, opened anew if lapin gave up on the old one; the flag says whether it is
    /// new (its topology must be declared again).
    pub(crate) async fn connection(&self) -> Result<(Arc<Connection>, bool), BusError> {
        let mut current = self.current.lock().await;
        let status = current.status();
        if status.connected() || status.reconnecting() || status.connecting() {
            return Ok((Arc::clone(&current), false));
        }
        tracing::warn!(url = %self.target.redacted_url, status = ?status, "the connection to RabbitMQ ended; opening a new one");
        let connection = open(&self.settings, &self.target)
            .await
            .map_err(|e| BusError::Unavailable { source: e.into() })?;
        *self.status.write().unwrap_or_else(PoisonError::into_inner) = connection.status().clone();
        let connection = Arc::new(connection);
        *current = Arc::clone(&connection);
        self.generation.fetch_add(1, Ordering::SeqCst);
        tracing::info!(url = %self.target.redacted_url, "connected to RabbitMQ again");
        Ok((connection, true))
    }

    /// Closes the connection: at once if it is up. While lapin is recovering it, waits up to
    /// `wait` for it to come back and closes it then; past that a task of `tasks` keeps waiting
    /// (as long as lapin keeps trying), so that a connection recovered after the bus was closed
    /// never consumes for nobody.
    pub(crate) async fn close(&self, wait: Duration, tasks: &TaskTracker) {
        let connection = Arc::clone(&*self.current.lock().await);
        if close_when_up(&connection, wait).await {
            return;
        }
        tasks.spawn(close_when_up_owned(connection, self.lapin_patience()));
    }

    /// Starts closing without waiting (when the bus is dropped): at once if the connection is
    /// up, else by a task of `tasks` once lapin has it back.
    pub(crate) fn close_soon(&self, tasks: &TaskTracker) {
        let Ok(current) = self.current.try_lock() else {
            return;
        };
        let connection = Arc::clone(&current);
        if connection.status().connected() {
            use futures::FutureExt;
            // The close frame is sent on the first poll; nobody waits for the answer.
            let _ = connection.close(200, "OK".into()).now_or_never();
        } else if recovering(&connection)
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            tasks.spawn_on(
                close_when_up_owned(connection, self.lapin_patience()),
                &runtime,
            );
        }
    }

    /// About how long lapin keeps trying to reconnect before it gives up.
    fn lapin_patience(&self) -> Duration {
        self.settings.reconnect_max_delay.max(FIRST_PAUSE)
            * u32::try_from(LAPIN_ATTEMPTS).unwrap_or(u32::MAX)
    }
}

/// Whether lapin is (re)connecting it.
fn recovering(connection: &Connection) -> bool {
    connection.status().reconnecting() || connection.status().connecting()
}

/// Closes `connection` once it is up, waiting at most `wait`; `false` if it is still recovering.
async fn close_when_up(connection: &Connection, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    loop {
        if connection.status().connected() {
            let _ = tokio::time::timeout(TCP_ATTEMPT, connection.close(200, "OK".into())).await;
            return true;
        }
        if !recovering(connection) {
            // Closed or failed for good: nothing left to close.
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn close_when_up_owned(connection: Arc<Connection>, wait: Duration) {
    if !close_when_up(&connection, wait).await {
        tracing::warn!("gave up closing a RabbitMQ connection that never came back");
    }
}

/// Parses the URL and prepares TLS.
fn target(settings: &RabbitSettings) -> Result<Target, ConnectError> {
    let redacted_url = redacted(&settings.url);
    let mut uri: AMQPUri = settings.url.parse().map_err(|detail| ConnectError::Url {
        url: redacted_url.clone(),
        detail,
    })?;
    if uri.query.heartbeat.is_none() {
        uri.query.heartbeat = Some(u16::try_from(settings.heartbeat.as_secs()).unwrap_or(u16::MAX));
    }
    if uri.query.connection_timeout.is_none() {
        uri.query.connection_timeout =
            Some(u64::try_from(TCP_ATTEMPT.as_millis()).unwrap_or(u64::MAX));
    }
    let mut tls = OwnedTLSConfig::default();
    if uri.scheme == AMQPScheme::AMQPS {
        if !cfg!(feature = "tls") {
            return Err(ConnectError::TlsNotEnabled { url: redacted_url });
        }
        if let Some(path) = &settings.ca_file {
            let pem = std::fs::read_to_string(path).map_err(|source| ConnectError::CaFile {
                path: path.clone(),
                source,
            })?;
            tls.cert_chain = Some(pem);
        }
    } else if settings.ca_file.is_some() {
        tracing::debug!(url = %redacted_url, "ignoring the CA file: the URL is not amqps://");
    }
    Ok(Target {
        uri,
        tls,
        redacted_url,
    })
}

/// Opens a connection, trying until the connect timeout.
///
/// A first connection without recovery checks the broker: while it is unreachable this tries
/// again; a refusal (credentials, virtual host, TLS certificate) fails at once with the broker's
/// reason. Only then is the real, recovering connection opened: with recovery on, lapin would
/// retry such a refusal in the background instead of reporting it.
async fn open(settings: &RabbitSettings, target: &Target) -> Result<Connection, ConnectError> {
    let deadline = Instant::now() + settings.connect_timeout;
    let failed = |source: Box<dyn std::error::Error + Send + Sync>| ConnectError::Connect {
        url: target.redacted_url.clone(),
        source,
    };
    let runtime = || lapin::runtime::default_runtime().map_err(|e| failed(e.into()));
    let mut pause = FIRST_PAUSE;
    loop {
        let probe = Connection::connect_uri_with_config(
            target.uri.clone(),
            ConnectionProperties::default()
                .with_connection_name(format!("{} (check)", settings.connection_name).into()),
            target.tls.clone(),
            runtime()?,
        );
        let error = match tokio::time::timeout(TCP_ATTEMPT, probe).await {
            Ok(Ok(probe)) => {
                let _ = probe.close(200, "OK".into()).await;
                break;
            }
            Ok(Err(e)) if !unreachable(&e) => return Err(failed(e.into())),
            Ok(Err(e)) => Box::<dyn std::error::Error + Send + Sync>::from(e),
            Err(elapsed) => elapsed.into(),
        };
        if Instant::now() + pause > deadline {
            return Err(failed(error));
        }
        tracing::debug!(url = %target.redacted_url, %error, "RabbitMQ is not reachable yet");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(settings.reconnect_max_delay);
    }
    let properties = ConnectionProperties::default()
        .with_connection_name(settings.connection_name.clone().into())
        .enable_auto_recover()
        .configure_backoff(|backoff| {
            backoff
                .with_min_delay(FIRST_PAUSE)
                .with_max_delay(settings.reconnect_max_delay.max(FIRST_PAUSE))
                .with_max_times(LAPIN_ATTEMPTS)
                .with_jitter()
        });
    let connect = Connection::connect_uri_with_config(
        target.uri.clone(),
        properties,
        target.tls.clone(),
        runtime()?,
    );
    // The broker just answered: the handshake should be quick. Bound it anyway.
    let budget = deadline
        .saturating_duration_since(Instant::now())
        .max(TCP_ATTEMPT);
    match tokio::time::timeout(budget, connect).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(e)) => Err(failed(e.into())),
        Err(elapsed) => Err(failed(elapsed.into())),
    }
}

/// Whether a failed connection means "not reachable (yet)" rather than a refusal.
fn unreachable(error: &lapin::Error) -> bool {
    use std::io::ErrorKind as Io;
    match error.kind() {
        lapin::ErrorKind::IOError(io) => matches!(
            io.kind(),
            Io::ConnectionRefused
                | Io::ConnectionReset
                | Io::ConnectionAborted
                | Io::NotConnected
                | Io::TimedOut
                | Io::HostUnreachable
                | Io::NetworkUnreachable
                | Io::AddrNotAvailable
                | Io::UnexpectedEof
                | Io::BrokenPipe
        ),
        lapin::ErrorKind::InvalidConnectionState(_) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_heartbeat_of_the_settings_goes_into_the_uri_unless_the_url_has_one() {
        let settings =
            RabbitSettings::new("amqp://guest:guest@h:5672/%2f").heartbeat(Duration::from_secs(7));
        assert_eq!(
            target(&settings).expect("parses").uri.query.heartbeat,
            Some(7)
        );
        let settings = RabbitSettings::new("amqp://h/%2f?heartbeat=3");
        assert_eq!(
            target(&settings).expect("parses").uri.query.heartbeat,
            Some(3)
        );
    }

    #[test]
    fn a_bad_url_is_named_without_its_password() {
        let error =
            target(&RabbitSettings::new("amqp://u:secret@:bad:port/")).expect_err("does not parse");
        assert!(!error.to_string().contains("secret"), "{error}");
    }

    #[cfg(not(feature = "tls"))]
    #[test]
    fn amqps_needs_the_tls_feature() {
        let error = target(&RabbitSettings::new("amqps://u:p@broker/%2f")).expect_err("no TLS");
        assert!(
            matches!(error, ConnectError::TlsNotEnabled { .. }),
            "{error}"
        );
    }
}
