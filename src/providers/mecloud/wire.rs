//! MeCloud's request and response bodies, as sent and answered.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A JSON scalar sent as a string (forms always are) or a number.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum Scalar {
    /// A string.
    Text(String),
    /// A number.
    Number(serde_json::Number),
}

impl Scalar {
    /// The value as text.
    pub(super) fn text(&self) -> Cow<'_, str> {
        match self {
            Self::Text(s) => Cow::Borrowed(s.as_str()),
            Self::Number(n) => Cow::Owned(n.to_string()),
        }
    }
}

/// The body of check and exchange, as sent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TokenRequest {
    #[serde(rename = "appId", alias = "app_id")]
    pub(super) app_id: Option<Scalar>,
    pub(super) time: Option<Scalar>,
    #[serde(rename = "randomKey", alias = "random-key", alias = "random_key")]
    pub(super) random_key: Option<String>,
    pub(super) token: Option<String>,
    /// Exchange only: a shorter accesstoken lifetime, in seconds.
    pub(super) ttl: Option<Scalar>,
}

/// `POST /mecloud/v2/token/check` response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CheckResponse {
    pub(super) valid: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) error: Option<Value>,
}

/// `POST /mecloud/v2/accesstoken` response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ExchangeResponse {
    pub(super) accesstoken: String,
    pub(super) token_type: &'static str,
    pub(super) expires_in: u32,
    /// Unix seconds.
    pub(super) expires_at: i64,
    pub(super) app_id: String,
    pub(super) key_id: String,
}

/// `access-token` query parameter.
#[derive(Debug, Deserialize)]
pub(super) struct AccessQuery {
    #[serde(rename = "access-token")]
    pub(super) access_token: Option<String>,
}

/// `POST /mecloud/v2/accesstoken/verify` response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct VerifyResponse {
    pub(super) valid: bool,
    pub(super) app_id: String,
    pub(super) key_id: String,
    pub(super) subject: String,
    /// Unix seconds.
    pub(super) expires_at: i64,
}

/// `POST /mecloud/v2/accesstoken/revoke` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RevokeRequest {
    pub(super) accesstoken: String,
}
