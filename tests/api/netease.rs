//! NetEase Yunxin getToken, verifyToken and revokeToken over HTTP: always HTTP 200, the outcome in `code`.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use sha1::{Digest, Sha1};
use tokenmint::ttl::Clock;

use crate::helpers::{settings_with, spawn_app, spawn_app_with, TestApp};
use crate::redis_server::RedisServer;

pub const APP_KEY: &str = "sampleappkey00000000000000000001";
pub const SECRET: &str = "sample-netease-secret-not-for-production";
pub const GET_TOKEN: &str = "/nimserver/user/getToken.action";
pub const VERIFY: &str = "/nimserver/user/verifyToken.action";
pub const REVOKE: &str = "/nimserver/user/revokeToken.action";
pub const FORM: &str = "application/x-www-form-urlencoded;charset=utf-8";

pub fn checksum(secret: &str, nonce: &str, cur_time: &str) -> String {
    hex::encode(Sha1::digest(
        format!("{secret}{nonce}{cur_time}").as_bytes(),
    ))
}

pub fn fresh_nonce() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// The four auth headers for `app`'s clock, with a fresh nonce.
pub fn auth_headers(app: &TestApp, secret: &str) -> Vec<(String, String)> {
    auth_headers_for(app, APP_KEY, secret)
}

/// The four auth headers of another app for `app`'s clock, with a fresh nonce.
pub fn auth_headers_for(app: &TestApp, app_key: &str, secret: &str) -> Vec<(String, String)> {
    let nonce = fresh_nonce();
    let cur_time = app.clock.now_secs().to_string();
    vec![
        ("AppKey".into(), app_key.into()),
        ("CheckSum".into(), checksum(secret, &nonce, &cur_time)),
        ("Nonce".into(), nonce),
        ("CurTime".into(), cur_time),
    ]
}

/// POSTs with the given headers and raw body; asserts HTTP 200 and the NetEase content type; returns the JSON.
pub async fn post_raw(
    app: &TestApp,
    path: &str,
    headers: &[(String, String)],
    body: Vec<u8>,
) -> Value {
    let mut request = app.client.post(app.url(path)).body(body);
    for (name, value) in headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let response = request.send().await.expect("sent");
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "NetEase routes always answer HTTP 200"
    );
    assert_eq!(
        response.headers()["content-type"],
        "application/json; charset=utf-8"
    );
    response.json().await.expect("JSON body")
}

/// A well-signed getToken-style form call with a fresh nonce, from a bare client (for spawned tasks).
pub async fn post_raw_with(
    client: &reqwest::Client,
    url: &str,
    clock: &tokenmint::ttl::ManualClock,
    body: Vec<u8>,
) -> Value {
    let nonce = fresh_nonce();
    let cur_time = clock.now_secs().to_string();
    client
        .post(url)
        .header("AppKey", APP_KEY)
        .header("CheckSum", checksum(SECRET, &nonce, &cur_time))
        .header("Nonce", nonce)
        .header("CurTime", cur_time)
        .header("Content-Type", FORM)
        .body(body)
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("JSON body")
}

/// A well-signed form call.
pub async fn call(app: &TestApp, path: &str, form: &str) -> Value {
    let mut headers = auth_headers(app, SECRET);
    headers.push(("Content-Type".into(), FORM.into()));
    post_raw(app, path, &headers, form.as_bytes().to_vec()).await
}

pub async fn get_token(app: &TestApp, form: &str) -> String {
    let body = call(app, GET_TOKEN, form).await;
    assert_eq!(body["code"], 200, "{body}");
    body["token"].as_str().expect("token").to_owned()
}

pub fn decode(token: &str) -> Value {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(token)
        .expect("standard base64");
    serde_json::from_slice(&bytes).expect("JSON")
}

