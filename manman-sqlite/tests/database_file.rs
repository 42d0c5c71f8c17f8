//! The database file: created in WAL mode, kept across restarts, migrated from an older level,
//! refused when it is newer than this build or not ManMan's — and then left unchanged.

mod common;

use chrono::{SubsecRound, Utc};
use common::{change, open, placed, raw, temp};
use manman_core::command::{Command, CommandEnvelope, CommandRecord, CommandState};
use manman_core::instance::InstanceFilter;
use manman_core::ports::ApplyOutcome;
use manman_core::status::{Entity, Status};
use manman_core::store::Store;
use manman_sqlite::{MIGRATOR, OpenError, SqliteSettings, SqliteStore};
use sqlx::Connection;
use std::path::{Path, PathBuf};

#[tokio::test]
async fn a_new_file_and_its_directory_are_created_in_wal_mode() {
    let (dir, _) = temp();
    let path = dir.path().join("data").join("manman.db");
    let store = open(&path).await;
    assert!(path.is_file(), "the file and its directory are created");
    let mut conn = raw(&path).await;
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await
        .expect("journal mode");
    assert_eq!(mode, "wal");
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite%' ORDER BY 1",
    )
    .fetch_all(&mut conn)
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
        "the tables of manman-pg's schema, and the migration history"
    );
    assert_eq!(
        format!("{store:?}"),
        format!(
            "SqliteStore {{ path: {:?}, .. }}",
            path.display().to_string()
        )
    );
    assert_eq!(store.path(), path.display().to_string());
}

#[tokio::test]
async fn a_missing_file_is_not_created_when_the_settings_say_so() {
    let (_dir, path) = temp();
    let err = SqliteStore::open(&SqliteSettings::new(&path).create_if_missing(false))
        .await
        .expect_err("no file");
    assert!(matches!(err, OpenError::Open { .. }), "{err}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    assert!(!path.exists());
}

#[tokio::test]
async fn everything_survives_closing_and_reopening_the_file() {
    let (_dir, path) = temp();
    let sqlite = open(&path).await;
    let store = Store::from_adapter(sqlite.clone());
    let instance = placed(&store, "kept").await;
    let entity = Entity::Instance(instance.id);
    let mut running = change(entity, Status::Created, Status::Running);
    running.update.started_at = Some(running.as_of);
    store.status.apply_status(&running).await.expect("running");
    let envelope = CommandEnvelope::new(
        Command::Stop {
            instance_id: instance.id,
        },
        "test",
        Utc::now().trunc_subsecs(6),
    );
    let command = CommandRecord {
        id: envelope.id,
        worker_id: instance.worker_id,
        envelope,
        state: CommandState::Pending,
        detail: None,
        updated_at: Utc::now().trunc_subsecs(6),
    };
    store
        .commands
        .insert_command(&command)
        .await
        .expect("command");

    let games = store.catalogue.list_games().await.expect("games");
    let configs = store.catalogue.list_configs(None).await.expect("configs");
    let workers = store.workers.list_workers().await.expect("workers");
    let instances = store
        .instances
        .list_instances(&InstanceFilter::default())
        .await
        .expect("instances");
    let history = store
        .status
        .status_history(entity, None, 10)
        .await
        .expect("history");
    sqlite.close().await;
    drop(store);
    let wal = PathBuf::from(format!("{}-wal", path.display()));
    assert!(!wal.exists(), "closing folds the log back into the file");

    let reopened = Store::from_adapter(open(&path).await);
    assert_eq!(reopened.catalogue.list_games().await.expect("games"), games);
    assert_eq!(
        reopened
            .catalogue
            .list_configs(None)
            .await
            .expect("configs"),
        configs
    );
    assert_eq!(
        reopened.workers.list_workers().await.expect("workers"),
        workers
    );
    let kept = reopened
        .instances
        .list_instances(&InstanceFilter::default())
        .await
        .expect("instances");
    assert_eq!(kept, instances);
    assert_eq!(kept[0].status, Status::Running);
    assert_eq!(kept[0].started_at, running.update.started_at);
    assert_eq!(
        reopened
            .status
            .status_history(entity, None, 10)
            .await
            .expect("history"),
        history
    );
    assert_eq!(
        reopened
            .commands
            .get_command(command.id)
            .await
            .expect("command"),
        command
    );
    assert_eq!(
        reopened.status.apply_status(&running).await.expect("again"),
        ApplyOutcome::Duplicate,
        "applied event ids are remembered across restarts"
    );
}

#[tokio::test]
async fn a_database_at_an_older_migration_level_is_brought_up_to_date() {
    let versions: Vec<i64> = MIGRATOR.iter().map(|m| m.version).collect();
    // Every level a released ManMan may have left a file at: each prefix of the migrations.
    for &level in &versions {
        let (_dir, path) = temp();
        let mut conn = raw(&path).await;
        MIGRATOR
            .run_to(level, &mut conn)
            .await
            .expect("migrate to the older level");
        conn.close().await.expect("close");

        let store = open(&path).await;
        store
            .migrate()
            .await
            .expect("migrating again changes nothing");
        let mut conn = raw(&path).await;
        let applied: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY 1")
                .fetch_all(&mut conn)
                .await
                .expect("history");
        assert_eq!(applied, versions, "from level {level}");
        manman_core::testing::store::games_are_unique_by_name_and_app(&Store::from_adapter(store))
            .await;
    }
}

#[tokio::test]
async fn a_database_from_a_newer_manman_is_refused() {
    let (_dir, path) = temp();
    open(&path).await.close().await;
    let mut conn = raw(&path).await;
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES (99990101000000, 'from the future', true, x'00', 0)",
    )
    .execute(&mut conn)
    .await
    .expect("a migration this build does not know");
    conn.close().await.expect("close");

    let store = SqliteStore::open(&SqliteSettings::new(&path))
        .await
        .expect("a newer ManMan database opens");
    let err = store.migrate().await.expect_err("refused");
    assert!(
        matches!(
            err,
            OpenError::NewerSchema {
                version: 99990101000000,
                ..
            }
        ),
        "{err}"
    );
    let message = err.to_string();
    assert!(message.contains("newer ManMan"), "{message}");
    assert!(message.contains(&path.display().to_string()), "{message}");
}

