//! Client policies: what a caller does around every call — timeouts and deadlines,
//! retries with backoff and budgets, a circuit breaker, a bulkhead, a rate limiter,
//! hedging. The specs are built by the scenario layer (with library presets); the
//! small runtime pieces that are pure arithmetic (token bucket, retry budgets, gRPC
//! retry throttling) live here too, so they can be tested without a world.

use super::backoff::Backoff;
use super::breaker::BreakerSpec;
use super::status::Status;
use crate::engine::{SimDuration, SimTime};

/// A set of status codes, e.g. the retryable ones.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatusSet(u16);

impl StatusSet {
    pub const EMPTY: StatusSet = StatusSet(0);

    pub fn of(statuses: &[Status]) -> StatusSet {
        let mut s = StatusSet::EMPTY;
        for &st in statuses {
            s.insert(st);
        }
        s
    }
    pub fn insert(&mut self, s: Status) {
        self.0 |= 1 << s.index();
    }
    pub fn contains(self, s: Status) -> bool {
        self.0 & (1 << s.index()) != 0
    }
    pub fn iter(self) -> impl Iterator<Item = Status> {
        Status::ALL.into_iter().filter(move |s| self.contains(*s))
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum RetryBudget {
    /// Finagle: retries may add at most `percent` of the requests of the last `ttl`,
    /// plus `min_per_s` retries per second whatever the traffic.
    Rate {
        percent: f64,
        min_per_s: f64,
        ttl: SimDuration,
    },
    /// Envoy: retries in flight may be at most `percent` of the requests in flight,
    /// and at least `min` (min_retry_concurrency).
    Concurrency { percent: f64, min: u32 },
}

/// gRPC retry throttling: tokens start at `max_tokens`; each failure with a retryable
/// status takes one, each success gives back `token_ratio`; retries are allowed only
/// while tokens > max_tokens / 2.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Throttle {
    pub max_tokens: f64,
    pub token_ratio: f64,
}

/// The callee's retry hint with a failed answer: gRPC's `grpc-retry-pushback-ms`, HTTP's
/// Retry-After.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pushback {
    /// Retry after exactly this long; zero retries at once.
    After(SimDuration),
    /// Do not retry: a negative (or unparsable) pushback (gRFC A6 "Pushback").
    Stop,
}

impl Pushback {
    /// The hint as it travels in a reply: 0 none, `u32::MAX` stop, otherwise whole
    /// milliseconds (rounded up, as the gRPC header carries them) plus one.
    pub fn to_wire(hint: Option<Pushback>) -> u32 {
        match hint {
            None => 0,
            Some(Pushback::Stop) => u32::MAX,
            Some(Pushback::After(d)) => u32::try_from(d.as_nanos().div_ceil(1_000_000))
                .map_or(u32::MAX - 1, |ms| ms.saturating_add(1).min(u32::MAX - 1)),
        }
    }

