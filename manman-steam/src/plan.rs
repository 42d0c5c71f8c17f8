//! [`SteamApp`] (what to install) and its plan: the request resolved against the worker's
//! settings — install dir, login, credential, branch and its password — before SteamCMD runs.

use crate::argv::Login;
use crate::credentials::SteamCredential;
use crate::error::{ErrorClass, ErrorContext, Failure, SteamError};
use crate::secret::{Redactor, Secret};
use crate::settings::SteamSettings;
use manman_core::config::{SteamLogin, SteamOptions};
use manman_core::game_server::ServerType;
use manman_core::ports::{InstallRequest, ProcessUser};
use std::path::PathBuf;

/// A Steam app to install or check, as a worker's config asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SteamApp {
    /// The game's name (for messages).
    pub game: String,
    /// The Steam app id of the dedicated server.
    pub app_id: u32,
    /// The config's SteamCMD options (branch, its password's secret name, validate, login).
    pub options: SteamOptions,
    /// The config's executable, relative to the install dir: it must exist and be executable
    /// after the install. `None` checks only the app manifest.
    pub executable: Option<String>,
    /// The worker's install root.
    pub install_root: PathBuf,
    /// The unprivileged user SteamCMD runs as (the game servers' user, when the worker runs as
    /// root): the install dir is handed over to it first, so the worker itself never writes
    /// where a game server could plant a link. `None`: the worker's own user.
    pub run_as: Option<ProcessUser>,
}

impl SteamApp {
    /// The app of an install request; `None` when the game is not a Steam game.
    pub fn from_request(request: &InstallRequest) -> Option<Self> {
        let ServerType::Steam { app_id } = request.game.server_type else {
            return None;
        };
        Some(Self {
            game: request.game.name.clone(),
            app_id,
            options: request.config.spec.steam.clone().unwrap_or_default(),
            executable: Some(request.config.spec.executable.clone()),
            install_root: request.install_root.clone(),
            run_as: request.run_as.clone(),
        })
    }

    /// The branch to install, `None` for the default one (`public`, or no branch set).
    pub fn branch(&self) -> Option<&str> {
        self.options
            .branch
            .as_deref()
            .map(str::trim)
            .filter(|b| !b.is_empty() && !b.eq_ignore_ascii_case("public"))
    }

    /// Where the app is installed: `<install_root>/steam/<app_id>` for the default branch,
    /// `<install_root>/steam/<app_id>-<branch>` for a beta branch, so two branches of one
    /// app never share (and never fight over) a directory.
    pub fn install_dir(&self) -> PathBuf {
        let name = match self.branch() {
            Some(branch) => format!("{}-{branch}", self.app_id),
            None => self.app_id.to_string(),
        };
        self.install_root.join("steam").join(name)
    }
}

/// A request resolved against the worker's settings.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) app_id: u32,
    /// Absolute: SteamCMD takes a relative `force_install_dir` from its own directory.
    pub(crate) dir: PathBuf,
    pub(crate) login: Login,
    pub(crate) credential: Option<SteamCredential>,
    pub(crate) branch: Option<String>,
    pub(crate) beta_password: Option<Secret>,
    pub(crate) validate: bool,
    pub(crate) executable: Option<String>,
    pub(crate) run_as: Option<ProcessUser>,
    /// SteamCMD's `HOME` when it runs as `run_as`: `<install_root>/steam/.steamcmd-home`.
    pub(crate) home: PathBuf,
    pub(crate) context: ErrorContext,
}

