//! [`ConsoleSink`]: where an instance's console lines go — numbered, every one to the log file,
//! and to the live console stream as long as the bus keeps up (dropped and counted otherwise).

use crate::console::{ConsoleLine, ConsoleStream};
use crate::id::InstanceId;
use crate::worker_service::console_log::{ConsoleLog, LogRotation};
use crate::worker_service::reporter::Reporter;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Numbers console lines and sends each to the log file and the live stream.
///
/// Writing never waits for the bus: live lines go through a bounded buffer to a publisher task,
/// and when the buffer is full a line is dropped from the live stream only (the file has it)
/// and counted.
#[derive(Debug)]
pub(crate) struct ConsoleSink {
    instance_id: InstanceId,
    seq: u64,
    log: Option<ConsoleLog>,
    live: Option<mpsc::Sender<ConsoleLine>>,
    publisher: Option<JoinHandle<()>>,
    dropped: Arc<AtomicU64>,
    reporter: Reporter,
}

impl ConsoleSink {
    /// A sink logging under `log_dir`; `dropped` counts live lines dropped.
    pub(crate) fn new(
        instance_id: InstanceId,
        log_dir: &Path,
        rotation: LogRotation,
        live_buffer: usize,
        reporter: Reporter,
        dropped: Arc<AtomicU64>,
    ) -> Self {
        let name = format!("instance-{}.log", instance_id.get());
        let log = match ConsoleLog::open(log_dir, &name, rotation) {
            Ok(log) => Some(log),
            Err(e) => {
                tracing::error!(instance_id = instance_id.get(), dir = %log_dir.display(), error = %e, "cannot write the console log; lines go to the live stream only");
                None
            }
        };
        let (live, mut lines) = mpsc::channel::<ConsoleLine>(live_buffer.max(1));
        let publisher_reporter = reporter.clone();
        let publisher = tokio::spawn(async move {
            while let Some(line) = lines.recv().await {
                publisher_reporter.console(&line).await;
            }
        });
        Self {
            instance_id,
            seq: 0,
            log,
            live: Some(live),
            publisher: Some(publisher),
            dropped,
            reporter,
        }
    }

    /// Numbers a line, logs it and offers it to the live stream.
    pub(crate) fn line(&mut self, stream: ConsoleStream, text: String) {
        let at = self.reporter.now();
        self.numbered(self.seq + 1, at, stream, text);
    }

    /// The number the next line gets.
    pub(crate) fn next_seq(&self) -> u64 {
        self.seq + 1
    }

    /// Goes on after line `seq` (a console a previous run of the worker began).
    pub(crate) fn continue_after(&mut self, seq: u64) {
        self.seq = seq;
    }

    /// Writes and streams a line numbered by the runner (a shim); later lines follow it.
    pub(crate) fn numbered(
        &mut self,
        seq: u64,
        at: chrono::DateTime<chrono::Utc>,
        stream: ConsoleStream,
        text: String,
    ) {
        self.seq = seq;
        let line = ConsoleLine {
            instance_id: self.instance_id,
            seq,
            stream,
            text,
            at,
        };
        if let Some(log) = &mut self.log
            && let Err(e) = log.write(&line)
        {
            tracing::error!(instance_id = self.instance_id.get(), error = %e, "console log write failed");
        }
        if let Some(live) = &self.live
            && live.try_send(line).is_err()
        {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::warn!(
                    instance_id = self.instance_id.get(),
                    dropped,
                    "the live console falls behind; lines are dropped from it (the log file keeps them)"
                );
            }
        }
    }

    /// Pushes buffered lines to the log file.
    pub(crate) fn flush(&mut self) {
        if let Some(log) = &mut self.log
            && let Err(e) = log.flush()
        {
            tracing::error!(instance_id = self.instance_id.get(), error = %e, "console log flush failed");
        }
    }

    /// Flushes the file and lets the publisher send what it holds (at most `grace`).
    pub(crate) async fn close(&mut self, grace: Duration) {
        self.flush();
        self.live = None;
        if let Some(publisher) = self.publisher.take()
            && tokio::time::timeout(grace, publisher).await.is_err()
        {
            tracing::warn!(
                instance_id = self.instance_id.get(),
                "live console lines still unsent at the end were dropped"
            );
        }
    }
}

impl Drop for ConsoleSink {
    fn drop(&mut self) {
        self.flush();
        if let Some(publisher) = self.publisher.take() {
            publisher.abort();
        }
    }
}
