//! The library presets at their boundaries (issue 14): each test scripts one boundary
//! with constant arrivals and scheduled faults, and checks the transition times, refusals
//! and attempt counts worked out by hand from the library's own source (cited per test;
//! versions and files in docs/scenario.md, "Preset boundaries").
//!
//! One caller (workload `w`, constant arrivals: the n-th request at n / rate) calls
//! `s/get` under policy `p`; network latency is zero, so an `error` fault answers at the
//! instant the request arrives and a handler's `work` is the whole latency.

use super::support::{json, run};
use serde_json::Value;

/// `requests` calls at `rate`/s to `s/get` (handler `steps`) under `[policies.p]` =
/// `policy`, with `extra` appended (faults, sub-tables).
fn scenario(policy: &str, steps: &str, requests: u64, rate: f64, extra: &str) -> String {
    format!(
        r#"
[simulation]
requests = {requests}
[services.s]
workers = 1000
[services.s.endpoints.get]
steps = [{steps}]
[workloads.w]
target = "s/get"
arrivals = "constant"
rate = {rate}
policy = "p"
[policies.p]
{policy}
{extra}
"#
    )
}

fn fault(kind: &str, from: &str, until: &str, what: &str) -> String {
    format!(
        "[[faults]]\nkind = \"{kind}\"\nservice = \"s\"\nfrom = \"{from}\"\nuntil = \"{until}\"\n{what}\n"
    )
}

fn error(from: &str, until: &str) -> String {
    fault("error", from, until, "status = \"unavailable\"")
}

fn slow(from: &str, until: &str, extra: &str) -> String {
    fault("slow", from, until, &format!("extra = \"{extra}\""))
}

