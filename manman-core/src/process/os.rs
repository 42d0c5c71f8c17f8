//! The only `unsafe` code of `manman-core`: what runs in a spawned child between `fork` and
//! `exec`. Every other module of the crate is `#[forbid(unsafe_code)]` (set on its `mod`
//! declaration, and checked by the test below); this one allows it, and each `unsafe` block
//! says why it is sound.

#![allow(unsafe_code)]

use tokio::process::Command;

/// Runs in the child between fork and exec: starts a session of its own (its own process group,
/// no controlling terminal), closes the worker's other descriptors at exec and sets the
/// parent-death signal.
pub(super) fn isolate_child(command: &mut Command, die_with_worker: bool) {
    let worker = nix::unistd::getpid();
    let hook = move || -> std::io::Result<()> {
        // A session of its own (and so a process group of its own, whose id is its pid): no
        // controlling terminal, so a server cannot read from, write to or push keystrokes
        // (TIOCSTI) into the terminal of whoever started the worker.
        nix::unistd::setsid()?;
        manman_shim::server::mark_inherited_fds_cloexec();
        #[cfg(target_os = "linux")]
        if die_with_worker {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
            // The worker may have died before the line above: then nobody will send it.
            if nix::unistd::getppid() != worker {
                return Err(std::io::Error::other("the worker exited while spawning"));
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = (die_with_worker, worker);
        Ok(())
    };
    // SAFETY: the hook runs in the forked child, where only async-signal-safe calls are
    // allowed. It makes only system calls (setsid, close_range or fcntl — the shim's, which
    // forks its servers the same way —, prctl, getppid), allocates nothing and takes no lock.
    unsafe {
        command.pre_exec(hook);
    }
}

#[cfg(test)]
mod tests {
    //! `unsafe` stays here: every other module is declared `#[forbid(unsafe_code)]`.

    use std::path::Path;

    /// The `mod` declarations of `file` (relative to `src/`) that lack
    /// `#[forbid(unsafe_code)]`, but those named in `allowed`.
    fn unforbidden(file: &str, allowed: &[&str]) -> Vec<String> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(file);
        let source = std::fs::read_to_string(&path).expect("the source");
        let lines: Vec<&str> = source.lines().map(str::trim).collect();
        let mut missing = Vec::new();
        for (n, line) in lines.iter().enumerate() {
            let declared = line
                .strip_prefix("pub ")
                .unwrap_or(line)
                .strip_prefix("mod ")
                .map(|rest| rest.trim_end_matches([';', '{', ' ']));
            let Some(name) = declared else { continue };
            let attributes = lines[..n]
                .iter()
                .rev()
                .take_while(|l| l.starts_with("#[") || l.starts_with("//"));
            let forbidden = attributes.clone().any(|l| *l == "#[forbid(unsafe_code)]");
            if !forbidden && !allowed.contains(&name) {
                missing.push(format!("{file}: mod {name}"));
            }
        }
        missing
    }

    #[test]
    fn every_other_module_forbids_unsafe_code() {
        let mut missing = unforbidden("lib.rs", &["process"]);
        missing.extend(unforbidden("process/mod.rs", &["os"]));
        assert!(
            missing.is_empty(),
            "declare these #[forbid(unsafe_code)] (only process::os may use unsafe): {missing:?}"
        );
    }
}
