//! The fake game server, built beside the end-to-end tests.

fn main() {
    std::process::exit(manman_fake_game_server::run(std::env::args().skip(1)));
}
