//! [`ShimProcessRunner`]: game servers that outlive the worker, each held by a `manman-shim`
//! process that the worker talks to over a Unix socket in its state directory.

use super::tokio_runner::GroupControl;
use crate::id::InstanceId;
use crate::ports::{
    ExitStatus, HeldServer, OutputLine, OutputStream, ProcessControl, ProcessError, ProcessHandle,
    ProcessRunner, ProcessSignal, ProcessSpec, Reattached, ServerLaunch, SpawnedProcess,
};
use crate::process::TokioProcessRunner;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use manman_shim::protocol::{self, Hello, Stream, ToShim, ToWorker};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, watch};

/// How long a shim may take to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest socket path the kernel takes (`sun_path`, less its terminating zero).
const MAX_SOCKET_PATH: usize = 107;

/// Starts each game server through a shim (`manman-shim`) that holds its console and exit
/// status and outlives the worker, so a restarted worker takes the server up again
/// ([`ProcessRunner::reattach`]) instead of ending it. Anything else ([`ProcessRunner::spawn`]:
/// SteamCMD) is started directly, as [`TokioProcessRunner`] does.
///
/// The shims' sockets and exit files live in one directory, which must be the worker's alone
/// (its private state directory): a shim takes connections only from its own user.
#[derive(Debug, Clone)]
pub struct ShimProcessRunner {
    shim: PathBuf,
    dir: PathBuf,
    unattended_grace: Duration,
    direct: TokioProcessRunner,
    stdin_buffer: usize,
    output_buffer: usize,
}

impl ShimProcessRunner {
    /// Servers started through the shim executable `shim`, their sockets in `dir`; a server
    /// with no worker attached for 5 minutes is stopped by its stop policy.
    pub fn new(shim: impl Into<PathBuf>, dir: impl Into<PathBuf>) -> Self {
        Self {
            shim: shim.into(),
            dir: dir.into(),
            unattended_grace: Duration::from_secs(300),
            direct: TokioProcessRunner::new(),
            stdin_buffer: 256,
            output_buffer: 4096,
        }
    }

    /// How long a server may run with no worker attached before its shim stops it by its stop
    /// policy (whole seconds; at least one).
    pub fn unattended_grace(mut self, grace: Duration) -> Self {
        self.unattended_grace = grace.max(Duration::from_secs(1));
        self
    }

    /// The files of start `spawn` of `instance`: named by both, so that a shim of an earlier
    /// start (still waiting for a worker) never takes a later start's for its own.
    fn file(&self, instance: InstanceId, spawn: u64, extension: &str) -> PathBuf {
        self.dir.join(format!(
            "instance-{}-{spawn:016x}.{extension}",
            instance.get()
        ))
    }

    fn socket(&self, instance: InstanceId, spawn: u64) -> PathBuf {
        self.file(instance, spawn, "sock")
    }

    fn exit_file(&self, instance: InstanceId, spawn: u64) -> PathBuf {
        self.file(instance, spawn, "exit")
    }

    fn shim_error(&self, detail: impl Into<String>) -> ProcessError {
        ProcessError::Spawn {
            program: self.shim.clone(),
            source: std::io::Error::other(detail.into()),
        }
    }

