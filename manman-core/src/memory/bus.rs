//! [`MemoryBus`]: exchanges (direct, fanout, topic), queues, prefetch, ack, requeue,
//! dead-lettering, per-message expiry and queue length limits (drop the oldest), in one
//! process.

use crate::ports::{
    Acker, BusError, Consumer, Delivery, ExchangeKind, Message, MessagePublisher,
    MessageSubscriber, QueueSpec,
};
use async_trait::async_trait;
use chrono::Utc;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;

/// An in-process message bus with AMQP semantics.
///
/// Cloning shares the bus. Messages are kept until acknowledged; a delivery dropped without
/// being settled is requeued, as when a consumer's channel closes.
#[derive(Debug, Clone, Default)]
pub struct MemoryBus {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    exchanges: HashMap<String, Exchange>,
    queues: HashMap<String, Queue>,
    next_temporary: u64,
}

#[derive(Debug)]
struct Exchange {
    kind: ExchangeKind,
    bindings: Vec<(String, String)>,
}

#[derive(Debug)]
struct Queue {
    temporary: bool,
    dead_letter_exchange: Option<String>,
    max_length: Option<u32>,
    ready: VecDeque<Queued>,
    notify: Arc<Notify>,
}

#[derive(Debug, Clone)]
struct Queued {
    message: Message,
    routing_key: String,
    delivery_count: u32,
}

impl MemoryBus {
    /// An empty bus: no exchanges, no queues.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// How many messages wait in `queue` (not counting unsettled deliveries).
    pub fn queue_len(&self, queue: &str) -> Option<usize> {
        self.lock().queues.get(queue).map(|q| q.ready.len())
    }