fn report(text: &str) -> Value {
    json(&run(text, &[]).report)
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not an integer: {v}"))
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn edge(r: &Value) -> &Value {
    &r["edges"]["w->s/get"]
}

/// (t_s, from, to) of every breaker transition, with states as c, o, h.
fn transitions(r: &Value) -> Vec<(f64, char, char)> {
    let short = |s: &Value| match s.as_str().unwrap() {
        "closed" => 'c',
        "open" => 'o',
        "half_open" => 'h',
        other => panic!("state {other}"),
    };
    edge(r)["breaker"]["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (f(&t["t_s"]), short(&t["from"]), short(&t["to"])))
        .collect()
}

/// (attempts, rejected by the breaker) on the edge.
fn sent_and_refused(r: &Value) -> (u64, u64) {
    let e = edge(r);
    (n(&e["attempts"]), n(&e["rejected"]["breaker"]))
}

// ---- opossum: calls count when fired ----

#[test]
fn opossum_counts_calls_in_flight_in_the_denominator() {
    // opossum lib/circuit.js:656 emits `fire` (counted in the current bucket) before the
    // open check at :711; fail() (:993-996) opens when failures / fires * 100 > 50.
    // Calls take 350 ms; failures from 0.35 s. At 0.4 s the calls of 0.1, 0.2 and 0.3 s
    // are still in flight: 1/4, then 2/5 (0.5 s), 3/6 = 50% (0.6 s, not > 50), 4/7 (0.7 s): open.
    let text = |count_at: &str| {
        scenario(
            &format!("preset = \"opossum\"\nbreaker = {{ {count_at} }}"),
            r#"{ work = "350ms" }"#,
            20,
            10.0,
            &error("0.35s", "5s"),
        )
    };
    let r = report(&text(""));
    assert_eq!(transitions(&r)[0], (0.7, 'c', 'o'));
    // Sent 0.1..0.7 s; refused 0.8..2.0 s.
    assert_eq!(sent_and_refused(&r), (7, 13));
    assert_eq!(n(&r["workloads"]["w"]["ok"]), 3);
    // Counted at the outcome, the first failure reads 1/1 and opens at 0.4 s.
    let r = report(&text(r#"count_at = "outcome""#));
    assert_eq!(transitions(&r)[0], (0.4, 'c', 'o'));
    assert_eq!(sent_and_refused(&r), (4, 16));
}

// ---- Polly: buckets start at the first outcome ----

#[test]
fn polly_health_buckets_start_at_the_first_outcome() {
    // Polly RollingHealthMetrics.cs:48: a 3 s bucket starts at the first outcome at least
    // 3 s after the current one started; :57 drops it once `now - StartedAt >= 30 s`.
    // AdvancedCircuitBehavior.cs:27 opens when throughput >= minimum and rate >= ratio.
    // Calls every 1 s take 500 ms; the calls of 1 s and 30 s hit error faults (answered
    // at once). The bucket started by the failure at 1.0 s still holds it at 30.0 s (29 s
    // old): 2 failures in 30 outcomes = 6.7% >= 5%: open. Clock-aligned buckets (the
    // window at 30 s is [3 s, 33 s)) have dropped it: 1 in 28 = 3.6%, closed.
    let text = |start: &str| {
        scenario(
            &format!(
                "preset = \"polly\"\nretry = {{ retries = 0 }}\nbreaker = {{ minimum_calls = 20, failure_rate = 5 {start} }}"
            ),
            r#"{ work = "500ms" }"#,
            30,
            1.0,
            &format!("{}{}", error("0.9s", "1.1s"), error("29.9s", "30.1s")),
        )
    };
    let r = report(&text(""));
    assert_eq!(transitions(&r), vec![(30.0, 'c', 'o')]);
    let r = report(&text(r#", buckets_start = "clock""#));
    assert_eq!(transitions(&r), vec![]);
}

// ---- the end of the open time: resilience4j strictly after, Polly at or after ----

/// Calls every 100 ms taking 10 ms, failing from 2 s to 5 s; `breaker` in `policy`.
fn open_end(policy: &str) -> Value {
    report(&scenario(
        policy,
        r#"{ work = "10ms" }"#,
        70,
        10.0,
        &error("2s", "5s"),
    ))
}

#[test]
fn resilience4j_refuses_the_call_at_the_exact_end_of_the_open_time() {
    // CircuitBreakerStateMachine.java:725: OpenState.tryAcquirePermission half-opens only
    // if `clock.instant().isAfter(retryAfterWaitDuration)`. Count window of 10: the 5th
    // failure (2.4 s) makes 5 of 10 (>= 50%): open until 3.4 s. The call at 3.4 s is
    // refused; 3.5 s is the probe, fails, re-opens until 4.5 s; 4.6 s likewise; 5.7 s
    // succeeds (answered 5.71 s).
    let policy = |end: &str| {
        format!(
            "preset = \"resilience4j\"\nretry = {{ retries = 0 }}\nbreaker = {{ window = \"count\", size = 10, minimum_calls = 10, open_for = \"1s\", half_open_probes = 1 {end} }}"
        )
    };
    let r = open_end(&policy(""));
    assert_eq!(
        transitions(&r),
        vec![
            (2.4, 'c', 'o'),
            (3.5, 'o', 'h'),
            (3.5, 'h', 'o'),
            (4.6, 'o', 'h'),
            (4.6, 'h', 'o'),
            (5.7, 'o', 'h'),
            (5.71, 'h', 'c'),
        ]
    );
    // Refused: 2.5..3.4, 3.6..4.5, 4.7..5.6 s; sent: 24 before, 3 probes, 5.7..7.0 s.
    assert_eq!(sent_and_refused(&r), (40, 30));
    // With Polly's `>=` the call at the end is the probe.
    let r = open_end(&policy(r#", open_end = "inclusive""#));
    assert_eq!(
        transitions(&r),
        vec![
            (2.4, 'c', 'o'),
            (3.4, 'o', 'h'),
            (3.4, 'h', 'o'),
            (4.4, 'o', 'h'),
            (4.4, 'h', 'o'),
            (5.4, 'o', 'h'),
            (5.41, 'h', 'c'),
        ]
    );
    assert_eq!(sent_and_refused(&r).1, 27);
}

#[test]
fn polly_admits_the_probe_at_the_exact_end_of_the_break() {
    // CircuitStateController.cs:308: `if (now >= _blockedUntil)` half-opens (and :136-139
    // makes that call the probe). 19 successes (0.1..1.9 s), then failures from 2.0 s:
    // the 19th (3.8 s) makes 19/38 >= 50%: open until 4.8 s. The call at 4.8 s is the
    // probe, fails (the fault lasts to 5 s), re-opens until 5.8 s; the probe at 5.8 s
    // succeeds at 5.81 s.
    let policy = |end: &str| {
        format!(
            "preset = \"polly\"\nretry = {{ retries = 0 }}\nbreaker = {{ minimum_calls = 5, failure_rate = 50, open_for = \"1s\" {end} }}"
        )
    };
    let r = open_end(&policy(""));
    assert_eq!(
        transitions(&r),
        vec![
            (3.8, 'c', 'o'),
            (4.8, 'o', 'h'),
            (4.8, 'h', 'o'),
            (5.8, 'o', 'h'),
            (5.81, 'h', 'c'),
        ]
    );
    assert_eq!(sent_and_refused(&r).1, 9 + 9);
    // resilience4j's strict end: 4.8 s refused, 4.9 s probe fails, 5.9 s refused, 6.0 s.
    let r = open_end(&policy(r#", open_end = "exclusive""#));
    assert_eq!(
        transitions(&r),
        vec![
            (3.8, 'c', 'o'),
            (4.9, 'o', 'h'),
            (4.9, 'h', 'o'),
            (6.0, 'o', 'h'),
            (6.01, 'h', 'c'),
        ]
    );
    assert_eq!(sent_and_refused(&r).1, 10 + 10);
}

// ---- late outcomes while half-open ----

#[test]
fn opossum_closes_on_a_late_success_while_half_open() {
    // circuit.js:349-352: any `success` while half-open closes, whichever call it is.
    // The call of 0.1 s is slowed to answer at 1.38 s; 0.2 s fails (2 fires, 1 failure:
    // 50%), 0.3 s fails (2/3): open; the timer half-opens at 0.3 + 1.05 = 1.35 s. The late
    // success closes at 1.38 s. With epochs (`late_outcomes = "ignore"`) it is dropped and
    // the next call (1.4 s) is the probe, answered at 1.41 s.
    let text = |late: &str| {
        scenario(
            &format!("preset = \"opossum\"\nbreaker = {{ open_for = \"1.05s\" {late} }}"),
            r#"{ work = "10ms" }"#,
            20,
            10.0,
            &format!(
                "{}{}",
                slow("0.05s", "0.15s", "1.27s"),
                error("0.15s", "0.35s")
            ),
        )
    };
    let r = report(&text(""));
    assert_eq!(
        transitions(&r),
        vec![(0.3, 'c', 'o'), (1.35, 'o', 'h'), (1.38, 'h', 'c')]
    );
    assert_eq!(sent_and_refused(&r).1, 10); // 0.4..1.3 s
    let r = report(&text(r#", late_outcomes = "ignore""#));
    assert_eq!(
        transitions(&r),
        vec![(0.3, 'c', 'o'), (1.35, 'o', 'h'), (1.41, 'h', 'c')]
    );
    assert_eq!(sent_and_refused(&r).1, 10);
}

#[test]
fn polly_reopens_on_a_late_failure_while_half_open() {
    // CircuitStateController.cs:231-234: any failure while half-open opens again; a
    // success arriving while open is only recorded (:193-204). The call of 0.1 s hangs
    // and times out (1.25 s) at 1.35 s; 0.2 and 0.3 s fail: 2/2, open until 1.3 s; the
    // call of 1.3 s is the probe, slowed to answer at 1.51 s. The late timeout re-opens at
    // 1.35 s until 2.35 s; the probe's success at 1.51 s changes nothing; 2.4 s probes
    // and closes at 2.41 s. With epochs, the probe closes at 1.51 s.
    let text = |late: &str| {
        scenario(
            &format!(
                "preset = \"polly\"\ntimeout = \"1.25s\"\nretry = {{ retries = 0 }}\nbreaker = {{ minimum_calls = 2, failure_rate = 50, open_for = \"1s\" {late} }}"
            ),
            r#"{ work = "10ms" }"#,
            25,
            10.0,
            &format!(
                "{}{}{}",
                slow("0.05s", "0.15s", "5s"),
                error("0.15s", "0.35s"),
                slow("1.25s", "1.35s", "0.2s")
            ),
        )
    };
    let r = report(&text(""));
    assert_eq!(
        transitions(&r),
        vec![
            (0.3, 'c', 'o'),
            (1.3, 'o', 'h'),
            (1.35, 'h', 'o'),
            (2.4, 'o', 'h'),
            (2.41, 'h', 'c'),
        ]
    );
    assert_eq!(sent_and_refused(&r).1, 9 + 10); // 0.4..1.2 s, 1.4..2.3 s
    let r = report(&text(r#", late_outcomes = "ignore""#));
    assert_eq!(
        transitions(&r),
        vec![(0.3, 'c', 'o'), (1.3, 'o', 'h'), (1.51, 'h', 'c')]
    );
    assert_eq!(sent_and_refused(&r).1, 9 + 2); // and 1.4, 1.5 s while the probe is out
}

// ---- gRPC (gRFC A6) ----

/// One call at 0.1 s under the grpc preset without jitter, plus `more` policy lines.
fn grpc_one(more: &str, steps: &str, extra: &str) -> Value {
    report(&scenario(
        &format!("preset = \"grpc\"\n{more}"),
        steps,
        1,
        10.0,
        extra,
    ))
}

fn latency_ms(r: &Value) -> f64 {
    f(&r["workloads"]["w"]["latency_ms"]["max"])
}

#[test]
fn grpc_backoff_restarts_at_the_initial_wait_after_a_pushback() {
    // grpc-go stream.go:862-871 (`numRetriesSincePushback = 0`), grpc-java
    // RetriableStream.java:1089-1092 (`nextBackoffIntervalNanos = initialBackoffNanos`).
    // 0.1 s: fault, no pushback: wait 100 ms. 0.2 s: pushback 300 ms. 0.5 s: fault: the
    // backoff restarts at 100 ms (not 400). 0.6 s: the 4th and last attempt.
    let r = grpc_one(
        "retry = { jitter = \"none\" }",
        r#"{ fail = "unavailable", retry_after = "300ms" }"#,
        &format!("{}{}", error("0.05s", "0.15s"), error("0.45s", "0.55s")),
    );
    assert_eq!(latency_ms(&r), 500.0);
    assert_eq!(n(&edge(&r)["attempts"]), 4);
}

#[test]
fn grpc_pushback_zero_retries_at_once_and_negative_stops() {
    // A6 "Pushback": 0 ms is a retry now; a negative value means do not retry
    // (grpc-go stream.go:827-830, grpc-java RetriableStream.java:1093).
    let r = grpc_one("", r#"{ fail = "unavailable", retry_after = "0s" }"#, "");
    assert_eq!(latency_ms(&r), 0.0);
    assert_eq!(n(&edge(&r)["attempts"]), 4);
    // Six calls told not to retry take a throttle token each (stream.go:829), 10 -> 4;
    // the seventh fails with a plain `unavailable` (3 tokens): the throttle refuses.
    let r = report(&scenario(
        r#"preset = "grpc""#,
        r#"{ fail = "unavailable", retry_after = "-1ms" }"#,
        7,
        10.0,
        &error("0.65s", "1s"),
    ));
    let e = edge(&r);
    assert_eq!((n(&e["attempts"]), n(&e["retries"])), (7, 0));
    assert_eq!(n(&e["rejected"]["budget"]), 1);
}

#[test]
fn grpc_pushback_on_a_status_that_is_not_retryable() {
    // grpc-go returns before any retry for a status outside retryableStatusCodes
    // (stream.go:847-850); grpc-java retries after any pushback >= 0 whatever the status
    // (RetriableStream.java:1089-1092): `pushback_any_status = true`.
    let steps = r#"{ fail = "internal", retry_after = "50ms" }"#;
    let r = grpc_one("", steps, "");
    assert_eq!(n(&edge(&r)["attempts"]), 1);
    let r = grpc_one("retry = { pushback_any_status = true }", steps, "");
    assert_eq!(n(&edge(&r)["attempts"]), 4);
    assert_eq!(latency_ms(&r), 150.0);
}

#[test]
fn grpc_hedging_is_capped_at_five_attempts() {
    // A6 "Limits on Retries and Hedges": hedgingPolicy.maxAttempts above 5 is 5.
    let r = grpc_one(
        "hedge = { delay = \"10ms\", max_attempts = 7 }",
        r#"{ work = "1s" }"#,
        "",
    );
    let e = edge(&r);
    assert_eq!((n(&e["attempts"]), n(&e["hedges"])), (5, 4));
    assert_eq!(latency_ms(&r), 1000.0);
}

#[test]
fn grpc_hedges_spend_and_obey_throttle_tokens() {
    // A6 "Throttling": a non-fatal failure takes a token (grpc-java
    // RetriableStream.java:1104-1105); no hedge goes out with tokens <= 5. Every attempt
    // fails `unavailable` at once; 10 tokens.
    // Call 1: 9, 8, 7 after its 3 attempts; call 2: 6, then 5 (no third); calls 3-5: one
    // attempt each. A6 sends the next hedge at once after a non-fatal failure.
    let text = |follows: &str| {
        scenario(
            &format!(
                "preset = \"grpc\"\nhedge = {{ delay = \"10ms\", max_attempts = 3, non_fatal = [\"unavailable\"] {follows} }}"
            ),
            r#"{ fail = "unavailable" }"#,
            5,
            10.0,
            "",
        )
    };
    let r = report(&text(""));
    let e = edge(&r);
    assert_eq!((n(&e["attempts"]), n(&e["hedges"])), (8, 3));
    assert_eq!(latency_ms(&r), 0.0);
    // grpc-java leaves the next hedge on its 10 ms timer (:434-437): call 1 takes 20 ms,
    // call 2 fails at 10 ms when its second failure leaves 5 tokens (:1112, committed at
    // :1052); from call 3 no hedge is scheduled (:415-417).
    let r = report(&text(r#", follows = "grpc-java""#));
    let e = edge(&r);
    assert_eq!((n(&e["attempts"]), n(&e["hedges"])), (8, 3));
    assert_eq!(latency_ms(&r), 20.0);
    assert_eq!(f(&r["workloads"]["w"]["latency_ms"]["mean"]), 6.0);
}

#[test]
fn a_non_fatal_hedge_failure_while_another_copy_is_in_flight() {
    // The original (0.1 s) is slowed to answer at 1.2 s; the hedge at 0.2 s fails
    // `unavailable` (non-fatal). A6 "Summary" 3.2: the next hedge goes at once (0.2 s),
    // into the same fault: the original wins at 1.2 s. grpc-java (:434-437) keeps the
    // timer: the third attempt goes at 0.3 s and wins at 0.4 s.
    let text = |follows: &str| {
        scenario(
            &format!(
                "hedge = {{ delay = \"100ms\", max_attempts = 3, non_fatal = [\"unavailable\"] {follows} }}"
            ),
            r#"{ work = "100ms" }"#,
            1,
            10.0,
            &format!(
                "{}{}",
                slow("0.05s", "0.15s", "1s"),
                error("0.15s", "0.25s")
            ),
        )
    };
    let r = report(&text(""));
    let e = edge(&r);
    assert_eq!((n(&e["attempts"]), n(&e["hedges_won"])), (3, 0));
    assert_eq!(latency_ms(&r), 1100.0);
    let r = report(&text(r#", follows = "grpc-java""#));
    let e = edge(&r);
    assert_eq!((n(&e["attempts"]), n(&e["hedges_won"])), (3, 1));
    assert_eq!(latency_ms(&r), 300.0);
}

// ---- the options, refused where they make no sense ----

/// The single located error `policy` (with a failing handler) is refused with, and its line.
fn refused(policy: &str, steps: &str) -> (usize, String) {
    let text = scenario(policy, steps, 1, 1.0, "");
    let err = super::support::error(&text);
    let located = err.located();
    assert_eq!(located.len(), 1, "{err}");
    (located[0].line, err.to_string())
}

#[test]
fn boundary_options_are_checked() {
    // Line 14 is the first line of [policies.p]'s body, 15 the second; 7 the steps.
    let (line, shown) = refused(
        "preset = \"opossum\"\nbreaker = { window = \"count\", count_at = \"fire\" }",
        r#"{ work = "1ms" }"#,
    );
    assert_eq!(line, 15);
    assert!(shown.contains("needs a time window"), "{shown}");
    let (line, shown) = refused("breaker = { open_end = \"soon\" }", r#"{ work = "1ms" }"#);
    assert_eq!(line, 14);
    assert!(shown.contains("\"exclusive\""), "{shown}");
    let (_, shown) = refused(
        "hedge = { delay = \"10ms\", follows = \"grpc-go\" }",
        r#"{ work = "1ms" }"#,
    );
    assert!(shown.contains("unknown hedging rules `grpc-go`"), "{shown}");
    let (line, shown) = refused("", r#"{ fail = "unavailable", retry_after = "-soon" }"#);
    assert_eq!(line, 7);
    assert!(shown.contains("\"-1ms\": do not retry"), "{shown}");
    // A preset that retries other than grpc still cannot hedge.
    let (_, shown) = refused(
        "preset = \"polly\"\nhedge = { delay = \"10ms\" }",
        r#"{ work = "1ms" }"#,
    );
    assert!(shown.contains("cannot both retry and hedge"), "{shown}");
    // opossum's preset given a count window counts at the outcome, refused calls too.
    let r = report(&scenario(
        "preset = \"opossum\"\nbreaker = { window = \"count\", size = 4 }",
        r#"{ work = "350ms" }"#,
        20,
        10.0,
        &error("0.35s", "5s"),
    ));
    assert_eq!(transitions(&r)[0], (0.4, 'c', 'o'));
}

#[test]
fn a_pushback_moves_or_stops_the_next_hedge() {
    // Every attempt works 10 ms and fails `unavailable` with `retry_after`; the original
    // (0.1 s) is slowed to fail at 1.11 s; the first hedge goes at 0.2 s and fails at
    // 0.21 s. Two error faults catch an attempt sent at exactly 0.21 s or 0.26 s.
    // A6 (lines 205, 234-236): the next hedge goes 50 ms after the pushback, at 0.26 s;
    // grpc-java sends it at once, at 0.21 s (RetriableStream.java:1108-1110); without
    // `pushback` A6 sends it at once too, and grpc-java leaves it on its timer (0.3 s).
    let affected = |hedge: &str, retry_after: &str| {
        let r = report(&scenario(
            &format!(
                "hedge = {{ delay = \"100ms\", max_attempts = 3, non_fatal = [\"unavailable\"] {hedge} }}"
            ),
            &format!(
                r#"{{ work = "10ms" }}, {{ fail = "unavailable", retry_after = "{retry_after}" }}"#
            ),
            1,
            10.0,
            &format!(
                "{}{}{}",
                slow("0.05s", "0.15s", "1s"),
                error("0.205s", "0.215s"),
                error("0.255s", "0.265s")
            ),
        ));
        let hit = |i: usize| n(&r["faults"][i]["affected"]);
        (n(&edge(&r)["attempts"]), hit(1), hit(2))
    };
    assert_eq!(affected(", pushback = true", "50ms"), (3, 0, 1));
    assert_eq!(
        affected(r#", pushback = true, follows = "grpc-java""#, "50ms"),
        (3, 1, 0)
    );
    assert_eq!(affected("", "50ms"), (3, 1, 0));
    assert_eq!(affected(r#", follows = "grpc-java""#, "50ms"), (3, 0, 0));
    // A pushback that says not to retry sends no further hedges (A6 line 157, grpc-java
    // `freezeHedging` at :438-441): the original fails at 1.11 s, the call with it.
    assert_eq!(affected(", pushback = true", "-1ms"), (2, 0, 0));
    assert_eq!(affected("", "-1ms"), (3, 1, 0));
}
