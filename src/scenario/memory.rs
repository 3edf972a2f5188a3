//! What a scenario will need in memory, estimated before it runs, so that `meshsim run`
//! refuses (exit 2) a scenario the machine cannot hold instead of aborting half way.
//!
//! The estimate counts what is allocated up front or held by construction: the
//! measurements of every endpoint, workload, edge and window (histograms and time-series
//! buckets dominate), replicas, closed-loop users and their requests, key spaces, topic
//! partitions and their per-group offsets, and count-based breaker windows. The costs
//! per unit were measured (peak RSS, `/usr/bin/time -v`, dev-opt build, of a scenario
//! with 1000 and with 2000 of each: the difference divided by 1000) and rounded up.
//! Histograms grow to the highest bucket they record, so an idle unit costs far less
//! than one whose latencies spread over many decades. It leaves out what grows with the run (queues under
//! overload, the effects ledger, retention stores): the event budget and the sizes in
//! `bounds` keep those finite.

use crate::model::breaker::BreakerWindow;
use crate::model::spec::{Load, Spec};

const BASE: u64 = 8 << 20;
/// Measured: 1000 more idle endpoints, 13.8 MB more (one service; 12.1 MB as 1000 more
/// services of one endpoint: 21.4 -> 33.5 MB).
const PER_ENDPOINT: u64 = 16_000;
/// Measured: 1000 more workloads at 1/s on one endpoint (each with its edge), 10 s,
/// 90.7 MB more (100.9 -> 191.7 MB).
const PER_WORKLOAD: u64 = 96_000;
/// Measured: 2000 edges between endpoints, 7 MB beyond their endpoints.
const PER_EDGE: u64 = 4_000;
/// One latency summary and its counts. Measured: 1000 more `[[expect]]` windows on a
/// workload at 100/s, 16.6 MB more (26.0 -> 42.5 MB).
const PER_WINDOW: u64 = 20_000;
const PER_REPLICA: u64 = 256;
/// Measured: 5 x 10^6 users, each with a request in flight, 195 MB.
const PER_USER: u64 = 48;
const PER_KEY: u64 = 16;
const PER_PARTITION: u64 = 64;
const PER_BREAKER_CALL: u64 = 16;

/// An estimate, in bytes, and what contributes most to it.
pub struct Estimate {
    pub bytes: u64,
    pub largest: String,
}

pub fn estimate(spec: &Spec) -> Estimate {
    let users: u64 = spec
        .workloads
        .iter()
        .map(|w| match &w.load {
            Load::Closed { users, .. } => u64::from(*users),
            Load::Open { .. } => 0,
        })
        .sum();
    let keys: u64 = spec
        .workloads
        .iter()
        .filter_map(|w| w.keys.map(|k| u64::from(k.count)))
        .sum();
    let replicas: u64 = spec.services.iter().map(|s| u64::from(s.replicas)).sum();
    let partitions: u64 = spec
        .topics
        .iter()
        .map(|t| u64::from(t.partitions) * (1 + spec.consumers.len() as u64))
        .sum();
    let breaker_calls: u64 = spec
        .edges
        .iter()
        .map(|e| match &spec.policies[e.policy.index()].breaker {
            Some(b) => match b.window {
                BreakerWindow::Count { calls } => u64::from(calls),
                BreakerWindow::Time { buckets, .. } => u64::from(buckets),
            },
            None => 0,
        })
        .sum();
    let parts = [
        (spec.endpoints.len() as u64 * PER_ENDPOINT, "endpoints"),
        (spec.workloads.len() as u64 * PER_WORKLOAD, "workloads"),
        (
            spec.edges.len() as u64 * PER_EDGE,
            "edges (caller -> endpoint)",
        ),
        (
            spec.windows.len() as u64 * PER_WINDOW,
            "expectation windows",
        ),
        (replicas * PER_REPLICA, "replicas"),
        (users * PER_USER, "closed-loop users"),
        (keys * PER_KEY, "key spaces"),
        (partitions * PER_PARTITION, "topic partitions"),
        (breaker_calls * PER_BREAKER_CALL, "breaker windows"),
    ];
    let bytes = parts
        .iter()
        .fold(BASE, |sum, (b, _)| sum.saturating_add(*b));
    let (b, what) = parts.iter().max_by_key(|(b, _)| *b).expect("not empty");
    Estimate {
        bytes,
        largest: format!("{what}: {}", human(*b)),
    }
}

/// The default budget: three quarters of the machine's memory (Linux), else none.
pub fn machine_budget() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024 / 4 * 3)
}

/// `512MB`, `4GB`, `1.5GiB`, `800000KB`, or bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = (&t[..split], t[split..].trim());
    let scale: f64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => return Err(format!("`{text}`: expected a size such as 512MB or 4GB")),
    };
    let x: f64 = number
        .parse()
        .map_err(|_| format!("`{text}`: expected a size such as 512MB or 4GB"))?;
    let bytes = x * scale;
    if !(bytes >= 1.0 && bytes < u64::MAX as f64) {
        return Err(format!("`{text}`: expected a size of at least one byte"));
    }
    Ok(bytes as u64)
}

pub fn human(bytes: u64) -> String {
    if bytes >= 1 << 30 {
        format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
    } else {
        format!("{:.0} MiB", (bytes as f64 / (1u64 << 20) as f64).ceil())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_decimal_and_binary_units() {
        assert_eq!(parse_size("512MB"), Ok(512_000_000));
        assert_eq!(parse_size("4GB"), Ok(4_000_000_000));
        assert_eq!(parse_size("1.5GiB"), Ok(1_610_612_736));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("-1GB").is_err());
        assert!(parse_size("4 parsecs").is_err());
        assert!(parse_size("0MB").is_err());
    }
}
