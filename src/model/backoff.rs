//! Retry backoff and jitter: how long a client waits before retry number n, in the
//! ways the libraries meshsim models do it (SEMANTICS.md section 2, and "Where libraries
//! differ" item 4).
//!
//! The arithmetic runs in f64 nanoseconds and every result is a `SimDuration`, so stored
//! time stays integer. Only IEEE basic operations are used (no `powf`/`powi`, whose
//! results may differ between platforms), so a seed gives the same waits everywhere.

use crate::engine::{SimDuration, Stream};
use rand::RngExt;

/// "No cap": the longest duration the clock can hold (about 584 years).
pub const UNCAPPED: SimDuration = SimDuration::from_nanos(u64::MAX);

/// How the wait grows with the retry number, before the cap and jitter.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum BackoffKind {
    /// `base` every time (Polly's default, BullMQ `fixed`).
    Fixed,
    /// `base * retry`.
    Linear,
    /// `base * multiplier^(retry - 1)`: the first retry waits `base`.
    Exponential,
}

/// How the capped wait `d` is randomised (AWS "Exponential Backoff and Jitter" names).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Jitter {
    /// Exactly `d` (Polly, BullMQ by default).
    None,
    /// U(0, d): AWS "full jitter", Envoy, the older gRPC spec.
    Full,
    /// d/2 + U(0, d/2): AWS "equal jitter".
    Equal,
    /// min(cap, U(base, previous * 3)), previous starting at base: AWS "decorrelated
    /// jitter". It has its own growth, so `kind` and `multiplier` are ignored.
    Decorrelated,
    /// d * (1 + U(low, high)): axios-retry (0, 0.2), gRPC A6 (-0.2, 0.2),
    /// resilience4j (-0.5, 0.5), BullMQ downward only (-x, 0).
    Proportional { low: f64, high: f64 },
}

/// A retry backoff policy. Validity (finite non-negative multiplier, -1 <= low <= high)
/// is asserted on every use rather than trusted.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    pub kind: BackoffKind,
    pub base: SimDuration,
    pub multiplier: f64,
    pub cap: SimDuration,
    pub jitter: Jitter,
}

impl Backoff {
    /// The wait before retry number `retry` (1 = the first retry, after the original
    /// attempt failed). `previous` is the wait used before the previous retry (ignored
    /// except by Decorrelated; pass `SimDuration::ZERO` for the first retry).
    ///
    /// Jitter applies after the cap, so Proportional may exceed the cap, as axios-retry
    /// and gRPC do. Never negative.
    pub fn delay(&self, retry: u32, previous: SimDuration, rng: &mut Stream) -> SimDuration {
        self.check(retry);
        let wait = match self.jitter {
            Jitter::None => self.nominal(retry),
            Jitter::Full => {
                // Integer nanoseconds: the draw cannot round outside [0, d].
                let d = self.nominal(retry).as_nanos();
                SimDuration::from_nanos(rng.random_range(0..=d))
            }
            Jitter::Equal => {
                // [d - floor(d/2), d] is AWS's d/2 + U(0, d/2) without losing the odd ns.
                let d = self.nominal(retry).as_nanos();
                SimDuration::from_nanos(rng.random_range(d - d / 2..=d))
            }
            Jitter::Decorrelated => {
                let (low, high) = self.decorrelated_range(previous);
                SimDuration::from_nanos(rng.random_range(low..=high)).min(self.cap)
            }
            Jitter::Proportional { low, high } => {
                let u: f64 = rng.random();
                let (f_low, f_high) = (1.0 + low, 1.0 + high);
                // Clamped so that rounding in the sum can never step outside `bounds`.
                let f = (f_low + (f_high - f_low) * u).clamp(f_low, f_high);
                scale(self.nominal(retry), f)
            }
        };
        let (low, high) = self.bounds(retry, previous);
        assert!(
            low <= wait && wait <= high,
            "backoff {wait:?} outside [{low:?}, {high:?}] for {self:?}"
        );
        wait
    }

