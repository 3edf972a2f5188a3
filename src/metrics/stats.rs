//! Streaming statistics: nothing here stores per-request samples, so memory stays
//! bounded by the number of metrics, not by the number of requests a run has seen.

use super::loghist::LogHistogram;
use crate::engine::{SimDuration, SimTime};

/// The two-sided 99% normal quantile, z(0.995).
const Z_995: f64 = 2.575_829_303_548_900_4;

/// Student's t quantile t(0.995, df), by the Cornish-Fisher expansion
/// (Abramowitz & Stegun 26.7.5); within 1e-4 of the exact value for df >= 10.
pub fn student_t_995(df: u64) -> f64 {
    assert!(df >= 1);
    let v = df as f64;
    let z = Z_995;
    let (z2, z3, z5, z7, z9) = (z * z, z * z * z, z.powi(5), z.powi(7), z.powi(9));
    let _ = z2;
    z + (z3 + z) / (4.0 * v)
        + (5.0 * z5 + 16.0 * z3 + 3.0 * z) / (96.0 * v * v)
        + (3.0 * z7 + 19.0 * z5 + 17.0 * z3 - 15.0 * z) / (384.0 * v.powi(3))
        + (79.0 * z9 + 776.0 * z7 + 1482.0 * z5 - 1920.0 * z3 - 945.0 * z) / (92160.0 * v.powi(4))
}

/// Batch means with a bounded number of batches: when `MAX_BATCHES` fill up, pairs are
/// merged and the batch size doubles. Successive latencies in a queue are correlated,
/// so a naive standard error would be far too optimistic; means of long batches are
/// nearly independent.
#[derive(Clone, Debug)]
pub struct BatchMeans {
    batch_size: u64,
    current_sum: f64,
    current_n: u64,
    sums: Vec<f64>,
}

const MAX_BATCHES: usize = 64;
/// Fewer full batches than this and no interval is reported.
const MIN_BATCHES: usize = 20;

/// A mean with its 99% confidence interval from batch means.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MeanCi {
    pub mean: f64,
    pub half_width: f64,
    pub batches: usize,
}

impl Default for BatchMeans {
    fn default() -> Self {
        BatchMeans {
            batch_size: 1,
            current_sum: 0.0,
            current_n: 0,
            sums: Vec::with_capacity(MAX_BATCHES),
        }
    }
}

impl BatchMeans {
    #[inline]
    pub fn push(&mut self, x: f64) {
        self.current_sum += x;
        self.current_n += 1;
        if self.current_n == self.batch_size {
            self.sums.push(self.current_sum);
            self.current_sum = 0.0;
            self.current_n = 0;
            if self.sums.len() == MAX_BATCHES {
                for i in 0..MAX_BATCHES / 2 {
                    self.sums[i] = self.sums[2 * i] + self.sums[2 * i + 1];
                }
                self.sums.truncate(MAX_BATCHES / 2);
                self.batch_size *= 2;
            }
        }
    }

    /// The 99% interval over full batches (the trailing partial batch is left out).
    pub fn ci99(&self) -> Option<MeanCi> {
        let b = self.sums.len();
        if b < MIN_BATCHES {
            return None;
        }
        let size = self.batch_size as f64;
        let means = self.sums.iter().map(|s| s / size);
        let mean = means.clone().sum::<f64>() / b as f64;
        let var = means.map(|m| (m - mean) * (m - mean)).sum::<f64>() / (b - 1) as f64;
        let half_width = student_t_995(b as u64 - 1) * (var / b as f64).sqrt();
        Some(MeanCi {
            mean,
            half_width,
            batches: b,
        })
    }
}

/// A latency (or wait) distribution: an HDR histogram for quantiles plus exact count,
/// sum, min and max. The histogram keeps 2 significant digits: quantiles are the middle
/// of their bucket, within +-0.4% of the true sample quantile, far below the sampling
/// error of any p99. (3 digits made the histograms ten times larger; they fell out of
/// the CPU cache and cost a quarter of the run time.) Quantiles are clamped to
/// [min, max], so a constant distribution reports its exact value.
#[derive(Clone, Debug)]
pub struct Summary {
    hist: LogHistogram<u64>,
    count: u64,
    sum_ns: u128,
    min_ns: u64,
    max_ns: u64,
    batches: BatchMeans,
}

