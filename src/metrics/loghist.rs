//! A log-linear histogram with the bucket layout of an HDR histogram at two significant
//! digits: values below 256 ns are exact, above that every power of two is cut into 128
//! equal sub-buckets (0.78% wide). Recording is a count increment at an index computed
//! from the value's leading zeros, a few instructions; the `hdrhistogram` crate's
//! generic record path took about 100 (measured with callgrind), and every simulated
//! request records five samples, so this is where a fifth of the hot path went.
//! The `hdrhistogram` crate stays as a dev-dependency: a test checks that both agree.

/// Sub-buckets per power of two above the exact range.
const SUB: u64 = 128;
/// Values below this are counted exactly.
const EXACT: u64 = 2 * SUB;
/// Enough buckets for every u64.
const LEN: usize = (EXACT + (64 - 8) * SUB) as usize;

/// The counts of the buckets from the lowest to the highest one recorded, without a
/// total: the core a histogram and a time-series bucket share (a bucket counts its
/// answers anyway; a second count beside it would cost a record another field).
/// `counts[k]` is bucket `first + k`: the latencies an endpoint sees usually span a few
/// powers of two, so a histogram costs a few hundred bytes to a few KB, not the 58 KB of
/// every bucket (a 400-service chain kept 1,200 of them, and spent a fifth of its run
/// zeroing them). A boxed slice, not a Vec: 24 bytes with `first`, so the histogram and
/// the scalars recorded with it (count, sum, min, max) share one cache line.
#[derive(Clone)]
pub struct Buckets<C> {
    counts: Box<[C]>,
    first: usize,
}

/// A log-linear histogram: the buckets and how many samples they hold.
#[derive(Clone)]
pub struct LogHistogram<C> {
    buckets: Buckets<C>,
    total: u64,
}

impl<C> std::fmt::Debug for LogHistogram<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LogHistogram({} samples)", self.total)
    }
}

/// Count types: u64 for run-long summaries, u32 for time-series buckets.
pub trait Count: Copy + Default {
    fn increment(&mut self);
    fn get(self) -> u64;
}
impl Count for u64 {
    #[inline]
    fn increment(&mut self) {
        *self = self.saturating_add(1);
    }
    fn get(self) -> u64 {
        self
    }
}
impl Count for u32 {
    #[inline]
    fn increment(&mut self) {
        *self = self.saturating_add(1);
    }
    fn get(self) -> u64 {
        u64::from(self)
    }
}

/// The bucket of `v`, without a branch: with `s` = how far v's highest bit lies above
/// bit 7 (0 below 256), the index is 128 s + (v >> s). Below 256 that is v itself;
/// above, each power of two [2^(s+7), 2^(s+8)) maps to the 128 buckets from
/// 128 (s + 1) on. The largest u64 lands in the last bucket (56 x 128 + 255).
#[inline(always)]
fn index(v: u64) -> usize {
    let s = 56u32.saturating_sub(v.leading_zeros());
    (u64::from(s) << 7).wrapping_add(v >> s) as usize
}

/// The bucket a value is counted in (attribution keeps its sums per bucket).
#[inline]
pub fn bucket_of(v: u64) -> usize {
    index(v)
}

/// The range [low, high] of values counted at `i`.
fn bounds(i: usize) -> (u64, u64) {
    let i = i as u64;
    if i < EXACT {
        return (i, i);
    }
    let shift = (i - EXACT) / SUB + 1;
    let sub = SUB + (i - EXACT) % SUB;
    let low = sub << shift;
    (low, low + ((1u64 << shift) - 1))
}

/// Which sample of `total` (from 1) is the q-quantile: the ceil(q x n)-th smallest.
pub fn rank(q: f64, total: u64) -> u64 {
    ((q * total as f64).ceil() as u64).clamp(1, total)
}

/// The middle of bucket `i`: what a quantile in it reports.
fn middle(i: usize) -> u64 {
    let (low, high) = bounds(i);
    low + (high - low) / 2
}

/// Empty: the counts grow to the buckets recorded, so an endpoint, edge or series that
/// sees no traffic costs bytes.
impl<C: Count> Default for Buckets<C> {
    fn default() -> Self {
        Buckets {
            counts: Box::default(),
            first: 0,
        }
    }
}

impl<C: Count> Buckets<C> {
    /// Counts `v`. Below `first` the subtraction wraps to a huge offset: the same one
    /// compare as a checked index covers both ends; growing is rare and kept out of line.
    #[inline(always)]
    pub fn record(&mut self, v: u64) {
        let i = index(v);
        match self.counts.get_mut(i.wrapping_sub(self.first)) {
            Some(c) => c.increment(),
            None => self.grow_to_record(i),
        }
    }

