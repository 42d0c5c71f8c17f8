//! [`ConsoleHub`]: the host's view of every console: the last lines of each instance (the
//! backlog) and the live lines after them, for the SSE console stream.
//!
//! Every watcher reads the same backlog: a line is kept once, as an [`Arc`] (its JSON encoded
//! once, when a watcher first needs it), and a [`ConsoleSubscription`] holds only a cursor — the
//! number of the last line it passed on — and walks the backlog by number, a few lines at a time
//! under the lock. A watcher slower than the console falls off the backlog's window; so does a
//! line the worker or the bus dropped before it reached the host. Either way the watcher sees a
//! jump in the numbers, and the subscription says so with [`ConsoleItem::Lagged`]: no gap is
//! silent.
//!
//! When an instance ends, its live stream closes a moment later (watchers see the end), and
//! its backlog is kept a while for late readers, then dropped.

use crate::bus::Bus;
use crate::console::{ConsoleLine, ConsoleTail};
use crate::event::Event;
use crate::host::sender_check::SenderCheck;
use crate::id::InstanceId;
use crate::ports::{BusError, Delivery, Message};
use crate::status::Entity;
use crate::store::Store;
use chrono::{DateTime, Utc};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Lines kept per instance.
pub const BACKLOG_LINES: usize = 1_000;
/// How long after an instance ended its live stream stays open (for lines still on their way).
pub const CLOSE_AFTER_END: Duration = Duration::from_secs(2);
/// How long the backlog of an ended instance is kept.
pub const KEEP_AFTER_END: Duration = Duration::from_secs(600);
/// Lines a watcher takes from the backlog under one lock: it holds no more than these at once.
pub const READ_CHUNK: usize = 64;
/// How often the hub asks a worker for the console tail of one instance at most.
pub const ASK_TAIL_EVERY: Duration = Duration::from_secs(30);

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Keeps a backlog per instance and lets watchers read it and the lines after it.
#[derive(Debug, Clone)]
pub struct ConsoleHub {
    inner: Arc<Mutex<Inner>>,
    backlog_lines: usize,
    /// Who may say what: without it every well-formed line and event is taken.
    check: Option<SenderCheck>,
}

#[derive(Debug, Default)]
struct Inner {
    consoles: HashMap<InstanceId, Arc<Console>>,
    /// Since when the hub has read the console feed without a break (host clock).
    reading_since: Option<DateTime<Utc>>,
    /// When the hub last asked for an instance's console tail.
    asked: HashMap<InstanceId, Instant>,
}

/// One line as the hub keeps it, shared by every watcher: the line, and its JSON encoding made
/// once, the first time a watcher asks for it (unwatched consoles never pay for it).
#[derive(Debug)]
pub struct SharedLine {
    line: ConsoleLine,
    json: OnceLock<Box<str>>,
}

impl SharedLine {
    fn new(line: ConsoleLine) -> Self {
        Self {
            line,
            json: OnceLock::new(),
        }
    }

    /// The line.
    pub fn line(&self) -> &ConsoleLine {
        &self.line
    }

    /// Its number.
    pub fn seq(&self) -> u64 {
        self.line.seq
    }

    /// The line as JSON (what the SSE console stream sends as `data`).
    pub fn json(&self) -> &str {
        self.json.get_or_init(|| {
            // A ConsoleLine (numbers, strings, a time) always encodes.
            serde_json::to_string(&self.line)
                .unwrap_or_default()
                .into_boxed_str()
        })
    }
}

/// One instance's console: its backlog, and a signal that rings at each new line and at the
/// close.
#[derive(Debug)]
struct Console {
    state: Mutex<ConsoleState>,
    changed: watch::Sender<()>,
}

#[derive(Debug, Default)]
struct ConsoleState {
    /// The last lines, in increasing `seq`.
    backlog: VecDeque<Arc<SharedLine>>,
    /// When the hub heard the instance ended.
    ended_at: Option<Instant>,
    /// No more lines will be read: watchers end once they have read the backlog.
    closed: bool,
}

impl Console {
    fn new() -> Self {
        Self {
            state: Mutex::default(),
            changed: watch::channel(()).0,
        }
    }

    /// A closed console holding `tail`: a replay, nothing live.
    fn replay(tail: ConsoleTail) -> Self {
        let console = Self::new();
        {
            let mut state = lock(&console.state);
            state.backlog = tail
                .lines
                .into_iter()
                .map(|line| Arc::new(SharedLine::new(line)))
                .collect();
            state.closed = true;
        }
        console
    }

