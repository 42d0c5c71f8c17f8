//! From a config and its game's directory to a [`ProcessSpec`] the worker may spawn: the
//! executable and working dir inside the game's directory (links resolved), a clean environment
//! with the config's variables expanded and checked, and the user it runs as. Whatever the host
//! sent, nothing here can leave the game's directory, hook a loader or read the worker's secrets.

use crate::config::GameServerConfig;
use crate::confined_path::{ConfinedPath, ConfinementError};
use crate::game_env::{self, SEARCH_PATH};
use crate::ports::{ProcessSpec, ProcessUser};
use crate::validation::ValidationError;
use std::collections::BTreeMap;
use std::fmt;

/// The worker's variables a game server's environment starts from; everything else of the
/// worker's environment (its credentials, its service URLs) stays out of reach of third-party
/// server code.
pub const INHERITED_ENV: [&str; 10] = [
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR",
];

/// `PATH` when the worker has none.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// What every game server's environment starts from, and what `$VAR` in a config may read:
/// the worker's [`INHERITED_ENV`], and the variables its operator passes
/// (`MANMAN_WORKER_PASS_ENV`), which only a `$VAR` reference brings in. Its `Debug` shows
/// names, never values.
#[derive(Clone, Default)]
pub struct ServerEnvironment {
    base: BTreeMap<String, String>,
    passed: BTreeMap<String, String>,
}

impl fmt::Debug for ServerEnvironment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerEnvironment")
            .field("base", &self.base.keys().collect::<Vec<_>>())
            .field("passed", &self.passed.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl ServerEnvironment {
    /// From the worker's environment `worker_env`, passing the variables named in `pass`. A
    /// name that is not a variable name, or one of ManMan's own (`MANMAN_…`), is refused.
    pub fn new(worker_env: &BTreeMap<String, String>, pass: &[String]) -> Result<Self, String> {
        let mut base: BTreeMap<String, String> = INHERITED_ENV
            .iter()
            .filter_map(|key| worker_env.get(*key).map(|v| ((*key).to_owned(), v.clone())))
            .collect();
        base.entry(SEARCH_PATH.to_owned())
            .or_insert_with(|| DEFAULT_PATH.to_owned());
        let mut passed = BTreeMap::new();
        for name in pass.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
            if !game_env::is_env_name(name) {
                return Err(format!(
                    "MANMAN_WORKER_PASS_ENV: {name:?} is not a variable name"
                ));
            }
            if let Some(reason) = game_env::refused_name(name) {
                return Err(format!(
                    "MANMAN_WORKER_PASS_ENV: {name} may not be passed to game servers: {reason}"
                ));
            }
            if let Some(value) = worker_env.get(name) {
                passed.insert(name.to_owned(), value.clone());
            }
        }
        Ok(Self { base, passed })
    }

    /// From this process's environment.
    pub fn of_this_process(pass: &[String]) -> Result<Self, String> {
        Self::new(&std::env::vars().collect(), pass)
    }
}