impl Plan {
    /// Resolves `app`; a missing credential or secret, or unusable options, fail here, before
    /// SteamCMD runs.
    pub(crate) fn resolve(app: &SteamApp, settings: &SteamSettings) -> Result<Self, SteamError> {
        let branch = app.branch().map(str::to_owned);
        let credential_name = match &app.options.login {
            SteamLogin::Anonymous => None,
            SteamLogin::Named(name) => Some(name.clone()),
        };
        let mut context = ErrorContext {
            app_id: app.app_id,
            dir: app.install_dir(),
            credential: credential_name.clone(),
            branch: branch.clone(),
            branch_secret: app.options.branch_password_secret.clone(),
            executable: app.executable.clone(),
            idle_timeout: settings.idle_timeout,
            install_timeout: settings.install_timeout,
            steamcmd: settings.steamcmd.clone(),
        };
        let fail = |context: &ErrorContext, class, what: String| {
            Err(context.error(Failure::new(class, what), 0, Vec::new()))
        };
        if let Some(branch) = &branch
            && !manman_core::config::is_steam_branch_name(branch)
        {
            return fail(
                &context,
                ErrorClass::InvalidConfig,
                format!(
                    "branch {branch:?} is not a Steam branch name: use letters, digits, '.', \
                     '_' and '-' (at most 64)"
                ),
            );
        }
        context.dir = match std::path::absolute(&context.dir) {
            Ok(dir) if dir.to_str().is_some() => dir,
            Ok(dir) => {
                return fail(
                    &context,
                    ErrorClass::InvalidConfig,
                    format!("install dir {} is not valid UTF-8", dir.display()),
                );
            }
            Err(e) => {
                return fail(
                    &context,
                    ErrorClass::InstallDir,
                    format!("could not make the install dir absolute: {e}"),
                );
            }
        };
        let credential = match &credential_name {
            None => None,
            Some(name) => match settings.credentials.get(name) {
                Some(credential) => Some(credential.clone()),
                None => {
                    return fail(
                        &context,
                        ErrorClass::MissingCredential,
                        format!(
                            "the config logs in with Steam credential \"{name}\", which this \
                             worker does not have"
                        ),
                    );
                }
            },
        };
        let beta_password = match (&app.options.branch_password_secret, &branch) {
            (None, _) => None,
            (Some(secret), None) => {
                return fail(
                    &context,
                    ErrorClass::InvalidConfig,
                    format!(
                        "the config names a branch password secret (\"{secret}\") but no beta \
                         branch: set steam.branch or remove steam.branch_password_secret"
                    ),
                );
            }
            (Some(name), Some(_)) => match settings.secrets.get(name) {
                Some(secret) if secret.expose().contains(['"', '\n', '\r']) => {
                    return fail(
                        &context,
                        ErrorClass::InvalidConfig,
                        format!(
                            "the branch password in secret \"{name}\" contains a double quote \
                             or a line break, which SteamCMD cannot take"
                        ),
                    );
                }
                Some(secret) => Some(secret.clone()),
                None => {
                    return fail(
                        &context,
                        ErrorClass::MissingCredential,
                        format!(
                            "the config names branch password secret \"{name}\", which this \
                             worker does not have"
                        ),
                    );
                }
            },
        };
        Ok(Self {
            app_id: app.app_id,
            dir: context.dir.clone(),
            login: credential
                .as_ref()
                .map_or(Login::Anonymous, |c| Login::User(c.username().to_owned())),
            credential,
            branch,
            beta_password,
            validate: app.options.validate,
            executable: app.executable.clone(),
            run_as: app.run_as.clone(),
            home: context.dir.with_file_name(".steamcmd-home"),
            context,
        })
    }

    /// The lines for SteamCMD's stdin: for a named login, the password, then the Steam Guard
    /// code — or an empty line, so that a Steam Guard prompt nobody can answer ends in a
    /// refused login instead of a SteamCMD waiting for ever.
    pub(crate) fn stdin(&self) -> Vec<Secret> {
        match &self.credential {
            None => Vec::new(),
            Some(credential) => vec![
                credential.password().clone(),
                credential
                    .guard_code()
                    .cloned()
                    .unwrap_or_else(|| Secret::new("")),
            ],
        }
    }

    /// Steam Guard code prompts [`Plan::stdin`] answers: 1 with a configured guard code, else
    /// 0 (the empty line is no answer).
    pub(crate) fn guard_answers(&self) -> u32 {
        u32::from(
            self.credential
                .as_ref()
                .is_some_and(|c| c.guard_code().is_some()),
        )
    }

