//! [`Unsettled`]: the deliveries of one consumer's channel that are not settled yet, by
//! delivery tag, so that acks given together go out as one `basic.ack` with `multiple`.
//!
//! A batch handler acks its deliveries together (the status processor: up to 256 at once).
//! One frame each costs the broker and this client a frame and a lookup per message; one
//! `multiple` ack of the highest tag settles them all. It is only sent when every unsettled
//! delivery of the channel up to that tag is one being acked: the broker would settle any other
//! with it (a delivery still being handled, or one being requeued), and a later settle of that
//! one would then close the channel for an unknown delivery tag.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

/// The unsettled deliveries of one channel (tags are per channel).
#[derive(Debug, Default)]
pub(crate) struct Unsettled(Mutex<BTreeMap<u64, Entry>>);

#[derive(Debug)]
struct Entry {
    acker: lapin::Acker,
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Handed to the application, not settled yet.
    Open,
    /// Its ack is asked for and not sent yet.
    AckWanted,
    /// A settle covering it is being sent (removed once sent).
    Sending,
}

/// How to send an ack that was asked for.
#[derive(Debug)]
pub(crate) enum AckPlan {
    /// Another ack covers it (sent, or being sent): nothing to send. Its outcome is that
    /// ack's: if the channel fails under it, the broker delivers them all again.
    Covered,
    /// Send with this acker (`multiple` when it covers lower tags too), then call
    /// [`Unsettled::sent`] with `tags`.
    Send {
        acker: lapin::Acker,
        multiple: bool,
        tags: Vec<u64>,
    },
}

impl Unsettled {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Entry>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A delivery handed to the application.
    pub(crate) fn open(&self, tag: u64, acker: lapin::Acker) {
        self.lock().insert(
            tag,
            Entry {
                acker,
                state: State::Open,
            },
        );
    }

    /// Its ack is asked for: it may go out with others' (see [`Self::plan_ack`]).
    pub(crate) fn want_ack(&self, tag: u64) {
        if let Some(entry) = self.lock().get_mut(&tag) {
            entry.state = State::AckWanted;
        }
    }

    /// What to send for the ack of `tag`, asked for with [`Self::want_ack`]: one `multiple` ack
    /// of the highest tag up to which every unsettled delivery of the channel wants its ack
    /// (when `tag` is among them), or its own ack alone.
    pub(crate) fn plan_ack(&self, tag: u64, own: &lapin::Acker) -> AckPlan {
        let mut map = self.lock();
        match map.get(&tag).map(|e| e.state) {
            Some(State::AckWanted) => {}
            // Being sent by another's ack, or settled already.
            Some(State::Sending) | None => return AckPlan::Covered,
            Some(State::Open) => {
                return AckPlan::Send {
                    acker: own.clone(),
                    multiple: false,
                    tags: vec![tag],
                };
            }
        }
        // Deliveries of a channel that closed (their ackers poisoned) are settled by the broker
        // already; they hold nothing up.
        map.retain(|t, e| *t == tag || e.acker.usable());
        let covered: Vec<u64> = map
            .iter()
            .take_while(|(_, e)| e.state == State::AckWanted)
            .map(|(t, _)| *t)
            .collect();
        let tags = if covered.contains(&tag) {
            covered
        } else {
            vec![tag]
        };
        let highest = *tags.last().unwrap_or(&tag);
        for t in &tags {
            if let Some(entry) = map.get_mut(t) {
                entry.state = State::Sending;
            }
        }
        let acker = map
            .get(&highest)
            .map_or_else(|| own.clone(), |e| e.acker.clone());
        AckPlan::Send {
            acker,
            multiple: tags.len() > 1,
            tags,
        }
    }

    /// A requeue or dead-letter of `tag` is being sent: no `multiple` ack covers it meanwhile.
    pub(crate) fn sending(&self, tag: u64) {
        if let Some(entry) = self.lock().get_mut(&tag) {
            entry.state = State::Sending;
        }
    }

    /// The settles of `tags` were sent (or failed with their channel): they are gone.
    pub(crate) fn sent(&self, tags: &[u64]) {
        let mut map = self.lock();
        for tag in tags {
            map.remove(tag);
        }
    }
}
