//! Token integrity under attack: no replay by re-encoding or by shifting digits, no forged accesstokens, no
//! unbounded or cross-tenant revocations, no ambiguous authentication headers.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokenmint::ttl::Clock;

use crate::helpers::{
    assert_error, assert_status, basic, settings_with, spawn_app, spawn_app_with, TestApp,
    ACCOUNT_SID, KEY_1,
};
use crate::mecloud::{self, accesstoken_for, request_for, verify_query, ALICE_KEY, CHANNEL_KEY};
use crate::netease::{
    auth_headers_for, call, checksum, decode, fresh_nonce, get_token, post_raw, self_computed,
    urlencode, APP_KEY, FORM, GET_TOKEN, REVOKE, SECRET, VERIFY,
};

// ---------------------------------------------------------------------------------------------------------------
// NetEase

/// Other spellings of the same token: padding added or removed, JSON re-spaced and re-ordered, signature in
/// upper case.
fn spellings(token: &str) -> Vec<(&'static str, String)> {
    let decoded = decode(token);
    let signature = decoded["signature"].as_str().expect("signature");
    let (cur_time, ttl) = (&decoded["curTime"], &decoded["ttl"]);
    vec![
        ("one more '='", format!("{token}=")),
        ("no padding", token.trim_end_matches('=').to_owned()),
        (
            "JSON with spaces, keys reordered",
            STANDARD.encode(format!(
                r#"{{ "ttl": {ttl}, "curTime": {cur_time}, "signature": "{signature}" }}"#
            )),
        ),
        (
            "signature in upper case",
            STANDARD.encode(format!(
                r#"{{"signature":"{}","curTime":{cur_time},"ttl":{ttl}}}"#,
                signature.to_ascii_uppercase()
            )),
        ),
    ]
}

async fn verify_code(app: &TestApp, uid: u64, channel: &str, token: &str) -> Value {
    let form = format!("uid={uid}&channelName={channel}&token={}", urlencode(token));
    call(app, VERIFY, &form).await
}

#[tokio::test]
async fn every_spelling_of_a_used_revoked_or_shortened_netease_token_is_refused() {
    let app = spawn_app().await;
    let used = get_token(&app, "uid=500&channelName=r1&repeatUse=false").await;
    assert_eq!(verify_code(&app, 500, "r1", &used).await["code"], 200);
    assert_eq!(verify_code(&app, 500, "r1", &used).await["code"], 417);

    let revoked = get_token(&app, "uid=501&channelName=r1").await;
    let answer = call(&app, REVOKE, "uid=501&channelName=r1").await;
    assert_eq!(answer["revoked"], true, "{answer}");

    let long = get_token(&app, "uid=502&channelName=r1&expireAt=3600").await;
    let shortened = get_token(&app, "uid=502&channelName=r1&expireAt=60").await;
    assert_eq!(
        long, shortened,
        "a refresh keeps the token and shortens its record"
    );
    app.clock.advance(Duration::from_secs(61));

    let cases = [
        (&used, 500, 417, "used"),
        (&revoked, 501, 403, "revoked"),
        (&long, 502, 403, "shortened by a refresh"),
    ];
    for (token, uid, code, state) in cases {
        for (how, variant) in spellings(token) {
            let verdict = verify_code(&app, uid, "r1", &variant).await;
            assert_eq!(verdict["code"], code, "{state} token, {how}: {verdict}");
        }
    }
}

#[tokio::test]
async fn every_spelling_of_a_revoked_self_computed_token_is_refused() {
    let app = spawn_app().await;
    let own = self_computed(60, app.clock.now_millis(), 600, "r1");
    let form = format!("uid=60&channelName=r1&token={}", urlencode(&own));
    assert_eq!(call(&app, REVOKE, &form).await["revoked"], true);
    for (how, variant) in spellings(&own) {
        let verdict = verify_code(&app, 60, "r1", &variant).await;
        assert_eq!(verdict["code"], 403, "{how}: {verdict}");
    }
}

