//! The rules of a game server's environment, as a config writes it: variables that make a
//! loader or an interpreter run code of the writer's choosing are refused, `$VAR` reads only
//! what the worker's operator passes (never ManMan's own settings), and the search paths
//! (`PATH`, `LD_LIBRARY_PATH`) name only the game's own directories — plus, for `PATH`, the
//! worker's base `PATH` through `$PATH`.
//!
//! The host applies these rules to the text at the API ([`check_config_env`]); the worker
//! applies them again, on the expanded values and the files, before every spawn
//! (`worker_service::process_spec`).

use crate::confined_path::check_relative;
use crate::validation::ValidationError;
use std::collections::BTreeMap;

/// The variable that names the dynamic loader's library directories.
pub const LIBRARY_PATH: &str = "LD_LIBRARY_PATH";
/// The variable that names the directories programs are looked up in.
pub const SEARCH_PATH: &str = "PATH";
/// The variable that names the home directory: the game's directory unless a config names
/// another inside it (programs read their start-up files from it).
pub const HOME: &str = "HOME";

/// The variables whose value names directories that must be the game's own (`:`-separated).
pub fn names_directories(name: &str) -> bool {
    matches!(name, SEARCH_PATH | LIBRARY_PATH | HOME)
}
/// What `{install_dir}` in a value stands for: the game's directory.
pub const INSTALL_DIR: &str = "{install_dir}";

/// Why a config may not set the variable `name`, if it may not.
pub fn refused_name(name: &str) -> Option<&'static str> {
    const LOADER: &str = "it makes the dynamic loader load or run code of the writer's choosing";
    const SHELL: &str = "it makes a shell run code at start or while it runs";
    const INTERPRETER: &str = "it makes an interpreter load code of the writer's choosing";
    const LIBC: &str = "it makes the C library load files of the writer's choosing";
    const OURS: &str = "it is one of ManMan's own settings, which never reach game servers";
    if name.starts_with("MANMAN_") {
        return Some(OURS);
    }
    if (name.starts_with("LD_") && name != LIBRARY_PATH) || name.starts_with("DYLD_") {
        return Some(LOADER);
    }
    if name.starts_with("BASH_FUNC_")
        || matches!(
            name,
            "BASH_ENV" | "ENV" | "SHELLOPTS" | "BASHOPTS" | "PS4" | "PROMPT_COMMAND"
        )
    {
        return Some(SHELL);
    }
    let harmless_python = matches!(
        name,
        "PYTHONUNBUFFERED" | "PYTHONIOENCODING" | "PYTHONDONTWRITEBYTECODE" | "PYTHONUTF8"
    );
    if (name.starts_with("PYTHON") && !harmless_python)
        || name.starts_with("PERL5")
        || name.starts_with("CORECLR_")
        || name.starts_with("COR_PROFILER")
        || name.starts_with("LUA_INIT")
        || matches!(
            name,
            "WINESERVER"
                | "WINELOADER"
                | "WINEDLLPATH"
                | "MONO_CONFIG"
                | "MONO_PATH"
                | "MONO_GAC_PREFIX"
                | "DOTNET_ADDITIONAL_DEPS"
                | "DOTNET_SHARED_STORE"
                | "RUBYGEMS_GEMDEPS"
                | "BASH_LOADABLES_PATH"
                | "PERLLIB"
                | "RUBYOPT"
                | "RUBYLIB"
                | "NODE_OPTIONS"
                | "NODE_PATH"
                | "JAVA_TOOL_OPTIONS"
                | "_JAVA_OPTIONS"
                | "JDK_JAVA_OPTIONS"
                | "DOTNET_STARTUP_HOOKS"
                | "MONO_ENV_OPTIONS"
                | "LUA_PATH"
                | "LUA_CPATH"
                | "TCLLIBPATH"
        )
    {
        return Some(INTERPRETER);
    }
    if matches!(
        name,
        "GCONV_PATH"
            | "HOSTALIASES"
            | "LOCPATH"
            | "NLSPATH"
            | "RESOLV_HOST_CONF"
            | "GLIBC_TUNABLES"
    ) {
        return Some(LIBC);
    }
    None
}

