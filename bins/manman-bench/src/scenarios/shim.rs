//! `shim`: what running a game server through `manman-shim` costs, beside starting it directly
//! in the same run — the shim's memory per server, and its added stdin → echo latency.

use crate::report::{Figure, Section, Target};
use crate::scenarios::Settings;
use anyhow::{Context, bail};
use manman_core::config::StopPolicy;
use manman_core::id::InstanceId;
use manman_core::ports::{OutputLine, ProcessRunner, ProcessSpec, ServerLaunch, SpawnedProcess};
use manman_core::process::{ShimProcessRunner, TokioProcessRunner};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Servers started through shims, for the memory figures.
const SERVERS: usize = 20;
/// Stdin lines timed on each runner.
const ROUNDS: usize = 400;
/// The longest wait for an echo.
const ECHO_TIMEOUT: Duration = Duration::from_secs(10);

struct Run {
    /// One shim's RSS by what it maps: shared libraries, the shim's code, the rest (KiB).
    breakdown: (f64, f64, f64),
    rss_kib: f64,
    private_kib: f64,
    direct_p50_ms: f64,
    shim_p50_ms: f64,
    direct_p99_ms: f64,
    shim_p99_ms: f64,
}

pub(crate) async fn run(settings: &Settings) -> anyhow::Result<Section> {
    let shim = shim_program()?;
    let mut breakdown = (0.0, 0.0, 0.0);
    let mut rss = Figure::new("shim RSS per server", "MiB", Target::AtMost(1.0));
    let mut private = Figure::new(
        "shim private memory per server (USS: its own pages, not the shared libraries')",
        "MiB",
        Target::None,
    );
    let mut direct_p50 = Figure::new("stdin → echo, direct child, p50", "ms", Target::None);
    let mut shim_p50 = Figure::new("stdin → echo, through the shim, p50", "ms", Target::None);
    let mut added = Figure::new(
        "added stdin → echo latency of the shim, p50",
        "ms",
        Target::AtMost(0.2),
    );
    let mut direct_p99 = Figure::new("stdin → echo, direct child, p99", "ms", Target::None);
    let mut shim_p99 = Figure::new("stdin → echo, through the shim, p99", "ms", Target::None);
    for i in 1..=settings.runs {
        eprintln!("  run {i}/{}", settings.runs);
        let r = one_run(&shim).await?;
        eprintln!(
            "    RSS {:.0} KiB, private {:.0} KiB per shim; echo p50 {:.3} ms direct, {:.3} ms shim",
            r.rss_kib, r.private_kib, r.direct_p50_ms, r.shim_p50_ms
        );
        breakdown = r.breakdown;
        rss.values.push(r.rss_kib / 1024.0);
        private.values.push(r.private_kib / 1024.0);
        direct_p50.values.push(r.direct_p50_ms);
        shim_p50.values.push(r.shim_p50_ms);
        added.values.push(r.shim_p50_ms - r.direct_p50_ms);
        direct_p99.values.push(r.direct_p99_ms);
        shim_p99.values.push(r.shim_p99_ms);
    }
    Ok(Section {
        scenario: "shim",
        title: "Shim: the cost of servers that outlive the worker".to_owned(),
        method: format!(
            "In the bench's own process, without services: {SERVERS} fake game servers are \
             started through `manman-shim` (the `ShimProcessRunner` a worker with \
             `MANMAN_WORKER_SHIM` uses) and their shims' `VmRSS` and private pages \
             (`Private_Clean + Private_Dirty` of `/proc/<pid>/smaps_rollup`) read and averaged. \
             Then one server started directly (`TokioProcessRunner`) and one through a shim each \
             get {ROUNDS} stdin lines, one at a time, each timed from `write_line` until the \
             server's `echo:` line comes out of the runner; the two runs alternate line by line, \
             so both see the same machine. The shim is the release `manman-shim` beside the \
             bench."
        ),
        figures: vec![
            rss, private, direct_p50, shim_p50, added, direct_p99, shim_p99,
        ],
        notes: vec![format!(
            "RSS counts the pages a shim shares with other processes: of the last run's first \
             shim, {:.2} MiB are shared libraries (the C library and the loader, resident for \
             every process of the machine), {:.2} MiB the shim's code (one copy for all shims) \
             and {:.2} MiB the rest, its own. The private figure is what each more server adds.",
            breakdown.0 / 1024.0,
            breakdown.1 / 1024.0,
            breakdown.2 / 1024.0
        )],
    })
}

/// The release `manman-shim` beside this bench.
fn shim_program() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let shim = exe.with_file_name("manman-shim");
    if !shim.exists() {
        bail!(
            "{} is missing: build it beside the bench (cargo build --release -p manman-bench -p \
             manman-shim)",
            shim.display()
        );
    }
    Ok(shim)
}

