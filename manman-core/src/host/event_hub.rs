//! [`EventHub`]: the events the hosts recorded (`manman.recorded`), fanned out to the SSE
//! event streams from one consumer.
//!
//! A worker's report reaches `/events` only once a status processor — this replica's or
//! another's — has recorded it: the status processor publishes what its store committed (the
//! status reports it applied, the command results that moved a command on, install progress,
//! which is not recorded) on `manman.recorded`, sealed with the hosts' key, and every replica's
//! hub reads that exchange. So an event seen on the stream is already what `GET` answers, and a
//! report the store refused (a forbidden transition, a duplicate, a forged sender) never shows.
//!
//! One temporary queue per host instead of one per watcher: a watcher costs the host a cursor
//! into a shared ring of [`EVENT_BUFFER`] events (each kept once, its JSON encoded once), not a
//! queue of its own that grows while it reads slowly. A watcher that falls a whole ring behind
//! is skipped ahead and told how many events it missed ([`EventItem::Lagged`]). While the hub
//! is not connected to the bus nobody can subscribe, and when it loses the bus every watcher's
//! stream ends: events are never missed without a sign.
//!
//! Each event has an id, `{feed}-{n}`: the feed (one per connection of the hub to the bus) and
//! its number in it. A watcher that comes back with the id of the last event it saw (SSE's
//! `Last-Event-ID`) gets the events after it that are still in the ring, then the live ones —
//! or, when it fell out of the ring, how many it missed; and when the id is of another feed
//! (the host restarted, or lost the bus, since), [`EventItem::Gap`]: events were missed that
//! nobody can count.

use crate::bus::Bus;
use crate::event::Event;
use crate::host::BusKeys;
use crate::ports::{BusError, Message};
use crate::signing::Purpose;
use crate::store::Store;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
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
    seq: u64,
    id: Box<str>,
}

impl SharedEvent {
    fn new(event: Event, feed: &str, seq: u64) -> Self {
        // An Event (numbers, strings, times, string-keyed maps) always encodes.
        let json = serde_json::to_string(&event)
            .unwrap_or_default()
            .into_boxed_str();
        Self {
            event,
            json,
            seq,
            id: format!("{feed}-{seq}").into_boxed_str(),
        }
    }

