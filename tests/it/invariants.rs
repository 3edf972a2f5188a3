//! Runs that end cleanly where arithmetic reaches the end of the clock.

use meshsim::engine::RunError;

/// A Pareto with a shape just above 1 has a finite mean and a tail that reaches past
/// the end of the clock (about 584 years): a draw saturates, and adding the protocol's
/// encode cost to it must saturate too, ending the run with `ClockOverflow`, not a panic.
#[test]
fn a_pareto_draw_past_the_end_of_the_clock_ends_the_run_cleanly() {
    let text = r#"
[simulation]
seed = 3
requests = 2000
[network]
latency = { dist = "pareto", scale = "24000h", shape = 1.0001 }
[policies.grpc]
protocol = "grpc"
[services.front]
workers = 4000
[services.front.endpoints.page]
steps = [{ call = "back/item", policy = "grpc" }]
[services.back]
workers = 4000
[services.back.endpoints.item]
steps = [{ work = "1ms" }]
[workloads.users]
target = "front/page"
rate = 100
"#;
    let sc = meshsim::scenario::from_source("pareto.toml", "pareto", text, &[])
        .unwrap_or_else(|e| panic!("invalid scenario:\n{e}"));
    match meshsim::simulate(sc) {
        Err(RunError::ClockOverflow { .. }) => {}
        Err(e) => panic!("expected the clock to overflow, got {e}"),
        Ok(_) => panic!("expected a draw past the end of the clock (p ~ 0.5% per message)"),
    }
}