pub fn self_computed(uid: u64, cur_time_ms: i64, ttl: u32, channel: &str) -> String {
    use base64::Engine;
    let signature = hex::encode(Sha1::digest(
        format!("{APP_KEY}{uid}{cur_time_ms}{ttl}{channel}{SECRET}").as_bytes(),
    ));
    base64::engine::general_purpose::STANDARD.encode(format!(
        r#"{{"signature":"{signature}","curTime":{cur_time_ms},"ttl":{ttl}}}"#
    ))
}

#[tokio::test]
async fn get_token_returns_a_token_in_the_documented_self_computed_format() {
    let app = spawn_app().await;
    let now_ms = app.clock.now_millis();
    let token = get_token(&app, "uid=123456&channelName=room1&expireAt=1800").await;
    let decoded = decode(&token);
    assert_eq!(decoded["curTime"], now_ms);
    assert_eq!(decoded["ttl"], 1800);
    assert_eq!(
        token,
        self_computed(123_456, now_ms, 1800, "room1"),
        "signature over appKey+uid+curTime+ttl+channel+secret"
    );
}

#[tokio::test]
async fn calling_again_for_the_same_uid_and_room_returns_the_same_token_and_extends_it() {
    let app = spawn_app().await;
    let first = get_token(&app, "uid=1&channelName=room1&expireAt=60").await;
    app.clock.advance(Duration::from_secs(50));
    let again = get_token(&app, "uid=1&channelName=room1&expireAt=60").await;
    assert_eq!(first, again);
    app.clock.advance(Duration::from_secs(50));
    let verdict = call(
        &app,
        VERIFY,
        &format!("uid=1&channelName=room1&token={}", urlencode(&first)),
    )
    .await;
    assert_eq!(
        verdict["code"], 200,
        "extended to 60 s from the second call: {verdict}"
    );

    let other_room = get_token(&app, "uid=1&channelName=room2").await;
    let no_room = get_token(&app, "uid=1").await;
    let other_uid = get_token(&app, "uid=2&channelName=room1").await;
    assert_ne!(first, other_room);
    assert_ne!(first, no_room);
    assert_ne!(first, other_uid);
}

#[tokio::test]
async fn an_expired_token_is_replaced_exactly_at_its_expiry() {
    let app = spawn_app().await;
    let first = get_token(&app, "uid=7&expireAt=10").await;
    app.clock.advance(Duration::from_millis(9_999));
    assert_eq!(
        get_token(&app, "uid=7&expireAt=10").await,
        first,
        "1 ms before expiry: extended"
    );
    app.clock.advance(Duration::from_millis(10_000));
    assert_ne!(
        get_token(&app, "uid=7&expireAt=10").await,
        first,
        "at expiry: a new token"
    );
}

pub fn urlencode(value: &str) -> String {
    serde_urlencoded::to_string([("v", value)]).expect("encodes")[2..].to_owned()
}

#[tokio::test]
async fn verify_admits_a_matching_token_and_refuses_other_uids_and_rooms() {
    let app = spawn_app().await;
    let bound = get_token(&app, "uid=10&channelName=room1").await;
    let unbound = get_token(&app, "uid=11").await;
    let enc = urlencode;
    let cases: Vec<(&str, String, i64)> = vec![
        (
            "bound token, its room",
            format!("uid=10&channelName=room1&token={}", enc(&bound)),
            200,
        ),
        (
            "bound token, another room",
            format!("uid=10&channelName=room2&token={}", enc(&bound)),
            403,
        ),
        (
            "bound token, another uid",
            format!("uid=12&channelName=room1&token={}", enc(&bound)),
            403,
        ),
        (
            "unbound token, any room",
            format!("uid=11&channelName=anywhere&token={}", enc(&unbound)),
            200,
        ),
        (
            "unbound token, no room",
            format!("uid=11&token={}", enc(&unbound)),
            200,
        ),
        (
            "garbage token",
            "uid=10&channelName=room1&token=abc".to_owned(),
            403,
        ),
        ("no token", "uid=10&channelName=room1".to_owned(), 414),
    ];
    for (case, form, code) in cases {
        let verdict = call(&app, VERIFY, &form).await;
        assert_eq!(verdict["code"], code, "{case}: {verdict}");
    }
}

