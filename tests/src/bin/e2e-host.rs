//! The host daemon, built beside the end-to-end tests.

fn main() -> std::process::ExitCode {
    manman_host::main()
}
