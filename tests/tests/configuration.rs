//! `docs/configuration.md` says what the binaries' `--help` says: every variable, its flag and
//! its default, and nothing the binaries do not read.

use std::collections::BTreeSet;
use std::process::Command;

const DOC: &str = include_str!("../../docs/configuration.md");

/// `(variable, flag, default)` of every setting in a `--help` text.
fn settings(help: &str) -> Vec<(String, String, Option<String>)> {
    let mut found = Vec::new();
    let mut flag = String::new();
    for line in help.lines() {
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix("--") {
            flag = format!("--{}", rest.split([' ', '<']).next().unwrap_or_default());
        } else if let Some(rest) = trimmed.strip_prefix("-h, --") {
            flag = format!("--{}", rest.split(' ').next().unwrap_or_default());
        }
        if let Some(at) = line.find("[env: ") {
            let var: String = line[at + 6..]
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || *c == '_')
                .collect();
            let default = line.find("[default: ").map(|d| {
                line[d + 10..]
                    .split(']')
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            });
            found.push((var, flag.clone(), default));
        } else if let Some(d) = line.find("[default: ")
            && let Some(last) = found.last_mut()
            && last.1 == flag
            && last.2.is_none()
        {
            last.2 = Some(
                line[d + 10..]
                    .split(']')
                    .next()
                    .unwrap_or_default()
                    .to_owned(),
            );
        }
    }
    found
}

/// The doc's section of a binary (up to the next `## `).
fn section(name: &str) -> &'static str {
    let start = DOC
        .find(&format!("\n## {name}\n"))
        .unwrap_or_else(|| panic!("docs/configuration.md has no section `## {name}`"));
    let rest = &DOC[start + 4..];
    rest.find("\n## ").map_or(rest, |end| &rest[..end])
}

fn help(binary: &str, args: &[&str]) -> String {
    let output = Command::new(binary)
        .args(args)
        .arg("--help")
        .output()
        .expect("run --help");
    assert!(output.status.success(), "{binary} {args:?} --help");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn check(name: &str, helps: &[String]) {
    let doc = section(name);
    let mut in_help = BTreeSet::new();
    for help in helps {
        for (var, flag, default) in settings(help) {
            let row = doc
                .lines()
                .find(|l| l.starts_with(&format!("| `{var}` | `{flag}` |")))
                .unwrap_or_else(|| {
                    panic!("docs/configuration.md `## {name}` has no row for {var} ({flag})")
                });
            if let Some(default) = default {
                assert!(
                    row.contains(&format!("`{default}`")),
                    "{var}: the default is {default}, the doc says: {row}"
                );
            }
            in_help.insert(var);
        }
    }
    for line in doc.lines().filter(|l| l.starts_with("| `")) {
        let var = line[3..].split('`').next().unwrap_or_default();
        assert!(
            in_help.contains(var),
            "docs/configuration.md `## {name}` documents {var}, which {name} does not read"
        );
    }
}

#[test]
fn the_host_settings_are_documented() {
    check("manman-host", &[help(env!("CARGO_BIN_EXE_e2e-host"), &[])]);
}

#[test]
fn the_worker_settings_are_documented() {
    check(
        "manman-worker",
        &[help(env!("CARGO_BIN_EXE_e2e-worker"), &[])],
    );
}

#[test]
fn the_command_line_settings_are_documented() {
    let manman = env!("CARGO_BIN_EXE_e2e-manman");
    check("manman", &[help(manman, &[]), help(manman, &["up"])]);
}

#[test]
fn secrets_are_not_shown_by_help() {
    let output = Command::new(env!("CARGO_BIN_EXE_e2e-host"))
        .arg("--help")
        .env("MANMAN_POSTGRES_URL", "postgres://u:hunter2@db/manman")
        .env(
            "MANMAN_TOKEN_SIGNING_KEY",
            "hunter2hunter2hunter2hunter2hunter2",
        )
        .output()
        .expect("help");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(!text.contains("hunter2"), "{text}");
}
