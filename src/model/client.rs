//! The client side of a call, under its edge's policy. A *logical call* is what the
//! caller's code asked for; it is carried out by one or more *attempts* (retries,
//! hedges), each of which passes the rate limiter, the circuit breaker and the
//! bulkhead, in that order, before it goes over the network. (resilience4j's
//! recommended order puts the breaker outside the rate limiter, so there a limiter
//! refusal counts as a breaker failure; here it does not.)

use super::arena::Id;
use super::breaker::{Breaker, Permit};
use super::policy::{
    BulkheadSpec, Fallback, HedgeRules, PolicySpec, Pushback, RateBudget, RetryBudget,
    ThrottleTokens, TokenBucket,
};
use super::spec::{EdgeId, Step, WindowTarget, WorkloadId};
use super::status::Status;
use super::world::{Event, NO_DEADLINE, Outcome, World};
use crate::engine::{Scheduler, SimDuration, SimTime, Stream, stream};
use std::collections::VecDeque;
use std::rc::Rc;

#[derive(Clone, Copy, Debug)]
pub(super) enum Origin {
    Workload { workload: WorkloadId, user: u32 },
    Fiber(Id),
}

pub(super) struct Logical {
    pub origin: Origin,
    pub edge: EdgeId,
    pub started_at: SimTime,
    pub measured: bool,
    /// Absolute deadline (the policy's, or a propagated one), or NO_DEADLINE.
    pub deadline: SimTime,
    pub try_timeout: Option<SimDuration>,
    /// The request's key, for caches.
    pub key: u32,
    /// The logical operation, for effects and idempotency keys.
    pub op: u64,
    /// Attempts begun: sent, or refused before leaving.
    tries: u32,
    in_flight: u32,
    /// The attempt in flight; with hedging, the others are in `hedges`.
    current: Option<Id>,
    hedges: Vec<Id>,
    previous_backoff: SimDuration,
    /// The status of the latest failed attempt (what a hedged call fails with).
    failed_with: Status,
    /// `tries` at the last pushback: the backoff counts its retries from there (gRFC A6).
    backoff_from: u32,
    /// When the next hedge is due; an `Event::Hedge` for another time is stale, and
    /// `SimTime::MAX` means no further hedges (a `Stop` pushback, the throttle).
    next_hedge_at: SimTime,
    next_is_retry: bool,
    next_is_hedge: bool,
    /// A rate-limiter token reserved for the next launch.
    token_reserved: bool,
    /// A breaker permit held while waiting for a bulkhead slot.
    permit: Option<Permit>,
    /// A bulkhead slot handed over by a finishing attempt.
    slot_granted: bool,
    waiting: bool,
}

impl Logical {
    /// An attempt is in flight, or about to leave (waiting for a slot or a token).
    fn attempt_pending(&self) -> bool {
        self.in_flight > 0 || self.waiting || self.token_reserved || self.slot_granted
    }
}

pub(super) struct Attempt {
    pub logical: Id,
    pub edge: EdgeId,
    pub sent_at: SimTime,
    pub measured: bool,
    permit: Option<Permit>,
    holds_slot: bool,
    retry: bool,
    hedge: bool,
}

/// The policy's state for one edge (one client per caller and callee endpoint).
/// Waiting for a bulkhead slot or a pooled connection without a limit.
const FOREVER: SimDuration = SimDuration::from_nanos(u64::MAX);

pub(super) struct ClientState {
    /// With a cache: per key, (cached at, expires at).
    cached: Vec<Option<(SimTime, SimTime)>>,
    /// The concurrency gate: the bulkhead, or the protocol's connection pool (callers
    /// queue for a free connection), whichever is tighter.
    gate: Option<BulkheadSpec>,
    /// The policy uses none of retry, hedging, breaker, bulkhead, rate limiter: each
    /// attempt is the whole call, and the checks below are skipped.
    plain: bool,
    pub breaker: Option<Breaker>,
    breaker_timer_at: Option<SimTime>,
    bulkhead_active: u32,
    bulkhead_queue: VecDeque<Id>,
    bucket: Option<TokenBucket>,
    rate_budget: Option<RateBudget>,
    throttle: Option<ThrottleTokens>,
    active_calls: u32,
    active_retries: u32,
    /// Jitter draws: the client's own stream.
    rng: Stream,
}

