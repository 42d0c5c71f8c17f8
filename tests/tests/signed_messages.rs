//! Signed bus messages against real processes: a host and two workers on PostgreSQL and
//! RabbitMQ (a vhost of the test's own), and a plain AMQP client that forges what it can —
//! with no key, a made-up key, an old registration's key, or another worker's real key.

use chrono::Utc;
use manman_core::bus::Bus;
use manman_core::command::{Command, CommandEnvelope, CommandOutcome, CommandResult, CommandState};
use manman_core::event::{Event, StatusReport};
use manman_core::host::{BusKeys, DeadLetterReason};
use manman_core::id::{InstanceId, WorkerId};
use manman_core::ports::Message;
use manman_core::signing::{BusSecret, Purpose, WorkerKey};
use manman_core::status::{Cause, Entity, Status};
use manman_core::store::Store;
use manman_core::topology::{KIND_COMMAND, worker_routing_key};
use manman_core::worker::Worker;
use manman_pg::{PgSettings, PgStore};
use manman_rabbit::{RabbitBus, RabbitSettings};
use manman_tests::system::{Programs, System, WAIT};
use manman_tests::{Daemon, eventually, wait_instance_status};
use std::path::Path;
use std::sync::Arc;

const PROGRAMS: Programs<'static> = Programs {
    host: env!("CARGO_BIN_EXE_e2e-host"),
    worker: env!("CARGO_BIN_EXE_e2e-worker"),
    fake: env!("CARGO_BIN_EXE_e2e-fake-game-server"),
    steamcmd: None,
    shim: None,
};

/// What the test forges with: the broker, as any client of it, and the host's keys, as only an
/// insider (a worker, the host) would hold them.
struct Forger {
    bus: Bus,
    keys: BusKeys,
}

impl Forger {
    async fn new(system: &System) -> Self {
        let rabbit = RabbitBus::connect(&RabbitSettings::new(&system.amqp_url))
            .await
            .expect("broker");
        let pg = PgStore::connect(&PgSettings::new(&system.database.url))
            .await
            .expect("database");
        Self {
            bus: Bus::new(Arc::new(rabbit.clone()), Arc::new(rabbit)),
            keys: BusKeys::new(&Store::from_adapter(pg)),
        }
    }

    async fn key(&self, worker: WorkerId, epoch: i64) -> WorkerKey {
        self.keys.worker_key(worker, epoch).await.expect("key")
    }

    /// Publishes `event` on `manman.events`, sealed with `key` or unsigned; returns its id.
    async fn event(&self, event: &Event, key: Option<&WorkerKey>) -> uuid::Uuid {
        let mut message = Message::json(event.kind(), event, Utc::now()).expect("encode");
        if let Some(key) = key {
            key.seal(Purpose::Event, &mut message);
        }
        let id = message.id;
        self.bus
            .publisher()
            .publish(&self.bus.topology().events_exchange(), "", message)
            .await
            .expect("publish");
        id
    }

    /// Publishes `command` straight to `worker`'s queue, sealed with `key` or unsigned.
    async fn command(
        &self,
        worker: WorkerId,
        command: Command,
        key: Option<&WorkerKey>,
    ) -> CommandEnvelope {
        let envelope = CommandEnvelope::new(command, "forger", Utc::now());
        let mut message =
            Message::json(KIND_COMMAND, &envelope, envelope.issued_at).expect("encode");
        message.id = envelope.id;
        message.expires_at = Some(envelope.expires_at);
        if let Some(key) = key {
            key.seal(Purpose::Command, &mut message);
        }
        self.bus
            .publisher()
            .publish(
                &self.bus.topology().commands_exchange(),
                &worker_routing_key(worker),
                message,
            )
            .await
            .expect("publish");
        envelope
    }
}

fn crashed(entity: Entity) -> Event {
    Event::Status(
        StatusReport::new(entity, Status::Crashed, Cause::Exited, Utc::now()).with_detail("forged"),
    )
}

fn failed(command_id: uuid::Uuid, worker_id: WorkerId) -> Event {
    Event::CommandResult(CommandResult {
        command_id,
        worker_id,
        outcome: CommandOutcome::Failed,
        detail: Some("forged".to_owned()),
        reported_at: Utc::now(),
    })
}

async fn worker(system: &System, name: &str) -> Worker {
    system
        .client
        .list_workers()
        .await
        .expect("workers")
        .into_iter()
        .find(|w| w.name == name)
        .expect("the worker")
}

