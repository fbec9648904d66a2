//! The shared harness: spawns the app on 127.0.0.1:0 with a manual clock and offers request helpers that assert
//! the expected status.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine;
use reqwest::{Response, StatusCode};
use serde_json::Value;
use tokenmint::config::{Settings, Sources};
use tokenmint::startup::Application;
use tokenmint::ttl::ManualClock;
use tokio::sync::oneshot;

/// The development profile's sample account and keys.
pub const ACCOUNT_SID: &str = "AC00000000000000000000000000000000";
pub const KEY_1: (&str, &str) = (
    "SK00000000000000000000000000000001",
    "sample-twilio-secret-not-for-production-1",
);
pub const KEY_2: (&str, &str) = (
    "SK00000000000000000000000000000002",
    "sample-twilio-secret-not-for-production-2",
);

/// A running app.
pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub clock: Arc<ManualClock>,
    shutdown: Option<oneshot::Sender<()>>,
}

impl TestApp {
    /// Sends the shutdown signal: the server stops accepting and drains in-flight requests.
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.begin_shutdown();
    }
}

/// Settings from the embedded layers plus `inline` TOML and `env`, on port 0.
pub fn settings_with(inline: &str, env: &[(&str, &str)]) -> Settings {
    let mut env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    env.insert("TOKENMINT_SERVER__PORT".to_owned(), "0".to_owned());
    env.entry("TOKENMINT_STORE__EMBEDDED__PATH".to_owned())
        .or_insert_with(|| temp_path("store.redb").display().to_string());
    Settings::load_from(Sources {
        file: None,
        inline: Some(inline.to_owned()),
        env: Some(env),
    })
    .expect("test settings are valid")
}

pub use crate::redis_server::free_port;

/// Spawns the app on the development profile with its store on the Redis at `url`.
pub async fn spawn_on_redis(url: &str) -> TestApp {
    spawn_app_with(settings_with(
        "",
        &[
            ("TOKENMINT_STORE__BACKEND", "redis"),
            ("TOKENMINT_STORE__REDIS__URL", url),
        ],
    ))
    .await
}

/// Spawns the app on the development profile with its store on the Redis Cluster whose seed nodes are `url`, plus
/// `extra` settings.
pub async fn spawn_on_redis_cluster(url: &str, extra: &[(&str, &str)]) -> TestApp {
    let mut env = vec![
        ("TOKENMINT_STORE__BACKEND", "redis"),
        ("TOKENMINT_STORE__REDIS__CLUSTER", "true"),
        ("TOKENMINT_STORE__REDIS__URL", url),
    ];
    env.extend_from_slice(extra);
    spawn_app_with(settings_with("", &env)).await
}

/// Spawns the app on the development profile.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(settings_with("", &[])).await
}

/// Spawns the app with the given settings and a manual clock starting at the real time (so tokens also verify
/// with libraries that read the system clock).
pub async fn spawn_app_with(settings: Settings) -> TestApp {
    let clock = ManualClock::starting_now();
    let app = Application::build_with_clock(&settings, clock.clone())
        .await
        .expect("app binds");
    let addr = app.local_addr().expect("bound address");
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(app.run_until_stopped(async move {
        let _ = rx.await;
    }));
    TestApp {
        addr,
        client: reqwest::Client::new(),
        clock,
        shutdown: Some(tx),
    }
}

/// `Basic base64(user:password)`.
pub fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// POSTs a JSON body.
    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    /// GETs with query parameters.
    pub async fn get_query(&self, path: &str, query: &[(&str, &str)]) -> Response {
        self.client
            .get(self.url(path))
            .query(query)
            .send()
            .await
            .expect("request sent")
    }

    /// POSTs JSON to a Twilio route with the given API key.
    pub async fn post_twilio(&self, path: &str, key: (&str, &str), body: &Value) -> Response {
        self.client
            .post(self.url(path))
            .header("authorization", basic(key.0, key.1))
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    /// Mints a token and asserts success; returns the response body.
    pub async fn mint_ok(&self, key: (&str, &str), body: &Value) -> Value {
        let response = self.post_twilio("/twilio/v1/tokens", key, body).await;
        assert_status(response, StatusCode::OK).await
    }

    /// Verifies a token and returns the verify response body (asserting HTTP 200).
    pub async fn verify(&self, key: (&str, &str), token: &str) -> Value {
        let response = self
            .post_twilio(
                "/twilio/v1/tokens/verify",
                key,
                &serde_json::json!({ "token": token }),
            )
            .await;
        assert_status(response, StatusCode::OK).await
    }
}

/// Asserts the status and returns the JSON body.
pub async fn assert_status(response: Response, expected: StatusCode) -> Value {
    let status = response.status();
    let text = response.text().await.expect("body read");
    assert_eq!(status, expected, "unexpected status; body: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("body is not JSON ({e}): {text}"))
}

/// Asserts the JSON error shape and returns (code, message).
pub async fn assert_error(response: Response, expected: StatusCode) -> (String, String) {
    let body = assert_status(response, expected).await;
    let code = body["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error.code: {body}"));
    let message = body["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no error.message: {body}"));
    (code.to_owned(), message.to_owned())
}

/// Decodes a JWT's header and payload without checking anything.
pub fn decode_parts(token: &str) -> (Value, Value) {
    let mut parts = token.split('.');
    let mut next = || {
        let part = parts.next().expect("three parts");
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .expect("base64url");
        serde_json::from_slice::<Value>(&bytes).expect("json")
    };
    let header = next();
    let payload = next();
    (header, payload)
}

/// A fresh path under the target directory's temp folder, unique per call. The first call in a test process also
/// removes the folders earlier runs left behind (older than an hour), so repeated runs do not fill the disk.
pub fn temp_path(name: &str) -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Once;
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static SWEEP: Once = Once::new();
    let root = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    SWEEP.call_once(|| remove_stale_dirs(&root));
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = root.join(format!("tokenmint-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join(name)
}

fn remove_stale_dirs(root: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let stale = entry
            .file_name()
            .to_string_lossy()
            .starts_with("tokenmint-")
            && entry.metadata().and_then(|m| m.modified()).is_ok_and(|t| {
                t.elapsed()
                    .is_ok_and(|age| age > std::time::Duration::from_secs(3600))
            });
        if stale {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The real `tokenmint serve` process on a free port, with a clean environment plus `env`; killed when dropped.
pub struct Binary {
    pub child: std::process::Child,
    /// `127.0.0.1:<port>`.
    pub addr: String,
}

impl Binary {
    /// Starts the binary and waits until its port accepts connections; its output goes to `output`.
    pub fn serve(env: &[(&str, &str)], output: std::process::Stdio) -> Self {
        Self::serve_with(env, output, std::process::Stdio::null())
    }

    /// Like [`Binary::serve`], with stdout and stderr given separately.
    pub fn serve_with(
        env: &[(&str, &str)],
        stdout: std::process::Stdio,
        stderr: std::process::Stdio,
    ) -> Self {
        let port = free_port();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_tokenmint"))
            .arg("serve")
            .env_clear()
            .env("TOKENMINT_SERVER__PORT", port.to_string())
            .env("TOKENMINT_STORE__EMBEDDED__PATH", temp_path("binary.redb"))
            .envs(env.iter().copied())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("serve starts");
        let addr = format!("127.0.0.1:{port}");
        let started = std::time::Instant::now();
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(10),
                "service did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Self { child, addr }
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