impl Default for Summary {
    fn default() -> Self {
        Summary {
            hist: LogHistogram::default(),
            count: 0,
            sum_ns: 0,
            min_ns: u64::MAX,
            max_ns: 0,
            batches: BatchMeans::default(),
        }
    }
}

impl Summary {
    #[inline]
    pub fn record(&mut self, d: SimDuration) {
        let ns = d.as_nanos();
        self.hist.record(ns);
        self.count += 1;
        self.sum_ns += u128::from(ns);
        self.min_ns = self.min_ns.min(ns);
        self.max_ns = self.max_ns.max(ns);
        self.batches.push(ns as f64);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// The histogram behind the quantiles, and the exact extremes they are clamped
    /// to: what merging summaries of several runs needs.
    pub fn histogram(&self) -> (&LogHistogram<u64>, u64, u64) {
        (&self.hist, self.min_ns, self.max_ns)
    }

    pub fn mean_ms(&self) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        self.sum_ns as f64 / self.count as f64 * 1e-6
    }

    pub fn max_ms(&self) -> f64 {
        self.max_ns as f64 * 1e-6
    }

    pub fn min_ms(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.min_ns as f64 * 1e-6
        }
    }

    /// The q-quantile (0..=1) in milliseconds; 0 when nothing was recorded.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let v = self.hist.quantile(q).clamp(self.min_ns, self.max_ns);
        v as f64 * 1e-6
    }

    /// `quantile_ms` of each of `qs` (in increasing order), in one pass: what a
    /// report's row of p50, p90, p99, p99.9 needs, per endpoint and edge.
    pub fn quantiles_ms<const N: usize>(&self, qs: [f64; N]) -> [f64; N] {
        if self.count == 0 {
            return [0.0; N];
        }
        self.hist
            .quantiles(qs)
            .map(|v| v.clamp(self.min_ns, self.max_ns) as f64 * 1e-6)
    }

    /// The mean's 99% confidence interval, in milliseconds.
    pub fn mean_ci99_ms(&self) -> Option<MeanCi> {
        self.batches.ci99().map(|ci| MeanCi {
            mean: ci.mean * 1e-6,
            half_width: ci.half_width * 1e-6,
            batches: ci.batches,
        })
    }
}

/// The time average of a piecewise-constant quantity (queue length, requests in system,
/// busy workers), kept both over the measured window and over the whole run.
#[derive(Clone, Debug, Default)]
pub struct TimeWeighted {
    value: u64,
    since: SimTime,
    /// value x nanoseconds from `measure_from` on.
    area_measured: u128,
    /// value x nanoseconds since time zero, for time-series buckets.
    area_all: u128,
    measure_from: SimTime,
    max_measured: u64,
}

impl TimeWeighted {
    pub fn new(measure_from: SimTime) -> Self {
        TimeWeighted {
            measure_from,
            ..Default::default()
        }
    }

    #[inline]
    fn advance(&mut self, now: SimTime) {
        let v = u128::from(self.value);
        self.area_all += v * u128::from(now.since(self.since).as_nanos());
        let from = self.since.max(self.measure_from);
        if now > from {
            self.area_measured += v * u128::from(now.since(from).as_nanos());
        }
        self.since = now;
    }

    #[inline]
    pub fn set(&mut self, now: SimTime, value: u64) {
        self.advance(now);
        self.value = value;
        if now >= self.measure_from {
            self.max_measured = self.max_measured.max(value);
        }
    }

    #[inline]
    pub fn increment(&mut self, now: SimTime) {
        self.set(now, self.value + 1);
    }

    #[inline]
    pub fn decrement(&mut self, now: SimTime) {
        assert!(self.value > 0, "time-weighted count went negative");
        self.set(now, self.value - 1);
    }

    pub fn value(&self) -> u64 {
        self.value
    }

