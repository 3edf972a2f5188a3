//! `meshsim compare A B`: two designs run at the same seeds, and per metric the paired
//! difference B - A with its 95% interval across seeds.
//!
//! Common random numbers: every entity draws from its own stream, derived from the
//! run's seed and the entity's name (`engine::rng::stream`). Two designs run at the same
//! seed therefore see the same arrivals, keys and work draws wherever they share
//! entity names, and the seed-to-seed noise cancels in the difference: what remains is
//! the design. `independent` gives B other seeds (offset by `INDEPENDENT_OFFSET`), the
//! unpaired baseline that shows how much the pairing buys.

use super::runner::SeedRun;
use super::stats::Interval;
use serde_json::Value;
use std::collections::BTreeMap;

/// B's seeds when the designs are compared without common random numbers.
pub const INDEPENDENT_OFFSET: u64 = 1 << 40;

/// Every number of a report by its expectation path (`workloads.w.latency_ms.p50`;
/// a segment with a dot or a quote is quoted). Booleans count as 1 and 0. The run's
/// identity (seed, events) and its expectations are left out: they are not metrics.
pub fn flatten(report: &Value) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    if let Some(m) = report.as_object() {
        for (k, v) in m {
            if matches!(k.as_str(), "seed" | "seeds" | "expectations" | "events") {
                continue;
            }
            walk(v, &segment(k), &mut out);
        }
    }
    out
}

fn segment(k: &str) -> String {
    if k.contains('.') || k.contains('"') || k.contains(' ') {
        format!("\"{k}\"")
    } else {
        k.to_owned()
    }
}

fn walk(v: &Value, path: &str, out: &mut BTreeMap<String, f64>) {
    match v {
        Value::Number(n) => {
            out.insert(path.to_owned(), n.as_f64().expect("finite"));
        }
        Value::Bool(b) => {
            out.insert(path.to_owned(), f64::from(u8::from(*b)));
        }
        Value::Object(m) => {
            for (k, x) in m {
                walk(x, &format!("{path}.{}", segment(k)), out);
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                walk(x, &format!("{path}.{i}"), out);
            }
        }
        _ => {}
    }
}

/// A path every error count lives under, where a count a run does not list is 0.
fn is_error_count(path: &str) -> bool {
    path.rsplit_once('.')
        .is_some_and(|(parent, _)| parent.ends_with(".errors"))
}

/// One metric of the comparison.
#[derive(Clone, Debug, PartialEq)]
pub struct Delta {
    pub a: f64,
    pub b: f64,
    /// Mean of B - A over the seed pairs.
    pub delta: Interval,
}

impl Delta {
    pub fn significant(&self) -> bool {
        self.delta.excludes_zero()
    }

    /// The change relative to A, in percent, with its interval (None when A is 0).
    pub fn relative(&self) -> Option<(f64, f64, f64)> {
        (self.a != 0.0).then(|| {
            let p = |x: f64| 100.0 * x / self.a.abs();
            (
                p(self.delta.mean),
                p(self.delta.low()),
                p(self.delta.high()),
            )
        })
    }
}

/// Per metric path, A's and B's means and the paired difference. Pairs are the i-th
/// run of each (same seed under common random numbers). A metric that only one
/// design has (a service only B has) is left out; an error count one run does not
/// list is 0.
pub fn compare(a: &[SeedRun], b: &[SeedRun]) -> BTreeMap<String, Delta> {
    assert_eq!(a.len(), b.len(), "paired runs");
    let fa: Vec<BTreeMap<String, f64>> = a.iter().map(|r| flatten(&r.report)).collect();
    let fb: Vec<BTreeMap<String, f64>> = b.iter().map(|r| flatten(&r.report)).collect();
    let mut paths: Vec<&String> = fa.iter().chain(&fb).flat_map(|m| m.keys()).collect();
    paths.sort();
    paths.dedup();
    let mut out = BTreeMap::new();
    for path in paths {
        let get = |m: &BTreeMap<String, f64>| {
            m.get(path)
                .copied()
                .or_else(|| is_error_count(path).then_some(0.0))
        };
        let (Some(xa), Some(xb)) = (
            fa.iter().map(get).collect::<Option<Vec<f64>>>(),
            fb.iter().map(get).collect::<Option<Vec<f64>>>(),
        ) else {
            continue;
        };
        let diffs: Vec<f64> = xa.iter().zip(&xb).map(|(x, y)| y - x).collect();
        out.insert(
            path.clone(),
            Delta {
                a: Interval::of(&xa).mean,
                b: Interval::of(&xb).mean,
                delta: Interval::of(&diffs),
            },
        );
    }
    out
}