#[tokio::test]
async fn headers_replayed_with_a_zero_moved_from_nonce_to_curtime_are_refused() {
    let app = spawn_app().await;
    let nonce = format!("{}0", fresh_nonce());
    let cur_time = app.clock.now_secs().to_string();
    let sum = checksum(SECRET, &nonce, &cur_time);
    let headers = |nonce: &str, cur_time: &str| {
        vec![
            ("AppKey".to_owned(), APP_KEY.to_owned()),
            ("Nonce".to_owned(), nonce.to_owned()),
            ("CurTime".to_owned(), cur_time.to_owned()),
            ("CheckSum".to_owned(), sum.clone()),
            ("Content-Type".to_owned(), FORM.to_owned()),
        ]
    };
    let first = post_raw(
        &app,
        GET_TOKEN,
        &headers(&nonce, &cur_time),
        b"uid=1".to_vec(),
    )
    .await;
    assert_eq!(first["code"], 200, "{first}");

    let shifted = headers(&nonce[..nonce.len() - 1], &format!("0{cur_time}"));
    let replay = post_raw(&app, GET_TOKEN, &shifted, b"uid=666".to_vec()).await;
    assert_eq!(replay["code"], 414, "{replay}");
    assert!(
        replay["desc"].as_str().expect("desc").contains("CurTime"),
        "{replay}"
    );
}

#[tokio::test]
async fn numbers_with_more_than_one_spelling_are_refused() {
    let app = spawn_app().await;
    for (form, what) in [
        ("uid=0500", "uid with a leading zero"),
        ("uid=500&expireAt=060", "expireAt with a leading zero"),
        ("uid=500&expireAt=%2B60", "expireAt with a plus sign"),
    ] {
        let answer = call(&app, GET_TOKEN, form).await;
        assert_eq!(answer["code"], 414, "{what}: {answer}");
    }
    let mut headers = auth_headers_for(&app, APP_KEY, SECRET);
    headers.push(("Content-Type".into(), FORM.into()));
    let plus = headers
        .iter()
        .map(|(n, v)| {
            let v = if n == "CurTime" {
                format!("+{v}")
            } else {
                v.clone()
            };
            (n.clone(), v)
        })
        .collect::<Vec<_>>();
    assert_eq!(
        post_raw(&app, GET_TOKEN, &plus, b"uid=1".to_vec()).await["code"],
        414
    );

    let time = app.clock.now_millis();
    for (text, what) in [
        (format!("0{time}"), "leading zero"),
        (format!("+{time}"), "plus sign"),
    ] {
        let body = json!({"appId": "1", "time": text, "randomKey": "k", "token": "0".repeat(40)});
        let response = mecloud::post(&app, mecloud::CHECK, &body).await;
        let (code, _) = assert_error(response, StatusCode::BAD_REQUEST).await;
        assert_eq!(code, "invalid_time", "MeCloud time with a {what}");
    }
}

const OTHER_APP: &str = "otherapp000000000000000000000002";
const OTHER_SECRET: &str = "other-netease-app-secret-for-tests";

fn two_apps() -> String {
    format!(
        "[netease.apps.other]\napp_key = \"{OTHER_APP}\"\n[netease.apps.other.secrets]\nprimary = \"{OTHER_SECRET}\"\n"
    )
}

async fn call_as(app: &TestApp, app_key: &str, secret: &str, path: &str, form: &str) -> Value {
    let mut headers = auth_headers_for(app, app_key, secret);
    headers.push(("Content-Type".into(), FORM.into()));
    post_raw(app, path, &headers, form.as_bytes().to_vec()).await
}

#[tokio::test]
async fn revoking_a_token_that_does_not_verify_for_the_caller_is_refused_and_stores_nothing() {
    let app = spawn_app_with(settings_with(&two_apps(), &[])).await;
    let now = app.clock.now_millis();
    let garbage = STANDARD.encode(format!(
        r#"{{"signature":"{}","curTime":{now},"ttl":86400}}"#,
        "0".repeat(40)
    ));
    let far = self_computed(7, now, 86_401, "");
    let other_uid = self_computed(8, now, 600, "");
    for (token, what) in [
        (garbage, "a signature that verifies for no secret"),
        (far, "a genuine token living longer than the policy"),
        (other_uid, "another uid's token"),
        ("bm90IGEgdG9rZW4=".to_owned(), "base64 of something else"),
    ] {
        let answer = call(&app, REVOKE, &format!("uid=7&token={}", urlencode(&token))).await;
        assert_eq!(answer["code"], 414, "{what}: {answer}");
    }

    let victims = get_token(&app, "uid=9&channelName=r1").await;
    let answer = call_as(
        &app,
        OTHER_APP,
        OTHER_SECRET,
        REVOKE,
        &format!("uid=9&channelName=r1&token={}", urlencode(&victims)),
    )
    .await;
    assert_eq!(answer["code"], 414, "another app's token: {answer}");
    let verdict = verify_code(&app, 9, "r1", &victims).await;
    assert_eq!(
        verdict["code"], 200,
        "the owner's token still works: {verdict}"
    );

    let own = self_computed(10, now, 600, "");
    let answer = call_as(
        &app,
        OTHER_APP,
        OTHER_SECRET,
        REVOKE,
        &format!("uid=10&token={}", urlencode(&own)),
    )
    .await;
    assert_eq!(
        answer["code"], 414,
        "another app's self-computed token: {answer}"
    );
    assert_eq!(
        verify_code(&app, 10, "", &own).await["code"],
        200,
        "still valid for its own app"
    );
}

