//! `manman-pg` against a real PostgreSQL (`MANMAN_TEST_DATABASE_URL`; each test gets a fresh
//! database).

use chrono::Utc;
use manman_core::config::ConfigSpec;
use manman_core::game_server::{NewGameServer, ServerType};
use manman_core::instance::NewInstance;
use manman_core::ports::{EntityUpdate, StatusChange, StoreError};
use manman_core::status::{Cause, Entity, Status};
use manman_core::store::Store;
use manman_core::testing::store as suite;
use manman_core::worker::WorkerRegistration;
use manman_pg::{PgSettings, PgStore};
use manman_test_support::postgres::TestDatabase;
use sqlx::{Connection, Executor};
use std::time::Duration;

async fn migrated(db: &TestDatabase) -> PgStore {
    let pg = PgStore::connect(&PgSettings::new(&db.url).acquire_timeout(Duration::from_secs(2)))
        .await
        .expect("connect");
    pg.migrate().await.expect("migrate");
    pg
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let Some(db) = TestDatabase::create(stringify!($case)).await else { return };
                let store = Store::from_adapter(migrated(&db).await);
                suite::$case(&store).await;
            }
        )*
    };
}

conformance!(
    catalogue_entries_are_updated_and_deleted,
    credentials_are_unique_and_revocable,
    games_are_unique_by_name_and_app,
    configs_follow_the_catalogue_rules,
    workers_register_with_growing_epochs,
    instances_are_created_filtered_and_paged,
    status_changes_are_conditional_and_idempotent,
    batches_apply_each_change_in_order,
    batches_recognise_events_recorded_before,
    sequences_are_compared_and_set_with_the_status,
    instances_are_created_with_their_start_in_one_go,
    commands_are_answered_only_by_their_worker,
    commands_move_forward_only,
    a_command_is_marked_delivered_only_while_pending,
    leases_expire_exactly_once,
    unfinished_commands_expire_exactly_once,
    retention_prunes_in_batches,
    retention_removes_stdin_lines_whatever_the_state,
    a_running_instance_shows_no_exit_and_its_workers_heartbeat,
    console_tails_are_kept_replaced_and_pruned,
    active_instances_are_those_not_ended,
    active_counts_leave_ended_instances_out,
);

/// A batch's reads and its write take one connection at a time: a pool of one connection
/// applies batches as well.
#[tokio::test]
async fn batches_apply_on_a_pool_of_one_connection() {
    let Some(db) = TestDatabase::create("one_connection").await else {
        return;
    };
    let settings = PgSettings::new(&db.url)
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(2));
    let pg = PgStore::connect(&settings).await.expect("connect");
    pg.migrate().await.expect("migrate");
    suite::batches_apply_each_change_in_order(&Store::from_adapter(pg)).await;
}

#[tokio::test]
async fn migrations_apply_to_an_empty_database_and_again_to_a_migrated_one() {
    let Some(db) = TestDatabase::create("migrations").await else {
        return;
    };
    let pg = migrated(&db).await;
    pg.migrate().await.expect("migrating again is a no-op");
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'manman' ORDER BY 1",
    )
    .fetch_all(pg.pool())
    .await
    .expect("tables");
    assert_eq!(
        tables,
        [
            "_sqlx_migrations",
            "api_tokens",
            "bus_secret",
            "command_records",
            "console_tails",
            "game_server_configs",
            "game_servers",
            "instances",
            "status_events",
            "worker_credentials",
            "workers",
        ],
        "every table, the migration table too, lives in schema manman"
    );
    let outside: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
    )
    .fetch_one(pg.pool())
    .await
    .expect("count");
    assert_eq!(outside, 0, "nothing outside the schema");
}

