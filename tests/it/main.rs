//! One integration-test binary (fast to link), one module per concern.

mod analytic;
mod broker_properties;
mod brokers_scenarios;
mod cli;
mod determinism;
mod golden;
mod invalid;
mod policies;
mod properties;
mod support;
mod views;
