//! [`EventHub`]: the events of `manman.events` as this host receives them, fanned out to the
//! SSE event streams from one consumer.
//!
//! One temporary queue per host instead of one per watcher: a watcher costs the host a cursor
//! into a shared ring of [`EVENT_BUFFER`] events (each kept once, its JSON encoded once), not a
//! queue of its own that grows while it reads slowly. A watcher that falls a whole ring behind
//! is skipped ahead and told how many events it missed ([`EventItem::Lagged`]). While the hub
//! is not connected to the bus nobody can subscribe, and when it loses the bus every watcher's
//! stream ends: events are never missed without a sign.

use crate::bus::Bus;
use crate::event::Event;
use crate::host::sender_check::SenderCheck;
use crate::ports::{BusError, Message};
use crate::store::Store;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

/// Events a watcher may fall behind by before it is skipped ahead.
pub const EVENT_BUFFER: usize = 1_024;

/// One event as the hub passes it on, shared by every watcher, with its JSON encoded once.
#[derive(Debug)]
pub struct SharedEvent {
    event: Event,
    json: Box<str>,
}

impl SharedEvent {
    fn new(event: Event) -> Self {
        // An Event (numbers, strings, times, string-keyed maps) always encodes.
        let json = serde_json::to_string(&event)
            .unwrap_or_default()
            .into_boxed_str();
        Self { event, json }
    }

    /// The event.
    pub fn event(&self) -> &Event {
        &self.event
    }

    /// The event as JSON (what the SSE event stream sends as `data`).
    pub fn json(&self) -> &str {
        &self.json
    }
}

type Feed = broadcast::Sender<Arc<SharedEvent>>;

/// Fans the host's events out to its watchers. Cloning shares it.
#[derive(Debug, Clone)]
pub struct EventHub {
    /// The feed while the hub is connected to the bus; `None` otherwise.
    feed: Arc<watch::Sender<Option<Feed>>>,
    buffer: usize,
    /// Who may say what: without it every well-formed event is passed on.
    check: Option<SenderCheck>,
}

impl Default for EventHub {
    fn default() -> Self {
        Self::new(EVENT_BUFFER)
    }
}

/// What a watcher reads next.
#[derive(Debug, Clone)]
pub enum EventItem {
    /// The next event.
    Event(Arc<SharedEvent>),
    /// Events this watcher fell too far behind to see; the next item is the event after them.
    Lagged {
        /// How many were skipped.
        missed: u64,
    },
}

/// A watcher of the host's events, from the moment it subscribed.
#[derive(Debug)]
pub struct EventSubscription {
    receiver: broadcast::Receiver<Arc<SharedEvent>>,
}

impl EventSubscription {
    /// The next event, or how many were skipped before it; `None` once the hub has lost the
    /// bus (events may be missed from then on: subscribe again).
    pub async fn next(&mut self) -> Option<EventItem> {
        match self.receiver.recv().await {
            Ok(event) => Some(EventItem::Event(event)),
            Err(RecvError::Lagged(missed)) => Some(EventItem::Lagged { missed }),
            Err(RecvError::Closed) => None,
        }
    }
}

/// Disconnects the hub when its run ends, however it ends.
struct Connection<'a>(&'a watch::Sender<Option<Feed>>);

impl Drop for Connection<'_> {
    fn drop(&mut self) {
        self.0.send_replace(None);
    }
}

impl EventHub {
    /// Whether the event is one to pass on; a store that fails makes it passed over (the
    /// status processor holds it and records it when the store is back).
    async fn believes(&self, message: &Message, event: &Event) -> bool {
        match &self.check {
            Some(check) => check.believes_event(message, event).await,
            None => true,
        }
    }

    /// A hub whose watchers may fall `buffer` events behind; connected once [`run`](Self::run)
    /// has bound its queue.
    pub fn new(buffer: usize) -> Self {
        Self {
            feed: Arc::new(watch::channel(None).0),
            buffer: buffer.max(1),
            check: None,
        }
    }

    /// Passes on only the events the host believes, as the status processor does: sealed by
    /// their worker's current registration (read from `store`, remembered for a second) and
    /// about what that worker owns. Without this (a hub without a store, in tests), every
    /// well-formed event is passed on.
    pub fn checking_senders_in(mut self, store: &Store) -> Self {
        self.check = Some(SenderCheck::for_live_view(store));
        self
    }

