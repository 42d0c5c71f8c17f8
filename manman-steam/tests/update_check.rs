//! The update check: installed build (app manifest) against Steam's (app_info_print).

mod common;

use common::{Fake, installer};
use manman_core::config::{SteamLogin, SteamOptions};
use manman_core::ports::NoProgress;
use manman_steam::{ErrorClass, Secret, SteamCredential, UpdateStatus};

#[tokio::test]
async fn not_installed_then_up_to_date_then_update_available() {
    let fake = Fake::new("");
    let installer = installer(fake.settings());
    let app = fake.app(SteamOptions::default());

    let status = installer.check_update(&app).await.unwrap();
    assert_eq!(
        status,
        UpdateStatus::NotInstalled {
            remote: "14396345".into()
        }
    );
    assert!(status.needs_update());
    assert_eq!(
        fake.argv(1),
        [
            "+login",
            "anonymous",
            "+app_info_update",
            "1",
            "+app_info_print",
            "896660",
            "+quit"
        ]
    );
    assert!(
        !fake.default_dir().exists(),
        "a check does not create the install dir"
    );

    installer.install_app(&app, &NoProgress).await.unwrap();
    let status = installer.check_update(&app).await.unwrap();
    assert_eq!(
        status,
        UpdateStatus::UpToDate {
            build_id: "14396345".into()
        }
    );
    assert!(!status.needs_update());

    fake.set_scenario("REMOTE_PUBLIC_BUILD=15000001");
    assert_eq!(
        installer.check_update(&app).await.unwrap(),
        UpdateStatus::UpdateAvailable {
            installed: "14396345".into(),
            remote: "15000001".into()
        }
    );
}

#[tokio::test]
async fn a_beta_branch_is_compared_with_its_own_build() {
    let fake = Fake::new("BUILD_ID=14411111");
    let installer = installer(fake.settings());
    let beta = fake.app(SteamOptions {
        branch: Some("beta".into()),
        ..Default::default()
    });
    installer.install_app(&beta, &NoProgress).await.unwrap();
    assert_eq!(
        installer.check_update(&beta).await.unwrap(),
        UpdateStatus::UpToDate {
            build_id: "14411111".into()
        }
    );
    // The default branch is another dir, not installed.
    let public = fake.app(SteamOptions::default());
    assert_eq!(
        installer.check_update(&public).await.unwrap(),
        UpdateStatus::NotInstalled {
            remote: "14396345".into()
        }
    );
}

#[tokio::test]
async fn an_unknown_branch_fails_at_once() {
    let fake = Fake::new("");
    let err = installer(fake.settings())
        .check_update(&fake.app(SteamOptions {
            branch: Some("nightly".into()),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::InvalidConfig);
    assert!(
        err.what()
            .contains("no branch \"nightly\" (it has: public, beta)"),
        "{err}"
    );
    assert_eq!(fake.runs(), 1);
}

#[tokio::test]
async fn the_check_logs_in_as_configured_and_retries_transient_failures() {
    let fake = Fake::new("EXPECT_PASSWORD=pw\nLOGIN_FAILURE='No Connection'\nLOGIN_FAILURE_RUNS=1");
    let settings = fake.settings().with_credential(
        "ops",
        SteamCredential::new("ops_account", Secret::new("pw")),
    );
    let app = fake.app(SteamOptions {
        login: SteamLogin::Named("ops".into()),
        ..Default::default()
    });
    let status = installer(settings).check_update(&app).await.unwrap();
    assert!(
        matches!(status, UpdateStatus::NotInstalled { .. }),
        "{status:?}"
    );
    assert_eq!(fake.runs(), 2, "the network failure was retried");
    assert_eq!(fake.argv(2)[..2], ["+login", "ops_account"]);
    assert_eq!(fake.stdin(2), "pw\n");
}
