//! [`AppManifest`]: what SteamCMD wrote about an installed app,
//! `<dir>/steamapps/appmanifest_<app_id>.acf`.

use crate::vdf;
use std::io;
use std::path::{Path, PathBuf};

/// The `AppState` of an app manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppManifest {
    /// `appid`.
    pub app_id: u32,
    /// `buildid`: the installed build.
    pub build_id: String,
    /// `StateFlags`: a bit set, 4 = fully installed (see [`AppManifest::is_fully_installed`]).
    pub state_flags: u32,
    /// `installdir`, when present.
    pub install_dir: Option<String>,
    /// The installed beta branch (`UserConfig`'s or `MountedConfig`'s `BetaKey`), when
    /// present.
    pub beta_key: Option<String>,
}

/// `StateFlags` bit: fully installed.
pub const STATE_FULLY_INSTALLED: u32 = 4;

/// `StateFlags` bits that say an install is not finished or not sound: update required (2),
/// files missing (32), files corrupt (128), update running, paused or started (256, 512,
/// 1024), uninstalling (2048), and every in-progress stage from reconfiguring (65536) up.
pub const STATE_NOT_SOUND: u32 = 2 | 32 | 128 | 256 | 512 | 1024 | 2048 | !0xFFFF;

/// An app manifest that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// It could not be read.
    #[error("could not read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// It is not a valid app manifest.
    #[error("{path} is not a valid app manifest: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// The largest manifest read: a real one is a few KiB.
pub(crate) const MAX_MANIFEST_BYTES: u64 = 1024 * 1024;

/// The text of a regular file at `path`, at most `limit` bytes: a symbolic link at its name is
/// not followed, and anything but a regular file (a pipe, a device) is refused without waiting
/// on it.
fn read_plain_file(path: &Path, limit: u64) -> io::Result<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a regular file",
        ));
    }
    if meta.len() > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} bytes, over the {limit} a manifest may have", meta.len()),
        ));
    }
    let mut text = String::new();
    file.take(limit).read_to_string(&mut text)?;
    Ok(text)
}

impl AppManifest {
    /// Where SteamCMD writes the manifest of `app_id` installed in `dir`.
    pub fn path(dir: &Path, app_id: u32) -> PathBuf {
        dir.join("steamapps")
            .join(format!("appmanifest_{app_id}.acf"))
    }

    /// Reads the manifest of `app_id` in `dir`; `None` when there is none.
    ///
    /// The install dir belongs to the game servers' user, who could put a link, a pipe or an
    /// endless file where the manifest should be: it is read only as a plain file (a link at
    /// its name is not followed, a pipe never waited on) of at most 1 MiB.
    pub async fn read(dir: &Path, app_id: u32) -> Result<Option<Self>, ManifestError> {
        let path = Self::path(dir, app_id);
        let at = path.clone();
        let read = tokio::task::spawn_blocking(move || read_plain_file(&at, MAX_MANIFEST_BYTES))
            .await
            .unwrap_or_else(|e| Err(io::Error::other(e)));
        match read {
            Ok(text) => Self::parse(&text, &path).map(Some),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(ManifestError::Read { path, source }),
        }
    }

    /// Parses a manifest's text (`path` is for error messages).
    pub fn parse(text: &str, path: &Path) -> Result<Self, ManifestError> {
        let invalid = |reason: String| ManifestError::Invalid {
            path: path.to_owned(),
            reason,
        };
        let doc = vdf::parse(text).map_err(|e| invalid(e.to_string()))?;
        let state = doc
            .get_section("AppState")
            .ok_or_else(|| invalid("no AppState section".to_owned()))?;
        let field = |key: &str| {
            state
                .get_str(key)
                .ok_or_else(|| invalid(format!("AppState has no \"{key}\"")))
        };
        let number = |key: &str| {
            field(key)?
                .parse::<u32>()
                .map_err(|_| invalid(format!("AppState's \"{key}\" is not a number")))
        };
        let beta_key = ["UserConfig", "MountedConfig"]
            .iter()
            .find_map(|section| state.lookup(&[section, "BetaKey"]))
            .and_then(vdf::Value::as_str)
            .filter(|b| !b.is_empty())
            .map(str::to_owned);
        Ok(Self {
            app_id: number("appid")?,
            build_id: field("buildid")?.to_owned(),
            state_flags: number("StateFlags")?,
            install_dir: state.get_str("installdir").map(str::to_owned),
            beta_key,
        })
    }

