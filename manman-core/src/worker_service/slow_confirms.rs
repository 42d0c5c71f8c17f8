//! [`SlowConfirms`] (tests only): a publisher whose broker takes a while to confirm the messages
//! of one kind, as a broker far away would — to show what waits on a confirm and what does not.

use crate::ports::{BusError, ExchangeKind, Message, MessagePublisher};
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;

/// Publishes through `inner`; a message of `kind` is confirmed `confirm` after it is published.
#[derive(Debug)]
pub(crate) struct SlowConfirms {
    pub(crate) inner: Arc<dyn MessagePublisher>,
    pub(crate) kind: &'static str,
    pub(crate) confirm: Duration,
}

#[async_trait]
impl MessagePublisher for SlowConfirms {
    async fn declare_exchange(&self, name: &str, kind: ExchangeKind) -> Result<(), BusError> {
        self.inner.declare_exchange(name, kind).await
    }

    async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        message: Message,
    ) -> Result<(), BusError> {
        let slow = message.kind == self.kind;
        self.inner.publish(exchange, routing_key, message).await?;
        if slow {
            tokio::time::sleep(self.confirm).await;
        }
        Ok(())
    }
}
