//! The client side of a call, under its edge's policy. A *logical call* is what the
//! caller's code asked for; it is carried out by one or more *attempts* (retries,
//! hedges), each of which passes the rate limiter, the circuit breaker and the
//! bulkhead, in that order, before it goes over the network. (resilience4j's
//! recommended order puts the breaker outside the rate limiter, so there a limiter
//! refusal counts as a breaker failure; here it does not.)

use super::arena::{Arena, Key};
use super::breaker::{Breaker, Permit};
use super::policy::{
    BulkheadSpec, CacheSpec, Fallback, HedgeRules, PolicySpec, Pushback, RateBudget, RetryBudget,
    ThrottleTokens, TokenBucket,
};
use super::spec::{EdgeId, Step, WindowTarget, WorkloadId};
use super::status::Status;
use super::world::{AttemptId, CallId, FiberId, InvocationId};
use super::world::{Event, NO_DEADLINE, Outcome, World};
use crate::engine::{Scheduler, SimDuration, SimTime, Stream, stream};
use std::collections::VecDeque;

mod gates;

#[derive(Clone, Copy, Debug)]
pub(super) enum Origin {
    Workload { workload: WorkloadId, user: u32 },
    Fiber(FiberId),
}

/// A logical call's state while it is in flight. A *plain* call (its edge's policy has no
/// gates, see `ClientState::plain`) is its own single attempt: no separate attempt entry,
/// and the attempt's id is the call's (see `Calls`). Anything else keeps its policy's
/// state apart in `gated`, so the entries a deep chain holds in flight stay small.
pub(super) struct Logical {
    pub origin: Origin,
    pub edge: EdgeId,
    pub started_at: SimTime,
    /// Absolute deadline (the policy's, or a propagated one), or NO_DEADLINE.
    pub deadline: SimTime,
    pub measured: bool,
    /// A plain call's attempt is in flight.
    sent: bool,
    /// The invocation serving a plain call's attempt, once the request arrived (it may
    /// have answered since).
    served_by: Option<InvocationId>,
    /// The policy's state; None for a plain call.
    gated: Option<Box<Gated>>,
}

/// What a call under a policy with gates (retry, hedging, breaker, bulkhead, rate
/// limiter, cache, protocol) keeps beyond a plain call. Boxes are reused (`spare_gated`).
pub(super) struct Gated {
    try_timeout: Option<SimDuration>,
    /// Attempts begun: sent, or refused before leaving.
    tries: u32,
    in_flight: u32,
    /// The attempt in flight; with hedging, the others are in `hedges`.
    current: Option<AttemptId>,
    hedges: Vec<AttemptId>,
    previous_backoff: SimDuration,
    /// The status of the latest failed attempt (what a hedged call fails with).
    failed_with: Status,
    /// `tries` at the last pushback: the backoff counts its retries from there (gRFC A6).
    backoff_from: u32,
    /// When the next hedge is due; an `Event::Hedge` for another time is stale, and
    /// None means no further hedges (a `Stop` pushback, the throttle).
    next_hedge_at: Option<SimTime>,
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

impl Gated {
    fn new() -> Gated {
        Gated {
            try_timeout: None,
            tries: 0,
            in_flight: 0,
            current: None,
            hedges: Vec::new(),
            previous_backoff: SimDuration::ZERO,
            failed_with: Status::Unavailable,
            backoff_from: 0,
            next_hedge_at: None,
            next_is_retry: false,
            next_is_hedge: false,
            token_reserved: false,
            permit: None,
            slot_granted: false,
            waiting: false,
        }
    }

    /// A call just started: no attempt yet, no timer armed (keeps `hedges`' allocation).
    fn reset(&mut self, try_timeout: Option<SimDuration>) {
        let mut hedges = std::mem::take(&mut self.hedges);
        hedges.clear();
        *self = Gated {
            try_timeout,
            hedges,
            ..Gated::new()
        };
    }

    /// An attempt is in flight, or about to leave (waiting for a slot or a token).
    fn attempt_pending(&self) -> bool {
        self.in_flight > 0 || self.waiting || self.token_reserved || self.slot_granted
    }

