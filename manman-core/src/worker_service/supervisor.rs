//! The per-instance supervisor: prepare (config, install) → spawn → `running` when ready →
//! stop or exit → classify and report. Every status change goes through the transition table.

use crate::config::{GameServerConfig, StopPolicy};
use crate::console::{ConsoleLine, ConsoleStream};
use crate::event::StatusReport;
use crate::id::{ConfigId, InstanceId};
use crate::ports::{
    ExitStatus, GameInstaller, HostApi, InstallRequest, OutputLine, OutputStream, ProcessHandle,
    ProcessRunner, ProcessSpec,
};
use crate::process::{self, Stopped};
use crate::status::{Cause, Entity, Status, can_transition};
use crate::worker_service::launch::process_spec;
use crate::worker_service::reporter::Reporter;
use futures::future::BoxFuture;
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Lines sent before the server is ready that are kept for it.
const STDIN_QUEUE: usize = 256;
/// How long output is still read after the process exited.
const OUTPUT_DRAIN: Duration = Duration::from_secs(1);

/// What the worker asks of a supervisor. Each gets an answer for the command result.
#[derive(Debug)]
pub(crate) enum Request {
    /// Write a console line (queued until ready).
    Stdin {
        line: String,
        reply: oneshot::Sender<Result<String, String>>,
    },
    /// Stop gracefully.
    Stop {
        reply: oneshot::Sender<Result<String, String>>,
    },
    /// SIGKILL now.
    Kill {
        reply: oneshot::Sender<Result<String, String>>,
    },
}

/// What the worker sees of an instance (for the heartbeat's inventory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InstanceState {
    pub(crate) config_id: ConfigId,
    pub(crate) status: Status,
    pub(crate) pid: Option<u32>,
    pub(crate) restart_count: u32,
}

/// Everything a supervisor needs from its worker.
#[derive(Debug, Clone)]
pub(crate) struct SupervisorContext {
    pub(crate) host: Arc<dyn HostApi>,
    pub(crate) installer: Arc<dyn GameInstaller>,
    pub(crate) runner: Arc<dyn ProcessRunner>,
    pub(crate) reporter: Reporter,
    pub(crate) install_root: PathBuf,
}

/// One instance's supervisor. Runs until the instance is `complete` or `crashed`.
pub(crate) struct Supervisor {
    instance_id: InstanceId,
    config_id: ConfigId,
    context: SupervisorContext,
    requests: mpsc::Receiver<Request>,
    state: Arc<Mutex<InstanceState>>,
    console_seq: u64,
    pending_stdin: VecDeque<String>,
}

/// Why the supervisor is ending the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EndRequest {
    Stop,
    Kill,
}

impl EndRequest {
    fn cause(self) -> Cause {
        match self {
            Self::Stop => Cause::User,
            Self::Kill => Cause::Killed,
        }
    }
}

impl Supervisor {
    pub(crate) fn new(
        instance_id: InstanceId,
        config_id: ConfigId,
        context: SupervisorContext,
        requests: mpsc::Receiver<Request>,
        state: Arc<Mutex<InstanceState>>,
    ) -> Self {
        Self {
            instance_id,
            config_id,
            context,
            requests,
            state,
            console_seq: 0,
            pending_stdin: VecDeque::new(),
        }
    }

    fn status(&self) -> Status {
        self.state.lock().expect("instance state lock").status
    }

    /// Moves to `to` if the transition table allows it, and reports it.
    async fn transition(
        &self,
        to: Status,
        cause: Cause,
        detail: Option<String>,
        exit: Option<ExitStatus>,
    ) {
        let from = self.status();
        if !can_transition(&Entity::Instance(self.instance_id), from, to) {
            tracing::error!(instance_id = self.instance_id.get(), %from, %to, "supervisor refused a forbidden transition");
            return;
        }
        let restart_count = {
            let mut state = self.state.lock().expect("instance state lock");
            state.status = to;
            if to.is_terminal() {
                state.pid = None;
            }
            state.restart_count
        };
        let mut report = StatusReport::new(
            Entity::Instance(self.instance_id),
            to,
            cause,
            self.context.reporter.now(),
        );
        report.detail = detail;
        report.exit_code = exit.and_then(|e| e.code);
        report.exit_signal = exit.and_then(|e| e.signal);
        report.restart_count = restart_count;
        tracing::info!(instance_id = self.instance_id.get(), %from, %to, ?cause, "instance status");
        self.context.reporter.status(report).await;
    }