    /// The smallest and largest value `delay` can return for this retry (for
    /// Decorrelated, given `previous`).
    pub fn bounds(&self, retry: u32, previous: SimDuration) -> (SimDuration, SimDuration) {
        self.check(retry);
        let d = self.nominal(retry);
        let (low, high) = match self.jitter {
            Jitter::None => (d, d),
            Jitter::Full => (SimDuration::ZERO, d),
            Jitter::Equal => (SimDuration::from_nanos(d.as_nanos() - d.as_nanos() / 2), d),
            Jitter::Decorrelated => {
                let (low, high) = self.decorrelated_range(previous);
                (
                    SimDuration::from_nanos(low).min(self.cap),
                    SimDuration::from_nanos(high).min(self.cap),
                )
            }
            Jitter::Proportional { low, high } => (scale(d, 1.0 + low), scale(d, 1.0 + high)),
        };
        assert!(low <= high, "empty backoff bounds for {self:?}");
        (low, high)
    }

    /// The wait before jitter: Fixed = base; Linear = base * retry; Exponential =
    /// base * multiplier^(retry-1); then capped at `cap`. Saturates, never panics on a
    /// large `retry`.
    pub fn nominal(&self, retry: u32) -> SimDuration {
        self.check(retry);
        let base = self.base.as_nanos();
        let cap = self.cap.as_nanos();
        let ns = match self.kind {
            BackoffKind::Fixed => base,
            BackoffKind::Linear => base.saturating_mul(u64::from(retry)),
            // 0 * inf would be NaN once the power overflows; zero stays zero.
            BackoffKind::Exponential if base == 0 => 0,
            BackoffKind::Exponential => {
                // Finite or +inf: base is finite and non-zero, the power is finite, 0 or inf.
                let x = base as f64 * pow(self.multiplier, retry - 1);
                // Compare before converting: `cap as f64` may round up past u64::MAX.
                if x >= cap as f64 {
                    cap
                } else {
                    x.round() as u64
                }
            }
        };
        SimDuration::from_nanos(ns.min(cap))
    }

    /// axios-retry `exponentialDelay`: d = 2^n * 100 ms with n from 1, plus 0..20% of d;
    /// no cap. The first retry waits 200-240 ms.
    pub fn axios_retry() -> Self {
        Backoff {
            kind: BackoffKind::Exponential,
            base: SimDuration::from_millis(200),
            multiplier: 2.0,
            cap: UNCAPPED,
            jitter: Jitter::Proportional {
                low: 0.0,
                high: 0.2,
            },
        }
    }

    /// gRPC A6 example values: initial 100 ms, x2, max 1 s, then U(0.8, 1.2) of that
    /// (applied after the max, so a wait can reach 1.2 s).
    pub fn grpc() -> Self {
        Backoff {
            kind: BackoffKind::Exponential,
            base: SimDuration::from_millis(100),
            multiplier: 2.0,
            cap: SimDuration::from_secs(1),
            jitter: Jitter::Proportional {
                low: -0.2,
                high: 0.2,
            },
        }
    }

    /// Envoy: full jitter over 25 ms doubling up to 10x base (250 ms), as in
    /// `JitteredExponentialBackOffStrategy`: U(0, 25), U(0, 50), U(0, 100), U(0, 200),
    /// then U(0, 250).
    pub fn envoy() -> Self {
        Backoff {
            kind: BackoffKind::Exponential,
            base: SimDuration::from_millis(25),
            multiplier: 2.0,
            cap: SimDuration::from_millis(250),
            jitter: Jitter::Full,
        }
    }

    /// resilience4j exponential random backoff: initial 500 ms x1.5, randomization
    /// factor 0.5 (+-50%), no cap. Its extra "+1 ms" in `randomize` is not modelled.
    pub fn resilience4j() -> Self {
        Backoff {
            kind: BackoffKind::Exponential,
            base: SimDuration::from_millis(500),
            multiplier: 1.5,
            cap: UNCAPPED,
            jitter: Jitter::Proportional {
                low: -0.5,
                high: 0.5,
            },
        }
    }

