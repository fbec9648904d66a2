//! NetEase's own getToken sample (Java, Apache HttpClient from Debian's `libhttpclient-java`), the vendor's code
//! but for its URL, against tokenmint in production mode with the seed document's AppKey and AppSecret. Its Nonce
//! is the constant `12345` and CurTime has a one-second resolution, so two calls in one second are identical.
//!
//! The sample is compiled with `javac` on first use into the target directory. The tests fail, never skip, when
//! Java or the library is missing (`.ci/run` installs both).

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;
use sha1::{Digest, Sha1};

use crate::helpers::{settings_with, spawn_app_with, TestApp};
use crate::netease::{post_raw, FORM, GET_TOKEN};

const SAMPLE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/netease_sample");
const JARS: [&str; 4] = [
    "/usr/share/java/httpclient.jar",
    "/usr/share/java/httpcore.jar",
    "/usr/share/java/commons-logging.jar",
    "/usr/share/java/commons-codec.jar",
];
const SEED_APP_KEY: &str = "94kid09c9ig9k1loimjg012345123456";
const SEED_APP_SECRET: &str = "123456789012";

/// The compiled sample's class folder.
fn classes() -> &'static PathBuf {
    static CLASSES: OnceLock<PathBuf> = OnceLock::new();
    CLASSES.get_or_init(|| {
        let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("netease-sample");
        std::fs::create_dir_all(&out).expect("class folder");
        let sources: Vec<PathBuf> = ["Test.java", "CheckSumBuilder.java", "Twice.java"]
            .iter()
            .map(|name| PathBuf::from(SAMPLE_DIR).join(name))
            .collect();
        let output = Command::new("javac")
            .args([
                "-nowarn",
                "-encoding",
                "utf-8",
                "-cp",
                &JARS.join(":"),
                "-d",
            ])
            .arg(&out)
            .args(&sources)
            .output()
            .expect("javac runs: a JDK is needed (.ci/run installs one)");
        assert!(
            output.status.success(),
            "javac failed (is libhttpclient-java installed?): {}",
            String::from_utf8_lossy(&output.stderr)
        );
        out
    })
}

/// Runs the sample twice inside one second; returns that second and both answers.
fn sample_twice(app: &TestApp) -> (String, Value, Value) {
    let classpath = format!("{}:{}", classes().display(), JARS.join(":"));
    let output = Command::new("java")
        .args(["-cp", &classpath, "Twice", "warm"])
        .env("TOKENMINT_URL", format!("http://{}", app.addr))
        .output()
        .expect("java runs");
    assert!(
        output.status.success(),
        "the sample failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    let mut lines = stdout.lines();
    let cur_time = lines
        .next()
        .and_then(|l| l.strip_prefix("curtime="))
        .expect("the second used")
        .to_owned();
    let mut answer = || -> Value {
        serde_json::from_str(lines.next().expect("an answer")).expect("a JSON answer")
    };
    let (first, second) = (answer(), answer());
    (cur_time, first, second)
}

async fn production_with_the_seed_app(replay_guard: &str) -> TestApp {
    let inline = format!(
        "[netease]\nreplay_guard = \"{replay_guard}\"\n[netease.apps.seed]\napp_key = \"{SEED_APP_KEY}\"\n[netease.apps.seed.secrets]\nissued = \"{SEED_APP_SECRET}\"\n"
    );
    spawn_app_with(settings_with(&inline, &[("TOKENMINT_ENV", "production")])).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netease_s_own_sample_called_twice_in_one_second_gets_the_same_token_twice() {
    let app = production_with_the_seed_app("idempotent").await;
    let (cur_time, first, second) = tokio::task::block_in_place(|| sample_twice(&app));
    assert_eq!(first["code"], 200, "{first}");
    assert_eq!(second, first, "the identical second call is a retry");

    // The same captured headers with another body are still a replay.
    let checksum = hex::encode(Sha1::digest(
        format!("{SEED_APP_SECRET}12345{cur_time}").as_bytes(),
    ));
    let headers = vec![
        ("AppKey".to_owned(), SEED_APP_KEY.to_owned()),
        ("Nonce".to_owned(), "12345".to_owned()),
        ("CurTime".to_owned(), cur_time),
        ("CheckSum".to_owned(), checksum),
        ("Content-Type".to_owned(), FORM.to_owned()),
    ];
    let replay = post_raw(&app, GET_TOKEN, &headers, b"uid=999".to_vec()).await;
    assert_eq!(replay["code"], 431, "{replay}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_strict_replay_guard_refuses_the_samples_second_call() {
    let app = production_with_the_seed_app("strict").await;
    let (_, first, second) = tokio::task::block_in_place(|| sample_twice(&app));
    assert_eq!(first["code"], 200, "{first}");
    assert_eq!(second["code"], 431, "{second}");
}
