//! The store conformance suite: each behaviour written once, run against both backends (a fresh redb file; a
//! real redis-server started for the test). Time moves on a manual clock; nothing sleeps.

use std::sync::Arc;
use std::time::Duration;

use tokenmint::store::embedded::EmbeddedStore;
use tokenmint::store::redis::RedisStore;
use tokenmint::store::{
    Admission, Backend, EmbeddedSettings, Guard, RateLimit, RecordKey, RecordState, RedisSettings,
    Repeat, StoreSettings, TokenStore,
};
use tokenmint::ttl::{Clock, ManualClock};

use crate::helpers::temp_path;
use crate::redis_server::{RedisCluster, RedisServer};

/// A backend under test, on a manual clock.
pub struct Harness<S> {
    pub store: S,
    pub clock: Arc<ManualClock>,
    /// Whatever keeps the harness's Redis servers running until it is dropped.
    _redis: Option<Box<dyn std::any::Any + Send + Sync>>,
}

pub fn settings(backend: Backend, redis_url: &str) -> StoreSettings {
    StoreSettings {
        backend,
        embedded: EmbeddedSettings {
            path: temp_path("conformance.redb"),
            group_commit: true,
            max_batch: 256,
            purge_interval_secs: 3600,
            cache_mb: 16,
        },
        redis: RedisSettings {
            url: redis_url.to_owned().into(),
            key_prefix: "tm-test:".to_owned(),
            timeout_ms: 500,
            cluster: false,
            tls_ca_file: None,
            wait_replicas: 0,
            on_reset: tokenmint::store::ResetPolicy::Refuse,
            epoch_check_ms: 1000,
        },
    }
}

impl Harness<EmbeddedStore> {
    pub async fn embedded() -> Self {
        let clock = ManualClock::at_millis(1_800_000_000_000);
        let store = EmbeddedStore::open(&settings(Backend::Embedded, "").embedded, clock.clone())
            .expect("opens");
        Self {
            store,
            clock,
            _redis: None,
        }
    }
}

impl Harness<RedisStore> {
    /// The store on a real 3-master Redis Cluster.
    pub async fn cluster() -> Self {
        let cluster = RedisCluster::start();
        let clock = ManualClock::at_millis(1_800_000_000_000);
        let mut store_settings = settings(Backend::Redis, &cluster.url());
        store_settings.redis.cluster = true;
        let store = RedisStore::open(&store_settings.redis, clock.clone())
            .await
            .expect("opens");
        Self {
            store,
            clock,
            _redis: Some(Box::new(cluster)),
        }
    }

    pub async fn redis() -> Self {
        let server = RedisServer::start();
        let clock = ManualClock::at_millis(1_800_000_000_000);
        let store = RedisStore::open(
            &settings(Backend::Redis, &server.url()).redis,
            clock.clone(),
        )
        .await
        .expect("opens");
        Self {
            store,
            clock,
            _redis: Some(Box::new(server)),
        }
    }
}

fn key(uid: &str, room: &str) -> RecordKey {
    RecordKey {
        app: "app1".to_owned(),
        subject: uid.to_owned(),
        room: room.to_owned(),
    }
}

const TEN_S: Duration = Duration::from_secs(10);

async fn issue_or_extend_returns_the_same_token_and_extends_its_expiry(
    h: &Harness<impl TokenStore + Clone + 'static>,
) {
    let first = h
        .store
        .issue_or_extend(&key("1", "r"), "tok-a", TEN_S, false, None)
        .await
        .expect("issue");
    assert!(first.created);
    assert_eq!(first.record.token, "tok-a");

    h.clock.advance(Duration::from_secs(5));
    let again = h
        .store
        .issue_or_extend(&key("1", "r"), "tok-b", Duration::from_secs(60), true, None)
        .await
        .expect("extend");
    assert!(!again.created, "a live record is reused");
    assert_eq!(again.record.token, "tok-a");
    assert_eq!(
        again.record.expires_at_ms,
        h.clock.now_millis() + 60_000,
        "expiry moved to now + new ttl"
    );
    assert!(again.record.single_use, "options updated");
    assert_eq!(again.record.issued_at_ms, first.record.issued_at_ms);

    let other_room = h
        .store
        .issue_or_extend(&key("1", "r2"), "tok-c", TEN_S, false, None)
        .await
        .expect("issue");
    assert!(other_room.created, "another room is another key");
    let no_room = h
        .store
        .issue_or_extend(&key("1", ""), "tok-d", TEN_S, false, None)
        .await
        .expect("issue");
    assert_eq!(no_room.record.token, "tok-d");
}

