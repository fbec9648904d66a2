//! A token request checked for shape (not yet against a channel), and why a token is not valid.

use std::time::Duration;

use super::wire::{Scalar, TokenRequest};
use crate::error::ApiError;

/// A `time` below this many milliseconds (early 1973) is read as seconds sent by mistake.
pub(super) const SECONDS_THRESHOLD: i64 = 100_000_000_000;
/// Longest randomKey accepted.
const MAX_RANDOM_KEY_CHARS: usize = 128;

/// A token request whose fields have the right shape (not yet checked against a channel).
pub(super) struct TokenClaim {
    pub(super) app_id: String,
    pub(super) time: i64,
    pub(super) random_key: String,
    pub(super) token: String,
}

fn missing(field: &str) -> ApiError {
    ApiError::invalid("missing_field", format!("{field} is required"))
}

impl TryFrom<&TokenRequest> for TokenClaim {
    type Error = ApiError;

    fn try_from(r: &TokenRequest) -> Result<Self, ApiError> {
        let app_id = r
            .app_id
            .as_ref()
            .map(Scalar::text)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| missing("appId"))?;
        let time_text = r
            .time
            .as_ref()
            .map(Scalar::text)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| missing("time"))?;
        let time = crate::decimal::parse_i64(&time_text).ok_or_else(|| {
            ApiError::invalid(
                "invalid_time",
                "time must be a whole number of milliseconds since the epoch (digits, no leading zeros)",
            )
        })?;
        let random_key = r
            .random_key
            .clone()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| missing("randomKey"))?;
        if random_key.chars().count() > MAX_RANDOM_KEY_CHARS
            || random_key.chars().any(char::is_control)
        {
            return Err(ApiError::invalid(
                "invalid_random_key",
                format!("randomKey must be 1 to {MAX_RANDOM_KEY_CHARS} characters without control characters"),
            ));
        }
        let token = r
            .token
            .clone()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| missing("token"))?;
        if token.len() != 40 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ApiError::invalid(
                "invalid_token",
                "token must be 40 hex digits (a SHA-1)",
            ));
        }
        Ok(Self {
            app_id: app_id.into_owned(),
            time,
            random_key,
            token: token.to_ascii_lowercase(),
        })
    }
}

/// Why a token is not valid: a rule, never the expected value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TokenFault {
    UnknownAppId,
    TimeInSeconds,
    TimeOutsideWindow,
    Mismatch,
}

impl TokenFault {
    pub(super) fn code(self) -> &'static str {
        match self {
            Self::UnknownAppId => "unknown_app_id",
            Self::TimeInSeconds => "time_in_seconds",
            Self::TimeOutsideWindow => "time_outside_window",
            Self::Mismatch => "token_mismatch",
        }
    }

    pub(super) fn message(self, window: Duration) -> String {
        match self {
            Self::UnknownAppId => "no channel has this appId".to_owned(),
            Self::TimeInSeconds => "time looks like seconds; send milliseconds since the epoch".to_owned(),
            Self::TimeOutsideWindow => format!(
                "time must be within {} seconds of the server's time (milliseconds since the epoch)",
                window.as_secs()
            ),
            Self::Mismatch => {
                "token does not match SHA1(appId.time.randomKey.secretKey) for any key of this channel".to_owned()
            }
        }
    }

    pub(super) fn into_error(self, window: Duration) -> ApiError {
        let message = self.message(window);
        match self {
            Self::UnknownAppId | Self::Mismatch => ApiError::Rejected {
                code: self.code(),
                message: message.into(),
            },
            Self::TimeInSeconds | Self::TimeOutsideWindow => {
                ApiError::invalid(self.code(), message)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(body: serde_json::Value) -> Result<TokenClaim, ApiError> {
        let request: TokenRequest = serde_json::from_value(body).expect("a request body");
        TokenClaim::try_from(&request)
    }

    fn code(body: serde_json::Value) -> &'static str {
        match claim(body) {
            Ok(_) => "ok",
            Err(e) => e.code(),
        }
    }

    #[test]
    fn a_well_formed_request_becomes_a_claim_with_a_lowercase_token() {
        let parsed = claim(serde_json::json!({
            "appId": 1, "time": "1434962941344", "randomKey": "MEME", "token": "B833EE5DB78BBA606DEA73B89E3C705988D2CFCE",
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parsed.app_id, "1");
        assert_eq!(parsed.time, 1_434_962_941_344);
        assert_eq!(parsed.token, "b833ee5db78bba606dea73b89e3c705988d2cfce");
    }

    #[test]
    fn each_malformed_field_names_its_rule() {
        let token = "0".repeat(40);
        let cases = [
            (
                serde_json::json!({"time": 1, "randomKey": "k", "token": token}),
                "missing_field",
                "no appId",
            ),
            (
                serde_json::json!({"appId": "1", "randomKey": "k", "token": token}),
                "missing_field",
                "no time",
            ),
            (
                serde_json::json!({"appId": "1", "time": "01", "randomKey": "k", "token": token}),
                "invalid_time",
                "leading zero",
            ),
            (
                serde_json::json!({"appId": "1", "time": "+1", "randomKey": "k", "token": token}),
                "invalid_time",
                "sign",
            ),
            (
                serde_json::json!({"appId": "1", "time": -1, "randomKey": "k", "token": token}),
                "invalid_time",
                "negative",
            ),
            (
                serde_json::json!({"appId": "1", "time": 1.5, "randomKey": "k", "token": token}),
                "invalid_time",
                "fraction",
            ),
            (
                serde_json::json!({"appId": "1", "time": 1, "randomKey": "", "token": token}),
                "missing_field",
                "empty randomKey",
            ),
            (
                serde_json::json!({"appId": "1", "time": 1, "randomKey": "a\nb", "token": token}),
                "invalid_random_key",
                "control character",
            ),
            (
                serde_json::json!({"appId": "1", "time": 1, "randomKey": "k".repeat(129), "token": token}),
                "invalid_random_key",
                "too long",
            ),
            (
                serde_json::json!({"appId": "1", "time": 1, "randomKey": "k", "token": "abc"}),
                "invalid_token",
                "short token",
            ),
            (
                serde_json::json!({"appId": "1", "time": 1, "randomKey": "k", "token": "g".repeat(40)}),
                "invalid_token",
                "not hex",
            ),
        ];
        for (body, expected, what) in cases {
            assert_eq!(code(body), expected, "{what}");
        }
    }
}
