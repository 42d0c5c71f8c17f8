//! Commands from the host to a worker, their records (the host's outbox and audit trail) and
//! their results.

use crate::id::{ConfigId, InstanceId, WorkerId};
use crate::ports::ConfigBundle;
use crate::unknown_name::UnknownName;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

/// What a worker is asked to do. Typed: never a bag of strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    /// Run a config as the given (already created) instance.
    Start {
        /// The instance the host created for this run.
        instance_id: InstanceId,
        /// The config to run.
        config_id: ConfigId,
        /// The game and config the host placed, as it read them when it placed the instance:
        /// the worker starts with them instead of asking the host for them (one HTTP request
        /// fewer before the spawn). A host older than this field sends none; the worker then
        /// fetches them (`GET /api/v1/worker/instances/{id}/config`).
        ///
        /// Carried, they are as trustworthy as fetched: a command is sealed by the host for
        /// one registration (worker id and epoch) of its worker with that registration's key,
        /// so only the host can have written them, for this very registration — a restarted
        /// worker (a new epoch, a new key) refuses a start meant for its past. The worker
        /// checks them as it checks fetched ones (the config is the one the command names,
        /// game and config pass validation again). A start's record in the host's store holds
        /// them too, as sent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bundle: Option<Box<ConfigBundle>>,
    },
    /// Stop gracefully: stdin line, signal, then SIGKILL.
    Stop {
        /// The instance.
        instance_id: InstanceId,
    },
    /// SIGKILL the whole process group at once.
    Kill {
        /// The instance.
        instance_id: InstanceId,
    },
    /// Stop, then start the same instance again.
    Restart {
        /// The instance.
        instance_id: InstanceId,
    },
    /// Write one line to the server's console (stdin).
    Stdin {
        /// The instance.
        instance_id: InstanceId,
        /// The line, without its newline.
        line: String,
    },
    /// Stop every instance and exit.
    ShutdownWorker,
    /// Hand the last lines of a running instance's console log to the host (what its console
    /// replays): the host asks when it has not seen them (it restarted, or lost the bus, since
    /// the instance started).
    SendConsoleTail {
        /// The instance.
        instance_id: InstanceId,
    },
}

impl Command {
    /// The instance it is about, if any.
    pub fn instance_id(&self) -> Option<InstanceId> {
        match self {
            Self::Start { instance_id, .. }
            | Self::Stop { instance_id }
            | Self::Kill { instance_id }
            | Self::Restart { instance_id }
            | Self::Stdin { instance_id, .. }
            | Self::SendConsoleTail { instance_id } => Some(*instance_id),
            Self::ShutdownWorker => None,
        }
    }

    /// Its snake_case name, as in JSON.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Start { .. } => "start",
            Self::Stop { .. } => "stop",
            Self::Kill { .. } => "kill",
            Self::Restart { .. } => "restart",
            Self::Stdin { .. } => "stdin",
            Self::ShutdownWorker => "shutdown_worker",
            Self::SendConsoleTail { .. } => "send_console_tail",
        }
    }
}

/// The longest line a [`Command::Stdin`] may carry, in bytes of UTF-8 (4 KiB). A console
/// command is short; the limit keeps stored command records and console logs small.
pub const MAX_STDIN_LINE_BYTES: usize = 4 * 1024;

/// Why a line cannot be sent to a server's stdin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StdinLineError {
    /// It holds a newline, a carriage return or a NUL.
    #[error("must be one line without NUL: send several lines as several commands")]
    NotOneLine,
    /// It is longer than [`MAX_STDIN_LINE_BYTES`].
    #[error(
        "is {len} bytes long, over the limit of {MAX_STDIN_LINE_BYTES} bytes: a console command is short; send a shorter line"
    )]
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
}

/// Checks a line meant for a server's stdin: one line, no NUL, at most
/// [`MAX_STDIN_LINE_BYTES`]. The host checks it before recording the command, and the worker
/// again before writing it.
pub fn check_stdin_line(line: &str) -> Result<(), StdinLineError> {
    if line.len() > MAX_STDIN_LINE_BYTES {
        return Err(StdinLineError::TooLong { len: line.len() });
    }
    if line.contains(['\n', '\r', '\0']) {
        return Err(StdinLineError::NotOneLine);
    }
    Ok(())
}

/// How long a command stays deliverable by default.
pub const DEFAULT_COMMAND_TTL: Duration = Duration::seconds(60);

/// Who asks for a command, and the request it came from (its correlation id, followed through
/// the host's and the worker's logs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// Who asked (a token's name, `system`, …).
    pub issued_by: String,
    /// The request id of the API call, if it came from one.
    pub correlation_id: Option<String>,
}

