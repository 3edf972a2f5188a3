//! Time series: per bucket of simulated time (1 s by default), per workload, endpoint
//! and edge: the answers, errors, p50/p99, and for endpoints the mean queue length, for
//! edges the attempts sent and the breaker's state. Buckets cover the whole run, warmup
//! included, so the warmup transient is visible.

use super::loghist::LogHistogram;
use crate::engine::{SimDuration, SimTime};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeriesKind {
    Workload,
    Endpoint,
    Edge,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SeriesRow {
    pub start: SimTime,
    pub end: SimTime,
    pub series: u32,
    pub completed: u64,
    pub errors: u64,
    /// None for edges of internal calls (counted, not timed: see `record_count`), and
    /// for a bucket in which nothing answered.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Endpoints only: mean number of requests waiting for a worker.
    pub queue_length_mean: Option<f64>,
    /// Edges only: attempts sent in the bucket.
    pub attempts: Option<u64>,
    /// Edges with a breaker: its state at the end of the bucket.
    pub breaker: Option<&'static str>,
}

/// What the world adds to a row when a bucket closes.
#[derive(Clone, Copy, Debug, Default)]
pub struct BucketExtras {
    /// Endpoints: the queue length integrated (value x ns) from time zero to the end.
    pub queue_area: Option<u128>,
    pub breaker: Option<&'static str>,
}

struct Bucket {
    completed: u64,
    errors: u64,
    attempts: u64,
    // Two significant digits keep the reset cheap; quantiles are clamped to the exact
    // min and max, so constant latencies still come out exact.
    hist: LogHistogram<u32>,
    min_ns: u64,
    max_ns: u64,
    queue_area_at_start: u128,
}

/// Rows per series a default bucket aims at: a file a person can still read.
pub const READABLE_ROWS: u64 = 1000;
/// The shortest default bucket: shorter ones hold too few answers for a p99, and a run
/// shorter than `READABLE_ROWS` of these is already readable.
pub const MIN_DEFAULT_BUCKET: SimDuration = SimDuration::from_secs(1);

/// The bucket of a run that does not choose one: the smallest 1-2-5 value (1, 2, 5 x
/// 10^k ns) that cuts `end` into at most `READABLE_ROWS` buckets, and at least
/// `MIN_DEFAULT_BUCKET`; `MIN_DEFAULT_BUCKET` when the end is unknown.
pub fn readable_bucket(end: Option<SimDuration>) -> SimDuration {
    let Some(end) = end else {
        return MIN_DEFAULT_BUCKET;
    };
    let want = end.as_nanos().div_ceil(READABLE_ROWS);
    let mut decade: u64 = 1;
    loop {
        for step in [1, 2, 5] {
            let b = decade.saturating_mul(step);
            if b >= want || b == u64::MAX {
                return SimDuration::from_nanos(b).max(MIN_DEFAULT_BUCKET);
            }
        }
        decade = decade.saturating_mul(10);
    }
}

/// Rows are kept in memory until the run ends (outputs are written only once a run has
/// succeeded); past this many rows the series stops growing and says so.
pub const MAX_ROWS: usize = 2_000_000;

pub struct Series {
    pub bucket: SimDuration,
    pub names: Vec<(SeriesKind, String)>,
    /// A series that mirrors another (a workload's edge mirrors the workload: same
    /// answers, same latencies) is not recorded twice; its rows copy the source's,
    /// only `attempts` is its own.
    mirror_of: Vec<Option<usize>>,
    pub rows: Vec<SeriesRow>,
    pub truncated: bool,
    start: SimTime,
    buckets: Vec<Bucket>,
}

impl std::fmt::Debug for Series {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Series")
            .field("bucket", &self.bucket)
            .field("rows", &self.rows.len())
            .finish()
    }
}

impl Series {
    pub fn new(bucket: SimDuration, names: Vec<(SeriesKind, String)>) -> Self {
        assert!(
            !bucket.is_zero(),
            "a time-series bucket must be longer than zero"
        );
        let buckets = names
            .iter()
            .map(|_| Bucket {
                completed: 0,
                errors: 0,
                attempts: 0,
                hist: LogHistogram::default(),
                min_ns: u64::MAX,
                max_ns: 0,
                queue_area_at_start: 0,
            })
            .collect();
        Series {
            bucket,
            mirror_of: vec![None; names.len()],
            names,
            rows: Vec::new(),
            truncated: false,
            start: SimTime::ZERO,
            buckets,
        }
    }

    /// Makes `series` a copy of `source` (which must come earlier).
    pub fn mirror(&mut self, series: usize, source: usize) {
        assert!(source < series, "a mirror reads a series closed before it");
        self.mirror_of[series] = Some(source);
    }

    #[inline]
    pub fn record(&mut self, series: usize, latency: SimDuration, error: bool) {
        assert!(self.mirror_of[series].is_none(), "recording into a mirror");
        let b = &mut self.buckets[series];
        b.completed += 1;
        b.errors += u64::from(error);
        let ns = latency.as_nanos();
        b.hist.record(ns);
        b.min_ns = b.min_ns.min(ns);
        b.max_ns = b.max_ns.max(ns);
    }

