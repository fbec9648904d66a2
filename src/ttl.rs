//! The shared TTL policy and the clock every provider reads time from.
//!
//! Each provider gets its own [`TtlPolicy`] (min, default and max seconds) from configuration. A requested TTL
//! outside the bounds is refused with an error naming them: tokenmint never clamps silently, because a caller
//! who asked for two days and silently got one would debug the wrong thing.
//!
//! Time is injected through [`Clock`]: production uses [`SystemClock`], tests use [`ManualClock`] and move time
//! instead of sleeping.

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// A source of wall-clock time in milliseconds since the Unix epoch.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Milliseconds since the Unix epoch.
    fn now_millis(&self) -> i64;

    /// Whole seconds since the Unix epoch (rounded down).
    fn now_secs(&self) -> i64 {
        self.now_millis().div_euclid(1000)
    }
}

/// Whole milliseconds of a duration as the signed milliseconds every timestamp here uses, saturating: the one
/// conversion from `Duration`.
pub fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Whole seconds of a duration as signed seconds, saturating.
pub fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// Seconds to wait from `now_ms` until `at_ms`, rounded up and at least 1: a `Retry-After` value.
pub fn retry_after_secs(at_ms: i64, now_ms: i64) -> u64 {
    u64::try_from(at_ms.saturating_sub(now_ms).saturating_add(999) / 1000)
        .unwrap_or(1)
        .max(1)
}

/// A shared, clonable clock handle.
pub type SharedClock = Arc<dyn Clock>;

/// The operating system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_millis(&self) -> i64 {
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(elapsed) => millis(elapsed),
            // A clock set before 1970 is broken beyond what tokenmint can fix; report the epoch.
            Err(_) => 0,
        }
    }
}

/// A clock that only moves when told to, for tests.
#[derive(Debug)]
pub struct ManualClock {
    millis: AtomicI64,
}

impl ManualClock {
    /// A clock that reads `millis` until it is moved.
    pub fn at_millis(millis: i64) -> Arc<Self> {
        Arc::new(Self {
            millis: AtomicI64::new(millis),
        })
    }

    /// A clock starting at the current system time.
    pub fn starting_now() -> Arc<Self> {
        Self::at_millis(SystemClock.now_millis())
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let by = millis(by);
        self.millis.fetch_add(by, Ordering::SeqCst);
    }

    /// Moves the clock backward.
    pub fn rewind(&self, by: Duration) {
        let by = millis(by);
        self.millis.fetch_sub(by, Ordering::SeqCst);
    }

    /// Sets the clock to an absolute time.
    pub fn set_millis(&self, millis: i64) {
        self.millis.store(millis, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_millis(&self) -> i64 {
        self.millis.load(Ordering::SeqCst)
    }
}

/// Raw TTL bounds as written in configuration, in seconds.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TtlBounds {
    /// Smallest TTL a caller may ask for.
    pub min: u32,
    /// TTL used when the caller asks for none.
    pub default: u32,
    /// Largest TTL a caller may ask for.
    pub max: u32,
}

/// A validated TTL policy: `1 <= min <= default <= max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(into = "TtlBounds")]
pub struct TtlPolicy {
    min: u32,
    default: u32,
    max: u32,
}

/// Why a set of TTL bounds from configuration is unusable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("ttl bounds must satisfy 1 <= min <= default <= max (got min={min}, default={default}, max={max})")]
pub struct InvalidTtlBounds {
    min: u32,
    default: u32,
    max: u32,
}

impl TryFrom<TtlBounds> for TtlPolicy {
    type Error = InvalidTtlBounds;

    fn try_from(raw: TtlBounds) -> Result<Self, Self::Error> {
        let TtlBounds { min, default, max } = raw;
        if min >= 1 && min <= default && default <= max {
            Ok(Self { min, default, max })
        } else {
            Err(InvalidTtlBounds { min, default, max })
        }
    }
}

impl From<TtlPolicy> for TtlBounds {
    fn from(policy: TtlPolicy) -> Self {
        Self {
            min: policy.min,
            default: policy.default,
            max: policy.max,
        }
    }
}

/// A requested TTL that the policy refuses.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("ttl must be between {min} and {max} seconds")]
pub struct TtlOutOfBounds {
    /// The policy's lower bound.
    pub min: u32,
    /// The policy's upper bound.
    pub max: u32,
}

/// A TTL the policy accepted, in whole seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ttl(u32);

impl Ttl {
    /// The TTL in seconds.
    pub fn as_secs(self) -> u32 {
        self.0
    }

