//! Circuit breaker: one state machine (closed, open, half-open) that a `BreakerSpec`
//! configures into opossum, resilience4j or Polly behaviour (SEMANTICS.md section 1 and
//! "Where libraries differ" 1-3).
//!
//! The breaker owns no clock and no queue: the world asks it for a permit before a call,
//! reports the outcome with that permit, and in timer mode schedules `on_timer` at
//! `timer_due`. Each state period has an epoch stamped on its permits, so an outcome that
//! arrives after the breaker moved on can be told apart: the three libraries record it
//! in whatever state is current (`LateOutcomes::Current`), and `LateOutcomes::Ignore`
//! drops it (the same lazy cancellation as `arena::Id` generations).
//!
//! The boundaries follow the libraries' source, cited where each is decided: opossum
//! v10.0.0 (`lib/circuit.js`, `lib/status.js`), Polly 8.7.0 (`src/Polly.Core/CircuitBreaker/`),
//! resilience4j 2.4.0 (`CircuitBreakerStateMachine.java`).
//!
//! Rates are fractions in f64 (a ratio of two counts, compared once); time stays integer.

use crate::engine::{SimDuration, SimTime};

/// Which recent calls the failure rate is computed over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerWindow {
    /// The last `calls` recorded calls (resilience4j COUNT_BASED).
    Count { calls: u32 },
    /// `buckets` buckets of length `bucket`, ending with the bucket that holds now
    /// (opossum rolling window, resilience4j TIME_BASED, Polly sampling duration).
    Time { buckets: u32, bucket: SimDuration },
}

/// How a rate is compared with its threshold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compare {
    /// opossum: `failures / fires * 100 > errorThresholdPercentage`.
    Greater,
    /// resilience4j and Polly.
    GreaterOrEqual,
}

/// When a closed breaker checks whether to open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Evaluate {
    /// resilience4j: after every recorded call, successes included.
    EveryCall,
    /// opossum and Polly: only when a call failed (or was slow, if slow calls are on).
    OnFailure,
}

/// How an open breaker becomes half-open once the open time is over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    /// opossum (and resilience4j with automatic transition): a timer the world schedules.
    Timer,
    /// resilience4j by default and Polly: the first call after the open time.
    Lazy,
}

/// When a call enters the rate's denominator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CountAt {
    /// When its outcome is recorded (resilience4j, Polly).
    Outcome,
    /// When it is fired, admitted or refused, in the bucket of that instant; its failure
    /// joins the bucket of the instant it fails (opossum: `fire` is counted at
    /// circuit.js:656, before the open check at :711; the rate is `failures / fires`,
    /// circuit.js:993). Calls still in flight are in the denominator. Time windows only.
    Fire,
}

/// What an outcome does when the breaker changed state after its call was admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LateOutcomes {
    /// It is recorded in the state the breaker is in now, as all three libraries do: a
    /// success while half-open closes (opossum circuit.js:349-352, Polly
    /// CircuitStateController.cs:201-204), a failure re-opens (circuit.js:994-996,
    /// CircuitStateController.cs:231-234), a resilience4j half-open state counts it among
    /// its probes (CircuitBreakerStateMachine.java:1144-1178); while open it only enters
    /// the window (CircuitBreakerStateMachine.java:757-772, AdvancedCircuitBehavior.cs:30-39).
    Current,
    /// It is ignored: only outcomes of calls admitted in the current state period count.
    Ignore,
}

/// Where a time window's buckets start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BucketStart {
    /// At multiples of the bucket length (resilience4j's epoch seconds; opossum rotates
    /// every bucket from the breaker's creation, status.js:76-83, which is time 0 here).
    Clock,
    /// Polly v8: a bucket starts at the first outcome recorded at least one bucket length
    /// after the current one started, and is dropped once it is the whole window old
    /// (RollingHealthMetrics.cs:45-63).
    FirstOutcome,
}

/// Whether a lazy breaker half-opens for a call that arrives exactly when the open time ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenEnd {
    /// Polly: `now >= _blockedUntil` (CircuitStateController.cs:308).
    Inclusive,
    /// resilience4j: `clock.instant().isAfter(retryAfterWaitDuration)`, strictly after
    /// (CircuitBreakerStateMachine.java:725): the call at the end is still refused.
    Exclusive,
}

/// resilience4j slow calls: a call longer than `duration` is slow, failed or not.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SlowCall {
    pub duration: SimDuration,
    /// Fraction 0..=1 of slow calls that trips the breaker (compared with `compare`).
    pub rate: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct BreakerSpec {
    pub window: BreakerWindow,
    /// Fraction 0..=1 (0.5 = 50%).
    pub failure_rate: f64,
    pub compare: Compare,
    pub slow_call: Option<SlowCall>,
    /// opossum volumeThreshold, resilience4j minimumNumberOfCalls (capped at the count
    /// window size), Polly MinimumThroughput.
    pub minimum_calls: u32,
    pub evaluate: Evaluate,
    /// With `CountAt::Outcome`: refused calls enter the window as calls that neither
    /// failed nor were slow. (`CountAt::Fire` counts every fire, refused ones included.)
    pub count_rejections: bool,
    pub count_at: CountAt,
    pub late_outcomes: LateOutcomes,
    pub bucket_start: BucketStart,
    pub open_end: OpenEnd,
    /// opossum resetTimeout, resilience4j waitDurationInOpenState, Polly BreakDuration.
    pub open_for: SimDuration,
    /// Each consecutive re-open (from half-open) multiplies the open time by this;
    /// 1.0 keeps it fixed. A close starts again from `open_for`.
    pub open_growth: f64,
    /// Cap for the growing open time.
    pub open_max: SimDuration,
    /// Calls a half-open period admits: opossum 1, Polly 1, resilience4j 10.
    pub half_open_probes: u32,
    pub transition: Transition,
    /// resilience4j and Polly start fresh statistics in each state; opossum never resets,
    /// its window just rolls.
    pub reset_on_transition: bool,
}

impl BreakerSpec {
    /// opossum v10 defaults: 10 s rolling window in 10 buckets, > 50%, volumeThreshold 0,
    /// trip check on failures only, every call counted when fired (rejects too),
    /// resetTimeout 30 s by timer, one probe, statistics never reset, late outcomes count.
    pub fn opossum() -> Self {
        BreakerSpec {
            window: BreakerWindow::Time {
                buckets: 10,
                bucket: SimDuration::from_secs(1),
            },
            failure_rate: 0.5,
            compare: Compare::Greater,
            slow_call: None,
            minimum_calls: 0,
            evaluate: Evaluate::OnFailure,
            count_rejections: true,
            count_at: CountAt::Fire,
            late_outcomes: LateOutcomes::Current,
            bucket_start: BucketStart::Clock,
            // The timer moves the state at the end (circuit.js:318-320); a call cannot.
            open_end: OpenEnd::Inclusive,
            open_for: SimDuration::from_secs(30),
            open_growth: 1.0,
            open_max: SimDuration::from_secs(30),
            half_open_probes: 1,
            transition: Transition::Timer,
            reset_on_transition: false,
        }
    }

    /// resilience4j CircuitBreaker defaults: last 100 calls, >= 50% failed or >= 100%
    /// slower than 60 s, at least 100 calls, checked after every call, 60 s open, lazy
    /// half-open strictly after the open time with 10 probes, statistics reset per state,
    /// late outcomes count in the current state.
    pub fn resilience4j() -> Self {
        BreakerSpec {
            window: BreakerWindow::Count { calls: 100 },
            failure_rate: 0.5,
            compare: Compare::GreaterOrEqual,
            slow_call: Some(SlowCall {
                duration: SimDuration::from_secs(60),
                rate: 1.0,
            }),
            minimum_calls: 100,
            evaluate: Evaluate::EveryCall,
            count_rejections: false,
            count_at: CountAt::Outcome,
            late_outcomes: LateOutcomes::Current,
            bucket_start: BucketStart::Clock,
            open_end: OpenEnd::Exclusive,
            open_for: SimDuration::from_secs(60),
            open_growth: 1.0,
            open_max: SimDuration::from_secs(60),
            half_open_probes: 10,
            transition: Transition::Lazy,
            reset_on_transition: true,
        }
    }