    /// The shim's command line for `spec` as `launch`.
    fn command(&self, spec: &ProcessSpec, launch: &ServerLaunch) -> tokio::process::Command {
        let stop = &launch.stop;
        let mut command = tokio::process::Command::new(&self.shim);
        command
            .arg("--socket")
            .arg(self.socket(launch.instance_id, launch.spawn))
            .arg("--exit-file")
            .arg(self.exit_file(launch.instance_id, launch.spawn))
            .args(["--first-seq", &launch.first_seq.to_string()])
            .args([
                "--unattended-grace-s",
                &self.unattended_grace.as_secs().to_string(),
            ])
            .arg("--cwd")
            .arg(&spec.cwd);
        if let Some(user) = &spec.user {
            command
                .args(["--uid", &user.uid.to_string()])
                .args(["--gid", &user.gid.to_string()]);
        }
        if let Some(line) = &stop.stdin_line {
            command.args(["--stop-line", line]);
        }
        let signal = match stop.signal {
            crate::config::StopSignal::Term => "term",
            crate::config::StopSignal::Int => "int",
        };
        command
            .args(["--stop-signal", signal])
            .args(["--stop-timeout-s", &stop.timeout_s.to_string()])
            .args(["--stop-grace-s", &stop.signal_grace_s.to_string()])
            .arg("--")
            .arg(&spec.program)
            .args(&spec.args)
            // Nothing of the worker's environment, nor of the server's: the shim runs as the
            // worker's user, and the server's variables (`LD_LIBRARY_PATH` naming the game's
            // directory, which its user writes) must never reach the shim's dynamic loader.
            // The server's environment is sent over the connection.
            .env_clear()
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(false);
        command
    }

    /// A connection to the shim that said `hello` on it.
    fn connection(
        &self,
        lines: Lines<BufReader<OwnedReadHalf>>,
        writer: OwnedWriteHalf,
        hello: &Hello,
    ) -> ShimConnection {
        ShimConnection {
            lines,
            writer,
            pid: hello.pid,
            oldest: hello.oldest,
            stdin_buffer: self.stdin_buffer,
            output_buffer: self.output_buffer,
        }
    }

    /// What the exit file of a shim that ended unheard says: how, and whether it stopped the
    /// server itself. (Removed by [`ProcessRunner::forget`], once reported.)
    fn read_exit_file(&self, instance: InstanceId, spawn: u64) -> Option<(ExitStatus, bool)> {
        let text = std::fs::read_to_string(self.exit_file(instance, spawn)).ok()?;
        let (fields, why) = text.trim_end().rsplit_once(' ')?;
        let ToWorker::Exit(exit) = format!("X {fields}").parse().ok()? else {
            return None;
        };
        Some((
            ExitStatus {
                code: exit.code,
                signal: exit.signal,
            },
            why == "stopped",
        ))
    }
}

/// The hello a shim says first on a connection.
async fn hello(lines: &mut Lines<BufReader<OwnedReadHalf>>) -> Result<Hello, String> {
    let first = tokio::time::timeout(HELLO_TIMEOUT, lines.next_line()).await;
    match first {
        Err(_) => Err(format!(
            "it said nothing within {} s",
            HELLO_TIMEOUT.as_secs()
        )),
        Ok(Err(e)) => Err(format!("reading from it failed: {e}")),
        Ok(Ok(None)) => Err("it ended without a word".to_owned()),
        Ok(Ok(Some(line))) => match line.parse::<ToWorker>() {
            Ok(ToWorker::Hello(hello)) if hello.version == protocol::VERSION => Ok(hello),
            Ok(ToWorker::Hello(hello)) => Err(format!(
                "it speaks protocol version {}, this worker {}",
                hello.version,
                protocol::VERSION
            )),
            Ok(ToWorker::SpawnFailed(why)) => Err(why),
            _ => Err(format!("it said {line:?} instead of hello")),
        },
    }
}

/// Why a shim did not take a connection.
#[derive(Debug)]
enum Answer {
    /// Another worker is attached.
    Refused(String),
    /// The connection broke or the shim said something else.
    Broken(String),
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Refused(why) => write!(f, "it refused this worker: {why}"),
            Self::Broken(why) => f.write_str(why),
        }
    }
}

/// A connection to a shim, attached (it answered `K`) or about to be.
struct ShimConnection {
    lines: Lines<BufReader<OwnedReadHalf>>,
    writer: OwnedWriteHalf,
    pid: u32,
    oldest: u64,
    stdin_buffer: usize,
    output_buffer: usize,
}

impl std::fmt::Debug for ShimConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShimConnection")
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}

