//! `tokenmint token …`: mint and verify tokens from the command line with the configured credentials, the way
//! `lk token create` or `twilio token:*` do.
//!
//! Every command goes through the service's own router, in process, over a throw-away store: the token printed
//! is exactly what the service would answer (same validation, same TTL policy, same signing), and an error is
//! the service's own message. Only the running service knows its store's state (revocations, used single-use
//! tokens), so `token verify` checks signatures, claims and lifetimes, not revocations.

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use base64::Engine;
use clap::{Args, Subcommand};
use secrecy::ExposeSecret;
use serde_json::{json, Map, Value};
use tower::ServiceExt;

use crate::config::Settings;
use crate::http::{router, AppState};
use crate::providers::twilio::config::TwilioApiKeySettings;
use crate::ttl::SystemClock;

/// `tokenmint token …`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// A Twilio Access Token, signed with a configured API key.
    Twilio(TwilioArgs),
    /// A NetEase token in the documented self-computed format, for a configured app.
    Netease(NeteaseArgs),
    /// A MeCloud client token (SHA1 of appId.time.randomKey.secretKey, time in milliseconds) for a configured key.
    Mecloud(MecloudArgs),
    /// Says which scheme TOKEN is, its claims, and whether it is valid (and if not, why). Revocations live in
    /// the service's store: ask its verify route for those.
    Verify(VerifyArgs),
}

/// `token twilio`.
#[derive(Debug, Args)]
pub struct TwilioArgs {
    /// The user the token is for.
    #[arg(long)]
    pub identity: String,
    /// A grant, repeatable: chat, video, voice, sync, task_router or player, with optional fields:
    /// `chat:service_sid=IS…,endpoint_id=app:alice`, `video:room=Standup`, `voice:outgoing.application_sid=AP…`.
    #[arg(long = "grant", value_name = "GRANT[:FIELD=VALUE,…]")]
    pub grants: Vec<String>,
    /// Lifetime: seconds (3600) or with a unit (90s, 30m, 1h, 1d); the policy's default when absent.
    #[arg(long, value_parser = parse_duration)]
    pub ttl: Option<u64>,
    /// The API key SID to sign with; the first configured one when absent.
    #[arg(long)]
    pub key: Option<String>,
    /// Region (the token's `twr` header).
    #[arg(long)]
    pub region: Option<String>,
    /// Print the whole answer as JSON, not only the token.
    #[arg(long)]
    pub json: bool,
}

/// `token netease`.
#[derive(Debug, Args)]
pub struct NeteaseArgs {
    /// The app's AppKey; the only configured app when absent.
    #[arg(long)]
    pub app_key: Option<String>,
    /// The user (a decimal number).
    #[arg(long)]
    pub uid: String,
    /// Bind the token to this room.
    #[arg(long)]
    pub channel: Option<String>,
    /// Lifetime: seconds or with a unit (30m); the policy's default when absent.
    #[arg(long, value_parser = parse_duration)]
    pub ttl: Option<u64>,
    /// Single-use (repeatUse=false).
    #[arg(long)]
    pub single_use: bool,
    /// Print the whole answer as JSON, not only the token.
    #[arg(long)]
    pub json: bool,
}

/// `token mecloud`.
#[derive(Debug, Args)]
pub struct MecloudArgs {
    /// The channel's appId; the only configured channel when absent.
    #[arg(long)]
    pub app_id: Option<String>,
    /// The secret key's id (a label under `mecloud.channels.<label>.keys`).
    #[arg(long)]
    pub key_id: String,
    /// The client's random key; a random one when absent.
    #[arg(long)]
    pub random_key: Option<String>,
    /// Print appId, time, randomKey and token as JSON, not only the token.
    #[arg(long)]
    pub json: bool,
}

/// `token verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The token: a Twilio Access Token, a MeCloud accesstoken or client token, or a NetEase token.
    pub token: String,
    /// NetEase and MeCloud client tokens: the app (AppKey or appId) it is for.
    #[arg(long)]
    pub app: Option<String>,
    /// NetEase: the uid it is for.
    #[arg(long)]
    pub uid: Option<String>,
    /// NetEase: the room it is used for.
    #[arg(long)]
    pub channel: Option<String>,
    /// MeCloud client token: its time (milliseconds) and random key.
    #[arg(long)]
    pub time: Option<String>,
    /// MeCloud client token: its random key.
    #[arg(long)]
    pub random_key: Option<String>,
    /// Print the service's answer as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Why a command could not do its work: one line that says what to do.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The command line or the configuration does not allow it.
    #[error("{0}")]
    Usage(String),
    /// The service refused (its own message).
    #[error("{0}")]
    Refused(String),
    /// The token was checked and is not valid (the report is printed).
    #[error("token is not valid")]
    Invalid(String),
}

