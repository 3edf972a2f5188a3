//! meshsim: a deterministic discrete-event simulator of how microservices talk to each
//! other. See ARCHITECTURE.md for the map.

pub mod cli;
pub mod engine;
pub mod metrics;
pub mod model;
pub mod report;
pub mod scenario;
