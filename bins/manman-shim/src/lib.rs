#![doc = include_str!("../README.md")]

pub mod console;
pub mod lines;
pub mod options;
pub mod protocol;
pub mod server;

use console::Console;
use nix::sys::signal::{SigSet, Signal};
use options::{Options, StopPolicy};
use protocol::{Exit, Stream, ToShim, ToWorker};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::ExitStatusExt;
use std::process::{ChildStdin, ExitCode};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

/// How long output is still read after the server exited.
const OUTPUT_DRAIN: Duration = Duration::from_secs(1);
/// Stdin lines queued for a server that does not read them before more are dropped.
const STDIN_QUEUE: usize = 1024;
/// How long the worker may take to send the server's environment.
const ENV_TIMEOUT: Duration = Duration::from_secs(10);

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

/// The server's environment, as the worker sends it on the first connection (`V` lines, then
/// `G`).
fn read_environment(first: &UnixStream) -> Result<BTreeMap<String, String>, String> {
    first
        .set_read_timeout(Some(ENV_TIMEOUT))
        .map_err(|e| e.to_string())?;
    // Byte by byte: nothing after `G` may be read ahead (the connection goes on elsewhere).
    let mut reader = BufReader::with_capacity(1, first);
    let mut environment = BTreeMap::new();
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => return Err("the worker left before it sent the environment".to_owned()),
            Ok(_) => {}
            Err(e) => return Err(format!("reading the environment failed: {e}")),
        }
        match line.parse::<ToShim>() {
            Ok(ToShim::Env(variable)) => {
                let (name, value) = variable
                    .split_once('=')
                    .ok_or_else(|| format!("{variable:?} is not NAME=VALUE"))?;
                environment.insert(name.to_owned(), value.to_owned());
            }
            Ok(ToShim::Go) => break,
            other => return Err(format!("expected the environment, got {other:?}")),
        }
    }
    first.set_read_timeout(None).map_err(|e| e.to_string())?;
    Ok(environment)
}

/// What the stdin thread is asked.
enum StdinRequest {
    Line(String),
    Close,
}

fn run(options: &Options, mut first: UnixStream, terms: SigSet) -> ExitCode {
    let refuse = |first: &mut UnixStream, why: String| {
        let _ = first.write_all(ToWorker::SpawnFailed(why).to_string().as_bytes());
        ExitCode::FAILURE
    };
    let environment = match read_environment(&first) {
        Ok(environment) => environment,
        Err(why) => return refuse(&mut first, why),
    };
    let _ = std::fs::remove_file(&options.socket);
    let listener = match UnixListener::bind(&options.socket) {
        Ok(listener) => listener,
        Err(e) => {
            let why = format!("cannot listen on {}: {e}", options.socket.display());
            return refuse(&mut first, why);
        }
    };
    let mut child = match server::spawn(&options.launch, &environment) {
        Ok(child) => child,
        Err(e) => {
            let _ = std::fs::remove_file(&options.socket);
            let why = format!("could not start {}: {e}", options.launch.program.display());
            return refuse(&mut first, why);
        }
    };
    drop(environment);
    let console = Arc::new(Console::new(child.id(), options.first_seq));
    let (stdin, requests) = sync_channel(STDIN_QUEUE);
    if let Some(pipe) = child.stdin.take() {
        let console = Arc::clone(&console);
        std::thread::spawn(move || write_stdin(&console, pipe, &requests));
    }
    if let Some(out) = child.stdout.take() {
        read_output(Arc::clone(&console), out, Stream::Stdout);
    }
    if let Some(err) = child.stderr.take() {
        read_output(Arc::clone(&console), err, Stream::Stderr);
    }
    serve(Arc::clone(&console), stdin.clone(), first);
    std::thread::spawn({
        let console = Arc::clone(&console);
        let stdin = stdin.clone();
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
    // The output is read to its end (bounded: a process outside the group may hold the pipe
    // open), however long a worker that reads slowly takes to make room for it.
    let mut drained = Instant::now() + OUTPUT_DRAIN;
    let mut state = console.lock();
    while state.outputs_open > 0 && Instant::now() < drained {
        if state.queue_full() {
            drained = Instant::now() + OUTPUT_DRAIN;
        }
        state = console.wait(state, Duration::from_millis(50));
    }
    state.exit = Some(exit);
    state.queue(&ToWorker::Exit(exit));
    drop(state);
    console.notify();
    // Kept until a worker recorded it, or written down for the next one once none is attached
    // (at once after a SIGTERM: the machine is going down).
    let mut state = console.lock();
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

/// Writes the lines it is asked to the server's stdin (numbering each in the console once
/// written), on a thread of its own: a server that does not read its input holds up only this.
fn write_stdin(console: &Console, mut pipe: ChildStdin, requests: &Receiver<StdinRequest>) {
    while let Ok(request) = requests.recv() {
        match request {
            StdinRequest::Line(text) => {
                if writeln!(pipe, "{text}")
                    .and_then(|()| pipe.flush())
                    .is_err()
                {
                    return;
                }
                console.push(Stream::Stdin, text);
            }
            StdinRequest::Close => return,
        }
    }
}

/// Queues a line for the server's stdin; one it cannot take now (it does not read its input)
/// is dropped, and the console says so.
fn send_stdin(console: &Console, stdin: &SyncSender<StdinRequest>, text: String) {
    match stdin.try_send(StdinRequest::Line(text)) {
        Ok(()) | Err(TrySendError::Disconnected(_)) => {}
        Err(TrySendError::Full(StdinRequest::Line(text))) => console.push(
            Stream::Stderr,
            format!(
                "manman-shim: the server does not read its input ({STDIN_QUEUE} lines wait): \
                 dropped {text:?}"
            ),
        ),
        Err(TrySendError::Full(StdinRequest::Close)) => {}
    }
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
                        console.push(stream, lines::line_text(&line));
                    }
                    break;
                }
                Ok(buf) => lines::take_line(&mut line, buf),
            };
            reader.consume(used);
            if done {
                console.push(stream, lines::line_text(&line));
                line.clear();
            }
        }
        console.lock().outputs_open -= 1;
        console.notify();
    });
}

