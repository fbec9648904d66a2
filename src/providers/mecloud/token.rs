//! MeCloud's client token and tokenmint's accesstoken.
//!
//! The client token is `hex(SHA1(appId + "." + time + "." + randomKey + "." + secretKey))`.
//!
//! The accesstoken is an HS256 JWT whose header `kid` names the channel and the secret key it was exchanged
//! with (`<appId>:<key id>`), signed with a key derived from that secret key. Verification looks the key up in
//! the current configuration: removing a key (or changing its secret) makes every accesstoken derived from it
//! fail at once, with no list of issued accesstokens to maintain.

use hmac::{Hmac, Mac};
use sha1::{Digest, Sha1};
use sha2::Sha256;

/// Domain separation: the accesstoken key is derived from, never equal to, the client's secret key.
const DERIVATION_LABEL: &[u8] = b"tokenmint/mecloud/accesstoken/v1";

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

/// The HMAC key that signs accesstokens exchanged with `secret_key`.
pub fn accesstoken_key(secret_key: &str) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret_key.as_bytes())
        .unwrap_or_else(|_| unreachable!("hmac takes any key"));
    mac.update(DERIVATION_LABEL);
    mac.finalize().into_bytes().to_vec()
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
    fn accesstoken_keys_differ_per_secret_and_from_the_secret() {
        assert_ne!(accesstoken_key("a"), accesstoken_key("b"));
        assert_ne!(accesstoken_key("a"), b"a".to_vec());
        assert_eq!(accesstoken_key("a").len(), 32);
    }
}
