//! tokenmint: one self-hosted HTTP service that mints and checks access tokens in three vendors' schemes —
//! Twilio-style Access Tokens, NetEase Yunxin getToken and MeCloud accesstokens — so an app backend needs one
//! service and existing client code keeps working when pointed at it.
//!
//! # Layout
//! The application layer composes the providers; providers and the store depend only on the shared pieces
//! below them, never on the application layer or on each other, and no two top-level modules import each other.
//!
//! - [`startup`]: building the application (binding the listener) and serving it until a signal.
//! - [`http`]: the application layer: state holding the providers, the router composing their routes, the
//!   middleware stack (request id, span, header limit, deadline, body limit) and the health probes.
//! - [`config`]: layered loading and the top-level settings tree; each section's types and rules live with the
//!   code that uses them (`providers::*::config`, `store`, `ttl`).
//! - [`providers`]: one folder per token scheme (`twilio`, `netease`, `mecloud`), each with the same inner
//!   files: `config.rs`, wire and domain types, `token.rs`, `handlers.rs`, and a `mod.rs` exposing
//!   `Provider::from_settings(..)` and `router(Arc<Provider>)` over the provider's own state.
//! - [`store`]: server-side token state behind the [`store::TokenStore`] contract; `embedded` (redb) and
//!   `redis` backends, typed state keys in `store::keys`.
//! - Shared pieces: [`error`] (the JSON error shape), [`extract`] (body extractors), [`settings`] (the
//!   configuration error, secret redaction), [`ttl`] (the TTL policy, the clock, time conversions), [`decimal`]
//!   (canonical numbers), [`telemetry`] (tracing set-up), [`healthcheck`] (the `tokenmint healthcheck` probe).
#![forbid(unsafe_code)]

pub mod cli;
pub mod config;
pub mod connection;
pub mod decimal;
pub mod error;
pub mod extract;
pub mod healthcheck;
pub mod http;
pub mod metrics;
pub mod outcome;
pub mod providers;
pub mod settings;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod ttl;