/// A piece of a value: text as it is, or a `$VAR` / `${VAR}` reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Piece<'a> {
    Text(&'a str),
    Var(&'a str),
}

/// Splits a value into text and references; `$$` is a `$`, a `$` before no name is kept.
fn pieces(value: &str) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    let mut rest = value;
    while let Some(pos) = rest.find('$') {
        if pos > 0 {
            out.push(Piece::Text(&rest[..pos]));
        }
        let after = &rest[pos + 1..];
        if let Some(after) = after.strip_prefix('$') {
            out.push(Piece::Text("$"));
            rest = after;
        } else if let Some(braced) = after.strip_prefix('{')
            && let Some(end) = braced.find('}')
        {
            out.push(Piece::Var(&braced[..end]));
            rest = &braced[end + 1..];
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            if end == 0 {
                out.push(Piece::Text("$"));
            } else {
                out.push(Piece::Var(&after[..end]));
            }
            rest = &after[end..];
        }
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest));
    }
    out
}

/// The variables `value` reads with `$VAR` or `${VAR}`.
pub fn references(value: &str) -> Vec<&str> {
    pieces(value)
        .into_iter()
        .filter_map(|piece| match piece {
            Piece::Var(name) => Some(name),
            Piece::Text(_) => None,
        })
        .collect()
}

/// Expands `{install_dir}` and every `$VAR` / `${VAR}` from `vars`; `$$` is a `$`. A reference
/// to a variable `vars` does not hold is an error naming it.
pub fn expand(
    value: &str,
    vars: &BTreeMap<String, String>,
    install_dir: &str,
) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    for piece in pieces(value) {
        match piece {
            // After the split: a `$` in the directory's name is not read as a reference.
            Piece::Text(text) => out.push_str(&text.replace(INSTALL_DIR, install_dir)),
            Piece::Var(name) => out.push_str(vars.get(name).ok_or_else(|| name.to_owned())?),
        }
    }
    Ok(out)
}

/// Checks a config's `env` as text: names ([`refused_name`] and the `[A-Za-z_][A-Za-z0-9_]*`
/// form), no NUL, no reference to a `MANMAN_` variable, and directories ([`names_directories`]:
/// `PATH`, `LD_LIBRARY_PATH`, `HOME`) that are only the game's (`{install_dir}/…` or relative,
/// no `..`; `$PATH` in `PATH`).
pub fn check_config_env(errors: &mut ValidationError, env: &BTreeMap<String, String>) {
    for (name, value) in env {
        let field = format!("env.{name}");
        if !is_env_name(name) {
            errors.push(
                &field,
                "is not a valid variable name: use [A-Za-z_][A-Za-z0-9_]*",
            );
            continue;
        }
        if let Some(reason) = refused_name(name) {
            errors.push(&field, format!("{name} may not be set: {reason}"));
            continue;
        }
        if value.contains('\0') {
            errors.push(&field, "value must not contain a NUL byte");
            continue;
        }
        if let Some(ours) = references(value)
            .into_iter()
            .find(|var| var.starts_with("MANMAN_"))
        {
            errors.push(
                &field,
                format!(
                    "refers to ${ours}: ManMan's own settings never reach game servers (a worker \
                     passes only the variables its operator lists in MANMAN_WORKER_PASS_ENV)"
                ),
            );
            continue;
        }
        if names_directories(name) {
            for entry in value.split(':') {
                if let Err(problem) = check_search_entry(name, entry) {
                    errors.push(&field, problem);
                    break;
                }
            }
        }
    }
}

/// One entry of `PATH` or `LD_LIBRARY_PATH`, as text.
fn check_search_entry(name: &str, entry: &str) -> Result<(), String> {
    let rule = if name == SEARCH_PATH {
        "PATH may name the game's directories ({install_dir}/… or a path relative to the \
         working dir) and $PATH, the worker's base PATH"
    } else {
        "it may name only the game's directories ({install_dir}/… or a path relative to the \
         working dir)"
    };
    if name == SEARCH_PATH && matches!(entry, "$PATH" | "${PATH}") {
        return Ok(());
    }
    let inside = match entry.strip_prefix(INSTALL_DIR) {
        Some("") => return Ok(()),
        Some(rest) => match rest.strip_prefix('/') {
            Some("") => return Ok(()),
            Some(rest) => rest,
            None => return Err(format!("{entry:?} is refused: {rule}")),
        },
        None => entry,
    };
    if !references(inside).is_empty() {
        return Err(format!("{entry:?} is refused: {rule}"));
    }
    check_relative(inside).map_err(|problem| format!("{entry:?}: {problem}; {rule}"))
}

