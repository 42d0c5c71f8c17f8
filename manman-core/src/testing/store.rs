//! The repository-port conformance suite.

use crate::auth::{Scope, Secret};
use crate::command::{Command, CommandEnvelope, CommandRecord, CommandState};
use crate::config::ConfigSpec;
use crate::game_server::{NewGameServer, ServerType};
use crate::id::{ConfigId, GameServerId, InstanceId, TokenId, WorkerId};
use crate::instance::{InstanceFilter, NewInstance};
use crate::ports::{ApplyOutcome, CurrentStatus, EntityUpdate, StatusChange, StoreError};
use crate::status::{Cause, Entity, Sequence, Status};
use crate::store::Store;
use crate::testing::fixture::{instance, instances_on, local_game, now, worker};
use crate::testing::unique;
use crate::worker::WorkerRegistration;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use uuid::Uuid;

fn change(entity: Entity, from: Status, to: Status) -> StatusChange {
    StatusChange {
        event_id: Uuid::new_v4(),
        entity,
        from,
        to,
        cause: Cause::User,
        detail: None,
        as_of: now(),
        reported_at: now(),
        update: EntityUpdate::default(),
        sequence: None,
    }
}

/// Games: create, get, find, list; names and Steam app ids are unique.
pub async fn games_are_unique_by_name_and_app(store: &Store) {
    let name = unique("game");
    let at = now();
    let game = store
        .catalogue
        .create_game(&local_game(&name), at)
        .await
        .expect("create");
    assert_eq!(game.name, name);
    assert_eq!(game.created_at, at);
    assert_eq!(store.catalogue.get_game(game.id).await.expect("get"), game);
    assert_eq!(
        store.catalogue.find_game(&name).await.expect("find"),
        Some(game.clone())
    );
    assert_eq!(
        store
            .catalogue
            .find_game(&unique("none"))
            .await
            .expect("find"),
        None
    );
    assert!(
        store
            .catalogue
            .list_games()
            .await
            .expect("list")
            .contains(&game)
    );
    let again = store.catalogue.create_game(&local_game(&name), now()).await;
    assert!(
        matches!(again, Err(StoreError::Conflict { .. })),
        "{again:?}"
    );

    let app_id = 100_000 + (Uuid::new_v4().as_u128() % 1_000_000_000) as u32;
    let steam = |name: String| NewGameServer {
        name,
        server_type: ServerType::Steam { app_id },
    };
    store
        .catalogue
        .create_game(&steam(unique("s")), now())
        .await
        .expect("steam game");
    let twice = store
        .catalogue
        .create_game(&steam(unique("s")), now())
        .await;
    assert!(
        matches!(twice, Err(StoreError::Conflict { .. })),
        "{twice:?}"
    );
    let missing = store
        .catalogue
        .get_game(crate::id::GameServerId(i64::MAX))
        .await;
    assert!(
        matches!(missing, Err(StoreError::NotFound { .. })),
        "{missing:?}"
    );
}

/// Configs: unique name per game, at most one default per game, missing game is `NotFound`.
pub async fn configs_follow_the_catalogue_rules(store: &Store) {
    let game = store
        .catalogue
        .create_game(&local_game(&unique("g")), now())
        .await
        .expect("game");
    let other = store
        .catalogue
        .create_game(&local_game(&unique("g")), now())
        .await
        .expect("game");
    let mut spec = ConfigSpec::new("main", "bin/server");
    spec.is_default = true;
    spec.args = vec!["-port".to_owned(), "27015".to_owned()];
    spec.env.insert("A".to_owned(), "1".to_owned());
    spec.ready_pattern = Some("ready".to_owned());
    let created = store
        .catalogue
        .create_config(game.id, &spec, now())
        .await
        .expect("create");
    assert_eq!(created.spec, spec);
    assert_eq!(
        store.catalogue.get_config(created.id).await.expect("get"),
        created
    );
    let bundle = store
        .catalogue
        .get_config_bundle(created.id)
        .await
        .expect("bundle");
    assert_eq!(
        (bundle.config, bundle.game),
        (created.clone(), game.clone())
    );
    let missing = store.catalogue.get_config_bundle(ConfigId(i64::MAX)).await;
    assert!(
        matches!(missing, Err(StoreError::NotFound { .. })),
        "{missing:?}"
    );

    let same_name = store
        .catalogue
        .create_config(game.id, &ConfigSpec::new("main", "x"), now())
        .await;
    assert!(
        matches!(same_name, Err(StoreError::Conflict { .. })),
        "{same_name:?}"
    );
    let mut second_default = ConfigSpec::new("alt", "x");
    second_default.is_default = true;
    let r = store
        .catalogue
        .create_config(game.id, &second_default, now())
        .await;
    assert!(
        matches!(r, Err(StoreError::Conflict { .. })),
        "a second default: {r:?}"
    );
    second_default.is_default = false;
    store
        .catalogue
        .create_config(game.id, &second_default, now())
        .await
        .expect("non-default alt");
    store
        .catalogue
        .create_config(other.id, &spec, now())
        .await
        .expect("same name and default on another game");

    let listed = store
        .catalogue
        .list_configs(Some(game.id))
        .await
        .expect("list");
    let names: Vec<_> = listed.iter().map(|c| c.spec.name.as_str()).collect();
    assert_eq!(names, ["main", "alt"]);
    let r = store
        .catalogue
        .create_config(crate::id::GameServerId(i64::MAX), &spec, now())
        .await;
    assert!(matches!(r, Err(StoreError::NotFound { .. })), "{r:?}");
}

/// Workers: identity by name, the epoch grows, an old epoch's heartbeat is refused.
pub async fn workers_register_with_growing_epochs(store: &Store) {
    let first = worker(store).await;
    assert_eq!(first.epoch, 1);
    assert_eq!(first.status, Status::Created);
    let registration = WorkerRegistration {
        name: first.name.clone(),
        version: "2.0".to_owned(),
        capacity: 8,
        labels: BTreeMap::new(),
        taken_up: Vec::new(),
    };
    let second = store
        .workers
        .register_worker(&registration, now())
        .await
        .expect("register again");
    assert_eq!(second.id, first.id);
    assert_eq!(second.epoch, 2);
    assert_eq!(second.version, "2.0");
    let at = now();
    assert!(
        !store
            .workers
            .record_heartbeat(first.id, 1, at)
            .await
            .expect("old epoch")
    );
    assert!(
        store
            .workers
            .record_heartbeat(first.id, 2, at)
            .await
            .expect("current epoch")
    );
    let stored = store.workers.get_worker(first.id).await.expect("get");
    assert_eq!(stored.last_heartbeat_at, Some(at));
    assert!(
        store
            .workers
            .list_workers()
            .await
            .expect("list")
            .iter()
            .any(|w| w.id == first.id)
    );
    let history = store
        .status
        .status_history(Entity::Worker(first.id), None, 10)
        .await
        .expect("history");
    assert_eq!(history.len(), 2, "each registration is in the history");
    assert!(
        history
            .iter()
            .all(|e| e.status == Status::Created && e.cause == Cause::Registered)
    );
}

