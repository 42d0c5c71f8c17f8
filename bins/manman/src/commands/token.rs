//! `manman tokens …`: operator tokens (admin).

use crate::output::print;
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

/// Runs a `manman tokens` subcommand.
pub(crate) async fn run(client: &Client, json: bool, command: TokenCommand) -> anyhow::Result<()> {
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
