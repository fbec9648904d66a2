//! The integration test binary: one harness, one file per area.

mod cli;
mod health;
mod helpers;
mod http_basics;
mod twilio;
mod twilio_library;
