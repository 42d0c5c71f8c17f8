//! Status history and current status, written together.

use crate::error::{is_duplicate_event, store_error};
use crate::store::SqliteStore;
use crate::timestamp::{Timestamp, optional};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use manman_core::id::{InstanceId, WorkerId};
use manman_core::ports::{ApplyOutcome, CurrentStatus, StatusChange, StatusRepository, StoreError};
use manman_core::status::{Cause, Entity, Sequence, Status, StatusEvent};
use sqlx::{FromRow, SqliteConnection};
use std::collections::HashMap;
use uuid::Uuid;
use uuid::fmt::Hyphenated;

/// A status from its text (the schema's CHECK keeps it valid).
pub(crate) fn parse_status(text: &str) -> Result<Status, StoreError> {
    text.parse()
        .map_err(|e: manman_core::unknown_name::UnknownName| StoreError::Other { source: e.into() })
}

pub(crate) fn parse_cause(text: &str) -> Result<Cause, StoreError> {
    text.parse()
        .map_err(|e: manman_core::unknown_name::UnknownName| StoreError::Other { source: e.into() })
}

/// One row of the history, to append.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HistoryRow<'a> {
    /// The message that caused it (a fresh id for changes the store makes itself).
    pub(crate) event_id: Uuid,
    /// Whose status.
    pub(crate) entity: Entity,
    /// The status before, if it had one.
    pub(crate) from: Option<Status>,
    /// The status after.
    pub(crate) status: Status,
    /// Why.
    pub(crate) cause: Cause,
    /// For a person.
    pub(crate) detail: Option<&'a str>,
    /// Host clock.
    pub(crate) as_of: DateTime<Utc>,
    /// Sender clock.
    pub(crate) reported_at: DateTime<Utc>,
}

impl HistoryRow<'_> {
    /// A change the store makes itself (registration, placement, the lease sweep): a fresh
    /// event id, both clocks the host's.
    pub(crate) fn by_host<'a>(
        entity: Entity,
        from: Option<Status>,
        status: Status,
        cause: Cause,
        detail: Option<&'a str>,
        at: DateTime<Utc>,
    ) -> HistoryRow<'a> {
        HistoryRow {
            event_id: Uuid::new_v4(),
            entity,
            from,
            status,
            cause,
            detail,
            as_of: at,
            reported_at: at,
        }
    }

    /// Appends the row; returns its position.
    pub(crate) async fn insert(self, conn: &mut SqliteConnection) -> Result<i64, sqlx::Error> {
        let (worker, instance) = match self.entity {
            Entity::Worker(id) => (Some(id.get()), None),
            Entity::Instance(id) => (None, Some(id.get())),
        };
        sqlx::query_scalar(
            "INSERT INTO status_events (event_id, worker_id, instance_id, from_status, status, cause, detail, as_of, reported_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) RETURNING id",
        )
        .bind(self.event_id.hyphenated())
        .bind(worker)
        .bind(instance)
        .bind(self.from.map(Status::as_str))
        .bind(self.status.as_str())
        .bind(self.cause.as_str())
        .bind(self.detail)
        .bind(Timestamp(self.as_of))
        .bind(Timestamp(self.reported_at))
        .fetch_one(conn)
        .await
    }
}

#[derive(FromRow)]
struct EventRow {
    id: i64,
    event_id: Hyphenated,
    worker_id: Option<i64>,
    instance_id: Option<i64>,
    from_status: Option<String>,
    status: String,
    cause: String,
    detail: Option<String>,
    as_of: Timestamp,
    reported_at: Timestamp,
}

impl TryFrom<EventRow> for StatusEvent {
    type Error = StoreError;

    fn try_from(row: EventRow) -> Result<Self, StoreError> {
        let entity = match (row.worker_id, row.instance_id) {
            (Some(id), None) => Entity::Worker(WorkerId(id)),
            (None, Some(id)) => Entity::Instance(InstanceId(id)),
            _ => {
                return Err(StoreError::Other {
                    source: format!("status event {} names no single entity", row.id).into(),
                });
            }
        };
        Ok(Self {
            id: row.id,
            event_id: row.event_id.into_uuid(),
            entity,
            from: row.from_status.as_deref().map(parse_status).transpose()?,
            status: parse_status(&row.status)?,
            cause: parse_cause(&row.cause)?,
            detail: row.detail,
            as_of: row.as_of.0,
            reported_at: row.reported_at.0,
        })
    }
}

/// Whether an entity exists.
async fn exists(conn: &mut SqliteConnection, entity: Entity) -> Result<bool, sqlx::Error> {
    match entity {
        Entity::Worker(id) => {
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM workers WHERE id = ?1)").bind(id.get())
        }
        Entity::Instance(id) => {
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM instances WHERE id = ?1)")
                .bind(id.get())
        }
    }
    .fetch_one(conn)
    .await
}

/// An entity's status and last applied sequence, as a row gives them.
type CurrentRow = (String, Option<i64>, Option<i64>);

