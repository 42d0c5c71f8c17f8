//! Signed bus messages: every command is sealed by the host for the worker it is for, every
//! event and console line by the worker that sends it, with the key of that worker's current
//! registration (its epoch). Anyone can publish on a broker; only the host and one worker
//! registration can make a seal that checks.
//!
//! The scheme (see `docs/architecture.md`, "Signed messages"):
//!
//! - the host keeps one [`BusSecret`], in its store, so every replica has the same and it
//!   survives restarts;
//! - a worker's [`BusKey`] for an epoch is `HMAC-SHA256(secret, "manman bus key v1" ‖ worker id ‖
//!   epoch)`: the host derives it whenever it needs it, and gives it to the worker in the answer
//!   to its registration, over the authenticated worker API. A new registration is a new epoch,
//!   so a new key; the old one is worthless from then on;
//! - a message's [`Seal`] is the worker id, the epoch and
//!   `HMAC-SHA256(key, purpose ‖ message id ‖ kind ‖ correlation id ‖ body)`, each part
//!   length-prefixed. The purpose is the exchange's role (command, event, console line), so a
//!   signature made for one never checks as another. The timestamp and expiry are left out:
//!   AMQP keeps them only to the second, and the body of a command carries its own expiry.

use crate::id::WorkerId;
use crate::ports::Message;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::fmt;

type HmacSha256 = Hmac<Sha256>;

/// The host's secret, from which every worker's [`BusKey`] is derived. Its `Debug` does not
/// show it.
#[derive(Clone, PartialEq, Eq)]
pub struct BusSecret([u8; 32]);

impl BusSecret {
    /// A new random secret.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        // The operating system's random source failing is not something to carry on from.
        getrandom::fill(&mut bytes).expect("the operating system's random source failed");
        Self(bytes)
    }

    /// A secret as stored.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The bytes to store.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The hosts' own key: what a host seals the events it recorded with, for every replica's
    /// event hub to check. It is the key of [`HOST_SEAL`] epoch 0 — no worker has id 0 — and
    /// only who holds the secret (the hosts) can make it.
    pub fn host_key(&self) -> WorkerKey {
        self.worker_key(HOST_SEAL, 0)
    }

    /// The key of `worker_id`'s registration `epoch`.
    pub fn worker_key(&self, worker_id: WorkerId, epoch: i64) -> WorkerKey {
        let mut mac = HmacSha256::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!());
        mac.update(b"manman bus key v1");
        mac.update(&worker_id.get().to_be_bytes());
        mac.update(&epoch.to_be_bytes());
        WorkerKey {
            worker_id,
            epoch,
            key: BusKey(mac.finalize().into_bytes().into()),
        }
    }
}

/// The sender id in the seal of what a host sends as itself ([`BusSecret::host_key`]): 0, an
/// id no worker has (ids start at 1).
pub const HOST_SEAL: WorkerId = WorkerId(0);

impl fmt::Debug for BusSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BusSecret(…)")
    }
}

/// What a message is, as far as its seal goes: the role of the exchange it travels on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A command from the host to a worker (`manman.commands`).
    Command,
    /// An event from a worker to the host (`manman.events`).
    Event,
    /// A console line from a worker (`manman.console`).
    Console,
    /// An event a host recorded (`manman.recorded`), sealed with [`BusSecret::host_key`].
    Recorded,
}

impl Purpose {
    fn label(self) -> &'static [u8] {
        match self {
            Self::Command => b"command",
            Self::Event => b"event",
            Self::Console => b"console",
            Self::Recorded => b"recorded",
        }
    }
}

/// One worker registration's key: seals its events and console lines, and the host's commands
/// to it. Travels as 64 hex digits; its `Debug` does not show it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(value_type = String))]
#[serde(try_from = "String", into = "String")]
pub struct BusKey([u8; 32]);

impl BusKey {
    fn mac(
        &self,
        purpose: Purpose,
        worker_id: WorkerId,
        epoch: i64,
        message: &Message,
    ) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!());
        let mut part = |bytes: &[u8]| {
            let len = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
            mac.update(&len.to_be_bytes());
            mac.update(bytes);
        };
        part(purpose.label());
        part(&worker_id.get().to_be_bytes());
        part(&epoch.to_be_bytes());
        part(message.id.as_bytes());
        part(message.kind.as_bytes());
        part(message.correlation_id.as_deref().unwrap_or("").as_bytes());
        part(&message.body);
        mac
    }
}

/// A worker registration and its key: what seals and checks the messages of that
/// registration. The worker holds its own; the host derives any worker's from its
/// [`BusSecret`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerKey {
    worker_id: WorkerId,
    epoch: i64,
    key: BusKey,
}

impl WorkerKey {
    /// The key `key` of `worker_id`'s registration `epoch` (as the host gave it).
    pub fn new(worker_id: WorkerId, epoch: i64, key: BusKey) -> Self {
        Self {
            worker_id,
            epoch,
            key,
        }
    }

    /// The worker.
    pub fn worker_id(&self) -> WorkerId {
        self.worker_id
    }

    /// The registration.
    pub fn epoch(&self) -> i64 {
        self.epoch
    }

    /// The key itself, to hand to the worker.
    pub fn bus_key(&self) -> &BusKey {
        &self.key
    }

