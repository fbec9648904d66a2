//! NetEase's wire format: the envelope and its codes, the form body and the four authentication headers.
//!
//! Every answer is HTTP 200 with `application/json; charset=utf-8` and `{"code":200,…}` or
//! `{"code":N,"desc":"…"}`, because NetEase's SDKs treat any other HTTP status as a transport failure and retry.

use std::borrow::Cow;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::domain::DomainError;
use crate::outcome::Outcome;
use crate::store::StoreError;

/// NetEase's answer codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// 200: success.
    Ok = 200,
    /// 403: forbidden (a disabled app; a token that is invalid, expired or revoked).
    Forbidden = 403,
    /// 414: a header or parameter problem.
    Param = 414,
    /// 416: frequency control (the app's rate limit).
    RateLimited = 416,
    /// 417: a single-use token that was already used.
    AlreadyUsed = 417,
    /// 431: the same AppKey + Nonce + CurTime was already seen.
    Replayed = 431,
    /// 500: a server fault.
    ServerError = 500,
    /// 503: the token store is unreachable, or the request ran past its deadline.
    Unavailable = 503,
}

impl Code {
    /// The number NetEase sends.
    pub fn as_u16(self) -> u16 {
        self as u16
    }

    /// The number as text: the outcome the request log line and the metrics record.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "200",
            Self::Forbidden => "403",
            Self::Param => "414",
            Self::RateLimited => "416",
            Self::AlreadyUsed => "417",
            Self::Replayed => "431",
            Self::ServerError => "500",
            Self::Unavailable => "503",
        }
    }
}

/// A failed NetEase call: its code and desc. Never carries a secret or a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeteaseError {
    /// NetEase's code.
    pub code: Code,
    /// What went wrong.
    pub desc: Cow<'static, str>,
}

impl NeteaseError {
    /// An error with `code`.
    pub fn new(code: Code, desc: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            desc: desc.into(),
        }
    }

    /// A 414 parameter error.
    pub fn param(desc: impl Into<Cow<'static, str>>) -> Self {
        Self::new(Code::Param, desc)
    }

    /// A 403.
    pub fn forbidden(desc: impl Into<Cow<'static, str>>) -> Self {
        Self::new(Code::Forbidden, desc)
    }
}

impl From<DomainError> for NeteaseError {
    fn from(e: DomainError) -> Self {
        Self::param(e.to_string())
    }
}

impl From<StoreError> for NeteaseError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(cause) => {
                tracing::warn!(error = %cause, "store unavailable");
                Self::new(
                    Code::Unavailable,
                    "server busy: token store unavailable, retry later",
                )
            }
            StoreError::Corrupt(cause) => {
                tracing::error!(error = %cause, "store data error");
                Self::new(Code::ServerError, "server error")
            }
        }
    }
}

/// A successful answer: `{"code":200,…}` in NetEase's envelope.
pub fn success(body: &Value) -> Response {
    Outcome(Code::Ok.as_str()).attach(envelope(body))
}

