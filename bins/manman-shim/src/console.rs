//! [`Console`]: the numbered lines of one server, the recent ones held for a worker that
//! (re)attaches, and the queue of messages to the attached worker.
//!
//! Nothing is written to a socket under the lock: each connection has a writer thread that
//! takes its messages from the queue here. A full queue (a worker that reads slowly) holds the
//! server's output back, as a pipe would; with no worker attached, lines are only held.

use crate::protocol::{Exit, Hello, Line, Stream, ToWorker, VERSION};
use std::collections::VecDeque;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Bytes of console lines held for a replay (each line counted with [`LINE_OVERHEAD`]): what a
/// worker that is away for a while gets back when it returns. Older lines are dropped (the
/// worker sees the gap in the numbers).
pub const REPLAY_BYTES: usize = 256 * 1024;
/// What a held line costs besides its text (its number, time, stream and allocation), so that
/// a server printing empty lines cannot grow the shim without bound.
pub const LINE_OVERHEAD: usize = 64;
/// Messages queued for the attached worker before the server's output is held back…
pub const QUEUE_LIMIT: usize = 4096;
/// …or bytes of them.
pub const QUEUE_BYTES: usize = 1024 * 1024;
/// How long a worker asking to attach waits for the attached one to go (a restarted worker
/// may connect before the shim has seen its predecessor's connection close).
pub const TAKEOVER_WAIT: Duration = Duration::from_secs(3);

/// What the shim's threads share.
#[derive(Debug)]
pub struct Console {
    state: Mutex<State>,
    changed: Condvar,
    pid: u32,
}

/// The attached worker: the messages its writer thread is to send.
#[derive(Debug)]
struct Attached {
    connection: u64,
    queue: VecDeque<String>,
    queue_bytes: usize,
    stream: UnixStream,
    /// It asked for the lines (`R`); until then it only attends (`A`): lines are held, not
    /// queued.
    streaming: bool,
}

impl Attached {
    fn full(&self) -> bool {
        self.streaming && (self.queue.len() >= QUEUE_LIMIT || self.queue_bytes >= QUEUE_BYTES)
    }

    fn send(&mut self, message: &ToWorker) {
        let text = message.to_string();
        self.queue_bytes += text.len();
        self.queue.push_back(text);
    }
}

/// The console and the shim's facts, under one lock so that a line, a replay and the exit are
/// always queued in order.
#[derive(Debug)]
pub struct State {
    next_seq: u64,
    held: VecDeque<Line>,
    held_bytes: usize,
    /// The attached worker, once it asked for its replay.
    attached: Option<Attached>,
    /// The number the next connection gets.
    next_connection: u64,
    /// Since when no worker is attached (`None`: one is).
    pub(crate) unattended_since: Option<Instant>,
    /// How the server ended, once its output was read to the end.
    pub(crate) exit: Option<Exit>,
    /// Output streams still open.
    pub(crate) outputs_open: u8,
    /// The worker recorded the exit.
    pub(crate) done: bool,
    /// The shim stopped the server itself (no worker attached in time, or a SIGTERM).
    pub(crate) stopped_by_shim: bool,
    /// The shim got SIGTERM (the machine shuts down): stop the server now.
    pub(crate) stop_requested: bool,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn held_cost(line: &Line) -> usize {
    line.text.len() + LINE_OVERHEAD
}

impl Console {
    /// The console of server `pid`, numbering from `first_seq`.
    pub fn new(pid: u32, first_seq: u64) -> Self {
        Self {
            state: Mutex::new(State {
                next_seq: first_seq,
                held: VecDeque::new(),
                held_bytes: 0,
                attached: None,
                next_connection: 1,
                unattended_since: Some(Instant::now()),
                exit: None,
                outputs_open: 2,
                done: false,
                stopped_by_shim: false,
                stop_requested: false,
            }),
            changed: Condvar::new(),
            pid,
        }
    }

    /// The server's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The state, locked.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Wakes whoever waits for a change.
    pub fn notify(&self) {
        self.changed.notify_all();
    }

