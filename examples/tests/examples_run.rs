//! The runnable examples run, and do what their READMEs say.

use std::process::Command;

fn run(binary: &str) -> String {
    let output = Command::new(binary).output().expect("run the example");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{binary}: {}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn embedded_worker_runs_a_game_server_to_completion() {
    let out = run(env!("CARGO_BIN_EXE_embedded-worker"));
    assert!(out.contains("is running"), "{out}");
    assert!(out.contains("is complete (exit code Some(0))"), "{out}");
    for status in ["created", "initializing", "running", "complete"] {
        assert!(out.contains(&format!("  {status} (")), "{status} in {out}");
    }
}

#[test]
fn custom_installer_reports_progress_and_installs_a_runnable_game() {
    let out = run(env!("CARGO_BIN_EXE_custom-installer"));
    assert!(out.contains("100.0% done"), "{out}");
    assert!(out.contains("hello from an installed game"), "{out}");
}
