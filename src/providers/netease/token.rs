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

/// Decodes a token; `None` when it is not base64 of the documented JSON.
pub fn decode(token: &str) -> Option<SelfToken> {
    let bytes = STANDARD
        .decode(token)
        .or_else(|_| STANDARD_NO_PAD.decode(token.trim_end_matches('=')))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
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
    fn decode_refuses_what_is_not_a_token() {
        assert_eq!(decode("not base64!"), None);
        assert_eq!(decode(&STANDARD.encode("{}")), None);
        assert_eq!(decode(""), None);
    }
}
