//! [`StatusProcessor`]: events from `manman.events` into the status history, the current status
//! and the command records.

use crate::bus::Bus;
use crate::command::CommandResult;
use crate::event::{Event, StatusReport};
use crate::ports::{
    ApplyOutcome, BusError, Clock, Delivery, EntityUpdate, StatusChange, StoreError,
};
use crate::status::{Entity, Status, can_transition};
use crate::store::Store;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How many times a delivery is retried after a conflict or an unexpected store error before it
/// is dead-lettered. (An unavailable store is waited for instead, however long it takes.)
const MAX_DELIVERIES: u32 = 5;
/// First pause while the store is unavailable; it doubles up to the maximum.
const UNAVAILABLE_FIRST_PAUSE: Duration = Duration::from_millis(100);
/// Longest pause while the store is unavailable.
const UNAVAILABLE_MAX_PAUSE: Duration = Duration::from_secs(5);
/// Pause after a failed receive.
const RECEIVE_RETRY: Duration = Duration::from_secs(1);

/// Consumes `host.status-processor.events` (competing consumers across host replicas) and
/// records every status report and command result. Idempotent by message id.
#[derive(Debug, Clone)]
pub struct StatusProcessor {
    store: Store,
    bus: Bus,
    clock: Arc<dyn Clock>,
}

/// What became of one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handled {
    /// Done (or nothing to do): acknowledge.
    Done,
    /// Try again (a concurrent change): requeue, a bounded number of times.
    Retry,
    /// The store is unavailable: wait and try again in place, however long it takes.
    Unavailable,
    /// Never handleable: dead-letter.
    Poison,
}

impl StatusProcessor {
    /// A processor writing to `store`.
    pub fn new(store: Store, bus: Bus, clock: Arc<dyn Clock>) -> Self {
        Self { store, bus, clock }
    }

    /// Consumes until `shutdown` is cancelled. Bad messages are dead-lettered, never fatal.
    pub async fn run(&self, shutdown: CancellationToken) -> Result<(), BusError> {
        let mut consumer = self.bus.consume_status_events(64).await?;
        loop {
            let delivery = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                next = consumer.next() => match next {
                    Some(Ok(delivery)) => delivery,
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "status processor: receive failed; retrying in 1 s");
                        tokio::select! {
                            () = shutdown.cancelled() => return Ok(()),
                            () = tokio::time::sleep(RECEIVE_RETRY) => continue,
                        }
                    }
                    None => return Err(BusError::Closed),
                },
            };
            self.settle(delivery, &shutdown).await;
        }
    }

    async fn settle(&self, delivery: Delivery, shutdown: &CancellationToken) {
        let message_id = delivery.message.id;
        let mut pause = UNAVAILABLE_FIRST_PAUSE;
        let handled = loop {
            match self.handle(&delivery).await {
                Handled::Unavailable => {
                    tracing::warn!(%message_id, retry_in = ?pause, "status processor: the store is unavailable; holding the event until it is back");
                    tokio::select! {
                        () = shutdown.cancelled() => break Handled::Retry,
                        () = tokio::time::sleep(pause) => {}
                    }
                    pause = (pause * 2).min(UNAVAILABLE_MAX_PAUSE);
                }
                handled => break handled,
            }
        };
        let outcome = match handled {
            Handled::Retry if delivery.delivery_count >= MAX_DELIVERIES => {
                tracing::error!(%message_id, deliveries = delivery.delivery_count, "status processor: giving up on an event, dead-lettering it");
                delivery.dead_letter().await
            }
            Handled::Retry | Handled::Unavailable => delivery.requeue().await,
            Handled::Poison => delivery.dead_letter().await,
            Handled::Done => delivery.ack().await,
        };
        if let Err(e) = outcome {
            tracing::warn!(%message_id, error = %e, "status processor: could not settle a delivery");
        }
    }

    async fn handle(&self, delivery: &Delivery) -> Handled {
        let message = &delivery.message;
        let event: Event = match message.decode() {
            Ok(event) => event,
            Err(e) => {
                tracing::warn!(message_id = %message.id, kind = %message.kind, error = %e, "dead-lettering a malformed event");
                return Handled::Poison;
            }
        };
        match event {
            Event::Status(report) => self.apply_status(message.id, &report).await,
            Event::CommandResult(result) => self.apply_result(&result).await,
            // Progress is for live watchers; the record is the status.
            Event::InstallProgress(_) => Handled::Done,
        }
    }

    async fn apply_status(&self, event_id: uuid::Uuid, report: &StatusReport) -> Handled {
        let current = match self.current_status(report.entity).await {
            Ok(status) => status,
            Err(e) => return store_failure(&e, report.entity),
        };
        if !can_transition(&report.entity, current, report.status) {
            tracing::warn!(
                entity = %report.entity, from = %current, to = %report.status, cause = ?report.cause,
                "refusing a forbidden status transition"
            );
            return Handled::Done;
        }
        let as_of = self.clock.now();
        let mut update = EntityUpdate {
            exit_code: report.exit_code,
            exit_signal: report.exit_signal,
            ..EntityUpdate::default()
        };
        if let Entity::Instance(_) = report.entity {
            update.restart_count = Some(report.restart_count);
            if current == Status::Created {
                update.started_at = Some(as_of);
            }
            if report.status == Status::Running {
                update.ready_at = Some(as_of);
            }
        }
        if report.status.is_terminal() {
            update.ended_at = Some(as_of);
        }
        let change = StatusChange {
            event_id,
            entity: report.entity,
            from: current,
            to: report.status,
            cause: report.cause,
            detail: report.detail.clone(),
            as_of,
            reported_at: report.reported_at,
            update,
        };
        match self.store.status.apply_status(&change).await {
            Ok(ApplyOutcome::Applied(event)) => {
                tracing::info!(entity = %event.entity, from = %current, to = %event.status, cause = ?event.cause, "status");
                Handled::Done
            }
            Ok(ApplyOutcome::Duplicate) => Handled::Done,
            // The status moved under us (another replica): read it again and retry.
            Err(StoreError::Conflict { .. }) => Handled::Retry,
            Err(e) => store_failure(&e, report.entity),
        }
    }

    async fn current_status(&self, entity: Entity) -> Result<Status, StoreError> {
        Ok(match entity {
            Entity::Worker(id) => self.store.workers.get_worker(id).await?.status,
            Entity::Instance(id) => self.store.instances.get_instance(id).await?.status,
        })
    }

    async fn apply_result(&self, result: &CommandResult) -> Handled {
        match self
            .store
            .commands
            .transition_command(
                result.command_id,
                result.outcome.into(),
                result.detail.as_deref(),
                self.clock.now(),
            )
            .await
        {
            Ok(_) => Handled::Done,
            // Already final (a duplicate result): nothing to do.
            Err(StoreError::Conflict { .. }) => Handled::Done,
            Err(StoreError::NotFound { what }) => {
                tracing::warn!(command_id = %result.command_id, "a result for an unknown command: {what}");
                Handled::Done
            }
            Err(e) if e.is_transient() => Handled::Unavailable,
            Err(e) => {
                tracing::error!(command_id = %result.command_id, error = %e, "could not record a command result");
                Handled::Retry
            }
        }
    }
}

fn store_failure(error: &StoreError, entity: Entity) -> Handled {
    match error {
        StoreError::NotFound { .. } => {
            tracing::warn!(%entity, "a status report for an unknown entity: dead-lettering it");
            Handled::Poison
        }
        e if e.is_transient() => Handled::Unavailable,
        e => {
            tracing::warn!(%entity, error = %e, "could not record a status report; will retry");
            Handled::Retry
        }
    }
}