/// Instances: created in `created` with a history row; missing references are `NotFound`;
/// listing filters and pages by id.
pub async fn instances_are_created_filtered_and_paged(store: &Store) {
    let (first, worker) = instance(store).await;
    assert_eq!(first.status, Status::Created);
    assert_eq!(
        store.instances.get_instance(first.id).await.expect("get"),
        first
    );
    let history = store
        .status
        .status_history(Entity::Instance(first.id), None, 10)
        .await
        .expect("history");
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].status, Status::Created);

    let created_count = |counts: Vec<(Status, u64)>| {
        counts
            .into_iter()
            .find(|(s, _)| *s == Status::Created)
            .map_or(0, |(_, n)| n)
    };
    let before = created_count(store.instances.count_by_status().await.expect("count"));
    let mut ids = vec![first.id];
    for _ in 0..4 {
        let created = store
            .instances
            .create_instance(&NewInstance {
                config_id: first.config_id,
                worker_id: worker.id,
                worker_epoch: worker.epoch,
                created_at: now(),
            })
            .await
            .expect("instance");
        ids.push(created.id);
    }
    let counts = store.instances.count_by_status().await.expect("count");
    assert!(
        counts.iter().all(|(_, n)| *n > 0),
        "no zero rows: {counts:?}"
    );
    assert_eq!(created_count(counts), before + 4, "counted by status");
    let mut filter = InstanceFilter {
        worker_id: Some(worker.id),
        limit: Some(2),
        ..InstanceFilter::default()
    };
    let mut paged = Vec::new();
    loop {
        let page = store.instances.list_instances(&filter).await.expect("page");
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        filter.after = Some(last.id);
        paged.extend(page.iter().map(|i| i.id));
    }
    assert_eq!(paged, ids, "every instance once, in id order");

    let by_status = InstanceFilter {
        worker_id: Some(worker.id),
        status: Some(Status::Running),
        ..InstanceFilter::default()
    };
    assert!(
        store
            .instances
            .list_instances(&by_status)
            .await
            .expect("list")
            .is_empty()
    );

    let r = store
        .instances
        .create_instance(&NewInstance {
            config_id: ConfigId(i64::MAX),
            worker_id: worker.id,
            worker_epoch: 1,
            created_at: now(),
        })
        .await;
    assert!(matches!(r, Err(StoreError::NotFound { .. })), "{r:?}");
    let r = store.instances.get_instance(InstanceId(i64::MAX)).await;
    assert!(matches!(r, Err(StoreError::NotFound { .. })), "{r:?}");
}

/// Status changes are conditional, deduplicated by event id, and write history and current
/// status together.
pub async fn status_changes_are_conditional_and_idempotent(store: &Store) {
    let (instance, _) = instance(store).await;
    let entity = Entity::Instance(instance.id);

    let mut init = change(entity, Status::Created, Status::Initializing);
    init.update.started_at = Some(now());
    let applied = store.status.apply_status(&init).await.expect("apply");
    let ApplyOutcome::Applied(event) = applied else {
        panic!("expected Applied")
    };
    assert_eq!(event.status, Status::Initializing);
    assert_eq!(event.from, Some(Status::Created));
    assert_eq!(
        store.status.apply_status(&init).await.expect("again"),
        ApplyOutcome::Duplicate
    );

    let stale = change(entity, Status::Created, Status::Running);
    let r = store.status.apply_status(&stale).await;
    assert!(
        matches!(r, Err(StoreError::Conflict { .. })),
        "a stale `from` is refused: {r:?}"
    );
    let current = store
        .instances
        .get_instance(instance.id)
        .await
        .expect("get");
    assert_eq!(
        current.status,
        Status::Initializing,
        "nothing written by the refused change"
    );
    assert_eq!(current.started_at, init.update.started_at);

    let mut crashed = change(entity, Status::Initializing, Status::Crashed);
    crashed.cause = Cause::Exited;
    crashed.detail = Some("exit code 3".to_owned());
    crashed.update = EntityUpdate {
        ended_at: Some(now()),
        exit_code: Some(3),
        restart_count: Some(2),
        ..EntityUpdate::default()
    };
    store.status.apply_status(&crashed).await.expect("crash");
    let ended = store
        .instances
        .get_instance(instance.id)
        .await
        .expect("get");
    assert_eq!(ended.status, Status::Crashed);
    assert_eq!(ended.exit_code, Some(3));
    assert_eq!(ended.restart_count, 2);
    assert_eq!(ended.ended_at, crashed.update.ended_at);

    let history = store
        .status
        .status_history(entity, None, 10)
        .await
        .expect("history");
    let statuses: Vec<_> = history.iter().map(|e| e.status).collect();
    assert_eq!(
        statuses,
        [Status::Created, Status::Initializing, Status::Crashed]
    );
    assert_eq!(history[2].detail.as_deref(), Some("exit code 3"));
    let after = store
        .status
        .status_history(entity, Some(history[0].id), 1)
        .await
        .expect("page");
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].status, Status::Initializing);
    let r = store
        .status
        .apply_status(&change(
            Entity::Instance(InstanceId(i64::MAX)),
            Status::Created,
            Status::Running,
        ))
        .await;
    assert!(matches!(r, Err(StoreError::NotFound { .. })), "{r:?}");
}

/// An event recorded before is a duplicate wherever it comes in a batch, even when the entity
/// is back in the status it was changed from (a restart's `running → initializing` delivered
/// again while the instance runs once more): nothing is written for it, and the entity's new
/// changes in the same batch still apply.
pub async fn batches_recognise_events_recorded_before(store: &Store) {
    let (a, _) = instance(store).await;
    let ea = Entity::Instance(a.id);
    let first = change(ea, Status::Created, Status::Initializing);
    let ready = change(ea, Status::Initializing, Status::Running);
    let outcomes = store
        .status
        .apply_statuses(std::slice::from_ref(&first))
        .await
        .expect("batch");
    assert!(
        matches!(outcomes[0], Ok(ApplyOutcome::Applied(_))),
        "{outcomes:?}"
    );
    let outcomes = store
        .status
        .apply_statuses(&[first.clone(), ready.clone()])
        .await
        .expect("batch");
    assert!(
        matches!(outcomes[0], Ok(ApplyOutcome::Duplicate)),
        "{outcomes:?}"
    );
    assert!(
        matches!(outcomes[1], Ok(ApplyOutcome::Applied(_))),
        "{outcomes:?}"
    );
    let restart = change(ea, Status::Running, Status::Initializing);
    let ready_again = change(ea, Status::Initializing, Status::Running);
    let outcomes = store
        .status
        .apply_statuses(&[restart.clone(), ready_again.clone()])
        .await
        .expect("batch");
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, Ok(ApplyOutcome::Applied(_)))),
        "{outcomes:?}"
    );
    let outcomes = store
        .status
        .apply_statuses(std::slice::from_ref(&restart))
        .await
        .expect("batch");
    assert!(
        matches!(outcomes[0], Ok(ApplyOutcome::Duplicate)),
        "{outcomes:?}"
    );
    assert_eq!(
        store
            .instances
            .get_instance(a.id)
            .await
            .expect("get")
            .status,
        Status::Running,
        "a restart delivered again does not take a running instance back"
    );
    let stop = change(ea, Status::Running, Status::Complete);
    let outcomes = store
        .status
        .apply_statuses(&[restart, ready_again, stop])
        .await
        .expect("batch");
    assert!(
        matches!(outcomes[0], Ok(ApplyOutcome::Duplicate)),
        "{outcomes:?}"
    );
    assert!(
        matches!(outcomes[1], Ok(ApplyOutcome::Duplicate)),
        "{outcomes:?}"
    );
    assert!(
        matches!(outcomes[2], Ok(ApplyOutcome::Applied(_))),
        "{outcomes:?}"
    );
    let history: Vec<Status> = store
        .status
        .status_history(ea, None, 10)
        .await
        .expect("history")
        .iter()
        .map(|e| e.status)
        .collect();
    assert_eq!(
        history,
        [
            Status::Created,
            Status::Initializing,
            Status::Running,
            Status::Initializing,
            Status::Running,
            Status::Complete
        ],
        "each event once"
    );
    assert_eq!(
        store
            .instances
            .get_instance(a.id)
            .await
            .expect("get")
            .status,
        Status::Complete
    );
}

