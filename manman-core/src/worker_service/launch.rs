//! From a config and an installation to a [`ProcessSpec`]: paths inside the install dir, the
//! environment expanded.

use crate::config::GameServerConfig;
use crate::ports::{Installation, ProcessSpec};
use std::collections::BTreeMap;

/// The worker's variables a game server inherits; everything else of the worker's environment
/// (its credentials, its service URLs) stays out of reach of third-party server code.
pub const INHERITED_ENV: [&str; 10] = [
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR",
];

/// The process to spawn for `config` installed at `installation`. `worker_env` is what `$VAR`
/// expands from (usually the worker's environment); the process gets [`INHERITED_ENV`] from it
/// plus the config's own variables.
pub fn process_spec(
    config: &GameServerConfig,
    installation: &Installation,
    worker_env: &BTreeMap<String, String>,
) -> ProcessSpec {
    let dir = &installation.dir;
    let install_dir = dir.to_string_lossy();
    let mut env: BTreeMap<String, String> = INHERITED_ENV
        .iter()
        .filter_map(|key| {
            worker_env
                .get(*key)
                .map(|value| ((*key).to_owned(), value.clone()))
        })
        .collect();
    env.extend(
        config
            .spec
            .env
            .iter()
            .map(|(k, v)| (k.clone(), expand_env_value(v, worker_env, &install_dir))),
    );
    ProcessSpec {
        program: dir.join(&config.spec.executable),
        args: config.spec.args.clone(),
        env,
        cwd: config
            .spec
            .working_dir
            .as_ref()
            .map_or_else(|| dir.clone(), |w| dir.join(w)),
    }
}

/// Expands `$VAR` and `${VAR}` from `vars` (unset: empty), `{install_dir}`, and `$$` to `$`.
pub fn expand_env_value(value: &str, vars: &BTreeMap<String, String>, install_dir: &str) -> String {
    let value = value.replace("{install_dir}", install_dir);
    let mut out = String::with_capacity(value.len());
    let mut rest = value.as_str();
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        rest = &rest[pos + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
        } else if let Some(braced) = rest.strip_prefix('{')
            && let Some(end) = braced.find('}')
        {
            out.push_str(vars.get(&braced[..end]).map_or("", String::as_str));
            rest = &braced[end + 1..];
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            if end == 0 {
                out.push('$');
            } else {
                out.push_str(vars.get(&rest[..end]).map_or("", String::as_str));
            }
            rest = &rest[end..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigSpec;
    use crate::id::{ConfigId, GameServerId};
    use std::path::PathBuf;

    #[test]
    fn variables_expand() {
        let vars = BTreeMap::from([("HOME".to_owned(), "/home/game".to_owned())]);
        let e = |v: &str| expand_env_value(v, &vars, "/srv/cs2");
        assert_eq!(e("$HOME/x"), "/home/game/x");
        assert_eq!(e("${HOME}x"), "/home/gamex");
        assert_eq!(e("{install_dir}/linux64:$UNSET"), "/srv/cs2/linux64:");
        assert_eq!(e("cost $$5 and $"), "cost $5 and $");
    }

    #[test]
    fn paths_are_inside_the_installation() {
        let mut spec = ConfigSpec::new("main", "bin/server");
        spec.working_dir = Some("game".into());
        spec.env
            .insert("LD_LIBRARY_PATH".into(), "{install_dir}/linux64".into());
        let config = GameServerConfig {
            id: ConfigId(1),
            game_server_id: GameServerId(1),
            created_at: chrono::Utc::now(),
            spec,
        };
        let installation = Installation {
            dir: PathBuf::from("/srv/cs2"),
            build_id: None,
        };
        let worker_env = BTreeMap::from([
            ("PATH".to_owned(), "/usr/bin".to_owned()),
            (
                "MANMAN_WORKER_SA_CLIENT_SECRET".to_owned(),
                "hunter2".to_owned(),
            ),
        ]);
        let p = process_spec(&config, &installation, &worker_env);
        assert_eq!(p.program, PathBuf::from("/srv/cs2/bin/server"));
        assert_eq!(p.cwd, PathBuf::from("/srv/cs2/game"));
        assert_eq!(p.env["LD_LIBRARY_PATH"], "/srv/cs2/linux64");
        assert_eq!(p.env["PATH"], "/usr/bin");
        assert!(
            !p.env.contains_key("MANMAN_WORKER_SA_CLIENT_SECRET"),
            "the worker's secrets stay out"
        );
    }
}