/// compare.json: `{"metrics": {PATH: {"a", "b", "delta", "ci95", "significant"}}}`.
pub fn to_json(deltas: &BTreeMap<String, Delta>, head: Value) -> String {
    let metrics: serde_json::Map<String, Value> = deltas
        .iter()
        .map(|(k, d)| {
            (
                k.clone(),
                serde_json::json!({
                    "a": d.a,
                    "b": d.b,
                    "delta": d.delta.mean,
                    "ci95": d.delta.ci95,
                    "significant": d.significant(),
                }),
            )
        })
        .collect();
    let mut v = head;
    v["metrics"] = Value::Object(metrics);
    let mut s = serde_json::to_string_pretty(&v).expect("serializes");
    s.push('\n');
    s
}

/// The summary's lead: the significant changes, largest relative change first, of the
/// metrics a reader decides on (latency, errors, throughput, amplification).
pub fn headline(deltas: &BTreeMap<String, Delta>, limit: usize) -> Vec<String> {
    let decisive = |p: &str| {
        [
            ".latency_ms.p50",
            ".latency_ms.p99",
            ".latency_ms.mean",
            ".error_rate",
            ".throughput_rps",
            ".amplification",
        ]
        .iter()
        .any(|s| p.ends_with(s))
            && (p.starts_with("workloads.")
                || p.starts_with("edges.")
                || p.starts_with("endpoints."))
    };
    // What the workloads' users see comes first, then endpoints and edges.
    let mut rows: Vec<(bool, f64, String)> = deltas
        .iter()
        .filter(|(p, d)| decisive(p) && d.significant())
        .map(|(p, d)| match d.relative() {
            Some((m, lo, hi)) => (
                !p.starts_with("workloads."),
                m.abs(),
                format!(
                    "{p} {m:+.1}% ({lo:+.1}..{hi:+.1}%): {:.4} -> {:.4}",
                    d.a, d.b
                ),
            ),
            None => (
                !p.starts_with("workloads."),
                f64::INFINITY,
                format!(
                    "{p} {:+.4} ({:+.4}..{:+.4}): {:.4} -> {:.4}",
                    d.delta.mean,
                    d.delta.low(),
                    d.delta.high(),
                    d.a,
                    d.b
                ),
            ),
        })
        .collect();
    rows.sort_by(|x, y| {
        x.0.cmp(&y.0)
            .then_with(|| y.1.total_cmp(&x.1))
            .then_with(|| x.2.cmp(&y.2))
    });
    rows.into_iter().take(limit).map(|(_, _, s)| s).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flatten_names_numbers_by_expectation_path() {
        let r = serde_json::json!({
            "seed": 3,
            "workloads": {"w": {"latency_ms": {"p50": 1.5}, "errors": {"timeout": 2}}},
            "edges": {"a->b.x/get": {"calls": 4}},
            "faults": [{"affected": 7, "fault": "crash"}],
            "consistency": {"conserved": true},
        });
        let f = flatten(&r);
        let keys: Vec<&str> = f.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "consistency.conserved",
                "edges.\"a->b.x/get\".calls",
                "faults.0.affected",
                "workloads.w.errors.timeout",
                "workloads.w.latency_ms.p50"
            ]
        );
        assert!(is_error_count("workloads.w.errors.timeout"));
        assert!(!is_error_count("workloads.w.latency_ms.p50"));
    }
}
