//! MeCloud's request and response bodies, as sent and answered.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

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

/// The body of check and exchange, as sent (JSON, or a form with the same field names).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct TokenRequest {
    /// The channel's app id (a string or a number).
    #[serde(rename = "appId", alias = "app_id")]
    #[schema(value_type = String, required = true)]
    pub(super) app_id: Option<Scalar>,
    /// Unix milliseconds when the client made the token (a string or a number).
    #[schema(value_type = String, required = true, pattern = "^[1-9][0-9]{0,15}$")]
    pub(super) time: Option<Scalar>,
    /// The client's random key; also the accesstoken's subject.
    #[serde(rename = "randomKey", alias = "random-key", alias = "random_key")]
    #[schema(required = true, nullable = false, min_length = 1)]
    pub(super) random_key: Option<String>,
    /// hex(SHA1(appId.time.randomKey.secretKey)).
    #[schema(required = true, nullable = false, pattern = "^[0-9a-fA-F]{40}$")]
    pub(super) token: Option<String>,
    /// Exchange only: a shorter accesstoken lifetime, in seconds.
    #[schema(value_type = Option<String>)]
    pub(super) ttl: Option<Scalar>,
}

/// `POST /mecloud/v2/token/check` response.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct CheckResponse {
    pub(super) valid: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) key_id: Option<String>,
    /// Why the token is not valid: `{"code","message"}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::error::ErrorDetail>)]
    pub(super) error: Option<Value>,
}

/// `POST /mecloud/v2/accesstoken` response.
#[derive(Debug, Serialize, ToSchema)]
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
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct AccessQuery {
    /// The accesstoken (or send `Authorization: Bearer …`).
    #[serde(rename = "access-token")]
    pub(super) access_token: Option<String>,
}

/// `POST /mecloud/v2/accesstoken/verify` response.
#[derive(Debug, Serialize, ToSchema)]
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
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RevokeRequest {
    pub(super) accesstoken: String,
}

/// `POST /mecloud/v2/accesstoken/revoke` response (written with `json!`; documented here).
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
pub(super) struct RevokeResponse {
    /// Always true: the accesstoken is refused from now until its expiry.
    revoked: bool,
    /// Its expiry, Unix seconds.
    expires_at: i64,
}
