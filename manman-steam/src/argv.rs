//! The SteamCMD command line, built from typed options: an exact argv, no shell.
//!
//! Order matters to SteamCMD: the platform first, `+force_install_dir` before `+login` (SteamCMD
//! warns and may install into its own directory otherwise), `+quit` last.

use crate::secret::Secret;
use crate::settings::SteamPlatform;
use std::path::{Path, PathBuf};

/// How SteamCMD logs in, as it appears on the command line (never with a password).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Login {
    /// `+login anonymous`.
    Anonymous,
    /// `+login <username>`; the password follows on stdin.
    User(String),
}

impl Login {
    fn push(&self, args: &mut Vec<String>) {
        args.push("+login".to_owned());
        args.push(match self {
            Self::Anonymous => "anonymous".to_owned(),
            Self::User(name) => name.clone(),
        });
    }
}

/// `app_update`: install or update an app into a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppUpdateCommand {
    /// `+@sSteamCmdForcePlatformType <platform>`, when set.
    pub platform: Option<SteamPlatform>,
    /// `+force_install_dir <dir>` (absolute: SteamCMD takes a relative one from its own dir).
    pub install_dir: PathBuf,
    /// How to log in.
    pub login: Login,
    /// The app.
    pub app_id: u32,
    /// `-beta <branch>`, when not the default branch.
    pub branch: Option<String>,
    /// `validate`: check every installed file against the depot manifests.
    pub validate: bool,
}

/// A beta-branch password and the private file it will be written to.
#[derive(Debug, Clone, Copy)]
pub struct BetaPassword<'a> {
    /// The password (must not contain `"` or a line break).
    pub password: &'a Secret,
    /// Where the caller writes [`CommandLine::script`] (mode 0600) before running SteamCMD.
    pub script: &'a Path,
}

/// A SteamCMD command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLine {
    /// The arguments, program excluded. They never hold a password.
    pub args: Vec<String>,
    /// A SteamCMD script that `args` runs with `+runscript`, when a beta password keeps
    /// `app_update` out of the argv (any local user can read a process's argv). The caller
    /// writes it to the [`BetaPassword::script`] file and removes it after the run.
    pub script: Option<Secret>,
}

impl AppUpdateCommand {
    /// The command line. Without a beta password:
    ///
    /// `[+@sSteamCmdForcePlatformType <platform>] +force_install_dir <dir> +login <anonymous|user>
    ///  +app_update <app_id> [-beta <branch>] [validate] +quit`
    ///
    /// With a beta password (and a branch), `+app_update …` becomes `+runscript <script>` and
    /// the script holds `app_update <app_id> -beta <branch> -betapassword "<password>" [validate]`:
    /// SteamCMD has no other way to take a branch password than as an argument of
    /// `app_update`, and a script file keeps it out of the argv.
    pub fn command_line(&self, beta_password: Option<BetaPassword<'_>>) -> CommandLine {
        let mut args = Vec::with_capacity(12);
        push_platform(self.platform, &mut args);
        args.push("+force_install_dir".to_owned());
        args.push(self.install_dir.to_string_lossy().into_owned());
        self.login.push(&mut args);
        let script = match (&self.branch, beta_password) {
            (Some(branch), Some(beta)) => {
                let mut line = format!(
                    "app_update {} -beta {branch} -betapassword \"{}\"",
                    self.app_id,
                    beta.password.expose()
                );
                if self.validate {
                    line.push_str(" validate");
                }
                line.push('\n');
                args.push("+runscript".to_owned());
                args.push(beta.script.to_string_lossy().into_owned());
                Some(Secret::new(line))
            }
            _ => {
                args.push("+app_update".to_owned());
                args.push(self.app_id.to_string());
                if let Some(branch) = &self.branch {
                    args.push("-beta".to_owned());
                    args.push(branch.clone());
                }
                if self.validate {
                    args.push("validate".to_owned());
                }
                None
            }
        };
        args.push("+quit".to_owned());
        CommandLine { args, script }
    }
}

/// `app_info_print`: what Steam knows of an app, including each branch's build id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppInfoCommand {
    /// `+@sSteamCmdForcePlatformType <platform>`, when set.
    pub platform: Option<SteamPlatform>,
    /// How to log in.
    pub login: Login,
    /// The app.
    pub app_id: u32,
}

