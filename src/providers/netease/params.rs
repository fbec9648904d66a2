//! The form body and headers of NetEase calls, parsed into domain types.
//!
//! Every problem is a [`NeteaseError`] with code 414 and a `desc` that names it, the way NetEase answers.

use std::borrow::Cow;

use axum::http::HeaderMap;

use super::NeteaseError;

/// A user id: NetEase's `Long`, digits only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uid(u64);

impl Uid {
    /// The number.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl TryFrom<Option<&str>> for Uid {
    type Error = NeteaseError;

    fn try_from(value: Option<&str>) -> Result<Self, Self::Error> {
        let value = value.unwrap_or_default();
        if value.is_empty() {
            return Err(NeteaseError::param("uid is empty"));
        }
        if !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(NeteaseError::param("uid must be a Long: digits only"));
        }
        if !crate::decimal::is_canonical(value) {
            return Err(NeteaseError::param(
                "uid must be a Long without leading zeros",
            ));
        }
        crate::decimal::parse_i64(value)
            .and_then(|n| u64::try_from(n).ok())
            .map(Self)
            .ok_or_else(|| NeteaseError::param("uid is out of the Long range"))
    }
}

/// A room name; empty means "any room".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelName(String);

/// The characters NERTC allows in a channel name besides ASCII letters and digits.
const CHANNEL_SPECIALS: &str = "!#$%&()+-:;<=.>?@[]^_{|}~,";

impl ChannelName {
    /// Parses an optional channelName; an absent or empty one is "any room".
    pub fn parse(value: Option<&str>, max_chars: usize) -> Result<Self, NeteaseError> {
        let value = value.unwrap_or_default();
        if value.chars().count() > max_chars {
            return Err(NeteaseError::param(format!(
                "channelName must be at most {max_chars} characters"
            )));
        }
        if !value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || CHANNEL_SPECIALS.contains(c))
        {
            return Err(NeteaseError::param(format!(
                "channelName may contain only ASCII letters, digits and {CHANNEL_SPECIALS}"
            )));
        }
        Ok(Self(value.to_owned()))
    }

    /// The name ("" for any room).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The rooms a token may be bound to and still admit here: this room, then "any room".
    pub fn candidate_rooms(&self) -> Vec<&str> {
        if self.0.is_empty() {
            vec![""]
        } else {
            vec![self.as_str(), ""]
        }
    }
}

/// Parses `repeatUse`: `true`/`false` in any case; absent means `true`.
pub fn repeat_use(value: Option<&str>) -> Result<bool, NeteaseError> {
    match value {
        None | Some("") => Ok(true),
        Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
        Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
        Some(_) => Err(NeteaseError::param("repeatUse must be true or false")),
    }
}

/// The form fields of a request.
#[derive(Debug, Default)]
pub struct Form(Vec<(String, String)>);

impl Form {
    /// Checks the Content-Type (`application/x-www-form-urlencoded`, any charset spelling of UTF-8, trailing `;`
    /// tolerated) and decodes the body.
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
    let value = headers
        .get(axum::http::header::CONTENT_TYPE)
        .ok_or(NeteaseError::param(EXPECTED))?
        .to_str()
        .map_err(|_| NeteaseError::param(EXPECTED))?;
    let mut parts = value.split(';');
    let media_type = parts.next().unwrap_or_default().trim();
    if !media_type.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return Err(NeteaseError::param(EXPECTED));
    }
    for parameter in parts.map(str::trim).filter(|p| !p.is_empty()) {
        let (name, value) = parameter.split_once('=').unwrap_or((parameter, ""));
        if name.trim().eq_ignore_ascii_case("charset") {
            let charset = value.trim().trim_matches('"');
            if !charset.eq_ignore_ascii_case("utf-8") && !charset.eq_ignore_ascii_case("utf8") {
                return Err(NeteaseError::param(
                    "bad http header: charset must be UTF-8",
                ));
            }
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

impl NeteaseError {
    /// A 414 parameter error.
    pub fn param(desc: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code: 414,
            desc: desc.into(),
        }
    }
}
