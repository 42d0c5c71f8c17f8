//! Game servers that outlive their worker: the real `manman-host` and a `manman-worker` on
//! PostgreSQL and RabbitMQ, the worker running each server through a `manman-shim`. A worker
//! restarted (SIGTERM with "leave running", or SIGKILL) takes its servers up again — same
//! processes, a console numbered without a gap or a repeat, stdin working, `running`
//! throughout; a worker that does not come back within the grace time finds them stopped by
//! their stop policy; a shim killed on its own ends its instance `crashed` (`shim-lost`) and
//! leaves no server behind.

use manman_core::id::InstanceId;
use manman_core::status::{Cause, Status};
use manman_tests::system::{Programs, Shim, System, WAIT};
use manman_tests::{eventually, pid_alive, wait_instance_status};
use std::collections::BTreeMap;
use std::time::Duration;

fn programs(grace_s: u32) -> Programs<'static> {
    Programs {
        host: env!("CARGO_BIN_EXE_e2e-host"),
        worker: env!("CARGO_BIN_EXE_e2e-worker"),
        fake: env!("CARGO_BIN_EXE_e2e-fake-game-server"),
        steamcmd: None,
        shim: Some(Shim {
            program: env!("CARGO_BIN_EXE_e2e-shim"),
            grace_s,
        }),
    }
}

/// Starts `count` servers printing 20 lines a second, each of a config of its own; waits
/// until they run.
async fn start_chatty(system: &System, count: usize) -> Vec<InstanceId> {
    let mut ids = Vec::new();
    for n in 0..count {
        let config = system
            .config(&format!("chatty-{n}"), |spec| {
                spec.args = vec!["--lines-per-sec".into(), "20".into()];
            })
            .await;
        ids.push(system.start_on(config, "w1").await);
    }
    for id in &ids {
        wait_instance_status(&system.client, *id, Status::Running).await;
    }
    ids
}

/// The game server's pid, from the worker's process record.
fn server_pid(system: &System, id: InstanceId) -> u32 {
    let record = system
        .install_dir("w1")
        .join(".manman/processes")
        .join(format!("instance-{}.json", id.get()));
    let text = std::fs::read_to_string(&record).expect("the process record");
    let pgid = text
        .split("\"pgid\":")
        .nth(1)
        .and_then(|rest| rest.split([',', '}']).next())
        .expect("a pgid");
    pgid.trim().parse().expect("a pid")
}

/// The parent of `pid` (its shim).
fn parent_of(pid: u32) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let (_, rest) = stat.rsplit_once(')').expect("stat");
    rest.split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("ppid")
}

/// The numbers of an instance's console log, in order.
fn console_numbers(system: &System, id: InstanceId) -> Vec<u64> {
    std::fs::read_to_string(system.console_log("w1", id))
        .expect("the console log")
        .lines()
        .map(|l| {
            l.split(' ')
                .nth(1)
                .and_then(|n| n.parse().ok())
                .expect("a number")
        })
        .collect()
}

/// Every line numbered once, from 1, in order.
fn assert_gapless(system: &System, id: InstanceId) -> u64 {
    let numbers = console_numbers(system, id);
    let expected: Vec<u64> = (1..=numbers.len() as u64).collect();
    if numbers != expected {
        let wrong = numbers
            .iter()
            .zip(&expected)
            .position(|(a, b)| a != b)
            .unwrap_or(numbers.len().min(expected.len()));
        panic!(
            "{id}: console numbers not 1..={} without gap or repeat; first wrong at index \
             {wrong}: {:?}",
            expected.len(),
            &numbers[wrong.saturating_sub(3)..(wrong + 3).min(numbers.len())]
        );
    }
    numbers.len() as u64
}

/// The statuses an instance has had, beyond `created` → `initializing` → `running`.
async fn later_statuses(system: &System, id: InstanceId) -> Vec<(Status, Cause)> {
    let history = system
        .client
        .instance_history_all(id)
        .await
        .expect("history");
    history
        .iter()
        .map(|e| (e.status, e.cause))
        .filter(|(s, _)| !matches!(s, Status::Created | Status::Initializing))
        .skip(1)
        .collect()
}

async fn epoch_of_w1(system: &System) -> i64 {
    system
        .client
        .list_workers()
        .await
        .expect("workers")
        .iter()
        .find(|w| w.name == "w1")
        .expect("w1")
        .epoch
}

