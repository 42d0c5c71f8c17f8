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

/// Spawns processes with tokio: own process group, piped stdin/stdout/stderr, always reaped.
///
/// Each process gets three small tasks (stdin writer, two output readers) and a reaper. They
/// end by themselves when the process ends; ending the process is the way to stop them. When
/// the process exits, its group is SIGKILLed so no child of it outlives it.
#[derive(Debug, Clone)]
pub struct TokioProcessRunner {
    stdin_buffer: usize,
    output_buffer: usize,
}

impl Default for TokioProcessRunner {
    fn default() -> Self {
        Self {
            stdin_buffer: 256,
            output_buffer: 4096,
        }
    }
}

impl TokioProcessRunner {
    /// A runner with default buffers (256 stdin lines, 4096 output lines).
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl ProcessRunner for TokioProcessRunner {
    async fn spawn(&self, spec: &ProcessSpec) -> Result<SpawnedProcess, ProcessError> {
        let mut command = Command::new(&spec.program);
        command
            .args(&spec.args)
            .envs(&spec.env)
            .current_dir(&spec.cwd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
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
        tokio::spawn(write_stdin(stdin, stdin_rx, exit_rx.clone()));
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
            handle: ProcessHandle::new(pid, stdin_tx, exit_rx, control),
            output: output_rx,
        })
    }
}

async fn write_stdin(
    mut stdin: ChildStdin,
    mut lines: mpsc::Receiver<String>,
    mut exit: watch::Receiver<Option<ExitStatus>>,
) {
    loop {
        tokio::select! {
            line = lines.recv() => {
                let Some(mut line) = line else { return };
                line.push('\n');
                if stdin.write_all(line.as_bytes()).await.is_err() || stdin.flush().await.is_err() {
                    return;
                }
            }
            _ = async { exit.wait_for(Option::is_some).await.is_ok() } => return,
        }
    }
}

async fn read_lines(
    pipe: impl AsyncRead + Unpin,
    stream: OutputStream,
    out: mpsc::Sender<OutputLine>,
) {
    let mut reader = BufReader::new(pipe);
    let mut buf = Vec::with_capacity(256);
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    buf.pop();
                }
                let text = String::from_utf8_lossy(&buf).into_owned();
                if out.send(OutputLine { stream, text }).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Signals a process group by its id.
#[derive(Debug)]
struct GroupControl {
    pgid: u32,
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
