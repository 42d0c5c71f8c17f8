//! Implementing the `GameInstaller` port: an installer that writes a game's files itself (here
//! a script; yours might download an archive or copy from a share) and reports progress on the
//! way. A worker takes it as its installer (`WorkerService::new(…, Arc::new(installer), …)`, or
//! per server type with `InstallerByType`).

use async_trait::async_trait;
use manman_core::config::{ConfigSpec, GameServerConfig};
use manman_core::game_server::{GameServer, ServerType};
use manman_core::id::{ConfigId, GameServerId};
use manman_core::ports::{
    GameInstaller, InstallError, InstallProgress, InstallRequest, Installation, ProgressSink,
};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

/// Writes `script` as the config's executable in the game's directory.
#[derive(Debug)]
struct ScriptInstaller {
    script: &'static str,
}

#[async_trait]
impl GameInstaller for ScriptInstaller {
    async fn install(
        &self,
        request: &InstallRequest,
        progress: &dyn ProgressSink,
    ) -> Result<Installation, InstallError> {
        let game = &request.game.name;
        let ServerType::Local { path } = &request.game.server_type else {
            return Err(InstallError::Unsupported {
                game: game.clone(),
                detail: "this installer writes local games; Steam games need manman-steam".into(),
            });
        };
        let failed = |e: std::io::Error| InstallError::Failed {
            game: game.clone(),
            detail: e.to_string(),
        };
        let dir = request.install_root.join(path);
        progress.report(stage("preparing", 0.0));
        tokio::fs::create_dir_all(&dir).await.map_err(failed)?;
        progress.report(stage("writing", 50.0));
        let executable = dir.join(&request.config.spec.executable);
        tokio::fs::write(&executable, self.script)
            .await
            .map_err(failed)?;
        tokio::fs::set_permissions(&executable, std::fs::Permissions::from_mode(0o755))
            .await
            .map_err(failed)?;
        progress.report(stage("done", 100.0));
        Ok(Installation {
            dir,
            build_id: Some("script-1".into()),
        })
    }
}

fn stage(name: &str, percent: f64) -> InstallProgress {
    InstallProgress {
        stage: name.into(),
        percent: Some(percent),
        bytes_done: None,
        bytes_total: None,
        detail: None,
    }
}

/// Prints each progress update (a worker sends them on the bus to `manman watch`).
#[derive(Debug)]
struct PrintProgress;

impl ProgressSink for PrintProgress {
    fn report(&self, progress: InstallProgress) {
        println!(
            "  {:>5.1}% {}",
            progress.percent.unwrap_or_default(),
            progress.stage
        );
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let root = tempfile::tempdir()?;
    let now = chrono::Utc::now();
    let request = InstallRequest {
        game: GameServer {
            id: GameServerId(1),
            name: "hello".into(),
            server_type: ServerType::Local {
                path: "games/hello".into(),
            },
            created_at: now,
        },
        config: GameServerConfig {
            id: ConfigId(1),
            game_server_id: GameServerId(1),
            created_at: now,
            spec: ConfigSpec::new("main", "server.sh"),
        },
        install_root: root.path().to_owned(),
        run_as: None,
    };
    let installer = ScriptInstaller {
        script: "#!/bin/sh\necho 'hello from an installed game'\n",
    };
    println!("installing {}:", request.game.name);
    let installation = installer.install(&request, &PrintProgress).await?;
    let executable: PathBuf = installation.dir.join(&request.config.spec.executable);
    let output = tokio::process::Command::new(&executable).output().await?;
    print!("{}", String::from_utf8_lossy(&output.stdout));
    anyhow::ensure!(output.status.success(), "the installed game did not run");
    Ok(())
}
