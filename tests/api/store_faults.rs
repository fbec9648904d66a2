//! The stores under faults: a full disk, a corrupt record, an empty or truncated file; a Redis that comes back
//! empty under running instances.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use tokenmint::store::{Backend, RecordKey, Store, StoreError, TokenStore};
use tokenmint::ttl::ManualClock;

use crate::helpers::{
    assert_error, assert_status, settings_with, spawn_app_with, spawn_on_redis_cluster, temp_path,
    TestApp, KEY_1,
};
use crate::netease::{call, get_token, urlencode, GET_TOKEN, VERIFY};
use crate::redis_server::RedisServer;
use crate::store::settings;

/// A small tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. "4m"); `None` where this machine does not let the test mount one.
    fn mount(size: &str) -> Option<Self> {
        let dir = temp_path("tmpfs");
        std::fs::create_dir_all(&dir).expect("mount point");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .output()
            .is_ok_and(|out| out.status.success());
        mounted.then_some(Self { dir })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// Writes a ballast file until the file system is full; returns its path.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("ballast");
    let mut file = std::fs::File::create(&path).expect("ballast");
    let chunk = vec![0u8; 4096];
    while file.write_all(&chunk).is_ok() {}
    let _ = file.sync_all();
    path
}

async fn readyz(app: &TestApp) -> StatusCode {
    app.client
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("sent")
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_makes_the_store_unready_and_it_recovers_by_itself_when_space_returns() {
    let Some(tmpfs) = Tmpfs::mount("6m") else {
        eprintln!("SKIPPED a_full_disk_…: this machine does not permit mounting a tmpfs");
        return;
    };
    let path = tmpfs.dir.join("store.redb");
    let app = spawn_app_with(settings_with(
        "",
        &[(
            "TOKENMINT_STORE__EMBEDDED__PATH",
            path.to_str().expect("utf-8 path"),
        )],
    ))
    .await;
    let before = call(&app, GET_TOKEN, "uid=1").await;
    assert_eq!(before["code"], 200, "{before}");
    assert_eq!(readyz(&app).await, StatusCode::OK);

    let ballast = fill(&tmpfs.dir);
    let mut failed = None;
    for uid in 2..20_000 {
        let answer = call(&app, GET_TOKEN, &format!("uid={uid}")).await;
        if answer["code"] != 200 {
            failed = Some(answer);
            break;
        }
    }
    let failed = failed.expect("a write fails once the disk is full");
    assert_eq!(
        failed["code"], 503,
        "a full disk is a temporary failure: {failed}"
    );
    assert_eq!(readyz(&app).await, StatusCode::SERVICE_UNAVAILABLE);
    let still = call(&app, GET_TOKEN, "uid=1").await;
    assert_ne!(
        still["code"], 200,
        "writes keep failing while the disk is full"
    );

    std::fs::remove_file(ballast).expect("space returned");
    let mut ready = false;
    for _ in 0..200 {
        if readyz(&app).await == StatusCode::OK {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        ready,
        "readiness returns once writes work again, without a restart"
    );
    let after = call(&app, GET_TOKEN, "uid=1").await;
    assert_eq!(after["code"], 200, "{after}");
    assert_eq!(
        after["token"], before["token"],
        "the token acknowledged before the disk filled survived"
    );
    let verdict = call(
        &app,
        VERIFY,
        &format!(
            "uid=1&token={}",
            urlencode(after["token"].as_str().expect("token"))
        ),
    )
    .await;
    assert_eq!(verdict["code"], 200, "{verdict}");
}

fn record_key(uid: usize) -> RecordKey {
    RecordKey {
        app: "app".to_owned(),
        subject: uid.to_string(),
        room: String::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_record_fails_only_its_own_operation() {
    let mut store_settings = settings(Backend::Embedded, "");
    let corrupt = record_key(0);
    {
        const RECORDS: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("records");
        let db = redb::Database::create(&store_settings.embedded.path).expect("db");
        let txn = db.begin_write().expect("txn");
        txn.open_table(RECORDS)
            .expect("table")
            .insert(corrupt.encoded().as_str(), b"{not json".as_slice())
            .expect("insert");
        txn.commit().expect("commit");
    }
    store_settings.embedded.max_batch = 4096;
    let store = Store::open(&store_settings, ManualClock::at_millis(1_800_000_000_000))
        .await
        .expect("opens");

    let mut tasks = Vec::new();
    for uid in 0..400 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let key = record_key(uid % 200);
            if uid % 2 == 0 {
                store
                    .issue_or_extend(
                        &key,
                        &format!("t{uid}"),
                        Duration::from_secs(60),
                        false,
                        None,
                    )
                    .await
                    .map(|_| ())
            } else {
                store.use_token(&key, "t").await.map(|_| ())
            }
        }));
    }
    let mut corrupt_errors = 0;
    for (uid, task) in tasks.into_iter().enumerate() {
        match task.await.expect("task") {
            Ok(()) => assert_ne!(uid % 200, 0, "the corrupt record cannot be used"),
            Err(StoreError::Corrupt(_)) if uid % 200 == 0 => corrupt_errors += 1,
            Err(e) => panic!("uid {uid}: an unrelated operation failed: {e}"),
        }
    }
    assert_eq!(
        corrupt_errors, 2,
        "both operations on the corrupt record fail, as 500s"
    );
}