/// A batch of changes is applied in order: one entity's changes chain, duplicates and stale
/// changes are reported each, and the others are applied.
pub async fn batches_apply_each_change_in_order(store: &Store) {
    let (a, _) = instance(store).await;
    let (b, _) = instance(store).await;
    let (ea, eb) = (Entity::Instance(a.id), Entity::Instance(b.id));
    let mut steps = vec![
        change(ea, Status::Created, Status::Initializing),
        change(ea, Status::Initializing, Status::Running),
        change(ea, Status::Running, Status::Complete),
    ];
    steps[1].update.ready_at = Some(now());
    steps[2].update = EntityUpdate {
        ended_at: Some(now()),
        exit_code: Some(0),
        ..EntityUpdate::default()
    };
    let duplicate = steps[0].clone();
    let stale = change(eb, Status::Running, Status::Complete);
    let missing = change(
        Entity::Instance(InstanceId(i64::MAX)),
        Status::Created,
        Status::Running,
    );
    let mut batch = steps.clone();
    batch.extend([duplicate, stale, missing]);
    let outcomes = store.status.apply_statuses(&batch).await.expect("batch");
    assert_eq!(outcomes.len(), 6);
    for (n, outcome) in outcomes[..3].iter().enumerate() {
        assert!(
            matches!(outcome, Ok(ApplyOutcome::Applied(_))),
            "change {n}: {outcome:?}"
        );
    }
    assert!(
        matches!(outcomes[3], Ok(ApplyOutcome::Duplicate)),
        "{:?}",
        outcomes[3]
    );
    assert!(
        matches!(outcomes[4], Err(StoreError::Conflict { .. })),
        "{:?}",
        outcomes[4]
    );
    assert!(
        matches!(outcomes[5], Err(StoreError::NotFound { .. })),
        "{:?}",
        outcomes[5]
    );
    let done = store.instances.get_instance(a.id).await.expect("get");
    assert_eq!(done.status, Status::Complete);
    assert_eq!(done.exit_code, Some(0));
    assert!(done.ready_at.is_some() && done.ended_at.is_some());
    let history: Vec<Status> = store
        .status
        .status_history(ea, None, 10)
        .await
        .expect("history")
        .iter()
        .map(|e| e.status)
        .collect();
    assert_eq!(
        history,
        [
            Status::Created,
            Status::Initializing,
            Status::Running,
            Status::Complete
        ]
    );
    assert_eq!(
        store
            .instances
            .get_instance(b.id)
            .await
            .expect("get")
            .status,
        Status::Created,
        "the stale change wrote nothing"
    );
    let again = store.status.apply_statuses(&steps).await.expect("batch");
    assert!(
        again
            .iter()
            .all(|o| matches!(o, Ok(ApplyOutcome::Duplicate))),
        "a redelivered batch changes nothing: {again:?}"
    );
    let current = store
        .status
        .current_statuses(&[ea, eb, Entity::Instance(InstanceId(i64::MAX))])
        .await
        .expect("current");
    assert_eq!(
        current
            .iter()
            .map(|c| c.map(|c| c.status))
            .collect::<Vec<_>>(),
        [Some(Status::Complete), Some(Status::Created), None]
    );
}

async fn current_of(store: &Store, entity: Entity) -> Option<CurrentStatus> {
    store
        .status
        .current_statuses(&[entity])
        .await
        .expect("current")[0]
}

/// A numbered change is also conditional on its sequence: applied only above the entity's last
/// applied sequence (a later epoch is above every sequence of an earlier one), which it then
/// becomes, with the status; an unnumbered change leaves it as it is.
pub async fn sequences_are_compared_and_set_with_the_status(store: &Store) {
    let (instance, worker) = instance(store).await;
    let entity = Entity::Instance(instance.id);
    let numbered = |from, to, epoch, counter| StatusChange {
        sequence: Some(Sequence::new(epoch, counter)),
        ..change(entity, from, to)
    };
    assert_eq!(
        current_of(store, entity).await,
        Some(CurrentStatus {
            status: Status::Created,
            sequence: None,
            owner: worker.id
        }),
        "nothing applied yet"
    );
    let e = worker.epoch;
    let init = numbered(Status::Created, Status::Initializing, e, 2);
    assert!(matches!(
        store.status.apply_status(&init).await,
        Ok(ApplyOutcome::Applied(_))
    ));
    assert_eq!(
        current_of(store, entity).await.and_then(|c| c.sequence),
        Some(Sequence::new(e, 2))
    );

    // The same sequence again under another message id (a report published twice), and an
    // earlier one that arrives late: both refused, though the status matches.
    for (counter, what) in [(2, "the same sequence"), (1, "an earlier sequence")] {
        let again = numbered(Status::Initializing, Status::Initializing, e, counter);
        let r = store.status.apply_status(&again).await;
        assert!(
            matches!(r, Err(StoreError::Conflict { .. })),
            "{what} is refused: {r:?}"
        );
    }
    // Unnumbered (a change the host makes): applied, the sequence left as it was.
    store
        .status
        .apply_status(&change(entity, Status::Initializing, Status::Running))
        .await
        .expect("unnumbered");
    assert_eq!(
        current_of(store, entity).await,
        Some(CurrentStatus {
            status: Status::Running,
            sequence: Some(Sequence::new(e, 2)),
            owner: worker.id
        })
    );
    // A gap is the processor's business: the store only asks that sequences grow.
    store
        .status
        .apply_status(&numbered(Status::Running, Status::Initializing, e, 5))
        .await
        .expect("a later sequence");
    // A new epoch starts over; the old epoch's reports are below it.
    store
        .status
        .apply_status(&numbered(Status::Initializing, Status::Running, e + 1, 1))
        .await
        .expect("a new epoch");
    let r = store
        .status
        .apply_status(&numbered(Status::Running, Status::Complete, e, 6))
        .await;
    assert!(
        matches!(r, Err(StoreError::Conflict { .. })),
        "the old epoch is refused: {r:?}"
    );
    assert_eq!(
        current_of(store, entity).await,
        Some(CurrentStatus {
            status: Status::Running,
            sequence: Some(Sequence::new(e + 1, 1)),
            owner: worker.id
        }),
        "nothing written by the refused changes"
    );

    // In a batch: one entity's numbered changes chain and must grow; a batch whose first change
    // is below the last applied writes nothing of that entity.
    let batch = [
        numbered(Status::Running, Status::Initializing, e + 1, 2),
        numbered(Status::Initializing, Status::Running, e + 1, 3),
        numbered(Status::Running, Status::Initializing, e + 1, 3),
    ];
    let outcomes = store.status.apply_statuses(&batch).await.expect("batch");
    assert!(
        matches!(outcomes[0], Ok(ApplyOutcome::Applied(_))),
        "{outcomes:?}"
    );
    assert!(
        matches!(outcomes[1], Ok(ApplyOutcome::Applied(_))),
        "{outcomes:?}"
    );
    assert!(
        matches!(outcomes[2], Err(StoreError::Conflict { .. })),
        "a repeated sequence in one batch: {outcomes:?}"
    );
    let stale = [
        numbered(Status::Running, Status::Initializing, e + 1, 1),
        numbered(Status::Initializing, Status::Running, e + 1, 4),
    ];
    let outcomes = store.status.apply_statuses(&stale).await.expect("batch");
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, Err(StoreError::Conflict { .. }))),
        "{outcomes:?}"
    );
    assert_eq!(
        current_of(store, entity).await,
        Some(CurrentStatus {
            status: Status::Running,
            sequence: Some(Sequence::new(e + 1, 3)),
            owner: worker.id
        })
    );
    let history: Vec<Status> = store
        .status
        .status_history(entity, None, 20)
        .await
        .expect("history")
        .iter()
        .map(|e| e.status)
        .collect();
    assert_eq!(
        history,
        [
            Status::Created,
            Status::Initializing,
            Status::Running,
            Status::Initializing,
            Status::Running,
            Status::Initializing,
            Status::Running,
        ]
    );

    // Workers carry a sequence too.
    let w = Entity::Worker(worker.id);
    let running = StatusChange {
        sequence: Some(Sequence::new(e, 1)),
        ..change(w, Status::Created, Status::Running)
    };
    store.status.apply_status(&running).await.expect("worker");
    let late = StatusChange {
        sequence: Some(Sequence::new(e, 1)),
        ..change(w, Status::Running, Status::Complete)
    };
    let r = store.status.apply_status(&late).await;
    assert!(matches!(r, Err(StoreError::Conflict { .. })), "{r:?}");
    assert_eq!(
        store.status.current_statuses(&[w]).await.expect("current")[0],
        Some(CurrentStatus {
            status: Status::Running,
            sequence: Some(Sequence::new(e, 1)),
            owner: worker.id
        })
    );
}

