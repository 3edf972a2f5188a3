//! Client policies, faults and expectations, end to end: small scenarios with constant
//! distributions, so that counts and latencies are exact numbers known in advance.
//!
//! Most scenarios here are one caller (workload `w`, constant arrivals) calling `s/get`
//! under policy `p`; the edge is `w->s/get`. Network latency is zero unless stated.

use super::support::{json, run, run_file};
use serde_json::Value;

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}
fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not an integer: {v}"))
}

/// Workload `w` sends `requests` calls at `rate`/s (constant) to `s/get`, whose handler
/// is `steps`, under policy `p` (the TOML body of `[policies.p]`).
fn direct(policy: &str, steps: &str, requests: u64, rate: f64) -> String {
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
"#
    )
}

const FAIL: &str = r#"{ fail = "unavailable" }"#;

/// Runs `text` and returns its report.json as a value.
fn report(text: &str) -> Value {
    json(&run(text, &[]).report)
}

fn edge(r: &Value) -> &Value {
    &r["edges"]["w->s/get"]
}

fn wl(r: &Value) -> &Value {
    &r["workloads"]["w"]
}

/// (calls, attempts, retries) of the edge `w->s/get`.
fn counts(r: &Value) -> (u64, u64, u64) {
    let e = edge(r);
    (n(&e["calls"]), n(&e["attempts"]), n(&e["retries"]))
}

/// Every latency statistic of the workload equals `ms` (all calls took exactly that).
fn assert_all_latencies(r: &Value, ms: f64, what: &str) {
    let lat = &wl(r)["latency_ms"];
    for q in ["p50", "p99", "max", "mean"] {
        assert_eq!(f(&lat[q]), ms, "{what}: {q} in {lat}");
    }
}

// ---- 1. attempt counting per preset ----

#[test]
fn presets_count_attempts_like_their_libraries() {
    // Against an always-failing callee: gRPC and resilience4j count the original in
    // maxAttempts (4, 3); Polly, axios-retry and Envoy count retries (3, 3, 1).
    for (preset, attempts) in [
        ("resilience4j", 3),
        ("polly", 4),
        ("axios-retry", 4),
        ("envoy", 2),
    ] {
        let r = report(&direct(&format!("preset = \"{preset}\""), FAIL, 10, 1.0));
        assert_eq!(
            counts(&r),
            (10, 10 * attempts, 10 * (attempts - 1)),
            "{preset}"
        );
        assert_eq!(f(&edge(&r)["amplification"]), attempts as f64, "{preset}");
        assert_eq!(n(&wl(&r)["errors"]["unavailable"]), 10, "{preset}");
    }
}

