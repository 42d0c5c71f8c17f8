//! Failures through the fake SteamCMD: each error class from its real message, fatal ones
//! after one run, transient ones retried (and then successful), a "success" that does not
//! verify refused.

mod common;

use common::{APP_ID, Fake, installer};
use manman_core::config::{SteamLogin, SteamOptions};
use manman_core::game_server::ServerType;
use manman_core::ports::{GameInstaller, InstallError, NoProgress};
use manman_steam::{ErrorClass, Secret, SteamCredential, SteamError, SteamSettings};
use std::time::{Duration, Instant};

fn named() -> SteamOptions {
    SteamOptions {
        login: SteamLogin::Named("ops".into()),
        ..Default::default()
    }
}

fn with_ops(settings: SteamSettings) -> SteamSettings {
    settings.with_credential(
        "ops",
        SteamCredential::new("ops_account", Secret::new("pw")),
    )
}

async fn fail(fake: &Fake, settings: SteamSettings, options: SteamOptions) -> SteamError {
    installer(settings)
        .install_app(&fake.app(options), &NoProgress)
        .await
        .expect_err("the install must fail")
}

#[tokio::test]
async fn fatal_classes_fail_after_one_run_and_say_what_to_do() {
    let cases: [(&str, bool, ErrorClass, &str); 11] = [
        (
            "FAIL_RUNS=9\nFAIL_STATE=0x202",
            false,
            ErrorClass::DiskFull,
            "free disk space on the filesystem of",
        ),
        (
            "FAIL_RUNS=9\nFAIL_STATE=0x212",
            false,
            ErrorClass::DiskFull,
            "free disk space",
        ),
        (
            "FAIL_RUNS=9\nFAIL_LINE=\"ERROR! Failed to install app '896660' (No subscription)\"",
            false,
            ErrorClass::NoLicense,
            "cannot be downloaded anonymously",
        ),
        (
            "FAIL_RUNS=9\nFAIL_LINE=\"ERROR! Failed to install app '896660' (Invalid platform)\"",
            false,
            ErrorClass::InvalidPlatform,
            "set the worker's Steam platform",
        ),
        (
            "FAIL_RUNS=9\nFAIL_LINE=\"ERROR! Password check for AppId 896660 returned error Failure.\"",
            false,
            ErrorClass::BetaPassword,
            "fix the secret",
        ),
        (
            "EXPECT_PASSWORD=not-pw",
            true,
            ErrorClass::LoginFailed,
            "fix the username or password of credential \"ops\"",
        ),
        (
            "GUARD_CODE=12345",
            true,
            ErrorClass::SteamGuard,
            "credential \"ops\" needs Steam Guard",
        ),
        (
            "LOGIN_FAILURE='Account Logon Denied'",
            true,
            ErrorClass::SteamGuard,
            "steamcmd +login <username>",
        ),
        (
            "LOGIN_FAILURE='Rate Limit Exceeded'",
            false,
            ErrorClass::RateLimited,
            "wait at least 30 minutes — start the server again not before ",
        ),
        (
            "FAIL_RUNS=9\nFAIL_STATE=0x6",
            false,
            ErrorClass::UpdateStuck,
            "steamapps/appmanifest_896660.acf",
        ),
        (
            "FAIL_RUNS=9\nFAIL_STATE=0x206",
            false,
            ErrorClass::UpdateStuck,
            "check there is free disk space",
        ),
    ];
    for (scenario, login, class, hint) in cases {
        let fake = Fake::new(scenario);
        let (settings, options) = if login {
            (with_ops(fake.settings()), named())
        } else {
            (fake.settings(), SteamOptions::default())
        };
        let err = fail(&fake, settings, options).await;
        assert_eq!(err.class(), class, "{scenario}: {err}");
        assert_eq!(err.attempts(), 1, "{scenario}");
        assert_eq!(fake.runs(), 1, "{scenario}: a fatal class is not retried");
        assert_eq!(err.app_id(), APP_ID);
        assert_eq!(err.dir(), fake.default_dir());
        let text = err.to_string();
        assert!(text.starts_with(&format!("{}: ", class.name())), "{text}");
        assert!(text.contains(hint), "{scenario}: {text}");
    }
}

