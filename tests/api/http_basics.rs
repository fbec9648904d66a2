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
