//! Token schemes, one module each, with the same inner shape: configuration turned into a provider at start-up,
//! wire types parsed into domain types, a token module that signs and checks, and the routes.

pub mod mecloud;
pub mod netease;
pub mod twilio;
