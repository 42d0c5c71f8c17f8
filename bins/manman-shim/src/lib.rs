#![doc = include_str!("../README.md")]

pub mod console;
pub mod options;
pub mod protocol;
pub mod server;

use console::Console;
use nix::sys::signal::{SigSet, Signal};
use options::{Options, StopPolicy};
use protocol::{Exit, Stream, ToShim, ToWorker};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::ExitStatusExt;
use std::process::{ChildStdin, ExitCode};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Longest console line kept whole; longer output is split into lines of this size (as the
/// worker does for a server it runs directly).
pub const MAX_LINE_BYTES: usize = 64 * 1024;
/// How long output is still read after the server exited.
const OUTPUT_DRAIN: Duration = Duration::from_secs(1);

/// The shim: reads its options, starts the server and keeps it until its exit was recorded by
/// a worker (or, with no worker attached for the grace time, written to the exit file).
pub fn main() -> ExitCode {
    server::close_inherited_fds();
    let options = match Options::parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(e) => {
            eprintln!("manman-shim: {e}\nusage: {}", options::USAGE);
            return ExitCode::from(2);
        }
    };
    // Out of the worker's session: a Ctrl-C or a signal to the worker's group is not ours.
    let _ = nix::unistd::setsid();
    // SIGTERM (the machine shuts down) is taken by a thread of its own, which has the server
    // stopped by its stop policy; blocked here, before any thread starts, so every thread
    // inherits the mask. (The server does not: a spawned process starts with no signal
    // blocked.)
    let mut terms = SigSet::empty();
    terms.add(Signal::SIGTERM);
    if let Err(e) = terms.thread_block() {
        eprintln!("manman-shim: cannot block SIGTERM: {e}");
        return ExitCode::FAILURE;
    }
    // The worker's end of the first connection is our stdin; it is taken over as a socket and
    // stdin becomes /dev/null, so that closing the connection really closes it.
    let first = match take_first_connection() {
        Ok(first) => first,
        Err(e) => {
            eprintln!("manman-shim: fd 0 is not the worker's connection: {e}");
            return ExitCode::from(2);
        }
    };
    run(&options, first, terms)
}

fn take_first_connection() -> std::io::Result<UnixStream> {
    let fd = std::io::stdin().as_fd().try_clone_to_owned()?;
    let null = std::fs::File::open("/dev/null")?;
    nix::unistd::dup2_stdin(&null)?;
    Ok(UnixStream::from(fd))
}

fn run(options: &Options, mut first: UnixStream, terms: SigSet) -> ExitCode {
    let _ = std::fs::remove_file(&options.socket);
    let listener = match UnixListener::bind(&options.socket) {
        Ok(listener) => listener,
        Err(e) => {
            let why = format!("cannot listen on {}: {e}", options.socket.display());
            let _ = first.write_all(ToWorker::SpawnFailed(why).to_string().as_bytes());
            return ExitCode::FAILURE;
        }
    };
    let mut child = match server::spawn(&options.launch) {
        Ok(child) => child,
        Err(e) => {
            let _ = std::fs::remove_file(&options.socket);
            let why = format!("could not start {}: {e}", options.launch.program.display());
            let _ = first.write_all(ToWorker::SpawnFailed(why).to_string().as_bytes());
            return ExitCode::FAILURE;
        }
    };
    let console = Arc::new(Console::new(child.id(), options.first_seq));
    let stdin = Arc::new(Mutex::new(child.stdin.take()));
    if let Some(out) = child.stdout.take() {
        read_output(Arc::clone(&console), out, Stream::Stdout);
    }
    if let Some(err) = child.stderr.take() {
        read_output(Arc::clone(&console), err, Stream::Stderr);
    }
    serve(Arc::clone(&console), Arc::clone(&stdin), first);
    std::thread::spawn({
        let console = Arc::clone(&console);
        let stdin = Arc::clone(&stdin);
        move || accept(&listener, &console, &stdin)
    });
    std::thread::spawn({
        let console = Arc::clone(&console);
        move || {
            while terms.wait().is_ok() {
                console.lock().stop_requested = true;
                console.notify();
            }
        }
    });
    std::thread::spawn({
        let console = Arc::clone(&console);
        let stdin = Arc::clone(&stdin);
        let (grace, stop) = (options.unattended_grace, options.stop.clone());
        move || stop_when_unattended(&console, &stdin, grace, &stop)
    });

    let status = child.wait();
    // Leftover children of the server die with it.
    server::signal_group(console.pid(), Signal::SIGKILL);
    let exit = match status {
        Ok(status) => Exit {
            code: status.code(),
            signal: status.signal(),
        },
        Err(_) => Exit {
            code: None,
            signal: None,
        },
    };
    let drained = Instant::now() + OUTPUT_DRAIN;
    let mut state = console.lock();
    while state.outputs_open > 0 && Instant::now() < drained {
        state = console.wait(state, Duration::from_millis(50));
    }
    state.exit = Some(exit);
    state.send(&ToWorker::Exit(exit));
    // Kept until a worker recorded it, or written down for the next one once none is attached
    // (at once after a SIGTERM: the machine is going down).
    loop {
        if state.done {
            break;
        }
        if state.must_stop(options.unattended_grace) && state.unattended_for(Duration::ZERO) {
            let why = if state.stopped_by_shim {
                "stopped"
            } else {
                "exited"
            };
            let _ = write_exit_file(options, exit, why);
            break;
        }
        state = console.wait(state, Duration::from_millis(200));
    }
    drop(state);
    let _ = std::fs::remove_file(&options.socket);
    ExitCode::SUCCESS
}

