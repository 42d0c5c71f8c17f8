//! A [`Message`] as AMQP properties and back.
//!
//! | `Message` | AMQP |
//! |---|---|
//! | `id` | `message_id` (a UUID) |
//! | `kind` | `type` |
//! | `timestamp` | `timestamp` (whole seconds) |
//! | `correlation_id` | `correlation_id` |
//! | `expires_at` | `expiration` (milliseconds left when published, `"0"` when already past) and header `manman-expires-at` (milliseconds since the epoch) |
//! | `body` | the body, `content_type = application/json`, `delivery_mode = 2` (persistent) |
//! | `seal` | headers `manman-worker` and `manman-epoch` (integers), `manman-signature` (64 hex digits) |

use chrono::{DateTime, Utc};
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use manman_core::id::WorkerId;
use manman_core::ports::{BusError, Message};
use manman_core::signing::Seal;
use uuid::Uuid;

/// The header carrying `expires_at` as milliseconds since the epoch.
pub(crate) const EXPIRES_AT_HEADER: &str = "manman-expires-at";
/// The header carrying the seal's worker id.
const SEAL_WORKER_HEADER: &str = "manman-worker";
/// The header carrying the seal's epoch.
const SEAL_EPOCH_HEADER: &str = "manman-epoch";
/// The header carrying the seal's signature, as hex.
const SEAL_SIGNATURE_HEADER: &str = "manman-signature";
/// RabbitMQ's count of earlier deliveries (quorum queues).
const DELIVERY_COUNT_HEADER: &str = "x-delivery-count";
/// RabbitMQ's history of a dead-lettered message.
const DEATH_HEADER: &str = "x-death";
/// What every body is.
const CONTENT_TYPE: &str = "application/json";
/// AMQP `delivery_mode` of a persistent message.
const PERSISTENT: u8 = 2;

/// The properties `message` is published with at `now`.
pub(crate) fn encode(message: &Message, now: DateTime<Utc>) -> Result<BasicProperties, BusError> {
    let short = |field: &str, value: &str| {
        ShortString::try_new(value).map_err(|e| BusError::Encode {
            detail: format!(
                "message {}: its {field} is too long for AMQP: {e}",
                message.id
            ),
        })
    };
    let mut properties = BasicProperties::default()
        .with_content_type(CONTENT_TYPE.into())
        .with_delivery_mode(PERSISTENT)
        .with_message_id(message.id.to_string().into())
        .with_type(short("kind", &message.kind)?)
        .with_timestamp(u64::try_from(message.timestamp.timestamp()).unwrap_or(0));
    if let Some(correlation_id) = &message.correlation_id {
        properties = properties.with_correlation_id(short("correlation id", correlation_id)?);
    }
    let mut headers = FieldTable::default();
    if let Some(expires_at) = message.expires_at {
        // Already past: "0" still reaches the queue and is dead-lettered there at once.
        let left = (expires_at - now).num_milliseconds().max(0);
        headers.insert(
            EXPIRES_AT_HEADER.into(),
            AMQPValue::LongLongInt(expires_at.timestamp_millis()),
        );
        properties = properties.with_expiration(left.to_string().into());
    }
    if let Some(seal) = &message.seal {
        headers.insert(
            SEAL_WORKER_HEADER.into(),
            AMQPValue::LongLongInt(seal.worker_id.get()),
        );
        headers.insert(SEAL_EPOCH_HEADER.into(), AMQPValue::LongLongInt(seal.epoch));
        headers.insert(
            SEAL_SIGNATURE_HEADER.into(),
            AMQPValue::LongString(hex::encode(seal.signature).into()),
        );
    }
    if !headers.inner().is_empty() {
        properties = properties.with_headers(headers);
    }
    Ok(properties)
}

/// A delivered message mapped back, with what could not be mapped.
#[derive(Debug)]
pub(crate) struct Decoded {
    /// The message; a property that could not be mapped has a stand-in (see `problems`).
    pub(crate) message: Message,
    /// Deliveries so far, this one included.
    pub(crate) delivery_count: u32,
    /// What was missing or wrong, for a warning.
    pub(crate) problems: Vec<String>,
}

