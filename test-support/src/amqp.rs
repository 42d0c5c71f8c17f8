//! [`TestBroker`]: a RabbitMQ broker shared by tests, with a name prefix per test and the
//! deletion of what the test declared.

use lapin::options::{ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties};
use std::collections::BTreeSet;
use std::sync::{Mutex, PoisonError};

/// The variable naming the broker tests use, e.g. `amqp://guest:guest@127.0.0.1:5672/%2f`.
pub const AMQP_URL_VAR: &str = "MANMAN_TEST_AMQP_URL";

/// One test's view of the broker: its URL, a unique name prefix, and the exchanges and queues to
/// delete when the test passes (they are kept, and named, when it fails).
#[derive(Debug)]
pub struct TestBroker {
    url: String,
    prefix: String,
    exchanges: Mutex<BTreeSet<String>>,
    queues: Mutex<BTreeSet<String>>,
}

impl TestBroker {
    /// The broker of `MANMAN_TEST_AMQP_URL` with a fresh prefix `test-{label}-{random}.`, or
    /// `None` (after [`crate::skip`]) when the variable is not set.
    ///
    /// # Panics
    ///
    /// When the broker cannot be reached, or when services are required and the variable is not
    /// set.
    pub async fn connect(label: &str) -> Option<Self> {
        let Ok(url) = std::env::var(AMQP_URL_VAR) else {
            crate::skip("RabbitMQ", AMQP_URL_VAR);
            return None;
        };
        let connection = Connection::connect(&url, ConnectionProperties::default())
            .await
            .unwrap_or_else(|e| panic!("cannot reach {AMQP_URL_VAR}: {e}"));
        let _ = connection.close(200, "OK".into()).await;
        let clean: String = label
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .take(30)
            .collect();
        let prefix = format!(
            "test-{clean}-{}.",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        Some(Self {
            url,
            prefix,
            exchanges: Mutex::default(),
            queues: Mutex::default(),
        })
    }

    /// The broker's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// This test's prefix (ends with `.`): give it to `Topology::with_prefix`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `name` under this test's prefix.
    pub fn name(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Deletes these exchanges and queues when the test passes.
    pub fn delete_on_drop<E, Q>(
        &self,
        exchanges: impl IntoIterator<Item = E>,
        queues: impl IntoIterator<Item = Q>,
    ) where
        E: Into<String>,
        Q: Into<String>,
    {
        lock(&self.exchanges).extend(exchanges.into_iter().map(Into::into));
        lock(&self.queues).extend(queues.into_iter().map(Into::into));
    }

    /// How many messages wait in `queue` (`None` when it does not exist).
    ///
    /// # Panics
    ///
    /// When the broker cannot be reached.
    pub async fn queue_depth(&self, queue: &str) -> Option<u32> {
        let connection = Connection::connect(&self.url, ConnectionProperties::default())
            .await
            .unwrap_or_else(|e| panic!("cannot reach {AMQP_URL_VAR}: {e}"));
        let channel = connection
            .create_channel()
            .await
            .expect("a channel on the test broker");
        let depth = channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .ok()
            .map(|q| q.message_count());
        let _ = connection.close(200, "OK".into()).await;
        depth
    }

    /// Deletes `queue` from a connection of its own, as another client (or an operator's
    /// `rabbitmqctl delete_queue`) would: its messages go with it and its consumers are
    /// cancelled.
    ///
    /// # Panics
    ///
    /// When the broker cannot be reached or refuses.
    pub async fn delete_queue(&self, queue: &str) {
        let connection = Connection::connect(&self.url, ConnectionProperties::default())
            .await
            .unwrap_or_else(|e| panic!("cannot reach {AMQP_URL_VAR}: {e}"));
        let channel = connection
            .create_channel()
            .await
            .expect("a channel on the test broker");
        channel
            .queue_delete(queue.into(), QueueDeleteOptions::default())
            .await
            .unwrap_or_else(|e| panic!("cannot delete queue {queue:?}: {e}"));
        let _ = connection.close(200, "OK".into()).await;
    }

    /// Makes the broker close every client connection (`rabbitmqctl close_all_connections`), as
    /// an operator or a failing node would. Needs `rabbitmqctl` on the `PATH` and the rights to
    /// use it (root, or the broker's Erlang cookie).
    ///
    /// # Errors
    ///
    /// When `rabbitmqctl` cannot be run or fails; the message says why.
    pub async fn close_all_connections(&self, reason: &str) -> Result<(), String> {
        let output = tokio::process::Command::new("rabbitmqctl")
            .args(["close_all_connections", reason])
            .output()
            .await
            .map_err(|e| format!("cannot run rabbitmqctl: {e}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "rabbitmqctl close_all_connections failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ))
        }
    }

    /// Deletes what was registered with [`TestBroker::delete_on_drop`] now.
    ///
    /// # Errors
    ///
    /// When the broker cannot be reached.
    pub async fn cleanup(&self) -> Result<(), String> {
        let exchanges = std::mem::take(&mut *lock(&self.exchanges));
        let queues = std::mem::take(&mut *lock(&self.queues));
        delete(&self.url, &exchanges, &queues).await
    }
}

fn lock(set: &Mutex<BTreeSet<String>>) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
    set.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Deletes queues, then exchanges; a channel closed by a refusal is replaced.
async fn delete(
    url: &str,
    exchanges: &BTreeSet<String>,
    queues: &BTreeSet<String>,
) -> Result<(), String> {
    if exchanges.is_empty() && queues.is_empty() {
        return Ok(());
    }
    let connection = Connection::connect(url, ConnectionProperties::default())
        .await
        .map_err(|e| format!("cannot reach the test broker: {e}"))?;
    let mut channel: Option<Channel> = None;
    for queue in queues {
        let channel = usable(&connection, &mut channel).await?;
        let _ = channel
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
    for exchange in exchanges {
        let channel = usable(&connection, &mut channel).await?;
        let _ = channel
            .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
            .await;
    }
    let _ = connection.close(200, "OK".into()).await;
    Ok(())
}

async fn usable<'a>(
    connection: &Connection,
    channel: &'a mut Option<Channel>,
) -> Result<&'a Channel, String> {
    if !channel.as_ref().is_some_and(|c| c.status().connected()) {
        *channel = Some(
            connection
                .create_channel()
                .await
                .map_err(|e| format!("cannot open a channel on the test broker: {e}"))?,
        );
    }
    Ok(channel.as_ref().expect("just set"))
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        let exchanges = std::mem::take(&mut *lock(&self.exchanges));
        let queues = std::mem::take(&mut *lock(&self.queues));
        if exchanges.is_empty() && queues.is_empty() {
            return;
        }
        if std::thread::panicking() {
            eprintln!(
                "kept the test's exchanges {exchanges:?} and queues {queues:?} (prefix {}) for inspection",
                self.prefix
            );
            return;
        }
        let url = self.url.clone();
        // Drop may run inside a runtime: do the async work on a thread of its own.
        let deleted = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(delete(&url, &exchanges, &queues))
        })
        .join();
        if !matches!(deleted, Ok(Ok(()))) {
            eprintln!(
                "could not delete the exchanges and queues of prefix {}: {deleted:?}",
                self.prefix
            );
        }
    }
}