#[tokio::test]
async fn a_single_use_token_is_admitted_once() {
    let app = spawn_app().await;
    let token = get_token(&app, "uid=20&channelName=r&repeatUse=FALSE").await;
    let form = format!("uid=20&channelName=r&token={}", urlencode(&token));
    let first = call(&app, VERIFY, &form).await;
    assert_eq!(first["code"], 200, "{first}");
    assert_eq!(first["repeatUse"], false);
    let second = call(&app, VERIFY, &form).await;
    assert_eq!(second["code"], 417, "{second}");

    let next = get_token(&app, "uid=20&channelName=r&repeatUse=false").await;
    assert_ne!(next, token, "a used token is not handed out again");
    let replay_old = call(&app, VERIFY, &form).await;
    assert_eq!(
        replay_old["code"], 403,
        "the old token does not pass as self-computed either: {replay_old}"
    );
}

#[tokio::test]
async fn tokens_computed_by_the_app_server_are_accepted_until_they_expire() {
    let app = spawn_app().await;
    let now = app.clock.now_millis();
    let token = self_computed(30, now, 60, "room1");
    let form = format!("uid=30&channelName=room1&token={}", urlencode(&token));
    let verdict = call(&app, VERIFY, &form).await;
    assert_eq!(verdict["code"], 200, "{verdict}");
    assert_eq!(verdict["source"], "self-computed");

    let wrong_room = call(
        &app,
        VERIFY,
        &format!("uid=30&channelName=room2&token={}", urlencode(&token)),
    )
    .await;
    assert_eq!(wrong_room["code"], 403);
    let any_room = self_computed(30, now, 60, "");
    let verdict = call(
        &app,
        VERIFY,
        &format!("uid=30&channelName=room9&token={}", urlencode(&any_room)),
    )
    .await;
    assert_eq!(
        verdict["code"], 200,
        "a token computed without a channel is good for any room: {verdict}"
    );
    let wrong_secret = {
        use base64::Engine;
        let sig = hex::encode(Sha1::digest(
            format!("{APP_KEY}30{now}60room1not-the-secret").as_bytes(),
        ));
        base64::engine::general_purpose::STANDARD.encode(format!(
            r#"{{"signature":"{sig}","curTime":{now},"ttl":60}}"#
        ))
    };
    let verdict = call(
        &app,
        VERIFY,
        &format!(
            "uid=30&channelName=room1&token={}",
            urlencode(&wrong_secret)
        ),
    )
    .await;
    assert_eq!(verdict["code"], 403);

    app.clock.advance(Duration::from_secs(60));
    let expired = call(&app, VERIFY, &form).await;
    assert_eq!(expired["code"], 403);
    assert_eq!(expired["desc"], "token is expired");
}

#[tokio::test]
async fn a_revoked_token_is_refused_and_the_next_call_issues_a_new_one() {
    let app = spawn_app().await;
    let token = get_token(&app, "uid=40&channelName=r").await;
    let revoked = call(&app, REVOKE, "uid=40&channelName=r").await;
    assert_eq!(revoked, serde_json::json!({"code": 200, "revoked": true}));
    let verdict = call(
        &app,
        VERIFY,
        &format!("uid=40&channelName=r&token={}", urlencode(&token)),
    )
    .await;
    assert_eq!(verdict["code"], 403);
    assert_eq!(verdict["desc"], "token was revoked");
    assert_ne!(get_token(&app, "uid=40&channelName=r").await, token);
    assert_eq!(
        call(&app, REVOKE, "uid=41").await["revoked"],
        false,
        "nothing to revoke"
    );

    let own = self_computed(42, app.clock.now_millis(), 600, "");
    let form = format!("uid=42&token={}", urlencode(&own));
    assert_eq!(
        call(&app, REVOKE, &form).await["revoked"],
        true,
        "a self-computed token can be revoked by value"
    );
    assert_eq!(call(&app, VERIFY, &form).await["code"], 403);
}

