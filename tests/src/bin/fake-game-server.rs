//! The fake game server, built beside the end-to-end tests (`CARGO_BIN_EXE_fake-game-server`).

fn main() {
    std::process::exit(manman_fake_game_server::run(std::env::args().skip(1)));
}