impl ClientState {
    pub fn new(policy: &PolicySpec, seed: u64, edge_name: &str) -> Self {
        let retry = policy.retry.as_ref();
        let pool = policy.protocol.map(|p| BulkheadSpec {
            max_concurrent: p.pool.slots(),
            max_wait: FOREVER,
        });
        let gate = match (policy.bulkhead, pool) {
            (Some(b), Some(p)) => Some(BulkheadSpec {
                max_concurrent: b.max_concurrent.min(p.max_concurrent),
                max_wait: b.max_wait,
            }),
            (b, p) => b.or(p),
        };
        ClientState {
            cached: Vec::new(),
            gate,
            plain: policy.protocol.is_none()
                && policy.cache.is_none()
                && policy.retry.is_none()
                && policy.hedge.is_none()
                && policy.breaker.is_none()
                && policy.bulkhead.is_none()
                && policy.rate_limit.is_none(),
            breaker: policy.breaker.as_ref().map(Breaker::new),
            breaker_timer_at: None,
            bulkhead_active: 0,
            bulkhead_queue: VecDeque::new(),
            bucket: policy.rate_limit.as_ref().map(TokenBucket::new),
            rate_budget: retry.and_then(|r| match &r.budget {
                Some(RetryBudget::Rate { ttl, .. }) => Some(RateBudget::new(*ttl)),
                _ => None,
            }),
            throttle: policy.throttle().map(ThrottleTokens::new),
            active_calls: 0,
            active_retries: 0,
            rng: stream(seed, &format!("client/{edge_name}")),
        }
    }
}

/// grpc-java checks the throttle before it schedules the first hedge (RetriableStream.java:415-417).
fn policy_hedge_java(policy: &PolicySpec) -> bool {
    policy
        .hedge
        .is_some_and(|h| h.follows == HedgeRules::GrpcJava)
}

/// What is left of a logical call once it is over.
struct Ended {
    origin: Origin,
    edge: EdgeId,
    started_at: SimTime,
    measured: bool,
    op: u64,
}

#[derive(Clone, Copy, Debug)]
enum Refusal {
    Breaker,
    Bulkhead,
    RateLimit,
}

impl Refusal {
    fn name(self) -> &'static str {
        match self {
            Refusal::Breaker => "breaker",
            Refusal::Bulkhead => "bulkhead",
            Refusal::RateLimit => "rate_limit",
        }
    }
}

impl World {
    fn policy(&self, edge: EdgeId) -> &PolicySpec {
        self.spec.policy_of(edge)
    }

    /// Starts a logical call; its outcome reaches the origin later (a fiber always
    /// through the immediate queue, so it never re-enters the handler that called).
    pub(super) fn start_call(
        &mut self,
        origin: Origin,
        edge: EdgeId,
        site_timeout: Option<SimDuration>,
        key: u32,
        op: u64,
        sched: &mut Scheduler<Event>,
    ) -> Id {
        let now = sched.now();
        let measured = now >= self.warmup_end;
        let policy = self.policy(edge);
        let own_deadline = policy
            .deadline
            .and_then(|d| now.checked_add(d))
            .unwrap_or(NO_DEADLINE);
        let inherited = match origin {
            Origin::Fiber(f) => self.invocations[self.fibers[f].invocation].deadline,
            Origin::Workload { .. } => NO_DEADLINE,
        };
        let deadline = own_deadline.min(inherited);
        let try_timeout = site_timeout.or(policy.try_timeout);
        let hedge_delay = policy.hedge.map(|h| h.delay);
        let cache = policy.cache;
        let lc = self.logicals.insert(Logical {
            origin,
            edge,
            started_at: now,
            measured,
            deadline,
            try_timeout,
            key,
            op,
            tries: 0,
            in_flight: 0,
            current: None,
            hedges: Vec::new(),
            previous_backoff: SimDuration::ZERO,
            failed_with: Status::Unavailable,
            backoff_from: 0,
            next_hedge_at: SimTime::MAX,
            next_is_retry: false,
            next_is_hedge: false,
            token_reserved: false,
            permit: None,
            slot_granted: false,
            waiting: false,
        });
        self.trace_call(lc, origin, edge, now);
        if measured {
            self.metrics.edges[edge.index()].calls += 1;
            if let Origin::Workload { workload, .. } = origin {
                self.metrics.workloads[workload.index()].requests += 1;
            }
        }
        let client = &mut self.clients[edge.index()];
        client.active_calls += 1;
        if let Some(c) = cache {
            let entry = client.cached.get(key as usize).copied().flatten();
            let m = &mut self.metrics.edges[edge.index()];
            match entry {
                Some((cached_at, expires)) if now < expires => {
                    // A hit: answered at once, possibly with a value changed since.
                    let age_s = now.since(cached_at).as_secs_f64();
                    let p_stale = 1.0 - (-c.change_rate * age_s).exp();
                    let stale = rand::RngExt::random::<f64>(&mut client.rng) < p_stale;
                    if measured {
                        m.cache_hits += 1;
                        m.cache_stale += u64::from(stale);
                    }
                    self.complete(lc, Outcome::Ok { degraded: false }, sched);
                    return lc;
                }
                _ => m.cache_misses += u64::from(measured),
            }
        }
        if let Some(b) = &mut client.rate_budget {
            b.on_request(now);
        }
        if deadline != NO_DEADLINE {
            if deadline <= now {
                // The caller's own caller has already given up.
                self.metrics.edges[edge.index()].expired += u64::from(measured);
                self.complete(lc, Outcome::Failed(Status::DeadlineExceeded), sched);
                return lc;
            }
            sched.at(deadline, Event::Deadline(lc));
        }
        let frozen = policy_hedge_java(self.policy(edge)) && self.hedge_throttled(edge);
        if let Some(d) = hedge_delay
            && !frozen
            && let Some(at) = now.checked_add(d)
        {
            self.logicals[lc].next_hedge_at = at;
            sched.at(at, Event::Hedge(lc));
        }
        self.launch(lc, sched);
        lc
    }

