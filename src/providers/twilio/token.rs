//! Signing and checking Twilio Access Tokens (HS256 JWTs with `cty: twilio-fpa;v=1`).

use std::sync::LazyLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use serde::Serialize;
use serde_json::{json, Value};
use sha2::Sha256;

use super::grants::{Grants, Region};
use super::sid::Sid;

/// The content type Twilio puts in the header of every Access Token.
pub const CONTENT_TYPE: &str = "twilio-fpa;v=1";

/// The claims of an Access Token, in the names of Twilio's helper libraries.
#[derive(Debug, Serialize)]
pub struct Claims<'a> {
    /// `<API key SID>-<unix seconds>-<random>`: the libraries' format plus a suffix that keeps two tokens minted in
    /// the same second apart.
    pub jti: String,
    /// The API key SID that signed the token.
    pub iss: &'a Sid,
    /// The account SID.
    pub sub: &'a Sid,
    /// Issue time.
    pub iat: i64,
    /// Not-before.
    pub nbf: i64,
    /// Expiry.
    pub exp: i64,
    /// Identity and product grants.
    pub grants: &'a Grants,
}

/// Builds the `jti` claim.
pub fn new_jti(key_sid: &Sid, now_secs: i64) -> String {
    let suffix: u64 = rand::random();
    format!("{key_sid}-{now_secs}-{suffix:016x}")
}

/// An API key's HMAC-SHA256 state, keyed once at start-up so each mint only hashes its own message.
#[derive(Clone)]
pub struct SigningKey {
    mac: Hmac<Sha256>,
}

impl SigningKey {
    /// Keys the HMAC with the API key secret.
    pub fn new(secret: &[u8]) -> Self {
        Self {
            // HMAC accepts keys of any length, so this cannot fail.
            mac: <Hmac<Sha256> as Mac>::new_from_slice(secret)
                .unwrap_or_else(|_| unreachable!("hmac takes any key")),
        }
    }
}

/// The header segment without a region: the same for every token, so it is encoded once.
static PLAIN_HEADER: LazyLock<String> = LazyLock::new(|| encode_header(None));

fn encode_header(region: Option<&Region>) -> String {
    let header = match region {
        Some(region) => {
            json!({"alg": "HS256", "typ": "JWT", "cty": CONTENT_TYPE, "twr": region.as_str()})
        }
        None => json!({"alg": "HS256", "typ": "JWT", "cty": CONTENT_TYPE}),
    };
    URL_SAFE_NO_PAD.encode(header.to_string())
}

/// Signs `claims` with `key`: `base64url(header).base64url(claims).base64url(HMAC-SHA256)`, adding `twr` to the
/// header when a region is given. (jsonwebtoken checks these tokens on the verify route and in the tests.)
pub fn sign(
    claims: &Claims<'_>,
    region: Option<&Region>,
    key: &SigningKey,
) -> Result<String, serde_json::Error> {
    let mut payload = Vec::with_capacity(512);
    serde_json::to_writer(&mut payload, claims)?;
    let mut token = String::with_capacity(96 + payload.len() * 4 / 3 + 48);
    match region {
        Some(region) => token.push_str(&encode_header(Some(region))),
        None => token.push_str(&PLAIN_HEADER),
    }
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(&payload, &mut token);
    let mut mac = key.mac.clone();
    mac.update(token.as_bytes());
    let signature = mac.finalize().into_bytes();
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(signature, &mut token);
    Ok(token)
}