    /// The TTL as a [`Duration`].
    pub fn as_duration(self) -> Duration {
        Duration::from_secs(u64::from(self.0))
    }
}

impl TtlPolicy {
    /// Builds a policy, checking the bounds.
    pub fn new(min: u32, default: u32, max: u32) -> Result<Self, InvalidTtlBounds> {
        TtlBounds { min, default, max }.try_into()
    }

    /// The smallest TTL allowed.
    pub fn min(&self) -> u32 {
        self.min
    }

    /// The largest TTL allowed.
    pub fn max(&self) -> u32 {
        self.max
    }

    /// Resolves a caller's requested TTL: `None` means the default; anything outside the bounds is an error.
    ///
    /// ```
    /// use tokenmint::ttl::TtlPolicy;
    ///
    /// let twilio = TtlPolicy::new(1, 3600, 86_400).unwrap();
    /// assert_eq!(twilio.resolve(None).unwrap().as_secs(), 3600);
    /// assert_eq!(twilio.resolve(Some(60)).unwrap().as_secs(), 60);
    /// assert_eq!(
    ///     twilio.resolve(Some(86_401)).unwrap_err().to_string(),
    ///     "ttl must be between 1 and 86400 seconds"
    /// );
    /// ```
    pub fn resolve(&self, requested: Option<i64>) -> Result<Ttl, TtlOutOfBounds> {
        match requested {
            None => Ok(Ttl(self.default)),
            Some(secs) if secs >= i64::from(self.min) && secs <= i64::from(self.max) => {
                // The guard bounds `secs` to the u32 range of `max`.
                Ok(Ttl(u32::try_from(secs).unwrap_or(self.max)))
            }
            Some(_) => Err(TtlOutOfBounds {
                min: self.min,
                max: self.max,
            }),
        }
    }
}

/// The shared TTL policy, one set of bounds per provider.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TtlSettings {
    /// Clock skew tolerated when verifying exp and nbf.
    #[serde(rename = "leeway_secs", with = "crate::settings::secs")]
    pub leeway: Duration,
    /// Twilio Access Tokens.
    #[serde(deserialize_with = "ttl_policy")]
    pub twilio: TtlPolicy,
    /// NetEase getToken tokens.
    #[serde(deserialize_with = "ttl_policy")]
    pub netease: TtlPolicy,
    /// MeCloud accesstokens.
    #[serde(deserialize_with = "ttl_policy")]
    pub mecloud: TtlPolicy,
}

fn ttl_policy<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<TtlPolicy, D::Error> {
    let raw = crate::ttl::TtlBounds::deserialize(deserializer)?;
    TtlPolicy::try_from(raw).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> TtlPolicy {
        TtlPolicy::new(60, 3600, 86400).expect("valid bounds")
    }

    #[test]
    fn resolve_uses_the_default_when_no_ttl_is_requested() {
        assert_eq!(policy().resolve(None), Ok(Ttl(3600)));
    }

    #[test]
    fn resolve_accepts_both_bounds_exactly() {
        assert_eq!(policy().resolve(Some(60)), Ok(Ttl(60)));
        assert_eq!(policy().resolve(Some(86400)), Ok(Ttl(86400)));
    }

    #[test]
    fn resolve_refuses_values_outside_the_bounds_without_clamping() {
        for requested in [0, 59, 86401, -1, i64::MAX, i64::MIN] {
            let err = policy()
                .resolve(Some(requested))
                .expect_err("out of bounds");
            assert_eq!(
                err.to_string(),
                "ttl must be between 60 and 86400 seconds",
                "requested {requested}"
            );
        }
    }

    #[test]
    fn bounds_must_be_ordered_and_positive() {
        assert!(TtlPolicy::new(0, 10, 20).is_err(), "min of zero");
        assert!(TtlPolicy::new(10, 5, 20).is_err(), "default below min");
        assert!(TtlPolicy::new(10, 30, 20).is_err(), "default above max");
        assert!(TtlPolicy::new(5, 5, 5).is_ok(), "all equal");
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::at_millis(1_000_500);
        assert_eq!(clock.now_secs(), 1000);
        clock.advance(Duration::from_millis(500));
        assert_eq!(clock.now_millis(), 1_001_000);
        clock.rewind(Duration::from_secs(1));
        assert_eq!(clock.now_millis(), 1_000_000);
    }
}