#[tokio::test]
async fn no_licence_with_a_named_account_names_the_account_to_fix() {
    let fake = Fake::new(
        "FAIL_RUNS=9\nFAIL_LINE=\"ERROR! Failed to install app '896660' (No subscription)\"",
    );
    let err = fail(&fake, with_ops(fake.settings()), named()).await;
    assert_eq!(err.class(), ErrorClass::NoLicense);
    assert!(
        err.hint()
            .contains("credential \"ops\" has no licence for app 896660"),
        "{}",
        err.hint()
    );
}

#[tokio::test]
async fn transient_classes_are_retried_and_then_succeed() {
    let cases = [
        ("FAIL_STATE=0x402", ErrorClass::Network),
        ("FAIL_STATE=0x406", ErrorClass::Network),
        ("FAIL_STATE=0x2", ErrorClass::ContentUnavailable),
        ("FAIL_STATE=0x602", ErrorClass::Network),
        ("FAIL_STATE=0x606", ErrorClass::DiskWrite),
        ("FAIL_STATE=0x626", ErrorClass::CorruptFiles),
        ("FAIL_STATE=0x6A6", ErrorClass::CorruptFiles),
        (
            "FAIL_LINE=\"ERROR! Failed to install app '896660' (Missing configuration)\"",
            ErrorClass::MissingConfiguration,
        ),
    ];
    for (failure, class) in cases {
        let fake = Fake::new(&format!("FAIL_RUNS=2\n{failure}"));
        // Two failures, then a success: what a flaky network or a busy Steam looks like.
        let installation = installer(fake.settings())
            .install_app(&fake.app(SteamOptions::default()), &NoProgress)
            .await
            .unwrap_or_else(|e| panic!("{class}: {e}"));
        assert_eq!(fake.runs(), 3, "{class}");
        assert_eq!(installation.build_id.as_deref(), Some("14396345"));

        // The same failure every time: the class is reported after max_attempts.
        let fake = Fake::new(&format!("FAIL_RUNS=9\nLOGIN_FAILURE_RUNS=9\n{failure}"));
        let err = fail(&fake, fake.settings(), SteamOptions::default()).await;
        assert_eq!(err.class(), class, "{err}");
        assert!(class.is_transient());
        assert_eq!((err.attempts(), fake.runs()), (3, 3), "{class}");
    }
}

#[tokio::test]
async fn corrupt_files_make_the_next_attempt_validate() {
    let fake = Fake::new("FAIL_RUNS=1\nFAIL_STATE=0x6A6");
    installer(fake.settings())
        .install_app(&fake.app(SteamOptions::default()), &NoProgress)
        .await
        .unwrap();
    assert!(!fake.argv(1).contains(&"validate".to_owned()));
    assert!(fake.argv(2).contains(&"validate".to_owned()));
}

#[tokio::test]
async fn a_silent_steamcmd_is_killed_and_retried() {
    let fake = Fake::new("FAIL_RUNS=1\nFAIL_MODE=hang");
    let mut settings = fake.settings();
    settings.idle_timeout = Duration::from_millis(300);
    let started = Instant::now();
    let installation = installer(settings)
        .install_app(&fake.app(SteamOptions::default()), &NoProgress)
        .await
        .unwrap();
    assert!(installation.build_id.is_some());
    assert_eq!(fake.runs(), 2);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the hung run was not killed"
    );

    let fake = Fake::new("FAIL_RUNS=9\nFAIL_MODE=hang");
    let mut settings = fake.settings();
    settings.idle_timeout = Duration::from_millis(300);
    settings.max_attempts = 2;
    let err = fail(&fake, settings, SteamOptions::default()).await;
    assert_eq!(err.class(), ErrorClass::Timeout);
    assert_eq!(err.attempts(), 2);
    assert!(err.what().contains("printed nothing for 0.3s"), "{err}");
}

