//! [`ConsoleHub`]: the host's view of every console: the last lines of each instance (the
//! backlog) and the live lines after them, for the SSE console stream.
//!
//! When an instance ends, its live stream closes a moment later (watchers see the end), and
//! its backlog is kept a while for late readers, then dropped.

use crate::bus::Bus;
use crate::console::ConsoleLine;
use crate::event::Event;
use crate::id::InstanceId;
use crate::ports::{BusError, Delivery};
use crate::status::Entity;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::broadcast;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Lines kept per instance.
pub const BACKLOG_LINES: usize = 1_000;
/// How long after an instance ended its live stream stays open (for lines still on their way).
pub const CLOSE_AFTER_END: Duration = Duration::from_secs(2);
/// How long the backlog of an ended instance is kept.
pub const KEEP_AFTER_END: Duration = Duration::from_secs(600);

/// Keeps a backlog per instance and fans live lines out to watchers.
#[derive(Debug, Clone)]
pub struct ConsoleHub {
    inner: Arc<Mutex<Inner>>,
    backlog_lines: usize,
}

#[derive(Debug, Default)]
struct Inner {
    consoles: HashMap<InstanceId, Console>,
}

#[derive(Debug)]
struct Console {
    backlog: VecDeque<ConsoleLine>,
    live: Live,
    ended_at: Option<Instant>,
}

/// The live side of a console. A broadcast channel holds its whole ring from the start, so it
/// exists only while somebody watches: a thousand unwatched consoles cost only their backlogs.
#[derive(Debug)]
enum Live {
    /// Nobody watches.
    Unwatched,
    /// Watchers receive from this.
    Watched(broadcast::Sender<ConsoleLine>),
    /// The instance ended and its watchers were told.
    Closed,
}

/// Live lines a slow watcher may fall behind by before it is told it lagged.
const LIVE_BUFFER: usize = 256;

impl Console {
    fn new() -> Self {
        Self {
            backlog: VecDeque::new(),
            live: Live::Unwatched,
            ended_at: None,
        }
    }

    fn subscribe(&mut self) -> broadcast::Receiver<ConsoleLine> {
        match &self.live {
            Live::Watched(sender) => sender.subscribe(),
            Live::Closed => closed_receiver(),
            Live::Unwatched => {
                let (sender, receiver) = broadcast::channel(LIVE_BUFFER);
                self.live = Live::Watched(sender);
                receiver
            }
        }
    }
}

/// A watcher's start: the backlog after its cursor, then the live lines.
#[derive(Debug)]
pub struct ConsoleSubscription {
    /// Lines already kept, oldest first, all with `seq` greater than the cursor.
    pub backlog: Vec<ConsoleLine>,
    /// Lines from now on; closed once the instance has ended. May repeat lines of the backlog:
    /// skip `seq` not above the last seen.
    pub live: broadcast::Receiver<ConsoleLine>,
}

impl Default for ConsoleHub {
    fn default() -> Self {
        Self::new(BACKLOG_LINES)
    }
}

/// A receiver that is already closed: the stream of an instance that has ended.
fn closed_receiver() -> broadcast::Receiver<ConsoleLine> {
    broadcast::channel(1).1
}

impl ConsoleHub {
    /// A hub keeping `backlog_lines` per instance.
    pub fn new(backlog_lines: usize) -> Self {
        Self {
            inner: Arc::default(),
            backlog_lines: backlog_lines.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records a line and passes it to live watchers.
    pub fn push(&self, line: ConsoleLine) {
        let mut inner = self.lock();
        let console = inner
            .consoles
            .entry(line.instance_id)
            .or_insert_with(Console::new);
        if console
            .backlog
            .back()
            .is_some_and(|last| last.seq >= line.seq)
        {
            // A duplicate (redelivery) or a line older than the newest: keep the order.
            return;
        }
        if console.backlog.len() == self.backlog_lines {
            console.backlog.pop_front();
        }
        console.backlog.push_back(line.clone());
        if let Live::Watched(sender) = &console.live
            && sender.send(line).is_err()
        {
            // The last watcher left: free the channel.
            console.live = Live::Unwatched;
        }
    }

    /// Backlog after `after` (a `Last-Event-ID`), and the live lines from then on. For an
    /// instance that has `ended`, the live stream is closed.
    pub fn subscribe(
        &self,
        instance: InstanceId,
        after: Option<u64>,
        ended: bool,
    ) -> ConsoleSubscription {
        let mut inner = self.lock();
        let after = after.unwrap_or(0);
        let console = match inner.consoles.get_mut(&instance) {
            Some(console) => console,
            None if ended => {
                return ConsoleSubscription {
                    backlog: Vec::new(),
                    live: closed_receiver(),
                };
            }
            None => inner.consoles.entry(instance).or_insert_with(Console::new),
        };
        ConsoleSubscription {
            backlog: console
                .backlog
                .iter()
                .filter(|l| l.seq > after)
                .cloned()
                .collect(),
            live: console.subscribe(),
        }
    }

    /// Notes that an instance ended: its live stream closes after [`CLOSE_AFTER_END`].
    pub fn instance_ended(&self, instance: InstanceId) {
        let mut inner = self.lock();
        let console = inner.consoles.entry(instance).or_insert_with(Console::new);
        console.ended_at.get_or_insert_with(Instant::now);
    }

    /// Closes the live streams and drops the backlogs whose time has come.
    pub fn expire(&self, now: Instant) {
        self.lock()
            .consoles
            .retain(|_, console| match console.ended_at {
                None => true,
                Some(ended) => {
                    if now.duration_since(ended) >= CLOSE_AFTER_END {
                        console.live = Live::Closed;
                    }
                    now.duration_since(ended) < KEEP_AFTER_END
                }
            });
    }

    /// Feeds the hub from `manman.console` and `manman.events` until `shutdown` is cancelled.
    pub async fn run(&self, bus: &Bus, shutdown: CancellationToken) -> Result<(), BusError> {
        let mut lines = bus.watch_console(None).await?;
        let mut events = bus.watch_events().await?;
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                _ = ticker.tick() => self.expire(Instant::now()),
                next = lines.next() => self.take_line(next, &shutdown).await?,
                next = events.next() => self.take_event(next, &shutdown).await?,
            }
        }
    }