#[tokio::test]
async fn an_empty_store_file_is_refused_at_start_up() {
    let mut store_settings = settings(Backend::Embedded, "");
    std::fs::File::create(&store_settings.embedded.path).expect("empty file");
    let err = Store::open(&store_settings, ManualClock::at_millis(1_800_000_000_000))
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("is empty (0 bytes)"), "{err}");

    store_settings.embedded.path = temp_path("new.redb");
    Store::open(&store_settings, ManualClock::at_millis(1_800_000_000_000))
        .await
        .expect("a missing file is a new store");
}

#[tokio::test]
async fn a_truncated_store_file_is_refused_at_start_up() {
    let store_settings = settings(Backend::Embedded, "");
    {
        let store = Store::open(&store_settings, ManualClock::at_millis(1_800_000_000_000))
            .await
            .expect("opens");
        store
            .issue_or_extend(&record_key(1), "t", Duration::from_secs(60), false, None)
            .await
            .expect("written");
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let path = &store_settings.embedded.path;
    let whole = std::fs::read(path).expect("file");
    for len in [1, 100, 511, 4096, whole.len() / 3] {
        std::fs::write(path, &whole[..len]).expect("truncated copy");
        let outcome = Store::open(&store_settings, ManualClock::at_millis(1_800_000_000_000)).await;
        assert!(
            outcome.is_err(),
            "a file truncated to {len} bytes does not open as an empty store"
        );
    }
}

fn flush(url: &str) {
    let client = redis::Client::open(url).expect("url");
    let mut connection = client.get_connection().expect("connects");
    redis::cmd("FLUSHALL")
        .query::<()>(&mut connection)
        .expect("flushed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_emptied_under_running_instances_is_refused_until_an_operator_acknowledges() {
    let server = RedisServer::start();
    let url = server.url();
    let env = [
        ("TOKENMINT_STORE__BACKEND", "redis"),
        ("TOKENMINT_STORE__REDIS__URL", url.as_str()),
        ("TOKENMINT_STORE__REDIS__EPOCH_CHECK_MS", "20"),
    ];
    let settings = settings_with("", &env);
    let a = spawn_app_with(settings.clone()).await;
    let b = spawn_app_with(settings_with("", &env)).await;

    let single = get_token(&a, "uid=1&repeatUse=false").await;
    let verify_single = format!("uid=1&token={}", urlencode(&single));
    assert_eq!(call(&a, VERIFY, &verify_single).await["code"], 200);
    assert_eq!(call(&a, VERIFY, &verify_single).await["code"], 417);
    let minted = a.mint_ok(KEY_1, &json!({"identity": "alice"})).await;
    let revoked = minted["token"].as_str().expect("token");
    let response = a
        .post_twilio(
            "/twilio/v1/tokens/revoke",
            KEY_1,
            &json!({ "token": revoked }),
        )
        .await;
    assert_status(response, StatusCode::OK).await;

    flush(&url);

    assert_eq!(readyz(&a).await, StatusCode::SERVICE_UNAVAILABLE);
    let again = call(&a, VERIFY, &verify_single).await;
    assert_eq!(
        again["code"], 503,
        "a used token is not admitted again: {again}"
    );
    let response = a
        .post_twilio(
            "/twilio/v1/tokens/verify",
            KEY_1,
            &json!({ "token": revoked }),
        )
        .await;
    let (code, _) = assert_error(response, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(
        code, "store_unavailable",
        "a revoked token is not reported valid"
    );

    // b never asks /readyz: its own watcher notices.
    let mut refused = None;
    for _ in 0..100 {
        let answer = call(&b, GET_TOKEN, "uid=2").await;
        if answer["code"] == 503 {
            refused = Some(answer);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let refused = refused.expect("the other instance refuses too");
    assert!(
        refused["desc"]
            .as_str()
            .expect("desc")
            .contains("unavailable"),
        "{refused}"
    );
    assert_eq!(
        call(&b, VERIFY, &verify_single).await["code"],
        503,
        "nor through the other instance"
    );

    Store::acknowledge_reset(&settings.store)
        .await
        .expect("acknowledged");
    assert_eq!(readyz(&a).await, StatusCode::OK);
    let mut serving = false;
    for _ in 0..100 {
        if call(&b, GET_TOKEN, "uid=2").await["code"] == 200 {
            serving = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        serving,
        "both instances serve again after the acknowledgement"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_on_reset_continue_an_emptied_redis_is_logged_and_served() {
    let server = RedisServer::start();
    let url = server.url();
    let app = spawn_app_with(settings_with(
        "",
        &[
            ("TOKENMINT_STORE__BACKEND", "redis"),
            ("TOKENMINT_STORE__REDIS__URL", url.as_str()),
            ("TOKENMINT_STORE__REDIS__ON_RESET", "continue"),
        ],
    ))
    .await;
    assert_eq!(call(&app, GET_TOKEN, "uid=1").await["code"], 200);
    flush(&url);
    assert_eq!(readyz(&app).await, StatusCode::OK);
    assert_eq!(call(&app, GET_TOKEN, "uid=1").await["code"], 200);
}

#[tokio::test]
async fn acknowledging_a_reset_of_the_embedded_store_is_refused() {
    let err = Store::acknowledge_reset(&settings(Backend::Embedded, ""))
        .await
        .expect_err("nothing to acknowledge");
    assert!(err.to_string().contains("embedded"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_cluster_master_fails_over_and_tokenmint_recovers_without_a_restart() {
    // Two replicas per master: after the failover the promoted master still has one to acknowledge writes.
    let mut cluster = crate::redis_server::RedisCluster::start_with_replicas(2);
    let url = cluster.url();
    let app = spawn_on_redis_cluster(
        &url,
        &[
            // Every write waits for its replica: what was acknowledged survives the failover.
            ("TOKENMINT_STORE__REDIS__WAIT_REPLICAS", "1"),
        ],
    )
    .await;
    // A cluster just started may still be syncing its replicas: a write they cannot acknowledge yet is a 503
    // (retry later), so each first issue is retried for a while.
    let mut tokens = Vec::new();
    let started = std::time::Instant::now();
    for uid in 0..30 {
        let token = loop {
            let answer = call(&app, GET_TOKEN, &format!("uid={uid}&expireAt=3600")).await;
            match answer["code"].as_i64() {
                Some(200) => break answer["token"].as_str().expect("token").to_owned(),
                Some(503) if started.elapsed() < Duration::from_secs(30) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                _ => panic!("before the failover: {answer}"),
            }
        };
        tokens.push(token);
    }
    let victim = cluster.master_ports()[0];
    cluster.kill(victim);

    // Readiness, asked every 20 ms while the getToken calls below wait on the dead master.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let probe = {
        let (stop, client, url) = (stop.clone(), app.client.clone(), app.url("/readyz"));
        tokio::spawn(async move {
            let mut not_ready = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let status = client.get(&url).send().await.map(|r| r.status());
                if status.is_ok_and(|s| s == StatusCode::SERVICE_UNAVAILABLE) {
                    not_ready += 1;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            not_ready
        })
    };
    let mut unavailable = 0;
    let started = std::time::Instant::now();
    let mut recovered = false;
    while started.elapsed() < Duration::from_secs(40) {
        let mut all_served = true;
        for (uid, token) in tokens.iter().enumerate() {
            let answer = call(&app, GET_TOKEN, &format!("uid={uid}&expireAt=3600")).await;
            match answer["code"].as_i64() {
                Some(200) => assert_eq!(answer["token"], *token, "uid {uid} kept its token"),
                Some(503) => {
                    unavailable += 1;
                    all_served = false;
                }
                _ => panic!("only 200 or 503 while a master is down: {answer}"),
            }
        }
        if all_served && unavailable > 0 && readyz(&app).await == StatusCode::OK {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let not_ready = probe.await.expect("probe");
    assert!(
        unavailable > 0,
        "the killed master's slots answered 503 for a while"
    );
    assert!(
        recovered,
        "every uid served again after the failover, without a restart"
    );
    assert!(
        not_ready > 0,
        "/readyz said not ready while slots were uncovered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_migrating_under_load_loses_nothing_and_errs_only_with_503() {
    let cluster = crate::redis_server::RedisCluster::start();
    let url = cluster.url();
    let app = spawn_on_redis_cluster(&url, &[]).await;
    let token = get_token(&app, "uid=4242&channelName=moving&expireAt=3600").await;
    // The record's slot: its key's hash tag is `rec:` + the record key (see the README's key layout).
    let record_key = tokenmint::store::RecordKey {
        app: crate::netease::APP_KEY.to_owned(),
        subject: "4242".to_owned(),
        room: "moving".to_owned(),
    };
    let key = format!("tokenmint:{{rec:{}}}", record_key.encoded());
    let slot: u16 = cluster
        .cli(cluster.master_ports()[0], &["CLUSTER", "KEYSLOT", &key])
        .parse()
        .expect("a slot");
    let (before, _) = cluster.owner_of(slot);

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        let (client, url) = (app.client.clone(), app.url(GET_TOKEN));
        let token = token.clone();
        let app_clock = app.clock.clone();
        tokio::spawn(async move {
            let (mut served, mut unavailable) = (0, 0);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let answer = crate::netease::post_raw_with(
                    &client,
                    &url,
                    &app_clock,
                    b"uid=4242&channelName=moving&expireAt=3600".to_vec(),
                )
                .await;
                match answer["code"].as_i64() {
                    Some(200) => {
                        assert_eq!(answer["token"], token.as_str(), "the same token, always");
                        served += 1;
                    }
                    Some(503) => unavailable += 1,
                    _ => panic!("only 200 or 503 during the move: {answer}"),
                }
            }
            (served, unavailable)
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    tokio::task::block_in_place(|| cluster.migrate_slot(slot, Duration::from_millis(100)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (served, _unavailable) = load.await.expect("load");
    assert!(served > 0, "requests were served during the move");
    let (after, _) = cluster.owner_of(slot);
    assert_ne!(before, after, "the slot moved");
    assert_eq!(
        get_token(&app, "uid=4242&channelName=moving&expireAt=3600").await,
        token,
        "the record moved with its slot"
    );
    // Right after the move a call may still meet the old route and answer 503 (retry later); never another code.
    let started = std::time::Instant::now();
    let verdict = loop {
        let verdict = call(
            &app,
            VERIFY,
            &format!("uid=4242&channelName=moving&token={}", urlencode(&token)),
        )
        .await;
        if verdict["code"] != 503 || started.elapsed() > Duration::from_secs(10) {
            break verdict;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(verdict["code"], 200, "{verdict}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_no_replica_acknowledges_is_answered_503() {
    let cluster = crate::redis_server::RedisCluster::start();
    let url = cluster.url();
    let app = spawn_on_redis_cluster(
        &url,
        &[
            ("TOKENMINT_STORE__REDIS__WAIT_REPLICAS", "1"),
            ("TOKENMINT_STORE__REDIS__TIMEOUT_MS", "200"),
        ],
    )
    .await;
    let answer = call(&app, GET_TOKEN, "uid=1").await;
    assert_eq!(
        answer["code"], 503,
        "a cluster without replicas cannot make a write durable: {answer}"
    );
}