async fn records_expire_exactly_at_their_boundary(h: &Harness<impl TokenStore + Clone + 'static>) {
    h.store
        .issue_or_extend(&key("2", "r"), "tok-a", TEN_S, false, None)
        .await
        .expect("issue");
    h.clock.advance(TEN_S - Duration::from_millis(1));
    assert!(
        matches!(
            h.store
                .use_token(&key("2", "r"), "tok-a")
                .await
                .expect("use"),
            Admission::Admitted(_)
        ),
        "1 ms before expiry"
    );

    h.clock.advance(Duration::from_millis(1));
    assert_eq!(
        h.store
            .use_token(&key("2", "r"), "tok-a")
            .await
            .expect("use"),
        Admission::Unknown,
        "at expiry"
    );
    let next = h
        .store
        .issue_or_extend(&key("2", "r"), "tok-b", TEN_S, false, None)
        .await
        .expect("issue");
    assert!(next.created);
    assert_eq!(
        next.record.token, "tok-b",
        "an expired record is replaced, not extended"
    );
}

async fn use_requires_the_matching_token(h: &Harness<impl TokenStore + Clone + 'static>) {
    h.store
        .issue_or_extend(&key("3", ""), "tok-a", TEN_S, false, None)
        .await
        .expect("issue");
    let Admission::Admitted(found) = h
        .store
        .use_token(&key("3", ""), "tok-a")
        .await
        .expect("use")
    else {
        panic!("the matching token is admitted");
    };
    assert_eq!(found.state, RecordState::Live);
    assert_eq!(
        h.store
            .use_token(&key("3", ""), "tok-x")
            .await
            .expect("use"),
        Admission::Unknown
    );
    assert_eq!(
        h.store
            .use_token(&key("4", ""), "tok-a")
            .await
            .expect("use"),
        Admission::Unknown
    );
}

async fn a_single_use_token_is_admitted_once(h: &Harness<impl TokenStore + Clone + 'static>) {
    h.store
        .issue_or_extend(&key("5", "r"), "once", TEN_S, true, None)
        .await
        .expect("issue");
    assert!(matches!(
        h.store
            .use_token(&key("5", "r"), "once")
            .await
            .expect("use"),
        Admission::Admitted(_)
    ));
    assert_eq!(
        h.store
            .use_token(&key("5", "r"), "once")
            .await
            .expect("use"),
        Admission::AlreadyUsed
    );
    let fresh = h
        .store
        .issue_or_extend(&key("5", "r"), "twice", TEN_S, true, None)
        .await
        .expect("issue");
    assert!(
        fresh.created,
        "a consumed token is not extended: the next getToken gets a new one"
    );

    h.store
        .issue_or_extend(&key("6", "r"), "many", TEN_S, false, None)
        .await
        .expect("issue");
    for _ in 0..3 {
        assert!(matches!(
            h.store
                .use_token(&key("6", "r"), "many")
                .await
                .expect("use"),
            Admission::Admitted(_)
        ));
    }
}