    /// Waits for a change, at most `timeout`.
    pub fn wait<'a>(
        &self,
        state: MutexGuard<'a, State>,
        timeout: Duration,
    ) -> MutexGuard<'a, State> {
        self.changed
            .wait_timeout(state, timeout)
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .0
    }

    /// Numbers a line, holds it and queues it for the attached worker (waiting while its queue
    /// is full). Once the exit is known, lines are only held: the exit is the last message.
    pub fn push(&self, stream: Stream, text: String) {
        let mut state = self.lock();
        while state.attached.as_ref().is_some_and(Attached::full) && state.exit.is_none() {
            state = self.wait(state, Duration::from_millis(100));
        }
        let line = Line {
            seq: state.next_seq,
            stream,
            at_ms: now_ms(),
            text,
        };
        state.next_seq += 1;
        if state.exit.is_none() {
            state.queue(&ToWorker::Line(line.clone()));
        }
        state.held_bytes += held_cost(&line);
        state.held.push_back(line);
        while state.held_bytes > REPLAY_BYTES && state.held.len() > 1 {
            if let Some(old) = state.held.pop_front() {
                state.held_bytes -= held_cost(&old);
            }
        }
        drop(state);
        self.notify();
    }

    /// A new connection: its number, and the hello to send it. It is not attached (and the
    /// attached worker, if any, is not disturbed) until it asks for its replay.
    pub fn hello(&self) -> (Hello, u64) {
        let mut state = self.lock();
        let connection = state.next_connection;
        state.next_connection += 1;
        let oldest = state.held.front().map_or(state.next_seq, |l| l.seq);
        let hello = Hello {
            version: VERSION,
            pid: self.pid,
            oldest,
            next: state.next_seq,
        };
        (hello, connection)
    }

    /// Attaches connection `connection` (`stream`, for shutting it down) at its request, and
    /// queues [`ToWorker::Kept`]: with `from`, it streams at once (the held lines from `from`
    /// on, the exit if known, then every new line); without, it only attends until
    /// [`Self::stream`]. A worker already attached is given [`TAKEOVER_WAIT`] to go; if it
    /// stays, the newcomer is refused (only one worker supervises a server): why.
    pub fn attach(
        &self,
        connection: u64,
        stream: &UnixStream,
        from: Option<u64>,
    ) -> Result<(), String> {
        let mut state = self.lock();
        let deadline = Instant::now() + TAKEOVER_WAIT;
        while state.attached.is_some() && Instant::now() < deadline {
            state = self.wait(state, Duration::from_millis(50));
        }
        if state.attached.is_some() {
            return Err("another worker is attached to this server".to_owned());
        }
        let stream = stream.try_clone().map_err(|e| e.to_string())?;
        let mut attached = Attached {
            connection,
            queue: VecDeque::new(),
            queue_bytes: 0,
            stream,
            streaming: false,
        };
        attached.send(&ToWorker::Kept);
        state.attached = Some(attached);
        state.unattended_since = None;
        if let Some(from) = from {
            state.stream(from);
        }
        drop(state);
        self.notify();
        Ok(())
    }

    /// The attending connection `connection` asks for the lines from `from` on: the held ones,
    /// the exit if known, then every new line. Returns whether it is the attached one.
    pub fn stream(&self, connection: u64, from: u64) -> bool {
        let mut state = self.lock();
        if !state.is_attached(connection) {
            return false;
        }
        state.stream(from);
        drop(state);
        self.notify();
        true
    }

    /// Whether `connection` is the attached one.
    pub fn is_attached(&self, connection: u64) -> bool {
        self.lock().is_attached(connection)
    }

    /// Connection `connection` ended (or failed): detached if it was attached.
    pub fn detach(&self, connection: u64) {
        let mut state = self.lock();
        if state.is_attached(connection) {
            state.detach();
        }
        drop(state);
        self.notify();
    }

    /// Writes connection `connection`'s queued messages to `stream` until it is detached or a
    /// write fails; for its writer thread.
    pub fn write_queued(&self, connection: u64, mut stream: UnixStream) {
        loop {
            let mut state = self.lock();
            let batch: Vec<String> = loop {
                match &mut state.attached {
                    Some(a) if a.connection == connection && !a.queue.is_empty() => {
                        a.queue_bytes = 0;
                        break a.queue.drain(..).collect();
                    }
                    Some(a) if a.connection == connection => {}
                    _ => return,
                }
                state = self.wait(state, Duration::from_millis(500));
            };
            drop(state);
            // Room in the queue again: output held back goes on.
            self.notify();
            if stream.write_all(batch.concat().as_bytes()).is_err() {
                self.detach(connection);
                return;
            }
        }
    }
}

impl State {
    /// Queues a message for the attached worker, if it streams.
    pub(crate) fn queue(&mut self, message: &ToWorker) {
        if let Some(attached) = &mut self.attached
            && attached.streaming
        {
            attached.send(message);
        }
    }

