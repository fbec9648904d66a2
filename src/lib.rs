//! tokenmint: one self-hosted HTTP service that mints and checks access tokens in three vendors' schemes —
//! Twilio-style Access Tokens, NetEase Yunxin getToken and MeCloud accesstokens — so an app backend needs one
//! service and existing client code keeps working when pointed at it.
//!
//! # Layout
//! - [`config`]: the settings tree, layered loading and start-up validation.
//! - [`telemetry`]: tracing set-up, once.
//! - [`error`]: the JSON routes' error enum, status mapping and error shape.
//! - [`ttl`]: the shared TTL policy and the injectable clock.
//! - [`decimal`]: canonical decimal numbers, so no signed or counted value has two spellings.
//! - [`http`]: shared state, the router, extractors, middleware and health probes.
//! - [`providers`]: one module per token scheme: `twilio`, `netease`, `mecloud`.
//! - [`store`]: server-side token state behind one contract; `embedded` (redb) and `redis` backends.
//! - [`startup`]: building the application (binding the listener) and running it until a signal.
//! - [`healthcheck`]: the probe `tokenmint healthcheck` runs against a live instance.
#![forbid(unsafe_code)]

pub mod config;
pub mod decimal;
pub mod error;
pub mod extract;
pub mod healthcheck;
pub mod http;
pub mod providers;
pub mod settings;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod ttl;
