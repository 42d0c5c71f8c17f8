//! Command records: the outbox and audit trail.

use crate::error::store_error;
use crate::references::{Reference, missing_or};
use crate::store::SqliteStore;
use crate::timestamp::Timestamp;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use manman_core::command::{CommandEnvelope, CommandRecord, CommandState};
use manman_core::id::WorkerId;
use manman_core::ports::{CommandRepository, StoreError};
use manman_core::sql_sets::{FINISHED_COMMAND_STATES, UNFINISHED_COMMAND_STATES};
use sqlx::FromRow;
use uuid::Uuid;
use uuid::fmt::Hyphenated;

#[derive(FromRow)]
struct CommandRow {
    id: Hyphenated,
    worker_id: i64,
    envelope: sqlx::types::Json<CommandEnvelope>,
    state: String,
    detail: Option<String>,
    updated_at: Timestamp,
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
            id: row.id.into_uuid(),
            worker_id: WorkerId(row.worker_id),
            envelope: row.envelope.0,
            state: parse_state(&row.state)?,
            detail: row.detail,
            updated_at: row.updated_at.0,
        })
    }
}

fn what(id: Uuid) -> String {
    format!("command {id}")
}

const COMMAND_COLUMNS: &str = "id, worker_id, envelope, state, detail, updated_at";

/// Inserts a command record in `conn`'s transaction.
pub(crate) async fn insert_record(
    conn: &mut sqlx::SqliteConnection,
    record: &CommandRecord,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO command_records
             (id, worker_id, instance_id, kind, envelope, state, detail, issued_at, expires_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )
    .bind(record.id.hyphenated())
    .bind(record.worker_id.get())
    .bind(record.envelope.command.instance_id().map(|i| i.get()))
    .bind(record.envelope.command.name())
    .bind(sqlx::types::Json(&record.envelope))
    .bind(record.state.as_str())
    .bind(record.detail.as_deref())
    .bind(Timestamp(record.envelope.issued_at))
    .bind(Timestamp(record.envelope.expires_at))
    .bind(Timestamp(record.updated_at))
    .execute(conn)
    .await?;
    Ok(())
}

#[async_trait]
impl CommandRepository for SqliteStore {
    async fn insert_command(&self, record: &CommandRecord) -> Result<(), StoreError> {
        let what = what(record.id);
        let fail = |e| store_error(e, &what);
        let instance = record.envelope.command.instance_id();
        let mut tx = self.begin_write().await.map_err(fail)?;
        if let Err(e) = insert_record(&mut tx, record).await {
            let mut references = vec![Reference::Worker(record.worker_id)];
            references.extend(instance.map(Reference::Instance));
            return Err(missing_or(e, &mut tx, &references, &what).await);
        }
        tx.commit().await.map_err(fail)
    }

    async fn get_command(&self, id: Uuid) -> Result<CommandRecord, StoreError> {
        let row: CommandRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COMMAND_COLUMNS} FROM command_records WHERE id = ?1"
        )))
        .bind(id.hyphenated())
        .fetch_one(self.reader())
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
        let allowed: Vec<&str> = CommandState::ALL
            .into_iter()
            .filter(|s| s.can_become(to))
            .map(CommandState::as_str)
            .collect();
        let row: Option<CommandRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE command_records SET state = ?2, detail = COALESCE(?3, detail), updated_at = ?4
             WHERE id = ?1 AND state IN (SELECT value FROM json_each(?5))
             RETURNING {COMMAND_COLUMNS}"
        )))
        .bind(id.hyphenated())
        .bind(to.as_str())
        .bind(detail)
        .bind(Timestamp(at))
        .bind(serde_json::Value::from(allowed).to_string())
        .fetch_optional(self.writer())
        .await
        .map_err(|e| store_error(e, &what(id)))?;
        match row {
            Some(row) => row.try_into(),
            None => {
                let current = self.get_command(id).await?;
                Err(StoreError::conflict(
                    &what(id),
                    format!("is {}, cannot become {to}", current.state),
                ))
            }
        }
    }

    async fn mark_delivered(&self, id: Uuid, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let moved = sqlx::query(
            "UPDATE command_records SET state = ?2, updated_at = ?3
             WHERE id = ?1 AND state = ?4",
        )
        .bind(id.hyphenated())
        .bind(CommandState::Delivered.as_str())
        .bind(Timestamp(at))
        .bind(CommandState::Pending.as_str())
        .execute(self.writer())
        .await
        .map_err(|e| store_error(e, &what(id)))?;
        Ok(moved.rows_affected() == 1)
    }

    async fn prune_commands(&self, before: DateTime<Utc>, limit: u32) -> Result<u64, StoreError> {
        // Two branches, so each is served by its partial index (finished by `updated_at`,
        // unfinished by `expires_at`).
        let (finished, unfinished) = (&*FINISHED_COMMAND_STATES, &*UNFINISHED_COMMAND_STATES);
        let deleted = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM command_records WHERE id IN (
                 SELECT id FROM (
                     SELECT id FROM command_records
                     WHERE state IN {finished} AND updated_at < ?1
                     ORDER BY updated_at LIMIT ?2
                 )
                 UNION ALL
                 SELECT id FROM (
                     SELECT id FROM command_records
                     WHERE state IN {unfinished} AND expires_at < ?1 AND updated_at < ?1
                     ORDER BY expires_at LIMIT ?2
                 )
                 LIMIT ?2
             )"
        )))
        .bind(Timestamp(before))
        .bind(i64::from(limit))
        .execute(self.writer())
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
        // One writer: the selection and the change are one statement, so each command moves
        // once.
        let unfinished = &*UNFINISHED_COMMAND_STATES;
        let rows: Vec<CommandRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE command_records SET state = 'expired', detail = ?2, updated_at = ?3
             WHERE id IN (
                 SELECT id FROM command_records
                 WHERE state IN {unfinished} AND expires_at < ?1
                 ORDER BY expires_at LIMIT ?4
             ) AND state IN {unfinished}
             RETURNING {COMMAND_COLUMNS}"
        )))
        .bind(Timestamp(before))
        .bind(detail)
        .bind(Timestamp(at))
        .bind(i64::from(limit))
        .fetch_all(self.writer())
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