fn fake_server_spec(dir: &Path) -> anyhow::Result<ProcessSpec> {
    let program = dir.join(manman::demo::DEMO_EXECUTABLE);
    if !program.exists() {
        manman_test_support::game_files::install_program(std::env::current_exe()?, &program);
    }
    Ok(ProcessSpec {
        program,
        args: Vec::new(),
        env: BTreeMap::new(),
        cwd: dir.to_path_buf(),
        user: None,
    })
}

fn launch(id: i64) -> ServerLaunch {
    ServerLaunch {
        instance_id: InstanceId(id),
        spawn: id.unsigned_abs(),
        first_seq: 1,
        stop: StopPolicy::default(),
    }
}

async fn until(output: &mut mpsc::Receiver<OutputLine>, text: &str) -> anyhow::Result<()> {
    tokio::time::timeout(ECHO_TIMEOUT, async {
        while let Some(line) = output.recv().await {
            if line.text == text {
                return Ok(());
            }
        }
        bail!("the output ended before {text:?}")
    })
    .await
    .with_context(|| format!("no {text:?} within {ECHO_TIMEOUT:?}"))?
}

/// `VmRSS` and private pages of `pid`, in KiB.
fn memory_kib(pid: u32) -> anyhow::Result<(f64, f64)> {
    let field = |text: &str, name: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))?;
    Ok((
        field(&status, "VmRSS:"),
        field(&rollup, "Private_Clean:") + field(&rollup, "Private_Dirty:"),
    ))
}

/// The RSS of `pid` by mapping (KiB): shared libraries, the executable `program`, the rest.
fn rss_by_mapping(pid: u32, program: &Path) -> anyhow::Result<(f64, f64, f64)> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps"))?;
    let program = program.to_string_lossy();
    let (mut libraries, mut code, mut rest) = (0.0, 0.0, 0.0);
    let mut mapping = String::new();
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or_default();
        if first.contains('-') && !first.ends_with(':') {
            mapping = line
                .split_whitespace()
                .nth(5)
                .unwrap_or_default()
                .to_owned();
        } else if let Some(kib) = line.strip_prefix("Rss:") {
            let kib: f64 = kib.trim().trim_end_matches(" kB").parse().unwrap_or(0.0);
            if mapping.contains(".so") {
                libraries += kib;
            } else if mapping == program {
                code += kib;
            } else {
                rest += kib;
            }
        }
    }
    Ok((libraries, code, rest))
}

fn parent_of(pid: u32) -> anyhow::Result<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(1))
        .and_then(|p| p.parse().ok())
        .context("no parent in /proc/<pid>/stat")
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

async fn one_run(shim: &Path) -> anyhow::Result<Run> {
    let dir = tempfile::tempdir()?;
    let spec = fake_server_spec(dir.path())?;
    let shims = ShimProcessRunner::new(shim, dir.path().join("shims"));
    let direct = TokioProcessRunner::new();

    let mut servers: Vec<SpawnedProcess> = Vec::new();
    for n in 0..SERVERS {
        let mut server = shims.spawn_server(&spec, &launch(n as i64 + 1)).await?;
        until(&mut server.output, "Server is ready").await?;
        servers.push(server);
    }
    let breakdown = rss_by_mapping(parent_of(servers[0].handle.pid())?, shim)?;
    let (mut rss, mut private) = (0.0, 0.0);
    for server in &servers {
        let (r, p) = memory_kib(parent_of(server.handle.pid())?)?;
        rss += r;
        private += p;
    }

    let mut through_shim = servers.remove(0);
    let mut child = direct.spawn(&spec).await?;
    until(&mut child.output, "Server is ready").await?;
    let (mut direct_ms, mut shim_ms) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        for (server, times) in [
            (&mut child, &mut direct_ms),
            (&mut through_shim, &mut shim_ms),
        ] {
            let line = format!("ping {round}");
            let began = Instant::now();
            server.handle.write_line(&line)?;
            until(&mut server.output, &format!("echo: {line}")).await?;
            times.push(began.elapsed().as_secs_f64() * 1000.0);
        }
    }
    for server in servers.iter().chain([&through_shim, &child]) {
        server.handle.write_line("quit")?;
    }
    for server in servers.iter().chain([&through_shim, &child]) {
        tokio::time::timeout(ECHO_TIMEOUT, server.handle.wait())
            .await
            .context("a fake server did not quit")?;
        // Its exit is taken note of: its shim may go.
        server.handle.release();
    }
    direct_ms.sort_by(f64::total_cmp);
    shim_ms.sort_by(f64::total_cmp);
    Ok(Run {
        breakdown,
        rss_kib: rss / SERVERS as f64,
        private_kib: private / SERVERS as f64,
        direct_p50_ms: percentile(&direct_ms, 0.5),
        shim_p50_ms: percentile(&shim_ms, 0.5),
        direct_p99_ms: percentile(&direct_ms, 0.99),
        shim_p99_ms: percentile(&shim_ms, 0.99),
    })
}
