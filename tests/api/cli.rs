//! The real binary: configuration checks, the healthcheck command and shutdown on SIGTERM.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_tokenmint");

fn tokenmint(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .env_clear()
        .env(
            "TOKENMINT_STORE__EMBEDDED__PATH",
            crate::helpers::temp_path("cli.redb"),
        )
        .envs(env.iter().copied())
        .output()
        .expect("binary runs")
}

#[test]
fn check_config_prints_the_effective_configuration_with_secrets_redacted() {
    let secret = "a-very-secret-value-that-must-not-be-printed";
    let output = tokenmint(
        &["check-config"],
        &[
            (
                "TOKENMINT_TWILIO__ACCOUNTS__ACME__ACCOUNT_SID",
                "AC0123456789abcdef0123456789abcdef",
            ),
            (
                "TOKENMINT_TWILIO__ACCOUNTS__ACME__API_KEYS__MAIN__SID",
                "SK0123456789abcdef0123456789abcdef",
            ),
            (
                "TOKENMINT_TWILIO__ACCOUNTS__ACME__API_KEYS__MAIN__SECRET",
                secret,
            ),
            ("TOKENMINT_SERVER__PORT", "9999"),
        ],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    let printed: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(printed["server"]["port"], 9999);
    assert_eq!(
        printed["twilio"]["accounts"]["acme"]["api_keys"]["main"]["secret"],
        "[redacted]"
    );
    assert!(!stdout.contains(secret));
    assert!(
        !stdout.contains("sample-twilio-secret"),
        "sample secrets are redacted too"
    );
}

#[test]
fn production_refuses_to_start_with_a_sample_credential_and_names_the_key() {
    let output = tokenmint(
        &["serve"],
        &[
            ("TOKENMINT_ENV", "production"),
            (
                "TOKENMINT_TWILIO__ACCOUNTS__ACME__ACCOUNT_SID",
                "AC0123456789abcdef0123456789abcdef",
            ),
            (
                "TOKENMINT_TWILIO__ACCOUNTS__ACME__API_KEYS__MAIN__SID",
                "SK0123456789abcdef0123456789abcdef",
            ),
            (
                "TOKENMINT_TWILIO__ACCOUNTS__ACME__API_KEYS__MAIN__SECRET",
                "sample-twilio-secret-not-for-production-1",
            ),
        ],
    );
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("twilio.accounts.acme.api_keys.main.secret"),
        "{stderr}"
    );
    assert!(stderr.contains("sample credential"), "{stderr}");
    assert!(
        !stderr.contains("sample-twilio-secret"),
        "the secret itself is never printed: {stderr}"
    );
}

#[test]
fn an_invalid_value_stops_start_up_with_the_key_and_the_rule() {
    let output = tokenmint(
        &["serve"],
        &[("TOKENMINT_SERVER__REQUEST_TIMEOUT_SECS", "0")],
    );
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("server.request_timeout_secs: must be at least 1"),
        "{stderr}"
    );
}

#[test]
fn healthcheck_fails_when_nothing_listens() {
    let port = crate::helpers::free_port().to_string();
    let output = tokenmint(
        &["healthcheck", "--addr", &format!("127.0.0.1:{port}")],
        &[],
    );
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("unhealthy"));
}