    #[cold]
    #[inline(never)]
    fn grow_to_record(&mut self, i: usize) {
        let k = self.cover(i);
        self.counts[k].increment();
    }

    /// Makes the counts cover bucket `i` and returns its offset. Growing moves the
    /// counts, so it takes at least half the present length more at a time, either
    /// way (a run whose extremes creep bucket by bucket copies O(n) in all, not O(n^2)).
    /// The extra buckets are empty: no quantile or saved bucket sees them.
    fn cover(&mut self, i: usize) -> usize {
        assert!(i < LEN, "bucket {i} out of range");
        let len = self.counts.len();
        if len == 0 {
            self.first = i;
            self.counts = vec![C::default(); 1].into_boxed_slice();
            return 0;
        }
        let (first, end) = if i < self.first {
            (i.min(self.first.saturating_sub(len / 2)), self.first + len)
        } else if i - self.first >= len {
            (self.first, (i + 1).max(self.first + len + len / 2).min(LEN))
        } else {
            return i - self.first;
        };
        let mut counts = vec![C::default(); end - first];
        counts[self.first - first..][..len].copy_from_slice(&self.counts);
        self.counts = counts.into_boxed_slice();
        self.first = first;
        i - first
    }

    /// `quantile` of `total` samples, for each of `qs` (in increasing order), in one
    /// pass over the counts, into `out`.
    fn quantiles_into(&self, total: u64, qs: &[f64], out: &mut [u64]) {
        if total == 0 {
            out.fill(0);
            return;
        }
        assert!(
            qs.is_sorted(),
            "quantiles are asked for in increasing order"
        );
        let mut next = 0;
        let mut wanted = qs.first().map_or(0, |&q| rank(q, total));
        let mut seen = 0;
        for (k, c) in self.counts.iter().enumerate() {
            seen += c.get();
            while next < qs.len() && seen >= wanted {
                out[next] = middle(self.first + k);
                next += 1;
                wanted = qs.get(next).map_or(0, |&q| rank(q, total));
            }
            if next == qs.len() {
                return;
            }
        }
        unreachable!("the counts add up to the total")
    }

    /// The non-empty buckets as (index, count).
    fn non_empty(&self) -> impl Iterator<Item = (usize, u64)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, c)| c.get() > 0)
            .map(|(k, c)| (self.first + k, c.get()))
    }

    /// The q-quantile of `total` samples that all lie in [min, max]: the scan starts at
    /// min's bucket (the ones below are empty), so a sparse time-series bucket costs
    /// little however large its latencies.
    pub fn quantile_within(&self, total: u64, q: f64, min: u64, max: u64) -> u64 {
        if total == 0 {
            return 0;
        }
        let rank = rank(q, total);
        let (lowest, highest) = (index(min), index(max));
        // The same bucket either way (the first whose samples at or below reach `rank`),
        // found from the nearer end: a p99 is a few buckets below the max.
        let found = if rank > total / 2 {
            let above = total - rank;
            let mut seen = 0;
            (lowest..=highest).rev().find(|&i| {
                seen += self.counts[i - self.first].get();
                seen > above
            })
        } else {
            let mut seen = 0;
            (lowest..=highest).find(|&i| {
                seen += self.counts[i - self.first].get();
                seen >= rank
            })
        };
        middle(found.expect("the samples lie in [min, max]"))
    }

    /// Empties buckets whose samples all lie in [min, max] (any, when `total` is 0):
    /// only their buckets are cleared, and the counts keep their range for the next
    /// time-series bucket.
    pub fn reset_within(&mut self, total: u64, min: u64, max: u64) {
        if total > 0 {
            self.counts[index(min) - self.first..=index(max) - self.first].fill(C::default());
        }
    }
}

impl<C: Count> Default for LogHistogram<C> {
    fn default() -> Self {
        LogHistogram {
            buckets: Buckets::default(),
            total: 0,
        }
    }
}

impl<C: Count> LogHistogram<C> {
    #[inline(always)]
    pub fn record(&mut self, v: u64) {
        self.buckets.record(v);
        self.total += 1;
    }

