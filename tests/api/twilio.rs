//! Twilio-style Access Tokens over HTTP.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use tokenmint::ttl::Clock;

use crate::helpers::{
    assert_error, basic, decode_parts, settings_with, spawn_app, spawn_app_with, ACCOUNT_SID,
    KEY_1, KEY_2,
};

const MINT: &str = "/twilio/v1/tokens";

#[tokio::test]
async fn mint_returns_a_token_with_twilio_header_claims_and_grants() {
    let app = spawn_app().await;
    let now = app.clock.now_secs();

    let body = app
        .mint_ok(
            KEY_1,
            &json!({"identity": "alice@example.com", "grants": {"chat": {"endpoint_id": "app:alice:d1"}, "video": {"room": "DailyStandup"}}}),
        )
        .await;

    assert_eq!(body["identity"], "alice@example.com");
    assert_eq!(body["ttl"], 3600);
    assert_eq!(body["expires_at"], now + 3600);
    let (header, claims) = decode_parts(body["token"].as_str().expect("token"));
    assert_eq!(
        header,
        json!({"alg": "HS256", "typ": "JWT", "cty": "twilio-fpa;v=1"}),
        "no twr without a region"
    );
    assert_eq!(claims["iss"], KEY_1.0);
    assert_eq!(claims["sub"], ACCOUNT_SID);
    assert_eq!(claims["nbf"], now);
    assert_eq!(claims["iat"], now);
    assert_eq!(claims["exp"], now + 3600);
    assert!(claims["jti"]
        .as_str()
        .expect("jti")
        .starts_with(&format!("{}-{now}-", KEY_1.0)));
    assert_eq!(
        claims["grants"],
        json!({
            "identity": "alice@example.com",
            "chat": {"service_sid": "IS00000000000000000000000000000000", "endpoint_id": "app:alice:d1"},
            "video": {"room": "DailyStandup"}
        }),
        "the account's default chat service fills in"
    );
}

#[tokio::test]
async fn mint_adds_the_region_header_only_when_a_region_is_asked_for() {
    let app = spawn_app().await;
    let body = app
        .mint_ok(KEY_1, &json!({"identity": "alice", "region": "ie1"}))
        .await;
    let (header, _) = decode_parts(body["token"].as_str().expect("token"));
    assert_eq!(header["twr"], "ie1");
}

#[tokio::test]
async fn two_tokens_minted_in_the_same_second_have_different_jtis() {
    let app = spawn_app().await;
    let request = json!({"identity": "alice"});
    let first = app.mint_ok(KEY_1, &request).await;
    let second = app.mint_ok(KEY_1, &request).await;
    let jti = |b: &Value| decode_parts(b["token"].as_str().expect("token")).1["jti"].clone();
    assert_eq!(
        first["expires_at"], second["expires_at"],
        "same clock second"
    );
    assert_ne!(jti(&first), jti(&second));
}

#[tokio::test]
async fn mint_accepts_ttl_at_both_bounds_and_refuses_outside_them() {
    let app = spawn_app().await;
    for ttl in [1, 86_400] {
        let body = app
            .mint_ok(KEY_1, &json!({"identity": "a", "ttl": ttl}))
            .await;
        assert_eq!(body["ttl"], ttl);
    }
    for ttl in [0, -5, 86_401] {
        let response = app
            .post_twilio(MINT, KEY_1, &json!({"identity": "a", "ttl": ttl}))
            .await;
        let (code, message) = assert_error(response, StatusCode::BAD_REQUEST).await;
        assert_eq!(code, "invalid_ttl", "ttl {ttl}");
        assert_eq!(
            message, "ttl must be between 1 and 86400 seconds",
            "ttl {ttl}"
        );
    }
}

#[tokio::test]
async fn ttl_bounds_and_default_come_from_configuration() {
    let app = spawn_app_with(settings_with(
        "[ttl.twilio]\nmin = 180\ndefault = 900\nmax = 7200",
        &[],
    ))
    .await;
    let body = app.mint_ok(KEY_1, &json!({"identity": "a"})).await;
    assert_eq!(body["ttl"], 900);
    let response = app
        .post_twilio(MINT, KEY_1, &json!({"identity": "a", "ttl": 179}))
        .await;
    let (_, message) = assert_error(response, StatusCode::BAD_REQUEST).await;
    assert_eq!(message, "ttl must be between 180 and 7200 seconds");
}