#[tokio::test]
async fn a_database_from_a_newer_manman_is_refused() {
    let Some(db) = TestDatabase::create("newer").await else {
        return;
    };
    let pg = migrated(&db).await;
    sqlx::query(
        "INSERT INTO manman._sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES (99990101000000, 'from the future', true, '\\x00', 0)",
    )
    .execute(pg.pool())
    .await
    .expect("a migration this build does not know");
    let err = pg.migrate().await.expect_err("refused");
    assert!(
        matches!(
            err,
            manman_pg::ConnectError::NewerSchema {
                version: 99990101000000
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn a_failure_mid_transaction_leaves_status_and_history_in_agreement() {
    let Some(db) = TestDatabase::create("midtx").await else {
        return;
    };
    let pg = migrated(&db).await;
    let store = Store::from_adapter(pg.clone());
    let now = Utc::now();
    let game = store
        .catalogue
        .create_game(
            &NewGameServer {
                name: "g".into(),
                server_type: ServerType::Local { path: "g".into() },
            },
            now,
        )
        .await
        .expect("game");
    let config = store
        .catalogue
        .create_config(game.id, &ConfigSpec::new("c", "x"), now)
        .await
        .expect("config");
    let worker = store
        .workers
        .register_worker(
            &WorkerRegistration {
                name: "w".into(),
                version: "1".into(),
                capacity: 1,
                labels: Default::default(),
                taken_up: Vec::new(),
            },
            now,
        )
        .await
        .expect("worker");
    let instance = store
        .instances
        .create_instance(&NewInstance {
            config_id: config.id,
            worker_id: worker.id,
            worker_epoch: 1,
            created_at: now,
        })
        .await
        .expect("instance");
    // The status row is updated first, then the history insert fails (PostgreSQL text cannot
    // hold a NUL byte): the whole change must roll back.
    let change = StatusChange {
        event_id: uuid::Uuid::new_v4(),
        entity: Entity::Instance(instance.id),
        from: Status::Created,
        to: Status::Running,
        cause: Cause::Ready,
        detail: Some("bad\0detail".into()),
        as_of: now,
        reported_at: now,
        update: EntityUpdate::default(),
        sequence: None,
    };
    assert!(store.status.apply_status(&change).await.is_err());
    assert_eq!(
        store
            .instances
            .get_instance(instance.id)
            .await
            .expect("get")
            .status,
        Status::Created
    );
    let history = store
        .status
        .status_history(Entity::Instance(instance.id), None, 10)
        .await
        .expect("history");
    assert_eq!(
        history.len(),
        1,
        "no history row for a change that did not happen"
    );
    assert_eq!(history[0].status, Status::Created);
}

#[tokio::test]
async fn an_unreachable_database_is_unavailable_and_the_store_recovers_by_itself() {
    let Some(db) = TestDatabase::create("outage").await else {
        return;
    };
    let pg = migrated(&db).await;
    let store = Store::from_adapter(pg.clone());
    store.catalogue.list_games().await.expect("works");
    let mut admin = sqlx::PgConnection::connect(db.admin_url())
        .await
        .expect("admin");
    let name = db.name().to_owned();
    admin
        .execute(sqlx::AssertSqlSafe(format!(
            "ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS false"
        )))
        .await
        .expect("refuse connections");
    admin
        .execute(sqlx::AssertSqlSafe(format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        )))
        .await
        .expect("terminate");
    let mut saw_unavailable = false;
    for _ in 0..5 {
        match store.catalogue.list_games().await {
            Err(StoreError::Unavailable { .. }) => {
                saw_unavailable = true;
                break;
            }
            Err(other) => panic!("expected Unavailable, got {other}"),
            Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    assert!(saw_unavailable, "the outage is reported as Unavailable");
    admin
        .execute(sqlx::AssertSqlSafe(format!(
            "ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS true"
        )))
        .await
        .expect("allow connections");
    let mut recovered = false;
    for _ in 0..50 {
        if store.catalogue.list_games().await.is_ok() {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "the store works again without a restart");
}

/// The schema's CHECK constraints and partial indexes list exactly core's sets: a status, cause
/// or command state added in core without a migration (or a set retyped wrong) fails here.
#[tokio::test]
async fn the_schema_agrees_with_cores_statuses_causes_and_states() {
    use manman_core::sql_sets::{
        ACTIVE_STATUSES, FINISHED_COMMAND_STATES, LIVE_STATUSES, UNFINISHED_COMMAND_STATES,
        all_causes, all_command_states, all_statuses, quoted_names,
    };
    let Some(db) = TestDatabase::create("schema_sets").await else {
        return;
    };
    let pg = migrated(&db).await;
    let sorted = |mut names: Vec<String>| {
        names.sort();
        names
    };
    let owned = |names: Vec<&str>| sorted(names.into_iter().map(str::to_owned).collect());
    let checks: Vec<(String, String)> = sqlx::query_as(
        "SELECT conname::text, pg_get_constraintdef(oid) FROM pg_constraint
         WHERE connamespace = 'manman'::regnamespace AND contype = 'c'",
    )
    .fetch_all(pg.pool())
    .await
    .expect("constraints");
    let check = |name: &str| {
        let (_, def) = checks
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("constraint {name}"));
        sorted(quoted_names(def))
    };
    for name in [
        "workers_status_check",
        "instances_status_check",
        "status_events_status_check",
        "status_events_from_status_check",
    ] {
        assert_eq!(check(name), owned(all_statuses()), "{name}");
    }
    assert_eq!(check("status_events_cause_check"), owned(all_causes()));
    assert_eq!(
        check("command_records_state_check"),
        owned(all_command_states())
    );
    let indexes: Vec<(String, String)> = sqlx::query_as(
        "SELECT indexname::text, indexdef FROM pg_indexes WHERE schemaname = 'manman'",
    )
    .fetch_all(pg.pool())
    .await
    .expect("indexes");
    let index = |name: &str| {
        let (_, def) = indexes
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("index {name}"));
        sorted(quoted_names(def))
    };
    assert_eq!(
        index("instances_active_worker_idx"),
        sorted(quoted_names(&ACTIVE_STATUSES))
    );
    assert_eq!(
        index("workers_live_heartbeat_idx"),
        sorted(quoted_names(&LIVE_STATUSES))
    );
    assert_eq!(
        index("command_records_pending_idx"),
        sorted(quoted_names(&UNFINISHED_COMMAND_STATES))
    );
    assert_eq!(
        index("command_records_finished_idx"),
        sorted(quoted_names(&FINISHED_COMMAND_STATES))
    );
}
