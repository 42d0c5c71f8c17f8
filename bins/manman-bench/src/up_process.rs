//! `manman up` as a separate process (this binary, `as-manman up`), with the readings the
//! scenarios take of it from `/proc`.

use anyhow::{Context, bail};
use manman_http::Client;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `manman up`.
#[derive(Debug)]
pub(crate) struct UpProcess {
    child: Child,
    pub(crate) client: Client,
    _data: TempDir,
}

/// A directory removed when dropped.
#[derive(Debug)]
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl UpProcess {
    /// Starts `manman up` with room for `capacity` servers, its store `store` (`memory`,
    /// `sqlite` or a `postgres://` URL, as `--store`); returns once its API answers.
    pub(crate) async fn start(capacity: usize, store: &str) -> anyhow::Result<Self> {
        let data = std::env::temp_dir().join(format!(
            "manman-bench-{}-{}",
            std::process::id(),
            chrono::Utc::now().timestamp_micros()
        ));
        std::fs::create_dir_all(&data)?;
        let data = TempDir(data);
        let mut child = Command::new(std::env::current_exe()?)
            .args([
                "as-manman",
                "up",
                "--bind",
                "127.0.0.1:0",
                "--capacity",
                &capacity.to_string(),
                "--store",
                store,
            ])
            .arg("--data-dir")
            .arg(&data.0)
            .env("RUST_LOG", crate::up_process::log_filter())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("could not start manman up")?;
        let mut reader = BufReader::new(child.stdout.take().context("stdout")?);
        let mut first = String::new();
        reader.read_line(&mut first)?;
        std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
        let url = first
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .and_then(|u| u.strip_suffix("/api/v1"))
            .with_context(|| format!("no API address in {first:?}"))?
            .to_owned();
        let token = std::fs::read_to_string(data.0.join("admin-token"))
            .context("manman up keeps its admin token in its data directory")?;
        let client = Client::new(&url).with_token(token.trim());
        let deadline = Instant::now() + Duration::from_secs(30);
        while !client.healthy().await {
            if Instant::now() > deadline {
                bail!("manman up did not answer within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Self {
            child,
            client,
            _data: data,
        })
    }

    /// The `demo` game `manman up` registers: the fake game server.
    pub(crate) async fn demo_game(&self) -> anyhow::Result<manman_core::id::GameServerId> {
        Ok(self
            .client
            .list_games()
            .await?
            .into_iter()
            .find(|g| g.name == "demo")
            .context("manman up registered no demo game")?
            .id)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory in MiB (`VmRSS`).
    pub(crate) fn rss_mib(&self) -> anyhow::Result<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        let kb: f64 = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .context("no VmRSS")?;
        Ok(kb / 1024.0)
    }

    /// CPU time used so far (user + system), in seconds.
    pub(crate) fn cpu_seconds(&self) -> anyhow::Result<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))?;
        let (_, rest) = stat.rsplit_once(')').context("stat")?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15 overall, 12 and 13 after the name.
        let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
        let per_second =
            nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)?.unwrap_or(100) as f64;
        Ok(ticks / per_second)
    }

    /// The processes whose parent is `manman up` (its game servers).
    pub(crate) fn children(&self) -> Vec<u32> {
        children_of(self.pid())
    }

    /// Sends SIGTERM.
    pub(crate) fn terminate(&self) -> anyhow::Result<()> {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.pid())?);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)?;
        Ok(())
    }

    /// Waits for the exit (bounded); its code.
    pub(crate) async fn wait(&mut self, within: Duration) -> anyhow::Result<Option<i32>> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status.code());
            }
            if Instant::now() > deadline {
                bail!("manman up did not exit within {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for UpProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `RUST_LOG` of the processes under test: `MANMAN_BENCH_RUST_LOG` (e.g. `debug`, to see
/// where a run's time goes), else `warn`.
pub(crate) fn log_filter() -> String {
    std::env::var("MANMAN_BENCH_RUST_LOG").unwrap_or_else(|_| "warn".to_owned())
}

/// Pids whose parent is `parent`, from `/proc`.
pub(crate) fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .is_some_and(|stat| {
                    stat.rsplit_once(')')
                        .and_then(|(_, rest)| {
                            rest.split_whitespace()
                                .nth(1)
                                .map(|ppid| ppid == parent.to_string())
                        })
                        .unwrap_or(false)
                })
        })
        .collect()
}

/// Whether a process exists and is not a zombie.
pub(crate) fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next().map(|s| s != "Z"))
        })
        .unwrap_or(false)
}
