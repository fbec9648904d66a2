use reqwest::StatusCode;

use crate::helpers::{assert_status, spawn_app};

#[tokio::test]
async fn healthz_answers_ok() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("sent");
    let body = assert_status(response, StatusCode::OK).await;
    assert_eq!(body["status"], "ok");
}

#[tokio::test]
async fn readyz_answers_ready() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("sent");
    let body = assert_status(response, StatusCode::OK).await;
    assert_eq!(body["status"], "ready");
}

#[tokio::test]
async fn healthcheck_probe_reports_a_live_instance_and_a_dead_port() {
    let app = spawn_app().await;
    tokenmint::healthcheck::probe(app.addr, std::time::Duration::from_secs(2))
        .await
        .expect("healthy");

    let unused: std::net::SocketAddr = ([127, 0, 0, 1], crate::helpers::free_port()).into();
    let err = tokenmint::healthcheck::probe(unused, std::time::Duration::from_secs(2))
        .await
        .expect_err("nothing listens there");
    assert!(err.to_string().contains("cannot reach"), "{err}");
}
