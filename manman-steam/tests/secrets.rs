//! Secrets stay secret: the Steam password, the Steam Guard code and the branch password reach
//! SteamCMD (stdin, a private script) and nothing else — no argv, no log line, no error, no
//! `Debug` output — even when SteamCMD echoes its input.

mod common;

use common::{APP_ID, Fake, capture_logs, installer};
use manman_core::config::{SteamLogin, SteamOptions};
use manman_core::game_server::ServerType;
use manman_core::ports::{GameInstaller, NoProgress};
use manman_steam::{ErrorClass, Secret, SteamCredential};

const PASSWORD: &str = "Pa55-hunter2-zebra";
const GUARD: &str = "GRD7Q";
const BETA_PASSWORD: &str = "beta-s3cret-kiwi";

fn settings(fake: &Fake) -> manman_steam::SteamSettings {
    fake.settings()
        .with_credential(
            "ops",
            SteamCredential::new("ops_account", Secret::new(PASSWORD))
                .with_guard_code(Secret::new(GUARD)),
        )
        .with_secret("beta-pw", Secret::new(BETA_PASSWORD))
}

fn options() -> SteamOptions {
    SteamOptions {
        branch: Some("beta".into()),
        branch_password_secret: Some("beta-pw".into()),
        validate: true,
        login: SteamLogin::Named("ops".into()),
    }
}

fn assert_hidden(place: &str, text: &str) {
    for secret in [PASSWORD, GUARD, BETA_PASSWORD] {
        assert!(
            !text.contains(secret),
            "a secret leaked into {place}:\n{text}"
        );
    }
}

#[tokio::test]
async fn a_failed_login_leaks_no_secret_even_when_steamcmd_echoes_its_input() {
    let (_logs_guard, logs) = capture_logs();
    let fake = Fake::new(&format!(
        "ECHO_STDIN=1\nGUARD_CODE={GUARD}\nLOGIN_FAILURE='Invalid Password'"
    ));
    let installer = installer(settings(&fake));
    let err = installer
        .install(
            &fake.request(ServerType::Steam { app_id: APP_ID }, Some(options())),
            &NoProgress,
        )
        .await
        .unwrap_err();

    // SteamCMD got the password and the code on its stdin.
    assert_eq!(fake.stdin(1), format!("{PASSWORD}\n{GUARD}\n"));

    let error = err.to_string();
    assert!(
        error.starts_with("valheim: install failed: login-failed: "),
        "{error}"
    );
    // The echoed lines are in the report, scrubbed.
    assert!(error.contains("(read '[redacted]')"), "{error}");
    let log_text = logs.text();
    assert!(
        log_text.contains("running SteamCMD"),
        "the capture works:\n{log_text}"
    );
    assert!(log_text.contains("(read '[redacted]')"), "{log_text}");

    assert_hidden("argv", &fake.argv(1).join(" "));
    assert_hidden("the fake's records", &fake.all_records());
    assert_hidden("the error", &error);
    assert_hidden("the error's Debug", &format!("{err:?}"));
    assert_hidden("the logs", &log_text);
    assert_hidden("the installer's Debug", &format!("{installer:?}"));
    assert_hidden("the settings' Debug", &format!("{:?}", settings(&fake)));
}

#[tokio::test]
async fn a_successful_install_leaks_no_secret() {
    let (_logs_guard, logs) = capture_logs();
    let fake = Fake::new(&format!("EXPECT_PASSWORD={PASSWORD}\nGUARD_CODE={GUARD}"));
    let installer = installer(settings(&fake));
    let installation = installer
        .install_app(&fake.app(options()), &NoProgress)
        .await
        .unwrap();
    assert!(installation.dir.ends_with("steam/896660-beta"));
    // The branch password reached SteamCMD through the script, and only there.
    assert!(fake.script(1).unwrap().contains(BETA_PASSWORD));
    assert_hidden("argv", &fake.argv(1).join(" "));
    assert_hidden("the logs", &logs.text());
    assert!(logs.text().contains("Steam app installed and verified"));
}

#[tokio::test]
async fn a_wrong_branch_password_is_its_own_class_and_stays_hidden() {
    let (_logs_guard, logs) = capture_logs();
    let fake = Fake::new(&format!(
        "EXPECT_PASSWORD={PASSWORD}\nGUARD_CODE={GUARD}\nFAIL_RUNS=9\n\
         FAIL_LINE=\"ERROR! Password check for AppId {APP_ID} returned error Failure.\""
    ));
    let err = installer(settings(&fake))
        .install_app(&fake.app(options()), &NoProgress)
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::BetaPassword);
    assert!(err.hint().contains("secret \"beta-pw\""), "{}", err.hint());
    assert_hidden("the error", &err.to_string());
    assert_hidden("the logs", &logs.text());
}