impl ShimConnection {
    /// Asks to be attached (`A`, or `R` on a fresh connection): `Ok` once the shim answered
    /// `K`.
    async fn ask(&mut self, request: ToShim) -> Result<(), Answer> {
        let broken = |e: std::io::Error| Answer::Broken(e.to_string());
        self.writer
            .write_all(request.to_string().as_bytes())
            .await
            .map_err(broken)?;
        match tokio::time::timeout(HELLO_TIMEOUT, self.lines.next_line()).await {
            Err(_) => Err(Answer::Broken(format!(
                "it did not answer within {} s",
                HELLO_TIMEOUT.as_secs()
            ))),
            Ok(Err(e)) => Err(broken(e)),
            Ok(Ok(None)) => Err(Answer::Broken("it ended without an answer".to_owned())),
            Ok(Ok(Some(line))) => match line.parse::<ToWorker>() {
                Ok(ToWorker::Kept) => Ok(()),
                Ok(ToWorker::Refused(why)) => Err(Answer::Refused(why)),
                Ok(ToWorker::SpawnFailed(why)) => Err(Answer::Broken(why)),
                _ => Err(Answer::Broken(format!("it answered {line:?}"))),
            },
        }
    }

    /// Supervises the attached, streaming shim: its console lines, its exit, stdin.
    fn supervise(self) -> SpawnedProcess {
        let Self {
            mut lines,
            writer,
            pid,
            oldest: _,
            stdin_buffer,
            output_buffer,
        } = self;
        let control: Arc<dyn ProcessControl> = Arc::new(GroupControl { pgid: pid });
        let (exit_tx, exit_rx) = watch::channel(None);
        let (stdin_tx, stdin_rx) = mpsc::channel(stdin_buffer);
        let (output_tx, output_rx) = mpsc::channel(output_buffer);
        let handle =
            ProcessHandle::new(pid, stdin_tx, exit_rx.clone(), control).numbering_console();
        tokio::spawn(write_to_shim(
            writer,
            stdin_rx,
            handle.stdin_closed(),
            (exit_rx, handle.released()),
        ));
        let reader = handle.clone();
        tokio::spawn(async move {
            let ended = read_from_shim(&mut lines, &output_tx).await;
            match ended {
                ShimEnded::Exited(status) => {
                    let _ = exit_tx.send(Some(status));
                }
                ShimEnded::LetGo => {}
                ShimEnded::Lost(why) => {
                    reader.mark_lost(format!(
                        "its shim {why}; the server (process group {pid}) was ended with it"
                    ));
                    // The kernel killed the server with its shim; what it started goes too.
                    let _ = reader.signal(ProcessSignal::Kill);
                    let _ = exit_tx.send(Some(ExitStatus {
                        code: None,
                        signal: None,
                    }));
                }
            }
        });
        SpawnedProcess {
            handle,
            output: output_rx,
        }
    }
}

#[async_trait]
impl HeldServer for ShimConnection {
    fn pid(&self) -> u32 {
        self.pid
    }

    async fn resume(mut self: Box<Self>, from: u64) -> Result<SpawnedProcess, ProcessError> {
        if self.oldest > from {
            tracing::warn!(
                pid = self.pid,
                from,
                oldest = self.oldest,
                "console lines were lost while no worker was attached: the shim holds only the most recent"
            );
        }
        self.writer
            .write_all(ToShim::Replay(from).to_string().as_bytes())
            .await
            .map_err(|source| ProcessError::Spawn {
                program: PathBuf::from("manman-shim"),
                source,
            })?;
        Ok(self.supervise())
    }
}

#[async_trait]
impl ProcessRunner for ShimProcessRunner {
    async fn spawn(&self, spec: &ProcessSpec) -> Result<SpawnedProcess, ProcessError> {
        self.direct.spawn(spec).await
    }