    async fn take_line(
        &self,
        next: Option<Result<Delivery, BusError>>,
        shutdown: &CancellationToken,
    ) -> Result<(), BusError> {
        let Some(delivery) = received(next, shutdown).await? else {
            return Ok(());
        };
        match delivery.message.decode::<ConsoleLine>() {
            Ok(line) => {
                self.push(line);
                let _ = delivery.ack().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "console hub: dropping a malformed console line");
                let _ = delivery.dead_letter().await;
            }
        }
        Ok(())
    }

    async fn take_event(
        &self,
        next: Option<Result<Delivery, BusError>>,
        shutdown: &CancellationToken,
    ) -> Result<(), BusError> {
        let Some(delivery) = received(next, shutdown).await? else {
            return Ok(());
        };
        // Malformed events are the status processor's to dead-letter; here they are ignored.
        if let Ok(Event::Status(report)) = delivery.message.decode::<Event>()
            && let Entity::Instance(instance) = report.entity
            && report.status.is_terminal()
        {
            self.instance_ended(instance);
        }
        let _ = delivery.ack().await;
        Ok(())
    }
}

/// A delivery, `None` after a receive error (logged, paused), or the closed bus as an error.
async fn received(
    next: Option<Result<Delivery, BusError>>,
    shutdown: &CancellationToken,
) -> Result<Option<Delivery>, BusError> {
    match next {
        Some(Ok(delivery)) => Ok(Some(delivery)),
        Some(Err(e)) => {
            tracing::warn!(error = %e, "console hub: receive failed; retrying in 1 s");
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            Ok(None)
        }
        None => Err(BusError::Closed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::ConsoleStream;
    use chrono::Utc;

    fn line(seq: u64) -> ConsoleLine {
        ConsoleLine {
            instance_id: InstanceId(1),
            seq,
            stream: ConsoleStream::Stdout,
            text: format!("line {seq}"),
            at: Utc::now(),
        }
    }

    #[test]
    fn backlog_is_bounded_and_resumable() {
        let hub = ConsoleHub::new(3);
        for seq in 1..=5 {
            hub.push(line(seq));
        }
        hub.push(line(4)); // a redelivery is ignored
        let all: Vec<u64> = hub
            .subscribe(InstanceId(1), None, false)
            .backlog
            .iter()
            .map(|l| l.seq)
            .collect();
        assert_eq!(all, [3, 4, 5]);
        let resumed: Vec<u64> = hub
            .subscribe(InstanceId(1), Some(4), false)
            .backlog
            .iter()
            .map(|l| l.seq)
            .collect();
        assert_eq!(resumed, [5]);
    }

    #[tokio::test]
    async fn live_lines_follow_the_backlog() {
        let hub = ConsoleHub::default();
        hub.push(line(1));
        let mut sub = hub.subscribe(InstanceId(1), None, false);
        hub.push(line(2));
        assert_eq!(sub.backlog.len(), 1);
        assert_eq!(sub.live.recv().await.unwrap().seq, 2);
    }

    #[tokio::test]
    async fn an_ended_instance_closes_its_stream_then_forgets_it() {
        let hub = ConsoleHub::default();
        hub.push(line(1));
        let mut sub = hub.subscribe(InstanceId(1), None, false);
        hub.instance_ended(InstanceId(1));
        let ended = Instant::now();
        hub.expire(ended);
        hub.push(line(2));
        assert_eq!(
            sub.live.recv().await.unwrap().seq,
            2,
            "lines still arrive during the grace"
        );
        hub.expire(ended + CLOSE_AFTER_END);
        assert!(matches!(
            sub.live.recv().await,
            Err(broadcast::error::RecvError::Closed)
        ));
        let late = hub.subscribe(InstanceId(1), None, true);
        assert_eq!(
            late.backlog.len(),
            2,
            "the backlog is kept for late readers"
        );
        hub.expire(ended + KEEP_AFTER_END);
        let gone = hub.subscribe(InstanceId(1), None, true);
        assert!(gone.backlog.is_empty());
    }
}
