//! Store benchmark: operations per second for both backends, and the embedded store's group commit against one
//! fsync per write, in the same run.
//!
//!     cargo bench --bench store [-- OPS [CONCURRENCY]]     (defaults: 4000 ops, 64 concurrent tasks)
//!
//! Starts its own redis-server on a free loopback port. Compare the ratios within one run.

#[path = "../api/redis_server.rs"]
#[allow(dead_code)]
mod redis_server;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokenmint::store::{
    Backend, EmbeddedSettings, RecordKey, RedisSettings, Store, StoreSettings, TokenStore,
};
use tokenmint::ttl::SystemClock;

fn settings(
    backend: Backend,
    group_commit: bool,
    path: std::path::PathBuf,
    url: &str,
) -> StoreSettings {
    StoreSettings {
        backend,
        embedded: EmbeddedSettings {
            path,
            group_commit,
            max_batch: 256,
            purge_interval_secs: 3600,
            cache_mb: 16,
        },
        redis: RedisSettings {
            url: url.to_owned().into(),
            key_prefix: "tm-bench:".to_owned(),
            timeout_ms: 2000,
            cluster: false,
            tls_ca_file: None,
            wait_replicas: 0,
            on_reset: tokenmint::store::ResetPolicy::Refuse,
            epoch_check_ms: 1000,
        },
    }
}

fn key(i: usize) -> RecordKey {
    RecordKey {
        app: "bench".to_owned(),
        subject: i.to_string(),
        room: "room".to_owned(),
    }
}

/// Runs `ops` calls of `op(i)` over `concurrency` tasks; returns operations per second.
async fn measure<F, Fut>(ops: usize, concurrency: usize, op: F) -> f64
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|t| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut i = t;
                while i < ops {
                    op(i).await;
                    i += concurrency;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    ops as f64 / started.elapsed().as_secs_f64()
}

async fn bench(name: &str, store: Store, ops: usize, concurrency: usize) {
    let s = store.clone();
    let issue = measure(ops, concurrency, move |i| {
        let s = s.clone();
        async move {
            s.issue_or_extend(
                &key(i),
                &format!("token-{i}"),
                Duration::from_secs(600),
                true,
                None,
            )
            .await
            .expect("issue");
        }
    })
    .await;
    let s = store.clone();
    // A pure read: the check every verification of a Twilio or MeCloud token makes.
    let read = measure(ops, concurrency, move |i| {
        let s = s.clone();
        async move {
            let revoked = s.is_revoked(&format!("jti-{i}")).await.expect("read");
            assert!(!revoked);
        }
    })
    .await;
    let s = store.clone();
    let consume = measure(ops, concurrency, move |i| {
        let s = s.clone();
        async move {
            s.use_token(&key(i), &format!("token-{i}"))
                .await
                .expect("use");
        }
    })
    .await;
    println!("{name:<34} {issue:>12.0} {read:>12.0} {consume:>12.0}");
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let ops: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(4000);
    let concurrency: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(64);
    let dir = std::env::temp_dir().join(format!("tokenmint-store-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let clock = Arc::new(SystemClock);
    let redis = redis_server::RedisServer::start();

    println!(
        "store benchmark: {ops} operations per column, {concurrency} concurrent tasks (ops/s)"
    );
    println!(
        "{:<34} {:>12} {:>12} {:>12}",
        "backend", "issue", "is_revoked", "consume"
    );
    let grouped = Store::open(
        &settings(Backend::Embedded, true, dir.join("grouped.redb"), ""),
        clock.clone(),
    )
    .await
    .expect("embedded");
    bench("embedded, group commit", grouped, ops, concurrency).await;
    let single = Store::open(
        &settings(Backend::Embedded, false, dir.join("single.redb"), ""),
        clock.clone(),
    )
    .await
    .expect("embedded");
    bench("embedded, one fsync per write", single, ops, concurrency).await;
    let shared = Store::open(
        &settings(Backend::Redis, true, dir.join("unused"), &redis.url()),
        clock,
    )
    .await
    .expect("redis");
    bench("redis", shared, ops, concurrency).await;
    let _ = std::fs::remove_dir_all(&dir);
}
