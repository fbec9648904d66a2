//! Behaviour specific to one backend: purging, sharing through Redis, outages, durability across SIGKILL.

use std::process::Stdio;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use tokenmint::store::{Admission, Backend, RecordKey, Store, TokenStore};
use tokenmint::ttl::ManualClock;

use crate::helpers::{assert_status, basic, spawn_on_redis, temp_path, Binary, KEY_1};
use crate::redis_server::RedisServer;
use crate::store::{settings, Harness};

fn key(uid: &str) -> RecordKey {
    RecordKey {
        app: "app".to_owned(),
        subject: uid.to_owned(),
        room: String::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_purge_removes_expired_entries_so_storage_tracks_live_ones() {
    let h = Harness::embedded().await;
    let embedded = &h.store;
    for uid in 0..20 {
        h.store
            .issue_or_extend(
                &key(&uid.to_string()),
                &format!("t{uid}"),
                Duration::from_secs(10),
                false,
                None,
            )
            .await
            .expect("issue");
    }
    h.store
        .remember_once("n", Duration::from_secs(10))
        .await
        .expect("once");
    h.store
        .revoke_until("s", 1_800_000_010_000)
        .await
        .expect("revoke");
    h.store
        .issue_or_extend(&key("long"), "long", Duration::from_secs(3600), false, None)
        .await
        .expect("issue");
    assert_eq!(embedded.stored_entries().await.expect("count"), 23);

    h.clock.advance(Duration::from_secs(10));
    assert_eq!(embedded.purge_now().await.expect("purge"), 22);
    assert_eq!(
        embedded.stored_entries().await.expect("count"),
        1,
        "only the live record is left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_sharing_one_redis_see_each_others_records() {
    let server = RedisServer::start();
    let clock = ManualClock::at_millis(1_800_000_000_000);
    let a = Store::open(&settings(Backend::Redis, &server.url()), clock.clone())
        .await
        .expect("a");
    let b = Store::open(&settings(Backend::Redis, &server.url()), clock.clone())
        .await
        .expect("b");

    let issued = a
        .issue_or_extend(&key("1"), "from-a", Duration::from_secs(60), true, None)
        .await
        .expect("issue");
    let again = b
        .issue_or_extend(&key("1"), "from-b", Duration::from_secs(60), true, None)
        .await
        .expect("issue");
    assert_eq!(
        again.record.token, issued.record.token,
        "b extends a's token"
    );
    assert!(matches!(
        b.use_token(&key("1"), "from-a").await.expect("use"),
        Admission::Admitted(_)
    ));
    assert_eq!(
        a.use_token(&key("1"), "from-a").await.expect("use"),
        Admission::AlreadyUsed
    );
    assert!(a
        .remember_once("n", Duration::from_secs(5))
        .await
        .expect("once"));
    assert!(!b
        .remember_once("n", Duration::from_secs(5))
        .await
        .expect("once"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_redis_fails_fast_and_the_store_recovers_when_it_returns() {
    let server = RedisServer::start();
    let clock = ManualClock::at_millis(1_800_000_000_000);
    let store = Store::open(&settings(Backend::Redis, &server.url()), clock)
        .await
        .expect("opens");
    store.ping().await.expect("up");

    let stopped = server.stop();
    // The bound only catches a hang; the configured deadline is 500 ms.
    let outcome = tokio::time::timeout(
        Duration::from_secs(10),
        store.remember_once("x", Duration::from_secs(5)),
    )
    .await
    .expect("does not hang");
    assert!(
        matches!(outcome, Err(tokenmint::store::StoreError::Unavailable(_))),
        "{outcome:?}"
    );

    let _back = stopped.start();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match store.remember_once("y", Duration::from_secs(5)).await {
            Ok(first) => {
                assert!(first);
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "store did not recover: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_the_store_and_routes_answer_503_while_it_is_down() {
    let server = RedisServer::start();
    let url = server.url();
    let app = spawn_on_redis(&url).await;
    let ready = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("sent");
    assert_eq!(
        assert_status(ready, StatusCode::OK).await["checks"]["store"],
        "ok"
    );
    let token = app.mint_ok(KEY_1, &json!({"identity": "alice"})).await["token"].clone();

    let stopped = server.stop();
    let ready = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("sent");
    assert_eq!(
        assert_status(ready, StatusCode::SERVICE_UNAVAILABLE).await["status"],
        "not_ready"
    );
    let revoke = app
        .post_twilio("/twilio/v1/tokens/revoke", KEY_1, &json!({"token": token}))
        .await;
    let body = assert_status(revoke, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(body["error"]["code"], "store_unavailable");
    let mint = app
        .post_twilio("/twilio/v1/tokens", KEY_1, &json!({"identity": "alice"}))
        .await;
    assert_eq!(mint.status(), StatusCode::OK, "minting needs no store");

    let _back = stopped.start();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ready = app
            .client
            .get(app.url("/readyz"))
            .send()
            .await
            .expect("sent");
        if ready.status() == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "did not become ready again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let revoke = app
        .post_twilio("/twilio/v1/tokens/revoke", KEY_1, &json!({"token": token}))
        .await;
    assert_eq!(
        assert_status(revoke, StatusCode::OK).await["revoked"],
        true,
        "recovered without a restart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_sharing_redis_see_each_others_revocations() {
    let server = RedisServer::start();
    let url = server.url();
    let a = spawn_on_redis(&url).await;
    let b = spawn_on_redis(&url).await;

    let token = a.mint_ok(KEY_1, &json!({"identity": "alice"})).await["token"].clone();
    assert_eq!(
        b.verify(KEY_1, token.as_str().expect("token")).await["valid"],
        true
    );
    let revoke = a
        .post_twilio("/twilio/v1/tokens/revoke", KEY_1, &json!({"token": token}))
        .await;
    assert_eq!(assert_status(revoke, StatusCode::OK).await["revoked"], true);
    let verdict = b.verify(KEY_1, token.as_str().expect("token")).await;
    assert_eq!(verdict["error"]["code"], "token_revoked", "{verdict}");
}

fn serve_binary(db: &std::path::Path) -> Binary {
    Binary::serve(
        &[(
            "TOKENMINT_STORE__EMBEDDED__PATH",
            db.to_str().expect("utf-8 path"),
        )],
        Stdio::null(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_on_the_embedded_store_survive_sigkill() {
    const N: usize = 40;
    let db = temp_path("durable.redb");
    let client = reqwest::Client::new();
    let auth = basic(KEY_1.0, KEY_1.1);
    let post = |addr: &str, path: &str, body: serde_json::Value| {
        client
            .post(format!("http://{addr}{path}"))
            .header("authorization", &auth)
            .json(&body)
            .send()
    };

    let mut first = serve_binary(&db);
    let mut tokens = Vec::new();
    for i in 0..N {
        let minted = post(
            &first.addr,
            "/twilio/v1/tokens",
            json!({"identity": format!("user{i}")}),
        )
        .await
        .expect("sent");
        let token = assert_status(minted, StatusCode::OK).await["token"].clone();
        let revoked = post(
            &first.addr,
            "/twilio/v1/tokens/revoke",
            json!({"token": token}),
        )
        .await
        .expect("sent");
        assert_eq!(
            assert_status(revoked, StatusCode::OK).await["revoked"],
            true
        );
        tokens.push(token);
    }
    first.child.kill().expect("SIGKILL");
    first.child.wait().expect("reaped");

    let mut second = serve_binary(&db);
    for token in &tokens {
        let verdict = post(
            &second.addr,
            "/twilio/v1/tokens/verify",
            json!({"token": token}),
        )
        .await
        .expect("sent");
        let verdict = assert_status(verdict, StatusCode::OK).await;
        assert_eq!(
            verdict["error"]["code"], "token_revoked",
            "every acknowledged revocation survived: {verdict}"
        );
    }
    second.child.kill().expect("kill");
    second.child.wait().expect("reaped");
}