    /// The attempts in flight.
    fn attempts(&self) -> impl Iterator<Item = AttemptId> + '_ {
        self.current.into_iter().chain(self.hedges.iter().copied())
    }
}

impl Logical {
    /// The policy's state of a call that is not plain.
    fn gated(&self) -> &Gated {
        self.gated
            .as_deref()
            .expect("a call under a policy with gates")
    }

    fn gated_mut(&mut self) -> &mut Gated {
        self.gated
            .as_deref_mut()
            .expect("a call under a policy with gates")
    }
}

pub(super) struct Attempt {
    pub logical: CallId,
    pub edge: EdgeId,
    pub sent_at: SimTime,
    pub measured: bool,
    /// The invocation serving it, once the request arrived (it may have answered since).
    pub served_by: Option<InvocationId>,
    permit: Option<Permit>,
    holds_slot: bool,
    retry: bool,
    hedge: bool,
}

/// A logical call, or an attempt of a call that is not plain.
pub(super) enum Entry {
    Call(Logical),
    Attempt(Attempt),
}

/// The logical calls and attempts in flight, in one arena: a plain call's attempt id is
/// its own call's id, and ids of the two kinds never share a slot (so tables keyed by an
/// attempt's slot see each attempt once).
pub(super) struct Calls {
    arena: Arena<Entry>,
    /// Logical calls in flight (the arena also holds attempts).
    calls: usize,
    /// Requests carry keys and operations (`World::keyed`): then `carried` holds them.
    keyed: bool,
    /// Per call slot: the request's key (for caches) and logical operation (for effects
    /// and idempotency keys), apart so a call in flight stays one cache line.
    carried: Vec<(u32, u64)>,
}

/// An attempt taken out of flight (answered or timed out).
enum Taken {
    Separate(Attempt),
    /// A plain call's own attempt, on this edge: the call is still there.
    Own(CallId, EdgeId),
}

impl Calls {
    pub fn new(keyed: bool) -> Calls {
        Calls {
            arena: Arena::default(),
            calls: 0,
            keyed,
            carried: Vec::new(),
        }
    }

    /// Logical calls in flight.
    pub fn len(&self) -> usize {
        self.calls
    }

    /// A new call of a request with key `key` and operation `op`.
    fn insert(&mut self, lc: Logical, key: u32, op: u64) -> CallId {
        self.calls += 1;
        let l = CallId::from_id(self.arena.insert(Entry::Call(lc)));
        if self.keyed {
            let slot = l.slot();
            if self.carried.len() <= slot {
                self.carried.resize(slot + 1, (0, 0));
            }
            self.carried[slot] = (key, op);
        }
        l
    }

    /// The (key, operation) call `l` carries; (0, 0) when requests carry none.
    pub fn carried(&self, l: CallId) -> (u32, u64) {
        if self.keyed {
            self.carried[l.slot()]
        } else {
            (0, 0)
        }
    }

    /// The call attempt `a` belongs to, while the attempt is in flight.
    pub fn call_of(&self, a: AttemptId) -> Option<CallId> {
        match self.arena.get(a.id())? {
            Entry::Attempt(att) => Some(att.logical),
            Entry::Call(lc) if lc.sent => Some(CallId::from_id(a.id())),
            Entry::Call(_) => None,
        }
    }

    pub fn get(&self, l: CallId) -> Option<&Logical> {
        match self.arena.get(l.id())? {
            Entry::Call(lc) => Some(lc),
            Entry::Attempt(_) => None,
        }
    }

    pub fn get_mut(&mut self, l: CallId) -> Option<&mut Logical> {
        match self.arena.get_mut(l.id())? {
            Entry::Call(lc) => Some(lc),
            Entry::Attempt(_) => None,
        }
    }

    pub fn contains(&self, l: CallId) -> bool {
        self.get(l).is_some()
    }

    /// Drops call `l` in place (its callers just looked it up: it is a live call).
    fn discard(&mut self, l: CallId) {
        let gone = self.arena.discard(l.id());
        assert!(gone, "discarding a live call");
        self.calls -= 1;
    }

