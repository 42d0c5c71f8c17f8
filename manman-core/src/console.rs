//! Console lines: what a game server printed (and what it was sent), numbered per instance.

use crate::id::InstanceId;
use crate::instance::Instance;
use crate::status::{Cause, Status};
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

/// How an instance ended: the last event of its console stream (`event: end`), after its last
/// line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConsoleEnd {
    /// The instance.
    pub instance_id: InstanceId,
    /// `complete` or `crashed`.
    pub status: Status,
    /// Why.
    pub cause: Cause,
    /// What its last status change said.
    pub detail: Option<String>,
    /// Exit code of its last process, if it exited normally.
    pub exit_code: Option<i32>,
    /// Signal that ended its last process, if any.
    pub exit_signal: Option<i32>,
    /// When it ended.
    pub ended_at: Option<DateTime<Utc>>,
    /// All of it in one line, for a person: `instance 7 crashed (worker-restart): …`.
    pub text: String,
}

impl ConsoleEnd {
    /// The end of `instance`, if it has ended.
    pub fn of(instance: &Instance) -> Option<Self> {
        if !instance.status.is_terminal() {
            return None;
        }
        let mut text = format!("{} {} ({})", instance.id, instance.status, instance.cause);
        if let Some(detail) = &instance.detail {
            text.push_str(": ");
            text.push_str(detail);
        }
        match (instance.exit_code, instance.exit_signal) {
            (Some(code), _) => text.push_str(&format!("; exit code {code}")),
            (None, Some(signal)) => text.push_str(&format!("; signal {signal}")),
            (None, None) => {}
        }
        Some(Self {
            instance_id: instance.id,
            status: instance.status,
            cause: instance.cause,
            detail: instance.detail.clone(),
            exit_code: instance.exit_code,
            exit_signal: instance.exit_signal,
            ended_at: instance.ended_at,
            text,
        })
    }
}

/// Lines a console tail holds at most: the last lines of an instance that ended, kept by the
/// host so its console can be read after any restart.
pub const TAIL_LINES: usize = 1_000;

/// The size of a console tail at most, as JSON: the newest lines that fit.
pub const TAIL_BYTES: usize = 512 * 1024;

/// The last lines of an ended instance's console, read from the worker's log and kept by the
/// host: what its console replays once the live stream is over.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConsoleTail {
    /// The lines, oldest first, numbered as they were live (at most [`TAIL_LINES`], at most
    /// [`TAIL_BYTES`] as JSON).
    #[cfg_attr(feature = "openapi", schema(max_items = 1000))]
    pub lines: Vec<ConsoleLine>,
}

impl ConsoleTail {
    /// The newest of `lines` (oldest first) that fit a tail: at most [`TAIL_LINES`], at most
    /// [`TAIL_BYTES`] as JSON.
    pub fn newest(lines: Vec<ConsoleLine>) -> Self {
        let mut bytes = 0;
        let mut keep = 0;
        for line in lines.iter().rev().take(TAIL_LINES) {
            bytes += encoded_len(line);
            if bytes > TAIL_BYTES {
                break;
            }
            keep += 1;
        }
        let skip = lines.len() - keep;
        Self {
            lines: lines.into_iter().skip(skip).collect(),
        }
    }

    /// Why this is not a tail of `instance`'s console, if it is not one: lines of another
    /// instance, numbers not increasing, too many lines or bytes.
    pub fn check(&self, instance: InstanceId) -> Result<(), String> {
        if self.lines.len() > TAIL_LINES {
            return Err(format!(
                "a console tail holds at most {TAIL_LINES} lines; this one has {}",
                self.lines.len()
            ));
        }
        let mut bytes = 0;
        let mut last = 0;
        for line in &self.lines {
            if line.instance_id != instance {
                return Err(format!(
                    "line {} is of {}, not of {instance}",
                    line.seq, line.instance_id
                ));
            }
            if line.seq <= last {
                return Err(format!(
                    "line numbers must increase: {} follows {last}",
                    line.seq
                ));
            }
            last = line.seq;
            bytes += encoded_len(line);
        }
        if bytes > TAIL_BYTES {
            return Err(format!(
                "a console tail is at most {TAIL_BYTES} bytes as JSON; this one is {bytes}"
            ));
        }
        Ok(())
    }
}

/// The size of `line` as JSON.
fn encoded_len(line: &ConsoleLine) -> usize {
    // A ConsoleLine (numbers, strings, a time) always encodes.
    serde_json::to_vec(line).map_or(0, |json| json.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(seq: u64, text: &str) -> ConsoleLine {
        ConsoleLine {
            instance_id: InstanceId(7),
            seq,
            stream: ConsoleStream::Stdout,
            text: text.to_owned(),
            at: chrono::Utc::now(),
        }
    }

    #[test]
    fn a_tail_keeps_the_newest_lines_that_fit() {
        let tail = ConsoleTail::newest((1..=1_500).map(|n| line(n, "x")).collect());
        assert_eq!(tail.lines.len(), TAIL_LINES);
        assert_eq!(tail.lines[0].seq, 501);
        assert_eq!(tail.lines.last().map(|l| l.seq), Some(1_500));
        tail.check(InstanceId(7)).expect("a tail it made");

        let wide = "w".repeat(60 * 1024);
        let tail = ConsoleTail::newest((1..=20).map(|n| line(n, &wide)).collect());
        assert!(tail.lines.len() < 20 && !tail.lines.is_empty());
        assert_eq!(
            tail.lines.last().map(|l| l.seq),
            Some(20),
            "the newest kept"
        );
        tail.check(InstanceId(7)).expect("within the byte cap");
    }

    #[test]
    fn a_tail_of_another_instance_or_out_of_order_is_refused() {
        let other = ConsoleTail {
            lines: vec![line(1, "a")],
        };
        let refused = other.check(InstanceId(8)).unwrap_err();
        assert!(refused.contains("not of instance 8"), "{refused}");

        let backwards = ConsoleTail {
            lines: vec![line(2, "a"), line(2, "b")],
        };
        let refused = backwards.check(InstanceId(7)).unwrap_err();
        assert!(refused.contains("2 follows 2"), "{refused}");

        let too_many = ConsoleTail {
            lines: (1..=1_001).map(|n| line(n, "x")).collect(),
        };
        assert!(too_many.check(InstanceId(7)).is_err());
    }
}
