//! One SteamCMD run: spawn it, hand it its stdin lines, read its output as it comes (with an
//! idle timeout), and sum the output up as a [`RunOutcome`].

use crate::error::{ErrorClass, Failure};
use crate::output::{GuardPromptKind, OutputParser, SteamEvent};
use crate::secret::{Redactor, Secret};
use manman_core::ports::{
    ExitStatus, InstallProgress, OutputStream, ProcessError, ProcessHandle, ProcessRunner,
    ProcessSignal, ProcessSpec, ProgressSink,
};
use std::collections::VecDeque;
use std::time::Duration;
use tokio::time::{Instant, timeout};

/// Lines of output kept for an error report.
pub(crate) const TAIL_LINES: usize = 20;

/// How long to wait for the last output and the exit after SteamCMD was killed.
const AFTER_KILL: Duration = Duration::from_secs(5);

/// What to run.
#[derive(Debug)]
pub(crate) struct Run<'a> {
    pub(crate) runner: &'a dyn ProcessRunner,
    pub(crate) spec: ProcessSpec,
    /// Lines written to SteamCMD's stdin right after the spawn, in order (it reads them when
    /// it prompts; prompts end without a newline, so there is no prompt line to wait for).
    pub(crate) stdin: Vec<Secret>,
    /// Steam Guard code prompts the stdin lines answer (1 with a configured guard code, else
    /// 0): one prompt more ends the run at once.
    pub(crate) guard_answers: u32,
    pub(crate) idle_timeout: Duration,
    /// When the whole install must be done: the run is killed then.
    pub(crate) deadline: Option<Instant>,
    pub(crate) redactor: &'a Redactor,
    pub(crate) app_id: u32,
    /// Keep every stdout line (for `app_info_print`).
    pub(crate) keep_output: bool,
}

/// What a run printed and how it ended.
#[derive(Debug, Default)]
pub(crate) struct RunOutcome {
    pub(crate) exit: Option<ExitStatus>,
    /// Killed after printing nothing for the idle timeout.
    pub(crate) timed_out: bool,
    /// Killed when the install's deadline passed.
    pub(crate) deadline_passed: bool,
    /// Ended at once, without waiting for SteamCMD: the failure that decided it (a fatal
    /// error, a code prompt nobody can answer).
    pub(crate) stopped: Option<Failure>,
    /// `Success! App '<app_id>' …` was printed.
    pub(crate) success: bool,
    pub(crate) logged_in: bool,
    /// The first Steam Guard prompt (a code or a mobile confirmation), quoted.
    pub(crate) guard_prompt: Option<String>,
    /// Code prompts seen.
    pub(crate) code_prompts: u32,
    /// Every failure printed, in order.
    pub(crate) failures: Vec<Failure>,
    /// The last [`TAIL_LINES`] lines but progress lines, secrets scrubbed.
    pub(crate) tail: VecDeque<String>,
    /// Every stdout line, when asked for.
    pub(crate) output: Vec<String>,
}

impl RunOutcome {
    /// The failure that decides the run, if one does: a fatal class before a transient one, a
    /// Steam Guard prompt that never led to a login, then the timeout. `None` leaves the
    /// verdict to the caller (success line, exit code, verification).
    pub(crate) fn failure(&self, idle_timeout: Duration) -> Option<Failure> {
        if let Some(stopped) = &self.stopped {
            return Some(stopped.clone());
        }
        if let Some(fatal) = self.failures.iter().find(|f| !f.class.is_transient()) {
            return Some(fatal.clone());
        }
        // A login approved in the Steam Mobile app goes on to install: its success shows the
        // prompt was answered.
        if let Some(prompt) = &self.guard_prompt
            && !self.logged_in
            && !self.success
        {
            return Some(Failure::new(
                ErrorClass::SteamGuard,
                format!("SteamCMD asked \"{prompt}\" and did not log in"),
            ));
        }
        if self.deadline_passed {
            return Some(Failure::new(
                ErrorClass::InstallTimeout,
                "the install's time ran out while SteamCMD ran; it was killed",
            ));
        }
        if let Some(transient) = self.failures.first() {
            return Some(transient.clone());
        }
        self.timed_out.then(|| {
            Failure::new(
                ErrorClass::Timeout,
                format!(
                    "SteamCMD printed nothing for {}s and was killed",
                    idle_timeout.as_secs_f32()
                ),
            )
        })
    }

    /// The tail as a list, for a [`crate::SteamError`].
    pub(crate) fn tail(&self) -> Vec<String> {
        self.tail.iter().cloned().collect()
    }
}

/// Kills the run's process group if the run is dropped before the process ended (the
/// install was cancelled): no SteamCMD outlives the future that owns it.
#[derive(Debug)]
struct KillOnDrop(Option<ProcessHandle>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(handle) = self.0.take()
            && handle.try_exit().is_none()
        {
            let _ = handle.signal(ProcessSignal::Kill);
        }
    }
}

