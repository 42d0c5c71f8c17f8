//! A Steam game through the whole worker: SteamCMD (the fake, speaking SteamCMD's real output
//! format) installs it, progress reaches the events, the server runs from the install dir.
//!
//! Then one test per SteamCMD output format seen in the wild (issue 17), each played from a
//! transcript of `manman-steam/tests/fixtures/transcripts` or a scenario of the fake: the
//! class the instance ends with, how many times SteamCMD ran (1 for the unrecoverable, with
//! or without a crash policy), how long it took to fail, and the progress events.

use manman_core::config::{ConfigSpec, RestartMode, SteamLogin, SteamOptions};
use manman_core::event::Event;
use manman_core::game_server::{NewGameServer, ServerType};
use manman_core::host::StartRequest;
use manman_core::instance::Instance;
use manman_core::ports::InstallProgress;
use manman_core::process::TokioProcessRunner;
use manman_core::status::StatusEvent;
use manman_core::status::{Cause, Status};
use manman_core::worker_service::InstallerByType;
use manman_steam::{Backoff, Secret, SteamCredential, SteamInstaller, SteamSettings};
use manman_test_support::game_files::reachable_tempdir;
use manman_tests::harness::{Harness, WAIT};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const FAKE: &str = env!("CARGO_BIN_EXE_e2e-fake-game-server");
const FAKE_STEAMCMD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../manman-steam/tests/fixtures/fake-steamcmd"
);
const TRANSCRIPTS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../manman-steam/tests/fixtures/transcripts"
);