/// Sends `line` and waits for its echo in the console log.
async fn echoed(system: &System, id: InstanceId, line: &str) {
    system.client.stdin(id, line).await.expect("stdin");
    let echo = format!("echo: {line}");
    eventually(&format!("{id} to echo {line:?}"), WAIT, || async {
        let log = std::fs::read_to_string(system.console_log("w1", id)).ok()?;
        log.lines().any(|l| l.ends_with(&echo)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_run_on_through_a_worker_restart_and_a_worker_crash() {
    let Some(mut system) = System::start("outlive_restart", programs(60), 1, 4).await else {
        return;
    };
    let ids = start_chatty(&system, 3).await;
    let pids: BTreeMap<InstanceId, u32> = ids
        .iter()
        .map(|id| (*id, server_pid(&system, *id)))
        .collect();
    for id in &ids {
        echoed(&system, *id, &format!("before {id}")).await;
    }

    for (round, kill) in [(1, false), (2, true)] {
        let epoch = epoch_of_w1(&system).await;
        let before: BTreeMap<InstanceId, u64> = ids
            .iter()
            .map(|id| (*id, console_numbers(&system, *id).len() as u64))
            .collect();
        system.end_worker(0, kill);
        // The servers go on printing while no worker is there.
        tokio::time::sleep(Duration::from_millis(700)).await;
        for (id, pid) in &pids {
            assert!(
                pid_alive(*pid),
                "round {round}: {id}'s server {pid} outlived the worker"
            );
        }
        system.start_worker_again(0, epoch).await;
        let new_epoch = epoch_of_w1(&system).await;
        for id in &ids {
            let instance = wait_instance_status(&system.client, *id, Status::Running).await;
            assert_eq!(
                instance.worker_epoch, new_epoch,
                "round {round}: {id} is the new registration's"
            );
            assert_eq!(
                server_pid(&system, *id),
                pids[id],
                "round {round}: same process"
            );
            let line = format!("after round {round} {id}");
            echoed(&system, *id, &line).await;
            let count = assert_gapless(&system, *id);
            // About 14 lines were printed while the worker was away: replayed, not lost.
            assert!(
                count >= before[id] + 10,
                "round {round}: {id} has {count} lines, {} before",
                before[id]
            );
            assert_eq!(
                later_statuses(&system, *id).await,
                [],
                "round {round}: {id} stayed running (no crashed, lost or restart)"
            );
        }
    }

    // Stopped as usual afterwards, and its shim goes with it.
    let id = ids[0];
    let shim = parent_of(pids[&id]);
    system.client.stop(id).await.expect("stop");
    let ended = wait_instance_status(&system.client, id, Status::Complete).await;
    assert_eq!(ended.cause, Cause::User);
    eventually("the server and its shim to end", WAIT, || async {
        (!pid_alive(pids[&id]) && !pid_alive(shim)).then_some(())
    })
    .await;
    assert_gapless(&system, id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_left_without_a_worker_beyond_the_grace_time_are_stopped_by_their_stop_policy() {
    let Some(mut system) = System::start("outlive_grace", programs(2), 1, 4).await else {
        return;
    };
    let ids = start_chatty(&system, 2).await;
    let pids: Vec<u32> = ids.iter().map(|id| server_pid(&system, *id)).collect();
    let epoch = epoch_of_w1(&system).await;
    system.end_worker(0, true);
    // The stop line `quit` ends the fake server at once, after the 2 s grace.
    eventually("the servers to be stopped by their shims", WAIT, || async {
        pids.iter().all(|pid| !pid_alive(*pid)).then_some(())
    })
    .await;
    system.start_worker_again(0, epoch).await;
    for id in &ids {
        let ended = wait_instance_status(&system.client, *id, Status::Complete).await;
        assert_eq!(
            ended.cause,
            Cause::WorkerRestart,
            "{id}: {:?}",
            ended.detail
        );
        let detail = ended.detail.unwrap_or_default();
        assert!(
            detail.contains("stopped by its stop policy") && detail.contains("exit code 0"),
            "{id}: {detail}"
        );
        assert_eq!(ended.exit_code, Some(0));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shim_killed_on_its_own_ends_its_instance_and_leaves_no_server() {
    let Some(system) = System::start("outlive_shim_killed", programs(60), 1, 4).await else {
        return;
    };
    let ids = start_chatty(&system, 2).await;
    let (victim, other) = (ids[0], ids[1]);
    let pid = server_pid(&system, victim);
    let shim = parent_of(pid);
    assert_ne!(shim, std::process::id());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(shim).expect("pid")),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the shim");
    let ended = wait_instance_status(&system.client, victim, Status::Crashed).await;
    assert_eq!(ended.cause, Cause::ShimLost, "{:?}", ended.detail);
    let detail = ended.detail.unwrap_or_default();
    assert!(
        detail.contains("shim") && detail.contains(&pid.to_string()),
        "{detail}"
    );
    eventually("the server to be gone with its shim", WAIT, || async {
        (!pid_alive(pid)).then_some(())
    })
    .await;
    // The other server is untouched.
    echoed(&system, other, "still here").await;
    assert_eq!(
        system
            .client
            .get_instance(other)
            .await
            .expect("other")
            .status,
        Status::Running
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_restarted_while_the_host_is_away_keeps_its_servers_beyond_the_grace_time() {
    let Some(mut system) = System::start("outlive_host_away", programs(2), 1, 4).await else {
        return;
    };
    let ids = start_chatty(&system, 2).await;
    let pids: Vec<u32> = ids.iter().map(|id| server_pid(&system, *id)).collect();
    let epoch = epoch_of_w1(&system).await;
    system.end_host();
    system.end_worker(0, true);
    // The worker comes back at once, and attends its servers' shims while it cannot register:
    // they must not be stopped, however long the host stays away.
    system.spawn_worker_again(0);
    tokio::time::sleep(Duration::from_secs(5)).await;
    for pid in &pids {
        assert!(
            pid_alive(*pid),
            "server {pid} runs on past the 2 s grace time"
        );
    }
    system.start_host_again().await;
    eventually("the worker to register again", WAIT, || async {
        (epoch_of_w1(&system).await > epoch).then_some(())
    })
    .await;
    for (id, pid) in ids.iter().zip(&pids) {
        wait_instance_status(&system.client, *id, Status::Running).await;
        assert_eq!(server_pid(&system, *id), *pid, "{id}: the same process");
        echoed(&system, *id, "after the host came back").await;
        assert_gapless(&system, *id);
    }
}
