//! `manman credentials …`: worker credentials, which a worker exchanges for its token (admin).

use crate::output::print;
use clap::Subcommand;
use manman_http::Client;

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

/// Runs a `manman credentials` subcommand.
pub(crate) async fn run(
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
