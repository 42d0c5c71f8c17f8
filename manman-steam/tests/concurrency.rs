//! One SteamCMD run per install dir (single-flight) and a worker-wide limit on runs.

mod common;

use common::{Fake, Recorded, installer};
use manman_core::config::SteamOptions;
use manman_core::ports::NoProgress;
use std::time::Duration;

#[tokio::test]
async fn two_installs_of_one_dir_run_steamcmd_once_and_share_the_result() {
    let fake = Fake::new("SLEEP=0.3");
    let installer = installer(fake.settings());
    let app = fake.app(SteamOptions::default());
    let (first, second) = (Recorded::default(), Recorded::default());
    let (a, b) = tokio::join!(
        installer.install_app(&app, &first),
        installer.install_app(&app, &second)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a, b);
    assert_eq!(fake.runs(), 1, "the second install must wait for the first");
    assert!(first.stages().contains(&"downloading".to_owned()));
    assert!(
        second.stages().contains(&"downloading".to_owned()),
        "the waiting caller sees the shared run's progress: {:?}",
        second.stages()
    );

    // Once it is over, a new install runs SteamCMD again (to pick up updates).
    installer.install_app(&app, &NoProgress).await.unwrap();
    assert_eq!(fake.runs(), 2);
}

#[tokio::test]
async fn a_clone_of_the_installer_shares_the_single_flight() {
    let fake = Fake::new("SLEEP=0.3");
    let installer = installer(fake.settings());
    let clone = installer.clone();
    let app = fake.app(SteamOptions::default());
    let (a, b) = tokio::join!(
        installer.install_app(&app, &NoProgress),
        clone.install_app(&app, &NoProgress)
    );
    assert_eq!(a.unwrap(), b.unwrap());
    assert_eq!(fake.runs(), 1);
}

#[tokio::test]
async fn two_branches_of_one_app_are_two_dirs_and_two_runs() {
    let fake = Fake::new("SLEEP=0.2");
    let installer = installer(fake.settings());
    let public = fake.app(SteamOptions::default());
    let beta = fake.app(SteamOptions {
        branch: Some("beta".into()),
        ..Default::default()
    });
    let (a, b) = tokio::join!(
        installer.install_app(&public, &NoProgress),
        installer.install_app(&beta, &NoProgress)
    );
    assert_ne!(a.unwrap().dir, b.unwrap().dir);
    assert_eq!(fake.runs(), 2);
}

#[tokio::test]
async fn the_worker_wide_limit_caps_concurrent_steamcmd_runs() {
    let fake = Fake::new("SLEEP=0.3");
    let settings = fake.settings();
    assert_eq!(settings.max_concurrent_installs, 2, "the default");
    let installer = installer(settings);
    let apps: Vec<_> = [10, 20, 30]
        .into_iter()
        .map(|app_id| manman_steam::SteamApp {
            app_id,
            ..fake.app(SteamOptions::default())
        })
        .collect();
    let (a, b, c) = tokio::join!(
        installer.install_app(&apps[0], &NoProgress),
        installer.install_app(&apps[1], &NoProgress),
        installer.install_app(&apps[2], &NoProgress)
    );
    assert!(a.is_ok() && b.is_ok() && c.is_ok());
    assert_eq!(fake.runs(), 3);
    assert_eq!(fake.max_overlap(), 2, "two run together, the third waits");
}

#[tokio::test]
async fn a_cancelled_install_kills_steamcmd_and_a_new_one_starts_afresh() {
    let fake = Fake::new("SLEEP=30");
    let installer = installer(fake.settings());
    let app = fake.app(SteamOptions::default());
    let cancelled = tokio::time::timeout(
        Duration::from_millis(500),
        installer.install_app(&app, &NoProgress),
    )
    .await;
    assert!(cancelled.is_err(), "the install was still running");
    assert_eq!(fake.runs(), 1);
    let mut waited = Duration::ZERO;
    while fake.alive(1) && waited < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        waited += Duration::from_millis(20);
    }
    assert!(!fake.alive(1), "SteamCMD outlived the cancelled install");

    // The dropped run is not joined: the next install runs SteamCMD again.
    fake.set_scenario("");
    installer.install_app(&app, &NoProgress).await.unwrap();
    assert_eq!(fake.runs(), 2);
}
