//! Key rotation and tenant changes without a restart: SIGHUP reloads the configuration file; a broken file is
//! refused and the running configuration keeps serving.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{basic, temp_path, Binary};
use crate::netease::post_signed_as;

const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
const KEY_ONE: (&str, &str) = (
    "SK11111111111111111111111111111111",
    "first-twilio-key-secret-0123456789abcdef",
);
const KEY_TWO: (&str, &str) = (
    "SK22222222222222222222222222222222",
    "second-twilio-key-secret-0123456789abcdef",
);
const APP_KEY: &str = "reloadapp0000000000000000000001";

fn config(keys: &[(&str, &str)], netease_secrets: &[(&str, &str)]) -> String {
    let mut toml =
        format!("env = \"production\"\n[twilio.accounts.acme]\naccount_sid = \"{ACCOUNT}\"\n");
    for (i, (sid, secret)) in keys.iter().enumerate() {
        toml.push_str(&format!(
            "[twilio.accounts.acme.api_keys.k{i}]\nsid = \"{sid}\"\nsecret = \"{secret}\"\n"
        ));
    }
    toml.push_str(&format!(
        "[netease.apps.app]\napp_key = \"{APP_KEY}\"\n[netease.apps.app.secrets]\n"
    ));
    for (name, secret) in netease_secrets {
        toml.push_str(&format!("{name} = \"{secret}\"\n"));
    }
    toml
}

/// The binary reading the first configuration from a file; returns it, the file and its log.
fn serve_from_a_file() -> (Binary, PathBuf, PathBuf) {
    let file = temp_path("tokenmint.toml");
    std::fs::write(
        &file,
        config(&[KEY_ONE], &[("first", "first-netease-secret")]),
    )
    .expect("written");
    let log_path = temp_path("reload.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let served = Binary::serve_with(
        &[("TOKENMINT_CONFIG", file.to_str().expect("utf-8 path"))],
        log.try_clone().expect("clone").into(),
        log.into(),
    );
    (served, file, log_path)
}