#[tokio::test]
async fn mint_refuses_bad_inputs_with_a_clear_code_and_message() {
    let app = spawn_app().await;
    let sid = |p: &str| format!("{p}0123456789abcdef0123456789abcdef");
    let cases: Vec<(&str, Value, &str, &str)> = vec![
        (
            "identity missing",
            json!({}),
            "invalid_identity",
            "identity is required",
        ),
        (
            "identity empty",
            json!({"identity": ""}),
            "invalid_identity",
            "must not be empty",
        ),
        (
            "identity too long",
            json!({"identity": "x".repeat(257)}),
            "invalid_identity",
            "at most 256",
        ),
        (
            "identity with a newline",
            json!({"identity": "a\nb"}),
            "invalid_identity",
            "control characters",
        ),
        (
            "identity not a string",
            json!({"identity": 5}),
            "invalid_body",
            "invalid type",
        ),
        (
            "video identity over 128",
            json!({"identity": "v".repeat(129), "grants": {"video": {}}}),
            "invalid_identity",
            "video",
        ),
        (
            "voice identity with '@'",
            json!({"identity": "a@b", "grants": {"voice": {}}}),
            "invalid_identity",
            "voice",
        ),
        (
            "unknown top-level field",
            json!({"identity": "a", "scope": "x"}),
            "invalid_body",
            "unknown field `scope`",
        ),
        (
            "unknown grant",
            json!({"identity": "a", "grants": {"fax": {}}}),
            "invalid_body",
            "unknown field `fax`",
        ),
        (
            "unknown chat field",
            json!({"identity": "a", "grants": {"chat": {"sid": "x"}}}),
            "invalid_body",
            "unknown field `sid`",
        ),
        (
            "chat service with wrong prefix",
            json!({"identity": "a", "grants": {"chat": {"service_sid": sid("AC")}}}),
            "invalid_grant",
            "grants.chat.service_sid must be 'IS'",
        ),
        (
            "short role sid",
            json!({"identity": "a", "grants": {"chat": {"deployment_role_sid": "RL12"}}}),
            "invalid_grant",
            "deployment_role_sid",
        ),
        (
            "voice app sid wrong",
            json!({"identity": "a", "grants": {"voice": {"outgoing": {"application_sid": sid("SK")}}}}),
            "invalid_grant",
            "'AP'",
        ),
        (
            "voice params without app",
            json!({"identity": "a", "grants": {"voice": {"outgoing": {"params": {"x": 1}}}}}),
            "invalid_grant",
            "requires",
        ),
        (
            "sync service wrong",
            json!({"identity": "a", "grants": {"data_sync": {"service_sid": "IS"}}}),
            "invalid_grant",
            "data_sync.service_sid",
        ),
        (
            "workspace wrong",
            json!({"identity": "a", "grants": {"task_router": {"workspace_sid": sid("WK")}}}),
            "invalid_grant",
            "'WS'",
        ),
        (
            "empty room",
            json!({"identity": "a", "grants": {"video": {"room": ""}}}),
            "invalid_grant",
            "grants.video.room",
        ),
        (
            "player not an object",
            json!({"identity": "a", "grants": {"player": 3}}),
            "invalid_body",
            "invalid type",
        ),
        (
            "bad region",
            json!({"identity": "a", "region": "Ireland!"}),
            "invalid_region",
            "region must be",
        ),
        (
            "ttl not a number",
            json!({"identity": "a", "ttl": "3600"}),
            "invalid_body",
            "invalid type",
        ),
        (
            "nbf after expiry",
            json!({"identity": "a", "ttl": 60, "nbf": 99_999_999_999_i64}),
            "invalid_nbf",
            "before the token's expiry",
        ),
        (
            "negative nbf",
            json!({"identity": "a", "nbf": -1}),
            "invalid_nbf",
            "nbf",
        ),
        (
            "body is an array",
            json!([1, 2]),
            "invalid_body",
            "invalid type",
        ),
    ];
    for (case, body, code, message_part) in cases {
        let response = app.post_twilio(MINT, KEY_1, &body).await;
        let (got_code, message) = assert_error(response, StatusCode::BAD_REQUEST).await;
        assert_eq!(got_code, code, "{case}: {message}");
        assert!(
            message.contains(message_part),
            "{case}: message {message:?} lacks {message_part:?}"
        );
    }
}