    /// The logical calls in flight, in slot order (deterministic).
    pub fn values(&self) -> impl Iterator<Item = &Logical> {
        self.arena.values().filter_map(|e| match e {
            Entry::Call(lc) => Some(lc),
            Entry::Attempt(_) => None,
        })
    }

    fn insert_attempt(&mut self, att: Attempt) -> AttemptId {
        AttemptId::from_id(self.arena.insert(Entry::Attempt(att)))
    }

    /// Takes attempt `a` out of flight, if it still is.
    fn take_attempt(&mut self, a: AttemptId) -> Option<Taken> {
        match self.arena.get_mut(a.id())? {
            Entry::Call(lc) if lc.sent => {
                lc.sent = false;
                Some(Taken::Own(CallId::from_id(a.id()), lc.edge))
            }
            Entry::Call(_) => None,
            Entry::Attempt(_) => match self.arena.remove(a.id()) {
                Some(Entry::Attempt(att)) => Some(Taken::Separate(att)),
                _ => unreachable!("an attempt's slot holds it"),
            },
        }
    }

    /// Notes that invocation `i` serves attempt `a`; returns the attempt's call, or None
    /// when the attempt is no longer in flight.
    pub fn served(&mut self, a: AttemptId, i: InvocationId) -> Option<CallId> {
        match self.arena.get_mut(a.id())? {
            Entry::Attempt(att) => {
                att.served_by = Some(i);
                Some(att.logical)
            }
            Entry::Call(lc) if lc.sent => {
                lc.served_by = Some(i);
                Some(CallId::from_id(a.id()))
            }
            Entry::Call(_) => None,
        }
    }

    /// The invocations serving call `l`'s attempts in flight, onto `out`.
    pub fn serving(&self, l: CallId, out: &mut Vec<InvocationId>) {
        let Some(lc) = self.get(l) else {
            return;
        };
        match &lc.gated {
            None => out.extend(lc.served_by.filter(|_| lc.sent)),
            Some(g) => out.extend(g.attempts().filter_map(|a| match self.arena.get(a.id()) {
                Some(Entry::Attempt(att)) => att.served_by,
                _ => None,
            })),
        }
    }
}

impl std::ops::Index<CallId> for Calls {
    type Output = Logical;
    fn index(&self, l: CallId) -> &Logical {
        self.get(l).expect("stale call id")
    }
}