/// `<code|-> <signal|-> <stopped|exited>`: how the server ended, for a worker that was not
/// there; `stopped` when the shim stopped it by the stop policy.
fn write_exit_file(options: &Options, exit: Exit, why: &str) -> std::io::Result<()> {
    let text = ToWorker::Exit(exit).to_string();
    let fields = text.trim_end().trim_start_matches("X ");
    let tmp = options.exit_file.with_extension("exit.tmp");
    std::fs::write(&tmp, format!("{fields} {why}\n"))?;
    std::fs::rename(&tmp, &options.exit_file)
}

/// Reads one output stream into the console, line by line.
fn read_output(console: Arc<Console>, pipe: impl Read + Send + 'static, stream: Stream) {
    std::thread::spawn(move || {
        let mut reader = BufReader::with_capacity(4 * 1024, pipe);
        let mut line = Vec::with_capacity(256);
        loop {
            let (done, used) = match reader.fill_buf() {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) | Ok([]) => {
                    if !line.is_empty() {
                        console.push(stream, text(&line));
                    }
                    break;
                }
                Ok(buf) => {
                    let room = MAX_LINE_BYTES - line.len();
                    match buf.iter().take(room).position(|b| *b == b'\n') {
                        Some(newline) => {
                            line.extend_from_slice(&buf[..newline]);
                            (true, newline + 1)
                        }
                        None => {
                            let take = buf.len().min(room);
                            line.extend_from_slice(&buf[..take]);
                            (line.len() == MAX_LINE_BYTES, take)
                        }
                    }
                }
            };
            reader.consume(used);
            if done {
                console.push(stream, text(&line));
                line.clear();
            }
        }
        console.lock().outputs_open -= 1;
        console.notify();
    });
}

fn text(bytes: &[u8]) -> String {
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    String::from_utf8_lossy(bytes).into_owned()
}

/// Takes the connections of restarted workers: only from the shim's own user (the worker's).
fn accept(listener: &UnixListener, console: &Arc<Console>, stdin: &Arc<Mutex<Option<ChildStdin>>>) {
    let own = nix::unistd::geteuid().as_raw();
    for connection in listener.incoming() {
        let Ok(connection) = connection else { continue };
        let peer =
            nix::sys::socket::getsockopt(&connection, nix::sys::socket::sockopt::PeerCredentials);
        if peer.is_ok_and(|peer| peer.uid() == own) {
            serve(Arc::clone(console), Arc::clone(stdin), connection);
        }
    }
}

/// Serves one worker connection on a thread of its own: the hello, then what the worker asks.
fn serve(console: Arc<Console>, stdin: Arc<Mutex<Option<ChildStdin>>>, mut connection: UnixStream) {
    std::thread::spawn(move || {
        let (hello, number) = console.hello();
        let reader = connection.try_clone();
        let greeted = connection.write_all(ToWorker::Hello(hello).to_string().as_bytes());
        let (Ok(reader), Ok(())) = (reader, greeted) else {
            console.detach(number);
            return;
        };
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { break };
            match line.parse::<ToShim>() {
                Ok(ToShim::Replay(from)) => match connection.try_clone() {
                    Ok(writer) => console.attach(number, writer, from),
                    Err(_) => break,
                },
                Ok(ToShim::Stdin(text)) => {
                    let written = match &mut *lock(&stdin) {
                        Some(pipe) => writeln!(pipe, "{text}").and_then(|()| pipe.flush()).is_ok(),
                        None => false,
                    };
                    if written {
                        console.push(Stream::Stdin, text);
                    }
                }
                Ok(ToShim::CloseStdin) => {
                    lock(&stdin).take();
                }
                Ok(ToShim::Done) => {
                    console.lock().done = true;
                    console.notify();
                }
                Err(_) => break,
            }
        }
        console.detach(number);
    });
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Stops the server by its stop policy once no worker has been attached for `grace` (no server
/// runs without a supervisor for ever), or once the shim got SIGTERM.
fn stop_when_unattended(
    console: &Arc<Console>,
    stdin: &Arc<Mutex<Option<ChildStdin>>>,
    grace: Duration,
    stop: &StopPolicy,
) {
    let mut state = console.lock();
    loop {
        if state.exit.is_some() {
            return;
        }
        if state.must_stop(grace) {
            break;
        }
        state = console.wait(state, Duration::from_millis(500));
    }
    state.stopped_by_shim = true;
    drop(state);
    let ended = |within: Duration| {
        let until = Instant::now() + within;
        let mut state = console.lock();
        while state.exit.is_none() && Instant::now() < until {
            state = console.wait(state, Duration::from_millis(100));
        }
        state.exit.is_some()
    };
    if let Some(line) = &stop.line {
        // Written from a thread of its own: a server that does not read its input must not
        // hold up the signals.
        let (stdin, line, console) = (Arc::clone(stdin), line.clone(), Arc::clone(console));
        std::thread::spawn(move || {
            let written = match &mut *lock(&stdin) {
                Some(pipe) => writeln!(pipe, "{line}").and_then(|()| pipe.flush()).is_ok(),
                None => false,
            };
            if written {
                console.push(Stream::Stdin, line);
            }
        });
        if ended(stop.timeout) {
            return;
        }
    }
    server::signal_group(console.pid(), stop.signal);
    if ended(stop.grace) {
        return;
    }
    server::signal_group(console.pid(), Signal::SIGKILL);
}
