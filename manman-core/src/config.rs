//! Game server configs: how to run a game (executable, args, env, stop, readiness, restarts).

use crate::id::{ConfigId, GameServerId};
use crate::validation::{ValidationError, check_name, check_relative_path};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A stored config of a game.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GameServerConfig {
    /// Its identity.
    pub id: ConfigId,
    /// The game it runs.
    pub game_server_id: GameServerId,
    /// When it was created (host clock).
    pub created_at: DateTime<Utc>,
    /// Everything an operator sets.
    #[serde(flatten)]
    pub spec: ConfigSpec,
}

/// The fields of a config an operator sets. Defaults are those of spec §2. Unknown fields are
/// refused (a typo must not silently fall back to a default).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ConfigSpec {
    /// Unique per game.
    pub name: String,
    /// The config used when a start names only the game; at most one per game.
    #[serde(default)]
    pub is_default: bool,
    /// Shown in listings; hidden configs still run.
    #[serde(default = "yes")]
    pub is_visible: bool,
    /// Path of the program, relative to the game's directory (absolute paths, `..`, control
    /// characters and links that point out are refused).
    pub executable: String,
    /// Arguments, passed as they are (no shell).
    #[serde(default)]
    pub args: Vec<String>,
    /// Extra environment. Values expand `{install_dir}` and `$VAR`/`${VAR}` from the server's
    /// base environment and the variables its worker passes (`MANMAN_WORKER_PASS_ENV`). Names
    /// that hook a loader or an interpreter are refused; `PATH` and `LD_LIBRARY_PATH` name only
    /// the game's directories (and `$PATH`) — see [`crate::game_env`].
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory relative to the game's directory (which it must stay inside, links
    /// resolved); the game's directory when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// How to stop it gracefully.
    #[serde(default)]
    pub stop: StopPolicy,
    /// A regex on console output; the server is `running` when a line matches. Absent: at spawn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_pattern: Option<String>,
    /// Seconds a server with a `ready_pattern` may take to print it; then it is a crash (cause
    /// `ready-timeout`). 0 waits for ever.
    #[serde(default = "default_ready_timeout")]
    pub ready_timeout_s: u32,
    /// What to do when it exits on its own.
    #[serde(default)]
    pub restart: RestartPolicy,
    /// Whether an exit with code 0 that nobody asked for counts as `complete` (else `crashed`).
    #[serde(default = "yes")]
    pub clean_exit_is_complete: bool,
    /// SteamCMD options, for `steam` games.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steam: Option<SteamOptions>,
}

fn yes() -> bool {
    true
}

/// Five minutes: enough for a big map to load.
fn default_ready_timeout() -> u32 {
    300
}

/// The graceful stop: stdin line, wait, signal, wait, then SIGKILL to the whole process group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct StopPolicy {
    /// A console line that asks the server to save and quit (e.g. `quit`).
    pub stdin_line: Option<String>,
    /// The signal sent when the stdin line did not end it (or there is none).
    pub signal: StopSignal,
    /// Seconds to wait after the stdin line.
    pub timeout_s: u32,
    /// Seconds to wait after the signal, before SIGKILL.
    pub signal_grace_s: u32,
}

impl Default for StopPolicy {
    fn default() -> Self {
        Self {
            stdin_line: None,
            signal: StopSignal::Term,
            timeout_s: 30,
            signal_grace_s: 10,
        }
    }
}

/// Signals a stop may send before SIGKILL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "UPPERCASE")]
pub enum StopSignal {
    /// SIGTERM.
    Term,
    /// SIGINT.
    Int,
}

/// What the worker does when a server exits without being asked to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct RestartPolicy {
    /// When to restart.
    pub mode: RestartMode,
    /// Restarts allowed within `window_s` before giving up (`crashed`, cause `crash-loop`).
    pub max_restarts: u32,
    /// The window for `max_restarts`, in seconds.
    pub window_s: u32,
    /// First backoff delay.
    pub backoff_initial_ms: u64,
    /// Largest backoff delay.
    pub backoff_max_ms: u64,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            mode: RestartMode::Never,
            max_restarts: 5,
            window_s: 600,
            backoff_initial_ms: 1_000,
            backoff_max_ms: 60_000,
        }
    }
}

