//! What a shim and its worker say to each other over the shim's Unix socket: one message per
//! line, a letter and fields separated by single spaces, free text (a console line) last.
//!
//! Shim → worker: [`ToWorker`]: `H` (hello, first on every connection), `E` (the server could
//! not be started), `K` (this connection is the attached worker's now), `N` (refused: another
//! worker is attached), `L` (a console line), `X` (the server exited; every line came before
//! it).
//! Worker → shim: [`ToShim`]: first, on the connection the shim is started with, `V` (one
//! variable of the server's environment, hex-encoded) and `G` (go: start the server); then `A`
//! (attend: the worker is here, hold the lines until it asks for them), `R` (replay from a line
//! number, then stream; attends too), `I` (a stdin line), `C` (close stdin), `D` (done: the
//! exit was recorded, the shim may go).
//!
//! The server's environment comes over the connection, not as the shim's own: the shim runs as
//! the worker's user (root), and a variable such as `LD_LIBRARY_PATH` naming the game's
//! directory must never reach its dynamic loader.
//!
//! Console text never holds a newline (output is split at newlines, stdin lines are single
//! lines), so a line of the protocol is one message.

use std::fmt;

/// The version a hello carries; a worker refuses a shim of another.
pub const VERSION: u32 = 1;

/// Which stream a console line is from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The server's standard output.
    Stdout,
    /// Its standard error.
    Stderr,
    /// A line written to its standard input.
    Stdin,
}

impl Stream {
    fn letter(self) -> char {
        match self {
            Self::Stdout => 'o',
            Self::Stderr => 'e',
            Self::Stdin => 'i',
        }
    }

    fn parse(field: &str) -> Option<Self> {
        match field {
            "o" => Some(Self::Stdout),
            "e" => Some(Self::Stderr),
            "i" => Some(Self::Stdin),
            _ => None,
        }
    }
}

/// A numbered console line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Its number in the instance's console (numbering continues across restarts of the
    /// server and of the worker).
    pub seq: u64,
    /// Which stream.
    pub stream: Stream,
    /// When the shim read or wrote it, in milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// The text, without its line ending.
    pub text: String,
}

/// How the server ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// Its exit code, when it exited by itself.
    pub code: Option<i32>,
    /// The signal that ended it.
    pub signal: Option<i32>,
}

/// The first message on every connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// [`VERSION`].
    pub version: u32,
    /// The server's pid, which is also its process group id.
    pub pid: u32,
    /// The oldest line the shim can still replay.
    pub oldest: u64,
    /// The number the next line will get.
    pub next: u64,
}

/// A message from the shim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToWorker {
    /// Who it is and what it holds.
    Hello(Hello),
    /// The server could not be started; the shim exits.
    SpawnFailed(String),
    /// The connection is the attached worker's now (the answer to `A` or `R`).
    Kept,
    /// The connection is refused: why (another worker is attached).
    Refused(String),
    /// A console line.
    Line(Line),
    /// The server exited and its output was read to the end.
    Exit(Exit),
}

/// A message from the worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToShim {
    /// One variable of the server's environment, `NAME=VALUE`.
    Env(String),
    /// The environment is complete: start the server.
    Go,
    /// The worker is here: hold the console lines (and do not stop the server) until it asks
    /// for them.
    Attend,
    /// Send the lines from this number on that are still held, then every new one.
    Replay(u64),
    /// Write this line to the server's stdin (and number it in the console).
    Stdin(String),
    /// Close the server's stdin once what came before is written.
    CloseStdin,
    /// The worker recorded the exit: the shim may end.
    Done,
}

/// A malformed protocol line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError(pub String);

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not a shim protocol line: {:?}", self.0)
    }
}

impl std::error::Error for ProtocolError {}

fn optional(value: Option<i32>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// A field that is a number or `-` (none).
fn parse_optional(field: &str) -> Result<Option<i32>, std::num::ParseIntError> {
    if field == "-" {
        Ok(None)
    } else {
        field.parse().map(Some)
    }
}

impl fmt::Display for ToWorker {
    /// The protocol line, with its newline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Hello(h) => writeln!(f, "H {} {} {} {}", h.version, h.pid, h.oldest, h.next),
            Self::SpawnFailed(why) => writeln!(f, "E {}", one_line(why)),
            Self::Kept => f.write_str("K\n"),
            Self::Refused(why) => writeln!(f, "N {}", one_line(why)),
            Self::Line(l) => writeln!(
                f,
                "L {} {} {} {}",
                l.seq,
                l.stream.letter(),
                l.at_ms,
                one_line(&l.text)
            ),
            Self::Exit(e) => writeln!(f, "X {} {}", optional(e.code), optional(e.signal)),
        }
    }
}

impl fmt::Display for ToShim {
    /// The protocol line, with its newline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Env(variable) => writeln!(f, "V {}", hex(variable.as_bytes())),
            Self::Go => f.write_str("G\n"),
            Self::Attend => f.write_str("A\n"),
            Self::Replay(from) => writeln!(f, "R {from}"),
            Self::Stdin(text) => writeln!(f, "I {}", one_line(text)),
            Self::CloseStdin => f.write_str("C\n"),
            Self::Done => f.write_str("D\n"),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Text as one protocol field: a line break would end the message, so it becomes a space.
fn one_line(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains(['\n', '\r']) {
        text.replace(['\n', '\r'], " ").into()
    } else {
        text.into()
    }
}

/// The letter and the rest of a protocol line (its newline removed).
fn split(line: &str) -> (&str, &str) {
    let line = line.strip_suffix('\n').unwrap_or(line);
    line.split_once(' ').unwrap_or((line, ""))
}

impl std::str::FromStr for ToWorker {
    type Err = ProtocolError;

