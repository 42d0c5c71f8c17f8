//! `manman up` keeps its data: stopped and started again on the same data dir, it shows the same
//! games, configs and instance history (SQLite in `<data dir>/manman.db`).

use manman::up::{self};
use manman_core::auth::Scope;
use manman_core::config::ConfigSpec;
use manman_core::game_server::{NewGameServer, ServerType};
use manman_core::host::StartRequest;
use manman_core::status::Status;
use manman_http::{Client, NewToken};
use manman_tests::{up_options, wait_instance_status};

const FAKE: &str = env!("CARGO_BIN_EXE_e2e-fake-game-server");

#[tokio::test]
async fn a_restart_on_the_same_data_dir_finds_everything() {
    let data = tempfile::tempdir().expect("dir");
    let first = up::start(up_options(data.path(), FAKE))
        .await
        .expect("first start");
    assert!(
        first.admin.created,
        "the first start creates the admin token"
    );
    let client = Client::new(&format!("http://{}", first.addr)).with_token(&first.admin.token);
    let reader = client
        .create_token(&NewToken {
            name: "dashboard".into(),
            scope: Scope::Read,
        })
        .await
        .expect("a read token");
    let extra = client
        .create_game(&NewGameServer {
            name: "extra".into(),
            server_type: ServerType::Local {
                path: "games/demo".into(),
            },
        })
        .await
        .expect("game");
    let config = client
        .create_config(extra.id, &ConfigSpec::new("main", "fake-game-server"))
        .await
        .expect("config");
    let id = client
        .start(&StartRequest::new(config.id))
        .await
        .expect("start")
        .instance_id;
    wait_instance_status(&client, id, Status::Running).await;
    client.stop(id).await.expect("stop");
    wait_instance_status(&client, id, Status::Complete).await;
    let history_before = client.instance_history(id).await.expect("history");
    let first_token = first.admin.token.clone();
    first.stop().await.expect("clean stop");
    assert!(data.path().join("manman.db").exists());

    let second = up::start(up_options(data.path(), FAKE))
        .await
        .expect("second start");
    assert!(!second.admin.created, "the kept admin token is used again");
    assert_eq!(second.admin.token, first_token);
    let url = format!("http://{}", second.addr);
    let dashboard = Client::new(&url).with_token(&reader.secret);
    assert_eq!(
        dashboard
            .list_games()
            .await
            .expect("the read token still works")
            .len(),
        2
    );
    let listed = Client::new(&url)
        .with_token(&second.admin.token)
        .list_tokens()
        .await
        .expect("the admin token still works");
    assert!(
        listed
            .iter()
            .any(|t| t.name == "dashboard" && t.revoked_at.is_none())
    );
    let client = Client::new(&url).with_token(&second.admin.token);
    let games: Vec<String> = client
        .list_games()
        .await
        .expect("games")
        .into_iter()
        .map(|g| g.name)
        .collect();
    assert_eq!(
        games,
        ["demo", "extra"],
        "the same games, the demo not added twice"
    );
    let configs = client.list_configs(Some(extra.id)).await.expect("configs");
    assert_eq!(configs.len(), 1);
    assert_eq!(configs[0].spec, config.spec);
    let instance = client
        .get_instance(id)
        .await
        .expect("the instance is still known");
    assert_eq!(instance.status, Status::Complete);
    assert_eq!(
        client.instance_history(id).await.expect("history"),
        history_before
    );
    let workers = client.list_workers().await.expect("workers");
    assert_eq!(workers.len(), 1, "the same worker, registered again");
    assert_eq!(workers[0].epoch, 2);
    second.stop().await.expect("clean stop");
}
