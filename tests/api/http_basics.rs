//! Behaviour every route shares: error shape, request ids, limits.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{assert_error, basic, settings_with, spawn_app, spawn_app_with, KEY_1};

#[tokio::test]
async fn unknown_path_is_a_json_404() {
    let app = spawn_app().await;
    let response = app.client.get(app.url("/nope")).send().await.expect("sent");
    let (code, _) = assert_error(response, StatusCode::NOT_FOUND).await;
    assert_eq!(code, "not_found");
}

#[tokio::test]
async fn wrong_method_is_a_json_405() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/twilio/v1/tokens"))
        .send()
        .await
        .expect("sent");
    let (code, _) = assert_error(response, StatusCode::METHOD_NOT_ALLOWED).await;
    assert_eq!(code, "method_not_allowed");
}

#[tokio::test]
async fn request_id_is_generated_when_absent_and_echoed_when_sane() {
    let app = spawn_app().await;
    let generated = app
        .client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("sent");
    let id = generated.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert_eq!(id.len(), 32, "generated id: {id}");

    let propagated = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "gateway-1234")
        .send()
        .await
        .expect("sent");
    assert_eq!(propagated.headers()["x-request-id"], "gateway-1234");

    let replaced = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "x".repeat(200))
        .send()
        .await
        .expect("sent");
    assert_eq!(
        replaced.headers()["x-request-id"].len(),
        32,
        "an overlong id is replaced"
    );
}

#[tokio::test]
async fn body_over_the_limit_is_a_json_413() {
    let app = spawn_app().await;
    let big = json!({"identity": "a".repeat(20_000)});
    let response = app
        .client
        .post(app.url("/twilio/v1/tokens"))
        .header("authorization", basic(KEY_1.0, KEY_1.1))
        .json(&big)
        .send()
        .await
        .expect("sent");
    let (code, message) = assert_error(response, StatusCode::PAYLOAD_TOO_LARGE).await;
    assert_eq!(code, "payload_too_large");
    assert!(message.contains("16384"), "{message}");
}

#[tokio::test]
async fn body_limit_is_configurable() {
    let app = spawn_app_with(settings_with(
        "",
        &[("TOKENMINT_SERVER__BODY_LIMIT_BYTES", "64")],
    ))
    .await;
    let response = app
        .client
        .post(app.url("/twilio/v1/tokens"))
        .header("authorization", basic(KEY_1.0, KEY_1.1))
        .json(&json!({"identity": "a".repeat(100)}))
        .send()
        .await
        .expect("sent");
    let (code, _) = assert_error(response, StatusCode::PAYLOAD_TOO_LARGE).await;
    assert_eq!(code, "payload_too_large");
}

/// Sends a request's head and the first half of its body on a raw connection; returns the stream and the rest.
async fn half_sent_request(
    app: &crate::helpers::TestApp,
    path: &str,
    content_type: &str,
    body: &str,
) -> (tokio::net::TcpStream, String) {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(app.addr)
        .await
        .expect("connects");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        app.addr,
        basic(KEY_1.0, KEY_1.1),
        body.len()
    );
    let (first, rest) = body.split_at(body.len() / 2);
    stream
        .write_all(head.as_bytes())
        .await
        .expect("head written");
    stream
        .write_all(first.as_bytes())
        .await
        .expect("first half written");
    (stream, rest.to_owned())
}

async fn read_response(mut stream: tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .expect("response read");
    response
}

#[tokio::test]
async fn shutdown_lets_an_in_flight_request_finish_and_refuses_new_connections() {
    use tokio::io::AsyncWriteExt;
    let mut app = spawn_app().await;
    let (mut stream, rest) = half_sent_request(
        &app,
        "/twilio/v1/tokens",
        "application/json",
        r#"{"identity":"alice@example.com"}"#,
    )
    .await;
    // Let the server read the head, so the request is in flight when the signal arrives.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;

    app.begin_shutdown();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    stream
        .write_all(rest.as_bytes())
        .await
        .expect("second half written");
    let response = read_response(stream).await;
    assert!(
        response.starts_with("HTTP/1.1 200"),
        "in-flight request finished: {response}"
    );
    assert!(response.contains("\"token\""), "{response}");

    let refused = tokio::net::TcpStream::connect(app.addr).await;
    assert!(refused.is_err(), "no new connections after shutdown");
}

#[tokio::test]
async fn a_request_past_the_deadline_gets_408_in_the_json_shape_and_200_in_netease_envelope() {
    let app = spawn_app_with(settings_with(
        "",
        &[("TOKENMINT_SERVER__REQUEST_TIMEOUT_SECS", "1")],
    ))
    .await;

    let (stream, _never_sent) = half_sent_request(
        &app,
        "/twilio/v1/tokens",
        "application/json",
        r#"{"identity":"slow"}"#,
    )
    .await;
    let response = read_response(stream).await;
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(
        response.contains(r#"{"error":{"code":"request_timeout""#),
        "{response}"
    );

    let (stream, _never_sent) = half_sent_request(
        &app,
        "/nimserver/user/getToken.action",
        "application/x-www-form-urlencoded",
        "uid=123456&channelName=slow",
    )
    .await;
    let response = read_response(stream).await;
    assert!(
        response.starts_with("HTTP/1.1 200"),
        "NetEase clients see HTTP 200: {response}"
    );
    assert!(response.contains(r#""code":503"#), "{response}");
}
