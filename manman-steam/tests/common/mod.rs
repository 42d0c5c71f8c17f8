//! Test fixtures: a fake SteamCMD in a private directory, a recording progress sink and a log
//! capture.

#![allow(dead_code, unreachable_pub)]

use manman_core::config::{ConfigSpec, GameServerConfig, SteamOptions};
use manman_core::game_server::{GameServer, ServerType};
use manman_core::id::{ConfigId, GameServerId};
use manman_core::ports::{InstallProgress, InstallRequest, ProgressSink};
use manman_core::process::TokioProcessRunner;
use manman_steam::{Backoff, SteamApp, SteamInstaller, SteamSettings};
use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The app id the tests install (Valheim's dedicated server).
pub const APP_ID: u32 = 896660;

/// A fake SteamCMD (tests/fixtures/fake-steamcmd) copied into its own temporary directory,
/// so that what it records (argv, stdin, runs) belongs to one test.
pub struct Fake {
    pub dir: tempfile::TempDir,
    pub steamcmd: PathBuf,
    pub install_root: PathBuf,
}

impl Fake {
    /// A fake SteamCMD playing `scenario` (bash variable assignments, see the fixture).
    pub fn new(scenario: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("steamcmd-home");
        std::fs::create_dir(&bin).unwrap();
        let steamcmd = bin.join("steamcmd.sh");
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fake-steamcmd"),
            &steamcmd,
        )
        .unwrap();
        std::fs::set_permissions(&steamcmd, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(bin.join("scenario"), scenario).unwrap();
        let install_root = dir.path().join("games");
        Self {
            dir,
            steamcmd,
            install_root,
        }
    }

    /// Settings for tests: this fake, millisecond backoff, 3 attempts, a 5 s idle timeout.
    pub fn settings(&self) -> SteamSettings {
        SteamSettings {
            steamcmd: self.steamcmd.clone(),
            env: BTreeMap::from([
                ("PATH".to_owned(), "/usr/bin:/bin".to_owned()),
                ("HOME".to_owned(), self.dir.path().display().to_string()),
            ]),
            max_attempts: 3,
            backoff: Backoff {
                initial: Duration::from_millis(1),
                max: Duration::from_millis(5),
            },
            idle_timeout: Duration::from_secs(5),
            ..Default::default()
        }
    }

    /// The app to install: [`APP_ID`] with `options`, executable `server.sh`.
    pub fn app(&self, options: SteamOptions) -> SteamApp {
        SteamApp {
            game: "valheim".to_owned(),
            app_id: APP_ID,
            options,
            executable: Some("server.sh".to_owned()),
            install_root: self.install_root.clone(),
            run_as: None,
        }
    }

    /// The same as an [`InstallRequest`], for the `GameInstaller` port.
    pub fn request(
        &self,
        server_type: ServerType,
        options: Option<SteamOptions>,
    ) -> InstallRequest {
        let mut spec = ConfigSpec::new("main", "server.sh");
        spec.steam = options;
        InstallRequest {
            game: GameServer {
                id: GameServerId(1),
                name: "valheim".to_owned(),
                server_type,
                created_at: chrono::Utc::now(),
            },
            config: GameServerConfig {
                id: ConfigId(1),
                game_server_id: GameServerId(1),
                created_at: chrono::Utc::now(),
                spec,
            },
            install_root: self.install_root.clone(),
            run_as: None,
        }
    }

    /// Replaces the scenario for the next runs.
    pub fn set_scenario(&self, scenario: &str) {
        std::fs::write(self.steamcmd.parent().unwrap().join("scenario"), scenario).unwrap();
    }

    fn file(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(self.steamcmd.parent().unwrap().join(name)).ok()
    }

    /// How many times the fake ran.
    pub fn runs(&self) -> usize {
        self.file("runs").map_or(0, |runs| runs.lines().count())
    }

    /// The argv of run `n` (1-based).
    pub fn argv(&self, n: usize) -> Vec<String> {
        self.file(&format!("argv.{n}"))
            .unwrap_or_else(|| panic!("no run {n}"))
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// What run `n` read on stdin.
    pub fn stdin(&self, n: usize) -> String {
        self.file(&format!("stdin.{n}")).unwrap_or_default()
    }

    /// Whether the process of run `n` is still alive (a zombie waiting to be reaped is not).
    pub fn alive(&self, n: usize) -> bool {
        let pid = self
            .file(&format!("pid.{n}"))
            .unwrap_or_else(|| panic!("no run {n}"));
        std::fs::read_to_string(format!("/proc/{}/stat", pid.trim()))
            .is_ok_and(|stat| !stat.rsplit(") ").next().unwrap_or("").starts_with('Z'))
    }

    /// The +runscript content of run `n`, if it had one.
    pub fn script(&self, n: usize) -> Option<String> {
        self.file(&format!("script.{n}"))
    }

    /// Every file the fake recorded, concatenated (to search for a leaked secret).
    pub fn all_records(&self) -> String {
        let dir = self.steamcmd.parent().unwrap();
        let mut all = String::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with("argv.") || name == "runs" || name == "timeline" {
                all.push_str(&std::fs::read_to_string(&path).unwrap());
            }
        }
        all
    }

    /// The most runs that were going at the same time.
    pub fn max_overlap(&self) -> usize {
        let timeline = self.file("timeline").unwrap_or_default();
        let mut events: Vec<(u128, i32)> = timeline
            .lines()
            .map(|line| {
                let (at, what) = line.split_once(' ').unwrap();
                (at.parse().unwrap(), if what == "start" { 1 } else { -1 })
            })
            .collect();
        events.sort();
        let (mut now, mut max) = (0, 0);
        for (_, delta) in events {
            now += delta;
            max = max.max(now);
        }
        usize::try_from(max).unwrap()
    }

    /// The install dir of the default branch.
    pub fn default_dir(&self) -> PathBuf {
        self.install_root.join("steam").join(APP_ID.to_string())
    }
}

/// An installer with `settings` and the real process runner.
pub fn installer(settings: SteamSettings) -> SteamInstaller {
    SteamInstaller::new(settings, Arc::new(TokioProcessRunner::new()))
}

/// A progress sink that keeps every update.
#[derive(Debug, Default)]
pub struct Recorded(pub Mutex<Vec<InstallProgress>>);

impl ProgressSink for Recorded {
    fn report(&self, progress: InstallProgress) {
        self.0.lock().unwrap().push(progress);
    }
}

impl Recorded {
    pub fn stages(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|p| p.stage.clone())
            .collect()
    }
}

/// A log buffer that tracing writes to.
#[derive(Debug, Clone, Default)]
pub struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl LogBuffer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = Self;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Captures every log line (all levels) of this thread until the guard is dropped. Use with
/// a current-thread runtime (`#[tokio::test]`), where every task runs on this thread.
pub fn capture_logs() -> (tracing::subscriber::DefaultGuard, LogBuffer) {
    let buffer = LogBuffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(buffer.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .finish();
    (tracing::subscriber::set_default(subscriber), buffer)
}