#[tokio::test]
async fn a_success_without_the_executable_is_refused() {
    let fake = Fake::new("EXECUTABLE=''");
    let err = fail(&fake, fake.settings(), SteamOptions::default()).await;
    assert_eq!(err.class(), ErrorClass::IncompleteInstall);
    assert_eq!(err.attempts(), 3, "incomplete installs are retried");
    assert_eq!(fake.runs(), 3);
    assert!(
        fake.argv(2).contains(&"validate".to_owned()),
        "the retry validates"
    );
    assert!(
        err.what().contains("server.sh") && err.what().contains("is not there"),
        "{err}"
    );
    assert!(err.hint().contains("\"server.sh\""), "{}", err.hint());

    // Through the port: a Failed error whose detail starts with the class.
    let fake = Fake::new("EXECUTABLE=''");
    let mut settings = fake.settings();
    settings.max_attempts = 1;
    let err = installer(settings)
        .install(
            &fake.request(ServerType::Steam { app_id: APP_ID }, None),
            &NoProgress,
        )
        .await
        .unwrap_err();
    let InstallError::Failed { game, detail } = err else {
        panic!("{err:?}")
    };
    assert_eq!(game, "valheim");
    assert!(detail.starts_with("incomplete-install: "), "{detail}");
    assert!(
        detail.contains("Success! App '896660' fully installed."),
        "{detail}"
    );
}

#[tokio::test]
async fn other_unverifiable_successes_are_refused() {
    let cases = [
        ("EXECUTABLE_MODE=644", "is not executable (mode 644)"),
        ("WRITE_MANIFEST=0", "wrote no app manifest"),
        ("STATE_FLAGS=6", "StateFlags 6"),
        (
            "PRINT_SUCCESS=0",
            "without printing \"Success! App '896660'",
        ),
    ];
    for (scenario, what) in cases {
        let fake = Fake::new(scenario);
        let mut settings = fake.settings();
        settings.max_attempts = 1;
        let err = fail(&fake, settings, SteamOptions::default()).await;
        assert_eq!(
            err.class(),
            ErrorClass::IncompleteInstall,
            "{scenario}: {err}"
        );
        assert!(err.what().contains(what), "{scenario}: {err}");
    }
}

#[tokio::test]
async fn the_exit_code_alone_is_not_trusted() {
    // A failure message with exit code 0 is a failure.
    let fake = Fake::new("FAIL_RUNS=9\nFAIL_STATE=0x202\nEXIT_ON_FAILURE=0");
    let err = fail(&fake, fake.settings(), SteamOptions::default()).await;
    assert_eq!(err.class(), ErrorClass::DiskFull);
    // A non-zero exit without any message is a failure too, kept with its output.
    let fake = Fake::new("PRINT_SUCCESS=0\nEXIT_ON_SUCCESS=5");
    let mut settings = fake.settings();
    settings.max_attempts = 1;
    let err = fail(&fake, settings, SteamOptions::default()).await;
    assert_eq!(err.class(), ErrorClass::Unknown);
    assert!(err.what().contains("exit code 5"), "{err}");
    assert!(
        err.output()
            .iter()
            .any(|line| line == "Unloading Steam API...OK"),
        "{:?}",
        err.output()
    );
}

#[tokio::test]
async fn missing_credentials_fail_before_steamcmd_runs() {
    let fake = Fake::new("");
    let err = fail(&fake, fake.settings(), named()).await;
    assert_eq!(err.class(), ErrorClass::MissingCredential);
    assert_eq!(err.attempts(), 0);
    assert_eq!(fake.runs(), 0);
    assert!(err.what().contains("credential \"ops\""), "{err}");
}
