//! The request and answer bodies of the host's API that are not domain types of `manman-core`;
//! `manman-http` serves them, [`Client`](crate::Client) sends and reads them.

use manman_core::auth::{ApiToken, Scope, WorkerCredential};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The answer to a command request (HTTP 202): follow it at `/api/v1/commands/{command_id}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CommandAccepted {
    /// The command sent to the worker.
    pub command_id: Uuid,
}

/// A console line to send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct StdinRequest {
    /// The line, without a newline.
    pub line: String,
}

/// A token to create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// A unique name saying whose or what for.
    pub name: String,
    /// What it may do.
    pub scope: Scope,
}

/// A created token and its secret, shown this once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedToken {
    /// The token.
    pub token: ApiToken,
    /// The bearer secret: keep it, the host cannot show it again.
    pub secret: String,
}

/// Credentials to create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewWorkerCredential {
    /// The name the worker registers under (`MANMAN_WORKER_NAME`).
    pub worker_name: String,
}

/// Created credentials and their secret, shown this once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedWorkerCredential {
    /// The credentials.
    pub credential: WorkerCredential,
    /// The secret to give the worker (`MANMAN_WORKER_SA_CLIENT_SECRET`): the host cannot show it
    /// again.
    pub client_secret: String,
}

/// What a worker sends to get a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// Its client id.
    pub client_id: String,
    /// Its secret.
    pub client_secret: String,
}
