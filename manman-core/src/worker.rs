//! Workers as the host knows them: identity by name, an epoch per registration, a lease.
//!
//! The worker *service* (what runs on a game machine) lives in [`crate::worker_service`].

use crate::id::{InstanceId, WorkerId};
use crate::signing::{BusKey, WorkerKey};
use crate::status::Status;
use crate::validation::{ValidationError, check_name};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A worker machine's daemon, as recorded by the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Worker {
    /// Stable identity (kept across registrations of the same name).
    pub id: WorkerId,
    /// Unique name.
    pub name: String,
    /// Grows by one at each registration; messages from an older epoch are fenced off.
    pub epoch: i64,
    /// Current status.
    pub status: Status,
    /// The worker's software version.
    pub version: String,
    /// Labels used for placement.
    pub labels: BTreeMap<String, String>,
    /// Most instances it runs at once.
    pub capacity: u32,
    /// When this epoch registered.
    pub started_at: DateTime<Utc>,
    /// Last heartbeat (host clock).
    pub last_heartbeat_at: Option<DateTime<Utc>>,
    /// When this epoch ended.
    pub ended_at: Option<DateTime<Utc>>,
}

/// Most instances a registration may take up.
pub const MAX_TAKEN_UP: usize = 100_000;

/// What a worker says about itself when it registers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct WorkerRegistration {
    /// Unique, stable name (usually the machine's).
    pub name: String,
    /// Its software version.
    pub version: String,
    /// Most instances it runs at once.
    pub capacity: u32,
    /// Labels for placement.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Instances a previous run of this worker left running (held by their shims) that this
    /// registration takes up: the host makes them this registration's. Only the worker's own
    /// instances that have not ended are taken; the others are ignored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taken_up: Vec<InstanceId>,
}

impl WorkerRegistration {
    /// Checks the name and capacity.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let mut errors = ValidationError::default();
        check_name(&mut errors, "name", &self.name);
        if self.capacity == 0 {
            errors.push("capacity", "must be at least 1");
        }
        if self.taken_up.len() > MAX_TAKEN_UP {
            errors.push(
                "taken_up",
                format!("names more than {MAX_TAKEN_UP} instances"),
            );
        }
        errors.into_result()
    }
}

/// The host's answer to a registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Registered {
    /// The worker's identity.
    pub worker_id: WorkerId,
    /// The epoch of this registration.
    pub epoch: i64,
    /// This registration's key for the bus (64 hex digits): the worker seals its events and
    /// console lines with it, and believes only the commands sealed with it. Secret; a new
    /// registration gets a new one.
    pub bus_key: BusKey,
}

impl Registered {
    /// This registration's key, with whom it belongs to.
    pub fn worker_key(&self) -> WorkerKey {
        WorkerKey::new(self.worker_id, self.epoch, self.bus_key.clone())
    }
}

/// What a worker reports with each heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Heartbeat {
    /// The worker.
    pub worker_id: WorkerId,
    /// The epoch it registered with.
    pub epoch: i64,
    /// What it runs now.
    pub inventory: Vec<InventoryItem>,
}

/// One instance in a heartbeat's inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InventoryItem {
    /// The instance.
    pub instance_id: InstanceId,
    /// Its status as the worker sees it.
    pub status: Status,
    /// Its process id, when a process runs.
    pub pid: Option<u32>,
    /// Automatic restarts so far.
    pub restart_count: u32,
    /// Console lines dropped from the live stream because the bus fell behind (the worker's log
    /// file has them all).
    #[serde(default)]
    pub console_lines_dropped: u64,
    /// How it ended, for an instance that ended recently (its `status` is then `complete` or
    /// `crashed`): the worker lists the instances it ended in the last few minutes so that the
    /// host records their real end even when it missed the status report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<InventoryEnd>,
}

/// How an instance in a heartbeat's inventory ended: what its final status report says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InventoryEnd {
    /// Why it ended.
    pub cause: crate::status::Cause,
    /// For a person: exit code, error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Exit code of its process, if it exited normally.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Signal that ended its process, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_signal: Option<i32>,
    /// When it ended (the worker's clock).
    pub ended_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registration_may_not_take_up_more_than_the_limit() {
        let mut registration = WorkerRegistration {
            name: "w1".to_owned(),
            version: "1".to_owned(),
            capacity: 4,
            labels: BTreeMap::new(),
            taken_up: vec![InstanceId(1); MAX_TAKEN_UP],
        };
        assert!(registration.validate().is_ok());
        registration.taken_up.push(InstanceId(2));
        let error = registration.validate().unwrap_err().to_string();
        assert!(error.contains("taken_up"), "{error}");
    }
}
