//! Simulated time: integer nanoseconds, never floats, so that ordering is exact and
//! runs are reproducible bit for bit.

use std::fmt;
use std::ops::{Add, AddAssign, Sub};

/// An instant of simulated time, in nanoseconds since the start of the run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SimTime(u64);

/// A span of simulated time, in nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SimDuration(u64);

impl SimTime {
    pub const ZERO: SimTime = SimTime(0);
    pub const MAX: SimTime = SimTime(u64::MAX);

    pub const fn from_nanos(ns: u64) -> Self {
        SimTime(ns)
    }
    pub const fn as_nanos(self) -> u64 {
        self.0
    }
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e9
    }
    /// Time elapsed since `earlier`; `earlier` must not be later than `self`.
    pub fn since(self, earlier: SimTime) -> SimDuration {
        assert!(
            earlier <= self,
            "time went backwards: {earlier:?} > {self:?}"
        );
        SimDuration(self.0 - earlier.0)
    }
    /// `None` past the end of the clock (about 584 years).
    pub fn checked_add(self, d: SimDuration) -> Option<SimTime> {
        self.0.checked_add(d.0).map(SimTime)
    }
    /// Like `since`, but zero when `earlier` is later (for windows clipped at warmup).
    pub fn saturating_since(self, earlier: SimTime) -> SimDuration {
        SimDuration(self.0.saturating_sub(earlier.0))
    }
}

impl SimDuration {
    pub const ZERO: SimDuration = SimDuration(0);

    pub const fn from_nanos(ns: u64) -> Self {
        SimDuration(ns)
    }
    pub const fn from_micros(us: u64) -> Self {
        SimDuration(us * 1_000)
    }
    pub const fn from_millis(ms: u64) -> Self {
        SimDuration(ms * 1_000_000)
    }
    pub const fn from_secs(s: u64) -> Self {
        SimDuration(s * 1_000_000_000)
    }
    /// Rounds a non-negative number of seconds to the nearest nanosecond.
    /// Negative or NaN input is a bug in the caller.
    pub fn from_secs_f64(s: f64) -> Self {
        // NaN is let through: `as` maps it to 0.
        assert!(s >= 0.0 || s.is_nan(), "negative duration {s}");
        // `as` saturates (a heavy-tailed sample may exceed 584 years) and maps NaN to 0;
        // adding 0.5 rounds half up like `f64::round` does for non-negative values, and
        // costs less: every sampled duration goes through here.
        SimDuration((s * 1e9 + 0.5) as u64)
    }
    pub const fn as_nanos(self) -> u64 {
        self.0
    }
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e9
    }
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }
}

// Sums saturate at the end of the clock, as a sampled duration does (`from_secs_f64`):
// a heavy-tailed draw added to a time or to another duration must not panic. A time
// at the end of the clock means "never"; a duration that long, scheduled with
// `Scheduler::after`, ends the run with `RunError::ClockOverflow`, located in the
// scenario.
impl Add<SimDuration> for SimTime {
    type Output = SimTime;
    /// Saturates at `SimTime::MAX`, the end of the clock (about 584 years), as samples
    /// do: a heavy-tailed draw must not panic a run. Scheduling goes through
    /// `Scheduler::after`, which ends the run with `ClockOverflow` instead.
    fn add(self, d: SimDuration) -> SimTime {
        SimTime(self.0.saturating_add(d.0))
    }
}

impl AddAssign<SimDuration> for SimTime {
    fn add_assign(&mut self, d: SimDuration) {
        *self = *self + d;
    }
}

impl Add for SimDuration {
    type Output = SimDuration;
    /// Saturates, like `SimTime + SimDuration` and sampled durations.
    fn add(self, d: SimDuration) -> SimDuration {
        SimDuration(self.0.saturating_add(d.0))
    }
}

impl Sub for SimDuration {
    type Output = SimDuration;
    fn sub(self, d: SimDuration) -> SimDuration {
        SimDuration(self.0 - d.0)
    }
}

impl fmt::Display for SimDuration {
    /// The shortest exact spelling in the scenario language's units.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = self.0;
        const UNITS: [(u64, &str); 5] = [
            (3_600_000_000_000, "h"),
            (60_000_000_000, "m"),
            (1_000_000_000, "s"),
            (1_000_000, "ms"),
            (1_000, "us"),
        ];
        if ns == 0 {
            return write!(f, "0s");
        }
        for (unit, name) in UNITS {
            if ns.is_multiple_of(unit) {
                return write!(f, "{}{}", ns / unit, name);
            }
        }
        write!(f, "{ns}ns")
    }
}

impl fmt::Display for SimTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.9}s", self.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_is_exact() {
        let t = SimTime::ZERO + SimDuration::from_millis(50) + SimDuration::from_micros(2_500);
        assert_eq!(t.as_nanos(), 52_500_000);
        assert_eq!(
            t.since(SimTime::from_nanos(2_500_000)),
            SimDuration::from_millis(50)
        );
        assert_eq!(SimDuration::from_secs_f64(1.5).as_nanos(), 1_500_000_000);
    }

    #[test]
    fn addition_saturates_at_the_end_of_the_clock() {
        let huge = SimDuration::from_nanos(u64::MAX - 1);
        assert_eq!((huge + SimDuration::from_nanos(5)).as_nanos(), u64::MAX);
        assert_eq!(SimTime::from_nanos(10) + huge, SimTime::MAX);
        let mut t = SimTime::from_nanos(3);
        t += huge;
        assert_eq!(t, SimTime::MAX);
        assert_eq!(
            (SimDuration::from_nanos(2) + SimDuration::from_nanos(3)).as_nanos(),
            5
        );
    }

    #[test]
    #[should_panic(expected = "time went backwards")]
    fn since_refuses_negative_spans() {
        SimTime::from_nanos(5).since(SimTime::from_nanos(6));
    }

    #[test]
    fn sums_saturate_at_the_end_of_the_clock() {
        let max = SimDuration::from_nanos(u64::MAX);
        let year = SimDuration::from_secs(365 * 24 * 3600);
        assert_eq!(max + year, max);
        assert_eq!(SimTime::MAX + year, SimTime::MAX);
        let mut t = SimTime::ZERO + max;
        t += year;
        assert_eq!(t, SimTime::MAX);
        assert_eq!((year + year).as_nanos(), 2 * year.as_nanos());
    }

    #[test]
    fn from_secs_f64_rounds_to_the_nearest_nanosecond_and_saturates() {
        for (s, ns) in [
            (1.5e-9, 2),
            (1.4e-9, 1),
            (2e-5, 20_000),
            (0.0, 0),
            (1e30, u64::MAX),
        ] {
            assert_eq!(SimDuration::from_secs_f64(s).as_nanos(), ns, "{s}");
        }
        for i in 0..10_000u64 {
            let s = i as f64 * 1.234_567e-7;
            assert_eq!(
                SimDuration::from_secs_f64(s).as_nanos(),
                (s * 1e9).round() as u64
            );
        }
    }

    #[test]
    fn display_picks_the_largest_exact_unit() {
        assert_eq!(SimDuration::from_millis(1500).to_string(), "1500ms");
        assert_eq!(SimDuration::from_secs(120).to_string(), "2m");
        assert_eq!(SimDuration::from_nanos(7).to_string(), "7ns");
    }
}
