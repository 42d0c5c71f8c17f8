//! [`Reporter`]: what the worker tells the host, over the bus.

use crate::bus::Bus;
use crate::command::{CommandOutcome, CommandResult};
use crate::console::ConsoleLine;
use crate::event::{Event, StatusReport};
use crate::id::WorkerId;
use crate::ports::Clock;
use crate::signing::WorkerKey;
use crate::status::{Entity, Sequence};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use uuid::Uuid;

/// Attempts for one event before it is given up (and logged).
const ATTEMPTS: u32 = 5;

/// Publishes status reports, command results and console lines. Clones share the numbering of
/// status reports.
#[derive(Debug, Clone)]
pub(crate) struct Reporter {
    bus: Bus,
    clock: Arc<dyn Clock>,
    /// This worker registration's key: every event and console line is sealed with it.
    key: WorkerKey,
    sequences: Arc<Sequences>,
}

impl Reporter {
    /// A reporter of the worker registration whose key is `key` (its epoch numbers the status
    /// reports).
    pub(crate) fn new(bus: Bus, clock: Arc<dyn Clock>, key: WorkerKey) -> Self {
        Self {
            bus,
            clock,
            sequences: Arc::new(Sequences::new(key.epoch())),
            key,
        }
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

    /// Numbers the report (the next of its entity) and publishes it. A report that cannot be
    /// published leaves a gap in its entity's numbering, which the host waits on for a while
    /// and then skips.
    pub(crate) async fn status(&self, report: StatusReport) {
        let sequence = self
            .sequences
            .next(report.entity, report.status.is_terminal());
        self.event(&Event::Status(report.with_sequence(sequence)))
            .await;
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

/// The numbering of a worker's status reports: per entity (the worker, each instance), the epoch
/// of its registration and a counter from 1. An entity's reports are numbered in the order they
/// are made; they may be published in another (the host puts them back in order).
#[derive(Debug)]
struct Sequences {
    epoch: i64,
    last: Mutex<HashMap<Entity, i64>>,
}

impl Sequences {
    fn new(epoch: i64) -> Self {
        Self {
            epoch,
            last: Mutex::default(),
        }
    }

    /// The next number of `entity`'s reports. After an instance's `final_report` (complete or
    /// crashed: nothing follows) its counter is forgotten, so the map holds only the instances
    /// that still run; a report made after that anyway would start at 1 again and be ignored by
    /// the host as stale, as the transition table would refuse it.
    fn next(&self, entity: Entity, final_report: bool) -> Sequence {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        let counter = last.get(&entity).map_or(1, |n| n + 1);
        if final_report && matches!(entity, Entity::Instance(_)) {
            last.remove(&entity);
        } else {
            last.insert(entity, counter);
        }
        Sequence::new(self.epoch, counter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::{InstanceId, WorkerId};

    #[test]
    fn each_entity_is_numbered_from_one_in_the_epoch() {
        let sequences = Sequences::new(7);
        let worker = Entity::Worker(WorkerId(1));
        let a = Entity::Instance(InstanceId(1));
        let b = Entity::Instance(InstanceId(2));
        assert_eq!(sequences.next(worker, false), Sequence::new(7, 1));
        assert_eq!(sequences.next(a, false), Sequence::new(7, 1));
        assert_eq!(sequences.next(a, false), Sequence::new(7, 2));
        assert_eq!(sequences.next(b, false), Sequence::new(7, 1));
        assert_eq!(sequences.next(a, true), Sequence::new(7, 3));
        assert_eq!(sequences.next(worker, false), Sequence::new(7, 2));
        assert!(
            !sequences.last.lock().unwrap().contains_key(&a),
            "an ended instance's counter is forgotten"
        );
    }
}
