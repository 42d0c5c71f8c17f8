//! `fake-game-server`: see the library docs.

fn main() {
    std::process::exit(manman_fake_game_server::run(std::env::args().skip(1)));
}
