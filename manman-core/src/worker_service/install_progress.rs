//! [`ProgressPublisher`]: an installer's progress, published on `manman.events` as the
//! instance's `install_progress`, without ever making the installer wait.

use crate::event::{Event, InstallProgressReport};
use crate::id::InstanceId;
use crate::ports::{InstallProgress, ProgressSink};
use crate::worker_service::reporter::Reporter;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Updates waiting to be published; when full, new ones are dropped (the next supersedes them).
const BUFFER: usize = 16;

/// A [`ProgressSink`] whose updates a task of its own publishes. The task ends when the
/// publisher is dropped, after sending what it holds.
#[derive(Debug)]
pub(crate) struct ProgressPublisher {
    updates: mpsc::Sender<InstallProgress>,
}

impl ProgressPublisher {
    /// A publisher for `instance`'s install, and its task.
    pub(crate) fn start(instance_id: InstanceId, reporter: Reporter) -> (Self, JoinHandle<()>) {
        let (updates, mut received) = mpsc::channel::<InstallProgress>(BUFFER);
        let task = tokio::spawn(async move {
            while let Some(progress) = received.recv().await {
                let report = InstallProgressReport {
                    instance_id,
                    progress,
                    reported_at: reporter.now(),
                };
                reporter.event(&Event::InstallProgress(report)).await;
            }
        });
        (Self { updates }, task)
    }
}

impl ProgressSink for ProgressPublisher {
    fn report(&self, progress: InstallProgress) {
        let _ = self.updates.try_send(progress);
    }
}
