//! The status lifecycle shared by workers and instances, its transition table, and the
//! append-only history.

use crate::id::{InstanceId, WorkerId};
use crate::unknown_name::UnknownName;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

/// Where a worker or an instance is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Known to the host, nothing started yet.
    Created,
    /// Installing, updating or starting; not ready yet.
    Initializing,
    /// Ready (the ready pattern matched, or spawned without one).
    Running,
    /// Stopped on request, or exited cleanly.
    Complete,
    /// Exited unexpectedly or failed to start, and the restart policy gave up.
    Crashed,
    /// The host stopped hearing from the worker: the real state is unknown.
    Lost,
}

impl Status {
    /// Every status, in lifecycle order.
    pub const ALL: [Self; 6] = [
        Self::Created,
        Self::Initializing,
        Self::Running,
        Self::Complete,
        Self::Crashed,
        Self::Lost,
    ];

    /// `complete` and `crashed` are final for an instance.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Complete | Self::Crashed)
    }

    /// Not terminal: something may still be running.
    pub fn is_active(self) -> bool {
        !self.is_terminal()
    }

    /// `created`, `initializing` or `running`: alive as far as the host knows (not `lost`).
    pub fn is_live(self) -> bool {
        matches!(self, Self::Created | Self::Initializing | Self::Running)
    }

    /// The snake_case name used in JSON and SQL.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Initializing => "initializing",
            Self::Running => "running",
            Self::Complete => "complete",
            Self::Crashed => "crashed",
            Self::Lost => "lost",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Status {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        UnknownName::find("status", s, &Self::ALL, Self::as_str)
    }
}

/// What a status belongs to.
// Ordered workers first, then instances, each by id (a batch sorts its entities so).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Entity {
    /// A worker.
    Worker(WorkerId),
    /// An instance.
    Instance(InstanceId),
}

impl fmt::Display for Entity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Worker(id) => id.fmt(f),
            Self::Instance(id) => id.fmt(f),
        }
    }
}

/// Why a status changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Cause {
    /// An operator asked (start, stop).
    User,
    /// The host placed a new instance on a worker.
    Placed,
    /// A worker registered (a new epoch).
    Registered,
    /// The process was spawned.
    Spawned,
    /// The ready pattern matched (or spawn, without one).
    Ready,
    /// The process exited on its own.
    Exited,
    /// The crash policy restarted it.
    CrashPolicy,
    /// The crash policy gave up: too many restarts in the window.
    CrashLoop,
    /// Installing failed.
    InstallFailed,
    /// Spawning failed.
    SpawnFailed,
    /// The server never printed its ready line in time.
    ReadyTimeout,
    /// An operator killed it (SIGKILL, no graceful stop).
    Killed,
    /// The host stopped hearing from the worker.
    LeaseExpired,
    /// The worker was heard again and still runs it.
    Recovered,
    /// The worker is shutting down.
    WorkerShutdown,
    /// The worker restarted and found it gone, or ended it.
    WorkerRestart,
    /// Its start command could not be delivered to the worker.
    Undelivered,
    /// The worker refused its start (at capacity, the config already runs there, or the
    /// command expired before the worker took it).
    Refused,
    /// The shim that held the server died (it was killed): the server was ended with it and its
    /// exit is unknown.
    ShimLost,
}

impl Cause {
    /// Every cause.
    pub const ALL: [Self; 19] = [
        Self::User,
        Self::Placed,
        Self::Registered,
        Self::Spawned,
        Self::Ready,
        Self::Exited,
        Self::CrashPolicy,
        Self::CrashLoop,
        Self::InstallFailed,
        Self::SpawnFailed,
        Self::ReadyTimeout,
        Self::Killed,
        Self::LeaseExpired,
        Self::Recovered,
        Self::WorkerShutdown,
        Self::WorkerRestart,
        Self::Undelivered,
        Self::Refused,
        Self::ShimLost,
    ];

    /// The kebab-case name used in JSON and SQL.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Placed => "placed",
            Self::Registered => "registered",
            Self::Spawned => "spawned",
            Self::Ready => "ready",
            Self::Exited => "exited",
            Self::CrashPolicy => "crash-policy",
            Self::CrashLoop => "crash-loop",
            Self::InstallFailed => "install-failed",
            Self::SpawnFailed => "spawn-failed",
            Self::ReadyTimeout => "ready-timeout",
            Self::Killed => "killed",
            Self::LeaseExpired => "lease-expired",
            Self::Recovered => "recovered",
            Self::WorkerShutdown => "worker-shutdown",
            Self::WorkerRestart => "worker-restart",
            Self::Undelivered => "undelivered",
            Self::Refused => "refused",
            Self::ShimLost => "shim-lost",
        }
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Cause {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        UnknownName::find("cause", s, &Self::ALL, Self::as_str)
    }
}

/// Whether `from → to` is allowed for an entity. Forbidden transitions are errors, never applied.
///
/// | from | to |
/// |---|---|
/// | created | initializing, running, complete, crashed, lost |
/// | initializing | initializing (restart), running, complete, crashed, lost |
/// | running | initializing (restart), complete, crashed, lost |
/// | lost | initializing, running (recovered), complete, crashed |
/// | complete, crashed | nothing (an instance); `created` (a worker registering again) |
///
/// A worker may also go to `created` from any status: that is a new registration (epoch).
pub fn can_transition(entity: &Entity, from: Status, to: Status) -> bool {
    use Status::{Complete, Crashed, Created, Initializing, Lost, Running};
    if matches!(entity, Entity::Worker(_)) && to == Created {
        return true;
    }
    match from {
        Created => matches!(to, Initializing | Running | Complete | Crashed | Lost),
        Initializing => matches!(to, Initializing | Running | Complete | Crashed | Lost),
        Running => matches!(to, Initializing | Complete | Crashed | Lost),
        Lost => matches!(to, Initializing | Running | Complete | Crashed),
        Complete | Crashed => false,
    }
}

