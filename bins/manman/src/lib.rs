//! The `manman` command line as a library: `manman up` (host and worker in one process) and the
//! client subcommands. The binary's `main` calls [`main`].

pub mod cli;
pub mod demo;
pub mod up;

use clap::Parser;
use std::process::ExitCode;

/// The whole program: parse the command line, set up logging, run, map the outcome to an exit
/// code (0 ok, 1 failed, 2 usage).
///
/// Invoked under the name `fake-game-server` (the demo game links to this executable), it is
/// the fake game server instead.
pub fn main() -> ExitCode {
    let invoked_as = std::env::args_os().next().and_then(|arg| {
        std::path::Path::new(&arg)
            .file_name()
            .map(|n| n.to_os_string())
    });
    if invoked_as.as_deref() == Some(std::ffi::OsStr::new(demo::DEMO_EXECUTABLE)) {
        let code = manman_fake_game_server::run(std::env::args().skip(1));
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    let cli = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new(
                    "warn,manman=info,manman_core=info,manman_http=info",
                )
            }),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