#[tokio::test]
async fn malformed_json_and_wrong_content_type_get_the_json_error_shape() {
    let app = spawn_app().await;
    let auth = basic(KEY_1.0, KEY_1.1);
    let cases = [
        (
            "truncated json",
            Some("application/json"),
            "{\"identity\":",
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            "not json",
            Some("application/json"),
            "identity=alice",
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            "empty body",
            Some("application/json"),
            "",
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            "form content type",
            Some("application/x-www-form-urlencoded"),
            "identity=a",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            "no content type",
            None,
            "{\"identity\":\"a\"}",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
    ];
    for (case, content_type, body, status, code) in cases {
        let mut request = app
            .client
            .post(app.url(MINT))
            .header("authorization", &auth)
            .body(body);
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        let response = request.send().await.expect("sent");
        let (got, message) = assert_error(response, status).await;
        assert_eq!(got, code, "{case}: {message}");
    }
}

#[tokio::test]
async fn every_authentication_failure_is_a_401_with_www_authenticate() {
    let app = spawn_app().await;
    let b64 = |s: &str| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(s)
    };
    let cases: Vec<(&str, Option<String>, &str)> = vec![
        ("no authorization header", None, "missing_credentials"),
        (
            "bearer scheme",
            Some("Bearer abc".to_owned()),
            "malformed_credentials",
        ),
        (
            "basic without a value",
            Some("Basic".to_owned()),
            "malformed_credentials",
        ),
        (
            "not base64",
            Some("Basic %%%".to_owned()),
            "malformed_credentials",
        ),
        (
            "no colon",
            Some(format!("Basic {}", b64("SKnocolon"))),
            "malformed_credentials",
        ),
        (
            "unknown key sid",
            Some(basic("SKffffffffffffffffffffffffffffffff", KEY_1.1)),
            "invalid_credentials",
        ),
        (
            "wrong secret",
            Some(basic(KEY_1.0, "wrong-secret")),
            "invalid_credentials",
        ),
        (
            "secret of another key",
            Some(basic(KEY_1.0, KEY_2.1)),
            "invalid_credentials",
        ),
        (
            "empty secret",
            Some(basic(KEY_1.0, "")),
            "invalid_credentials",
        ),
    ];
    for (case, authorization, code) in cases {
        for path in [MINT, "/twilio/v1/tokens/verify"] {
            let mut request = app
                .client
                .post(app.url(path))
                .json(&json!({"identity": "a", "token": "x"}));
            if let Some(value) = &authorization {
                request = request.header("authorization", value);
            }
            let response = request.send().await.expect("sent");
            let challenge = response
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().expect("ascii").to_owned());
            let (got, message) = assert_error(response, StatusCode::UNAUTHORIZED).await;
            assert_eq!(got, code, "{case} on {path}");
            assert!(
                challenge.is_some_and(|c| c.starts_with("Basic ")),
                "{case} on {path}: challenge"
            );
            assert!(
                !message.contains(KEY_1.1),
                "{case}: no secret in the message"
            );
        }
    }
}

