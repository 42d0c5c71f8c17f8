//! The update check: the installed build id (app manifest) against the remote one
//! (`app_info_print`), without starting the server or touching its files.

use crate::argv::AppInfoCommand;
use crate::error::{ErrorClass, Failure, SteamError};
use crate::installer::SteamInstaller;
use crate::manifest::AppManifest;
use crate::plan::{Plan, SteamApp};
use crate::retry::{Attempt, with_retries};
use crate::run::{Run, run};
use crate::steamcmd;
use crate::vdf;
use manman_core::ports::NoProgress;
use std::path::Path;

/// Whether an installed app is behind its branch on Steam.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateStatus {
    /// The installed build is the branch's current build.
    UpToDate {
        /// The build id.
        build_id: String,
    },
    /// Steam has another build for the branch.
    UpdateAvailable {
        /// The installed build id.
        installed: String,
        /// The branch's build id on Steam.
        remote: String,
    },
    /// Nothing (or an unfinished install) is in the install dir.
    NotInstalled {
        /// The branch's build id on Steam.
        remote: String,
    },
}

impl UpdateStatus {
    /// Whether an install would change something.
    pub fn needs_update(&self) -> bool {
        !matches!(self, Self::UpToDate { .. })
    }
}

impl SteamInstaller {
    /// Compares the build installed for `app` (its app manifest) with the build Steam has for
    /// its branch: runs `+login … +app_info_update 1 +app_info_print <app_id> +quit` (logged in
    /// as the config says, counted against the concurrent-run limit, retried like an install)
    /// and reads `depots.branches.<branch>.buildid` from the printed app info.
    pub async fn check_update(&self, app: &SteamApp) -> Result<UpdateStatus, SteamError> {
        let inner = &self.inner;
        let plan = Plan::resolve(app, &inner.settings)?;
        let program = inner.steamcmd(&plan)?;
        let installed = match AppManifest::read(&plan.dir, plan.app_id).await {
            Ok(Some(manifest)) if manifest.is_fully_installed() => Some(manifest.build_id),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(app_id = plan.app_id, error = %e, "unreadable app manifest: counting the app as not installed");
                None
            }
        };
        let remote = with_retries(&inner.settings, &plan.context, &NoProgress, None, |_, _| {
            self.remote_build(&plan, &program)
        })
        .await?;
        let status = match installed {
            None => UpdateStatus::NotInstalled { remote },
            Some(installed) if installed == remote => UpdateStatus::UpToDate {
                build_id: installed,
            },
            Some(installed) => UpdateStatus::UpdateAvailable { installed, remote },
        };
        tracing::info!(app_id = plan.app_id, dir = %plan.dir.display(), ?status, "Steam update check");
        Ok(status)
    }

    async fn remote_build(&self, plan: &Plan, program: &Path) -> Attempt<String> {
        let inner = &self.inner;
        let _permit = inner.permits.acquire().await.map_err(|_| {
            (
                Failure::new(ErrorClass::Unknown, "the installer is shutting down"),
                Vec::new(),
            )
        })?;
        let args = AppInfoCommand {
            platform: inner.settings.platform,
            login: plan.login.clone(),
            app_id: plan.app_id,
        }
        .args();
        tracing::debug!(app_id = plan.app_id, args = ?args, "running SteamCMD for app info");
        let redactor = plan.redactor();
        let outcome = run(
            Run {
                runner: inner.runner.as_ref(),
                spec: steamcmd::spec(program, args, &inner.settings),
                stdin: plan.stdin(),
                guard_answers: plan.guard_answers(),
                idle_timeout: inner.settings.idle_timeout,
                deadline: Some(tokio::time::Instant::now() + inner.settings.install_timeout),
                redactor: &redactor,
                app_id: plan.app_id,
                keep_output: true,
            },
            &NoProgress,
        )
        .await
        .map_err(|e| {
            (
                Failure::new(
                    ErrorClass::SteamCmdUnavailable,
                    format!("could not start SteamCMD: {e}"),
                ),
                Vec::new(),
            )
        })?;
        if let Some(failure) = outcome.failure(inner.settings.idle_timeout) {
            return Err((failure, outcome.tail()));
        }
        remote_build_id(&outcome.output, plan.app_id, plan.branch.as_deref())
            .map_err(|failure| (failure, outcome.tail()))
    }
}

