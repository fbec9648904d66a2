//! The embedded store under faults: a full disk, a corrupt record, an empty or truncated file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;
use tokenmint::store::{Backend, RecordKey, Store, StoreError};
use tokenmint::ttl::ManualClock;

use crate::helpers::{settings_with, spawn_app_with, temp_path, TestApp};
use crate::netease::{call, urlencode, GET_TOKEN, VERIFY};
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
                    .issue_or_extend(&key, &format!("t{uid}"), Duration::from_secs(60), false)
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
            .issue_or_extend(&record_key(1), "t", Duration::from_secs(60), false)
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
