//! The `manman-worker` binary's settings: what it cannot use stops it at startup, naming the
//! setting, before it connects to anything.

use std::process::Command;

const WORKER: &str = env!("CARGO_BIN_EXE_e2e-worker");

fn run(env: &[(&str, &str)]) -> (Option<i32>, String) {
    let output = Command::new(WORKER)
        .env_clear()
        .env("MANMAN_HOST_URL", "http://127.0.0.1:1")
        .env("MANMAN_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:1/%2f")
        .env("MANMAN_WORKER_NAME", "w")
        .env("MANMAN_WORKER_SA_CLIENT_ID", "mmc_x")
        .env("MANMAN_WORKER_SA_CLIENT_SECRET", "mms_x")
        .envs(env.iter().copied())
        .output()
        .expect("run");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn unusable_settings_stop_the_worker_naming_them() {
    let dir = tempfile::tempdir().expect("dir");
    let bad = dir.path().join("ops.credential");
    std::fs::write(&bad, "username = ops\n").expect("write");
    let bad = format!("ops={}", bad.display());
    for (setting, value, says) in [
        (
            "MANMAN_WORKER_STEAM_CREDENTIALS",
            bad.as_str(),
            "MANMAN_WORKER_STEAM_CREDENTIALS: ops",
        ),
        (
            "MANMAN_WORKER_STEAM_CREDENTIALS",
            "no-path",
            "is not NAME=PATH",
        ),
        (
            "MANMAN_WORKER_STEAM_SECRETS",
            "beta=/nonexistent/secret",
            "MANMAN_WORKER_STEAM_SECRETS: beta",
        ),
        ("MANMAN_WORKER_LABELS", "region", "MANMAN_WORKER_LABELS"),
        ("MANMAN_WORKER_CAPACITY", "0", "MANMAN_WORKER_CAPACITY"),
        ("MANMAN_LOG_FORMAT", "yaml", "--log-format"),
        (
            "MANMAN_WORKER_ON_SHUTDOWN",
            "sometimes",
            "MANMAN_WORKER_ON_SHUTDOWN: \"sometimes\" is neither",
        ),
        (
            "MANMAN_WORKER_ON_SHUTDOWN",
            "leave-running",
            "leave-running needs MANMAN_WORKER_SHIM",
        ),
        (
            "MANMAN_WORKER_SHIM",
            "/nonexistent/manman-shim",
            "MANMAN_WORKER_SHIM: /nonexistent/manman-shim",
        ),
        ("MANMAN_WORKER_SHIM", "/tmp", "is not an executable file"),
    ] {
        let (code, stderr) = run(&[(setting, value)]);
        assert!(
            matches!(code, Some(1 | 2)),
            "{setting}={value}: {code:?} {stderr}"
        );
        assert!(stderr.contains(says), "{setting}={value}: {stderr}");
        assert!(
            !stderr.contains("mms_x"),
            "no secret in the message: {stderr}"
        );
    }
    let (code, stderr) = run(&[("MANMAN_WORKER_SA_CLIENT_SECRET", " ")]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("MANMAN_WORKER_SA_CLIENT_SECRET is empty"),
        "{stderr}"
    );
}
