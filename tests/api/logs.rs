//! Secrets and issued tokens never reach the logs, even at debug level and with JSON output.

use std::process::Command;

use serde_json::{json, Value};
use sha1::{Digest, Sha1};

use crate::helpers::{basic, temp_path, Binary, KEY_1};

const NETEASE_SECRET: &str = "sample-netease-secret-not-for-production";
const MECLOUD_SECRET: &str = "sample-mecloud-secret-not-for-production";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_never_contain_secrets_or_issued_tokens() {
    let log_path = temp_path("service.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut served = Binary::serve_with(
        &[
            ("TOKENMINT_LOG__LEVEL", "debug"),
            ("TOKENMINT_LOG__FORMAT", "json"),
        ],
        log.try_clone().expect("clone").into(),
        log.into(),
    );
    let base = format!("http://{}", served.addr);
    let client = reqwest::Client::new();
    let mut issued = Vec::new();

    let minted: Value = client
        .post(format!("{base}/twilio/v1/tokens"))
        .header("authorization", basic(KEY_1.0, KEY_1.1))
        .json(&json!({"identity": "alice"}))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    issued.push(minted["token"].as_str().expect("twilio token").to_owned());
    let wrong = client
        .post(format!("{base}/twilio/v1/tokens/verify"))
        .header(
            "authorization",
            basic(KEY_1.0, "a-wrong-secret-that-must-not-be-logged"),
        )
        .json(&json!({"token": issued[0]}))
        .send()
        .await
        .expect("sent");
    assert_eq!(wrong.status(), 401);

    let nonce = "lognonce";
    let cur_time = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs())
    .to_string();
    let checksum = hex::encode(Sha1::digest(
        format!("{NETEASE_SECRET}{nonce}{cur_time}").as_bytes(),
    ));
    let netease: Value = client
        .post(format!("{base}/nimserver/user/getToken.action"))
        .header("AppKey", "sampleappkey00000000000000000001")
        .header("Nonce", nonce)
        .header("CurTime", &cur_time)
        .header("CheckSum", &checksum)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("uid=1")
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    issued.push(netease["token"].as_str().expect("netease token").to_owned());

    let time = cur_time.parse::<i64>().expect("secs") * 1000;
    let mecloud_token = hex::encode(Sha1::digest(
        format!("1.{time}.k.{MECLOUD_SECRET}").as_bytes(),
    ));
    let exchanged: Value = client
        .post(format!("{base}/mecloud/v2/accesstoken"))
        .json(&json!({"appId": "1", "time": time, "randomKey": "k", "token": mecloud_token}))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    let accesstoken = exchanged["accesstoken"]
        .as_str()
        .expect("accesstoken")
        .to_owned();
    let verified = client
        .get(format!("{base}/mecloud/v2/accesstoken/verify"))
        .query(&[("access-token", &accesstoken)])
        .send()
        .await
        .expect("sent");
    assert_eq!(verified.status(), 200);
    issued.push(mecloud_token);
    issued.push(accesstoken);

    let _ = Command::new("kill")
        .args(["-TERM", &served.child.id().to_string()])
        .status();
    let _ = served.child.wait();
    let logs = std::fs::read_to_string(&log_path).expect("log read");
    assert!(
        logs.contains("request completed"),
        "the requests were logged: {logs}"
    );
    let secrets = [
        KEY_1.1,
        NETEASE_SECRET,
        MECLOUD_SECRET,
        "a-wrong-secret-that-must-not-be-logged",
        &checksum,
    ];
    for needle in secrets
        .iter()
        .copied()
        .chain(issued.iter().map(String::as_str))
    {
        assert!(!logs.contains(needle), "the log contains {}…", &needle[..8]);
    }
}

/// Runs the binary with `env`, makes a few calls, stops it and returns its output lines.
async fn served_lines(env: &[(&str, &str)]) -> Vec<String> {
    let log_path = temp_path("service.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut served = Binary::serve_with(env, log.try_clone().expect("clone").into(), log.into());
    let base = format!("http://{}", served.addr);
    let client = reqwest::Client::new();
    for path in ["/healthz", "/readyz"] {
        let probe = client
            .get(format!("{base}{path}"))
            .send()
            .await
            .expect("sent");
        assert_eq!(probe.status(), 200);
    }
    // A NetEase failure: HTTP 200, code 414.
    let refused: Value = client
        .post(format!("{base}/nimserver/user/getToken.action"))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(refused["code"], 414);
    let _ = Command::new("kill")
        .args(["-TERM", &served.child.id().to_string()])
        .status();
    let _ = served.child.wait();
    std::fs::read_to_string(&log_path)
        .expect("log read")
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_request_lines_carry_the_netease_code_and_latency_once_and_probes_stay_at_debug() {
    let lines = served_lines(&[("TOKENMINT_LOG__FORMAT", "json")]).await;
    let events: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();

    let completed: Vec<&Value> = events
        .iter()
        .filter(|e| e["message"] == "request completed")
        .collect();
    assert_eq!(completed.len(), 1, "probes are logged at debug: {lines:#?}");
    let line = completed[0];
    assert_eq!(line["path"], "/nimserver/user/getToken.action");
    assert_eq!(line["method"], "POST");
    assert!(
        line["request_id"].as_str().is_some_and(|id| id.len() == 32),
        "{line}"
    );
    assert_eq!(line["status"], 200);
    assert_eq!(
        line["outcome"], "414",
        "the NetEase code, not just status=200"
    );
    assert!(
        line["latency_us"].is_u64(),
        "latency in whole microseconds: {line}"
    );
    assert!(
        line.get("spans").is_none(),
        "no duplicated span list: {line}"
    );

    let banner = events
        .iter()
        .find(|e| e["message"] == "tokenmint started")
        .unwrap_or_else(|| panic!("a start-up line: {lines:#?}"));
    assert_eq!(banner["env"], "development");
    assert_eq!(banner["store"], "embedded");
    assert_eq!(banner["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(banner["netease_apps"], 1);
    assert!(banner["listener"]
        .as_str()
        .is_some_and(|l| l.starts_with("127.0.0.1:")));
    assert!(
        events.iter().any(|e| e["level"] == "WARN"
            && e["message"]
                .as_str()
                .is_some_and(|m| m.contains("credentials are public"))),
        "development warns that its sample credentials are public: {lines:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_logs_written_to_a_file_have_no_colour_codes() {
    let lines = served_lines(&[]).await;
    let completed = lines
        .iter()
        .find(|l| l.contains("request completed"))
        .unwrap_or_else(|| panic!("a request line: {lines:#?}"));
    assert!(completed.contains("outcome=\"414\""), "{completed}");
    assert!(
        lines.iter().all(|l| !l.contains('\u{1b}')),
        "no ANSI escapes: {lines:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_without_tenants_says_so_loudly_and_is_not_ready() {
    let log_path = temp_path("service.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let served = Binary::serve_with(
        &[("TOKENMINT_ENV", "production")],
        log.try_clone().expect("clone").into(),
        log.into(),
    );
    let ready = reqwest::get(format!("http://{}/readyz", served.addr))
        .await
        .expect("sent");
    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().await.expect("json");
    assert_eq!(body["checks"]["tenants"], "none configured");
    let started = std::time::Instant::now();
    loop {
        let logs = std::fs::read_to_string(&log_path).expect("log read");
        if logs.contains("ERROR") && logs.contains("NO TENANT CONFIGURED") {
            assert!(logs.contains("env=\"production\""), "{logs}");
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{logs}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
