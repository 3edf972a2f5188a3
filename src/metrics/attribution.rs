//! Where a workload's time goes: each answered request's latency cut along its critical
//! path into (endpoint x what) parts that add up to the latency exactly, summed per
//! bucket of the workload's latency histogram. "The requests at or above p99" is then
//! the buckets from p99's up, exact at the histogram's resolution (two significant
//! digits), and memory grows with the buckets a run touches, never with its length.

use super::loghist::{LogHistogram, bucket_of, rank};

/// What a part of a request's time was spent on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum What {
    /// Waiting in a replica's queue for a worker (also, in released mode, for a worker
    /// to come back after a call).
    QueueWait,
    /// Holding a worker: `work` and `stream` steps, protocol decode.
    Work,
    /// A request or reply crossing a link (with the protocol's costs on the wire).
    Network,
    /// A retry's backoff.
    Backoff,
    /// Waiting at the caller before an attempt leaves: a pooled connection, a bulkhead
    /// slot, a rate limiter's token.
    Connection,
    /// Waiting on something whose own time is not split further: a broker's publisher
    /// confirm, a callee that was lost (crashed) while the caller still waited.
    WaitingOnCallee,
}

impl What {
    pub const COUNT: usize = 6;
    pub const ALL: [What; What::COUNT] = [
        What::QueueWait,
        What::Work,
        What::Network,
        What::Backoff,
        What::Connection,
        What::WaitingOnCallee,
    ];

    pub fn name(self) -> &'static str {
        match self {
            What::QueueWait => "queue_wait",
            What::Work => "work",
            What::Network => "network",
            What::Backoff => "backoff",
            What::Connection => "connection",
            What::WaitingOnCallee => "waiting_on_callee",
        }
    }
}

/// The index of (endpoint, what) in a bucket's sums.
#[inline(always)]
pub fn part_key(endpoint: usize, what: What) -> u32 {
    (endpoint * What::COUNT + what as usize) as u32
}

/// One request's parts: a short list of ((endpoint x what), nanoseconds), reused from
/// request to request. A key may appear more than once (`push` appends: the path
/// recorder charges each stretch as it ends, and folding adds them all the same).
#[derive(Clone, Default, Debug)]
pub struct Parts {
    items: Vec<(u32, u64)>,
}

impl Parts {
    #[inline]
    pub fn clear(&mut self) {
        self.items.clear();
    }

    /// Adds `ns` to (endpoint, what), keeping one entry per key.
    #[inline]
    pub fn add(&mut self, endpoint: usize, what: What, ns: u64) {
        if ns == 0 {
            return;
        }
        let key = part_key(endpoint, what);
        match self.items.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => *v += ns,
            None => self.items.push((key, ns)),
        }
    }

    /// Appends `ns` (not zero) for `key` (`part_key`).
    #[inline(always)]
    pub fn push(&mut self, key: u32, ns: u64) {
        self.items.push((key, ns));
    }

    /// One entry per key, sorted.
    fn merged(&self) -> Vec<(u32, u64)> {
        let mut v = self.items.clone();
        v.sort_unstable();
        v.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                kept.1 += later.1;
            }
            same
        });
        v
    }

    /// The same parts, whatever the order they were added in.
    pub fn same_as(&self, other: &Parts) -> bool {
        self.merged() == other.merged()
    }
}

/// Every workload's parts, summed per latency bucket.
#[derive(Debug)]
pub struct AttributionSums {
    /// (endpoint x what) parts per row.
    width: usize,
    workloads: Vec<WorkloadSums>,
}

/// One workload's sums: a row per latency bucket that has seen a request, made on first
/// use, all rows in one vector: [requests, ns of part 0, ns of part 1, ...].
#[derive(Debug, Default)]
struct WorkloadSums {
    /// Per latency bucket (indexed like the histogram's): 1 + its row, 0 for none yet.
    row_of: Vec<u32>,
    rows: Vec<u128>,
}

impl AttributionSums {
    pub fn new(workloads: usize, endpoints: usize) -> Self {
        AttributionSums {
            width: endpoints * What::COUNT,
            workloads: (0..workloads).map(|_| WorkloadSums::default()).collect(),
        }
    }

    /// Adds a measured request of `workload` that took `latency_ns`, cut into `parts`.
    /// Inlined into its callers: the call cost a quarter of the fold.
    #[inline(always)]
    pub fn fold(&mut self, workload: usize, latency_ns: u64, parts: &Parts) {
        let stride = self.width + 1;
        let sums = &mut self.workloads[workload];
        let bucket = bucket_of(latency_ns);
        let row = match sums.row_of.get(bucket) {
            Some(&r) if r > 0 => r as usize - 1,
            _ => sums.new_row(bucket, stride),
        };
        let row = &mut sums.rows[row * stride..][..stride];
        row[0] += 1;
        let mut total = 0u64;
        for &(k, v) in &parts.items {
            // Neither can overflow (2^128 ns; a request's parts add up to a u64), and
            // the assert below catches parts that do not add up.
            let slot = &mut row[1 + k as usize];
            *slot = slot.wrapping_add(u128::from(v));
            total = total.wrapping_add(v);
        }
        assert_eq!(total, latency_ns, "a request's parts add up to its latency");
    }