    /// Passes an event to the current watchers (none, or not connected: it is dropped).
    pub fn publish(&self, event: Event) {
        if let Some(feed) = self.feed.borrow().as_ref() {
            let _ = feed.send(Arc::new(SharedEvent::new(event)));
        }
    }

    /// A watcher of the events from now on; `None` when the hub is not connected to the bus
    /// within `within`.
    pub async fn subscribe(&self, within: Duration) -> Option<EventSubscription> {
        let mut feed = self.feed.subscribe();
        let connected = tokio::time::timeout(within, feed.wait_for(Option::is_some)).await;
        let Ok(Ok(feed)) = connected else {
            return None;
        };
        feed.as_ref().map(|feed| EventSubscription {
            receiver: feed.subscribe(),
        })
    }

    /// Feeds the hub from `manman.events` until `shutdown` is cancelled. While it runs the hub
    /// is connected; when it ends, every watcher's stream ends.
    pub async fn run(&self, bus: &Bus, shutdown: CancellationToken) -> Result<(), BusError> {
        let mut events = bus.watch_events().await?;
        let _connection = Connection(&self.feed);
        self.feed
            .send_replace(Some(broadcast::channel(self.buffer).0));
        loop {
            let next = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                next = events.next() => next,
            };
            match next {
                Some(Ok(delivery)) => {
                    // Malformed and refused events are the status processor's to dead-letter
                    // and record; here they are passed over.
                    if let Ok(event) = delivery.message.decode::<Event>()
                        && self.believes(&delivery.message, &event).await
                    {
                        self.publish(event);
                    }
                    let _ = delivery.ack().await;
                }
                // A receive error loses what it was: end the watchers' streams, so they know.
                Some(Err(e)) => return Err(e),
                None => return Err(BusError::Closed),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{CommandOutcome, CommandResult};
    use crate::id::WorkerId;
    use futures::FutureExt;

    fn event(n: i64) -> Event {
        Event::CommandResult(CommandResult {
            command_id: uuid::Uuid::new_v4(),
            worker_id: WorkerId(n),
            outcome: CommandOutcome::Succeeded,
            detail: None,
            reported_at: chrono::Utc::now(),
        })
    }

    async fn connected(hub: &EventHub) -> (tokio::task::JoinHandle<()>, CancellationToken) {
        let memory = crate::memory::MemoryBus::new();
        let bus = Bus::new(Arc::new(memory.clone()), Arc::new(memory));
        bus.declare().await.expect("topology");
        let stop = CancellationToken::new();
        let (runner, token) = (hub.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let _ = runner.run(&bus, token).await;
        });
        (task, stop)
    }

    #[tokio::test]
    async fn watchers_share_each_event_and_a_slow_one_is_told_what_it_missed() {
        let hub = EventHub::new(4);
        let (task, stop) = connected(&hub).await;
        let wait = Duration::from_secs(5);
        let mut fast = hub.subscribe(wait).await.expect("connected");
        let mut slow = hub.subscribe(wait).await.expect("connected");
        hub.publish(event(0));
        let (Some(Some(EventItem::Event(first))), Some(Some(EventItem::Event(same)))) =
            (fast.next().now_or_never(), slow.next().now_or_never())
        else {
            panic!("both watchers read the event");
        };
        assert!(Arc::ptr_eq(&first, &same), "one copy for every watcher");
        for n in 1..10 {
            hub.publish(event(n));
        }
        // 1..=9 were sent; the ring holds the last 4 (6..=9): 1..=5 are gone.
        assert!(matches!(
            slow.next().now_or_never(),
            Some(Some(EventItem::Lagged { missed: 5 }))
        ));
        let mut rest = 0;
        while let Some(Some(EventItem::Event(_))) = slow.next().now_or_never() {
            rest += 1;
        }
        assert_eq!(rest, 4);

        // When the hub stops, its watchers' streams end and nobody can subscribe.
        stop.cancel();
        task.await.expect("stopped");
        while let Some(item) = fast.next().await {
            assert!(matches!(
                item,
                EventItem::Event(_) | EventItem::Lagged { .. }
            ));
        }
        assert!(hub.subscribe(Duration::from_millis(10)).await.is_none());
    }

    #[tokio::test]
    async fn nobody_subscribes_before_the_hub_is_connected() {
        let hub = EventHub::default();
        assert!(hub.subscribe(Duration::from_millis(10)).await.is_none());
        let (_task, stop) = connected(&hub).await;
        assert!(hub.subscribe(Duration::from_secs(5)).await.is_some());
        stop.cancel();
    }
}
