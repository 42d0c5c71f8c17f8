//! The admin token of `manman up`: kept in `<data dir>/admin-token` (readable by its owner
//! only), with the address of the host it belongs to beside it in `admin-token.host`. The
//! `manman` command line uses the token when run from the same directory and talking to that
//! host, never to another one. A kept data directory keeps its token; a missing or no longer
//! valid one is replaced.

use crate::private_file;
use anyhow::{Context, bail};
use manman_core::auth::{Caller, Scope};
use manman_core::host::Authenticator;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

/// The file's name in the data directory.
pub const FILE_NAME: &str = "admin-token";
/// Appended to the token file's name for the file that says which host the token is for.
pub const HOST_SUFFIX: &str = ".host";

/// The admin token this run accepts.
#[derive(Debug, Clone)]
pub struct LocalAdmin {
    /// The bearer token.
    pub token: String,
    /// Whether it was created by this start (else it was kept from an earlier one).
    pub created: bool,
    /// Where it is kept.
    pub file: PathBuf,
    /// The host it belongs to, as kept beside it (`http://127.0.0.1:8000`).
    pub host: String,
}

/// The kept admin token when it still works, else a new one, written to the file; either way
/// the host listening on `addr` is recorded beside it.
pub async fn ensure(
    auth: &Authenticator,
    data_dir: &Path,
    addr: SocketAddr,
) -> anyhow::Result<LocalAdmin> {
    let file = data_dir.join(FILE_NAME);
    let host = host_url(addr);
    let host_file = private_file::with_suffix(&file, HOST_SUFFIX);
    private_file::write(&host_file, format!("{host}\n").as_bytes())
        .with_context(|| format!("could not write {}", host_file.display()))?;
    if let Ok(text) = std::fs::read_to_string(&file) {
        let token = text.trim().to_owned();
        if let Ok(Caller::Operator {
            scope: Scope::Admin,
            ..
        }) = auth.authenticate(&token).await
        {
            // Kept from a run that may have made it readable by others.
            private_file::restrict(&file)
                .with_context(|| format!("could not make {} private", file.display()))?;
            return Ok(LocalAdmin {
                token,
                created: false,
                file,
                host,
            });
        }
    }
    let name = format!(
        "local-admin-{}",
        chrono::Utc::now().format("%Y%m%d-%H%M%S-%3f")
    );
    let (_, secret) = auth
        .create_token(&name, Scope::Admin)
        .await
        .context("could not create the local admin token")?;
    private_file::write(&file, format!("{}\n", secret.expose()).as_bytes())
        .with_context(|| format!("could not write the admin token to {}", file.display()))?;
    Ok(LocalAdmin {
        token: secret.expose().to_owned(),
        created: true,
        file,
        host,
    })
}

/// The URL a client on this machine reaches a host listening on `addr` with (a host on every
/// address is reached on the loopback one).
fn host_url(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

/// The token in `token_file` when it belongs to `host`; `None` when there is no such file.
/// A token file of another host, or one without its host beside it, is an error saying to
/// pass a token: the admin token is never sent anywhere else.
pub fn token_for(host: &str, token_file: &Path) -> anyhow::Result<Option<String>> {
    let token = match std::fs::read_to_string(token_file) {
        Ok(token) => token.trim().to_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(e).with_context(|| {
                format!(
                    "could not read the token file {} (MANMAN_TOKEN_FILE)",
                    token_file.display()
                )
            });
        }
    };
    let host_file = private_file::with_suffix(token_file, HOST_SUFFIX);
    let owner = match std::fs::read_to_string(&host_file) {
        Ok(owner) => owner.trim().to_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "the token file {} does not say which host it belongs to ({} is missing): start \
             `manman up` again to record it, or pass --token (or MANMAN_TOKEN)",
            token_file.display(),
            host_file.display()
        ),
        Err(e) => {
            return Err(e).with_context(|| format!("could not read {}", host_file.display()));
        }
    };
    if !same_host(&owner, host) {
        bail!(
            "the token file {} holds the admin token of {owner}, not of {host}: pass --token \
             (or MANMAN_TOKEN) for {host}, or `manman login` to it",
            token_file.display()
        );
    }
    Ok(Some(token))
}

/// Whether two host URLs name the same server: same scheme and port, and the same host or
/// both this machine's loopback (`localhost`, `127.0.0.1`, `[::1]`).
fn same_host(a: &str, b: &str) -> bool {
    let (Ok(a), Ok(b)) = (url::Url::parse(a), url::Url::parse(b)) else {
        return false;
    };
    let loopback = |url: &url::Url| match url.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    a.scheme() == b.scheme()
        && a.port_or_known_default() == b.port_or_known_default()
        && (a.host() == b.host() || (loopback(&a) && loopback(&b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_the_same_by_scheme_port_and_name_or_loopback() {
        let own = "http://127.0.0.1:8000";
        for other in [
            "http://127.0.0.1:8000/",
            "http://localhost:8000",
            "http://[::1]:8000/api",
            "HTTP://LOCALHOST:8000",
        ] {
            assert!(same_host(own, other), "{other}");
        }
        for other in [
            "http://127.0.0.1:8001",
            "https://127.0.0.1:8000",
            "http://evil.example:8000",
            "http://10.0.0.1:8000",
            "not a url",
        ] {
            assert!(!same_host(own, other), "{other}");
        }
        assert!(same_host("http://box:80", "http://box"));
        assert_eq!(
            host_url("0.0.0.0:8000".parse().expect("addr")),
            "http://127.0.0.1:8000"
        );
        assert_eq!(host_url("[::]:9".parse().expect("addr")), "http://[::1]:9");
    }

    #[test]
    fn the_token_file_is_used_for_its_own_host_only() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join(FILE_NAME);
        assert_eq!(
            token_for("http://127.0.0.1:8000", &file).expect("none"),
            None
        );
        std::fs::write(&file, "mm_secret\n").expect("write");
        let missing = token_for("http://127.0.0.1:8000", &file).unwrap_err();
        assert!(missing.to_string().contains("--token"), "{missing}");
        std::fs::write(
            dir.path().join("admin-token.host"),
            "http://127.0.0.1:8000\n",
        )
        .expect("write");
        assert_eq!(
            token_for("http://localhost:8000", &file).expect("own host"),
            Some("mm_secret".to_owned())
        );
        let other = token_for("http://box-2:8000", &file).unwrap_err();
        assert!(
            other.to_string().contains("box-2") && other.to_string().contains("--token"),
            "{other}"
        );
    }
}