/// The build id of `branch` (`public` when `None`) in `app_info_print` output.
pub(crate) fn remote_build_id(
    output: &[String],
    app_id: u32,
    branch: Option<&str>,
) -> Result<String, Failure> {
    let key = format!("\"{app_id}\"");
    let Some(start) = output.iter().position(|line| line.trim() == key) else {
        return Err(Failure::new(
            ErrorClass::Unknown,
            format!(
                "SteamCMD printed no app info for app {app_id} (an unknown app id, a login \
                 that may not see it, or a stale app info cache)"
            ),
        ));
    };
    let doc = vdf::parse_first(&output[start..].join("\n")).map_err(|e| {
        Failure::new(
            ErrorClass::Unknown,
            format!("the app info SteamCMD printed for app {app_id} is not valid VDF: {e}"),
        )
    })?;
    let branch = branch.unwrap_or("public");
    let branches = doc
        .lookup(&[&app_id.to_string(), "depots", "branches"])
        .and_then(vdf::Value::as_section);
    let Some(branches) = branches else {
        return Err(Failure::new(
            ErrorClass::Unknown,
            format!("the app info of app {app_id} lists no branches (a stale app info cache?)"),
        ));
    };
    let Some(found) = branches.get_section(branch) else {
        let known: Vec<_> = branches.iter().map(|(name, _)| name).collect();
        return Err(Failure::new(
            ErrorClass::InvalidConfig,
            format!(
                "app {app_id} has no branch \"{branch}\" (it has: {})",
                known.join(", ")
            ),
        ));
    };
    found
        .get_str("buildid")
        .filter(|id| !id.is_empty() && *id != "0")
        .map(str::to_owned)
        .ok_or_else(|| {
            Failure::new(
                ErrorClass::Unknown,
                format!("branch \"{branch}\" of app {app_id} has no build id in the app info"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const APP_INFO: &str = r#"Connecting anonymously to Steam Public...OK
Waiting for client config...OK
Waiting for user info...OK
AppID : 896660, change number : 23776466/0, last change : Mon May 20 12:00:00 2024
"896660"
{
	"common"
	{
		"name"		"Valheim Dedicated Server"
		"oslist"		"windows,linux"
	}
	"depots"
	{
		"branches"
		{
			"public"
			{
				"buildid"		"14396345"
				"timeupdated"		"1716584859"
			}
			"public-test"
			{
				"buildid"		"14411111"
				"description"		"Public test {unstable}"
				"pwdrequired"		"1"
			}
		}
	}
}
Unloading Steam API...OK"#;

    fn lines() -> Vec<String> {
        APP_INFO.lines().map(str::to_owned).collect()
    }

    #[test]
    fn reads_the_branch_build_id() {
        assert_eq!(remote_build_id(&lines(), 896660, None).unwrap(), "14396345");
        assert_eq!(
            remote_build_id(&lines(), 896660, Some("public-test")).unwrap(),
            "14411111"
        );
    }

    #[test]
    fn unknown_branches_and_missing_info_are_errors() {
        let err = remote_build_id(&lines(), 896660, Some("nope")).unwrap_err();
        assert_eq!(err.class, ErrorClass::InvalidConfig);
        assert!(err.what.contains("public, public-test"), "{}", err.what);
        let err = remote_build_id(&lines(), 740, None).unwrap_err();
        assert_eq!(err.class, ErrorClass::Unknown);
        assert!(err.what.contains("no app info for app 740"), "{}", err.what);
    }

    #[test]
    fn needs_update() {
        assert!(
            !UpdateStatus::UpToDate {
                build_id: "1".into()
            }
            .needs_update()
        );
        assert!(UpdateStatus::NotInstalled { remote: "1".into() }.needs_update());
    }
}
