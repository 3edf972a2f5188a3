//! Distributions of durations (work, think time, network latency), sampled in
//! nanoseconds from an entity's own stream.

use crate::engine::{SimDuration, Stream};
use rand::RngExt;
use rand_distr::{Distribution, Exp1, StandardNormal};

/// z(0.99): the lognormal given by median and p99 has sigma = ln(p99/median) / z.
pub const Z_99: f64 = 2.326_347_874_040_841;

#[derive(Clone, Debug, PartialEq)]
pub enum Dist {
    Constant(SimDuration),
    /// Uniform on [min, max], nanosecond grain.
    Uniform {
        min: SimDuration,
        max: SimDuration,
    },
    Exponential {
        mean_ns: f64,
    },
    /// Normal truncated at zero: negative draws are redrawn, not clamped.
    Normal {
        mean_ns: f64,
        stddev_ns: f64,
    },
    /// exp(N(mu, sigma)) seconds.
    LogNormal {
        mu: f64,
        sigma: f64,
    },
    /// scale * U^(-1/shape): the classic heavy tail; infinite mean when shape <= 1.
    Pareto {
        scale_ns: f64,
        shape: f64,
    },
    /// One of the samples, each equally likely.
    Samples(Vec<SimDuration>),
    /// A weighted histogram: a bin is chosen by weight, then a value uniform inside it.
    Bins {
        cumulative: Vec<f64>,
        bins: Vec<(SimDuration, SimDuration)>,
    },
}

impl Dist {
    pub fn lognormal_from_median_p99(median: SimDuration, p99: SimDuration) -> Dist {
        let mu = median.as_secs_f64().ln();
        let sigma = (p99.as_secs_f64().ln() - mu) / Z_99;
        Dist::LogNormal { mu, sigma }
    }

    pub fn sample(&self, rng: &mut Stream) -> SimDuration {
        match self {
            Dist::Constant(d) => *d,
            Dist::Uniform { min, max } => {
                SimDuration::from_nanos(rng.random_range(min.as_nanos()..=max.as_nanos()))
            }
            Dist::Exponential { mean_ns } => {
                let x: f64 = Exp1.sample(rng);
                SimDuration::from_secs_f64(x * mean_ns * 1e-9)
            }
            Dist::Normal { mean_ns, stddev_ns } => {
                // Validation guarantees mean > 0, so each draw is accepted with p > 1/2;
                // 200 rejections in a row has probability below 2^-200.
                for _ in 0..200 {
                    let z: f64 = StandardNormal.sample(rng);
                    let x = mean_ns + stddev_ns * z;
                    if x >= 0.0 {
                        return SimDuration::from_secs_f64(x * 1e-9);
                    }
                }
                SimDuration::ZERO
            }
            Dist::LogNormal { mu, sigma } => {
                let z: f64 = StandardNormal.sample(rng);
                SimDuration::from_secs_f64((mu + sigma * z).exp())
            }
            Dist::Pareto { scale_ns, shape } => {
                // 1 - U lies in (0, 1], so the power is finite.
                let u = 1.0 - rng.random::<f64>();
                SimDuration::from_secs_f64(scale_ns * u.powf(-1.0 / shape) * 1e-9)
            }
            Dist::Samples(v) => v[rng.random_range(0..v.len())],
            Dist::Bins { cumulative, bins } => {
                let total = *cumulative.last().expect("validated non-empty");
                let x = rng.random::<f64>() * total;
                let i = cumulative.partition_point(|&c| c <= x).min(bins.len() - 1);
                let (lo, hi) = bins[i];
                SimDuration::from_nanos(rng.random_range(lo.as_nanos()..=hi.as_nanos()))
            }
        }
    }

    /// The mean in seconds, when it is finite.
    pub fn mean_s(&self) -> Option<f64> {
        Some(match self {
            Dist::Constant(d) => d.as_secs_f64(),
            Dist::Uniform { min, max } => (min.as_secs_f64() + max.as_secs_f64()) / 2.0,
            Dist::Exponential { mean_ns } => mean_ns * 1e-9,
            // Truncation at 0 shifts the mean up; only exact when the mass below 0 is nil.
            Dist::Normal { .. } => return None,
            Dist::LogNormal { mu, sigma } => (mu + sigma * sigma / 2.0).exp(),
            Dist::Pareto { scale_ns, shape } => {
                if *shape <= 1.0 {
                    return None;
                }
                scale_ns * 1e-9 * shape / (shape - 1.0)
            }
            Dist::Samples(v) => v.iter().map(|d| d.as_secs_f64()).sum::<f64>() / v.len() as f64,
            Dist::Bins { cumulative, bins } => {
                let total = cumulative.last()?;
                let mut prev = 0.0;
                let mut m = 0.0;
                for (c, (lo, hi)) in cumulative.iter().zip(bins) {
                    m += (c - prev) / total * (lo.as_secs_f64() + hi.as_secs_f64()) / 2.0;
                    prev = *c;
                }
                m
            }
        })
    }

    pub fn is_constant_zero(&self) -> bool {
        matches!(self, Dist::Constant(d) if d.is_zero())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::stream;

    fn mean_of(d: &Dist, n: usize) -> f64 {
        let mut rng = stream(1, "dist-test");
        (0..n)
            .map(|_| d.sample(&mut rng).as_secs_f64())
            .sum::<f64>()
            / n as f64
    }

    #[test]
    fn sample_means_match_the_analytical_means() {
        let ms = SimDuration::from_millis;
        let cases = [
            Dist::Uniform {
                min: ms(10),
                max: ms(30),
            },
            Dist::Exponential { mean_ns: 50e6 },
            Dist::lognormal_from_median_p99(ms(100), ms(400)),
            Dist::Pareto {
                scale_ns: 10e6,
                shape: 3.0,
            },
            Dist::Samples(vec![ms(1), ms(2), ms(6)]),
            Dist::Bins {
                cumulative: vec![1.0, 4.0],
                bins: vec![(ms(0), ms(10)), (ms(10), ms(20))],
            },
        ];
        for d in cases {
            let want = d.mean_s().unwrap();
            let got = mean_of(&d, 200_000);
            assert!((got - want).abs() / want < 0.02, "{d:?}: {got} vs {want}");
        }
    }

    #[test]
    fn lognormal_median_and_p99_come_out_where_asked() {
        let d = Dist::lognormal_from_median_p99(
            SimDuration::from_millis(800),
            SimDuration::from_secs(2),
        );
        let mut rng = stream(3, "lognormal");
        let mut v: Vec<u64> = (0..100_000)
            .map(|_| d.sample(&mut rng).as_nanos())
            .collect();
        v.sort_unstable();
        let p50 = v[50_000] as f64 * 1e-6;
        let p99 = v[99_000] as f64 * 1e-6;
        assert!((p50 - 800.0).abs() < 16.0, "p50 {p50}");
        assert!((p99 - 2000.0).abs() < 80.0, "p99 {p99}");
    }

    #[test]
    fn truncated_normal_is_never_negative() {
        let d = Dist::Normal {
            mean_ns: 1e6,
            stddev_ns: 5e6,
        };
        let mut rng = stream(4, "normal");
        assert!((0..10_000).all(|_| d.sample(&mut rng).as_nanos() < 100_000_000));
    }
}
