//! Publishing: one confirm-mode channel shared by every publisher of the bus, `mandatory`
//! publishes, broker confirms awaited, and a bounded wait while the broker is away.

use crate::bus::{Attempt, Shared};
use crate::connection::FIRST_PAUSE;
use crate::declarations::{exchange_what, short};
use crate::error::{bus_error, is_not_found, is_transient, soft_error};
use crate::properties;
use chrono::Utc;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{Channel, Confirmation};
use manman_core::ports::{BusError, Message};
use std::sync::{Arc, PoisonError, RwLock};
use tokio::time::Instant;

/// How many times in a row a publish may find its channel closed by a broker refusal before
/// the refusal is taken as its own.
const MAX_REFUSALS: u32 = 3;

/// The publisher channel, opened on first use and opened again when it closes.
#[derive(Debug, Default)]
pub(crate) struct PublisherChannel {
    channel: RwLock<Option<Channel>>,
    opening: tokio::sync::Mutex<()>,
}

impl PublisherChannel {
    /// The channel if it is open or being recovered by lapin.
    fn cached(&self) -> Option<Channel> {
        self.channel
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .filter(|c| c.status().connected() || c.status().reconnecting())
            .cloned()
    }

    /// The channel, opened (in confirm mode) when there is none.
    async fn get(&self, shared: &Arc<Shared>) -> Result<Channel, Attempt> {
        if let Some(channel) = self.cached() {
            return Ok(channel);
        }
        let _opening = self.opening.lock().await;
        if let Some(channel) = self.cached() {
            return Ok(channel);
        }
        let connection = shared.connection().await.map_err(Attempt::from_bus)?;
        let what = "the publisher channel";
        let channel = connection
            .create_channel()
            .await
            .map_err(|e| Attempt::from_lapin(e, what))?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| Attempt::from_lapin(e, what))?;
        *self.channel.write().unwrap_or_else(PoisonError::into_inner) = Some(channel.clone());
        Ok(channel)
    }
}

/// Publishes `message` and waits for the broker's confirm. While the broker is away it waits
/// for the connection to recover (up to the publish wait), then publishes again: the message
/// may then reach its queue twice, which consumers absorb by its id.
pub(crate) async fn publish(
    shared: &Arc<Shared>,
    exchange: &str,
    routing_key: &str,
    message: &Message,
) -> Result<(), BusError> {
    let about = || {
        format!(
            "message {} to exchange {exchange:?} with key {routing_key:?}",
            message.id
        )
    };
    let exchange_name = short(exchange, &about())?;
    let key = short(routing_key, &about())?;
    let deadline = Instant::now() + shared.link.settings().publish_wait;
    let mut pause = FIRST_PAUSE;
    let mut refusals = 0_u32;
    loop {
        if shared.closed.is_cancelled() {
            return Err(BusError::Closed);
        }
        // Bounded as a whole: a broker that blocks publishers (resource alarm) or never
        // confirms holds nobody past the publish wait.
        let attempt = tokio::time::timeout_at(
            deadline,
            publish_once(shared, exchange, &exchange_name, &key, message),
        )
        .await;
        let (error, channel) = match attempt {
            Ok(Ok(())) => return Ok(()),
            Ok(Err((Attempt::Final(error), _))) => return Err(error),
            Ok(Err((Attempt::Retry(error), channel))) => (error, channel),
            Err(_) => {
                return Err(BusError::Unavailable {
                    source: format!(
                        "{}: no confirm from the broker within the publish wait ({:?}); it may \
                         still arrive, once",
                        about(),
                        shared.link.settings().publish_wait
                    )
                    .into(),
                });
            }
        };
        let closed_by_broker = channel
            .as_ref()
            .is_some_and(|c| !c.status().connected() && !c.status().reconnecting());
        if closed_by_broker {
            // The broker closed the channel over a refusal: another publisher's, or this
            // message's own if it keeps happening.
            refusals += 1;
            if refusals > MAX_REFUSALS {
                return Err(error);
            }
        }
        tracing::debug!(message_id = %message.id, exchange, %error, "publish interrupted: waiting for the broker");
        // Waits for lapin's recovery when it is under way, else pauses and tries again.
        let recovered = match (channel, error_cause(&error)) {
            (Some(channel), Some(cause)) if channel.status().reconnecting() => {
                matches!(
                    tokio::time::timeout_at(deadline, channel.wait_for_recovery(cause)).await,
                    Ok(Ok(()))
                )
            }
            _ => false,
        };
        if !recovered {
            if !shared.pause(pause, deadline).await {
                if shared.closed.is_cancelled() {
                    return Err(BusError::Closed);
                }
                return Err(BusError::Unavailable {
                    source: format!(
                        "{}: the broker stayed away longer than the publish wait ({:?}): {error}",
                        about(),
                        shared.link.settings().publish_wait
                    )
                    .into(),
                });
            }
            pause = crate::bus::Shared::longer(pause);
        }
    }
}