/// The status and last applied sequence a row gives.
fn parse_current(row: CurrentRow) -> Result<(Status, Option<Sequence>), StoreError> {
    let (status, epoch, counter) = row;
    Ok((
        parse_status(&status)?,
        epoch.zip(counter).map(|(e, c)| Sequence::new(e, c)),
    ))
}

/// Why `change` was not applied: its entity is missing, or its status or sequence moved.
async fn refusal(
    conn: &mut SqliteConnection,
    change: &StatusChange,
) -> Result<Result<StoreError, StoreError>, sqlx::Error> {
    let row: Option<CurrentRow> = match change.entity {
        Entity::Worker(id) => {
            sqlx::query_as("SELECT status, seq_epoch, seq_counter FROM workers WHERE id = ?1")
                .bind(id.get())
        }
        Entity::Instance(id) => {
            sqlx::query_as("SELECT status, seq_epoch, seq_counter FROM instances WHERE id = ?1")
                .bind(id.get())
        }
    }
    .fetch_optional(conn)
    .await?;
    let Some(row) = row else {
        return Ok(Ok(StoreError::not_found(&change.entity)));
    };
    let (status, sequence) = match parse_current(row) {
        Ok(current) => current,
        Err(broken) => return Ok(Err(broken)),
    };
    Ok(Ok(match (change.sequence, sequence) {
        (Some(sequence), Some(last)) if status == change.from => StoreError::conflict(
            &change.entity,
            format!("has had report {last} applied, and report {sequence} is not after it"),
        ),
        _ => StoreError::conflict(
            &change.entity,
            format!("is {status}, not {} as the change expected", change.from),
        ),
    }))
}

/// Applies one change on `conn`, which is in a write transaction. The outer error is the
/// driver's; the inner result is the change's outcome. Commit only an `Applied` outcome: on
/// anything else roll back (a duplicate found by the insert has updated the entity already).
pub(crate) async fn apply_one(
    conn: &mut SqliteConnection,
    change: &StatusChange,
) -> Result<Result<ApplyOutcome, StoreError>, sqlx::Error> {
    let entity = change.entity;
    let seen: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM status_events WHERE event_id = ?1)")
            .bind(change.event_id.hyphenated())
            .fetch_one(&mut *conn)
            .await?;
    if seen {
        return Ok(Ok(ApplyOutcome::Duplicate));
    }
    let u = &change.update;
    let (seq_epoch, seq_counter) = (
        change.sequence.map(|s| s.epoch),
        change.sequence.map(|s| s.counter),
    );
    let updated = match entity {
        Entity::Worker(id) => sqlx::query(
            "UPDATE workers SET status = ?3, ended_at = COALESCE(?4, ended_at),
                 seq_epoch = COALESCE(?5, seq_epoch), seq_counter = COALESCE(?6, seq_counter)
             WHERE id = ?1 AND status = ?2
               AND (?5 IS NULL OR seq_epoch IS NULL OR (seq_epoch, seq_counter) < (?5, ?6))",
        )
        .bind(id.get())
        .bind(change.from.as_str())
        .bind(change.to.as_str())
        .bind(optional(u.ended_at))
        .bind(seq_epoch)
        .bind(seq_counter),
        Entity::Instance(id) => sqlx::query(
            "UPDATE instances SET status = ?3,
                 started_at = COALESCE(?4, started_at),
                 ready_at = COALESCE(?5, ready_at),
                 ended_at = COALESCE(?6, ended_at),
                 exit_code = CASE WHEN ?7 IS NOT NULL OR ?8 IS NOT NULL OR ?3 = 'running' THEN ?7 ELSE exit_code END,
                 exit_signal = CASE WHEN ?7 IS NOT NULL OR ?8 IS NOT NULL OR ?3 = 'running' THEN ?8 ELSE exit_signal END,
                 restart_count = COALESCE(?9, restart_count),
                 seq_epoch = COALESCE(?10, seq_epoch), seq_counter = COALESCE(?11, seq_counter),
                 cause = ?12, detail = ?13
             WHERE id = ?1 AND status = ?2
               AND (?10 IS NULL OR seq_epoch IS NULL OR (seq_epoch, seq_counter) < (?10, ?11))",
        )
        .bind(id.get())
        .bind(change.from.as_str())
        .bind(change.to.as_str())
        .bind(optional(u.started_at))
        .bind(optional(u.ready_at))
        .bind(optional(u.ended_at))
        .bind(u.exit_code)
        .bind(u.exit_signal)
        .bind(u.restart_count.map(i64::from))
        .bind(seq_epoch)
        .bind(seq_counter)
        .bind(change.cause.as_str())
        .bind(change.detail.as_deref()),
    }
    .execute(&mut *conn)
    .await?;
    if updated.rows_affected() == 0 {
        return Ok(Err(refusal(conn, change).await?.unwrap_or_else(|e| e)));
    }
    let inserted = HistoryRow {
        event_id: change.event_id,
        entity,
        from: Some(change.from),
        status: change.to,
        cause: change.cause,
        detail: change.detail.as_deref(),
        as_of: change.as_of,
        reported_at: change.reported_at,
    }
    .insert(conn)
    .await;
    let id = match inserted {
        Ok(id) => id,
        // The same event written by another process on this file at the same moment.
        Err(e) if is_duplicate_event(&e) => return Ok(Ok(ApplyOutcome::Duplicate)),
        Err(e) => return Err(e),
    };
    Ok(Ok(ApplyOutcome::Applied(StatusEvent {
        id,
        event_id: change.event_id,
        entity,
        from: Some(change.from),
        status: change.to,
        cause: change.cause,
        detail: change.detail.clone(),
        as_of: change.as_of,
        reported_at: change.reported_at,
    })))
}