/// An instance and its start command are created together, under an id reserved first: both
/// or neither. Reserved ids are never handed out twice, nor to an instance created otherwise.
pub async fn instances_are_created_with_their_start_in_one_go(store: &Store) {
    let worker = worker(store).await;
    let config_id = crate::testing::fixture::config(store).await;
    let new = NewInstance {
        config_id,
        worker_id: worker.id,
        worker_epoch: worker.epoch,
        created_at: now(),
    };
    let start = |id: InstanceId| {
        let envelope = CommandEnvelope::new(
            Command::Start {
                instance_id: id,
                config_id,
                bundle: None,
            },
            "conformance",
            now(),
        );
        CommandRecord::pending(worker.id, envelope)
    };
    let first = store
        .instances
        .reserve_instance_id()
        .await
        .expect("reserve");
    let second = store
        .instances
        .reserve_instance_id()
        .await
        .expect("reserve");
    let other = store.instances.create_instance(&new).await.expect("create");
    assert!(
        first != second && other.id != first && other.id != second,
        "reserved {first} and {second}, then created {}",
        other.id
    );
    let record = start(second);
    let instance = store
        .instances
        .create_started_instance(second, &new, &record)
        .await
        .expect("create started");
    assert_eq!(instance.id, second);
    assert_eq!(instance.status, Status::Created);
    assert_eq!(
        store.instances.get_instance(second).await.expect("get"),
        instance
    );
    assert_eq!(
        store
            .commands
            .get_command(record.id)
            .await
            .expect("command"),
        record,
        "the start is recorded as it is sent"
    );
    let history = store
        .status
        .status_history(Entity::Instance(second), None, 10)
        .await
        .expect("history");
    assert_eq!(
        history.iter().map(|e| e.status).collect::<Vec<_>>(),
        [Status::Created]
    );

    // The command's id is taken: nothing is created.
    let mut taken = start(first);
    taken.id = record.id;
    taken.envelope.id = record.id;
    let r = store
        .instances
        .create_started_instance(first, &new, &taken)
        .await;
    assert!(matches!(r, Err(StoreError::Conflict { .. })), "{r:?}");
    let r = store.instances.get_instance(first).await;
    assert!(
        matches!(r, Err(StoreError::NotFound { .. })),
        "an instance without its start: {r:?}"
    );
    // The instance's id is taken: nothing is recorded.
    let again = start(second);
    let r = store
        .instances
        .create_started_instance(second, &new, &again)
        .await;
    assert!(matches!(r, Err(StoreError::Conflict { .. })), "{r:?}");
    let r = store.commands.get_command(again.id).await;
    assert!(
        matches!(r, Err(StoreError::NotFound { .. })),
        "a start without its instance: {r:?}"
    );
    // A missing config.
    let third = store
        .instances
        .reserve_instance_id()
        .await
        .expect("reserve");
    let r = store
        .instances
        .create_started_instance(
            third,
            &NewInstance {
                config_id: ConfigId(i64::MAX),
                ..new
            },
            &start(third),
        )
        .await;
    assert!(matches!(r, Err(StoreError::NotFound { .. })), "{r:?}");
}

/// A worker's answer moves its own command on, in one step; another worker's answer, one to
/// a command that does not exist and one to a final command move nothing.
pub async fn commands_are_answered_only_by_their_worker(store: &Store) {
    let (target, w) = instance(store).await;
    let other = worker(store).await;
    let envelope = CommandEnvelope::new(
        Command::Stop {
            instance_id: target.id,
        },
        "conformance",
        now(),
    );
    let record = CommandRecord::pending(w.id, envelope);
    store
        .commands
        .insert_command(&record)
        .await
        .expect("insert");
    let answer = |worker: WorkerId, id: Uuid| {
        store
            .commands
            .answer_command(id, worker, CommandState::Succeeded, Some("done"), now())
    };
    assert_eq!(answer(other.id, record.id).await.expect("answer"), None);
    assert_eq!(
        store
            .commands
            .get_command(record.id)
            .await
            .expect("get")
            .state,
        CommandState::Pending,
        "another worker's answer moved nothing"
    );
    assert_eq!(answer(w.id, Uuid::new_v4()).await.expect("answer"), None);
    let answered = answer(w.id, record.id)
        .await
        .expect("answer")
        .expect("its own command moves on");
    assert_eq!(answered.state, CommandState::Succeeded);
    assert_eq!(answered.detail.as_deref(), Some("done"));
    assert_eq!(
        store.commands.get_command(record.id).await.expect("get"),
        answered
    );
    assert_eq!(
        answer(w.id, record.id).await.expect("answer"),
        None,
        "a final command is not answered again"
    );
}

/// Command records move forward only; the id is unique.
pub async fn commands_move_forward_only(store: &Store) {
    let (target, w) = instance(store).await;
    let envelope = CommandEnvelope::new(
        Command::Stop {
            instance_id: target.id,
        },
        "conformance",
        now(),
    );
    let record = CommandRecord::pending(w.id, envelope);
    store
        .commands
        .insert_command(&record)
        .await
        .expect("insert");
    assert_eq!(
        store.commands.get_command(record.id).await.expect("get"),
        record
    );
    let r = store.commands.insert_command(&record).await;
    assert!(matches!(r, Err(StoreError::Conflict { .. })), "{r:?}");

    let delivered = store
        .commands
        .transition_command(record.id, CommandState::Delivered, None, now())
        .await
        .expect("deliver");
    assert_eq!(delivered.state, CommandState::Delivered);
    let done = store
        .commands
        .transition_command(
            record.id,
            CommandState::Failed,
            Some("unknown instance"),
            now(),
        )
        .await
        .expect("fail");
    assert_eq!(done.detail.as_deref(), Some("unknown instance"));
    let r = store
        .commands
        .transition_command(record.id, CommandState::Succeeded, None, now())
        .await;
    assert!(
        matches!(r, Err(StoreError::Conflict { .. })),
        "a final state is final: {r:?}"
    );
    assert_eq!(
        store
            .commands
            .get_command(record.id)
            .await
            .expect("get")
            .state,
        CommandState::Failed
    );
    let r = store.commands.get_command(Uuid::new_v4()).await;
    assert!(matches!(r, Err(StoreError::NotFound { .. })), "{r:?}");
    let orphan = CommandRecord {
        worker_id: WorkerId(i64::MAX),
        id: Uuid::new_v4(),
        ..record
    };
    let r = store.commands.insert_command(&orphan).await;
    assert!(
        matches!(r, Err(StoreError::NotFound { .. })),
        "a command for an unknown worker is refused: {r:?}"
    );
    let stray = CommandEnvelope::new(
        Command::Kill {
            instance_id: InstanceId(i64::MAX),
        },
        "conformance",
        now(),
    );
    let for_missing_instance = CommandRecord::pending(w.id, stray);
    let r = store.commands.insert_command(&for_missing_instance).await;
    assert!(
        matches!(r, Err(StoreError::NotFound { .. })),
        "a command for an unknown instance is refused: {r:?}"
    );
}

/// `mark_delivered` moves a `pending` command to `delivered` (`true`) and leaves any other
/// record exactly as it is (`false`, no error): one the worker already answered (`succeeded`,
/// `failed`), one the sweep expired, one already `delivered`. An unknown id is `false` too.
pub async fn a_command_is_marked_delivered_only_while_pending(store: &Store) {
    let (target, w) = instance(store).await;
    let inserted_at = now() - chrono::Duration::seconds(10);
    let pending = || {
        let envelope = CommandEnvelope::new(
            Command::Stdin {
                instance_id: target.id,
                line: "say hi".to_owned(),
            },
            "conformance",
            inserted_at,
        );
        CommandRecord::pending(w.id, envelope)
    };

    let record = pending();
    store
        .commands
        .insert_command(&record)
        .await
        .expect("insert");
    let delivered_at = now();
    assert!(
        store
            .commands
            .mark_delivered(record.id, delivered_at)
            .await
            .expect("mark"),
        "command {} was pending: it moves",
        record.id
    );
    let delivered = store.commands.get_command(record.id).await.expect("get");
    assert_eq!(
        delivered,
        CommandRecord {
            state: CommandState::Delivered,
            updated_at: delivered_at,
            ..record
        }
    );
    assert!(
        !store
            .commands
            .mark_delivered(record.id, now() + chrono::Duration::seconds(1))
            .await
            .expect("mark again"),
        "command {} is delivered already",
        record.id
    );
    assert_eq!(
        store.commands.get_command(record.id).await.expect("get"),
        delivered,
        "marking twice changes nothing"
    );

    for (state, detail) in [
        (CommandState::Succeeded, "written"),
        (CommandState::Failed, "unknown instance"),
        (CommandState::Expired, "never ran"),
    ] {
        let record = pending();
        store
            .commands
            .insert_command(&record)
            .await
            .expect("insert");
        // The worker's answer (or the sweep) is recorded before the host records the delivery.
        let answered = store
            .commands
            .transition_command(record.id, state, Some(detail), now())
            .await
            .expect("answer");
        let moved = store
            .commands
            .mark_delivered(record.id, now() + chrono::Duration::seconds(1))
            .await;
        assert!(
            matches!(moved, Ok(false)),
            "command {} is {state}: not moved, no error: {moved:?}",
            record.id
        );
        assert_eq!(
            store.commands.get_command(record.id).await.expect("get"),
            answered,
            "command {} stays {state} with its detail and time",
            record.id
        );
    }

    let unknown = Uuid::new_v4();
    let moved = store.commands.mark_delivered(unknown, now()).await;
    assert!(
        matches!(moved, Ok(false)),
        "an unknown command {unknown} is false, not an error: {moved:?}"
    );
}

