//! Starting the game server and signalling its process group. The only `unsafe` code of the
//! shim: what runs in the server between `fork` and `exec`, and closing what the shim
//! inherited. Each `unsafe` block says why it is sound.

#![allow(unsafe_code)]

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// What to start.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The program.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Its working directory.
    pub cwd: PathBuf,
    /// The user and group it runs as (`None`: the shim's).
    pub ids: Option<(u32, u32)>,
}

/// Starts the server with `environment` (and nothing of the shim's), in a session of its own,
/// with piped stdio, inheriting no other descriptor, and SIGKILLed by the kernel if the shim
/// dies.
pub fn spawn(launch: &Launch, environment: &BTreeMap<String, String>) -> std::io::Result<Child> {
    let mut command = Command::new(&launch.program);
    command
        .args(&launch.args)
        .env_clear()
        .envs(environment)
        .current_dir(&launch.cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some((uid, gid)) = launch.ids {
        // The standard library drops supplementary groups before it sets the ids, and runs the
        // hook below after, so the parent-death signal survives the change.
        command.uid(uid).gid(gid);
    }
    let shim = nix::unistd::getpid();
    let hook = move || -> std::io::Result<()> {
        // The shim blocks SIGTERM for its own threads; the server starts with none blocked.
        nix::sys::signal::sigprocmask(
            nix::sys::signal::SigmaskHow::SIG_SETMASK,
            Some(&nix::sys::signal::SigSet::empty()),
            None,
        )?;
        nix::unistd::setsid()?;
        mark_inherited_fds_cloexec();
        #[cfg(target_os = "linux")]
        {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
            if nix::unistd::getppid() != shim {
                return Err(std::io::Error::other("the shim exited while spawning"));
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = shim;
        Ok(())
    };
    // SAFETY: the hook runs in the forked child, where only async-signal-safe calls are
    // allowed: it makes only system calls (sigprocmask, setsid, close_range or fcntl, prctl,
    // getppid),
    // allocates nothing and takes no lock.
    unsafe {
        command.pre_exec(hook);
    }
    command.spawn()
}

/// Closes every descriptor from 3 up that the shim inherited (the worker opens its own
/// close-on-exec, but a worker may itself have inherited some without the flag).
pub fn close_inherited_fds() {
    use nix::libc;
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: a plain system call on descriptor numbers; nothing of this process uses a
        // descriptor above 2 yet (it runs first thing in `main`).
        if unsafe { libc::close_range(3, libc::c_uint::MAX, 0) } == 0 {
            return;
        }
    }
    for fd in 3..1024 {
        // SAFETY: as above: no descriptor above 2 is in use yet; EBADF is ignored.
        unsafe {
            libc::close(fd);
        }
    }
}

/// Marks every descriptor from 3 up close-on-exec, so a spawned process inherits only its
/// stdio: for the hook that runs between fork and exec (async-signal-safe; also the worker's,
/// for the servers it starts directly).
pub fn mark_inherited_fds_cloexec() {
    use nix::libc;
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: a plain system call on descriptor numbers; no memory is touched.
        let done = unsafe {
            libc::close_range(
                3,
                libc::c_uint::MAX,
                libc::CLOSE_RANGE_CLOEXEC as libc::c_int,
            )
        } == 0;
        if done {
            return;
        }
    }
    for fd in 3..4096 {
        // SAFETY: fcntl on a descriptor number; EBADF for unused numbers is ignored.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 {
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
    }
}

/// Sends `signal` to the server's whole process group; a group that is gone is no error.
pub fn signal_group(pid: u32, signal: nix::sys::signal::Signal) {
    if let Ok(pgid) = i32::try_from(pid) {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), signal);
    }
}
