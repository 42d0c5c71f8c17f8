//! The `manman` command line, built beside the end-to-end tests.

fn main() -> std::process::ExitCode {
    manman::main()
}
