//! What each operation does to stored state, written once and shared by both backends (the Redis scripts mirror
//! it), so the two cannot drift apart.

use std::time::Duration;

use super::{Admission, Issued, RateDecision, RateLimit, RecordKey, RecordState, TokenRecord};

/// A token's digest, hex: what markers are keyed by, so no token text is used as a key.
pub(crate) fn token_digest(token: &str) -> String {
    use sha1::Digest;
    hex::encode(sha1::Sha1::digest(token.as_bytes()))
}

/// The issued marker of `token` under `key`: the fixed-length digest first, so the pair is unambiguous.
pub(crate) fn issued_id(key: &RecordKey, token: &str) -> String {
    format!("{}:{}", token_digest(token), key.encoded())
}

pub(crate) use crate::ttl::millis;

/// The rate-window arithmetic both backends share (the Redis script mirrors it): returns the new state
/// `(window_start_ms, count, locked_until_ms)` and the decision.
pub(crate) fn rate_step(
    state: Option<(i64, u32, i64)>,
    now: i64,
    limit: &RateLimit,
) -> ((i64, u32, i64), RateDecision) {
    let window = millis(limit.window);
    let (mut start, mut count, locked_until) = state.unwrap_or((now, 0, 0));
    if locked_until > now {
        let decision = RateDecision {
            allowed: false,
            reset_at_ms: locked_until,
        };
        return ((start, count, locked_until), decision);
    }
    if now >= start.saturating_add(window) {
        start = now;
        count = 0;
    }
    count = count.saturating_add(1);
    if count > limit.limit {
        let lock_end = if limit.lockout.is_zero() {
            start.saturating_add(window)
        } else {
            now.saturating_add(millis(limit.lockout))
        };
        let decision = RateDecision {
            allowed: false,
            reset_at_ms: lock_end,
        };
        return ((now, 0, lock_end), decision);
    }
    let decision = RateDecision {
        allowed: true,
        reset_at_ms: start.saturating_add(window),
    };
    ((start, count, locked_until), decision)
}

/// What issue-or-extend does to an existing (possibly expired) record; shared by both backends.
pub(crate) fn issue_step(
    existing: Option<TokenRecord>,
    candidate: &str,
    now: i64,
    ttl: Duration,
    single_use: bool,
) -> Issued {
    let expires_at_ms = now.saturating_add(millis(ttl));
    match existing {
        Some(mut record) if record.expires_at_ms > now && record.state == RecordState::Live => {
            record.expires_at_ms = expires_at_ms;
            record.single_use = single_use;
            Issued {
                record,
                created: false,
            }
        }
        _ => Issued {
            record: TokenRecord {
                token: candidate.to_owned(),
                issued_at_ms: now,
                expires_at_ms,
                single_use,
                state: RecordState::Live,
            },
            created: true,
        },
    }
}

/// The record if it holds `token` (compared in constant time) and has not expired at `now`.
fn matching_unexpired(record: Option<TokenRecord>, token: &str, now: i64) -> Option<TokenRecord> {
    record.filter(|r| {
        r.expires_at_ms > now
            && bool::from(subtle::ConstantTimeEq::ct_eq(
                r.token.as_bytes(),
                token.as_bytes(),
            ))
    })
}

/// What using a token does to its record; shared by both backends. Returns the record to write back, if any.
pub(crate) fn use_step(
    existing: Option<TokenRecord>,
    token: &str,
    now: i64,
) -> (Admission, Option<TokenRecord>) {
    match matching_unexpired(existing, token, now) {
        Some(record) => match record.state {
            RecordState::Revoked => (Admission::Revoked, None),
            RecordState::Consumed => (Admission::AlreadyUsed, None),
            RecordState::Live if record.single_use => {
                let mut consumed = record.clone();
                consumed.state = RecordState::Consumed;
                (Admission::Admitted(record), Some(consumed))
            }
            RecordState::Live => (Admission::Admitted(record), None),
        },
        None => (Admission::Unknown, None),
    }
}
