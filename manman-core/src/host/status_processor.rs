//! [`StatusProcessor`]: events from `manman.events` into the status history, the current status
//! and the command records.
//!
//! Deliveries are taken in batches (whatever is waiting, up to [`BATCH`]): the status reports of a
//! batch are checked against the transition table in order — chaining the reports of one entity —
//! and written in one store call, so a busy host commits once per batch rather than once per
//! event.
//!
//! Host replicas consume the same queue, so one entity's reports may reach two replicas at once,
//! or come back requeued after a later one. A worker numbers each entity's reports
//! ([`Sequence`]: its epoch, and a counter from 1), and the processor applies them in that order:
//! a report at or below the entity's last applied sequence is a duplicate or overtaken (acked,
//! not applied); the next one is applied; one beyond the next is held back (requeued) until its
//! predecessor has been applied, by this replica or another — for at most [`HOLD_FOR`], then it
//! is applied anyway and the gap is logged (its predecessor may never come: a worker that could
//! not publish it gives up). The last applied sequence is stored with the status and the store
//! compares and sets both together, so two replicas never apply one entity's reports out of
//! order or twice. Reports without a sequence (older workers) are applied as they come.

use crate::bus::Bus;
use crate::command::CommandResult;
use crate::event::{Event, StatusReport};
use crate::host::sender_check::{Epochs, SenderCheck, answer_refusal};
use crate::host::{BusKeys, Consumption, DeadLetterReason, DeadLetters, Metrics};
use crate::id::WorkerId;
use crate::ports::{
    ApplyOutcome, BusError, Clock, Consumer, CurrentStatus, Delivery, EntityUpdate, Message,
    StatusChange, StoreError,
};
use crate::status::{Entity, Order, Sequence, Status, can_transition};
use crate::store::Store;
use futures::FutureExt;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Most deliveries handled together.
const BATCH: usize = 256;
/// Deliveries the broker may have sent and not yet seen settled: the next batches are already
/// on their way while one is handled, so that a busy queue is taken in full batches (with a
/// prefetch of one batch, each ack let only a few more in, and batches shrank to a few events).
const PREFETCH: u16 = 4 * BATCH as u16;
/// Recorded batches' events waiting to be passed on to the event streams.
const FORWARDING: usize = 16;
/// How many times a delivery is retried after a conflict or an unexpected store error before it
/// is dead-lettered. (An unavailable store is waited for instead, however long it takes.)
const MAX_DELIVERIES: u32 = 5;
/// First pause while the store is unavailable; it doubles up to the maximum.
const UNAVAILABLE_FIRST_PAUSE: Duration = Duration::from_millis(100);
/// Longest pause while the store is unavailable.
const UNAVAILABLE_MAX_PAUSE: Duration = Duration::from_secs(5);
/// Pause after a failed receive.
const RECEIVE_RETRY: Duration = Duration::from_secs(1);
/// Longest a numbered report is held back waiting for its predecessor (counted from the first
/// time this replica held it) before it is applied anyway, with the gap logged. Under a storm a
/// predecessor can sit seconds behind other replicas' prefetched batches; a predecessor lost for
/// good (the worker could not publish it) is rare, and heartbeats reconcile meanwhile.
const HOLD_FOR: Duration = Duration::from_secs(30);
/// Pause before held-back reports are requeued, so that they do not spin while their predecessor
/// is being applied elsewhere: a report is requeued at most about `HOLD_FOR / HOLD_PAUSE` times
/// by one replica.
const HOLD_PAUSE: Duration = Duration::from_millis(25);
/// Longest a numbered report keeps being requeued after conflicts (another replica changed its
/// entity meanwhile: read again and retry, however many times) before it counts as a failed
/// retry like any other and is dead-lettered after [`MAX_DELIVERIES`].
const CONFLICT_PATIENCE: Duration = Duration::from_secs(60);
/// Most held-back reports remembered; the oldest are forgotten first (and held afresh if they
/// come back).
const HELD_CAPACITY: usize = 10_000;
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
    held: Arc<Mutex<HeldBack>>,
    consumption: Consumption,
    keys: BusKeys,
}

/// A batch handled and not settled yet: its deliveries, what becomes of each, and the events it
/// recorded (by position).
#[derive(Debug)]
struct Recorded {
    batch: Vec<Delivery>,
    handled: Vec<Handled>,
    recorded: Vec<(usize, Event)>,
}

