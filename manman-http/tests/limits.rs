//! The host's HTTP server cannot be held or flooded by any client, with a token or without:
//! a real `HostServer` on a real socket, with short limits, and raw TCP clients that do what
//! an attacker would (trickle headers or a body, sit idle, open more connections than the cap,
//! send oversized heads or made-up methods).

use chrono::Utc;
use manman_core::event::{Event, StatusReport};
use manman_core::host::HostService;
use manman_core::status::{Cause, Entity, Status};
use manman_core::worker::WorkerRegistration;
use manman_http::{
    HostServer, HttpLimits, MAX_HEADER_BYTES, MAX_URI_BYTES, PROBLEM_JSON, ServeOptions,
};
use std::collections::BTreeSet;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// The most any test waits for something that must happen (far above the short limits).
const BOUND: Duration = Duration::from_secs(10);
/// A limit a test does not exercise: never reached while it runs.
const LONG: Duration = Duration::from_secs(600);
/// A limit a test does exercise.
const SHORT: Duration = Duration::from_millis(400);

fn limits() -> HttpLimits {
    HttpLimits {
        header_timeout: LONG,
        body_timeout: LONG,
        idle_timeout: LONG,
        max_connections: 64,
    }
}

/// A host on the memory store and bus, serving within `limits`.
async fn host(limits: HttpLimits) -> (HostServer, HostService) {
    let host = HostService::in_memory().await.expect("a host in memory");
    let mut options = ServeOptions::new("127.0.0.1:0".parse().expect("addr"));
    options.http = limits;
    let server = HostServer::start(host.clone(), options)
        .await
        .expect("serve");
    (server, host)
}

fn url(server: &HostServer, path: &str) -> String {
    format!("http://{}{path}", server.addr())
}

/// A response read off a raw connection.
#[derive(Debug)]
struct RawResponse {
    status: u16,
    body: String,
}