async fn a_revoked_record_is_never_served_again(h: &Harness<impl TokenStore + Clone + 'static>) {
    h.store
        .issue_or_extend(&key("7", "r"), "tok-a", TEN_S, false, None)
        .await
        .expect("issue");
    let revoked = h
        .store
        .revoke(&key("7", "r"))
        .await
        .expect("revoke")
        .expect("there was a live record");
    assert_eq!(revoked.token, "tok-a");
    assert_eq!(revoked.state, RecordState::Revoked);
    assert!(
        h.store
            .revoke(&key("7", "r"))
            .await
            .expect("revoke")
            .is_none(),
        "already revoked"
    );
    assert_eq!(
        h.store
            .use_token(&key("7", "r"), "tok-a")
            .await
            .expect("use"),
        Admission::Revoked
    );
    let next = h
        .store
        .issue_or_extend(&key("7", "r"), "tok-b", TEN_S, false, None)
        .await
        .expect("issue");
    assert!(next.created);
    assert_eq!(
        next.record.token, "tok-b",
        "issue-or-extend never hands back a revoked token"
    );
    assert!(
        h.store
            .revoke(&key("8", "r"))
            .await
            .expect("revoke")
            .is_none(),
        "nothing to revoke"
    );
}

async fn remember_once_reports_repeats_until_the_ttl_ends(
    h: &Harness<impl TokenStore + Clone + 'static>,
) {
    assert!(h.store.remember_once("nonce-1", TEN_S).await.expect("once"));
    assert!(!h.store.remember_once("nonce-1", TEN_S).await.expect("once"));
    assert!(h.store.remember_once("nonce-2", TEN_S).await.expect("once"));
    h.clock.advance(TEN_S - Duration::from_millis(1));
    assert!(
        !h.store.remember_once("nonce-1", TEN_S).await.expect("once"),
        "1 ms before the end"
    );
    h.clock.advance(Duration::from_millis(1));
    assert!(
        h.store.remember_once("nonce-1", TEN_S).await.expect("once"),
        "forgotten at the end"
    );
}

async fn rate_windows_count_and_lock_out(h: &Harness<impl TokenStore + Clone + 'static>) {
    let limit = RateLimit {
        limit: 3,
        window: Duration::from_secs(60),
        lockout: Duration::from_secs(300),
    };
    let start = h.clock.now_millis();
    for _ in 0..3 {
        let d = h.store.hit("chan", &limit).await.expect("hit");
        assert!(d.allowed);
        assert_eq!(d.reset_at_ms, start + 60_000);
    }
    h.clock.advance(Duration::from_secs(1));
    let over = h.store.hit("chan", &limit).await.expect("hit");
    assert!(!over.allowed, "the fourth event is over the limit");
    assert_eq!(
        over.reset_at_ms,
        start + 1_000 + 300_000,
        "locked out for 5 minutes"
    );

    h.clock.advance(Duration::from_secs(200));
    assert!(
        !h.store.hit("chan", &limit).await.expect("hit").allowed,
        "still locked after the window"
    );
    h.clock.advance(Duration::from_millis(100_000 - 1));
    assert!(
        !h.store.hit("chan", &limit).await.expect("hit").allowed,
        "1 ms before the lock-out ends"
    );
    h.clock.advance(Duration::from_millis(1));
    for _ in 0..3 {
        let after = h.store.hit("chan", &limit).await.expect("hit");
        assert!(after.allowed, "lock-out over: a fresh window of 3");
    }
    h.clock.advance(Duration::from_secs(1));
    assert!(
        !h.store.hit("chan", &limit).await.expect("hit").allowed,
        "and the fourth is over the limit again"
    );

    assert!(
        h.store.hit("other", &limit).await.expect("hit").allowed,
        "keys are independent"
    );
}

async fn a_window_without_lockout_resets_at_its_end(
    h: &Harness<impl TokenStore + Clone + 'static>,
) {
    let limit = RateLimit {
        limit: 1,
        window: Duration::from_secs(10),
        lockout: Duration::ZERO,
    };
    assert!(h.store.hit("w", &limit).await.expect("hit").allowed);
    assert!(!h.store.hit("w", &limit).await.expect("hit").allowed);
    h.clock.advance(TEN_S);
    assert!(h.store.hit("w", &limit).await.expect("hit").allowed);
}