#[tokio::test]
async fn a_bad_body_with_bad_credentials_is_refused_as_unauthorized_first() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url(MINT))
        .header("authorization", basic(KEY_1.0, "wrong"))
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .expect("sent");
    assert_error(response, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn both_active_keys_mint_and_each_token_is_signed_by_its_own_key() {
    let app = spawn_app().await;
    for key in [KEY_1, KEY_2] {
        let body = app.mint_ok(key, &json!({"identity": "alice"})).await;
        let token = body["token"].as_str().expect("token");
        assert_eq!(decode_parts(token).1["iss"], key.0);
        let verdict = app.verify(key, token).await;
        assert_eq!(verdict["valid"], true, "{verdict}");
    }
}

#[tokio::test]
async fn a_removed_key_can_neither_authenticate_nor_have_its_tokens_verified() {
    let old = ("SKaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1", "acme-old-secret");
    let new = ("SKaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa2", "acme-new-secret");
    let account = |keys: &[(&str, (&str, &str))]| {
        let mut toml =
            "[twilio.accounts.acme]\naccount_sid = \"ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"\n"
                .to_owned();
        for (label, (sid, secret)) in keys {
            toml.push_str(&format!(
                "[twilio.accounts.acme.api_keys.{label}]\nsid = \"{sid}\"\nsecret = \"{secret}\"\n"
            ));
        }
        toml
    };
    let before = spawn_app_with(settings_with(&account(&[("old", old), ("new", new)]), &[])).await;
    let old_token = before.mint_ok(old, &json!({"identity": "alice"})).await["token"]
        .as_str()
        .expect("token")
        .to_owned();
    assert_eq!(
        before.verify(new, &old_token).await["valid"],
        true,
        "both keys active during the rotation"
    );

    // The operator removes the old key from configuration and restarts.
    let after = spawn_app_with(settings_with(&account(&[("new", new)]), &[])).await;
    let response = after
        .post_twilio(MINT, old, &json!({"identity": "alice"}))
        .await;
    let (code, _) = assert_error(response, StatusCode::UNAUTHORIZED).await;
    assert_eq!(code, "invalid_credentials");

    let verdict = after.verify(new, &old_token).await;
    assert_eq!(verdict["valid"], false);
    assert_eq!(verdict["error"]["code"], "unknown_key", "{verdict}");
    let fresh = after.mint_ok(new, &json!({"identity": "alice"})).await;
    assert_eq!(
        after
            .verify(new, fresh["token"].as_str().expect("token"))
            .await["valid"],
        true
    );
}

#[tokio::test]
async fn verify_returns_the_decoded_claims_of_a_valid_token() {
    let app = spawn_app().await;
    let token = app
        .mint_ok(
            KEY_1,
            &json!({"identity": "alice", "grants": {"video": {}}}),
        )
        .await["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let verdict = app.verify(KEY_2, &token).await;
    assert_eq!(
        verdict["valid"], true,
        "any key of the account may verify: {verdict}"
    );
    assert_eq!(
        verdict["claims"]["grants"],
        json!({"identity": "alice", "video": {}})
    );
    assert_eq!(verdict["header"]["cty"], "twilio-fpa;v=1");
}

#[tokio::test]
async fn verify_reports_expiry_exactly_at_exp_plus_leeway() {
    let app = spawn_app_with(settings_with("", &[("TOKENMINT_TTL__LEEWAY_SECS", "10")])).await;
    let token = app
        .mint_ok(KEY_1, &json!({"identity": "alice", "ttl": 60}))
        .await["token"]
        .as_str()
        .expect("token")
        .to_owned();

    app.clock.advance(Duration::from_secs(69));
    assert_eq!(
        app.verify(KEY_1, &token).await["valid"],
        true,
        "one second before exp + leeway"
    );

    app.clock.advance(Duration::from_secs(1));
    let verdict = app.verify(KEY_1, &token).await;
    assert_eq!(verdict["valid"], false);
    assert_eq!(verdict["error"]["code"], "token_expired", "{verdict}");
}

#[tokio::test]
async fn verify_reports_a_token_that_is_not_yet_valid() {
    let app = spawn_app_with(settings_with("", &[("TOKENMINT_TTL__LEEWAY_SECS", "0")])).await;
    let nbf = app.clock.now_secs() + 120;
    let token = app
        .mint_ok(KEY_1, &json!({"identity": "alice", "nbf": nbf}))
        .await["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let verdict = app.verify(KEY_1, &token).await;
    assert_eq!(verdict["error"]["code"], "token_not_yet_valid", "{verdict}");

    app.clock.advance(Duration::from_secs(120));
    assert_eq!(app.verify(KEY_1, &token).await["valid"], true);
}

#[tokio::test]
async fn verify_names_the_exact_reason_a_token_fails() {
    let other_account = r#"
        [twilio.accounts.other]
        account_sid = "ACbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
        [twilio.accounts.other.api_keys.k]
        sid = "SKbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
        secret = "other-account-secret"
    "#;
    let app = spawn_app_with(settings_with(other_account, &[])).await;
    let other_key = ("SKbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", "other-account-secret");
    let token = app.mint_ok(KEY_1, &json!({"identity": "alice"})).await["token"]
        .as_str()
        .expect("token")
        .to_owned();
    // Change the signature's first character: the last one also carries padding bits a decoder may ignore.
    let signature_at = token.rfind('.').expect("signature") + 1;
    let replacement = if token[signature_at..].starts_with('A') {
        "B"
    } else {
        "A"
    };
    let mut tampered = token.clone();
    tampered.replace_range(signature_at..=signature_at, replacement);
    let forged = {
        use base64::Engine;
        let (header, mut claims) = decode_parts(&token);
        claims["grants"]["identity"] = json!("mallory");
        let enc =
            |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let signature = token.rsplit('.').next().expect("signature");
        format!("{}.{}.{}", enc(&header), enc(&claims), signature)
    };
    let hs384 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS384),
        &json!({"sub": ACCOUNT_SID}),
        &jsonwebtoken::EncodingKey::from_secret(KEY_1.1.as_bytes()),
    )
    .expect("encoded");
    let plain_jwt = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": ACCOUNT_SID}),
        &jsonwebtoken::EncodingKey::from_secret(KEY_1.1.as_bytes()),
    )
    .expect("encoded");

    let cases: Vec<(&str, (&str, &str), String, &str)> = vec![
        ("not a jwt", KEY_1, "hello".to_owned(), "malformed_token"),
        ("empty", KEY_1, String::new(), "malformed_token"),
        ("tampered signature", KEY_1, tampered, "bad_signature"),
        ("payload changed", KEY_1, forged, "bad_signature"),
        ("another algorithm", KEY_1, hs384, "unsupported_algorithm"),
        (
            "plain jwt without cty",
            KEY_1,
            plain_jwt,
            "not_access_token",
        ),
        (
            "checked by another account",
            other_key,
            token.clone(),
            "wrong_account",
        ),
    ];
    for (case, key, candidate, code) in cases {
        let verdict = app.verify(key, &candidate).await;
        assert_eq!(verdict["valid"], false, "{case}");
        assert_eq!(verdict["error"]["code"], code, "{case}: {verdict}");
        assert!(
            verdict["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{case}"
        );
    }
}

#[tokio::test]
async fn a_revoked_token_fails_verification_until_it_expires() {
    let app = spawn_app().await;
    let token = app
        .mint_ok(KEY_1, &json!({"identity": "alice", "ttl": 60}))
        .await["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let response = app
        .post_twilio("/twilio/v1/tokens/revoke", KEY_2, &json!({"token": token}))
        .await;
    let body = crate::helpers::assert_status(response, StatusCode::OK).await;
    assert_eq!(body["revoked"], true);
    assert_eq!(body["expires_at"], app.clock.now_secs() + 60);
    let verdict = app.verify(KEY_1, &token).await;
    assert_eq!(verdict["error"]["code"], "token_revoked", "{verdict}");

    let other = app.mint_ok(KEY_1, &json!({"identity": "alice"})).await["token"]
        .as_str()
        .expect("token")
        .to_owned();
    assert_eq!(
        app.verify(KEY_1, &other).await["valid"],
        true,
        "revocation is per token"
    );
}

#[tokio::test]
async fn revoke_refuses_tokens_it_cannot_vouch_for_and_skips_expired_ones() {
    let app = spawn_app_with(settings_with("", &[("TOKENMINT_TTL__LEEWAY_SECS", "0")])).await;
    let response = app
        .post_twilio("/twilio/v1/tokens/revoke", KEY_1, &json!({"token": "nope"}))
        .await;
    let (code, message) = assert_error(response, StatusCode::BAD_REQUEST).await;
    assert_eq!(code, "invalid_token");
    assert_eq!(message, "token is not a well-formed JWT");

    let token = app
        .mint_ok(KEY_1, &json!({"identity": "alice", "ttl": 5}))
        .await["token"]
        .clone();
    app.clock.advance(Duration::from_secs(5));
    let response = app
        .post_twilio("/twilio/v1/tokens/revoke", KEY_1, &json!({"token": token}))
        .await;
    assert_eq!(
        crate::helpers::assert_status(response, StatusCode::OK).await["revoked"],
        false
    );
}