/// Takes the connections of restarted workers: only from the shim's own user (the worker's).
fn accept(listener: &UnixListener, console: &Arc<Console>, stdin: &SyncSender<StdinRequest>) {
    let own = nix::unistd::geteuid().as_raw();
    for connection in listener.incoming() {
        let Ok(connection) = connection else { continue };
        let peer =
            nix::sys::socket::getsockopt(&connection, nix::sys::socket::sockopt::PeerCredentials);
        if peer.is_ok_and(|peer| peer.uid() == own) {
            serve(Arc::clone(console), stdin.clone(), connection);
        }
    }
}

/// Serves one worker connection on a thread of its own: the hello, then what the worker asks.
/// Only the attached connection's requests are carried out.
fn serve(console: Arc<Console>, stdin: SyncSender<StdinRequest>, mut connection: UnixStream) {
    std::thread::spawn(move || {
        let (hello, number) = console.hello();
        let reader = connection.try_clone();
        let greeted = connection.write_all(ToWorker::Hello(hello).to_string().as_bytes());
        let (Ok(reader), Ok(())) = (reader, greeted) else {
            return;
        };
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { break };
            let request = line.parse::<ToShim>();
            let attach = match request {
                Ok(ToShim::Attend) => Some(None),
                Ok(ToShim::Replay(from)) if !console.stream(number, from) => Some(Some(from)),
                Ok(ToShim::Replay(_)) => continue,
                _ => None,
            };
            if let Some(from) = attach {
                if let Err(why) = console.attach(number, &connection, from) {
                    let _ = connection.write_all(ToWorker::Refused(why).to_string().as_bytes());
                    break;
                }
                let Ok(writer) = connection.try_clone() else {
                    break;
                };
                let console = Arc::clone(&console);
                std::thread::spawn(move || console.write_queued(number, writer));
                continue;
            }
            if !console.is_attached(number) {
                break;
            }
            match request {
                Ok(ToShim::Stdin(text)) => send_stdin(&console, &stdin, text),
                Ok(ToShim::CloseStdin) => {
                    let _ = stdin.try_send(StdinRequest::Close);
                }
                Ok(ToShim::Done) => {
                    console.lock().done = true;
                    console.notify();
                }
                _ => break,
            }
        }
        console.detach(number);
        let _ = connection.shutdown(std::net::Shutdown::Both);
    });
}

/// Stops the server by its stop policy once no worker has been attached for `grace` (no server
/// runs without a supervisor for ever), or once the shim got SIGTERM.
fn stop_when_unattended(
    console: &Arc<Console>,
    stdin: &SyncSender<StdinRequest>,
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
        send_stdin(console, stdin, line.clone());
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