async fn subjects_stay_revoked_until_their_expiry(h: &Harness<impl TokenStore + Clone + 'static>) {
    let until = h.clock.now_millis() + 10_000;
    assert!(!h.store.is_revoked("jti-1").await.expect("check"));
    h.store.revoke_until("jti-1", until).await.expect("revoke");
    assert!(h.store.is_revoked("jti-1").await.expect("check"));
    h.clock.advance(TEN_S - Duration::from_millis(1));
    assert!(h.store.is_revoked("jti-1").await.expect("check"));
    h.clock.advance(Duration::from_millis(1));
    assert!(
        !h.store.is_revoked("jti-1").await.expect("check"),
        "forgotten at the token's expiry"
    );
}

async fn sixty_four_racing_uses_of_a_single_use_token_admit_exactly_one(
    h: &Harness<impl TokenStore + Clone + 'static>,
) {
    h.store
        .issue_or_extend(&key("race", "r"), "one-shot", TEN_S, true, None)
        .await
        .expect("issue");
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let store = h.store.clone();
            tokio::spawn(async move {
                store
                    .use_token(&key("race", "r"), "one-shot")
                    .await
                    .expect("use")
            })
        })
        .collect();
    let mut admitted = 0;
    for task in tasks {
        match task.await.expect("joined") {
            Admission::Admitted(_) => admitted += 1,
            Admission::AlreadyUsed => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(admitted, 1);
}

async fn sixty_four_racing_issues_on_one_key_agree_on_one_token(
    h: &Harness<impl TokenStore + Clone + 'static>,
) {
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let store = h.store.clone();
            tokio::spawn(async move {
                store
                    .issue_or_extend(
                        &key("race2", "r"),
                        &format!("candidate-{i}"),
                        TEN_S,
                        false,
                        None,
                    )
                    .await
                    .expect("issue")
            })
        })
        .collect();
    let mut tokens = std::collections::HashSet::new();
    let mut created = 0;
    for task in tasks {
        let issued = task.await.expect("joined");
        created += usize::from(issued.created);
        tokens.insert(issued.record.token);
    }
    assert_eq!(tokens.len(), 1, "one token: {tokens:?}");
    assert_eq!(created, 1);
}

async fn an_issued_token_is_marked_with_its_record_until_the_given_time(
    h: &Harness<impl TokenStore + Clone + 'static>,
) {
    let until = h.clock.now_millis() + 20_000;
    let first = h
        .store
        .issue_or_extend(&key("m", "r"), "tok-m", TEN_S, false, Some(until))
        .await
        .expect("issue");
    assert!(first.created);
    assert!(h
        .store
        .was_issued(&key("m", "r"), "tok-m")
        .await
        .expect("read"));
    let lost = h
        .store
        .issue_or_extend(&key("m", "r"), "tok-lost", TEN_S, false, Some(until))
        .await
        .expect("issue");
    assert_eq!(lost.record.token, "tok-m");
    assert!(
        !h.store
            .was_issued(&key("m", "r"), "tok-lost")
            .await
            .expect("read"),
        "a candidate that lost to a live record was never issued"
    );
    assert!(
        !h.store
            .was_issued(&key("m", "other"), "tok-m")
            .await
            .expect("read"),
        "markers belong to their record's key"
    );
    h.clock.advance(TEN_S);
    assert!(
        h.store
            .was_issued(&key("m", "r"), "tok-m")
            .await
            .expect("read"),
        "the marker outlives the record, up to the time given"
    );
    h.clock.advance(TEN_S);
    assert!(!h
        .store
        .was_issued(&key("m", "r"), "tok-m")
        .await
        .expect("read"));
}