    /// Scrubs every secret of this plan out of SteamCMD's output.
    pub(crate) fn redactor(&self) -> Redactor {
        let credential = self
            .credential
            .iter()
            .flat_map(|c| std::iter::once(c.password()).chain(c.guard_code()));
        Redactor::new(credential.chain(self.beta_password.as_ref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn app(options: SteamOptions) -> SteamApp {
        SteamApp {
            game: "valheim".into(),
            app_id: 896660,
            options,
            executable: Some("valheim_server.x86_64".into()),
            install_root: PathBuf::from("/srv/games"),
            run_as: None,
        }
    }

    #[test]
    fn install_dir_layout() {
        assert_eq!(
            app(SteamOptions::default()).install_dir(),
            Path::new("/srv/games/steam/896660")
        );
        let beta = app(SteamOptions {
            branch: Some("public-test".into()),
            ..Default::default()
        });
        assert_eq!(
            beta.install_dir(),
            Path::new("/srv/games/steam/896660-public-test")
        );
        let public = app(SteamOptions {
            branch: Some("Public".into()),
            ..Default::default()
        });
        assert_eq!(public.branch(), None);
        assert_eq!(public.install_dir(), Path::new("/srv/games/steam/896660"));
    }

    #[test]
    fn a_relative_root_becomes_absolute() {
        let mut relative = app(SteamOptions::default());
        relative.install_root = PathBuf::from("data");
        let plan = Plan::resolve(&relative, &SteamSettings::default()).unwrap();
        assert!(plan.dir.is_absolute());
        assert!(plan.dir.ends_with("data/steam/896660"));
    }

    #[test]
    fn bad_branches_and_missing_names_fail_before_steamcmd() {
        let settings = SteamSettings::default();
        let err = Plan::resolve(
            &app(SteamOptions {
                branch: Some("../../etc".into()),
                ..Default::default()
            }),
            &settings,
        )
        .unwrap_err();
        assert_eq!(err.class(), ErrorClass::InvalidConfig);
        let err = Plan::resolve(
            &app(SteamOptions {
                login: SteamLogin::Named("ops".into()),
                ..Default::default()
            }),
            &settings,
        )
        .unwrap_err();
        assert_eq!(err.class(), ErrorClass::MissingCredential);
        assert!(err.to_string().contains("\"ops\""), "{err}");
        let err = Plan::resolve(
            &app(SteamOptions {
                branch_password_secret: Some("pw".into()),
                ..Default::default()
            }),
            &settings,
        )
        .unwrap_err();
        assert_eq!(err.class(), ErrorClass::InvalidConfig);
        let err = Plan::resolve(
            &app(SteamOptions {
                branch: Some("beta".into()),
                branch_password_secret: Some("pw".into()),
                ..Default::default()
            }),
            &settings,
        )
        .unwrap_err();
        assert_eq!(err.class(), ErrorClass::MissingCredential);
        let quoted = settings.with_secret("pw", Secret::new("a\"b"));
        let err = Plan::resolve(
            &app(SteamOptions {
                branch: Some("beta".into()),
                branch_password_secret: Some("pw".into()),
                ..Default::default()
            }),
            &quoted,
        )
        .unwrap_err();
        assert_eq!(err.class(), ErrorClass::InvalidConfig);
        assert!(!err.to_string().contains("a\"b"), "{err}");
    }

    #[test]
    fn stdin_carries_the_password_and_guard_code() {
        let settings = SteamSettings::default()
            .with_credential(
                "ops",
                SteamCredential::new("ops_account", Secret::new("hunter2")),
            )
            .with_credential(
                "guarded",
                SteamCredential::new("g", Secret::new("pw2")).with_guard_code(Secret::new("X1")),
            );
        let named = |name: &str| SteamOptions {
            login: SteamLogin::Named(name.into()),
            ..Default::default()
        };
        let plan = Plan::resolve(&app(named("ops")), &settings).unwrap();
        assert_eq!(plan.login, Login::User("ops_account".into()));
        let lines: Vec<_> = plan.stdin().iter().map(|s| s.expose().to_owned()).collect();
        assert_eq!(lines, ["hunter2", ""]);
        let plan = Plan::resolve(&app(named("guarded")), &settings).unwrap();
        let lines: Vec<_> = plan.stdin().iter().map(|s| s.expose().to_owned()).collect();
        assert_eq!(lines, ["pw2", "X1"]);
        assert_eq!(plan.redactor().scrub("pw2 X1"), "[redacted] [redacted]");
        let anonymous = Plan::resolve(&app(SteamOptions::default()), &settings).unwrap();
        assert!(anonymous.stdin().is_empty());
        assert!(!format!("{plan:?}").contains("pw2"));
    }
}