/// Why a token failed verification; each reason has a stable code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// Not three base64url JSON parts.
    #[error("token is not a well-formed JWT")]
    Malformed,
    /// Header says another algorithm.
    #[error("token is not signed with HS256")]
    UnsupportedAlgorithm,
    /// Header lacks Twilio's content type.
    #[error("token is not a Twilio Access Token (header cty is not twilio-fpa;v=1)")]
    NotAccessToken,
    /// A required claim is missing or of the wrong type.
    #[error("token claim {0} is missing or not of the expected type")]
    MissingClaim(&'static str),
    /// Issued for another account than the caller's.
    #[error("token was issued for another account")]
    WrongAccount,
    /// Signed by an API key not configured for the caller's account (unknown, or removed in a rotation).
    #[error("token was signed by an API key that is not configured for this account")]
    UnknownKey,
    /// Signature does not match.
    #[error("token signature does not match")]
    BadSignature,
    /// Past `exp` (plus leeway).
    #[error("token expired at {exp} (now {now}, leeway {leeway}s)")]
    Expired {
        /// The token's expiry.
        exp: i64,
        /// The server's time.
        now: i64,
        /// Leeway applied.
        leeway: u64,
    },
    /// Before `nbf` (minus leeway). Carries the otherwise verified token, so it can still be revoked.
    #[error("token is not valid before {nbf} (now {now}, leeway {leeway}s)")]
    NotYetValid {
        /// The genuine token.
        verified: Box<Verified>,
        /// The token's not-before.
        nbf: i64,
        /// The server's time.
        now: i64,
        /// Leeway applied.
        leeway: u64,
    },
    /// Revoked through the revoke route; refused until its natural expiry.
    #[error("token was revoked")]
    Revoked,
    /// Genuine, but expires further ahead than the TTL policy allows a token to live (plus leeway): only a
    /// token signed outside tokenmint can, and a revocation could not be kept for its whole life.
    #[error("token expires at {exp}, later than the TTL policy allows (now {now} + max {max}s + leeway)")]
    LifetimeExceedsPolicy {
        /// The token's expiry.
        exp: i64,
        /// The server's time.
        now: i64,
        /// The policy's longest TTL, seconds.
        max: u32,
    },
}

impl VerifyError {
    /// Stable machine-readable reason.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed => "malformed_token",
            Self::UnsupportedAlgorithm => "unsupported_algorithm",
            Self::NotAccessToken => "not_access_token",
            Self::MissingClaim(_) => "missing_claim",
            Self::WrongAccount => "wrong_account",
            Self::UnknownKey => "unknown_key",
            Self::BadSignature => "bad_signature",
            Self::Expired { .. } => "token_expired",
            Self::NotYetValid { .. } => "token_not_yet_valid",
            Self::Revoked => "token_revoked",
            Self::LifetimeExceedsPolicy { .. } => "lifetime_exceeds_policy",
        }
    }
}

/// A token that passed verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verified {
    /// The decoded header.
    pub header: Value,
    /// The decoded claims.
    pub claims: Value,
}

/// The token's header and unverified claims, for choosing the key.
pub struct Unverified {
    header: Header,
    claims: Value,
}