    async fn console(&mut self, stream: ConsoleStream, text: String) {
        self.console_seq += 1;
        let line = ConsoleLine {
            instance_id: self.instance_id,
            seq: self.console_seq,
            stream,
            text,
            at: self.context.reporter.now(),
        };
        self.context.reporter.console(&line).await;
    }

    /// Runs the instance to its end.
    pub(crate) async fn run(mut self) {
        self.transition(Status::Initializing, Cause::User, None, None)
            .await;
        let prepare = prepare(self.context.clone(), self.instance_id, self.config_id);
        tokio::pin!(prepare);
        let prepared = loop {
            tokio::select! {
                prepared = &mut prepare => break prepared,
                request = self.requests.recv() => match request {
                    Some(Request::Stdin { line, reply }) => {
                        let answer = self.queue_stdin(line);
                        let _ = reply.send(answer);
                    }
                    Some(Request::Stop { reply } | Request::Kill { reply }) => {
                        let _ = reply.send(Ok("stopped before it started".to_owned()));
                        self.transition(Status::Complete, Cause::User, Some("stopped while initializing".to_owned()), None).await;
                        return;
                    }
                    None => {
                        self.transition(Status::Complete, Cause::WorkerShutdown, None, None).await;
                        return;
                    }
                },
            }
        };
        let (config, spec) = match prepared {
            Ok(prepared) => prepared,
            Err((cause, detail)) => {
                self.transition(Status::Crashed, cause, Some(detail), None)
                    .await;
                return;
            }
        };
        let spawned = match self.context.runner.spawn(&spec).await {
            Ok(spawned) => spawned,
            Err(e) => {
                self.transition(
                    Status::Crashed,
                    Cause::SpawnFailed,
                    Some(e.to_string()),
                    None,
                )
                .await;
                return;
            }
        };
        self.state.lock().expect("instance state lock").pid = Some(spawned.handle.pid());
        tracing::info!(
            instance_id = self.instance_id.get(),
            pid = spawned.handle.pid(),
            "spawned"
        );
        self.supervise(&config, spawned.handle, spawned.output)
            .await;
    }

    fn queue_stdin(&mut self, line: String) -> Result<String, String> {
        if self.pending_stdin.len() >= STDIN_QUEUE {
            return Err(format!(
                "{} is not ready and already has {STDIN_QUEUE} lines waiting",
                self.instance_id
            ));
        }
        self.pending_stdin.push_back(line);
        Ok("queued until the server is ready".to_owned())
    }

    async fn write_stdin(
        &mut self,
        handle: &ProcessHandle,
        line: String,
    ) -> Result<String, String> {
        handle.write_line(&line).map_err(|e| e.to_string())?;
        self.console(ConsoleStream::Stdin, line).await;
        Ok("written".to_owned())
    }

    async fn became_ready(&mut self, handle: &ProcessHandle) {
        self.transition(Status::Running, Cause::Ready, None, None)
            .await;
        while let Some(line) = self.pending_stdin.pop_front() {
            if let Err(e) = self.write_stdin(handle, line).await {
                tracing::warn!(instance_id = self.instance_id.get(), error = %e, "a queued console line was not delivered");
            }
        }
    }