/// Why a config may not be started as it is. Never retried: it can only succeed once an admin
/// changes the config or the game's files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LaunchError {
    /// The config breaks the host's own rules (it was changed behind the API).
    #[error("the config breaks the rules: {0}")]
    Invalid(#[from] ValidationError),
    /// A path leaves the game's directory, or is not there.
    #[error(transparent)]
    Path(#[from] ConfinementError),
    /// The executable or the working dir is not what it must be.
    #[error("{field} {path:?}: {problem}")]
    Kind {
        /// `executable` or `working_dir`.
        field: &'static str,
        /// The path as configured.
        path: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// A variable may not be set as configured.
    #[error("env.{name}: {detail}")]
    Env {
        /// The variable.
        name: String,
        /// What is wrong and what to do.
        detail: String,
    },
}

/// The process to spawn for `config` in `game_dir`, as `user` (the worker's own when `None`).
///
/// The server gets the base of `env` plus its config's variables, expanded; `HOME` is the
/// game's directory and `USER`/`LOGNAME` the user's name when it runs as another user.
pub fn process_spec(
    config: &GameServerConfig,
    game_dir: &ConfinedPath,
    env: &ServerEnvironment,
    user: Option<&ProcessUser>,
) -> Result<ProcessSpec, LaunchError> {
    let spec = &config.spec;
    spec.validate()?;
    let program = game_dir.join(&spec.executable, "executable")?;
    if !program.as_path().is_file() {
        return Err(LaunchError::Kind {
            field: "executable",
            path: spec.executable.clone(),
            problem: "is not a file",
        });
    }
    let cwd = match &spec.working_dir {
        Some(dir) => game_dir.join(dir, "working_dir")?,
        None => game_dir.clone(),
    };
    if !cwd.as_path().is_dir() {
        return Err(LaunchError::Kind {
            field: "working_dir",
            path: spec.working_dir.clone().unwrap_or_default(),
            problem: "is not a directory",
        });
    }

    let install_dir = game_dir.as_path().to_string_lossy();
    let mut base = env.base.clone();
    if let Some(user) = user {
        base.insert("HOME".to_owned(), install_dir.clone().into_owned());
        base.insert("USER".to_owned(), user.name.clone());
        base.insert("LOGNAME".to_owned(), user.name.clone());
    }
    let mut readable = base.clone();
    readable.extend(env.passed.iter().map(|(k, v)| (k.clone(), v.clone())));
    let base_path: Vec<String> = base
        .get(SEARCH_PATH)
        .map(|p| p.split(':').map(str::to_owned).collect())
        .unwrap_or_default();

    let mut out = base;
    for (name, value) in &spec.env {
        let refused = |detail: String| LaunchError::Env {
            name: name.clone(),
            detail,
        };
        if let Some(reason) = game_env::refused_name(name) {
            return Err(refused(format!("{name} may not be set: {reason}")));
        }
        let value = game_env::expand(value, &readable, &install_dir).map_err(|var| {
            refused(format!(
                "refers to ${var}, which this worker does not pass to game servers: list it in \
                 MANMAN_WORKER_PASS_ENV on the worker (ManMan's own MANMAN_ settings never \
                 pass), or remove the reference"
            ))
        })?;
        if game_env::names_directories(name) {
            for entry in value.split(':') {
                let worker_own = name == SEARCH_PATH && base_path.iter().any(|p| p == entry);
                if !worker_own && !game_dir.holds(cwd.as_path(), entry) {
                    return Err(refused(format!(
                        "{entry:?} is outside the game's directory {game_dir}: {name} may name \
                         only the game's directories{}",
                        if name == SEARCH_PATH {
                            " and the worker's base PATH ($PATH)"
                        } else {
                            ""
                        }
                    )));
                }
            }
        }
        out.insert(name.clone(), value);
    }
    Ok(ProcessSpec {
        program: program.as_path().to_path_buf(),
        args: spec.args.clone(),
        env: out,
        cwd: cwd.as_path().to_path_buf(),
        user: user.cloned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigSpec;
    use crate::id::{ConfigId, GameServerId};

    struct Game {
        _tmp: tempfile::TempDir,
        dir: ConfinedPath,
    }

    fn game() -> Game {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("install");
        std::fs::create_dir_all(root.join("game/bin")).unwrap();
        std::fs::create_dir_all(root.join("game/linux64")).unwrap();
        std::fs::write(root.join("game/bin/server"), "").unwrap();
        std::fs::write(tmp.path().join("evil.so"), "").unwrap();
        std::os::unix::fs::symlink(tmp.path(), root.join("game/out")).unwrap();
        let dir = ConfinedPath::root(&root)
            .unwrap()
            .join("game", "server_type.path")
            .unwrap();
        Game { _tmp: tmp, dir }
    }

    fn config(spec: ConfigSpec) -> GameServerConfig {
        GameServerConfig {
            id: ConfigId(1),
            game_server_id: GameServerId(1),
            created_at: chrono::Utc::now(),
            spec,
        }
    }

    fn worker_env() -> ServerEnvironment {
        let env = BTreeMap::from([
            ("PATH".to_owned(), "/usr/bin:/bin".to_owned()),
            ("HOME".to_owned(), "/root".to_owned()),
            (
                "MANMAN_WORKER_SA_CLIENT_SECRET".to_owned(),
                "hunter2".to_owned(),
            ),
            ("STEAM_TOKEN".to_owned(), "tok".to_owned()),
            ("OTHER".to_owned(), "not passed".to_owned()),
        ]);
        ServerEnvironment::new(&env, &["STEAM_TOKEN".to_owned()]).unwrap()
    }

    #[test]
    fn paths_are_inside_the_game_and_the_environment_is_clean() {
        let game = game();
        let mut spec = ConfigSpec::new("main", "bin/server");
        spec.working_dir = Some("bin".into());
        spec.env
            .insert("LD_LIBRARY_PATH".into(), "{install_dir}/linux64:.".into());
        spec.env
            .insert("PATH".into(), "{install_dir}/bin:$PATH".into());
        spec.env.insert("TOKEN".into(), "${STEAM_TOKEN}".into());
        let user = ProcessUser {
            name: "game".into(),
            uid: 1000,
            gid: 1000,
        };
        let p = process_spec(&config(spec), &game.dir, &worker_env(), Some(&user)).unwrap();
        let dir = game.dir.as_path();
        assert_eq!(p.program, dir.join("bin/server"));
        assert_eq!(p.cwd, dir.join("bin"));
        assert_eq!(
            p.env["LD_LIBRARY_PATH"],
            format!("{}/linux64:.", dir.display())
        );
        assert_eq!(
            p.env["PATH"],
            format!("{}/bin:/usr/bin:/bin", dir.display())
        );
        assert_eq!(p.env["TOKEN"], "tok", "a passed variable expands");
        assert_eq!(p.env["HOME"], dir.to_string_lossy(), "HOME is the game's");
        assert_eq!(p.env["USER"], "game");
        assert_eq!(p.user, Some(user));
        assert!(
            !p.env.contains_key("MANMAN_WORKER_SA_CLIENT_SECRET")
                && !p.env.contains_key("STEAM_TOKEN")
                && !p.env.contains_key("OTHER"),
            "only the base and the config's own variables: {:?}",
            p.env.keys()
        );
    }

    #[test]
    fn the_worker_refuses_what_the_api_would_and_what_only_the_disk_shows() {
        let game = game();
        let refused = |spec: ConfigSpec, needle: &str| {
            let err = process_spec(&config(spec), &game.dir, &worker_env(), None)
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{err}");
        };
        let with_env = |name: &str, value: &str| {
            let mut spec = ConfigSpec::new("main", "bin/server");
            spec.env.insert(name.into(), value.into());
            spec
        };
        refused(ConfigSpec::new("main", "/bin/sh"), "absolute");
        refused(ConfigSpec::new("main", "../install/game/bin/server"), "..");
        refused(ConfigSpec::new("main", "out/evil.so"), "outside");
        refused(ConfigSpec::new("main", "bin"), "not a file");
        let mut spec = ConfigSpec::new("main", "bin/server");
        spec.working_dir = Some("out".into());
        refused(spec, "working_dir");
        refused(with_env("LD_PRELOAD", "./x.so"), "LD_PRELOAD");
        refused(with_env("BASH_ENV", "x"), "BASH_ENV");
        refused(
            with_env("S", "$MANMAN_WORKER_SA_CLIENT_SECRET"),
            "MANMAN_WORKER_PASS_ENV",
        );
        refused(with_env("S", "$OTHER"), "does not pass");
        // A link inside the game's directory that leads out: only the disk shows it.
        refused(
            with_env("LD_LIBRARY_PATH", "out"),
            "outside the game's directory",
        );
        refused(
            with_env("PATH", "out:$PATH"),
            "outside the game's directory",
        );
    }

    #[test]
    fn pass_env_never_passes_manman_settings() {
        let env = BTreeMap::new();
        assert!(ServerEnvironment::new(&env, &["MANMAN_WORKER_SA_CLIENT_SECRET".into()]).is_err());
        assert!(ServerEnvironment::new(&env, &["LD_PRELOAD".into()]).is_err());
        assert!(ServerEnvironment::new(&env, &["bad name".into()]).is_err());
        let debug = format!("{:?}", worker_env());
        assert!(
            !debug.contains("tok") && debug.contains("STEAM_TOKEN"),
            "{debug}"
        );
    }
}