/// Reads one response (with a `content-length`) from `reader`.
async fn read_response(reader: &mut BufReader<TcpStream>) -> RawResponse {
    let mut status_line = String::new();
    reader
        .read_line(&mut status_line)
        .await
        .expect("status line");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {status_line:?}"));
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).await.expect("header line");
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').expect("a header field");
        headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
    }
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await.expect("body");
    RawResponse {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// A raw connection to `server` that has sent a `GET {path}` and read its answer.
async fn kept_alive(server: &HostServer, path: &str) -> BufReader<TcpStream> {
    let mut connection = BufReader::new(TcpStream::connect(server.addr()).await.expect("connect"));
    connection
        .get_mut()
        .write_all(format!("GET {path} HTTP/1.1\r\nhost: test\r\n\r\n").as_bytes())
        .await
        .expect("send");
    let response = tokio::time::timeout(BOUND, read_response(&mut connection))
        .await
        .expect("answered");
    assert_eq!(response.status, 200, "{response:?}");
    connection
}

/// Reads until the server closes the connection (end of stream or reset) and returns what
/// came before; panics if it is still open after [`BOUND`].
async fn closed_by_server(reader: &mut (impl AsyncReadExt + Unpin), what: &str) -> Vec<u8> {
    let mut received = Vec::new();
    let read = tokio::time::timeout(BOUND, async {
        let mut buf = [0; 4096];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "{what}: still open after {BOUND:?}");
    received
}

/// Writes `head`, then one byte of `trickle` every 50 ms, until the server closes the
/// connection (or [`BOUND`] passes); returns what the server sent.
async fn trickle(server: &HostServer, head: &str, what: &str) -> Vec<u8> {
    let stream = TcpStream::connect(server.addr()).await.expect("connect");
    let (mut reader, mut writer) = stream.into_split();
    writer.write_all(head.as_bytes()).await.expect("head");
    let trickler = tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + BOUND;
        while tokio::time::Instant::now() < deadline {
            if writer.write_all(b"a").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let received = closed_by_server(&mut reader, what).await;
    trickler.abort();
    received
}

#[tokio::test]
async fn headers_trickled_byte_by_byte_are_cut_off_after_the_header_timeout() {
    let (server, _) = host(HttpLimits {
        header_timeout: SHORT,
        ..limits()
    })
    .await;
    let received = trickle(
        &server,
        "GET /healthz HTTP/1.1\r\nhost: test\r\nx-slow: ",
        "a connection trickling its headers",
    )
    .await;
    assert!(
        received.is_empty(),
        "nothing is answered to a head that never ends: {}",
        String::from_utf8_lossy(&received)
    );

    // A connection that sends nothing at all is closed as well.
    let mut silent = TcpStream::connect(server.addr()).await.expect("connect");
    closed_by_server(&mut silent, "a connection that sends nothing").await;
    server.stop().await;
}

#[tokio::test]
async fn a_body_trickled_byte_by_byte_ends_with_408_after_the_body_timeout() {
    let (server, _) = host(HttpLimits {
        body_timeout: SHORT,
        ..limits()
    })
    .await;
    let received = trickle(
        &server,
        "POST /api/v1/auth/token HTTP/1.1\r\nhost: test\r\n\
         content-type: application/json\r\ncontent-length: 10000\r\n\r\n",
        "a connection trickling a body",
    )
    .await;
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 408 "), "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains(&format!("content-type: {PROBLEM_JSON}")),
        "{text}"
    );
    assert!(text.contains("MANMAN_HTTP_BODY_TIMEOUT_MS"), "{text}");
    server.stop().await;
}

#[tokio::test]
async fn a_kept_alive_connection_is_closed_after_the_idle_timeout() {
    let (server, _) = host(HttpLimits {
        idle_timeout: SHORT,
        ..limits()
    })
    .await;
    let mut connection = kept_alive(&server, "/healthz").await;
    // Keep-alive still works: a second request on the same connection is answered.
    connection
        .get_mut()
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .expect("send");
    let second = tokio::time::timeout(BOUND, read_response(&mut connection))
        .await
        .expect("answered");
    assert_eq!(second.status, 200);
    assert!(second.body.contains("ok"), "{second:?}");
    let after = closed_by_server(&mut connection, "an idle kept-alive connection").await;
    assert!(after.is_empty(), "{}", String::from_utf8_lossy(&after));
    server.stop().await;
}

#[tokio::test]
async fn beyond_the_connection_cap_a_connection_waits_until_one_ends() {
    let (server, _) = host(HttpLimits {
        max_connections: 2,
        ..limits()
    })
    .await;
    let first = kept_alive(&server, "/healthz").await;
    let _second = kept_alive(&server, "/healthz").await;

    let mut third = BufReader::new(TcpStream::connect(server.addr()).await.expect("connect"));
    third
        .get_mut()
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .expect("send");
    assert!(
        tokio::time::timeout(Duration::from_millis(500), read_response(&mut third))
            .await
            .is_err(),
        "a third connection is not served while two hold the cap"
    );

    drop(first);
    let answer = tokio::time::timeout(BOUND, read_response(&mut third))
        .await
        .expect("served once a connection ended");
    assert_eq!(answer.status, 200);
    server.stop().await;
}

#[tokio::test]
async fn a_uri_over_the_limit_is_414_problem_json() {
    let (server, _) = host(limits()).await;
    let response = reqwest::get(url(
        &server,
        &format!("/healthz?q={}", "a".repeat(MAX_URI_BYTES)),
    ))
    .await
    .expect("answer");
    assert_eq!(response.status(), 414);
    assert_eq!(response.headers()["content-type"], PROBLEM_JSON);
    let problem: serde_json::Value = response.json().await.expect("problem");
    let detail = problem["detail"].as_str().expect("detail");
    assert!(detail.contains(&MAX_URI_BYTES.to_string()), "{detail}");
    server.stop().await;
}

/// Heads the HTTP parser itself refuses (beyond its own limits, or not HTTP) are answered with
/// a problem document too, not with its bare status line.
#[tokio::test]
async fn what_the_parser_refuses_itself_is_problem_json_too() {
    let (server, _) = host(limits()).await;
    let huge_uri = format!(
        "GET /healthz?q={} HTTP/1.1\r\nhost: x\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    let huge_field = format!(
        "GET /healthz HTTP/1.1\r\nhost: x\r\ncookie: {}\r\n\r\n",
        "c".repeat(70 * 1024)
    );
    let mut many = String::from("GET /healthz HTTP/1.1\r\nhost: x\r\n");
    for n in 0..200 {
        many.push_str(&format!("x-many-{n}: v\r\n"));
    }
    many.push_str("\r\n");
    let garbage = "GET /healthz HTTP/1.1\r\nhost: x\r\nbad header\r\n\r\n".to_owned();
    for (what, head, status) in [
        ("a URI over 64 KiB", huge_uri, 431),
        ("a field over 64 KiB", huge_field, 431),
        ("200 fields", many, 431),
        ("a field without a colon", garbage, 400),
    ] {
        let mut stream = TcpStream::connect(server.addr()).await.expect("connect");
        // The server may answer and close before it read everything: a failed write is fine.
        let _ = stream.write_all(head.as_bytes()).await;
        let mut reader = BufReader::new(stream);
        let response = tokio::time::timeout(BOUND, read_response(&mut reader))
            .await
            .unwrap_or_else(|_| panic!("{what}: no answer"));
        assert_eq!(response.status, status, "{what}");
        let problem: serde_json::Value = serde_json::from_str(&response.body)
            .unwrap_or_else(|e| panic!("{what}: {e}: {response:?}"));
        assert_eq!(problem["status"], status, "{what}");
        assert!(problem["detail"].is_string(), "{what}");
    }
    server.stop().await;
}

#[tokio::test]
async fn header_fields_over_the_limits_are_431_problem_json() {
    let (server, _) = host(limits()).await;
    let client = reqwest::Client::new();

    // Too many bytes: 20 fields of 1 KiB.
    let mut large = client.get(url(&server, "/healthz"));
    for n in 0..20 {
        large = large.header(format!("x-large-{n}"), "v".repeat(1024));
    }
    // Too many fields: 110 small ones (the parser itself would refuse 100 with a bare 431).
    let mut many = client.get(url(&server, "/healthz"));
    for n in 0..110 {
        many = many.header(format!("x-many-{n}"), "v");
    }
    for (what, request) in [("large", large), ("many", many)] {
        let response = request.send().await.expect("answer");
        assert_eq!(response.status(), 431, "{what}");
        assert_eq!(response.headers()["content-type"], PROBLEM_JSON, "{what}");
        let problem: serde_json::Value = response.json().await.expect("problem");
        let detail = problem["detail"].as_str().expect("detail");
        assert!(detail.contains(&MAX_HEADER_BYTES.to_string()), "{detail}");
    }

    // Within the limits, the same request is served.
    let response = client
        .get(url(&server, "/healthz"))
        .header("x-fine", "v".repeat(1024))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 200);
    server.stop().await;
}

/// The label sets of `manman_http_requests_total` in a `/metrics` answer.
async fn request_series(client: &reqwest::Client, server: &HostServer) -> BTreeSet<String> {
    let text = client
        .get(url(server, "/metrics"))
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("text");
    text.lines()
        .filter(|l| l.starts_with("manman_http_requests_total{"))
        .filter_map(|l| l.rsplit_once(' ').map(|(series, _)| series.to_owned()))
        .collect()
}

#[tokio::test]
async fn made_up_methods_add_no_metrics_series() {
    let (server, _) = host(limits()).await;
    let client = reqwest::Client::new();
    let paths = ["/metrics", "/nowhere", "/api/v1/games"];
    let made_up = |n: usize| reqwest::Method::from_bytes(format!("FOO{n}").as_bytes());
    for path in paths {
        let method = made_up(0).expect("method");
        client
            .request(method, url(&server, path))
            .send()
            .await
            .expect("answer");
    }
    request_series(&client, &server).await; // The scrape counts itself from now on.
    let before = request_series(&client, &server).await;
    assert!(
        before.iter().any(|s| s.contains("method=\"other\"")),
        "{before:#?}"
    );

    for n in 1..=1_000 {
        let method = made_up(n).expect("method");
        client
            .request(method, url(&server, paths[n % paths.len()]))
            .send()
            .await
            .expect("answer");
    }
    let after = request_series(&client, &server).await;
    assert_eq!(before, after, "1,000 made-up methods added series");
    server.stop().await;
}

#[tokio::test]
async fn the_docs_forbid_framing_sniffing_and_foreign_content() {
    let (server, _) = host(limits()).await;
    for path in ["/docs/", "/docs/swagger-initializer.js"] {
        let response = reqwest::get(url(&server, path)).await.expect("docs");
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers();
        let csp = headers["content-security-policy"].to_str().expect("ascii");
        assert!(csp.contains("default-src 'none'"), "{path}: {csp}");
        assert!(csp.contains("script-src 'self'"), "{path}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
    }
    // `nosniff` is on every answer, an error too.
    for path in ["/healthz", "/api/v1/games"] {
        let response = reqwest::get(url(&server, path)).await.expect("answer");
        assert_eq!(
            response.headers()["x-content-type-options"],
            "nosniff",
            "{path}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn an_event_stream_outlives_every_timeout_and_ends_at_shutdown() {
    let (server, host) = host(HttpLimits {
        header_timeout: SHORT,
        body_timeout: SHORT,
        idle_timeout: SHORT,
        max_connections: 4,
    })
    .await;
    let admin = server
        .auth()
        .ensure_admin(None)
        .await
        .expect("admin")
        .expect("a new admin token");
    let response = reqwest::Client::new()
        .get(url(&server, "/api/v1/events"))
        .bearer_auth(admin.expose())
        .send()
        .await
        .expect("stream");
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();

    // Open for several times every timeout, then an event still comes through.
    tokio::time::sleep(SHORT * 5).await;
    // A registered worker's own status, sealed with its key: an event the host believes.
    let registered = host
        .gateway()
        .register_worker(&WorkerRegistration {
            name: "w".to_owned(),
            version: "1".to_owned(),
            capacity: 1,
            labels: Default::default(),
            taken_up: Vec::new(),
        })
        .await
        .expect("register");
    let event = Event::Status(
        StatusReport::new(
            Entity::Worker(registered.worker_id),
            Status::Running,
            Cause::Ready,
            Utc::now(),
        )
        .with_detail("downloading"),
    );
    host.bus()
        .publish_event(&event, Utc::now(), &registered.worker_key())
        .await
        .expect("publish");
    let mut received = String::new();
    let arrived = tokio::time::timeout(BOUND, async {
        use futures::StreamExt;
        while let Some(chunk) = body.next().await {
            received.push_str(&String::from_utf8_lossy(&chunk.expect("chunk")));
            if received.contains("downloading") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(
        arrived,
        Ok(true),
        "the stream was cut before the event: {received}"
    );

    // At shutdown the stream ends (and the server stops within its bound).
    tokio::time::timeout(BOUND, server.stop())
        .await
        .expect("stopped");
    let ended = tokio::time::timeout(BOUND, async {
        use futures::StreamExt;
        while let Some(Ok(_)) = body.next().await {}
    })
    .await;
    assert!(ended.is_ok(), "the stream outlived the server");
}