    pub fn len(&self) -> u64 {
        self.total
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// The middle of the bucket holding the q-quantile (the ceil(q x n)-th smallest
    /// sample), so within half a bucket (0.39%) of it.
    pub fn quantile(&self, q: f64) -> u64 {
        self.quantiles([q])[0]
    }

    /// `quantile` of each of `qs` (in increasing order), in one pass over the counts.
    pub fn quantiles<const N: usize>(&self, qs: [f64; N]) -> [u64; N] {
        let mut out = [0; N];
        self.buckets.quantiles_into(self.total, &qs, &mut out);
        out
    }

    /// `quantiles` of as many as `qs` holds (a plotted curve's hundreds), one pass.
    pub fn quantiles_of(&self, qs: &[f64]) -> Vec<u64> {
        let mut out = vec![0; qs.len()];
        self.buckets.quantiles_into(self.total, qs, &mut out);
        out
    }

    /// The non-empty buckets as (index, count): a histogram saved to be merged later
    /// (sweep shards), exactly.
    pub fn buckets(&self) -> impl Iterator<Item = (usize, u64)> + '_ {
        self.buckets.non_empty()
    }

    /// `quantile(q)` of a histogram whose samples all lie in [min, max], scanning only
    /// their buckets.
    pub fn quantile_within(&self, q: f64, min: u64, max: u64) -> u64 {
        self.buckets.quantile_within(self.total, q, min, max)
    }

    /// `reset` of a histogram whose samples all lie in [min, max]: only their buckets
    /// are cleared, and the counts keep their range.
    pub fn reset_within(&mut self, min: u64, max: u64) {
        self.buckets.reset_within(self.total, min, max);
        self.total = 0;
    }

    pub fn reset(&mut self) {
        if self.total > 0 {
            self.buckets.counts.fill(C::default());
            self.total = 0;
        }
    }
}

impl LogHistogram<u64> {
    /// Adds `count` samples to bucket `index` (a saved bucket read back, or another
    /// histogram's merged in); false when there is no such bucket.
    pub fn add_bucket(&mut self, index: usize, count: u64) -> bool {
        if index >= LEN {
            return false;
        }
        let k = self.buckets.cover(index);
        let slot = &mut self.buckets.counts[k];
        *slot = slot.saturating_add(count);
        self.total = self.total.saturating_add(count);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_tile_the_whole_range_without_gaps() {
        let mut next = 0u64;
        for i in 0..LEN {
            let (low, high) = bounds(i);
            assert_eq!(low, next, "bucket {i} starts where the last ended");
            assert_eq!(index(low), i);
            assert_eq!(index(high), i);
            // Two significant digits: no bucket is wider than 1/128 of its values.
            assert!(
                (high - low) as f64 <= low as f64 / 128.0 + 1.0,
                "bucket {i}"
            );
            next = high.wrapping_add(1);
        }
        assert_eq!(next, 0, "the last bucket ends at u64::MAX");
    }

    /// The bucket index as first written (a branch, then the shift from the highest
    /// bit): the branch-free one must agree everywhere, around every power of two.
    #[test]
    fn the_branch_free_index_agrees_with_the_first_one() {
        fn first(v: u64) -> usize {
            if v < EXACT {
                return v as usize;
            }
            let msb = 63 - u64::from(v.leading_zeros());
            let shift = msb - 7;
            (EXACT + (shift - 1) * SUB + ((v >> shift) - SUB)) as usize
        }
        for bit in 0..64 {
            let p = 1u64 << bit;
            for v in [
                p - 1,
                p,
                p + 1,
                p | (p >> 1),
                p | (p - 1),
                p.wrapping_mul(3),
            ] {
                assert_eq!(index(v), first(v), "{v}");
            }
        }
        let mut x: u64 = 7;
        for _ in 0..100_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let v = x >> (x % 64);
            assert_eq!(index(v), first(v), "{v}");
        }
        assert_eq!(index(u64::MAX), LEN - 1);
    }

    #[test]
    fn growing_up_bucket_by_bucket_keeps_every_count() {
        let mut h: LogHistogram<u32> = LogHistogram::default();
        let samples: Vec<u64> = (0..3000).map(|k| 1_000 + k * 97).collect();
        for &v in &samples {
            h.record(v);
        }
        for q in [0.0, 0.1, 0.5, 0.99, 1.0] {
            assert_eq!(h.quantile(q), reference(&samples, q), "q{q}");
        }
        assert_eq!(h.buckets().map(|b| b.1).sum::<u64>(), 3000);
        // Growth by half the length: about log(n) copies, and at most half again as
        // many buckets as were needed.
        let needed = index(*samples.last().unwrap()) - index(samples[0]) + 1;
        assert!(h.buckets.counts.len() <= needed + needed / 2 + 1);
    }

    /// The quantile by brute force: sort the samples, take the ceil(q x n)-th, report
    /// the middle of its bucket.
    fn reference(samples: &[u64], q: f64) -> u64 {
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        let (low, high) = bounds(index(sorted[rank - 1]));
        low + (high - low) / 2
    }