#[tokio::test]
async fn every_bad_input_gets_http_200_and_the_exact_code() {
    let app = spawn_app_with(settings_with("", &[])).await;
    let now = app.clock.now_secs();
    let signed = |nonce: &str, cur_time: String| -> Vec<(String, String)> {
        vec![
            ("AppKey".into(), APP_KEY.into()),
            ("Nonce".into(), nonce.into()),
            ("CheckSum".into(), checksum(SECRET, nonce, &cur_time)),
            ("CurTime".into(), cur_time),
            ("Content-Type".into(), FORM.into()),
        ]
    };
    let without = |name: &str| -> Vec<(String, String)> {
        signed(&fresh_nonce(), now.to_string())
            .into_iter()
            .filter(|(n, _)| n != name)
            .collect()
    };
    let with = |name: &str, value: &str| -> Vec<(String, String)> {
        signed(&fresh_nonce(), now.to_string())
            .into_iter()
            .map(|(n, v)| {
                if n == name {
                    (n, value.to_owned())
                } else {
                    (n, v)
                }
            })
            .collect()
    };
    let ok_body = b"uid=1".to_vec();
    let big = format!("uid=1&pad={}", "x".repeat(20_000)).into_bytes();
    type Headers = Vec<(String, String)>;
    let cases: Vec<(&str, Headers, Vec<u8>, i64, &str)> = vec![
        (
            "no AppKey",
            without("AppKey"),
            ok_body.clone(),
            414,
            "AppKey is missing",
        ),
        (
            "unknown AppKey",
            with("AppKey", "nosuchapp"),
            ok_body.clone(),
            414,
            "appkey",
        ),
        (
            "no Nonce",
            without("Nonce"),
            ok_body.clone(),
            414,
            "Nonce is missing",
        ),
        (
            "Nonce of 129 characters",
            signed(&"n".repeat(129), now.to_string()),
            ok_body.clone(),
            414,
            "Nonce must be 1 to 128",
        ),
        (
            "no CurTime",
            without("CurTime"),
            ok_body.clone(),
            414,
            "CurTime is missing",
        ),
        (
            "CurTime in milliseconds",
            signed(&fresh_nonce(), (now * 1000).to_string()),
            ok_body.clone(),
            414,
            "CurTime",
        ),
        (
            "CurTime not a number",
            signed(&fresh_nonce(), "abc".to_owned()),
            ok_body.clone(),
            414,
            "CurTime must be",
        ),
        (
            "CurTime 301 s old",
            signed(&fresh_nonce(), (now - 301).to_string()),
            ok_body.clone(),
            414,
            "CurTime is expired",
        ),
        (
            "CurTime 301 s ahead",
            signed(&fresh_nonce(), (now + 301).to_string()),
            ok_body.clone(),
            414,
            "CurTime is expired",
        ),
        (
            "no CheckSum",
            without("CheckSum"),
            ok_body.clone(),
            414,
            "CheckSum is missing",
        ),
        (
            "CheckSum wrong",
            with("CheckSum", &"0".repeat(40)),
            ok_body.clone(),
            414,
            "checksum",
        ),
        (
            "CheckSum not hex",
            with("CheckSum", "zz"),
            ok_body.clone(),
            414,
            "checksum",
        ),
        (
            "no Content-Type",
            without("Content-Type"),
            ok_body.clone(),
            414,
            "Content-Type",
        ),
        (
            "JSON body",
            with("Content-Type", "application/json"),
            br#"{"uid":1}"#.to_vec(),
            414,
            "Content-Type",
        ),
        (
            "multipart body",
            with("Content-Type", "multipart/form-data; boundary=x"),
            b"--x--".to_vec(),
            414,
            "Content-Type",
        ),
        (
            "charset gbk",
            with(
                "Content-Type",
                "application/x-www-form-urlencoded; charset=gbk",
            ),
            ok_body.clone(),
            414,
            "charset",
        ),
        (
            "invalid UTF-8",
            signed(&fresh_nonce(), now.to_string()),
            vec![b'u', b'i', b'd', b'=', 0xff, 0xfe],
            414,
            "UTF-8",
        ),
        (
            "body over the limit",
            signed(&fresh_nonce(), now.to_string()),
            big,
            414,
            "larger than",
        ),
        (
            "uid missing",
            signed(&fresh_nonce(), now.to_string()),
            b"channelName=r".to_vec(),
            414,
            "uid is empty",
        ),
        (
            "uid empty",
            signed(&fresh_nonce(), now.to_string()),
            b"uid=".to_vec(),
            414,
            "uid is empty",
        ),
        (
            "uid not digits",
            signed(&fresh_nonce(), now.to_string()),
            b"uid=abc".to_vec(),
            414,
            "digits only",
        ),
        (
            "uid negative",
            signed(&fresh_nonce(), now.to_string()),
            b"uid=-5".to_vec(),
            414,
            "digits only",
        ),
        (
            "uid beyond Long",
            signed(&fresh_nonce(), now.to_string()),
            b"uid=99999999999999999999".to_vec(),
            414,
            "Long range",
        ),
        (
            "uid twice",
            signed(&fresh_nonce(), now.to_string()),
            b"uid=1&uid=2".to_vec(),
            414,
            "more than once",
        ),
        (
            "repeatUse yes",
            signed(&fresh_nonce(), now.to_string()),
            b"uid=1&repeatUse=yes".to_vec(),
            414,
            "repeatUse",
        ),
        (
            "expireAt 0",
            signed(&fresh_nonce(), now.to_string()),
            b"uid=1&expireAt=0".to_vec(),
            414,
            "expireAt must be between 1 and 86400",
        ),
        (
            "expireAt 86401",
            signed(&fresh_nonce(), now.to_string()),
            b"uid=1&expireAt=86401".to_vec(),
            414,
            "expireAt must be between 1 and 86400",
        ),
        (
            "expireAt not a number",
            signed(&fresh_nonce(), now.to_string()),
            b"uid=1&expireAt=ten".to_vec(),
            414,
            "expireAt",
        ),
        (
            "channelName of 65",
            signed(&fresh_nonce(), now.to_string()),
            format!("uid=1&channelName={}", "c".repeat(65)).into_bytes(),
            414,
            "at most 64",
        ),
        (
            "channelName with a space",
            signed(&fresh_nonce(), now.to_string()),
            b"uid=1&channelName=a+b".to_vec(),
            414,
            "channelName may contain",
        ),
        (
            "channelName in Chinese",
            signed(&fresh_nonce(), now.to_string()),
            "uid=1&channelName=房间".as_bytes().to_vec(),
            414,
            "channelName may contain",
        ),
    ];
    for (case, headers, body, code, desc_part) in cases {
        let reply = post_raw(&app, GET_TOKEN, &headers, body).await;
        assert_eq!(reply["code"], code, "{case}: {reply}");
        let desc = reply["desc"]
            .as_str()
            .unwrap_or_else(|| panic!("{case}: no desc: {reply}"));
        assert!(
            desc.contains(desc_part),
            "{case}: desc {desc:?} lacks {desc_part:?}"
        );
        assert!(!desc.contains(SECRET), "{case}: no secret in desc");
    }
}

