//! Every key the providers keep shared state under (replay guards, counters, revocations), built in one place:
//! the provider, the kind of state, then the tenant and the rest, each part length-prefixed so no two different
//! tuples make one key. (Records have their own key, [`RecordKey`](super::RecordKey).)

use std::fmt::Write as _;

/// What a rate counter counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// Tokens issued (getToken calls, accesstoken exchanges).
    Issue,
    /// Revocations.
    Revoke,
}

impl Counter {
    fn as_str(self) -> &'static str {
        match self {
            Self::Issue => "issue",
            Self::Revoke => "revoke",
        }
    }
}

/// A key of shared state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateKey(String);

impl StateKey {
    fn new(provider: &str, kind: &str, parts: &[&str]) -> Self {
        let mut key = format!("{provider}:{kind}");
        for part in parts {
            let _ = write!(key, ":{}:{part}", part.len());
        }
        Self(key)
    }

    /// The key text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// NetEase: an AppKey + CurTime + Nonce the replay guard has seen.
    pub fn netease_replay(app_key: &str, cur_time: i64, nonce: &str) -> Self {
        Self::new("ne", "replay", &[app_key, &cur_time.to_string(), nonce])
    }

    /// NetEase: an app's rate counter.
    pub fn netease_counter(app_key: &str, counter: Counter) -> Self {
        Self::new("ne", "rate", &[app_key, counter.as_str()])
    }

    /// NetEase: a token revoked by value, by its app and the digest of its canonical text.
    pub fn netease_revoked(app_key: &str, token_digest: &str) -> Self {
        Self::new("ne", "revoked", &[app_key, token_digest])
    }

    /// MeCloud: a client token already exchanged, by its channel and digest.
    pub fn mecloud_exchanged(app_id: &str, token_digest: &str) -> Self {
        Self::new("mc", "exchanged", &[app_id, token_digest])
    }

    /// MeCloud: a rate counter of one secret key of a channel, or of the whole channel.
    pub fn mecloud_counter(app_id: &str, key_id: Option<&str>, counter: Counter) -> Self {
        match key_id {
            Some(key_id) => Self::new("mc", "rate", &[app_id, counter.as_str(), key_id]),
            None => Self::new("mc", "rate", &[app_id, counter.as_str()]),
        }
    }

    /// MeCloud: a revoked accesstoken, by its channel and id.
    pub fn mecloud_revoked(app_id: &str, jti: &str) -> Self {
        Self::new("mc", "revoked", &[app_id, jti])
    }

    /// Twilio: a revoked Access Token, by its account and the digest of its signed part.
    pub fn twilio_revoked(account_sid: &str, token_digest: &str) -> Self {
        Self::new("twilio", "revoked", &[account_sid, token_digest])
    }

    /// Twilio: an account's rate counter.
    pub fn twilio_counter(account_sid: &str, counter: Counter) -> Self {
        Self::new("twilio", "rate", &[account_sid, counter.as_str()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_length_prefixed_so_no_two_tuples_share_a_key() {
        assert_ne!(
            StateKey::netease_replay("ab", 1, "c"),
            StateKey::netease_replay("a", 1, "bc")
        );
        assert_ne!(
            StateKey::mecloud_counter("1", Some("a:b"), Counter::Issue),
            StateKey::mecloud_counter("1:a", Some("b"), Counter::Issue)
        );
        assert_eq!(
            StateKey::netease_counter("app", Counter::Revoke).as_str(),
            "ne:rate:3:app:6:revoke"
        );
    }
}