    pub fn from_wire(wire: u32) -> Option<Pushback> {
        match wire {
            0 => None,
            u32::MAX => Some(Pushback::Stop),
            ms => Some(Pushback::After(SimDuration::from_millis(u64::from(ms - 1)))),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct RetrySpec {
    /// Attempts in all, the original included (gRPC and resilience4j count this way;
    /// axios-retry, Envoy and Polly count retries: theirs is this minus one).
    pub max_attempts: u32,
    pub backoff: Backoff,
    pub retry_on: StatusSet,
    /// Honour the callee's retry-after hint (gRPC pushback, HTTP Retry-After): wait
    /// exactly that long before the next attempt, then restart the backoff from its first
    /// wait (gRFC A6); `Pushback::Stop` ends the call.
    pub pushback: bool,
    /// grpc-java: a pushback to retry retries even a status not in `retry_on`
    /// (RetriableStream.java:1089-1092 does not look at the status). grpc-go and gRFC A6
    /// retry only an "otherwise eligible" status (stream.go:847-850).
    pub pushback_any_status: bool,
    pub budget: Option<RetryBudget>,
    pub throttle: Option<Throttle>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BulkheadSpec {
    pub max_concurrent: u32,
    /// How long an attempt may wait for a slot; zero rejects at once.
    pub max_wait: SimDuration,
}

/// A token bucket: `rate_per_s` tokens a second, at most `burst` saved up.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimitSpec {
    pub rate_per_s: f64,
    pub burst: f64,
    /// How long an attempt may wait for a token; zero rejects at once.
    pub max_wait: SimDuration,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HedgeSpec {
    /// After this long without an answer, another attempt goes out.
    pub delay: SimDuration,
    /// Attempts in all, the original included.
    pub max_attempts: u32,
    /// Failures that let the other attempts carry on; any other status is fatal and
    /// ends the call at once, cancelling the rest.
    pub non_fatal: StatusSet,
    /// gRPC throttling: a non-fatal failure takes a token, an ok answer gives back
    /// `token_ratio`, and a hedge goes out only while tokens > max_tokens / 2.
    pub throttle: Option<Throttle>,
    /// Honour the callee's pushback: `Stop` sends no further hedges.
    pub pushback: bool,
    pub follows: HedgeRules,
}

/// gRFC A6 and grpc-java disagree on hedging (grpc-go implements none: stream.go:724).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HedgeRules {
    /// gRFC A6, "Summary of Retry and Hedging Logic": a non-fatal failure sends the next
    /// hedge at once (a pushback of n ms: n ms later), and the ones after it resume at
    /// `delay`; a failure that leaves the throttle at or below its threshold stops new
    /// hedges but lets those sent carry on.
    A6,
    /// grpc-java `RetriableStream`: a non-fatal failure leaves the next hedge on its
    /// timer (`pushbackHedging(null)` does nothing, :434-437), a positive pushback sends
    /// it at once (:1108-1110), and a failure that leaves the throttle at or below its
    /// threshold is not hedgeable: the call fails with it, cancelling the rest
    /// (:1112, then `commitAndRun` at :1052).
    GrpcJava,
}

/// What a failed call turns into when the policy has a fallback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fallback {
    Status(Status),
    /// Ok, marked degraded (e.g. a cached or default answer).
    Degraded,
}

/// What the circuit breaker counts as a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailureFilter {
    pub statuses: StatusSet,
    /// The caller's own per-try timeout (opossum and resilience4j count it).
    pub timeouts: bool,
    /// A full bulkhead (opossum counts capacity rejections; resilience4j records
    /// BulkheadFullException). When false it counts as a success, like opossum's
    /// filtered errors: the breaker's permit is always given back with an outcome.
    pub rejections: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PolicySpec {
    pub name: String,
    /// Each attempt's own timeout.
    pub try_timeout: Option<SimDuration>,
    /// The whole call's budget, every attempt and wait included.
    pub deadline: Option<SimDuration>,
    /// Send the remaining budget with each attempt; the callee's own calls inherit it.
    pub propagate_deadline: bool,
    pub retry: Option<RetrySpec>,
    pub breaker: Option<BreakerSpec>,
    pub failure: FailureFilter,
    pub fallback: Option<Fallback>,
    pub bulkhead: Option<BulkheadSpec>,
    pub rate_limit: Option<RateLimitSpec>,
    pub hedge: Option<HedgeSpec>,
    pub protocol: Option<ProtocolSpec>,
    pub cache: Option<CacheSpec>,
}

/// A TTL cache in front of the call, keyed by the request's key (from the workload's
/// key space). The cached value changes at the source as a Poisson process of
/// `change_rate` per key per second, so a hit `age` seconds old is stale with
/// probability 1 - exp(-change_rate x age).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CacheSpec {
    pub ttl: SimDuration,
    pub change_rate: f64,
}

impl PolicySpec {
    /// The gRPC throttle, shared by retries and hedges (a policy has one or the other).
    pub fn throttle(&self) -> Option<&Throttle> {
        self.retry
            .as_ref()
            .and_then(|r| r.throttle.as_ref())
            .or(self.hedge.as_ref().and_then(|h| h.throttle.as_ref()))
    }

    /// No policy at all: one attempt, no timeout.
    pub fn none(name: &str) -> PolicySpec {
        PolicySpec {
            name: name.to_owned(),
            try_timeout: None,
            deadline: None,
            propagate_deadline: false,
            retry: None,
            breaker: None,
            // Every error counts against a breaker unless `failure_on` says otherwise
            // (resilience4j, Polly and opossum all count every exception by default).
            failure: FailureFilter {
                statuses: all_errors(),
                timeouts: true,
                rejections: true,
            },
            fallback: None,
            bulkhead: None,
            rate_limit: None,
            hedge: None,
            protocol: None,
            cache: None,
        }
    }
}

// ---- runtime pieces ----

/// Token bucket state. Tokens may go negative: a waiting caller reserves a future token.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    tokens: f64,
    at: SimTime,
}

impl TokenBucket {
    pub fn new(spec: &RateLimitSpec) -> Self {
        TokenBucket {
            tokens: spec.burst,
            at: SimTime::ZERO,
        }
    }

