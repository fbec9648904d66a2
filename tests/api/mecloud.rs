//! MeCloud tokens and accesstokens over HTTP.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use sha1::{Digest, Sha1};
use tokenmint::ttl::Clock;

use crate::helpers::{
    assert_error, assert_status, settings_with, spawn_app, spawn_app_with, TestApp,
};
use crate::redis_server::RedisServer;

pub const APP_ID: &str = "1";
pub const CHANNEL_KEY: &str = "sample-mecloud-secret-not-for-production";
pub const ALICE_KEY: &str = "sample-mecloud-user-key-not-for-production";
pub const CHECK: &str = "/mecloud/v2/token/check";
pub const EXCHANGE: &str = "/mecloud/v2/accesstoken";
pub const VERIFY: &str = "/mecloud/v2/accesstoken/verify";
pub const REVOKE: &str = "/mecloud/v2/accesstoken/revoke";

pub fn token(app_id: &str, time: i64, random_key: &str, secret: &str) -> String {
    hex::encode(Sha1::digest(
        format!("{app_id}.{time}.{random_key}.{secret}").as_bytes(),
    ))
}

/// A check or exchange body for channel `app_id`, made with `secret` at the app's time.
pub fn request_for(app: &TestApp, app_id: &str, random_key: &str, secret: &str) -> Value {
    let time = app.clock.now_millis();
    json!({"appId": app_id, "time": time, "randomKey": random_key, "token": token(app_id, time, random_key, secret)})
}

fn request(app: &TestApp, random_key: &str, secret: &str) -> Value {
    request_for(app, APP_ID, random_key, secret)
}

pub async fn post(app: &TestApp, path: &str, body: &Value) -> reqwest::Response {
    app.post_json(path, body).await
}

async fn exchange_ok(app: &TestApp, body: &Value) -> Value {
    assert_status(post(app, EXCHANGE, body).await, StatusCode::OK).await
}

/// Exchanges a token of channel `app_id` made with `secret`; asserts success; returns the accesstoken.
pub async fn accesstoken_for(
    app: &TestApp,
    app_id: &str,
    random_key: &str,
    secret: &str,
) -> String {
    let body = exchange_ok(app, &request_for(app, app_id, random_key, secret)).await;
    body["accesstoken"]
        .as_str()
        .expect("accesstoken")
        .to_owned()
}

pub async fn verify_query(app: &TestApp, accesstoken: &str) -> reqwest::Response {
    app.get_query(VERIFY, &[("access-token", accesstoken)])
        .await
}

