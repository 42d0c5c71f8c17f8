//! `manman-bench`: runs the benchmark scenarios and writes `docs/benchmarks.md`.
//!
//! The binary also serves as the system under test: invoked as `manman-bench as-manman …` it is
//! the `manman` command line, as `as-host` the `manman-host` daemon, as `as-worker` the
//! `manman-worker` daemon, and under the name `fake-game-server` it is the fake game server. So
//! one release build measures exactly the code it ships.

mod deployment;
mod fixture;
mod machine;
mod raw_limits;
mod report;
mod scenarios;
mod scratch_database;
mod up_process;

use clap::Parser;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

/// Benchmarks of ManMan; each figure is the min/median/max of repeated runs beside its target.
#[derive(Debug, Parser)]
#[command(name = "manman-bench", version, about)]
struct Options {
    /// Scenarios to run (default: all).
    #[arg(long = "scenario", value_enum)]
    scenarios: Vec<scenarios::Scenario>,
    /// Runs of each scenario.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Game servers in `worker-1000`.
    #[arg(long, default_value_t = 1000)]
    servers: usize,
    /// Seconds the servers idle while the worker's CPU is measured.
    #[arg(long, default_value_t = 30)]
    idle_secs: u64,
    /// Status events in `status-ingest`.
    #[arg(long, default_value_t = 15_000)]
    events: usize,
    /// Command round trips in `bus-round-trip`.
    #[arg(long, default_value_t = 10_000)]
    round_trips: usize,
    /// Events published per run in `bus-round-trip`.
    #[arg(long, default_value_t = 20_000)]
    bus_events: usize,
    /// Requests per route in `api-reads`.
    #[arg(long, default_value_t = 20_000)]
    api_requests: usize,
    /// Starts per run in `command-latency` (each followed by 10 stdin lines).
    #[arg(long, default_value_t = 100)]
    latency_rounds: usize,
    /// Console watchers in `console-fanout`.
    #[arg(long, default_value_t = 500)]
    fanout_watchers: usize,
    /// Seconds the watchers read in `console-fanout`.
    #[arg(long, default_value_t = 20)]
    fanout_secs: u64,
    /// Starts (then stops) in each burst of `burst`.
    #[arg(long, default_value_t = 300)]
    burst: usize,
    /// Ended instances in the store of `history-cost`.
    #[arg(long, default_value_t = 100_000)]
    ended_instances: usize,
    /// A PostgreSQL superuser URL; each run creates and drops a database of its own.
    #[arg(long, env = "MANMAN_TEST_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// The report to write (its sections for other scenarios are kept).
    #[arg(long, default_value = "docs/benchmarks.md")]
    out: PathBuf,
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    let invoked_as = args.first().and_then(|a| {
        std::path::Path::new(a)
            .file_name()
            .map(|n| n.to_os_string())
    });
    if invoked_as.as_deref() == Some(std::ffi::OsStr::new(manman::demo::DEMO_EXECUTABLE)) {
        return manman::main_from(args);
    }
    let role = args.get(1).and_then(|a| a.to_str()).map(str::to_owned);
    let as_program = |name: &str| {
        let mut program_args = vec![OsString::from(name)];
        program_args.extend(args.iter().skip(2).cloned());
        program_args
    };
    match role.as_deref() {
        Some("as-manman") => return manman::main_from(as_program("manman")),
        Some("as-host") => return manman_host::main_from(as_program("manman-host")),
        Some("as-worker") => return manman_worker::main_from(as_program("manman-worker")),
        _ => {}
    }
    let options = Options::parse_from(args);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: no async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(options: Options) -> anyhow::Result<()> {
    if cfg!(debug_assertions) {
        eprintln!(
            "warning: a debug build; run `cargo run --release -p manman-bench` for figures worth keeping"
        );
    }
    let scenarios = if options.scenarios.is_empty() {
        scenarios::Scenario::all().to_vec()
    } else {
        options.scenarios.clone()
    };
    let mut sections = Vec::new();
    for scenario in scenarios {
        eprintln!("== {}", scenario.name());
        let settings = scenarios::Settings {
            runs: options.runs.max(1),
            servers: options.servers,
            idle_secs: options.idle_secs,
            events: options.events,
            database_url: options.database_url.clone(),
            round_trips: options.round_trips,
            events_per_round: options.bus_events,
            api_requests: options.api_requests,
            latency_rounds: options.latency_rounds,
            fanout_watchers: options.fanout_watchers,
            fanout_secs: options.fanout_secs,
            ended_instances: options.ended_instances,
            burst: options.burst,
        };
        sections.push(scenario.run(&settings).await?);
    }
    let order: Vec<&str> = scenarios::Scenario::all()
        .iter()
        .map(|s| s.name())
        .collect();
    report::write(&options.out, &machine::describe(), &order, &sections)?;
    eprintln!("wrote {}", options.out.display());
    Ok(())
}