impl Unverified {
    /// Splits and decodes without checking the signature.
    pub fn parse(token: &str) -> Result<Self, VerifyError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| VerifyError::Malformed)?;
        if header.alg != Algorithm::HS256 {
            return Err(VerifyError::UnsupportedAlgorithm);
        }
        if header.cty.as_deref() != Some(CONTENT_TYPE) {
            return Err(VerifyError::NotAccessToken);
        }
        let claims: Value = jsonwebtoken::dangerous::insecure_decode(token)
            .map(|data| data.claims)
            .map_err(|_| VerifyError::Malformed)?;
        Ok(Self { header, claims })
    }

    /// A string claim.
    pub fn str_claim(&self, name: &'static str) -> Result<&str, VerifyError> {
        self.claims
            .get(name)
            .and_then(Value::as_str)
            .ok_or(VerifyError::MissingClaim(name))
    }

    /// An integer claim, if present.
    pub fn i64_claim(&self, name: &str) -> Option<i64> {
        self.claims.get(name).and_then(Value::as_i64)
    }

    /// Checks the signature with `key`, then `exp` and `nbf` against `now` with `leeway` seconds.
    pub fn verify(
        self,
        token: &str,
        key: &DecodingKey,
        now: i64,
        leeway: u64,
    ) -> Result<Verified, VerifyError> {
        let mut validation = Validation::new(Algorithm::HS256);
        // Time is checked below against the injected clock, not the system clock jsonwebtoken would read.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        jsonwebtoken::decode::<Value>(token, key, &validation).map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature => VerifyError::BadSignature,
            _ => VerifyError::Malformed,
        })?;
        let exp = self
            .claims
            .get("exp")
            .and_then(Value::as_i64)
            .ok_or(VerifyError::MissingClaim("exp"))?;
        let leeway_i = i64::try_from(leeway).unwrap_or(i64::MAX);
        // PyJWT's rule: expired when exp <= now - leeway.
        if exp <= now.saturating_sub(leeway_i) {
            return Err(VerifyError::Expired { exp, now, leeway });
        }
        let header = serde_json::to_value(&self.header).map_err(|_| VerifyError::Malformed)?;
        let nbf = match self.claims.get("nbf") {
            Some(nbf) => Some(nbf.as_i64().ok_or(VerifyError::MissingClaim("nbf"))?),
            None => None,
        };
        let verified = Verified {
            header,
            claims: self.claims,
        };
        match nbf {
            Some(nbf) if nbf > now.saturating_add(leeway_i) => Err(VerifyError::NotYetValid {
                verified: Box::new(verified),
                nbf,
                now,
                leeway,
            }),
            _ => Ok(verified),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::twilio::grants::{GrantDefaults, GrantsRequest, Identity};
    use crate::providers::twilio::sid::SidKind;

    #[test]
    fn signed_token_has_twilio_header_and_verifies_with_the_same_secret() {
        let key_sid =
            Sid::parse("SK0123456789abcdef0123456789abcdef", SidKind::ApiKey).expect("sid");
        let account =
            Sid::parse("AC0123456789abcdef0123456789abcdef", SidKind::Account).expect("sid");
        let grants = Grants::parse(
            Identity::try_from(Some("alice@example.com".to_owned())).expect("identity"),
            GrantsRequest::default(),
            &GrantDefaults::default(),
        )
        .expect("grants");
        let claims = Claims {
            jti: new_jti(&key_sid, 1_795_355_845),
            iss: &key_sid,
            sub: &account,
            iat: 1_795_355_845,
            nbf: 1_795_355_845,
            exp: 1_795_359_445,
            grants: &grants,
        };
        let region = Region::try_from("ie1").expect("region");
        let token = sign(&claims, Some(&region), &SigningKey::new(b"secret")).expect("signed");
        let plain = sign(&claims, None, &SigningKey::new(b"secret")).expect("signed");
        assert_eq!(
            jsonwebtoken::decode_header(&plain)
                .expect("header")
                .extras
                .get::<String>("twr")
                .expect("twr"),
            None
        );
        let header = jsonwebtoken::decode_header(&token).expect("header");
        assert_eq!(header.cty.as_deref(), Some(CONTENT_TYPE));
        assert_eq!(header.typ.as_deref(), Some("JWT"));
        assert_eq!(
            header.extras.get::<String>("twr").expect("twr"),
            Some("ie1".to_owned())
        );

        let unverified = Unverified::parse(&token).expect("parses");
        let verified = unverified
            .verify(
                &token,
                &DecodingKey::from_secret(b"secret"),
                1_795_355_845,
                0,
            )
            .expect("verifies");
        assert_eq!(verified.claims["grants"]["identity"], "alice@example.com");

        let wrong = Unverified::parse(&token).expect("parses");
        assert_eq!(
            wrong
                .verify(
                    &token,
                    &DecodingKey::from_secret(b"other"),
                    1_795_355_845,
                    0
                )
                .err(),
            Some(VerifyError::BadSignature)
        );
        let late = Unverified::parse(&token).expect("parses");
        assert_eq!(
            late.verify(
                &token,
                &DecodingKey::from_secret(b"secret"),
                1_795_359_445,
                0
            )
            .err()
            .map(|e| e.code()),
            Some("token_expired"),
            "expired exactly at exp, as PyJWT decides"
        );
    }

    #[test]
    fn two_jtis_in_the_same_second_differ() {
        let key_sid =
            Sid::parse("SK0123456789abcdef0123456789abcdef", SidKind::ApiKey).expect("sid");
        assert_ne!(new_jti(&key_sid, 1), new_jti(&key_sid, 1));
        assert!(new_jti(&key_sid, 1).starts_with("SK0123456789abcdef0123456789abcdef-1-"));
    }
}