#[tokio::test]
async fn check_accepts_a_token_made_with_any_key_of_the_channel() {
    let app = spawn_app().await;
    for (secret, key_id) in [(CHANNEL_KEY, "channel"), (ALICE_KEY, "user-alice")] {
        let body = assert_status(
            post(&app, CHECK, &request(&app, "MEME", secret)).await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(body, json!({"valid": true, "keyId": key_id}));
    }
}

#[tokio::test]
async fn check_names_the_failed_rule_and_never_the_expected_token() {
    let app = spawn_app().await;
    let now = app.clock.now_millis();
    let expected = token(APP_ID, now, "MEME", CHANNEL_KEY);
    let cases = [
        (
            "unknown appId",
            json!({"appId": "2", "time": now, "randomKey": "MEME", "token": expected}),
            "unknown_app_id",
        ),
        (
            "time in seconds",
            json!({"appId": APP_ID, "time": now / 1000, "randomKey": "MEME", "token": token(APP_ID, now / 1000, "MEME", CHANNEL_KEY)}),
            "time_in_seconds",
        ),
        (
            "time an hour ago",
            json!({"appId": APP_ID, "time": now - 3_600_000, "randomKey": "MEME", "token": token(APP_ID, now - 3_600_000, "MEME", CHANNEL_KEY)}),
            "time_outside_window",
        ),
        (
            "wrong secret",
            json!({"appId": APP_ID, "time": now, "randomKey": "MEME", "token": token(APP_ID, now, "MEME", "guess")}),
            "token_mismatch",
        ),
        (
            "other randomKey",
            json!({"appId": APP_ID, "time": now, "randomKey": "OTHER", "token": expected}),
            "token_mismatch",
        ),
    ];
    for (case, body, code) in cases {
        let response = post(&app, CHECK, &body).await;
        let text = response.text().await.expect("body");
        let verdict: Value = serde_json::from_str(&text).expect("json");
        assert_eq!(verdict["valid"], false, "{case}");
        assert_eq!(verdict["error"]["code"], code, "{case}: {verdict}");
        assert!(
            !text.contains(&expected[..12]),
            "{case}: the expected token never appears"
        );
        assert!(
            !text.contains(&token(APP_ID, now, "OTHER", CHANNEL_KEY)[..12]),
            "{case}"
        );
    }
}

#[tokio::test]
async fn the_time_window_is_inclusive_at_exactly_ten_minutes_either_side() {
    let app = spawn_app().await;
    let now = app.clock.now_millis();
    for (offset, valid) in [
        (-600_000, true),
        (-600_001, false),
        (600_000, true),
        (600_001, false),
    ] {
        let time = now + offset;
        let body = json!({"appId": APP_ID, "time": time, "randomKey": "k", "token": token(APP_ID, time, "k", CHANNEL_KEY)});
        let verdict = assert_status(post(&app, CHECK, &body).await, StatusCode::OK).await;
        assert_eq!(verdict["valid"], valid, "offset {offset} ms: {verdict}");
    }
}

#[tokio::test]
async fn exchange_issues_an_accesstoken_that_verifies_by_query_and_by_bearer() {
    let app = spawn_app().await;
    let body = exchange_ok(&app, &request(&app, "alice-phone", ALICE_KEY)).await;
    assert_eq!(body["expiresIn"], 86_400, "one day by default");
    assert_eq!(body["expiresAt"], app.clock.now_secs() + 86_400);
    assert_eq!(body["keyId"], "user-alice");
    let accesstoken = body["accesstoken"].as_str().expect("accesstoken");

    let by_query = assert_status(verify_query(&app, accesstoken).await, StatusCode::OK).await;
    assert_eq!(
        by_query,
        json!({"valid": true, "appId": APP_ID, "keyId": "user-alice", "subject": "alice-phone", "expiresAt": body["expiresAt"]})
    );
    let by_bearer = app
        .client
        .get(app.url(VERIFY))
        .bearer_auth(accesstoken)
        .send()
        .await
        .expect("sent");
    assert_eq!(
        assert_status(by_bearer, StatusCode::OK).await["subject"],
        "alice-phone"
    );
}

#[tokio::test]
async fn exchange_accepts_a_form_body_and_a_shorter_ttl() {
    let app = spawn_app().await;
    let time = app.clock.now_millis();
    let form = [
        ("appId", APP_ID.to_owned()),
        ("time", time.to_string()),
        ("random-key", "MEME".to_owned()),
        ("token", token(APP_ID, time, "MEME", CHANNEL_KEY)),
        ("ttl", "3600".to_owned()),
    ];
    let response = app
        .client
        .post(app.url(EXCHANGE))
        .form(&form)
        .send()
        .await
        .expect("sent");
    let body = assert_status(response, StatusCode::OK).await;
    assert_eq!(body["expiresIn"], 3600);

    let mut too_long = request(&app, "x", CHANNEL_KEY);
    too_long["ttl"] = json!(86_401);
    let (code, message) = assert_error(
        post(&app, EXCHANGE, &too_long).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(code, "invalid_ttl");
    assert_eq!(message, "ttl must be between 1 and 86400 seconds");
}

#[tokio::test]
async fn a_token_is_exchanged_once_unless_configured_otherwise() {
    let app = spawn_app().await;
    let body = request(&app, "once", CHANNEL_KEY);
    exchange_ok(&app, &body).await;
    let (code, _) = assert_error(post(&app, EXCHANGE, &body).await, StatusCode::CONFLICT).await;
    assert_eq!(code, "token_already_exchanged");

    let lenient = spawn_app_with(settings_with(
        "",
        &[("TOKENMINT_MECLOUD__SINGLE_EXCHANGE", "false")],
    ))
    .await;
    let body = request(&lenient, "again", CHANNEL_KEY);
    exchange_ok(&lenient, &body).await;
    exchange_ok(&lenient, &body).await;
}

#[tokio::test]
async fn exchange_refuses_seconds_and_a_mismatch_with_clear_errors() {
    let app = spawn_app().await;
    let seconds = app.clock.now_secs();
    let body = json!({"appId": APP_ID, "time": seconds, "randomKey": "k", "token": token(APP_ID, seconds, "k", CHANNEL_KEY)});
    let (code, message) =
        assert_error(post(&app, EXCHANGE, &body).await, StatusCode::BAD_REQUEST).await;
    assert_eq!(code, "time_in_seconds");
    assert!(message.contains("milliseconds"), "{message}");

    let response = post(&app, EXCHANGE, &request(&app, "k", "wrong-secret")).await;
    assert!(response.headers().contains_key("www-authenticate"));
    let (code, _) = assert_error(response, StatusCode::UNAUTHORIZED).await;
    assert_eq!(code, "token_mismatch");
}

#[tokio::test]
async fn every_bad_input_is_refused_in_the_json_error_shape() {
    let app = spawn_app().await;
    let now = app.clock.now_millis();
    let good = token(APP_ID, now, "k", CHANNEL_KEY);
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "no appId",
            json!({"time": now, "randomKey": "k", "token": good}),
            "missing_field",
        ),
        (
            "empty appId",
            json!({"appId": "", "time": now, "randomKey": "k", "token": good}),
            "missing_field",
        ),
        (
            "no time",
            json!({"appId": APP_ID, "randomKey": "k", "token": good}),
            "missing_field",
        ),
        (
            "time not a number",
            json!({"appId": APP_ID, "time": "soon", "randomKey": "k", "token": good}),
            "invalid_time",
        ),
        (
            "negative time",
            json!({"appId": APP_ID, "time": -1, "randomKey": "k", "token": good}),
            "invalid_time",
        ),
        (
            "fractional time",
            json!({"appId": APP_ID, "time": 1.5, "randomKey": "k", "token": good}),
            "invalid_time",
        ),
        (
            "no randomKey",
            json!({"appId": APP_ID, "time": now, "token": good}),
            "missing_field",
        ),
        (
            "randomKey too long",
            json!({"appId": APP_ID, "time": now, "randomKey": "r".repeat(129), "token": good}),
            "invalid_random_key",
        ),
        (
            "randomKey with a newline",
            json!({"appId": APP_ID, "time": now, "randomKey": "a\nb", "token": good}),
            "invalid_random_key",
        ),
        (
            "no token",
            json!({"appId": APP_ID, "time": now, "randomKey": "k"}),
            "missing_field",
        ),
        (
            "token not hex",
            json!({"appId": APP_ID, "time": now, "randomKey": "k", "token": "z".repeat(40)}),
            "invalid_token",
        ),
        (
            "token too short",
            json!({"appId": APP_ID, "time": now, "randomKey": "k", "token": "abc"}),
            "invalid_token",
        ),
        (
            "unknown field",
            json!({"appId": APP_ID, "time": now, "randomKey": "k", "token": good, "scope": 1}),
            "invalid_body",
        ),
        ("array body", json!([1]), "invalid_body"),
        (
            "ttl not a number",
            json!({"appId": APP_ID, "time": now, "randomKey": "k", "token": good, "ttl": "long"}),
            "invalid_ttl",
        ),
    ];
    for (case, body, code) in cases {
        for path in [CHECK, EXCHANGE] {
            if path == CHECK && code == "invalid_ttl" {
                continue;
            }
            let (got, message) =
                assert_error(post(&app, path, &body).await, StatusCode::BAD_REQUEST).await;
            assert_eq!(got, code, "{case} on {path}: {message}");
        }
    }
    let response = app
        .client
        .post(app.url(EXCHANGE))
        .header("content-type", "text/plain")
        .body("appId=1")
        .send()
        .await
        .expect("sent");
    assert_error(response, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    let response = app
        .client
        .post(app.url(EXCHANGE))
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .expect("sent");
    let (code, _) = assert_error(response, StatusCode::BAD_REQUEST).await;
    assert_eq!(code, "malformed_json");
}

#[tokio::test]
async fn verify_refuses_missing_malformed_tampered_and_expired_accesstokens() {
    let app = spawn_app().await;
    let mut short_lived = request(&app, "k", CHANNEL_KEY);
    short_lived["ttl"] = json!(60);
    let body = exchange_ok(&app, &short_lived).await;
    let accesstoken = body["accesstoken"]
        .as_str()
        .expect("accesstoken")
        .to_owned();
    let signature_at = accesstoken.rfind('.').expect("jwt") + 1;
    let mut tampered = accesstoken.clone();
    let replacement = if accesstoken[signature_at..].starts_with('A') {
        "B"
    } else {
        "A"
    };
    tampered.replace_range(signature_at..=signature_at, replacement);

    let response = app.client.get(app.url(VERIFY)).send().await.expect("sent");
    let (code, _) = assert_error(response, StatusCode::UNAUTHORIZED).await;
    assert_eq!(code, "missing_accesstoken");
    for (case, candidate, code) in [
        ("garbage", "abc".to_owned(), "malformed_accesstoken"),
        ("tampered", tampered, "bad_signature"),
    ] {
        let (got, _) = assert_error(
            verify_query(&app, &candidate).await,
            StatusCode::UNAUTHORIZED,
        )
        .await;
        assert_eq!(got, code, "{case}");
    }
    app.clock.advance(Duration::from_secs(59));
    assert_status(verify_query(&app, &accesstoken).await, StatusCode::OK).await;
    app.clock.advance(Duration::from_secs(1));
    let (code, _) = assert_error(
        verify_query(&app, &accesstoken).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_eq!(code, "accesstoken_expired");
}

#[tokio::test]
async fn a_revoked_accesstoken_is_refused_and_others_are_not() {
    let app = spawn_app().await;
    let first = exchange_ok(&app, &request(&app, "a", CHANNEL_KEY)).await["accesstoken"].clone();
    let second = exchange_ok(&app, &request(&app, "b", CHANNEL_KEY)).await["accesstoken"].clone();
    let revoked = assert_status(
        post(&app, REVOKE, &json!({"accesstoken": first})).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(revoked["revoked"], true);
    let (code, _) = assert_error(
        verify_query(&app, first.as_str().expect("s")).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_eq!(code, "accesstoken_revoked");
    assert_status(
        verify_query(&app, second.as_str().expect("s")).await,
        StatusCode::OK,
    )
    .await;
}

#[tokio::test]
async fn removing_a_key_from_configuration_kills_every_accesstoken_made_with_it() {
    let channel = |keys: &[(&str, &str)]| {
        let mut toml =
            "[mecloud.channels.acme]\napp_id = \"acme\"\n[mecloud.channels.acme.keys]\n".to_owned();
        for (id, secret) in keys {
            toml.push_str(&format!("{id} = \"{secret}\"\n"));
        }
        toml
    };
    let before = spawn_app_with(settings_with(
        &channel(&[("owner", "owner-secret"), ("bob", "bob-secret")]),
        &[],
    ))
    .await;
    let mint = |app: &TestApp, random_key: &str, secret: &str| {
        let time = app.clock.now_millis();
        json!({"appId": "acme", "time": time, "randomKey": random_key, "token": token("acme", time, random_key, secret)})
    };
    let bobs =
        exchange_ok(&before, &mint(&before, "bob-1", "bob-secret")).await["accesstoken"].clone();
    let owners =
        exchange_ok(&before, &mint(&before, "own-1", "owner-secret")).await["accesstoken"].clone();

    let after = spawn_app_with(settings_with(&channel(&[("owner", "owner-secret")]), &[])).await;
    let (code, _) = assert_error(
        verify_query(&after, bobs.as_str().expect("s")).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_eq!(code, "key_revoked");
    assert_status(
        verify_query(&after, owners.as_str().expect("s")).await,
        StatusCode::OK,
    )
    .await;

    let changed = spawn_app_with(settings_with(
        &channel(&[("owner", "owner-secret"), ("bob", "bob-new-secret")]),
        &[],
    ))
    .await;
    let (code, _) = assert_error(
        verify_query(&changed, bobs.as_str().expect("s")).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_eq!(
        code, "bad_signature",
        "a key whose secret changed also kills its accesstokens"
    );
}

const LIMITED: [(&str, &str); 3] = [
    ("TOKENMINT_MECLOUD__RATE_LIMIT", "3"),
    ("TOKENMINT_MECLOUD__RATE_WINDOW_SECS", "60"),
    ("TOKENMINT_MECLOUD__LOCKOUT_SECS", "300"),
];

async fn assert_rate_limited(app: &TestApp, random_key: &str) -> u64 {
    let response = post(app, EXCHANGE, &request(app, random_key, CHANNEL_KEY)).await;
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    let (code, _) = assert_error(response, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(code, "rate_limited");
    retry_after
}

#[tokio::test]
async fn a_channel_over_its_rate_limit_is_locked_out_for_five_minutes() {
    let app = spawn_app_with(settings_with("", &LIMITED)).await;
    for i in 0..3 {
        exchange_ok(&app, &request(&app, &format!("r{i}"), CHANNEL_KEY)).await;
    }
    assert_eq!(assert_rate_limited(&app, "r3").await, 300);
    app.clock.advance(Duration::from_secs(299));
    assert_eq!(assert_rate_limited(&app, "r4").await, 1);
    app.clock.advance(Duration::from_secs(1));
    exchange_ok(&app, &request(&app, "r5", CHANNEL_KEY)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_and_single_exchange_hold_across_instances_sharing_redis() {
    let server = RedisServer::start();
    let url = server.url();
    let mut env = LIMITED.to_vec();
    env.push(("TOKENMINT_STORE__BACKEND", "redis"));
    env.push(("TOKENMINT_STORE__REDIS__URL", &url));
    let a = spawn_app_with(settings_with("", &env)).await;
    let b = spawn_app_with(settings_with("", &env)).await;
    b.clock.set_millis(a.clock.now_millis());

    let shared = request(&a, "shared", CHANNEL_KEY);
    exchange_ok(&a, &shared).await;
    let (code, _) = assert_error(post(&b, EXCHANGE, &shared).await, StatusCode::CONFLICT).await;
    assert_eq!(code, "token_already_exchanged", "b knows a exchanged it");
    exchange_ok(&b, &request(&b, "r1", CHANNEL_KEY)).await;
    exchange_ok(&a, &request(&a, "r2", CHANNEL_KEY)).await;
    assert_rate_limited(&b, "r3").await;
    assert_rate_limited(&a, "r4").await;
}

#[tokio::test]
async fn a_token_stays_valid_until_the_clock_moves_past_the_window() {
    let app = spawn_app().await;
    let body = request(&app, "k", CHANNEL_KEY);
    app.clock.advance(Duration::from_secs(600));
    let verdict = assert_status(post(&app, CHECK, &body).await, StatusCode::OK).await;
    assert_eq!(
        verdict["valid"], true,
        "exactly 10 minutes later: {verdict}"
    );
    app.clock.advance(Duration::from_millis(1));
    let verdict = assert_status(post(&app, CHECK, &body).await, StatusCode::OK).await;
    assert_eq!(
        verdict["error"]["code"], "time_outside_window",
        "1 ms past: {verdict}"
    );
    let (code, _) = assert_error(post(&app, EXCHANGE, &body).await, StatusCode::BAD_REQUEST).await;
    assert_eq!(code, "time_outside_window");
}

#[tokio::test]
async fn json_sent_as_a_form_is_answered_with_what_is_wrong() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url(EXCHANGE))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(request(&app, "k", CHANNEL_KEY).to_string())
        .send()
        .await
        .expect("sent");
    let (code, message) = assert_error(response, StatusCode::BAD_REQUEST).await;
    assert_eq!(code, "invalid_body");
    assert!(
        message.contains("looks like JSON but was sent as a form"),
        "{message}"
    );
}
