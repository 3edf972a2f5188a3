//! Issue 11, section 1: runs that escaped the event budget. Every handled event counts
//! (from the heap or the world's immediate queue), a `stream` step's draws are charged,
//! and a clock that stands still is caught early as a zero-time loop.

use assert_cmd::Command;
use meshsim::scenario;
use predicates::str::contains;

/// A consumer that publishes every message it handles back to its own queue, through
/// a broker with zero latency: the loop never advances the clock. `budget` is inserted
/// in `[simulation]` (line 3 on).
fn self_publishing(budget: &str) -> String {
    format!(
        r#"[simulation]
duration = "1s"
{budget}
[network]
latency = "0s"

[workloads.w]
target = "api/go"
rate = 100

[services.api.endpoints.go]
steps = [{{ publish = "b/q" }}]

[brokers.b]
latency = "0s"

[brokers.b.queues.q]

[consumers.c]
queue = "b/q"
steps = [{{ publish = "b/q" }}]
"#
    )
}

/// Runs the binary on `text` written to a file named `loop.toml`.
fn run_binary(text: &str) -> assert_cmd::assert::Assert {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("loop.toml");
    std::fs::write(&path, text).unwrap();
    let out = dir.path().join("out");
    Command::cargo_bin("meshsim")
        .unwrap()
        .arg("run")
        .arg(&path)
        .args(["-q", "--out"])
        .arg(&out)
        .assert()
}

#[test]
fn zero_latency_hops_count_against_the_budget() {
    // Before: the hops were handled inside one counted event, and the run aborted
    // allocating 5 GiB even with `max_events = 10`.
    run_binary(&self_publishing("max_events = 10"))
        .code(2)
        .stderr(contains("the event budget of 10 events ran out"))
        .stderr(contains("loop.toml:3:14"));
}

#[test]
fn a_zero_time_loop_is_caught_long_before_the_default_budget() {
    // Before: the 2 x 10^9 budget caught this loop only after minutes (532 s in release).
    run_binary(&self_publishing(""))
        .code(2)
        .stderr(contains(
            "more than 10000000 events in a row were handled at simulated time",
        ))
        .stderr(contains("max_events_at_one_instant"))
        .stderr(contains("loop.toml:1:1"));
}

#[test]
fn the_zero_time_limit_is_set_in_simulation_and_located_there() {
    let text = self_publishing("max_events_at_one_instant = 1000");
    let sc = scenario::from_source("loop.toml", "loop", &text, &[]).unwrap();
    let err = meshsim::simulate(sc).err().expect("the clock stands still");
    assert!(
        matches!(
            err,
            meshsim::engine::RunError::ZeroTimeLoop { limit: 1000, .. }
        ),
        "{err}"
    );
    let refusal = scenario::run_error::locate("loop.toml", &text, &err);
    assert_eq!(refusal.located.len(), 1, "{refusal}");
    assert_eq!(
        (refusal.located[0].line, refusal.located[0].column),
        (3, 29)
    );
    assert!(
        refusal.rendered.contains("more than 1000 events in a row"),
        "{refusal}"
    );
}

#[test]
fn the_zero_time_limit_must_be_positive() {
    let text = self_publishing("max_events_at_one_instant = 0");
    let e = scenario::from_source("loop.toml", "loop", &text, &[])
        .err()
        .expect("refused");
    let l = &e.located()[0];
    assert_eq!((l.line, l.column), (3, 29), "{e}");
    assert!(e.to_string().contains("out of range"), "{e}");
}

#[test]
fn every_message_of_a_stream_counts_against_the_budget() {
    // Before: each stream drew its million intervals inside one event, and ~100
    // requests ran to the end in a few hundred counted events.
    let text = r#"[simulation]
duration = "1s"
max_events = 1000
[services.s.endpoints.get]
steps = [{ stream = 1000000, interval = "1ns" }]
[workloads.w]
target = "s/get"
rate = 100
"#;
    let sc = scenario::from_source("stream.toml", "stream", text, &[]).unwrap();
    let err = meshsim::simulate(sc).err().expect("the budget runs out");
    assert!(
        matches!(
            err,
            meshsim::engine::RunError::BudgetExhausted { budget: 1000, .. }
        ),
        "{err}"
    );
    // Within the budget the draws are charged, not reported as events.
    let sc = scenario::from_source(
        "stream.toml",
        "stream",
        text,
        &["simulation.max_events=1000000000".into()],
    )
    .unwrap();
    let out = meshsim::simulate(sc).unwrap();
    assert!(out.report.events < 10_000, "{}", out.report.events);
}

#[test]
fn reported_events_are_heap_pops_while_the_budget_counts_every_hop() {
    // A zero-latency hop is handled in the same pop (`events` is pops, as throughput is
    // measured), yet it counts against `max_events`: a budget of the events the 0 s run
    // reports is too small for it.
    let text = |latency: &str| {
        format!(
            "[simulation]\nrequests = 20\n[network]\nlatency = \"{latency}\"\n\
             [services.a.endpoints.get]\nsteps = [{{ work = \"1ms\" }}, {{ call = \"b/get\" }}]\n\
             [services.b.endpoints.get]\nsteps = [{{ work = \"1ms\" }}]\n\
             [workloads.w]\ntarget = \"a/get\"\nrate = 10\n"
        )
    };
    let run = |latency: &str, budget: u64| {
        let sc = scenario::from_source(
            "hop.toml",
            "hop",
            &text(latency),
            &[format!("simulation.max_events={budget}")],
        )
        .unwrap();
        meshsim::simulate(sc)
    };
    let with_hops = run("1ns", 1_000_000).unwrap().report.events;
    let without = run("0s", 1_000_000).unwrap().report.events;
    assert!(without < with_hops, "{without} vs {with_hops}");
    let err = run("0s", without).err().expect("the hops count");
    assert!(
        matches!(err, meshsim::engine::RunError::BudgetExhausted { .. }),
        "{err}"
    );
}