/// Game server processes whose working directory is under `dir` (a worker's install dir).
fn servers_under(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter_map(|e| std::fs::read_link(e.path().join("cwd")).ok())
        .filter(|cwd| cwd.starts_with(dir))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_events_are_dead_lettered_with_their_reason_and_the_truth_stands() {
    let Some(system) = System::start("signed_events", PROGRAMS, 2, 4).await else {
        return;
    };
    let client = &system.client;
    let config = system.config("main", |_| {}).await;
    let id = system.start_on(config, "w1").await;
    wait_instance_status(client, id, Status::Running).await;
    let (w1, w2) = (worker(&system, "w1").await, worker(&system, "w2").await);
    let stdin = client
        .stdin(id, "say hello")
        .await
        .expect("stdin")
        .command_id;
    eventually("the stdin command to succeed", WAIT, || async {
        let record = client.get_command(stdin).await.ok()?;
        (record.state == CommandState::Succeeded).then_some(())
    })
    .await;

    let forger = Forger::new(&system).await;
    let w1_key = forger.key(w1.id, w1.epoch).await;
    let w2_key = forger.key(w2.id, w2.epoch).await;
    let made_up = BusSecret::generate().worker_key(w1.id, w1.epoch);
    let old = forger.key(w1.id, w1.epoch - 1).await;
    let nobody = forger.key(WorkerId(424_242), 1).await;
    let instance = Entity::Instance(id);
    let forged = [
        (crashed(instance), None, DeadLetterReason::Unsigned),
        (
            crashed(instance),
            Some(&made_up),
            DeadLetterReason::BadSignature,
        ),
        (crashed(instance), Some(&old), DeadLetterReason::OldEpoch),
        (
            crashed(instance),
            Some(&nobody),
            DeadLetterReason::UnknownWorker,
        ),
        (crashed(instance), Some(&w2_key), DeadLetterReason::NotOwner),
        (
            crashed(Entity::Worker(w1.id)),
            Some(&w2_key),
            DeadLetterReason::NotOwner,
        ),
        (
            crashed(Entity::Instance(InstanceId(999_999))),
            Some(&w1_key),
            DeadLetterReason::UnknownEntity,
        ),
        (failed(stdin, w1.id), None, DeadLetterReason::Unsigned),
        (
            failed(stdin, w2.id),
            Some(&w2_key),
            DeadLetterReason::NotOwner,
        ),
        (
            failed(stdin, w1.id),
            Some(&w2_key),
            DeadLetterReason::NotOwner,
        ),
    ];
    let mut expected = Vec::new();
    for (event, key, reason) in &forged {
        expected.push((forger.event(event, *key).await, *reason));
    }

    let letters = eventually("every forgery to be dead-lettered", WAIT, || async {
        let letters = client.dead_letters().await.ok()?;
        expected
            .iter()
            .all(|(id, _)| letters.iter().any(|l| l.message_id == *id))
            .then_some(letters)
    })
    .await;
    for (id, reason) in &expected {
        let letter = letters
            .iter()
            .find(|l| l.message_id == *id)
            .expect("recorded");
        assert_eq!(letter.reason, *reason, "{letter:?}");
        assert!(!letter.detail.is_empty());
    }

    // The truth stands: the server runs, the command succeeded, both workers run.
    let history = client.instance_history(id).await.expect("history");
    assert!(
        history.iter().all(|e| e.status != Status::Crashed),
        "{history:?}"
    );
    assert_eq!(
        client.get_instance(id).await.expect("get").status,
        Status::Running
    );
    assert_eq!(
        client.get_command(stdin).await.expect("command").state,
        CommandState::Succeeded
    );
    for name in ["w1", "w2"] {
        assert_eq!(
            worker(&system, name).await.status,
            Status::Running,
            "{name}"
        );
    }
    let again = client
        .stdin(id, "say still here")
        .await
        .expect("stdin")
        .command_id;
    eventually("the server to take another line", WAIT, || async {
        let record = client.get_command(again).await.ok()?;
        (record.state == CommandState::Succeeded).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_runs_only_what_the_host_sealed_for_it_and_confirms() {
    let Some(mut system) = System::start("signed_commands", PROGRAMS, 2, 4).await else {
        return;
    };
    let config = system.config("main", |_| {}).await;
    let theirs = system.start_on(config, "w1").await;
    wait_instance_status(&system.client, theirs, Status::Running).await;
    let other = system.config("other", |_| {}).await;
    let ended = system.start_on(other, "w2").await;
    wait_instance_status(&system.client, ended, Status::Running).await;
    system.client.stop(ended).await.expect("stop");
    wait_instance_status(&system.client, ended, Status::Complete).await;
    let (w1, w2) = (worker(&system, "w1").await, worker(&system, "w2").await);
    let w2_dir = system.install_dir("w2");
    assert_eq!(servers_under(&w2_dir), 0);

    let forger = Forger::new(&system).await;
    let w1_key = forger.key(w1.id, w1.epoch).await;
    let w2_key = forger.key(w2.id, w2.epoch).await;
    let start = |instance_id| Command::Start {
        instance_id,
        config_id: config,
        bundle: None,
    };
    // Refused by their seal: dead-lettered by w2 without a word; the host records them.
    let unsigned = forger.command(w2.id, start(theirs), None).await;
    let for_w1 = forger.command(w2.id, start(theirs), Some(&w1_key)).await;
    // Sealed for w2 (as a fooled host would), carrying no config, so w2 asks the host for it:
    // the host does not confirm them at config fetch, so w2 answers `failed` — results for
    // commands the host never sent, dead-lettered. (A start sealed for w2 that carries its
    // config is believed on its seal: docs/architecture.md, "Signed messages".)
    let not_its_own = forger.command(w2.id, start(theirs), Some(&w2_key)).await;
    let missing = forger
        .command(w2.id, start(InstanceId(999_999)), Some(&w2_key))
        .await;
    // A command w2 handles now, replayed after its restart below.
    let handled = forger
        .command(w2.id, Command::Stop { instance_id: ended }, Some(&w2_key))
        .await;

    let client = &system.client;
    let dead_letter_of = |id: uuid::Uuid| async move {
        client
            .dead_letters()
            .await
            .ok()?
            .into_iter()
            .find(|l| l.message_id == id || l.detail.contains(&id.to_string()))
    };
    for (what, id, reason) in [
        ("unsigned", unsigned.id, DeadLetterReason::Unsigned),
        ("sealed for w1", for_w1.id, DeadLetterReason::CommandNotRun),
        (
            "another worker's instance",
            not_its_own.id,
            DeadLetterReason::UnknownEntity,
        ),
        (
            "a missing instance",
            missing.id,
            DeadLetterReason::UnknownEntity,
        ),
        (
            "the handled one",
            handled.id,
            DeadLetterReason::UnknownEntity,
        ),
    ] {
        let letter = eventually(&format!("the {what} start to be refused"), WAIT, || {
            dead_letter_of(id)
        })
        .await;
        assert_eq!(letter.reason, reason, "{what}: {letter:?}");
    }
    assert_eq!(servers_under(&w2_dir), 0, "w2 started nothing");
    let history = client.instance_history(theirs).await.expect("history");
    assert!(
        history.iter().all(|e| e.status != Status::Crashed),
        "{history:?}"
    );
    assert_eq!(
        client.get_instance(theirs).await.expect("get").status,
        Status::Running
    );
    assert!(
        std::fs::read_to_string(system.log("w2"))
            .expect("w2's log")
            .contains("does not confirm"),
        "w2 says why it refused"
    );

    // w2 restarts: a new registration, a new key.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(system.workers[1].0.id()).expect("pid")),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    let _ = system.workers[1].0.wait();
    system.workers[1] = Daemon(system.worker_commands[1].spawn().expect("w2 again"));
    let restarted = eventually("w2 to register again", WAIT, || async {
        let w = worker(&system, "w2").await;
        (w.epoch > w2.epoch && w.status == Status::Running).then_some(w)
    })
    .await;
    let new_key = forger.key(restarted.id, restarted.epoch).await;
    // Replays: with the old registration's seal (refused by the seal), and the same command
    // sealed anew (refused as handled before: w2 kept its id across the restart).
    let old_seal = forger.command(w2.id, start(ended), Some(&w2_key)).await;
    let mut replay = handled.clone();
    replay.issued_at = Utc::now();
    let mut message = Message::json(KIND_COMMAND, &replay, replay.issued_at).expect("encode");
    message.id = replay.id;
    new_key.seal(Purpose::Command, &mut message);
    forger
        .bus
        .publisher()
        .publish(
            &forger.bus.topology().commands_exchange(),
            &worker_routing_key(w2.id),
            message,
        )
        .await
        .expect("publish the replay");
    // A start of the ended instance, sealed for the new registration: the host says it ended.
    let ended_again = forger.command(w2.id, start(ended), Some(&new_key)).await;
    let letter = eventually("the old seal to be refused", WAIT, || {
        dead_letter_of(old_seal.id)
    })
    .await;
    assert_eq!(letter.reason, DeadLetterReason::CommandNotRun);
    // w2 takes its commands in order: once the last one is answered, the replay was seen.
    eventually("the ended instance's start to be refused", WAIT, || {
        dead_letter_of(ended_again.id)
    })
    .await;
    // Answers, not records: the bus delivers at least once, and an answer delivered twice (a
    // publish whose confirm was lost, sent again) is refused, and recorded, twice.
    let answers: std::collections::HashSet<uuid::Uuid> = client
        .dead_letters()
        .await
        .expect("dead letters")
        .into_iter()
        .filter(|l| l.detail.contains(&handled.id.to_string()))
        .map(|l| l.message_id)
        .collect();
    assert_eq!(
        answers.len(),
        1,
        "the replayed command was not run again: {answers:?}"
    );
    assert_eq!(
        servers_under(&w2_dir),
        0,
        "w2 started nothing after its restart"
    );
    assert_eq!(
        client.get_instance(ended).await.expect("get").status,
        Status::Complete
    );
}
