//! MeCloud's client token and tokenmint's accesstoken.
//!
//! The client token is `hex(SHA1(appId + "." + time + "." + randomKey + "." + secretKey))`.
//!
//! The accesstoken is an HS256 JWT whose header `kid` names the channel and the secret key it was exchanged
//! with (`<appId>:<key id>`). It is signed with a key derived (HKDF-SHA256) from a signing secret only tokenmint
//! holds (`mecloud.signing_keys`), bound to the appId, the key id and a digest of that key's secret: whoever
//! holds a channel or user key can make client tokens, never accesstokens. Verification derives the key from the
//! current configuration, so removing a channel key (or changing its secret) makes every accesstoken made with
//! it fail at once, with no list of issued accesstokens to maintain; retiring a signing secret does the same for
//! everything it signed.

use hkdf::Hkdf;
use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};
use sha2::Sha256;

/// Domain separation: these derived keys are used for nothing else.
const DERIVATION_SALT: &[u8] = b"tokenmint/mecloud/accesstoken/v2";

/// The client token for these inputs, lowercase hex.
///
/// ```
/// use tokenmint::providers::mecloud::token::client_token;
///
/// let secret = "5fbd5ac18823d870a6f0efba07b7b2fb240341a8071473a1a3f1c9a6cfdf2fb2";
/// assert_eq!(client_token("1", 1_434_962_941_344, "MEME", secret), "b833ee5db78bba606dea73b89e3c705988d2cfce");
/// ```
pub fn client_token(app_id: &str, time: i64, random_key: &str, secret_key: &str) -> String {
    let mut hasher = Sha1::new();
    hasher.update(format!("{app_id}.{time}.{random_key}.{secret_key}").as_bytes());
    hex::encode(hasher.finalize())
}

/// The HMAC key that signs accesstokens of channel `app_id` exchanged with its key `key_id` (whose secret is
/// `secret_key`), derived from tokenmint's `signing_secret`.
pub fn accesstoken_key(
    signing_secret: &[u8],
    app_id: &str,
    key_id: &str,
    secret_key: &str,
) -> [u8; 32] {
    let hkdf = Hkdf::<Sha256>::new(Some(DERIVATION_SALT), signing_secret);
    // Length-prefixed parts, so no two (appId, key id) pairs give the same info.
    let mut info = Vec::with_capacity(16 + app_id.len() + key_id.len() + 32);
    for part in [app_id.as_bytes(), key_id.as_bytes()] {
        info.extend_from_slice(&(part.len() as u64).to_be_bytes());
        info.extend_from_slice(part);
    }
    info.extend_from_slice(&Sha256::digest(secret_key.as_bytes()));
    let mut key = [0u8; 32];
    hkdf.expand(&info, &mut key)
        .unwrap_or_else(|_| unreachable!("32 bytes is a valid HKDF-SHA256 output length"));
    key
}

/// The accesstoken's claims.
#[derive(Debug, Serialize, Deserialize)]
pub struct AccessClaims {
    pub(super) iss: String,
    pub(super) aud: String,
    /// The randomKey the client chose: who the accesstoken is for.
    pub(super) sub: String,
    pub(super) app_id: String,
    pub(super) key_id: String,
    pub(super) jti: String,
    pub(super) iat: i64,
    pub(super) exp: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seeds_worked_example_hashes_to_its_sha1() {
        // sha1("1.1434962941344.MEME.5fbd…2fb2"), computed with sha1sum and Python's hashlib.
        assert_eq!(
            client_token(
                "1",
                1_434_962_941_344,
                "MEME",
                "5fbd5ac18823d870a6f0efba07b7b2fb240341a8071473a1a3f1c9a6cfdf2fb2"
            ),
            "b833ee5db78bba606dea73b89e3c705988d2cfce"
        );
    }

    #[test]
    fn accesstoken_keys_depend_on_every_input() {
        let base = accesstoken_key(b"server", "1", "alice", "user-secret");
        assert_ne!(base, accesstoken_key(b"other", "1", "alice", "user-secret"));
        assert_ne!(
            base,
            accesstoken_key(b"server", "2", "alice", "user-secret")
        );
        assert_ne!(base, accesstoken_key(b"server", "1", "bob", "user-secret"));
        assert_ne!(base, accesstoken_key(b"server", "1", "alice", "new-secret"));
        assert_ne!(
            accesstoken_key(b"server", "1a", "b", "s"),
            accesstoken_key(b"server", "1", "ab", "s"),
            "parts are length-prefixed"
        );
    }
}
