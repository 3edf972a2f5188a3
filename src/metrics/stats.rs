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
/// nearly independent. A batch's sum is the difference of two exact running sums (the
/// summary keeps one anyway), taken when the batch closes: a sample costs no float
/// addition. (The same value as adding the samples up in f64 one by one while a batch's
/// sum stays below 2^53 ns, 104 days; above, one rounding instead of one per sample.)
#[derive(Clone, Debug)]
pub struct BatchMeans {
    batch_size: u64,
    /// The running sum when the current batch began.
    batch_start: u128,
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
            batch_start: 0,
            sums: Vec::with_capacity(MAX_BATCHES),
        }
    }
}

impl BatchMeans {
    /// The current batch is full and the samples' running sum is `sum`: closes it and
    /// returns the size of the next one.
    pub fn close(&mut self, sum: u128) -> u64 {
        self.sums.push((sum - self.batch_start) as f64);
        self.batch_start = sum;
        if self.sums.len() == MAX_BATCHES {
            for i in 0..MAX_BATCHES / 2 {
                self.sums[i] = self.sums[2 * i] + self.sums[2 * i + 1];
            }
            self.sums.truncate(MAX_BATCHES / 2);
            self.batch_size *= 2;
        }
        self.batch_size
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
///
/// Laid out for the record: what every sample touches (the histogram's counts pointer
/// and range, the count, the sum's low word, min, max, where the batch ends) fills the
/// first 64-byte line, so a record touches that line and one bucket's; the sum's high
/// word and the batches follow, touched once per carry or batch.
#[derive(Clone, Debug)]
#[repr(C, align(64))]
pub struct Summary {
    /// Its total is the count.
    hist: LogHistogram<u64>,
    sum_low: u64,
    min_ns: u64,
    max_ns: u64,
    /// The count at which the current batch closes.
    batch_end: u64,
    sum_high: u64,
    batches: BatchMeans,
}

impl Default for Summary {
    fn default() -> Self {
        Summary {
            hist: LogHistogram::default(),
            sum_low: 0,
            min_ns: u64::MAX,
            max_ns: 0,
            batch_end: 1,
            sum_high: 0,
            batches: BatchMeans::default(),
        }
    }
}

impl Summary {
    #[inline]
    pub fn record(&mut self, d: SimDuration) {
        let ns = d.as_nanos();
        self.hist.record(ns);
        let (low, carry) = self.sum_low.overflowing_add(ns);
        self.sum_low = low;
        if carry {
            self.sum_high += 1;
        }
        self.min_ns = self.min_ns.min(ns);
        self.max_ns = self.max_ns.max(ns);
        if self.hist.len() == self.batch_end {
            self.close_batch();
        }
    }

    #[cold]
    #[inline(never)]
    fn close_batch(&mut self) {
        let sum = self.sum_ns();
        self.batch_end += self.batches.close(sum);
    }

    fn sum_ns(&self) -> u128 {
        (u128::from(self.sum_high) << 64) | u128::from(self.sum_low)
    }

    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    /// The histogram behind the quantiles, and the exact extremes they are clamped
    /// to: what merging summaries of several runs needs.
    pub fn histogram(&self) -> (&LogHistogram<u64>, u64, u64) {
        (&self.hist, self.min_ns, self.max_ns)
    }

    pub fn mean_ms(&self) -> f64 {
        let count = self.count();
        if count == 0 {
            return 0.0;
        }
        self.sum_ns() as f64 / count as f64 * 1e-6
    }

    pub fn max_ms(&self) -> f64 {
        self.max_ns as f64 * 1e-6
    }

    pub fn min_ms(&self) -> f64 {
        if self.count() == 0 {
            0.0
        } else {
            self.min_ns as f64 * 1e-6
        }
    }

    /// The q-quantile (0..=1) in milliseconds; 0 when nothing was recorded.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.count() == 0 {
            return 0.0;
        }
        self.clamped_ms(self.hist.quantile(q))
    }