    /// Begins the next attempt of a logical call: rate limiter, breaker, bulkhead, send.
    pub(super) fn launch(&mut self, l: Id, sched: &mut Scheduler<Event>) {
        let now = sched.now();
        let edge = self.logicals[l].edge;
        if self.clients[edge.index()].plain {
            self.logicals[l].tries += 1;
            return self.send_attempt(l, None, false, sched);
        }
        let spec = self.spec.clone();
        let policy = spec.policy_of(edge);
        let client = &mut self.clients[edge.index()];
        let lc = &mut self.logicals[l];
        if !lc.token_reserved && !lc.slot_granted && lc.permit.is_none() {
            lc.tries += 1;
        }
        if let (Some(spec), Some(bucket)) = (&policy.rate_limit, &mut client.bucket)
            && !lc.token_reserved
            && !lc.slot_granted
            && lc.permit.is_none()
        {
            match bucket.take(spec, now) {
                Some(wait) if wait.is_zero() => {}
                Some(wait) => {
                    lc.token_reserved = true;
                    sched.after(wait, Event::Launch(l));
                    return;
                }
                None => return self.refuse(l, Refusal::RateLimit, sched),
            }
        }
        lc.token_reserved = false;
        if let (Some(spec), Some(breaker)) = (&policy.breaker, &mut client.breaker)
            && lc.permit.is_none()
        {
            match breaker.try_acquire(spec, now) {
                Some(p) => lc.permit = Some(p),
                None => {
                    self.arm_breaker_timer(edge, sched);
                    return self.refuse(l, Refusal::Breaker, sched);
                }
            }
            self.arm_breaker_timer(edge, sched);
        }
        let client = &mut self.clients[edge.index()];
        let lc = &mut self.logicals[l];
        let holds_slot = client.gate.is_some();
        if let Some(spec) = client.gate
            && !lc.slot_granted
        {
            if client.bulkhead_active < spec.max_concurrent {
                client.bulkhead_active += 1;
            } else if !spec.max_wait.is_zero() {
                lc.waiting = true;
                client.bulkhead_queue.push_back(l);
                let try_number = lc.tries;
                if spec.max_wait != FOREVER {
                    sched.after(
                        spec.max_wait,
                        Event::BulkheadTimeout {
                            logical: l,
                            try_number,
                        },
                    );
                }
                return;
            } else {
                // A full bulkhead is a failure for the breaker unless the policy says
                // otherwise (see FailureFilter::rejections).
                if let Some(p) = lc.permit.take() {
                    let failure = policy.failure.rejections;
                    self.breaker_record(edge, p, failure, SimDuration::ZERO, sched);
                }
                return self.refuse(l, Refusal::Bulkhead, sched);
            }
        }
        lc.slot_granted = false;
        let permit = lc.permit.take();
        self.send_attempt(l, permit, holds_slot, sched);
    }

    fn send_attempt(
        &mut self,
        l: Id,
        permit: Option<Permit>,
        holds_slot: bool,
        sched: &mut Scheduler<Event>,
    ) {
        let now = sched.now();
        let lc = &mut self.logicals[l];
        let (edge, measured, retry, hedge) =
            (lc.edge, lc.measured, lc.next_is_retry, lc.next_is_hedge);
        lc.next_is_retry = false;
        lc.next_is_hedge = false;
        let a = self.attempts.insert(Attempt {
            logical: l,
            edge,
            sent_at: now,
            measured,
            permit,
            holds_slot,
            retry,
            hedge,
        });
        let try_number = lc.tries;
        self.trace_attempt(a, l, try_number, hedge, now);
        let lc = &mut self.logicals[l];
        lc.in_flight += 1;
        if lc.current.is_none() {
            lc.current = Some(a);
        } else {
            lc.hedges.push(a);
        }
        let try_timeout = lc.try_timeout;
        let deadline = lc.deadline;
        if retry {
            self.clients[edge.index()].active_retries += 1;
        }
        let m = &mut self.metrics.edges[edge.index()];
        if measured {
            m.attempts += 1;
            m.retries += u64::from(retry);
            m.hedges += u64::from(hedge);
        }
        let series = self.edge_series(edge);
        self.metrics.series.record_attempt(series);
        if let Some(t) = try_timeout {
            sched.after(t, Event::AttemptTimeout(a));
        }
        let propagated = if self.policy(edge).propagate_deadline {
            deadline
        } else {
            NO_DEADLINE
        };
        let link = self.spec.edges[edge.index()].link;
        let request = Event::Request {
            attempt: a,
            edge,
            measured,
            deadline: propagated,
        };
        let extra = self.edge_costs[edge.index()].request;
        if !self.transmit(link, request, extra, sched) {
            self.metrics.edges[edge.index()].lost_requests += 1;
        }
    }

