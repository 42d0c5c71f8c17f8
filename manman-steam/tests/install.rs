//! Installs through the fake SteamCMD: the exact argv of each kind of install, stdin for
//! named logins, the install dir layout, verification and progress.

mod common;

use common::{APP_ID, Fake, Recorded, installer};
use manman_core::config::{SteamLogin, SteamOptions};
use manman_core::game_server::ServerType;
use manman_core::ports::{GameInstaller, InstallError, NoProgress};
use manman_steam::{Secret, SteamCredential, SteamPlatform};
use std::path::Path;

fn dir_arg(dir: &Path) -> String {
    dir.display().to_string()
}

#[tokio::test]
async fn anonymous_install_runs_the_exact_command_and_returns_the_verified_build() {
    let fake = Fake::new("");
    let installer = installer(fake.settings());
    let installation = installer
        .install_app(&fake.app(SteamOptions::default()), &NoProgress)
        .await
        .unwrap();
    let dir = fake.default_dir();
    assert_eq!(installation.dir, dir);
    assert_eq!(installation.build_id.as_deref(), Some("14396345"));
    assert_eq!(fake.runs(), 1);
    assert_eq!(
        fake.argv(1),
        [
            "+force_install_dir",
            &dir_arg(&dir),
            "+login",
            "anonymous",
            "+app_update",
            "896660",
            "+quit"
        ]
    );
    assert_eq!(fake.stdin(1), "", "anonymous logins write nothing to stdin");
    assert!(dir.join("steamapps/appmanifest_896660.acf").is_file());
}

#[tokio::test]
async fn named_install_puts_the_username_in_argv_and_the_password_on_stdin() {
    let fake = Fake::new("EXPECT_PASSWORD='hunter2 Pa55'");
    let settings = fake.settings().with_credential(
        "ops",
        SteamCredential::new("ops_account", Secret::new("hunter2 Pa55")),
    );
    let installer = installer(settings);
    let options = SteamOptions {
        login: SteamLogin::Named("ops".into()),
        ..Default::default()
    };
    installer
        .install_app(&fake.app(options), &NoProgress)
        .await
        .unwrap();
    assert_eq!(
        fake.argv(1),
        [
            "+force_install_dir",
            &dir_arg(&fake.default_dir()),
            "+login",
            "ops_account",
            "+app_update",
            "896660",
            "+quit"
        ]
    );
    assert_eq!(fake.stdin(1), "hunter2 Pa55\n");
}

#[tokio::test]
async fn a_configured_steam_guard_code_follows_the_password_on_stdin() {
    let fake = Fake::new("EXPECT_PASSWORD=pw\nGUARD_CODE=X1Y2Z");
    let settings = fake.settings().with_credential(
        "ops",
        SteamCredential::new("ops_account", Secret::new("pw"))
            .with_guard_code(Secret::new("X1Y2Z")),
    );
    let options = SteamOptions {
        login: SteamLogin::Named("ops".into()),
        ..Default::default()
    };
    installer(settings)
        .install_app(&fake.app(options), &NoProgress)
        .await
        .unwrap();
    assert_eq!(fake.stdin(1), "pw\nX1Y2Z\n");
}

#[tokio::test]
async fn beta_validate_install_goes_to_its_own_dir() {
    let fake = Fake::new("");
    let options = SteamOptions {
        branch: Some("experimental".into()),
        validate: true,
        ..Default::default()
    };
    let installation = installer(fake.settings())
        .install_app(&fake.app(options), &NoProgress)
        .await
        .unwrap();
    let dir = fake.install_root.join("steam/896660-experimental");
    assert_eq!(installation.dir, dir);
    assert_eq!(
        fake.argv(1),
        [
            "+force_install_dir",
            &dir_arg(&dir),
            "+login",
            "anonymous",
            "+app_update",
            "896660",
            "-beta",
            "experimental",
            "validate",
            "+quit"
        ]
    );
}

