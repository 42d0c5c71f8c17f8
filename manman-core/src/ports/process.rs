//! The process port: spawn a game server as a child process and control its whole process
//! group. The graceful stop sequence built on it is in [`crate::process`].

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::{self, Debug};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use tokio::sync::{mpsc, watch};

use crate::config::StopPolicy;
use crate::id::InstanceId;
use chrono::{DateTime, Utc};

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessSpec {
    /// The program (absolute, or relative to `cwd`).
    pub program: PathBuf,
    /// Its arguments (no shell).
    pub args: Vec<String>,
    /// The whole environment of the process (nothing is inherited from the worker).
    pub env: BTreeMap<String, String>,
    /// Working directory.
    pub cwd: PathBuf,
    /// The user it runs as; `None`: the worker's own. A runner must honour it (or refuse the
    /// spawn): it is what keeps game servers away from a worker running as root.
    pub user: Option<ProcessUser>,
}

/// An unprivileged user a process runs as: its uid and primary gid, with no supplementary
/// groups.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProcessUser {
    /// The user's name, for messages.
    pub name: String,
    /// Its user id; never 0.
    pub uid: u32,
    /// Its primary group id.
    pub gid: u32,
}

impl fmt::Display for ProcessUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (uid {}, gid {})", self.name, self.uid, self.gid)
    }
}

/// What a runner that keeps game servers across worker restarts (a shim per server) needs to
/// know of one, besides its [`ProcessSpec`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerLaunch {
    /// The instance it is.
    pub instance_id: InstanceId,
    /// Which start of the instance (a number the supervisor draws at random): what a runner
    /// names the server's files by, so that a start never mistakes an earlier one's for its
    /// own. Kept with the process record, for [`ProcessRunner::reattach`].
    pub spawn: u64,
    /// The number its first console line gets (the console's numbering goes on across the
    /// instance's restarts).
    pub first_seq: u64,
    /// How it is stopped when no worker is there to supervise it.
    pub stop: StopPolicy,
}

/// A server a runner still holds for a restarted worker: attended from now on (its runner does
/// not stop it for want of a worker), its console held until [`HeldServer::resume`].
#[async_trait]
pub trait HeldServer: Send + Sync + Debug {
    /// The server's pid (its process group).
    fn pid(&self) -> u32;

    /// Supervises it again: its console lines from number `from` on (those still held), then
    /// the new ones, then its exit.
    async fn resume(self: Box<Self>, from: u64) -> Result<SpawnedProcess, ProcessError>;
}

/// What became of a server a previous run of the worker left to a runner that keeps servers.
#[derive(Debug)]
pub enum Reattached {
    /// It is still held, and now attended by this worker.
    Running(Box<dyn HeldServer>),
    /// Another worker process supervises it (two on one state directory): left alone.
    Busy(String),
    /// It ended while no worker was attached, and nobody heard it.
    Ended {
        /// How.
        exit: ExitStatus,
        /// Its runner stopped it by its stop policy, as no worker came back in time.
        stopped_unattended: bool,
    },
    /// Nothing holds it any more: why.
    Gone(String),
}

/// Spawns processes.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait ProcessRunner: Send + Sync + Debug + 'static {
    /// Starts `spec` in its own process group with piped stdin, stdout and stderr.
    async fn spawn(&self, spec: &ProcessSpec) -> Result<SpawnedProcess, ProcessError>;

    /// Starts a game server: as [`Self::spawn`], unless the runner keeps servers across
    /// worker restarts ([`Self::keeps_servers`]), which needs to know which instance it is.
    async fn spawn_server(
        &self,
        spec: &ProcessSpec,
        server: &ServerLaunch,
    ) -> Result<SpawnedProcess, ProcessError> {
        let _ = server;
        self.spawn(spec).await
    }

    /// Whether the servers it starts with [`Self::spawn_server`] outlive the worker, for a
    /// restarted worker to [`Self::reattach`] to (default: no).
    fn keeps_servers(&self) -> bool {
        false
    }

    /// Takes up again `instance`'s server (start `spawn`), left by a previous run of the
    /// worker.
    async fn reattach(&self, instance: InstanceId, spawn: u64) -> Reattached {
        let _ = (instance, spawn);
        Reattached::Gone("this runner keeps no server across worker restarts".to_owned())
    }

    /// Forgets what is left of `instance`'s server (start `spawn`) once its end, found by
    /// [`Self::reattach`], was reported.
    async fn forget(&self, instance: InstanceId, spawn: u64) {
        let _ = (instance, spawn);
    }
}