/// Where a status report stands in its sender's numbering of one entity's reports: the
/// worker's registration epoch, and a counter from 1 within that epoch. The host's status
/// processor applies an entity's reports in this order, whichever replica receives them. A later
/// epoch comes after every report of an earlier one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Sequence {
    /// The sender's registration epoch (compared first).
    pub epoch: i64,
    /// The report's number among the sender's reports on this entity in `epoch`, from 1.
    pub counter: i64,
}

impl Sequence {
    /// The sequence `counter` of `epoch`.
    pub fn new(epoch: i64, counter: i64) -> Self {
        Self { epoch, counter }
    }

    /// Where a report numbered `self` stands when the entity's last applied report is `last`
    /// (`None`: none applied yet).
    pub fn follows(self, last: Option<Self>) -> Order {
        match last {
            Some(last) if self <= last => Order::Stale,
            Some(last) if last.epoch == self.epoch && self.counter == last.counter + 1 => {
                Order::Next
            }
            // The first report of an epoch is the next one, whatever came before.
            _ if self.counter == 1 => Order::Next,
            _ => Order::Gap,
        }
    }
}

impl fmt::Display for Sequence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.epoch, self.counter)
    }
}

/// Where a numbered report stands against the last one applied ([`Sequence::follows`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// At or below the last applied: a duplicate, or overtaken by a later report. Not applied.
    Stale,
    /// The very next one: apply it.
    Next,
    /// Beyond the next: its predecessor has not been applied yet (in flight, or lost).
    Gap,
}

/// One row of the append-only status history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StatusEvent {
    /// Position in the history (grows with each row; the pagination cursor).
    pub id: i64,
    /// Id of the message that caused it (deduplication: a message is applied once).
    pub event_id: Uuid,
    /// Whose status.
    pub entity: Entity,
    /// The status before.
    pub from: Option<Status>,
    /// The new status.
    pub status: Status,
    /// Why.
    pub cause: Cause,
    /// Anything a person should know (exit code, error message).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// When the host recorded it (the host's clock orders events).
    pub as_of: DateTime<Utc>,
    /// When the sender saw it (the sender's clock, informational).
    pub reported_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const INSTANCE: Entity = Entity::Instance(InstanceId(1));
    const WORKER: Entity = Entity::Worker(WorkerId(1));

    #[test]
    fn sequences_follow_within_an_epoch_and_start_over_in_a_new_one() {
        let s = Sequence::new;
        assert_eq!(s(1, 1).follows(None), Order::Next);
        assert_eq!(s(1, 3).follows(None), Order::Gap);
        assert_eq!(s(1, 4).follows(Some(s(1, 3))), Order::Next);
        assert_eq!(s(1, 3).follows(Some(s(1, 3))), Order::Stale, "a duplicate");
        assert_eq!(s(1, 2).follows(Some(s(1, 3))), Order::Stale, "overtaken");
        assert_eq!(s(1, 5).follows(Some(s(1, 3))), Order::Gap);
        assert_eq!(s(2, 1).follows(Some(s(1, 9))), Order::Next, "a new epoch");
        assert_eq!(s(2, 2).follows(Some(s(1, 9))), Order::Gap);
        assert_eq!(
            s(1, 10).follows(Some(s(2, 1))),
            Order::Stale,
            "an old epoch"
        );
        assert!(s(2, 1) > s(1, 100));
    }

    #[test]
    fn terminal_statuses_are_final_for_instances() {
        for to in Status::ALL {
            assert!(!can_transition(&INSTANCE, Status::Complete, to));
            assert!(!can_transition(&INSTANCE, Status::Crashed, to));
        }
    }

    #[test]
    fn the_lifecycle_path_is_allowed() {
        use Status::*;
        for (from, to) in [
            (Created, Initializing),
            (Initializing, Running),
            (Running, Complete),
            (Running, Lost),
            (Lost, Running),
            (Lost, Crashed),
            (Running, Initializing),
        ] {
            assert!(can_transition(&INSTANCE, from, to), "{from} -> {to}");
        }
        assert!(!can_transition(&INSTANCE, Running, Running));
        assert!(!can_transition(&INSTANCE, Running, Created));
        assert!(!can_transition(&INSTANCE, Lost, Lost));
    }

    #[test]
    fn workers_may_register_again_from_any_status() {
        for from in Status::ALL {
            assert!(can_transition(&WORKER, from, Status::Created));
        }
        assert!(!can_transition(&WORKER, Status::Complete, Status::Running));
    }

    #[test]
    fn statuses_round_trip_through_text() {
        for s in Status::ALL {
            assert_eq!(s.as_str().parse::<Status>().unwrap(), s);
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
        assert!(
            "bogus"
                .parse::<Status>()
                .unwrap_err()
                .to_string()
                .contains("expected one of")
        );
    }

    #[test]
    fn cause_names_match_their_json() {
        for cause in Cause::ALL {
            assert_eq!(
                serde_json::to_string(&cause).unwrap(),
                format!("\"{cause}\"")
            );
            assert_eq!(cause.as_str().parse::<Cause>().unwrap(), cause);
        }
    }

    #[test]
    fn causes_are_kebab_case() {
        assert_eq!(
            serde_json::to_string(&Cause::CrashPolicy).unwrap(),
            "\"crash-policy\""
        );
        assert_eq!(
            serde_json::to_string(&Cause::LeaseExpired).unwrap(),
            "\"lease-expired\""
        );
    }
}