/// The command sweep moves commands still `pending` or `delivered` past their `expires_at` to
/// `expired` exactly once, even when two sweeps race; commands not yet due and finished ones are
/// left alone.
pub async fn unfinished_commands_expire_exactly_once(store: &Store) {
    let (target, w) = instance(store).await;
    let at = now();
    let record = |state: CommandState, expires_at: DateTime<Utc>| {
        let mut envelope = CommandEnvelope::new(
            Command::Stdin {
                instance_id: target.id,
                line: "say hi".to_owned(),
            },
            "conformance",
            expires_at - chrono::Duration::seconds(60),
        );
        envelope.expires_at = expires_at;
        CommandRecord {
            id: envelope.id,
            worker_id: w.id,
            envelope,
            state,
            detail: None,
            updated_at: at - chrono::Duration::seconds(30),
        }
    };
    let pending = record(CommandState::Pending, at - chrono::Duration::seconds(2));
    let delivered = record(CommandState::Delivered, at - chrono::Duration::seconds(1));
    let not_due = record(CommandState::Pending, at + chrono::Duration::seconds(60));
    let finished = record(CommandState::Succeeded, at - chrono::Duration::seconds(3));
    for r in [&pending, &delivered, &not_due, &finished] {
        store.commands.insert_command(r).await.expect("insert");
    }
    let ours = [pending.id, delivered.id, not_due.id, finished.id];
    let detail = "not taken by a worker before it expired";
    let (a, b) = tokio::join!(
        store.commands.expire_commands(at, detail, at, 100),
        store.commands.expire_commands(at, detail, at, 100),
    );
    let (a, b) = (a.expect("sweep"), b.expect("sweep"));
    let mut moved: Vec<Uuid> = a
        .iter()
        .chain(&b)
        .map(|r| r.id)
        .filter(|id| ours.contains(id))
        .collect();
    moved.sort();
    let mut expected = vec![pending.id, delivered.id];
    expected.sort();
    assert_eq!(moved, expected, "each due command once: {a:#?} {b:#?}");
    for r in a.iter().chain(&b).filter(|r| ours.contains(&r.id)) {
        assert_eq!(
            (r.state, r.detail.as_deref(), r.updated_at),
            (CommandState::Expired, Some(detail), at),
            "returned as it is now"
        );
    }
    for (id, state) in [
        (pending.id, CommandState::Expired),
        (delivered.id, CommandState::Expired),
        (not_due.id, CommandState::Pending),
        (finished.id, CommandState::Succeeded),
    ] {
        let stored = store.commands.get_command(id).await.expect("get");
        assert_eq!(stored.state, state, "{id}");
    }
    let again = store
        .commands
        .expire_commands(at, detail, at, 100)
        .await
        .expect("sweep");
    assert!(
        again.iter().all(|r| !ours.contains(&r.id)),
        "an expired command is not moved again: {again:#?}"
    );
    let later = at + chrono::Duration::seconds(61);
    let limited = store
        .commands
        .expire_commands(later, detail, later, 1)
        .await
        .expect("sweep");
    assert!(limited.len() <= 1, "at most `limit`: {limited:#?}");
}

/// The lease sweep marks a stale worker and its active instances `lost` exactly once, even when
/// two sweeps race; a fresh worker is left alone.
pub async fn leases_expire_exactly_once(store: &Store) {
    let (instance, stale) = instance(store).await;
    let fresh = worker(store).await;
    let later = now() + chrono::Duration::seconds(60);
    store
        .workers
        .record_heartbeat(fresh.id, fresh.epoch, later)
        .await
        .expect("heartbeat");
    let stale_before = later - chrono::Duration::seconds(6);
    let (a, b) = tokio::join!(
        store.workers.expire_leases(stale_before, later),
        store.workers.expire_leases(stale_before, later),
    );
    let (a, b) = (a.expect("sweep"), b.expect("sweep"));
    let stale_marks = a.iter().chain(&b).filter(|w| **w == stale.id).count();
    assert_eq!(stale_marks, 1, "marked by exactly one sweep: {a:?} {b:?}");
    assert!(
        !a.contains(&fresh.id) && !b.contains(&fresh.id),
        "a fresh worker is left alone"
    );
    assert_eq!(
        store
            .workers
            .get_worker(stale.id)
            .await
            .expect("get")
            .status,
        Status::Lost
    );
    assert_eq!(
        store
            .workers
            .get_worker(fresh.id)
            .await
            .expect("get")
            .status,
        Status::Created
    );
    assert_eq!(
        store
            .instances
            .get_instance(instance.id)
            .await
            .expect("get")
            .status,
        Status::Lost
    );
    let history = store
        .status
        .status_history(Entity::Instance(instance.id), None, 10)
        .await
        .expect("history");
    let last = history.last().expect("history");
    assert_eq!(
        (last.status, last.cause),
        (Status::Lost, Cause::LeaseExpired)
    );
    let worker_history = store
        .status
        .status_history(Entity::Worker(stale.id), None, 10)
        .await
        .expect("history");
    assert_eq!(
        worker_history
            .iter()
            .filter(|e| e.status == Status::Lost)
            .count(),
        1
    );
    let again = store
        .workers
        .expire_leases(stale_before, later)
        .await
        .expect("sweep");
    assert!(
        !again.contains(&stale.id),
        "a lost worker is not marked again"
    );
}