impl From<&str> for Origin {
    fn from(issued_by: &str) -> Self {
        Self {
            issued_by: issued_by.to_owned(),
            correlation_id: None,
        }
    }
}

/// A command as sent: with its id, times and issuer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CommandEnvelope {
    /// Unique id; the worker runs a command id at most once.
    pub id: Uuid,
    /// When the host issued it.
    pub issued_at: DateTime<Utc>,
    /// After this it must not run (it is dead-lettered and recorded `expired`).
    pub expires_at: DateTime<Utc>,
    /// Who asked (a token's name, `system`, …).
    pub issued_by: String,
    /// The request that caused it, for following it through logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// What to do.
    pub command: Command,
}

impl CommandEnvelope {
    /// A new command issued now, expiring after [`DEFAULT_COMMAND_TTL`].
    pub fn new(command: Command, issued_by: impl Into<String>, now: DateTime<Utc>) -> Self {
        Self {
            id: Uuid::new_v4(),
            issued_at: now,
            expires_at: now + DEFAULT_COMMAND_TTL,
            issued_by: issued_by.into(),
            correlation_id: None,
            command,
        }
    }

    /// Whether it expired at `now`.
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        now >= self.expires_at
    }
}

/// Where a command is on its way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum CommandState {
    /// Recorded, not yet accepted by the bus.
    Pending,
    /// Accepted by the bus into the worker's queue.
    Delivered,
    /// The worker carried it out.
    Succeeded,
    /// The worker could not carry it out (the detail says why), or it could not be sent.
    Failed,
    /// It expired before a worker took it.
    Expired,
}

impl CommandState {
    /// Every state, in the order a command goes through them.
    pub const ALL: [Self; 5] = [
        Self::Pending,
        Self::Delivered,
        Self::Succeeded,
        Self::Failed,
        Self::Expired,
    ];

    /// `succeeded`, `failed` and `expired` are final.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Expired)
    }

    /// Whether `self → to` is allowed: forward only, never out of a final state.
    pub fn can_become(self, to: Self) -> bool {
        match self {
            Self::Pending => to != Self::Pending,
            Self::Delivered => to.is_final(),
            Self::Succeeded | Self::Failed | Self::Expired => false,
        }
    }

    /// The snake_case name used in JSON and SQL.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Expired => "expired",
        }
    }
}

impl std::str::FromStr for CommandState {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        UnknownName::find("command state", s, &Self::ALL, Self::as_str)
    }
}

impl fmt::Display for CommandState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The host's record of a command: outbox and audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CommandRecord {
    /// The command id.
    pub id: Uuid,
    /// The worker it was sent to.
    pub worker_id: WorkerId,
    /// The command as sent.
    pub envelope: CommandEnvelope,
    /// Where it is.
    pub state: CommandState,
    /// The result's detail (why it failed, what happened).
    pub detail: Option<String>,
    /// Last change (host clock).
    pub updated_at: DateTime<Utc>,
}

impl CommandRecord {
    /// The record of `envelope`, to `worker`, not sent yet (`pending` since it was issued).
    pub fn pending(worker: WorkerId, envelope: CommandEnvelope) -> Self {
        Self {
            id: envelope.id,
            worker_id: worker,
            updated_at: envelope.issued_at,
            envelope,
            state: CommandState::Pending,
            detail: None,
        }
    }
}

/// A worker's answer to a command, published on `manman.events`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CommandResult {
    /// The command.
    pub command_id: Uuid,
    /// The worker that handled it.
    pub worker_id: WorkerId,
    /// Whether it was carried out.
    pub outcome: CommandOutcome,
    /// What happened or why not, for a person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Worker clock.
    pub reported_at: DateTime<Utc>,
}

/// The two endings a worker can report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum CommandOutcome {
    /// Carried out.
    Succeeded,
    /// Refused or failed; the detail says why.
    Failed,
    /// It reached the worker after its `expires_at`, and was not carried out.
    Expired,
}

