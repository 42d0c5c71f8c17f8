//! Events on `manman.events`: status reports and command results.

use crate::command::CommandResult;
use crate::id::InstanceId;
use crate::ports::InstallProgress;
use crate::status::{Cause, Entity, Sequence, Status};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Everything published on `manman.events`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A worker or instance changed status.
    Status(StatusReport),
    /// A worker answered a command.
    CommandResult(CommandResult),
    /// An instance's install moved on (for progress bars; not recorded).
    InstallProgress(InstallProgressReport),
}

impl Event {
    /// The message `type` this event travels as.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Status(_) => "status",
            Self::CommandResult(_) => "command_result",
            Self::InstallProgress(_) => "install_progress",
        }
    }
}

/// How far an instance's install has come.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InstallProgressReport {
    /// The instance being installed.
    pub instance_id: InstanceId,
    /// The progress.
    #[serde(flatten)]
    pub progress: InstallProgress,
    /// Worker clock.
    pub reported_at: DateTime<Utc>,
}

/// A status change as the sender saw it; the host orders and records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StatusReport {
    /// Whose status.
    pub entity: Entity,
    /// The new status.
    pub status: Status,
    /// Why.
    pub cause: Cause,
    /// For a person: exit code, error, what was recovered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The sender's clock.
    pub reported_at: DateTime<Utc>,
    /// Exit code of the process that ended, if it exited normally.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Signal that ended the process, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_signal: Option<i32>,
    /// Automatic restarts so far (instances).
    #[serde(default)]
    pub restart_count: u32,
    /// The sender's number for this report on this entity (its epoch, and a counter from 1):
    /// the host applies an entity's reports in this order and each once. A worker numbers every
    /// report; one without (an older sender) is applied as it comes, unordered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<Sequence>,
}

impl StatusReport {
    /// A report with no exit details.
    pub fn new(entity: Entity, status: Status, cause: Cause, reported_at: DateTime<Utc>) -> Self {
        Self {
            entity,
            status,
            cause,
            detail: None,
            reported_at,
            exit_code: None,
            exit_signal: None,
            restart_count: 0,
            sequence: None,
        }
    }

    /// Numbered `sequence`.
    pub fn with_sequence(mut self, sequence: Sequence) -> Self {
        self.sequence = Some(sequence);
        self
    }

    /// With a detail for a person.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}
