//! Workers: registration (epochs), heartbeats, the lease sweep.

use crate::error::store_error;
use crate::status::{insert_event, parse_status};
use crate::store::PgStore;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use manman_core::id::{InstanceId, WorkerId};
use manman_core::ports::{StoreError, WorkerRepository};
use manman_core::sql_sets::LIVE_STATUSES;
use manman_core::status::{Cause, Entity, Status};
use manman_core::worker::{Worker, WorkerRegistration};
use sqlx::FromRow;
use std::collections::BTreeMap;

#[derive(FromRow)]
pub(crate) struct WorkerRow {
    id: i64,
    name: String,
    epoch: i64,
    status: String,
    version: String,
    labels: sqlx::types::Json<BTreeMap<String, String>>,
    capacity: i32,
    started_at: DateTime<Utc>,
    last_heartbeat_at: Option<DateTime<Utc>>,
    ended_at: Option<DateTime<Utc>>,
}

impl TryFrom<WorkerRow> for Worker {
    type Error = StoreError;

    fn try_from(row: WorkerRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: WorkerId(row.id),
            name: row.name,
            epoch: row.epoch,
            status: parse_status(&row.status)?,
            version: row.version,
            labels: row.labels.0,
            capacity: u32::try_from(row.capacity).unwrap_or(0),
            started_at: row.started_at,
            last_heartbeat_at: row.last_heartbeat_at,
            ended_at: row.ended_at,
        })
    }
}

const WORKER_COLUMNS: &str =
    "id, name, epoch, status, version, labels, capacity, started_at, last_heartbeat_at, ended_at";

#[async_trait]
impl WorkerRepository for PgStore {
    async fn register_worker(
        &self,
        registration: &WorkerRegistration,
        at: DateTime<Utc>,
    ) -> Result<Worker, StoreError> {
        let what = format!("worker {:?}", registration.name);
        let fail = |e| store_error(e, &what);
        let mut tx = self.pool().begin().await.map_err(fail)?;
        let previous: Option<(i64, String)> =
            sqlx::query_as("SELECT id, status FROM manman.workers WHERE name = $1 FOR UPDATE")
                .bind(&registration.name)
                .fetch_optional(&mut *tx)
                .await
                .map_err(fail)?;
        let capacity = i32::try_from(registration.capacity).unwrap_or(i32::MAX);
        let labels = sqlx::types::Json(&registration.labels);
        let row: WorkerRow = match &previous {
            Some((id, _)) => sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "UPDATE manman.workers SET epoch = epoch + 1, status = 'created', version = $2, labels = $3,
                     capacity = $4, started_at = $5, last_heartbeat_at = $5, ended_at = NULL
                 WHERE id = $1 RETURNING {WORKER_COLUMNS}"
            )))
            .bind(id),
            None => sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "INSERT INTO manman.workers (name, epoch, status, version, labels, capacity, started_at, last_heartbeat_at)
                 VALUES ($1, 1, 'created', $2, $3, $4, $5, $5) RETURNING {WORKER_COLUMNS}"
            )))
            .bind(&registration.name),
        }
        .bind(&registration.version)
        .bind(labels)
        .bind(capacity)
        .bind(at)
        .fetch_one(&mut *tx)
        .await
        .map_err(fail)?;
        let from = previous
            .map(|(_, status)| parse_status(&status))
            .transpose()?;
        let detail = format!("epoch {}", row.epoch);
        insert_event(
            &mut tx,
            uuid::Uuid::new_v4(),
            Entity::Worker(WorkerId(row.id)),
            from,
            Status::Created,
            Cause::Registered,
            Some(&detail),
            at,
            at,
        )
        .await
        .map_err(fail)?;
        tx.commit().await.map_err(fail)?;
        row.try_into()
    }

    async fn record_heartbeat(
        &self,
        id: WorkerId,
        epoch: i64,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let updated = sqlx::query(
            "UPDATE manman.workers SET last_heartbeat_at = $3 WHERE id = $1 AND epoch = $2",
        )
        .bind(id.get())
        .bind(epoch)
        .bind(at)
        .execute(self.pool())
        .await
        .map_err(|e| store_error(e, &id))?;
        if updated.rows_affected() == 1 {
            return Ok(true);
        }
        // Not updated: superseded, or no such worker.
        self.get_worker(id).await.map(|_| false)
    }

    async fn get_worker(&self, id: WorkerId) -> Result<Worker, StoreError> {
        let row: WorkerRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {WORKER_COLUMNS} FROM manman.workers WHERE id = $1"
        )))
        .bind(id.get())
        .fetch_one(self.pool())
        .await
        .map_err(|e| store_error(e, &id))?;
        row.try_into()
    }

    async fn list_workers(&self) -> Result<Vec<Worker>, StoreError> {
        let rows: Vec<WorkerRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {WORKER_COLUMNS} FROM manman.workers ORDER BY id"
        )))
        .fetch_all(self.pool())
        .await
        .map_err(|e| store_error(e, &"the workers"))?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn expire_leases(
        &self,
        stale_before: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Result<Vec<WorkerId>, StoreError> {
        let fail = |e| store_error(e, &"the lease sweep");
        let mut tx = self.pool().begin().await.map_err(fail)?;
        // Rows another sweep holds are skipped: it marks them, not us.
        let live = &*LIVE_STATUSES;
        let workers: Vec<(i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "WITH expired AS (
                 SELECT id, status FROM manman.workers
                 WHERE status IN {live}
                   AND (last_heartbeat_at IS NULL OR last_heartbeat_at < $1)
                 FOR UPDATE SKIP LOCKED
             )
             UPDATE manman.workers w SET status = 'lost' FROM expired e WHERE w.id = e.id
             RETURNING w.id, e.status"
        )))
        .bind(stale_before)
        .fetch_all(&mut *tx)
        .await
        .map_err(fail)?;
        for (id, from) in &workers {
            let worker = WorkerId(*id);
            insert_event(
                &mut tx,
                uuid::Uuid::new_v4(),
                Entity::Worker(worker),
                Some(parse_status(from)?),
                Status::Lost,
                Cause::LeaseExpired,
                None,
                at,
                at,
            )
            .await
            .map_err(fail)?;
            let instances: Vec<(i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "WITH active AS (
                     SELECT id, status FROM manman.instances
                     WHERE worker_id = $1 AND status IN {live}
                     FOR UPDATE
                 )
                 UPDATE manman.instances i SET status = 'lost' FROM active a WHERE i.id = a.id
                 RETURNING i.id, a.status"
            )))
            .bind(id)
            .fetch_all(&mut *tx)
            .await
            .map_err(fail)?;
            let detail = format!("{worker} stopped heartbeating");
            for (instance, was) in instances {
                insert_event(
                    &mut tx,
                    uuid::Uuid::new_v4(),
                    Entity::Instance(InstanceId(instance)),
                    Some(parse_status(&was)?),
                    Status::Lost,
                    Cause::LeaseExpired,
                    Some(&detail),
                    at,
                    at,
                )
                .await
                .map_err(fail)?;
            }
        }
        tx.commit().await.map_err(fail)?;
        Ok(workers.into_iter().map(|(id, _)| WorkerId(id)).collect())
    }
}