/// Retention deletes old history rows and finished command records in batches, and keeps the
/// rest.
pub async fn retention_prunes_in_batches(store: &Store) {
    let (instance, w) = instance(store).await;
    let entity = Entity::Instance(instance.id);
    let cutoff = now() + chrono::Duration::seconds(1);
    let record = |state: CommandState| {
        let envelope = CommandEnvelope::new(
            Command::Stop {
                instance_id: instance.id,
            },
            "conformance",
            now(),
        );
        CommandRecord {
            id: envelope.id,
            worker_id: w.id,
            envelope,
            state,
            detail: None,
            updated_at: now(),
        }
    };
    let finished = record(CommandState::Succeeded);
    let pending = record(CommandState::Pending);
    store
        .commands
        .insert_command(&finished)
        .await
        .expect("insert");
    store
        .commands
        .insert_command(&pending)
        .await
        .expect("insert");
    let mut pruned = 0;
    loop {
        let n = store.status.prune_history(cutoff, 1).await.expect("prune");
        assert!(n <= 1, "a batch is at most the limit");
        if n == 0 {
            break;
        }
        pruned += n;
    }
    assert!(pruned >= 1);
    assert!(
        store
            .status
            .status_history(entity, None, 10)
            .await
            .expect("history")
            .is_empty()
    );
    assert_eq!(
        store
            .instances
            .get_instance(instance.id)
            .await
            .expect("get")
            .status,
        Status::Created,
        "the current status stays"
    );
    while store
        .commands
        .prune_commands(cutoff, 100)
        .await
        .expect("prune")
        > 0
    {}
    assert!(matches!(
        store.commands.get_command(finished.id).await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(
        store
            .commands
            .get_command(pending.id)
            .await
            .expect("kept")
            .state,
        CommandState::Pending,
        "unfinished commands stay"
    );
}

/// Retention removes every command record older than the period whatever its state, so no
/// stdin line is kept longer: finished ones by their last change; unfinished ones (stuck
/// `pending` or `delivered`: their worker died) once their expiry is past too. A command that
/// may still be delivered, and a recent one, stay.
pub async fn retention_removes_stdin_lines_whatever_the_state(store: &Store) {
    let (instance, w) = instance(store).await;
    let long_ago = now() - chrono::Duration::days(40);
    let cutoff = now() - chrono::Duration::days(30);
    let record = |state: CommandState, issued_at: DateTime<Utc>, ttl: chrono::Duration| {
        let mut envelope = CommandEnvelope::new(
            Command::Stdin {
                instance_id: instance.id,
                line: "rcon_password hunter2".to_owned(),
            },
            "conformance",
            issued_at,
        );
        envelope.expires_at = issued_at + ttl;
        CommandRecord {
            id: envelope.id,
            worker_id: w.id,
            envelope,
            state,
            detail: None,
            updated_at: issued_at,
        }
    };
    let minute = chrono::Duration::seconds(60);
    let old: Vec<CommandRecord> = CommandState::ALL
        .into_iter()
        .map(|state| record(state, long_ago, minute))
        .collect();
    // Issued long ago, but deliverable for a year: it may still run, so it stays.
    let deliverable = record(
        CommandState::Delivered,
        long_ago,
        chrono::Duration::days(365),
    );
    let recent = record(CommandState::Pending, now(), minute);
    for r in old.iter().chain([&deliverable, &recent]) {
        store.commands.insert_command(r).await.expect("insert");
    }
    let mut pruned = 0;
    loop {
        let n = store
            .commands
            .prune_commands(cutoff, 2)
            .await
            .expect("prune");
        assert!(n <= 2, "a batch is at most the limit");
        pruned += n;
        if n == 0 {
            break;
        }
    }
    assert!(pruned >= old.len() as u64, "{pruned}");
    for r in &old {
        let got = store.commands.get_command(r.id).await;
        assert!(
            matches!(got, Err(StoreError::NotFound { .. })),
            "a {} record older than the retention period is deleted with its line: {got:?}",
            r.state
        );
    }
    for kept in [&deliverable, &recent] {
        assert_eq!(
            &store.commands.get_command(kept.id).await.expect("kept"),
            kept,
            "a command that may still run, or a recent one, stays"
        );
    }
}

/// Tokens and worker credentials: unique names and hashes, found by hash, revoked once.
pub async fn credentials_are_unique_and_revocable(store: &Store) {
    let credentials = &store.credentials;
    let name = unique("token");
    let secret = Secret::generate("mm");
    let at = now();
    let token = credentials
        .create_token(&name, Scope::Operate, &secret.hash(), at)
        .await
        .expect("create token");
    assert_eq!(
        (token.name.as_str(), token.scope),
        (name.as_str(), Scope::Operate)
    );
    assert_eq!(token.created_at, at);
    assert_eq!(token.revoked_at, None);
    let found = credentials
        .token_by_hash(&secret.hash())
        .await
        .expect("by hash");
    assert_eq!(found.as_ref(), Some(&token), "found by its hash");
    let other = Secret::generate("mm");
    assert_eq!(
        credentials
            .token_by_hash(&other.hash())
            .await
            .expect("lookup"),
        None,
        "an unknown secret finds nothing"
    );
    let same_name = credentials
        .create_token(&name, Scope::Read, &other.hash(), at)
        .await;
    assert!(
        matches!(same_name, Err(StoreError::Conflict { .. })),
        "a second token with the name is a conflict: {same_name:?}"
    );
    let same_secret = credentials
        .create_token(&unique("token"), Scope::Read, &secret.hash(), at)
        .await;
    assert!(
        matches!(same_secret, Err(StoreError::Conflict { .. })),
        "a second token with the secret is a conflict: {same_secret:?}"
    );
    assert!(
        credentials
            .list_tokens()
            .await
            .expect("list")
            .contains(&token)
    );
    let later = at + chrono::Duration::seconds(5);
    let revoked = credentials
        .revoke_token(token.id, later)
        .await
        .expect("revoke");
    assert_eq!(revoked.revoked_at, Some(later));
    let again = credentials
        .revoke_token(token.id, later + chrono::Duration::seconds(5))
        .await
        .expect("revoke again");
    assert_eq!(again.revoked_at, Some(later), "revoked at its first time");
    assert_eq!(
        credentials
            .token_by_hash(&secret.hash())
            .await
            .expect("by hash")
            .and_then(|t| t.revoked_at),
        Some(later),
        "a revoked token is still found, as revoked"
    );
    let missing = credentials.revoke_token(TokenId(i64::MAX), later).await;
    assert!(
        matches!(missing, Err(StoreError::NotFound { .. })),
        "{missing:?}"
    );

    let client_id = unique("client");
    let worker_secret = Secret::generate("mmw");
    let credential = credentials
        .create_worker_credential(&client_id, "game-1", &worker_secret.hash(), at)
        .await
        .expect("create worker credential");
    assert_eq!(credential.worker_name, "game-1");
    let (found, hash) = credentials
        .worker_credential(&client_id)
        .await
        .expect("lookup")
        .expect("found");
    assert_eq!(found, credential);
    assert!(hash.matches(&worker_secret.hash()));
    let taken = credentials
        .create_worker_credential(&client_id, "game-2", &other.hash(), at)
        .await;
    assert!(
        matches!(taken, Err(StoreError::Conflict { .. })),
        "a taken client id is a conflict: {taken:?}"
    );
    assert!(
        credentials
            .list_worker_credentials()
            .await
            .expect("list")
            .contains(&credential)
    );
    let revoked = credentials
        .revoke_worker_credential(&client_id, later)
        .await
        .expect("revoke");
    assert_eq!(revoked.revoked_at, Some(later));
    assert_eq!(
        credentials
            .worker_credential(&unique("client"))
            .await
            .expect("lookup"),
        None
    );
    let missing = credentials
        .revoke_worker_credential(&unique("client"), later)
        .await;
    assert!(
        matches!(missing, Err(StoreError::NotFound { .. })),
        "{missing:?}"
    );
}

/// Games and configs are updated under the same rules as created, and deleted only when
/// nothing active needs them.
pub async fn catalogue_entries_are_updated_and_deleted(store: &Store) {
    let catalogue = &store.catalogue;
    let (instance, _) = instance(store).await;
    let config = catalogue
        .get_config(instance.config_id)
        .await
        .expect("config");
    let game = config.game_server_id;

    // A game: renamed, but not to a taken name; deleted only without configs.
    let other = catalogue
        .create_game(&local_game(&unique("g")), now())
        .await
        .expect("other game");
    let renamed = unique("renamed");
    let updated = catalogue
        .update_game(game, &local_game(&renamed))
        .await
        .expect("rename");
    assert_eq!(
        (updated.id, updated.name.as_str()),
        (game, renamed.as_str())
    );
    assert_eq!(catalogue.get_game(game).await.expect("get").name, renamed);
    let taken = catalogue.update_game(game, &local_game(&other.name)).await;
    assert!(
        matches!(taken, Err(StoreError::Conflict { .. })),
        "a taken name: {taken:?}"
    );
    let missing = catalogue
        .update_game(GameServerId(i64::MAX), &local_game(&unique("g")))
        .await;
    assert!(
        matches!(missing, Err(StoreError::NotFound { .. })),
        "{missing:?}"
    );
    let busy = catalogue.delete_game(game).await;
    match busy {
        Err(StoreError::Conflict { detail, .. }) => {
            assert!(
                detail.contains(&config.id.to_string()),
                "names the config: {detail}"
            );
        }
        other => panic!("a game with configs is not deleted: {other:?}"),
    }

    // A config: its spec replaced, names and the one default kept unique.
    let mut spec = config.spec.clone();
    spec.args = vec!["--port".to_owned(), "27015".to_owned()];
    spec.is_default = true;
    let updated = catalogue
        .update_config(config.id, &spec)
        .await
        .expect("update config");
    assert_eq!(updated.spec, spec);
    assert_eq!(
        catalogue.get_config(config.id).await.expect("get").spec,
        spec
    );
    let mut second = catalogue
        .create_config(game, &ConfigSpec::new("second", "server"), now())
        .await
        .expect("second config");
    second.spec.is_default = true;
    let two_defaults = catalogue.update_config(second.id, &second.spec).await;
    assert!(
        matches!(two_defaults, Err(StoreError::Conflict { .. })),
        "a second default: {two_defaults:?}"
    );
    let mut same_name = second.spec.clone();
    same_name.is_default = false;
    same_name.name = spec.name.clone();
    let clash = catalogue.update_config(second.id, &same_name).await;
    assert!(
        matches!(clash, Err(StoreError::Conflict { .. })),
        "a taken name: {clash:?}"
    );

    // Deleting a config with an active instance: refused, naming it, nothing deleted.
    let refused = catalogue.delete_config(config.id).await;
    match refused {
        Err(StoreError::Conflict { detail, .. }) => {
            assert!(
                detail.contains(&instance.id.to_string()),
                "names the instance: {detail}"
            );
        }
        other => panic!("a config with an active instance is not deleted: {other:?}"),
    }
    assert!(store.instances.get_instance(instance.id).await.is_ok());
    // Once it ended: the config goes, with the instance's records.
    store
        .status
        .apply_status(&change(
            Entity::Instance(instance.id),
            Status::Created,
            Status::Complete,
        ))
        .await
        .expect("end it");
    catalogue
        .delete_config(config.id)
        .await
        .expect("delete config");
    assert!(matches!(
        catalogue.get_config(config.id).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.instances.get_instance(instance.id).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        catalogue.delete_config(config.id).await,
        Err(StoreError::NotFound { .. })
    ));
    catalogue
        .delete_config(second.id)
        .await
        .expect("delete second");
    catalogue.delete_game(game).await.expect("delete the game");
    assert!(matches!(
        catalogue.get_game(game).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        catalogue.delete_game(game).await,
        Err(StoreError::NotFound { .. })
    ));
}

/// The bus secret is stored by the first caller and the same for every later one.
pub async fn the_bus_secret_is_stored_once(store: &Store) {
    let first = crate::signing::BusSecret::generate();
    let stored = store.credentials.bus_secret(&first).await.unwrap();
    let again = store
        .credentials
        .bus_secret(&crate::signing::BusSecret::generate())
        .await
        .unwrap();
    assert_eq!(stored, again, "a second caller gets the stored secret");
    // The first caller's candidate, unless the store already had one.
    let fresh = crate::signing::BusSecret::generate();
    assert_ne!(store.credentials.bus_secret(&fresh).await.unwrap(), fresh);
}

/// An instance's exit code and signal describe the run that ended: a run that becomes
/// `running` has none (whether the change comes alone or in a batch); an instance not ended
/// carries its worker registration's last heartbeat, an ended one none.
pub async fn a_running_instance_shows_no_exit_and_its_workers_heartbeat(store: &Store) {
    let (instance, worker) = instance(store).await;
    let entity = Entity::Instance(instance.id);
    assert_eq!(
        instance.last_heartbeat_at, worker.last_heartbeat_at,
        "a new instance carries its worker's registration time"
    );
    let beat = now();
    assert!(
        store
            .workers
            .record_heartbeat(worker.id, worker.epoch, beat)
            .await
            .expect("heartbeat")
    );
    let read = store
        .instances
        .get_instance(instance.id)
        .await
        .expect("get");
    assert_eq!(read.last_heartbeat_at, Some(beat));
    let listed = store
        .instances
        .list_instances(&InstanceFilter {
            worker_id: Some(worker.id),
            ..InstanceFilter::default()
        })
        .await
        .expect("list");
    assert_eq!(listed[0].last_heartbeat_at, Some(beat));

    store
        .status
        .apply_status(&change(entity, Status::Created, Status::Initializing))
        .await
        .expect("initializing");
    store
        .status
        .apply_status(&change(entity, Status::Initializing, Status::Running))
        .await
        .expect("running");
    assert_eq!(instance.cause, Cause::Placed);
    assert_eq!(
        instance.detail,
        Some(format!("placed on {}", worker.id)),
        "a new instance says where it was placed"
    );
    let mut crashed = change(entity, Status::Running, Status::Initializing);
    crashed.cause = Cause::CrashPolicy;
    crashed.detail = Some("exited with code 3; restart 1 in 500 ms".to_owned());
    crashed.update.exit_code = Some(3);
    crashed.update.restart_count = Some(1);
    store.status.apply_status(&crashed).await.expect("restart");
    let restarting = store
        .instances
        .get_instance(instance.id)
        .await
        .expect("get");
    assert_eq!(
        restarting.exit_code,
        Some(3),
        "while it restarts, the exit that made it restart shows"
    );
    assert_eq!(
        (restarting.cause, restarting.detail),
        (Cause::CrashPolicy, crashed.detail.clone()),
        "the instance carries its last change's cause and detail"
    );
    store
        .status
        .apply_status(&change(entity, Status::Initializing, Status::Running))
        .await
        .expect("running again");
    let running = store
        .instances
        .get_instance(instance.id)
        .await
        .expect("get");
    assert_eq!(
        (running.exit_code, running.exit_signal),
        (None, None),
        "a running instance shows no exit code"
    );
    assert_eq!(running.restart_count, 1);

    let mut signalled = change(entity, Status::Running, Status::Initializing);
    signalled.update.exit_signal = Some(9);
    let mut again = change(entity, Status::Initializing, Status::Running);
    again.cause = Cause::Ready;
    again.detail = Some("ready in the batch".to_owned());
    let outcomes = store
        .status
        .apply_statuses(&[signalled, again])
        .await
        .expect("batch");
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    let running = store
        .instances
        .get_instance(instance.id)
        .await
        .expect("get");
    assert_eq!((running.exit_code, running.exit_signal), (None, None));
    assert_eq!(
        (running.cause, running.detail.as_deref()),
        (Cause::Ready, Some("ready in the batch")),
        "a batch leaves the last change's cause and detail"
    );

    let mut ended = change(entity, Status::Running, Status::Complete);
    ended.update.ended_at = Some(now());
    ended.update.exit_code = Some(0);
    store.status.apply_status(&ended).await.expect("end");
    let ended = store
        .instances
        .get_instance(instance.id)
        .await
        .expect("get");
    assert_eq!(ended.exit_code, Some(0));
    assert_eq!(ended.last_heartbeat_at, None, "an ended instance has none");
}

/// Active instances: those not ended, of one worker or of all, by id — ended ones never.
pub async fn active_instances_are_those_not_ended(store: &Store) {
    let (first, worker) = instance(store).await;
    let more = instances_on(store, &worker, 3).await;
    let (elsewhere, _) = instance(store).await;
    let ended = &more[0];
    let mut crashed = change(Entity::Instance(ended.id), Status::Created, Status::Crashed);
    crashed.update.ended_at = Some(now());
    store.status.apply_status(&crashed).await.expect("end");
    let lost = &more[1];
    store
        .status
        .apply_status(&change(
            Entity::Instance(lost.id),
            Status::Created,
            Status::Lost,
        ))
        .await
        .expect("lost");
    let ids = |instances: Vec<crate::instance::Instance>| -> Vec<InstanceId> {
        instances.into_iter().map(|i| i.id).collect()
    };
    let of_worker = ids(store
        .instances
        .active_instances(Some(worker.id))
        .await
        .expect("active of a worker"));
    assert_eq!(
        of_worker,
        [first.id, lost.id, more[2].id],
        "by id, ended left out"
    );
    let all = ids(store
        .instances
        .active_instances(None)
        .await
        .expect("all active"));
    for id in [first.id, lost.id, more[2].id, elsewhere.id] {
        assert!(all.contains(&id), "{id} is active");
    }
    assert!(!all.contains(&ended.id), "an ended instance is not");
    assert!(all.windows(2).all(|w| w[0] < w[1]), "by id");
}

/// A restarted worker's registration takes over its own active instances of older
/// registrations, and nothing else: not an ended one, not another worker's, not one of its
/// current registration, not an unknown id.
pub async fn a_new_registration_takes_over_only_its_own_live_instances(store: &Store) {
    let (first, worker) = instance(store).await;
    let more = instances_on(store, &worker, 2).await;
    let (elsewhere, _) = instance(store).await;
    let ended = &more[0];
    let mut crashed = change(Entity::Instance(ended.id), Status::Created, Status::Crashed);
    crashed.update.ended_at = Some(now());
    store.status.apply_status(&crashed).await.expect("end");
    let registration = WorkerRegistration {
        name: worker.name.clone(),
        version: worker.version.clone(),
        capacity: worker.capacity,
        labels: worker.labels.clone(),
        taken_up: Vec::new(),
    };
    let again = store
        .workers
        .register_worker(&registration, now())
        .await
        .expect("register again");
    assert_eq!(again.epoch, worker.epoch + 1);
    let unknown = InstanceId(1 << 40);
    let asked = [
        more[1].id,
        first.id,
        ended.id,
        elsewhere.id,
        unknown,
        first.id,
    ];
    let taken = store
        .instances
        .take_over_instances(worker.id, again.epoch, &asked)
        .await
        .expect("take over");
    assert_eq!(
        taken,
        [first.id, more[1].id],
        "its own live ones, by id, once"
    );
    for id in [first.id, more[1].id] {
        let instance = store.instances.get_instance(id).await.expect("instance");
        assert_eq!(
            instance.worker_epoch, again.epoch,
            "{id} is the new registration's"
        );
        assert_eq!(instance.status, Status::Created, "{id}: status untouched");
    }
    let kept = |id| async move { store.instances.get_instance(id).await.expect("instance") };
    assert_eq!(
        kept(ended.id).await.worker_epoch,
        worker.epoch,
        "an ended one stays"
    );
    assert_eq!(
        kept(elsewhere.id).await.worker_id,
        elsewhere.worker_id,
        "another worker's stays"
    );
    let again_taken = store
        .instances
        .take_over_instances(worker.id, again.epoch, &asked)
        .await
        .expect("take over again");
    assert!(
        again_taken.is_empty(),
        "already this registration's: {again_taken:?}"
    );
}

/// Active instances of a config, and the count of active instances per worker: ended ones
/// never count.
pub async fn active_counts_leave_ended_instances_out(store: &Store) {
    let (first, worker) = instance(store).await;
    let more = instances_on(store, &worker, 2).await;
    let mut crashed = change(
        Entity::Instance(more[0].id),
        Status::Created,
        Status::Crashed,
    );
    crashed.update.ended_at = Some(now());
    store.status.apply_status(&crashed).await.expect("end");
    let counts = store
        .instances
        .count_active_by_worker()
        .await
        .expect("count active");
    assert_eq!(
        counts
            .iter()
            .find(|(w, _)| *w == worker.id)
            .map(|(_, n)| *n),
        Some(2),
        "two of its three instances are active: {counts:?}"
    );
    assert!(counts.iter().all(|(_, n)| *n > 0), "no worker with none");
    assert!(counts.windows(2).all(|w| w[0].0 < w[1].0), "by worker");
    let of_config = |config| async move {
        store
            .instances
            .active_instances_of_config(config)
            .await
            .expect("active of a config")
            .into_iter()
            .map(|i| i.id)
            .collect::<Vec<InstanceId>>()
    };
    assert_eq!(of_config(first.config_id).await, [first.id]);
    let again = store
        .instances
        .create_instance(&crate::instance::NewInstance {
            config_id: more[0].config_id,
            worker_id: worker.id,
            worker_epoch: worker.epoch,
            created_at: now(),
        })
        .await
        .expect("instance");
    assert_eq!(
        of_config(more[0].config_id).await,
        [more[1].id, again.id],
        "by id, the ended one and other configs left out"
    );
}

/// The console tail `store` keeps for `instance`.
async fn kept(store: &Store, instance: InstanceId) -> Option<crate::console::ConsoleTail> {
    store
        .console_tails
        .console_tail(instance)
        .await
        .expect("read the console tail")
}

/// Console tails: kept per instance (a second replaces the first), read back as kept, refused
/// for an instance that does not exist, and pruned once their instance ended long enough ago.
pub async fn console_tails_are_kept_replaced_and_pruned(store: &Store) {
    use crate::console::{ConsoleLine, ConsoleStream, ConsoleTail};
    let (old, worker) = instance(store).await;
    let live = instances_on(store, &worker, 1).await.remove(0);
    let tail = |instance: InstanceId, texts: &[&str]| ConsoleTail {
        lines: texts
            .iter()
            .zip(1..)
            .map(|(text, seq)| ConsoleLine {
                instance_id: instance,
                seq,
                stream: if seq == 2 {
                    ConsoleStream::Stdin
                } else {
                    ConsoleStream::Stdout
                },
                text: (*text).to_owned(),
                at: now(),
            })
            .collect(),
    };
    assert_eq!(kept(store, old.id).await, None);
    let first = tail(
        old.id,
        &["booting", "quit", "bye \"all\" \u{1b}[0m ünïcode"],
    );
    store
        .console_tails
        .keep_console_tail(old.id, &first)
        .await
        .expect("keep");
    assert_eq!(kept(store, old.id).await, Some(first));
    let second = tail(old.id, &["again"]);
    store
        .console_tails
        .keep_console_tail(old.id, &second)
        .await
        .expect("replace");
    assert_eq!(kept(store, old.id).await, Some(second));
    let missing = InstanceId(i64::MAX);
    let r = store
        .console_tails
        .keep_console_tail(missing, &tail(missing, &["x"]))
        .await;
    assert!(matches!(r, Err(StoreError::NotFound { .. })), "{r:?}");

    let long_ago = now() - chrono::Duration::days(60);
    let mut ended = change(Entity::Instance(old.id), Status::Created, Status::Crashed);
    ended.update.ended_at = Some(long_ago);
    store.status.apply_status(&ended).await.expect("end");
    store
        .console_tails
        .keep_console_tail(live.id, &tail(live.id, &["still here"]))
        .await
        .expect("keep");
    let mut pruned = 0;
    loop {
        let n = store
            .console_tails
            .prune_console_tails(now() - chrono::Duration::days(30), 100)
            .await
            .expect("prune");
        pruned += n;
        if n == 0 {
            break;
        }
    }
    assert!(pruned >= 1);
    assert_eq!(kept(store, old.id).await, None, "ended 60 days ago: pruned");
    assert!(kept(store, live.id).await.is_some(), "not ended: kept");
}

/// Runs every case.
pub async fn run_all(store: &Store) {
    the_bus_secret_is_stored_once(store).await;
    catalogue_entries_are_updated_and_deleted(store).await;
    credentials_are_unique_and_revocable(store).await;
    games_are_unique_by_name_and_app(store).await;
    configs_follow_the_catalogue_rules(store).await;
    workers_register_with_growing_epochs(store).await;
    instances_are_created_filtered_and_paged(store).await;
    status_changes_are_conditional_and_idempotent(store).await;
    batches_apply_each_change_in_order(store).await;
    batches_recognise_events_recorded_before(store).await;
    sequences_are_compared_and_set_with_the_status(store).await;
    instances_are_created_with_their_start_in_one_go(store).await;
    commands_are_answered_only_by_their_worker(store).await;
    commands_move_forward_only(store).await;
    a_command_is_marked_delivered_only_while_pending(store).await;
    leases_expire_exactly_once(store).await;
    unfinished_commands_expire_exactly_once(store).await;
    retention_prunes_in_batches(store).await;
    retention_removes_stdin_lines_whatever_the_state(store).await;
    a_running_instance_shows_no_exit_and_its_workers_heartbeat(store).await;
    console_tails_are_kept_replaced_and_pruned(store).await;
    active_instances_are_those_not_ended(store).await;
    active_counts_leave_ended_instances_out(store).await;
    a_new_registration_takes_over_only_its_own_live_instances(store).await;
}
