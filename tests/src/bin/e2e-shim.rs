//! The per-server shim, built beside the end-to-end tests.

fn main() -> std::process::ExitCode {
    manman_shim::main()
}