    fn from_str(line: &str) -> Result<Self, Self::Err> {
        let bad = || ProtocolError(line.to_owned());
        let (letter, rest) = split(line);
        match letter {
            "H" => {
                let fields: Vec<&str> = rest.split(' ').collect();
                let [version, pid, oldest, next] = fields[..] else {
                    return Err(bad());
                };
                Ok(Self::Hello(Hello {
                    version: version.parse().map_err(|_| bad())?,
                    pid: pid.parse().map_err(|_| bad())?,
                    oldest: oldest.parse().map_err(|_| bad())?,
                    next: next.parse().map_err(|_| bad())?,
                }))
            }
            "E" => Ok(Self::SpawnFailed(rest.to_owned())),
            "K" if rest.is_empty() => Ok(Self::Kept),
            "N" => Ok(Self::Refused(rest.to_owned())),
            "L" => {
                let mut fields = rest.splitn(4, ' ');
                let mut next = || fields.next().ok_or_else(bad);
                let seq = next()?.parse().map_err(|_| bad())?;
                let stream = Stream::parse(next()?).ok_or_else(bad)?;
                let at_ms = next()?.parse().map_err(|_| bad())?;
                let text = fields.next().unwrap_or("").to_owned();
                Ok(Self::Line(Line {
                    seq,
                    stream,
                    at_ms,
                    text,
                }))
            }
            "X" => {
                let (code, signal) = rest.split_once(' ').ok_or_else(bad)?;
                Ok(Self::Exit(Exit {
                    code: parse_optional(code).map_err(|_| bad())?,
                    signal: parse_optional(signal).map_err(|_| bad())?,
                }))
            }
            _ => Err(bad()),
        }
    }
}

impl std::str::FromStr for ToShim {
    type Err = ProtocolError;

    fn from_str(line: &str) -> Result<Self, Self::Err> {
        let bad = || ProtocolError(line.to_owned());
        match split(line) {
            ("V", encoded) => {
                let bytes = unhex(encoded).ok_or_else(bad)?;
                Ok(Self::Env(String::from_utf8(bytes).map_err(|_| bad())?))
            }
            ("G", "") => Ok(Self::Go),
            ("A", "") => Ok(Self::Attend),
            ("R", from) => Ok(Self::Replay(from.parse().map_err(|_| bad())?)),
            ("I", text) => Ok(Self::Stdin(text.to_owned())),
            ("C", "") => Ok(Self::CloseStdin),
            ("D", "") => Ok(Self::Done),
            _ => Err(bad()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_reads_back_as_written() {
        let to_worker = [
            ToWorker::Hello(Hello {
                version: VERSION,
                pid: 4242,
                oldest: 3,
                next: 90,
            }),
            ToWorker::SpawnFailed("could not start ./srv: No such file".to_owned()),
            ToWorker::Kept,
            ToWorker::Refused("another worker is attached".to_owned()),
            ToWorker::Line(Line {
                seq: 7,
                stream: Stream::Stderr,
                at_ms: 1_700_000_000_123,
                text: "  two  spaces\tand a tab, ünïcode ".to_owned(),
            }),
            ToWorker::Line(Line {
                seq: 8,
                stream: Stream::Stdin,
                at_ms: 1,
                text: String::new(),
            }),
            ToWorker::Exit(Exit {
                code: None,
                signal: Some(9),
            }),
            ToWorker::Exit(Exit {
                code: Some(3),
                signal: None,
            }),
        ];
        for message in to_worker {
            let line = message.to_string();
            assert_eq!(line.matches('\n').count(), 1, "{line:?}");
            assert_eq!(line.parse::<ToWorker>(), Ok(message));
        }
        let to_shim = [
            ToShim::Env("PATH=/usr/bin:/bin".to_owned()),
            ToShim::Env("MOTD=two\nlines and ünïcode=ok".to_owned()),
            ToShim::Go,
            ToShim::Attend,
            ToShim::Replay(12),
            ToShim::Stdin("say hello world".to_owned()),
            ToShim::CloseStdin,
            ToShim::Done,
        ];
        for message in to_shim {
            assert_eq!(message.to_string().parse::<ToShim>(), Ok(message));
        }
    }

    #[test]
    fn a_line_break_in_text_cannot_forge_a_second_message() {
        let line = ToShim::Stdin("say hi\nD".to_owned()).to_string();
        assert_eq!(line, "I say hi D\n");
    }

    #[test]
    fn malformed_lines_are_refused() {
        for line in ["", "Z 1", "H 1 2", "L x o 1 t", "L 1 q 1 t", "X 1", "X a b"] {
            assert!(line.parse::<ToWorker>().is_err(), "{line:?}");
        }
        for line in ["R", "R x", "C now", "Q", "V 4", "V zz", "V ff", "G now"] {
            assert!(line.parse::<ToShim>().is_err(), "{line:?}");
        }
    }
}