/// Parses `3600`, `90s`, `30m`, `1h` or `1d` into seconds.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => text.split_at(i),
        None => (text, ""),
    };
    let multiplier = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => 0,
    };
    match digits.parse::<u64>() {
        Ok(n) if multiplier > 0 && n > 0 => n
            .checked_mul(multiplier)
            .ok_or_else(|| format!("`{text}` is too long")),
        _ => Err(format!(
            "`{text}` is not a duration: write seconds (3600) or a whole number with s, m, h or d (1h)"
        )),
    }
}

/// Runs `command` with `settings`; returns what to print on stdout.
pub async fn run(command: TokenCommand, settings: &Settings) -> Result<String, CliError> {
    let app = InProcess::start(settings).await?;
    let outcome = match command {
        TokenCommand::Twilio(args) => twilio(&app, settings, args).await,
        TokenCommand::Netease(args) => netease(&app, settings, args).await,
        TokenCommand::Mecloud(args) => mecloud(&app, settings, args).await,
        TokenCommand::Verify(args) => verify(&app, settings, args).await,
    };
    app.finish();
    outcome
}

/// The router over a throw-away embedded store in a temporary directory.
struct InProcess {
    router: axum::Router,
    dir: PathBuf,
}

impl InProcess {
    async fn start(settings: &Settings) -> Result<Self, CliError> {
        let dir = std::env::temp_dir().join(format!(
            "tokenmint-cli-{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        let mut local = settings.clone();
        local.store.backend = crate::store::Backend::Embedded;
        local.store.embedded.path = dir.join("store.redb");
        local.metrics.port = None;
        let state = AppState::new(&local, Arc::new(SystemClock))
            .await
            .map_err(|e| {
                CliError::Usage(format!(
                    "cannot open a temporary store in {}: {e}",
                    dir.display()
                ))
            })?;
        Ok(Self {
            router: router(state),
            dir,
        })
    }

    /// Sends one request; returns the status and the JSON answer.
    async fn call(&self, request: Request<Body>) -> Result<(StatusCode, Value), CliError> {
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .map_err(|e| CliError::Usage(e.to_string()))?;
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .map_err(|e| CliError::Usage(e.to_string()))?;
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok((status, body))
    }

    fn finish(self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn request(method: Method, uri: &str) -> axum::http::request::Builder {
    Request::builder().method(method).uri(uri)
}

fn json_body(builder: axum::http::request::Builder, body: &Value) -> Request<Body> {
    builder
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap_or_default()
}

/// The message of an error answer in either shape.
fn refusal(body: &Value) -> CliError {
    let message = body["error"]["message"]
        .as_str()
        .or_else(|| body["desc"].as_str())
        .unwrap_or("the service refused the request");
    CliError::Refused(message.to_owned())
}

fn print(json: bool, body: &Value, field: &str) -> Result<String, CliError> {
    if json {
        Ok(serde_json::to_string_pretty(body).unwrap_or_default())
    } else {
        body[field]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| refusal(body))
    }
}

/// Turns `--grant name[:field=value,…]` into the mint request's `grants` object.
fn grants(specs: &[String]) -> Result<Value, CliError> {
    let mut grants = Map::new();
    for spec in specs {
        let (name, fields) = spec.split_once(':').unwrap_or((spec.as_str(), ""));
        let name = match name {
            "chat" | "video" | "voice" | "player" => name,
            "sync" | "data_sync" => "data_sync",
            "task_router" | "taskrouter" => "task_router",
            other => {
                return Err(CliError::Usage(format!(
                    "unknown grant `{other}`: use chat, video, voice, sync, task_router or player"
                )))
            }
        };
        let mut grant = Map::new();
        for field in fields.split(',').filter(|f| !f.is_empty()) {
            let Some((path, value)) = field.split_once('=') else {
                return Err(CliError::Usage(format!(
                    "grant field `{field}` has no value: write {name}:field=value"
                )));
            };
            let value = match value {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                text => Value::String(text.to_owned()),
            };
            // `outgoing.application_sid=AP…` nests.
            let mut target = &mut grant;
            let mut parts = path.split('.').peekable();
            while let Some(part) = parts.next() {
                if parts.peek().is_none() {
                    target.insert(part.to_owned(), value.clone());
                } else {
                    let entry = target
                        .entry(part.to_owned())
                        .or_insert_with(|| Value::Object(Map::new()));
                    target = match entry {
                        Value::Object(map) => map,
                        _ => {
                            return Err(CliError::Usage(format!(
                                "grant field `{path}` conflicts with another one"
                            )))
                        }
                    };
                }
            }
        }
        grants.insert(name.to_owned(), Value::Object(grant));
    }
    Ok(Value::Object(grants))
}

async fn twilio(
    app: &InProcess,
    settings: &Settings,
    args: TwilioArgs,
) -> Result<String, CliError> {
    let keys = twilio_keys(settings);
    let key = match &args.key {
        Some(sid) => keys.iter().find(|k| k.sid.as_str() == sid),
        None => keys.first(),
    }
    .ok_or_else(|| {
        let known: Vec<&str> = keys.iter().map(|k| k.sid.as_str()).collect();
        CliError::Usage(if known.is_empty() {
            "no Twilio API key is configured: add [twilio.accounts.<label>.api_keys.<label>] with sid and secret"
                .to_owned()
        } else {
            format!("no such API key: use --key with one of {}", known.join(", "))
        })
    })?;
    let mut body = json!({"identity": args.identity, "grants": grants(&args.grants)?});
    if let Some(ttl) = args.ttl {
        body["ttl"] = json!(ttl);
    }
    if let Some(region) = args.region {
        body["region"] = json!(region);
    }
    let (status, answer) = app
        .call(json_body(
            request(Method::POST, "/twilio/v1/tokens").header(header::AUTHORIZATION, basic(key)),
            &body,
        ))
        .await?;
    if !status.is_success() {
        return Err(refusal(&answer));
    }
    print(args.json, &answer, "token")
}

/// Every configured Twilio API key, in configuration order.
fn twilio_keys(settings: &Settings) -> Vec<&TwilioApiKeySettings> {
    settings
        .twilio
        .accounts
        .values()
        .flat_map(|account| account.api_keys.values())
        .collect()
}

/// The HTTP Basic credentials of `key`, as the Twilio routes take them.
fn basic(key: &TwilioApiKeySettings) -> String {
    let credentials = format!("{}:{}", key.sid.as_str(), key.secret.expose_secret());
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(credentials)
    )
}

/// The app whose AppKey is `wanted`, or the only one.
fn netease_app<'a>(
    settings: &'a Settings,
    wanted: Option<&str>,
) -> Result<&'a crate::providers::netease::config::NeteaseAppSettings, CliError> {
    let apps: Vec<_> = settings.netease.apps.values().collect();
    let found = match wanted {
        Some(key) => apps.iter().find(|a| a.app_key == key).copied(),
        None if apps.len() == 1 => apps.first().copied(),
        None => None,
    };
    found.ok_or_else(|| {
        let known: Vec<&str> = apps.iter().map(|a| a.app_key.as_str()).collect();
        CliError::Usage(if known.is_empty() {
            "no NetEase app is configured: add [netease.apps.<label>] with app_key and secrets"
                .to_owned()
        } else {
            format!(
                "name the app with --app-key (configured: {})",
                known.join(", ")
            )
        })
    })
}