/// Maps a delivery's properties and body back to a [`Message`]; never fails: a missing or
/// unreadable property gets a stand-in and a note in `problems`.
pub(crate) fn decode(
    properties: &BasicProperties,
    body: Vec<u8>,
    redelivered: bool,
    now: DateTime<Utc>,
) -> Decoded {
    let mut problems = Vec::new();
    let id = match properties.message_id() {
        Some(id) => Uuid::parse_str(id.as_str()).unwrap_or_else(|_| {
            problems.push(format!(
                "message_id {:?} is not a UUID: gave it a fresh id",
                id.as_str()
            ));
            Uuid::new_v4()
        }),
        None => {
            problems.push("no message_id: gave it a fresh id".to_owned());
            Uuid::new_v4()
        }
    };
    let kind = properties.kind().as_ref().map_or_else(
        || {
            problems.push("no type".to_owned());
            String::new()
        },
        |kind| kind.as_str().to_owned(),
    );
    let timestamp = match properties.timestamp() {
        Some(seconds) => i64::try_from(*seconds)
            .ok()
            .and_then(|s| DateTime::from_timestamp(s, 0))
            .unwrap_or_else(|| {
                problems.push(format!("timestamp {seconds} is out of range"));
                now
            }),
        None => {
            problems.push("no timestamp: used the time of receipt".to_owned());
            now
        }
    };
    let headers = properties.headers().as_ref();
    let header = |name: &str| headers.and_then(|h| h.inner().get(name));
    // A dead letter does not expire again.
    let expires_at = if header(DEATH_HEADER).is_some() {
        None
    } else {
        header(EXPIRES_AT_HEADER)
            .and_then(integer)
            .and_then(DateTime::from_timestamp_millis)
    };
    let seen_before = header(DELIVERY_COUNT_HEADER)
        .and_then(integer)
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(0);
    let delivery_count = seen_before
        .saturating_add(1)
        .max(if redelivered { 2 } else { 1 });
    // A seal that does not read is no seal: the receiver refuses the message as unsigned.
    let seal = match (
        header(SEAL_WORKER_HEADER).and_then(integer),
        header(SEAL_EPOCH_HEADER).and_then(integer),
        header(SEAL_SIGNATURE_HEADER).and_then(signature),
    ) {
        (Some(worker), Some(epoch), Some(signature)) => Some(Seal {
            worker_id: WorkerId(worker),
            epoch,
            signature,
        }),
        (None, None, None) => None,
        _ => {
            problems.push("a seal with a missing or unreadable part: taken as unsigned".to_owned());
            None
        }
    };
    Decoded {
        message: Message {
            id,
            kind,
            timestamp,
            correlation_id: properties
                .correlation_id()
                .as_ref()
                .map(|c| c.as_str().to_owned()),
            expires_at,
            body,
            seal,
        },
        delivery_count,
        problems,
    }
}

/// A signature header: 64 hex digits.
fn signature(value: &AMQPValue) -> Option<[u8; 32]> {
    let text = match value {
        AMQPValue::LongString(text) => text.as_bytes(),
        AMQPValue::ShortString(text) => text.as_str().as_bytes(),
        _ => return None,
    };
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(text, &mut bytes).ok()?;
    Some(bytes)
}

