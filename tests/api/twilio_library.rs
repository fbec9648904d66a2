//! Tokens minted by the running service, checked by Twilio's official helper libraries, both pinned: the Python one
//! (PyPI `twilio`: `AccessToken.from_jwt(token, secret)` must accept them) and the Node one (npm `twilio`, checked
//! with `jsonwebtoken.verify` as Twilio's docs tell Node apps). Their claims must equal what each library mints for
//! the same inputs, apart from time-dependent values (the libraries differ there: Python sets nbf, Node sets iat).
//!
//! The Python library runs in a virtualenv, the Node library in an npm prefix, both created under the target
//! directory on first use (or `TOKENMINT_TEST_PYTHON` / `TOKENMINT_TEST_NODE_MODULES`). The tests fail, never
//! skip, when a library cannot be had.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use serde_json::{json, Value};

use crate::helpers::{spawn_app, ACCOUNT_SID, KEY_1};

/// The pinned library versions.
const TWILIO_PYPI: &str = "twilio==9.13.0";
const TWILIO_NPM: &str = "twilio@6.2.0";
const COMPAT_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/twilio_compat.py");
const NODE_COMPAT_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/twilio_compat.js");

/// The `node_modules` folder holding npm `twilio` (and its `jsonwebtoken`).
fn node_modules() -> &'static PathBuf {
    static MODULES: OnceLock<PathBuf> = OnceLock::new();
    MODULES.get_or_init(|| {
        if let Ok(path) = std::env::var("TOKENMINT_TEST_NODE_MODULES") {
            return PathBuf::from(path);
        }
        let prefix = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("node-twilio");
        let marker = prefix.join(".tokenmint-installed");
        if !marker.exists() {
            let status = Command::new("npm")
                .args(["install", "--no-audit", "--no-fund", "--silent", "--prefix"])
                .arg(&prefix)
                .arg(TWILIO_NPM)
                .status();
            assert!(
                status.is_ok_and(|s| s.success()),
                "npm install {TWILIO_NPM} failed: node and npm are needed"
            );
            std::fs::write(&marker, TWILIO_NPM).expect("marker written");
        }
        prefix.join("node_modules")
    })
}

pub fn python() -> &'static PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        if let Ok(path) = std::env::var("TOKENMINT_TEST_PYTHON") {
            return PathBuf::from(path);
        }
        let venv = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("twilio-venv");
        let python = venv.join("bin/python");
        let marker = venv.join(".tokenmint-installed");
        if !marker.exists() {
            let status = Command::new("python3")
                .args(["-m", "venv"])
                .arg(&venv)
                .status();
            assert!(
                status.is_ok_and(|s| s.success()),
                "python3 -m venv failed: python3 is needed for this test"
            );
            let status = Command::new(&python)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    TWILIO_PYPI,
                ])
                .status();
            assert!(
                status.is_ok_and(|s| s.success()),
                "pip install {TWILIO_PYPI} failed"
            );
            std::fs::write(&marker, TWILIO_PYPI).expect("marker written");
        }
        python
    })
}

/// The two libraries.
#[derive(Debug, Clone, Copy)]
enum Library {
    Python,
    Node,
}

fn library_command(library: Library) -> Command {
    match library {
        Library::Python => {
            let mut command = Command::new(python());
            command.arg(COMPAT_SCRIPT);
            command
        }
        Library::Node => {
            let mut command = Command::new("node");
            command
                .arg(NODE_COMPAT_SCRIPT)
                .env("NODE_PATH", node_modules());
            command
        }
    }
}

/// Runs a compatibility script; panics with its stderr when the library refuses the token.
fn check_with_library(library: Library, input: &Value) -> Value {
    let mut child = library_command(library)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python starts");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(input.to_string().as_bytes())
            .expect("input written");
    }
    let output = child.wait_with_output().expect("python finishes");
    assert!(
        output.status.success(),
        "{library:?} twilio library refused the token: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("script prints JSON")
}

fn without_time(mut payload: Value) -> Value {
    let map = payload.as_object_mut().expect("payload object");
    for key in ["jti", "iat", "nbf", "exp"] {
        map.remove(key);
    }
    payload
}

#[tokio::test]
async fn tokens_verify_with_twilios_python_library_and_match_its_claims() {
    tokens_verify_with_the_library_and_match_its_claims(Library::Python).await;
}

#[tokio::test]
async fn tokens_verify_with_twilios_node_library_and_match_its_claims() {
    tokens_verify_with_the_library_and_match_its_claims(Library::Node).await;
}

