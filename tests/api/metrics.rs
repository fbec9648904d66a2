//! `GET /metrics`: requests, tokens, verifications and NetEase codes counted by their fixed codes; store latency;
//! build info; never a token, secret or identity; optionally on a listener of its own.

use serde_json::json;
use tokenmint::startup::Application;
use tokenmint::ttl::ManualClock;

use crate::helpers::{settings_with, spawn_app, TestApp, KEY_1, KEY_2};
use crate::netease::{self, GET_TOKEN};

async fn scrape(app: &TestApp) -> String {
    let response = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .starts_with("text/plain; version=0.0.4"));
    response.text().await.expect("body")
}

/// The value of the sample `name{labels}`, or 0 when it is absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |value| value.trim().parse().expect("a number"))
}

#[tokio::test]
async fn metrics_count_tokens_verifications_and_netease_codes_by_outcome() {
    let app = spawn_app().await;
    let minted = app
        .mint_ok(KEY_1, &json!({"identity": "alice-identity"}))
        .await;
    let token = minted["token"].as_str().expect("token").to_owned();
    assert_eq!(app.verify(KEY_1, &token).await["valid"], true);
    let last = if token.ends_with('x') { "y" } else { "x" };
    let tampered = format!("{}{last}", &token[..token.len() - 1]);
    assert_eq!(app.verify(KEY_2, &tampered).await["valid"], false);
    // The caller's own credentials failing is not a verification.
    let unauthorized = app
        .post_twilio(
            "/twilio/v1/tokens/verify",
            (KEY_1.0, "not-the-secret"),
            &json!({ "token": token }),
        )
        .await;
    assert_eq!(unauthorized.status(), 401);
    let issued = netease::get_token(&app, "uid=424242").await;
    // A NetEase failure is HTTP 200: only the code tells it apart.
    let refused = netease::call(&app, GET_TOKEN, "uid=not-a-number").await;
    assert_eq!(refused["code"], 414);

    let text = scrape(&app).await;

    assert_eq!(
        sample(&text, r#"tokenmint_tokens_issued_total{provider="twilio"}"#),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            r#"tokenmint_tokens_issued_total{provider="netease"}"#
        ),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            r#"tokenmint_verifications_total{provider="twilio",outcome="valid",reason=""}"#
        ),
        1.0
    );
    let invalid = text
        .lines()
        .find(|l| {
            l.starts_with(r#"tokenmint_verifications_total{provider="twilio",outcome="invalid""#)
        })
        .unwrap_or_else(|| panic!("an invalid verification with its reason: {text}"));
    assert!(invalid.ends_with(" 1"), "{invalid}");
    assert!(
        !text.contains("reason=\"invalid_credentials\""),
        "a 401 for the caller's credentials is not counted as a verification: {text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"tokenmint_netease_answers_total{route="/nimserver/user/getToken.action",code="200"}"#
        ),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            r#"tokenmint_netease_answers_total{route="/nimserver/user/getToken.action",code="414"}"#
        ),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            r#"tokenmint_http_requests_total{method="POST",route="/nimserver/user/getToken.action",status="200"}"#
        ),
        2.0
    );
    assert!(
        sample(
            &text,
            r#"tokenmint_store_operation_duration_seconds_count{backend="embedded",operation="issue_or_extend"}"#
        ) >= 1.0,
        "store latency by operation: {text}"
    );
    assert!(
        sample(&text, "tokenmint_store_embedded_batch_size_count") >= 1.0,
        "group-commit batch sizes: {text}"
    );
    assert!(
        sample(
            &text,
            "tokenmint_store_embedded_commit_duration_seconds_count"
        ) >= 1.0,
        "fsync latency: {text}"
    );
    assert!(
        text.contains(&format!(
            "tokenmint_build_info{{version=\"{}\",commit=",
            env!("CARGO_PKG_VERSION")
        )),
        "{text}"
    );
    for secret in [
        token.as_str(),
        issued.as_str(),
        "alice-identity",
        "424242",
        KEY_1.1,
        KEY_1.0,
    ] {
        assert!(!text.contains(secret), "a metric label carries {secret}");
    }
}

#[tokio::test]
async fn rate_limit_and_replay_refusals_are_counted() {
    let app = crate::helpers::spawn_app_with(settings_with(
        "[netease.apps.sample]\nrate_limit = 1\n",
        &[],
    ))
    .await;
    netease::get_token(&app, "uid=1").await;
    assert_eq!(netease::call(&app, GET_TOKEN, "uid=2").await["code"], 416);
    // The same headers with another body: a replay.
    let mut headers = netease::auth_headers(&app, netease::SECRET);
    headers.push(("Content-Type".into(), netease::FORM.into()));
    netease::post_raw(&app, GET_TOKEN, &headers, b"uid=3".to_vec()).await;
    let replayed = netease::post_raw(&app, GET_TOKEN, &headers, b"uid=4".to_vec()).await;
    assert_eq!(replayed["code"], 431);

    let text = scrape(&app).await;
    assert_eq!(
        sample(
            &text,
            r#"tokenmint_rate_limit_refusals_total{provider="netease"}"#
        ),
        2.0
    );
    assert_eq!(
        sample(
            &text,
            r#"tokenmint_replay_refusals_total{provider="netease"}"#
        ),
        1.0
    );
}

#[tokio::test]
async fn metrics_can_be_served_on_their_own_listener_only() {
    let settings = settings_with("", &[("TOKENMINT_METRICS__PORT", "0")]);
    let app = Application::build_with_clock(&settings, ManualClock::starting_now())
        .await
        .expect("builds");
    let main = app.local_addr().expect("main address");
    let metrics = app.metrics_addr().expect("a metrics listener");
    assert_ne!(main, metrics);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();

    let on_main = client
        .get(format!("http://{main}/metrics"))
        .send()
        .await
        .expect("sent");
    assert_eq!(on_main.status(), 404, "not exposed through the main port");
    let on_own = client
        .get(format!("http://{metrics}/metrics"))
        .send()
        .await
        .expect("sent");
    assert_eq!(on_own.status(), 200);
    assert!(on_own
        .text()
        .await
        .expect("body")
        .contains("tokenmint_build_info"));
    let _ = stop.send(());
}