#[tokio::test]
async fn every_content_type_variant_is_accepted() {
    let app = spawn_app().await;
    for content_type in [
        "application/x-www-form-urlencoded;charset=utf-8",
        "application/x-www-form-urlencoded;charset=UTF-8",
        "application/x-www-form-urlencoded; charset=UTF-8;",
        "application/x-www-form-urlencoded",
        "application/x-www-form-urlencoded;",
        "Application/X-WWW-Form-Urlencoded; charset=\"utf-8\"",
    ] {
        let mut headers = auth_headers(&app, SECRET);
        headers.push(("Content-Type".into(), content_type.into()));
        headers.push(("RequestId".into(), "abc-123".into()));
        let reply = post_raw(&app, GET_TOKEN, &headers, b"uid=5".to_vec()).await;
        assert_eq!(reply["code"], 200, "{content_type}: {reply}");
    }
}

#[tokio::test]
async fn replayed_headers_are_refused_with_431_unless_the_guard_is_off() {
    let app = spawn_app().await;
    let mut headers = auth_headers(&app, SECRET);
    headers.push(("Content-Type".into(), FORM.into()));
    assert_eq!(
        post_raw(&app, GET_TOKEN, &headers, b"uid=1".to_vec()).await["code"],
        200
    );
    let replay = post_raw(&app, GET_TOKEN, &headers, b"uid=2&expireAt=86400".to_vec()).await;
    assert_eq!(
        replay["code"], 431,
        "a captured header set cannot carry another body: {replay}"
    );

    let lenient = spawn_app_with(settings_with(
        "",
        &[("TOKENMINT_NETEASE__REPLAY_GUARD", "false")],
    ))
    .await;
    let cur_time = lenient.clock.now_secs().to_string();
    let constant = vec![
        ("AppKey".to_owned(), APP_KEY.to_owned()),
        ("Nonce".to_owned(), "12345".to_owned()),
        ("CurTime".to_owned(), cur_time.clone()),
        ("CheckSum".to_owned(), checksum(SECRET, "12345", &cur_time)),
        ("Content-Type".to_owned(), FORM.to_owned()),
    ];
    for _ in 0..2 {
        assert_eq!(
            post_raw(&lenient, GET_TOKEN, &constant, b"uid=1".to_vec()).await["code"],
            200
        );
    }
}

