//! [`ConsoleHub`]: the host's view of every console: the last lines of each instance (the
//! backlog) and the live lines after them, for the SSE console stream.

use crate::bus::Bus;
use crate::console::ConsoleLine;
use crate::id::InstanceId;
use crate::ports::BusError;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// Lines kept per instance.
pub const BACKLOG_LINES: usize = 1_000;

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
    live: broadcast::Sender<ConsoleLine>,
}

impl Console {
    fn new() -> Self {
        Self {
            backlog: VecDeque::new(),
            live: broadcast::channel(1_024).0,
        }
    }
}

/// A watcher's start: the backlog after its cursor, then the live lines.
#[derive(Debug)]
pub struct ConsoleSubscription {
    /// Lines already kept, oldest first, all with `seq` greater than the cursor.
    pub backlog: Vec<ConsoleLine>,
    /// Lines from now on. May repeat lines of the backlog: skip `seq` not above the last seen.
    pub live: broadcast::Receiver<ConsoleLine>,
}

impl Default for ConsoleHub {
    fn default() -> Self {
        Self::new(BACKLOG_LINES)
    }
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
        // No live watcher is fine: the backlog has it.
        let _ = console.live.send(line);
    }

    /// Backlog after `after` (a `Last-Event-ID`), and the live lines from then on.
    pub fn subscribe(&self, instance: InstanceId, after: Option<u64>) -> ConsoleSubscription {
        let mut inner = self.lock();
        let console = inner.consoles.entry(instance).or_insert_with(Console::new);
        let after = after.unwrap_or(0);
        ConsoleSubscription {
            backlog: console
                .backlog
                .iter()
                .filter(|l| l.seq > after)
                .cloned()
                .collect(),
            live: console.live.subscribe(),
        }
    }

    /// Feeds the hub from `manman.console` until `shutdown` is cancelled.
    pub async fn run(&self, bus: &Bus, shutdown: CancellationToken) -> Result<(), BusError> {
        let mut consumer = bus.watch_console(None).await?;
        loop {
            let delivery = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                next = consumer.next() => match next {
                    Some(Ok(delivery)) => delivery,
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "console hub: receive failed");
                        continue;
                    }
                    None => return Err(BusError::Closed),
                },
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
        }
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
            .subscribe(InstanceId(1), None)
            .backlog
            .iter()
            .map(|l| l.seq)
            .collect();
        assert_eq!(all, [3, 4, 5]);
        let resumed: Vec<u64> = hub
            .subscribe(InstanceId(1), Some(4))
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
        let mut sub = hub.subscribe(InstanceId(1), None);
        hub.push(line(2));
        assert_eq!(sub.backlog.len(), 1);
        assert_eq!(sub.live.recv().await.unwrap().seq, 2);
    }
}