    /// A workload's shares at p99 (its bucket and every one above) and at p50 (its
    /// bucket alone), read against the workload's latency histogram.
    pub fn finish(
        &self,
        workload: usize,
        hist: &LogHistogram<u64>,
        endpoint_names: &[String],
    ) -> WorkloadAttribution {
        let sums = &self.workloads[workload];
        let stride = self.width + 1;
        // (latency bucket, its row), in bucket order.
        let rows = || {
            sums.row_of
                .iter()
                .enumerate()
                .filter(|&(_, &r)| r > 0)
                .map(|(i, &r)| (i, &sums.rows[(r as usize - 1) * stride..][..stride]))
        };
        let counted: u128 = rows().map(|(_, row)| row[0]).sum();
        assert_eq!(
            counted,
            u128::from(hist.len()),
            "every measured answer was attributed"
        );
        let Some(b99) = quantile_bucket(hist, 0.99) else {
            return WorkloadAttribution::default();
        };
        let b50 = quantile_bucket(hist, 0.5).expect("a non-empty histogram");
        let shares = |range: std::ops::RangeInclusive<usize>| {
            let mut ns = vec![0u128; self.width];
            let mut requests = 0;
            for (_, row) in rows().filter(|(i, _)| range.contains(i)) {
                requests += row[0] as u64;
                for (sum, v) in ns.iter_mut().zip(&row[1..]) {
                    *sum += v;
                }
            }
            (requests, shares_of(&ns, requests, endpoint_names))
        };
        let (p99_requests, p99) = shares(b99..=usize::MAX);
        let (p50_requests, p50) = shares(b50..=b50);
        WorkloadAttribution {
            p99,
            p50,
            p99_requests,
            p50_requests,
        }
    }
}

impl WorkloadSums {
    /// A zero row for latency bucket `bucket`; returns its number.
    #[cold]
    #[inline(never)]
    fn new_row(&mut self, bucket: usize, stride: usize) -> usize {
        if self.row_of.len() <= bucket {
            self.row_of.resize(bucket + 1, 0);
        }
        let row = self.rows.len() / stride;
        self.rows.resize(self.rows.len() + stride, 0);
        self.row_of[bucket] = u32::try_from(row + 1).expect("fewer rows than buckets");
        row
    }
}

/// The bucket holding the q-quantile (the ceil(q x n)-th smallest sample).
fn quantile_bucket(hist: &LogHistogram<u64>, q: f64) -> Option<usize> {
    let n = hist.len();
    if n == 0 {
        return None;
    }
    let rank = rank(q, n);
    let mut seen = 0;
    hist.buckets().find_map(|(i, c)| {
        seen += c;
        (seen >= rank).then_some(i)
    })
}

fn shares_of(ns: &[u128], requests: u64, endpoint_names: &[String]) -> Vec<Share> {
    let total: u128 = ns.iter().sum();
    if total == 0 {
        return Vec::new();
    }
    let mut out: Vec<Share> = ns
        .iter()
        .enumerate()
        .filter(|&(_, &v)| v > 0)
        .map(|(k, &v)| Share {
            place: endpoint_names[k / What::COUNT].clone(),
            what: What::ALL[k % What::COUNT],
            ns: v,
            share: v as f64 / total as f64,
            mean_ms: v as f64 / requests as f64 / 1e6,
        })
        .collect();
    // Largest first; ties by name, so the order never depends on anything else.
    out.sort_by(|a, b| {
        b.ns.cmp(&a.ns)
            .then_with(|| a.place.cmp(&b.place))
            .then_with(|| a.what.cmp(&b.what))
    });
    out
}

/// One (endpoint, what) part of a set of requests' time.
#[derive(Clone, Debug, PartialEq)]
pub struct Share {
    /// "service/endpoint".
    pub place: String,
    pub what: What,
    /// Nanoseconds over the set (exact).
    pub ns: u128,
    /// ns / the set's total.
    pub share: f64,
    /// The mean over the set's requests.
    pub mean_ms: f64,
}