async fn requests_are_remembered_with_their_digest_until_the_ttl_ends(
    h: &Harness<impl TokenStore + Clone + 'static>,
) {
    let seen = |digest: &'static str| {
        let store = h.store.clone();
        async move {
            store
                .remember_request("req-1", digest, TEN_S)
                .await
                .expect("remember")
        }
    };
    assert_eq!(seen("aaaa").await, Repeat::First);
    assert_eq!(seen("aaaa").await, Repeat::Same, "an exact repeat");
    assert_eq!(
        seen("bbbb").await,
        Repeat::Different,
        "the same key, another body"
    );
    assert_eq!(
        seen("aaaa").await,
        Repeat::Same,
        "a different one does not replace it"
    );
    h.clock.advance(TEN_S);
    assert_eq!(seen("bbbb").await, Repeat::First, "forgotten at the end");
}

async fn a_guarded_issue_writes_the_record_only_when_its_guard_admits_it(
    h: &Harness<impl TokenStore + Clone + 'static>,
) {
    let guard = |key: &str, digest: Option<&str>| Guard {
        key: key.to_owned(),
        digest: digest.map(str::to_owned),
        ttl: TEN_S,
    };
    let issue = |guard: Guard, uid: &'static str, candidate: &'static str| {
        let store = h.store.clone();
        let until = h.clock.now_millis() + 10_000;
        async move {
            store
                .guarded_issue(&guard, &key(uid, "r"), candidate, TEN_S, false, Some(until))
                .await
                .expect("guarded issue")
        }
    };

    // With a digest: an exact repeat is a retry (the same token); another digest is refused, writing nothing.
    let first = issue(guard("g-1", Some("aaaa")), "u1", "tok-1")
        .await
        .expect("admitted");
    assert!(first.created);
    let retry = issue(guard("g-1", Some("aaaa")), "u1", "tok-other")
        .await
        .expect("a retry");
    assert_eq!(retry.record.token, "tok-1");
    assert!(issue(guard("g-1", Some("bbbb")), "u2", "tok-2")
        .await
        .is_none());
    assert_eq!(
        h.store
            .use_token(&key("u2", "r"), "tok-2")
            .await
            .expect("use"),
        Admission::Unknown,
        "a refused guard wrote no record"
    );
    assert!(!h
        .store
        .was_issued(&key("u2", "r"), "tok-2")
        .await
        .expect("read"));

    // Without a digest: any repeat is refused.
    assert!(issue(guard("g-2", None), "u3", "tok-3").await.is_some());
    assert!(issue(guard("g-2", None), "u3", "tok-3").await.is_none());
    // Forgotten after its time to live.
    h.clock.advance(TEN_S);
    assert!(issue(guard("g-2", None), "u4", "tok-4").await.is_some());
}

async fn ping_answers(h: &Harness<impl TokenStore + Clone + 'static>) {
    h.store.ping().await.expect("ping");
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let h = super::Harness::embedded().await;
                    super::$name(&h).await;
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let h = super::Harness::redis().await;
                    super::$name(&h).await;
                }
            )*
        }
        mod redis_cluster {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let h = super::Harness::cluster().await;
                    super::$name(&h).await;
                }
            )*
        }
    };
}

conformance!(
    issue_or_extend_returns_the_same_token_and_extends_its_expiry,
    records_expire_exactly_at_their_boundary,
    use_requires_the_matching_token,
    a_single_use_token_is_admitted_once,
    a_revoked_record_is_never_served_again,
    remember_once_reports_repeats_until_the_ttl_ends,
    rate_windows_count_and_lock_out,
    a_window_without_lockout_resets_at_its_end,
    subjects_stay_revoked_until_their_expiry,
    sixty_four_racing_uses_of_a_single_use_token_admit_exactly_one,
    sixty_four_racing_issues_on_one_key_agree_on_one_token,
    an_issued_token_is_marked_with_its_record_until_the_given_time,
    requests_are_remembered_with_their_digest_until_the_ttl_ends,
    a_guarded_issue_writes_the_record_only_when_its_guard_admits_it,
    ping_answers,
);
