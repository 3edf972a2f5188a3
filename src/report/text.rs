//! The terminal summary: what a person reads right after a run.

use super::json::{ConsistencyReport, EdgeReport, LatencyReport, Report};
use super::numbers::{number, plural};
use std::fmt::Write;

/// Left-aligned first column, right-aligned numbers, widths fitted to the content.
fn table(out: &mut String, header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |out: &mut String, cells: &mut dyn Iterator<Item = &str>| {
        let mut s = String::new();
        for (i, (c, w)) in cells.zip(&widths).enumerate() {
            if i == 0 {
                let _ = write!(s, "{c:<w$}");
            } else {
                let _ = write!(s, "  {c:>w$}");
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(out, &mut header.iter().copied());
    for r in rows {
        line(out, &mut r.iter().map(String::as_str));
    }
}

/// A time in ms, to three significant digits (quantiles come from histograms with two,
/// within ±0.4%), never finer than a microsecond: 162, 23.9, 4.01, 0.125.
fn ms(x: f64) -> String {
    let decimals = match x.abs() {
        a if a >= 100.0 => 0,
        a if a >= 10.0 => 1,
        a if a >= 1.0 => 2,
        _ => 3,
    };
    number(format!("{x:.decimals$}").parse().unwrap_or(x))
}

/// Requests per second, to three significant digits.
fn rate(x: f64) -> String {
    ms(x)
}

fn mean_ci(l: &LatencyReport) -> String {
    match l.mean_ci99 {
        Some([lo, hi]) => format!(
            "{} ±{:.2}%",
            ms(l.mean),
            (hi - lo) / 2.0 / l.mean.max(1e-12) * 100.0
        ),
        None => ms(l.mean),
    }
}

fn errors(e: &std::collections::BTreeMap<String, u64>) -> String {
    if e.is_empty() {
        return "0".to_owned();
    }
    e.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn summary(r: &Report, reproduce: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "meshsim {}  seed {}  scenario hash {}",
        r.scenario, r.seed, r.scenario_hash
    );
    let _ = writeln!(out, "reproduce: {reproduce}");
    let _ = writeln!(
        out,
        "simulated {} s (statistics over {} s after a {} s warmup), {}, stop: {}\n",
        number(r.duration_s),
        number(r.window_s),
        number(r.warmup_s),
        plural(r.events, "event"),
        r.stop
    );
    workloads(&mut out, r);
    super::attribution::text(&mut out, r);
    endpoints(&mut out, r);
    edges(&mut out, r);
    breakers(&mut out, r);
    for (name, e) in &r.edges {
        if let Some(line) = policy_counters(e) {
            let _ = writeln!(out, "policy {} on {name}: {line}", e.policy);
        }
    }
    if let Some(c) = &r.consistency {
        consistency(&mut out, c);
    }
    faults(&mut out, r);
    expectations(&mut out, r);
    out
}

/// The workloads table: what each client saw.
fn workloads(out: &mut String, r: &Report) {
    let rows: Vec<Vec<String>> = r
        .workloads
        .iter()
        .map(|(name, w)| {
            vec![
                name.clone(),
                w.target.clone(),
                w.requests.to_string(),
                w.ok.to_string(),
                w.degraded.to_string(),
                errors(&w.errors),
                w.in_flight.to_string(),
                rate(w.throughput_rps),
                mean_ci(&w.latency_ms),
                ms(w.latency_ms.p50),
                ms(w.latency_ms.p90),
                ms(w.latency_ms.p99),
                ms(w.latency_ms.p999),
                ms(w.latency_ms.max),
            ]
        })
        .collect();
    out.push_str("workloads (latency in ms, at the client; mean ± 99% CI half-width)\n");
    table(
        out,
        &[
            "workload",
            "target",
            "requests",
            "ok",
            "degraded",
            "errors",
            "in-flight",
            "rps",
            "mean",
            "p50",
            "p90",
            "p99",
            "p99.9",
            "max",
        ],
        &rows,
    );
}

/// The endpoints table: what each server saw.
fn endpoints(out: &mut String, r: &Report) {
    let rows: Vec<Vec<String>> = r
        .endpoints
        .iter()
        .map(|(name, e)| {
            vec![
                name.clone(),
                e.arrivals.to_string(),
                e.rejected.to_string(),
                errors(&e.errors),
                format!("{:.1}%", e.utilization * 100.0),
                mean_ci(&e.queue_wait_ms),
                mean_ci(&e.latency_ms),
                ms(e.latency_ms.p99),
                format!("{:.2}/{}", e.queue_length.mean, e.queue_length.max),
                format!("{:.3}%", e.little.relative_error * 100.0),
            ]
        })
        .collect();
    out.push_str("\nendpoints (at the server)\n");
    table(
        out,
        &[
            "endpoint",
            "arrivals",
            "rejected",
            "errors",
            "util",
            "queue wait",
            "latency",
            "p99",
            "queue mean/max",
            "Little err",
        ],
        &rows,
    );
}

/// The edges table: each caller-to-endpoint edge and what its policy turned away.
fn edges(out: &mut String, r: &Report) {
    let rows: Vec<Vec<String>> = r
        .edges
        .iter()
        .map(|(name, e)| {
            let rejected = &e.rejected;
            vec![
                name.clone(),
                e.policy.clone(),
                e.calls.to_string(),
                e.attempts.to_string(),
                format!("{:.2}", e.amplification),
                e.ok.to_string(),
                errors(&e.errors),
                e.timeouts.to_string(),
                format!(
                    "{}/{}/{}/{}",
                    rejected.breaker, rejected.bulkhead, rejected.rate_limit, rejected.budget
                ),
                format!("{}/{}", e.lost_requests, e.lost_replies),
                e.late_replies.to_string(),
                e.cancelled.to_string(),
                ms(e.latency_ms.p50),
                ms(e.latency_ms.p99),
            ]
        })
        .collect();
    out.push_str("\nedges (at the caller; rejected = breaker/bulkhead/rate limit/retry budget)\n");
    table(
        out,
        &[
            "edge",
            "policy",
            "calls",
            "attempts",
            "ampl",
            "ok",
            "errors",
            "timeouts",
            "rejected",
            "lost req/rep",
            "late",
            "cancelled",
            "p50",
            "p99",
        ],
        &rows,
    );
}

/// One line per circuit breaker: its transitions (the first eight) and time open.
fn breakers(out: &mut String, r: &Report) {
    for (name, e) in &r.edges {
        if let Some(b) = &e.breaker {
            let changes: Vec<String> = b
                .transitions
                .iter()
                .map(|t| format!("{}s {}->{}", number(t.t_s), t.from, t.to))
                .collect();
            let _ = writeln!(
                out,
                "breaker {name}: {}, open {} s, {} at the end{}{}",
                plural(b.transitions.len() as u64, "transition"),
                number(b.time_open_s),
                b.state_at_end,
                if changes.is_empty() { "" } else { ": " },
                changes
                    .iter()
                    .take(8)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
                    + if changes.len() > 8 { ", ..." } else { "" }
            );
        }
    }
}

fn faults(out: &mut String, r: &Report) {
    if !r.faults.is_empty() {
        out.push_str("\nfaults\n");
        for f in &r.faults {
            let _ = writeln!(out, "  {:<40} affected {}", f.fault, f.affected);
        }
    }
}

/// Each `[[expect]]` check, PASS or FAIL, with the value it read.
fn expectations(out: &mut String, r: &Report) {
    if !r.expectations.is_empty() {
        out.push_str("\nexpectations\n");
        for e in &r.expectations {
            let window = e
                .window_s
                .map(|[a, b]| format!(" (from {} s to {} s)", number(a), number(b)))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  {} {}{window}: value {}",
                if e.passed { "PASS" } else { "FAIL" },
                e.check,
                number(e.value)
            );
        }
    }
}

/// What an edge's policy did beyond the edges table's columns: retries, hedges,
/// fallbacks, calls never sent, the cache. None when it did none of it.
fn policy_counters(e: &EdgeReport) -> Option<String> {
    let mut parts = Vec::new();
    if e.retries > 0 {
        parts.push(plural(e.retries, "retry"));
    }
    if e.hedges > 0 {
        parts.push(format!(
            "{} ({} won)",
            plural(e.hedges, "hedge"),
            e.hedges_won
        ));
    }
    if e.fallbacks > 0 {
        parts.push(plural(e.fallbacks, "fallback"));
    }
    if e.expired > 0 {
        parts.push(format!(
            "{} never sent (deadline passed)",
            plural(e.expired, "call")
        ));
    }
    if let Some(c) = &e.cache {
        parts.push(format!(
            "cache {} / {} (hit ratio {:.1}%), {} stale",
            plural(c.hits, "hit"),
            plural(c.misses, "miss"),
            c.hit_ratio * 100.0,
            c.stale
        ));
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// Queues and groups as a table, then one line per exchange that dropped messages, per
/// effect, per saga, the propagation delay and the idempotency stores.
fn consistency(out: &mut String, c: &ConsistencyReport) {
    flows(out, c);
    for (name, e) in c.exchanges.iter().filter(|(_, e)| e.unroutable > 0) {
        let _ = writeln!(
            out,
            "exchange {name} ({}): {} published, {} unroutable (dropped)",
            e.kind, e.published, e.unroutable
        );
    }
    let w = label_width(c.effects.keys());
    for (name, e) in &c.effects {
        let label = format!("{name}:");
        let _ = writeln!(
            out,
            "effect {label:<w$} {}, {} exactly once, {} never, {} duplicated (max {}), {} despite failure",
            plural(e.operations, "operation"),
            e.exactly_once,
            e.never,
            e.duplicated,
            e.max_count,
            e.despite_failure
        );
    }
    sagas(out, c);
    let p = &c.propagation;
    if p.latency_ms.count > 0 || p.not_propagated > 0 {
        let _ = writeln!(
            out,
            "propagation to every subscriber: p50 {} ms, p99 {} ms over {}, {} not propagated",
            ms(p.latency_ms.p50),
            ms(p.latency_ms.p99),
            plural(p.latency_ms.count, "message"),
            p.not_propagated
        );
    }
    let w = label_width(c.idempotency.keys());
    for (endpoint, i) in &c.idempotency {
        let label = format!("{endpoint}:");
        let _ = writeln!(
            out,
            "idempotency {label:<w$} {} stored, {} replayed, {}",
            i.stored,
            i.replayed,
            plural(i.conflicts, "conflict")
        );
    }
}

/// Queues and groups as one table, under the section's heading.
fn flows(out: &mut String, c: &ConsistencyReport) {
    let flows = c
        .queues
        .iter()
        .map(|(n, f)| ("queue", n, f))
        .chain(c.groups.iter().map(|(n, f)| ("group", n, f)));
    let rows: Vec<Vec<String>> = flows
        .map(|(kind, name, f)| {
            vec![
                name.clone(),
                kind.to_owned(),
                f.published.to_string(),
                f.acked.to_string(),
                f.redelivered.to_string(),
                f.dead_lettered.total.to_string(),
                f.expired.to_string(),
                f.dropped.to_string(),
                f.lost.to_string(),
                f.publish_failed.to_string(),
                f.in_flight_end.to_string(),
                f.max_depth.to_string(),
                f.ordering_violations.to_string(),
                if f.conserved {
                    "conservation OK"
                } else {
                    "CONSERVATION VIOLATED"
                }
                .to_owned(),
            ]
        })
        .collect();
    out.push_str(
        "\nconsistency (whole run, warmup included; max depth of a group is its largest lag)\n",
    );
    if !rows.is_empty() {
        table(
            out,
            &[
                "queue/group",
                "kind",
                "published",
                "acked",
                "redelivered",
                "dead-lettered",
                "expired",
                "dropped",
                "lost",
                "publish-failed",
                "in-flight",
                "max depth",
                "out of order",
                "",
            ],
            &rows,
        );
    }
}

/// One line per saga, and a second naming the actions it left uncompensated.
fn sagas(out: &mut String, c: &ConsistencyReport) {
    let w = label_width(c.sagas.keys());
    for (name, s) in &c.sagas {
        let label = format!("{name}:");
        let _ = writeln!(
            out,
            "saga {label:<w$} {} started, {} completed, {} compensated, {} compensation failed, {} in flight ({})",
            s.started, s.completed, s.compensated, s.compensation_failed, s.in_flight, s.kind
        );
        let steps: Vec<String> = s
            .uncompensated
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(action, n)| format!("{action} in {n}"))
            .collect();
        if !steps.is_empty() {
            let _ = writeln!(
                out,
                "     {:<w$} left uncompensated: {}",
                "",
                steps.join(", ")
            );
        }
    }
}

/// The width of `NAME:` labels, so that the lines after them align.
fn label_width<'a>(names: impl Iterator<Item = &'a String>) -> usize {
    names.map(|n| n.chars().count() + 1).max().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::consistency::Consistency;
    use crate::report::RunInfo;
    use crate::report::json::tests::{metrics, sample_consistency};

    #[test]
    fn consistency_section_only_when_there_is_something_to_say() {
        let r = Report::new(&RunInfo::skeleton(), &metrics(Consistency::default()));
        assert!(!summary(&r, "x").contains("consistency"));

        let r = Report::new(&RunInfo::skeleton(), &metrics(sample_consistency()));
        let s = summary(&r, "x");
        let section = &s[s.find("\nconsistency (").expect(&s)..];
        let lines: Vec<&str> = section.lines().skip(2).collect();
        // Queues first, then groups, each sorted by name, in one aligned table.
        assert!(lines[0].starts_with("queue/group "), "{section}");
        assert!(lines[0].ends_with("out of order"), "{section}");
        assert!(
            lines[1].starts_with("rabbit/audit           queue"),
            "{section}"
        );
        assert!(lines[1].ends_with("  CONSERVATION VIOLATED"), "{section}");
        assert!(
            lines[2].starts_with("rabbit/payments        queue"),
            "{section}"
        );
        let cells: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(
            cells,
            [
                "rabbit/payments",
                "queue",
                "10",
                "7",
                "2",
                "2",
                "0",
                "0",
                "0",
                "0",
                "1",
                "4",
                "1",
                "conservation",
                "OK"
            ]
        );
        assert_eq!(lines[1].len(), lines[2].len(), "{section}");
        assert!(
            lines[3].starts_with("events/orders@billing  group"),
            "{section}"
        );
        assert_eq!(
            &lines[4..],
            [
                "exchange rabbit/orders (topic): 13 published, 1 unroutable (dropped)",
                "effect charge: 1000 operations, 998 exactly once, 0 never, 2 duplicated (max 2), 0 despite failure",
                "saga checkout: 10 started, 6 completed, 2 compensated, 1 compensation failed, 1 in flight (orchestrated)",
                "               left uncompensated: payments/charge in 1",
                "propagation to every subscriber: p50 15 ms, p99 15 ms over 3 messages, 4 not propagated",
                "idempotency payments/charge: 100 stored, 3 replayed, 1 conflict",
            ]
        );
    }
}
