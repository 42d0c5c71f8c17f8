#![doc = include_str!("../README.md")]

mod argv;
mod backoff;
mod credentials;
mod error;
mod installer;
mod manifest;
mod output;
mod plan;
mod retry;
mod run;
mod secret;
mod settings;
mod single_flight;
mod steamcmd;
mod update_check;
pub mod vdf;

pub use argv::{AppInfoCommand, AppUpdateCommand, BetaPassword, CommandLine, Login};
pub use backoff::Backoff;
pub use credentials::{CredentialError, SteamCredential};
pub use error::{ErrorClass, SteamError};
pub use installer::SteamInstaller;
pub use manifest::{AppManifest, ManifestError, STATE_FULLY_INSTALLED, STATE_NOT_SOUND};
pub use output::{GuardPromptKind, OutputParser, SteamEvent, UpdateProgress, parse_line};
pub use plan::SteamApp;
pub use secret::{REDACTED, Secret};
pub use settings::{SteamPlatform, SteamSettings};
pub use update_check::UpdateStatus;