/// A just-spawned process: its handle and its output lines.
#[derive(Debug)]
pub struct SpawnedProcess {
    /// Controls the process; cloneable.
    pub handle: ProcessHandle,
    /// stdout and stderr, line by line (a last partial line included). Closed when both end.
    pub output: mpsc::Receiver<OutputLine>,
}

/// A line a process printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputLine {
    /// Which stream.
    pub stream: OutputStream,
    /// The text without its line ending (invalid UTF-8 replaced).
    pub text: String,
    /// Its number and time in the instance's console, from a runner that numbers the console
    /// itself (see [`ProcessHandle::numbers_console`]); `None`: the supervisor numbers it.
    pub numbered: Option<(u64, DateTime<Utc>)>,
}

impl OutputLine {
    /// A line the supervisor numbers.
    pub fn new(stream: OutputStream, text: impl Into<String>) -> Self {
        Self {
            stream,
            text: text.into(),
            numbered: None,
        }
    }
}

/// Which stream a console line is from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
    /// A line written to its standard input, from a runner that numbers the console (the
    /// supervisor numbers the lines it writes itself otherwise).
    Stdin,
}

/// Signals ManMan sends to a process group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessSignal {
    /// SIGTERM.
    Term,
    /// SIGINT.
    Int,
    /// SIGKILL.
    Kill,
}

impl From<crate::config::StopSignal> for ProcessSignal {
    fn from(signal: crate::config::StopSignal) -> Self {
        match signal {
            crate::config::StopSignal::Term => Self::Term,
            crate::config::StopSignal::Int => Self::Int,
        }
    }
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    /// Exit code, when it exited by itself.
    pub code: Option<i32>,
    /// The signal that ended it, if any.
    pub signal: Option<i32>,
}

impl ExitStatus {
    /// Exited with code 0.
    pub fn success(self) -> bool {
        self.code == Some(0)
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.code, self.signal) {
            (Some(code), _) => write!(f, "exit code {code}"),
            (None, Some(signal)) => write!(f, "signal {signal}"),
            (None, None) => f.write_str("unknown exit"),
        }
    }
}

/// Sends signals to a process's whole group.
pub trait ProcessControl: Send + Sync + Debug + 'static {
    /// Sends `signal` to every process of the group. Sending to a group that is gone is not an
    /// error.
    fn signal_group(&self, signal: ProcessSignal) -> Result<(), ProcessError>;
}

/// A handle on a running process: write lines, signal the group, wait for the exit.
#[derive(Debug, Clone)]
pub struct ProcessHandle {
    pid: u32,
    stdin: mpsc::Sender<String>,
    /// Set once stdin is to be closed (shared by the clones of the handle).
    stdin_closed: Arc<watch::Sender<bool>>,
    exit: watch::Receiver<Option<ExitStatus>>,
    control: Arc<dyn ProcessControl>,
    /// Set once its end has been recorded (shared by the clones of the handle).
    released: Arc<watch::Sender<bool>>,
    numbers_console: bool,
    /// Why the process's supervision was lost (a shim that died), once it was.
    lost: Arc<OnceLock<String>>,
}

impl ProcessHandle {
    /// Assembles a handle; for [`ProcessRunner`] implementations.
    ///
    /// `stdin` takes lines (without newline) to write; `exit` becomes `Some` once the process
    /// was reaped.
    pub fn new(
        pid: u32,
        stdin: mpsc::Sender<String>,
        exit: watch::Receiver<Option<ExitStatus>>,
        control: Arc<dyn ProcessControl>,
    ) -> Self {
        Self {
            pid,
            stdin,
            stdin_closed: Arc::new(watch::channel(false).0),
            exit,
            control,
            released: Arc::new(watch::channel(false).0),
            numbers_console: false,
            lost: Arc::default(),
        }
    }

