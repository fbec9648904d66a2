//! The load benchmark's yardstick for the Twilio mint route: a minimal axum server that reads the same JSON body,
//! checks a Basic header is there, and signs the same HS256 Access Token (header `cty: twilio-fpa;v=1`, the same
//! claims) with no configuration, store, limits, metrics or logs. `tests/bench/load.sh` runs it beside tokenmint.
//!
//!     cargo bench --bench minimal_signer -- PORT

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::{header, HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Deserialize;
use serde_json::{json, Map, Value};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const KEY_SID: &str = "SK00000000000000000000000000000001";
const ACCOUNT_SID: &str = "AC00000000000000000000000000000000";

#[derive(Deserialize)]
struct MintBody {
    identity: String,
    #[serde(default)]
    grants: Map<String, Value>,
}

fn key() -> &'static EncodingKey {
    static KEY: OnceLock<EncodingKey> = OnceLock::new();
    KEY.get_or_init(|| EncodingKey::from_secret(b"sample-twilio-secret-not-for-production-1"))
}

async fn sign(headers: HeaderMap, Json(body): Json<MintBody>) -> Result<Json<Value>, StatusCode> {
    if !headers
        .get(header::AUTHORIZATION)
        .is_some_and(|v| v.as_bytes().starts_with(b"Basic "))
    {
        return Err(StatusCode::UNAUTHORIZED);
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let exp = now + 3600;
    let mut grants = body.grants;
    grants.insert("identity".to_owned(), Value::String(body.identity.clone()));
    let claims = json!({
        "jti": format!("{KEY_SID}-{now}-{:016x}", rand::random::<u64>()),
        "iss": KEY_SID,
        "sub": ACCOUNT_SID,
        "iat": now,
        "nbf": now,
        "exp": exp,
        "grants": grants,
    });
    let mut header = Header::new(Algorithm::HS256);
    header.cty = Some("twilio-fpa;v=1".to_owned());
    let token = jsonwebtoken::encode(&header, &claims, key())
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    Ok(Json(
        json!({"token": token, "identity": body.identity, "ttl": 3600, "expires_at": exp}),
    ))
}

#[tokio::main]
async fn main() {
    let port: u16 = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .and_then(|a| a.parse().ok())
        .unwrap_or(0);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind");
    println!("minimal signer on {}", listener.local_addr().expect("addr"));
    axum::serve(listener, Router::new().route("/sign", post(sign)))
        .await
        .expect("serve");
}
