//! The OpenAPI 3.1 document, `GET /openapi.json`: generated from the handlers' and types' annotations (utoipa), each
//! provider contributing its own part, so it moves with the code. A unit test checks it lists exactly the routes
//! the router serves, and `.ci/run` fuzzes a running instance against it (schemathesis).

use std::sync::OnceLock;

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::OpenApi;

use super::health;
use crate::providers::{mecloud, netease, twilio};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "tokenmint",
        description = "Mints and checks Twilio-style Access Tokens, NetEase Yunxin getToken tokens and MeCloud \
                       accesstokens. JSON routes answer errors as {\"error\":{\"code\",\"message\"}}; NetEase routes \
                       always answer HTTP 200 with NetEase's {\"code\",…} envelope."
    ),
    paths(health::live, health::ready, health::metrics, document_json),
    tags(
        (name = "twilio", description = "Twilio-style Access Tokens (HTTP Basic: an API key SID and its secret)"),
        (name = "netease", description = "NetEase Yunxin getToken (AppKey, Nonce, CurTime, CheckSum headers)"),
        (name = "mecloud", description = "MeCloud token check and accesstoken exchange"),
        (name = "service", description = "Probes, metrics and this document"),
    )
)]
struct ServiceApi;

/// The whole document.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ServiceApi::openapi();
    doc.merge(twilio::openapi());
    doc.merge(netease::openapi());
    doc.merge(mecloud::openapi());
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "basic",
        SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)),
    );
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
    );
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc
}

/// `GET /openapi.json`: this document.
#[utoipa::path(
    get, path = "/openapi.json", tag = "service",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json"))
)]
pub async fn document_json() -> Response {
    static JSON: OnceLock<String> = OnceLock::new();
    let json = JSON.get_or_init(|| {
        document()
            .to_pretty_json()
            .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    });
    let mut response = json.clone().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn the_document_lists_exactly_the_routes_the_router_serves() {
        let doc = document();
        let documented: BTreeSet<&str> = doc.paths.paths.keys().map(String::as_str).collect();
        let served: BTreeSet<&str> = super::super::ROUTES
            .iter()
            .chain(&twilio::ROUTES)
            .chain(&netease::ROUTES)
            .chain(&mecloud::ROUTES)
            .map(|r| r.path)
            .collect();
        assert_eq!(documented, served);
        let json = doc.to_json().expect("serializes");
        assert!(
            json.starts_with("{\"openapi\":\"3.1.0\""),
            "{}",
            &json[..40]
        );
    }
}
