//! `manman-worker`: see the library's documentation.

fn main() -> std::process::ExitCode {
    manman_worker::main()
}