#[tokio::test]
async fn netease_revocations_are_rate_limited_like_get_token() {
    let app = spawn_app_with(settings_with(
        "[netease.apps.sample]\nrate_limit = 2\nrate_window_secs = 60\n",
        &[],
    ))
    .await;
    for uid in 1..=2 {
        let answer = call(&app, REVOKE, &format!("uid={uid}")).await;
        assert_eq!(answer["code"], 200, "{answer}");
    }
    assert_eq!(call(&app, REVOKE, "uid=3").await["code"], 416);
    app.clock.advance(Duration::from_secs(60));
    assert_eq!(call(&app, REVOKE, "uid=3").await["code"], 200);
}

#[tokio::test]
async fn a_repeated_netease_authentication_header_is_refused() {
    let app = spawn_app().await;
    for name in ["AppKey", "Nonce", "CurTime", "CheckSum"] {
        let mut headers = auth_headers_for(&app, APP_KEY, SECRET);
        headers.push(("Content-Type".into(), FORM.into()));
        let copy = headers
            .iter()
            .find(|(n, _)| n == name)
            .cloned()
            .expect("header");
        headers.push(copy);
        let answer = post_raw(&app, GET_TOKEN, &headers, b"uid=1".to_vec()).await;
        assert_eq!(answer["code"], 414, "{name}: {answer}");
        assert_eq!(
            answer["desc"],
            format!("bad http header: {name} is given more than once")
        );
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Twilio

const OTHER_ACCOUNT: &str = "ACbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const OTHER_KEY: (&str, &str) = (
    "SKbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
    "other-account-api-key-secret-for-tests",
);

fn two_accounts() -> String {
    format!(
        "[twilio.accounts.other]\naccount_sid = \"{OTHER_ACCOUNT}\"\n[twilio.accounts.other.api_keys.k]\nsid = \"{}\"\nsecret = \"{}\"\n",
        OTHER_KEY.0, OTHER_KEY.1
    )
}

/// An Access Token signed outside tokenmint, the way Twilio's helper libraries build one.
fn signed_elsewhere(
    key: (&str, &str),
    account: &str,
    jti: &str,
    identity: &str,
    exp: i64,
) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.typ = Some("JWT".to_owned());
    header.cty = Some("twilio-fpa;v=1".to_owned());
    // Issued now (the tests' manual clock starts at the real time), or just before exp for a short token.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let iat = i64::try_from(now).expect("fits").min(exp - 1);
    let claims = json!({
        "jti": jti, "iss": key.0, "sub": account, "iat": iat, "nbf": iat, "exp": exp,
        "grants": {"identity": identity},
    });
    jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_secret(key.1.as_bytes()),
    )
    .expect("signed")
}

async fn revoke_twilio(app: &TestApp, key: (&str, &str), token: &str) -> reqwest::Response {
    app.post_twilio("/twilio/v1/tokens/revoke", key, &json!({ "token": token }))
        .await
}

#[tokio::test]
async fn revoking_one_of_two_tokens_sharing_a_jti_leaves_the_other_valid() {
    let app = spawn_app().await;
    let now = app.clock.now_secs();
    // Twilio's libraries: jti = <key SID>-<unix seconds>, the same for every token minted in that second.
    let jti = format!("{}-{now}", KEY_1.0);
    let alice = signed_elsewhere(KEY_1, ACCOUNT_SID, &jti, "alice", now + 3600);
    let bob = signed_elsewhere(KEY_1, ACCOUNT_SID, &jti, "bob", now + 3600);
    assert_status(revoke_twilio(&app, KEY_1, &alice).await, StatusCode::OK).await;
    assert_eq!(
        app.verify(KEY_1, &alice).await["error"]["code"],
        "token_revoked"
    );
    let verdict = app.verify(KEY_1, &bob).await;
    assert_eq!(verdict["valid"], true, "{verdict}");
}

