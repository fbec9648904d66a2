//! The service's Prometheus metrics, exposed at `GET /metrics` in the text format (on the main listener, or on
//! its own with `metrics.port`).
//!
//! Built on prometheus-client with one registry per application (tests run several in one process). Every label
//! is a fixed value: a route as registered, a provider, an outcome code, a NetEase code, a backend. No secret,
//! token, identity, uid or raw path ever becomes a label.

use axum::http::Method;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::outcome::{Action, RouteSpec};
use crate::store::StoreMetrics;

/// The git commit the binary was built from (`TOKENMINT_GIT_COMMIT` at build time, else `git rev-parse`).
pub const GIT_COMMIT: &str = env!("TOKENMINT_GIT_COMMIT");

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: &'static str,
    status: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ProviderLabels {
    provider: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct VerifyLabels {
    provider: &'static str,
    outcome: &'static str,
    reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct NeteaseLabels {
    route: &'static str,
    code: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    commit: &'static str,
}

fn request_histogram() -> Histogram {
    // 50 µs to about 1.6 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

/// Outcome codes that mean "refused by a rate limit" and "refused as a replay", whatever the provider.
const RATE_LIMITED: [&str; 2] = ["rate_limited", "416"];
const REPLAYED: [&str; 2] = ["431", "token_already_exchanged"];

/// The application's metrics: one registry and the handles recorded into.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    issued: Family<ProviderLabels, Counter>,
    verifications: Family<VerifyLabels, Counter>,
    netease: Family<NeteaseLabels, Counter>,
    rate_limited: Family<ProviderLabels, Counter>,
    replays: Family<ProviderLabels, Counter>,
    reloads: Family<ResultLabels, Counter>,
    /// Connections being served now.
    pub connections: Gauge,
    /// Connections closed at once because `server.max_connections` were open.
    pub connections_refused: Counter,
    /// Requests answered 503 because `server.max_in_flight` requests were running.
    pub overloaded: Counter,
}

impl Metrics {
    /// A registry with every metric, the store's included.
    pub fn new(store: &StoreMetrics) -> Self {
        let mut registry = Registry::default();
        let metrics = Self {
            requests: Family::default(),
            duration: Family::new_with_constructor(request_histogram),
            issued: Family::default(),
            verifications: Family::default(),
            netease: Family::default(),
            rate_limited: Family::default(),
            replays: Family::default(),
            reloads: Family::default(),
            connections: Gauge::default(),
            connections_refused: Counter::default(),
            overloaded: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "tokenmint_http_requests",
            "HTTP requests answered, by method, route (as registered) and status",
            metrics.requests.clone(),
        );
        registry.register(
            "tokenmint_http_request_duration_seconds",
            "Time to answer a request, by route",
            metrics.duration.clone(),
        );
        registry.register(
            "tokenmint_tokens_issued",
            "Tokens issued, by provider",
            metrics.issued.clone(),
        );
        registry.register(
            "tokenmint_verifications",
            "Token verifications, by provider, outcome (valid, invalid) and reason code",
            metrics.verifications.clone(),
        );
        registry.register(
            "tokenmint_netease_answers",
            "NetEase answers by route and NetEase code (failures are HTTP 200: the code tells them apart)",
            metrics.netease.clone(),
        );
        registry.register(
            "tokenmint_rate_limit_refusals",
            "Requests refused by a rate limit, by provider",
            metrics.rate_limited.clone(),
        );
        registry.register(
            "tokenmint_replay_refusals",
            "Requests refused as replays (NetEase 431, a second MeCloud exchange), by provider",
            metrics.replays.clone(),
        );
        registry.register(
            "tokenmint_config_reloads",
            "Configuration reloads (SIGHUP), by result (applied, refused)",
            metrics.reloads.clone(),
        );
        registry.register(
            "tokenmint_connections_open",
            "HTTP connections being served",
            metrics.connections.clone(),
        );
        registry.register(
            "tokenmint_connections_refused",
            "Connections closed at once because server.max_connections were open",
            metrics.connections_refused.clone(),
        );
        registry.register(
            "tokenmint_overload_refusals",
            "Requests answered 503 because server.max_in_flight requests were running",
            metrics.overloaded.clone(),
        );
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
                commit: GIT_COMMIT,
            })
            .set(1);
        registry.register(
            "tokenmint_build_info",
            "Always 1; the labels say which build this is",
            build,
        );
        registry.register_collector(Box::new(DroppedLogLines));
        store.register(&mut registry);
        Self {
            registry,
            ..metrics
        }
    }

    /// Records one answered request: its route (`None` when no route matched), status and outcome code.
    pub fn record(
        &self,
        method: &Method,
        route: Option<&RouteSpec>,
        status: u16,
        outcome: &'static str,
        seconds: f64,
    ) {
        let path = route.map_or("<unmatched>", |r| r.path);
        self.requests
            .get_or_create(&RequestLabels {
                method: method_label(method),
                route: path,
                status,
            })
            .inc();
        self.duration
            .get_or_create(&RouteLabels { route: path })
            .observe(seconds);
        let Some(route) = route else { return };
        let provider = ProviderLabels {
            provider: route.provider,
        };
        if route.provider == "netease" {
            self.netease
                .get_or_create(&NeteaseLabels {
                    route: path,
                    code: outcome,
                })
                .inc();
        }
        let ok = outcome == "ok" || outcome == "200";
        match route.action {
            Action::Issue if ok => {
                self.issued.get_or_create(&provider).inc();
            }
            // A verification that ran: valid, or invalid with its reason. MeCloud answers an invalid accesstoken
            // 401; elsewhere a 401 is the caller's own credentials failing, not a verification.
            Action::Verify
                if (200..300).contains(&status)
                    || (status == 401 && route.provider == "mecloud") =>
            {
                self.verifications
                    .get_or_create(&VerifyLabels {
                        provider: route.provider,
                        outcome: if ok { "valid" } else { "invalid" },
                        reason: if ok { "" } else { outcome },
                    })
                    .inc();
            }
            _ => {}
        }
        if RATE_LIMITED.contains(&outcome) {
            self.rate_limited.get_or_create(&provider).inc();
        } else if REPLAYED.contains(&outcome) {
            self.replays.get_or_create(&provider).inc();
        }
    }

    /// Records a configuration reload: applied, or refused (the old configuration keeps serving).
    pub fn record_reload(&self, applied: bool) {
        let result = if applied { "applied" } else { "refused" };
        self.reloads.get_or_create(&ResultLabels { result }).inc();
    }

    /// Everything, in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "cannot encode the metrics");
        }
        out
    }
}

/// A fixed label for the method: the standard ones by name, anything else as `other` (a label must not take
/// whatever a client sends).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

/// Log lines dropped because the log writer's queue was full, read at each scrape.
#[derive(Debug)]
struct DroppedLogLines;

impl Collector for DroppedLogLines {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let counter = ConstCounter::new(crate::telemetry::dropped_lines());
        let metric = encoder.encode_descriptor(
            "tokenmint_log_lines_dropped",
            "Log lines dropped because the non-blocking log writer's queue was full",
            None,
            counter.metric_type(),
        )?;
        counter.encode(metric)
    }
}