fn hang_up(served: &Binary) {
    let status = std::process::Command::new("kill")
        .args(["-HUP", &served.child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
}

async fn mint(client: &reqwest::Client, base: &str, key: (&str, &str)) -> reqwest::Response {
    client
        .post(format!("{base}/twilio/v1/tokens"))
        .header("authorization", basic(key.0, key.1))
        .json(&json!({"identity": "alice"}))
        .send()
        .await
        .expect("sent")
}

async fn verify(client: &reqwest::Client, base: &str, key: (&str, &str), token: &str) -> Value {
    client
        .post(format!("{base}/twilio/v1/tokens/verify"))
        .header("authorization", basic(key.0, key.1))
        .json(&json!({ "token": token }))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json")
}

async fn get_token(client: &reqwest::Client, base: &str, secret: &str) -> Value {
    let path = "/nimserver/user/getToken.action";
    post_signed_as(client, base, path, (APP_KEY, secret), "uid=7")
        .await
        .expect("answered")
}

/// Polls `check` every 50 ms until it holds (a reload is applied asynchronously); panics after 10 s.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never happened: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn log_contains(path: &Path, needle: &str) -> bool {
    std::fs::read_to_string(path).is_ok_and(|log| log.contains(needle))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_adds_and_removes_keys_and_secrets_without_a_restart_and_refuses_a_broken_file() {
    let (mut served, file, log_path) = serve_from_a_file();
    let pid = served.child.id();
    let base = format!("http://{}", served.addr);
    let client = reqwest::Client::new();
    let old_token: Value = mint(&client, &base, KEY_ONE)
        .await
        .json()
        .await
        .expect("json");
    let old_token = old_token["token"].as_str().expect("token").to_owned();
    assert_eq!(
        mint(&client, &base, KEY_TWO).await.status(),
        401,
        "not configured yet"
    );
    assert_ne!(
        get_token(&client, &base, "second-netease-secret").await["code"],
        200
    );

    // Add a Twilio key and a NetEase secret.
    std::fs::write(
        &file,
        config(
            &[KEY_ONE, KEY_TWO],
            &[
                ("first", "first-netease-secret"),
                ("second", "second-netease-secret"),
            ],
        ),
    )
    .expect("written");
    hang_up(&served);
    eventually("the new key mints", || async {
        mint(&client, &base, KEY_TWO).await.status() == 200
    })
    .await;
    assert_eq!(
        get_token(&client, &base, "second-netease-secret").await["code"],
        200
    );
    assert_eq!(
        get_token(&client, &base, "first-netease-secret").await["code"],
        200
    );
    assert_eq!(
        verify(&client, &base, KEY_TWO, &old_token).await["valid"],
        true
    );

    // Remove the old key and the old secret.
    std::fs::write(
        &file,
        config(&[KEY_TWO], &[("second", "second-netease-secret")]),
    )
    .expect("written");
    hang_up(&served);
    eventually("the old key is gone", || async {
        mint(&client, &base, KEY_ONE).await.status() == 401
    })
    .await;
    let verdict = verify(&client, &base, KEY_TWO, &old_token).await;
    assert_eq!(
        verdict["valid"], false,
        "tokens of a removed key fail: {verdict}"
    );
    assert_ne!(
        get_token(&client, &base, "first-netease-secret").await["code"],
        200
    );

    // A file that breaks a rule is refused, naming the key; the running configuration keeps serving.
    std::fs::write(
        &file,
        config(&[KEY_TWO], &[("second", "second-netease-secret")]).replace(ACCOUNT, "AC-not-a-sid"),
    )
    .expect("written");
    hang_up(&served);
    eventually("the refusal is logged", || async {
        log_contains(&log_path, "configuration reload refused")
    })
    .await;
    assert!(log_contains(&log_path, "twilio.accounts.acme.account_sid"));
    // And a file that is not TOML at all.
    std::fs::write(&file, "[twilio\n").expect("written");
    hang_up(&served);
    eventually("the second refusal is logged", || async {
        std::fs::read_to_string(&log_path)
            .is_ok_and(|log| log.matches("configuration reload refused").count() == 2)
    })
    .await;
    assert_eq!(mint(&client, &base, KEY_TWO).await.status(), 200);
    assert_eq!(
        get_token(&client, &base, "second-netease-secret").await["code"],
        200
    );

    assert!(
        served.child.try_wait().expect("waits").is_none(),
        "never restarted"
    );
    assert_eq!(served.child.id(), pid);
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("sent")
        .text()
        .await
        .expect("body");
    assert!(
        metrics.contains("tokenmint_config_reloads_total{result=\"applied\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tokenmint_config_reloads_total{result=\"refused\"} 2"),
        "{metrics}"
    );
    let log = std::fs::read_to_string(&log_path).expect("log");
    for secret in [
        KEY_ONE.1,
        KEY_TWO.1,
        "first-netease-secret",
        "second-netease-secret",
    ] {
        assert!(!log.contains(secret), "a secret reached the log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_that_needs_a_restart_is_reported_and_not_applied() {
    let (served, file, log_path) = serve_from_a_file();
    let base = format!("http://{}", served.addr);
    let mut changed = config(&[KEY_ONE], &[("first", "first-netease-secret")]);
    changed.push_str("[log]\nformat = \"json\"\n");
    std::fs::write(&file, changed).expect("written");
    hang_up(&served);
    eventually("the restart-only change is reported", || async {
        log_contains(&log_path, "needs a restart")
    })
    .await;
    let log = std::fs::read_to_string(&log_path).expect("log");
    assert!(log.contains("key=\"log\""), "{log}");
    assert!(!log.contains("{\""), "the log format stayed text: {log}");
    assert_eq!(
        mint(&reqwest::Client::new(), &base, KEY_ONE).await.status(),
        200
    );
}
