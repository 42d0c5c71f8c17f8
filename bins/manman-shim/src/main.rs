//! `manman-shim`: see the library docs.

fn main() -> std::process::ExitCode {
    manman_shim::main()
}