#[tokio::test]
async fn an_exact_repeat_is_an_idempotent_retry_unless_the_guard_is_strict() {
    let app = spawn_app().await;
    let mut headers = auth_headers(&app, SECRET);
    headers.push(("Content-Type".into(), FORM.into()));
    let first = post_raw(&app, GET_TOKEN, &headers, b"uid=7".to_vec()).await;
    let again = post_raw(&app, GET_TOKEN, &headers, b"uid=7".to_vec()).await;
    assert_eq!(first["code"], 200, "{first}");
    assert_eq!(again, first, "the same request again: the same answer");
    let other = post_raw(&app, GET_TOKEN, &headers, b"uid=8".to_vec()).await;
    assert_eq!(other["code"], 431, "{other}");

    let strict = spawn_app_with(settings_with(
        "",
        &[("TOKENMINT_NETEASE__REPLAY_GUARD", "strict")],
    ))
    .await;
    let mut headers = auth_headers(&strict, SECRET);
    headers.push(("Content-Type".into(), FORM.into()));
    assert_eq!(
        post_raw(&strict, GET_TOKEN, &headers, b"uid=7".to_vec()).await["code"],
        200
    );
    assert_eq!(
        post_raw(&strict, GET_TOKEN, &headers, b"uid=7".to_vec()).await["code"],
        431,
        "strict: any repeat is refused"
    );
}

#[tokio::test]
async fn the_apps_rate_limit_answers_416_until_the_window_ends() {
    let app = spawn_app_with(settings_with(
        "[netease.apps.sample]\nrate_limit = 2\nrate_window_secs = 60",
        &[],
    ))
    .await;
    assert_eq!(call(&app, GET_TOKEN, "uid=1").await["code"], 200);
    assert_eq!(call(&app, GET_TOKEN, "uid=2").await["code"], 200);
    assert_eq!(call(&app, GET_TOKEN, "uid=3").await["code"], 416);
    app.clock.advance(Duration::from_secs(60));
    assert_eq!(call(&app, GET_TOKEN, "uid=3").await["code"], 200);
}

#[tokio::test]
async fn a_disabled_app_is_forbidden() {
    let app = spawn_app_with(settings_with("[netease.apps.sample]\nenabled = false", &[])).await;
    let reply = call(&app, GET_TOKEN, "uid=1").await;
    assert_eq!(
        reply,
        serde_json::json!({"code": 403, "desc": "app is forbidden"})
    );
}

