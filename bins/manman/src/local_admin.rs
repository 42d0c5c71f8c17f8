//! The admin token of `manman up`: kept in `<data dir>/admin-token` (readable by its owner
//! only), where the `manman` command line finds it when run from the same directory. A kept
//! data directory keeps its token; a missing or no longer valid one is replaced.

use anyhow::Context;
use manman_core::auth::{Caller, Scope};
use manman_core::host::Authenticator;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The file's name in the data directory.
pub const FILE_NAME: &str = "admin-token";

/// The admin token this run accepts.
#[derive(Debug, Clone)]
pub struct LocalAdmin {
    /// The bearer token.
    pub token: String,
    /// Whether it was created by this start (else it was kept from an earlier one).
    pub created: bool,
    /// Where it is kept.
    pub file: PathBuf,
}

/// The kept admin token when it still works, else a new one, written to the file.
pub async fn ensure(auth: &Authenticator, data_dir: &Path) -> anyhow::Result<LocalAdmin> {
    let file = data_dir.join(FILE_NAME);
    if let Ok(text) = std::fs::read_to_string(&file) {
        let token = text.trim().to_owned();
        if let Ok(Caller::Operator {
            scope: Scope::Admin,
            ..
        }) = auth.authenticate(&token).await
        {
            return Ok(LocalAdmin {
                token,
                created: false,
                file,
            });
        }
    }
    let name = format!(
        "local-admin-{}",
        chrono::Utc::now().format("%Y%m%d-%H%M%S-%3f")
    );
    let (_, secret) = auth
        .create_token(&name, Scope::Admin)
        .await
        .context("could not create the local admin token")?;
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&file)
        .with_context(|| format!("could not write the admin token to {}", file.display()))?;
    writeln!(out, "{}", secret.expose())
        .with_context(|| format!("could not write the admin token to {}", file.display()))?;
    Ok(LocalAdmin {
        token: secret.expose().to_owned(),
        created: true,
        file,
    })
}
