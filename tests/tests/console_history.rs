//! Console history that outlives the host: the real `manman-host` and a `manman-worker` on
//! PostgreSQL and RabbitMQ. The host is killed and started again while a game server runs; its
//! console still shows the lines printed before the restart (the host asks the worker for its
//! log's tail), then the live ones.

use manman_core::console::ConsoleLine;
use manman_core::id::InstanceId;
use manman_core::status::Status;
use manman_http::{SseEvent, SseParser};
use manman_tests::system::{Programs, System};
use manman_tests::wait_instance_status;
use std::time::Duration;

const PROGRAMS: Programs<'static> = Programs {
    host: env!("CARGO_BIN_EXE_e2e-host"),
    worker: env!("CARGO_BIN_EXE_e2e-worker"),
    fake: env!("CARGO_BIN_EXE_e2e-fake-game-server"),
    steamcmd: None,
    shim: None,
};

/// A console stream, read as it comes.
struct Console {
    response: reqwest::Response,
    parser: SseParser,
    lines: Vec<ConsoleLine>,
}

impl Console {
    async fn open(system: &System, id: InstanceId) -> Self {
        let response = reqwest::Client::new()
            .get(format!(
                "{}/api/v1/instances/{}/console",
                system.url(),
                id.get()
            ))
            .bearer_auth(system.admin_token())
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), 200);
        Self {
            response,
            parser: SseParser::default(),
            lines: Vec::new(),
        }
    }

    /// Reads until a line `text` arrives (bounded).
    async fn until(&mut self, text: &str) {
        let found = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                if self.lines.iter().any(|l| l.text == text) {
                    return;
                }
                if let Some(SseEvent { event, data, .. }) = self.parser.next_event() {
                    if event == "line" {
                        self.lines
                            .push(serde_json::from_str(&data).expect("a console line"));
                    }
                    continue;
                }
                let chunk = self.response.chunk().await.expect("open").expect("data");
                self.parser.push(&chunk);
            }
        })
        .await;
        let texts: Vec<&str> = self.lines.iter().map(|l| l.text.as_str()).collect();
        assert!(found.is_ok(), "{text:?} within 30 s; read {texts:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_servers_console_keeps_its_earlier_lines_across_a_host_restart() {
    let Some(mut system) = System::start("console_history", PROGRAMS, 1, 2).await else {
        return;
    };
    let config = system.config("chatty", |_| {}).await;
    let id = system.start_on(config, "w1").await;
    wait_instance_status(&system.client, id, Status::Running).await;
    system
        .client
        .stdin(id, "said before the restart")
        .await
        .expect("stdin");
    let mut before = Console::open(&system, id).await;
    before.until("echo: said before the restart").await;
    drop(before);

    system.restart_host().await;
    let mut after = Console::open(&system, id).await;
    after.until("echo: said before the restart").await;
    system
        .client
        .stdin(id, "said after the restart")
        .await
        .expect("stdin");
    after.until("echo: said after the restart").await;
    let seqs: Vec<u64> = after.lines.iter().map(|l| l.seq).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "each line once, in order: {seqs:?}"
    );
    assert_eq!(seqs[0], 1, "from the first line the server printed");
    let instance = system.client.get_instance(id).await.expect("instance");
    assert_eq!(instance.status, Status::Running, "it ran on all along");
}