async fn tokens_verify_with_the_library_and_match_its_claims(library: Library) {
    let app = spawn_app().await;
    let sid = |p: &str| format!("{p}0123456789abcdef0123456789abcdef");
    let cases = vec![
        ("identity only", json!({"identity": "alice@example.com"})),
        (
            "chat and video",
            json!({"identity": "alice@example.com", "ttl": 1800, "grants": {
            "chat": {"service_sid": sid("IS"), "endpoint_id": "myapp:alice:device1", "deployment_role_sid": sid("RL"), "push_credential_sid": sid("CR")},
            "video": {"room": "DailyStandup"}}}),
        ),
        (
            "voice",
            json!({"identity": "alice_1", "grants": {"voice": {
            "incoming": {"allow": true},
            "outgoing": {"application_sid": sid("AP"), "params": {"to": "+15550100", "n": 1}},
            "push_credential_sid": sid("CR"), "endpoint_id": "e1"}}}),
        ),
        (
            "sync, taskrouter, player and a region",
            json!({"identity": "bob", "region": "ie1", "grants": {
            "data_sync": {"service_sid": sid("IS"), "endpoint_id": "s1"},
            "task_router": {"workspace_sid": sid("WS"), "worker_sid": sid("WK"), "role": "worker"},
            "player": {"playbackGrant": {"requestCredentials": null, "playbackUrl": "https://x"}}}}),
        ),
        (
            "empty grants",
            json!({"identity": "carol", "grants": {"chat": {"service_sid": sid("IS")}, "video": {}, "voice": {}}}),
        ),
    ];
    for (case, request) in cases {
        let minted = app.mint_ok(KEY_1, &request).await;
        let result = check_with_library(
            library,
            &json!({
                "token": minted["token"],
                "secret": KEY_1.1,
                "account_sid": ACCOUNT_SID,
                "key_sid": KEY_1.0,
                "request": request,
            }),
        );
        assert_eq!(result["verified"], true, "{library:?} {case}");
        assert_eq!(
            without_time(result["ours"]["payload"].clone()),
            without_time(result["library"]["payload"].clone()),
            "{library:?} {case}: claims differ from the library's"
        );
        assert_eq!(
            result["ours"]["header"], result["library"]["header"],
            "{case}: header differs"
        );
        let ours = &result["ours"]["payload"];
        assert_eq!(
            ours["exp"].as_i64().expect("exp") - ours["nbf"].as_i64().expect("nbf"),
            minted["ttl"].as_i64().expect("ttl"),
            "{case}"
        );
    }
}

#[tokio::test]
async fn twilios_libraries_refuse_a_token_checked_with_the_wrong_secret() {
    for library in [Library::Python, Library::Node] {
        refuses_a_wrong_secret(library).await;
    }
}

async fn refuses_a_wrong_secret(library: Library) {
    let app = spawn_app().await;
    let minted = app.mint_ok(KEY_1, &json!({"identity": "alice"})).await;
    let mut child = library_command(library)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python starts");
    {
        use std::io::Write;
        let input = json!({"token": minted["token"], "secret": "not-the-secret", "account_sid": ACCOUNT_SID,
                           "key_sid": KEY_1.0, "request": {"identity": "alice"}});
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.to_string().as_bytes())
            .expect("written");
    }
    let output = child.wait_with_output().expect("finishes");
    assert!(
        !output.status.success(),
        "{library:?}: a wrong secret must be refused (proves the check is real)"
    );
    let stderr = String::from_utf8_lossy(&output.stderr).to_lowercase();
    assert!(stderr.contains("signature"), "{library:?}: {stderr}");
}

/// Mints two tokens with the Python library within one second (so they share its `jti`, `<key SID>-<seconds>`).
const SAME_SECOND_SCRIPT: &str = r#"
import json, sys, time
from twilio.jwt.access_token import AccessToken
inp = json.load(sys.stdin)
while True:
    start = int(time.time())
    tokens = [
        AccessToken(inp["account_sid"], inp["key_sid"], inp["secret"], identity=who).to_jwt()
        for who in ("alice", "bob")
    ]
    if int(time.time()) == start:
        break
print(json.dumps(tokens))
"#;

#[tokio::test]
async fn revoking_one_of_two_tokens_the_python_library_minted_in_one_second_leaves_the_other_valid()
{
    let app = spawn_app().await;
    let mut child = Command::new(python())
        .args(["-c", SAME_SECOND_SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python starts");
    {
        use std::io::Write;
        let input = json!({"account_sid": ACCOUNT_SID, "key_sid": KEY_1.0, "secret": KEY_1.1});
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.to_string().as_bytes())
            .expect("input written");
    }
    let output = child.wait_with_output().expect("python finishes");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tokens: Vec<String> = serde_json::from_slice(&output.stdout).expect("two tokens");
    let jti = |token: &str| crate::helpers::decode_parts(token).1["jti"].clone();
    assert_eq!(
        jti(&tokens[0]),
        jti(&tokens[1]),
        "the library gave both one jti"
    );

    let response = app
        .post_twilio(
            "/twilio/v1/tokens/revoke",
            KEY_1,
            &json!({ "token": tokens[0] }),
        )
        .await;
    crate::helpers::assert_status(response, reqwest::StatusCode::OK).await;
    assert_eq!(
        app.verify(KEY_1, &tokens[0]).await["error"]["code"],
        "token_revoked"
    );
    let other = app.verify(KEY_1, &tokens[1]).await;
    assert_eq!(other["valid"], true, "{other}");
}