    /// Polly v8: a constant 2 s, no jitter.
    pub fn polly() -> Self {
        Backoff {
            kind: BackoffKind::Fixed,
            base: SimDuration::from_secs(2),
            multiplier: 1.0,
            cap: UNCAPPED,
            jitter: Jitter::None,
        }
    }

    /// BullMQ `exponential`: round(2^(attemptsMade-1) * delay), so the first retry waits
    /// `delay`; no jitter by default (BullMQ's jitter only goes down: set
    /// `Proportional { low: -x, high: 0.0 }`).
    pub fn bullmq(delay: SimDuration) -> Self {
        Backoff {
            kind: BackoffKind::Exponential,
            base: delay,
            multiplier: 2.0,
            cap: UNCAPPED,
            jitter: Jitter::None,
        }
    }

    /// AWS full jitter: U(0, min(cap, base * 2^(retry-1))).
    pub fn aws_full(base: SimDuration, cap: SimDuration) -> Self {
        Self::aws(base, cap, Jitter::Full)
    }

    /// AWS equal jitter: d/2 + U(0, d/2) with d = min(cap, base * 2^(retry-1)).
    pub fn aws_equal(base: SimDuration, cap: SimDuration) -> Self {
        Self::aws(base, cap, Jitter::Equal)
    }

    /// AWS decorrelated jitter: min(cap, U(base, previous * 3)), previous starting at base.
    pub fn aws_decorrelated(base: SimDuration, cap: SimDuration) -> Self {
        Self::aws(base, cap, Jitter::Decorrelated)
    }

    fn aws(base: SimDuration, cap: SimDuration, jitter: Jitter) -> Self {
        Backoff {
            kind: BackoffKind::Exponential,
            base,
            multiplier: 2.0,
            cap,
            jitter,
        }
    }

    /// The uncapped range of a decorrelated draw, in nanoseconds.
    fn decorrelated_range(&self, previous: SimDuration) -> (u64, u64) {
        let base = self.base.as_nanos();
        // The first retry has no previous sleep: AWS starts the chain at base.
        let previous = if previous.is_zero() {
            base
        } else {
            previous.as_nanos()
        };
        // A previous sleep below base/3 (a caller mixing policies) would make an empty
        // range; collapse it onto base instead of panicking.
        (base, previous.saturating_mul(3).max(base))
    }

    /// A malformed policy is a bug in whoever built it (validation belongs to the spec).
    fn check(&self, retry: u32) {
        assert!(retry >= 1, "retry numbers start at 1, got {retry}");
        assert!(
            self.multiplier.is_finite() && self.multiplier >= 0.0,
            "backoff multiplier must be finite and >= 0: {self:?}"
        );
        if let Jitter::Proportional { low, high } = self.jitter {
            // low >= -1 keeps d * (1 + low) non-negative; finite keeps NaN out.
            assert!(
                low.is_finite() && high.is_finite() && -1.0 <= low && low <= high,
                "proportional jitter needs -1 <= low <= high, finite: {self:?}"
            );
        }
    }
}

/// `x^n` by squaring: O(log n) and only correctly rounded multiplications, so the
/// result is the same on every platform. Overflows to +inf, underflows to 0, never NaN
/// for finite non-negative `x`.
fn pow(x: f64, mut n: u32) -> f64 {
    let mut result = 1.0;
    let mut square = x;
    while n > 0 {
        if n & 1 == 1 {
            result *= square;
        }
        n >>= 1;
        if n > 0 {
            square *= square;
        }
    }
    result
}

