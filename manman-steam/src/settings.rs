//! [`SteamSettings`]: how a worker runs SteamCMD, with the defaults of the README.

use crate::backoff::Backoff;
use crate::credentials::SteamCredential;
use crate::secret::Secret;
use manman_core::worker_service::INHERITED_ENV;
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// How the worker runs SteamCMD. Build it with `..Default::default()` and set what differs.
///
/// ```
/// use manman_steam::{Secret, SteamCredential, SteamSettings};
/// let settings = SteamSettings {
///     steamcmd: "/opt/steamcmd/steamcmd.sh".into(),
///     ..Default::default()
/// }
/// .with_credential("ops", SteamCredential::new("ops_account", Secret::new("hunter2")))
/// .with_secret("experimental-password", Secret::new("s3cret"));
/// assert_eq!(settings.max_attempts, 5);
/// ```
#[derive(Debug, Clone)]
pub struct SteamSettings {
    /// The SteamCMD executable. A bare name (default `steamcmd`) is looked up on the `PATH` of
    /// [`SteamSettings::env`] (or the worker's `PATH`); a relative path is taken from the
    /// worker's current directory.
    pub steamcmd: PathBuf,
    /// The whole environment SteamCMD runs with (nothing else is inherited). Default: the
    /// worker's `PATH`, `HOME`, `USER`, `LOGNAME`, `SHELL`, `LANG`, `LC_ALL`, `LC_CTYPE`, `TZ`,
    /// `TMPDIR`. SteamCMD keeps its state (login tokens, app info cache) under `$HOME/Steam`.
    pub env: BTreeMap<String, String>,
    /// Forces the platform of the depots (`+@sSteamCmdForcePlatformType`), e.g. `windows` for
    /// a server run under Wine. Default: none (SteamCMD's own platform).
    pub platform: Option<SteamPlatform>,
    /// Named Steam accounts, by the name configs use in `steam.login`. Default: none
    /// (anonymous only).
    pub credentials: BTreeMap<String, SteamCredential>,
    /// Named secrets: the beta-branch passwords configs name in
    /// `steam.branch_password_secret`. Default: none.
    pub secrets: BTreeMap<String, Secret>,
    /// SteamCMD runs per install before giving up on transient failures (default 5).
    pub max_attempts: u32,
    /// The delays between attempts (default 5 s doubling up to 2 min, jittered).
    pub backoff: Backoff,
    /// A SteamCMD run that prints nothing for this long is killed and counts as a `timeout`,
    /// retried once (default 3 min: SteamCMD prints progress every few seconds while it
    /// downloads or validates, so a silent hang fails in minutes). The worker's
    /// `MANMAN_WORKER_STEAM_IDLE_TIMEOUT_S`.
    pub idle_timeout: Duration,
    /// The longest one install may take, over all its attempts and pauses; then SteamCMD is
    /// killed and the install fails as `install-timeout` (default 2 h). The worker's
    /// `MANMAN_WORKER_STEAM_INSTALL_TIMEOUT_S`.
    pub install_timeout: Duration,
    /// SteamCMD runs at once on this worker, over all games (default 2). SteamCMD is
    /// disk- and network-heavy; more rarely helps.
    pub max_concurrent_installs: usize,
}

impl Default for SteamSettings {
    fn default() -> Self {
        Self {
            steamcmd: PathBuf::from("steamcmd"),
            env: INHERITED_ENV
                .iter()
                .filter_map(|key| std::env::var(key).ok().map(|v| ((*key).to_owned(), v)))
                .collect(),
            platform: None,
            credentials: BTreeMap::new(),
            secrets: BTreeMap::new(),
            max_attempts: 5,
            backoff: Backoff::default(),
            idle_timeout: Duration::from_secs(180),
            install_timeout: Duration::from_secs(2 * 3600),
            max_concurrent_installs: 2,
        }
    }
}

impl SteamSettings {
    /// Adds a named credential.
    pub fn with_credential(mut self, name: impl Into<String>, credential: SteamCredential) -> Self {
        self.credentials.insert(name.into(), credential);
        self
    }

    /// Adds a named secret (a beta-branch password).
    pub fn with_secret(mut self, name: impl Into<String>, secret: Secret) -> Self {
        self.secrets.insert(name.into(), secret);
        self
    }
}

/// A platform SteamCMD can be forced to download depots for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SteamPlatform {
    /// `windows`.
    Windows,
    /// `linux`.
    Linux,
    /// `macos`.
    MacOs,
}

impl SteamPlatform {
    /// The name SteamCMD expects.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Windows => "windows",
            Self::Linux => "linux",
            Self::MacOs => "macos",
        }
    }
}

impl fmt::Display for SteamPlatform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SteamPlatform {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "windows" => Ok(Self::Windows),
            "linux" => Ok(Self::Linux),
            "macos" | "osx" => Ok(Self::MacOs),
            other => Err(format!(
                "unknown Steam platform {other:?}: use windows, linux or macos"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_readme() {
        let s = SteamSettings::default();
        assert_eq!(s.steamcmd, PathBuf::from("steamcmd"));
        assert_eq!(s.max_attempts, 5);
        assert_eq!(s.max_concurrent_installs, 2);
        assert_eq!(s.idle_timeout, Duration::from_secs(180));
        assert_eq!(s.install_timeout, Duration::from_secs(7200));
        assert_eq!(s.backoff, Backoff::default());
        assert!(s.platform.is_none() && s.credentials.is_empty() && s.secrets.is_empty());
        assert!(s.env.keys().all(|k| INHERITED_ENV.contains(&k.as_str())));
    }

    #[test]
    fn platforms_parse_and_print() {
        assert_eq!(
            "Windows".parse::<SteamPlatform>(),
            Ok(SteamPlatform::Windows)
        );
        assert_eq!(SteamPlatform::MacOs.to_string(), "macos");
        assert!("amiga".parse::<SteamPlatform>().is_err());
    }

    #[test]
    fn debug_redacts_credentials_and_secrets() {
        let s = SteamSettings::default()
            .with_credential("ops", SteamCredential::new("ops", Secret::new("hunter2")))
            .with_secret("beta", Secret::new("s3cret"));
        let debug = format!("{s:?}");
        assert!(
            !debug.contains("hunter2") && !debug.contains("s3cret"),
            "{debug}"
        );
        assert!(debug.contains("[redacted]"), "{debug}");
    }
}