/// When a server is restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum RestartMode {
    /// Never: an unexpected exit is final.
    Never,
    /// After an unexpected exit (non-zero, signal, or a failed start).
    OnCrash,
    /// After any exit nobody asked for.
    Always,
}

/// SteamCMD options of a config.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct SteamOptions {
    /// Beta branch (`-beta`).
    pub branch: Option<String>,
    /// Name of the worker-side secret holding the branch password (never the password itself).
    pub branch_password_secret: Option<String>,
    /// Run `validate` with `app_update`.
    pub validate: bool,
    /// How to log in.
    pub login: SteamLogin,
}

/// How SteamCMD logs in.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SteamLogin {
    /// `+login anonymous`.
    #[default]
    Anonymous,
    /// A credential configured on the worker, by name (the host never holds Steam passwords).
    Named(String),
}

/// Longest stop wait an operator may configure, in seconds.
pub const MAX_STOP_TIMEOUT_S: u32 = 3_600;
/// Longest ready wait an operator may configure, in seconds.
pub const MAX_READY_TIMEOUT_S: u32 = 86_400;
/// The longest restart backoff a config may ask for, in milliseconds (one day): a longer one is
/// a server that never comes back.
pub const MAX_BACKOFF_MS: u64 = 86_400_000;
/// The longest crash-counting window a config may ask for, in seconds (one week).
pub const MAX_RESTART_WINDOW_S: u32 = 604_800;

