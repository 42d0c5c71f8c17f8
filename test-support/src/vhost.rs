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
