//! Finding the SteamCMD executable and the process spec it runs with.

use crate::settings::SteamSettings;
use manman_core::ports::{ProcessSpec, ProcessUser};
use std::path::{Path, PathBuf};

/// The SteamCMD to run: [`SteamSettings::steamcmd`] made absolute, or a bare name looked up
/// on the `PATH` of [`SteamSettings::env`] (the worker's `PATH` when that has none). The
/// error says where it looked.
pub(crate) fn locate(settings: &SteamSettings) -> Result<PathBuf, String> {
    let configured = &settings.steamcmd;
    if configured.components().count() > 1 || configured.is_absolute() {
        let path = std::path::absolute(configured).unwrap_or_else(|_| configured.clone());
        return if is_executable_file(&path) {
            Ok(path)
        } else {
            Err(format!("{} is not an executable file", path.display()))
        };
    }
    let search = settings
        .env
        .get("PATH")
        .cloned()
        .or_else(|| std::env::var("PATH").ok())
        .unwrap_or_default();
    std::env::split_paths(&search)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(configured))
        .find(|candidate| is_executable_file(candidate))
        .ok_or_else(|| format!("{} is not on PATH ({search})", configured.display()))
}

/// The process: `program` with `args`, the settings' whole environment, run from SteamCMD's
/// own directory (`steamcmd.sh` changes to it anyway), as the worker's own user.
pub(crate) fn spec(program: &Path, args: Vec<String>, settings: &SteamSettings) -> ProcessSpec {
    ProcessSpec {
        program: program.to_owned(),
        args,
        env: settings.env.clone(),
        cwd: program
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(std::env::temp_dir, Path::to_owned),
        user: None,
    }
}

/// The process of [`spec`] run as `user`, with `home` as its `HOME` (where SteamCMD keeps its
/// state) and the user's name as `USER` and `LOGNAME`.
pub(crate) fn spec_as(
    program: &Path,
    args: Vec<String>,
    settings: &SteamSettings,
    user: Option<&ProcessUser>,
    home: &Path,
) -> ProcessSpec {
    let mut spec = spec(program, args, settings);
    if let Some(user) = user {
        spec.env
            .insert("HOME".to_owned(), home.to_string_lossy().into_owned());
        spec.env.insert("USER".to_owned(), user.name.clone());
        spec.env.insert("LOGNAME".to_owned(), user.name.clone());
        spec.user = Some(user.clone());
    }
    spec
}

fn is_executable_file(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn looks_up_bare_names_on_the_configured_path() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("steamcmd");
        std::fs::write(&exe, "#!/bin/sh\n").unwrap();
        let mut settings = SteamSettings::default();
        settings.env.insert(
            "PATH".into(),
            format!("/nonexistent:{}", dir.path().display()),
        );
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = locate(&settings).unwrap_err();
        assert!(err.contains("not on PATH"), "{err}");
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(locate(&settings).unwrap(), exe);
        settings.steamcmd = exe.clone();
        assert_eq!(locate(&settings).unwrap(), exe);
        settings.steamcmd = dir.path().join("missing");
        assert!(
            locate(&settings)
                .unwrap_err()
                .contains("not an executable file")
        );
        let spec = spec(&exe, vec!["+quit".into()], &settings);
        assert_eq!(spec.cwd, dir.path());
        assert_eq!(spec.env, settings.env);
    }
}