    /// Its id: `{feed}-{n}` (the SSE event id, to resume after it).
    pub fn id(&self) -> &str {
        &self.id
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

/// One connection of the hub to the bus: its live events, and the last of them for watchers
/// that resume.
#[derive(Debug)]
struct FeedState {
    /// Names this feed in event ids.
    name: String,
    sender: broadcast::Sender<Arc<SharedEvent>>,
    recent: Mutex<Recent>,
}

#[derive(Debug, Default)]
struct Recent {
    /// The number the next event gets (from 1).
    next: u64,
    /// The last events, oldest first.
    ring: VecDeque<Arc<SharedEvent>>,
}

type Feed = Arc<FeedState>;

fn lock(recent: &Mutex<Recent>) -> MutexGuard<'_, Recent> {
    recent.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Fans the host's events out to its watchers. Cloning shares it.
#[derive(Debug, Clone)]
pub struct EventHub {
    /// The feed while the hub is connected to the bus; `None` otherwise.
    feed: Arc<watch::Sender<Option<Feed>>>,
    buffer: usize,
    /// The hosts' keys: only events sealed with their key are passed on. Without it (a hub
    /// without a store, in tests) every well-formed event is.
    keys: Option<BusKeys>,
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
    /// The watcher resumed after an event of an earlier feed (the host restarted or lost the
    /// bus since): events may have been missed, and nobody can say how many.
    Gap,
}

/// A watcher of the host's events, from the moment it subscribed (or after the event it
/// resumed after).
#[derive(Debug)]
pub struct EventSubscription {
    receiver: broadcast::Receiver<Arc<SharedEvent>>,
    /// What to pass on before the live events: a gap, then the events resumed.
    replay: VecDeque<EventItem>,
    /// The number of the last event replayed: live events up to it were replayed already.
    replayed_up_to: u64,
}

impl EventSubscription {
    /// The next event, or how many were skipped before it; `None` once the hub has lost the
    /// bus (events may be missed from then on: subscribe again).
    pub async fn next(&mut self) -> Option<EventItem> {
        if let Some(item) = self.replay.pop_front() {
            return Some(item);
        }
        loop {
            match self.receiver.recv().await {
                Ok(event) if event.seq <= self.replayed_up_to => {}
                Ok(event) => return Some(EventItem::Event(event)),
                Err(RecvError::Lagged(missed)) => return Some(EventItem::Lagged { missed }),
                Err(RecvError::Closed) => return None,
            }
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
    /// Whether the event was sealed by a host (with the hosts' key, for `manman.recorded`); a
    /// store that cannot give the key makes it passed over, with a warning.
    async fn believes(&self, message: &Message) -> bool {
        let Some(keys) = &self.keys else {
            return true;
        };
        match keys.host_key().await {
            Ok(key) => match key.check(Purpose::Recorded, message) {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(message_id = %message.id, error = %e, "event hub: passing over an event on manman.recorded not sealed by a host");
                    false
                }
            },
            Err(e) => {
                tracing::warn!(message_id = %message.id, error = %e, "event hub: could not read the hosts' key; passing over an event");
                false
            }
        }
    }

    /// A hub whose watchers may fall `buffer` events behind; connected once [`run`](Self::run)
    /// has bound its queue.
    pub fn new(buffer: usize) -> Self {
        Self {
            feed: Arc::new(watch::channel(None).0),
            buffer: buffer.max(1),
            keys: None,
        }
    }

    /// Passes on only events sealed with the hosts' key, read from `store` (the bus secret
    /// every host shares). Without this (a hub without a store, in tests), every well-formed
    /// event is passed on.
    pub fn checking_seals_in(mut self, store: &Store) -> Self {
        self.keys = Some(BusKeys::new(store));
        self
    }

    /// Passes an event to the current watchers (none, or not connected: it is dropped).
    pub fn publish(&self, event: Event) {
        let Some(feed) = self.feed.borrow().clone() else {
            return;
        };
        // Numbered, kept and sent under one lock: the ring and the live feed agree on order.
        let mut recent = lock(&feed.recent);
        recent.next += 1;
        let event = Arc::new(SharedEvent::new(event, &feed.name, recent.next));
        if recent.ring.len() >= self.buffer {
            recent.ring.pop_front();
        }
        recent.ring.push_back(Arc::clone(&event));
        let _ = feed.sender.send(event);
    }

    /// A watcher of the events from now on — or, with `resume` (the id of the last event a
    /// watcher saw), from after that event; `None` when the hub is not connected to the bus
    /// within `within`.
    pub async fn subscribe(
        &self,
        within: Duration,
        resume: Option<&str>,
    ) -> Option<EventSubscription> {
        let mut feed = self.feed.subscribe();
        let connected = tokio::time::timeout(within, feed.wait_for(Option::is_some)).await;
        let Ok(Ok(feed)) = connected else {
            return None;
        };
        let feed = feed.clone()?;
        let recent = lock(&feed.recent);
        let receiver = feed.sender.subscribe();
        let mut replay = VecDeque::new();
        let mut replayed_up_to = 0;
        if let Some(resume) = resume {
            let after = resume
                .rsplit_once('-')
                .filter(|(name, _)| *name == feed.name)
                .and_then(|(_, seq)| seq.parse::<u64>().ok())
                .filter(|seq| *seq <= recent.next);
            match after {
                None => replay.push_back(EventItem::Gap),
                Some(after) => {
                    let first_kept = recent.ring.front().map_or(recent.next + 1, |e| e.seq);
                    if first_kept > after + 1 {
                        replay.push_back(EventItem::Lagged {
                            missed: first_kept - after - 1,
                        });
                    }
                    replay.extend(
                        recent
                            .ring
                            .iter()
                            .filter(|e| e.seq > after)
                            .map(|e| EventItem::Event(Arc::clone(e))),
                    );
                    replayed_up_to = recent.next;
                }
            }
        }
        drop(recent);
        Some(EventSubscription {
            receiver,
            replay,
            replayed_up_to,
        })
    }

    /// Feeds the hub from `manman.events` until `shutdown` is cancelled. While it runs the hub
    /// is connected; when it ends, every watcher's stream ends.
    pub async fn run(&self, bus: &Bus, shutdown: CancellationToken) -> Result<(), BusError> {
        let mut events = bus.watch_recorded().await?;
        let _connection = Connection(&self.feed);
        self.feed.send_replace(Some(Arc::new(FeedState {
            name: uuid::Uuid::new_v4().simple().to_string()[..12].to_owned(),
            sender: broadcast::channel(self.buffer).0,
            recent: Mutex::default(),
        })));
        loop {
            let next = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                next = events.next() => next,
            };
            match next {
                Some(Ok(delivery)) => {
                    // What a host did not seal, or that does not parse, is passed over.
                    if self.believes(&delivery.message).await
                        && let Ok(events) = delivery.message.decode::<Vec<Event>>()
                    {
                        for event in events {
                            self.publish(event);
                        }
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
        let mut fast = hub.subscribe(wait, None).await.expect("connected");
        let mut slow = hub.subscribe(wait, None).await.expect("connected");
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
        assert!(
            hub.subscribe(Duration::from_millis(10), None)
                .await
                .is_none()
        );
    }

    #[tokio::test]
    async fn nobody_subscribes_before_the_hub_is_connected() {
        let hub = EventHub::default();
        assert!(
            hub.subscribe(Duration::from_millis(10), None)
                .await
                .is_none()
        );
        let (_task, stop) = connected(&hub).await;
        assert!(hub.subscribe(Duration::from_secs(5), None).await.is_some());
        stop.cancel();
    }

    #[tokio::test]
    async fn a_watcher_resumes_after_the_last_event_it_saw() {
        let hub = EventHub::new(4);
        let (_task, stop) = connected(&hub).await;
        let wait = Duration::from_secs(5);
        let mut first = hub.subscribe(wait, None).await.expect("connected");
        hub.publish(event(1));
        hub.publish(event(2));
        let Some(Some(EventItem::Event(seen))) = first.next().now_or_never() else {
            panic!("event 1");
        };
        hub.publish(event(3));
        let mut resumed = hub
            .subscribe(wait, Some(seen.id()))
            .await
            .expect("connected");
        hub.publish(event(4));
        let workers: Vec<i64> = std::iter::from_fn(|| match resumed.next().now_or_never() {
            Some(Some(EventItem::Event(e))) => match e.event() {
                Event::CommandResult(r) => Some(r.worker_id.get()),
                _ => None,
            },
            _ => None,
        })
        .collect();
        assert_eq!(workers, [2, 3, 4], "after 1, each once, replayed then live");

        for n in 5..12 {
            hub.publish(event(n));
        }
        let mut behind = hub
            .subscribe(wait, Some(seen.id()))
            .await
            .expect("connected");
        assert!(
            matches!(
                behind.next().now_or_never(),
                Some(Some(EventItem::Lagged { missed: 6 }))
            ),
            "2..=7 left the ring of 4"
        );
        let mut elsewhere = hub
            .subscribe(wait, Some("0123456789ab-3"))
            .await
            .expect("connected");
        assert!(matches!(
            elsewhere.next().now_or_never(),
            Some(Some(EventItem::Gap))
        ));
        stop.cancel();
    }

    /// A hub that checks seals, on a memory bus whose store holds the hosts' secret.
    async fn sealed_hub() -> (
        EventHub,
        Bus,
        Store,
        tokio::task::JoinHandle<()>,
        CancellationToken,
    ) {
        let store = Store::from_adapter(crate::memory::MemoryStore::new());
        let bus = Bus::in_memory().await.expect("bus");
        let hub = EventHub::new(16).checking_seals_in(&store);
        let stop = CancellationToken::new();
        let (runner, feed, token) = (hub.clone(), bus.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let _ = runner.run(&feed, token).await;
        });
        (hub, bus, store, task, stop)
    }

    #[tokio::test]
    async fn only_what_a_host_sealed_on_manman_recorded_reaches_the_watchers() {
        let (hub, bus, store, task, stop) = sealed_hub().await;
        let mut watcher = hub
            .subscribe(Duration::from_secs(5), None)
            .await
            .expect("connected");
        let host = BusKeys::new(&store).host_key().await.expect("host key");
        let worker = BusKeys::new(&store)
            .worker_key(WorkerId(1), 1)
            .await
            .expect("worker key");
        let now = chrono::Utc::now();
        // A worker's own seal, a made-up key, and a worker's event on manman.events: passed
        // over; then the host's.
        let mut forged = Message::json("recorded", &[event(1)], now).expect("json");
        worker.seal(Purpose::Recorded, &mut forged);
        bus.publisher()
            .publish(&bus.topology().recorded_exchange(), "", forged)
            .await
            .expect("publish");
        let stranger = crate::signing::BusSecret::generate().host_key();
        bus.publish_recorded(&[event(2)], now, &stranger)
            .await
            .expect("publish");
        bus.publish_event(&event(3), now, &worker)
            .await
            .expect("publish");
        bus.publish_recorded(&[event(4)], now, &host)
            .await
            .expect("publish");
        let Some(EventItem::Event(first)) = watcher.next().await else {
            panic!("an event");
        };
        assert!(
            first.json().contains("\"worker_id\":4"),
            "only the host's: {}",
            first.json()
        );
        stop.cancel();
        task.await.expect("the hub stops");
    }
}