    /// Whether the attached worker's queue is full (it reads slowly, or not yet).
    pub(crate) fn queue_full(&self) -> bool {
        self.attached.as_ref().is_some_and(Attached::full)
    }

    /// Starts streaming to the attached worker: the held lines from `from` on, the exit if
    /// known.
    fn stream(&mut self, from: u64) {
        let replay: Vec<ToWorker> = self
            .held
            .iter()
            .filter(|l| l.seq >= from)
            .map(|l| ToWorker::Line(l.clone()))
            .chain(self.exit.map(ToWorker::Exit))
            .collect();
        if let Some(attached) = &mut self.attached
            && !attached.streaming
        {
            attached.streaming = true;
            for message in &replay {
                attached.send(message);
            }
        }
    }

    fn is_attached(&self, connection: u64) -> bool {
        self.attached
            .as_ref()
            .is_some_and(|a| a.connection == connection)
    }

    fn detach(&mut self) {
        if let Some(attached) = self.attached.take() {
            let _ = attached.stream.shutdown(std::net::Shutdown::Both);
        }
        if self.unattended_since.is_none() {
            self.unattended_since = Some(Instant::now());
        }
    }

    /// Whether no worker has been attached for `grace` or longer.
    pub(crate) fn unattended_for(&self, grace: Duration) -> bool {
        self.unattended_since
            .is_some_and(|since| since.elapsed() >= grace)
    }

    /// Whether the server is to be stopped now: no worker attached for `grace`, or a SIGTERM.
    pub(crate) fn must_stop(&self, grace: Duration) -> bool {
        self.stop_requested || self.unattended_for(grace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_lines_are_bounded_even_when_empty() {
        let console = Console::new(1, 1);
        for _ in 0..100_000 {
            console.push(Stream::Stdout, String::new());
        }
        let state = console.lock();
        assert!(
            state.held.len() <= REPLAY_BYTES / LINE_OVERHEAD,
            "{}",
            state.held.len()
        );
        assert_eq!(state.next_seq, 100_001);
        assert_eq!(state.held.back().map(|l| l.seq), Some(100_000));
    }

    #[test]
    fn a_second_worker_is_refused_while_the_first_stays_attached() {
        let console = Console::new(1, 1);
        let (first, _peer) = UnixStream::pair().unwrap();
        let (second, _peer2) = UnixStream::pair().unwrap();
        let (_, a) = console.hello();
        let (_, b) = console.hello();
        assert!(console.attach(a, &first, Some(1)).is_ok());
        let began = Instant::now();
        assert!(console.attach(b, &second, Some(1)).is_err(), "refused");
        assert!(
            began.elapsed() >= TAKEOVER_WAIT,
            "after waiting for the first to go"
        );
        assert!(console.is_attached(a), "the first is undisturbed");
        console.detach(a);
        assert!(
            console.attach(b, &second, Some(1)).is_ok(),
            "taken once the first has gone"
        );
    }

    #[test]
    fn an_attending_worker_gets_the_lines_it_asks_for_and_the_exit_last() {
        let console = Console::new(1, 10);
        for n in 0..5 {
            console.push(Stream::Stdout, format!("line {n}"));
        }
        let (stream, _peer) = UnixStream::pair().unwrap();
        let (_, connection) = console.hello();
        assert!(console.attach(connection, &stream, None).is_ok());
        console.push(Stream::Stdout, "held while it attends".into());
        {
            let state = console.lock();
            let queue = &state.attached.as_ref().unwrap().queue;
            assert_eq!(queue.iter().collect::<Vec<_>>(), ["K\n"], "only the answer");
            assert_eq!(state.unattended_since, None, "attended: not stopped");
        }
        console.lock().exit = Some(Exit {
            code: Some(0),
            signal: None,
        });
        // An echo written just before the exit is held, never sent after it.
        console.push(Stream::Stdin, "late".into());
        assert!(console.stream(connection, 12));
        let state = console.lock();
        let queue = &state.attached.as_ref().unwrap().queue;
        assert_eq!(queue.len(), 7, "K, lines 12 to 16 and the exit: {queue:?}");
        assert!(queue[1].starts_with("L 12 o"));
        assert!(queue[4].ends_with("held while it attends\n"));
        assert!(queue[5].ends_with(" late\n"));
        assert_eq!(queue[6], "X 0 -\n", "the exit last");
    }
}
