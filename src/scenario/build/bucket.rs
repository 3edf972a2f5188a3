//! The time-series bucket when `[report] bucket` is not written: from the run's end
//! when `duration` gives it, else from the end the workloads' rates predict for
//! `requests` (`metrics::series::readable_bucket` turns that end into a bucket).

use crate::engine::SimDuration;
use crate::metrics::series::readable_bucket;
use crate::model::spec::{Load, Spec};

pub(super) fn default_bucket(spec: &Spec) -> SimDuration {
    let by_requests = spec.max_requests.and_then(|n| requests_end(spec, n));
    let end = match (spec.duration, by_requests) {
        (Some(d), Some(r)) => Some(d.min(r)),
        (d, r) => d.or(r),
    };
    readable_bucket(end)
}

/// When the workloads have sent `requests` requests, at their mean rates: open loads
/// by their schedules, closed loads at `users / mean think time` (an upper bound on
/// their rate: response times slow them down, so the run may last longer). None when
/// no rate is known or the rates end before `requests` are sent.
fn requests_end(spec: &Spec, requests: u64) -> Option<SimDuration> {
    let mut closed_rate = 0.0;
    let mut starts: Vec<f64> = vec![0.0];
    for w in &spec.workloads {
        match &w.load {
            Load::Open { segments, .. } => {
                starts.extend(segments.iter().map(|s| s.start.as_nanos() as f64 * 1e-9))
            }
            Load::Closed { users, think } => {
                if let Some(m) = think.mean_s().filter(|&m| m > 0.0) {
                    closed_rate += f64::from(*users) / m;
                }
            }
        }
    }
    starts.sort_by(f64::total_cmp);
    starts.dedup();
    // The total rate from `at` on, until the next start of a segment.
    let rate_at = |at: f64| -> f64 {
        let open: f64 = spec
            .workloads
            .iter()
            .filter_map(|w| match &w.load {
                Load::Open { segments, .. } => segments
                    .iter()
                    .rev()
                    .find(|s| s.start.as_nanos() as f64 * 1e-9 <= at)
                    .map(|s| s.rate_per_s),
                Load::Closed { .. } => None,
            })
            .sum();
        open + closed_rate
    };
    let mut left = requests as f64;
    for (k, &from) in starts.iter().enumerate() {
        let rate = rate_at(from);
        let until = starts.get(k + 1).copied();
        let sent = until.map_or(f64::INFINITY, |u| rate * (u - from));
        if rate > 0.0 && sent >= left {
            let end_s = from + left / rate;
            return (end_s.is_finite() && end_s < 5e8).then(|| SimDuration::from_secs_f64(end_s));
        }
        left -= sent;
    }
    None
}