    /// A quantile's bucket middle, clamped to the exact extremes, in milliseconds.
    fn clamped_ms(&self, v: u64) -> f64 {
        v.clamp(self.min_ns, self.max_ns) as f64 * 1e-6
    }

    /// `quantile_ms` of each of `qs` (in increasing order), in one pass: what a
    /// report's row of p50, p90, p99, p99.9 needs, per endpoint and edge.
    pub fn quantiles_ms<const N: usize>(&self, qs: [f64; N]) -> [f64; N] {
        if self.count() == 0 {
            return [0.0; N];
        }
        self.hist.quantiles(qs).map(|v| self.clamped_ms(v))
    }

    /// `quantile_ms` of each of `qs` (in increasing order), however many, in one pass:
    /// a plotted CDF asks for ~300, and a scan per quantile of a long run's histogram
    /// cost more than recording a thousand samples.
    pub fn quantiles_ms_of(&self, qs: &[f64]) -> Vec<f64> {
        if self.count() == 0 {
            return vec![0.0; qs.len()];
        }
        self.hist
            .quantiles_of(qs)
            .into_iter()
            .map(|v| self.clamped_ms(v))
            .collect()
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
///
/// One integral, from time zero (what time-series buckets take differences of); the
/// measured window's is that minus its value at `measure_from`, taken once as the
/// quantity first moves past it. An update is one multiply-add, and the whole is one
/// 64-byte line.
#[derive(Clone, Debug, Default)]
#[repr(C, align(64))]
pub struct TimeWeighted {
    value: u64,
    since: SimTime,
    measure_from: SimTime,
    max_measured: u64,
    /// value x nanoseconds since time zero, up to `since`.
    area_all: u128,
    /// `area_all` at `measure_from`, once `since` has reached it.
    area_before: u128,
}

impl TimeWeighted {
    pub fn new(measure_from: SimTime) -> Self {
        TimeWeighted {
            measure_from,
            ..Default::default()
        }
    }

    #[inline(always)]
    fn advance(&mut self, now: SimTime) {
        let dt = now.since(self.since).as_nanos();
        if self.since < self.measure_from {
            self.cross(now);
        }
        self.area_all += u128::from(self.value) * u128::from(dt);
        self.since = now;
    }

    /// Before the measured window: once `now` reaches it, the integral up to its start.
    #[cold]
    #[inline(never)]
    fn cross(&mut self, now: SimTime) {
        if now >= self.measure_from {
            let before = self.measure_from.since(self.since).as_nanos();
            self.area_before = self.area_all + u128::from(self.value) * u128::from(before);
        }
    }

    /// value x ns over the measured window, up to `since`.
    fn area_measured(&self) -> u128 {
        if self.since >= self.measure_from {
            self.area_all - self.area_before
        } else {
            0
        }
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
        self.area_measured() as f64 / span as f64
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

    /// The batch means as they were first written: each sample added to an f64 batch
    /// sum as it comes. The summary's batches, cut from its exact running sum, must
    /// give the same interval to the bit.
    fn reference_ci99(samples: &[u64]) -> Option<MeanCi> {
        let (mut size, mut current, mut n, mut sums) = (1u64, 0.0f64, 0u64, Vec::new());
        for &x in samples {
            current += x as f64;
            n += 1;
            if n == size {
                sums.push(current);
                (current, n) = (0.0, 0);
                if sums.len() == MAX_BATCHES {
                    for i in 0..MAX_BATCHES / 2 {
                        sums[i] = sums[2 * i] + sums[2 * i + 1];
                    }
                    sums.truncate(MAX_BATCHES / 2);
                    size *= 2;
                }
            }
        }
        let batches = BatchMeans {
            batch_size: size,
            batch_start: 0,
            sums,
        };
        batches.ci99()
    }

    fn lcg_samples(n: usize, below: u64) -> Vec<u64> {
        let mut x: u64 = 12345;
        (0..n)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (x >> 11) % below
            })
            .collect()
    }

    #[test]
    fn batch_means_of_iid_noise_cover_the_true_mean() {
        // Deterministic LCG noise, uniform on [0, 1 ms): the true mean is 0.5 ms.
        let samples = lcg_samples(100_000, 1_000_000);
        let mut s = Summary::default();
        for &ns in &samples {
            s.record(SimDuration::from_nanos(ns));
        }
        let ci = s.mean_ci99_ms().unwrap();
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
    fn batches_cut_from_the_running_sum_equal_batches_added_up_in_f64() {
        for (n, below) in [
            (19, 1000),
            (20, 1000),
            (64, 7),
            (100_000, 1 << 40),
            (4097, 3),
        ] {
            let samples = lcg_samples(n, below);
            let mut s = Summary::default();
            for &ns in &samples {
                s.record(SimDuration::from_nanos(ns));
            }
            let want = reference_ci99(&samples);
            assert_eq!(s.batches.ci99(), want, "{n} samples below {below}");
            assert_eq!(want.is_some(), n >= 20);
        }
    }

    #[test]
    fn the_sum_carries_past_64_bits() {
        let mut s = Summary::default();
        let big = u64::MAX / 2 + 1;
        for _ in 0..6 {
            s.record(SimDuration::from_nanos(big));
        }
        s.record(SimDuration::from_nanos(3));
        assert_eq!(s.sum_ns(), 6 * u128::from(big) + 3);
        assert_eq!(s.count(), 7);
        assert_eq!(s.mean_ms(), (6 * u128::from(big) + 3) as f64 / 7.0 * 1e-6);
        assert_eq!((s.min_ms(), s.max_ms()), (3e-6, big as f64 * 1e-6));
    }

    #[test]
    fn a_record_touches_one_line_of_the_summary() {
        assert_eq!(std::mem::size_of::<Summary>(), 128);
        assert_eq!(std::mem::align_of::<Summary>(), 64);
        assert_eq!(std::mem::offset_of!(Summary, batch_end), 56);
        assert_eq!(std::mem::size_of::<TimeWeighted>(), 64);
        assert_eq!(std::mem::align_of::<TimeWeighted>(), 64);
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
        let many: Vec<f64> = (0..=300).map(|k| f64::from(k) / 300.0).collect();
        let one_by_one: Vec<f64> = many.iter().map(|&q| s.quantile_ms(q)).collect();
        assert_eq!(s.quantiles_ms_of(&many), one_by_one);
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

    /// A step function with updates before, across and after the measure start
    /// (t = 100): 2 on [0, 40), 5 on [40, 130), 1 on [130, 150), 3 on [150, 200).
    #[test]
    fn time_weighted_mean_of_a_step_function() {
        let t = SimTime::from_nanos;
        let mut tw = TimeWeighted::new(t(100));
        tw.increment(t(0));
        tw.increment(t(0));
        tw.set(t(40), 5);
        assert_eq!((tw.mean(), tw.max()), (0.0, 0));
        for _ in 0..4 {
            tw.decrement(t(130));
        }
        tw.set(t(150), 3);
        // Measured: 5 x 30 + 1 x 20 + 3 x 50 = 320 over 100 ns.
        assert_eq!(tw.mean_until(t(200)), 3.2);
        // The 5 held when the window opened is not a measured update (as before): the
        // largest value set inside it is the 4 of the first decrement at 130.
        assert_eq!(tw.max(), 4);
        assert_eq!(tw.area_all_at(t(200)), 2 * 40 + 5 * 90 + 20 + 3 * 50);
        assert_eq!(tw.area_all_at(t(210)), 2 * 40 + 5 * 90 + 20 + 3 * 60);
        assert_eq!(tw.value(), 3);

        // An update exactly at the start, and none before the window.
        let mut at = TimeWeighted::new(t(100));
        at.set(t(100), 4);
        assert_eq!((at.mean_until(t(110)), at.max()), (4.0, 4));
        let mut from_zero = TimeWeighted::new(t(0));
        from_zero.set(t(10), 6);
        from_zero.flush(t(20));
        assert_eq!((from_zero.mean(), from_zero.max()), (3.0, 6));
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
