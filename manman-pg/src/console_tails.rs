//! Console tails.

use crate::error::{store_error, violated_foreign_key};
use crate::store::PgStore;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use manman_core::console::ConsoleTail;
use manman_core::id::InstanceId;
use manman_core::ports::{ConsoleTailRepository, StoreError};
use sqlx::types::Json;

#[async_trait]
impl ConsoleTailRepository for PgStore {
    async fn keep_console_tail(
        &self,
        instance: InstanceId,
        tail: &ConsoleTail,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO manman.console_tails (instance_id, lines) VALUES ($1, $2)
             ON CONFLICT (instance_id) DO UPDATE SET lines = EXCLUDED.lines",
        )
        .bind(instance.get())
        .bind(Json(&tail.lines))
        .execute(self.pool())
        .await
        .map_err(|e| match violated_foreign_key(&e).as_deref() {
            Some("console_tails_instance_id_fkey") => StoreError::not_found(&instance),
            _ => store_error(e, &format!("the console tail of {instance}")),
        })?;
        Ok(())
    }

    async fn console_tail(&self, instance: InstanceId) -> Result<Option<ConsoleTail>, StoreError> {
        let lines: Option<Json<_>> =
            sqlx::query_scalar("SELECT lines FROM manman.console_tails WHERE instance_id = $1")
                .bind(instance.get())
                .fetch_optional(self.pool())
                .await
                .map_err(|e| store_error(e, &format!("the console tail of {instance}")))?;
        Ok(lines.map(|Json(lines)| ConsoleTail { lines }))
    }

    async fn prune_console_tails(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<u64, StoreError> {
        let deleted = sqlx::query(
            "DELETE FROM manman.console_tails WHERE instance_id IN (
                 SELECT t.instance_id FROM manman.console_tails t
                 JOIN manman.instances i ON i.id = t.instance_id
                 WHERE i.ended_at < $1 LIMIT $2
             )",
        )
        .bind(before)
        .bind(i64::from(limit))
        .execute(self.pool())
        .await
        .map_err(|e| store_error(e, &"the console tails"))?;
        Ok(deleted.rows_affected())
    }
}
