//! Issue 11, section 1: runs that escaped the event budget. Every handled event counts
//! (from the heap or the world's immediate queue), a `stream` step's draws are charged,
//! and a clock that stands still is caught early as a zero-time loop.

use crate::support;
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

/// One worker offered 10^6 requests a second with room for 10^7 in its queue: the
/// requests in flight grow by about a million each simulated second. `limits` is
/// inserted in `[simulation]` (line 3 on).
fn flood(limits: &str) -> String {
    format!(
        r#"[simulation]
duration = "1h"
{limits}
[services.api]
queue = 10000000
[services.api.endpoints.get]
steps = [{{ work = "1ms" }}]

[workloads.w]
target = "api/get"
rate = 1000000
"#
    )
}

/// A consumer that publishes two messages for each it handles, through a broker with
/// 1 ms of latency: the clock advances, but the queue grows by one message per handling.
fn doubling(limits: &str) -> String {
    format!(
        r#"[simulation]
duration = "1h"
{limits}
[workloads.w]
target = "api/go"
rate = 100

[services.api.endpoints.go]
steps = [{{ publish = "b/q" }}]

[brokers.b]
latency = "1ms"

[brokers.b.queues.q]

[consumers.c]
queue = "b/q"
steps = [{{ publish = "b/q" }}, {{ publish = "b/q" }}]
"#
    )
}

/// The run's error, for a scenario that must fail.
fn run_error(text: &str, budget: Option<u64>) -> meshsim::engine::RunError {
    let mut sc = scenario::from_source("grow.toml", "grow", text, &[]).unwrap();
    if let Some(b) = budget {
        sc.spec.holds.memory_budget = b;
    }
    meshsim::simulate(sc).err().expect("a runaway")
}

/// (count, limit, events) of a runaway that passed `setting`.
fn runaway(err: &meshsim::engine::RunError, expected: &str) -> (u64, u64, u64) {
    match err {
        meshsim::engine::RunError::Runaway {
            setting,
            count,
            limit,
            events,
            ..
        } if *setting == expected => (*count, *limit, *events),
        e => panic!("expected a runaway at {expected}: {e}"),
    }
}

const CHECK_EVERY: u64 = meshsim::model::PROGRESS_EVERY;

#[test]
fn requests_in_flight_past_their_limit_stop_the_run_early() {
    // Before: only the 2 x 10^9 event budget caught this, after ~9 minutes in release.
    // One arrival is one event and nearly every arrival stays queued, so the detector,
    // checked every CHECK_EVERY events, trips within one check of the limit.
    let err = run_error(&flood("max_requests_in_flight = 100000"), None);
    let (count, limit, events) = runaway(&err, "max_requests_in_flight");
    assert_eq!(limit, 100_000);
    assert!(count > limit && count <= limit + CHECK_EVERY, "{count}");
    assert!(events <= limit + 2 * CHECK_EVERY, "{events}");
    let msg = err.to_string();
    assert!(msg.contains("the requests in flight grew to"), "{msg}");
    let text = flood("max_requests_in_flight = 100000");
    let refusal = scenario::run_error::locate("grow.toml", &text, &err);
    assert_eq!(
        (refusal.located[0].line, refusal.located[0].column),
        (3, 26)
    );
}

#[test]
fn unset_limits_are_sized_to_the_memory_budget() {
    // 64 MiB: half of it at 512 bytes a request is 65536 requests.
    let err = run_error(&flood(""), Some(64 << 20));
    let (count, limit, events) = runaway(&err, "max_requests_in_flight");
    assert_eq!(limit, 65_536);
    assert!(count > limit && events <= limit + 2 * CHECK_EVERY, "{err}");
    // Twice the budget, twice the limit.
    let err = run_error(&flood(""), Some(128 << 20));
    assert_eq!(runaway(&err, "max_requests_in_flight").1, 131_072);
}

