//! [`TokioProcessRunner`]: real child processes, each in its own process group.

use crate::ports::{
    ExitStatus, OutputLine, OutputStream, ProcessControl, ProcessError, ProcessHandle,
    ProcessRunner, ProcessSignal, ProcessSpec, SpawnedProcess,
};
use async_trait::async_trait;
use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::process::{ChildStdin, Command};
use tokio::sync::{mpsc, watch};

/// Spawns processes with tokio: own process group, piped stdin/stdout/stderr, always reaped,
/// as [`ProcessSpec::user`] when one is given (which takes a runner running as root).
///
/// Each process gets three small tasks (stdin writer, two output readers) and a reaper. They
/// end by themselves when the process ends; ending the process is the way to stop them. When
/// the process exits, its group is SIGKILLed so no child of it outlives it.
///
/// Children inherit no file descriptor of the worker but their stdin, stdout and stderr, and
/// (on Linux, unless [`TokioProcessRunner::die_with_worker`] turned it off) are SIGKILLed by
/// the kernel when the worker dies.
#[derive(Debug, Clone)]
pub struct TokioProcessRunner {
    stdin_buffer: usize,
    output_buffer: usize,
    die_with_worker: bool,
}

impl Default for TokioProcessRunner {
    fn default() -> Self {
        Self {
            stdin_buffer: 256,
            output_buffer: 4096,
            die_with_worker: true,
        }
    }
}

impl TokioProcessRunner {
    /// A runner with default buffers (256 stdin lines, 4096 output lines) whose children die
    /// with the worker.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether children get SIGKILL when the worker process dies (Linux parent-death signal;
    /// default on). Off, servers outlive a crashed worker until it restarts and ends them.
    ///
    /// The kernel sends the signal when the *thread* that spawned the child ends; spawning
    /// from tokio's runtime threads, which live as long as the runtime, is what makes this
    /// track the worker process.
    pub fn die_with_worker(mut self, on: bool) -> Self {
        self.die_with_worker = on;
        self
    }
}

#[async_trait]
impl ProcessRunner for TokioProcessRunner {
    async fn spawn(&self, spec: &ProcessSpec) -> Result<SpawnedProcess, ProcessError> {
        let mut command = Command::new(&spec.program);
        command
            .args(&spec.args)
            .env_clear()
            .envs(&spec.env)
            .current_dir(&spec.cwd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(self.die_with_worker);
        if let Some(user) = &spec.user {
            // The standard library drops every supplementary group before it sets the ids, and
            // runs the hook below after, so the parent-death signal survives the change.
            command.uid(user.uid).gid(user.gid);
        }
        super::os::isolate_child(&mut command, self.die_with_worker);
        let mut child = command.spawn().map_err(|source| ProcessError::Spawn {
            program: spec.program.clone(),
            source,
        })?;
        let pid = child.id().ok_or_else(|| ProcessError::Spawn {
            program: spec.program.clone(),
            source: std::io::Error::other("the process exited before its pid was read"),
        })?;
        let control: Arc<dyn ProcessControl> = Arc::new(GroupControl { pgid: pid });

        let (exit_tx, exit_rx) = watch::channel(None);
        let (stdin_tx, stdin_rx) = mpsc::channel(self.stdin_buffer);
        let (output_tx, output_rx) = mpsc::channel(self.output_buffer);

        let stdin = child.stdin.take().expect("stdin is piped");
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let handle = ProcessHandle::new(pid, stdin_tx, exit_rx.clone(), control.clone());
        tokio::spawn(write_stdin(stdin, stdin_rx, handle.stdin_closed(), exit_rx));
        tokio::spawn(read_lines(stdout, OutputStream::Stdout, output_tx.clone()));
        tokio::spawn(read_lines(stderr, OutputStream::Stderr, output_tx));
        let reaper_control = Arc::clone(&control);
        tokio::spawn(async move {
            let status = match child.wait().await {
                Ok(status) => ExitStatus {
                    code: status.code(),
                    signal: status.signal(),
                },
                Err(e) => {
                    tracing::error!(pid, error = %e, "could not wait for a child process");
                    ExitStatus {
                        code: None,
                        signal: None,
                    }
                }
            };
            // Leftover children of the server die with it.
            let _ = reaper_control.signal_group(ProcessSignal::Kill);
            let _ = exit_tx.send(Some(status));
        });

        Ok(SpawnedProcess {
            handle,
            output: output_rx,
        })
    }
}

async fn write_stdin(
    mut stdin: ChildStdin,
    mut lines: mpsc::Receiver<String>,
    mut closed: watch::Receiver<bool>,
    mut exit: watch::Receiver<Option<ExitStatus>>,
) {
    loop {
        tokio::select! {
            biased;
            line = lines.recv() => {
                let Some(line) = line else { return };
                if write_one(&mut stdin, line).await.is_err() {
                    return;
                }
            }
            _ = async { closed.wait_for(|closed| *closed).await.is_ok() } => {
                // What was queued before the close is still written; then the pipe closes.
                while let Ok(line) = lines.try_recv() {
                    if write_one(&mut stdin, line).await.is_err() {
                        return;
                    }
                }
                return;
            }
            _ = async { exit.wait_for(Option::is_some).await.is_ok() } => return,
        }
    }
}

async fn write_one(stdin: &mut ChildStdin, mut line: String) -> std::io::Result<()> {
    line.push('\n');
    stdin.write_all(line.as_bytes()).await?;
    stdin.flush().await
}

pub use manman_shim::lines::MAX_LINE_BYTES;
use manman_shim::lines::{line_text, take_line};

async fn read_lines(
    pipe: impl AsyncRead + Unpin,
    stream: OutputStream,
    out: mpsc::Sender<OutputLine>,
) {
    // Small: a thousand servers have two of these each; a burst is read in several gulps.
    let mut reader = BufReader::with_capacity(4 * 1024, pipe);
    let mut line = Vec::with_capacity(256);
    loop {
        let (done, used) = match reader.fill_buf().await {
            Err(_) => return,
            // End of output: a last partial line is kept.
            Ok([]) => {
                if !line.is_empty() {
                    let _ = out.send(output_line(stream, &line)).await;
                }
                return;
            }
            Ok(buf) => take_line(&mut line, buf),
        };
        reader.consume(used);
        if done {
            if out.send(output_line(stream, &line)).await.is_err() {
                return;
            }
            line.clear();
        }
    }
}

fn output_line(stream: OutputStream, bytes: &[u8]) -> OutputLine {
    OutputLine::new(stream, line_text(bytes))
}

/// Signals a process group by its id.
#[derive(Debug)]
pub(super) struct GroupControl {
    pub(super) pgid: u32,
}

impl ProcessControl for GroupControl {
    fn signal_group(&self, signal: ProcessSignal) -> Result<(), ProcessError> {
        let signal = match signal {
            ProcessSignal::Term => Signal::SIGTERM,
            ProcessSignal::Int => Signal::SIGINT,
            ProcessSignal::Kill => Signal::SIGKILL,
        };
        let pgid = i32::try_from(self.pgid).map_err(|_| ProcessError::Signal {
            pid: self.pgid,
            detail: "pid out of range".to_owned(),
        })?;
        match killpg(Pid::from_raw(pgid), signal) {
            Ok(()) | Err(Errno::ESRCH) => Ok(()),
            Err(e) => Err(ProcessError::Signal {
                pid: self.pgid,
                detail: e.to_string(),
            }),
        }
    }
}