/// What became of one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handled {
    /// Done (or nothing to do): acknowledge.
    Done,
    /// Try again (a concurrent change): requeue, a bounded number of times.
    Retry,
    /// A numbered report whose predecessor has not been applied yet, or that met a concurrent
    /// change of its entity: requeue after [`HOLD_PAUSE`]. Bounded by time ([`HOLD_FOR`],
    /// [`CONFLICT_PATIENCE`]), not by the delivery count.
    Hold,
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
            keys: BusKeys::new(&store),
            store,
            bus,
            clock,
            metrics: Metrics::new(),
            dead_letters: DeadLetters::default(),
            held: Arc::default(),
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
        // What each batch recorded is passed on to the event streams by a task of its own, in
        // the order the batches were recorded, while this loop acks the batch and takes the
        // next: a report arriving meanwhile does not also wait for that publish's confirm. (A
        // batch is still acked before the next is taken, so that a busy queue is taken in full
        // batches: a loop that went on before its acks took smaller batches, and more store
        // round trips per event.) The task ends once this loop has dropped its sender and it
        // has passed on what it was given.
        let (forward, to_forward) = tokio::sync::mpsc::channel(FORWARDING);
        let forwarder = tokio::spawn(self.clone().forward_batches(to_forward));
        let outcome = 'subscribe: loop {
            let subscribed = tokio::select! {
                () = shutdown.cancelled() => break Ok(()),
                subscribed = self.bus.consume_status_events(PREFETCH) => subscribed,
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
                let recorded = self.record(batch, &shutdown).await;
                self.settle(recorded, &forward, &shutdown).await;
            }
        };
        drop(forward);
        if let Err(e) = forwarder.await {
            tracing::error!(error = %e, "status processor: its forwarding task failed");
        }
        self.consumption.not_consuming(match &outcome {
            Ok(()) => "the status processor stopped (the host is shutting down)".to_owned(),
            Err(e) => format!("the status processor stopped: {e}"),
        });
        outcome
    }

    /// Passes on what each batch recorded, in turn.
    async fn forward_batches(self, mut batches: tokio::sync::mpsc::Receiver<Vec<(usize, Event)>>) {
        while let Some(recorded) = batches.recv().await {
            self.forward(recorded).await;
        }
    }

    /// Handles a batch, waiting out an unavailable store: what becomes of each delivery, and
    /// what was recorded.
    async fn record(&self, batch: Vec<Delivery>, shutdown: &CancellationToken) -> Recorded {
        let mut pause = UNAVAILABLE_FIRST_PAUSE;
        // What was recorded, over every attempt (an attempt's recorded events are duplicates in
        // the next one, never recorded twice).
        let mut recorded = Vec::new();
        let handled = loop {
            let handled = self.handle(&batch, &mut recorded).await;
            if !handled.contains(&Handled::Unavailable) {
                break handled;
            }
            tracing::warn!(retry_in = ?pause, "status processor: the store is unavailable; holding {} events until it is back", batch.len());
            tokio::select! {
                // Shutting down: back to the queue, however often they were delivered.
                () = shutdown.cancelled() => break vec![Handled::Unavailable; batch.len()],
                () = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(UNAVAILABLE_MAX_PAUSE);
        };
        Recorded {
            batch,
            handled,
            recorded,
        }
    }

    /// Hands what a batch recorded to `forward`, then settles each of its deliveries.
    async fn settle(
        &self,
        Recorded {
            batch,
            handled,
            recorded,
        }: Recorded,
        forward: &tokio::sync::mpsc::Sender<Vec<(usize, Event)>>,
        shutdown: &CancellationToken,
    ) {
        if !recorded.is_empty() && forward.send(recorded).await.is_err() {
            tracing::error!(
                "status processor: its forwarding task is gone; recorded events are not passed to the event streams"
            );
        }
        if handled.contains(&Handled::Hold) {
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = tokio::time::sleep(HOLD_PAUSE) => {}
            }
        }
        // The recorded ones are acked together: their order does not matter, and one by one
        // each waited for the last to be written (a third of a busy batch's time on RabbitMQ).
        let mut done = Vec::new();
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
                Handled::Retry | Handled::Unavailable | Handled::Hold => delivery.requeue().await,
                Handled::Poison => delivery.dead_letter().await,
                Handled::Done => {
                    done.push(delivery);
                    continue;
                }
            };
            if let Err(e) = outcome {
                tracing::warn!(%message_id, error = %e, "status processor: could not settle a delivery");
            }
        }
        let acks = done.into_iter().map(|delivery| async move {
            let message_id = delivery.message.id;
            (message_id, delivery.ack().await)
        });
        for (message_id, outcome) in futures::future::join_all(acks).await {
            if let Err(e) = outcome {
                tracing::warn!(%message_id, error = %e, "status processor: could not settle a delivery");
            }
        }
    }

    /// Passes what was recorded on to every host's event hub (`manman.recorded`): one message
    /// for the batch, in its order, sealed with the hosts' key — what `/events` shows is what the
    /// store holds.
    /// A publish that fails is logged; the watchers' own streams end when their hub loses the
    /// bus.
    async fn forward(&self, mut recorded: Vec<(usize, Event)>) {
        if recorded.is_empty() {
            return;
        }
        recorded.sort_by_key(|(i, _)| *i);
        let key = match self.keys.host_key().await {
            Ok(key) => key,
            Err(e) => {
                tracing::warn!(error = %e, events = recorded.len(), "status processor: could not read the hosts' key; recorded events not passed to the event streams");
                return;
            }
        };
        let events: Vec<Event> = recorded.into_iter().map(|(_, event)| event).collect();
        if let Err(e) = self
            .bus
            .publish_recorded(&events, self.clock.now(), &key)
            .await
        {
            tracing::warn!(error = %e, events = events.len(), "status processor: recorded events were not passed to the event streams");
        }
    }

    /// What to do with each delivery of a batch, in order; what it recorded (and install
    /// progress, which is not recorded but believed) goes into `recorded`, by position.
    async fn handle(&self, batch: &[Delivery], recorded: &mut Vec<(usize, Event)>) -> Vec<Handled> {
        let mut handled = vec![Handled::Done; batch.len()];
        let messages: Vec<&Message> = batch.iter().map(|d| &d.message).collect();
        let events: Vec<Result<Event, BusError>> =
            messages.iter().map(|m| m.decode::<Event>()).collect();
        // The senders' registrations, and the entities' owners and statuses, read together.
        let senders = futures::future::try_join(
            self.check.epochs(&messages),
            self.check
                .read_current(events.iter().filter_map(|e| e.as_ref().ok())),
        );
        let (epochs, read) = match senders.await {
            Ok(found) => found,
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
        let mut results = Vec::new();
        for (i, (message, event)) in messages.iter().zip(events).enumerate() {
            let event = match event {
                Ok(Event::CommandResult(result)) => {
                    // Its sender is checked (a read of its command's record) with the results
                    // below, while the reports are applied.
                    results.push((i, *message, result));
                    continue;
                }
                Ok(event) => event,
                Err(e) => {
                    self.refuse(message, DeadLetterReason::Malformed, e.to_string());
                    handled[i] = Handled::Poison;
                    continue;
                }
            };
            if let Err(outcome) = self.checked_sender(message, &event, &epochs).await {
                handled[i] = outcome;
                continue;
            }
            match event {
                Event::Status(report) => reports.push((i, message.id, report)),
                // Progress is for live watchers; the record is the status. (Command results
                // were taken above.)
                progress => recorded.push((i, progress)),
            }
        }
        // Command records and statuses are apart: the results are checked and recorded while
        // the reports are applied.
        let results = async {
            let mut outcomes = Vec::with_capacity(results.len());
            for (i, message, result) in results {
                let sender = match self.check.result_sender(message, &result, &epochs).await {
                    Ok(Ok(sender)) => sender,
                    Ok(Err(refusal)) => {
                        self.refuse(message, refusal.reason, refusal.detail);
                        outcomes.push((i, Handled::Poison, None));
                        continue;
                    }
                    Err(e) => {
                        outcomes.push((i, check_failed(message, &e), None));
                        continue;
                    }
                };
                let (outcome, newly) = self.apply_result(message, sender, &result).await;
                outcomes.push((i, outcome, newly.then_some(Event::CommandResult(result))));
            }
            outcomes
        };
        let mut reports_recorded = Vec::new();
        let reports = async {
            if reports.is_empty() {
                return Vec::new();
            }
            self.apply_reports(&reports, read, &mut reports_recorded)
                .await
        };
        let (results, reports) = tokio::join!(results, reports);
        for (i, outcome, newly) in results {
            handled[i] = outcome;
            if let Some(event) = newly {
                recorded.push((i, event));
            }
        }
        for (i, outcome) in reports {
            handled[i] = outcome;
        }
        recorded.append(&mut reports_recorded);
        handled
    }

    /// Checks who sent `event` (its seal, its worker's registration, that the worker owns what
    /// it reports on); a refused event is dead-lettered with the reason. The delivery's outcome
    /// when it is not to be handled.
    async fn checked_sender(
        &self,
        message: &Message,
        event: &Event,
        epochs: &Epochs,
    ) -> Result<(), Handled> {
        match self.check.sender(message, event, epochs).await {
            Ok(Ok(_sender)) => Ok(()),
            Ok(Err(refusal)) => {
                self.refuse(message, refusal.reason, refusal.detail);
                Err(Handled::Poison)
            }
            Err(e) => Err(check_failed(message, &e)),
        }
    }

    /// Puts each entity's numbered reports in sequence, checks them against the last applied
    /// sequence and the transition table, and applies the allowed ones in one store call.
    /// Returns what to do with each report's delivery (by batch position).
    async fn apply_reports(
        &self,
        reports: &[(usize, uuid::Uuid, StatusReport)],
        mut read: HashMap<Entity, CurrentStatus>,
        recorded: &mut Vec<(usize, Event)>,
    ) -> Vec<(usize, Handled)> {
        let mut entities: Vec<Entity> = reports.iter().map(|(_, _, r)| r.entity).collect();
        entities.sort_unstable();
        entities.dedup();
        // The batch's entities were read with their senders; one the read did not find (it
        // does not exist, or was created since) is looked for once more.
        let unread: Vec<Entity> = entities
            .iter()
            .filter(|e| !read.contains_key(e))
            .copied()
            .collect();
        let current = if unread.is_empty() {
            Vec::new()
        } else {
            match self.store.status.current_statuses(&unread).await {
                Ok(current) => current,
                Err(e) => {
                    return reports
                        .iter()
                        .map(|(i, _, r)| (*i, store_failure(&e, r.entity)))
                        .collect();
                }
            }
        };
        read.extend(
            unread
                .into_iter()
                .zip(current)
                .filter_map(|(e, c)| Some((e, c?))),
        );
        let mut state: HashMap<Entity, Chain> = entities
            .iter()
            .filter_map(|e| Some((*e, Chain::from(read.remove(e)?))))
            .collect();
        // One entity's reports together, numbered ones in sequence (unnumbered ones first, in
        // the order they came).
        let mut order: Vec<&(usize, Uuid, StatusReport)> = reports.iter().collect();
        order.sort_by_key(|(_, _, r)| (r.entity, r.sequence));
        let as_of = self.clock.now();
        let now = Instant::now();
        let mut outcomes = Vec::with_capacity(reports.len());
        let mut changes = Vec::new();
        let mut positions = Vec::new();
        for (i, event_id, report) in order {
            let entity = report.entity;
            let Some(chain) = state.get_mut(&entity) else {
                tracing::warn!(%entity, "a status report for an unknown entity: dead-lettering it");
                outcomes.push((*i, Handled::Poison));
                continue;
            };
            if let Some(sequence) = report.sequence {
                match self.sequenced(*event_id, sequence, entity, chain, now) {
                    Some(handled) => {
                        outcomes.push((*i, handled));
                        continue;
                    }
                    // Its turn; the next one of this batch follows it even if the table refuses
                    // it (the store only asks that sequences grow).
                    None => chain.last = Some(sequence),
                }
            }
            if !can_transition(&entity, chain.status, report.status) {
                tracing::warn!(%entity, from = %chain.status, to = %report.status, cause = ?report.cause, sequence = ?report.sequence, "refusing a forbidden status transition");
                self.release(*event_id);
                outcomes.push((*i, Handled::Done));
                continue;
            }
            changes.push(change(*event_id, report, chain.status, as_of));
            positions.push((*i, report));
            chain.status = report.status;
        }
        if changes.is_empty() {
            return outcomes;
        }
        let applied = match self.store.status.apply_statuses(&changes).await {
            Ok(applied) => applied,
            Err(e) => {
                let handled = store_failure(&e, changes[0].entity);
                outcomes.extend(positions.iter().map(|(i, _)| (*i, handled)));
                return outcomes;
            }
        };
        for (((i, report), change), result) in positions.into_iter().zip(&changes).zip(applied) {
            let handled = match result {
                Ok(ApplyOutcome::Applied(event)) => {
                    tracing::info!(entity = %event.entity, from = %change.from, to = %event.status, cause = ?event.cause, sequence = ?change.sequence, "status");
                    self.metrics.status_events_processed(1);
                    self.release(change.event_id);
                    recorded.push((i, Event::Status(report.clone())));
                    Handled::Done
                }
                Ok(ApplyOutcome::Duplicate) => {
                    self.release(change.event_id);
                    Handled::Done
                }
                // The entity moved under us (another replica): read it again and retry. A
                // numbered report will find its place then, however often that takes.
                Err(StoreError::Conflict { .. }) => match change.sequence {
                    Some(_) if self.held_for(change.event_id, now) < CONFLICT_PATIENCE => {
                        Handled::Hold
                    }
                    _ => Handled::Retry,
                },
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

    /// What to do with a numbered report now, or `None` when it is its entity's turn to be
    /// applied.
    fn sequenced(
        &self,
        event_id: Uuid,
        sequence: Sequence,
        entity: Entity,
        chain: &mut Chain,
        now: Instant,
    ) -> Option<Handled> {
        if chain.holding {
            // An earlier report of this entity is held back: so is every later one.
            return Some(Handled::Hold);
        }
        match sequence.follows(chain.last) {
            Order::Next => None,
            Order::Stale => {
                tracing::debug!(%entity, %sequence, last = ?chain.last, "a duplicate or overtaken status report: not applied");
                self.release(event_id);
                Some(Handled::Done)
            }
            // An ended instance takes no report at all: nothing to wait for (the table refuses
            // it).
            Order::Gap if matches!(entity, Entity::Instance(_)) && chain.status.is_terminal() => {
                None
            }
            Order::Gap => {
                let held = self.held_for(event_id, now);
                if held < HOLD_FOR {
                    chain.holding = true;
                    return Some(Handled::Hold);
                }
                tracing::warn!(%entity, %sequence, last = ?chain.last, ?held, "applying a status report whose predecessor never came: a gap in the entity's history");
                None
            }
        }
    }

    /// How long this replica has held back the report `event_id` (zero the first time).
    fn held_for(&self, event_id: Uuid, now: Instant) -> Duration {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .since(event_id, now)
    }

    /// The report `event_id` is settled: forget it.
    fn release(&self, event_id: Uuid) {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .release(event_id);
    }

    /// Records `sender`'s command result, in one statement conditional on the command having
    /// been sent to `sender`; `true` when it moved the command on. When it did not, the command
    /// is read to tell a duplicate (answered before: acked) from a result about a command the
    /// host never sent, or sent to another worker (dead-lettered with the reason).
    async fn apply_result(
        &self,
        message: &Message,
        sender: WorkerId,
        result: &CommandResult,
    ) -> (Handled, bool) {
        let commands = &self.store.commands;
        let failed = |e: StoreError| {
            if e.is_transient() {
                return Handled::Unavailable;
            }
            tracing::error!(command_id = %result.command_id, error = %e, "could not record a command result");
            Handled::Retry
        };
        let answered = commands
            .answer_command(
                result.command_id,
                sender,
                result.outcome.into(),
                result.detail.as_deref(),
                self.clock.now(),
            )
            .await;
        match answered {
            Ok(Some(record)) => {
                let latency = record.updated_at - record.envelope.issued_at;
                self.metrics
                    .command_finished(record.state, latency.to_std().unwrap_or_default());
                (Handled::Done, true)
            }
            Ok(None) => {
                let record = commands.get_command(result.command_id).await;
                match answer_refusal(sender, result.command_id, record) {
                    // Its own command, final already: a duplicate result.
                    Ok(None) => (Handled::Done, false),
                    Ok(Some(refusal)) => {
                        self.refuse(message, refusal.reason, refusal.detail);
                        (Handled::Poison, false)
                    }
                    Err(e) => (failed(e), false),
                }
            }
            Err(e) => (failed(e), false),
        }
    }
}

/// An entity's status and last applied sequence while a batch is checked: each report allowed
/// moves it on.
#[derive(Debug)]
struct Chain {
    status: Status,
    last: Option<Sequence>,
    /// A report of this entity is held back in this batch.
    holding: bool,
}

impl From<CurrentStatus> for Chain {
    fn from(current: CurrentStatus) -> Self {
        Self {
            status: current.status,
            last: current.sequence,
            holding: false,
        }
    }
}

/// When this replica first held back each report it holds (at most [`HELD_CAPACITY`]).
#[derive(Debug, Default)]
struct HeldBack {
    since: HashMap<Uuid, Instant>,
    order: VecDeque<Uuid>,
}

impl HeldBack {
    /// How long `id` has been held (from now on, the first time).
    fn since(&mut self, id: Uuid, now: Instant) -> Duration {
        if let Some(since) = self.since.get(&id) {
            return now.saturating_duration_since(*since);
        }
        self.since.insert(id, now);
        self.order.push_back(id);
        if self.order.len() > HELD_CAPACITY
            && let Some(oldest) = self.order.pop_front()
        {
            self.since.remove(&oldest);
        }
        Duration::ZERO
    }

    fn release(&mut self, id: Uuid) {
        self.since.remove(&id);
    }
}

/// What to do with a delivery whose sender could not be checked.
fn check_failed(message: &Message, error: &StoreError) -> Handled {
    if error.is_transient() {
        return Handled::Unavailable;
    }
    tracing::warn!(message_id = %message.id, error = %error, "could not check the sender of an event; will retry");
    Handled::Retry
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
        sequence: report.sequence,
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

#[cfg(all(test, feature = "memory"))]
mod tests {
    use super::*;
    use crate::id::InstanceId;
    use crate::memory::MemoryStore;
    use crate::ports::SystemClock;
    use crate::status::Cause;
    use crate::worker::WorkerRegistration;
    use chrono::Utc;

    /// A processor running on a memory store and bus, and one instance in it.
    struct Running {
        store: Store,
        bus: Bus,
        instance: InstanceId,
        worker: crate::id::WorkerId,
        epoch: i64,
        dead_letters: DeadLetters,
        shutdown: CancellationToken,
        task: tokio::task::JoinHandle<Result<(), BusError>>,
    }

    /// Starts a processor on `store` and `bus`, recording what it refuses in `dead_letters`.
    fn spawn_processor(
        store: &Store,
        bus: &Bus,
        dead_letters: &DeadLetters,
    ) -> (
        CancellationToken,
        tokio::task::JoinHandle<Result<(), BusError>>,
    ) {
        let processor = StatusProcessor::new(store.clone(), bus.clone(), Arc::new(SystemClock))
            .with_dead_letters(dead_letters.clone());
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let task = tokio::spawn(async move { processor.run(token).await });
        (shutdown, task)
    }

    impl Running {
        async fn start() -> Self {
            Self::start_on(Store::from_adapter(MemoryStore::new())).await
        }

        /// A processor on `store` (a memory store, or one wrapping it).
        async fn start_on(store: Store) -> Self {
            let bus = Bus::in_memory().await.expect("bus");
            let (instance, worker) = crate::testing::fixture::instance(&store).await;
            let instance = instance.id;
            let dead_letters = DeadLetters::default();
            let (shutdown, task) = spawn_processor(&store, &bus, &dead_letters);
            Self {
                store,
                bus,
                instance,
                worker: worker.id,
                epoch: worker.epoch,
                dead_letters,
                shutdown,
                task,
            }
        }

        /// Stops the processor (it must stop cleanly) and starts another on the same store and
        /// bus: what the first left in the queue, the second takes.
        async fn restart(&mut self) {
            self.shutdown.cancel();
            (&mut self.task).await.expect("join").expect("processor");
            let (shutdown, task) = spawn_processor(&self.store, &self.bus, &self.dead_letters);
            self.shutdown = shutdown;
            self.task = task;
        }

        /// The key of the worker's current registration.
        async fn key(&self) -> crate::signing::WorkerKey {
            BusKeys::new(&self.store)
                .worker_key(self.worker, self.epoch)
                .await
                .expect("key")
        }

        /// Publishes the instance's report of `status`, numbered `counter` (unnumbered: `None`).
        async fn report(&self, status: Status, counter: Option<i64>, detail: &str) {
            let mut report = StatusReport::new(
                Entity::Instance(self.instance),
                status,
                Cause::Ready,
                Utc::now(),
            )
            .with_detail(detail);
            report.sequence = counter.map(|c| Sequence::new(self.epoch, c));
            self.publish(report).await;
        }

        /// Publishes `report` sealed by the worker's registration of its sequence's epoch (the
        /// current one when it has none).
        async fn publish(&self, report: StatusReport) {
            let epoch = match report.sequence {
                Some(sequence) => sequence.epoch,
                None => {
                    self.store
                        .workers
                        .get_worker(self.worker)
                        .await
                        .expect("worker")
                        .epoch
                }
            };
            let key = BusKeys::new(&self.store)
                .worker_key(self.worker, epoch)
                .await
                .expect("key");
            self.bus
                .publish_event(&Event::Status(report), Utc::now(), &key)
                .await
                .expect("publish");
        }

        /// Registers the worker again: a new epoch.
        async fn register_again(&self) {
            let name = self
                .store
                .workers
                .get_worker(self.worker)
                .await
                .expect("worker")
                .name;
            self.store
                .workers
                .register_worker(
                    &WorkerRegistration {
                        name,
                        version: "1".into(),
                        capacity: 4,
                        labels: Default::default(),
                        taken_up: Vec::new(),
                    },
                    Utc::now(),
                )
                .await
                .expect("register");
        }

        /// The details of the instance's history after `created`, once it has `rows` of them (or
        /// after 30 s).
        async fn history(&self, rows: usize) -> Vec<String> {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let history = self
                    .store
                    .status
                    .status_history(Entity::Instance(self.instance), None, 100)
                    .await
                    .expect("history");
                let details: Vec<String> = history
                    .iter()
                    .skip(1)
                    .map(|e| e.detail.clone().unwrap_or_default())
                    .collect();
                if details.len() >= rows || Instant::now() > deadline {
                    return details;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }

        async fn stop(self) {
            self.shutdown.cancel();
            self.task.await.expect("join").expect("processor");
        }
    }

    #[tokio::test]
    async fn what_is_recorded_and_only_that_is_passed_to_the_event_streams() {
        let running = Running::start().await;
        let mut recorded = running.bus.watch_recorded().await.expect("watch");
        let host = BusKeys::new(&running.store).host_key().await.expect("key");
        // Applied; then refused by the table (back to created); then the first again (a
        // duplicate).
        running
            .report(Status::Initializing, Some(1), "installing")
            .await;
        running.report(Status::Created, Some(2), "backwards").await;
        running
            .report(Status::Initializing, Some(1), "installing")
            .await;
        let delivery = tokio::time::timeout(Duration::from_secs(10), recorded.next())
            .await
            .expect("in time")
            .expect("open")
            .expect("a message");
        host.check(crate::signing::Purpose::Recorded, &delivery.message)
            .expect("sealed by the host");
        let events: Vec<Event> = delivery.message.decode().expect("events");
        let [Event::Status(report)] = &events[..] else {
            panic!("one status: {events:?}");
        };
        assert_eq!(report.detail.as_deref(), Some("installing"));
        // Passed on after its commit: the store holds it already.
        let stored = running
            .store
            .instances
            .get_instance(running.instance)
            .await
            .expect("get");
        assert_eq!(stored.status, Status::Initializing);
        delivery.ack().await.expect("ack");
        assert!(
            tokio::time::timeout(Duration::from_millis(300), recorded.next())
                .await
                .is_err(),
            "neither the refused report nor the duplicate"
        );
        running.stop().await;
    }

    #[tokio::test]
    async fn reports_that_arrive_out_of_order_are_applied_in_order() {
        let running = Running::start().await;
        // The third arrives first: held back until the first and second have been applied.
        running.report(Status::Running, Some(3), "three").await;
        tokio::time::sleep(HOLD_PAUSE * 4).await;
        assert_eq!(running.history(0).await, Vec::<String>::new(), "held back");
        running.report(Status::Initializing, Some(2), "two").await;
        running.report(Status::Initializing, Some(1), "one").await;
        assert_eq!(running.history(3).await, ["one", "two", "three"]);
        running.stop().await;
    }

    #[tokio::test]
    async fn a_report_published_twice_is_applied_once_and_an_overtaken_one_never() {
        let running = Running::start().await;
        running.report(Status::Initializing, Some(1), "one").await;
        running
            .report(Status::Initializing, Some(1), "one again")
            .await;
        running.report(Status::Running, Some(2), "two").await;
        assert_eq!(running.history(2).await, ["one", "two"]);
        // Initializing → initializing is a legal restart: only the sequence refuses these.
        running
            .report(Status::Initializing, Some(2), "two again")
            .await;
        running.report(Status::Initializing, Some(3), "three").await;
        running
            .report(Status::Initializing, Some(1), "one, late")
            .await;
        // Refused reports are settled at once: once the next one is applied, they are done.
        running.report(Status::Running, Some(4), "four").await;
        assert_eq!(running.history(4).await, ["one", "two", "three", "four"]);
        running.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_report_whose_predecessor_never_comes_is_applied_after_the_hold() {
        let running = Running::start().await;
        running.report(Status::Initializing, Some(1), "one").await;
        assert_eq!(running.history(1).await, ["one"]);
        // The second was never published (the worker could not); the third waits for it, then
        // is applied with the gap; the second, if it comes after all, is stale.
        running.report(Status::Running, Some(3), "three").await;
        tokio::time::sleep(HOLD_FOR / 2).await;
        assert_eq!(running.history(1).await, ["one"], "held back");
        tokio::time::sleep(HOLD_FOR).await;
        assert_eq!(running.history(2).await, ["one", "three"]);
        running
            .report(Status::Initializing, Some(2), "two, late")
            .await;
        running.report(Status::Initializing, Some(4), "four").await;
        assert_eq!(running.history(3).await, ["one", "three", "four"]);
        running.stop().await;
    }

    #[tokio::test]
    async fn a_new_epoch_starts_over_and_unnumbered_reports_are_applied_as_they_come() {
        let running = Running::start().await;
        running.report(Status::Initializing, Some(1), "one").await;
        running.report(Status::Running, Some(2), "two").await;
        assert_eq!(running.history(2).await, ["one", "two"]);
        let mut next_epoch = StatusReport::new(
            Entity::Instance(running.instance),
            Status::Initializing,
            Cause::Ready,
            Utc::now(),
        )
        .with_detail("epoch two, one")
        .with_sequence(Sequence::new(running.epoch + 1, 1));
        running.register_again().await;
        running.publish(next_epoch.clone()).await;
        assert_eq!(running.history(3).await, ["one", "two", "epoch two, one"]);
        running.report(Status::Running, None, "unnumbered").await;
        assert_eq!(
            running.history(4).await,
            ["one", "two", "epoch two, one", "unnumbered"]
        );
        // The old epoch's next report is refused now (sealed by a superseded registration).
        next_epoch.sequence = Some(Sequence::new(running.epoch, 3));
        next_epoch.status = Status::Complete;
        next_epoch.detail = Some("old epoch, three".into());
        running.publish(next_epoch.clone()).await;
        next_epoch.sequence = Some(Sequence::new(running.epoch + 1, 2));
        next_epoch.detail = Some("epoch two, two".into());
        running.publish(next_epoch).await;
        assert_eq!(
            running.history(5).await,
            [
                "one",
                "two",
                "epoch two, one",
                "unnumbered",
                "epoch two, two"
            ]
        );
        running.stop().await;
    }

    /// The memory store's status repository, made unavailable at will: while `down`, every
    /// call fails with `Unavailable` (and is counted, with when); each batch it writes is
    /// counted too.
    #[derive(Debug)]
    struct Faulty {
        inner: Arc<dyn crate::ports::StatusRepository>,
        down: std::sync::atomic::AtomicBool,
        refused: Mutex<Vec<Instant>>,
        batches: Mutex<Vec<usize>>,
        reads: Mutex<Vec<Vec<Entity>>>,
    }

    impl Faulty {
        /// Wraps the status repository of `store`; returns the store using the wrapper.
        fn wrap(store: Store) -> (Store, Arc<Self>) {
            let faulty = Arc::new(Self {
                inner: Arc::clone(&store.status),
                down: false.into(),
                refused: Mutex::default(),
                batches: Mutex::default(),
                reads: Mutex::default(),
            });
            let store = Store {
                status: faulty.clone(),
                ..store
            };
            (store, faulty)
        }

        fn set_down(&self, down: bool) {
            self.down.store(down, std::sync::atomic::Ordering::SeqCst);
        }

        fn check(&self) -> Result<(), StoreError> {
            if self.down.load(std::sync::atomic::Ordering::SeqCst) {
                self.refused.lock().expect("lock").push(Instant::now());
                return Err(StoreError::Unavailable {
                    source: "the test took the store down".into(),
                });
            }
            Ok(())
        }

        /// When calls were refused, one entry per instant (a batch may call more than once).
        fn attempts(&self) -> Vec<Instant> {
            let mut at = self.refused.lock().expect("lock").clone();
            at.dedup();
            at
        }

        fn batches(&self) -> Vec<usize> {
            self.batches.lock().expect("lock").clone()
        }

        /// The entities each `current_statuses` call asked for.
        fn reads(&self) -> Vec<Vec<Entity>> {
            self.reads.lock().expect("lock").clone()
        }
    }

    #[async_trait::async_trait]
    impl crate::ports::StatusRepository for Faulty {
        async fn apply_status(&self, change: &StatusChange) -> Result<ApplyOutcome, StoreError> {
            self.check()?;
            self.inner.apply_status(change).await
        }

        async fn status_history(
            &self,
            entity: Entity,
            after: Option<i64>,
            limit: u32,
        ) -> Result<Vec<crate::status::StatusEvent>, StoreError> {
            self.check()?;
            self.inner.status_history(entity, after, limit).await
        }

        async fn apply_statuses(
            &self,
            changes: &[StatusChange],
        ) -> Result<Vec<Result<ApplyOutcome, StoreError>>, StoreError> {
            self.check()?;
            self.batches.lock().expect("lock").push(changes.len());
            self.inner.apply_statuses(changes).await
        }

        async fn current_statuses(
            &self,
            entities: &[Entity],
        ) -> Result<Vec<Option<CurrentStatus>>, StoreError> {
            self.check()?;
            self.reads.lock().expect("lock").push(entities.to_vec());
            self.inner.current_statuses(entities).await
        }

        async fn prune_history(
            &self,
            before: chrono::DateTime<Utc>,
            limit: u32,
        ) -> Result<u64, StoreError> {
            self.check()?;
            self.inner.prune_history(before, limit).await
        }
    }

    #[tokio::test(start_paused = true)]
    async fn many_events_are_applied_in_batches_and_all_recorded() {
        let (store, faulty) = Faulty::wrap(Store::from_adapter(MemoryStore::new()));
        let bus = Bus::in_memory().await.expect("bus");
        let worker = crate::testing::fixture::worker(&store).await;
        let count = BATCH + 44;
        let instances = crate::testing::fixture::instances_on(&store, &worker, count).await;
        let key = BusKeys::new(&store)
            .worker_key(worker.id, worker.epoch)
            .await
            .expect("key");
        // All waiting before the processor starts: it takes them in as few batches as BATCH
        // allows.
        for instance in &instances {
            let report = StatusReport::new(
                Entity::Instance(instance.id),
                Status::Initializing,
                Cause::Spawned,
                Utc::now(),
            )
            .with_sequence(Sequence::new(worker.epoch, 1));
            bus.publish_event(&Event::Status(report), Utc::now(), &key)
                .await
                .expect("publish");
        }
        let dead_letters = DeadLetters::default();
        let (shutdown, task) = spawn_processor(&store, &bus, &dead_letters);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let counts = store.instances.count_by_status().await.expect("counts");
            if counts.contains(&(Status::Initializing, count as u64)) {
                break;
            }
            assert!(Instant::now() < deadline, "not all recorded: {counts:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let batches = faulty.batches();
        assert_eq!(
            batches.iter().sum::<usize>(),
            count,
            "each once: {batches:?}"
        );
        assert_eq!(
            batches,
            [BATCH, count - BATCH],
            "one store call per batch of at most {BATCH}"
        );
        // The first report of a new instance: its status is read once, with its owner, not
        // again to apply the report.
        let reads = faulty.reads();
        let mut read: Vec<Entity> = reads.iter().flatten().copied().collect();
        read.sort_unstable();
        read.dedup();
        assert_eq!(read.len(), count, "every instance read: {reads:?}");
        assert_eq!(
            reads.iter().map(Vec::len).sum::<usize>(),
            count,
            "each instance's status read once: {reads:?}"
        );
        for instance in &instances {
            let history = store
                .status
                .status_history(Entity::Instance(instance.id), None, 10)
                .await
                .expect("history");
            assert_eq!(history.len(), 2, "created, then initializing: {history:?}");
        }
        assert!(dead_letters.recent().is_empty(), "nothing refused");
        shutdown.cancel();
        task.await.expect("join").expect("processor");
    }

    #[tokio::test(start_paused = true)]
    async fn poison_is_dead_lettered_and_the_processor_goes_on() {
        let running = Running::start().await;
        let mut dead = running
            .bus
            .consume_dead_letters(10)
            .await
            .expect("dead letters");
        // A body that does not parse, sealed by the worker: malformed.
        let mut malformed = Message::json("status", &"not an event", Utc::now()).expect("json");
        running
            .key()
            .await
            .seal(crate::signing::Purpose::Event, &mut malformed);
        // A report nobody sealed: unsigned.
        let report = StatusReport::new(
            Entity::Instance(running.instance),
            Status::Crashed,
            Cause::Exited,
            Utc::now(),
        );
        let unsigned = Message::json("status", &Event::Status(report), Utc::now()).expect("json");
        let exchange = running.bus.topology().events_exchange();
        for message in [malformed.clone(), unsigned.clone()] {
            running
                .bus
                .publisher()
                .publish(&exchange, "", message)
                .await
                .expect("publish");
        }
        running.report(Status::Initializing, Some(1), "one").await;
        assert_eq!(
            running.history(1).await,
            ["one"],
            "applied after the poison"
        );

        let mut refused: Vec<(Uuid, DeadLetterReason)> = running
            .dead_letters
            .recent()
            .into_iter()
            .map(|d| (d.message_id, d.reason))
            .collect();
        refused.sort_by_key(|(id, _)| *id);
        let mut expected = vec![
            (malformed.id, DeadLetterReason::Malformed),
            (unsigned.id, DeadLetterReason::Unsigned),
        ];
        expected.sort_by_key(|(id, _)| *id);
        assert_eq!(refused, expected, "each recorded with its reason");
        let mut in_queue = Vec::new();
        for _ in 0..2 {
            let delivery = tokio::time::timeout(Duration::from_secs(5), dead.next())
                .await
                .expect("a dead letter")
                .expect("open")
                .expect("delivery");
            in_queue.push(delivery.message.id);
            delivery.ack().await.expect("ack");
        }
        in_queue.sort();
        let mut ids = vec![malformed.id, unsigned.id];
        ids.sort();
        assert_eq!(in_queue, ids, "both in the dead-letter queue");

        assert!(!running.task.is_finished(), "the processor goes on");
        running.report(Status::Running, Some(2), "two").await;
        assert_eq!(running.history(2).await, ["one", "two"]);
        running.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn an_unavailable_store_is_waited_for_with_backoff_and_nothing_is_lost() {
        let (store, faulty) = Faulty::wrap(Store::from_adapter(MemoryStore::new()));
        let running = Running::start_on(store).await;
        faulty.set_down(true);
        running.report(Status::Initializing, Some(1), "one").await;
        running.report(Status::Running, Some(2), "two").await;
        tokio::time::sleep(Duration::from_secs(10)).await;

        let attempts = faulty.attempts();
        let pauses: Vec<Duration> = attempts.windows(2).map(|w| w[1] - w[0]).collect();
        let expected: Vec<Duration> = [100, 200, 400, 800, 1_600, 3_200]
            .into_iter()
            .map(Duration::from_millis)
            .collect();
        assert!(
            pauses.len() >= expected.len() && pauses[..expected.len()] == expected[..],
            "retried after 100 ms doubling: {pauses:?}"
        );
        assert!(
            pauses.iter().all(|p| *p <= UNAVAILABLE_MAX_PAUSE),
            "never more than {UNAVAILABLE_MAX_PAUSE:?} apart: {pauses:?}"
        );
        let written = faulty
            .inner
            .status_history(Entity::Instance(running.instance), None, 10)
            .await
            .expect("history");
        assert_eq!(written.len(), 1, "nothing written while down: {written:?}");
        assert!(
            !running.task.is_finished(),
            "the processor waits, it does not stop"
        );

        faulty.set_down(false);
        assert_eq!(running.history(2).await, ["one", "two"], "none lost");
        assert!(
            running.dead_letters.recent().is_empty(),
            "none dead-lettered"
        );
        running.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn events_held_for_an_unavailable_store_go_back_to_the_queue_at_shutdown() {
        let (store, faulty) = Faulty::wrap(Store::from_adapter(MemoryStore::new()));
        let mut running = Running::start_on(store).await;
        faulty.set_down(true);
        running.report(Status::Initializing, Some(1), "one").await;
        running.report(Status::Running, Some(2), "two").await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!faulty.attempts().is_empty(), "the store was asked");
        // Stopped while the store is down: the events are requeued, whatever their count.
        running.restart().await;
        faulty.set_down(false);
        assert_eq!(running.history(2).await, ["one", "two"], "none lost");
        assert!(
            running.dead_letters.recent().is_empty(),
            "none dead-lettered"
        );
        running.stop().await;
    }
}
