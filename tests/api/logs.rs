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