    /// An attempt is over (answered, timed out or cancelled): give back what it held.
    fn attempt_ended(&mut self, id: Id, att: &Attempt) {
        let client = &mut self.clients[att.edge.index()];
        if att.retry {
            client.active_retries -= 1;
        }
        if att.holds_slot {
            self.release_slot(att.edge);
        }
        if let Some(lc) = self.logicals.get_mut(att.logical) {
            lc.in_flight -= 1;
            if lc.current == Some(id) {
                lc.current = None;
            } else {
                lc.hedges.retain(|&h| h != id);
            }
        }
    }

    /// A bulkhead slot (or pooled connection) is free: it goes straight to the first
    /// caller still waiting for one, if any.
    fn release_slot(&mut self, edge: EdgeId) {
        let client = &mut self.clients[edge.index()];
        while let Some(next) = client.bulkhead_queue.pop_front() {
            if let Some(w) = self.logicals.get_mut(next)
                && w.waiting
            {
                w.waiting = false;
                w.slot_granted = true;
                self.immediate.push_back(Event::Launch(next));
                return;
            }
        }
        client.bulkhead_active -= 1;
    }

    fn breaker_record(
        &mut self,
        edge: EdgeId,
        permit: Permit,
        failure: bool,
        took: SimDuration,
        sched: &mut Scheduler<Event>,
    ) {
        let now = sched.now();
        let policy = self.spec.policy_of(edge);
        if let (Some(spec), Some(b)) = (&policy.breaker, &mut self.clients[edge.index()].breaker) {
            b.record(spec, now, permit, failure, took);
        }
        self.arm_breaker_timer(edge, sched);
    }

    /// Timer-driven breakers (opossum) move to half-open by themselves.
    fn arm_breaker_timer(&mut self, edge: EdgeId, sched: &mut Scheduler<Event>) {
        let policy = self.spec.policy_of(edge);
        let client = &mut self.clients[edge.index()];
        if let (Some(spec), Some(b)) = (&policy.breaker, &client.breaker)
            && let Some(t) = b.timer_due(spec)
            && client.breaker_timer_at != Some(t)
        {
            client.breaker_timer_at = Some(t);
            sched.at(t.max(sched.now()), Event::BreakerTimer(edge));
        }
    }

    pub(super) fn on_breaker_timer(&mut self, edge: EdgeId, sched: &mut Scheduler<Event>) {
        let now = sched.now();
        let policy = self.spec.policy_of(edge);
        let client = &mut self.clients[edge.index()];
        client.breaker_timer_at = None;
        if let (Some(spec), Some(b)) = (&policy.breaker, &mut client.breaker) {
            b.on_timer(spec, now);
        }
        self.arm_breaker_timer(edge, sched);
    }

    pub(super) fn on_reply(
        &mut self,
        a: Id,
        edge: EdgeId,
        status: Status,
        degraded: bool,
        measured: bool,
        retry_after_ms: u32,
        sched: &mut Scheduler<Event>,
    ) {
        let now = sched.now();
        let Some(att) = self.attempts.remove(a) else {
            self.metrics.edges[edge.index()].late_replies += u64::from(measured);
            return;
        };
        self.trace_attempt_end(a, super::trace::AttemptEnd::Answered(status), now);
        assert_eq!(att.edge, edge);
        self.attempt_ended(a, &att);
        if self.clients[edge.index()].plain {
            let logical = att.logical;
            return if status.is_ok() {
                self.complete(logical, Outcome::Ok { degraded }, sched)
            } else {
                self.complete(logical, Outcome::Failed(status), sched)
            };
        }
        let policy = self.policy(edge);
        let failure = !status.is_ok() && policy.failure.statuses.contains(status);
        let pushback = Pushback::from_wire(retry_after_ms);
        if let Some(p) = att.permit {
            self.breaker_record(edge, p, failure, now.since(att.sent_at), sched);
        }
        self.throttle_note(edge, status, pushback);
        if status.is_ok() {
            if let Some(c) = self.policy(edge).cache {
                let key = self.logicals[att.logical].key as usize;
                let cached = &mut self.clients[edge.index()].cached;
                if cached.len() <= key {
                    cached.resize(key + 1, None);
                }
                cached[key] = Some((now, now + c.ttl));
            }
            if att.hedge && att.measured {
                self.metrics.edges[edge.index()].hedges_won += 1;
            }
            self.complete(att.logical, Outcome::Ok { degraded }, sched);
        } else {
            self.after_failure(att.logical, status, pushback, sched);
        }
    }