#[test]
fn serve_answers_the_healthcheck_and_exits_cleanly_on_sigterm() {
    let mut served = crate::helpers::Binary::serve(&[], Stdio::null());
    let addr = served.addr.clone();
    let started = Instant::now();
    loop {
        let probe = tokenmint(
            &["healthcheck", "--addr", &addr, "--timeout-secs", "1"],
            &[],
        );
        if probe.status.success() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "service did not become healthy"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let killed = Command::new("kill")
        .args(["-TERM", &served.child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = served.child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "did not stop within 10 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit status after SIGTERM: {status}");
}

#[test]
fn production_starts_with_vendor_issued_secrets_and_warns_about_short_ones() {
    let output = tokenmint(
        &["check-config"],
        &[
            ("TOKENMINT_ENV", "production"),
            (
                "TOKENMINT_NETEASE__APPS__SEED__APP_KEY",
                "94kid09c9ig9k1loimjg012345123456",
            ),
            (
                "TOKENMINT_NETEASE__APPS__SEED__SECRETS__ISSUED",
                "123456789012",
            ),
            ("TOKENMINT_MECLOUD__CHANNELS__SEED__APP_ID", "seed"),
            (
                "TOKENMINT_MECLOUD__CHANNELS__SEED__KEYS__CHANNEL",
                "MECLOUD API",
            ),
            (
                "TOKENMINT_MECLOUD__SIGNING_KEYS__OWN",
                "a-signing-secret-tokenmint-chose-0123456789",
            ),
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning: mecloud.channels.seed.keys.channel is only 11 bytes"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("MECLOUD API"),
        "no secret printed: {stderr}"
    );
    assert!(
        !stderr.contains("netease.apps.seed"),
        "NetEase's 12-character AppSecret is as issued: {stderr}"
    );
}

#[test]
fn production_refuses_a_short_secret_tokenmint_signs_with_and_says_the_rule() {
    let output = tokenmint(
        &["serve"],
        &[
            ("TOKENMINT_ENV", "production"),
            (
                "TOKENMINT_TWILIO__ACCOUNTS__ACME__ACCOUNT_SID",
                "AC0123456789abcdef0123456789abcdef",
            ),
            (
                "TOKENMINT_TWILIO__ACCOUNTS__ACME__API_KEYS__MAIN__SID",
                "SK0123456789abcdef0123456789abcdef",
            ),
            (
                "TOKENMINT_TWILIO__ACCOUNTS__ACME__API_KEYS__MAIN__SECRET",
                "123456789012",
            ),
        ],
    );
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "twilio.accounts.acme.api_keys.main.secret: signing secrets must be at least 32 bytes"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("vendor-issued NetEase AppSecrets"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("123456789012"),
        "no secret printed: {stderr}"
    );
}

#[test]
fn an_unknown_profile_name_lists_the_valid_ones() {
    let output = tokenmint(&["check-config"], &[("TOKENMINT_ENV", "prod")]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("`development`")
            && stderr.contains("`production`")
            && stderr.contains("`prod`"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("RunEnvironment"),
        "no Rust type names: {stderr}"
    );
}

#[test]
fn gen_secret_prints_a_fresh_secret_that_production_accepts() {
    let first = tokenmint(&["gen-secret"], &[]);
    let second = tokenmint(&["gen-secret"], &[]);
    assert!(first.status.success());
    let secret = String::from_utf8(first.stdout)
        .expect("utf-8")
        .trim()
        .to_owned();
    assert_ne!(
        secret,
        String::from_utf8_lossy(&second.stdout).trim(),
        "fresh each time"
    );
    assert!(secret.len() >= 44, "32 bytes in base64: {secret}");
    let accepted = tokenmint(
        &["check-config"],
        &[
            ("TOKENMINT_ENV", "production"),
            ("TOKENMINT_MECLOUD__SIGNING_KEYS__OWN", &secret),
        ],
    );
    assert!(
        accepted.status.success(),
        "{}",
        String::from_utf8_lossy(&accepted.stderr)
    );
    let short = tokenmint(&["gen-secret", "--bytes", "8"], &[]);
    assert!(!short.status.success());
    assert!(String::from_utf8_lossy(&short.stderr).contains("32..=1024"));
}

#[test]
fn print_config_is_a_valid_configuration_file_to_start_from() {
    let printed = tokenmint(&["print-config"], &[]);
    assert!(printed.status.success());
    let text = String::from_utf8(printed.stdout).expect("utf-8");
    assert!(
        text.contains("[server]") && text.contains("# "),
        "commented: {text}"
    );
    let file = crate::helpers::temp_path("printed.toml");
    std::fs::write(&file, &text).expect("written");
    let checked = tokenmint(
        &["check-config", "--config", file.to_str().expect("utf-8")],
        &[],
    );
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );
}

#[test]
fn completions_are_printed_for_a_shell() {
    let bash = tokenmint(&["completions", "bash"], &[]);
    assert!(bash.status.success());
    let script = String::from_utf8_lossy(&bash.stdout);
    assert!(
        script.contains("gen-secret") && script.contains("check-config"),
        "{script}"
    );
}

fn stdout_of(output: &std::process::Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone())
        .expect("utf-8")
        .trim()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_twilio_prints_only_a_token_the_service_verifies_and_token_verify_explains_it() {
    let app = crate::helpers::spawn_app().await;
    let token = stdout_of(&tokenmint(
        &[
            "token",
            "twilio",
            "--identity",
            "alice",
            "--grant",
            "chat",
            "--grant",
            "video:room=Standup",
            "--ttl",
            "1h",
        ],
        &[],
    ));
    assert!(
        !token.contains('\n') && token.starts_with("eyJ"),
        "only the token: {token}"
    );

    let verified = app.verify(crate::helpers::KEY_1, &token).await;
    assert_eq!(verified["valid"], true, "{verified}");
    assert_eq!(verified["claims"]["grants"]["identity"], "alice");
    assert_eq!(verified["claims"]["grants"]["video"]["room"], "Standup");
    let lifetime = verified["claims"]["exp"].as_i64().expect("exp")
        - verified["claims"]["iat"].as_i64().expect("iat");
    assert_eq!(lifetime, 3600);

    let report = stdout_of(&tokenmint(&["token", "verify", &token], &[]));
    assert!(
        report.starts_with("scheme: twilio\nvalid: true"),
        "{report}"
    );
    // Another first signature character: all six of its bits are signature bits (the last character's lowest
    // two are padding, so changing only those can leave the decoded signature as it was).
    let signature_at = token.rfind('.').expect("three parts") + 1;
    let first = if token[signature_at..].starts_with('A') {
        "B"
    } else {
        "A"
    };
    let tampered = format!(
        "{}{first}{}",
        &token[..signature_at],
        &token[signature_at + 1..]
    );
    let refused = tokenmint(&["token", "verify", &tampered], &[]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stdout).contains("reason: bad_signature"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_netease_and_mecloud_print_tokens_the_service_accepts() {
    let app = crate::helpers::spawn_app().await;
    let netease = stdout_of(&tokenmint(
        &[
            "token",
            "netease",
            "--uid",
            "42",
            "--channel",
            "room1",
            "--ttl",
            "30m",
        ],
        &[],
    ));
    let form = format!(
        "uid=42&channelName=room1&token={}",
        crate::netease::urlencode(&netease)
    );
    let admitted = crate::netease::call(&app, crate::netease::VERIFY, &form).await;
    assert_eq!(admitted["code"], 200, "{admitted}");
    let report = stdout_of(&tokenmint(
        &[
            "token",
            "verify",
            &netease,
            "--uid",
            "42",
            "--channel",
            "room1",
        ],
        &[],
    ));
    assert!(
        report.starts_with("scheme: netease\nvalid: true"),
        "{report}"
    );

    let client = stdout_of(&tokenmint(
        &["token", "mecloud", "--key-id", "user-alice", "--json"],
        &[],
    ));
    let client: serde_json::Value = serde_json::from_str(&client).expect("json");
    let exchanged = app.post_json("/mecloud/v2/accesstoken", &client).await;
    let exchanged = crate::helpers::assert_status(exchanged, reqwest::StatusCode::OK).await;
    assert_eq!(exchanged["keyId"], "user-alice");
    let accesstoken = exchanged["accesstoken"].as_str().expect("accesstoken");
    let report = stdout_of(&tokenmint(&["token", "verify", accesstoken], &[]));
    assert!(
        report.starts_with("scheme: mecloud accesstoken\nvalid: true"),
        "{report}"
    );
}

#[test]
fn token_errors_say_in_one_line_what_to_do() {
    for (args, needle) in [
        (
            vec!["token", "twilio", "--identity", "a", "--ttl", "2d"],
            "ttl must be between 1 and 86400",
        ),
        (
            vec!["token", "twilio", "--identity", "a", "--ttl", "1w"],
            "write seconds (3600)",
        ),
        (
            vec!["token", "twilio", "--identity", "a", "--key", "SK99"],
            "use --key with one of",
        ),
        (
            vec!["token", "twilio", "--identity", "a", "--grant", "fax"],
            "use chat, video",
        ),
        (
            vec!["token", "mecloud", "--key-id", "nope"],
            "use --key-id with one of",
        ),
        (
            vec!["token", "verify", "not-a-token"],
            "not a token tokenmint knows",
        ),
    ] {
        let output = tokenmint(&args, &[]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{args:?}: nothing on stdout");
        // The first line says what is wrong and how to fix it (clap adds a pointer to --help below its own).
        let first = stderr.lines().next().unwrap_or_default();
        assert!(first.contains(needle), "{args:?}: {stderr}");
    }
}