/// Opens `path`, expects the refusal, and checks the file is byte for byte as it was.
async fn refused_unchanged(path: &Path, reason: &str) {
    let before = std::fs::read(path).expect("read");
    let err = SqliteStore::open(&SqliteSettings::new(path))
        .await
        .expect_err("refused");
    assert!(matches!(err, OpenError::NotManMan { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.starts_with(&format!(
            "this is not a ManMan database: {}",
            path.display()
        )),
        "{message}"
    );
    assert!(message.contains(reason), "{message}");
    assert!(message.contains("move this file away"), "{message}");
    assert_eq!(std::fs::read(path).expect("read"), before, "left unchanged");
}

#[tokio::test]
async fn a_sqlite_file_of_another_program_is_refused_and_left_unchanged() {
    let (_dir, path) = temp();
    let mut conn = raw(&path).await;
    sqlx::query("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
        .execute(&mut conn)
        .await
        .expect("create");
    sqlx::query("INSERT INTO notes (text) VALUES ('mine')")
        .execute(&mut conn)
        .await
        .expect("insert");
    conn.close().await.expect("close");
    refused_unchanged(&path, "tables of another program").await;
    let wal = PathBuf::from(format!("{}-wal", path.display()));
    assert!(!wal.exists(), "not switched to WAL");
}

#[tokio::test]
async fn another_programs_migration_history_is_refused() {
    let (_dir, path) = temp();
    let mut conn = raw(&path).await;
    sqlx::query(
        "CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL,
             installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, success BOOLEAN NOT NULL,
             checksum BLOB NOT NULL, execution_time BIGINT NOT NULL)",
    )
    .execute(&mut conn)
    .await
    .expect("create");
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES (1, 'someone else''s', true, x'00', 0)",
    )
    .execute(&mut conn)
    .await
    .expect("insert");
    conn.close().await.expect("close");
    refused_unchanged(&path, "migration history is another program's").await;
}

#[tokio::test]
async fn a_file_that_is_not_sqlite_is_refused_and_left_unchanged() {
    let (_dir, path) = temp();
    std::fs::write(&path, "my save game, not a database\n".repeat(200)).expect("write");
    refused_unchanged(&path, "not a SQLite database").await;
}

#[tokio::test]
async fn an_empty_file_becomes_a_manman_database() {
    let (_dir, path) = temp();
    std::fs::write(&path, b"").expect("touch");
    let store = Store::from_adapter(open(&path).await);
    assert!(
        store
            .catalogue
            .list_games()
            .await
            .expect("games")
            .is_empty()
    );
}

/// The text of the constraint named `name` in a `CREATE TABLE` statement: from its name to the
/// end of its `CHECK (…)`.
fn constraint<'a>(create: &'a str, name: &str) -> &'a str {
    let start = create
        .find(&format!("CONSTRAINT {name}"))
        .unwrap_or_else(|| panic!("constraint {name}"));
    let open = start + create[start..].find('(').expect("its CHECK");
    let mut depth = 0;
    for (i, c) in create[open..].char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return &create[start..=open + i];
                }
            }
            _ => {}
        }
    }
    panic!("constraint {name} is not closed");
}

/// The schema's CHECK constraints and partial indexes list exactly core's sets: a status, cause
/// or command state added in core without a migration (or a set retyped wrong) fails here.
#[tokio::test]
async fn the_schema_agrees_with_cores_statuses_causes_and_states() {
    use manman_core::sql_sets::{
        ACTIVE_STATUSES, FINISHED_COMMAND_STATES, LIVE_STATUSES, UNFINISHED_COMMAND_STATES,
        all_causes, all_command_states, all_statuses, quoted_names,
    };
    let (dir, _) = temp();
    let path = dir.path().join("manman.db");
    drop(open(&path).await);
    let mut conn = raw(&path).await;
    let schema: Vec<(String, String)> = sqlx::query_as(
        "SELECT name, sql FROM sqlite_schema WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite%'",
    )
    .fetch_all(&mut conn)
    .await
    .expect("schema");
    let sql = |name: &str| {
        schema
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, sql)| sql.as_str())
            .unwrap_or_else(|| panic!("{name} in the schema"))
    };
    let sorted = |mut names: Vec<String>| {
        names.sort();
        names
    };
    let owned = |names: Vec<&str>| sorted(names.into_iter().map(str::to_owned).collect());
    let check = |table: &str, name: &str| sorted(quoted_names(constraint(sql(table), name)));
    assert_eq!(
        check("workers", "workers_status_check"),
        owned(all_statuses())
    );
    assert_eq!(
        check("instances", "instances_status_check"),
        owned(all_statuses())
    );
    for name in [
        "status_events_status_check",
        "status_events_from_status_check",
    ] {
        assert_eq!(
            check("status_events", name),
            owned(all_statuses()),
            "{name}"
        );
    }
    assert_eq!(
        check("status_events", "status_events_cause_check"),
        owned(all_causes())
    );
    assert_eq!(
        check("command_records", "command_records_state_check"),
        owned(all_command_states())
    );
    let index = |name: &str| sorted(quoted_names(sql(name)));
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