#[tokio::test]
async fn a_second_app_secret_works_during_a_rotation() {
    let app = spawn_app_with(settings_with(
        "[netease.apps.sample.secrets]\nnext = \"rotated-secret\"",
        &[],
    ))
    .await;
    for secret in [SECRET, "rotated-secret"] {
        let mut headers = auth_headers(&app, secret);
        headers.push(("Content-Type".into(), FORM.into()));
        assert_eq!(
            post_raw(&app, GET_TOKEN, &headers, b"uid=1".to_vec()).await["code"],
            200,
            "{secret}"
        );
    }
}

#[tokio::test]
async fn unknown_paths_and_methods_keep_the_netease_envelope() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url(GET_TOKEN))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<Value>().await.expect("json")["code"], 414);
    let reply = call(&app, "/nimserver/user/create.action", "accid=1").await;
    assert_eq!(reply["code"], 414);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_outage_is_answered_503_in_the_envelope() {
    let server = RedisServer::start();
    let url = server.url();
    let app = crate::helpers::spawn_on_redis(&url).await;
    assert_eq!(call(&app, GET_TOKEN, "uid=1").await["code"], 200);
    drop(server);
    let reply = call(&app, GET_TOKEN, "uid=1").await;
    assert_eq!(reply["code"], 503, "{reply}");
}