/// A NetEase call to `path` with fresh authentication headers for `app`.
async fn netease_call(
    app: &InProcess,
    netease: &crate::providers::netease::config::NeteaseAppSettings,
    path: &str,
    form: &[(&str, &str)],
) -> Result<Value, CliError> {
    let secret = netease.secrets.values().next().ok_or_else(|| {
        CliError::Usage("the NetEase app has no secret: add one under secrets".to_owned())
    })?;
    let nonce = format!("{:032x}", rand::random::<u128>());
    let cur_time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
        .to_string();
    let checksum =
        crate::providers::netease::token::checksum(secret.expose_secret(), &nonce, &cur_time);
    let body = serde_urlencoded::to_string(form).map_err(|e| CliError::Usage(e.to_string()))?;
    let built = request(Method::POST, path)
        .header("AppKey", netease.app_key.as_str())
        .header("Nonce", nonce)
        .header("CurTime", cur_time)
        .header("CheckSum", checksum)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .unwrap_or_default();
    Ok(app.call(built).await?.1)
}

async fn netease(
    app: &InProcess,
    settings: &Settings,
    args: NeteaseArgs,
) -> Result<String, CliError> {
    let netease = netease_app(settings, args.app_key.as_deref())?;
    let ttl = args.ttl.map(|t| t.to_string());
    let mut form = vec![("uid", args.uid.as_str())];
    if let Some(channel) = &args.channel {
        form.push(("channelName", channel));
    }
    if let Some(ttl) = &ttl {
        form.push(("expireAt", ttl));
    }
    if args.single_use {
        form.push(("repeatUse", "false"));
    }
    let answer = netease_call(app, netease, "/nimserver/user/getToken.action", &form).await?;
    if answer["code"] != 200 {
        return Err(refusal(&answer));
    }
    print(args.json, &answer, "token")
}