    fn refill(&mut self, spec: &RateLimitSpec, now: SimTime) {
        let dt = now.saturating_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + dt * spec.rate_per_s).min(spec.burst);
        self.at = self.at.max(now);
    }

    /// Takes a token: `Some(ZERO)` now, `Some(wait)` once a reserved token arrives
    /// within `max_wait`, or `None` (rejected).
    pub fn take(&mut self, spec: &RateLimitSpec, now: SimTime) -> Option<SimDuration> {
        self.refill(spec, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Some(SimDuration::ZERO);
        }
        let wait = SimDuration::from_secs_f64((1.0 - self.tokens) / spec.rate_per_s);
        if wait <= spec.max_wait {
            self.tokens -= 1.0;
            Some(wait)
        } else {
            None
        }
    }
}

/// Finagle-style budget over a sliding window of 10 buckets spanning `ttl`.
#[derive(Clone, Debug)]
pub struct RateBudget {
    bucket: SimDuration,
    /// (bucket number, requests, retries), the last 10 buckets.
    slots: [(u64, u64, u64); 10],
}

impl RateBudget {
    pub fn new(ttl: SimDuration) -> Self {
        RateBudget {
            bucket: SimDuration::from_nanos((ttl.as_nanos() / 10).max(1)),
            slots: [(u64::MAX, 0, 0); 10],
        }
    }

    fn slot(&mut self, now: SimTime) -> &mut (u64, u64, u64) {
        let n = now.as_nanos() / self.bucket.as_nanos();
        let s = &mut self.slots[(n % 10) as usize];
        if s.0 != n {
            *s = (n, 0, 0);
        }
        s
    }

    fn totals(&self, now: SimTime) -> (u64, u64) {
        let n = now.as_nanos() / self.bucket.as_nanos();
        self.slots
            .iter()
            .filter(|s| s.0 != u64::MAX && s.0 + 10 > n && s.0 <= n)
            .fold((0, 0), |(r, t), s| (r + s.1, t + s.2))
    }

    pub fn on_request(&mut self, now: SimTime) {
        self.slot(now).1 += 1;
    }

    /// May one more retry go out? If so it is counted.
    pub fn try_retry(
        &mut self,
        now: SimTime,
        percent: f64,
        min_per_s: f64,
        ttl: SimDuration,
    ) -> bool {
        let (requests, retries) = self.totals(now);
        let allowed = percent * requests as f64 + min_per_s * ttl.as_secs_f64();
        if (retries + 1) as f64 <= allowed {
            self.slot(now).2 += 1;
            true
        } else {
            false
        }
    }
}

/// gRPC throttling tokens.
#[derive(Clone, Copy, Debug)]
pub struct ThrottleTokens(f64);

impl ThrottleTokens {
    pub fn new(t: &Throttle) -> Self {
        ThrottleTokens(t.max_tokens)
    }
    pub fn on_success(&mut self, t: &Throttle) {
        self.0 = (self.0 + t.token_ratio).min(t.max_tokens);
    }
    pub fn on_retryable_failure(&mut self) {
        self.0 = (self.0 - 1.0).max(0.0);
    }
    pub fn allows_retry(&self, t: &Throttle) -> bool {
        self.0 > t.max_tokens / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: u64) -> SimTime {
        SimTime::from_nanos(ms * 1_000_000)
    }

    #[test]
    fn token_bucket_allows_a_burst_then_the_rate() {
        let spec = RateLimitSpec {
            rate_per_s: 10.0,
            burst: 2.0,
            max_wait: SimDuration::ZERO,
        };
        let mut b = TokenBucket::new(&spec);
        assert_eq!(b.take(&spec, t(0)), Some(SimDuration::ZERO));
        assert_eq!(b.take(&spec, t(0)), Some(SimDuration::ZERO));
        assert_eq!(b.take(&spec, t(0)), None, "the burst is spent");
        assert_eq!(
            b.take(&spec, t(100)),
            Some(SimDuration::ZERO),
            "one token per 100 ms"
        );
        assert_eq!(b.take(&spec, t(150)), None);
        // With waiting allowed, the caller reserves the next token.
        let waiting = RateLimitSpec {
            max_wait: SimDuration::from_millis(100),
            ..spec
        };
        assert_eq!(b.take(&waiting, t(150)), Some(SimDuration::from_millis(50)));
        assert_eq!(
            b.take(&waiting, t(150)),
            None,
            "the next one is 150 ms away"
        );
    }

