//! [`SteamInstaller`]: the installer port done with SteamCMD.

use crate::argv::{AppUpdateCommand, BetaPassword};
use crate::error::{ErrorClass, Failure, SteamError};
use crate::manifest::AppManifest;
use crate::plan::{Plan, SteamApp};
use crate::retry::{Attempt, with_retries};
use crate::run::{Run, run, stage};
use crate::settings::SteamSettings;
use crate::single_flight::{Role, SingleFlight};
use crate::steamcmd;
use async_trait::async_trait;
use futures::FutureExt;
use manman_core::ports::{
    GameInstaller, InstallError, InstallRequest, Installation, ProcessRunner, ProcessUser,
    ProgressSink,
};
use manman_core::worker_service::hand_over;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::Semaphore;

/// Installs and updates Steam games with SteamCMD; refuses other games
/// ([`InstallError::Unsupported`]).
///
/// Cheap to clone; clones share the per-directory single-flight and the worker-wide limit on
/// concurrent SteamCMD runs.
#[derive(Debug, Clone)]
pub struct SteamInstaller {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) settings: SteamSettings,
    pub(crate) runner: Arc<dyn ProcessRunner>,
    /// SteamCMD runs at once, worker-wide.
    pub(crate) permits: Semaphore,
    /// One install per directory at a time.
    flights: SingleFlight<PathBuf, Result<Installation, SteamError>>,
}

impl SteamInstaller {
    /// An installer running SteamCMD through `runner` (usually
    /// `manman_core::process::TokioProcessRunner`).
    pub fn new(settings: SteamSettings, runner: Arc<dyn ProcessRunner>) -> Self {
        let permits = Semaphore::new(settings.max_concurrent_installs.max(1));
        Self {
            inner: Arc::new(Inner {
                settings,
                runner,
                permits,
                flights: SingleFlight::default(),
            }),
        }
    }

    /// The settings it runs with.
    pub fn settings(&self) -> &SteamSettings {
        &self.inner.settings
    }

    /// Installs or updates `app` and verifies the result, reporting progress to `progress`.
    ///
    /// A second call for the same install dir while one runs waits for it and shares its
    /// result (its own executable is still checked). Transient failures are retried with
    /// backoff; the error of the last attempt says what the operator must do.
    pub async fn install_app(
        &self,
        app: &SteamApp,
        progress: &dyn ProgressSink,
    ) -> Result<Installation, SteamError> {
        let plan = Plan::resolve(app, &self.inner.settings)?;
        let inner = Arc::clone(&self.inner);
        let leader = plan.clone();
        let (result, role) = self
            .inner
            .flights
            .run(
                plan.dir.clone(),
                move |relay| async move { inner.install(&leader, &relay).await }.boxed(),
                progress,
            )
            .await;
        let installation = result?;
        if role == Role::Follower {
            tracing::info!(
                app_id = plan.app_id,
                dir = %plan.dir.display(),
                "shared the result of the SteamCMD run already going for this dir"
            );
            if let Some(executable) = &plan.executable {
                check_executable(&plan.dir, executable)
                    .await
                    .map_err(|failure| plan.context.error(failure, 0, Vec::new()))?;
            }
        }
        Ok(installation)
    }
}

#[async_trait]
impl GameInstaller for SteamInstaller {
    async fn install(
        &self,
        request: &InstallRequest,
        progress: &dyn ProgressSink,
    ) -> Result<Installation, InstallError> {
        let Some(app) = SteamApp::from_request(request) else {
            return Err(InstallError::Unsupported {
                game: request.game.name.clone(),
                detail: "the SteamCMD installer installs Steam games only: local games need \
                         the local installer"
                    .to_owned(),
            });
        };
        self.install_app(&app, progress)
            .await
            .map_err(|e| e.into_install_error(&app.game))
    }
}