    /// Deletes `queue` with its messages and bindings, as an operator (`rabbitmqctl
    /// delete_queue`) or another client may do on a broker: its consumers end (`next` answers
    /// `None`), also once a queue of the same name is declared again. `false` when there was no
    /// such queue.
    pub fn delete_queue(&self, queue: &str) -> bool {
        let mut state = self.lock();
        let existed = state.queues.contains_key(queue);
        state.delete_queue(queue);
        existed
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panic while holding the lock leaves consistent data behind (every change is a single
    // push or pop), so a poisoned lock is still usable.
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl State {
    /// The queues `routing_key` reaches through `exchange`.
    fn route(&self, exchange: &str, routing_key: &str) -> Result<Vec<String>, BusError> {
        let ex = self
            .exchanges
            .get(exchange)
            .ok_or_else(|| BusError::NotFound {
                what: format!("exchange {exchange:?}"),
            })?;
        let mut queues: Vec<String> = ex
            .bindings
            .iter()
            .filter(|(_, key)| match ex.kind {
                ExchangeKind::Fanout => true,
                ExchangeKind::Direct => key == routing_key,
                ExchangeKind::Topic => topic_matches(key, routing_key),
            })
            .map(|(queue, _)| queue.clone())
            .collect();
        // A queue bound by several matching keys still gets one copy.
        queues.sort_unstable();
        queues.dedup();
        Ok(queues)
    }

    fn enqueue(&mut self, queue: &str, item: Queued) {
        let Some(q) = self.queues.get_mut(queue) else {
            return;
        };
        q.ready.push_back(item);
        q.notify.notify_waiters();
        // Over its length limit, the queue drops its oldest (AMQP `x-overflow: drop-head`).
        let limit = q.max_length.map_or(usize::MAX, |n| n as usize);
        let dropped: Vec<Queued> = q
            .ready
            .drain(..q.ready.len().saturating_sub(limit))
            .collect();
        for item in &dropped {
            self.dead_letter_overflow(queue, item);
        }
    }

    /// Dead-letters a message a full queue dropped, as [`State::dead_letter`] does, but never
    /// back into that queue (a broker drops a dead letter that would cycle).
    fn dead_letter_overflow(&mut self, queue: &str, item: &Queued) {
        let Some(dlx) = self
            .queues
            .get(queue)
            .and_then(|q| q.dead_letter_exchange.clone())
        else {
            return;
        };
        for target in self.route(&dlx, &item.routing_key).unwrap_or_default() {
            if target != queue {
                let mut copy = item.clone();
                copy.delivery_count = 0;
                copy.message.expires_at = None;
                self.enqueue(&target, copy);
            }
        }
    }

    /// Sends a message to a queue's dead-letter exchange (dropped when it has none or the
    /// exchange routes nowhere, as AMQP does).
    fn dead_letter(&mut self, queue: &str, item: &Queued) {
        let Some(dlx) = self
            .queues
            .get(queue)
            .and_then(|q| q.dead_letter_exchange.clone())
        else {
            tracing::warn!(queue, message_id = %item.message.id, "dropping a dead letter: the queue has no dead-letter exchange");
            return;
        };
        match self.route(&dlx, &item.routing_key) {
            Ok(targets) => {
                for target in targets {
                    let mut copy = item.clone();
                    copy.delivery_count = 0;
                    // Expiry applied once; a dead letter does not expire again.
                    copy.message.expires_at = None;
                    self.enqueue(&target, copy);
                }
            }
            Err(e) => {
                tracing::warn!(queue, message_id = %item.message.id, error = %e, "dropping a dead letter")
            }
        }
    }

    /// Dead-letters the expired messages at the head of a queue.
    fn expire_head(&mut self, queue: &str) {
        let now = Utc::now();
        loop {
            let Some(q) = self.queues.get_mut(queue) else {
                return;
            };
            let expired = q
                .ready
                .front()
                .and_then(|item| item.message.expires_at)
                .is_some_and(|at| at <= now);
            if !expired {
                return;
            }
            let item = q.ready.pop_front().expect("checked non-empty");
            self.dead_letter(queue, &item);
        }
    }

    fn delete_queue(&mut self, queue: &str) {
        if let Some(q) = self.queues.remove(queue) {
            q.notify.notify_waiters();
        }
        for exchange in self.exchanges.values_mut() {
            exchange.bindings.retain(|(q, _)| q != queue);
        }
    }
}

/// Expires the heads of `queues` at `at`, as a broker does without any consumer. The timer task
/// holds only a weak reference: it ends at `at`, or at once when the bus is gone.
fn schedule_expiry(state: &Arc<Mutex<State>>, queues: Vec<String>, at: chrono::DateTime<Utc>) {
    let weak = Arc::downgrade(state);
    let wait = (at - Utc::now()).to_std().unwrap_or_default();
    tokio::spawn(async move {
        tokio::time::sleep(wait).await;
        if let Some(state) = weak.upgrade() {
            let mut state = lock(&state);
            for queue in &queues {
                state.expire_head(queue);
            }
        }
    });
}

/// AMQP topic matching: words split by `.`, `*` matches one word, `#` zero or more.
fn topic_matches(pattern: &str, key: &str) -> bool {
    fn go(p: &[&str], k: &[&str]) -> bool {
        match (p.first(), k.first()) {
            (None, None) => true,
            (Some(&"#"), _) => go(&p[1..], k) || (!k.is_empty() && go(p, &k[1..])),
            (Some(&"*"), Some(_)) => go(&p[1..], &k[1..]),
            (Some(word), Some(key_word)) => word == key_word && go(&p[1..], &k[1..]),
            _ => false,
        }
    }
    let p: Vec<&str> = pattern.split('.').collect();
    let k: Vec<&str> = key.split('.').collect();
    go(&p, &k)
}

#[async_trait]
impl MessagePublisher for MemoryBus {
    async fn declare_exchange(&self, name: &str, kind: ExchangeKind) -> Result<(), BusError> {
        let mut state = self.lock();
        match state.exchanges.get(name) {
            Some(existing) if existing.kind != kind => Err(BusError::Conflict {
                what: format!("exchange {name:?}"),
                detail: format!("exists as {:?}, declared as {kind:?}", existing.kind),
            }),
            Some(_) => Ok(()),
            None => {
                state.exchanges.insert(
                    name.to_owned(),
                    Exchange {
                        kind,
                        bindings: Vec::new(),
                    },
                );
                Ok(())
            }
        }
    }

    async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        message: Message,
    ) -> Result<(), BusError> {
        let mut state = self.lock();
        let targets = state.route(exchange, routing_key)?;
        if targets.is_empty() {
            return Err(BusError::Unroutable {
                message_id: message.id,
                exchange: exchange.to_owned(),
                routing_key: routing_key.to_owned(),
            });
        }
        for target in &targets {
            state.enqueue(
                target,
                Queued {
                    message: message.clone(),
                    routing_key: routing_key.to_owned(),
                    delivery_count: 0,
                },
            );
            state.expire_head(target);
        }
        if let Some(at) = message.expires_at {
            schedule_expiry(&self.state, targets, at);
        }
        Ok(())
    }
}

#[async_trait]
impl MessageSubscriber for MemoryBus {
    async fn declare_queue(&self, spec: &QueueSpec) -> Result<String, BusError> {
        let mut state = self.lock();
        let name = if spec.name.is_empty() {
            state.next_temporary += 1;
            format!("amq.gen-memory-{}", state.next_temporary)
        } else {
            spec.name.clone()
        };
        if let Some(existing) = state.queues.get(&name) {
            if existing.temporary != spec.temporary
                || existing.dead_letter_exchange != spec.dead_letter_exchange
                || existing.max_length != spec.max_length
            {
                return Err(BusError::Conflict {
                    what: format!("queue {name:?}"),
                    detail: format!(
                        "exists as temporary={} dead_letter_exchange={:?} max_length={:?}, declared as temporary={} dead_letter_exchange={:?} max_length={:?}: delete the queue or declare it the same way",
                        existing.temporary,
                        existing.dead_letter_exchange,
                        existing.max_length,
                        spec.temporary,
                        spec.dead_letter_exchange,
                        spec.max_length
                    ),
                });
            }
            return Ok(name);
        }
        state.queues.insert(
            name.clone(),
            Queue {
                temporary: spec.temporary,
                dead_letter_exchange: spec.dead_letter_exchange.clone(),
                max_length: spec.max_length,
                ready: VecDeque::new(),
                notify: Arc::new(Notify::new()),
            },
        );
        Ok(name)
    }

    async fn bind_queue(
        &self,
        queue: &str,
        exchange: &str,
        routing_key: &str,
    ) -> Result<(), BusError> {
        let mut state = self.lock();
        if !state.queues.contains_key(queue) {
            return Err(BusError::NotFound {
                what: format!("queue {queue:?}"),
            });
        }
        let ex = state
            .exchanges
            .get_mut(exchange)
            .ok_or_else(|| BusError::NotFound {
                what: format!("exchange {exchange:?}"),
            })?;
        let binding = (queue.to_owned(), routing_key.to_owned());
        if !ex.bindings.contains(&binding) {
            ex.bindings.push(binding);
        }
        Ok(())
    }

    async fn consume(&self, queue: &str, prefetch: u16) -> Result<Box<dyn Consumer>, BusError> {
        let state = self.lock();
        let q = state.queues.get(queue).ok_or_else(|| BusError::NotFound {
            what: format!("queue {queue:?}"),
        })?;
        Ok(Box::new(MemoryConsumer {
            state: Arc::clone(&self.state),
            queue: queue.to_owned(),
            temporary: q.temporary,
            // AMQP: a prefetch of 0 means no limit.
            prefetch: if prefetch == 0 {
                usize::MAX
            } else {
                usize::from(prefetch)
            },
            unsettled: Arc::new(AtomicUsize::new(0)),
            notify: Arc::clone(&q.notify),
        }))
    }
}

/// Consumes one queue of a [`MemoryBus`].
#[derive(Debug)]
struct MemoryConsumer {
    state: Arc<Mutex<State>>,
    queue: String,
    temporary: bool,
    prefetch: usize,
    unsettled: Arc<AtomicUsize>,
    notify: Arc<Notify>,
}

impl MemoryConsumer {
    /// A delivery if one is ready and the prefetch allows; `Err` when the queue is gone.
    fn poll_ready(&self) -> Result<Option<Delivery>, ()> {
        let mut state = lock(&self.state);
        // The queue it consumed, not one declared again under its name after a deletion.
        let same = state
            .queues
            .get(&self.queue)
            .is_some_and(|q| Arc::ptr_eq(&q.notify, &self.notify));
        if !same {
            return Err(());
        }
        state.expire_head(&self.queue);
        if self.unsettled.load(Ordering::SeqCst) >= self.prefetch {
            return Ok(None);
        }
        let q = state.queues.get_mut(&self.queue).expect("checked above");
        let Some(mut item) = q.ready.pop_front() else {
            return Ok(None);
        };
        item.delivery_count += 1;
        self.unsettled.fetch_add(1, Ordering::SeqCst);
        Ok(Some(Delivery {
            message: item.message.clone(),
            delivery_count: item.delivery_count,
            acker: Box::new(MemoryAcker {
                state: Arc::clone(&self.state),
                queue: self.queue.clone(),
                item: Mutex::new(Some(item)),
                unsettled: Arc::clone(&self.unsettled),
                notify: Arc::clone(&self.notify),
                settled: AtomicBool::new(false),
            }),
        }))
    }

    /// When the head message expires, if it has an expiry.
    fn next_expiry(&self) -> Option<std::time::Duration> {
        let state = lock(&self.state);
        let at = state
            .queues
            .get(&self.queue)?
            .ready
            .front()?
            .message
            .expires_at?;
        Some((at - Utc::now()).to_std().unwrap_or_default())
    }
}

#[async_trait]
impl Consumer for MemoryConsumer {
    async fn next(&mut self) -> Option<Result<Delivery, BusError>> {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.poll_ready() {
                Err(()) => return None,
                Ok(Some(delivery)) => return Some(Ok(delivery)),
                Ok(None) => {}
            }
            match self.next_expiry() {
                Some(wait) => {
                    let _ = tokio::time::timeout(wait, notified).await;
                }
                None => notified.await,
            }
        }
    }
}

impl Drop for MemoryConsumer {
    fn drop(&mut self) {
        if self.temporary {
            lock(&self.state).delete_queue(&self.queue);
        }
    }
}

#[derive(Debug)]
struct MemoryAcker {
    state: Arc<Mutex<State>>,
    queue: String,
    item: Mutex<Option<Queued>>,
    unsettled: Arc<AtomicUsize>,
    notify: Arc<Notify>,
    settled: AtomicBool,
}

enum Settle {
    Ack,
    Requeue,
    DeadLetter,
}

impl MemoryAcker {
    fn settle(&self, how: &Settle) {
        if self.settled.swap(true, Ordering::SeqCst) {
            return;
        }
        let item = self
            .item
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let mut state = lock(&self.state);
        if let Some(item) = item {
            match how {
                Settle::Ack => {}
                Settle::Requeue => {
                    if let Some(q) = state.queues.get_mut(&self.queue) {
                        q.ready.push_front(item);
                    }
                }
                Settle::DeadLetter => state.dead_letter(&self.queue, &item),
            }
        }
        self.unsettled.fetch_sub(1, Ordering::SeqCst);
        self.notify.notify_waiters();
    }
}

#[async_trait]
impl Acker for MemoryAcker {
    async fn ack(&self) -> Result<(), BusError> {
        self.settle(&Settle::Ack);
        Ok(())
    }

    async fn requeue(&self) -> Result<(), BusError> {
        self.settle(&Settle::Requeue);
        Ok(())
    }

    async fn dead_letter(&self) -> Result<(), BusError> {
        self.settle(&Settle::DeadLetter);
        Ok(())
    }
}

impl Drop for MemoryAcker {
    fn drop(&mut self) {
        // Unsettled when dropped: the consumer went away mid-handling. Deliver it again.
        self.settle(&Settle::Requeue);
    }
}

#[cfg(test)]
mod tests {
    use super::topic_matches;

    #[test]
    fn topic_patterns_follow_amqp() {
        assert!(topic_matches("instance.*", "instance.7"));
        assert!(!topic_matches("instance.*", "instance.7.x"));
        assert!(topic_matches("instance.#", "instance.7.x"));
        assert!(topic_matches("#", "anything.at.all"));
        assert!(topic_matches("instance.7", "instance.7"));
        assert!(!topic_matches("instance.7", "instance.8"));
        assert!(topic_matches("*.7", "instance.7"));
        assert!(topic_matches("a.#.z", "a.z"));
    }
}
