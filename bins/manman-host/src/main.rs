//! `manman-host`: see the library's documentation.

fn main() -> std::process::ExitCode {
    manman_host::main()
}
