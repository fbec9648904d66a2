//! Fills an embedded store file with NetEase tokens as the getToken route leaves them, for benchmarks at scale:
//! each token is its record and its issued marker, written through the store's own API; expired tokens also
//! leave their replay guard, as requests do (written with a clock set two days back, so they have expired).
//!
//!     cargo bench --bench preload -- PATH LIVE [EXPIRED]
//!
//! Live tokens last a day (uids 10,000,000,000 up, so the load benchmark's uids never meet them); expired ones
//! lasted an hour two days ago. The app key and channel are the development profile's sample app and the load
//! benchmark's channel, so the tables have the shape the service gives them. Prints the entries written.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokenmint::providers::netease::token;
use tokenmint::store::embedded::EmbeddedStore;
use tokenmint::store::keys::StateKey;
use tokenmint::store::{EmbeddedSettings, Guard, RecordKey, TokenStore};
use tokenmint::ttl::{Clock, ManualClock};

const APP_KEY: &str = "sampleappkey00000000000000000001";
const SECRET: &str = "sample-netease-secret-not-for-production";
const CHANNEL: &str = "bench";
const FIRST_LIVE_UID: u64 = 10_000_000_000;
const FIRST_EXPIRED_UID: u64 = 20_000_000_000;
/// Writes in flight (and so at most this many per group commit).
const IN_FLIGHT: usize = 2048;

/// Issues tokens for `count` uids from `first_uid`, `ttl` each, at `clock`'s time; with `guards`, each also
/// records its replay guard in the same step, as getToken does.
async fn issue(
    store: &EmbeddedStore,
    clock: Arc<ManualClock>,
    first_uid: u64,
    count: u64,
    ttl: Duration,
    guards: bool,
) {
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let tasks: Vec<_> = (0..IN_FLIGHT)
        .map(|_| {
            let (store, clock, next) = (store.clone(), clock.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= count {
                        break;
                    }
                    let uid = first_uid + i;
                    let now = clock.now_millis();
                    let ttl_secs = u32::try_from(ttl.as_secs()).expect("ttl fits");
                    let signature = token::signature(APP_KEY, uid, now, ttl_secs, CHANNEL, SECRET);
                    let candidate = token::encode(&signature, now, ttl_secs);
                    let until = now + i64::from(ttl_secs) * 1000;
                    let key = RecordKey {
                        app: APP_KEY.to_owned(),
                        subject: uid.to_string(),
                        room: CHANNEL.to_owned(),
                    };
                    if guards {
                        let nonce = format!("{:024x}", u128::from(uid) * 2_654_435_761);
                        let guard = Guard {
                            key: StateKey::netease_replay(APP_KEY, now / 1000, &nonce)
                                .as_str()
                                .to_owned(),
                            digest: Some(format!("{:040x}", u128::from(uid))),
                            ttl: Duration::from_secs(300),
                        };
                        let issued = store
                            .guarded_issue(&guard, &key, &candidate, ttl, false, Some(until))
                            .await
                            .expect("guarded issue");
                        assert!(issued.is_some_and(|i| i.created), "uid {uid} was not new");
                    } else {
                        let issued = store
                            .issue_or_extend(&key, &candidate, ttl, false, Some(until))
                            .await
                            .expect("issue");
                        assert!(issued.created, "uid {uid} was not new");
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let (Some(path), Some(live)) = (args.first(), args.get(1).and_then(|a| a.parse().ok())) else {
        eprintln!("usage: cargo bench --bench preload -- PATH LIVE [EXPIRED]");
        std::process::exit(2);
    };
    let expired: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(0);
    let settings = EmbeddedSettings {
        path: path.into(),
        group_commit: true,
        max_batch: IN_FLIGHT,
        // No purge while loading: the expired tokens must still be there for the benchmark's purge.
        purge_interval_secs: 365 * 86_400,
        cache_mb: 64,
    };
    let clock = ManualClock::starting_now();
    let store = EmbeddedStore::open(&settings, clock.clone()).expect("open store");

    let started = Instant::now();
    let now = clock.now_millis();
    clock.set_millis(now - 2 * 86_400_000);
    issue(
        &store,
        clock.clone(),
        FIRST_EXPIRED_UID,
        expired,
        Duration::from_secs(3600),
        true,
    )
    .await;
    clock.set_millis(now);
    issue(
        &store,
        clock,
        FIRST_LIVE_UID,
        live,
        Duration::from_secs(86_400),
        false,
    )
    .await;
    let entries = store.stored_entries().await.expect("count entries");
    println!(
        "preloaded {path}: {live} live tokens, {expired} expired tokens, {entries} entries, in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
