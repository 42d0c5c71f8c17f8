//! [`Unsettled`]: the deliveries of one consumer's channel that are not settled yet, by
//! delivery tag, so that acks given together go out as one `basic.ack` with `multiple`.
//!
//! A batch handler acks its deliveries together (the status processor: up to 256 at once).
//! One frame each costs the broker and this client a frame and a lookup per message; one
//! `multiple` ack of the highest tag settles them all. It is only sent when every unsettled
//! delivery of the channel up to that tag is one being acked: the broker would settle any other
//! with it (a delivery still being handled, or one being requeued), and a later settle of that
//! one would then close the channel for an unknown delivery tag.
//!
//! A channel that lapin recovers numbers its deliveries from 1 again, so a tag alone does not
//! name a delivery: each is entered as a [`Slot`], its tag and a serial number, and only the
//! delivery entered in a slot can change it. A delivery of before the recovery, settled or
//! dropped after it, never touches the new delivery of the same tag.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

/// The unsettled deliveries of one channel (tags are per channel).
#[derive(Debug, Default)]
pub(crate) struct Unsettled(Mutex<Entries>);

#[derive(Debug, Default)]
struct Entries {
    by_tag: BTreeMap<u64, Entry>,
    /// The serial of the next delivery entered.
    next_serial: u64,
}

/// Where one delivery is entered: its tag, and which delivery of that tag it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slot {
    tag: u64,
    serial: u64,
}

#[derive(Debug)]
struct Entry {
    serial: u64,
    acker: lapin::Acker,
    state: State,
}

impl Entries {
    /// The entry of `slot`, if that delivery is still the one entered at its tag.
    fn get_mut(&mut self, slot: Slot) -> Option<&mut Entry> {
        self.by_tag
            .get_mut(&slot.tag)
            .filter(|e| e.serial == slot.serial)
    }
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
    /// [`Unsettled::sent`] with `slots`.
    Send {
        acker: lapin::Acker,
        multiple: bool,
        slots: Vec<Slot>,
    },
}

impl Unsettled {
    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A delivery handed to the application: where it is entered.
    pub(crate) fn open(&self, tag: u64, acker: lapin::Acker) -> Slot {
        let mut entries = self.lock();
        let serial = entries.next_serial;
        entries.next_serial += 1;
        entries.by_tag.insert(
            tag,
            Entry {
                serial,
                acker,
                state: State::Open,
            },
        );
        Slot { tag, serial }
    }

    /// Its ack is asked for: it may go out with others' (see [`Self::plan_ack`]).
    pub(crate) fn want_ack(&self, slot: Slot) {
        if let Some(entry) = self.lock().get_mut(slot) {
            entry.state = State::AckWanted;
        }
    }

    /// What to send for the ack of `slot`, asked for with [`Self::want_ack`]: one `multiple`
    /// ack of the highest tag up to which every unsettled delivery of the channel wants its ack
    /// (when `slot` is among them), or its own ack alone.
    pub(crate) fn plan_ack(&self, slot: Slot, own: &lapin::Acker) -> AckPlan {
        let mut entries = self.lock();
        let alone = || AckPlan::Send {
            acker: own.clone(),
            multiple: false,
            slots: vec![slot],
        };
        if own.poisoned() {
            // Its channel closed (or was recovered, with tags from 1 again): the broker has
            // put it back. It covers nothing, and its own ack says so.
            return alone();
        }
        match entries.get_mut(slot).map(|e| e.state) {
            Some(State::AckWanted) => {}
            // Being sent by another's ack.
            Some(State::Sending) => return AckPlan::Covered,
            Some(State::Open) => return alone(),
            // Another delivery holds its tag now (the channel was recovered: its own acker
            // tells the truth, that its channel closed).
            None if entries.by_tag.contains_key(&slot.tag) => return alone(),
            // Settled already.
            None => return AckPlan::Covered,
        }
        // Deliveries of a channel that closed (their ackers poisoned) are settled by the broker
        // already; they hold nothing up. One whose acker is merely used stays until its settle
        // is sent: lapin marks an acker used a moment before it queues the frame, and a
        // `multiple` ack queued in that moment would settle it first, making its own frame an
        // unknown delivery tag that closes the channel.
        entries
            .by_tag
            .retain(|t, e| *t == slot.tag || !e.acker.poisoned());
        let covered: Vec<Slot> = entries
            .by_tag
            .iter()
            .take_while(|(_, e)| e.state == State::AckWanted)
            .map(|(t, e)| Slot {
                tag: *t,
                serial: e.serial,
            })
            .collect();
        let slots = if covered.contains(&slot) {
            covered
        } else {
            vec![slot]
        };
        for s in &slots {
            if let Some(entry) = entries.get_mut(*s) {
                entry.state = State::Sending;
            }
        }
        let highest = *slots.last().unwrap_or(&slot);
        let acker = entries
            .get_mut(highest)
            .map_or_else(|| own.clone(), |e| e.acker.clone());
        AckPlan::Send {
            acker,
            multiple: slots.len() > 1,
            slots,
        }
    }

    /// A requeue or dead-letter of `slot` is being sent: no `multiple` ack covers it meanwhile.
    pub(crate) fn sending(&self, slot: Slot) {
        if let Some(entry) = self.lock().get_mut(slot) {
            entry.state = State::Sending;
        }
    }

    /// The settles of `slots` were sent (or failed with their channel): they are gone.
    pub(crate) fn sent(&self, slots: &[Slot]) {
        let mut entries = self.lock();
        for slot in slots {
            if entries.get_mut(*slot).is_some() {
                entries.by_tag.remove(&slot.tag);
            }
        }
    }
}