/// The channel whose appId is `wanted`, or the only one.
fn mecloud_channel<'a>(
    settings: &'a Settings,
    wanted: Option<&str>,
) -> Result<&'a crate::providers::mecloud::config::MecloudChannelSettings, CliError> {
    let channels: Vec<_> = settings.mecloud.channels.values().collect();
    let found = match wanted {
        Some(id) => channels.iter().find(|c| c.app_id == id).copied(),
        None if channels.len() == 1 => channels.first().copied(),
        None => None,
    };
    found.ok_or_else(|| {
        let known: Vec<&str> = channels.iter().map(|c| c.app_id.as_str()).collect();
        CliError::Usage(if known.is_empty() {
            "no MeCloud channel is configured: add [mecloud.channels.<label>] with app_id and keys"
                .to_owned()
        } else {
            format!(
                "name the channel with --app-id (configured: {})",
                known.join(", ")
            )
        })
    })
}

async fn mecloud(
    app: &InProcess,
    settings: &Settings,
    args: MecloudArgs,
) -> Result<String, CliError> {
    let channel = mecloud_channel(settings, args.app_id.as_deref())?;
    let secret = channel.keys.get(&args.key_id).ok_or_else(|| {
        let known: Vec<&str> = channel.keys.keys().map(String::as_str).collect();
        CliError::Usage(format!(
            "channel {} has no key `{}`: use --key-id with one of {}",
            channel.app_id,
            args.key_id,
            known.join(", ")
        ))
    })?;
    let random_key = args
        .random_key
        .unwrap_or_else(|| format!("{:016x}", rand::random::<u64>()));
    let time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default();
    let token = crate::providers::mecloud::token::client_token(
        &channel.app_id,
        time,
        &random_key,
        secret.expose_secret(),
    );
    let body =
        json!({"appId": channel.app_id, "time": time, "randomKey": random_key, "token": token});
    // The service checks it, so a token printed is one it accepts.
    let (_, check) = app
        .call(json_body(
            request(Method::POST, "/mecloud/v2/token/check"),
            &body,
        ))
        .await?;
    if check["valid"] != true {
        return Err(refusal(&check));
    }
    if args.json {
        Ok(serde_json::to_string_pretty(&body).unwrap_or_default())
    } else {
        Ok(token)
    }
}