    /// gRPC throttling tokens: an ok answer gives some back; a failure takes one if its
    /// status is retryable (or non-fatal, hedging) or its pushback says not to retry
    /// (gRFC A6 "Throttling"; grpc-go stream.go:829/854, grpc-java RetriableStream.java:1075/1104).
    fn throttle_note(&mut self, edge: EdgeId, status: Status, pushback: Option<Pushback>) {
        let policy = self.spec.policy_of(edge);
        let (Some(spec), Some(t)) = (policy.throttle(), &mut self.clients[edge.index()].throttle)
        else {
            return;
        };
        if status.is_ok() {
            return t.on_success(spec);
        }
        let (qualifies, honoured) = match (&policy.retry, &policy.hedge) {
            (Some(r), _) => (r.retry_on.contains(status), r.pushback),
            (None, Some(h)) => (h.non_fatal.contains(status), h.pushback),
            (None, None) => (false, false),
        };
        if qualifies || (honoured && pushback == Some(Pushback::Stop)) {
            t.on_retryable_failure();
        }
    }

    pub(super) fn on_attempt_timeout(&mut self, a: Id, sched: &mut Scheduler<Event>) {
        let now = sched.now();
        // Already answered or cancelled: this timer is stale.
        let Some(att) = self.attempts.remove(a) else {
            return;
        };
        self.trace_attempt_end(a, super::trace::AttemptEnd::Timeout, now);
        self.attempt_ended(a, &att);
        let edge = att.edge;
        if att.measured {
            self.metrics.edges[edge.index()].timeouts += 1;
        }
        let failure = self.policy(edge).failure.timeouts;
        if let Some(p) = att.permit {
            self.breaker_record(edge, p, failure, now.since(att.sent_at), sched);
        }
        self.throttle_note(edge, Status::DeadlineExceeded, None);
        self.after_failure(att.logical, Status::DeadlineExceeded, None, sched);
    }

    pub(super) fn on_deadline(&mut self, l: Id, sched: &mut Scheduler<Event>) {
        let Some(lc) = self.logicals.get(l) else {
            return;
        };
        if lc.measured {
            self.metrics.edges[lc.edge.index()].timeouts += 1;
        }
        self.complete(l, Outcome::Failed(Status::DeadlineExceeded), sched);
    }

    pub(super) fn on_hedge(&mut self, l: Id, sched: &mut Scheduler<Event>) {
        let now = sched.now();
        let Some(lc) = self.logicals.get_mut(l) else {
            return;
        };
        if lc.next_hedge_at != now {
            return; // moved by a non-fatal failure or a pushback, or stopped
        }
        lc.next_hedge_at = SimTime::MAX;
        let edge = lc.edge;
        let h = self
            .spec
            .policy_of(edge)
            .hedge
            .expect("a hedge timer belongs to a hedging policy");
        // gRFC A6 "Throttling": a hedge goes out only while tokens are over the threshold
        // (grpc-java checks when it schedules one, below).
        let throttled = h.follows == HedgeRules::A6 && self.hedge_throttled(edge);
        let lc = &self.logicals[l];
        if throttled || lc.tries >= h.max_attempts {
            if !lc.attempt_pending() {
                let status = lc.failed_with;
                return self.complete(l, Outcome::Failed(status), sched);
            }
            return;
        }
        self.logicals[l].next_is_hedge = true;
        self.launch(l, sched);
        // grpc-java schedules the next hedge only while over the threshold
        // (RetriableStream.java:497-503).
        let frozen = h.follows == HedgeRules::GrpcJava && self.hedge_throttled(edge);
        if let Some(lc) = self.logicals.get_mut(l)
            && lc.next_hedge_at == SimTime::MAX
            && lc.tries < h.max_attempts
            && !frozen
            && let Some(at) = now.checked_add(h.delay)
        {
            lc.next_hedge_at = at;
            sched.at(at, Event::Hedge(l));
        }
    }

    /// A hedging policy's throttle is at or below its threshold.
    fn hedge_throttled(&self, edge: EdgeId) -> bool {
        let policy = self.spec.policy_of(edge);
        let client = &self.clients[edge.index()];
        match (
            policy.hedge.as_ref().and_then(|h| h.throttle.as_ref()),
            &client.throttle,
        ) {
            (Some(spec), Some(t)) => !t.allows_retry(spec),
            _ => false,
        }
    }