/// The lapin error inside a transient bus error, to wait on its recovery.
fn error_cause(error: &BusError) -> Option<lapin::Error> {
    let BusError::Unavailable { source } = error else {
        return None;
    };
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(source.as_ref());
    while let Some(current) = cause {
        if let Some(lapin) = current.downcast_ref::<lapin::Error>() {
            return Some(lapin.clone());
        }
        cause = current.source();
    }
    None
}

/// One publish on the current channel.
async fn publish_once(
    shared: &Arc<Shared>,
    exchange: &str,
    exchange_name: &lapin::types::ShortString,
    key: &lapin::types::ShortString,
    message: &Message,
) -> Result<(), (Attempt, Option<Channel>)> {
    let channel = shared.publisher.get(shared).await.map_err(|a| (a, None))?;
    // Computed at each attempt: the time left shrinks while the broker is away.
    let properties =
        properties::encode(message, Utc::now()).map_err(|e| (Attempt::Final(e), None))?;
    let failed = |error: lapin::Error| (classify(error, exchange, message), Some(channel.clone()));
    let confirm = channel
        .basic_publish(
            exchange_name.clone(),
            key.clone(),
            BasicPublishOptions {
                mandatory: true,
                ..BasicPublishOptions::default()
            },
            &message.body,
            properties,
        )
        .await
        .map_err(failed)?;
    match confirm.await.map_err(failed)? {
        Confirmation::Ack(None) => Ok(()),
        Confirmation::Ack(Some(returned)) => {
            tracing::debug!(message_id = %message.id, exchange, reply = %returned.reply_text, "message returned: no queue is bound for it");
            Err((
                Attempt::Final(BusError::Unroutable {
                    message_id: message.id,
                    exchange: exchange.to_owned(),
                    routing_key: key.as_str().to_owned(),
                }),
                None,
            ))
        }
        Confirmation::Nack(_) => Err((
            Attempt::Final(BusError::Rejected {
                message_id: message.id,
            }),
            None,
        )),
        Confirmation::NotRequested => {
            // Cannot happen: the channel is in confirm mode. Treat it as a lost confirm.
            tracing::error!(message_id = %message.id, "the publisher channel is not in confirm mode; publishing again");
            *shared
                .publisher
                .channel
                .write()
                .unwrap_or_else(PoisonError::into_inner) = None;
            Err((
                Attempt::Retry(BusError::Unavailable {
                    source: "the publisher channel lost confirm mode".into(),
                }),
                None,
            ))
        }
    }
}

/// Whether a failed publish is final or worth another attempt.
fn classify(error: lapin::Error, exchange: &str, message: &Message) -> Attempt {
    let about = || format!("message {} to {}", message.id, exchange_what(exchange));
    if is_not_found(&error) {
        let ours =
            soft_error(&error).is_some_and(|(_, text)| text.contains(&format!("'{exchange}'")));
        if ours {
            return Attempt::Final(BusError::NotFound {
                what: exchange_what(exchange),
            });
        }
        // Another publish closed the shared channel (its exchange is missing): not this one's
        // fault, publish again on a new channel.
        return Attempt::Retry(bus_error(error, &about()));
    }
    if soft_error(&error).is_some() {
        // Any other refusal closed the shared channel: a new one is opened on the next attempt.
        return Attempt::Retry(BusError::Unavailable {
            source: Box::new(crate::error::Context::new(about(), error)),
        });
    }
    if is_transient(&error) {
        return Attempt::Retry(bus_error(error, &about()));
    }
    Attempt::Final(bus_error(error, &about()))
}
