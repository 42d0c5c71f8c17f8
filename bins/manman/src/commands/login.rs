//! `manman login`: check a token against the host, then keep both for later commands.

use crate::login::{self, SavedLogin};
use crate::output::print;
use anyhow::{Context, bail};
use manman_http::Client;
use std::path::Path;

/// `manman login`: the token must work on the host; then both are saved.
pub(crate) async fn run(
    token: Option<&str>,
    json: bool,
    host: &str,
    config_file: Option<&Path>,
) -> anyhow::Result<()> {
    let path = config_file.context(
        "no place for the login: set MANMAN_CONFIG_FILE (HOME and XDG_CONFIG_HOME are not set)",
    )?;
    let token = match token {
        Some(token) => token.trim().to_owned(),
        None => {
            eprint!("token for {host}: ");
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .context("could not read the token from stdin")?;
            line.trim().to_owned()
        }
    };
    if token.is_empty() {
        bail!("no token given: pass --token, MANMAN_TOKEN or type it");
    }
    let client = Client::new(host).with_token(&token);
    client
        .list_workers()
        .await
        .with_context(|| format!("the token does not work on {host}"))?;
    let login = SavedLogin {
        host: host.to_owned(),
        token,
    };
    login::save(path, &login)?;
    print(
        json,
        &serde_json::json!({"host": host, "config_file": path}),
        || format!("logged in to {host}; saved in {}", path.display()),
    )
}
