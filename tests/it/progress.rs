//! What a run reports to its progress bar at each pause: the requests answered, which
//! trail the requests sent by exactly those in flight.

use meshsim::model::trace::Observe;
use meshsim::scenario;

/// A request every millisecond, each answered 10 ms after it left (no network, ten
/// workers for at most ten at once): at any instant ten are in flight.
const STEADY: &str = r#"
[simulation]
requests = 100000
[network]
latency = "0ms"
[services.api]
workers = 20
[services.api.endpoints.get]
steps = [{ work = "10ms" }]
[workloads.w]
target = "api/get"
arrivals = "constant"
rate = 1000
"#;

#[test]
fn progress_counts_the_requests_answered_behind_those_sent() {
    let sc = scenario::from_source("steady", "steady", STEADY, &[]).unwrap();
    let mut seen = Vec::new();
    meshsim::simulate_observed(
        sc,
        &Observe::default(),
        &mut |p| {
            seen.push(p);
            Ok(())
        },
        None,
    )
    .unwrap();
    assert!(seen.len() >= 3, "{} pauses", seen.len());
    let mut last = 0;
    for p in &seen {
        assert_eq!(p.max_requests, Some(100_000));
        assert!(p.requests_answered >= last);
        last = p.requests_answered;
        // Request k leaves at k ms and is answered at k + 10 ms: at time t, those sent in
        // (t - 10 ms, t] are in flight, give or take the one whose events at t the
        // pause splits.
        let now_ms = p.now.as_nanos() / 1_000_000;
        let in_flight = p.requests_sent - p.requests_answered;
        assert!(
            (9..=11).contains(&in_flight),
            "{in_flight} in flight at {now_ms} ms"
        );
        assert!(
            p.requests_sent.abs_diff(now_ms) <= 1,
            "{} sent at {now_ms} ms",
            p.requests_sent
        );
    }
}