/// NetEase's envelope: always HTTP 200, JSON, UTF-8.
pub fn envelope(body: &Value) -> Response {
    let mut response = (StatusCode::OK, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

impl IntoResponse for NeteaseError {
    fn into_response(self) -> Response {
        Outcome(self.code.as_str()).attach(envelope(
            &json!({"code": self.code.as_u16(), "desc": self.desc}),
        ))
    }
}

/// The form fields of a request.
#[derive(Debug, Default)]
pub struct Form(Vec<(String, String)>);

impl Form {
    /// Checks the Content-Type (`application/x-www-form-urlencoded`, any charset spelling of UTF-8) and decodes
    /// the body; a field given twice is refused.
    pub fn parse(headers: &HeaderMap, body: &[u8]) -> Result<Self, NeteaseError> {
        check_content_type(headers)?;
        let text = std::str::from_utf8(body)
            .map_err(|_| NeteaseError::param("body is not valid UTF-8"))?;
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(text).map_err(|_| {
            NeteaseError::param("body is not a valid form (application/x-www-form-urlencoded)")
        })?;
        let mut seen = std::collections::HashSet::new();
        for (name, _) in &pairs {
            if !seen.insert(name.as_str()) {
                return Err(NeteaseError::param(format!(
                    "{name} is given more than once"
                )));
            }
        }
        Ok(Self(pairs))
    }

    /// A field's value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn check_content_type(headers: &HeaderMap) -> Result<(), NeteaseError> {
    const EXPECTED: &str =
        "bad http header: Content-Type must be application/x-www-form-urlencoded";
    // NetEase's own samples send `…;charset=utf-8;` with a trailing `;`, which a strict media-type parser
    // refuses: tolerate it.
    let mut headers_without_trailing = HeaderMap::new();
    if let Some(value) = headers.get(header::CONTENT_TYPE) {
        let text = value
            .to_str()
            .map_err(|_| NeteaseError::param(EXPECTED))?
            .trim_end()
            .trim_end_matches(';');
        let value = HeaderValue::from_str(text).map_err(|_| NeteaseError::param(EXPECTED))?;
        headers_without_trailing.insert(header::CONTENT_TYPE, value);
    }
    let media_type = crate::extract::media_type(&headers_without_trailing)
        .ok_or(NeteaseError::param(EXPECTED))?;
    if !(media_type.type_() == mime::APPLICATION
        && media_type.subtype() == mime::WWW_FORM_URLENCODED)
    {
        return Err(NeteaseError::param(EXPECTED));
    }
    if let Some(charset) = media_type.get_param(mime::CHARSET) {
        let charset = charset.as_str();
        if !charset.eq_ignore_ascii_case("utf-8") && !charset.eq_ignore_ascii_case("utf8") {
            return Err(NeteaseError::param(
                "bad http header: charset must be UTF-8",
            ));
        }
    }
    Ok(())
}

/// The authentication headers of a call.
#[derive(Debug)]
pub struct AuthHeaders<'a> {
    /// `AppKey`.
    pub app_key: &'a str,
    /// `Nonce`, 1..=128 characters.
    pub nonce: &'a str,
    /// `CurTime` as sent (the CheckSum covers this text).
    pub cur_time_text: &'a str,
    /// `CurTime`, seconds.
    pub cur_time: i64,
    /// `CheckSum`, lowercased.
    pub checksum: String,
}

/// Longest Nonce accepted.
pub const MAX_NONCE_CHARS: usize = 128;

/// One authentication header: present exactly once (a repeated one would leave it to chance which copy is
/// checked and which is used), visible ASCII.
fn header<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<&'a str, NeteaseError> {
    let mut values = headers.get_all(name).iter();
    let value = values
        .next()
        .ok_or_else(|| NeteaseError::param(format!("bad http header: {name} is missing")))?;
    if values.next().is_some() {
        return Err(NeteaseError::param(format!(
            "bad http header: {name} is given more than once"
        )));
    }
    value
        .to_str()
        .map_err(|_| NeteaseError::param(format!("bad http header: {name} is not visible ASCII")))
}

impl<'a> AuthHeaders<'a> {
    /// Reads and checks the format of the four headers.
    pub fn parse(headers: &'a HeaderMap) -> Result<Self, NeteaseError> {
        let app_key = header(headers, "AppKey")?;
        let nonce = header(headers, "Nonce")?;
        let cur_time_text = header(headers, "CurTime")?;
        let checksum = header(headers, "CheckSum")?;
        if nonce.is_empty() || nonce.chars().count() > MAX_NONCE_CHARS {
            return Err(NeteaseError::param(format!(
                "bad http header: Nonce must be 1 to {MAX_NONCE_CHARS} characters"
            )));
        }
        // Canonical digits only: the CheckSum covers Nonce + CurTime concatenated, so a leading zero moved from
        // the Nonce into CurTime would otherwise make a replayed header set look new (see `crate::decimal`).
        let cur_time = Some(cur_time_text)
            .filter(|t| t.len() <= 12)
            .and_then(crate::decimal::parse_i64)
            .ok_or(NeteaseError::param(
                "bad http header: CurTime must be Unix time in seconds (digits, no leading zeros)",
            ))?;
        if checksum.len() != 40 || !checksum.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(NeteaseError::param(
                "checksum: CheckSum must be 40 hex digits",
            ));
        }
        Ok(Self {
            app_key,
            nonce,
            cur_time_text,
            cur_time,
            checksum: checksum.to_ascii_lowercase(),
        })
    }
}

