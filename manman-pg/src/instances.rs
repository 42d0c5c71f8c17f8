//! Instances.

use crate::error::{store_error, violated_foreign_key};
use crate::status::{parse_cause, parse_status};
use crate::store::PgStore;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use manman_core::command::CommandRecord;
use manman_core::id::{ConfigId, InstanceId, WorkerId};
use manman_core::instance::{Instance, InstanceFilter, NewInstance};
use manman_core::ports::{InstanceRepository, StoreError};
use manman_core::sql_sets::ACTIVE_STATUSES;
use manman_core::status::Status;
use sqlx::FromRow;

#[derive(FromRow)]
struct InstanceRow {
    id: i64,
    config_id: i64,
    worker_id: i64,
    worker_epoch: i64,
    status: String,
    cause: String,
    detail: Option<String>,
    created_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    ready_at: Option<DateTime<Utc>>,
    ended_at: Option<DateTime<Utc>>,
    exit_code: Option<i32>,
    exit_signal: Option<i32>,
    restart_count: i32,
    last_heartbeat_at: Option<DateTime<Utc>>,
}

impl TryFrom<InstanceRow> for Instance {
    type Error = StoreError;

    fn try_from(row: InstanceRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: InstanceId(row.id),
            config_id: ConfigId(row.config_id),
            worker_id: WorkerId(row.worker_id),
            worker_epoch: row.worker_epoch,
            status: parse_status(&row.status)?,
            cause: parse_cause(&row.cause)?,
            detail: row.detail,
            created_at: row.created_at,
            started_at: row.started_at,
            ready_at: row.ready_at,
            ended_at: row.ended_at,
            exit_code: row.exit_code,
            exit_signal: row.exit_signal,
            restart_count: u32::try_from(row.restart_count).unwrap_or(0),
            last_heartbeat_at: row.last_heartbeat_at,
        })
    }
}

/// The columns of an instance; `last_heartbeat_at` is read from the worker registration it was
/// placed on while it has not ended (a heartbeat writes one worker row, not one per instance).
const INSTANCE_COLUMNS: &str = "id, config_id, worker_id, worker_epoch, status, cause, detail, created_at, started_at, ready_at, \
     ended_at, exit_code, exit_signal, restart_count, \
     CASE WHEN ended_at IS NULL THEN (SELECT w.last_heartbeat_at FROM manman.workers w \
         WHERE w.id = manman.instances.worker_id AND w.epoch = manman.instances.worker_epoch) \
     END AS last_heartbeat_at";