#[tokio::test]
async fn an_account_cannot_revoke_another_accounts_token() {
    let app = spawn_app_with(settings_with(&two_accounts(), &[])).await;
    let minted = app.mint_ok(KEY_1, &json!({"identity": "alice"})).await;
    let victim = minted["token"].as_str().expect("token");
    let (_, claims) = crate::helpers::decode_parts(victim);
    let jti = claims["jti"].as_str().expect("jti");
    let exp = claims["exp"].as_i64().expect("exp");
    let lookalike = signed_elsewhere(OTHER_KEY, OTHER_ACCOUNT, jti, "alice", exp);
    let revoked = assert_status(
        revoke_twilio(&app, OTHER_KEY, &lookalike).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(revoked["revoked"], true);
    let verdict = app.verify(KEY_1, victim).await;
    assert_eq!(verdict["valid"], true, "{verdict}");

    let (code, _) = assert_error(
        revoke_twilio(&app, OTHER_KEY, victim).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(
        code, "invalid_token",
        "another account's token is not the caller's to revoke"
    );
}

#[tokio::test]
async fn a_twilio_token_living_longer_than_the_policy_is_refused_and_never_stored() {
    let app = spawn_app().await;
    let now = app.clock.now_secs();
    let century = signed_elsewhere(
        KEY_1,
        ACCOUNT_SID,
        "jti-1",
        "alice",
        now + 100 * 365 * 86_400,
    );
    let verdict = app.verify(KEY_1, &century).await;
    assert_eq!(verdict["valid"], false);
    assert_eq!(
        verdict["error"]["code"], "lifetime_exceeds_policy",
        "{verdict}"
    );
    let (code, _) = assert_error(
        revoke_twilio(&app, KEY_1, &century).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(code, "invalid_token");

    let day = signed_elsewhere(KEY_1, ACCOUNT_SID, "jti-2", "alice", now + 86_400);
    let verdict = app.verify(KEY_1, &day).await;
    assert_eq!(
        verdict["valid"], true,
        "the policy's maximum is fine: {verdict}"
    );
}

#[tokio::test]
async fn twilio_revocations_are_rate_limited_per_account() {
    let app = spawn_app_with(settings_with(
        "[twilio]\nrevoke_rate_limit = 2\nrevoke_rate_window_secs = 60\n",
        &[],
    ))
    .await;
    for i in 0..2 {
        let token = app
            .mint_ok(KEY_1, &json!({"identity": format!("u{i}")}))
            .await;
        let token = token["token"].as_str().expect("token");
        assert_status(revoke_twilio(&app, KEY_1, token).await, StatusCode::OK).await;
    }
    let token = app.mint_ok(KEY_1, &json!({"identity": "u3"})).await;
    let response = revoke_twilio(&app, KEY_1, token["token"].as_str().expect("token")).await;
    assert!(response.headers().contains_key("retry-after"));
    let (code, _) = assert_error(response, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(code, "rate_limited");
}

#[tokio::test]
async fn a_repeated_authorization_header_is_refused() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/twilio/v1/tokens"))
        .header("authorization", basic(KEY_1.0, KEY_1.1))
        .header(
            "authorization",
            basic("SK00000000000000000000000000000009", "x"),
        )
        .json(&json!({"identity": "alice"}))
        .send()
        .await
        .expect("sent");
    let (code, message) = assert_error(response, StatusCode::UNAUTHORIZED).await;
    assert_eq!(code, "malformed_credentials");
    assert!(message.contains("one Authorization"), "{message}");
}

// ---------------------------------------------------------------------------------------------------------------
// MeCloud

const SAMPLE_SIGNING: &str = "sample-mecloud-accesstoken-signing-secret-not-for-production";

async fn exchange(app: &TestApp, body: &Value) -> reqwest::Response {
    mecloud::post(app, mecloud::EXCHANGE, body).await
}

fn signed_accesstoken(key: &[u8], kid: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(key)).expect("signed")
}

fn accesstoken_claims(
    app: &TestApp,
    app_id: &str,
    key_id: &str,
    jti: &str,
    lifetime: i64,
) -> Value {
    let now = app.clock.now_secs();
    json!({
        "iss": "tokenmint", "aud": "mecloud", "sub": "mallory", "app_id": app_id, "key_id": key_id,
        "jti": jti, "iat": now, "exp": now + lifetime,
    })
}

#[tokio::test]
async fn an_accesstoken_forged_from_a_user_key_is_refused() {
    let app = spawn_app().await;
    let claims = accesstoken_claims(&app, "1", "user-alice", "forged", 100 * 365 * 86_400);
    // The former derivation: HMAC-SHA256(secret key, a public label), computable by anyone holding the key.
    let derived = {
        use hmac::{Hmac, Mac};
        let mut mac =
            <Hmac<sha2::Sha256> as Mac>::new_from_slice(ALICE_KEY.as_bytes()).expect("key");
        mac.update(b"tokenmint/mecloud/accesstoken/v1");
        mac.finalize().into_bytes().to_vec()
    };
    for (key, what) in [
        (derived, "key derived from the user key"),
        (ALICE_KEY.as_bytes().to_vec(), "the user key itself"),
    ] {
        let forged = signed_accesstoken(&key, "1:user-alice", &claims);
        let (code, _) =
            assert_error(verify_query(&app, &forged).await, StatusCode::UNAUTHORIZED).await;
        assert_eq!(code, "bad_signature", "{what}");
    }
    let genuine = accesstoken_for(&app, "1", "alice", ALICE_KEY).await;
    assert_status(verify_query(&app, &genuine).await, StatusCode::OK).await;
}

#[tokio::test]
async fn an_accesstoken_living_longer_than_the_policy_is_refused_whatever_its_signature() {
    let app = spawn_app().await;
    let key = tokenmint::providers::mecloud::token::accesstoken_key(
        SAMPLE_SIGNING.as_bytes(),
        "1",
        "channel",
        CHANNEL_KEY,
    );
    let two_days = signed_accesstoken(
        &key,
        "1:channel",
        &accesstoken_claims(&app, "1", "channel", "a", 2 * 86_400),
    );
    let (code, _) = assert_error(
        verify_query(&app, &two_days).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_eq!(code, "lifetime_exceeds_policy");
    let one_day = signed_accesstoken(
        &key,
        "1:channel",
        &accesstoken_claims(&app, "1", "channel", "b", 86_400),
    );
    assert_status(verify_query(&app, &one_day).await, StatusCode::OK).await;
}

#[tokio::test]
async fn signing_secrets_rotate_with_the_old_one_still_verifying_until_it_is_removed() {
    let config = |active: &str, keys: &[&str]| {
        let mut toml = format!("[mecloud]\nsigning_key = \"{active}\"\n[mecloud.signing_keys]\n");
        for label in keys {
            toml.push_str(&format!(
                "{label} = \"{label}-signing-secret-0123456789abcdef\"\n"
            ));
        }
        // The development profile's sample signing key is part of every configuration here.
        settings_with(&toml, &[])
    };
    let before = spawn_app_with(config("old", &["old"])).await;
    let old = accesstoken_for(&before, "1", "r1", CHANNEL_KEY).await;

    let during = spawn_app_with(config("new", &["old", "new"])).await;
    let new = accesstoken_for(&during, "1", "r2", CHANNEL_KEY).await;
    assert_status(verify_query(&during, &old).await, StatusCode::OK).await;
    assert_status(verify_query(&during, &new).await, StatusCode::OK).await;

    let after = spawn_app_with(config("new", &["new"])).await;
    assert_status(verify_query(&after, &new).await, StatusCode::OK).await;
    let (code, _) = assert_error(verify_query(&after, &old).await, StatusCode::UNAUTHORIZED).await;
    assert_eq!(
        code, "bad_signature",
        "a removed signing secret kills what it signed"
    );
}

#[tokio::test]
async fn one_user_key_over_its_limit_does_not_lock_out_the_channel() {
    let app = spawn_app_with(settings_with(
        "",
        &[
            ("TOKENMINT_MECLOUD__RATE_LIMIT", "3"),
            ("TOKENMINT_MECLOUD__LOCKOUT_SECS", "300"),
        ],
    ))
    .await;
    for i in 0..3 {
        accesstoken_for(&app, "1", &format!("a{i}"), ALICE_KEY).await;
    }
    let response = exchange(&app, &request_for(&app, "1", "a3", ALICE_KEY)).await;
    assert_error(response, StatusCode::TOO_MANY_REQUESTS).await;
    accesstoken_for(&app, "1", "owner", CHANNEL_KEY).await;
}

#[tokio::test]
async fn the_channel_wide_limit_caps_all_keys_together_without_a_lock_out() {
    let app = spawn_app_with(settings_with(
        "",
        &[
            ("TOKENMINT_MECLOUD__CHANNEL_RATE_LIMIT", "2"),
            ("TOKENMINT_MECLOUD__RATE_WINDOW_SECS", "60"),
        ],
    ))
    .await;
    accesstoken_for(&app, "1", "a", ALICE_KEY).await;
    accesstoken_for(&app, "1", "b", CHANNEL_KEY).await;
    let response = exchange(&app, &request_for(&app, "1", "c", CHANNEL_KEY)).await;
    assert_error(response, StatusCode::TOO_MANY_REQUESTS).await;
    app.clock.advance(Duration::from_secs(60));
    accesstoken_for(&app, "1", "d", CHANNEL_KEY).await;
}

#[tokio::test]
async fn a_revocation_is_kept_per_channel() {
    let other = "[mecloud.channels.other]\napp_id = \"other\"\n[mecloud.channels.other.keys]\nowner = \"other-channel-key\"\n";
    let app = spawn_app_with(settings_with(other, &[])).await;
    let victim = accesstoken_for(&app, "1", "alice", CHANNEL_KEY).await;
    let (_, claims) = crate::helpers::decode_parts(&victim);
    let jti = claims["jti"].as_str().expect("jti");
    // A token of the other channel carrying the same id (only tokenmint can sign one; this test plays tokenmint).
    let key = tokenmint::providers::mecloud::token::accesstoken_key(
        SAMPLE_SIGNING.as_bytes(),
        "other",
        "owner",
        "other-channel-key",
    );
    let lookalike = signed_accesstoken(
        &key,
        "other:owner",
        &accesstoken_claims(&app, "other", "owner", jti, 3600),
    );
    let response = app
        .client
        .post(app.url("/mecloud/v2/accesstoken/revoke"))
        .json(&json!({ "accesstoken": lookalike }))
        .send()
        .await
        .expect("sent");
    assert_status(response, StatusCode::OK).await;
    assert_status(verify_query(&app, &victim).await, StatusCode::OK).await;
    let (code, _) = assert_error(
        verify_query(&app, &lookalike).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_eq!(code, "accesstoken_revoked");
}

// ---------------------------------------------------------------------------------------------------------------
// Header floods

#[tokio::test]
async fn a_request_with_too_many_headers_is_answered_in_the_routes_own_shape() {
    let app = spawn_app().await;
    let mut headers = auth_headers_for(&app, APP_KEY, SECRET);
    headers.push(("Content-Type".into(), FORM.into()));
    for i in 0..150 {
        headers.push((format!("x-filler-{i}"), "1".to_owned()));
    }
    let answer = post_raw(&app, GET_TOKEN, &headers, b"uid=1".to_vec()).await;
    assert_eq!(answer["code"], 414, "NetEase keeps its envelope: {answer}");
    assert_eq!(answer["desc"], "bad http header: more than 100 headers");

    let mut request = app
        .client
        .post(app.url("/twilio/v1/tokens"))
        .header("authorization", basic(KEY_1.0, KEY_1.1))
        .json(&json!({"identity": "alice"}));
    for i in 0..150 {
        request = request.header(format!("x-filler-{i}"), "1");
    }
    let response = request.send().await.expect("sent");
    let (code, _) = assert_error(response, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE).await;
    assert_eq!(code, "too_many_headers");

    let mut headers = auth_headers_for(&app, APP_KEY, SECRET);
    headers.push(("Content-Type".into(), FORM.into()));
    for i in 0..90 {
        headers.push((format!("x-filler-{i}"), "1".to_owned()));
    }
    let answer = post_raw(&app, GET_TOKEN, &headers, b"uid=1".to_vec()).await;
    assert_eq!(answer["code"], 200, "within the limit: {answer}");
}