/// An integer header, whatever width the sender chose.
fn integer(value: &AMQPValue) -> Option<i64> {
    match value {
        AMQPValue::ShortShortInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortShortUInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortUInt(v) => Some(i64::from(*v)),
        AMQPValue::LongInt(v) => Some(i64::from(*v)),
        AMQPValue::LongUInt(v) => Some(i64::from(*v)),
        AMQPValue::LongLongInt(v) => Some(*v),
        AMQPValue::Timestamp(v) => i64::try_from(*v).ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, SubsecRound};

    fn message() -> Message {
        let mut m = Message::json("command", &"hi", Utc::now().trunc_subsecs(0)).expect("encodes");
        m.correlation_id = Some("req-7".to_owned());
        m
    }

    #[test]
    fn a_message_survives_the_round_trip() {
        let now = Utc::now();
        let mut sent = message();
        sent.expires_at = Some((now + Duration::seconds(60)).trunc_subsecs(3));
        let properties = encode(&sent, now).expect("encodes");
        assert_eq!(properties.delivery_mode(), &Some(2));
        assert_eq!(
            properties.content_type().as_ref().map(ShortString::as_str),
            Some("application/json")
        );
        let expiration: i64 = properties
            .expiration()
            .as_ref()
            .expect("an expiration")
            .as_str()
            .parse()
            .expect("milliseconds");
        assert!((59_000..=60_000).contains(&expiration), "{expiration}");
        let got = decode(&properties, sent.body.clone(), false, now);
        assert!(got.problems.is_empty(), "{:?}", got.problems);
        assert_eq!(got.message, sent);
        assert_eq!(got.delivery_count, 1);
    }

    #[test]
    fn a_seal_survives_the_round_trip_and_a_broken_one_is_no_seal() {
        let now = Utc::now();
        let mut sent = message();
        manman_core::signing::BusSecret::generate()
            .worker_key(WorkerId(4), 9)
            .seal(manman_core::signing::Purpose::Event, &mut sent);
        let properties = encode(&sent, now).expect("encodes");
        let got = decode(&properties, sent.body.clone(), false, now);
        assert!(got.problems.is_empty(), "{:?}", got.problems);
        assert_eq!(got.message.seal, sent.seal);

        let mut headers = properties.headers().clone().expect("headers");
        headers.insert(
            SEAL_SIGNATURE_HEADER.into(),
            AMQPValue::LongString("zz".into()),
        );
        let got = decode(&properties.with_headers(headers), sent.body, false, now);
        assert_eq!(got.message.seal, None);
        assert_eq!(got.problems.len(), 1, "{:?}", got.problems);
    }

    #[test]
    fn an_expired_message_is_published_with_expiration_zero() {
        let now = Utc::now();
        let mut sent = message();
        sent.expires_at = Some(now - Duration::seconds(5));
        let properties = encode(&sent, now).expect("encodes");
        assert_eq!(
            properties.expiration().as_ref().map(ShortString::as_str),
            Some("0")
        );
    }

    #[test]
    fn redeliveries_are_counted() {
        let properties = encode(&message(), Utc::now()).expect("encodes");
        assert_eq!(
            decode(&properties, vec![], true, Utc::now()).delivery_count,
            2
        );
        let mut headers = FieldTable::default();
        headers.insert(DELIVERY_COUNT_HEADER.into(), AMQPValue::LongInt(4));
        let quorum = properties.with_headers(headers);
        assert_eq!(decode(&quorum, vec![], true, Utc::now()).delivery_count, 5);
    }

    #[test]
    fn missing_properties_get_stand_ins_not_a_crash() {
        let now = Utc::now();
        let got = decode(
            &BasicProperties::default().with_message_id("not-a-uuid".into()),
            b"{}".to_vec(),
            false,
            now,
        );
        assert_eq!(got.message.timestamp, now);
        assert_eq!(got.message.kind, "");
        assert_eq!(got.problems.len(), 3, "{:?}", got.problems);
        let bare = decode(&BasicProperties::default(), vec![], false, now);
        assert_ne!(bare.message.id, got.message.id);
    }

    #[test]
    fn a_dead_letter_does_not_expire_again() {
        let now = Utc::now();
        let mut sent = message();
        sent.expires_at = Some(now);
        let properties = encode(&sent, now).expect("encodes");
        let mut headers = properties.headers().clone().expect("headers");
        headers.insert(
            DEATH_HEADER.into(),
            AMQPValue::FieldArray(Vec::new().into()),
        );
        let got = decode(&properties.with_headers(headers), vec![], false, now);
        assert_eq!(got.message.expires_at, None);
    }

    #[test]
    fn an_overlong_kind_is_an_encode_error() {
        let mut sent = message();
        sent.kind = "k".repeat(300);
        assert!(matches!(
            encode(&sent, Utc::now()),
            Err(BusError::Encode { .. })
        ));
    }
}