    /// Polly v8 defaults: 30 s sampling in 10 sub-windows started by outcomes, >= 10% with
    /// at least 100 calls, checked on failures, 5 s break, the first call at or after its
    /// end is the single probe, late outcomes count in the current state.
    pub fn polly() -> Self {
        BreakerSpec {
            window: BreakerWindow::Time {
                buckets: 10,
                bucket: SimDuration::from_secs(3),
            },
            failure_rate: 0.1,
            compare: Compare::GreaterOrEqual,
            slow_call: None,
            minimum_calls: 100,
            evaluate: Evaluate::OnFailure,
            count_rejections: false,
            count_at: CountAt::Outcome,
            late_outcomes: LateOutcomes::Current,
            bucket_start: BucketStart::FirstOutcome,
            open_end: OpenEnd::Inclusive,
            open_for: SimDuration::from_secs(5),
            open_growth: 1.0,
            open_max: SimDuration::from_secs(5),
            half_open_probes: 1,
            transition: Transition::Lazy,
            reset_on_transition: true,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn name(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateChange {
    pub at: SimTime,
    pub from: BreakerState,
    pub to: BreakerState,
}

/// Proof that a call was admitted, and in which state period (epoch).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Permit {
    epoch: u32,
}

/// What one entry adds to the window: a call (its fire, or its outcome when calls are
/// counted at the outcome), a failure, a slow call. A rejection counted by
/// `count_rejections`, and an opossum fire, is a call that neither failed nor was slow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Outcome {
    call: bool,
    failure: bool,
    slow: bool,
}

impl Outcome {
    const REJECTED: Outcome = Outcome {
        call: true,
        failure: false,
        slow: false,
    };
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Tally {
    calls: u64,
    failures: u64,
    slow: u64,
}

impl Tally {
    fn add(&mut self, outcome: Outcome) {
        self.calls += u64::from(outcome.call);
        self.failures += u64::from(outcome.failure);
        self.slow += u64::from(outcome.slow);
    }

    fn remove(&mut self, outcome: Outcome) {
        self.calls -= u64::from(outcome.call);
        self.failures -= u64::from(outcome.failure);
        self.slow -= u64::from(outcome.slow);
    }

    fn merge(&mut self, other: Tally) {
        self.calls += other.calls;
        self.failures += other.failures;
        self.slow += other.slow;
    }

    fn is_consistent(self) -> bool {
        self.failures <= self.calls && self.slow <= self.calls
    }
}

/// The last `capacity` outcomes in a ring, with running totals so that a check costs
/// nothing however large the window is.
#[derive(Clone, Debug)]
struct CountWindow {
    ring: Vec<Outcome>,
    capacity: usize,
    /// Where the oldest outcome sits once the ring is full.
    oldest: usize,
    total: Tally,
}

impl CountWindow {
    fn add(&mut self, outcome: Outcome) {
        assert!(outcome.call, "a count window holds calls only");
        if self.ring.len() < self.capacity {
            self.ring.push(outcome);
        } else {
            let evicted = std::mem::replace(&mut self.ring[self.oldest], outcome);
            self.total.remove(evicted);
            self.oldest = (self.oldest + 1) % self.capacity;
        }
        self.total.add(outcome);
        assert_eq!(self.total.calls, self.ring.len() as u64);
        assert!(self.total.is_consistent());
    }

    fn clear(&mut self) {
        self.ring.clear();
        self.oldest = 0;
        self.total = Tally::default();
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Bucket {
    /// Absolute bucket number (time / bucket length); a slot whose number is too old
    /// holds calls that have left the window.
    index: u64,
    tally: Tally,
}

/// Buckets in a ring, addressed by absolute bucket number modulo their count, so that
/// rolling needs no sweep: a slot is reset when a newer bucket lands on it.
#[derive(Clone, Debug)]
struct TimeWindow {
    slots: Vec<Bucket>,
    bucket_ns: u64,
}

impl TimeWindow {
    fn index(&self, now: SimTime) -> u64 {
        now.as_nanos() / self.bucket_ns
    }

    fn add(&mut self, now: SimTime, outcome: Outcome) {
        let index = self.index(now);
        let count = self.slots.len() as u64;
        let slot = &mut self.slots[(index % count) as usize];
        // Outcomes are recorded in time order, so a slot never holds a later bucket.
        assert!(slot.index <= index, "outcome recorded out of time order");
        if slot.index != index {
            *slot = Bucket {
                index,
                tally: Tally::default(),
            };
        }
        slot.tally.add(outcome);
    }

    /// The buckets numbered (now - count, now], i.e. the current one and those before it.
    fn tally(&self, now: SimTime) -> Tally {
        let index = self.index(now);
        let count = self.slots.len() as u64;
        let mut total = Tally::default();
        for slot in &self.slots {
            if slot.index <= index && index - slot.index < count {
                total.merge(slot.tally);
            }
        }
        total
    }

    fn clear(&mut self) {
        self.slots.fill(Bucket::default());
    }
}

/// Polly's rolling health metrics: buckets that start at an outcome, in a queue. Buckets
/// start at least one bucket length apart and leave once the whole window old, so at
/// most `count` are ever held (the queue never grows past its first allocation).
#[derive(Clone, Debug)]
struct AnchoredWindow {
    /// (start, tally), oldest first.
    buckets: std::collections::VecDeque<(SimTime, Tally)>,
    count: usize,
    bucket_ns: u64,
}

impl AnchoredWindow {
    fn span_ns(&self) -> u64 {
        self.bucket_ns.saturating_mul(self.count as u64)
    }

    fn add(&mut self, now: SimTime, outcome: Outcome) {
        // RollingHealthMetrics.cs:48: a new bucket when there is none, or the current one
        // is at least a bucket length old.
        let fresh = self
            .buckets
            .back()
            .is_none_or(|&(start, _)| now.since(start).as_nanos() >= self.bucket_ns);
        if fresh {
            self.buckets.push_back((now, Tally::default()));
        }
        // RollingHealthMetrics.cs:57: drop the buckets that are the whole window old.
        let span = self.span_ns();
        while let Some(&(start, _)) = self.buckets.front()
            && now.since(start).as_nanos() >= span
        {
            self.buckets.pop_front();
        }
        assert!(self.buckets.len() <= self.count);
        self.buckets
            .back_mut()
            .expect("the bucket just used is less than a window old")
            .1
            .add(outcome);
    }

    fn tally(&self, now: SimTime) -> Tally {
        let span = self.span_ns();
        let mut total = Tally::default();
        for &(start, t) in &self.buckets {
            if now.since(start).as_nanos() < span {
                total.merge(t);
            }
        }
        total
    }
}

#[derive(Clone, Debug)]
enum Window {
    Count(CountWindow),
    Time(TimeWindow),
    Anchored(AnchoredWindow),
}

impl Window {
    fn new(shape: &BreakerWindow, start: BucketStart) -> Self {
        match *shape {
            BreakerWindow::Count { calls } => {
                assert!(calls >= 1, "a count window needs at least one call");
                Window::Count(CountWindow {
                    ring: Vec::with_capacity(calls as usize),
                    capacity: calls as usize,
                    oldest: 0,
                    total: Tally::default(),
                })
            }
            BreakerWindow::Time { buckets, bucket } => {
                assert!(buckets >= 1, "a time window needs at least one bucket");
                assert!(
                    !bucket.is_zero(),
                    "a time window needs buckets longer than 0"
                );
                match start {
                    BucketStart::Clock => Window::Time(TimeWindow {
                        slots: vec![Bucket::default(); buckets as usize],
                        bucket_ns: bucket.as_nanos(),
                    }),
                    BucketStart::FirstOutcome => Window::Anchored(AnchoredWindow {
                        buckets: std::collections::VecDeque::with_capacity(buckets as usize),
                        count: buckets as usize,
                        bucket_ns: bucket.as_nanos(),
                    }),
                }
            }
        }
    }

    fn is_shaped_by(&self, shape: &BreakerWindow) -> bool {
        match (self, *shape) {
            (Window::Count(w), BreakerWindow::Count { calls }) => w.capacity == calls as usize,
            (Window::Time(w), BreakerWindow::Time { buckets, bucket }) => {
                w.slots.len() == buckets as usize && w.bucket_ns == bucket.as_nanos()
            }
            (Window::Anchored(w), BreakerWindow::Time { buckets, bucket }) => {
                w.count == buckets as usize && w.bucket_ns == bucket.as_nanos()
            }
            _ => false,
        }
    }

    fn add(&mut self, now: SimTime, outcome: Outcome) {
        match self {
            Window::Count(w) => w.add(outcome),
            Window::Time(w) => w.add(now, outcome),
            Window::Anchored(w) => w.add(now, outcome),
        }
    }

    fn tally(&self, now: SimTime) -> Tally {
        match self {
            Window::Count(w) => w.total,
            Window::Time(w) => w.tally(now),
            Window::Anchored(w) => w.tally(now),
        }
    }

    /// resilience4j caps minimumNumberOfCalls at the count window's size, or a small
    /// window could never fill up enough to open.
    fn minimum_calls(&self, minimum: u32) -> u64 {
        match self {
            Window::Count(w) => u64::from(minimum).min(w.capacity as u64),
            Window::Time(_) | Window::Anchored(_) => u64::from(minimum),
        }
    }

    fn clear(&mut self) {
        match self {
            Window::Count(w) => w.clear(),
            Window::Time(w) => w.clear(),
            Window::Anchored(w) => w.buckets.clear(),
        }
    }
}

fn rate_meets(compare: Compare, count: u64, calls: u64, threshold: f64) -> bool {
    if calls == 0 {
        // Counting fires, a failure can outlive its fire in the window: opossum's
        // `failures / 0 * 100` is Infinity, over any threshold (0 / 0 is NaN, never).
        return count > 0;
    }
    // Division is correctly rounded, so a ratio exactly equal to a decimal threshold
    // (10/100 against 0.1) compares equal: both are the nearest double to that value.
    let rate = count as f64 / calls as f64;
    match compare {
        Compare::Greater => rate > threshold,
        Compare::GreaterOrEqual => rate >= threshold,
    }
}

/// Whether a tally's failure rate, or its slow-call rate, reaches the spec's threshold.
fn trips(spec: &BreakerSpec, tally: Tally) -> bool {
    rate_meets(spec.compare, tally.failures, tally.calls, spec.failure_rate)
        || spec
            .slow_call
            .is_some_and(|slow| rate_meets(spec.compare, tally.slow, tally.calls, slow.rate))
}

/// `ns * growth`, rounded, saturating at the end of the clock.
fn grow(ns: u64, growth: f64) -> u64 {
    if growth == 1.0 {
        return ns; // Exact, whatever the size.
    }
    // `as` saturates, so an open time that overflows simply becomes the longest one.
    (ns as f64 * growth).round() as u64
}

#[derive(Clone, Debug)]
pub struct Breaker {
    state: BreakerState,
    /// Bumped on every state change; permits carry the epoch that admitted them.
    epoch: u32,
    window: Window,
    /// End of the current open period (meaningful while Open).
    open_until: SimTime,
    /// The open time before the `open_max` cap, grown on each consecutive re-open. Kept
    /// uncapped so that the cap is applied to `open_for x growth^n`, as specified.
    open_uncapped_ns: u64,
    /// Probes admitted and probe outcomes recorded in this half-open period.
    probes_admitted: u32,
    probes: Tally,
    changes: Vec<StateChange>,
    /// Latest time seen, to assert that the world calls in time order.
    now_last: SimTime,
}

impl Breaker {
    pub fn new(spec: &BreakerSpec) -> Self {
        // Checked in release too: this runs once per breaker, and a bad spec is a bug in
        // scenario validation that would otherwise show up as silently odd behaviour.
        assert!(
            (0.0..=1.0).contains(&spec.failure_rate),
            "failure_rate {} is not a fraction",
            spec.failure_rate
        );
        if let Some(slow) = spec.slow_call {
            assert!(
                (0.0..=1.0).contains(&slow.rate),
                "slow call rate {} is not a fraction",
                slow.rate
            );
        }
        assert!(spec.half_open_probes >= 1, "half-open must admit a probe");
        assert!(
            spec.count_at == CountAt::Outcome || matches!(spec.window, BreakerWindow::Time { .. }),
            "counting calls when fired needs a time window"
        );
        assert!(
            spec.open_growth.is_finite() && spec.open_growth > 0.0,
            "open_growth {} must be positive",
            spec.open_growth
        );
        Breaker {
            state: BreakerState::Closed,
            epoch: 0,
            window: Window::new(&spec.window, spec.bucket_start),
            open_until: SimTime::ZERO,
            open_uncapped_ns: spec.open_for.as_nanos(),
            probes_admitted: 0,
            probes: Tally::default(),
            changes: Vec::new(),
            now_last: SimTime::ZERO,
        }
    }

    /// May a call go through at `now`? Lazy mode moves Open -> HalfOpen here when the
    /// open time is over. HalfOpen admits at most `half_open_probes` calls per half-open
    /// period; the rest are rejected. Returns None when rejected (and counts the
    /// rejection in the window if `count_rejections`).
    pub fn try_acquire(&mut self, spec: &BreakerSpec, now: SimTime) -> Option<Permit> {
        self.advance(spec, now);
        let over = match spec.open_end {
            OpenEnd::Inclusive => now >= self.open_until,
            OpenEnd::Exclusive => now > self.open_until,
        };
        if self.state == BreakerState::Open && spec.transition == Transition::Lazy && over {
            self.enter(spec, now, BreakerState::HalfOpen);
        }
        if spec.count_at == CountAt::Fire {
            self.window.add(now, Outcome::REJECTED);
        }
        let admitted = match self.state {
            BreakerState::Closed => true,
            BreakerState::Open => false,
            BreakerState::HalfOpen => {
                let free = self.probes_admitted < spec.half_open_probes;
                if free {
                    self.probes_admitted += 1;
                }
                free
            }
        };
        if admitted {
            return Some(Permit { epoch: self.epoch });
        }
        if spec.count_rejections && spec.count_at == CountAt::Outcome {
            // Like opossum's fires, rejections dilute the failure rate once the breaker
            // closes again.
            self.window.add(now, Outcome::REJECTED);
        }
        None
    }

    /// Records the outcome of a call admitted with `permit`. An outcome of a call admitted
    /// in an earlier state period (epoch) than the current one is recorded in the current
    /// state (`LateOutcomes::Current`) or ignored (`Ignore`).
    pub fn record(
        &mut self,
        spec: &BreakerSpec,
        now: SimTime,
        permit: Permit,
        failure: bool,
        duration: SimDuration,
    ) {
        self.advance(spec, now);
        let late = permit.epoch != self.epoch;
        if late && spec.late_outcomes == LateOutcomes::Ignore {
            return;
        }
        let slow = spec.slow_call.is_some_and(|s| duration > s.duration);
        let outcome = Outcome {
            call: spec.count_at == CountAt::Outcome,
            failure,
            slow,
        };
        self.window.add(now, outcome);
        match self.state {
            BreakerState::Closed => self.check_closed(spec, now, outcome),
            BreakerState::HalfOpen => self.check_half_open(spec, now, outcome),
            // Open admits nothing, so only a late outcome gets here: recorded, no more.
            BreakerState::Open => assert!(late, "an outcome from an open period"),
        }
    }

    /// Timer mode: when the world should call `on_timer` (Some(t) while Open with
    /// Transition::Timer).
    pub fn timer_due(&self, spec: &BreakerSpec) -> Option<SimTime> {
        (spec.transition == Transition::Timer && self.state == BreakerState::Open)
            .then_some(self.open_until)
    }

    /// Timer mode: Open -> HalfOpen if `now` is at or past the open end; a stale call
    /// does nothing. In lazy mode it does nothing either: the next call moves the state.
    pub fn on_timer(&mut self, spec: &BreakerSpec, now: SimTime) {
        self.advance(spec, now);
        if spec.transition == Transition::Timer
            && self.state == BreakerState::Open
            && now >= self.open_until
        {
            self.enter(spec, now, BreakerState::HalfOpen);
        }
    }

    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// Every transition, in order.
    pub fn changes(&self) -> &[StateChange] {
        &self.changes
    }

    /// Total time spent Open up to `until`.
    pub fn time_open(&self, until: SimTime) -> SimDuration {
        let mut total = SimDuration::ZERO;
        let mut opened: Option<SimTime> = None;
        for change in self.changes.iter().take_while(|c| c.at <= until) {
            if change.to == BreakerState::Open {
                assert!(opened.is_none());
                opened = Some(change.at);
            } else if change.from == BreakerState::Open {
                let start = opened.take().expect("left open without opening");
                total = total + change.at.since(start);
            }
        }
        if let Some(start) = opened {
            total = total + until.since(start);
        }
        total
    }

    fn advance(&mut self, spec: &BreakerSpec, now: SimTime) {
        assert!(now >= self.now_last, "breaker driven out of time order");
        assert!(
            self.window.is_shaped_by(&spec.window),
            "breaker driven with another spec than it was built from"
        );
        self.now_last = now;
    }

    fn check_closed(&mut self, spec: &BreakerSpec, now: SimTime, outcome: Outcome) {
        // opossum and Polly check only on failures: a success never opens, even if the
        // rate it leaves behind is over the threshold. A slow call is a bad outcome too.
        if spec.evaluate == Evaluate::OnFailure && !outcome.failure && !outcome.slow {
            return;
        }
        let tally = self.window.tally(now);
        if tally.calls < self.window.minimum_calls(spec.minimum_calls) {
            return;
        }
        if trips(spec, tally) {
            self.enter(spec, now, BreakerState::Open);
        }
    }

    fn check_half_open(&mut self, spec: &BreakerSpec, now: SimTime, outcome: Outcome) {
        // Every outcome here is one call of the verdict, a late one included (counting
        // fires, the outcome itself carries no call).
        self.probes.add(Outcome {
            call: true,
            ..outcome
        });
        assert!(
            spec.late_outcomes == LateOutcomes::Current
                || self.probes.calls <= u64::from(self.probes_admitted)
        );
        // opossum and Polly re-open on any probe failure, whatever the threshold (opossum
        // opens "if half-open" without looking at the rate).
        if spec.evaluate == Evaluate::OnFailure && outcome.failure {
            self.enter(spec, now, BreakerState::Open);
            return;
        }
        if self.probes.calls < u64::from(spec.half_open_probes) {
            return;
        }
        let to = if trips(spec, self.probes) {
            BreakerState::Open
        } else {
            BreakerState::Closed
        };
        self.enter(spec, now, to);
    }

    fn enter(&mut self, spec: &BreakerSpec, now: SimTime, to: BreakerState) {
        use BreakerState::{Closed, HalfOpen, Open};
        let from = self.state;
        assert!(
            matches!(
                (from, to),
                (Closed, Open) | (Open, HalfOpen) | (HalfOpen, Open) | (HalfOpen, Closed)
            ),
            "no transition {} -> {}",
            from.name(),
            to.name()
        );
        self.changes.push(StateChange { at: now, from, to });
        self.state = to;
        // Wrapping is safe: a call would have to stay in flight across 2^32 transitions
        // for its permit to be mistaken for a current one.
        self.epoch = self.epoch.wrapping_add(1);
        if spec.reset_on_transition {
            self.window.clear();
        }
        match to {
            Open => {
                // Only consecutive re-opens grow the open time; opening from closed starts over.
                self.open_uncapped_ns = if from == HalfOpen {
                    grow(self.open_uncapped_ns, spec.open_growth)
                } else {
                    spec.open_for.as_nanos()
                };
                let open =
                    SimDuration::from_nanos(self.open_uncapped_ns.min(spec.open_max.as_nanos()));
                // An open period past the end of the clock simply never ends.
                self.open_until = now.checked_add(open).unwrap_or(SimTime::MAX);
            }
            HalfOpen => {
                self.probes_admitted = 0;
                self.probes = Tally::default();
            }
            Closed => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::BreakerState::{Closed, HalfOpen, Open};
    use super::*;

    fn ms(ms: u64) -> SimTime {
        SimTime::ZERO + SimDuration::from_millis(ms)
    }

    fn secs(s: u64) -> SimTime {
        SimTime::ZERO + SimDuration::from_secs(s)
    }

    fn change(at: SimTime, from: BreakerState, to: BreakerState) -> StateChange {
        StateChange { at, from, to }
    }

    /// One call answered at the instant it is admitted; false if it was rejected.
    fn call(b: &mut Breaker, spec: &BreakerSpec, now: SimTime, failure: bool) -> bool {
        call_taking(b, spec, now, failure, SimDuration::ZERO)
    }

    fn call_taking(
        b: &mut Breaker,
        spec: &BreakerSpec,
        now: SimTime,
        failure: bool,
        duration: SimDuration,
    ) -> bool {
        match b.try_acquire(spec, now) {
            Some(permit) => {
                b.record(spec, now, permit, failure, duration);
                true
            }
            None => false,
        }
    }

    #[test]
    fn state_names() {
        assert_eq!(Closed.name(), "closed");
        assert_eq!(Open.name(), "open");
        assert_eq!(HalfOpen.name(), "half_open");
    }

    #[test]
    fn presets_follow_semantics() {
        let o = BreakerSpec::opossum();
        assert_eq!(o.compare, Compare::Greater);
        assert_eq!(o.minimum_calls, 0);
        assert_eq!(o.half_open_probes, 1);
        assert_eq!(o.transition, Transition::Timer);
        assert!(o.count_rejections && !o.reset_on_transition);
        let r = BreakerSpec::resilience4j();
        assert_eq!(r.window, BreakerWindow::Count { calls: 100 });
        assert_eq!(r.evaluate, Evaluate::EveryCall);
        assert_eq!(r.half_open_probes, 10);
        assert_eq!(r.open_for, SimDuration::from_secs(60));
        let p = BreakerSpec::polly();
        assert_eq!(p.failure_rate, 0.1);
        assert_eq!(p.minimum_calls, 100);
        assert_eq!(p.open_for, SimDuration::from_secs(5));
        assert_eq!(p.transition, Transition::Lazy);
        for spec in [o, r, p] {
            assert_eq!(spec.open_growth, 1.0);
            Breaker::new(&spec);
        }
    }

    // ---- opossum ----

    #[test]
    fn opossum_one_early_failure_opens_and_one_probe_closes() {
        let spec = BreakerSpec::opossum();
        let mut b = Breaker::new(&spec);
        assert_eq!(b.timer_due(&spec), None);
        // volumeThreshold 0: the first failure is 1/1 = 100% > 50%.
        assert!(call(&mut b, &spec, secs(1), true));
        assert_eq!(b.changes(), &[change(secs(1), Closed, Open)]);
        assert_eq!(b.timer_due(&spec), Some(secs(31)));
        for t in [secs(2), secs(30), SimTime::from_nanos(31_000_000_000 - 1)] {
            assert!(b.try_acquire(&spec, t).is_none());
        }
        // Timer mode: the open time being over is not enough, the timer moves the state.
        assert!(b.try_acquire(&spec, secs(31)).is_none());
        assert_eq!(b.state(), Open);
        b.on_timer(&spec, secs(31));
        assert_eq!(b.state(), HalfOpen);
        assert_eq!(b.timer_due(&spec), None);
        let probe = b.try_acquire(&spec, secs(31)).expect("one probe");
        assert!(b.try_acquire(&spec, ms(31_200)).is_none());
        b.record(&spec, ms(31_500), probe, false, SimDuration::ZERO);
        assert_eq!(
            b.changes(),
            &[
                change(secs(1), Closed, Open),
                change(secs(31), Open, HalfOpen),
                change(ms(31_500), HalfOpen, Closed),
            ]
        );
        assert_eq!(b.time_open(secs(100)), SimDuration::from_secs(30));
    }

    #[test]
    fn opossum_probe_failure_reopens_and_restarts_the_timer() {
        let spec = BreakerSpec::opossum();
        let mut b = Breaker::new(&spec);
        assert!(call(&mut b, &spec, secs(1), true));
        b.on_timer(&spec, secs(31));
        let probe = b.try_acquire(&spec, secs(31)).expect("probe");
        b.record(&spec, secs(32), probe, true, SimDuration::ZERO);
        assert_eq!(b.state(), Open);
        assert_eq!(b.timer_due(&spec), Some(secs(62)));
        // A timer for the earlier period, or an early one, changes nothing.
        b.on_timer(&spec, secs(61));
        assert_eq!(b.state(), Open);
        b.on_timer(&spec, secs(62));
        assert_eq!(
            b.changes(),
            &[
                change(secs(1), Closed, Open),
                change(secs(31), Open, HalfOpen),
                change(secs(32), HalfOpen, Open),
                change(secs(62), Open, HalfOpen),
            ]
        );
    }

    #[test]
    fn opossum_compares_strictly_greater() {
        let spec = BreakerSpec::opossum();
        let mut b = Breaker::new(&spec);
        assert!(call(&mut b, &spec, ms(100), false));
        assert!(call(&mut b, &spec, ms(200), true)); // 1/2 = 50%, not > 50%
        assert_eq!(b.state(), Closed);
        assert!(call(&mut b, &spec, ms(300), true)); // 2/3
        assert_eq!(b.changes(), &[change(ms(300), Closed, Open)]);
    }

    /// 3 successes and 2 failures in the first second, a success and a failure at 5 s:
    /// 3/7 stays closed. One more failure is 4/8 = 50% (closed) while the first second is
    /// in the window, and 2/3 (open) once it has rolled out.
    fn opossum_rolling(last_failure_at: SimTime) -> Breaker {
        let spec = BreakerSpec::opossum();
        let mut b = Breaker::new(&spec);
        for (t, failure) in [
            (ms(0), false),
            (ms(0), false),
            (ms(0), false),
            (ms(100), true),
            (ms(200), true),
            (secs(5), false),
            (secs(5), true),
        ] {
            assert!(call(&mut b, &spec, t, failure));
        }
        assert_eq!(b.state(), Closed);
        assert!(call(&mut b, &spec, last_failure_at, true));
        b
    }

    #[test]
    fn opossum_window_rolls_old_failures_out() {
        let b = opossum_rolling(ms(9_999));
        assert_eq!(b.state(), Closed);
        let b = opossum_rolling(ms(10_000));
        assert_eq!(b.changes(), &[change(ms(10_000), Closed, Open)]);
    }

    #[test]
    fn opossum_rejections_count_as_calls() {
        let run = |count_rejections: bool| {
            let spec = BreakerSpec {
                open_for: SimDuration::from_secs(5),
                open_max: SimDuration::from_secs(5),
                count_rejections,
                count_at: CountAt::Outcome,
                ..BreakerSpec::opossum()
            };
            let mut b = Breaker::new(&spec);
            assert!(call(&mut b, &spec, secs(1), true));
            for t in [secs(2), secs(3), secs(4)] {
                assert!(!call(&mut b, &spec, t, false));
            }
            b.on_timer(&spec, secs(6));
            assert!(call(&mut b, &spec, secs(6), false));
            assert_eq!(b.state(), Closed);
            // The window never reset: failure, 3 rejections, probe success, failure.
            assert!(call(&mut b, &spec, secs(7), true));
            b.state()
        };
        assert_eq!(run(true), Closed); // 2/6
        assert_eq!(run(false), Open); // 2/3
    }

    #[test]
    fn opossum_counts_calls_in_flight_when_fired() {
        // `fire` is counted as the call starts (circuit.js:656) and the rate is
        // failures / fires (circuit.js:993): three calls still in flight dilute it.
        let spec = BreakerSpec::opossum();
        let mut b = Breaker::new(&spec);
        let in_flight: Vec<Permit> = (0..3)
            .map(|_| b.try_acquire(&spec, ms(0)).expect("closed"))
            .collect();
        assert!(call(&mut b, &spec, ms(100), true)); // 1/4 = 25%
        assert!(call(&mut b, &spec, ms(200), true)); // 2/5 = 40%
        assert_eq!(b.state(), Closed);
        assert!(call(&mut b, &spec, ms(300), true)); // 3/6 = 50%, not > 50%
        assert_eq!(b.state(), Closed);
        b.record(&spec, ms(400), in_flight[0], true, SimDuration::ZERO); // 4/6
        assert_eq!(b.changes(), &[change(ms(400), Closed, Open)]);
        // Counted at the outcome instead, the first failure is 1/1 and opens at once.
        let spec = BreakerSpec {
            count_at: CountAt::Outcome,
            ..BreakerSpec::opossum()
        };
        let mut b = Breaker::new(&spec);
        for _ in 0..3 {
            b.try_acquire(&spec, ms(0)).expect("closed");
        }
        assert!(call(&mut b, &spec, ms(100), true));
        assert_eq!(b.changes(), &[change(ms(100), Closed, Open)]);
    }

    #[test]
    fn opossum_failure_whose_fire_rolled_out_opens() {
        // Fired at 0.5 s, failed at 10.5 s: its fire left with bucket 0 at 10 s, so the
        // window holds 1 failure and 0 fires: 1 / 0 * 100 = Infinity > 50.
        let spec = BreakerSpec::opossum();
        let mut b = Breaker::new(&spec);
        let p = b.try_acquire(&spec, ms(500)).expect("closed");
        b.record(&spec, ms(10_500), p, true, SimDuration::ZERO);
        assert_eq!(b.changes(), &[change(ms(10_500), Closed, Open)]);
    }

    #[test]
    fn opossum_late_success_while_half_open_closes() {
        // A call fired at 0 answers while half-open: opossum's `success` handler closes
        // whatever call it came from (circuit.js:349-352).
        let run = |late: LateOutcomes| {
            let spec = BreakerSpec {
                late_outcomes: late,
                ..BreakerSpec::opossum()
            };
            let mut b = Breaker::new(&spec);
            let slow = b.try_acquire(&spec, secs(0)).expect("closed");
            assert!(call(&mut b, &spec, secs(1), true)); // 1/2
            assert!(call(&mut b, &spec, secs(1), true)); // 2/3: open
            b.on_timer(&spec, secs(31));
            b.record(&spec, ms(31_500), slow, false, SimDuration::ZERO);
            b
        };
        assert_eq!(
            run(LateOutcomes::Current).changes(),
            &[
                change(secs(1), Closed, Open),
                change(secs(31), Open, HalfOpen),
                change(ms(31_500), HalfOpen, Closed),
            ]
        );
        assert_eq!(run(LateOutcomes::Ignore).state(), HalfOpen);
    }

    // ---- resilience4j ----

    #[test]
    fn r4j_opens_only_once_minimum_calls_are_in() {
        let spec = BreakerSpec::resilience4j();
        let mut b = Breaker::new(&spec);
        for i in 0..99 {
            assert!(call(&mut b, &spec, ms(i), true));
        }
        assert_eq!(b.state(), Closed);
        // Checked after every call: a success can be the call that opens.
        assert!(call(&mut b, &spec, ms(99), false));
        assert_eq!(b.changes(), &[change(ms(99), Closed, Open)]);
    }

    #[test]
    fn r4j_threshold_is_inclusive() {
        let run = |failures: u64| {
            let spec = BreakerSpec::resilience4j();
            let mut b = Breaker::new(&spec);
            for i in 0..100 {
                assert!(call(&mut b, &spec, ms(i), i < failures));
            }
            b
        };
        assert_eq!(run(49).state(), Closed);
        assert_eq!(run(50).changes(), &[change(ms(99), Closed, Open)]);
    }

    #[test]
    fn r4j_count_window_slides() {
        let spec = BreakerSpec::resilience4j();
        let mut b = Breaker::new(&spec);
        for i in 0..100 {
            assert!(call(&mut b, &spec, ms(i), i >= 51)); // 51 successes, 49 failures
        }
        assert_eq!(b.state(), Closed);
        // Pushes out the oldest success: 50 of the last 100.
        assert!(call(&mut b, &spec, ms(100), true));
        assert_eq!(b.changes(), &[change(ms(100), Closed, Open)]);
    }

    #[test]
    fn r4j_minimum_is_capped_at_the_count_window() {
        let spec = BreakerSpec {
            window: BreakerWindow::Count { calls: 10 },
            ..BreakerSpec::resilience4j()
        };
        let mut b = Breaker::new(&spec);
        for i in 0..10 {
            assert!(call(&mut b, &spec, ms(i), i % 2 == 0));
        }
        assert_eq!(b.changes(), &[change(ms(9), Closed, Open)]);
    }

    /// 100 failures at 1 s: open from 1 s to 61 s.
    fn r4j_opened() -> (BreakerSpec, Breaker) {
        let spec = BreakerSpec::resilience4j();
        let mut b = Breaker::new(&spec);
        for _ in 0..100 {
            assert!(call(&mut b, &spec, secs(1), true));
        }
        assert_eq!(b.changes(), &[change(secs(1), Closed, Open)]);
        (spec, b)
    }

    #[test]
    fn r4j_half_opens_lazily_on_the_first_call_after_the_wait() {
        let (spec, mut b) = r4j_opened();
        assert_eq!(b.timer_due(&spec), None);
        assert!(b.try_acquire(&spec, ms(60_999)).is_none());
        // No timer in lazy mode: nothing happens until a call comes.
        b.on_timer(&spec, secs(61));
        assert_eq!(b.state(), Open);
        assert!(b.try_acquire(&spec, secs(62)).is_some());
        assert_eq!(
            b.changes(),
            &[
                change(secs(1), Closed, Open),
                change(secs(62), Open, HalfOpen)
            ]
        );
    }

    /// Just after `t`: resilience4j half-opens only strictly after the open time.
    fn after(t: SimTime) -> SimTime {
        t + SimDuration::from_nanos(1)
    }

    #[test]
    fn r4j_half_open_admits_ten_probes() {
        let (spec, mut b) = r4j_opened();
        let probes: Vec<Permit> = (0..10)
            .map(|_| b.try_acquire(&spec, after(secs(61))).expect("probe"))
            .collect();
        assert_eq!(probes.len(), 10);
        assert!(b.try_acquire(&spec, after(secs(61))).is_none());
        assert_eq!(b.state(), HalfOpen);
    }

    #[test]
    fn r4j_refuses_a_call_exactly_at_the_open_end() {
        // OpenState.tryAcquirePermission: `clock.instant().isAfter(retryAfterWaitDuration)`
        // (CircuitBreakerStateMachine.java:725), strictly after 1 s + 60 s.
        let (spec, mut b) = r4j_opened();
        assert!(b.try_acquire(&spec, secs(61)).is_none());
        assert_eq!(b.state(), Open);
        assert!(b.try_acquire(&spec, after(secs(61))).is_some());
        assert_eq!(b.changes()[1..], [change(after(secs(61)), Open, HalfOpen)]);
        // Polly's `now >= _blockedUntil` (CircuitStateController.cs:308) admits at the end.
        let spec = BreakerSpec {
            open_end: OpenEnd::Inclusive,
            ..BreakerSpec::resilience4j()
        };
        let mut b = Breaker::new(&spec);
        for _ in 0..100 {
            assert!(call(&mut b, &spec, secs(1), true));
        }
        assert!(b.try_acquire(&spec, secs(61)).is_some());
    }

    /// Ten probes at 61 s answered at 62 s + i ms, the first `failures` of them failing.
    fn r4j_probes(failures: u32) -> Breaker {
        let (spec, mut b) = r4j_opened();
        let probes: Vec<Permit> = (0..10)
            .map(|_| b.try_acquire(&spec, after(secs(61))).expect("probe"))
            .collect();
        for (i, probe) in probes.into_iter().enumerate() {
            // No verdict before every probe has answered.
            assert_eq!(b.state(), HalfOpen);
            let at = ms(62_000 + i as u64);
            b.record(&spec, at, probe, (i as u32) < failures, SimDuration::ZERO);
        }
        b
    }

    #[test]
    fn r4j_probe_verdict_uses_the_threshold() {
        let b = r4j_probes(5); // 50% >= 50%
        assert_eq!(b.changes()[2..], [change(ms(62_009), HalfOpen, Open)]);
        let b = r4j_probes(4);
        assert_eq!(b.changes()[2..], [change(ms(62_009), HalfOpen, Closed)]);
    }

    #[test]
    fn r4j_resets_stats_on_transition() {
        let mut b = r4j_probes(0);
        let spec = BreakerSpec::resilience4j();
        assert_eq!(b.state(), Closed);
        // Without the reset the window would hold 90 old failures and this would open.
        assert!(call(&mut b, &spec, secs(63), true));
        for _ in 0..98 {
            assert!(call(&mut b, &spec, secs(64), true));
        }
        assert_eq!(b.state(), Closed);
        assert!(call(&mut b, &spec, secs(65), true));
        assert_eq!(b.changes()[3..], [change(secs(65), Closed, Open)]);
    }

    #[test]
    fn r4j_slow_calls_open() {
        let run = |slow_calls: u32, slow: SimDuration| {
            let spec = BreakerSpec::resilience4j();
            let mut b = Breaker::new(&spec);
            for i in 0..100 {
                let d = if i < slow_calls {
                    slow
                } else {
                    SimDuration::from_secs(1)
                };
                assert!(call_taking(&mut b, &spec, ms(u64::from(i)), false, d));
            }
            b
        };
        let over = SimDuration::from_secs(60) + SimDuration::from_nanos(1);
        assert_eq!(run(100, over).changes(), &[change(ms(99), Closed, Open)]);
        // Slow means strictly longer than the threshold, and 99% < 100%.
        assert_eq!(run(100, SimDuration::from_secs(60)).state(), Closed);
        assert_eq!(run(99, over).state(), Closed);
    }

    #[test]
    fn r4j_late_outcome_counts_among_the_half_open_probes() {
        // Outcomes go to the current state (CircuitBreakerStateMachine.java:215/219), and
        // the half-open state decides once its window of 10 is full (:1144-1178).
        let spec = BreakerSpec::resilience4j();
        let mut b = Breaker::new(&spec);
        let early = b.try_acquire(&spec, secs(1)).expect("closed");
        for _ in 0..99 {
            assert!(call(&mut b, &spec, secs(1), true)); // 99 of 99, below the minimum
        }
        assert_eq!(b.state(), Closed);
        assert!(call(&mut b, &spec, secs(1), true));
        assert_eq!(b.state(), Open);
        let probes: Vec<Permit> = (0..10)
            .map(|_| b.try_acquire(&spec, after(secs(61))).expect("probe"))
            .collect();
        b.record(&spec, secs(62), early, false, SimDuration::ZERO);
        for &p in &probes[..9] {
            b.record(&spec, secs(63), p, false, SimDuration::ZERO);
        }
        // The tenth outcome was the late one: closed before the last probe answered,
        // which then counts in the closed state's fresh window.
        assert_eq!(b.changes()[2..], [change(secs(63), HalfOpen, Closed)]);
        b.record(&spec, secs(64), probes[9], true, SimDuration::ZERO);
        assert_eq!(b.state(), Closed);
    }

    // ---- Polly ----

    /// 100 calls 100 ms apart from t=0; the calls for which `failing(i)` holds fail.
    fn polly_hundred(failing: impl Fn(u64) -> bool) -> (BreakerSpec, Breaker) {
        let spec = BreakerSpec::polly();
        let mut b = Breaker::new(&spec);
        for i in 0..100 {
            assert!(call(&mut b, &spec, ms(i * 100), failing(i)));
        }
        (spec, b)
    }

    #[test]
    fn polly_opens_at_ten_percent() {
        let (_, b) = polly_hundred(|i| i >= 90);
        assert_eq!(b.changes(), &[change(ms(9_900), Closed, Open)]);
        let (_, b) = polly_hundred(|i| i >= 91); // 9%
        assert_eq!(b.state(), Closed);
    }

    #[test]
    fn polly_checks_only_on_failures() {
        // 10% after the 100th call, but that call succeeded: no check.
        let (spec, mut b) = polly_hundred(|i| i < 10);
        assert_eq!(b.state(), Closed);
        assert!(call(&mut b, &spec, ms(10_000), true)); // 11/101
        assert_eq!(b.changes(), &[change(ms(10_000), Closed, Open)]);
    }

    #[test]
    fn polly_time_window_forgets_old_calls() {
        let (spec, mut b) = polly_hundred(|i| i >= 91);
        // 30 s in 3 s buckets: at 40 s only calls from 12 s on are in the window.
        assert!(call(&mut b, &spec, secs(40), true));
        assert_eq!(b.state(), Closed);
    }

    #[test]
    fn polly_single_lazy_probe_closes_and_resets() {
        let (spec, mut b) = polly_hundred(|i| i >= 90);
        assert!(b.try_acquire(&spec, ms(14_899)).is_none());
        let probe = b
            .try_acquire(&spec, ms(14_900))
            .expect("the first call is the probe");
        assert!(b.try_acquire(&spec, ms(14_900)).is_none());
        b.record(&spec, secs(15), probe, false, SimDuration::ZERO);
        // Without the reset, 11/102 in the window would open again.
        assert!(call(&mut b, &spec, ms(15_100), true));
        assert_eq!(
            b.changes(),
            &[
                change(ms(9_900), Closed, Open),
                change(ms(14_900), Open, HalfOpen),
                change(secs(15), HalfOpen, Closed),
            ]
        );
    }

    #[test]
    fn polly_probe_failure_reopens_for_another_break() {
        let (spec, mut b) = polly_hundred(|i| i >= 90);
        assert!(call(&mut b, &spec, secs(15), true));
        assert!(b.try_acquire(&spec, ms(19_999)).is_none());
        assert!(b.try_acquire(&spec, secs(20)).is_some());
        assert_eq!(
            b.changes(),
            &[
                change(ms(9_900), Closed, Open),
                change(secs(15), Open, HalfOpen),
                change(secs(15), HalfOpen, Open),
                change(secs(20), Open, HalfOpen),
            ]
        );
    }

    #[test]
    fn polly_buckets_start_at_the_first_outcome() {
        // RollingHealthMetrics.cs:48-60: 3 s buckets started by outcomes, dropped once
        // 30 s old. The failure at 1 s starts a bucket that is still in at 30.9 s (29.9 s
        // old): 2 of 4 failed. Clock-aligned buckets would have let it go at 30 s: 1 of 3.
        let run = |start: BucketStart| {
            let spec = BreakerSpec {
                minimum_calls: 2,
                failure_rate: 0.5,
                bucket_start: start,
                ..BreakerSpec::polly()
            };
            let mut b = Breaker::new(&spec);
            for (t, failure) in [
                (ms(1_000), true),
                (ms(29_500), false),
                (ms(29_600), false),
                (ms(30_900), true),
            ] {
                assert!(call(&mut b, &spec, t, failure));
            }
            b
        };
        assert_eq!(
            run(BucketStart::FirstOutcome).changes(),
            &[change(ms(30_900), Closed, Open)]
        );
        assert_eq!(run(BucketStart::Clock).state(), Closed);
    }

    #[test]
    fn polly_bucket_leaves_exactly_a_window_after_it_started() {
        // A bucket started at 0.5 s is dropped at 30.5 s (`>= SamplingDuration`), not
        // before; a new bucket starts only 3 s after the current one (3.4 s joins the
        // first, 3.5 s starts the second).
        let spec = BreakerSpec {
            minimum_calls: 4,
            failure_rate: 0.5,
            ..BreakerSpec::polly()
        };
        let run = |last: SimTime| {
            let mut b = Breaker::new(&spec);
            for (t, failure) in [
                (ms(500), true),
                (ms(3_400), true),
                (ms(3_500), false),
                (ms(3_600), false),
                (ms(3_700), false),
            ] {
                assert!(call(&mut b, &spec, t, failure));
            }
            assert!(call(&mut b, &spec, last, true));
            b.state()
        };
        // 3 of 6 while the first bucket is in; 1 of 4 once it has left.
        assert_eq!(run(SimTime::from_nanos(30_500_000_000 - 1)), Open);
        assert_eq!(run(ms(30_500)), Closed);
    }

    #[test]
    fn polly_late_failure_while_half_open_reopens() {
        // CircuitStateController.cs:231: any failure while half-open opens again; the
        // probe's own success, arriving while open, is only recorded (:199-200).
        let spec = BreakerSpec {
            minimum_calls: 1,
            ..BreakerSpec::polly()
        };
        let run = |late: LateOutcomes| {
            let spec = BreakerSpec {
                late_outcomes: late,
                ..spec.clone()
            };
            let mut b = Breaker::new(&spec);
            let early = b.try_acquire(&spec, secs(0)).expect("closed");
            assert!(call(&mut b, &spec, secs(1), true)); // 1/1: open until 6 s
            let probe = b.try_acquire(&spec, secs(6)).expect("probe");
            b.record(&spec, ms(6_500), early, true, SimDuration::ZERO);
            b.record(&spec, secs(7), probe, false, SimDuration::ZERO);
            b.changes().to_vec()
        };
        assert_eq!(
            run(LateOutcomes::Current),
            [
                change(secs(1), Closed, Open),
                change(secs(6), Open, HalfOpen),
                change(ms(6_500), HalfOpen, Open),
            ]
        );
        assert_eq!(
            run(LateOutcomes::Ignore),
            [
                change(secs(1), Closed, Open),
                change(secs(6), Open, HalfOpen),
                change(secs(7), HalfOpen, Closed),
            ]
        );
    }

    // ---- shared mechanics ----

    #[test]
    fn open_time_grows_on_reopen_up_to_the_cap() {
        let spec = BreakerSpec {
            window: BreakerWindow::Count { calls: 1 },
            open_for: SimDuration::from_secs(10),
            open_growth: 2.0,
            open_max: SimDuration::from_secs(30),
            transition: Transition::Lazy,
            count_at: CountAt::Outcome,
            ..BreakerSpec::opossum()
        };
        let mut b = Breaker::new(&spec);
        assert!(call(&mut b, &spec, secs(0), true));
        // Open 10 s, 20 s, then 40 s capped at 30 s; each probe at the end fails.
        for end in [10, 30, 60] {
            assert!(!call(
                &mut b,
                &spec,
                SimTime::from_nanos(end * 1_000_000_000 - 1),
                true
            ));
            assert_eq!(b.state(), Open);
            assert!(call(&mut b, &spec, secs(end), end != 60));
        }
        assert_eq!(b.state(), Closed);
        // A close resets the growth: back to 10 s.
        assert!(call(&mut b, &spec, secs(61), true));
        assert!(!call(&mut b, &spec, ms(70_999), false));
        assert!(call(&mut b, &spec, secs(71), false));
        assert_eq!(b.time_open(secs(100)), SimDuration::from_secs(70));
        assert_eq!(b.time_open(secs(5)), SimDuration::from_secs(5));
        assert_eq!(b.time_open(secs(65)), SimDuration::from_secs(64));
        let expected: Vec<StateChange> = [
            (0, Closed, Open),
            (10, Open, HalfOpen),
            (10, HalfOpen, Open),
            (30, Open, HalfOpen),
            (30, HalfOpen, Open),
            (60, Open, HalfOpen),
            (60, HalfOpen, Closed),
            (61, Closed, Open),
            (71, Open, HalfOpen),
            (71, HalfOpen, Closed),
        ]
        .into_iter()
        .map(|(s, from, to)| change(secs(s), from, to))
        .collect();
        assert_eq!(b.changes(), expected);
    }

    #[test]
    fn stale_outcomes_are_ignored() {
        let spec = BreakerSpec {
            late_outcomes: LateOutcomes::Ignore,
            count_at: CountAt::Outcome,
            ..BreakerSpec::opossum()
        };
        let mut b = Breaker::new(&spec);
        let early = b.try_acquire(&spec, secs(0)).expect("closed");
        let late = b.try_acquire(&spec, secs(0)).expect("closed");
        assert!(call(&mut b, &spec, secs(1), true));
        assert_eq!(b.state(), Open);
        // Admitted while closed, failed while open: not counted anywhere.
        b.record(&spec, secs(2), early, true, SimDuration::ZERO);
        b.on_timer(&spec, secs(31));
        let probe = b.try_acquire(&spec, secs(31)).expect("probe");
        // Neither re-opens the half-open breaker nor passes for the probe.
        b.record(&spec, ms(31_500), late, true, SimDuration::ZERO);
        assert_eq!(b.state(), HalfOpen);
        b.record(&spec, secs(32), probe, false, SimDuration::ZERO);
        assert_eq!(
            b.changes(),
            &[
                change(secs(1), Closed, Open),
                change(secs(31), Open, HalfOpen),
                change(secs(32), HalfOpen, Closed),
            ]
        );
        // The probe of a finished half-open period is stale too.
        assert!(call(&mut b, &spec, secs(33), false));
        b.record(&spec, secs(34), probe, true, SimDuration::ZERO);
        assert_eq!(b.state(), Closed);
    }

    #[test]
    fn on_failure_probe_failure_reopens_without_waiting_for_the_rest() {
        let spec = BreakerSpec {
            half_open_probes: 3,
            transition: Transition::Lazy,
            ..BreakerSpec::opossum()
        };
        let mut b = Breaker::new(&spec);
        assert!(call(&mut b, &spec, secs(0), true));
        let probes: Vec<Permit> = (0..3)
            .map(|_| b.try_acquire(&spec, secs(30)).expect("probe"))
            .collect();
        b.record(&spec, secs(31), probes[0], false, SimDuration::ZERO);
        assert_eq!(b.state(), HalfOpen);
        // 1 of 3 would be under 50%, but opossum re-opens on any half-open failure.
        b.record(&spec, secs(32), probes[1], true, SimDuration::ZERO);
        assert_eq!(b.state(), Open);
        b.record(&spec, secs(33), probes[2], false, SimDuration::ZERO);
        assert_eq!(
            b.changes(),
            &[
                change(secs(0), Closed, Open),
                change(secs(30), Open, HalfOpen),
                change(secs(32), HalfOpen, Open),
            ]
        );
    }

    #[test]
    fn on_failure_checks_slow_calls_and_a_failed_probe_reopens_whatever_the_rate() {
        // Failures alone can never trip (> 100% is impossible); slow calls can.
        let spec = BreakerSpec {
            failure_rate: 1.0,
            slow_call: Some(SlowCall {
                duration: SimDuration::from_secs(1),
                rate: 0.5,
            }),
            ..BreakerSpec::opossum()
        };
        let mut b = Breaker::new(&spec);
        assert!(call(&mut b, &spec, secs(0), true));
        assert_eq!(b.state(), Closed);
        let slow = SimDuration::from_secs(2);
        assert!(call_taking(&mut b, &spec, secs(1), false, slow)); // 1/2 slow, not > 50%
        assert_eq!(b.state(), Closed);
        assert!(call_taking(&mut b, &spec, secs(2), false, slow)); // 2/3 slow
        assert_eq!(b.state(), Open);
        b.on_timer(&spec, secs(32));
        // The probe's failure rate is 1/1, not > 100%, yet the probe failing re-opens.
        assert!(call(&mut b, &spec, secs(32), true));
        assert_eq!(
            b.changes(),
            &[
                change(secs(2), Closed, Open),
                change(secs(32), Open, HalfOpen),
                change(secs(32), HalfOpen, Open),
            ]
        );
    }

    #[test]
    fn time_window_bucket_edges() {
        let mut w = Window::new(
            &BreakerWindow::Time {
                buckets: 10,
                bucket: SimDuration::from_secs(1),
            },
            BucketStart::Clock,
        );
        w.add(ms(999), Outcome::REJECTED);
        w.add(
            ms(1_000),
            Outcome {
                call: true,
                failure: true,
                slow: false,
            },
        );
        assert_eq!(w.tally(ms(9_999)).calls, 2);
        // At 10 s the window is buckets 1..=10: the call at 0.999 s has left.
        let t = w.tally(ms(10_000));
        assert_eq!((t.calls, t.failures), (1, 1));
        assert_eq!(w.tally(ms(11_000)).calls, 0);
        // A new call landing on a slot of an old bucket starts it afresh.
        w.add(ms(20_500), Outcome::REJECTED);
        assert_eq!(w.tally(ms(20_500)).calls, 1);
    }
}