    async fn supervise(
        &mut self,
        config: &GameServerConfig,
        handle: ProcessHandle,
        mut output: mpsc::Receiver<OutputLine>,
    ) {
        let ready_pattern = config
            .spec
            .ready_pattern
            .as_deref()
            .and_then(|p| regex::Regex::new(p).ok());
        let mut ready = ready_pattern.is_none();
        if ready {
            self.became_ready(&handle).await;
        }
        let exit = handle.wait();
        tokio::pin!(exit);
        // What was asked, and the stop sequence while it runs.
        let mut requested: Option<EndRequest> = None;
        let mut ending: Option<BoxFuture<'static, Stopped>> = None;
        let mut output_open = true;
        let mut requests_open = true;
        let status = loop {
            tokio::select! {
                status = &mut exit => break status,
                line = output.recv(), if output_open => match line {
                    Some(line) => {
                        if !ready && ready_pattern.as_ref().is_some_and(|p| p.is_match(&line.text)) {
                            ready = true;
                            self.output(line).await;
                            self.became_ready(&handle).await;
                        } else {
                            self.output(line).await;
                        }
                    }
                    None => output_open = false,
                },
                request = self.requests.recv(), if requests_open => match request {
                    Some(Request::Stdin { line, reply }) => {
                        let answer = if ready { self.write_stdin(&handle, line).await } else { self.queue_stdin(line) };
                        let _ = reply.send(answer);
                    }
                    Some(Request::Stop { reply }) => {
                        if requested.is_none() {
                            requested = Some(EndRequest::Stop);
                            ending = Some(Box::pin(stop_future(handle.clone(), config.spec.stop.clone())));
                        }
                        let _ = reply.send(Ok("stopping".to_owned()));
                    }
                    Some(Request::Kill { reply }) => {
                        // Kill wins over a stop in progress.
                        if requested != Some(EndRequest::Kill) {
                            requested = Some(EndRequest::Kill);
                            ending = Some(Box::pin(kill_future(handle.clone())));
                        }
                        let _ = reply.send(Ok("killing".to_owned()));
                    }
                    None => {
                        // The worker is going away: stop gracefully.
                        requests_open = false;
                        if requested.is_none() {
                            requested = Some(EndRequest::Stop);
                            ending = Some(Box::pin(stop_future(handle.clone(), config.spec.stop.clone())));
                        }
                    }
                },
                _ = async { ending.as_mut().expect("guarded by is_some").await }, if ending.is_some() => {
                    // The stop sequence is done; the exit branch reports it.
                    ending = None;
                }
            }
        };
        self.drain(&mut output).await;
        let detail = format!("exited with {status}");
        match requested {
            Some(request) => {
                let cause = if requests_open {
                    request.cause()
                } else {
                    Cause::WorkerShutdown
                };
                self.transition(Status::Complete, cause, Some(detail), Some(status))
                    .await;
            }
            None if status.success() && config.spec.clean_exit_is_complete => {
                self.transition(Status::Complete, Cause::Exited, Some(detail), Some(status))
                    .await;
            }
            None => {
                self.transition(Status::Crashed, Cause::Exited, Some(detail), Some(status))
                    .await;
            }
        }
    }

    async fn output(&mut self, line: OutputLine) {
        let stream = match line.stream {
            OutputStream::Stdout => ConsoleStream::Stdout,
            OutputStream::Stderr => ConsoleStream::Stderr,
        };
        self.console(stream, line.text).await;
    }

    /// Reads what the process printed before it exited.
    async fn drain(&mut self, output: &mut mpsc::Receiver<OutputLine>) {
        let deadline = tokio::time::Instant::now() + OUTPUT_DRAIN;
        while let Ok(Some(line)) = tokio::time::timeout_at(deadline, output.recv()).await {
            self.output(line).await;
        }
    }
}

async fn stop_future(handle: ProcessHandle, policy: StopPolicy) -> Stopped {
    process::stop(&handle, &policy).await
}

async fn kill_future(handle: ProcessHandle) -> Stopped {
    process::kill(&handle).await
}

/// Fetches the config, installs the game and builds the process to spawn. An error carries the
/// cause and a detail for the operator.
async fn prepare(
    context: SupervisorContext,
    instance_id: InstanceId,
    config_id: ConfigId,
) -> Result<(GameServerConfig, ProcessSpec), (Cause, String)> {
    let bundle = context.host.fetch_config(config_id).await.map_err(|e| {
        (
            Cause::InstallFailed,
            format!("could not fetch {config_id} for {instance_id}: {e}"),
        )
    })?;
    let request = InstallRequest {
        game: bundle.game,
        config: bundle.config,
        install_root: context.install_root.clone(),
    };
    let installation = context
        .installer
        .install(&request)
        .await
        .map_err(|e| (Cause::InstallFailed, e.to_string()))?;
    let worker_env: BTreeMap<String, String> = std::env::vars().collect();
    let spec = process_spec(&request.config, &installation, &worker_env);
    Ok((request.config, spec))
}
