//! Statistics across independent runs (seeds): the mean and its 95% confidence
//! interval by Student's t. Seeds are independent replications, so the classical
//! interval applies; with common random numbers, paired differences between two
//! designs are again independent across seeds, and their interval is much narrower.

/// ln Gamma(x) for x > 0, by the Lanczos approximation (g = 7, n = 9): about 15
/// significant digits, far more than a confidence interval needs.
fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    assert!(x > 0.0);
    if x < 0.5 {
        // Reflection keeps the series where it converges.
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = G[0];
    let t = x + 7.5;
    for (i, g) in G.iter().enumerate().skip(1) {
        a += g / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// The regularized incomplete beta function I_x(a, b), by its continued fraction
/// (modified Lentz), using the symmetry I_x(a,b) = 1 - I_(1-x)(b,a) where that
/// converges faster.
fn incomplete_beta(x: f64, a: f64, b: f64) -> f64 {
    assert!((0.0..=1.0).contains(&x));
    if x == 0.0 || x == 1.0 {
        return x;
    }
    let front =
        (ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln()).exp();
    if x > (a + 1.0) / (a + b + 2.0) {
        return 1.0 - incomplete_beta(1.0 - x, b, a);
    }
    const TINY: f64 = 1e-300;
    let (mut c, mut d) = (1.0, 1.0 - (a + b) * x / (a + 1.0));
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut f = d;
    for m in 1..=300 {
        let m = m as f64;
        for numerator in [
            m * (b - m) * x / ((a + 2.0 * m - 1.0) * (a + 2.0 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2.0 * m) * (a + 2.0 * m + 1.0)),
        ] {
            d = 1.0 + numerator * d;
            if d.abs() < TINY {
                d = TINY;
            }
            c = 1.0 + numerator / c;
            if c.abs() < TINY {
                c = TINY;
            }
            d = 1.0 / d;
            f *= c * d;
        }
        if (c * d - 1.0).abs() < 1e-15 {
            break;
        }
    }
    front * f / a
}

/// P(T <= t) for Student's t with `df` degrees of freedom.
fn student_t_cdf(t: f64, df: f64) -> f64 {
    let tail = 0.5 * incomplete_beta(df / (df + t * t), df / 2.0, 0.5);
    if t >= 0.0 { 1.0 - tail } else { tail }
}

/// The two-sided 95% quantile t(0.975, df), by bisection on the distribution
/// function: exact to 1e-12, for any df >= 1 (small seed counts are the common case,
/// where the normal 1.96 would be far too narrow: t(0.975, 2) = 4.30).
pub fn t975(df: u64) -> f64 {
    assert!(df >= 1, "a t quantile needs one degree of freedom at least");
    let df = df as f64;
    let (mut lo, mut hi) = (0.0_f64, 1000.0_f64);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if student_t_cdf(mid, df) < 0.975 {
            lo = mid;
        } else {
            hi = mid;
        }
        if hi - lo < 1e-13 {
            break;
        }
    }
    0.5 * (lo + hi)
}

/// A mean over seeds with its 95% interval (None with fewer than two seeds).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Interval {
    pub mean: f64,
    pub ci95: Option<[f64; 2]>,
    pub n: usize,
}

impl Interval {
    pub fn of(xs: &[f64]) -> Interval {
        let n = xs.len();
        assert!(n > 0, "an interval of no samples");
        let mean = xs.iter().sum::<f64>() / n as f64;
        if n < 2 {
            return Interval {
                mean,
                ci95: None,
                n,
            };
        }
        let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1) as f64;
        let half = t975(n as u64 - 1) * (var / n as f64).sqrt();
        // Identical samples give exactly [mean, mean], not a rounding-noise interval.
        let half = if var == 0.0 { 0.0 } else { half };
        Interval {
            mean,
            ci95: Some([mean - half, mean + half]),
            n,
        }
    }

    pub fn low(&self) -> f64 {
        self.ci95.map_or(self.mean, |c| c[0])
    }

    pub fn high(&self) -> f64 {
        self.ci95.map_or(self.mean, |c| c[1])
    }

    /// The interval excludes zero: a real difference, at the 5% level.
    pub fn excludes_zero(&self) -> bool {
        self.ci95.is_some_and(|[lo, hi]| lo > 0.0 || hi < 0.0)
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "mean": self.mean,
            "ci95": self.ci95,
            "seeds": self.n,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t_quantiles_match_the_tables() {
        for (df, t) in [
            (1, 12.706_204_736),
            (2, 4.302_652_730),
            (3, 3.182_446_305),
            (5, 2.570_581_836),
            (9, 2.262_157_163),
            (19, 2.093_024_054),
            (30, 2.042_272_456),
            (120, 1.979_930_405),
        ] {
            assert!((t975(df) - t).abs() < 1e-6, "df {df}: {} vs {t}", t975(df));
        }
        // Large df tends to the normal quantile.
        assert!((t975(1_000_000) - 1.959_963_985).abs() < 1e-5);
    }

    #[test]
    fn interval_of_known_samples() {
        // mean 3, sample sd sqrt(2.5), n 5: half-width t(4) * sd / sqrt(5).
        let i = Interval::of(&[1.0, 2.0, 3.0, 4.0, 5.0]);
        let half = 2.776_445_105 * (2.5f64 / 5.0).sqrt();
        assert_eq!(i.mean, 3.0);
        let [lo, hi] = i.ci95.unwrap();
        assert!((lo - (3.0 - half)).abs() < 1e-8 && (hi - (3.0 + half)).abs() < 1e-8);
        assert!(i.excludes_zero());
        let same = Interval::of(&[2.5, 2.5, 2.5]);
        assert_eq!(same.ci95, Some([2.5, 2.5]));
        let zero = Interval::of(&[0.0, 0.0]);
        assert!(!zero.excludes_zero());
        assert_eq!(Interval::of(&[7.0]).ci95, None);
    }
}