    /// Whether the app is fully installed: `StateFlags` has bit 4 and none of
    /// [`STATE_NOT_SOUND`].
    pub fn is_fully_installed(&self) -> bool {
        self.state_flags & STATE_FULLY_INSTALLED != 0 && self.state_flags & STATE_NOT_SOUND == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An app manifest as SteamCMD writes it.
    const MANIFEST: &str = r#""AppState"
{
	"appid"		"896660"
	"Universe"		"1"
	"name"		"Valheim Dedicated Server"
	"StateFlags"		"4"
	"installdir"		"Valheim dedicated server"
	"LastUpdated"		"1716584859"
	"SizeOnDisk"		"1043214453"
	"StagingSize"		"0"
	"buildid"		"14396345"
	"LastOwner"		"0"
	"UpdateResult"		"0"
	"BytesToDownload"		"283563504"
	"BytesDownloaded"		"283563504"
	"BytesToStage"		"1043214453"
	"BytesStaged"		"1043214453"
	"TargetBuildID"		"14396345"
	"AutoUpdateBehavior"		"0"
	"AllowOtherDownloadsWhileRunning"		"0"
	"ScheduledAutoUpdate"		"0"
	"InstalledDepots"
	{
		"896661"
		{
			"manifest"		"2473853458283936486"
			"size"		"1043214453"
		}
	}
	"UserConfig"
	{
		"BetaKey"		"public-test"
	}
	"MountedConfig"
	{
		"BetaKey"		"public-test"
	}
}
"#;

    #[test]
    fn reads_a_real_manifest() {
        let m = AppManifest::parse(MANIFEST, Path::new("a.acf")).unwrap();
        assert_eq!(
            m,
            AppManifest {
                app_id: 896660,
                build_id: "14396345".into(),
                state_flags: 4,
                install_dir: Some("Valheim dedicated server".into()),
                beta_key: Some("public-test".into()),
            }
        );
        assert!(m.is_fully_installed());
    }

    #[test]
    fn state_flags() {
        let with = |flags| AppManifest {
            app_id: 1,
            build_id: "1".into(),
            state_flags: flags,
            install_dir: None,
            beta_key: None,
        };
        assert!(with(4).is_fully_installed());
        assert!(with(4 | 64).is_fully_installed());
        assert!(!with(6).is_fully_installed());
        assert!(!with(1026).is_fully_installed());
        assert!(!with(4 | 0x10_0000).is_fully_installed());
        assert!(!with(0).is_fully_installed());
    }

    #[test]
    fn invalid_manifests_say_why() {
        let err = AppManifest::parse("\"AppState\" { \"appid\" \"1\" }", Path::new("m.acf"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("m.acf") && err.contains("buildid"), "{err}");
        let err = AppManifest::parse("\"Other\" {}", Path::new("m.acf"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no AppState"), "{err}");
    }

    #[tokio::test]
    async fn read_returns_none_when_absent() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            AppManifest::read(dir.path(), 896660)
                .await
                .unwrap()
                .is_none()
        );
        let path = AppManifest::path(dir.path(), 896660);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, MANIFEST).unwrap();
        let m = AppManifest::read(dir.path(), 896660)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(m.build_id, "14396345");
    }

    #[tokio::test]
    async fn only_a_plain_file_of_sane_size_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let steamapps = dir.path().join("steamapps");
        std::fs::create_dir(&steamapps).unwrap();
        let path = AppManifest::path(dir.path(), 896660);
        assert!(
            AppManifest::read(dir.path(), 896660)
                .await
                .unwrap()
                .is_none()
        );
        std::fs::write(&path, MANIFEST).unwrap();
        assert!(
            AppManifest::read(dir.path(), 896660)
                .await
                .unwrap()
                .is_some()
        );

        // A link (to a secret, or to an endless device) is not followed.
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink("/dev/zero", &path).unwrap();
        assert!(matches!(
            AppManifest::read(dir.path(), 896660).await,
            Err(ManifestError::Read { .. })
        ));
        // A pipe is not waited on.
        std::fs::remove_file(&path).unwrap();
        let made = std::process::Command::new("mkfifo").arg(&path).status();
        assert!(made.unwrap().success(), "mkfifo");
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            AppManifest::read(dir.path(), 896660),
        )
        .await
        .expect("a pipe does not hang the read");
        assert!(read.is_err());
        // Nor is a file larger than any manifest read whole.
        std::fs::remove_file(&path).unwrap();
        let big = std::fs::File::create(&path).unwrap();
        big.set_len(MAX_MANIFEST_BYTES + 1).unwrap();
        let err = AppManifest::read(dir.path(), 896660).await.unwrap_err();
        assert!(err.to_string().contains("over"), "{err}");
    }
}
