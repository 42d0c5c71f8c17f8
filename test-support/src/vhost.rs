//! [`TestVhost`]: a RabbitMQ virtual host of one test's own, for programs that declare the
//! default topology (separate processes, examples), deleted at the end.

use crate::amqp::AMQP_URL_VAR;
use std::process::{Command, Stdio};

/// A vhost `manman-test-{random}` on the broker of `MANMAN_TEST_AMQP_URL`, with `guest` allowed
/// everything on it; deleted when dropped. Needs `rabbitmqctl` beside the broker.
#[derive(Debug)]
pub struct TestVhost {
    name: String,
    url: String,
    users: std::sync::Mutex<Vec<String>>,
}

impl TestVhost {
    /// A new vhost, or `None` (after [`crate::skip`]) when the variable is not set.
    ///
    /// # Panics
    ///
    /// When `rabbitmqctl` cannot create it, or when services are required and the variable is
    /// not set.
    pub fn create() -> Option<Self> {
        let Ok(base) = std::env::var(AMQP_URL_VAR) else {
            crate::skip("RabbitMQ", AMQP_URL_VAR);
            return None;
        };
        let name = format!(
            "manman-test-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        ctl(&["add_vhost", &name]);
        ctl(&["set_permissions", "-p", &name, "guest", ".*", ".*", ".*"]);
        let root = base
            .rsplit_once('/')
            .map_or(base.as_str(), |(root, _)| root)
            .to_owned();
        Some(Self {
            url: format!("{root}/{name}"),
            name,
            users: std::sync::Mutex::default(),
        })
    }

    /// A broker user of this vhost only, with the permissions `configure`, `write` and `read`
    /// (RabbitMQ's regular expressions on resource names); returns the broker URL that logs in
    /// as it. The user is deleted with the vhost.
    ///
    /// # Panics
    ///
    /// When `rabbitmqctl` fails.
    pub fn add_user(&self, user: &str, configure: &str, write: &str, read: &str) -> String {
        let user = format!("{}-{user}", self.name);
        let password = uuid::Uuid::new_v4().simple().to_string();
        ctl(&["add_user", &user, &password]);
        self.users
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(user.clone());
        ctl(&[
            "set_permissions",
            "-p",
            &self.name,
            &user,
            configure,
            write,
            read,
        ]);
        let (scheme, rest) = self.url.split_once("://").expect("a URL");
        let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
        format!("{scheme}://{user}:{password}@{host}")
    }

    /// The broker URL with this vhost.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Closes every client connection to this vhost (as a broker restart would), saying
    /// `reason`.
    ///
    /// # Panics
    ///
    /// When `rabbitmqctl` fails.
    pub fn close_all_connections(&self, reason: &str) {
        ctl(&["close_all_connections", "-p", &self.name, reason]);
    }
}

impl TestVhost {
    /// Deletes `queue` of this vhost (`rabbitmqctl delete_queue`), as an operator would: its
    /// messages go with it and its consumers are cancelled.
    ///
    /// # Panics
    ///
    /// When `rabbitmqctl` fails (e.g. there is no such queue).
    pub fn delete_queue(&self, queue: &str) {
        ctl(&["delete_queue", "-p", &self.name, queue]);
    }

    /// Takes `queue` away from its owners: deletes it and, on the same channel right after,
    /// declares an exclusive, unbound queue of the same name on a connection of the test's
    /// own, which nobody else can declare, bind or consume (they are refused with
    /// `RESOURCE_LOCKED`) until the returned [`HeldQueue`] is dropped. Tries again while an
    /// owner declares the queue again between the two steps.
    ///
    /// # Panics
    ///
    /// When the broker cannot be reached, or the owner wins 20 times in a row.
    pub async fn hold_queue(&self, queue: &str) -> HeldQueue {
        use lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
        use lapin::types::FieldTable;
        let connection =
            lapin::Connection::connect(&self.url, lapin::ConnectionProperties::default())
                .await
                .unwrap_or_else(|e| panic!("cannot reach the test vhost: {e}"));
        for _ in 0..20 {
            let channel = connection.create_channel().await.expect("a channel");
            let deleted = channel
                .queue_delete(queue.into(), QueueDeleteOptions::default())
                .await;
            let declared = channel
                .queue_declare(
                    queue.into(),
                    QueueDeclareOptions {
                        exclusive: true,
                        ..QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await;
            match (deleted, declared) {
                (Ok(_), Ok(_)) => return HeldQueue { connection },
                // The owner declared it again in between (it exists, durable: a different
                // declaration is refused and closes the channel): once more.
                _ => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            }
        }
        panic!("could not take queue {queue:?} from its owner in 20 attempts");
    }
}

/// A queue taken by [`TestVhost::hold_queue`]: exclusive to a connection of the test's own,
/// deleted by the broker when this is dropped (the connection closes).
#[derive(Debug)]
pub struct HeldQueue {
    connection: lapin::Connection,
}

impl HeldQueue {
    /// Gives the queue up: closes the connection, and the broker deletes the queue.
    pub async fn release(self) {
        let _ = self.connection.close(200, "OK".into()).await;
    }
}

fn ctl(args: &[&str]) {
    let ok = Command::new("rabbitmqctl")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "rabbitmqctl {args:?} failed (the test runs as root beside the broker)"
    );
}

impl Drop for TestVhost {
    fn drop(&mut self) {
        for user in self
            .users
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
        {
            let _ = Command::new("rabbitmqctl")
                .args(["delete_user", user])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = Command::new("rabbitmqctl")
            .args(["delete_vhost", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
