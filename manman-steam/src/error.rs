//! [`ErrorClass`] and [`SteamError`]: what went wrong with SteamCMD, whether retrying can help,
//! and what the operator must do.

use manman_core::ports::InstallError;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The kinds of SteamCMD failure, each with a fixed name (used in error messages and the
/// README's table) and a retry rule ([`ErrorClass::max_attempts`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorClass {
    /// `disk-full`: state 0x202 or 0x212, not enough disk space. Fatal.
    DiskFull,
    /// `no-license`: "No subscription", the account does not own the app. Fatal.
    NoLicense,
    /// `login-failed`: "FAILED (Invalid Password)", `FAILED with result code 5` and other
    /// refused logins. Fatal: repeated bad logins get the account locked.
    LoginFailed,
    /// `steam-guard`: a Steam Guard or two-factor code is required or was wrong, or the login
    /// was denied until one is given. Fatal.
    SteamGuard,
    /// `rate-limited`: "Rate Limit Exceeded" (result code 84), Steam refuses logins for a
    /// while. Fatal: every early retry extends the lockout (at least 30 minutes).
    RateLimited,
    /// `beta-password`: "Password check for AppId … returned error", the branch password is
    /// wrong. Fatal.
    BetaPassword,
    /// `invalid-platform`: the app has no depots for this platform. Fatal.
    InvalidPlatform,
    /// `network`: state 0x402, 0x406 or 0x602 (an update that lost its connection) or no
    /// connection to Steam. Transient.
    Network,
    /// `content-unavailable`: state 0x2, an install that never started (Steam's content
    /// servers did not answer). Transient.
    ContentUnavailable,
    /// `update-stuck`: state 0x6 or 0x206, the app's manifest says installed but needing an
    /// update that SteamCMD cannot start or finish (a stale manifest, leftover download files,
    /// a full disk). Fatal: the same files fail the same way.
    UpdateStuck,
    /// `missing-required-app`: SteamCMD reported a required app missing (usually followed by
    /// state 0x202, which is then not about the disk). Fatal.
    MissingRequiredApp,
    /// `disk-write`: state 0x606, a disk write failed. Transient.
    DiskWrite,
    /// `corrupt-files`: state 0x626 (missing update files) or 0x6A6 (corrupt update files).
    /// Transient; the retry runs with `validate`.
    CorruptFiles,
    /// `missing-configuration`: "Missing configuration", Steam's servers returned no app
    /// configuration. Transient.
    MissingConfiguration,
    /// `timeout`: SteamCMD printed nothing for the idle timeout and was killed. Retried once.
    Timeout,
    /// `install-timeout`: the whole install took longer than the install timeout. Fatal.
    InstallTimeout,
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
    pub const ALL: [Self; 22] = [
        Self::DiskFull,
        Self::NoLicense,
        Self::LoginFailed,
        Self::SteamGuard,
        Self::RateLimited,
        Self::BetaPassword,
        Self::InvalidPlatform,
        Self::Network,
        Self::ContentUnavailable,
        Self::UpdateStuck,
        Self::MissingRequiredApp,
        Self::DiskWrite,
        Self::CorruptFiles,
        Self::MissingConfiguration,
        Self::Timeout,
        Self::InstallTimeout,
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
            Self::ContentUnavailable => "content-unavailable",
            Self::UpdateStuck => "update-stuck",
            Self::MissingRequiredApp => "missing-required-app",
            Self::DiskWrite => "disk-write",
            Self::CorruptFiles => "corrupt-files",
            Self::MissingConfiguration => "missing-configuration",
            Self::Timeout => "timeout",
            Self::InstallTimeout => "install-timeout",
            Self::IncompleteInstall => "incomplete-install",
            Self::MissingCredential => "missing-credential",
            Self::InvalidConfig => "invalid-config",
            Self::InstallDir => "install-dir",
            Self::SteamCmdUnavailable => "steamcmd-unavailable",
            Self::Unknown => "steamcmd-failed",
        }
    }

    /// Whether another attempt may succeed (the installer retries these with backoff, up to
    /// [`ErrorClass::max_attempts`]; the worker's crash policy restarts only these).
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            Self::Network
                | Self::ContentUnavailable
                | Self::DiskWrite
                | Self::CorruptFiles
                | Self::MissingConfiguration
                | Self::Timeout
                | Self::IncompleteInstall
                | Self::Unknown
        )
    }

    /// SteamCMD runs one install makes at most when its attempts keep failing with this class,
    /// given the configured `max_attempts`: 1 for a fatal class, 2 for a `timeout` (a hung
    /// SteamCMD rarely recovers; a silent hang fails in minutes, not an hour), the configured
    /// number for the other transient classes.
    pub fn max_attempts(self, configured: u32) -> u32 {
        let configured = configured.max(1);
        match self {
            _ if !self.is_transient() => 1,
            Self::Timeout => configured.min(2),
            _ => configured,
        }
    }

    /// The class of a failed app state code from `Error! App '<id>' state is 0x… after update
    /// job.`, when the code is a known one. The codes are bit sets (2 update required, 4
    /// installed, 0x200 update running, 0x400 update started, 0x20 files missing, 0x80 files
    /// corrupt, 0x10 locked); their meanings follow LinuxGSM's documentation of SteamCMD's
    /// error codes and reports in public issue threads.
    pub fn from_state_code(code: u32) -> Option<Self> {
        match code {
            0x202 | 0x212 => Some(Self::DiskFull),
            0x402 | 0x406 | 0x602 => Some(Self::Network),
            0x2 => Some(Self::ContentUnavailable),
            0x6 | 0x206 => Some(Self::UpdateStuck),
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
    /// not there, [`InstallError::Unrecoverable`] for a fatal class (the worker does not
    /// restart the instance), [`InstallError::Failed`] otherwise — with this whole message.
    pub fn into_install_error(self, game: impl Into<String>) -> InstallError {
        let game = game.into();
        match self.0.missing {
            Some(path) => InstallError::Missing {
                game,
                path,
                hint: format!("{}: {}", self.0.class, self.0.hint),
            },
            None if !self.0.class.is_transient() => InstallError::Unrecoverable {
                game,
                class: self.0.class.name().to_owned(),
                detail: self.to_string(),
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
    pub(crate) install_timeout: Duration,
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
            ErrorClass::RateLimited => format!(
                "Steam refuses logins from this machine or account for now (too many \
                 attempts): wait at least 30 minutes — start the server again not before \
                 {} — and check the credential's password meanwhile; every early login \
                 extends the lockout, so neither the installer nor the crash policy retries it",
                utc_clock_in(RATE_LIMIT_WAIT)
            ),
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
            ErrorClass::ContentUnavailable => format!(
                "SteamCMD could not start downloading app {app} (state 0x2: Steam's content \
                 servers did not answer, or this login may not download the app): check the \
                 connection to Steam and Steam's status; if it persists, check the app id and \
                 log in with an account that owns the app"
            ),
            ErrorClass::UpdateStuck => format!(
                "the app's files in {dir} are in a state SteamCMD cannot update from (a stale \
                 app manifest or leftovers of an interrupted update; retrying fails the same \
                 way): check there is free disk space, make sure {dir} is owned by the user \
                 SteamCMD runs as, delete {dir}/steamapps/appmanifest_{app}.acf and \
                 {dir}/steamapps/downloading, then start the server again (SteamCMD checks \
                 the files it finds)"
            ),
            ErrorClass::MissingRequiredApp => format!(
                "SteamCMD reports an app that app {app} needs as missing (see its output \
                 below; this is not a full disk): check the worker's Steam platform setting \
                 and that the login may download that app, or install it once by hand as the \
                 worker's user with steamcmd +app_update <the required app>"
            ),
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
                "SteamCMD printed nothing for {} s and was killed (it was tried again once): \
                 check the network and that SteamCMD runs by hand as the worker's user; if a \
                 very large app is quiet that long, raise the worker's Steam idle timeout \
                 (MANMAN_WORKER_STEAM_IDLE_TIMEOUT_S, --steam-idle-timeout-s)",
                self.idle_timeout.as_secs()
            ),
            ErrorClass::InstallTimeout => format!(
                "the install was not done within {} s and was stopped: check the network's \
                 speed, or raise the worker's Steam install timeout \
                 (MANMAN_WORKER_STEAM_INSTALL_TIMEOUT_S, --steam-install-timeout-s) for a \
                 very large app; a new start resumes the download",
                self.install_timeout.as_secs()
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

/// How long Steam's login rate limit lasts at least.
const RATE_LIMIT_WAIT: Duration = Duration::from_secs(30 * 60);

/// The UTC wall-clock time `after` from now, as `HH:MM UTC`.
fn utc_clock_in(after: Duration) -> String {
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        + after;
    // Rounded up to the next minute: "not before" must not be early.
    let minutes = at.as_secs().div_ceil(60);
    format!("{:02}:{:02} UTC", (minutes / 60) % 24, minutes % 60)
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
        for (code, class) in [
            (0x2, ErrorClass::ContentUnavailable),
            (0x6, ErrorClass::UpdateStuck),
            (0x206, ErrorClass::UpdateStuck),
            (0x406, ErrorClass::Network),
        ] {
            assert_eq!(ErrorClass::from_state_code(code), Some(class), "{code:#x}");
        }
    }

    #[test]
    fn fatal_and_transient_classes() {
        let fatal = [
            ErrorClass::DiskFull,
            ErrorClass::NoLicense,
            ErrorClass::LoginFailed,
            ErrorClass::SteamGuard,
            ErrorClass::BetaPassword,
            ErrorClass::RateLimited,
            ErrorClass::UpdateStuck,
            ErrorClass::MissingRequiredApp,
            ErrorClass::InstallTimeout,
        ];
        assert!(
            fatal
                .iter()
                .all(|c| !c.is_transient() && c.max_attempts(5) == 1)
        );
        let transient = [
            ErrorClass::Network,
            ErrorClass::ContentUnavailable,
            ErrorClass::DiskWrite,
            ErrorClass::CorruptFiles,
            ErrorClass::MissingConfiguration,
            ErrorClass::Timeout,
            ErrorClass::IncompleteInstall,
        ];
        assert!(transient.iter().all(|c| c.is_transient()));
        assert_eq!(ErrorClass::Timeout.max_attempts(5), 2);
        assert_eq!(ErrorClass::Network.max_attempts(5), 5);
        assert_eq!(ErrorClass::Network.max_attempts(0), 1);
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
            InstallError::Unrecoverable {
                game,
                class,
                detail,
            } => {
                assert_eq!((game.as_str(), class.as_str()), ("valheim", "login-failed"));
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
