//! Limits that protect the process: a header-read timeout, an idle keep-alive timeout, a cap on connections and
//! one on requests in flight. Each test waits for the behaviour (with a generous ceiling), it never times it.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{settings_with, spawn_app_with, TestApp};

async fn spawn_with(env: &[(&str, &str)]) -> TestApp {
    spawn_app_with(settings_with("", env)).await
}

/// Reads until the server closes the connection; panics if it is still open after `ceiling`. Returns what was
/// read.
async fn closed_within(stream: &mut TcpStream, ceiling: Duration) -> Vec<u8> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let started = Instant::now();
    loop {
        let left = ceiling.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return seen,
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "the connection is still open after {ceiling:?}; read so far: {}",
                String::from_utf8_lossy(&seen)
            ),
        }
    }
}

/// Sends one request on `stream` and reads the whole answer (the body is small: one read after the head).
async fn round_trip(stream: &mut TcpStream, path: &str) -> String {
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
        .await
        .expect("written");
    let mut buf = vec![0u8; 8192];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .expect("answered in time")
        .expect("read");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let app = spawn_with(&[("TOKENMINT_SERVER__HEADER_READ_TIMEOUT_SECS", "1")]).await;

    let mut partial = TcpStream::connect(app.addr).await.expect("connects");
    partial
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: ")
        .await
        .expect("written");
    let mut silent = TcpStream::connect(app.addr).await.expect("connects");

    closed_within(&mut partial, Duration::from_secs(10)).await;
    closed_within(&mut silent, Duration::from_secs(10)).await;
    // The server itself is fine.
    let mut fresh = TcpStream::connect(app.addr).await.expect("connects");
    assert!(round_trip(&mut fresh, "/healthz")
        .await
        .starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn a_later_request_that_stalls_mid_head_is_disconnected_by_the_header_timeout() {
    let app = spawn_with(&[
        ("TOKENMINT_SERVER__HEADER_READ_TIMEOUT_SECS", "1"),
        ("TOKENMINT_SERVER__IDLE_TIMEOUT_SECS", "600"),
    ])
    .await;
    let mut stream = TcpStream::connect(app.addr).await.expect("connects");
    assert!(round_trip(&mut stream, "/healthz")
        .await
        .starts_with("HTTP/1.1 200"));

    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
        .await
        .expect("written");

    // Far sooner than the 600 s idle timeout: the head started and did not finish.
    closed_within(&mut stream, Duration::from_secs(10)).await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_and_a_busy_one_is_not() {
    let app = spawn_with(&[
        ("TOKENMINT_SERVER__IDLE_TIMEOUT_SECS", "2"),
        ("TOKENMINT_SERVER__HEADER_READ_TIMEOUT_SECS", "2"),
    ])
    .await;
    let mut idle = TcpStream::connect(app.addr).await.expect("connects");
    assert!(round_trip(&mut idle, "/healthz")
        .await
        .starts_with("HTTP/1.1 200"));
    let mut busy = TcpStream::connect(app.addr).await.expect("connects");

    // The busy connection sends a request every 300 ms for 4 s: twice the idle timeout in all.
    for _ in 0..13 {
        let answer = round_trip(&mut busy, "/healthz").await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    closed_within(&mut idle, Duration::from_secs(10)).await;
}

#[tokio::test]
async fn connections_beyond_the_cap_are_closed_until_one_frees_up() {
    let app = spawn_with(&[("TOKENMINT_SERVER__MAX_CONNECTIONS", "2")]).await;
    let mut first = TcpStream::connect(app.addr).await.expect("connects");
    let mut second = TcpStream::connect(app.addr).await.expect("connects");
    assert!(round_trip(&mut first, "/healthz")
        .await
        .starts_with("HTTP/1.1 200"));
    assert!(round_trip(&mut second, "/healthz")
        .await
        .starts_with("HTTP/1.1 200"));

    let mut third = TcpStream::connect(app.addr)
        .await
        .expect("the kernel accepts");
    let _ = third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .await;
    let answer = closed_within(&mut third, Duration::from_secs(10)).await;
    assert!(
        answer.is_empty(),
        "no answer beyond the cap: {}",
        String::from_utf8_lossy(&answer)
    );

    drop(first);
    // Once the server has seen the close, a new connection is served again.
    let started = Instant::now();
    loop {
        let mut next = TcpStream::connect(app.addr).await.expect("connects");
        let _ = next
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            .await;
        let mut buf = [0u8; 1024];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(2), next.read(&mut buf)).await {
            if n > 0 {
                assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
                break;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "a freed slot is reused"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("sent")
        .text()
        .await
        .expect("body");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("tokenmint_connections_refused_total ") && !l.ends_with(" 0")),
        "{metrics}"
    );
}

/// Starts a request whose body never completes: it stays in flight until its deadline.
async fn hold_a_request(app: &TestApp) -> TcpStream {
    let mut stream = TcpStream::connect(app.addr).await.expect("connects");
    let head = format!(
        "POST /twilio/v1/tokens HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
         Authorization: {}\r\nContent-Length: 100\r\n\r\n{{\"identity\":",
        crate::helpers::basic(crate::helpers::KEY_1.0, crate::helpers::KEY_1.1)
    );
    stream.write_all(head.as_bytes()).await.expect("written");
    stream
}

#[tokio::test]
async fn requests_beyond_the_in_flight_cap_get_503_with_retry_after_in_the_route_shape() {
    let app = spawn_with(&[("TOKENMINT_SERVER__MAX_IN_FLIGHT", "1")]).await;
    let _held = hold_a_request(&app).await;
    // Wait until the held request is in flight: then the next one is refused.
    let started = Instant::now();
    let refused = loop {
        let response = app
            .post_json("/mecloud/v2/token/check", &serde_json::json!({}))
            .await;
        if response.status() == 503 {
            break response;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the cap applies"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(refused.headers()["retry-after"], "1");
    let (code, _) =
        crate::helpers::assert_error(refused, reqwest::StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(code, "overloaded");

    let netease = crate::netease::call(&app, crate::netease::GET_TOKEN, "uid=1").await;
    assert_eq!(netease["code"], 503, "NetEase's envelope: {netease}");

    let health = app
        .client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("sent");
    assert_eq!(health.status(), 200, "probes are always answered");
}