#[async_trait]
impl StatusRepository for SqliteStore {
    async fn apply_status(&self, change: &StatusChange) -> Result<ApplyOutcome, StoreError> {
        let entity = change.entity;
        let fail = |e| store_error(e, &entity);
        let mut tx = self.begin_write().await.map_err(fail)?;
        let outcome = apply_one(&mut tx, change).await.map_err(fail)?;
        if let Ok(ApplyOutcome::Applied(_)) = &outcome {
            tx.commit().await.map_err(fail)?;
        }
        // Anything else wrote nothing that stays: dropping the transaction rolls it back.
        outcome
    }

    async fn apply_statuses(
        &self,
        changes: &[StatusChange],
    ) -> Result<Vec<Result<ApplyOutcome, StoreError>>, StoreError> {
        crate::status_batch::apply(self, changes).await
    }

    async fn current_statuses(
        &self,
        entities: &[Entity],
    ) -> Result<Vec<Option<CurrentStatus>>, StoreError> {
        let (workers, instances): (Vec<i64>, Vec<i64>) =
            entities
                .iter()
                .fold((Vec::new(), Vec::new()), |(mut w, mut i), e| {
                    match e {
                        Entity::Worker(id) => w.push(id.get()),
                        Entity::Instance(id) => i.push(id.get()),
                    }
                    (w, i)
                });
        let json = |ids: &[i64]| serde_json::Value::from(ids).to_string();
        type Row = (i64, i64, String, Option<i64>, Option<i64>, i64);
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT 1, id, status, seq_epoch, seq_counter, id FROM workers
                 WHERE id IN (SELECT value FROM json_each(?1))
             UNION ALL
             SELECT 0, id, status, seq_epoch, seq_counter, worker_id FROM instances
                 WHERE id IN (SELECT value FROM json_each(?2))",
        )
        .bind(json(&workers))
        .bind(json(&instances))
        .fetch_all(self.reader())
        .await
        .map_err(|e| store_error(e, &"the current statuses"))?;
        let mut found: HashMap<Entity, CurrentStatus> = HashMap::with_capacity(rows.len());
        for (worker, id, status, epoch, counter, owner) in rows {
            let entity = if worker == 1 {
                Entity::Worker(WorkerId(id))
            } else {
                Entity::Instance(InstanceId(id))
            };
            let (status, sequence) = parse_current((status, epoch, counter))?;
            found.insert(
                entity,
                CurrentStatus {
                    status,
                    sequence,
                    owner: WorkerId(owner),
                },
            );
        }
        Ok(entities.iter().map(|e| found.get(e).copied()).collect())
    }

    async fn status_history(
        &self,
        entity: Entity,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Vec<StatusEvent>, StoreError> {
        let fail = |e| store_error(e, &entity);
        let (column, id) = match entity {
            Entity::Worker(id) => ("worker_id", id.get()),
            Entity::Instance(id) => ("instance_id", id.get()),
        };
        let rows: Vec<EventRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT id, event_id, worker_id, instance_id, from_status, status, cause, detail, as_of, reported_at
             FROM status_events WHERE {column} = ?1 AND id > ?2 ORDER BY id LIMIT ?3"
        )))
        .bind(id)
        .bind(after.unwrap_or(0))
        .bind(i64::from(limit))
        .fetch_all(self.reader())
        .await
        .map_err(fail)?;
        if rows.is_empty() {
            let mut conn = self.reader().acquire().await.map_err(fail)?;
            if !exists(&mut conn, entity).await.map_err(fail)? {
                return Err(StoreError::not_found(&entity));
            }
        }
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn prune_history(&self, before: DateTime<Utc>, limit: u32) -> Result<u64, StoreError> {
        let deleted = sqlx::query(
            "DELETE FROM status_events WHERE id IN (
                 SELECT id FROM status_events WHERE as_of < ?1 ORDER BY as_of LIMIT ?2
             )",
        )
        .bind(Timestamp(before))
        .bind(i64::from(limit))
        .execute(self.writer())
        .await
        .map_err(|e| store_error(e, &"the status history"))?;
        Ok(deleted.rows_affected())
    }
}
