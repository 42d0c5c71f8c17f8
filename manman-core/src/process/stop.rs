//! The stop sequence: stdin line → wait → signal → wait → SIGKILL to the whole group.

use crate::config::StopPolicy;
use crate::ports::{ExitStatus, ProcessHandle, ProcessSignal};
use std::time::Duration;
use tokio::time::timeout;

/// Which step of the stop sequence ended the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopStep {
    /// It had already exited.
    AlreadyExited,
    /// It quit after the stdin line.
    StdinLine,
    /// It quit after the stop signal.
    Signal,
    /// It had to be killed.
    Kill,
}

/// How a stop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped {
    /// The process's exit.
    pub status: ExitStatus,
    /// The step that ended it.
    pub step: StopStep,
}

/// Stops a process gracefully: writes `policy.stdin_line` (if any) and waits `timeout_s`,
/// sends `policy.signal` to the group and waits `signal_grace_s`, then SIGKILLs the group.
/// Whatever step ends it, the group gets a final SIGKILL so no child of the server survives.
pub async fn stop(handle: &ProcessHandle, policy: &StopPolicy) -> Stopped {
    let stopped = graceful(handle, policy).await;
    // The server may have left children in its group: nothing outlives a stop.
    let _ = handle.signal(ProcessSignal::Kill);
    stopped
}

async fn graceful(handle: &ProcessHandle, policy: &StopPolicy) -> Stopped {
    if let Some(status) = handle.try_exit() {
        return Stopped {
            status,
            step: StopStep::AlreadyExited,
        };
    }
    if let Some(line) = &policy.stdin_line
        && handle.write_line(line).is_ok()
        && let Ok(status) = timeout(secs(policy.timeout_s), handle.wait()).await
    {
        return Stopped {
            status,
            step: StopStep::StdinLine,
        };
    }
    if handle.signal(policy.signal.into()).is_ok()
        && let Ok(status) = timeout(secs(policy.signal_grace_s), handle.wait()).await
    {
        return Stopped {
            status,
            step: StopStep::Signal,
        };
    }
    kill(handle).await
}

/// SIGKILLs the whole group at once and waits for the exit.
pub async fn kill(handle: &ProcessHandle) -> Stopped {
    if let Some(status) = handle.try_exit() {
        let _ = handle.signal(ProcessSignal::Kill);
        return Stopped {
            status,
            step: StopStep::AlreadyExited,
        };
    }
    let _ = handle.signal(ProcessSignal::Kill);
    Stopped {
        status: handle.wait().await,
        step: StopStep::Kill,
    }
}

fn secs(s: u32) -> Duration {
    Duration::from_secs(u64::from(s))
}
