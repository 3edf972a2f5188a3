//! Time series: per bucket of simulated time (1 s by default), per workload, endpoint
//! and edge: the answers, errors, p50/p99, and for endpoints the mean queue length, for
//! edges the attempts sent and the breaker's state. Buckets cover the whole run, warmup
//! included, so the warmup transient is visible.

use super::consistency::{FlowMetrics, LagRow};
use super::loghist::Buckets;
use crate::engine::{SimDuration, SimTime};
use crate::status::Status;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeriesKind {
    Workload,
    Endpoint,
    Edge,
}

/// The classes a workload's errors are counted in per bucket, by final status:
/// `timeout` (deadline_exceeded: a timeout or a deadline), `unavailable` (a service
/// down, a full queue, an open breaker), `rejected` (resource_exhausted: a bulkhead, a
/// rate limit), `internal` (a failing step), `other` (invalid_argument, not_found,
/// failed_precondition, permission_denied: what a `fail` step may answer).
pub const ERROR_CLASSES: [&str; 5] = ["timeout", "unavailable", "rejected", "internal", "other"];

/// The index in `ERROR_CLASSES` of an error status.
pub fn error_class(s: Status) -> usize {
    match s {
        Status::DeadlineExceeded => 0,
        Status::Unavailable => 1,
        Status::ResourceExhausted => 2,
        Status::Internal => 3,
        Status::Ok
        | Status::InvalidArgument
        | Status::NotFound
        | Status::FailedPrecondition
        | Status::PermissionDenied => 4,
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct SeriesRow {
    pub start: SimTime,
    pub end: SimTime,
    pub series: u32,
    pub completed: u64,
    pub errors: u64,
    /// Workloads only: `errors` by class (`ERROR_CLASSES`).
    pub errors_by_class: Option<[u64; ERROR_CLASSES.len()]>,
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

/// Where rows go as buckets close, when they are not kept in memory: the report side
/// implements it (`report::csv::TimeseriesStream` writes `timeseries.csv`), so that
/// metrics know nothing of files. A sink that fails keeps its error for its owner.
pub trait RowSink: Send {
    /// One closed bucket: a row per series, in series order.
    fn rows(&mut self, names: &[(SeriesKind, String)], rows: &[SeriesRow]);
    /// One closed bucket's depth and lag rows, by flow.
    fn flow_rows(&mut self, flows: &[FlowMetrics], rows: &[LagRow]);
    /// The run is over: everything is written, or the first error says why not.
    fn finish(self: Box<Self>) -> Result<(), String>;
}

/// One series' counts in the bucket being filled. What a record touches comes first and
/// fills one 64-byte line (the histogram's counts pointer and range, the answers, errors,
/// min, max, attempts), so an answer costs that line and one histogram bucket's.
#[repr(C, align(64))]
struct Bucket {
    // Two significant digits keep the reset cheap; quantiles are clamped to the exact
    // min and max, so constant latencies still come out exact. A timed series counts
    // every answer in it, so `completed` is its total.
    hist: Buckets<u32>,
    completed: u64,
    errors: u64,
    min_ns: u64,
    max_ns: u64,
    attempts: u64,
    by_class: [u64; ERROR_CLASSES.len()],
    queue_area_at_start: u128,
}

impl Bucket {
    fn new() -> Self {
        Bucket {
            hist: Buckets::default(),
            completed: 0,
            errors: 0,
            min_ns: u64::MAX,
            max_ns: 0,
            attempts: 0,
            by_class: [0; ERROR_CLASSES.len()],
            queue_area_at_start: 0,
        }
    }

    /// Starts the next bucket: counts to zero, the histogram's range kept.
    fn clear(&mut self, timed: bool) {
        let samples = if timed { self.completed } else { 0 };
        self.hist.reset_within(samples, self.min_ns, self.max_ns);
        self.completed = 0;
        self.errors = 0;
        self.by_class = [0; ERROR_CLASSES.len()];
        self.attempts = 0;
        self.min_ns = u64::MAX;
        self.max_ns = 0;
    }
}

/// How a series is recorded: with latencies (workloads, endpoints), counted only
/// (edges of internal calls), or not at all (a mirror copies another series' rows).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Recorded {
    Timed,
    Counted,
    Mirror,
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

/// The most rows a run's time series has, its series' and its flows' together: past
/// them it stops growing and says so (`truncated`). Rows stream to a sink, or are kept
/// in memory without one; either way a run with tiny buckets writes at most this many.
pub const MAX_ROWS: usize = 2_000_000;
/// The most buckets a run's time series has (20 times the default's 1000): past them
/// it stops growing and says so (`truncated`), whole buckets at a time. A run whose
/// bucket is written much shorter than it lasts (1 s for 12 simulated days) would
/// spend most of its time writing rows nobody reads.
pub const MAX_BUCKETS: u64 = 20_000;

/// Per bucket of simulated time, per series: what was answered, and the bucket's
/// quantiles from one small histogram per series, reused bucket after bucket. A closed
/// bucket's rows go to the sink if there is one (memory then stays the same whatever
/// the run's length), else to `rows`.
pub struct Series {
    pub bucket: SimDuration,
    pub names: Vec<(SeriesKind, String)>,
    /// A series that mirrors another (a workload's edge mirrors the workload: same
    /// answers, same latencies) is not recorded twice; its rows copy the source's,
    /// only `attempts` is its own.
    mirror_of: Vec<Option<usize>>,
    /// Per series, which records it takes (a byte each: checked at every record).
    recorded: Vec<Recorded>,
    /// The rows, when there is no sink.
    pub rows: Vec<SeriesRow>,
    pub truncated: bool,
    /// Rows given out so far (to `rows`, the caller's flow rows, or the sink).
    written: usize,
    /// Buckets closed so far.
    closed: u64,
    sink: Option<Box<dyn RowSink>>,
    /// The rows of the bucket being closed (reused).
    closing: Vec<SeriesRow>,
    start: SimTime,
    buckets: Vec<Bucket>,
}

impl std::fmt::Debug for Series {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Series")
            .field("bucket", &self.bucket)
            .field("rows", &self.written)
            .field("streamed", &self.sink.is_some())
            .finish()
    }
}

impl Series {
    pub fn new(bucket: SimDuration, names: Vec<(SeriesKind, String)>) -> Self {
        assert!(
            !bucket.is_zero(),
            "a time-series bucket must be longer than zero"
        );
        let buckets = names.iter().map(|_| Bucket::new()).collect();
        let recorded = names
            .iter()
            .map(|(kind, _)| match kind {
                SeriesKind::Edge => Recorded::Counted,
                SeriesKind::Workload | SeriesKind::Endpoint => Recorded::Timed,
            })
            .collect();
        Series {
            bucket,
            mirror_of: vec![None; names.len()],
            recorded,
            names,
            rows: Vec::new(),
            truncated: false,
            written: 0,
            closed: 0,
            sink: None,
            closing: Vec::new(),
            start: SimTime::ZERO,
            buckets,
        }
    }

    /// From now on, closed buckets go to `sink` instead of `rows`.
    pub fn stream_to(&mut self, sink: Box<dyn RowSink>) {
        self.sink = Some(sink);
    }

    /// The sink, once the run is over (dropping it with the metrics would do too).
    pub fn take_sink(&mut self) -> Option<Box<dyn RowSink>> {
        self.sink.take()
    }

    /// `MAX_BUCKETS` are closed: later buckets make no rows.
    pub fn full(&self) -> bool {
        self.closed >= MAX_BUCKETS
    }

    /// Rows of the whole series so far, its flows' included.
    pub fn rows_written(&self) -> usize {
        self.written
    }

    /// Makes `series` a copy of `source` (which must come earlier).
    pub fn mirror(&mut self, series: usize, source: usize) {
        assert!(source < series, "a mirror reads a series closed before it");
        self.mirror_of[series] = Some(source);
        self.recorded[series] = Recorded::Mirror;
    }

    /// An answer of a workload or endpoint, with its latency. Inlined into its two
    /// callers: the call itself cost a quarter of the record.
    #[inline(always)]
    pub fn record(&mut self, series: usize, latency: SimDuration, error: bool) {
        assert!(
            self.recorded[series] == Recorded::Timed,
            "recording a latency into a series that is not timed"
        );
        let b = &mut self.buckets[series];
        b.completed += 1;
        b.errors += u64::from(error);
        let ns = latency.as_nanos();
        b.hist.record(ns);
        b.min_ns = b.min_ns.min(ns);
        b.max_ns = b.max_ns.max(ns);
    }

    /// `record`, with the errors counted by class too (workloads).
    #[inline(always)]
    pub fn record_status(&mut self, series: usize, latency: SimDuration, status: Status) {
        self.record(series, latency, !status.is_ok());
        if !status.is_ok() {
            self.buckets[series].by_class[error_class(status)] += 1;
        }
    }

    /// An answer counted without its latency: edge rows carry counts, attempts and the
    /// breaker's state, not quantiles (those are the workloads' and endpoints').
    #[inline]
    pub fn record_count(&mut self, series: usize, error: bool) {
        assert!(
            self.recorded[series] == Recorded::Counted,
            "counting an answer into a series that is timed or a mirror"
        );
        let b = &mut self.buckets[series];
        b.completed += 1;
        b.errors += u64::from(error);
    }

    #[inline]
    pub fn record_attempt(&mut self, series: usize) {
        self.buckets[series].attempts += 1;
    }

    /// How many of `n` rows of the bucket being closed still fit under `MAX_ROWS` and
    /// `MAX_BUCKETS` (counted as given out).
    fn room(&mut self, n: usize) -> usize {
        let fits = if self.closed < MAX_BUCKETS {
            n.min(MAX_ROWS - self.written)
        } else {
            0
        };
        if fits < n {
            self.truncated = true;
        }
        self.written += fits;
        fits
    }

    /// A closed bucket's depth and lag rows (given before `close_bucket` closes the same
    /// bucket): to the sink, or kept in `kept`; under the same bounds as the other rows.
    pub fn flow_rows(&mut self, flows: &[FlowMetrics], rows: &[LagRow], kept: &mut Vec<LagRow>) {
        let fits = self.room(rows.len());
        match &mut self.sink {
            Some(sink) => sink.flow_rows(flows, &rows[..fits]),
            None => kept.extend_from_slice(&rows[..fits]),
        }
    }

    /// Past the bound: the bucket closes at `end` without a row, its counts start again.
    #[cold]
    fn drop_bucket(&mut self, end: SimTime) {
        for (b, r) in self.buckets.iter_mut().zip(&self.recorded) {
            b.clear(*r == Recorded::Timed);
        }
        self.truncated = true;
        self.start = end;
        self.closed += 1;
    }

    /// Closes the current bucket at `end`; `extras` adds what only the world knows.
    pub fn close_bucket(&mut self, end: SimTime, mut extras: impl FnMut(usize) -> BucketExtras) {
        let span_ns = end.saturating_since(self.start).as_nanos();
        if span_ns == 0 {
            return;
        }
        if self.closed >= MAX_BUCKETS {
            self.drop_bucket(end);
            return;
        }
        self.closing.clear();
        for i in 0..self.buckets.len() {
            let extra = extras(i);
            if let Some(src) = self.mirror_of[i] {
                let b = &mut self.buckets[i];
                assert_eq!(b.completed, 0, "nothing is recorded into a mirror");
                let source = self.closing[src].clone();
                self.closing.push(SeriesRow {
                    series: i as u32,
                    errors_by_class: None,
                    attempts: Some(b.attempts),
                    breaker: extra.breaker,
                    ..source
                });
                b.attempts = 0;
                continue;
            }
            let kind = self.names[i].0;
            // Edges of internal calls are counted, not timed (workload edges mirror).
            let timed = self.recorded[i] == Recorded::Timed;
            let b = &mut self.buckets[i];
            let queue_length_mean = extra.queue_area.map(|area| {
                let mean = (area - b.queue_area_at_start) as f64 / span_ns as f64;
                b.queue_area_at_start = area;
                mean
            });
            // A bucket where nothing answered has no latency: None (an empty CSV cell, a
            // gap in a plot), not 0 ms, which would read as "fast" while the system is stuck.
            let answered = timed && b.completed > 0;
            let (min, max) = (b.min_ns, b.max_ns);
            let q = |p: f64| {
                let v = b.hist.quantile_within(b.completed, p, min, max);
                v.clamp(min, max) as f64 * 1e-6
            };
            self.closing.push(SeriesRow {
                start: self.start,
                end,
                series: i as u32,
                completed: b.completed,
                errors: b.errors,
                errors_by_class: (kind == SeriesKind::Workload).then_some(b.by_class),
                p50_ms: answered.then(|| q(0.5)),
                p99_ms: answered.then(|| q(0.99)),
                queue_length_mean,
                attempts: (kind == SeriesKind::Edge).then_some(b.attempts),
                breaker: extra.breaker,
            });
            b.clear(timed);
        }
        self.start = end;
        let fits = self.room(self.closing.len());
        self.closed += 1;
        match &mut self.sink {
            Some(sink) => sink.rows(&self.names, &self.closing[..fits]),
            None => self.rows.extend_from_slice(&self.closing[..fits]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_stop_at_the_cap_flows_included() {
        let mut s = Series::new(
            SimDuration::from_secs(1),
            vec![(SeriesKind::Workload, "w".into())],
        );
        let row = |t: u64| LagRow {
            start: SimTime::from_nanos(t),
            end: SimTime::from_nanos(t + 1),
            flow: 0,
            depth: 7,
        };
        let mut kept = Vec::new();
        let batch: Vec<LagRow> = (0..1000).map(row).collect();
        for _ in 0..MAX_ROWS / 1000 - 1 {
            s.flow_rows(&[], &batch, &mut kept);
        }
        assert!(!s.truncated);
        s.close_bucket(SimTime::from_nanos(1_000_000_000), |_| {
            BucketExtras::default()
        });
        s.flow_rows(&[], &batch, &mut kept);
        assert!(s.truncated);
        assert_eq!(kept.len() + s.rows.len(), MAX_ROWS);
        assert_eq!(s.rows_written(), MAX_ROWS);
        s.close_bucket(SimTime::from_nanos(2_000_000_000), |_| {
            BucketExtras::default()
        });
        assert_eq!(s.rows.len(), 1);
    }

    #[test]
    fn buckets_stop_at_their_bound_whole() {
        let mut s = Series::new(
            SimDuration::from_secs(1),
            vec![
                (SeriesKind::Workload, "w".into()),
                (SeriesKind::Endpoint, "e".into()),
            ],
        );
        let mut kept = Vec::new();
        let lag = |t: u64| LagRow {
            start: SimTime::from_nanos(t),
            end: SimTime::from_nanos(t + 1),
            flow: 0,
            depth: 1,
        };
        for t in 1..=MAX_BUCKETS + 5 {
            s.record(0, SimDuration::from_millis(3), false);
            s.flow_rows(&[], &[lag(t)], &mut kept);
            s.close_bucket(SimTime::from_nanos(t * 1_000_000_000), |_| {
                BucketExtras::default()
            });
            assert_eq!(s.truncated, t > MAX_BUCKETS, "{t}");
        }
        assert_eq!(s.rows.len() as u64, 2 * MAX_BUCKETS);
        assert_eq!(kept.len() as u64, MAX_BUCKETS);
        let last = s.rows.last().unwrap();
        assert_eq!(last.end, SimTime::from_nanos(MAX_BUCKETS * 1_000_000_000));
    }

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