#[tokio::test]
async fn a_steam_game_is_installed_with_progress_then_runs() {
    let h = Harness::new(FAKE.as_ref()).await;
    // SteamCMD runs as the game servers' user when the tests run as root; the fake one writes
    // its records beside itself.
    let steam_home = reachable_tempdir();
    std::fs::set_permissions(steam_home.path(), std::fs::Permissions::from_mode(0o777))
        .expect("chmod");
    let steamcmd = steam_home.path().join("steamcmd.sh");
    std::fs::copy(FAKE_STEAMCMD, &steamcmd).expect("copy the fake steamcmd");
    std::fs::set_permissions(&steamcmd, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::write(
        steam_home.path().join("scenario"),
        "BUILD_ID=4242\nSLEEP=0\n",
    )
    .expect("scenario");
    let settings = SteamSettings {
        steamcmd,
        env: BTreeMap::from([
            ("PATH".to_owned(), "/usr/bin:/bin".to_owned()),
            ("HOME".to_owned(), steam_home.path().display().to_string()),
        ]),
        ..SteamSettings::default()
    };
    let installer = InstallerByType::with_steam(Arc::new(SteamInstaller::new(
        settings,
        Arc::new(TokioProcessRunner::new()),
    )));
    let worker_settings = h.settings("steam-worker");
    let worker = h
        .spawn_worker(h.worker_with(
            worker_settings,
            TokioProcessRunner::new(),
            Arc::new(installer),
        ))
        .await;

    let game = h
        .host
        .catalogue()
        .create_game(&NewGameServer {
            name: "valheim".to_owned(),
            server_type: ServerType::Steam { app_id: 896660 },
        })
        .await
        .expect("game");
    let config = h
        .host
        .catalogue()
        .create_config(
            game.id,
            &manman_core::config::ConfigSpec::new("main", "server.sh"),
        )
        .await
        .expect("config");
    let mut events = h.bus.watch_events().await.expect("watch");
    let id = h
        .host
        .instances()
        .start(&StartRequest::new(config.id), "test")
        .await
        .expect("start")
        .instance_id;

    // The installed server prints a line and exits 0: complete, cause exited.
    let done = h.wait_status(id, Status::Complete).await;
    assert_eq!(done.exit_code, Some(0));
    let causes: Vec<(Status, Cause)> = h
        .history(id)
        .await
        .iter()
        .map(|e| (e.status, e.cause))
        .collect();
    assert_eq!(
        causes,
        [
            (Status::Created, Cause::Placed),
            (Status::Initializing, Cause::User),
            (Status::Running, Cause::Ready),
            (Status::Complete, Cause::Exited),
        ]
    );
    let mut stages = Vec::new();
    let collect = async {
        while let Some(Ok(delivery)) = events.next().await {
            if let Ok(Event::InstallProgress(progress)) = delivery.message.decode::<Event>()
                && progress.instance_id == id
            {
                stages.push((progress.progress.stage.clone(), progress.progress.percent));
            }
            delivery.ack().await.expect("ack");
            if stages.iter().any(|(stage, _)| stage == "downloading") {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(WAIT, collect).await;
    assert!(
        stages
            .iter()
            .any(|(stage, percent)| stage == "downloading" && percent.is_some()),
        "install progress reached the events: {stages:?}"
    );
    let manifest = h
        .install_dir
        .join("steam/896660/steamapps/appmanifest_896660.acf");
    assert!(
        std::fs::read_to_string(&manifest)
            .expect("manifest")
            .contains("4242")
    );
    worker.stop().await;
}

/// How one Steam instance went.
struct SteamRun {
    instance: Instance,
    history: Vec<StatusEvent>,
    progress: Vec<InstallProgress>,
    /// SteamCMD runs (each a login, for a named account).
    runs: usize,
    /// From the start to the final status.
    elapsed: Duration,
}

impl SteamRun {
    /// The detail of the final status.
    fn detail(&self) -> &str {
        self.history
            .last()
            .and_then(|e| e.detail.as_deref())
            .unwrap_or("")
    }

    /// The installer's class, from the detail (`<game>: install failed: <class>: …`).
    fn class(&self) -> &str {
        self.detail()
            .split("install failed: ")
            .nth(1)
            .and_then(|rest| rest.split(':').next())
            .unwrap_or("")
    }

    fn stages(&self) -> Vec<&str> {
        self.progress.iter().map(|p| p.stage.as_str()).collect()
    }
}

/// What to play and how.
struct Play<'a> {
    /// A transcript file name, or none (the fake's own output).
    transcript: Option<&'a str>,
    /// Scenario lines for the fake.
    scenario: &'a str,
    /// Log in with the named credential `ops` (else anonymous).
    named: bool,
    restart: RestartMode,
    idle_timeout: Duration,
    max_attempts: u32,
    until: Status,
}

impl Default for Play<'_> {
    fn default() -> Self {
        Self {
            transcript: None,
            scenario: "",
            named: true,
            restart: RestartMode::Never,
            idle_timeout: Duration::from_secs(30),
            max_attempts: 3,
            until: Status::Crashed,
        }
    }
}

/// Installs a Steam game through a real worker with the fake SteamCMD playing `play`.
async fn steam_run(play: Play<'_>) -> SteamRun {
    let h = Harness::new(FAKE.as_ref()).await;
    let steam_home = reachable_tempdir();
    std::fs::set_permissions(steam_home.path(), std::fs::Permissions::from_mode(0o777))
        .expect("chmod");
    let steamcmd = steam_home.path().join("steamcmd.sh");
    std::fs::copy(FAKE_STEAMCMD, &steamcmd).expect("copy the fake steamcmd");
    std::fs::set_permissions(&steamcmd, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let mut scenario = play.scenario.to_owned();
    if let Some(name) = play.transcript {
        std::fs::copy(
            format!("{TRANSCRIPTS}/{name}"),
            steam_home.path().join(name),
        )
        .expect("copy the transcript");
        scenario.push_str(&format!("\nTRANSCRIPT={name}\n"));
    }
    std::fs::write(steam_home.path().join("scenario"), scenario).expect("scenario");
    let settings = SteamSettings {
        steamcmd,
        env: BTreeMap::from([
            ("PATH".to_owned(), "/usr/bin:/bin".to_owned()),
            ("HOME".to_owned(), steam_home.path().display().to_string()),
        ]),
        max_attempts: play.max_attempts,
        backoff: Backoff {
            initial: Duration::from_millis(50),
            max: Duration::from_millis(200),
        },
        idle_timeout: play.idle_timeout,
        ..SteamSettings::default()
    }
    .with_credential(
        "ops",
        SteamCredential::new("ops_account", Secret::new("hunter2")),
    );
    let installer = InstallerByType::with_steam(Arc::new(SteamInstaller::new(
        settings,
        Arc::new(TokioProcessRunner::new()),
    )));
    let worker = h
        .spawn_worker(h.worker_with(
            h.settings("steam-worker"),
            TokioProcessRunner::new(),
            Arc::new(installer),
        ))
        .await;
    let game = h
        .host
        .catalogue()
        .create_game(&NewGameServer {
            name: "valheim".to_owned(),
            server_type: ServerType::Steam { app_id: 896660 },
        })
        .await
        .expect("game");
    let mut spec = ConfigSpec::new("main", "server.sh");
    spec.restart.mode = play.restart;
    spec.restart.backoff_initial_ms = 100;
    spec.restart.backoff_max_ms = 200;
    if play.named {
        spec.steam = Some(SteamOptions {
            login: SteamLogin::Named("ops".to_owned()),
            ..SteamOptions::default()
        });
    }
    let config = h
        .host
        .catalogue()
        .create_config(game.id, &spec)
        .await
        .expect("config");

    let progress = Arc::new(Mutex::new(Vec::new()));
    let mut events = h.bus.watch_events().await.expect("watch");
    let collected = Arc::clone(&progress);
    let collector = tokio::spawn(async move {
        while let Some(Ok(delivery)) = events.next().await {
            if let Ok(Event::InstallProgress(report)) = delivery.message.decode::<Event>() {
                collected
                    .lock()
                    .expect("progress")
                    .push(report.progress.clone());
            }
            let _ = delivery.ack().await;
        }
    });

    let started = Instant::now();
    let id = h
        .host
        .instances()
        .start(&StartRequest::new(config.id), "test")
        .await
        .expect("start")
        .instance_id;
    let instance = h.wait_status(id, play.until).await;
    let elapsed = started.elapsed();
    // Long enough for a restart the crash policy should not make (its backoff is 100-200 ms).
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let history = h.history(id).await;
    let instance = if play.until == Status::Crashed {
        h.host.instances().get_instance(id).await.expect("instance")
    } else {
        instance
    };
    collector.abort();
    let runs = std::fs::read_to_string(steam_home.path().join("runs"))
        .map(|runs| runs.lines().count())
        .unwrap_or(0);
    worker.stop().await;
    let progress = progress.lock().expect("progress").clone();
    SteamRun {
        instance,
        history,
        progress,
        runs,
        elapsed,
    }
}

/// The instance ended `crashed` from an install failure of `class`, after one SteamCMD run,
/// never restarted, within 20 s.
fn assert_unrecoverable(run: &SteamRun, class: &str) {
    assert_eq!(run.instance.status, Status::Crashed, "{}", run.detail());
    assert_eq!(run.instance.cause, Cause::InstallFailed, "{}", run.detail());
    assert_eq!(run.class(), class, "{}", run.detail());
    assert_eq!(run.runs, 1, "SteamCMD ran once: {}", run.detail());
    assert_eq!(run.instance.restart_count, 0);
    assert!(
        !run.history.iter().any(|e| e.cause == Cause::CrashPolicy),
        "never restarted: {:?}",
        run.history
    );
    assert!(
        run.elapsed < Duration::from_secs(20),
        "failed in {:?}",
        run.elapsed
    );
    assert!(
        !run.stages().contains(&"retrying"),
        "not retried: {:?}",
        run.stages()
    );
}

#[tokio::test]
async fn todays_wrong_password_format_is_a_refused_login_tried_once() {
    let run = steam_run(Play {
        transcript: Some("login-invalid-password.txt"),
        ..Play::default()
    })
    .await;
    assert_unrecoverable(&run, "login-failed");
    assert!(
        run.detail().contains("password: FAILED (Invalid Password)"),
        "{}",
        run.detail()
    );
    assert!(!run.detail().contains("hunter2"), "{}", run.detail());
}

#[tokio::test]
async fn a_wrong_password_with_on_crash_logs_in_exactly_once() {
    let run = steam_run(Play {
        transcript: Some("login-invalid-password.txt"),
        restart: RestartMode::OnCrash,
        ..Play::default()
    })
    .await;
    assert_unrecoverable(&run, "login-failed");
    assert!(run.detail().contains("not restarted"), "{}", run.detail());
}

#[tokio::test]
async fn a_numeric_rate_limit_is_not_retried_and_says_until_when() {
    let run = steam_run(Play {
        transcript: Some("login-result-code-84.txt"),
        restart: RestartMode::OnCrash,
        ..Play::default()
    })
    .await;
    assert_unrecoverable(&run, "rate-limited");
    assert!(
        run.detail().contains("wait at least 30 minutes") && run.detail().contains("not before "),
        "{}",
        run.detail()
    );
}

#[tokio::test]
async fn a_login_approved_in_the_mobile_app_installs_and_runs() {
    let run = steam_run(Play {
        transcript: Some("guard-mobile-approved.txt"),
        until: Status::Complete,
        ..Play::default()
    })
    .await;
    assert_eq!(run.instance.status, Status::Complete, "{}", run.detail());
    assert_eq!(run.runs, 1);
    let stages = run.stages();
    assert!(stages.contains(&"waiting-for-steam-guard"), "{stages:?}");
    assert!(stages.contains(&"logged-in"), "{stages:?}");
    assert!(
        run.progress
            .iter()
            .any(|p| p.stage == "downloading" && p.percent == Some(45.12)),
        "{stages:?}"
    );
}

#[tokio::test]
async fn a_refused_login_with_the_email_guard_prompt_fails_in_seconds() {
    let run = steam_run(Play {
        transcript: Some("guard-email-denied.txt"),
        restart: RestartMode::OnCrash,
        ..Play::default()
    })
    .await;
    assert_unrecoverable(&run, "steam-guard");
    assert!(
        run.detail().contains("Steam Guard code:"),
        "{}",
        run.detail()
    );
}

#[tokio::test]
async fn a_code_prompt_nobody_can_answer_fails_in_seconds_quoting_it() {
    let run = steam_run(Play {
        transcript: Some("guard-code-prompt.txt"),
        ..Play::default()
    })
    .await;
    assert_unrecoverable(&run, "steam-guard");
    assert!(
        run.detail().contains("SteamCMD asked \"Two-factor code:\""),
        "{}",
        run.detail()
    );
}

#[tokio::test]
async fn a_silent_hang_fails_after_one_retry_naming_the_setting() {
    let run = steam_run(Play {
        transcript: Some("silent-hang.txt"),
        named: false,
        idle_timeout: Duration::from_secs(2),
        max_attempts: 5,
        ..Play::default()
    })
    .await;
    assert_eq!(run.instance.status, Status::Crashed);
    assert_eq!(run.class(), "timeout", "{}", run.detail());
    assert_eq!(run.runs, 2, "a timeout is retried once: {}", run.detail());
    assert!(
        run.detail().contains("MANMAN_WORKER_STEAM_IDLE_TIMEOUT_S"),
        "{}",
        run.detail()
    );
    assert!(run.elapsed < Duration::from_secs(20), "{:?}", run.elapsed);
    let retry = run
        .progress
        .iter()
        .find(|p| p.stage == "retrying")
        .expect("a retrying event");
    let detail = retry.detail.as_deref().unwrap_or("");
    assert!(
        detail.starts_with("timeout: attempt 1 of 2 failed") && detail.contains("attempt 2 in "),
        "{detail}"
    );
    assert!(
        run.progress
            .iter()
            .any(|p| p.stage == "downloading" && p.percent == Some(12.5))
    );
}

#[tokio::test]
async fn progress_with_a_decimal_comma_and_no_phantom_self_update() {
    let run = steam_run(Play {
        transcript: Some("progress-decimal-comma.txt"),
        named: false,
        until: Status::Complete,
        ..Play::default()
    })
    .await;
    assert_eq!(run.instance.status, Status::Complete, "{}", run.detail());
    let stages = run.stages();
    assert!(!stages.contains(&"updating-steamcmd"), "{stages:?}");
    assert!(
        run.progress
            .iter()
            .any(|p| p.stage == "downloading" && p.percent == Some(57.35)),
        "{:?}",
        run.progress
    );
    assert!(
        run.progress
            .iter()
            .any(|p| p.stage == "committing" && p.percent == Some(99.71))
    );
}

#[tokio::test]
async fn state_0x6_is_a_stuck_update_not_retried() {
    let run = steam_run(Play {
        scenario: "FAIL_RUNS=9\nFAIL_STATE=0x6",
        named: false,
        restart: RestartMode::OnCrash,
        ..Play::default()
    })
    .await;
    assert_unrecoverable(&run, "update-stuck");
    assert!(
        run.detail().contains("steamapps/appmanifest_896660.acf"),
        "{}",
        run.detail()
    );
}

#[tokio::test]
async fn state_0x206_is_a_stuck_update_not_retried() {
    let run = steam_run(Play {
        scenario: "FAIL_RUNS=9\nFAIL_STATE=0x206",
        named: false,
        ..Play::default()
    })
    .await;
    assert_unrecoverable(&run, "update-stuck");
    assert!(run.detail().contains("free disk space"), "{}", run.detail());
}

/// A transient state: every attempt runs, with a `retrying` event naming the class each time.
async fn assert_retried(state: &str, class: &str) {
    let run = steam_run(Play {
        scenario: &format!("FAIL_RUNS=9\nFAIL_STATE={state}"),
        named: false,
        max_attempts: 3,
        ..Play::default()
    })
    .await;
    assert_eq!(run.instance.status, Status::Crashed);
    assert_eq!(run.class(), class, "{}", run.detail());
    assert_eq!(run.runs, 3, "{}", run.detail());
    let retries: Vec<_> = run
        .progress
        .iter()
        .filter(|p| p.stage == "retrying")
        .filter_map(|p| p.detail.clone())
        .collect();
    assert_eq!(retries.len(), 2, "{retries:?}");
    assert!(
        retries[1].starts_with(&format!("{class}: attempt 2 of 3 failed")),
        "{retries:?}"
    );
    assert!(run.elapsed < Duration::from_secs(20), "{:?}", run.elapsed);
}

#[tokio::test]
async fn state_0x406_is_a_network_failure_retried() {
    assert_retried("0x406", "network").await;
}

#[tokio::test]
async fn state_0x2_is_content_unavailable_retried() {
    assert_retried("0x2", "content-unavailable").await;
}

#[tokio::test]
async fn state_0x202_after_a_missing_required_app_is_not_a_full_disk() {
    let run = steam_run(Play {
        transcript: Some("missing-required-app.txt"),
        named: false,
        ..Play::default()
    })
    .await;
    assert_unrecoverable(&run, "missing-required-app");
    assert!(
        !run.detail().contains("free disk space"),
        "{}",
        run.detail()
    );
}

#[tokio::test]
async fn no_subscription_with_on_crash_is_not_restarted() {
    let run = steam_run(Play {
        scenario: "FAIL_RUNS=9\nFAIL_LINE=\"ERROR! Failed to install app '896660' (No subscription)\"",
        restart: RestartMode::OnCrash,
        ..Play::default()
    })
    .await;
    assert_unrecoverable(&run, "no-license");
}
