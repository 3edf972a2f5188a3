//! The terminal summary: what a person reads right after a run.

use super::json::{LatencyReport, Report};
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

fn ms(x: f64) -> String {
    format!("{x:.3}")
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
        "simulated {:.3} s (statistics over {:.3} s after a {:.3} s warmup), {} events, stop: {}\n",
        r.duration_s, r.window_s, r.warmup_s, r.events, r.stop
    );
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
                format!("{:.2}", w.throughput_rps),
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
        &mut out,
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
        &mut out,
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
        &mut out,
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
    for (name, e) in &r.edges {
        if let Some(b) = &e.breaker {
            let changes: Vec<String> = b
                .transitions
                .iter()
                .map(|t| format!("{:.3}s {}->{}", t.t_s, t.from, t.to))
                .collect();
            let _ = writeln!(
                out,
                "breaker {name}: {} transitions, open {:.3} s, {} at the end{}{}",
                b.transitions.len(),
                b.time_open_s,
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
    if !r.faults.is_empty() {
        out.push_str("\nfaults\n");
        for f in &r.faults {
            let _ = writeln!(out, "  {:<40} affected {}", f.fault, f.affected);
        }
    }
    if !r.expectations.is_empty() {
        out.push_str("\nexpectations\n");
        for e in &r.expectations {
            let window = e
                .window_s
                .map(|[a, b]| format!(" (from {a} s to {b} s)"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  {} {}{window}: value {}",
                if e.passed { "PASS" } else { "FAIL" },
                e.check,
                e.value
            );
        }
    }
    out
}
