//! `manman`: the operator CLI and `manman up`.

fn main() -> std::process::ExitCode {
    manman::main()
}
