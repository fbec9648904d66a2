//! The integration test binary: one harness, one file per area.

mod cli;
mod cors;
mod durability;
mod health;
mod helpers;
mod http_basics;
mod integrity;
mod limits;
mod logs;
mod mecloud;
mod metrics;
mod netease;
mod netease_sample;
mod redis_server;
mod reload;
mod store;
mod store_backends;
mod store_faults;
mod twilio;
mod twilio_library;