/// The decoded JSON of a base64url JWT part.
fn jwt_part(token: &str, index: usize) -> Option<Value> {
    let part = token.split('.').nth(index)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

async fn verify(
    app: &InProcess,
    settings: &Settings,
    args: VerifyArgs,
) -> Result<String, CliError> {
    let token = args.token.trim();
    let is_jwt = token.split('.').count() == 3;
    let (scheme, valid, answer) = if is_jwt {
        let header = jwt_part(token, 0).unwrap_or(Value::Null);
        let claims = jwt_part(token, 1).unwrap_or(Value::Null);
        if header["cty"] == "twilio-fpa;v=1" {
            let iss = claims["iss"].as_str().unwrap_or_default();
            let key = twilio_keys(settings)
                .into_iter()
                .find(|k| k.sid.as_str() == iss)
                .ok_or_else(|| {
                    CliError::Invalid(format!(
                        "scheme: twilio\nvalid: false\nreason: unknown_key (signed by {iss}, which is not configured)"
                    ))
                })?;
            let (_, answer) = app
                .call(json_body(
                    request(Method::POST, "/twilio/v1/tokens/verify")
                        .header(header::AUTHORIZATION, basic(key)),
                    &json!({ "token": token }),
                ))
                .await?;
            ("twilio", answer["valid"] == true, answer)
        } else {
            let (status, answer) = app
                .call(
                    request(Method::GET, "/mecloud/v2/accesstoken/verify")
                        .header(header::AUTHORIZATION, format!("Bearer {token}"))
                        .body(Body::empty())
                        .unwrap_or_default(),
                )
                .await?;
            ("mecloud accesstoken", status.is_success(), answer)
        }
    } else if token.len() == 40 && token.bytes().all(|b| b.is_ascii_hexdigit()) {
        let (Some(time), Some(random_key)) = (&args.time, &args.random_key) else {
            return Err(CliError::Usage(
                "a MeCloud client token: give --time (ms) and --random-key it was made with (and --app)".to_owned(),
            ));
        };
        let channel = mecloud_channel(settings, args.app.as_deref())?;
        let (_, answer) = app
            .call(json_body(
                request(Method::POST, "/mecloud/v2/token/check"),
                &json!({"appId": channel.app_id, "time": time, "randomKey": random_key, "token": token}),
            ))
            .await?;
        ("mecloud client token", answer["valid"] == true, answer)
    } else if crate::providers::netease::token::decode(token).is_some() {
        let Some(uid) = &args.uid else {
            return Err(CliError::Usage(
                "a NetEase token: give --uid (and --channel, --app) it is for".to_owned(),
            ));
        };
        let netease = netease_app(settings, args.app.as_deref())?;
        let mut form = vec![("uid", uid.as_str()), ("token", token)];
        if let Some(channel) = &args.channel {
            form.push(("channelName", channel));
        }
        let answer =
            netease_call(app, netease, "/nimserver/user/verifyToken.action", &form).await?;
        ("netease", answer["code"] == 200, answer)
    } else {
        return Err(CliError::Usage(
            "not a token tokenmint knows: expected a JWT (Twilio, MeCloud accesstoken), 40 hex digits (MeCloud \
             client token) or base64 JSON (NetEase)"
                .to_owned(),
        ));
    };
    let report = if args.json {
        serde_json::to_string_pretty(&json!({"scheme": scheme, "valid": valid, "answer": answer}))
            .unwrap_or_default()
    } else {
        let reason = answer["error"]["code"]
            .as_str()
            .map(str::to_owned)
            .or_else(|| answer["desc"].as_str().map(str::to_owned))
            .unwrap_or_default();
        let mut lines = vec![format!("scheme: {scheme}"), format!("valid: {valid}")];
        if valid {
            lines.push(format!(
                "claims: {}",
                if is_jwt {
                    jwt_part(token, 1).unwrap_or(Value::Null)
                } else {
                    answer.clone()
                }
            ));
        } else {
            lines.push(format!("reason: {reason}"));
            if let Some(message) = answer["error"]["message"].as_str() {
                lines.push(format!("message: {message}"));
            }
        }
        lines.join("\n")
    };
    if valid {
        Ok(report)
    } else {
        Err(CliError::Invalid(report))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_seconds_or_a_unit() {
        for (text, secs) in [
            ("3600", 3600),
            ("90s", 90),
            ("30m", 1800),
            ("1h", 3600),
            ("2d", 172_800),
        ] {
            assert_eq!(parse_duration(text), Ok(secs), "{text}");
        }
        for bad in ["", "0", "1w", "h", "-5", "1.5h", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn grants_take_fields_and_nest_dotted_ones() {
        let parsed = grants(&[
            "chat:service_sid=IS00000000000000000000000000000000,endpoint_id=a".to_owned(),
            "video:room=R".to_owned(),
            "voice:incoming.allow=true,outgoing.application_sid=AP1".to_owned(),
            "sync".to_owned(),
        ])
        .expect("parsed");
        assert_eq!(parsed["chat"]["endpoint_id"], "a");
        assert_eq!(parsed["video"]["room"], "R");
        assert_eq!(parsed["voice"]["incoming"]["allow"], true);
        assert_eq!(parsed["voice"]["outgoing"]["application_sid"], "AP1");
        assert_eq!(parsed["data_sync"], json!({}));
        assert!(grants(&["fax".to_owned()]).is_err());
        assert!(grants(&["video:room".to_owned()]).is_err());
    }
}
