//! [`ErrorClass`] and [`SteamError`]: what went wrong with SteamCMD, whether retrying can help,
//! and what the operator must do.

use manman_core::ports::InstallError;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The kinds of SteamCMD failure, each with a fixed name (used in error messages and the
/// README's table) and a retry rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorClass {
    /// `disk-full`: state 0x202 or 0x212, not enough disk space. Fatal.
    DiskFull,
    /// `no-license`: "No subscription", the account does not own the app. Fatal.
    NoLicense,
    /// `login-failed`: "FAILED (Invalid Password)" and other refused logins. Fatal.
    LoginFailed,
    /// `steam-guard`: a Steam Guard or two-factor code is required or was wrong. Fatal.
    SteamGuard,
    /// `rate-limited`: "Rate Limit Exceeded", Steam refuses logins for a while. Transient
    /// (retried after the longest backoff).
    RateLimited,
    /// `beta-password`: "Password check for AppId … returned error", the branch password is
    /// wrong. Fatal.
    BetaPassword,
    /// `invalid-platform`: the app has no depots for this platform. Fatal.
    InvalidPlatform,
    /// `network`: state 0x402 or 0x602 (update required but not completed) or no connection
    /// to Steam. Transient.
    Network,
    /// `disk-write`: state 0x606, a disk write failed. Transient.
    DiskWrite,
    /// `corrupt-files`: state 0x626 (missing update files) or 0x6A6 (corrupt update files).
    /// Transient; the retry runs with `validate`.
    CorruptFiles,
    /// `missing-configuration`: "Missing configuration", Steam's servers returned no app
    /// configuration. Transient.
    MissingConfiguration,
    /// `timeout`: SteamCMD printed nothing for the idle timeout and was killed. Transient.
    Timeout,
    /// `incomplete-install`: SteamCMD claimed success, but the app manifest or the executable
    /// says otherwise. Transient; the retry runs with `validate`.
    IncompleteInstall,
    /// `missing-credential`: the config names a credential or secret this worker does not
    /// have. Fatal.
    MissingCredential,
    /// `invalid-config`: the config's Steam options cannot be used (bad branch name, …).
    /// Fatal.
    InvalidConfig,
    /// `install-dir`: the install directory cannot be created. Fatal.
    InstallDir,
    /// `steamcmd-unavailable`: SteamCMD cannot be started. Fatal.
    SteamCmdUnavailable,
    /// `steamcmd-failed`: SteamCMD failed in a way not recognised above. Transient.
    Unknown,
}

impl ErrorClass {
    /// Every class, in the README's order.
    pub const ALL: [Self; 18] = [
        Self::DiskFull,
        Self::NoLicense,
        Self::LoginFailed,
        Self::SteamGuard,
        Self::RateLimited,
        Self::BetaPassword,
        Self::InvalidPlatform,
        Self::Network,
        Self::DiskWrite,
        Self::CorruptFiles,
        Self::MissingConfiguration,
        Self::Timeout,
        Self::IncompleteInstall,
        Self::MissingCredential,
        Self::InvalidConfig,
        Self::InstallDir,
        Self::SteamCmdUnavailable,
        Self::Unknown,
    ];

