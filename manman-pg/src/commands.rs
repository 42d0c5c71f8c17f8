//! Command records: the outbox and audit trail.

use crate::error::{store_error, violated_foreign_key};
use crate::store::PgStore;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use manman_core::command::{CommandEnvelope, CommandRecord, CommandState};
use manman_core::id::WorkerId;
use manman_core::ports::{CommandRepository, StoreError};
use manman_core::sql_sets::{FINISHED_COMMAND_STATES, UNFINISHED_COMMAND_STATES};
use sqlx::FromRow;
use uuid::Uuid;

#[derive(FromRow)]
struct CommandRow {
    id: Uuid,
    worker_id: i64,
    envelope: sqlx::types::Json<CommandEnvelope>,
    state: String,
    detail: Option<String>,
    updated_at: DateTime<Utc>,
}

fn parse_state(text: &str) -> Result<CommandState, StoreError> {
    text.parse().map_err(
        |e: manman_core::unknown_name::UnknownName| StoreError::Other {
            source: format!("{e} in the database").into(),
        },
    )
}

impl TryFrom<CommandRow> for CommandRecord {
    type Error = StoreError;

    fn try_from(row: CommandRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: row.id,
            worker_id: WorkerId(row.worker_id),
            envelope: row.envelope.0,
            state: parse_state(&row.state)?,
            detail: row.detail,
            updated_at: row.updated_at,
        })
    }
}

fn what(id: Uuid) -> String {
    format!("command {id}")
}

impl PgStore {
    /// Moves command `id` (sent to `worker`, when given) to `to` if its state allows, in one
    /// statement; `None` when nothing moved.
    async fn move_command(
        &self,
        id: Uuid,
        worker: Option<WorkerId>,
        to: CommandState,
        detail: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<Option<CommandRecord>, StoreError> {
        let allowed: Vec<&str> = CommandState::ALL
            .into_iter()
            .filter(|s| s.can_become(to))
            .map(CommandState::as_str)
            .collect();
        let row: Option<CommandRow> = sqlx::query_as(
            "UPDATE manman.command_records SET state = $2, detail = COALESCE($3, detail), updated_at = $4
             WHERE id = $1 AND state = ANY($5) AND ($6::bigint IS NULL OR worker_id = $6)
             RETURNING id, worker_id, envelope, state, detail, updated_at",
        )
        .bind(id)
        .bind(to.as_str())
        .bind(detail)
        .bind(at)
        .bind(&allowed)
        .bind(worker.map(WorkerId::get))
        .fetch_optional(self.pool())
        .await
        .map_err(|e| store_error(e, &what(id)))?;
        row.map(TryInto::try_into).transpose()
    }
}

#[async_trait]
impl CommandRepository for PgStore {
    async fn insert_command(&self, record: &CommandRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO manman.command_records
                 (id, worker_id, instance_id, kind, envelope, state, detail, issued_at, expires_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(record.id)
        .bind(record.worker_id.get())
        .bind(record.envelope.command.instance_id().map(|i| i.get()))
        .bind(record.envelope.command.name())
        .bind(sqlx::types::Json(&record.envelope))
        .bind(record.state.as_str())
        .bind(record.detail.as_deref())
        .bind(record.envelope.issued_at)
        .bind(record.envelope.expires_at)
        .bind(record.updated_at)
        .execute(self.pool())
        .await
        .map_err(|e| match violated_foreign_key(&e).as_deref() {
            Some("command_records_worker_id_fkey") => StoreError::not_found(&record.worker_id),
            Some("command_records_instance_id_fkey") => StoreError::not_found(
                &record.envelope.command.instance_id().map_or_else(String::new, |i| i.to_string()),
            ),
            _ => store_error(e, &what(record.id)),
        })?;
        Ok(())
    }

    async fn get_command(&self, id: Uuid) -> Result<CommandRecord, StoreError> {
        let row: CommandRow = sqlx::query_as(
            "SELECT id, worker_id, envelope, state, detail, updated_at FROM manman.command_records WHERE id = $1",
        )
        .bind(id)
        .fetch_one(self.pool())
        .await
        .map_err(|e| store_error(e, &what(id)))?;
        row.try_into()
    }

    async fn transition_command(
        &self,
        id: Uuid,
        to: CommandState,
        detail: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<CommandRecord, StoreError> {
        match self.move_command(id, None, to, detail, at).await? {
            Some(record) => Ok(record),
            None => {
                let current = self.get_command(id).await?;
                Err(StoreError::conflict(
                    &what(id),
                    format!("is {}, cannot become {to}", current.state),
                ))
            }
        }
    }

    async fn answer_command(
        &self,
        id: Uuid,
        worker: WorkerId,
        to: CommandState,
        detail: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<Option<CommandRecord>, StoreError> {
        self.move_command(id, Some(worker), to, detail, at).await
    }

    async fn mark_delivered(&self, id: Uuid, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let moved = sqlx::query(
            "UPDATE manman.command_records SET state = $2, updated_at = $3
             WHERE id = $1 AND state = $4",
        )
        .bind(id)
        .bind(CommandState::Delivered.as_str())
        .bind(at)
        .bind(CommandState::Pending.as_str())
        .execute(self.pool())
        .await
        .map_err(|e| store_error(e, &what(id)))?;
        Ok(moved.rows_affected() == 1)
    }

    async fn prune_commands(&self, before: DateTime<Utc>, limit: u32) -> Result<u64, StoreError> {
        // Two branches, so each is served by its partial index (finished by `updated_at`,
        // unfinished by `expires_at`).
        let (finished, unfinished) = (&*FINISHED_COMMAND_STATES, &*UNFINISHED_COMMAND_STATES);
        let deleted = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM manman.command_records WHERE id IN (
                 SELECT id FROM (
                     SELECT id FROM manman.command_records
                     WHERE state IN {finished} AND updated_at < $1
                     ORDER BY updated_at LIMIT $2
                 ) AS finished
                 UNION ALL
                 SELECT id FROM (
                     SELECT id FROM manman.command_records
                     WHERE state IN {unfinished} AND expires_at < $1 AND updated_at < $1
                     ORDER BY expires_at LIMIT $2
                 ) AS unfinished
                 LIMIT $2
             )"
        )))
        .bind(before)
        .bind(i64::from(limit))
        .execute(self.pool())
        .await
        .map_err(|e| store_error(e, &"the command records"))?;
        Ok(deleted.rows_affected())
    }

    async fn expire_commands(
        &self,
        before: DateTime<Utc>,
        detail: &str,
        at: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<CommandRecord>, StoreError> {
        // Rows another sweep holds are skipped; the outer condition on the state is checked
        // again on the row as it is when it is updated, so each command moves once.
        let unfinished = &*UNFINISHED_COMMAND_STATES;
        let rows: Vec<CommandRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE manman.command_records SET state = 'expired', detail = $2, updated_at = $3
             WHERE id IN (
                 SELECT id FROM manman.command_records
                 WHERE state IN {unfinished} AND expires_at < $1
                 ORDER BY expires_at LIMIT $4
                 FOR UPDATE SKIP LOCKED
             ) AND state IN {unfinished}
             RETURNING id, worker_id, envelope, state, detail, updated_at"
        )))
        .bind(before)
        .bind(detail)
        .bind(at)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await
        .map_err(|e| store_error(e, &"the command records"))?;
        let mut records = rows
            .into_iter()
            .map(CommandRecord::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        records.sort_by_key(|r| r.envelope.expires_at);
        Ok(records)
    }
}
