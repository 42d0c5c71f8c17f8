//! [`StatusProcessor`]: events from `manman.events` into the status history, the current status
//! and the command records.
//!
//! Deliveries are taken in batches (whatever is waiting, up to [`BATCH`]): the status reports of a
//! batch are checked against the transition table in order — chaining the reports of one entity —
//! and written in one store call, so a busy host commits once per batch rather than once per
//! event.

use crate::bus::Bus;
use crate::command::CommandResult;
use crate::event::{Event, StatusReport};
use crate::host::sender_check::SenderCheck;
use crate::host::{BusKeys, Consumption, DeadLetterReason, DeadLetters, Metrics};
use crate::ports::{
    ApplyOutcome, BusError, Clock, Consumer, Delivery, EntityUpdate, Message, StatusChange,
    StoreError,
};
use crate::status::{Entity, Status, can_transition};
use crate::store::Store;
use futures::FutureExt;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Most deliveries handled together.
const BATCH: usize = 256;
/// How many times a delivery is retried after a conflict or an unexpected store error before it
/// is dead-lettered. (An unavailable store is waited for instead, however long it takes.)
const MAX_DELIVERIES: u32 = 5;
/// First pause while the store is unavailable; it doubles up to the maximum.
const UNAVAILABLE_FIRST_PAUSE: Duration = Duration::from_millis(100);
/// Longest pause while the store is unavailable.
const UNAVAILABLE_MAX_PAUSE: Duration = Duration::from_secs(5);
/// Pause after a failed receive.
const RECEIVE_RETRY: Duration = Duration::from_secs(1);
/// First pause before subscribing again after the queue was lost or could not be consumed; it
/// doubles up to the maximum, and starts over once consuming.
const RESUBSCRIBE_FIRST_PAUSE: Duration = Duration::from_millis(100);
/// Longest pause between attempts to subscribe again.
const RESUBSCRIBE_MAX_PAUSE: Duration = Duration::from_secs(5);

