//! [`Options`]: the shim's command line, written by the worker.

use crate::server::Launch;
use nix::sys::signal::Signal;
use std::path::PathBuf;
use std::time::Duration;

/// How the server is stopped when no worker is attached for the grace time: the config's stop
/// policy.
#[derive(Debug, Clone)]
pub struct StopPolicy {
    /// A console line asking it to quit.
    pub line: Option<String>,
    /// How long the line may take.
    pub timeout: Duration,
    /// The signal after it.
    pub signal: Signal,
    /// How long the signal may take before SIGKILL.
    pub grace: Duration,
}

/// Everything the shim is told.
#[derive(Debug, Clone)]
pub struct Options {
    /// The socket a restarted worker connects to.
    pub socket: PathBuf,
    /// Where the shim writes how the server ended when no worker was there to hear it.
    pub exit_file: PathBuf,
    /// The number of the first console line.
    pub first_seq: u64,
    /// How long the server may run with no worker attached before it is stopped.
    pub unattended_grace: Duration,
    /// How it is stopped then.
    pub stop: StopPolicy,
    /// The server.
    pub launch: Launch,
}

/// Usage, for errors.
pub const USAGE: &str = "manman-shim --socket PATH --exit-file PATH --first-seq N \
    --unattended-grace-s N --cwd DIR [--uid N --gid N] [--stop-line TEXT] [--stop-signal term|int] \
    [--stop-timeout-s N] [--stop-grace-s N] -- PROGRAM [ARG...]   (fd 0: the worker's connection)";

impl Options {
    /// Reads the arguments (without the program name).
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Self, String> {
        let mut args = args.into_iter();
        let mut socket = None;
        let mut exit_file = None;
        let mut first_seq = None;
        let mut grace = None;
        let mut cwd = None;
        let (mut uid, mut gid) = (None, None);
        let mut stop = StopPolicy {
            line: None,
            timeout: Duration::from_secs(30),
            signal: Signal::SIGTERM,
            grace: Duration::from_secs(10),
        };
        let seconds = |name: &str, value: String| {
            value
                .parse::<u64>()
                .map(Duration::from_secs)
                .map_err(|_| format!("{name}: {value:?} is not a number of seconds"))
        };
        let number = |name: &str, value: String| {
            value
                .parse::<u64>()
                .map_err(|_| format!("{name}: {value:?} is not a number"))
        };
        loop {
            let Some(flag) = args.next() else {
                return Err("no program given after --".to_owned());
            };
            if flag == "--" {
                break;
            }
            let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
            match flag.as_str() {
                "--socket" => socket = Some(PathBuf::from(value)),
                "--exit-file" => exit_file = Some(PathBuf::from(value)),
                "--first-seq" => first_seq = Some(number(&flag, value)?),
                "--unattended-grace-s" => grace = Some(seconds(&flag, value)?),
                "--cwd" => cwd = Some(PathBuf::from(value)),
                "--uid" => {
                    uid = Some(u32::try_from(number(&flag, value)?).map_err(|e| e.to_string())?)
                }
                "--gid" => {
                    gid = Some(u32::try_from(number(&flag, value)?).map_err(|e| e.to_string())?)
                }
                "--stop-line" => stop.line = Some(value),
                "--stop-signal" => {
                    stop.signal = match value.as_str() {
                        "term" => Signal::SIGTERM,
                        "int" => Signal::SIGINT,
                        _ => return Err(format!("--stop-signal: {value:?} is not term or int")),
                    }
                }
                "--stop-timeout-s" => stop.timeout = seconds(&flag, value)?,
                "--stop-grace-s" => stop.grace = seconds(&flag, value)?,
                _ => return Err(format!("unknown option {flag}")),
            }
        }
        let program = args.next().ok_or("no program given after --")?;
        let missing = |name: &str| format!("{name} is required");
        Ok(Self {
            socket: socket.ok_or_else(|| missing("--socket"))?,
            exit_file: exit_file.ok_or_else(|| missing("--exit-file"))?,
            first_seq: first_seq.ok_or_else(|| missing("--first-seq"))?,
            unattended_grace: grace.ok_or_else(|| missing("--unattended-grace-s"))?,
            stop,
            launch: Launch {
                program: PathBuf::from(program),
                args: args.collect(),
                cwd: cwd.ok_or_else(|| missing("--cwd"))?,
                ids: match (uid, gid) {
                    (Some(uid), Some(gid)) => Some((uid, gid)),
                    (None, None) => None,
                    _ => return Err("--uid and --gid go together".to_owned()),
                },
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split(' ').map(str::to_owned).collect()
    }

    #[test]
    fn a_full_command_line_is_read() {
        let options = Options::parse(args(
            "--socket /s/i.sock --exit-file /s/i.exit --first-seq 41 --unattended-grace-s 60 \
             --cwd /games/x --uid 65534 --gid 65534 --stop-line quit --stop-signal int \
             --stop-timeout-s 5 --stop-grace-s 2 -- ./srv -port 27015",
        ))
        .unwrap();
        assert_eq!(options.first_seq, 41);
        assert_eq!(options.unattended_grace, Duration::from_secs(60));
        assert_eq!(options.stop.line.as_deref(), Some("quit"));
        assert_eq!(options.stop.signal, Signal::SIGINT);
        assert_eq!(options.launch.ids, Some((65534, 65534)));
        assert_eq!(options.launch.program, PathBuf::from("./srv"));
        assert_eq!(options.launch.args, ["-port", "27015"]);
    }

    #[test]
    fn what_is_missing_or_wrong_is_named() {
        let error = Options::parse(args("--socket /s --first-seq 1 -- ./srv")).unwrap_err();
        assert!(error.contains("--exit-file"), "{error}");
        let error = Options::parse(args("--first-seq x -- ./srv")).unwrap_err();
        assert!(
            error.contains("--first-seq") && error.contains("\"x\""),
            "{error}"
        );
        let error = Options::parse(args("--stop-signal kill -- ./srv")).unwrap_err();
        assert!(error.contains("term or int"), "{error}");
    }
}
