//! NetEase's documented self-computed NERTC token ("方式一：自行计算 NERTC Token"):
//! `signature = hex(SHA1(appKey + uid + curTimeMs + ttlSec + channelName + appSecret))`, and the token is the
//! standard, padded base64 of the compact JSON `{"signature":"…","curTime":<ms>,"ttl":<sec>}` in that key order.
//! tokenmint issues tokens in this format and also accepts tokens an app server computed itself.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine;
use serde::Deserialize;
use sha1::{Digest, Sha1};

/// The signature of a token.
pub fn signature(
    app_key: &str,
    uid: u64,
    cur_time_ms: i64,
    ttl_secs: u32,
    channel: &str,
    secret: &str,
) -> String {
    let mut hasher = Sha1::new();
    hasher.update(app_key.as_bytes());
    hasher.update(uid.to_string().as_bytes());
    hasher.update(cur_time_ms.to_string().as_bytes());
    hasher.update(ttl_secs.to_string().as_bytes());
    hasher.update(channel.as_bytes());
    hasher.update(secret.as_bytes());
    hex::encode(hasher.finalize())
}

/// The token text for a signature.
pub fn encode(signature: &str, cur_time_ms: i64, ttl_secs: u32) -> String {
    STANDARD.encode(format!(
        r#"{{"signature":"{signature}","curTime":{cur_time_ms},"ttl":{ttl_secs}}}"#
    ))
}

/// A decoded token.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SelfToken {
    /// Hex SHA1 signature.
    pub signature: String,
    /// Creation time, ms.
    pub cur_time: i64,
    /// Lifetime, seconds.
    pub ttl: u32,
}

impl SelfToken {
    /// The one spelling of this token: the documented encoding of its content, signature in lowercase.
    ///
    /// Decoding is lenient (padding, JSON spacing and key order, the signature's case) so tokens app servers
    /// computed with any base64 or JSON library are accepted; every spelling of one content is then one token,
    /// identified by this text wherever its state is kept (records, used and revoked markers).
    pub fn canonical(&self) -> String {
        encode(&self.signature, self.cur_time, self.ttl)
    }
}

/// Decodes a token; `None` when it is not base64 of the documented JSON with a 40-hex-digit signature. The
/// signature comes back lowercase.
pub fn decode(token: &str) -> Option<SelfToken> {
    let bytes = STANDARD
        .decode(token)
        .or_else(|_| STANDARD_NO_PAD.decode(token.trim_end_matches('=')))
        .ok()?;
    let mut decoded: SelfToken = serde_json::from_slice(&bytes).ok()?;
    if decoded.signature.len() != 40 || !decoded.signature.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    decoded.signature.make_ascii_lowercase();
    Some(decoded)
}

/// `CheckSum = hex(SHA1(AppSecret + Nonce + CurTime))`, lowercase.
///
/// ```
/// use tokenmint::providers::netease::token::checksum;
///
/// // The first test vector of NetEase's server-API documentation.
/// assert_eq!(checksum("123456789012", "12345", "1443592222"), "06f0def1a9e83ef48c9564044c4068c8834b4ae8");
/// ```
pub fn checksum(secret: &str, nonce: &str, cur_time: &str) -> String {
    let mut hasher = Sha1::new();
    hasher.update(secret.as_bytes());
    hasher.update(nonce.as_bytes());
    hasher.update(cur_time.as_bytes());
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_matches_the_specs_test_vectors() {
        assert_eq!(
            checksum("123456789012", "12345", "1443592222"),
            "06f0def1a9e83ef48c9564044c4068c8834b4ae8"
        );
        assert_eq!(
            checksum("c00000000000", "4tggger", "1693968975"),
            "49ac0c71786eec8e9b631f9d1b2339ab9902d106"
        );
    }

    #[test]
    fn token_matches_the_specs_test_vectors() {
        let app_key = "c37bf7a8758a4ed00000000000000000";
        let cases = [
            (
                1800,
                "eyJzaWduYXR1cmUiOiJlZjRmNGEwOGM1NmZiOWI5MDQ3OTE2YjZlYmZhZGY5NWFjZDc2OGViIiwiY3VyVGltZSI6MTY5Mzk2ODk3NTAwMCwidHRsIjoxODAwfQ==",
            ),
            (
                3600,
                "eyJzaWduYXR1cmUiOiJkMjZmYzFlZjk4ZWExNmM3YTkzOWFmMDZmOGE4MTk2MTJkY2QzZDU5IiwiY3VyVGltZSI6MTY5Mzk2ODk3NTAwMCwidHRsIjozNjAwfQ==",
            ),
        ];
        for (ttl, expected) in cases {
            let sig = signature(
                app_key,
                10000,
                1_693_968_975_000,
                ttl,
                "room1",
                "c00000000000",
            );
            assert_eq!(encode(&sig, 1_693_968_975_000, ttl), expected, "ttl {ttl}");
            let decoded = decode(expected).expect("decodes");
            assert_eq!(decoded.signature, sig);
            assert_eq!(decoded.cur_time, 1_693_968_975_000);
            assert_eq!(decoded.ttl, ttl);
        }
    }

    #[test]
    fn every_spelling_of_a_token_has_one_canonical_form() {
        let sig = signature("app", 7, 1_693_968_975_000, 600, "r1", "secret");
        let canonical = encode(&sig, 1_693_968_975_000, 600);
        let spaced = STANDARD.encode(format!(
            r#"{{ "ttl": 600, "curTime": 1693968975000, "signature": "{}" }}"#,
            sig.to_ascii_uppercase()
        ));
        let variants = [
            canonical.clone(),
            format!("{canonical}="),
            canonical.trim_end_matches('=').to_owned(),
            spaced,
            encode(&sig.to_ascii_uppercase(), 1_693_968_975_000, 600),
        ];
        for variant in variants {
            let decoded = decode(&variant).unwrap_or_else(|| panic!("{variant} decodes"));
            assert_eq!(decoded.canonical(), canonical, "{variant}");
        }
    }

    #[test]
    fn decode_refuses_what_is_not_a_token() {
        let short = STANDARD.encode(r#"{"signature":"abc","curTime":1,"ttl":1}"#);
        assert_eq!(decode(&short), None, "a signature is 40 hex digits");
        assert_eq!(decode("not base64!"), None);
        assert_eq!(decode(&STANDARD.encode("{}")), None);
        assert_eq!(decode(""), None);
    }
}