#[tokio::test]
async fn a_beta_password_goes_through_a_private_script_not_argv() {
    let fake = Fake::new("");
    let mut settings = fake
        .settings()
        .with_secret("beta-pw", Secret::new("s3cret-beta"));
    settings.platform = Some(SteamPlatform::Windows);
    let options = SteamOptions {
        branch: Some("beta".into()),
        branch_password_secret: Some("beta-pw".into()),
        validate: true,
        ..Default::default()
    };
    let installation = installer(settings)
        .install_app(&fake.app(options), &NoProgress)
        .await
        .unwrap();
    let dir = fake.install_root.join("steam/896660-beta");
    assert_eq!(installation.dir, dir);
    let argv = fake.argv(1);
    assert_eq!(
        argv[..6],
        [
            "+@sSteamCmdForcePlatformType",
            "windows",
            "+force_install_dir",
            &dir_arg(&dir),
            "+login",
            "anonymous",
        ]
    );
    assert_eq!(argv[6], "+runscript");
    assert_eq!(argv[8], "+quit");
    assert_eq!(argv.len(), 9);
    assert!(argv.iter().all(|a| !a.contains("s3cret-beta")), "{argv:?}");
    assert_eq!(
        fake.script(1).unwrap(),
        "app_update 896660 -beta beta -betapassword \"s3cret-beta\" validate\n"
    );
    assert!(
        !Path::new(&argv[7]).exists(),
        "the script file is removed after the run"
    );
}

#[tokio::test]
async fn progress_reaches_the_sink() {
    let fake = Fake::new("");
    let progress = Recorded::default();
    installer(fake.settings())
        .install_app(&fake.app(SteamOptions::default()), &progress)
        .await
        .unwrap();
    let stages = progress.stages();
    let position = |stage: &str| {
        stages
            .iter()
            .position(|s| s == stage)
            .unwrap_or_else(|| panic!("no {stage} in {stages:?}"))
    };
    assert!(position("starting-steamcmd") < position("logged-in"));
    assert!(position("logged-in") < position("downloading"));
    assert!(position("downloading") < position("committing"));
    assert!(position("committing") < position("checking-install"));
    let updates = progress.0.lock().unwrap();
    let downloading = updates.iter().find(|p| p.stage == "downloading").unwrap();
    assert_eq!(downloading.percent, Some(45.12));
    assert_eq!(downloading.bytes_done, Some(1_234_567));
    assert_eq!(downloading.bytes_total, Some(2_734_567));
}

#[tokio::test]
async fn the_port_installs_steam_games_and_refuses_local_ones() {
    let fake = Fake::new("");
    let installer = installer(fake.settings());
    let installation = installer
        .install(
            &fake.request(ServerType::Steam { app_id: APP_ID }, None),
            &NoProgress,
        )
        .await
        .unwrap();
    assert_eq!(installation.dir, fake.default_dir());
    let err = installer
        .install(
            &fake.request(
                ServerType::Local {
                    path: "valheim".into(),
                },
                None,
            ),
            &NoProgress,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, InstallError::Unsupported { .. }), "{err:?}");
    assert_eq!(fake.runs(), 1);
}

#[tokio::test]
async fn a_missing_steamcmd_is_reported_as_missing() {
    let fake = Fake::new("");
    let mut settings = fake.settings();
    settings.steamcmd = "steamcmd-not-installed".into();
    let err = installer(settings)
        .install(
            &fake.request(ServerType::Steam { app_id: APP_ID }, None),
            &NoProgress,
        )
        .await
        .unwrap_err();
    let InstallError::Missing { path, hint, .. } = err else {
        panic!("{err:?}")
    };
    assert_eq!(path, Path::new("steamcmd-not-installed"));
    assert!(
        hint.starts_with("steamcmd-unavailable: install SteamCMD"),
        "{hint}"
    );
}