/// Consumes `host.status-processor.events` (competing consumers across host replicas) and
/// records every status report and command result. Idempotent by message id.
#[derive(Debug, Clone)]
pub struct StatusProcessor {
    store: Store,
    bus: Bus,
    clock: Arc<dyn Clock>,
    metrics: Metrics,
    check: SenderCheck,
    dead_letters: DeadLetters,
    consumption: Consumption,
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
        Self {
            check: SenderCheck::new(store.clone(), BusKeys::new(&store)),
            store,
            bus,
            clock,
            metrics: Metrics::new(),
            dead_letters: DeadLetters::default(),
            consumption: Consumption::new(),
        }
    }

    /// Counts what it records in `metrics`.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Records the events it refuses in `dead_letters` (which counts them in its metrics).
    pub fn with_dead_letters(mut self, dead_letters: DeadLetters) -> Self {
        self.dead_letters = dead_letters;
        self
    }

    /// Reports to `consumption` whether it consumes its queue (declared and bound), for the
    /// host's readiness ([`crate::host::HostService::status_consumption`]). Not consuming
    /// until [`Self::run`] has subscribed.
    pub fn with_consumption(mut self, consumption: Consumption) -> Self {
        consumption.not_consuming("the status processor has not started consuming yet");
        self.consumption = consumption;
        self
    }

    /// Consumes until `shutdown` is cancelled. Bad messages are dead-lettered, never fatal.
    ///
    /// Each subscription declares the queue and binds it to `manman.events` first. When the
    /// queue is lost (deleted, or its consumer cancelled by the broker) or cannot be consumed,
    /// it reports itself not consuming and subscribes again, pausing 100 ms doubling to 5 s
    /// between attempts; it returns only at `shutdown` or when the bus is closed.
    pub async fn run(&self, shutdown: CancellationToken) -> Result<(), BusError> {
        let queue = self.bus.topology().status_processor_queue();
        let mut pause = RESUBSCRIBE_FIRST_PAUSE;
        let outcome = 'subscribe: loop {
            let subscribed = tokio::select! {
                () = shutdown.cancelled() => break Ok(()),
                subscribed = self.bus.consume_status_events(BATCH as u16) => subscribed,
            };
            let mut consumer = match subscribed {
                Ok(consumer) => consumer,
                Err(BusError::Closed) => break Err(BusError::Closed),
                Err(e) => {
                    tracing::warn!(%queue, error = %e, retry_in = ?pause, "status processor: cannot consume its queue; trying again");
                    self.consumption.not_consuming(format!(
                        "the status processor cannot consume queue {queue:?}: {e}"
                    ));
                    tokio::select! {
                        () = shutdown.cancelled() => break Ok(()),
                        () = tokio::time::sleep(pause) => {}
                    }
                    pause = (pause * 2).min(RESUBSCRIBE_MAX_PAUSE);
                    continue;
                }
            };
            if pause > RESUBSCRIBE_FIRST_PAUSE {
                tracing::info!(%queue, "status processor: consuming again");
            }
            self.consumption.consuming();
            pause = RESUBSCRIBE_FIRST_PAUSE;
            loop {
                let first = tokio::select! {
                    () = shutdown.cancelled() => break 'subscribe Ok(()),
                    next = consumer.next() => match next {
                        Some(Ok(delivery)) => delivery,
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "status processor: receive failed; retrying in 1 s");
                            tokio::select! {
                                () = shutdown.cancelled() => break 'subscribe Ok(()),
                                () = tokio::time::sleep(RECEIVE_RETRY) => continue,
                            }
                        }
                        None => {
                            tracing::warn!(%queue, "status processor: its queue is gone (deleted?) or its consumer was cancelled; declaring, binding and consuming it again");
                            self.consumption.not_consuming(format!(
                                "the status processor lost queue {queue:?} (deleted, or its consumer cancelled) and is declaring, binding and consuming it again"
                            ));
                            tokio::select! {
                                () = shutdown.cancelled() => break 'subscribe Ok(()),
                                () = tokio::time::sleep(pause) => continue 'subscribe,
                            }
                        }
                    },
                };
                let batch = take_waiting(&mut consumer, first).await;
                self.settle(batch, &shutdown).await;
            }
        };
        self.consumption.not_consuming(match &outcome {
            Ok(()) => "the status processor stopped (the host is shutting down)".to_owned(),
            Err(e) => format!("the status processor stopped: {e}"),
        });
        outcome
    }

    /// Handles a batch (waiting out an unavailable store) and settles each delivery.
    async fn settle(&self, batch: Vec<Delivery>, shutdown: &CancellationToken) {
        let mut pause = UNAVAILABLE_FIRST_PAUSE;
        let handled = loop {
            let handled = self.handle(&batch).await;
            if !handled.contains(&Handled::Unavailable) {
                break handled;
            }
            tracing::warn!(retry_in = ?pause, "status processor: the store is unavailable; holding {} events until it is back", batch.len());
            tokio::select! {
                () = shutdown.cancelled() => break vec![Handled::Retry; batch.len()],
                () = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(UNAVAILABLE_MAX_PAUSE);
        };
        // Requeued deliveries go back to the head of the queue: last first keeps their order.
        for (delivery, handled) in batch.into_iter().zip(handled).rev() {
            let message_id = delivery.message.id;
            let outcome = match handled {
                Handled::Retry if delivery.delivery_count >= MAX_DELIVERIES => {
                    self.dead_letters.record(
                        &delivery.message,
                        DeadLetterReason::RetriesExhausted,
                        format!("recording it failed {} times", delivery.delivery_count),
                        self.clock.now(),
                    );
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
    }

    /// What to do with each delivery of a batch, in order.
    async fn handle(&self, batch: &[Delivery]) -> Vec<Handled> {
        let mut handled = vec![Handled::Done; batch.len()];
        let messages: Vec<&Message> = batch.iter().map(|d| &d.message).collect();
        let epochs = match self.check.epochs(&messages).await {
            Ok(epochs) => epochs,
            Err(e) => {
                let outcome = if e.is_transient() {
                    Handled::Unavailable
                } else {
                    tracing::warn!(error = %e, "could not read the senders of a batch; will retry");
                    Handled::Retry
                };
                return vec![outcome; batch.len()];
            }
        };
        let mut reports = Vec::new();
        for (i, delivery) in batch.iter().enumerate() {
            let message = &delivery.message;
            let event = match message.decode::<Event>() {
                Ok(event) => event,
                Err(e) => {
                    self.refuse(message, DeadLetterReason::Malformed, e.to_string());
                    handled[i] = Handled::Poison;
                    continue;
                }
            };
            match self.check.sender(message, &event, &epochs).await {
                Ok(Ok(_sender)) => {}
                Ok(Err(refusal)) => {
                    self.refuse(message, refusal.reason, refusal.detail);
                    handled[i] = Handled::Poison;
                    continue;
                }
                Err(e) if e.is_transient() => {
                    handled[i] = Handled::Unavailable;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(message_id = %message.id, error = %e, "could not check the sender of an event; will retry");
                    handled[i] = Handled::Retry;
                    continue;
                }
            }
            match event {
                Event::Status(report) => reports.push((i, message.id, report)),
                Event::CommandResult(result) => handled[i] = self.apply_result(&result).await,
                // Progress is for live watchers; the record is the status.
                Event::InstallProgress(_) => {}
            }
        }
        if !reports.is_empty() {
            for (i, outcome) in self.apply_reports(&reports).await {
                handled[i] = outcome;
            }
        }
        handled
    }

    /// Checks the reports against the transition table, in order, and applies the allowed ones
    /// in one store call. Returns what to do with each report's delivery (by batch position).
    async fn apply_reports(
        &self,
        reports: &[(usize, uuid::Uuid, StatusReport)],
    ) -> Vec<(usize, Handled)> {
        let mut entities: Vec<Entity> = reports.iter().map(|(_, _, r)| r.entity).collect();
        entities.sort_unstable_by_key(|e| match e {
            Entity::Worker(id) => (0, id.get()),
            Entity::Instance(id) => (1, id.get()),
        });
        entities.dedup();
        let current = match self.store.status.current_statuses(&entities).await {
            Ok(current) => current,
            Err(e) => {
                return reports
                    .iter()
                    .map(|(i, _, r)| (*i, store_failure(&e, r.entity)))
                    .collect();
            }
        };
        let mut status: HashMap<Entity, Status> = entities
            .iter()
            .zip(current)
            .filter_map(|(e, s)| Some((*e, s?)))
            .collect();
        let as_of = self.clock.now();
        let mut outcomes = Vec::with_capacity(reports.len());
        let mut changes = Vec::new();
        let mut positions = Vec::new();
        for (i, event_id, report) in reports {
            let Some(from) = status.get(&report.entity).copied() else {
                tracing::warn!(entity = %report.entity, "a status report for an unknown entity: dead-lettering it");
                outcomes.push((*i, Handled::Poison));
                continue;
            };
            if !can_transition(&report.entity, from, report.status) {
                tracing::warn!(entity = %report.entity, %from, to = %report.status, cause = ?report.cause, "refusing a forbidden status transition");
                outcomes.push((*i, Handled::Done));
                continue;
            }
            changes.push(change(*event_id, report, from, as_of));
            positions.push(*i);
            status.insert(report.entity, report.status);
        }
        if changes.is_empty() {
            return outcomes;
        }
        let applied = match self.store.status.apply_statuses(&changes).await {
            Ok(applied) => applied,
            Err(e) => {
                let handled = store_failure(&e, changes[0].entity);
                outcomes.extend(positions.iter().map(|i| (*i, handled)));
                return outcomes;
            }
        };
        for ((i, change), result) in positions.into_iter().zip(&changes).zip(applied) {
            let handled = match result {
                Ok(ApplyOutcome::Applied(event)) => {
                    tracing::info!(entity = %event.entity, from = %change.from, to = %event.status, cause = ?event.cause, "status");
                    self.metrics.status_events_processed(1);
                    Handled::Done
                }
                Ok(ApplyOutcome::Duplicate) => Handled::Done,
                // The status moved under us (another replica): read it again and retry.
                Err(StoreError::Conflict { .. }) => Handled::Retry,
                Err(e) => store_failure(&e, change.entity),
            };
            outcomes.push((i, handled));
        }
        outcomes
    }

    /// Records an event dead-lettered for `reason`.
    fn refuse(&self, message: &Message, reason: DeadLetterReason, detail: String) {
        self.dead_letters
            .record(message, reason, detail, self.clock.now());
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
            Ok(record) => {
                let latency = record.updated_at - record.envelope.issued_at;
                self.metrics
                    .command_finished(record.state, latency.to_std().unwrap_or_default());
                Handled::Done
            }
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

/// `first` and whatever else is waiting right now, up to [`BATCH`].
async fn take_waiting(consumer: &mut Box<dyn Consumer>, first: Delivery) -> Vec<Delivery> {
    let mut batch = vec![first];
    while batch.len() < BATCH {
        match consumer.next().now_or_never() {
            Some(Some(Ok(delivery))) => batch.push(delivery),
            _ => break,
        }
    }
    batch
}

/// The change a report makes to an entity whose status is `from`.
fn change(
    event_id: uuid::Uuid,
    report: &StatusReport,
    from: Status,
    as_of: chrono::DateTime<chrono::Utc>,
) -> StatusChange {
    let mut update = EntityUpdate {
        exit_code: report.exit_code,
        exit_signal: report.exit_signal,
        ..EntityUpdate::default()
    };
    if let Entity::Instance(_) = report.entity {
        update.restart_count = Some(report.restart_count);
        if from == Status::Created {
            update.started_at = Some(as_of);
        }
        if report.status == Status::Running {
            update.ready_at = Some(as_of);
        }
    }
    if report.status.is_terminal() {
        update.ended_at = Some(as_of);
    }
    StatusChange {
        event_id,
        entity: report.entity,
        from,
        to: report.status,
        cause: report.cause,
        detail: report.detail.clone(),
        as_of,
        reported_at: report.reported_at,
        update,
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
