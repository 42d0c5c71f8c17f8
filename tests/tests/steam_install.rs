//! A Steam game through the whole worker: SteamCMD (the fake, speaking SteamCMD's real output
//! format) installs it, progress reaches the events, the server runs from the install dir.

use manman_core::event::Event;
use manman_core::game_server::{NewGameServer, ServerType};
use manman_core::host::StartRequest;
use manman_core::process::TokioProcessRunner;
use manman_core::status::{Cause, Status};
use manman_core::worker_service::InstallerByType;
use manman_steam::{SteamInstaller, SteamSettings};
use manman_test_support::game_files::reachable_tempdir;
use manman_tests::harness::{Harness, WAIT};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

const FAKE: &str = env!("CARGO_BIN_EXE_e2e-fake-game-server");
const FAKE_STEAMCMD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../manman-steam/tests/fixtures/fake-steamcmd"
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
        .create_game(&NewGameServer {
            name: "valheim".to_owned(),
            server_type: ServerType::Steam { app_id: 896660 },
        })
        .await
        .expect("game");
    let config = h
        .host
        .create_config(
            game.id,
            &manman_core::config::ConfigSpec::new("main", "server.sh"),
        )
        .await
        .expect("config");
    let mut events = h.bus.watch_events().await.expect("watch");
    let id = h
        .host
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