impl AppInfoCommand {
    /// `[+@sSteamCmdForcePlatformType <platform>] +login <…> +app_info_update 1
    ///  +app_info_print <app_id> +quit` (`app_info_update 1` refreshes SteamCMD's cached app
    /// info, which goes stale).
    pub fn args(&self) -> Vec<String> {
        let mut args = Vec::with_capacity(10);
        push_platform(self.platform, &mut args);
        self.login.push(&mut args);
        args.extend([
            "+app_info_update".to_owned(),
            "1".to_owned(),
            "+app_info_print".to_owned(),
            self.app_id.to_string(),
            "+quit".to_owned(),
        ]);
        args
    }
}

fn push_platform(platform: Option<SteamPlatform>, args: &mut Vec<String>) {
    if let Some(platform) = platform {
        args.push("+@sSteamCmdForcePlatformType".to_owned());
        args.push(platform.as_str().to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update() -> AppUpdateCommand {
        AppUpdateCommand {
            platform: None,
            install_dir: PathBuf::from("/srv/games/steam/896660"),
            login: Login::Anonymous,
            app_id: 896660,
            branch: None,
            validate: false,
        }
    }

    #[test]
    fn anonymous_install() {
        let line = update().command_line(None);
        assert_eq!(
            line.args,
            [
                "+force_install_dir",
                "/srv/games/steam/896660",
                "+login",
                "anonymous",
                "+app_update",
                "896660",
                "+quit"
            ]
        );
        assert!(line.script.is_none());
    }

    #[test]
    fn named_beta_validate_with_platform() {
        let cmd = AppUpdateCommand {
            platform: Some(SteamPlatform::Windows),
            login: Login::User("ops_account".into()),
            branch: Some("public-test".into()),
            validate: true,
            ..update()
        };
        assert_eq!(
            cmd.command_line(None).args,
            [
                "+@sSteamCmdForcePlatformType",
                "windows",
                "+force_install_dir",
                "/srv/games/steam/896660",
                "+login",
                "ops_account",
                "+app_update",
                "896660",
                "-beta",
                "public-test",
                "validate",
                "+quit"
            ]
        );
    }

    #[test]
    fn a_beta_password_goes_to_a_script_never_to_argv() {
        let cmd = AppUpdateCommand {
            branch: Some("experimental".into()),
            validate: true,
            ..update()
        };
        let password = Secret::new("s3cret pw");
        let line = cmd.command_line(Some(BetaPassword {
            password: &password,
            script: Path::new("/tmp/manman-steamcmd-1.txt"),
        }));
        assert_eq!(
            line.args,
            [
                "+force_install_dir",
                "/srv/games/steam/896660",
                "+login",
                "anonymous",
                "+runscript",
                "/tmp/manman-steamcmd-1.txt",
                "+quit"
            ]
        );
        assert!(line.args.iter().all(|a| !a.contains("s3cret")));
        assert!(!format!("{line:?}").contains("s3cret"));
        assert_eq!(
            line.script.unwrap().expose(),
            "app_update 896660 -beta experimental -betapassword \"s3cret pw\" validate\n"
        );
    }

    #[test]
    fn force_install_dir_comes_before_login() {
        let args = AppUpdateCommand {
            login: Login::User("x".into()),
            ..update()
        }
        .command_line(None)
        .args;
        let dir = args.iter().position(|a| a == "+force_install_dir").unwrap();
        let login = args.iter().position(|a| a == "+login").unwrap();
        assert!(dir < login);
        assert_eq!(args.last().unwrap(), "+quit");
    }

    #[test]
    fn app_info() {
        let cmd = AppInfoCommand {
            platform: Some(SteamPlatform::Linux),
            login: Login::Anonymous,
            app_id: 896660,
        };
        assert_eq!(
            cmd.args(),
            [
                "+@sSteamCmdForcePlatformType",
                "linux",
                "+login",
                "anonymous",
                "+app_info_update",
                "1",
                "+app_info_print",
                "896660",
                "+quit"
            ]
        );
    }
}
