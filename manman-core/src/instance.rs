//! Instances: one run of a config on a worker.

use crate::id::{ConfigId, InstanceId, WorkerId};
use crate::status::{Cause, Status};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One run of a config on a worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Instance {
    /// Its identity.
    pub id: InstanceId,
    /// The config it runs.
    pub config_id: ConfigId,
    /// The worker it was placed on.
    pub worker_id: WorkerId,
    /// The worker's epoch when it was placed.
    pub worker_epoch: i64,
    /// Current status.
    pub status: Status,
    /// Why it has its status (the cause of its last status change).
    pub cause: Cause,
    /// What its last status change said, for a person: how it ended, why it restarted.
    pub detail: Option<String>,
    /// When the host created it.
    pub created_at: DateTime<Utc>,
    /// When its process was first spawned.
    pub started_at: Option<DateTime<Utc>>,
    /// When it last became ready.
    pub ready_at: Option<DateTime<Utc>>,
    /// When it reached `complete` or `crashed`.
    pub ended_at: Option<DateTime<Utc>>,
    /// Exit code of its last process, if it exited normally. None while a run is `running`:
    /// it describes the run that ended (the one that ended it, or made it restart).
    pub exit_code: Option<i32>,
    /// Signal that ended its last process, if any (None while `running`, as the code).
    pub exit_signal: Option<i32>,
    /// Automatic restarts so far.
    pub restart_count: u32,
    /// While it has not ended: the last heartbeat of the worker registration it runs on (host
    /// clock) — when the host last heard that it was there. None once it ended (`ended_at`
    /// says when), or when its worker re-registered since.
    pub last_heartbeat_at: Option<DateTime<Utc>>,
}

/// What the host records when it places a start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewInstance {
    /// The config to run.
    pub config_id: ConfigId,
    /// The worker chosen.
    pub worker_id: WorkerId,
    /// The worker's current epoch.
    pub worker_epoch: i64,
    /// Creation time (host clock).
    pub created_at: DateTime<Utc>,
}

/// Which instances to list. Results are ordered by id; `after` is the cursor of the next page.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema, utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(default, deny_unknown_fields)]
pub struct InstanceFilter {
    /// Only this status.
    pub status: Option<Status>,
    /// Only on this worker.
    pub worker_id: Option<WorkerId>,
    /// Only of this config.
    pub config_id: Option<ConfigId>,
    /// Only ids greater than this (the cursor).
    pub after: Option<InstanceId>,
    /// At most this many, 1 to 500 ([`InstanceFilter::MAX_LIMIT`], the default); outside that
    /// range the API answers 422.
    pub limit: Option<u32>,
}

impl InstanceFilter {
    /// The largest page.
    pub const MAX_LIMIT: u32 = 500;

    /// The page size to use.
    pub fn effective_limit(&self) -> usize {
        self.limit
            .unwrap_or(Self::MAX_LIMIT)
            .clamp(1, Self::MAX_LIMIT) as usize
    }

    /// Whether `instance` passes the filter (ignoring the page).
    pub fn matches(&self, instance: &Instance) -> bool {
        self.status.is_none_or(|s| s == instance.status)
            && self.worker_id.is_none_or(|w| w == instance.worker_id)
            && self.config_id.is_none_or(|c| c == instance.config_id)
            && self.after.is_none_or(|a| instance.id > a)
    }
}