    /// The class's name, e.g. `disk-full`.
    pub fn name(self) -> &'static str {
        match self {
            Self::DiskFull => "disk-full",
            Self::NoLicense => "no-license",
            Self::LoginFailed => "login-failed",
            Self::SteamGuard => "steam-guard",
            Self::RateLimited => "rate-limited",
            Self::BetaPassword => "beta-password",
            Self::InvalidPlatform => "invalid-platform",
            Self::Network => "network",
            Self::DiskWrite => "disk-write",
            Self::CorruptFiles => "corrupt-files",
            Self::MissingConfiguration => "missing-configuration",
            Self::Timeout => "timeout",
            Self::IncompleteInstall => "incomplete-install",
            Self::MissingCredential => "missing-credential",
            Self::InvalidConfig => "invalid-config",
            Self::InstallDir => "install-dir",
            Self::SteamCmdUnavailable => "steamcmd-unavailable",
            Self::Unknown => "steamcmd-failed",
        }
    }

    /// Whether another attempt may succeed (the installer retries these with backoff).
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            Self::RateLimited
                | Self::Network
                | Self::DiskWrite
                | Self::CorruptFiles
                | Self::MissingConfiguration
                | Self::Timeout
                | Self::IncompleteInstall
                | Self::Unknown
        )
    }

    /// The class of a failed app state code from `Error! App '<id>' state is 0x… after update
    /// job.`, when the code is a known one.
    pub fn from_state_code(code: u32) -> Option<Self> {
        match code {
            0x202 | 0x212 => Some(Self::DiskFull),
            0x402 | 0x602 => Some(Self::Network),
            0x606 => Some(Self::DiskWrite),
            0x626 | 0x6A6 => Some(Self::CorruptFiles),
            _ => None,
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A failed Steam install or update check: its class, the app and directory it is about,
/// what happened, what the operator must do, and the last lines SteamCMD printed (secrets
/// scrubbed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SteamError(Box<ErrorData>);

#[derive(Debug, Clone, PartialEq, Eq)]
struct ErrorData {
    class: ErrorClass,
    app_id: u32,
    dir: PathBuf,
    what: String,
    hint: String,
    attempts: u32,
    output: Vec<String>,
    missing: Option<PathBuf>,
}

impl SteamError {
    /// The class.
    pub fn class(&self) -> ErrorClass {
        self.0.class
    }

    /// The app.
    pub fn app_id(&self) -> u32 {
        self.0.app_id
    }

    /// The install directory.
    pub fn dir(&self) -> &Path {
        &self.0.dir
    }

    /// What happened.
    pub fn what(&self) -> &str {
        &self.0.what
    }

    /// What the operator must do.
    pub fn hint(&self) -> &str {
        &self.0.hint
    }

    /// SteamCMD runs made (0 when it failed before running SteamCMD).
    pub fn attempts(&self) -> u32 {
        self.0.attempts
    }

    /// The last lines SteamCMD printed, progress lines left out, secrets scrubbed.
    pub fn output(&self) -> &[String] {
        &self.0.output
    }

    /// The port's error for game `game`: [`InstallError::Missing`] when SteamCMD itself is
    /// not there, [`InstallError::Failed`] with this whole message otherwise.
    pub fn into_install_error(self, game: impl Into<String>) -> InstallError {
        let game = game.into();
        match self.0.missing {
            Some(path) => InstallError::Missing {
                game,
                path,
                hint: format!("{}: {}", self.0.class, self.0.hint),
            },
            None => InstallError::Failed {
                game,
                detail: self.to_string(),
            },
        }
    }
}

impl fmt::Display for SteamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} (app {}, {}",
            self.0.class,
            self.0.what,
            self.0.app_id,
            self.0.dir.display()
        )?;
        match self.0.attempts {
            0 => {}
            1 => f.write_str(", after 1 attempt")?,
            n => write!(f, ", after {n} attempts")?,
        }
        write!(f, "). What to do: {}", self.0.hint)?;
        if !self.0.output.is_empty() {
            f.write_str("\nLast SteamCMD output:")?;
            for line in &self.0.output {
                write!(f, "\n  {line}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for SteamError {}

/// One failed attempt, before it becomes a [`SteamError`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub(crate) class: ErrorClass,
    pub(crate) what: String,
}

impl Failure {
    pub(crate) fn new(class: ErrorClass, what: impl Into<String>) -> Self {
        Self {
            class,
            what: what.into(),
        }
    }
}

/// What an error is about, to say what the operator must do.
#[derive(Debug, Clone, Default)]
pub(crate) struct ErrorContext {
    pub(crate) app_id: u32,
    pub(crate) dir: PathBuf,
    /// The worker credential's name; `None` for anonymous.
    pub(crate) credential: Option<String>,
    pub(crate) branch: Option<String>,
    pub(crate) branch_secret: Option<String>,
    pub(crate) executable: Option<String>,
    pub(crate) idle_timeout: Duration,
    pub(crate) steamcmd: PathBuf,
}

impl ErrorContext {
    /// The error for `failure` after `attempts` runs that printed `output`.
    pub(crate) fn error(&self, failure: Failure, attempts: u32, output: Vec<String>) -> SteamError {
        SteamError(Box::new(ErrorData {
            class: failure.class,
            app_id: self.app_id,
            dir: self.dir.clone(),
            hint: self.hint(failure.class),
            what: failure.what,
            attempts,
            output,
            missing: None,
        }))
    }

    /// SteamCMD is not at `path`.
    pub(crate) fn steamcmd_missing(&self, path: PathBuf, what: String) -> SteamError {
        let mut error = self.error(
            Failure::new(ErrorClass::SteamCmdUnavailable, what),
            0,
            Vec::new(),
        );
        error.0.missing = Some(path);
        error
    }

    fn hint(&self, class: ErrorClass) -> String {
        let app = self.app_id;
        let dir = self.dir.display();
        let credential = self.credential.as_deref();
        match class {
            ErrorClass::DiskFull => format!(
                "free disk space on the filesystem of {dir} (SteamCMD needs room for the \
                 download and the installed files at once), then start the server again"
            ),
            ErrorClass::NoLicense => match credential {
                None => format!(
                    "app {app} cannot be downloaded anonymously: log in with a Steam account \
                     that owns it (steam.login = {{\"named\": \"<credential>\"}} in the config \
                     and that credential in the worker's Steam settings)"
                ),
                Some(name) => format!(
                    "the Steam account of credential \"{name}\" has no licence for app {app}: \
                     buy or subscribe to the app with that account, or use anonymous login if \
                     the app is a free dedicated server"
                ),
            },
            ErrorClass::LoginFailed => match credential {
                Some(name) => format!(
                    "fix the username or password of credential \"{name}\" in the worker's \
                     Steam settings (or its secret file); too many failed logins get the \
                     machine rate-limited"
                ),
                None => {
                    "anonymous login was refused: check Steam's status and retry later".to_owned()
                }
            },
            ErrorClass::SteamGuard => format!(
                "credential \"{}\" needs Steam Guard: log in once as the worker's user with \
                 `steamcmd +login <username>` and enter the code, so SteamCMD caches the \
                 login, or set a fresh guard_code for the credential, or use an account \
                 without Steam Guard",
                credential.unwrap_or("anonymous")
            ),
            ErrorClass::RateLimited => "Steam refuses logins from this machine or account for \
                 now (too many attempts): wait at least 30 minutes; every early retry \
                 extends the lockout"
                .to_owned(),
            ErrorClass::BetaPassword => format!(
                "fix the secret \"{}\" (the password of branch \"{}\") in the worker's Steam \
                 settings",
                self.branch_secret.as_deref().unwrap_or("?"),
                self.branch.as_deref().unwrap_or("?")
            ),
            ErrorClass::InvalidPlatform => format!(
                "app {app} has no depots for this platform: set the worker's Steam platform \
                 (e.g. windows, for a server run under Wine or Proton) or check the app id"
            ),
            ErrorClass::Network => "check this machine's connection to Steam (DNS, firewall, \
                 proxy, Steam's status); a new attempt resumes the download"
                .to_owned(),
            ErrorClass::DiskWrite => format!(
                "check that {dir} is writable by the worker's user and that the disk is \
                 healthy (dmesg), then start the server again"
            ),
            ErrorClass::CorruptFiles => format!(
                "attempts after this one run with validate; if it persists, delete \
                 {dir}/steamapps/downloading and start the server again"
            ),
            ErrorClass::MissingConfiguration => format!(
                "Steam's servers sent no configuration for app {app}; this usually passes on \
                 its own, retry later; if it persists, check that {app} is a dedicated-server \
                 app id and that the login may download it"
            ),
            ErrorClass::Timeout => format!(
                "SteamCMD printed nothing for {}s and was killed: check the network, and raise \
                 the worker's Steam idle timeout if the app is very large",
                self.idle_timeout.as_secs()
            ),
            ErrorClass::IncompleteInstall => match &self.executable {
                Some(exe) => format!(
                    "run the install again with validate (set steam.validate in the config); \
                     if SteamCMD keeps claiming success, check that the config's executable \
                     \"{exe}\" is the right path inside {dir} and that the app ships it \
                     executable"
                ),
                None => "run the install again with validate (set steam.validate in the \
                     config)"
                    .to_owned(),
            },
            ErrorClass::MissingCredential => "add it to the worker's Steam settings (from its \
                 configuration or a secret file), or change the config to name one that \
                 exists; credentials never come from the host"
                .to_owned(),
            ErrorClass::InvalidConfig => "fix the config's steam options".to_owned(),
            ErrorClass::InstallDir => format!(
                "create {dir} or make its parent writable by the worker's user, or change the \
                 worker's install directory"
            ),
            ErrorClass::SteamCmdUnavailable => format!(
                "install SteamCMD on this worker or set the steamcmd path in its Steam \
                 settings (now {})",
                self.steamcmd.display()
            ),
            ErrorClass::Unknown => "read SteamCMD's output below; the install was retried \
                 with backoff; if it persists, run the same command by hand as the worker's \
                 user"
                .to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_codes_map_to_classes() {
        assert_eq!(
            ErrorClass::from_state_code(0x202),
            Some(ErrorClass::DiskFull)
        );
        assert_eq!(
            ErrorClass::from_state_code(0x212),
            Some(ErrorClass::DiskFull)
        );
        assert_eq!(
            ErrorClass::from_state_code(0x402),
            Some(ErrorClass::Network)
        );
        assert_eq!(
            ErrorClass::from_state_code(0x602),
            Some(ErrorClass::Network)
        );
        assert_eq!(
            ErrorClass::from_state_code(0x606),
            Some(ErrorClass::DiskWrite)
        );
        assert_eq!(
            ErrorClass::from_state_code(0x626),
            Some(ErrorClass::CorruptFiles)
        );
        assert_eq!(
            ErrorClass::from_state_code(0x6A6),
            Some(ErrorClass::CorruptFiles)
        );
        assert_eq!(ErrorClass::from_state_code(0x61), None);
    }

    #[test]
    fn fatal_and_transient_classes() {
        let fatal = [
            ErrorClass::DiskFull,
            ErrorClass::NoLicense,
            ErrorClass::LoginFailed,
            ErrorClass::SteamGuard,
            ErrorClass::BetaPassword,
        ];
        assert!(fatal.iter().all(|c| !c.is_transient()));
        let transient = [
            ErrorClass::Network,
            ErrorClass::DiskWrite,
            ErrorClass::CorruptFiles,
            ErrorClass::MissingConfiguration,
            ErrorClass::RateLimited,
            ErrorClass::Timeout,
            ErrorClass::IncompleteInstall,
        ];
        assert!(transient.iter().all(|c| c.is_transient()));
        let names: std::collections::HashSet<_> =
            ErrorClass::ALL.iter().map(|c| c.name()).collect();
        assert_eq!(names.len(), ErrorClass::ALL.len());
    }

    #[test]
    fn the_message_names_the_class_app_dir_and_what_to_do() {
        let ctx = ErrorContext {
            app_id: 896660,
            dir: PathBuf::from("/srv/steam/896660"),
            credential: Some("ops".into()),
            ..Default::default()
        };
        let err = ctx.error(
            Failure::new(ErrorClass::DiskFull, "state 0x202 after update job"),
            1,
            vec!["Error! App '896660' state is 0x202 after update job.".into()],
        );
        let text = err.to_string();
        assert!(text.starts_with("disk-full: state 0x202"), "{text}");
        assert!(
            text.contains("app 896660, /srv/steam/896660, after 1 attempt"),
            "{text}"
        );
        assert!(text.contains("free disk space on the filesystem of /srv/steam/896660"));
        assert!(text.contains("\n  Error! App '896660'"), "{text}");
        let login = ctx.error(Failure::new(ErrorClass::LoginFailed, "x"), 1, vec![]);
        assert!(
            login.hint().contains("credential \"ops\""),
            "{}",
            login.hint()
        );
        match login.into_install_error("valheim") {
            InstallError::Failed { game, detail } => {
                assert_eq!(game, "valheim");
                assert!(detail.starts_with("login-failed: "), "{detail}");
            }
            other => panic!("{other:?}"),
        }
        let missing = ctx.steamcmd_missing(PathBuf::from("steamcmd"), "not on PATH".into());
        assert!(matches!(
            missing.into_install_error("valheim"),
            InstallError::Missing { .. }
        ));
    }
}