    #[test]
    fn rate_budget_caps_retries_at_the_percentage_plus_the_floor() {
        let ttl = SimDuration::from_secs(10);
        let mut b = RateBudget::new(ttl);
        for _ in 0..1000 {
            b.on_request(t(0));
        }
        // 20% of 1000 requests, no floor: exactly 200 retries.
        let granted = (0..500)
            .filter(|_| b.try_retry(t(0), 0.2, 0.0, ttl))
            .count();
        assert_eq!(granted, 200);
        // After the ttl the window is empty again.
        assert!(!b.try_retry(t(10_000), 0.2, 0.0, ttl));
        assert!(
            b.try_retry(t(10_000), 0.2, 1.0, ttl),
            "the floor of 1/s x 10 s allows 10"
        );
    }

    #[test]
    fn grpc_throttle_stops_retries_below_half_the_tokens() {
        let spec = Throttle {
            max_tokens: 10.0,
            token_ratio: 0.1,
        };
        let mut tokens = ThrottleTokens::new(&spec);
        for _ in 0..4 {
            tokens.on_retryable_failure();
        }
        assert!(tokens.allows_retry(&spec), "6 > 5");
        tokens.on_retryable_failure();
        assert!(!tokens.allows_retry(&spec), "5 is not > 5");
        for _ in 0..10 {
            tokens.on_success(&spec);
        }
        assert!(
            tokens.allows_retry(&spec),
            "10 successes give back one token"
        );
    }

    #[test]
    fn status_sets_hold_what_was_put_in() {
        let s = StatusSet::of(&[Status::Unavailable, Status::Internal]);
        assert!(s.contains(Status::Unavailable) && !s.contains(Status::NotFound));
        assert_eq!(s.iter().count(), 2);
    }
}

/// The presets that reproduce real libraries (`../shared/SEMANTICS.md`). A preset sets
/// every field to that library's defaults; fields written next to it override them.
pub const PRESETS: [&str; 7] = [
    "opossum",
    "resilience4j",
    "polly",
    "axios-retry",
    "grpc",
    "envoy",
    "finagle",
];

fn all_errors() -> StatusSet {
    let mut s = StatusSet::EMPTY;
    for st in Status::ALL.into_iter().filter(|s| !s.is_ok()) {
        s.insert(st);
    }
    s
}

