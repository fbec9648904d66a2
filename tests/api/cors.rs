//! CORS: none by default; configured origins may call the MeCloud routes from a browser (preflight answered);
//! the Twilio routes stay server-to-server unless configured.

use reqwest::Method;

use crate::helpers::{settings_with, spawn_app, spawn_app_with, TestApp};

const ORIGIN: &str = "https://app.example.com";

async fn preflight(app: &TestApp, path: &str, origin: &str) -> reqwest::Response {
    app.client
        .request(Method::OPTIONS, app.url(path))
        .header("Origin", origin)
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "content-type")
        .send()
        .await
        .expect("sent")
}

fn allowed_origin(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get("access-control-allow-origin")
        .map(|v| v.to_str().expect("ascii").to_owned())
}

#[tokio::test]
async fn no_origin_is_allowed_by_default() {
    let app = spawn_app().await;
    let response = preflight(&app, "/mecloud/v2/accesstoken", ORIGIN).await;
    assert_eq!(allowed_origin(&response), None);
}

#[tokio::test]
async fn a_configured_origin_may_call_the_mecloud_routes_and_others_may_not() {
    let app = spawn_app_with(settings_with(
        &format!("[cors]\nallowed_origins = [\"{ORIGIN}\"]\n"),
        &[],
    ))
    .await;

    let response = preflight(&app, "/mecloud/v2/accesstoken", ORIGIN).await;
    assert_eq!(response.status(), 200);
    assert_eq!(allowed_origin(&response).as_deref(), Some(ORIGIN));
    let methods = response.headers()["access-control-allow-methods"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(methods.contains("POST"), "{methods}");

    let actual = app
        .client
        .post(app.url("/mecloud/v2/token/check"))
        .header("Origin", ORIGIN)
        .json(&serde_json::json!({}))
        .send()
        .await
        .expect("sent");
    assert_eq!(allowed_origin(&actual).as_deref(), Some(ORIGIN));

    let stranger = preflight(&app, "/mecloud/v2/accesstoken", "https://evil.example").await;
    assert_eq!(allowed_origin(&stranger), None);
    let twilio = preflight(&app, "/twilio/v1/tokens", ORIGIN).await;
    assert_eq!(
        allowed_origin(&twilio),
        None,
        "Twilio stays server-to-server"
    );
}

#[tokio::test]
async fn the_twilio_routes_get_cors_only_when_configured() {
    let app = spawn_app_with(settings_with(
        &format!("[cors]\nallowed_origins = [\"{ORIGIN}\"]\ntwilio = true\n"),
        &[],
    ))
    .await;
    let twilio = preflight(&app, "/twilio/v1/tokens", ORIGIN).await;
    assert_eq!(allowed_origin(&twilio).as_deref(), Some(ORIGIN));
}

#[test]
fn an_origin_with_a_path_is_refused_with_the_rule() {
    let err = tokenmint::config::Settings::load_from(tokenmint::config::Sources {
        file: None,
        inline: Some("[cors]\nallowed_origins = [\"https://app.example.com/\"]\n".to_owned()),
        env: Some(Default::default()),
    })
    .expect_err("refused");
    let message = err.to_string();
    assert!(message.contains("cors.allowed_origins"), "{message}");
    assert!(message.contains("scheme://host"), "{message}");
}