/// Runs SteamCMD once, reporting progress to `progress`.
pub(crate) async fn run(
    run: Run<'_>,
    progress: &dyn ProgressSink,
) -> Result<RunOutcome, ProcessError> {
    let spawned = run.runner.spawn(&run.spec).await?;
    let handle = spawned.handle;
    let mut output = spawned.output;
    let mut guard = KillOnDrop(Some(handle.clone()));
    tracing::debug!(app_id = run.app_id, pid = handle.pid(), "SteamCMD started");
    for line in &run.stdin {
        if let Err(e) = handle.write_line(line.expose()) {
            tracing::debug!(app_id = run.app_id, error = %e, "could not write to SteamCMD's stdin");
        }
    }
    // Nothing more will come: a prompt beyond the answers above reads end-of-file instead of
    // waiting for ever.
    handle.close_stdin();

    let mut outcome = RunOutcome::default();
    let mut parser = OutputParser::default();
    loop {
        let wait = run.deadline.map_or(run.idle_timeout, |deadline| {
            run.idle_timeout
                .min(deadline.saturating_duration_since(Instant::now()))
        });
        let why = match timeout(wait, output.recv()).await {
            Ok(Some(line)) => {
                observe(
                    &run,
                    &mut parser,
                    &mut outcome,
                    line.stream,
                    &line.text,
                    progress,
                );
                match outcome.stopped.as_ref() {
                    Some(failure) => format!("{}: {}", failure.class, failure.what),
                    None => continue,
                }
            }
            Ok(None) => break,
            Err(_) if run.deadline.is_some_and(|d| Instant::now() >= d) => {
                outcome.deadline_passed = true;
                "the install's time ran out".to_owned()
            }
            Err(_) => {
                outcome.timed_out = true;
                format!(
                    "SteamCMD printed nothing for {} s",
                    run.idle_timeout.as_secs_f32()
                )
            }
        };
        tracing::warn!(app_id = run.app_id, why = %why, "ending SteamCMD now");
        let _ = handle.signal(ProcessSignal::Kill);
        // What it printed last (a prompt without a newline, say) comes out now.
        while let Ok(Some(line)) = timeout(AFTER_KILL, output.recv()).await {
            observe(
                &run,
                &mut parser,
                &mut outcome,
                line.stream,
                &line.text,
                progress,
            );
        }
        break;
    }
    outcome.exit = match timeout(run.idle_timeout.max(AFTER_KILL), handle.wait()).await {
        Ok(status) => Some(status),
        Err(_) => {
            // Both pipes closed but the process lives on: end it.
            let _ = handle.signal(ProcessSignal::Kill);
            timeout(AFTER_KILL, handle.wait()).await.ok()
        }
    };
    guard.0 = None;
    tracing::debug!(
        app_id = run.app_id,
        exit = %outcome.exit.map_or_else(|| "unknown".to_owned(), |s| s.to_string()),
        "SteamCMD ended"
    );
    Ok(outcome)
}

fn observe(
    run: &Run<'_>,
    parser: &mut OutputParser,
    outcome: &mut RunOutcome,
    stream: OutputStream,
    raw: &str,
    progress: &dyn ProgressSink,
) {
    let text = run.redactor.scrub(raw);
    let events = parser.line(&text);
    let is_progress = events
        .iter()
        .any(|e| matches!(e, SteamEvent::Progress(_) | SteamEvent::SelfUpdate { .. }));
    if is_progress {
        tracing::trace!(target: "manman_steam::steamcmd", app_id = run.app_id, "{text}");
    } else {
        tracing::debug!(target: "manman_steam::steamcmd", app_id = run.app_id, ?stream, "{text}");
        if !text.trim().is_empty() {
            if outcome.tail.len() == TAIL_LINES {
                outcome.tail.pop_front();
            }
            outcome.tail.push_back(text.trim_end().to_owned());
        }
    }
    if run.keep_output && stream == OutputStream::Stdout {
        outcome.output.push(text.clone().into_owned());
    }
    for event in events {
        match event {
            SteamEvent::Progress(p) => progress.report(InstallProgress {
                stage: p.stage().to_owned(),
                percent: Some(p.percent),
                bytes_done: Some(p.bytes_done),
                bytes_total: Some(p.bytes_total),
                detail: None,
            }),
            SteamEvent::SelfUpdate { percent } => progress.report(InstallProgress {
                stage: "updating-steamcmd".to_owned(),
                percent,
                bytes_done: None,
                bytes_total: None,
                detail: None,
            }),
            SteamEvent::LoggedIn => {
                outcome.logged_in = true;
                progress.report(stage("logged-in"));
            }
            SteamEvent::GuardPrompt { kind, prompt } => {
                if kind != GuardPromptKind::Notice && outcome.guard_prompt.is_none() {
                    outcome.guard_prompt = Some(prompt.clone());
                }
                if kind == GuardPromptKind::MobileConfirmation {
                    progress.report(InstallProgress {
                        detail: Some(prompt.clone()),
                        ..stage("waiting-for-steam-guard")
                    });
                }
                if kind == GuardPromptKind::Code {
                    outcome.code_prompts += 1;
                    if outcome.code_prompts > run.guard_answers && outcome.stopped.is_none() {
                        outcome.stopped = Some(Failure::new(
                            ErrorClass::SteamGuard,
                            format!(
                                "SteamCMD asked \"{prompt}\" and the worker has no {}code to \
                                 give it",
                                if run.guard_answers > 0 { "other " } else { "" }
                            ),
                        ));
                    }
                }
            }
            SteamEvent::Success { app_id } => {
                if app_id == run.app_id {
                    outcome.success = true;
                }
            }
            SteamEvent::Error { class, message, .. } => {
                let failure = Failure::new(class, message);
                // Waiting for SteamCMD to end would only risk another prompt: a fatal error
                // ends the run now.
                if !class.is_transient() && outcome.stopped.is_none() {
                    outcome.stopped = Some(failure.clone());
                }
                outcome.failures.push(failure);
            }
        }
    }
}

/// A progress update with a stage only.
pub(crate) fn stage(name: &str) -> InstallProgress {
    InstallProgress {
        stage: name.to_owned(),
        percent: None,
        bytes_done: None,
        bytes_total: None,
        detail: None,
    }
}
