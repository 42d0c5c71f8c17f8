//! [`Reporter`]: what the worker tells the host, over the bus.

use crate::bus::Bus;
use crate::command::{CommandOutcome, CommandResult};
use crate::console::ConsoleLine;
use crate::event::{Event, StatusReport};
use crate::id::WorkerId;
use crate::ports::Clock;
use crate::signing::WorkerKey;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// Attempts for one event before it is given up (and logged).
const ATTEMPTS: u32 = 5;

/// Publishes status reports, command results and console lines.
#[derive(Debug, Clone)]
pub(crate) struct Reporter {
    bus: Bus,
    clock: Arc<dyn Clock>,
    /// This worker registration's key: every event and console line is sealed with it.
    key: WorkerKey,
}

impl Reporter {
    pub(crate) fn new(bus: Bus, clock: Arc<dyn Clock>, key: WorkerKey) -> Self {
        Self { bus, clock, key }
    }

    pub(crate) fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.now()
    }

    /// Publishes an event, retrying transient failures with a growing pause.
    pub(crate) async fn event(&self, event: &Event) {
        let mut pause = Duration::from_millis(100);
        for attempt in 1..=ATTEMPTS {
            match self
                .bus
                .publish_event(event, self.clock.now(), &self.key)
                .await
            {
                Ok(_) => return,
                Err(e) if e.is_transient() && attempt < ATTEMPTS => {
                    tracing::warn!(error = %e, attempt, "could not publish an event; retrying");
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
                Err(e) => {
                    tracing::error!(error = %e, kind = event.kind(), "could not publish an event: {event:?}");
                    return;
                }
            }
        }
    }

    pub(crate) async fn status(&self, report: StatusReport) {
        self.event(&Event::Status(report)).await;
    }

    pub(crate) async fn command_result(
        &self,
        worker_id: WorkerId,
        command_id: Uuid,
        outcome: CommandOutcome,
        detail: String,
    ) {
        let result = CommandResult {
            command_id,
            worker_id,
            outcome,
            detail: Some(detail),
            reported_at: self.clock.now(),
        };
        self.event(&Event::CommandResult(result)).await;
    }

    pub(crate) async fn console(&self, line: &ConsoleLine) {
        if let Err(e) = self.bus.publish_console(line, &self.key).await {
            tracing::debug!(error = %e, instance_id = line.instance_id.get(), "a console line was not published");
        }
    }
}