#[test]
fn a_self_publishing_consumer_is_stopped_by_its_messages_in_flight() {
    // Before: caught by the event budget only, after minutes.
    let err = run_error(&doubling("max_messages_in_flight = 20000"), None);
    let (count, limit, events) = runaway(&err, "max_messages_in_flight");
    assert_eq!(limit, 20_000);
    assert!(count > limit, "{count}");
    // Each handling adds one message for at most a handful of events (delivery, the
    // handler's end, two publish hops, the ack): caught within 5 events a message and
    // one check of the limit.
    assert!(
        events <= 5 * count + CHECK_EVERY,
        "{events} events for {count}"
    );
    assert!(
        err.to_string().contains("the messages in brokers grew to"),
        "{err}"
    );
}

#[test]
fn pending_events_past_their_limit_stop_the_run() {
    // Every request starts at once on one of 10^7 workers and stays an hour: each keeps
    // its end waiting in the engine's queue.
    let text = flood("max_pending_events = 100000\nmax_requests_in_flight = 1000000000")
        .replace("queue = 10000000", "replicas = 10\nworkers = 1000000")
        .replace("work = \"1ms\"", "work = \"1h\"");
    let err = run_error(&text, None);
    let (count, limit, events) = runaway(&err, "max_pending_events");
    assert_eq!(limit, 100_000);
    assert!(count > limit && events <= limit + 2 * CHECK_EVERY, "{err}");
    assert!(
        err.to_string()
            .contains("the events waiting to be handled grew to"),
        "{err}"
    );
}

#[test]
fn hold_limits_must_be_positive_and_are_located() {
    for key in [
        "max_requests_in_flight",
        "max_messages_in_flight",
        "max_pending_events",
    ] {
        let text = flood(&format!("{key} = 0"));
        let e = scenario::from_source("grow.toml", "grow", &text, &[])
            .err()
            .expect("refused");
        let l = &e.located()[0];
        assert_eq!((l.line, l.column), (3, key.len() + 4), "{e}");
    }
}

#[test]
fn a_run_past_its_memory_budget_stops_cleanly_and_writes_nothing() {
    // The hold limits are raised out of the way: only the counting allocator can stop
    // this run, at a budget the estimate before the run accepts.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grow.toml");
    std::fs::write(
        &path,
        flood("max_requests_in_flight = 1000000000\nmax_pending_events = 1000000000"),
    )
    .unwrap();
    let out = dir.path().join("out");
    Command::cargo_bin("meshsim")
        .unwrap()
        .arg("run")
        .arg(&path)
        .args(["-q", "--max-memory", "64MB", "--out"])
        .arg(&out)
        .assert()
        .code(2)
        .stderr(contains(
            "above the memory budget of 61 MiB; nothing was written",
        ))
        .stderr(contains("grow.toml:1:1"));
    let written: Vec<_> = std::fs::read_dir(&out)
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(written.is_empty(), "{written:?}");
}

#[test]
fn a_topic_whose_groups_keep_up_is_not_a_runaway() {
    // 40,000 orders to a topic both groups consume (lag stays under ~1000): the log
    // keeps every entry for its week of retention, but entries the groups committed
    // are not waiting for anyone. Counting the whole log stopped this healthy run at its
    // second check (~10,000 entries); only the unconsumed entries count now.
    let run = support::run_file(
        "kafka_consumer_group.toml",
        &[
            "simulation.requests=40000",
            "simulation.max_messages_in_flight=5000",
        ],
    );
    let c = &support::json(&run.report)["consistency"];
    assert_eq!(c["topics"]["kafka/orders"]["appended"], 40_000);
    assert_eq!(c["topics"]["kafka/orders"]["retention_removed"], 0);
    for (group, g) in c["groups"].as_object().unwrap() {
        let lag = g["max_depth"].as_u64().unwrap();
        assert!(lag < 5000, "{group}: max lag {lag}");
    }
    // And a limit below what the groups have still to consume does stop it.
    let text = std::fs::read_to_string(format!(
        "{}/scenarios/kafka_consumer_group.toml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let sc = scenario::from_source(
        "scenarios/kafka_consumer_group.toml",
        "kafka_consumer_group",
        &text,
        &[
            "simulation.requests=40000".into(),
            "simulation.max_messages_in_flight=20".into(),
        ],
    )
    .unwrap();
    let err = meshsim::simulate(sc).err().expect("a runaway");
    let (count, limit, _) = runaway(&err, "max_messages_in_flight");
    assert_eq!(limit, 20);
    assert!(count > 20 && count < 5000, "{count}");
}