    pub(super) fn on_bulkhead_timeout(
        &mut self,
        l: Id,
        try_number: u32,
        sched: &mut Scheduler<Event>,
    ) {
        let Some(lc) = self.logicals.get_mut(l) else {
            return;
        };
        if !lc.waiting || lc.tries != try_number {
            return;
        }
        lc.waiting = false;
        let edge = lc.edge;
        let permit = lc.permit.take();
        self.clients[edge.index()]
            .bulkhead_queue
            .retain(|&w| w != l);
        if let Some(p) = permit {
            let failure = self.policy(edge).failure.rejections;
            self.breaker_record(edge, p, failure, SimDuration::ZERO, sched);
        }
        self.refuse(l, Refusal::Bulkhead, sched);
    }

    /// An attempt refused before leaving the caller fails like any other: the retry
    /// policy decides what happens next.
    fn refuse(&mut self, l: Id, why: Refusal, sched: &mut Scheduler<Event>) {
        self.trace_refused(l, self.logicals[l].tries, why.name(), sched.now());
        let lc = &mut self.logicals[l];
        let hedge_refused = lc.next_is_hedge && lc.in_flight > 0;
        let m = &mut self.metrics.edges[lc.edge.index()];
        let measured = u64::from(lc.measured);
        let status = match why {
            Refusal::Breaker => {
                m.rejected_breaker += measured;
                Status::Unavailable
            }
            Refusal::Bulkhead => {
                m.rejected_bulkhead += measured;
                Status::ResourceExhausted
            }
            Refusal::RateLimit => {
                m.rejected_rate_limit += measured;
                Status::ResourceExhausted
            }
        };
        if hedge_refused {
            // A hedge refused before leaving is just not sent: the attempts already in
            // flight carry on (only a callee's answer can be fatal).
            self.logicals[l].next_is_hedge = false;
            return;
        }
        self.after_failure(l, status, None, sched);
    }

    /// After a failed attempt: hedge on, retry after a backoff, or give up.
    fn after_failure(
        &mut self,
        l: Id,
        status: Status,
        pushback: Option<Pushback>,
        sched: &mut Scheduler<Event>,
    ) {
        let now = sched.now();
        let Some(lc) = self.logicals.get(l) else {
            return;
        };
        let edge = lc.edge;
        let spec = self.spec.clone();
        let policy = spec.policy_of(edge);
        if let Some(h) = policy.hedge {
            if !h.non_fatal.contains(status) {
                return self.complete(l, Outcome::Failed(status), sched);
            }
            let pushback = pushback.filter(|_| h.pushback);
            // The tokens already count this failure (`throttle_note`).
            let throttled = self.hedge_throttled(edge);
            let lc = &mut self.logicals[l];
            lc.failed_with = status;
            if throttled && h.follows == HedgeRules::GrpcJava {
                // Not hedgeable (RetriableStream.java:1112): the call fails with it.
                return self.complete(l, Outcome::Failed(status), sched);
            }
            if throttled || pushback == Some(Pushback::Stop) || lc.tries >= h.max_attempts {
                // gRFC A6: no further hedges; those sent carry on.
                lc.next_hedge_at = SimTime::MAX;
            } else {
                let next = match (h.follows, pushback) {
                    (HedgeRules::A6, Some(Pushback::After(d))) => now.checked_add(d),
                    (HedgeRules::A6, _) | (HedgeRules::GrpcJava, Some(_)) => Some(now),
                    (HedgeRules::GrpcJava, None) => None, // the timer stands
                };
                if let Some(at) = next {
                    lc.next_hedge_at = at;
                    if at == now {
                        self.immediate.push_back(Event::Hedge(l));
                    } else {
                        sched.at(at, Event::Hedge(l));
                    }
                }
            }
            let lc = &self.logicals[l];
            if lc.next_hedge_at == SimTime::MAX && !lc.attempt_pending() {
                return self.complete(l, Outcome::Failed(status), sched);
            }
            return; // another attempt may still succeed
        }
        let Some(retry) = &policy.retry else {
            return self.complete(l, Outcome::Failed(status), sched);
        };
        let lc = &mut self.logicals[l];
        let pushback = pushback.filter(|_| retry.pushback);
        let retryable = retry.retry_on.contains(status);
        let eligible = retryable
            || (retry.pushback_any_status && matches!(pushback, Some(Pushback::After(_))));
        // A pushback that says not to retry ends the call (grpc-go stream.go:827-830,
        // grpc-java RetriableStream.java:1089-1094).
        if !eligible || pushback == Some(Pushback::Stop) || lc.tries >= retry.max_attempts {
            return self.complete(l, Outcome::Failed(status), sched);
        }
        let client = &mut self.clients[edge.index()];
        let allowed = match (&retry.throttle, &client.throttle) {
            // grpc-java checks the throttle only for a status it counted (:1074-1080).
            (Some(spec), Some(t)) if retryable && !t.allows_retry(spec) => false,
            _ => match &retry.budget {
                None => true,
                Some(RetryBudget::Rate {
                    percent,
                    min_per_s,
                    ttl,
                }) => client
                    .rate_budget
                    .as_mut()
                    .expect("a rate budget has its state")
                    .try_retry(now, *percent, *min_per_s, *ttl),
                Some(RetryBudget::Concurrency { percent, min }) => {
                    let cap = (*min).max((percent * f64::from(client.active_calls)) as u32);
                    client.active_retries < cap
                }
            },
        };
        if !allowed {
            if lc.measured {
                self.metrics.edges[edge.index()].rejected_budget += 1;
            }
            return self.complete(l, Outcome::Failed(status), sched);
        }
        let delay = match pushback {
            Some(Pushback::After(d)) => {
                // gRFC A6 "Pushback": exactly that delay, and the backoff restarts at its
                // first wait (grpc-go stream.go:862-864 `numRetriesSincePushback = 0`,
                // grpc-java RetriableStream.java:1089-1092 `nextBackoffIntervalNanos =
                // initialBackoffNanos`). No jitter is drawn.
                lc.backoff_from = lc.tries;
                lc.previous_backoff = SimDuration::ZERO;
                d
            }
            _ => {
                let retry_number = lc.tries - lc.backoff_from;
                let d = retry
                    .backoff
                    .delay(retry_number, lc.previous_backoff, &mut client.rng);
                lc.previous_backoff = d;
                d
            }
        };
        if lc.deadline != NO_DEADLINE && now.checked_add(delay).is_none_or(|t| t >= lc.deadline) {
            // The retry could not finish before the deadline.
            return self.complete(l, Outcome::Failed(status), sched);
        }
        lc.next_is_retry = true;
        self.trace_backoff(l, delay);
        if delay.is_zero() {
            self.immediate.push_back(Event::Launch(l));
        } else {
            sched.after(delay, Event::Launch(l));
        }
    }

