//! The `manman` command line as a library: `manman up` (host and worker in one process) and the
//! client subcommands. The binary's `main` calls [`main`].
//!
//! [`cli`] holds the global flags and sends each subcommand to its noun's module in
//! [`commands`] (`game`, `config`, `instance`, `token`, …); what they share sits here: `output`
//! (what is printed), [`config_file`], `wait` (`--wait`) and `reconnect` (followed streams).

pub mod cli;
pub mod commands;
pub mod config_file;
pub mod demo;
pub mod local_admin;
pub mod login;
mod output;
pub mod private_file;
mod reconnect;
pub mod terminal_text;
pub mod up;
mod wait;

use clap::Parser;
use std::process::ExitCode;

/// The whole program: parse the command line, set up logging, run, map the outcome to an exit
/// code (0 ok, 1 failed, 2 usage).
///
/// Invoked under the name `fake-game-server` (the demo game links to this executable), it is
/// the fake game server instead.
pub fn main() -> ExitCode {
    main_from(std::env::args_os())
}

/// [`main`] with the given command line (`args[0]` is the program name).
pub fn main_from(args: impl IntoIterator<Item = std::ffi::OsString>) -> ExitCode {
    let args: Vec<std::ffi::OsString> = args.into_iter().collect();
    let invoked_as = args.first().and_then(|arg| {
        std::path::Path::new(arg)
            .file_name()
            .map(|n| n.to_os_string())
    });
    if invoked_as.as_deref() == Some(std::ffi::OsStr::new(demo::DEMO_EXECUTABLE)) {
        let rest = args
            .iter()
            .skip(1)
            .map(|a| a.to_string_lossy().into_owned());
        let code = manman_fake_game_server::run(rest);
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    let cli = cli::Cli::parse_from(args);
    manman_logging::init(
        cli.log_format,
        "warn,manman=info,manman_core=info,manman_http=info",
    );
    raise_open_file_limit();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(cli::run(cli));
    // A console's reader of stdin may still wait for a line: do not wait for it.
    runtime.shutdown_background();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Errors may quote a URL given to `--store` (or a driver's message about it).
            eprintln!(
                "error: {}",
                manman_logging::redact_url_passwords(&format!("{e:#}"))
            );
            ExitCode::FAILURE
        }
    }
}

/// A worker holds three pipes per game server: lift the soft limit on open files to the hard one.
fn raise_open_file_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
        && let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
    {
        tracing::warn!(soft, hard, error = %e, "could not raise the open-file limit");
    }
}