    /// value x ns since time zero, up to `now`, without moving the accumulator (a
    /// bucket boundary may lie after the last event of a drained run).
    pub fn area_all_at(&self, now: SimTime) -> u128 {
        self.area_all
            + u128::from(self.value) * u128::from(now.saturating_since(self.since).as_nanos())
    }

    /// Accounts for the time up to `end`, the end of the run.
    pub fn flush(&mut self, end: SimTime) {
        self.advance(end);
    }

    /// The mean over [measure_from, end].
    pub fn mean_until(&mut self, end: SimTime) -> f64 {
        self.advance(end);
        self.mean()
    }

    /// The mean over [measure_from, the last update or flush].
    pub fn mean(&self) -> f64 {
        let span = self.since.saturating_since(self.measure_from).as_nanos();
        if span == 0 {
            return 0.0;
        }
        self.area_measured as f64 / span as f64
    }

    pub fn max(&self) -> u64 {
        self.max_measured.max(if self.since >= self.measure_from {
            self.value
        } else {
            0
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn student_t_matches_tables() {
        // Tabulated t(0.995, df).
        for (df, t) in [
            (10, 3.169273),
            (30, 2.749996),
            (60, 2.660283),
            (120, 2.617421),
        ] {
            assert!(
                (student_t_995(df) - t).abs() < 2e-3,
                "df {df}: {}",
                student_t_995(df)
            );
        }
    }

    #[test]
    fn batch_means_of_iid_noise_cover_the_true_mean() {
        // Deterministic LCG noise, uniform on [0, 1): the true mean is 0.5.
        let mut b = BatchMeans::default();
        let mut x: u64 = 12345;
        for _ in 0..100_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            b.push((x >> 11) as f64 / (1u64 << 53) as f64);
        }
        let ci = b.ci99().unwrap();
        assert!(ci.batches >= 32 && ci.batches < 64);
        assert!((ci.mean - 0.5).abs() < ci.half_width, "{ci:?}");
        // sd of U(0,1) is 0.2887; the CI half-width must be near t * sd / sqrt(n).
        let expected = 2.7 * 0.2887 / (100_000f64).sqrt();
        assert!(
            ci.half_width > 0.5 * expected && ci.half_width < 1.6 * expected,
            "{ci:?}"
        );
    }

    #[test]
    fn quantiles_are_within_half_a_percent() {
        let mut s = Summary::default();
        for ms in 1..=1000 {
            s.record(SimDuration::from_millis(ms));
        }
        for (q, want) in [(0.5, 500.0), (0.9, 900.0), (0.99, 990.0)] {
            let got = s.quantile_ms(q);
            assert!((got / want - 1.0).abs() < 0.005, "q{q}: {got} vs {want}");
        }
        let qs = [0.5, 0.9, 0.99, 0.999];
        assert_eq!(s.quantiles_ms(qs), qs.map(|q| s.quantile_ms(q)));
        assert_eq!((s.min_ms(), s.max_ms(), s.mean_ms()), (1.0, 1000.0, 500.5));
    }

    #[test]
    fn summary_is_exact_for_constants() {
        let mut s = Summary::default();
        for _ in 0..1000 {
            s.record(SimDuration::from_millis(165));
        }
        assert_eq!(s.quantile_ms(0.5), 165.0);
        assert_eq!(s.quantile_ms(0.99), 165.0);
        assert_eq!(s.quantiles_ms([0.001, 0.5, 1.0]), [165.0; 3]);
        assert_eq!(s.mean_ms(), 165.0);
    }

    #[test]
    fn time_weighted_mean_clips_at_the_measure_start() {
        let mut tw = TimeWeighted::new(SimTime::from_nanos(10));
        tw.set(SimTime::from_nanos(0), 4); // 4 during [0,10): not measured
        tw.set(SimTime::from_nanos(20), 2); // 4 during [10,20)
        let mean = tw.mean_until(SimTime::from_nanos(30)); // 2 during [20,30)
        assert_eq!(mean, 3.0);
        assert_eq!(tw.area_all_at(SimTime::from_nanos(30)), 4 * 20 + 2 * 10);
    }
}