/// A workload's attribution at p99 and p50, largest share first.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WorkloadAttribution {
    /// Requests at or above the p99 value's histogram bucket.
    pub p99: Vec<Share>,
    /// Requests in the p50 value's histogram bucket.
    pub p50: Vec<Share>,
    pub p99_requests: u64,
    pub p50_requests: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up_and_sort_by_size_then_name() {
        let names = vec!["a/get".to_owned(), "b/get".to_owned()];
        let mut sums = AttributionSums::new(1, 2);
        let mut hist = LogHistogram::<u64>::default();
        let mut parts = Parts::default();
        for _ in 0..100 {
            parts.clear();
            parts.add(0, What::Work, 60);
            parts.add(1, What::Work, 30);
            parts.add(1, What::Network, 30);
            parts.add(0, What::Work, 0);
            sums.fold(0, 120, &parts);
            hist.record(120);
        }
        let a = sums.finish(0, &hist, &names);
        assert_eq!(a.p99_requests, 100);
        assert_eq!(a.p50_requests, 100);
        let got: Vec<(&str, &str, f64)> = a
            .p99
            .iter()
            .map(|s| (s.place.as_str(), s.what.name(), s.share))
            .collect();
        assert_eq!(
            got,
            vec![
                ("a/get", "work", 0.5),
                ("b/get", "work", 0.25),
                ("b/get", "network", 0.25)
            ]
        );
        assert_eq!(a.p99[0].mean_ms, 60e-6);
    }

    #[test]
    fn p99_takes_the_buckets_from_its_own_up_and_p50_only_its_own() {
        let names = vec!["a/get".to_owned()];
        let mut sums = AttributionSums::new(1, 1);
        let mut hist = LogHistogram::<u64>::default();
        let mut parts = Parts::default();
        for i in 0..1000u64 {
            // 985 fast requests of pure work, 15 slow ones of pure queueing: the 990th
            // smallest, the p99, is a slow one.
            let (what, ns) = if i < 985 {
                (What::Work, 1_000_000)
            } else {
                (What::QueueWait, 9_000_000)
            };
            parts.clear();
            parts.add(0, what, ns);
            sums.fold(0, ns, &parts);
            hist.record(ns);
        }
        let a = sums.finish(0, &hist, &names);
        assert_eq!(a.p99_requests, 15);
        assert_eq!(a.p50_requests, 985);
        assert_eq!(
            (a.p99.len(), a.p99[0].what, a.p99[0].share),
            (1, What::QueueWait, 1.0)
        );
        assert_eq!(a.p99[0].mean_ms, 9.0);
        assert_eq!(
            (a.p50.len(), a.p50[0].what, a.p50[0].mean_ms),
            (1, What::Work, 1.0)
        );
    }

    #[test]
    fn stretches_of_one_part_add_up_however_they_were_charged() {
        let mut pushed = Parts::default();
        pushed.push(part_key(1, What::Work), 30);
        pushed.push(part_key(0, What::QueueWait), 5);
        pushed.push(part_key(1, What::Work), 20);
        let mut added = Parts::default();
        added.add(0, What::QueueWait, 5);
        added.add(1, What::Work, 50);
        assert!(pushed.same_as(&added));
        added.add(1, What::Work, 1);
        assert!(!pushed.same_as(&added));
        let names = vec!["a/get".to_owned(), "b/get".to_owned()];
        let mut sums = AttributionSums::new(1, 2);
        let mut hist = LogHistogram::<u64>::default();
        sums.fold(0, 55, &pushed);
        hist.record(55);
        let a = sums.finish(0, &hist, &names);
        let got: Vec<(&str, &str, u128)> = a
            .p99
            .iter()
            .map(|s| (s.place.as_str(), s.what.name(), s.ns))
            .collect();
        assert_eq!(got, vec![("b/get", "work", 50), ("a/get", "queue_wait", 5)]);
    }

    /// Rows are made in the order latencies first appear (slow before fast here), and
    /// each workload has its own: the shares still go by latency bucket.
    #[test]
    fn rows_made_out_of_order_are_read_by_latency_bucket() {
        let names = vec!["a/get".to_owned(), "b/get".to_owned()];
        let mut sums = AttributionSums::new(2, 2);
        let mut hists = [LogHistogram::<u64>::default(), LogHistogram::default()];
        let mut parts = Parts::default();
        let mut add = |sums: &mut AttributionSums, w: usize, endpoint: usize, ns: u64| {
            parts.clear();
            parts.add(endpoint, What::Network, ns);
            sums.fold(w, ns, &parts);
            hists[w].record(ns);
        };
        // Workload 0: one slow request first, then 98 fast ones: the p99 (the 99th
        // smallest of 99) is the slow one.
        add(&mut sums, 0, 1, 50_000_000);
        for _ in 0..98 {
            add(&mut sums, 0, 0, 2_000_000);
        }
        // Workload 1: only fast ones, on the other endpoint.
        for _ in 0..10 {
            add(&mut sums, 1, 1, 2_000_000);
        }
        let a = sums.finish(0, &hists[0], &names);
        assert_eq!((a.p99_requests, a.p50_requests), (1, 98));
        assert_eq!((a.p99[0].place.as_str(), a.p99[0].mean_ms), ("b/get", 50.0));
        assert_eq!(
            (a.p50[0].place.as_str(), a.p50[0].ns),
            ("a/get", 98 * 2_000_000)
        );
        let b = sums.finish(1, &hists[1], &names);
        assert_eq!((b.p99_requests, b.p99.len()), (10, 1));
        assert_eq!((b.p99[0].place.as_str(), b.p99[0].share), ("b/get", 1.0));
    }

    #[test]
    #[should_panic(expected = "add up to its latency")]
    fn parts_that_do_not_add_up_are_a_bug() {
        let mut sums = AttributionSums::new(1, 1);
        let mut parts = Parts::default();
        parts.add(0, What::Work, 5);
        sums.fold(0, 6, &parts);
    }
}
