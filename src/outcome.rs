//! What an answer meant beyond its HTTP status, for the request log line and the metrics.
//!
//! A NetEase failure is HTTP 200 with its code in the body, and a failed verification is a 200 that says
//! `"valid": false`: the status alone hides both. So handlers and error types attach an [`Outcome`] to their
//! responses (a response extension: nothing is parsed back out of a body), and each provider lists its routes
//! with the [`Action`] they perform ([`RouteSpec`]). The application layer reads both. An outcome is always a
//! fixed code (`"200"`, `"414"`, `"invalid_signature"`, …), never a token, a secret or an identity.

use axum::response::Response;

/// The outcome code of a response: NetEase's numeric code as text, or the error/reason code of the JSON routes
/// (`"expired"`, `"rate_limited"`, …). Responses without one are read as `"ok"` when 2xx.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome(pub &'static str);

impl Outcome {
    /// Attaches this outcome to `response`.
    pub fn attach(self, mut response: Response) -> Response {
        response.extensions_mut().insert(self);
        response
    }
}

/// What a route does, for metrics that count tokens issued and verifications by outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Mints a token.
    Issue,
    /// Checks a token and says whether it is valid.
    Verify,
    /// Revokes a token.
    Revoke,
    /// Liveness, readiness and metrics probes (logged at debug level).
    Probe,
}

impl Action {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Issue => "issue",
            Self::Verify => "verify",
            Self::Revoke => "revoke",
            Self::Probe => "probe",
        }
    }
}

/// One route of a provider: its path (as registered with the router, so also the `route` label) and action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteSpec {
    /// The path.
    pub path: &'static str,
    /// The provider label (`twilio`, `netease`, `mecloud`; `tokenmint` for the service's own routes).
    pub provider: &'static str,
    /// What it does.
    pub action: Action,
}

impl RouteSpec {
    /// A route of `provider` at `path` doing `action`.
    pub const fn new(provider: &'static str, path: &'static str, action: Action) -> Self {
        Self {
            path,
            provider,
            action,
        }
    }
}
