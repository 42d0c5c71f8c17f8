//! [`Console`]: the numbered lines of one server, the recent ones held for a worker that
//! (re)attaches, and the attached worker they stream to.

use crate::protocol::{Exit, Hello, Line, Stream, ToWorker, VERSION};
use std::collections::VecDeque;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Bytes of console text held for a replay: what a worker that is away for a while gets back
/// when it returns. Older lines are dropped (the worker sees the gap in the numbers).
pub const REPLAY_BYTES: usize = 256 * 1024;

/// What the shim's threads share.
#[derive(Debug)]
pub struct Console {
    state: Mutex<State>,
    changed: Condvar,
    pid: u32,
}

/// The console and the shim's facts, under one lock so that a line, a replay and the exit are
/// always sent in order.
#[derive(Debug)]
pub struct State {
    next_seq: u64,
    held: VecDeque<Line>,
    held_bytes: usize,
    /// The attached worker's connection, once it asked for its replay.
    worker: Option<UnixStream>,
    /// Which connection is the current one (a newer one replaces it).
    pub(crate) connection: u64,
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

impl Console {
    /// The console of server `pid`, numbering from `first_seq`.
    pub fn new(pid: u32, first_seq: u64) -> Self {
        Self {
            state: Mutex::new(State {
                next_seq: first_seq,
                held: VecDeque::new(),
                held_bytes: 0,
                worker: None,
                connection: 0,
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

    /// Numbers a line, holds it and sends it to the attached worker.
    pub fn push(&self, stream: Stream, text: String) {
        let mut state = self.lock();
        let line = Line {
            seq: state.next_seq,
            stream,
            at_ms: now_ms(),
            text,
        };
        state.next_seq += 1;
        state.send(&ToWorker::Line(line.clone()));
        state.held_bytes += line.text.len();
        state.held.push_back(line);
        while state.held_bytes > REPLAY_BYTES && state.held.len() > 1 {
            if let Some(old) = state.held.pop_front() {
                state.held_bytes -= old.text.len();
            }
        }
    }

    /// The hello for a new connection, which becomes the current one (its number returned).
    pub fn hello(&self) -> (Hello, u64) {
        let mut state = self.lock();
        state.detach();
        state.connection += 1;
        let oldest = state.held.front().map_or(state.next_seq, |l| l.seq);
        let hello = Hello {
            version: VERSION,
            pid: self.pid,
            oldest,
            next: state.next_seq,
        };
        (hello, state.connection)
    }

    /// Attaches `worker` (connection `connection`, if still the current one): the held lines
    /// from `from` on, the exit if known, then every new line.
    pub fn attach(&self, connection: u64, mut worker: UnixStream, from: u64) {
        let mut state = self.lock();
        if state.connection != connection {
            return;
        }
        let mut replay = Vec::new();
        for line in state.held.iter().filter(|l| l.seq >= from) {
            replay.extend_from_slice(ToWorker::Line(line.clone()).to_string().as_bytes());
        }
        if let Some(exit) = state.exit {
            replay.extend_from_slice(ToWorker::Exit(exit).to_string().as_bytes());
        }
        if worker.write_all(&replay).is_ok() {
            state.worker = Some(worker);
            state.unattended_since = None;
        }
        drop(state);
        self.notify();
    }

    /// Connection `connection` ended.
    pub fn detach(&self, connection: u64) {
        let mut state = self.lock();
        if state.connection == connection {
            state.detach();
        }
        drop(state);
        self.notify();
    }
}

impl State {
    /// Sends a message to the attached worker; a worker that cannot take it is detached.
    pub(crate) fn send(&mut self, message: &ToWorker) {
        if let Some(worker) = &mut self.worker
            && worker.write_all(message.to_string().as_bytes()).is_err()
        {
            self.detach();
        }
    }

    fn detach(&mut self) {
        if let Some(worker) = self.worker.take() {
            let _ = worker.shutdown(std::net::Shutdown::Both);
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