impl From<CommandOutcome> for CommandState {
    fn from(outcome: CommandOutcome) -> Self {
        match outcome {
            CommandOutcome::Succeeded => Self::Succeeded,
            CommandOutcome::Failed => Self::Failed,
            CommandOutcome::Expired => Self::Expired,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_tagged_json() {
        let c = Command::Stdin {
            instance_id: InstanceId(3),
            line: "say hi".into(),
        };
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"type":"stdin","instance_id":3,"line":"say hi"})
        );
        let unknown = serde_json::from_str::<Command>(r#"{"type":"format_disk"}"#).unwrap_err();
        assert!(unknown.to_string().contains("format_disk"));
        let extra = serde_json::from_str::<Command>(r#"{"type":"stop","instance_id":1,"x":1}"#);
        assert!(extra.is_err(), "unknown fields are refused");
    }

    /// A game and a config as the host stores them.
    fn bundle() -> ConfigBundle {
        use crate::config::{ConfigSpec, GameServerConfig};
        use crate::game_server::{GameServer, ServerType};
        use crate::id::GameServerId;
        let mut spec = ConfigSpec::new("main", "server");
        spec.args = vec!["-port".into(), "27015".into()];
        ConfigBundle {
            game: GameServer {
                id: GameServerId(2),
                name: "fake".into(),
                server_type: ServerType::Local {
                    path: "games/fake".into(),
                },
                created_at: Utc::now(),
            },
            config: GameServerConfig {
                id: ConfigId(5),
                game_server_id: GameServerId(2),
                created_at: Utc::now(),
                spec,
            },
        }
    }

    #[test]
    fn a_start_carries_its_game_and_config_and_one_without_them_still_parses() {
        let carried = Command::Start {
            instance_id: InstanceId(9),
            config_id: ConfigId(5),
            bundle: Some(Box::new(bundle())),
        };
        let json = serde_json::to_value(&carried).unwrap();
        assert_eq!(json["bundle"]["config"]["name"], "main");
        assert_eq!(json["bundle"]["game"]["name"], "fake");
        assert_eq!(serde_json::from_value::<Command>(json).unwrap(), carried);

        // A host older than the field sends none: the same command, to be fetched.
        let old =
            serde_json::from_str::<Command>(r#"{"type":"start","instance_id":9,"config_id":5}"#)
                .unwrap();
        let bare = Command::Start {
            instance_id: InstanceId(9),
            config_id: ConfigId(5),
            bundle: None,
        };
        assert_eq!(old, bare);
        assert_eq!(
            serde_json::to_value(&bare).unwrap(),
            serde_json::json!({"type":"start","instance_id":9,"config_id":5}),
            "none is left out, not sent as null"
        );
        let envelope = CommandEnvelope::new(carried, "test", Utc::now());
        let text = serde_json::to_string(&envelope).unwrap();
        assert_eq!(
            serde_json::from_str::<CommandEnvelope>(&text).unwrap(),
            envelope
        );
        let typo = serde_json::from_str::<Command>(
            r#"{"type":"start","instance_id":9,"config_id":5,"bundel":null}"#,
        );
        assert!(typo.is_err(), "unknown fields are still refused");
    }

    #[test]
    fn stdin_lines_are_one_line_of_at_most_4_kib() {
        assert_eq!(check_stdin_line("say hi"), Ok(()));
        assert_eq!(check_stdin_line(&"x".repeat(MAX_STDIN_LINE_BYTES)), Ok(()));
        let long = "x".repeat(MAX_STDIN_LINE_BYTES + 1);
        let refused = check_stdin_line(&long).unwrap_err();
        assert_eq!(refused, StdinLineError::TooLong { len: 4097 });
        assert!(refused.to_string().contains("4096 bytes"), "{refused}");
        // Bytes, not characters: 2,049 two-byte characters are 4,098 bytes.
        assert!(check_stdin_line(&"é".repeat(2_049)).is_err());
        for bad in ["a\nb", "a\rb", "a\0b"] {
            assert_eq!(check_stdin_line(bad), Err(StdinLineError::NotOneLine));
        }
    }

    #[test]
    fn command_states_only_move_forward() {
        use CommandState::*;
        assert!(Pending.can_become(Delivered));
        assert!(Pending.can_become(Expired));
        assert!(Delivered.can_become(Succeeded));
        assert!(!Delivered.can_become(Pending));
        assert!(!Succeeded.can_become(Failed));
        assert!(!Expired.can_become(Delivered));
    }

    #[test]
    fn command_states_round_trip_through_text() {
        for state in CommandState::ALL {
            assert_eq!(state.as_str().parse::<CommandState>().unwrap(), state);
            assert_eq!(
                serde_json::to_string(&state).unwrap(),
                format!("\"{state}\"")
            );
        }
        assert!("done".parse::<CommandState>().is_err());
    }

    #[test]
    fn envelopes_expire_after_the_default_ttl() {
        let now = Utc::now();
        let e = CommandEnvelope::new(Command::ShutdownWorker, "test", now);
        assert!(!e.is_expired(now + Duration::seconds(59)));
        assert!(e.is_expired(now + Duration::seconds(60)));
    }
}