    /// Takes a logical call apart: cancels its attempts in flight and gives back what
    /// it holds. `succeeded` tells a half-open breaker how a cancelled probe went.
    /// Returns what the caller needs to be told (the call itself is dropped in place:
    /// this runs once per call, and moving the whole call out showed in profiles).
    fn dismantle(&mut self, l: Id, succeeded: bool, sched: &mut Scheduler<Event>) -> Option<Ended> {
        let lc = self.logicals.get_mut(l)?;
        let ended = Ended {
            origin: lc.origin,
            edge: lc.edge,
            started_at: lc.started_at,
            measured: lc.measured,
            op: lc.op,
        };
        let (waiting, permit, current) = (lc.waiting, lc.permit, lc.current);
        // A slot handed over for a launch that will never happen must be passed on, and
        // a call abandoned before its attempt left is cancelled all the same.
        let (granted, unsent) = (
            lc.slot_granted,
            lc.waiting || lc.slot_granted || lc.token_reserved,
        );
        let hedges = std::mem::take(&mut lc.hedges);
        self.logicals.discard(l);
        let now = sched.now();
        for a in current.into_iter().chain(hedges) {
            if let Some(att) = self.attempts.remove(a) {
                self.trace_attempt_end(a, super::trace::AttemptEnd::Cancelled, now);
                self.attempt_ended(a, &att);
                if att.measured {
                    self.metrics.edges[att.edge.index()].cancelled += 1;
                }
                if let Some(p) = att.permit {
                    self.breaker_record(att.edge, p, !succeeded, now.since(att.sent_at), sched);
                }
            }
        }
        if granted {
            self.release_slot(ended.edge);
        }
        if unsent && ended.measured {
            self.metrics.edges[ended.edge.index()].cancelled += 1;
        }
        let client = &mut self.clients[ended.edge.index()];
        if waiting {
            client.bulkhead_queue.retain(|&w| w != l);
        }
        client.active_calls -= 1;
        if let Some(p) = permit {
            self.breaker_record(ended.edge, p, !succeeded, SimDuration::ZERO, sched);
        }
        Some(ended)
    }

    /// The caller no longer wants the answer (its fiber was cancelled).
    pub(super) fn abandon_call(&mut self, l: Id, sched: &mut Scheduler<Event>) {
        let _ = self.dismantle(l, false, sched);
        self.trace_call_end(l, None, sched.now());
    }