#[test]
fn grpc_preset_makes_four_attempts_then_its_throttle_engages() {
    // One call: 4 attempts (maxAttempts includes the original).
    let r = report(&direct(r#"preset = "grpc""#, FAIL, 1, 1.0));
    assert_eq!(counts(&r), (1, 4, 3));
    // With the throttle out of the way (1000 tokens), every call makes exactly 4.
    let roomy = r#"preset = "grpc"
retry = { throttle = { max_tokens = 1000, token_ratio = 1 } }"#;
    let r = report(&direct(roomy, FAIL, 10, 1.0));
    assert_eq!(f(&edge(&r)["amplification"]), 4.0);
    // With its own throttle (10 tokens, retry while > 5): the first call's 4 failures
    // leave 6 tokens, the second call's first failure 5: no more retries from then on.
    let r = report(&direct(r#"preset = "grpc""#, FAIL, 10, 1.0));
    assert_eq!(counts(&r), (10, 4 + 9, 3));
    assert_eq!(n(&edge(&r)["rejected"]["budget"]), 9);
}

#[test]
fn finagle_preset_budget_is_ten_per_second_plus_twenty_percent() {
    // 25 attempts at once, within 10/s x 10 s = 100 retries plus 20% of the requests of
    // the last 10 s. Calls at 1 s .. 10 s: 24 + 24 + 24 + 24 retries, then the fifth
    // call takes the budget to 100 + 0.2 x 5 = 101 (5 retries), calls 6-9 get none
    // (101.2 .. 101.8) and the tenth one more (102): 102 retries in all.
    let r = report(&direct(r#"preset = "finagle""#, FAIL, 10, 1.0));
    assert_eq!(counts(&r), (10, 112, 102));
    assert_eq!(n(&edge(&r)["rejected"]["budget"]), 6);
}

#[test]
fn axios_retry_does_not_retry_its_own_timeouts_but_resilience4j_does() {
    // A callee slower than the 100 ms timeout: axios-retry gives up after one attempt
    // (ECONNABORTED is not retried); resilience4j retries every error (3 attempts).
    let slow = r#"{ work = "1s" }"#;
    let r = report(&direct(
        "preset = \"axios-retry\"\ntimeout = \"100ms\"",
        slow,
        5,
        1.0,
    ));
    assert_eq!(counts(&r), (5, 5, 0));
    assert_eq!(n(&wl(&r)["errors"]["deadline_exceeded"]), 5);
    assert_eq!(n(&edge(&r)["timeouts"]), 5);
    let r = report(&direct(
        "preset = \"resilience4j\"\ntimeout = \"100ms\"",
        slow,
        5,
        0.2,
    ));
    assert_eq!(counts(&r), (5, 15, 10));
    assert_eq!(n(&edge(&r)["timeouts"]), 15);
    // A non-transient status: resilience4j retries it too, gRPC (UNAVAILABLE only) not.
    let nf = r#"{ fail = "not_found" }"#;
    let r = report(&direct(r#"preset = "resilience4j""#, nf, 5, 0.2));
    assert_eq!(counts(&r), (5, 15, 10));
    let r = report(&direct(r#"preset = "grpc""#, nf, 5, 1.0));
    assert_eq!(counts(&r), (5, 5, 0));
}

// ---- 2. backoff timing ----

#[test]
fn backoff_waits_add_up_exactly() {
    // Zero latency, always failing, no jitter: the call lasts exactly the sum of waits.
    for (retry, ms) in [
        (
            r#"max_attempts = 3, backoff = "fixed", base = "100ms""#,
            200.0,
        ),
        (
            r#"max_attempts = 3, backoff = "exponential", base = "100ms", multiplier = 2"#,
            300.0,
        ),
        (
            r#"max_attempts = 4, backoff = "linear", base = "100ms""#,
            600.0,
        ),
        (
            r#"max_attempts = 4, backoff = "exponential", base = "100ms", cap = "150ms""#,
            400.0,
        ),
    ] {
        let policy = format!("retry = {{ {retry}, jitter = \"none\" }}");
        let r = report(&direct(&policy, FAIL, 5, 1.0));
        assert_all_latencies(&r, ms, retry);
        assert_eq!(n(&wl(&r)["errors"]["unavailable"]), 5);
    }
}

#[test]
fn pushback_makes_the_client_wait_at_least_the_servers_hint() {
    // The callee asks for 300 ms between tries; the backoff says 100 ms.
    let steps = r#"{ fail = "unavailable", retry_after = "300ms" }"#;
    let retry = r#"max_attempts = 3, backoff = "fixed", base = "100ms", jitter = "none""#;
    let r = report(&direct(
        &format!("retry = {{ {retry}, pushback = true }}"),
        steps,
        5,
        1.0,
    ));
    assert_all_latencies(&r, 600.0, "pushback honoured");
    let r = report(&direct(
        &format!("retry = {{ {retry}, pushback = false }}"),
        steps,
        5,
        1.0,
    ));
    assert_all_latencies(&r, 200.0, "pushback ignored");
}

#[test]
fn jittered_backoff_stays_within_its_bounds() {
    // Full jitter over a fixed 100 ms: each of the two waits is in [0, 100] ms.
    let policy =
        r#"retry = { max_attempts = 3, backoff = "fixed", base = "100ms", jitter = "full" }"#;
    let r = report(&direct(policy, FAIL, 1000, 1.0));
    let lat = &wl(&r)["latency_ms"];
    assert!(f(&lat["max"]) <= 200.0 && f(&lat["p50"]) > 0.0, "{lat}");
    assert!(
        (f(&lat["mean"]) - 100.0).abs() < 10.0,
        "mean of two U(0,100): {lat}"
    );
}

// ---- 3. per-try timeout and deadline ----

fn timeouts_policy(deadline: &str) -> String {
    format!(
        "timeout = \"50ms\"\n{deadline}\nretry = {{ max_attempts = 3, on = [\"deadline_exceeded\"] }}"
    )
}

#[test]
fn per_try_timeouts_add_up_to_the_attempts() {
    // Three 50 ms tries against a 100 ms callee: 150 ms, three timeouts per call.
    let r = report(&direct(
        &timeouts_policy(""),
        r#"{ work = "100ms" }"#,
        10,
        1.0,
    ));
    assert_all_latencies(&r, 150.0, "3 x 50 ms");
    assert_eq!(counts(&r), (10, 30, 20));
    assert_eq!(n(&edge(&r)["timeouts"]), 30);
    assert_eq!(n(&edge(&r)["cancelled"]), 0);
    assert_eq!(n(&wl(&r)["errors"]["deadline_exceeded"]), 10);
}

#[test]
fn the_deadline_cuts_the_third_attempt_short() {
    // With a 120 ms deadline the third try is sent at 100 ms (20 ms remain) and cancelled
    // by the deadline at 120 ms: 3 attempts, 2 per-try timeouts + 1 deadline = 3
    // timeouts, 1 cancelled, and the call ends at exactly 120 ms.
    let text = direct(
        &timeouts_policy("deadline = \"120ms\""),
        r#"{ work = "100ms" }"#,
        10,
        1.0,
    );
    let r = report(&text);
    assert_all_latencies(&r, 120.0, "deadline");
    assert_eq!(counts(&r), (10, 30, 20));
    assert_eq!(n(&edge(&r)["timeouts"]), 30);
    assert_eq!(n(&edge(&r)["cancelled"]), 10);
    assert_eq!(n(&wl(&r)["errors"]["deadline_exceeded"]), 10);
    // A deadline shorter than two tries: the second is cancelled, the third never sent.
    let r = report(&text.replace("120ms", "70ms"));
    assert_all_latencies(&r, 70.0, "70 ms deadline");
    assert_eq!(counts(&r), (10, 20, 10));
    assert_eq!(n(&edge(&r)["cancelled"]), 10);
}

#[test]
fn a_retry_that_cannot_start_before_the_deadline_is_not_waited_for() {
    // Fixed 100 ms backoff, 250 ms deadline: tries at 0, 100, 200 ms; the next would
    // start at 300 ms, past the deadline, so the call gives up at 200 ms with the last
    // attempt's status instead of sleeping into the deadline.
    let policy = r#"deadline = "250ms"
retry = { max_attempts = 10, backoff = "fixed", base = "100ms" }"#;
    let r = report(&direct(policy, FAIL, 5, 1.0));
    assert_all_latencies(&r, 200.0, "deadline-aware backoff");
    assert_eq!(counts(&r), (5, 15, 10));
    assert_eq!(n(&wl(&r)["errors"]["unavailable"]), 5);
}

// ---- 4. retry budgets ----

#[test]
fn a_rate_budget_caps_amplification_at_its_percentage() {
    // 99 calls within the first 10 s (the budget's ttl, so nothing expires): retry k is
    // allowed while k <= 20% of the requests so far, so exactly floor(0.2 x 99) = 19
    // retries, and every call ends with a refused retry.
    let policy =
        r#"retry = { max_attempts = 10, budget = { percent = 20, min_per_s = 0, ttl = "10s" } }"#;
    let r = report(&direct(policy, FAIL, 99, 10.0));
    assert_eq!(counts(&r), (99, 118, 19));
    assert!(f(&edge(&r)["amplification"]) <= 1.2);
    assert_eq!(n(&edge(&r)["rejected"]["budget"]), 99);
    // Over a minute the 10 s window slides. With a constant rate any 10 consecutive
    // one-second buckets hold at most 100 requests, and the last retry granted in them
    // was checked against a window containing all of them: at most 20 retries per 10
    // buckets, so 20% overall; the tolerance of 2 retries covers the partial first and
    // last buckets (9 and 1 requests).
    let r = report(&direct(policy, FAIL, 600, 10.0));
    let amp = f(&edge(&r)["amplification"]);
    assert!(
        amp > 1.15 && amp <= 1.2 + 2.0 / 600.0,
        "amplification {amp}"
    );
    assert!(n(&edge(&r)["rejected"]["budget"]) > 0);
}

/// Ten closed-loop users send one call each at t = 1 s, all at once; each attempt takes
/// 100 ms and fails; up to 4 attempts, no backoff, the given budget.
fn concurrent_failing(budget: &str) -> String {
    format!(
        r#"
[simulation]
requests = 10
[services.s]
workers = 100
[services.s.endpoints.get]
steps = [{{ work = "100ms" }}, {{ fail = "unavailable" }}]
[workloads.w]
target = "s/get"
users = 10
think = "1s"
policy = "p"
[policies.p]
retry = {{ max_attempts = 4 {budget} }}
"#
    )
}

#[test]
fn a_concurrency_budget_bounds_retries_in_flight() {
    // No budget: 10 calls x 4 attempts.
    let r = report(&concurrent_failing(""));
    assert_eq!(counts(&r), (10, 40, 30));
    // Envoy's budget, 20% of the calls in flight but at least 3: of the 10 failures at
    // 1.1 s only 3 may retry; those three then keep retrying (3 calls in flight, the
    // floor of 3 still allows 3 retries): 7 + 3 x 4 = 19 attempts.
    let r = report(&concurrent_failing(
        ", budget = { percent = 20, min_concurrency = 3 }",
    ));
    assert_eq!(counts(&r), (10, 19, 9));
    assert_eq!(n(&edge(&r)["rejected"]["budget"]), 7);
    // Without the floor: 20% of 10 = 2 retries in the first wave; when those fail the
    // 2 calls left in flight allow 20% of 2 = 0.
    let r = report(&concurrent_failing(
        ", budget = { percent = 20, min_concurrency = 0 }",
    ));
    assert_eq!(counts(&r), (10, 12, 2));
    assert_eq!(n(&edge(&r)["rejected"]["budget"]), 10);
}

// ---- 5. gRPC retry throttling ----

#[test]
fn grpc_throttle_stops_retries_at_half_the_tokens_and_successes_refill_it() {
    // 10 tokens, retry while tokens > 5. The callee fails (unavailable) before 10.5 s and
    // after 75.5 s; calls every second.
    //  - call 1 (1 s): failures take 10 -> 5 tokens; retries sent: 4 (tokens 9,8,7,6).
    //  - calls 2-10: one attempt each (tokens 4 .. 0, never below 0).
    //  - calls 11-75 succeed: 65 x 0.1 = 6.5 tokens.
    //  - call 76: 6.5 -> 5.5 (retry), 5.5 -> 4.5 (stop): 1 retry. Calls 77-80: none.
    let text = format!(
        "{}{}",
        direct(
            "retry = { max_attempts = 10, throttle = { max_tokens = 10, token_ratio = 0.1 } }",
            r#"{ work = "0ms" }"#,
            80,
            1.0,
        ),
        r#"
[[faults]]
kind = "error"
service = "s"
status = "unavailable"
from = "0s"
until = "10.5s"
[[faults]]
kind = "error"
service = "s"
status = "unavailable"
from = "75.5s"
until = "200s"
"#
    );
    let r = report(&text);
    assert_eq!(counts(&r), (80, 85, 5));
    assert_eq!(n(&wl(&r)["ok"]), 65);
    assert_eq!(n(&edge(&r)["rejected"]["budget"]), 1 + 9 + 1 + 4);
}

// ---- 6. circuit breaker ----

/// Calls every 100 ms; the callee fails from 2 s to 5 s; a small resilience4j-style
/// breaker (last 10 calls, >= 50%, open 1 s, one probe); no retries.
fn breaker_scenario(extra_policy: &str, requests: u64) -> String {
    format!(
        "{}{}",
        direct(
            &format!(
                r#"breaker = {{ window = "count", size = 10, minimum_calls = 10, failure_rate = 50, open_for = "1s", half_open_probes = 1 }}
{extra_policy}"#
            ),
            r#"{ work = "10ms" }"#,
            requests,
            10.0,
        ),
        r#"
[[faults]]
kind = "error"
service = "s"
status = "unavailable"
from = "2s"
until = "5s"
"#
    )
}

/// (arrivals at s/get, calls, rejected.breaker) of a run cut at `t_s`.
fn breaker_counts_until(t_s: f64) -> (u64, u64, u64) {
    let ns = (t_s * 1e9).round() as u64;
    let out = run(
        &breaker_scenario("", 100),
        &[&format!("simulation.duration={ns}ns")],
    );
    let r = json(&out.report);
    (
        n(&r["endpoints"]["s/get"]["arrivals"]),
        n(&edge(&r)["calls"]),
        n(&edge(&r)["rejected"]["breaker"]),
    )
}

#[test]
fn an_open_breaker_sends_nothing_downstream() {
    let r = report(&breaker_scenario("", 100));
    let e = edge(&r);
    let transitions = e["breaker"]["transitions"].as_array().unwrap().clone();
    let opens: Vec<(f64, f64)> = transitions
        .windows(2)
        .filter(|w| w[0]["to"] == "open")
        .map(|w| (f(&w[0]["t_s"]), f(&w[1]["t_s"])))
        .collect();
    assert!(
        !opens.is_empty(),
        "the breaker never opened: {transitions:?}"
    );
    assert_eq!(e["breaker"]["state_at_end"], "closed", "{transitions:?}");
    // Every call was either sent (one attempt) or refused by the breaker.
    assert_eq!(
        n(&e["attempts"]) + n(&e["rejected"]["breaker"]),
        n(&e["calls"])
    );
    assert!(n(&e["rejected"]["breaker"]) > 0);
    let mut refused = 0;
    for (open, close) in opens {
        // Cut the run just after the opening and just before it half-opens.
        let (a0, c0, r0) = breaker_counts_until(open + 0.001);
        let (a1, c1, r1) = breaker_counts_until(close - 0.001);
        assert!(c1 > c0, "no calls while open {open}..{close}");
        assert_eq!(a1, a0, "the callee got requests while open {open}..{close}");
        assert_eq!(r1 - r0, c1 - c0, "every call while open is refused");
        refused += r1 - r0;
    }
    assert!(refused > 0);
}

/// The breaker's transitions as (t_s, from, to).
fn transitions(r: &Value) -> Vec<(f64, String, String)> {
    edge(r)["breaker"]["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let s = |k: &str| t[k].as_str().unwrap().to_owned();
            (f(&t["t_s"]), s("from"), s("to"))
        })
        .collect()
}

fn tr(t: f64, from: &str, to: &str) -> (f64, String, String) {
    (t, from.to_owned(), to.to_owned())
}

#[test]
fn breaker_transitions_happen_at_exactly_the_expected_times() {
    // Failures from 2.0 s: the 5th (2.4 s) makes 5 of the last 10 calls, 50%: open.
    // Lazy half-open, resilience4j's way: the call at exactly 2.4 s + 1 s is refused
    // (CircuitBreakerStateMachine.java:725, `isAfter`), the next (3.5 s) is the probe; it
    // fails until the fault ends at 5 s; the probe at 5.7 s succeeds, answered at 5.71 s.
    let r = report(&breaker_scenario("", 100));
    let (c, o, h) = ("closed", "open", "half_open");
    assert_eq!(
        transitions(&r),
        vec![
            tr(2.4, c, o),
            tr(3.5, o, h),
            tr(3.5, h, o),
            tr(4.6, o, h),
            tr(4.6, h, o),
            tr(5.7, o, h),
            tr(5.71, h, c),
        ]
    );
    assert!((f(&edge(&r)["breaker"]["time_open_s"]) - 3.3).abs() < 1e-9);
    // 10 calls refused in each of the three open periods of 1.1 s.
    assert_eq!(n(&edge(&r)["rejected"]["breaker"]), 30);
    // Timer-driven (opossum), open 1.05 s: half-open at 3.45 s with no call needed; the
    // probe is the next call (3.5 s).
    let r = report(&breaker_scenario("", 100).replace(
        r#"open_for = "1s""#,
        r#"open_for = "1.05s", half_open = "timer""#,
    ));
    assert_eq!(
        transitions(&r),
        vec![
            tr(2.4, c, o),
            tr(3.45, o, h),
            tr(3.5, h, o),
            tr(4.55, o, h),
            tr(4.6, h, o),
            tr(5.65, o, h),
            tr(5.71, h, c),
        ]
    );
}

#[test]
fn a_degraded_fallback_turns_failures_and_refusals_into_degraded_answers() {
    let plain = report(&breaker_scenario("", 100));
    let r = report(&breaker_scenario(r#"fallback = "degraded""#, 100));
    let (e, w) = (edge(&r), wl(&r));
    let failed = n(&wl(&plain)["errors"]["unavailable"]);
    assert!(failed > 0);
    assert_eq!(w["errors"].as_object().unwrap().len(), 0, "{w}");
    assert_eq!(n(&w["ok"]), 100);
    assert_eq!(n(&w["degraded"]), failed);
    assert_eq!(n(&e["fallbacks"]), failed);
    // A status fallback replaces the error's status.
    let r = report(&breaker_scenario(r#"fallback = "resource_exhausted""#, 100));
    assert_eq!(n(&wl(&r)["errors"]["resource_exhausted"]), failed);
    assert!(wl(&r)["errors"].get("unavailable").is_none());
}

// ---- 7. bulkhead ----

/// Every second (for `rounds` s) `front/get` calls `s/get` five times in parallel,
/// under policy `p`; `s/get` takes 100 ms.
fn fanout(policy: &str, rounds: u64) -> String {
    format!(
        r#"
[simulation]
requests = {rounds}
[services.front]
workers = 10
[services.front.endpoints.get]
steps = [{{ parallel = [
  {{ call = "s/get", policy = "p" }}, {{ call = "s/get", policy = "p" }},
  {{ call = "s/get", policy = "p" }}, {{ call = "s/get", policy = "p" }},
  {{ call = "s/get", policy = "p" }},
], join = "all_settled" }}]
[services.s]
workers = 100
[services.s.endpoints.get]
steps = [{{ work = "100ms" }}]
[workloads.w]
target = "front/get"
arrivals = "constant"
rate = 1
[policies.p]
{policy}
"#
    )
}

#[test]
fn a_full_bulkhead_rejects_at_once() {
    // 2 slots, no waiting, 5 calls at once: 3 rejected each round, exactly.
    let r = report(&fanout("bulkhead = { max_concurrent = 2 }", 10));
    let e = &r["edges"]["front->s/get"];
    assert_eq!(n(&e["calls"]), 50);
    assert_eq!(n(&e["attempts"]), 20);
    assert_eq!(n(&e["rejected"]["bulkhead"]), 30);
    assert_eq!(n(&e["errors"]["resource_exhausted"]), 30);
    assert_eq!(f(&e["latency_ms"]["max"]), 100.0);
    assert_eq!(n(&r["endpoints"]["s/get"]["arrivals"]), 20);
}

#[test]
fn a_bulkhead_with_a_wait_queues_callers_for_exactly_the_slot() {
    // 250 ms of wait: the 3rd and 4th calls get the slots freed at 100 ms, the 5th the
    // one freed at 200 ms. Latencies 100, 100, 200, 200, 300 ms; none rejected.
    let r = report(&fanout(
        r#"bulkhead = { max_concurrent = 2, max_wait = "250ms" }"#,
        10,
    ));
    let e = &r["edges"]["front->s/get"];
    assert_eq!((n(&e["calls"]), n(&e["attempts"])), (50, 50));
    assert_eq!(n(&e["rejected"]["bulkhead"]), 0);
    assert_eq!(f(&e["latency_ms"]["max"]), 300.0);
    assert_eq!(f(&e["latency_ms"]["mean"]), 180.0);
    assert_eq!(f(&r["workloads"]["w"]["latency_ms"]["max"]), 300.0);
    // 150 ms of wait: the 5th call would wait 200 ms, so it alone is refused, at 150 ms.
    let r = report(&fanout(
        r#"bulkhead = { max_concurrent = 2, max_wait = "150ms" }"#,
        10,
    ));
    let e = &r["edges"]["front->s/get"];
    assert_eq!(n(&e["rejected"]["bulkhead"]), 10);
    assert_eq!(n(&e["attempts"]), 40);
    assert_eq!(f(&r["workloads"]["w"]["latency_ms"]["max"]), 200.0);
}

// ---- 8. rate limiter ----

#[test]
fn a_rate_limiter_passes_exactly_its_rate() {
    // 10/s with a burst of 1 against 20 requests/s: every other one is refused.
    let r = report(&direct(
        "rate_limit = { rate = 10, burst = 1 }",
        r#"{ work = "1ms" }"#,
        200,
        20.0,
    ));
    let e = edge(&r);
    assert_eq!(n(&e["rejected"]["rate_limit"]), 100);
    assert_eq!(n(&e["attempts"]), 100);
    assert_eq!(n(&wl(&r)["ok"]), 100);
    assert_eq!(n(&wl(&r)["errors"]["resource_exhausted"]), 100);
    // Allowed to wait up to 100 ms for a token (20 requests): the 2nd waits 50 ms and
    // the 3rd 100 ms for reserved tokens; from then on every other one would have to
    // wait 150 ms and is refused. 11 pass, 9 refused; the longest wait is 100 ms.
    let r = report(&direct(
        r#"rate_limit = { rate = 10, burst = 1, max_wait = "100ms" }"#,
        r#"{ work = "1ms" }"#,
        20,
        20.0,
    ));
    assert_eq!(n(&edge(&r)["rejected"]["rate_limit"]), 9);
    assert_eq!(n(&wl(&r)["ok"]), 11);
    assert_eq!(f(&wl(&r)["latency_ms"]["max"]), 101.0);
}

// ---- 9. hedging ----

fn hedging(hedge: &str, samples: &str, requests: u64) -> String {
    direct(
        hedge,
        &format!(r#"{{ work = {{ dist = "empirical", samples = [{samples}] }} }}"#),
        requests,
        10.0,
    )
}

#[test]
fn hedging_cuts_the_tail() {
    // 1 call in 20 takes 1 s. Unhedged, p99 is 1 s; with a hedge after 50 ms, a call is
    // slow only when both attempts are (1 in 400): p99 is 60 ms (50 ms + a fast hedge).
    let samples = format!("{}\"1s\"", "\"10ms\", ".repeat(19));
    let plain = report(&hedging("", &samples, 5000));
    let hedged = report(&hedging(
        r#"hedge = { delay = "50ms", max_attempts = 2 }"#,
        &samples,
        5000,
    ));
    assert_eq!(f(&wl(&plain)["latency_ms"]["p99"]), 1000.0);
    let p99 = f(&wl(&hedged)["latency_ms"]["p99"]);
    assert!(p99 <= 60.0, "hedged p99 {p99}");
    let e = edge(&hedged);
    assert!(n(&e["hedges"]) > 0 && n(&e["hedges_won"]) > 0);
    // Hedges go out only for calls still unanswered at 50 ms (about 5%); the ones won
    // cannot exceed those sent; the losers are cancelled.
    assert!(n(&e["hedges_won"]) <= n(&e["hedges"]));
    assert!(n(&e["hedges"]) < 5000 / 10, "{e}");
    assert_eq!(n(&e["attempts"]), 5000 + n(&e["hedges"]));
    assert_eq!(n(&e["cancelled"]), n(&e["hedges"]));
    // Half the calls slow (1 s or 10 ms): the mean drops from ~505 ms to ~267 ms
    // (1/2 x 10 + 1/4 x 60 + 1/4 x 1000) though p99 stays 1 s with two attempts.
    let r = report(&hedging(
        r#"hedge = { delay = "50ms", max_attempts = 2 }"#,
        r#""10ms", "1s""#,
        5000,
    ));
    let mean = f(&wl(&r)["latency_ms"]["mean"]);
    assert!((mean - 267.5).abs() < 15.0, "hedged mean {mean}");
    assert!(n(&edge(&r)["hedges_won"]) > 0);
}

#[test]
fn a_fatal_status_cancels_the_other_hedges() {
    // Each attempt fails with `internal` after 100 ms; hedges every 50 ms, up to 3.
    let steps = r#"{ work = "100ms" }, { fail = "internal" }"#;
    // Fatal (non_fatal empty): the first failure at 100 ms ends the call and cancels the
    // hedge sent at 50 ms; no third attempt.
    let r = report(&direct(
        r#"hedge = { delay = "50ms", max_attempts = 3 }"#,
        steps,
        10,
        1.0,
    ));
    assert_all_latencies(&r, 100.0, "fatal");
    let e = edge(&r);
    assert_eq!((n(&e["attempts"]), n(&e["hedges"])), (20, 10));
    assert_eq!(n(&e["cancelled"]), 10);
    assert_eq!(n(&wl(&r)["errors"]["internal"]), 10);
    // Non-fatal: all three attempts run out (0, 50, 100 ms), the last fails at 200 ms.
    let r = report(&direct(
        r#"hedge = { delay = "50ms", max_attempts = 3, non_fatal = ["internal"] }"#,
        steps,
        10,
        1.0,
    ));
    assert_all_latencies(&r, 200.0, "non-fatal");
    let e = edge(&r);
    assert_eq!((n(&e["attempts"]), n(&e["hedges"])), (30, 20));
    assert_eq!(n(&e["cancelled"]), 0);
}

#[test]
fn a_hedge_refused_by_the_bulkhead_does_not_kill_the_original_attempt() {
    // One bulkhead slot: the hedge at 50 ms cannot get one. The original attempt is
    // still in flight and answers ok at 100 ms; the refused hedge should just not be
    // sent (Envoy: overflow; gRPC: a throttled hedge is not sent).
    let r = report(&direct(
        r#"hedge = { delay = "50ms", max_attempts = 2 }
bulkhead = { max_concurrent = 1 }"#,
        r#"{ work = "100ms" }"#,
        10,
        1.0,
    ));
    assert_eq!(n(&wl(&r)["ok"]), 10, "{}", wl(&r));
    assert_all_latencies(&r, 100.0, "original answers");
    assert_eq!(n(&edge(&r)["cancelled"]), 0);
}

// ---- 10. deadline propagation ----

/// front/get calls back/get under a 50 ms deadline; back has one worker (40 ms a
/// request) and drops expired work; requests every 20 ms overload it.
fn propagation(propagate: bool) -> String {
    format!(
        r#"
[simulation]
requests = 500
[services.front]
workers = 1000
[services.front.endpoints.get]
steps = [{{ call = "back/get", policy = "p" }}]
[services.back]
workers = 1
drop_expired = true
[services.back.endpoints.get]
steps = [{{ work = "40ms" }}]
[workloads.w]
target = "front/get"
arrivals = "constant"
rate = 50
[policies.p]
deadline = "50ms"
propagate_deadline = {propagate}
"#
    )
}

#[test]
fn a_propagated_deadline_lets_the_callee_drop_expired_work() {
    let with = report(&propagation(true));
    let without = report(&propagation(false));
    let (bw, bo) = (
        &with["endpoints"]["back/get"],
        &without["endpoints"]["back/get"],
    );
    assert!(n(&bw["expired"]) > 0, "{bw}");
    assert_eq!(n(&bo["expired"]), 0, "no deadline reached back: {bo}");
    assert!(
        f(&bw["orphaned_work_ms"]) < f(&bo["orphaned_work_ms"]),
        "with {} vs without {}",
        f(&bw["orphaned_work_ms"]),
        f(&bo["orphaned_work_ms"])
    );
    // Without propagation back serves every request in full, 40 ms each, for nobody
    // but the first: 499 x 40 ms wasted. With it, back aborts each at its deadline:
    // the 2nd after 30 ms of work, the 497 others after 20 ms (they start 30 ms after
    // arriving, when the one before is aborted): 30 + 498 x 20 = 9990 ms.
    assert_eq!(n(&bo["completed"]), 500);
    assert_eq!(n(&bo["orphaned"]), 499);
    assert_eq!(f(&bo["orphaned_work_ms"]), 499.0 * 40.0);
    assert_eq!(n(&bw["expired"]), 499);
    assert_eq!(f(&bw["orphaned_work_ms"]), 9990.0);
    // The caller sees the same thing either way: every call ended by its deadline or
    // answered within it.
    for r in [&with, &without] {
        let e = &r["edges"]["front->back/get"];
        assert!(f(&e["latency_ms"]["max"]) <= 50.0);
    }
}

/// back (one worker, queue of 2) is held 500 ms every second by `hog`, which has no
/// deadline; front's calls (every 100 ms, 50 ms propagated deadline) queue behind it
/// and expire there. At most one of them is ever waiting at a time.
const EXPIRING_IN_QUEUE: &str = r#"
[simulation]
duration = "10s"
[services.front]
workers = 1000
[services.front.endpoints.get]
steps = [{ call = "back/get", policy = "p" }]
[services.back]
workers = 1
queue = 2
drop_expired = true
[services.back.endpoints.get]
steps = [{ work = "500ms" }]
[workloads.w]
target = "front/get"
arrivals = "constant"
rate = 10
[workloads.hog]
target = "back/get"
arrivals = "constant"
rate = 1
[policies.p]
deadline = "50ms"
propagate_deadline = true
"#;

#[test]
fn requests_expiring_in_the_queue_are_dropped_unserved() {
    let r = report(
        EXPIRING_IN_QUEUE
            .replace("queue = 2", "queue = 1000")
            .as_str(),
    );
    let back = &r["endpoints"]["back/get"];
    assert!(n(&back["expired"]) > 0);
    // Only hog's requests (9 of them, 500 ms each) and front's first ones are served.
    assert!(f(&back["orphaned_work_ms"]) < 10_000.0);
}

#[test]
fn an_expired_queued_request_leaves_the_queue() {
    // The queue never holds more than one live request, so a queue of 2 never refuses
    // and the queue-length gauge never exceeds 2 (its mean cannot exceed L).
    let r = report(EXPIRING_IN_QUEUE);
    let back = &r["endpoints"]["back/get"];
    assert_eq!(n(&back["rejected"]), 0, "{back}");
    assert!(n(&back["queue_length"]["max"]) <= 2, "{back}");
    assert!(
        f(&back["queue_length"]["mean"]) <= f(&back["little"]["l"]),
        "{back}"
    );
}

// ---- 11. faults ----

/// w -> front/get -> back/get (10 ms of work, 1 ms links, per-call timeout 200 ms);
/// requests every 100 ms for 10 s; the fault is given as TOML.
fn faulted(fault: &str) -> String {
    format!(
        r#"
[simulation]
duration = "10s"
[network]
latency = "1ms"
[services.front]
workers = 100
[services.front.endpoints.get]
steps = [{{ call = "back/get", timeout = "200ms" }}]
[services.back]
workers = 100
[services.back.endpoints.get]
steps = [{{ work = "10ms" }}]
[workloads.w]
target = "front/get"
arrivals = "constant"
rate = 10
[[faults]]
{fault}
"#
    )
}

fn back_edge(r: &Value) -> &Value {
    &r["edges"]["front->back/get"]
}

#[test]
fn a_down_service_refuses_at_once() {
    // Calls at 2.0 .. 3.9 s reach back during the fault: 20, answered unavailable after
    // a 2 ms round trip instead of 12 ms.
    let r = report(&faulted(
        r#"kind = "down"
service = "back"
from = "2s"
until = "4s""#,
    ));
    assert_eq!(n(&r["faults"][0]["affected"]), 20);
    let e = back_edge(&r);
    assert_eq!(n(&e["errors"]["unavailable"]), 20);
    assert_eq!(f(&e["latency_ms"]["p50"]), 12.0);
    assert_eq!(f(&e["latency_ms"]["p99"]), 12.0);
    assert_eq!(f(&e["latency_ms"]["max"]), 12.0);
    assert!(f(&e["latency_ms"]["mean"]) < 12.0);
    assert_eq!(n(&r["endpoints"]["back/get"]["completed"]), n(&e["ok"]));
    // Down for the whole run: every call is refused after the 2 ms round trip.
    let r = report(&faulted(
        r#"kind = "down"
service = "back"
from = "0s"
until = "20s""#,
    ));
    let e = back_edge(&r);
    assert_eq!(n(&e["errors"]["unavailable"]), n(&e["calls"]));
    assert_eq!(
        (f(&e["latency_ms"]["p50"]), f(&e["latency_ms"]["max"])),
        (2.0, 2.0)
    );
    assert_eq!(n(&r["endpoints"]["back/get"]["completed"]), 0);
}

#[test]
fn a_crash_loses_the_work_in_flight() {
    // back takes 500 ms; a crash at 2.05 s loses the 5 requests in progress (arrived
    // 1.601 .. 2.001 s): their callers time out. Until 3 s it refuses like `down`
    // (2.101 .. 2.901 s: 9 requests).
    let text = faulted(
        r#"kind = "crash"
service = "back"
from = "2.05s"
until = "3s""#,
    )
    .replace(r#"{ work = "10ms" }"#, r#"{ work = "500ms" }"#)
    .replace(r#"timeout = "200ms""#, r#"timeout = "1s""#);
    let r = report(&text);
    assert_eq!(n(&r["faults"][0]["affected"]), 5 + 9);
    let e = back_edge(&r);
    assert_eq!(n(&e["timeouts"]), 5);
    assert_eq!(n(&e["errors"]["deadline_exceeded"]), 5);
    assert_eq!(n(&e["errors"]["unavailable"]), 9);
    assert_eq!(n(&e["late_replies"]), 0, "crashed work never answers");
}

#[test]
fn a_slow_service_takes_exactly_the_extra_time() {
    let r = report(&faulted(
        r#"kind = "slow"
service = "back"
from = "2s"
until = "4s"
extra = "100ms""#,
    ));
    assert_eq!(n(&r["faults"][0]["affected"]), 20);
    let lat = &r["workloads"]["w"]["latency_ms"];
    // 1 + 1 + 10 + 1 + 1 = 14 ms normally, 114 ms while slowed.
    assert_eq!(f(&lat["max"]), 114.0);
    assert_eq!(f(&lat["p50"]), 14.0);
    assert_eq!(n(&r["workloads"]["w"]["ok"]), 99);
}

#[test]
fn an_error_fault_answers_with_its_status() {
    let r = report(&faulted(
        r#"kind = "error"
service = "back"
status = "internal"
from = "2s"
until = "4s""#,
    ));
    assert_eq!(n(&r["faults"][0]["affected"]), 20);
    assert_eq!(n(&back_edge(&r)["errors"]["internal"]), 20);
    assert_eq!(n(&r["workloads"]["w"]["errors"]["internal"]), 20);
}

#[test]
fn a_partition_times_callers_out() {
    let r = report(&faulted(
        r#"kind = "partition"
between = ["front", "back"]
from = "2s"
until = "4s""#,
    ));
    assert_eq!(n(&r["faults"][0]["affected"]), 20);
    let e = back_edge(&r);
    assert_eq!(n(&e["timeouts"]), 20);
    assert_eq!(n(&e["lost_requests"]), 20);
    assert_eq!(n(&e["errors"]["deadline_exceeded"]), 20);
    assert_eq!(f(&e["latency_ms"]["max"]), 200.0);
}

#[test]
fn link_loss_times_out_exactly_the_lost_messages() {
    let r = report(&faulted(
        r#"kind = "link_loss"
between = ["front", "back"]
loss = 0.5
from = "2s"
until = "8s""#,
    ));
    let affected = n(&r["faults"][0]["affected"]);
    let e = back_edge(&r);
    assert!(affected > 10, "{affected}");
    // A lost request or a lost reply: one timeout each, never both for one call.
    assert_eq!(n(&e["timeouts"]), affected);
    assert_eq!(n(&e["lost_requests"]) + n(&e["lost_replies"]), affected);
}

#[test]
fn link_latency_adds_exactly_its_delay_both_ways() {
    let r = report(&faulted(
        r#"kind = "link_latency"
between = ["front", "back"]
latency = "30ms"
from = "2s"
until = "4s""#,
    ));
    // 20 calls, a request and a reply each.
    assert_eq!(n(&r["faults"][0]["affected"]), 40);
    let lat = &r["workloads"]["w"]["latency_ms"];
    assert_eq!(f(&lat["max"]), 14.0 + 60.0);
    assert_eq!(f(&lat["p50"]), 14.0);
}

// ---- 12. bundled scenarios ----

#[test]
fn every_fault_in_every_bundled_scenario_touches_something() {
    let mut checked = 0;
    for (name, text) in super::support::bundled_scenarios() {
        let sc = meshsim::scenario::from_source(&name, &name, &text, &[])
            .unwrap_or_else(|e| panic!("{name}:\n{e}"));
        if sc.spec.faults.is_empty() {
            continue;
        }
        let r = json(&meshsim::simulate(sc).unwrap().report);
        let faults = r["faults"].as_array().unwrap();
        assert!(!faults.is_empty(), "{name}");
        for fault in faults {
            assert!(n(&fault["affected"]) > 0, "{name}: {fault} touched nothing");
        }
        checked += 1;
    }
    assert!(checked >= 2, "only {checked} bundled scenarios have faults");
}

// ---- 13. expectations ----

const EXPECTING: &str = r#"
[simulation]
requests = 20
[services.s.endpoints.get]
steps = [{ work = "10ms" }]
[workloads.w]
target = "s/get"
arrivals = "constant"
rate = 10
"#;

#[test]
fn expectations_report_their_value_and_verdict() {
    let text = format!(
        "{EXPECTING}[[expect]]\ncheck = \"workloads.w.ok == 20\"\n\
         [[expect]]\ncheck = 'edges.\"w->s/get\".latency_ms.p99 < 5'\n\
         [[expect]]\ncheck = \"workloads.w.ok >= 5\"\nfrom = \"0s\"\nuntil = \"1s\"\n"
    );
    let out = run(&text, &[]);
    assert!(!out.passed());
    let r = json(&out.report);
    let e = r["expectations"].as_array().unwrap();
    assert_eq!(e.len(), 3);
    assert_eq!(
        (f(&e[0]["value"]), &e[0]["passed"]),
        (20.0, &Value::Bool(true))
    );
    assert_eq!(
        (f(&e[1]["value"]), &e[1]["passed"]),
        (10.0, &Value::Bool(false))
    );
    // Answers at 0.11 .. 0.91 s fall in the first second: 9 of them.
    assert_eq!(
        (f(&e[2]["value"]), &e[2]["passed"]),
        (9.0, &Value::Bool(true))
    );
    assert_eq!(e[2]["window_s"], serde_json::json!([0.0, 1.0]));
}

#[test]
fn the_cli_exit_code_follows_the_expectations() {
    use assert_cmd::Command;
    use predicates::str::contains;
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("pass.toml", "workloads.w.ok == 20", 0),
        ("fail.toml", "workloads.w.ok > 20", 1),
        ("bad.toml", "workloads.w.okk > 1", 2),
    ];
    for (file, check, code) in cases {
        let path = dir.path().join(file);
        std::fs::write(
            &path,
            format!("{EXPECTING}[[expect]]\ncheck = \"{check}\"\n"),
        )
        .unwrap();
        let assert = Command::cargo_bin("meshsim")
            .unwrap()
            .args(["run", "-q"])
            .arg(&path)
            .arg("--out")
            .arg(dir.path().join(file.replace(".toml", "")))
            .assert()
            .code(code);
        match code {
            1 => {
                assert.stderr(contains("1 of 1 expectations failed"));
            }
            2 => {
                // The error names the file, line and column of the check, and what exists.
                let line = EXPECTING.lines().count() + 2;
                assert
                    .stderr(contains(format!("{file}:{line}:9")))
                    .stderr(contains("unknown metric path"))
                    .stderr(contains("has no `okk`"));
                assert!(!dir.path().join("bad").exists(), "nothing written");
            }
            _ => {}
        }
    }
}

// ---- 14. determinism ----

#[test]
fn retries_jitter_breaker_and_faults_replay_byte_for_byte() {
    let text = format!(
        "{}{}",
        breaker_scenario(
            r#"timeout = "30ms"
retry = { max_attempts = 3, backoff = "exponential", base = "5ms", jitter = "full", on = ["unavailable", "deadline_exceeded"] }"#,
            300,
        )
        .replace(r#"{ work = "10ms" }"#, r#"{ work = { dist = "exponential", mean = "10ms" } }"#),
        r#"
[[faults]]
kind = "link_loss"
between = ["w", "s"]
loss = 0.2
from = "6s"
until = "9s"
"#
    );
    let a = run(&text, &[]).report.to_json();
    let b = run(&text, &[]).report.to_json();
    assert!(a == b, "two runs of the same scenario differ");
    let r: Value = serde_json::from_str(&a).unwrap();
    assert!(n(&edge(&r)["retries"]) > 0 && n(&edge(&r)["rejected"]["breaker"]) > 0);
    assert!(
        r["faults"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| n(&f["affected"]) > 0)
    );
    let c = run(&text, &["simulation.seed=2"]).report.to_json();
    assert_ne!(a, c, "the seed changed nothing");
}

// ---- protocols, connection pools, streams ----

/// One caller `front` calling `s/get` under policy `p`, zero network latency.
fn proto(protocol: &str, callee_steps: &str, front_steps: &str) -> String {
    format!(
        r#"
[simulation]
requests = 20
[policies.p]
protocol = {protocol}
[services.front]
workers = 100
[services.front.endpoints.get]
steps = {front_steps}
[services.s]
workers = 100
[services.s.endpoints.get]
request_kb = 2
response_kb = 5
steps = {callee_steps}
[workloads.w]
target = "front/get"
arrivals = "constant"
rate = 1
"#
    )
}

const CUSTOM: &str = r#"{ overhead = "100us", encode_per_kb = "10us", decode_per_kb = "20us" }"#;

// Protocol costs add up exactly: request 100 + 2x10 us, server decode 2x20 us, reply
// 100 + 5x10 + 5x20 us, around 1 ms of work: 1.41 ms.
#[test]
fn protocol_costs_add_up_exactly() {
    let text = proto(
        CUSTOM,
        r#"[{ work = "1ms" }]"#,
        r#"[{ call = "s/get", policy = "p" }]"#,
    );
    let r = json(&run(&text, &[]).report);
    let lat = &r["edges"]["front->s/get"]["latency_ms"];
    assert_eq!(
        (lat["p50"].as_f64(), lat["max"].as_f64()),
        (Some(1.41), Some(1.41))
    );
    // The decode time holds the server's worker: utilization counts 1.04 ms per call.
    let busy = r["endpoints"]["s/get"]["utilization"].as_f64().unwrap();
    let window = r["window_s"].as_f64().unwrap();
    assert!(
        (busy * 100.0 * window - 20.0 * 1.04e-3).abs() < 1e-9,
        "busy {busy}"
    );
}

// Without keep-alive every call pays the connection set-up on the way out.
#[test]
fn a_connection_per_call_pays_its_setup() {
    let per_call = r#"{ overhead = "100us", encode_per_kb = "10us", decode_per_kb = "20us", connection = "per_call", setup = "3ms" }"#;
    let text = proto(
        per_call,
        r#"[{ work = "1ms" }]"#,
        r#"[{ call = "s/get", policy = "p" }]"#,
    );
    let r = json(&run(&text, &[]).report);
    assert_eq!(
        r["edges"]["front->s/get"]["latency_ms"]["max"].as_f64(),
        Some(4.41)
    );
}

// An HTTP/1.1 pool of 2 connections carries one request each: 4 parallel 100 ms calls
// take two rounds, so the fan-out takes exactly 200 ms; HTTP/2 streams all 4 at once.
#[test]
fn an_http1_pool_queues_calls_for_a_free_connection() {
    let fan_out = r#"[{ parallel = [{ call = "s/get", policy = "p" }, { call = "s/get", policy = "p" }, { call = "s/get", policy = "p" }, { call = "s/get", policy = "p" }] }]"#;
    let http1 = r#"{ overhead = "0s", encode_per_kb = "0s", decode_per_kb = "0s", pool = "http1", max_connections = 2 }"#;
    let http2 = r#"{ overhead = "0s", encode_per_kb = "0s", decode_per_kb = "0s", pool = "http2", connections = 1, max_streams = 100 }"#;
    for (protocol, want) in [(http1, 200.0), (http2, 100.0)] {
        let text = proto(protocol, r#"[{ work = "100ms" }]"#, fan_out);
        let r = json(&run(&text, &[]).report);
        let lat = &r["workloads"]["w"]["latency_ms"];
        assert_eq!(
            (lat["p50"].as_f64(), lat["max"].as_f64()),
            (Some(want), Some(want)),
            "{protocol}"
        );
        // Waiting for a connection is not a rejection.
        assert_eq!(r["edges"]["front->s/get"]["rejected"]["bulkhead"], 0);
    }
}

// A server stream of 3 messages, 10 ms apart, ends with its last message, each message
// paying the reply costs; a timeout shorter than the stream cuts the whole call.
#[test]
fn a_stream_lasts_until_its_last_message_and_its_timeout_covers_it_all() {
    let stream = r#"[{ stream = 3, interval = "10ms" }]"#;
    let text = proto(CUSTOM, stream, r#"[{ call = "s/get", policy = "p" }]"#);
    let r = json(&run(&text, &[]).report);
    // 0.12 ms out + 0.04 ms decode + 30 ms + 3 x 0.25 ms back.
    assert_eq!(
        r["edges"]["front->s/get"]["latency_ms"]["max"].as_f64(),
        Some(30.91)
    );
    let cut = text.replace(r#"policy = "p" }]"#, r#"policy = "p", timeout = "25ms" }]"#);
    let r = json(&run(&cut, &[]).report);
    let e = &r["edges"]["front->s/get"];
    assert_eq!(e["timeouts"], 20);
    assert_eq!(e["latency_ms"]["max"].as_f64(), Some(25.0));
}

// The bundled REST vs gRPC scenario shows what it claims: JSON over an HTTP/1.1 pool
// has the worse tail.
#[test]
fn rest_json_has_the_worse_tail_in_the_bundled_comparison() {
    let out = run_file("rest_vs_grpc.toml", &[]);
    let r = json(&out.report);
    let p99 = |w: &str| r["workloads"][w]["latency_ms"]["p99"].as_f64().unwrap();
    assert!(
        p99("rest_users") > 1.5 * p99("grpc_users"),
        "{} vs {}",
        p99("rest_users"),
        p99("grpc_users")
    );
    assert!(out.passed());
}

// ---- cache ----

// One key, a 10 s TTL, a request every second from t = 1 s: the entry made at t = 1 s
// expires at exactly 11 s, so t = 1, 11, 21, 31, 41, 51 miss and the other 54 hit;
// only misses reach the callee. With a huge change rate every hit is stale, with none
// no hit is.
#[test]
fn a_ttl_cache_answers_hits_itself_and_counts_stale_reads() {
    let text = |change_rate: &str| {
        format!(
            r#"
[simulation]
duration = "60.5s"
[policies.p.cache]
ttl = "10s"
change_rate = {change_rate}
[services.front.endpoints.get]
steps = [{{ call = "s/get", policy = "p" }}]
[services.s.endpoints.get]
steps = [{{ work = "0s" }}]
[workloads.w]
target = "front/get"
arrivals = "constant"
rate = 1
keys = 1
"#
        )
    };
    for (rate, stale) in [("0", 0), ("1e9", 54)] {
        let r = json(&run(&text(rate), &[]).report);
        let c = &r["edges"]["front->s/get"]["cache"];
        assert_eq!(
            (c["hits"].as_u64(), c["misses"].as_u64()),
            (Some(54), Some(6)),
            "{c}"
        );
        assert_eq!(c["stale"].as_u64(), Some(stale));
        assert_eq!(
            r["endpoints"]["s/get"]["arrivals"], 6,
            "hits never reach the callee"
        );
    }
}

// Keys travel down the call chain: two keys alternate, each cached separately.
#[test]
fn cache_entries_are_per_key() {
    let text = r#"
[simulation]
requests = 100
[policies.p.cache]
ttl = "1h"
[services.front.endpoints.get]
steps = [{ call = "mid/get" }]
[services.mid.endpoints.get]
steps = [{ call = "s/get", policy = "p" }]
[services.s.endpoints.get]
steps = [{ work = "1ms" }]
[workloads.w]
target = "front/get"
arrivals = "constant"
rate = 10
keys = 2
"#;
    let r = json(&run(text, &[]).report);
    let c = &r["edges"]["mid->s/get"]["cache"];
    assert_eq!(
        (c["hits"].as_u64(), c["misses"].as_u64()),
        (Some(98), Some(2)),
        "{c}"
    );
}

// Regression (found by the property test): a hedge waiting for the only bulkhead slot
// was handed the slot its own original attempt freed, just before the call completed;
// the slot leaked and every later call was refused. Now every call gets through.
#[test]
fn a_hedge_waiting_for_a_slot_does_not_leak_it() {
    let text = r#"
[simulation]
requests = 20
[policies.p.hedge]
delay = "2ms"
max_attempts = 2
[policies.p.bulkhead]
max_concurrent = 1
max_wait = "1s"
[services.front.endpoints.get]
steps = [{ call = "s/get", policy = "p" }]
[services.s]
workers = 4
[services.s.endpoints.get]
steps = [{ work = "10ms" }]
[workloads.w]
target = "front/get"
arrivals = "constant"
rate = 10
"#;
    let r = json(&run(text, &[]).report);
    let e = &r["edges"]["front->s/get"];
    assert_eq!(
        (e["ok"].as_u64(), e["rejected"]["bulkhead"].as_u64()),
        (Some(20), Some(0))
    );
    assert_eq!(
        e["attempts"].as_u64(),
        Some(20),
        "the hedges never got the slot in time"
    );
    assert_eq!(e["latency_ms"]["max"].as_f64(), Some(10.0));
}

// What counts as a breaker failure includes bulkhead rejections unless the policy says
// otherwise: 4 parallel calls through a 1-slot bulkhead refuse 3 of every 4, which opens
// the breaker by default and never with `rejections_are_failures = false` (the callee
// itself never fails).
#[test]
fn bulkhead_rejections_count_against_the_breaker_only_if_asked() {
    let text = |rejections: bool| {
        format!(
            r#"
[simulation]
requests = 50
[policies.p.bulkhead]
max_concurrent = 1
[policies.p.breaker]
size = 10
minimum_calls = 5
failure_rate = 50
open_for = "1s"
rejections_are_failures = {rejections}
[services.front]
workers = 10
[services.front.endpoints.get]
steps = [{{ parallel = [{{ call = "s/get", policy = "p" }}, {{ call = "s/get", policy = "p" }}, {{ call = "s/get", policy = "p" }}, {{ call = "s/get", policy = "p" }}], join = "all_settled" }}]
[services.s]
workers = 10
[services.s.endpoints.get]
steps = [{{ work = "5ms" }}]
[workloads.w]
target = "front/get"
arrivals = "constant"
rate = 20
"#
        )
    };
    let opened = |r: &Value| {
        r["edges"]["front->s/get"]["breaker"]["time_open_s"]
            .as_f64()
            .unwrap()
            > 0.0
    };
    assert!(opened(&json(&run(&text(true), &[]).report)));
    let r = json(&run(&text(false), &[]).report);
    assert!(!opened(&r));
    assert_eq!(r["edges"]["front->s/get"]["rejected"]["breaker"], 0);
    assert_eq!(
        r["edges"]["front->s/get"]["rejected"]["bulkhead"], 150,
        "3 of every 4 calls"
    );
}