/// Whether `branch` is a Steam branch name ManMan passes to SteamCMD: 1 to 64 ASCII letters,
/// digits, `.`, `_` or `-`, starting with a letter or digit. The host checks it when a config is
/// stored, the worker again before it runs SteamCMD.
pub fn is_steam_branch_name(branch: &str) -> bool {
    branch.len() <= 64
        && branch
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && branch
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

impl ConfigSpec {
    /// A config with defaults for everything but the name and the executable.
    pub fn new(name: impl Into<String>, executable: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            is_default: false,
            is_visible: true,
            executable: executable.into(),
            args: Vec::new(),
            env: BTreeMap::new(),
            working_dir: None,
            stop: StopPolicy::default(),
            ready_pattern: None,
            ready_timeout_s: default_ready_timeout(),
            restart: RestartPolicy::default(),
            clean_exit_is_complete: true,
            steam: None,
        }
    }

    /// Checks every field; the error lists each bad field with what would be accepted.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let mut errors = ValidationError::default();
        check_name(&mut errors, "name", &self.name);
        check_relative_path(&mut errors, "executable", &self.executable);
        if let Some(dir) = &self.working_dir {
            check_relative_path(&mut errors, "working_dir", dir);
        }
        for (i, arg) in self.args.iter().enumerate() {
            if arg.contains('\0') {
                errors.push(format!("args[{i}]"), "must not contain a NUL byte");
            }
        }
        crate::game_env::check_config_env(&mut errors, &self.env);
        if let Some(pattern) = &self.ready_pattern
            && let Err(e) = regex::Regex::new(pattern)
        {
            errors.push("ready_pattern", format!("is not a valid regex: {e}"));
        }
        if let Some(line) = &self.stop.stdin_line
            && line.contains(['\n', '\r'])
        {
            errors.push("stop.stdin_line", "must be a single line");
        }
        if self.ready_timeout_s > MAX_READY_TIMEOUT_S {
            errors.push(
                "ready_timeout_s",
                format!("must be at most {MAX_READY_TIMEOUT_S} (0 waits for ever)"),
            );
        }
        if self.stop.timeout_s > MAX_STOP_TIMEOUT_S {
            errors.push(
                "stop.timeout_s",
                format!("must be at most {MAX_STOP_TIMEOUT_S}"),
            );
        }
        if self.stop.signal_grace_s > MAX_STOP_TIMEOUT_S {
            errors.push(
                "stop.signal_grace_s",
                format!("must be at most {MAX_STOP_TIMEOUT_S}"),
            );
        }
        let r = &self.restart;
        if r.backoff_initial_ms == 0 || r.backoff_initial_ms > r.backoff_max_ms {
            errors.push(
                "restart.backoff_initial_ms",
                "must be at least 1 and at most restart.backoff_max_ms",
            );
        }
        if r.backoff_max_ms > MAX_BACKOFF_MS {
            errors.push(
                "restart.backoff_max_ms",
                format!("must be at most {MAX_BACKOFF_MS} (one day)"),
            );
        }
        if r.window_s == 0 || r.window_s > MAX_RESTART_WINDOW_S {
            errors.push(
                "restart.window_s",
                format!("must be at least 1 and at most {MAX_RESTART_WINDOW_S} (one week)"),
            );
        }
        if let Some(branch) = self.steam.as_ref().and_then(|s| s.branch.as_deref())
            && !is_steam_branch_name(branch)
        {
            errors.push(
                "steam.branch",
                "must be 1 to 64 ASCII letters, digits, '.', '_' or '-', starting with a letter or digit",
            );
        }
        errors.into_result()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_spec() {
        let spec: ConfigSpec =
            serde_json::from_str(r#"{"name":"main","executable":"srcds_run"}"#).unwrap();
        assert_eq!(spec, ConfigSpec::new("main", "srcds_run"));
        assert_eq!(spec.stop.timeout_s, 30);
        assert_eq!(spec.stop.signal, StopSignal::Term);
        assert_eq!(spec.restart.max_restarts, 5);
        assert_eq!(spec.restart.window_s, 600);
        assert!(spec.is_visible);
    }

    #[test]
    fn backoffs_windows_and_branches_are_bounded() {
        let mut spec = ConfigSpec::new("main", "server");
        spec.restart.backoff_max_ms = u64::MAX;
        spec.restart.window_s = u32::MAX;
        spec.steam = Some(SteamOptions {
            branch: Some("../../../x".into()),
            ..SteamOptions::default()
        });
        let fields: Vec<String> = spec
            .validate()
            .unwrap_err()
            .errors
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(
            fields,
            ["restart.backoff_max_ms", "restart.window_s", "steam.branch"]
        );
        spec.restart = RestartPolicy::default();
        spec.steam = Some(SteamOptions {
            branch: Some("public-beta_2.1".into()),
            ..SteamOptions::default()
        });
        assert_eq!(spec.validate(), Ok(()));
        assert!(!is_steam_branch_name("-beta"));
        assert!(!is_steam_branch_name(""));
    }

    #[test]
    fn executable_must_stay_inside_the_install_dir() {
        let mut spec = ConfigSpec::new("main", "../../bin/sh");
        let err = spec.validate().unwrap_err();
        assert_eq!(err.errors[0].field, "executable");
        spec.executable = "/bin/sh".into();
        assert!(
            spec.validate()
                .unwrap_err()
                .to_string()
                .contains("absolute")
        );
    }

    #[test]
    fn env_keys_and_ready_pattern_are_checked() {
        let mut spec = ConfigSpec::new("main", "server");
        spec.env.insert("GOOD_1".into(), "x".into());
        spec.env.insert("1BAD".into(), "x".into());
        spec.env.insert("BAD-KEY".into(), "x".into());
        spec.ready_pattern = Some("(unclosed".into());
        let err = spec.validate().unwrap_err();
        let fields: Vec<_> = err.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["env.1BAD", "env.BAD-KEY", "ready_pattern"]);
    }

    #[test]
    fn unknown_fields_are_refused_and_stored_configs_still_read_back() {
        let typo = serde_json::from_str::<ConfigSpec>(
            r#"{"name":"m","executable":"x","ready_patern":"go"}"#,
        );
        assert!(typo.unwrap_err().to_string().contains("ready_patern"));
        let stored = GameServerConfig {
            id: ConfigId(1),
            game_server_id: GameServerId(2),
            created_at: Utc::now(),
            spec: ConfigSpec::new("main", "server"),
        };
        let json = serde_json::to_string(&stored).unwrap();
        assert_eq!(
            serde_json::from_str::<GameServerConfig>(&json).unwrap(),
            stored
        );
    }

    #[test]
    fn steam_login_is_plain_json() {
        let s: SteamOptions = serde_json::from_str(r#"{"login":{"named":"ops"}}"#).unwrap();
        assert_eq!(s.login, SteamLogin::Named("ops".into()));
        let s: SteamOptions = serde_json::from_str(r#"{"login":"anonymous"}"#).unwrap();
        assert_eq!(s.login, SteamLogin::Anonymous);
    }
}