/// The OpenAPI description of NetEase's forms and answers. The handlers read the form field by field (NetEase's
/// own rules: a field given twice is refused) and write the envelope with `json!`; these types document exactly
/// that, and the contract fuzzer checks every answer against them.
#[allow(dead_code)]
pub(super) mod schema {
    use serde::Serialize;
    use utoipa::ToSchema;

    /// The four authentication headers every call carries.
    #[derive(utoipa::IntoParams)]
    #[into_params(parameter_in = Header, rename_all = "PascalCase")]
    pub struct AuthHeaders {
        /// The app's AppKey.
        app_key: String,
        /// A random string, at most 128 characters, new for each request.
        nonce: String,
        /// Unix seconds, within netease.curtime_window_secs of the server.
        cur_time: String,
        /// hex(SHA1(AppSecret + Nonce + CurTime)), lowercase.
        check_sum: String,
    }

    /// `getToken.action` form.
    #[derive(ToSchema)]
    pub struct GetTokenForm {
        /// The user: a decimal number (1 to 20 digits, no sign, no leading zero).
        #[schema(example = "10001")]
        uid: String,
        /// Binds the token to one room; absent or empty: any room.
        #[serde(rename = "channelName")]
        channel_name: Option<String>,
        /// `true` (default): reusable until it expires; `false`: single-use.
        #[serde(rename = "repeatUse")]
        repeat_use: Option<String>,
        /// Lifetime in seconds (within ttl.netease).
        #[serde(rename = "expireAt")]
        expire_at: Option<String>,
    }

    /// `verifyToken.action` form.
    #[derive(ToSchema)]
    pub struct VerifyTokenForm {
        /// The user.
        uid: String,
        /// The room the client joins.
        #[serde(rename = "channelName")]
        channel_name: Option<String>,
        /// The token the client presented.
        token: String,
    }

    /// `revokeToken.action` form.
    #[derive(ToSchema)]
    pub struct RevokeTokenForm {
        /// The user.
        uid: String,
        /// The room of the record to revoke.
        #[serde(rename = "channelName")]
        channel_name: Option<String>,
        /// Also revoke this self-computed token until its expiry.
        token: Option<String>,
    }

    /// A failure: HTTP 200, `code` other than 200 (403, 414, 416, 417, 431, 500, 503).
    #[derive(Serialize, ToSchema)]
    pub struct Failure {
        /// NetEase's code.
        #[schema(minimum = 400, maximum = 599)]
        code: u16,
        /// What went wrong.
        desc: String,
    }

    /// `getToken.action` success.
    #[derive(Serialize, ToSchema)]
    pub struct Issued {
        /// 200.
        #[schema(minimum = 200, maximum = 200)]
        code: u16,
        /// The token.
        token: String,
    }

    /// `getToken.action` answer.
    #[derive(Serialize, ToSchema)]
    #[serde(untagged)]
    pub enum GetTokenAnswer {
        /// Issued.
        Issued(Issued),
        /// Refused.
        Failure(Failure),
    }

    /// `verifyToken.action` success.
    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "camelCase")]
    pub struct Admitted {
        /// 200.
        #[schema(minimum = 200, maximum = 200)]
        code: u16,
        /// The user.
        uid: u64,
        /// The room asked for.
        channel_name: String,
        /// Whether the token is bound to that room.
        bound_channel: bool,
        /// Whether it may be used again.
        repeat_use: bool,
        /// Expiry, Unix milliseconds.
        expires_at: i64,
        /// `issued` (by tokenmint) or `self-computed` (by the app server).
        source: String,
    }

    /// `verifyToken.action` answer.
    #[derive(Serialize, ToSchema)]
    #[serde(untagged)]
    pub enum VerifyTokenAnswer {
        /// Admitted.
        Admitted(Admitted),
        /// Refused.
        Failure(Failure),
    }

    /// `revokeToken.action` success.
    #[derive(Serialize, ToSchema)]
    pub struct Revoked {
        /// 200.
        #[schema(minimum = 200, maximum = 200)]
        code: u16,
        /// Whether anything was revoked.
        revoked: bool,
    }

    /// `revokeToken.action` answer.
    #[derive(Serialize, ToSchema)]
    #[serde(untagged)]
    pub enum RevokeTokenAnswer {
        /// Revoked (or nothing to revoke).
        Revoked(Revoked),
        /// Refused.
        Failure(Failure),
    }
}