    #[test]
    fn counts_cover_only_the_buckets_between_the_extremes_in_any_order() {
        // The first sample in the middle, then lower and higher ones, then a slow
        // creep down one bucket at a time (the worst case for growing down).
        let mut samples = vec![5_000_000, 4_000_000, 9_000_000, 300, 7, 70_000_000];
        samples.extend((0..200).map(|k| 600_000_000 - k * 2_000_000));
        let mut h: LogHistogram<u64> = LogHistogram::default();
        for &v in &samples {
            h.record(v);
        }
        for q in [0.0, 0.001, 0.25, 0.5, 0.9, 0.99, 0.999, 1.0] {
            assert_eq!(h.quantile(q), reference(&samples, q), "q{q}");
        }
        let qs = [0.5, 0.9, 0.99, 0.999];
        assert_eq!(h.quantiles(qs), qs.map(|q| reference(&samples, q)));
        let counted: Vec<(usize, u64)> = h.buckets().collect();
        assert_eq!(
            counted.iter().map(|b| b.1).sum::<u64>(),
            samples.len() as u64
        );
        assert_eq!(counted.first().unwrap().0, index(7));
        assert_eq!(counted.last().unwrap().0, index(600_000_000));

        // Samples within a few percent of 400 ms: a handful of buckets, not the ~3,000
        // from zero up.
        let mut narrow: LogHistogram<u32> = LogHistogram::default();
        for k in 0..1000u64 {
            narrow.record(420_000_000 - k * 20_000);
        }
        assert!(
            narrow.buckets.counts.len() <= 16,
            "{} buckets",
            narrow.buckets.counts.len()
        );
        assert_eq!(narrow.buckets().next().unwrap().0, index(400_020_000));
    }

    #[test]
    fn merged_buckets_grow_the_range_both_ways() {
        let mut h: LogHistogram<u64> = LogHistogram::default();
        assert!(h.add_bucket(index(1_000_000), 3));
        assert!(h.add_bucket(index(10), 1));
        assert!(h.add_bucket(index(u64::MAX), 1));
        assert!(!h.add_bucket(LEN, 1));
        let got: Vec<(usize, u64)> = h.buckets().collect();
        assert_eq!(got, [(10, 1), (index(1_000_000), 3), (LEN - 1, 1)]);
        assert_eq!(h.quantile(0.5), reference(&[1_000_000], 0.5));
    }

    #[test]
    fn within_min_and_max_is_the_same_as_everywhere() {
        let mut h: LogHistogram<u32> = LogHistogram::default();
        for v in [300, 5_000, 5_001, 70_000, 9_000_000] {
            h.record(v);
        }
        for q in [0.0, 0.2, 0.5, 0.99, 1.0] {
            assert_eq!(h.quantile_within(q, 300, 9_000_000), h.quantile(q));
        }
        h.reset_within(300, 9_000_000);
        assert!(h.is_empty());
        assert_eq!(h.buckets().count(), 0);
    }

    /// quantile_within scans from the nearer end: every rank from either end gives the
    /// bucket the full scan gives, with empty buckets and ties among the samples.
    #[test]
    fn within_finds_every_rank_from_either_end() {
        let mut h: LogHistogram<u32> = LogHistogram::default();
        let samples = [
            700, 700, 700, 1_000, 40_000, 40_001, 40_001, 3_000_000, 3_000_000,
        ];
        for v in samples {
            h.record(v);
        }
        for k in 0..=1000 {
            let q = f64::from(k) / 1000.0;
            assert_eq!(
                h.quantile_within(q, 700, 3_000_000),
                reference(&samples, q),
                "q = {q}"
            );
        }
    }

    #[test]
    fn agrees_with_the_hdrhistogram_crate() {
        // The same samples in both: quantiles within one bucket of each other.
        let mut ours: LogHistogram<u64> = LogHistogram::default();
        let mut hdr = hdrhistogram::Histogram::<u64>::new_with_bounds(1, u64::MAX / 4, 2).unwrap();
        let mut x: u64 = 1;
        for _ in 0..100_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let v = 1_000 + (x >> 40); // 1 us .. 16 ms, spread over many powers of two
            ours.record(v);
            hdr.record(v).unwrap();
        }
        for q in [0.01, 0.25, 0.5, 0.9, 0.99, 0.999] {
            let a = ours.quantile(q) as f64;
            let b = hdr.median_equivalent(hdr.value_at_quantile(q)) as f64;
            assert!((a / b - 1.0).abs() < 0.008, "q{q}: {a} vs {b}");
        }
    }
}