    fn push(&self, line: ConsoleLine, backlog_lines: usize) {
        {
            let mut state = lock(&self.state);
            if state
                .backlog
                .back()
                .is_some_and(|last| last.seq() >= line.seq)
            {
                // A duplicate (redelivery) or a line older than the newest: keep the order.
                return;
            }
            if state.backlog.len() >= backlog_lines {
                state.backlog.pop_front();
            }
            state.backlog.push_back(Arc::new(SharedLine::new(line)));
        }
        self.changed.send_replace(());
    }

    fn close(&self) {
        lock(&self.state).closed = true;
        self.changed.send_replace(());
    }
}

/// What a watcher reads next.
#[derive(Debug, Clone)]
pub enum ConsoleItem {
    /// The next line.
    Line(Arc<SharedLine>),
    /// Lines this watcher will never see: it fell behind the backlog's window, or they were
    /// dropped before they reached the host. The next item is the line after them.
    Lagged {
        /// How many lines were skipped.
        missed: u64,
        /// The number of the last of them (resuming after it does not report them again).
        last_missed: u64,
    },
}

/// A watcher of one console: the backlog after its cursor, then the live lines, read from the
/// shared backlog. It holds a cursor and at most [`READ_CHUNK`] lines, never a copy of the
/// backlog.
#[derive(Debug)]
pub struct ConsoleSubscription {
    console: Arc<Console>,
    changed: watch::Receiver<()>,
    /// The number of the last line passed on (or resumed after).
    cursor: Option<u64>,
    /// Lines taken from the backlog, not yet passed on.
    pending: VecDeque<Arc<SharedLine>>,
}

/// What a look at the backlog found.
enum Refill {
    /// Lines to pass on.
    Lines,
    /// Nothing yet: wait for the next line.
    Waiting,
    /// Nothing, and nothing will come.
    Closed,
}

impl ConsoleSubscription {
    fn new(console: Arc<Console>, after: Option<u64>) -> Self {
        let changed = console.changed.subscribe();
        Self {
            console,
            changed,
            cursor: after,
            pending: VecDeque::with_capacity(READ_CHUNK),
        }
    }

    /// The next line, or how many were skipped before it; `None` once the instance has ended
    /// and its last line was read.
    pub async fn next(&mut self) -> Option<ConsoleItem> {
        loop {
            if let Some(line) = self.pending.pop_front() {
                return Some(self.pass_on(line));
            }
            // Marked seen before looking, so a line pushed after the look rings.
            self.changed.borrow_and_update();
            match self.refill() {
                Refill::Lines => {}
                Refill::Closed => return None,
                Refill::Waiting => {
                    if self.changed.changed().await.is_err() {
                        return None;
                    }
                }
            }
        }
    }

    /// `line`, or a [`ConsoleItem::Lagged`] first when its number jumps past the cursor.
    fn pass_on(&mut self, line: Arc<SharedLine>) -> ConsoleItem {
        let seq = line.seq();
        if let Some(cursor) = self.cursor
            && seq > cursor.saturating_add(1)
        {
            self.pending.push_front(line);
            self.cursor = Some(seq - 1);
            return ConsoleItem::Lagged {
                missed: seq - cursor - 1,
                last_missed: seq - 1,
            };
        }
        self.cursor = Some(seq);
        ConsoleItem::Line(line)
    }

    /// Takes up to [`READ_CHUNK`] lines after the cursor from the backlog.
    fn refill(&mut self) -> Refill {
        let state = lock(&self.console.state);
        let start = self.cursor.map_or(0, |cursor| {
            state.backlog.partition_point(|l| l.seq() <= cursor)
        });
        self.pending
            .extend(state.backlog.range(start..).take(READ_CHUNK).cloned());
        if !self.pending.is_empty() {
            Refill::Lines
        } else if state.closed {
            Refill::Closed
        } else {
            Refill::Waiting
        }
    }
}

/// Marks the hub as no longer reading the feed when its run ends, however it ends.
struct Reading<'a>(&'a ConsoleHub);

