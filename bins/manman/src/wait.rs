//! `--wait`: following an instance until it is running, or has ended, by asking the host for
//! it a few times a second. Polling, not the event stream: it needs no subscription made before
//! the command, misses nothing when the stream lags, and rides out a host that restarts (the
//! instance's status is the truth the host keeps).

use crate::commands::instance::InstanceView;
use manman_core::id::InstanceId;
use manman_core::status::Status;
use manman_http::{Client, ClientError};
use std::time::Duration;

/// How often the host is asked.
const POLL: Duration = Duration::from_millis(250);

/// What to wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Goal {
    /// `running` (ready); an end first is a failure.
    Running,
    /// The end: `complete` is a success, `crashed` a failure.
    End,
}

/// How the wait ended: the instance as it was then, and whether that is what was awaited.
#[derive(Debug)]
pub(crate) struct Waited {
    /// The instance, with the cause and detail of its last status.
    pub(crate) view: InstanceView,
    /// Whether it reached the goal.
    pub(crate) reached: bool,
}

impl Waited {
    /// Why the goal was not reached, for the error message.
    pub(crate) fn failure(&self, goal: Goal) -> String {
        let view = &self.view;
        let id = view.instance.id.get();
        let how = view.how_it_ended();
        match goal {
            Goal::Running => format!("instance {id} did not become running: {how}"),
            Goal::End => format!("instance {id} did not end normally: {how}"),
        }
    }
}

/// Waits until instance `id` reaches `goal` or ends (at most `timeout`, when given). A host
/// that cannot be reached is asked again (and the wait says so on stderr); a `lost` instance
/// is waited for, since its worker may be heard again.
pub(crate) async fn wait(
    client: &Client,
    id: InstanceId,
    goal: Goal,
    timeout: Option<Duration>,
) -> anyhow::Result<Waited> {
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let mut host_away = false;
    let mut said_lost = false;
    let mut last_status = None;
    loop {
        match client.get_instance(id).await {
            Ok(instance) => {
                if host_away {
                    eprintln!(
                        "the host answers again; still waiting for instance {}",
                        id.get()
                    );
                    host_away = false;
                }
                let status = instance.status;
                last_status = Some(status);
                if (goal == Goal::Running && status == Status::Running) || status.is_terminal() {
                    let reached = match goal {
                        Goal::Running => status == Status::Running,
                        Goal::End => status == Status::Complete,
                    };
                    let view = InstanceView::new(instance);
                    return Ok(Waited { view, reached });
                }
                if status == Status::Lost && !said_lost {
                    eprintln!(
                        "instance {} is lost: the host no longer hears from its worker; waiting \
                         to see whether the worker comes back",
                        id.get()
                    );
                    said_lost = true;
                }
            }
            Err(ClientError::Transport { detail, .. }) => {
                if !host_away {
                    eprintln!("the host went away ({detail}); asking again…");
                    host_away = true;
                }
            }
            Err(e) => return Err(e.into()),
        }
        if let Some(deadline) = deadline
            && tokio::time::Instant::now() >= deadline
        {
            let status = last_status.map_or("unknown", Status::as_str);
            anyhow::bail!(
                "instance {} is still {status} after {} s (--timeout); it goes on: see `manman \
                 instance show {}`",
                id.get(),
                timeout.unwrap_or_default().as_secs(),
                id.get()
            );
        }
        tokio::time::sleep(POLL).await;
    }
}