    async fn spawn_server(
        &self,
        spec: &ProcessSpec,
        launch: &ServerLaunch,
    ) -> Result<SpawnedProcess, ProcessError> {
        let socket = self.socket(launch.instance_id, launch.spawn);
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(self.shim_error(format!(
                "the shim's socket path {} is longer than {MAX_SOCKET_PATH} bytes: use a \
                 shorter state directory (MANMAN_WORKER_STATE_DIRECTORY)",
                socket.display()
            )));
        }
        let io = |source| ProcessError::Spawn {
            program: self.shim.clone(),
            source,
        };
        std::fs::create_dir_all(&self.dir).map_err(io)?;
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().map_err(io)?;
        let mut command = self.command(spec, launch);
        command.stdin(Stdio::from(OwnedFd::from(theirs)));
        let mut shim = command.spawn().map_err(io)?;
        // Its end of the connection is the shim's alone: a shim that dies is an end of file.
        drop(command);
        let greeted = async {
            ours.set_nonblocking(true)?;
            let (read, mut writer) = tokio::net::UnixStream::from_std(ours)?.into_split();
            let mut environment = String::new();
            for (name, value) in &spec.env {
                environment.push_str(&ToShim::Env(format!("{name}={value}")).to_string());
            }
            environment.push_str(&ToShim::Go.to_string());
            writer.write_all(environment.as_bytes()).await?;
            let mut lines = BufReader::new(read).lines();
            let hello = hello(&mut lines).await.map_err(std::io::Error::other)?;
            let mut connection = self.connection(lines, writer, &hello);
            connection
                .ask(ToShim::Replay(launch.first_seq))
                .await
                .map_err(|answer| std::io::Error::other(answer.to_string()))?;
            Ok::<_, std::io::Error>(connection)
        };
        let connection = match tokio::time::timeout(HELLO_TIMEOUT, greeted).await {
            Ok(Ok(connection)) => connection,
            outcome => {
                let why = match outcome {
                    Ok(Err(e)) => e.to_string(),
                    _ => format!("it did not answer within {} s", HELLO_TIMEOUT.as_secs()),
                };
                // A shim that did not start its server as it should goes now, not after the
                // grace time: the next attempt must not meet its server.
                let _ = shim.start_kill();
                let _ = shim.wait().await;
                return Err(ProcessError::Spawn {
                    program: spec.program.clone(),
                    source: std::io::Error::other(format!(
                        "through {}: {why}",
                        self.shim.display()
                    )),
                });
            }
        };
        // The shim is this process's child until the worker exits: reaped here.
        tokio::spawn(async move {
            let _ = shim.wait().await;
        });
        Ok(connection.supervise())
    }

    fn keeps_servers(&self) -> bool {
        true
    }

    async fn reattach(&self, instance: InstanceId, spawn: u64) -> Reattached {
        let socket = self.socket(instance, spawn);
        let connected = tokio::net::UnixStream::connect(&socket).await;
        let stream = match connected {
            Ok(stream) => stream,
            Err(e) => {
                return match self.read_exit_file(instance, spawn) {
                    Some((exit, stopped_unattended)) => Reattached::Ended {
                        exit,
                        stopped_unattended,
                    },
                    None => {
                        Reattached::Gone(format!("no shim answers on {}: {e}", socket.display()))
                    }
                };
            }
        };
        let (read, writer) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        let hello = match hello(&mut lines).await {
            Ok(hello) => hello,
            Err(why) => return Reattached::Gone(format!("its shim: {why}")),
        };
        let mut connection = self.connection(lines, writer, &hello);
        match connection.ask(ToShim::Attend).await {
            Ok(()) => Reattached::Running(Box::new(connection)),
            Err(Answer::Refused(why)) => Reattached::Busy(why),
            Err(Answer::Broken(why)) => Reattached::Gone(format!("its shim: {why}")),
        }
    }

    async fn forget(&self, instance: InstanceId, spawn: u64) {
        let _ = std::fs::remove_file(self.exit_file(instance, spawn));
        let _ = std::fs::remove_file(self.socket(instance, spawn));
    }
}