/// Whether `name` has the form of an environment variable: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_hook_code_are_refused() {
        for refused in [
            "LD_PRELOAD",
            "LD_AUDIT",
            "LD_DEBUG_OUTPUT",
            "BASH_ENV",
            "ENV",
            "BASH_FUNC_foo",
            "PYTHONSTARTUP",
            "PYTHONPATH",
            "PERL5OPT",
            "PERL5LIB",
            "RUBYOPT",
            "NODE_OPTIONS",
            "GCONV_PATH",
            "HOSTALIASES",
            "MANMAN_WORKER_SA_CLIENT_SECRET",
            "SHELLOPTS",
            "PS4",
        ] {
            assert!(
                refused_name(refused).is_some(),
                "{refused} should be refused"
            );
        }
        for allowed in [
            "LD_LIBRARY_PATH",
            "PATH",
            "SteamAppId",
            "HOME",
            "PYTHONUNBUFFERED",
            "SRCDS_TOKEN",
        ] {
            assert_eq!(refused_name(allowed), None, "{allowed} should be allowed");
        }
    }

    #[test]
    fn references_and_expansion() {
        assert_eq!(references("a $X ${Y}b $$Z $"), ["X", "Y"]);
        let vars = BTreeMap::from([("HOME".to_owned(), "/home/game".to_owned())]);
        let e = |v: &str| expand(v, &vars, "/srv/cs2");
        assert_eq!(e("$HOME/x").unwrap(), "/home/game/x");
        assert_eq!(e("${HOME}x").unwrap(), "/home/gamex");
        assert_eq!(e("{install_dir}/linux64").unwrap(), "/srv/cs2/linux64");
        assert_eq!(e("cost $$5 and $").unwrap(), "cost $5 and $");
        assert_eq!(e("$SECRET").unwrap_err(), "SECRET");
        assert_eq!(
            expand("{install_dir}/x", &vars, "/srv/a$HOME").unwrap(),
            "/srv/a$HOME/x",
            "a `$` in the directory's name is not a reference"
        );
    }

    fn check(env: &[(&str, &str)]) -> Result<(), ValidationError> {
        let env = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let mut errors = ValidationError::default();
        check_config_env(&mut errors, &env);
        errors.into_result()
    }

    #[test]
    fn the_api_checks_the_text() {
        assert!(
            check(&[
                ("LD_LIBRARY_PATH", "{install_dir}/linux64:./bin:bin"),
                ("PATH", "{install_dir}/bin:$PATH"),
                ("SteamAppId", "730"),
                ("GREETING", "$HOME"),
            ])
            .is_ok()
        );
        let refused = |env: &[(&str, &str)], needle: &str| {
            let err = check(env).unwrap_err().to_string();
            assert!(err.contains(needle), "{env:?}: {err}");
        };
        refused(&[("LD_PRELOAD", "./x.so")], "env.LD_PRELOAD");
        refused(&[("BASH_ENV", "log.txt")], "env.BASH_ENV");
        refused(
            &[("SECRET", "$MANMAN_WORKER_SA_CLIENT_SECRET")],
            "MANMAN_WORKER_PASS_ENV",
        );
        refused(&[("S", "${MANMAN_X}")], "env.S");
        refused(&[("LD_LIBRARY_PATH", "/usr/lib")], "absolute");
        refused(&[("LD_LIBRARY_PATH", "{install_dir}/../x")], "..");
        refused(&[("LD_LIBRARY_PATH", "$HOME/lib")], "may name only");
        refused(&[("LD_LIBRARY_PATH", "$LD_LIBRARY_PATH")], "may name only");
        refused(&[("PATH", "/tmp/evil:$PATH")], "absolute");
        refused(&[("PATH", "{install_dir}x")], "PATH may name");
        refused(&[("1BAD", "x")], "env.1BAD");
        refused(&[("HOME", "/tmp/x")], "env.HOME");
        refused(&[("WINELOADER", "./x")], "env.WINELOADER");
        assert!(check(&[("HOME", "{install_dir}/home")]).is_ok());
    }
}