    /// The logical call is over: record it and tell the caller.
    pub(super) fn complete(&mut self, l: Id, outcome: Outcome, sched: &mut Scheduler<Event>) {
        let now = sched.now();
        let succeeded = matches!(outcome, Outcome::Ok { .. });
        let Some(lc) = self.dismantle(l, succeeded, sched) else {
            return;
        };
        self.trace_call_end(l, Some(super::trace::status_of(outcome)), now);
        let edge = lc.edge;
        let fallback = self.policy(edge).fallback;
        let m = &mut self.metrics.edges[edge.index()];
        let measured = lc.measured;
        let (status, degraded) = match (outcome, fallback) {
            (Outcome::Ok { degraded }, _) => {
                m.ok += u64::from(measured);
                (Status::Ok, degraded)
            }
            (Outcome::Failed(_), Some(Fallback::Degraded)) => {
                m.ok += u64::from(measured);
                m.fallbacks += u64::from(measured);
                (Status::Ok, true)
            }
            (Outcome::Failed(_), Some(Fallback::Status(s))) => {
                if measured {
                    m.fallbacks += 1;
                    m.errors.add(s);
                }
                (s, false)
            }
            (Outcome::Failed(s), None) => {
                if measured {
                    m.errors.add(s);
                }
                (s, false)
            }
        };
        let latency = now.since(lc.started_at);
        // A workload's edge mirrors the workload (see World::new): recorded below.
        if let Origin::Fiber(_) = lc.origin {
            if measured {
                m.latency.record(latency);
            }
            let series = self.edge_series(edge);
            self.metrics.series.record_count(series, !status.is_ok());
        }
        match lc.origin {
            Origin::Workload { workload, user } => {
                self.ledger.op_answered(lc.op, workload, status.is_ok());
                let wm = &mut self.metrics.workloads[workload.index()];
                if measured {
                    if status.is_ok() {
                        wm.ok += 1;
                        wm.degraded += u64::from(degraded);
                    } else {
                        wm.errors.add(status);
                    }
                    wm.latency.record(latency);
                }
                self.metrics
                    .series
                    .record(workload.index(), latency, !status.is_ok());
                self.record_windows(WindowTarget::Workload(workload), now, latency, status);
                self.workload_answered(workload, user, sched);
            }
            Origin::Fiber(f) => self.immediate.push_back(Event::CallDone {
                fiber: f,
                status,
                degraded,
            }),
        }
    }

    /// A fiber learns how its call ended.
    pub(super) fn call_done(
        &mut self,
        f: Id,
        status: Status,
        degraded: bool,
        sched: &mut Scheduler<Event>,
    ) {
        let Some(fiber) = self.fibers.get(f) else {
            return; // cancelled meanwhile
        };
        if let Some(run) = fiber.saga {
            return self.saga_call_done(f, run, status, sched);
        }
        if status.is_ok() {
            if degraded {
                self.invocations[fiber.invocation].degraded = true;
            }
            self.resume(f, sched.now());
        } else {
            let Step::Call(site) = self.spec.seqs[fiber.seq.index()][fiber.pc as usize - 1] else {
                unreachable!("a fiber waiting on a call stopped at a call step")
            };
            self.finish_fiber(f, Outcome::Failed(site.translate.apply(status)), sched);
        }
    }
}

impl World {
    /// A saga's action or compensation is answered: the next action, the next
    /// compensation (in reverse), or the saga's end.
    fn saga_call_done(
        &mut self,
        f: Id,
        mut run: super::world::SagaRun,
        status: Status,
        sched: &mut Scheduler<Event>,
    ) {
        let spec = Rc::clone(&self.spec);
        let saga = &spec.sagas[run.saga.index()];
        match run.failed {
            None if status.is_ok() => {
                run.done += 1;
                if run.done as usize == saga.steps.len() {
                    self.metrics.consistency.sagas[run.saga.index()].completed += 1;
                    self.fibers[f].saga = None;
                    return self.resume(f, sched.now());
                }
                self.fibers[f].saga = Some(run);
                self.call_from(f, saga.steps[run.done as usize].0, sched);
            }
            None => {
                let site = saga.steps[run.done as usize].0;
                run.failed = Some(site.translate.apply(status));
                self.saga_compensate(f, run, sched);
            }
            Some(failed) if status.is_ok() => {
                let _ = failed;
                self.saga_compensate(f, run, sched);
            }
            Some(failed) => {
                // A compensation failed: the saga is left half undone.
                self.metrics.consistency.sagas[run.saga.index()].compensation_failed += 1;
                self.fibers[f].saga = None;
                self.finish_fiber(f, Outcome::Failed(failed), sched);
            }
        }
    }

    /// Runs the compensation of the latest completed action that has one.
    fn saga_compensate(
        &mut self,
        f: Id,
        mut run: super::world::SagaRun,
        sched: &mut Scheduler<Event>,
    ) {
        let spec = Rc::clone(&self.spec);
        let saga = &spec.sagas[run.saga.index()];
        while run.done > 0 {
            run.done -= 1;
            if let Some(comp) = saga.steps[run.done as usize].1 {
                self.fibers[f].saga = Some(run);
                return self.call_from(f, comp, sched);
            }
        }
        self.metrics.consistency.sagas[run.saga.index()].compensated += 1;
        self.fibers[f].saga = None;
        let failed = run.failed.expect("compensating after a failure");
        self.finish_fiber(f, Outcome::Failed(failed), sched);
    }
}