/// Runs the concurrency checks on one app: 50 parallel getToken calls for one uid and room give one token, and
/// 100 parallel first uses of a repeatUse=false token admit exactly one.
async fn races(app: &TestApp, other: &TestApp) {
    let calls: Vec<_> = (0..50)
        .map(|i| {
            let target = if i % 2 == 0 { app } else { other };
            call(target, GET_TOKEN, "uid=77&channelName=race")
        })
        .collect();
    let tokens: std::collections::HashSet<String> = futures::future::join_all(calls)
        .await
        .into_iter()
        .map(|reply| reply["token"].as_str().expect("token").to_owned())
        .collect();
    assert_eq!(tokens.len(), 1, "one token for one uid and room");

    let once = get_token(app, "uid=78&channelName=race&repeatUse=false").await;
    let form = format!("uid=78&channelName=race&token={}", urlencode(&once));
    let uses: Vec<_> = (0..100)
        .map(|i| call(if i % 2 == 0 { app } else { other }, VERIFY, &form))
        .collect();
    let admitted = futures::future::join_all(uses)
        .await
        .into_iter()
        .filter(|r| r["code"] == 200)
        .count();
    assert_eq!(admitted, 1, "exactly one first use");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn races_on_the_embedded_store_give_one_token_and_one_admission() {
    let app = spawn_app().await;
    races(&app, &app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_sharing_redis_agree_under_races() {
    let server = RedisServer::start();
    let url = server.url();
    let a = crate::helpers::spawn_on_redis(&url).await;
    let b = crate::helpers::spawn_on_redis(&url).await;
    races(&a, &b).await;

    let mut headers = auth_headers(&a, SECRET);
    headers.push(("Content-Type".into(), FORM.into()));
    let first = post_raw(&a, GET_TOKEN, &headers, b"uid=1".to_vec()).await;
    assert_eq!(first["code"], 200);
    let retry = post_raw(&b, GET_TOKEN, &headers, b"uid=1".to_vec()).await;
    assert_eq!(
        retry["token"], first["token"],
        "an exact retry through the other instance is answered: {retry}"
    );
    assert_eq!(
        post_raw(&b, GET_TOKEN, &headers, b"uid=2".to_vec()).await["code"],
        431,
        "the replay guard spans instances"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_written_like_netease_samples_works_unchanged() {
    let app = spawn_app().await;
    let base = format!("http://{}", app.addr);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/netease_client.py");
    let python = crate::twilio_library::python().clone();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .args([script, &base, APP_KEY, SECRET])
            .output()
            .expect("python runs")
    })
    .await
    .expect("joined");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let results: Vec<Value> = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(results.len(), 6);
    for result in &results {
        assert_eq!(result["status"], 200, "{result}");
        assert_eq!(
            result["content_type_header"],
            "application/json; charset=utf-8"
        );
        assert_eq!(result["body"]["code"], 200, "{result}");
        assert!(
            result["body"]["token"]
                .as_str()
                .is_some_and(|t| !t.is_empty()),
            "{result}"
        );
    }
    assert_eq!(
        results[5]["body"]["token"], results[0]["body"]["token"],
        "same uid and room: same token"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_a_redis_cluster_agree_under_races_and_are_ready() {
    let cluster = crate::redis_server::RedisCluster::start();
    let url = cluster.url();
    let limited = [("TOKENMINT_MECLOUD__RATE_LIMIT", "3")];
    let a = crate::helpers::spawn_on_redis_cluster(&url, &limited).await;
    let b = crate::helpers::spawn_on_redis_cluster(&url, &limited).await;
    for app in [&a, &b] {
        let ready = app
            .client
            .get(app.url("/readyz"))
            .send()
            .await
            .expect("sent");
        assert_eq!(ready.status(), StatusCode::OK, "every slot is served");
    }
    races(&a, &b).await;
    // Many uids spread over the cluster's slots, each through both instances.
    for uid in 100..140 {
        let token = get_token(&a, &format!("uid={uid}")).await;
        assert_eq!(get_token(&b, &format!("uid={uid}")).await, token);
    }

    // MeCloud: single exchange and the per-key rate limit hold across instances.
    use crate::mecloud::{post, request_for, CHANNEL_KEY, EXCHANGE};
    let once = request_for(&a, "1", "shared", CHANNEL_KEY);
    assert_eq!(post(&a, EXCHANGE, &once).await.status(), StatusCode::OK);
    assert_eq!(
        post(&b, EXCHANGE, &once).await.status(),
        StatusCode::CONFLICT,
        "b knows a exchanged it"
    );
    for (app, key) in [(&b, "r1"), (&a, "r2")] {
        let fresh = request_for(app, "1", key, CHANNEL_KEY);
        assert_eq!(post(app, EXCHANGE, &fresh).await.status(), StatusCode::OK);
    }
    let over = request_for(&b, "1", "r3", CHANNEL_KEY);
    assert_eq!(
        post(&b, EXCHANGE, &over).await.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "the fourth exchange of the key, across both instances"
    );

    // Twilio: a revocation made on one instance is refused on the other.
    let minted = a
        .mint_ok(
            crate::helpers::KEY_1,
            &serde_json::json!({"identity": "alice"}),
        )
        .await;
    let token = minted["token"].as_str().expect("token");
    let revoked = a
        .post_twilio(
            "/twilio/v1/tokens/revoke",
            crate::helpers::KEY_1,
            &serde_json::json!({ "token": token }),
        )
        .await;
    assert_eq!(revoked.status(), StatusCode::OK);
    assert_eq!(
        b.verify(crate::helpers::KEY_1, token).await["error"]["code"],
        "token_revoked"
    );
}

/// A well-signed call with the system clock's CurTime to a service at `base` (the real binary), with the sample
/// app; `None` when the service did not answer (it was killed, say).
pub async fn post_signed(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    form: &str,
) -> Option<Value> {
    post_signed_as(client, base, path, (APP_KEY, SECRET), form).await
}

/// Like [`post_signed`], for the app `(app_key, secret)`.
pub async fn post_signed_as(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    (app_key, secret): (&str, &str),
    form: &str,
) -> Option<Value> {
    let nonce = fresh_nonce();
    let cur_time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs()
        .to_string();
    client
        .post(format!("{base}{path}"))
        .header("AppKey", app_key)
        .header("CheckSum", checksum(secret, &nonce, &cur_time))
        .header("Nonce", nonce)
        .header("CurTime", cur_time)
        .header("Content-Type", FORM)
        .body(form.to_owned())
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
}