    /// Seals `message` as sent for `purpose` by (an event, a console line) or to (a command)
    /// this registration.
    pub fn seal(&self, purpose: Purpose, message: &mut Message) {
        let signature = self
            .key
            .mac(purpose, self.worker_id, self.epoch, message)
            .finalize()
            .into_bytes()
            .into();
        message.seal = Some(Seal {
            worker_id: self.worker_id,
            epoch: self.epoch,
            signature,
        });
    }

    /// Checks that `message` was sealed for `purpose` by or for this very registration, with
    /// its key.
    pub fn check(&self, purpose: Purpose, message: &Message) -> Result<(), SealError> {
        let seal = message.seal.as_ref().ok_or(SealError::Unsigned)?;
        if (seal.worker_id, seal.epoch) != (self.worker_id, self.epoch) {
            return Err(SealError::OtherRegistration {
                worker_id: seal.worker_id,
                epoch: seal.epoch,
            });
        }
        self.key
            .mac(purpose, seal.worker_id, seal.epoch, message)
            .verify_slice(&seal.signature)
            .map_err(|_| SealError::BadSignature)
    }
}

impl fmt::Debug for BusKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BusKey(…)")
    }
}

impl From<BusKey> for String {
    fn from(key: BusKey) -> Self {
        hex::encode(key.0)
    }
}

impl TryFrom<String> for BusKey {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut bytes)
            .map_err(|_| "a bus key is 64 hexadecimal digits".to_owned())?;
        Ok(Self(bytes))
    }
}

/// Who vouches for a message, and its signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seal {
    /// The worker a command is for, or an event or console line is from.
    pub worker_id: WorkerId,
    /// That worker's registration.
    pub epoch: i64,
    /// The HMAC-SHA256 of the message under that registration's key.
    pub signature: [u8; 32],
}

/// Why a message's seal does not check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// It carries no seal.
    #[error("it is unsigned")]
    Unsigned,
    /// It is sealed by or for another worker, or another registration of this one.
    #[error("it is sealed for worker {worker_id} epoch {epoch}, not this registration")]
    OtherRegistration {
        /// The worker its seal names.
        worker_id: WorkerId,
        /// The epoch its seal names.
        epoch: i64,
    },
    /// Its signature is not the one its worker's key makes.
    #[error("its signature does not match its worker's key for its epoch")]
    BadSignature,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn sealed(purpose: Purpose) -> (WorkerKey, Message) {
        let key = BusSecret::generate().worker_key(WorkerId(3), 2);
        let mut message =
            Message::json("status", &serde_json::json!({"a": 1}), Utc::now()).unwrap();
        key.seal(purpose, &mut message);
        (key, message)
    }

    #[test]
    fn a_sealed_message_checks_and_names_its_worker() {
        let (key, message) = sealed(Purpose::Event);
        assert_eq!(key.check(Purpose::Event, &message), Ok(()));
        let seal = message.seal.unwrap();
        assert_eq!((seal.worker_id, seal.epoch), (WorkerId(3), 2));
    }

    #[test]
    fn any_change_breaks_the_seal() {
        let (key, message) = sealed(Purpose::Event);
        let mut body = message.clone();
        body.body = br#"{"a":2}"#.to_vec();
        let mut kind = message.clone();
        kind.kind = "command_result".to_owned();
        let mut id = message.clone();
        id.id = uuid::Uuid::new_v4();
        let mut correlation = message.clone();
        correlation.correlation_id = Some("x".to_owned());
        let mut signature = message.clone();
        signature.seal.as_mut().unwrap().signature[0] ^= 1;
        for changed in [body, kind, id, correlation, signature] {
            assert_eq!(
                key.check(Purpose::Event, &changed),
                Err(SealError::BadSignature)
            );
        }
        assert_eq!(
            key.check(Purpose::Command, &message),
            Err(SealError::BadSignature)
        );
        let mut unsigned = message.clone();
        unsigned.seal = None;
        assert_eq!(
            key.check(Purpose::Event, &unsigned),
            Err(SealError::Unsigned)
        );
        let mut other = message;
        other.seal.as_mut().unwrap().epoch = 1;
        assert_eq!(
            key.check(Purpose::Event, &other),
            Err(SealError::OtherRegistration {
                worker_id: WorkerId(3),
                epoch: 1
            })
        );
    }

    #[test]
    fn keys_differ_by_worker_epoch_and_secret() {
        let secret = BusSecret::generate();
        let key = secret.worker_key(WorkerId(1), 1);
        assert_eq!(key, secret.worker_key(WorkerId(1), 1));
        assert_ne!(key.key, secret.worker_key(WorkerId(1), 2).key);
        assert_ne!(key.key, secret.worker_key(WorkerId(2), 1).key);
        assert_ne!(
            key.key,
            BusSecret::generate().worker_key(WorkerId(1), 1).key
        );
    }

    #[test]
    fn a_key_travels_as_hex_and_is_never_printed() {
        let key = BusSecret::generate().worker_key(WorkerId(1), 1).key;
        let json = serde_json::to_string(&key).unwrap();
        assert_eq!(json.len(), 66);
        assert_eq!(serde_json::from_str::<BusKey>(&json).unwrap(), key);
        assert!(serde_json::from_str::<BusKey>("\"abc\"").is_err());
        assert_eq!(format!("{key:?}"), "BusKey(…)");
    }
}
