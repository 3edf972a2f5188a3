//! One integration-test binary (fast to link), one module per concern.

mod analytic;
mod broker_gaps;
mod broker_properties;
mod brokers_scenarios;
mod budget;
mod classroom;
mod cli;
mod determinism;
mod fuzz;
mod golden;
mod invalid;
mod invariants;
mod layers;
mod multi;
mod orphans;
mod policies;
mod presets_boundaries;
mod progress;
mod properties;
mod robust;
mod sagas;
mod series;
mod support;
mod trace;
mod trace_messages;
mod views;
