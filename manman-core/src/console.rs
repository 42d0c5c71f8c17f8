//! Console lines: what a game server printed (and what it was sent), numbered per instance.

use crate::id::InstanceId;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One numbered console line, published on `manman.console` with key `instance.{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConsoleLine {
    /// The instance.
    pub instance_id: InstanceId,
    /// Per-instance sequence number, from 1; the SSE event id.
    pub seq: u64,
    /// Where it came from.
    pub stream: ConsoleStream,
    /// The text, without its newline.
    pub text: String,
    /// Worker clock.
    pub at: DateTime<Utc>,
}

/// The stream a console line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ConsoleStream {
    /// The server's standard output.
    Stdout,
    /// The server's standard error.
    Stderr,
    /// A line sent to the server's standard input (echoed).
    Stdin,
}