    /// Marks a handle whose runner numbers the console: its output lines carry their numbers,
    /// and it echoes what is written to stdin as [`OutputStream::Stdin`] lines.
    pub fn numbering_console(mut self) -> Self {
        self.numbers_console = true;
        self
    }

    /// Says that its end (its exit, and the status that follows) has been recorded: a runner
    /// that keeps servers across worker restarts may then let go of what it kept of it. Until
    /// then, a worker that dies finds the exit again when it restarts.
    pub fn release(&self) {
        self.released.send_replace(true);
    }

    /// Becomes `true` when [`ProcessHandle::release`] was called; for [`ProcessRunner`]
    /// implementations.
    pub fn released(&self) -> watch::Receiver<bool> {
        self.released.subscribe()
    }

    /// Whether its runner numbers the console (see [`Self::numbering_console`]).
    pub fn numbers_console(&self) -> bool {
        self.numbers_console
    }

    /// Records, for a runner, that the process can no longer be supervised, and why (set before
    /// its exit is).
    pub fn mark_lost(&self, why: String) {
        let _ = self.lost.set(why);
    }

    /// Why its supervision was lost, if it was: its exit status is then unknown.
    pub fn lost(&self) -> Option<&str> {
        self.lost.get().map(String::as_str)
    }

    /// Closes its stdin once the lines queued so far are written: the process reads
    /// end-of-file instead of waiting for more (a prompt nobody will answer fails at once).
    pub fn close_stdin(&self) {
        self.stdin_closed.send_replace(true);
    }

    /// Becomes `true` when [`ProcessHandle::close_stdin`] was called; for
    /// [`ProcessRunner`] implementations, which then write what is queued and close the pipe.
    pub fn stdin_closed(&self) -> watch::Receiver<bool> {
        self.stdin_closed.subscribe()
    }

    /// The process id (also its process group id).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Queues a line for its stdin without waiting. Fails when the process is gone or the
    /// buffer is full (the process does not read its input).
    pub fn write_line(&self, line: &str) -> Result<(), ProcessError> {
        self.stdin.try_send(line.to_owned()).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => ProcessError::StdinFull { pid: self.pid },
            mpsc::error::TrySendError::Closed(_) => ProcessError::Exited { pid: self.pid },
        })
    }

    /// Sends a signal to its whole process group.
    pub fn signal(&self, signal: ProcessSignal) -> Result<(), ProcessError> {
        self.control.signal_group(signal)
    }

    /// Its exit status, if it has exited.
    pub fn try_exit(&self) -> Option<ExitStatus> {
        *self.exit.borrow()
    }

    /// Waits until it has exited and was reaped.
    pub async fn wait(&self) -> ExitStatus {
        let mut exit = self.exit.clone();
        match exit.wait_for(Option::is_some).await {
            Ok(status) => status.unwrap_or(ExitStatus {
                code: None,
                signal: None,
            }),
            // The reaper is gone without a status: the runtime is shutting down.
            Err(_) => ExitStatus {
                code: None,
                signal: None,
            },
        }
    }
}

/// What can go wrong with a process.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProcessError {
    /// It could not be started.
    #[error("could not start {program}: {source}")]
    Spawn {
        /// The program.
        program: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// It has exited.
    #[error("process {pid} has exited")]
    Exited {
        /// Its pid.
        pid: u32,
    },
    /// It is not reading its stdin and the buffer is full.
    #[error("process {pid} is not reading its input: the stdin buffer is full")]
    StdinFull {
        /// Its pid.
        pid: u32,
    },
    /// A signal could not be sent.
    #[error("could not signal process group {pid}: {detail}")]
    Signal {
        /// The group.
        pid: u32,
        /// Why.
        detail: String,
    },
}