impl Inner {
    /// The install behind the single-flight: create the dir, run SteamCMD with retries.
    async fn install(
        &self,
        plan: &Plan,
        progress: &dyn ProgressSink,
    ) -> Result<Installation, SteamError> {
        let started = std::time::Instant::now();
        tokio::fs::create_dir_all(&plan.dir).await.map_err(|e| {
            plan.context.error(
                Failure::new(
                    ErrorClass::InstallDir,
                    format!("could not create {}: {e}", plan.dir.display()),
                ),
                0,
                Vec::new(),
            )
        })?;
        if let Some(user) = &plan.run_as {
            hand_over_dirs(plan, user).await?;
        }
        let program = self.steamcmd(plan)?;
        let deadline = tokio::time::Instant::now() + self.settings.install_timeout;
        let attempts = with_retries(
            &self.settings,
            &plan.context,
            progress,
            Some(deadline),
            |_, previous| {
                // Files SteamCMD found missing or corrupt, or a success that was not one: have it
                // check every file next time.
                let validate = plan.validate
                    || matches!(
                        previous,
                        Some(ErrorClass::CorruptFiles | ErrorClass::IncompleteInstall)
                    );
                self.attempt(plan, &program, validate, deadline, progress)
            },
        );
        let installation = attempts.await?;
        tracing::info!(
            app_id = plan.app_id,
            dir = %plan.dir.display(),
            build_id = installation.build_id.as_deref().unwrap_or("?"),
            elapsed_s = started.elapsed().as_secs(),
            "Steam app installed and verified"
        );
        Ok(installation)
    }

    pub(crate) fn steamcmd(&self, plan: &Plan) -> Result<PathBuf, SteamError> {
        steamcmd::locate(&self.settings).map_err(|what| {
            plan.context
                .steamcmd_missing(self.settings.steamcmd.clone(), what)
        })
    }

    /// One SteamCMD run and, when it claims success, the verification.
    async fn attempt(
        &self,
        plan: &Plan,
        program: &Path,
        validate: bool,
        deadline: tokio::time::Instant,
        progress: &dyn ProgressSink,
    ) -> Attempt<Installation> {
        let no_output = |failure| (failure, Vec::new());
        let permit = self.permits.acquire().await.map_err(|_| {
            no_output(Failure::new(
                ErrorClass::Unknown,
                "the installer is shutting down",
            ))
        })?;
        progress.report(stage("starting-steamcmd"));
        // A beta password goes to a private script file (0600, removed on drop), not argv.
        let script = match &plan.beta_password {
            None => None,
            Some(_) => Some(script_file().map_err(|e| {
                no_output(Failure::new(
                    ErrorClass::Unknown,
                    format!("could not create a private SteamCMD script file: {e}"),
                ))
            })?),
        };
        let command = AppUpdateCommand {
            platform: self.settings.platform,
            install_dir: plan.dir.clone(),
            login: plan.login.clone(),
            app_id: plan.app_id,
            branch: plan.branch.clone(),
            validate,
        };
        let line = command.command_line(plan.beta_password.as_ref().zip(script.as_ref()).map(
            |(password, file)| BetaPassword {
                password,
                script: file.path(),
            },
        ));
        if let (Some(content), Some(file)) = (&line.script, &script) {
            write_script(file, content.expose(), plan.run_as.as_ref()).map_err(|e| {
                no_output(Failure::new(
                    ErrorClass::Unknown,
                    format!("could not write the SteamCMD script file: {e}"),
                ))
            })?;
        }
        tracing::info!(
            app_id = plan.app_id,
            dir = %plan.dir.display(),
            program = %program.display(),
            args = ?line.args,
            "running SteamCMD"
        );
        let redactor = plan.redactor();
        let outcome = run(
            Run {
                runner: self.runner.as_ref(),
                spec: steamcmd::spec_as(
                    program,
                    line.args,
                    &self.settings,
                    plan.run_as.as_ref(),
                    &plan.home,
                ),
                stdin: plan.stdin(),
                guard_answers: plan.guard_answers(),
                idle_timeout: self.settings.idle_timeout,
                deadline: Some(deadline),
                redactor: &redactor,
                app_id: plan.app_id,
                keep_output: false,
            },
            progress,
        )
        .await
        .map_err(|e| {
            no_output(Failure::new(
                ErrorClass::SteamCmdUnavailable,
                format!("could not start SteamCMD: {e}"),
            ))
        })?;
        drop(script);
        drop(permit);
        if let Some(failure) = outcome.failure(self.settings.idle_timeout) {
            return Err((failure, outcome.tail()));
        }
        if !outcome.success {
            let failure = match outcome.exit {
                Some(exit) if !exit.success() => Failure::new(
                    ErrorClass::Unknown,
                    format!("SteamCMD ended with {exit} without reporting success"),
                ),
                _ => Failure::new(
                    ErrorClass::IncompleteInstall,
                    format!(
                        "SteamCMD exited without printing \"Success! App '{}' fully \
                         installed.\"",
                        plan.app_id
                    ),
                ),
            };
            return Err((failure, outcome.tail()));
        }
        progress.report(stage("checking-install"));
        verify(plan)
            .await
            .map_err(|failure| (failure, outcome.tail()))
    }
}