impl std::ops::IndexMut<CallId> for Calls {
    fn index_mut(&mut self, l: CallId) -> &mut Logical {
        self.get_mut(l).expect("stale call id")
    }
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
    bulkhead_queue: VecDeque<CallId>,
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
    ) -> CallId {
        let now = sched.now();
        let measured = now >= self.warmup_end;
        let deadline = self.call_deadline(origin, edge, now);
        let policy = self.policy(edge);
        let try_timeout = site_timeout.or(policy.try_timeout);
        let cache = policy.cache;
        let gated = self.gated_state(edge, try_timeout);
        let plain = gated.is_none();
        let lc = self.logicals.insert(
            Logical {
                origin,
                edge,
                started_at: now,
                deadline,
                measured,
                sent: false,
                served_by: None,
                gated,
            },
            key,
            op,
        );
        self.trace_call(lc, origin, edge, now);
        self.count_call(origin, edge, measured);
        if let Some(c) = cache
            && self.answered_from_cache(lc, c, sched)
        {
            return lc;
        }
        let client = &mut self.clients[edge.index()];
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
            match self.policy(edge).deadline {
                // The policy's own deadline, the same delay on every call: a timer.
                Some(d) if now.checked_add(d) == Some(deadline) => {
                    sched.after_timer(d, Event::Deadline(lc));
                }
                _ => sched.at(deadline, Event::Deadline(lc)),
            }
        }
        if plain {
            self.send_own_attempt(lc, try_timeout, sched);
        } else {
            self.arm_first_hedge(lc, edge, sched);
            self.launch(lc, sched);
        }
        lc
    }

    /// A call starts on `edge`: its books, and the client's calls in flight.
    fn count_call(&mut self, origin: Origin, edge: EdgeId, measured: bool) {
        if measured {
            self.metrics.edges[edge.index()].calls += 1;
            if let Origin::Workload { workload, .. } = origin {
                self.metrics.workloads[workload.index()].requests += 1;
            }
        }
        self.clients[edge.index()].active_calls += 1;
    }

    /// A new call's policy state (a reused box), or None for a plain call.
    fn gated_state(
        &mut self,
        edge: EdgeId,
        try_timeout: Option<SimDuration>,
    ) -> Option<Box<Gated>> {
        if self.clients[edge.index()].plain {
            return None;
        }
        let mut g = self
            .spare_gated
            .pop()
            .unwrap_or_else(|| Box::new(Gated::new()));
        g.reset(try_timeout);
        Some(g)
    }

    /// A new call's deadline: the policy's own, or its caller's propagated one if that
    /// is sooner; NO_DEADLINE if neither.
    fn call_deadline(&self, origin: Origin, edge: EdgeId, now: SimTime) -> SimTime {
        let own = self
            .policy(edge)
            .deadline
            .and_then(|d| now.checked_add(d))
            .unwrap_or(NO_DEADLINE);
        let inherited = match origin {
            Origin::Fiber(f) => self.invocations[self.fibers[f].invocation].deadline,
            Origin::Workload { .. } => NO_DEADLINE,
        };
        own.min(inherited)
    }

    /// With hedging, the first hedge is due after the policy's delay (unless grpc-java's
    /// throttle already freezes hedging).
    fn arm_first_hedge(&mut self, lc: CallId, edge: EdgeId, sched: &mut Scheduler<Event>) {
        let Some(delay) = self.policy(edge).hedge.map(|h| h.delay) else {
            return;
        };
        let frozen = policy_hedge_java(self.policy(edge)) && self.hedge_throttled(edge);
        if !frozen && let Some(at) = sched.now().checked_add(delay) {
            self.logicals[lc].gated_mut().next_hedge_at = Some(at);
            sched.after_timer(delay, Event::Hedge(lc));
        }
    }

    /// A cached answer for the call's key that has not expired answers the call at once
    /// (possibly with a value changed since); else a miss. Returns whether it answered.
    fn answered_from_cache(
        &mut self,
        lc: CallId,
        c: CacheSpec,
        sched: &mut Scheduler<Event>,
    ) -> bool {
        let now = sched.now();
        let (edge, measured) = {
            let l = &self.logicals[lc];
            (l.edge, l.measured)
        };
        let (key, _) = self.logicals.carried(lc);
        let client = &mut self.clients[edge.index()];
        let entry = client.cached.get(key as usize).copied().flatten();
        let m = &mut self.metrics.edges[edge.index()];
        match entry {
            Some((cached_at, expires)) if now < expires => {
                let age_s = now.since(cached_at).as_secs_f64();
                let p_stale = 1.0 - (-c.change_rate * age_s).exp();
                let stale = rand::RngExt::random::<f64>(&mut client.rng) < p_stale;
                if measured {
                    m.cache_hits += 1;
                    m.cache_stale += u64::from(stale);
                }
                self.complete(lc, Outcome::Ok { degraded: false }, sched);
                true
            }
            _ => {
                m.cache_misses += u64::from(measured);
                false
            }
        }
    }

    /// Sends a plain call's one attempt: the call itself goes out (its id is the attempt's).
    fn send_own_attempt(
        &mut self,
        l: CallId,
        try_timeout: Option<SimDuration>,
        sched: &mut Scheduler<Event>,
    ) {
        let now = sched.now();
        let a = AttemptId::from_id(l.id());
        self.trace_attempt(a, l, 1, false, now);
        let lc = &mut self.logicals[l];
        lc.sent = true;
        let (edge, measured, deadline) = (lc.edge, lc.measured, lc.deadline);
        self.send(
            a,
            edge,
            measured,
            (false, false),
            try_timeout,
            deadline,
            sched,
        );
    }

    /// Sends the next attempt of a call under a policy with gates, past them.
    fn send_attempt(
        &mut self,
        l: CallId,
        permit: Option<Permit>,
        holds_slot: bool,
        sched: &mut Scheduler<Event>,
    ) {
        let now = sched.now();
        let lc = &mut self.logicals[l];
        let (edge, measured) = (lc.edge, lc.measured);
        let g = lc.gated_mut();
        let (retry, hedge) = (g.next_is_retry, g.next_is_hedge);
        g.next_is_retry = false;
        g.next_is_hedge = false;
        let a = self.logicals.insert_attempt(Attempt {
            logical: l,
            edge,
            sent_at: now,
            measured,
            served_by: None,
            permit,
            holds_slot,
            retry,
            hedge,
        });
        let try_number = self.logicals[l].gated().tries;
        self.trace_attempt(a, l, try_number, hedge, now);
        let lc = &mut self.logicals[l];
        let deadline = lc.deadline;
        let g = lc.gated_mut();
        g.in_flight += 1;
        if g.current.is_none() {
            g.current = Some(a);
        } else {
            g.hedges.push(a);
        }
        let try_timeout = g.try_timeout;
        if retry {
            self.clients[edge.index()].active_retries += 1;
        }
        self.send(
            a,
            edge,
            measured,
            (retry, hedge),
            try_timeout,
            deadline,
            sched,
        );
    }

    /// An attempt leaves: counted, its timer armed, its request sent over the edge's link.
    #[allow(clippy::too_many_arguments)]
    fn send(
        &mut self,
        a: AttemptId,
        edge: EdgeId,
        measured: bool,
        (retry, hedge): (bool, bool),
        try_timeout: Option<SimDuration>,
        deadline: SimTime,
        sched: &mut Scheduler<Event>,
    ) {
        let m = &mut self.metrics.edges[edge.index()];
        if measured {
            m.attempts += 1;
            m.retries += u64::from(retry);
            m.hedges += u64::from(hedge);
        }
        let series = self.edge_series(edge);
        self.metrics.series.record_attempt(series);
        if let Some(t) = try_timeout {
            sched.after_timer(t, Event::AttemptTimeout(a));
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
    fn attempt_ended(&mut self, id: AttemptId, att: &Attempt) {
        let client = &mut self.clients[att.edge.index()];
        if att.retry {
            client.active_retries -= 1;
        }
        if att.holds_slot {
            self.release_slot(att.edge);
        }
        if let Some(lc) = self.logicals.get_mut(att.logical) {
            let g = lc.gated_mut();
            g.in_flight -= 1;
            if g.current == Some(id) {
                g.current = None;
            } else {
                g.hedges.retain(|&h| h != id);
            }
        }
    }

    pub(super) fn on_reply(
        &mut self,
        a: AttemptId,
        edge: EdgeId,
        status: Status,
        degraded: bool,
        measured: bool,
        retry_after_ms: u32,
        sched: &mut Scheduler<Event>,
    ) {
        let now = sched.now();
        let att = match self.logicals.take_attempt(a) {
            None => {
                self.metrics.edges[edge.index()].late_replies += u64::from(measured);
                return;
            }
            Some(Taken::Own(l, own_edge)) => {
                self.trace_attempt_end(a, super::trace::AttemptEnd::Answered(status), now);
                assert_eq!(own_edge, edge);
                return if status.is_ok() {
                    self.complete(l, Outcome::Ok { degraded }, sched)
                } else {
                    self.complete(l, Outcome::Failed(status), sched)
                };
            }
            Some(Taken::Separate(att)) => att,
        };
        self.trace_attempt_end(a, super::trace::AttemptEnd::Answered(status), now);
        assert_eq!(att.edge, edge);
        self.attempt_ended(a, &att);
        let policy = self.policy(edge);
        let failure = !status.is_ok() && policy.failure.statuses.contains(status);
        let pushback = Pushback::from_wire(retry_after_ms);
        if let Some(p) = att.permit {
            self.breaker_record(edge, p, failure, now.since(att.sent_at), sched);
        }
        self.throttle_note(edge, status, pushback);
        if status.is_ok() {
            if let Some(c) = self.policy(edge).cache {
                let key = self.logicals.carried(att.logical).0 as usize;
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

    pub(super) fn on_attempt_timeout(&mut self, a: AttemptId, sched: &mut Scheduler<Event>) {
        let now = sched.now();
        // Already answered or cancelled: this timer is stale.
        let Some(taken) = self.logicals.take_attempt(a) else {
            return;
        };
        self.trace_attempt_end(a, super::trace::AttemptEnd::Timeout, now);
        let att = match taken {
            Taken::Own(l, _) => {
                // A plain call: no gates to give back, nothing to retry.
                let lc = &self.logicals[l];
                let (served_by, edge, measured) = (lc.served_by, lc.edge, lc.measured);
                self.orphan(served_by);
                if measured {
                    self.metrics.edges[edge.index()].timeouts += 1;
                }
                return self.complete(l, Outcome::Failed(Status::DeadlineExceeded), sched);
            }
            Taken::Separate(att) => att,
        };
        self.orphan(att.served_by);
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

    pub(super) fn on_deadline(&mut self, l: CallId, sched: &mut Scheduler<Event>) {
        let Some(lc) = self.logicals.get(l) else {
            return;
        };
        if lc.measured {
            self.metrics.edges[lc.edge.index()].timeouts += 1;
        }
        self.complete(l, Outcome::Failed(Status::DeadlineExceeded), sched);
    }

    /// Takes a logical call apart: cancels its attempts in flight and gives back what
    /// it holds. `succeeded` tells a half-open breaker how a cancelled probe went.
    /// Returns what the caller needs to be told (the call itself is dropped in place:
    /// this runs once per call, and moving the whole call out showed in profiles).
    fn dismantle(
        &mut self,
        l: CallId,
        succeeded: bool,
        sched: &mut Scheduler<Event>,
    ) -> Option<Ended> {
        let (_, op) = self.logicals.carried(l);
        let lc = self.logicals.get_mut(l)?;
        let ended = Ended {
            origin: lc.origin,
            edge: lc.edge,
            started_at: lc.started_at,
            measured: lc.measured,
            op,
        };
        let now = sched.now();
        let Some(mut g) = lc.gated.take() else {
            self.dismantle_plain(l, &ended, now);
            return Some(ended);
        };
        let (waiting, permit, current) = (g.waiting, g.permit, g.current);
        // A slot handed over for a launch that will never happen must be passed on, and
        // a call abandoned before its attempt left is cancelled all the same.
        let (granted, unsent) = (
            g.slot_granted,
            g.waiting || g.slot_granted || g.token_reserved,
        );
        let mut hedges = std::mem::take(&mut g.hedges);
        self.logicals.discard(l);
        for a in current.into_iter().chain(hedges.drain(..)) {
            if let Some(Taken::Separate(att)) = self.logicals.take_attempt(a) {
                self.trace_attempt_end(a, super::trace::AttemptEnd::Cancelled, now);
                self.orphan(att.served_by);
                self.attempt_ended(a, &att);
                if att.measured {
                    self.metrics.edges[att.edge.index()].cancelled += 1;
                }
                if let Some(p) = att.permit {
                    self.breaker_record(att.edge, p, !succeeded, now.since(att.sent_at), sched);
                }
            }
        }
        g.hedges = hedges;
        self.spare_gated.push(g);
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

    /// Takes a plain call apart: its own attempt, if still in flight, is cancelled with it.
    fn dismantle_plain(&mut self, l: CallId, ended: &Ended, now: SimTime) {
        let lc = &self.logicals[l];
        let (sent, served_by) = (lc.sent, lc.served_by);
        self.logicals.discard(l);
        if sent {
            let a = AttemptId::from_id(l.id());
            self.trace_attempt_end(a, super::trace::AttemptEnd::Cancelled, now);
            self.orphan(served_by);
            if ended.measured {
                self.metrics.edges[ended.edge.index()].cancelled += 1;
            }
        }
        self.clients[ended.edge.index()].active_calls -= 1;
    }

    /// The caller no longer wants the answer (its fiber was cancelled).
    pub(super) fn abandon_call(&mut self, l: CallId, sched: &mut Scheduler<Event>) {
        let _ = self.dismantle(l, false, sched);
        self.trace_call_end(l, None, sched.now());
    }

    /// The logical call is over: record it and tell the caller.
    pub(super) fn complete(&mut self, l: CallId, outcome: Outcome, sched: &mut Scheduler<Event>) {
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
                    .record_status(workload.index(), latency, status);
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
        f: FiberId,
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
