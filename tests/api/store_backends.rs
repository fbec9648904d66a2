//! Behaviour specific to one backend: purging, sharing through Redis, outages, durability across SIGKILL.

use std::process::Stdio;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use tokenmint::store::embedded::EmbeddedStore;
use tokenmint::store::{Admission, Backend, RecordKey, Store, StoreMetrics, TokenStore};
use tokenmint::ttl::{Clock, ManualClock};

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
async fn embedded_markers_sit_beside_their_records_and_are_purged_only_when_their_own_time_passes()
{
    // Arrange: a token marked for 30 s on a record that lives 10 s, and a record issued without a marker.
    let h = Harness::embedded().await;
    let start = h.clock.now_millis();
    h.store
        .issue_or_extend(
            &key("marked"),
            "tok",
            Duration::from_secs(10),
            false,
            Some(start + 30_000),
        )
        .await
        .expect("issue");
    h.store
        .issue_or_extend(&key("plain"), "other", Duration::from_secs(10), false, None)
        .await
        .expect("issue");
    assert_eq!(
        h.store.stored_entries().await.expect("count"),
        3,
        "two records and one marker"
    );

    // Act + Assert: once the records expire, the purge takes them and leaves the marker, which still answers.
    h.clock.advance(Duration::from_secs(10));
    assert_eq!(h.store.purge_now().await.expect("purge"), 2);
    assert!(h
        .store
        .was_issued(&key("marked"), "tok")
        .await
        .expect("read"));
    assert!(!h
        .store
        .was_issued(&key("plain"), "other")
        .await
        .expect("read"));
    // A new record under the same key is not confused with the marker beside it.
    let again = h
        .store
        .issue_or_extend(
            &key("marked"),
            "tok-2",
            Duration::from_secs(60),
            false,
            None,
        )
        .await
        .expect("issue");
    assert!(again.created);
    assert_eq!(again.record.token, "tok-2");

    // When the marker's own time passes, the purge takes it, and the live record stays.
    h.clock.advance(Duration::from_secs(20));
    assert!(!h
        .store
        .was_issued(&key("marked"), "tok")
        .await
        .expect("read"));
    assert_eq!(h.store.purge_now().await.expect("purge"), 1);
    assert_eq!(h.store.stored_entries().await.expect("count"), 1);
    let kept = h
        .store
        .issue_or_extend(
            &key("marked"),
            "tok-3",
            Duration::from_secs(60),
            false,
            None,
        )
        .await
        .expect("issue");
    assert!(!kept.created, "the live record survived the purge");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_markers_written_by_an_earlier_version_are_still_honoured_and_purged() {
    // Arrange: a store file as the earlier version left it, with one live and one expired marker in the old
    // `issued` table (`<sha1 hex of the token>:<record key>` -> until, ms).
    use redb::TableDefinition;
    use sha1::Digest;
    const ISSUED: TableDefinition<&str, i64> = TableDefinition::new("issued");
    let path = temp_path("earlier.redb");
    let clock = ManualClock::at_millis(1_800_000_000_000);
    let now = clock.now_millis();
    let old_id = |token: &str| {
        format!(
            "{}:{}",
            hex::encode(sha1::Sha1::digest(token.as_bytes())),
            key("u").encoded()
        )
    };
    {
        let db = redb::Database::create(&path).expect("creates");
        let txn = db.begin_write().expect("txn");
        {
            let mut table = txn.open_table(ISSUED).expect("table");
            table
                .insert(old_id("live").as_str(), now + 60_000)
                .expect("insert");
            table
                .insert(old_id("gone").as_str(), now - 1)
                .expect("insert");
        }
        txn.commit().expect("commit");
    }
    let mut store_settings = settings(Backend::Embedded, "").embedded;
    store_settings.path = path.clone();

    // Act
    let store = EmbeddedStore::open(&store_settings, clock.clone()).expect("opens");

    // Assert: the live marker counts, the expired one does not, and the purge removes only the expired one.
    assert!(store.was_issued(&key("u"), "live").await.expect("read"));
    assert!(!store.was_issued(&key("u"), "gone").await.expect("read"));
    assert!(!store.was_issued(&key("other"), "live").await.expect("read"));
    assert_eq!(store.purge_now().await.expect("purge"), 1);
    assert_eq!(store.stored_entries().await.expect("count"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_purge_of_a_large_store_removes_every_expired_entry_and_only_those() {
    // Arrange: more entries than one scan chunk (4,096) and one delete job (256) hold, expired and live
    // interleaved in key order, in the records table and in the replay-guard table.
    let clock = ManualClock::at_millis(1_800_000_000_000);
    let metrics = StoreMetrics::new("embedded");
    let store = EmbeddedStore::open_with_metrics(
        &settings(Backend::Embedded, "").embedded,
        clock.clone(),
        &metrics,
    )
    .expect("opens");
    let uids: Vec<usize> = (0..9_000).collect();
    for chunk in uids.chunks(1_000) {
        futures::future::join_all(chunk.iter().map(|uid| {
            let ttl = Duration::from_secs(if uid % 3 == 0 { 3600 } else { 10 });
            let store = &store;
            async move {
                store
                    .issue_or_extend(&key(&uid.to_string()), "t", ttl, false, None)
                    .await
                    .expect("issue");
                store
                    .remember_request(&format!("guard-{uid}"), "digest", ttl)
                    .await
                    .expect("guard");
            }
        }))
        .await;
    }
    assert_eq!(store.stored_entries().await.expect("count"), 9_000);

    // Act
    clock.advance(Duration::from_secs(10));
    let removed = store.purge_now().await.expect("purge");

    // Assert: two thirds of the records and of the guards went, every live one stayed and still answers; the
    // metrics show the pass.
    assert_eq!(removed, 12_000, "6,000 records and 6,000 guards expired");
    let mut registry = prometheus_client::registry::Registry::default();
    metrics.register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
    assert!(
        text.contains("tokenmint_store_embedded_purged_entries_total 12000\n"),
        "{text}"
    );
    assert!(
        text.contains("tokenmint_store_embedded_purge_duration_seconds_count 1\n"),
        "{text}"
    );
    assert_eq!(store.stored_entries().await.expect("count"), 3_000);
    for uid in (0..9_000).step_by(3) {
        let issued = store
            .issue_or_extend(
                &key(&uid.to_string()),
                "other",
                Duration::from_secs(3600),
                false,
                None,
            )
            .await
            .expect("issue");
        assert!(!issued.created, "live record {uid} was purged");
        assert_eq!(
            store
                .remember_request(&format!("guard-{uid}"), "digest", Duration::from_secs(3600))
                .await
                .expect("guard"),
            tokenmint::store::Repeat::Same,
            "live guard {uid} was purged"
        );
    }
    assert_eq!(
        store.purge_now().await.expect("purge"),
        0,
        "a second pass finds nothing"
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

/// A redis-server started with extra arguments on a free port; killed when dropped.
struct Extra {
    child: std::process::Child,
    port: u16,
}

impl Drop for Extra {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_redis(port_args: impl Fn(u16) -> Vec<String>) -> Extra {
    // A port can be taken between choosing and binding it (other tests pick ports too): redis-server then exits at
    // once, and is started again on another port.
    for _ in 0..5 {
        // Low enough for a cluster node's bus port (port + 10000) too.
        let port = crate::redis_server::free_cluster_port();
        let mut child = std::process::Command::new("redis-server")
            .args(port_args(port))
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs");
        std::thread::sleep(Duration::from_millis(300));
        if matches!(child.try_wait(), Ok(None)) {
            return Extra { child, port };
        }
    }
    panic!("redis-server did not start on any of 5 free ports");
}

/// A CA and a server certificate for 127.0.0.1 and localhost, made with openssl; returns the folder.
fn certificates() -> std::path::PathBuf {
    let dir = temp_path("tls");
    std::fs::create_dir_all(&dir).expect("tls dir");
    let run = |args: &[&str]| {
        let status = std::process::Command::new("openssl")
            .args(args)
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("openssl runs");
        assert!(status.success(), "openssl {args:?}");
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=tokenmint-test-ca",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .expect("ext");
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    dir
}

async fn open_redis(
    url: &str,
    ca: Option<std::path::PathBuf>,
) -> Result<(), tokenmint::store::StoreError> {
    open_redis_with(url, ca, false).await
}

async fn open_redis_with(
    url: &str,
    ca: Option<std::path::PathBuf>,
    cluster: bool,
) -> Result<(), tokenmint::store::StoreError> {
    let mut store_settings = settings(Backend::Redis, url);
    store_settings.redis.tls_ca_file = ca;
    store_settings.redis.cluster = cluster;
    // The suite's 500 ms deadline is for its fail-fast tests; TLS handshakes (and a cluster client's connections
    // to every node) on a loaded CI machine can take longer, and these tests are about TLS and ACLs, not speed.
    store_settings.redis.timeout_ms = 5_000;
    let store = tokenmint::store::redis::RedisStore::open(
        &store_settings.redis,
        ManualClock::at_millis(1_800_000_000_000),
    )
    .await?;
    store.ping().await?;
    assert!(store.remember_once("tls-1", Duration::from_secs(5)).await?);
    assert!(!store.remember_once("tls-1", Duration::from_secs(5)).await?);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rediss_url_uses_tls_and_trusts_the_configured_ca() {
    let dir = certificates();
    let path = |name: &str| dir.join(name).display().to_string();
    let server = start_redis(|port| {
        vec![
            "--port".into(),
            "0".into(),
            "--tls-port".into(),
            port.to_string(),
            "--tls-cert-file".into(),
            path("server.crt"),
            "--tls-key-file".into(),
            path("server.key"),
            "--tls-ca-cert-file".into(),
            path("ca.crt"),
            "--tls-auth-clients".into(),
            "no".into(),
        ]
    });
    let url = format!("rediss://127.0.0.1:{}/", server.port);
    open_redis(&url, Some(dir.join("ca.crt")))
        .await
        .expect("TLS with the configured CA");
    assert!(
        open_redis(&url, None).await.is_err(),
        "a certificate the system does not trust is refused"
    );
    assert!(
        open_redis(&format!("redis://127.0.0.1:{}/", server.port), None)
            .await
            .is_err(),
        "plain TCP to a TLS port does not work"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acl_user_in_the_url_authenticates() {
    let server = start_redis(|port| {
        [
            "--port",
            &port.to_string(),
            "--user",
            "tm",
            "on",
            ">s3cret-pass",
            "~*",
            "&*",
            "+@all",
            "--user",
            "default",
            "off",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
    });
    open_redis(
        &format!("redis://tm:s3cret-pass@127.0.0.1:{}/", server.port),
        None,
    )
    .await
    .expect("the ACL user works");
    assert!(
        open_redis(
            &format!("redis://tm:wrong@127.0.0.1:{}/", server.port),
            None
        )
        .await
        .is_err(),
        "a wrong password is refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_cluster_over_tls_is_served_with_rediss_seed_urls() {
    let dir = certificates();
    let path = |name: &str| dir.join(name).display().to_string();
    let nodes: Vec<Extra> = (0..3)
        .map(|i| {
            let node_dir = dir.join(format!("node{i}"));
            std::fs::create_dir_all(&node_dir).expect("node dir");
            start_redis(|port| {
                vec![
                    "--port".into(),
                    "0".into(),
                    "--tls-port".into(),
                    port.to_string(),
                    "--tls-cluster".into(),
                    "yes".into(),
                    "--tls-cert-file".into(),
                    path("server.crt"),
                    "--tls-key-file".into(),
                    path("server.key"),
                    "--tls-ca-cert-file".into(),
                    path("ca.crt"),
                    "--tls-auth-clients".into(),
                    "no".into(),
                    "--cluster-enabled".into(),
                    "yes".into(),
                    "--dir".into(),
                    node_dir.display().to_string(),
                ]
            })
        })
        .collect();
    let addresses: Vec<String> = nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port))
        .collect();
    let created = std::process::Command::new("redis-cli")
        .args(["--tls", "--cacert", &path("ca.crt"), "--cluster", "create"])
        .args(&addresses)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("redis-cli runs");
    assert!(created.success(), "the TLS cluster was created");
    // Every node, not only the first, must see every slot served before a client asks them.
    let started = Instant::now();
    for node in &nodes {
        loop {
            let info = std::process::Command::new("redis-cli")
                .args([
                    "--tls",
                    "--cacert",
                    &path("ca.crt"),
                    "-p",
                    &node.port.to_string(),
                ])
                .args(["CLUSTER", "INFO"])
                .output()
                .expect("redis-cli runs");
            if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "cluster did not become ok on node {}",
                node.port
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let url = nodes
        .iter()
        .map(|n| format!("rediss://127.0.0.1:{}/", n.port))
        .collect::<Vec<_>>()
        .join(",");
    open_redis_with(&url, Some(dir.join("ca.crt")), true)
        .await
        .expect("TLS to every node of the cluster");
}
