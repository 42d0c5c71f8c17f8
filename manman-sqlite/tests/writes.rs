//! Writes: several at once (in one process or two) wait for each other instead of failing with
//! "database is locked"; a change that fails half-way leaves nothing behind; driver errors mean
//! what `manman-pg`'s mean.

mod common;

use chrono::{SubsecRound, Utc};
use common::{change, local_game, open, placed, raw, registration, temp};
use manman_core::config::ConfigSpec;
use manman_core::game_server::{NewGameServer, ServerType};
use manman_core::id::WorkerId;
use manman_core::instance::InstanceFilter;
use manman_core::ports::{ApplyOutcome, StoreError};
use manman_core::status::{Entity, Status};
use manman_core::store::Store;
use manman_sqlite::{SqliteSettings, SqliteStore};
use sqlx::Connection;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_share_the_one_writer_without_database_is_locked() {
    let (_dir, path) = temp();
    let store = Store::from_adapter(open(&path).await);
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..48 {
        let store = store.clone();
        tasks.spawn(async move {
            let instance = placed(&store, &format!("writer-{n}")).await;
            let entity = Entity::Instance(instance.id);
            store
                .status
                .apply_statuses(&[
                    change(entity, Status::Created, Status::Initializing),
                    change(entity, Status::Initializing, Status::Running),
                ])
                .await
                .expect("batch")
                .into_iter()
                .for_each(|outcome| {
                    assert!(
                        matches!(outcome, Ok(ApplyOutcome::Applied(_))),
                        "{outcome:?}"
                    );
                });
            // Reads in between writes, from the reader pool.
            store.workers.list_workers().await.expect("read");
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("a writer failed");
    }
    let running = store
        .instances
        .list_instances(&InstanceFilter {
            status: Some(Status::Running),
            ..InstanceFilter::default()
        })
        .await
        .expect("list");
    assert_eq!(running.len(), 48);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_on_one_file_wait_for_each_other_and_sweep_once() {
    // Two stores on one file are what two processes would have: two writer connections. They
    // wait for each other's write lock (busy timeout) instead of failing.
    let (_dir, path) = temp();
    let a = Store::from_adapter(open(&path).await);
    let b = Store::from_adapter(open(&path).await);
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..32 {
        let store = if n % 2 == 0 { a.clone() } else { b.clone() };
        tasks.spawn(async move { placed(&store, &format!("both-{n}")).await });
    }
    let mut instances = Vec::new();
    while let Some(done) = tasks.join_next().await {
        instances.push(done.expect("a writer failed"));
    }

    let later = Utc::now().trunc_subsecs(6) + chrono::Duration::seconds(60);
    let (swept_a, swept_b) = tokio::join!(
        a.workers.expire_leases(later, later),
        b.workers.expire_leases(later, later),
    );
    let (swept_a, swept_b) = (swept_a.expect("sweep"), swept_b.expect("sweep"));
    let mut swept: Vec<WorkerId> = swept_a.iter().chain(&swept_b).copied().collect();
    swept.sort();
    let mut expected: Vec<WorkerId> = instances.iter().map(|i| i.worker_id).collect();
    expected.sort();
    assert_eq!(swept, expected, "each worker marked by exactly one sweep");
    for instance in &instances {
        let history = b
            .status
            .status_history(Entity::Instance(instance.id), None, 10)
            .await
            .expect("history");
        let lost = history.iter().filter(|e| e.status == Status::Lost).count();
        assert_eq!(lost, 1, "{}", instance.id);
    }
}

#[tokio::test]
async fn a_write_lock_held_past_the_busy_timeout_is_unavailable() {
    let (_dir, path) = temp();
    open(&path).await.close().await;
    let store = Store::from_adapter({
        let s =
            SqliteStore::open(&SqliteSettings::new(&path).busy_timeout(Duration::from_millis(100)))
                .await
                .expect("open");
        s.migrate().await.expect("migrate");
        s
    });
    let mut other = raw(&path).await;
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .expect("another process takes the write lock");
    let r = store
        .workers
        .register_worker(&registration("blocked"), Utc::now())
        .await;
    assert!(
        matches!(r, Err(StoreError::Unavailable { .. })),
        "busy is transient: {r:?}"
    );
    assert!(r.expect_err("busy").is_transient());
    // Reads go on while another connection writes (WAL).
    store
        .workers
        .list_workers()
        .await
        .expect("read while locked");
    sqlx::query("ROLLBACK")
        .execute(&mut other)
        .await
        .expect("release");
    store
        .workers
        .register_worker(&registration("blocked"), Utc::now())
        .await
        .expect("works once the lock is gone");
}

/// The detail of a `Conflict`.
fn detail<T: std::fmt::Debug>(r: Result<T, StoreError>) -> String {
    match r {
        Err(StoreError::Conflict { detail, .. }) => detail,
        other => panic!("expected Conflict, got {other:?}"),
    }
}

#[tokio::test]
async fn unique_and_check_violations_say_what_is_wrong() {
    let (_dir, path) = temp();
    let store = Store::from_adapter(open(&path).await);
    let now = Utc::now().trunc_subsecs(6);
    let game = store
        .catalogue
        .create_game(&local_game("cs2"), now)
        .await
        .expect("game");
    assert_eq!(
        detail(store.catalogue.create_game(&local_game("cs2"), now).await),
        "the name is taken: choose another"
    );
    let steam = |name: &str| NewGameServer {
        name: name.to_owned(),
        server_type: ServerType::Steam { app_id: 730 },
    };
    store
        .catalogue
        .create_game(&steam("s1"), now)
        .await
        .expect("steam");
    assert_eq!(
        detail(store.catalogue.create_game(&steam("s2"), now).await),
        "another game server installs this app: add a config to it instead"
    );
    let mut spec = ConfigSpec::new("main", "server");
    spec.is_default = true;
    store
        .catalogue
        .create_config(game.id, &spec, now)
        .await
        .expect("config");
    assert_eq!(
        detail(store.catalogue.create_config(game.id, &spec, now).await),
        "the name is taken for this game: choose another"
    );
    spec.name = "alt".to_owned();
    assert_eq!(
        detail(store.catalogue.create_config(game.id, &spec, now).await),
        "the game already has a default config: unset it first or create this one without is_default"
    );
    let mut zero = registration("w");
    zero.capacity = 0;
    match store.workers.register_worker(&zero, now).await {
        Err(StoreError::Invalid { detail }) => {
            assert!(detail.contains("workers_capacity_check"), "{detail}");
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[tokio::test]
async fn a_change_that_fails_half_way_leaves_status_and_history_in_agreement() {
    let (_dir, path) = temp();
    let sqlite = open(&path).await;
    let store = Store::from_adapter(sqlite.clone());
    let a = placed(&store, "a").await;
    let b = placed(&store, "b").await;
    // The entity row is updated first, then the history insert fails (a rule of this test's
    // own): the change must roll back whole.
    let mut conn = raw(&path).await;
    sqlx::query(
        "CREATE TRIGGER refuse_boom BEFORE INSERT ON status_events WHEN NEW.detail = 'boom'
         BEGIN
             INSERT INTO workers (name, epoch, status, version, labels, capacity, started_at)
             VALUES ('x', 1, 'created', '1', '{}', 0, '2026-01-01T00:00:00.000000Z');
         END",
    )
    .execute(&mut conn)
    .await
    .expect("trigger");
    conn.close().await.expect("close");

    let mut boom = change(Entity::Instance(a.id), Status::Created, Status::Running);
    boom.detail = Some("boom".to_owned());
    let r = store.status.apply_status(&boom).await;
    assert!(matches!(r, Err(StoreError::Invalid { .. })), "{r:?}");
    let good = change(Entity::Instance(b.id), Status::Created, Status::Running);
    let outcomes = store
        .status
        .apply_statuses(&[boom.clone(), good])
        .await
        .expect("batch");
    assert!(
        matches!(outcomes[0], Err(StoreError::Invalid { .. })),
        "{outcomes:?}"
    );
    assert!(
        matches!(outcomes[1], Ok(ApplyOutcome::Applied(_))),
        "the other change of the batch is applied: {outcomes:?}"
    );
    for (instance, status, events) in [(&a, Status::Created, 1), (&b, Status::Running, 2)] {
        let entity = Entity::Instance(instance.id);
        assert_eq!(
            store
                .instances
                .get_instance(instance.id)
                .await
                .expect("get")
                .status,
            status
        );
        let history = store
            .status
            .status_history(entity, None, 10)
            .await
            .expect("history");
        assert_eq!(history.len(), events, "{entity}");
        assert_eq!(history.last().expect("history").status, status);
    }
}