/// `d * factor` rounded to the nanosecond, saturating; monotone in `factor`, which is
/// what keeps `delay` inside `bounds`. `factor` is >= 0 and finite (checked).
fn scale(d: SimDuration, factor: f64) -> SimDuration {
    let x = d.as_nanos() as f64 * factor;
    // `as` saturates at u64::MAX, and x is finite and non-negative.
    SimDuration::from_nanos(x.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::stream;

    fn ms(m: u64) -> SimDuration {
        SimDuration::from_millis(m)
    }

    fn nominals(b: &Backoff, n: u32) -> Vec<SimDuration> {
        (1..=n).map(|r| b.nominal(r)).collect()
    }

    fn ms_list(v: &[u64]) -> Vec<SimDuration> {
        v.iter().map(|&m| ms(m)).collect()
    }

    #[test]
    fn pre_jitter_sequences_are_exact() {
        let expo = Backoff {
            kind: BackoffKind::Exponential,
            base: ms(100),
            multiplier: 2.0,
            cap: ms(1000),
            jitter: Jitter::None,
        };
        assert_eq!(
            nominals(&expo, 7),
            ms_list(&[100, 200, 400, 800, 1000, 1000, 1000])
        );
        let linear = Backoff {
            kind: BackoffKind::Linear,
            cap: ms(350),
            ..expo
        };
        assert_eq!(nominals(&linear, 5), ms_list(&[100, 200, 300, 350, 350]));
        let fixed = Backoff {
            kind: BackoffKind::Fixed,
            ..expo
        };
        assert_eq!(nominals(&fixed, 3), ms_list(&[100, 100, 100]));
        // A fractional multiplier is exact where the product is a whole number of ns.
        assert_eq!(
            nominals(&Backoff::resilience4j(), 3),
            vec![ms(500), ms(750), SimDuration::from_micros(1_125_000)]
        );
        // BullMQ: round(2^(attemptsMade-1) * delay), the first retry waits `delay`.
        assert_eq!(
            nominals(&Backoff::bullmq(SimDuration::from_secs(1)), 4),
            ms_list(&[1000, 2000, 4000, 8000])
        );
        // With no jitter the wait is the nominal one, draws or not.
        let mut rng = stream(42, "backoff-test");
        assert_eq!(
            Backoff::polly().delay(9, SimDuration::ZERO, &mut rng),
            ms(2000)
        );
    }

    /// 10,000 draws stay inside `bounds` and their mean is the analytical one.
    fn check_draws(b: &Backoff, retry: u32, previous: SimDuration, mean_expected: f64) {
        let (low, high) = b.bounds(retry, previous);
        let mut rng = stream(7, "backoff-mean");
        let n = 10_000;
        let mut sum = 0.0;
        for _ in 0..n {
            let d = b.delay(retry, previous, &mut rng);
            assert!(low <= d && d <= high, "{d:?} outside [{low:?}, {high:?}]");
            sum += d.as_nanos() as f64;
        }
        let mean = sum / n as f64;
        // The widest jitter here has sd <= 0.58 d, so the sample mean's sd is <= 0.006 d:
        // a 2% tolerance is more than 3 standard errors.
        let width = (high.as_nanos() - low.as_nanos()) as f64;
        assert!(
            (mean - mean_expected).abs() <= 0.02 * width.max(1.0),
            "{b:?}: mean {mean} ns, expected {mean_expected} ns"
        );
    }

    #[test]
    fn every_jitter_kind_stays_in_bounds_with_the_analytical_mean() {
        let base = Backoff {
            kind: BackoffKind::Exponential,
            base: ms(100),
            multiplier: 2.0,
            cap: ms(10_000),
            jitter: Jitter::None,
        };
        let d = 400e6; // retry 3: 100 ms * 2^2
        let zero = SimDuration::ZERO;
        check_draws(&base, 3, zero, d);
        let full = Backoff {
            jitter: Jitter::Full,
            ..base
        };
        check_draws(&full, 3, zero, d / 2.0);
        let equal = Backoff {
            jitter: Jitter::Equal,
            ..base
        };
        check_draws(&equal, 3, zero, 3.0 * d / 4.0);
        for (low, high) in [(0.0, 0.2), (-0.2, 0.2), (-0.5, 0.5), (-0.3, 0.0)] {
            let p = Backoff {
                jitter: Jitter::Proportional { low, high },
                ..base
            };
            check_draws(&p, 3, zero, d * (1.0 + (low + high) / 2.0));
        }
        // Decorrelated, uncapped here: U(base, 3 * previous).
        let dec = Backoff {
            jitter: Jitter::Decorrelated,
            ..base
        };
        check_draws(&dec, 1, zero, (100e6 + 300e6) / 2.0);
        check_draws(&dec, 4, ms(700), (100e6 + 2100e6) / 2.0);
    }

    #[test]
    fn axios_retry_waits_200_to_240_ms_then_400_to_480() {
        let b = Backoff::axios_retry();
        assert_eq!(b.bounds(1, SimDuration::ZERO), (ms(200), ms(240)));
        assert_eq!(b.bounds(2, SimDuration::ZERO), (ms(400), ms(480)));
        let mut rng = stream(42, "backoff-test");
        for _ in 0..1000 {
            let first = b.delay(1, SimDuration::ZERO, &mut rng);
            assert!(ms(200) <= first && first <= ms(240));
            let second = b.delay(2, first, &mut rng);
            assert!(ms(400) <= second && second <= ms(480));
        }
    }

    #[test]
    fn grpc_second_retry_is_200_ms_plus_or_minus_20_percent() {
        let b = Backoff::grpc();
        assert_eq!(b.bounds(2, SimDuration::ZERO), (ms(160), ms(240)));
        // The jitter applies after the 1 s max, so late retries may exceed it.
        assert_eq!(b.bounds(9, SimDuration::ZERO), (ms(800), ms(1200)));
        let mut rng = stream(42, "backoff-test");
        for _ in 0..1000 {
            let d = b.delay(2, SimDuration::ZERO, &mut rng);
            assert!(ms(160) <= d && d <= ms(240));
        }
    }

    #[test]
    fn envoy_doubles_from_25_ms_under_full_jitter_up_to_250_ms() {
        let b = Backoff::envoy();
        let highs: Vec<_> = (1..=7).map(|r| b.bounds(r, SimDuration::ZERO).1).collect();
        // 25 * 2^(n-1): the 4th retry is 200 ms, the cap binds from the 5th.
        assert_eq!(highs, ms_list(&[25, 50, 100, 200, 250, 250, 250]));
        assert_eq!(b.bounds(3, SimDuration::ZERO), (SimDuration::ZERO, ms(100)));
        let mut rng = stream(42, "backoff-test");
        for _ in 0..1000 {
            assert!(b.delay(3, SimDuration::ZERO, &mut rng) <= ms(100));
            assert!(b.delay(5, SimDuration::ZERO, &mut rng) <= ms(250));
            assert!(b.delay(1000, SimDuration::ZERO, &mut rng) <= ms(250));
        }
    }

    #[test]
    fn decorrelated_stays_between_base_and_three_times_previous_under_the_cap() {
        let b = Backoff::aws_decorrelated(ms(10), ms(1000));
        let mut rng = stream(42, "backoff-test");
        let mut previous = SimDuration::ZERO;
        let mut reached_cap = false;
        for retry in 1..=1000 {
            let d = b.delay(retry, previous, &mut rng);
            // The chain starts at base: the first wait is U(base, 3 * base).
            let prev_ns = if previous.is_zero() { ms(10) } else { previous };
            let high = SimDuration::from_nanos(prev_ns.as_nanos() * 3).min(ms(1000));
            assert!(ms(10) <= d && d <= high, "retry {retry}: {d:?} > {high:?}");
            reached_cap |= d == ms(1000);
            previous = d;
        }
        assert!(reached_cap, "1000 draws never touched the cap");
        // A cap below base caps everything, base included.
        let tight = Backoff::aws_decorrelated(ms(10), ms(5));
        assert_eq!(tight.bounds(1, SimDuration::ZERO), (ms(5), ms(5)));
    }

    #[test]
    fn a_seeded_stream_gives_pinned_values() {
        // Pinned from one run: a change here means every recorded run changes too.
        let mut rng = stream(42, "backoff-test");
        let zero = SimDuration::ZERO;
        let got: Vec<u64> = vec![
            Backoff::axios_retry().delay(1, zero, &mut rng).as_nanos(),
            Backoff::grpc().delay(2, zero, &mut rng).as_nanos(),
            Backoff::envoy().delay(3, zero, &mut rng).as_nanos(),
            Backoff::resilience4j().delay(2, zero, &mut rng).as_nanos(),
            Backoff::aws_full(ms(100), ms(5000))
                .delay(4, zero, &mut rng)
                .as_nanos(),
            Backoff::aws_equal(ms(100), ms(5000))
                .delay(4, zero, &mut rng)
                .as_nanos(),
            Backoff::aws_decorrelated(ms(100), ms(5000))
                .delay(2, ms(150), &mut rng)
                .as_nanos(),
        ];
        // In range: 200-240 ms, 160-240 ms, 0-100 ms, 375-1125 ms, 0-800 ms, 400-800 ms,
        // 100-450 ms.
        assert_eq!(
            got,
            vec![
                219_093_340,
                169_768_166,
                53_420_799,
                1_098_357_515,
                196_286_126,
                666_176_995,
                277_304_735,
            ]
        );
    }

    #[test]
    fn huge_retry_numbers_saturate_without_panicking() {
        let mut rng = stream(42, "backoff-test");
        let zero = SimDuration::ZERO;
        let uncapped = Backoff {
            cap: UNCAPPED,
            ..Backoff::axios_retry()
        };
        assert_eq!(uncapped.nominal(u32::MAX), UNCAPPED);
        assert_eq!(uncapped.nominal(65), UNCAPPED);
        // Proportional jitter above the cap saturates at the end of the clock.
        assert_eq!(uncapped.delay(u32::MAX, zero, &mut rng), UNCAPPED);
        let jitters = [
            Jitter::None,
            Jitter::Full,
            Jitter::Equal,
            Jitter::Decorrelated,
            Jitter::Proportional {
                low: -1.0,
                high: 0.5,
            },
        ];
        for kind in [
            BackoffKind::Fixed,
            BackoffKind::Linear,
            BackoffKind::Exponential,
        ] {
            for jitter in jitters {
                for cap in [UNCAPPED, ms(250)] {
                    let b = Backoff {
                        kind,
                        jitter,
                        cap,
                        ..Backoff::resilience4j()
                    };
                    let (low, high) = b.bounds(u32::MAX, UNCAPPED);
                    let d = b.delay(u32::MAX, UNCAPPED, &mut rng);
                    assert!(low <= d && d <= high);
                }
            }
        }
        assert_eq!(
            Backoff {
                kind: BackoffKind::Linear,
                ..uncapped
            }
            .nominal(u32::MAX),
            SimDuration::from_nanos(200_000_000 * u64::from(u32::MAX))
        );
        // Zero base times an infinite power is zero, not NaN.
        let zero_base = Backoff {
            base: zero,
            ..uncapped
        };
        assert_eq!(zero_base.delay(u32::MAX, zero, &mut rng), zero);
        // A shrinking multiplier underflows to zero.
        let shrinking = Backoff {
            multiplier: 0.5,
            ..uncapped
        };
        assert_eq!(shrinking.nominal(u32::MAX), zero);
    }

    #[test]
    fn pow_by_squaring_matches_exact_powers() {
        assert_eq!(pow(2.0, 0), 1.0);
        assert_eq!(pow(2.0, 10), 1024.0);
        assert_eq!(pow(1.5, 3), 3.375);
        assert_eq!(pow(0.0, 0), 1.0);
        assert_eq!(pow(0.0, 3), 0.0);
        assert_eq!(pow(2.0, 2000), f64::INFINITY);
    }

    #[test]
    #[should_panic(expected = "retry numbers start at 1")]
    fn retry_zero_is_a_bug() {
        Backoff::polly().nominal(0);
    }

    #[test]
    #[should_panic(expected = "proportional jitter needs")]
    fn jitter_below_minus_one_is_refused() {
        let b = Backoff {
            jitter: Jitter::Proportional {
                low: -1.5,
                high: 0.0,
            },
            ..Backoff::polly()
        };
        b.bounds(1, SimDuration::ZERO);
    }
}