impl PolicySpec {
    pub fn preset(name: &str, preset: &str) -> Option<PolicySpec> {
        use super::backoff::Backoff;
        let mut p = PolicySpec::none(name);
        match preset {
            // opossum: a breaker with a 10 s per-call timeout; no retries of its own.
            "opossum" => {
                p.try_timeout = Some(SimDuration::from_secs(10));
                p.breaker = Some(BreakerSpec::opossum());
            }
            // resilience4j: CircuitBreaker + Retry (3 attempts, 500 ms apart, every
            // error) + TimeLimiter (1 s per call).
            "resilience4j" => {
                p.try_timeout = Some(SimDuration::from_secs(1));
                p.breaker = Some(BreakerSpec::resilience4j());
                p.retry = Some(RetrySpec {
                    max_attempts: 3,
                    backoff: Backoff {
                        kind: super::backoff::BackoffKind::Fixed,
                        base: SimDuration::from_millis(500),
                        multiplier: 1.0,
                        cap: SimDuration::from_millis(500),
                        jitter: super::backoff::Jitter::None,
                    },
                    retry_on: all_errors(),
                    pushback: false,
                    pushback_any_status: false,
                    budget: None,
                    throttle: None,
                });
            }
            // Polly v8: circuit breaker + retry (3 retries, 2 s constant, every error).
            "polly" => {
                p.breaker = Some(BreakerSpec::polly());
                p.retry = Some(RetrySpec {
                    max_attempts: 4,
                    backoff: Backoff::polly(),
                    retry_on: all_errors(),
                    pushback: false,
                    pushback_any_status: false,
                    budget: None,
                    throttle: None,
                });
            }
            // axios-retry: 3 retries, exponentialDelay, on network errors, 429 and 5xx
            // answers; its own timeouts (ECONNABORTED) are not retried.
            "axios-retry" => {
                p.retry = Some(RetrySpec {
                    max_attempts: 4,
                    backoff: Backoff::axios_retry(),
                    retry_on: StatusSet::of(&[
                        Status::Unavailable,
                        Status::Internal,
                        Status::ResourceExhausted,
                    ]),
                    pushback: false,
                    pushback_any_status: false,
                    budget: None,
                    throttle: None,
                });
            }
            // gRPC (gRFC A6 example config): 4 attempts, 100 ms x2 up to 1 s, +-20%,
            // UNAVAILABLE only, pushback honoured, throttling 10 tokens / 0.1; deadlines
            // propagate.
            "grpc" => {
                p.propagate_deadline = true;
                p.retry = Some(RetrySpec {
                    max_attempts: 4,
                    backoff: Backoff::grpc(),
                    retry_on: StatusSet::of(&[Status::Unavailable]),
                    pushback: true,
                    pushback_any_status: false,
                    budget: None,
                    throttle: Some(Throttle {
                        max_tokens: 10.0,
                        token_ratio: 0.1,
                    }),
                });
            }
            // Envoy: 15 s route timeout over all attempts, 1 retry on 5xx with full
            // jitter from 25 ms, retry budget 20% (at least 3), 1024 concurrent requests.
            "envoy" => {
                p.deadline = Some(SimDuration::from_secs(15));
                p.retry = Some(RetrySpec {
                    max_attempts: 2,
                    backoff: Backoff::envoy(),
                    retry_on: StatusSet::of(&[
                        Status::Unavailable,
                        Status::Internal,
                        Status::DeadlineExceeded,
                    ]),
                    pushback: false,
                    pushback_any_status: false,
                    budget: Some(RetryBudget::Concurrency {
                        percent: 0.2,
                        min: 3,
                    }),
                    throttle: None,
                });
                p.bulkhead = Some(BulkheadSpec {
                    max_concurrent: 1024,
                    max_wait: SimDuration::ZERO,
                });
            }
            // Finagle: requeues of failed connections, at once, within the RetryBudget
            // (20% of requests plus 10/s over 10 s).
            "finagle" => {
                p.retry = Some(RetrySpec {
                    max_attempts: 25,
                    backoff: Backoff {
                        kind: super::backoff::BackoffKind::Fixed,
                        base: SimDuration::ZERO,
                        multiplier: 1.0,
                        cap: SimDuration::ZERO,
                        jitter: super::backoff::Jitter::None,
                    },
                    retry_on: StatusSet::of(&[Status::Unavailable]),
                    pushback: false,
                    pushback_any_status: false,
                    budget: Some(RetryBudget::Rate {
                        percent: 0.2,
                        min_per_s: 10.0,
                        ttl: SimDuration::from_secs(10),
                    }),
                    throttle: None,
                });
            }
            _ => return None,
        }
        Some(p)
    }
}

/// How calls travel (REST/JSON vs gRPC/protobuf). The preset numbers are illustrative
/// orders of magnitude for a small service on a LAN, not measurements: override them
/// with your own.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProtocolSpec {
    /// Per message, each way: headers, framing, syscalls.
    pub overhead: SimDuration,
    /// CPU per KB of payload to serialize (sender) and parse (receiver).
    pub encode_per_kb: SimDuration,
    pub decode_per_kb: SimDuration,
    /// A new connection per call (no keep-alive) pays this set-up (TCP + TLS).
    pub setup_per_call: Option<SimDuration>,
    pub pool: Pool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pool {
    /// HTTP/1.1: one request at a time per connection; callers queue for a free one.
    Http1 { max_connections: u32 },
    /// HTTP/2: many concurrent streams per connection.
    Http2 { connections: u32, max_streams: u32 },
}

impl Pool {
    /// Requests that may be in flight on the edge at once.
    pub fn slots(self) -> u32 {
        match self {
            Pool::Http1 { max_connections } => max_connections,
            Pool::Http2 {
                connections,
                max_streams,
            } => connections.saturating_mul(max_streams),
        }
    }
}

impl ProtocolSpec {
    pub fn preset(name: &str) -> Option<ProtocolSpec> {
        let us = SimDuration::from_micros;
        Some(match name {
            // HTTP/1.1 + JSON: text headers, JSON is slow to parse, a pool of 10
            // keep-alive connections (a common client default).
            "rest_json" => ProtocolSpec {
                overhead: us(150),
                encode_per_kb: us(15),
                decode_per_kb: us(25),
                setup_per_call: None,
                pool: Pool::Http1 {
                    max_connections: 10,
                },
            },
            // HTTP/2 + protobuf: compressed headers, binary payloads, one connection
            // multiplexing 100 streams (gRPC's usual limit).
            "grpc" => ProtocolSpec {
                overhead: us(50),
                encode_per_kb: us(3),
                decode_per_kb: us(4),
                setup_per_call: None,
                pool: Pool::Http2 {
                    connections: 1,
                    max_streams: 100,
                },
            },
            _ => return None,
        })
    }
}