    /// An answer counted without its latency: edge rows carry counts, attempts and the
    /// breaker's state, not quantiles (those are the workloads' and endpoints').
    #[inline]
    pub fn record_count(&mut self, series: usize, error: bool) {
        let b = &mut self.buckets[series];
        b.completed += 1;
        b.errors += u64::from(error);
    }

    #[inline]
    pub fn record_attempt(&mut self, series: usize) {
        self.buckets[series].attempts += 1;
    }

    /// Closes the current bucket at `end`; `extras` adds what only the world knows.
    pub fn close_bucket(&mut self, end: SimTime, mut extras: impl FnMut(usize) -> BucketExtras) {
        let span_ns = end.saturating_since(self.start).as_nanos();
        if span_ns == 0 {
            return;
        }
        let first_row = self.rows.len();
        for i in 0..self.buckets.len() {
            let extra = extras(i);
            if let Some(src) = self.mirror_of[i] {
                let b = &mut self.buckets[i];
                let source_row =
                    (first_row + src < self.rows.len()).then(|| self.rows[first_row + src].clone());
                if let Some(source) = source_row {
                    self.rows.push(SeriesRow {
                        series: i as u32,
                        attempts: Some(b.attempts),
                        breaker: extra.breaker,
                        ..source
                    });
                } else {
                    self.truncated = true;
                }
                b.attempts = 0;
                continue;
            }
            // Edges of internal calls are counted, not timed (workload edges mirror).
            let timed = self.names[i].0 != SeriesKind::Edge;
            let b = &mut self.buckets[i];
            let queue_length_mean = extra.queue_area.map(|area| {
                let mean = (area - b.queue_area_at_start) as f64 / span_ns as f64;
                b.queue_area_at_start = area;
                mean
            });
            // A bucket where nothing answered has no latency: None (an empty CSV cell, a
            // gap in a plot), not 0 ms, which would read as "fast" while the system is stuck.
            let answered = timed && !b.hist.is_empty();
            let q = |p: f64| b.hist.quantile(p).clamp(b.min_ns, b.max_ns) as f64 * 1e-6;
            let row = SeriesRow {
                start: self.start,
                end,
                series: i as u32,
                completed: b.completed,
                errors: b.errors,
                p50_ms: answered.then(|| q(0.5)),
                p99_ms: answered.then(|| q(0.99)),
                queue_length_mean,
                attempts: (self.names[i].0 == SeriesKind::Edge).then_some(b.attempts),
                breaker: extra.breaker,
            };
            if self.rows.len() < MAX_ROWS {
                self.rows.push(row);
            } else {
                self.truncated = true;
            }
            b.completed = 0;
            b.errors = 0;
            b.attempts = 0;
            b.min_ns = u64::MAX;
            b.max_ns = 0;
            b.hist.reset();
        }
        self.start = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_bucket_is_a_1_2_5_value_for_at_most_1000_rows() {
        let s = SimDuration::from_secs;
        let bucket = |end: Option<SimDuration>| readable_bucket(end).as_nanos() / 1_000_000;
        // Short runs keep 1 s: at most 1000 rows already.
        assert_eq!(bucket(None), 1000);
        assert_eq!(bucket(Some(s(60))), 1000);
        assert_eq!(bucket(Some(s(1000))), 1000);
        // 1001 s needs 1000 buckets of >= 1.001 s: the next 1-2-5 value is 2 s.
        assert_eq!(bucket(Some(s(1001))), 2000);
        assert_eq!(bucket(Some(s(3600))), 5000);
        assert_eq!(bucket(Some(s(5000))), 5000);
        assert_eq!(bucket(Some(s(86_400))), 100_000);
        // ~12 days (10^6 M/M/1 customers): 1.04 ks per row -> 2000 s, 521 rows.
        assert_eq!(bucket(Some(s(1_040_000))), 2_000_000);
        assert!(readable_bucket(Some(SimDuration::from_nanos(u64::MAX))) >= s(1));
    }

    #[test]
    fn buckets_count_and_reset() {
        let mut s = Series::new(
            SimDuration::from_secs(1),
            vec![
                (SeriesKind::Endpoint, "a/b".into()),
                (SeriesKind::Edge, "x->a/b".into()),
            ],
        );
        s.record(0, SimDuration::from_millis(10), false);
        s.record(0, SimDuration::from_millis(20), true);
        s.record_attempt(1);
        let extras = |area| {
            move |i| BucketExtras {
                queue_area: (i == 0).then_some(area),
                breaker: (i == 1).then_some("closed"),
            }
        };
        s.close_bucket(SimTime::from_nanos(1_000_000_000), extras(500_000_000));
        s.close_bucket(SimTime::from_nanos(2_000_000_000), extras(2_500_000_000));
        assert_eq!(s.rows.len(), 4);
        assert_eq!((s.rows[0].completed, s.rows[0].errors), (2, 1));
        assert_eq!(s.rows[0].queue_length_mean, Some(0.5));
        assert_eq!(
            (s.rows[1].attempts, s.rows[1].breaker),
            (Some(1), Some("closed"))
        );
        assert_eq!(
            (s.rows[2].completed, s.rows[2].queue_length_mean),
            (0, Some(2.0))
        );
        assert_eq!(s.rows[3].attempts, Some(0));
        // Nothing answered in the second bucket: no latency, rather than 0 ms.
        assert_eq!((s.rows[0].p50_ms, s.rows[2].p50_ms), (Some(10.0), None));
    }
}