#[async_trait]
impl InstanceRepository for PgStore {
    async fn count_by_status(&self) -> Result<Vec<(Status, u64)>, StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT status, count(*) FROM manman.instances GROUP BY status ORDER BY status",
        )
        .fetch_all(self.pool())
        .await
        .map_err(|e| store_error(e, &"the instance counts"))?;
        rows.into_iter()
            .map(|(status, n)| {
                let status =
                    status
                        .parse()
                        .map_err(
                            |e: manman_core::unknown_name::UnknownName| StoreError::Other {
                                source: format!("{e} in the database").into(),
                            },
                        )?;
                Ok((status, u64::try_from(n).unwrap_or(0)))
            })
            .collect()
    }

    async fn create_instance(&self, new: &NewInstance) -> Result<Instance, StoreError> {
        let what = format!("an instance of {}", new.config_id);
        let fail = |e: sqlx::Error| match violated_foreign_key(&e).as_deref() {
            Some("instances_config_id_fkey") => StoreError::not_found(&new.config_id),
            Some("instances_worker_id_fkey") => StoreError::not_found(&new.worker_id),
            _ => store_error(e, &what),
        };
        // The instance and its first history row in one statement (atomic on its own: no
        // transaction round trips on the way to starting it).
        let row: InstanceRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "WITH created AS (
                 INSERT INTO manman.instances (config_id, worker_id, worker_epoch, status, cause, detail, created_at)
                 VALUES ($1, $2, $3, 'created', 'placed', 'placed on worker ' || $2, $4) RETURNING {INSTANCE_COLUMNS}
             ),
             history AS (
                 INSERT INTO manman.status_events (event_id, instance_id, status, cause, detail, as_of, reported_at)
                 SELECT $5, id, 'created', 'placed', $6, $4, $4 FROM created
             )
             SELECT * FROM created"
        )))
        .bind(new.config_id.get())
        .bind(new.worker_id.get())
        .bind(new.worker_epoch)
        .bind(new.created_at)
        .bind(uuid::Uuid::new_v4())
        .bind(format!("placed on {}", new.worker_id))
        .fetch_one(self.pool())
        .await
        .map_err(fail)?;
        row.try_into()
    }

    async fn reserve_instance_id(&self) -> Result<InstanceId, StoreError> {
        let id: i64 =
            sqlx::query_scalar("SELECT nextval(pg_get_serial_sequence('manman.instances', 'id'))")
                .fetch_one(self.pool())
                .await
                .map_err(|e| store_error(e, &"a new instance id"))?;
        Ok(InstanceId(id))
    }

    async fn create_started_instance(
        &self,
        id: InstanceId,
        new: &NewInstance,
        start: &CommandRecord,
    ) -> Result<Instance, StoreError> {
        let fail = |e: sqlx::Error| match violated_foreign_key(&e).as_deref() {
            Some("instances_config_id_fkey") => StoreError::not_found(&new.config_id),
            Some("instances_worker_id_fkey" | "command_records_worker_id_fkey") => {
                StoreError::not_found(&new.worker_id)
            }
            _ => store_error(e, &id),
        };
        // The instance, its first history row and its start's record in one statement (atomic
        // on its own).
        let row: InstanceRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "WITH created AS (
                 INSERT INTO manman.instances (id, config_id, worker_id, worker_epoch, status, cause, detail, created_at)
                 OVERRIDING SYSTEM VALUE
                 VALUES ($1, $2, $3, $4, 'created', 'placed', 'placed on worker ' || $3, $5) RETURNING {INSTANCE_COLUMNS}
             ),
             history AS (
                 INSERT INTO manman.status_events (event_id, instance_id, status, cause, detail, as_of, reported_at)
                 SELECT $6, id, 'created', 'placed', $7, $5, $5 FROM created
             ),
             command AS (
                 INSERT INTO manman.command_records
                     (id, worker_id, instance_id, kind, envelope, state, detail, issued_at, expires_at, updated_at)
                 SELECT $8, $9, id, $10, $11, $12, $13, $14, $15, $16 FROM created
             )
             SELECT * FROM created"
        )))
        .bind(id.get())
        .bind(new.config_id.get())
        .bind(new.worker_id.get())
        .bind(new.worker_epoch)
        .bind(new.created_at)
        .bind(uuid::Uuid::new_v4())
        .bind(format!("placed on {}", new.worker_id))
        .bind(start.id)
        .bind(start.worker_id.get())
        .bind(start.envelope.command.name())
        .bind(sqlx::types::Json(&start.envelope))
        .bind(start.state.as_str())
        .bind(start.detail.as_deref())
        .bind(start.envelope.issued_at)
        .bind(start.envelope.expires_at)
        .bind(start.updated_at)
        .fetch_one(self.pool())
        .await
        .map_err(fail)?;
        row.try_into()
    }

    async fn get_instance(&self, id: InstanceId) -> Result<Instance, StoreError> {
        let row: InstanceRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {INSTANCE_COLUMNS} FROM manman.instances WHERE id = $1"
        )))
        .bind(id.get())
        .fetch_one(self.pool())
        .await
        .map_err(|e| store_error(e, &id))?;
        row.try_into()
    }

    async fn active_instances(
        &self,
        worker: Option<WorkerId>,
    ) -> Result<Vec<Instance>, StoreError> {
        // The statuses of the partial index `instances_active_worker_idx`, written the same way
        // so the planner uses it (one statement per shape: no `$1 IS NULL OR …` to plan around).
        let active = &*ACTIVE_STATUSES;
        let query = match worker {
            Some(_) => format!(
                "SELECT {INSTANCE_COLUMNS} FROM manman.instances
                 WHERE worker_id = $1 AND status IN {active} ORDER BY id"
            ),
            None => format!(
                "SELECT {INSTANCE_COLUMNS} FROM manman.instances WHERE status IN {active} ORDER BY id"
            ),
        };
        let mut select = sqlx::query_as::<_, InstanceRow>(sqlx::AssertSqlSafe(query));
        if let Some(worker) = worker {
            select = select.bind(worker.get());
        }
        let rows = select
            .fetch_all(self.pool())
            .await
            .map_err(|e| store_error(e, &"the active instances"))?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn active_instances_of_config(
        &self,
        config: ConfigId,
    ) -> Result<Vec<Instance>, StoreError> {
        // The active statuses written as in the partial index, so the planner uses it.
        let active = &*ACTIVE_STATUSES;
        let rows: Vec<InstanceRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {INSTANCE_COLUMNS} FROM manman.instances
             WHERE config_id = $1 AND status IN {active} ORDER BY id"
        )))
        .bind(config.get())
        .fetch_all(self.pool())
        .await
        .map_err(|e| store_error(e, &config))?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn count_active_by_worker(&self) -> Result<Vec<(WorkerId, u64)>, StoreError> {
        let active = &*ACTIVE_STATUSES;
        let rows: Vec<(i64, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT worker_id, count(*) FROM manman.instances
             WHERE status IN {active} GROUP BY worker_id ORDER BY worker_id"
        )))
        .fetch_all(self.pool())
        .await
        .map_err(|e| store_error(e, &"the active instances per worker"))?;
        Ok(rows
            .into_iter()
            .map(|(worker, n)| (WorkerId(worker), u64::try_from(n).unwrap_or_default()))
            .collect())
    }

    async fn take_over_instances(
        &self,
        worker: WorkerId,
        epoch: i64,
        instances: &[InstanceId],
    ) -> Result<Vec<InstanceId>, StoreError> {
        let active = &*ACTIVE_STATUSES;
        let ids: Vec<i64> = instances.iter().map(|i| i.get()).collect();
        let mut taken: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "UPDATE manman.instances SET worker_epoch = $2
             WHERE id = ANY($3) AND worker_id = $1 AND worker_epoch < $2 AND status IN {active}
             RETURNING id"
        )))
        .bind(worker.get())
        .bind(epoch)
        .bind(&ids)
        .fetch_all(self.pool())
        .await
        .map_err(|e| store_error(e, &worker))?;
        taken.sort_unstable();
        Ok(taken.into_iter().map(InstanceId).collect())
    }

    async fn list_instances(&self, filter: &InstanceFilter) -> Result<Vec<Instance>, StoreError> {
        let rows: Vec<InstanceRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {INSTANCE_COLUMNS} FROM manman.instances
             WHERE ($1::text IS NULL OR status = $1)
               AND ($2::bigint IS NULL OR worker_id = $2)
               AND ($3::bigint IS NULL OR config_id = $3)
               AND id > $4
             ORDER BY id LIMIT $5"
        )))
        .bind(filter.status.map(Status::as_str))
        .bind(filter.worker_id.map(WorkerId::get))
        .bind(filter.config_id.map(ConfigId::get))
        .bind(filter.after.map_or(0, InstanceId::get))
        .bind(filter.effective_limit() as i64)
        .fetch_all(self.pool())
        .await
        .map_err(|e| store_error(e, &"the instances"))?;
        rows.into_iter().map(TryInto::try_into).collect()
    }
}