/// Writes stdin lines to the shim; closes the server's stdin when asked; says `done` once the
/// exit was heard and the supervisor recorded it ([`ProcessHandle::release`]): the shim may
/// then end.
async fn write_to_shim(
    mut writer: OwnedWriteHalf,
    mut lines: mpsc::Receiver<String>,
    mut closed: watch::Receiver<bool>,
    (mut exit, mut released): (watch::Receiver<Option<ExitStatus>>, watch::Receiver<bool>),
) {
    let mut open = true;
    let mut exited = false;
    loop {
        let message = tokio::select! {
            biased;
            line = lines.recv(), if open && !exited => match line {
                Some(line) => ToShim::Stdin(line),
                // Every handle is gone while the server runs: it was left running; let go of
                // the shim.
                None => return,
            },
            _ = async { closed.wait_for(|closed| *closed).await.is_ok() }, if open && !exited => {
                open = false;
                let mut queued = String::new();
                while let Ok(line) = lines.try_recv() {
                    queued.push_str(&ToShim::Stdin(line).to_string());
                }
                if writer.write_all(queued.as_bytes()).await.is_err() {
                    return;
                }
                ToShim::CloseStdin
            }
            heard = async { exit.wait_for(Option::is_some).await.is_ok() }, if !exited => {
                if !heard {
                    return;
                }
                // An ended server takes no more input: writes fail from now on.
                exited = true;
                lines.close();
                continue;
            }
            recorded = async { released.wait_for(|released| *released).await.is_ok() }, if exited => {
                if recorded {
                    let _ = writer.write_all(ToShim::Done.to_string().as_bytes()).await;
                }
                return;
            }
        };
        if writer
            .write_all(message.to_string().as_bytes())
            .await
            .is_err()
        {
            return;
        }
    }
}

/// How a shim connection ended.
enum ShimEnded {
    /// The server exited; every console line came before.
    Exited(ExitStatus),
    /// The supervisor let go of the server (left running at the worker's shutdown).
    LetGo,
    /// The shim is gone or broke the protocol: why.
    Lost(String),
}

/// Passes the shim's console lines on until it reports the exit.
async fn read_from_shim(
    lines: &mut Lines<BufReader<OwnedReadHalf>>,
    output: &mpsc::Sender<OutputLine>,
) -> ShimEnded {
    loop {
        let next = tokio::select! {
            () = output.closed() => return ShimEnded::LetGo,
            next = lines.next_line() => next,
        };
        let line = match next {
            Ok(Some(line)) => line,
            Ok(None) => {
                return ShimEnded::Lost(
                    "ended without reporting the server's exit (was it killed?)".to_owned(),
                );
            }
            Err(e) => return ShimEnded::Lost(format!("could not be read: {e}")),
        };
        match line.parse::<ToWorker>() {
            Ok(ToWorker::Line(line)) => {
                let stream = match line.stream {
                    Stream::Stdout => OutputStream::Stdout,
                    Stream::Stderr => OutputStream::Stderr,
                    Stream::Stdin => OutputStream::Stdin,
                };
                let at = DateTime::<Utc>::from_timestamp_millis(line.at_ms).unwrap_or_default();
                let line = OutputLine {
                    stream,
                    text: line.text,
                    numbered: Some((line.seq, at)),
                };
                if output.send(line).await.is_err() {
                    return ShimEnded::LetGo;
                }
            }
            Ok(ToWorker::Exit(exit)) => {
                return ShimEnded::Exited(ExitStatus {
                    code: exit.code,
                    signal: exit.signal,
                });
            }
            Ok(other) => return ShimEnded::Lost(format!("said {other:?} out of turn")),
            Err(e) => return ShimEnded::Lost(e.to_string()),
        }
    }
}