fn script_file() -> std::io::Result<tempfile::NamedTempFile> {
    tempfile::Builder::new()
        .prefix("manman-steamcmd-")
        .suffix(".txt")
        .tempfile()
}

/// Writes the script; when SteamCMD runs as another user, that user becomes its owner (it
/// stays 0600: nobody else reads it).
fn write_script(
    file: &tempfile::NamedTempFile,
    content: &str,
    user: Option<&ProcessUser>,
) -> std::io::Result<()> {
    let mut handle = file.as_file();
    if let Some(user) = user {
        std::os::unix::fs::fchown(handle, Some(user.uid), Some(user.gid))?;
    }
    handle.write_all(content.as_bytes())?;
    handle.flush()
}

/// Hands the app's install dir and SteamCMD's home over to the user SteamCMD runs as (the
/// first time; see [`manman_core::worker_service::hand_over`]).
async fn hand_over_dirs(plan: &Plan, user: &ProcessUser) -> Result<(), SteamError> {
    let (dir, home, user) = (plan.dir.clone(), plan.home.clone(), user.clone());
    let handed = tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&home)?;
        hand_over(&home, &user)?;
        hand_over(&dir, &user)
    })
    .await
    .unwrap_or_else(|e| Err(std::io::Error::other(e)));
    handed.map_err(|e| {
        plan.context.error(
            Failure::new(
                ErrorClass::InstallDir,
                format!(
                    "could not hand {} over to the game servers' user: {e}",
                    plan.dir.display()
                ),
            ),
            0,
            Vec::new(),
        )
    })
}

/// Checks what SteamCMD claimed: the app manifest says the app (and branch) is fully
/// installed, and the config's executable is there and executable.
async fn verify(plan: &Plan) -> Result<Installation, Failure> {
    let incomplete = |what: String| Failure::new(ErrorClass::IncompleteInstall, what);
    let path = AppManifest::path(&plan.dir, plan.app_id);
    let manifest = match AppManifest::read(&plan.dir, plan.app_id).await {
        Ok(Some(manifest)) => manifest,
        Ok(None) => {
            return Err(incomplete(format!(
                "SteamCMD reported success but wrote no app manifest at {}",
                path.display()
            )));
        }
        Err(e) => return Err(incomplete(format!("SteamCMD reported success but {e}"))),
    };
    if manifest.app_id != plan.app_id {
        return Err(incomplete(format!(
            "{} is about app {}, not {}",
            path.display(),
            manifest.app_id,
            plan.app_id
        )));
    }
    if !manifest.is_fully_installed() {
        return Err(incomplete(format!(
            "SteamCMD reported success but {} has StateFlags {} (4 = fully installed)",
            path.display(),
            manifest.state_flags
        )));
    }
    let installed_branch = manifest
        .beta_key
        .as_deref()
        .filter(|b| !b.eq_ignore_ascii_case("public"));
    if let Some(installed) = installed_branch
        && plan
            .branch
            .as_deref()
            .is_none_or(|wanted| !wanted.eq_ignore_ascii_case(installed))
    {
        return Err(incomplete(format!(
            "{} says branch \"{installed}\" is installed, not {}",
            path.display(),
            plan.branch
                .as_deref()
                .map_or_else(|| "the default branch".to_owned(), |b| format!("\"{b}\""))
        )));
    }
    if let Some(executable) = &plan.executable {
        check_executable(&plan.dir, executable).await?;
    }
    Ok(Installation {
        dir: plan.dir.clone(),
        build_id: Some(manifest.build_id),
    })
}

/// The config's executable is a file under `dir` with an execute bit.
async fn check_executable(dir: &Path, executable: &str) -> Result<(), Failure> {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(executable);
    let incomplete = |what: String| Failure::new(ErrorClass::IncompleteInstall, what);
    match tokio::fs::metadata(&path).await {
        Ok(meta) if !meta.is_file() => Err(incomplete(format!(
            "the config's executable {} is not a file",
            path.display()
        ))),
        Ok(meta) if meta.permissions().mode() & 0o111 == 0 => Err(incomplete(format!(
            "the config's executable {} is not executable (mode {:o})",
            path.display(),
            meta.permissions().mode() & 0o777
        ))),
        Ok(_) => Ok(()),
        Err(e) => Err(incomplete(format!(
            "SteamCMD reported success but the config's executable {} is not there: {e}",
            path.display()
        ))),
    }
}
