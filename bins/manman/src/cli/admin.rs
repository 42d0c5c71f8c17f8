//! `manman tokens …` and `manman credentials …`: operator tokens and worker credentials
//! (admin).

use super::output::print;
use clap::Subcommand;
use manman_core::auth::Scope;
use manman_core::id::TokenId;
use manman_http::{Client, NewToken};

/// Token subcommands.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token; its secret is printed once.
    Create {
        /// A unique name saying whose or what for.
        name: String,
        /// What it may do: read, operate or admin.
        #[arg(long, default_value = "read")]
        scope: Scope,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token.
    Revoke {
        /// The token id.
        id: i64,
    },
}

/// Worker credential subcommands.
#[derive(Debug, Subcommand)]
pub enum CredentialCommand {
    /// Create credentials for the worker of this name; the secret is printed once.
    Create {
        /// The name the worker registers under (`MANMAN_WORKER_NAME`).
        worker_name: String,
    },
    /// List worker credentials (never their secrets).
    List,
    /// Revoke worker credentials.
    Revoke {
        /// The client id.
        client_id: String,
    },
}

/// Runs a `manman tokens` subcommand.
pub(crate) async fn tokens(
    client: &Client,
    json: bool,
    command: TokenCommand,
) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create { name, scope } => {
            let created = client.create_token(&NewToken { name, scope }).await?;
            print(json, &created, || {
                format!(
                    "token {} ({}) created; its secret is shown this once:\n{}",
                    created.token.name, created.token.scope, created.secret
                )
            })
        }
        TokenCommand::List => {
            let tokens = client.list_tokens().await?;
            print(json, &tokens, || {
                let mut out = format!("{:<6} {:<24} {:<8} {}", "ID", "NAME", "SCOPE", "STATE");
                for t in &tokens {
                    let state = match t.revoked_at {
                        Some(at) => format!("revoked {}", at.format("%Y-%m-%d %H:%M")),
                        None => "active".to_owned(),
                    };
                    out.push_str(&format!(
                        "\n{:<6} {:<24} {:<8} {state}",
                        t.id.get(),
                        t.name,
                        t.scope.as_str()
                    ));
                }
                out
            })
        }
        TokenCommand::Revoke { id } => {
            let token = client.revoke_token(TokenId(id)).await?;
            print(json, &token, || format!("token {} revoked", token.name))
        }
    }
}

/// Runs a `manman credentials` subcommand.
pub(crate) async fn credentials(
    client: &Client,
    json: bool,
    command: CredentialCommand,
) -> anyhow::Result<()> {
    match command {
        CredentialCommand::Create { worker_name } => {
            let created = client.create_worker_credential(&worker_name).await?;
            print(json, &created, || {
                format!(
                    "credentials for worker {} created; give the worker these (the secret is shown this once):\n\
                     MANMAN_WORKER_NAME={}\nMANMAN_WORKER_SA_CLIENT_ID={}\nMANMAN_WORKER_SA_CLIENT_SECRET={}",
                    created.credential.worker_name,
                    created.credential.worker_name,
                    created.credential.client_id,
                    created.client_secret
                )
            })
        }
        CredentialCommand::List => {
            let credentials = client.list_worker_credentials().await?;
            print(json, &credentials, || {
                let mut out = format!("{:<22} {:<20} {}", "CLIENT ID", "WORKER", "STATE");
                for c in &credentials {
                    let state = if c.revoked_at.is_some() {
                        "revoked"
                    } else {
                        "active"
                    };
                    out.push_str(&format!(
                        "\n{:<22} {:<20} {state}",
                        c.client_id, c.worker_name
                    ));
                }
                out
            })
        }
        CredentialCommand::Revoke { client_id } => {
            let credential = client.revoke_worker_credential(&client_id).await?;
            print(json, &credential, || {
                format!("credentials {} revoked", credential.client_id)
            })
        }
    }
}