impl Drop for Reading<'_> {
    fn drop(&mut self) {
        self.0.lock().reading_since = None;
    }
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
            check: None,
        }
    }

    /// Takes only the lines and events the host believes: sealed by the current registration
    /// of the worker their instance was placed on (read from `store`, the epoch remembered for a
    /// second). Without this (a hub without a store, in tests), every well-formed line is
    /// taken.
    pub fn checking_senders_in(mut self, store: &Store) -> Self {
        self.check = Some(SenderCheck::for_live_view(store));
        self
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        lock(&self.inner)
    }

    /// Records a line and wakes the watchers of its console.
    pub fn push(&self, line: ConsoleLine) {
        let console = Arc::clone(
            self.lock()
                .consoles
                .entry(line.instance_id)
                .or_insert_with(|| Arc::new(Console::new())),
        );
        console.push(line, self.backlog_lines);
    }

    /// A watcher of a live `instance`: the backlog after `after` (a `Last-Event-ID`), then the
    /// lines from then on, until the instance ends.
    pub fn subscribe(&self, instance: InstanceId, after: Option<u64>) -> ConsoleSubscription {
        let console = Arc::clone(
            self.lock()
                .consoles
                .entry(instance)
                .or_insert_with(|| Arc::new(Console::new())),
        );
        ConsoleSubscription::new(console, after)
    }

    /// A watcher of an ended `instance`'s backlog (after `after`), while the hub still has it
    /// ([`KEEP_AFTER_END`]); it ends after the backlog. `None` once the hub dropped it (or
    /// never saw the instance).
    pub fn subscribe_ended(
        &self,
        instance: InstanceId,
        after: Option<u64>,
    ) -> Option<ConsoleSubscription> {
        let console = Arc::clone(self.lock().consoles.get(&instance)?);
        Some(ConsoleSubscription::new(console, after))
    }

    /// A watcher of `tail` (after `after`), the console tail the store kept for an ended
    /// instance: it ends after the last line. Nothing is added to the hub.
    pub fn replay(tail: ConsoleTail, after: Option<u64>) -> ConsoleSubscription {
        ConsoleSubscription::new(Arc::new(Console::replay(tail)), after)
    }

    /// A watcher of a live `instance` whose earlier lines come from `tail` (its worker's log):
    /// the tail's lines after `after`, then the hub's after the last of them, then live.
    pub fn subscribe_after_tail(
        &self,
        instance: InstanceId,
        tail: ConsoleTail,
        after: Option<u64>,
    ) -> ConsoleSubscription {
        let mut subscription = self.subscribe(instance, after);
        subscription.pending.extend(
            tail.lines
                .into_iter()
                .filter(|line| after.is_none_or(|after| line.seq > after))
                .map(|line| Arc::new(SharedLine::new(line))),
        );
        subscription
    }

    /// Whether the hub has read the console of an instance created at `created_at` from its
    /// first line: it was reading the feed already, or it holds line 1, or a full backlog.
    /// When not (the host restarted, or lost the bus, since), the worker's log has lines the
    /// hub never saw.
    pub fn has_seen_from_start(&self, instance: InstanceId, created_at: DateTime<Utc>) -> bool {
        let inner = self.lock();
        if inner.reading_since.is_some_and(|since| since <= created_at) {
            return true;
        }
        inner.consoles.get(&instance).is_some_and(|console| {
            let state = lock(&console.state);
            state.backlog.len() >= self.backlog_lines
                || state.backlog.front().is_some_and(|line| line.seq() == 1)
        })
    }

    /// Whether to ask `instance`'s worker for its console tail now: at most once every
    /// [`ASK_TAIL_EVERY`] per instance (every watcher that opens the console would ask).
    pub fn should_ask_for_tail(&self, instance: InstanceId, now: Instant) -> bool {
        let mut inner = self.lock();
        inner
            .asked
            .retain(|_, at| now.saturating_duration_since(*at) < ASK_TAIL_EVERY);
        if inner.asked.contains_key(&instance) {
            return false;
        }
        inner.asked.insert(instance, now);
        true
    }

    /// Notes that an instance ended: its live stream closes after [`CLOSE_AFTER_END`].
    pub fn instance_ended(&self, instance: InstanceId) {
        let console = Arc::clone(
            self.lock()
                .consoles
                .entry(instance)
                .or_insert_with(|| Arc::new(Console::new())),
        );
        lock(&console.state)
            .ended_at
            .get_or_insert_with(Instant::now);
    }

    /// Closes the live streams and drops the backlogs whose time has come.
    pub fn expire(&self, now: Instant) {
        self.lock().consoles.retain(|_, console| {
            let (ended_at, closed) = {
                let state = lock(&console.state);
                (state.ended_at, state.closed)
            };
            let Some(ended) = ended_at else { return true };
            if !closed && now.duration_since(ended) >= CLOSE_AFTER_END {
                console.close();
            }
            now.duration_since(ended) < KEEP_AFTER_END
        });
    }
    /// Feeds the hub from `manman.console` and `manman.events` until `shutdown` is cancelled.
    pub async fn run(&self, bus: &Bus, shutdown: CancellationToken) -> Result<(), BusError> {
        let mut lines = bus.watch_console(None).await?;
        let mut events = bus.watch_events().await?;
        self.lock().reading_since = Some(Utc::now());
        let _reading = Reading(self);
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

    async fn believes_line(&self, message: &Message, instance: InstanceId) -> bool {
        match &self.check {
            Some(check) => check.believes_console_line(message, instance).await,
            None => true,
        }
    }

    async fn believes_event(&self, message: &Message, event: &Event) -> bool {
        match &self.check {
            Some(check) => check.believes_event(message, event).await,
            None => true,
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
                if self
                    .believes_line(&delivery.message, line.instance_id)
                    .await
                {
                    self.push(line);
                } else {
                    tracing::warn!(instance_id = line.instance_id.get(), message_id = %delivery.message.id, "console hub: passing over a console line not sealed by its instance's worker");
                }
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
        if let Ok(event @ Event::Status(_)) = delivery.message.decode::<Event>()
            && self.believes_event(&delivery.message, &event).await
            && let Event::Status(report) = event
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
    use futures::FutureExt;

    fn line(seq: u64) -> ConsoleLine {
        ConsoleLine {
            instance_id: InstanceId(1),
            seq,
            stream: ConsoleStream::Stdout,
            text: format!("line {seq}"),
            at: Utc::now(),
        }
    }

    /// What `sub` can read now, without waiting: line numbers, and `lagged N@LAST`.
    fn available(sub: &mut ConsoleSubscription) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(Some(item)) = sub.next().now_or_never() {
            out.push(match item {
                ConsoleItem::Line(line) => line.seq().to_string(),
                ConsoleItem::Lagged {
                    missed,
                    last_missed,
                } => format!("lagged {missed}@{last_missed}"),
            });
        }
        out
    }

    fn backlog(hub: &ConsoleHub, instance: InstanceId) -> Vec<Arc<SharedLine>> {
        let console = Arc::clone(&hub.lock().consoles[&instance]);
        let state = lock(&console.state);
        state.backlog.iter().cloned().collect()
    }

    #[test]
    fn backlog_is_bounded_and_resumable() {
        let hub = ConsoleHub::new(3);
        for seq in 1..=5 {
            hub.push(line(seq));
        }
        hub.push(line(4)); // a redelivery is ignored
        let mut all = hub.subscribe(InstanceId(1), None);
        assert_eq!(available(&mut all), ["3", "4", "5"]);
        let mut resumed = hub.subscribe(InstanceId(1), Some(4));
        assert_eq!(available(&mut resumed), ["5"]);
    }

    #[tokio::test]
    async fn live_lines_follow_the_backlog() {
        let hub = ConsoleHub::default();
        hub.push(line(1));
        let mut sub = hub.subscribe(InstanceId(1), None);
        assert_eq!(available(&mut sub), ["1"]);
        let waiting = tokio::spawn(async move { sub.next().await.map(|_| sub) });
        tokio::task::yield_now().await;
        hub.push(line(2));
        let mut sub = waiting
            .await
            .unwrap()
            .expect("the live line wakes the watcher");
        assert_eq!(sub.cursor, Some(2));
        assert!(available(&mut sub).is_empty());
    }

    #[test]
    fn subscribers_share_the_backlog_and_hold_no_copy_of_it() {
        let hub = ConsoleHub::default();
        for seq in 1..=BACKLOG_LINES as u64 {
            hub.push(line(seq));
        }
        let mut subs: Vec<_> = (0..100)
            .map(|_| hub.subscribe(InstanceId(1), None))
            .collect();
        let lines = backlog(&hub, InstanceId(1));
        // Each line is referenced by the backlog (and by `lines`, here) only.
        assert!(lines.iter().all(|l| Arc::strong_count(l) == 2));
        // A reading watcher holds one chunk of the shared lines, not copies of them.
        let first = subs[0].next().now_or_never().flatten();
        assert!(matches!(first, Some(ConsoleItem::Line(ref l)) if Arc::ptr_eq(l, &lines[0])));
        drop(first);
        let held = lines.iter().filter(|l| Arc::strong_count(l) > 2).count();
        assert_eq!(held, READ_CHUNK - 1);
        subs.clear();
        assert!(lines.iter().all(|l| Arc::strong_count(l) == 2));
    }

    #[test]
    fn a_watcher_that_falls_off_the_backlog_is_told_how_many_lines_it_missed() {
        let hub = ConsoleHub::new(10);
        hub.push(line(1));
        let mut sub = hub.subscribe(InstanceId(1), None);
        assert_eq!(available(&mut sub), ["1"]);
        for seq in 2..=30 {
            hub.push(line(seq));
        }
        // 2..=20 fell off the window of 10 (21..=30) before the watcher read them.
        let mut want = vec!["lagged 19@20".to_owned()];
        want.extend((21..=30).map(|s| s.to_string()));
        assert_eq!(available(&mut sub), want);
    }

    #[test]
    fn a_watcher_behind_by_more_than_a_chunk_is_told_too() {
        let hub = ConsoleHub::new(100);
        for seq in 1..=100 {
            hub.push(line(seq));
        }
        let mut sub = hub.subscribe(InstanceId(1), None);
        // It read half of what it took, then the console moved on by a whole window.
        for _ in 0..32 {
            sub.next().now_or_never().flatten().expect("a line");
        }
        for seq in 101..=250 {
            hub.push(line(seq));
        }
        let read = available(&mut sub);
        // The rest of its chunk (33..=64), then the jump to the window (151..=250).
        let mut want: Vec<String> = (33..=64).map(|s| s.to_string()).collect();
        want.push("lagged 86@150".to_owned());
        want.extend((151..=250).map(|s| s.to_string()));
        assert_eq!(read, want);
    }

    #[test]
    fn lines_lost_before_the_host_are_reported_not_skipped_silently() {
        let hub = ConsoleHub::default();
        for seq in [1, 2, 5, 6] {
            hub.push(line(seq));
        }
        let mut sub = hub.subscribe(InstanceId(1), None);
        assert_eq!(available(&mut sub), ["1", "2", "lagged 2@4", "5", "6"]);
    }

    #[test]
    fn resuming_after_lines_that_left_the_backlog_reports_them() {
        let hub = ConsoleHub::new(10);
        for seq in 1..=30 {
            hub.push(line(seq));
        }
        let mut sub = hub.subscribe(InstanceId(1), Some(3));
        let read = available(&mut sub);
        assert_eq!(read[0], "lagged 17@20");
        assert_eq!(read[1], "21");
        assert_eq!(read.len(), 11);
        // Resuming after the reported gap reports nothing again.
        let mut again = hub.subscribe(InstanceId(1), Some(20));
        assert_eq!(available(&mut again)[0], "21");
    }

    #[test]
    fn a_line_is_encoded_once_for_every_watcher() {
        let hub = ConsoleHub::default();
        hub.push(line(1));
        let mut a = hub.subscribe(InstanceId(1), None);
        let mut b = hub.subscribe(InstanceId(1), None);
        let (Some(Some(ConsoleItem::Line(x))), Some(Some(ConsoleItem::Line(y)))) =
            (a.next().now_or_never(), b.next().now_or_never())
        else {
            panic!("both read line 1");
        };
        assert!(std::ptr::eq(x.json(), y.json()));
        let decoded: ConsoleLine = serde_json::from_str(x.json()).unwrap();
        assert_eq!(&decoded, x.line());
    }

    #[tokio::test]
    async fn an_ended_instance_closes_its_stream_then_forgets_it() {
        let hub = ConsoleHub::default();
        hub.push(line(1));
        let mut sub = hub.subscribe(InstanceId(1), None);
        hub.instance_ended(InstanceId(1));
        let ended = Instant::now();
        hub.expire(ended);
        hub.push(line(2));
        assert_eq!(
            available(&mut sub),
            ["1", "2"],
            "lines still arrive during the grace"
        );
        hub.expire(ended + CLOSE_AFTER_END);
        assert!(sub.next().await.is_none(), "the stream ends at the close");
        let mut late = hub
            .subscribe_ended(InstanceId(1), None)
            .expect("kept a while");
        assert_eq!(
            available(&mut late),
            ["1", "2"],
            "the backlog is kept for late readers"
        );
        assert!(late.next().await.is_none());
        hub.expire(ended + KEEP_AFTER_END);
        assert!(
            hub.subscribe_ended(InstanceId(1), None).is_none(),
            "then forgotten"
        );
    }

    #[tokio::test]
    async fn a_replay_reads_a_kept_tail_after_the_cursor_and_ends() {
        let tail = ConsoleTail {
            lines: [3, 4, 5, 9].into_iter().map(line).collect(),
        };
        let mut all = ConsoleHub::replay(tail.clone(), None);
        assert_eq!(available(&mut all), ["3", "4", "5", "lagged 3@8", "9"]);
        assert!(all.next().await.is_none(), "a replay ends");
        let mut resumed = ConsoleHub::replay(tail, Some(4));
        assert_eq!(available(&mut resumed), ["5", "lagged 3@8", "9"]);
    }
}
