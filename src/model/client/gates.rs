//! The policy gates of a call's attempts, apart from the call's lifecycle (`client.rs`):
//! the rate limiter, the circuit breaker and the bulkhead (or connection pool) an attempt
//! passes before it leaves, in that order; and what follows a failed attempt: a hedge,
//! a retry after a backoff (budgets, gRPC throttling, pushback), or the end of the call.

use super::{ClientState, FOREVER};
use crate::engine::{Scheduler, SimDuration, SimTime};
use crate::model::breaker::Permit;
use crate::model::policy::{HedgeRules, HedgeSpec, PolicySpec, Pushback, RetryBudget, RetrySpec};
use crate::model::spec::EdgeId;
use crate::model::status::Status;
use crate::model::world::{CallId, Event, NO_DEADLINE, Outcome, World};
use std::rc::Rc;

#[derive(Clone, Copy, Debug)]
pub(super) enum Refusal {
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
    /// Begins the next attempt of a logical call: rate limiter, breaker, bulkhead, send.
    /// (A plain call's one attempt leaves from `start_call`, past no gates.)
    pub(in crate::model) fn launch(&mut self, l: CallId, sched: &mut Scheduler<Event>) {
        let edge = self.logicals[l].edge;
        let spec = Rc::clone(&self.spec);
        let policy = spec.policy_of(edge);
        let g = self.logicals[l].gated_mut();
        if !g.token_reserved && !g.slot_granted && g.permit.is_none() {
            g.tries += 1;
        }
        if !self.rate_limiter_passes(l, policy, sched) {
            return;
        }
        self.logicals[l].gated_mut().token_reserved = false;
        if !self.breaker_passes(l, policy, sched) {
            return;
        }
        let Some(holds_slot) = self.gate_passes(l, policy, sched) else {
            return;
        };
        let g = self.logicals[l].gated_mut();
        g.slot_granted = false;
        let permit = g.permit.take();
        self.send_attempt(l, permit, holds_slot, sched);
    }

    /// The rate limiter: true when a token is there (or was reserved before); false when
    /// the call waits for one (launched again then) or was refused.
    fn rate_limiter_passes(
        &mut self,
        l: CallId,
        policy: &PolicySpec,
        sched: &mut Scheduler<Event>,
    ) -> bool {
        let lc = &mut self.logicals[l];
        let client = &mut self.clients[lc.edge.index()];
        let g = lc.gated_mut();
        if let (Some(spec), Some(bucket)) = (&policy.rate_limit, &mut client.bucket)
            && !g.token_reserved
            && !g.slot_granted
            && g.permit.is_none()
        {
            match bucket.take(spec, sched.now()) {
                Some(wait) if wait.is_zero() => {}
                Some(wait) => {
                    g.token_reserved = true;
                    sched.after(wait, Event::Launch(l));
                    return false;
                }
                None => {
                    self.refuse(l, Refusal::RateLimit, sched);
                    return false;
                }
            }
        }
        true
    }

    /// The circuit breaker: true with a permit held by the call (or no breaker); false
    /// when it refused the call.
    fn breaker_passes(
        &mut self,
        l: CallId,
        policy: &PolicySpec,
        sched: &mut Scheduler<Event>,
    ) -> bool {
        let lc = &mut self.logicals[l];
        let edge = lc.edge;
        let g = lc.gated_mut();
        if let (Some(spec), Some(breaker)) =
            (&policy.breaker, &mut self.clients[edge.index()].breaker)
            && g.permit.is_none()
        {
            match breaker.try_acquire(spec, sched.now()) {
                Some(p) => g.permit = Some(p),
                None => {
                    self.arm_breaker_timer(edge, sched);
                    self.refuse(l, Refusal::Breaker, sched);
                    return false;
                }
            }
            self.arm_breaker_timer(edge, sched);
        }
        true
    }

    /// The bulkhead or connection pool: `Some(holds a slot)` when the attempt may leave;
    /// None when the call waits for a slot (launched again when one is handed over) or
    /// was refused.
    fn gate_passes(
        &mut self,
        l: CallId,
        policy: &PolicySpec,
        sched: &mut Scheduler<Event>,
    ) -> Option<bool> {
        let lc = &mut self.logicals[l];
        let edge = lc.edge;
        let lc = lc.gated_mut();
        let client = &mut self.clients[edge.index()];
        let Some(spec) = client.gate else {
            return Some(false);
        };
        if lc.slot_granted {
            return Some(true); // handed over by a finishing attempt
        }
        if client.bulkhead_active < spec.max_concurrent {
            client.bulkhead_active += 1;
            return Some(true);
        }
        if !spec.max_wait.is_zero() {
            lc.waiting = true;
            client.bulkhead_queue.push_back(l);
            let try_number = lc.tries;
            if spec.max_wait != FOREVER {
                sched.after(
                    spec.max_wait,
                    Event::BulkheadTimeout {
                        call: l,
                        try_number,
                    },
                );
            }
            return None;
        }
        // A full bulkhead is a failure for the breaker unless the policy says
        // otherwise (see FailureFilter::rejections).
        if let Some(p) = lc.permit.take() {
            let failure = policy.failure.rejections;
            self.breaker_record(edge, p, failure, SimDuration::ZERO, sched);
        }
        self.refuse(l, Refusal::Bulkhead, sched);
        None
    }

    /// A call's next attempt is due (after a backoff, a token wait or a slot handed over),
    /// unless the call is over.
    pub(in crate::model) fn on_launch(&mut self, l: CallId, sched: &mut Scheduler<Event>) {
        if self.logicals.contains(l) {
            self.launch(l, sched);
        }
    }

    /// A bulkhead slot (or pooled connection) is free: it goes straight to the first
    /// caller still waiting for one, if any.
    pub(super) fn release_slot(&mut self, edge: EdgeId) {
        let client = &mut self.clients[edge.index()];
        while let Some(next) = client.bulkhead_queue.pop_front() {
            if let Some(w) = self.logicals.get_mut(next).map(|w| w.gated_mut())
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

    pub(super) fn breaker_record(
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

    pub(in crate::model) fn on_breaker_timer(
        &mut self,
        edge: EdgeId,
        sched: &mut Scheduler<Event>,
    ) {
        let now = sched.now();
        let policy = self.spec.policy_of(edge);
        let client = &mut self.clients[edge.index()];
        client.breaker_timer_at = None;
        if let (Some(spec), Some(b)) = (&policy.breaker, &mut client.breaker) {
            b.on_timer(spec, now);
        }
        self.arm_breaker_timer(edge, sched);
    }

    /// gRPC throttling tokens: an ok answer gives some back; a failure takes one if its
    /// status is retryable (or non-fatal, hedging) or its pushback says not to retry
    /// (gRFC A6 "Throttling"; grpc-go stream.go:829/854, grpc-java RetriableStream.java:1075/1104).
    pub(super) fn throttle_note(
        &mut self,
        edge: EdgeId,
        status: Status,
        pushback: Option<Pushback>,
    ) {
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

    pub(in crate::model) fn on_hedge(&mut self, l: CallId, sched: &mut Scheduler<Event>) {
        let now = sched.now();
        let Some(lc) = self.logicals.get_mut(l) else {
            return;
        };
        let edge = lc.edge;
        let g = lc.gated_mut();
        if g.next_hedge_at != Some(now) {
            return; // moved by a non-fatal failure or a pushback, or stopped
        }
        g.next_hedge_at = None;
        let h = self
            .spec
            .policy_of(edge)
            .hedge
            .expect("a hedge timer belongs to a hedging policy");
        // gRFC A6 "Throttling": a hedge goes out only while tokens are over the threshold
        // (grpc-java checks when it schedules one, below).
        let throttled = h.follows == HedgeRules::A6 && self.hedge_throttled(edge);
        let g = self.logicals[l].gated();
        if throttled || g.tries >= h.max_attempts {
            if !g.attempt_pending() {
                let status = g.failed_with;
                return self.complete(l, Outcome::Failed(status), sched);
            }
            return;
        }
        self.logicals[l].gated_mut().next_is_hedge = true;
        self.launch(l, sched);
        // grpc-java schedules the next hedge only while over the threshold
        // (RetriableStream.java:497-503).
        let frozen = h.follows == HedgeRules::GrpcJava && self.hedge_throttled(edge);
        if let Some(lc) = self.logicals.get_mut(l).map(|lc| lc.gated_mut())
            && lc.next_hedge_at.is_none()
            && lc.tries < h.max_attempts
            && !frozen
            && let Some(at) = now.checked_add(h.delay)
        {
            lc.next_hedge_at = Some(at);
            sched.at(at, Event::Hedge(l));
        }
    }

    /// A hedging policy's throttle is at or below its threshold.
    pub(super) fn hedge_throttled(&self, edge: EdgeId) -> bool {
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

    pub(in crate::model) fn on_bulkhead_timeout(
        &mut self,
        l: CallId,
        try_number: u32,
        sched: &mut Scheduler<Event>,
    ) {
        let Some(lc) = self.logicals.get_mut(l) else {
            return;
        };
        let edge = lc.edge;
        let g = lc.gated_mut();
        if !g.waiting || g.tries != try_number {
            return;
        }
        g.waiting = false;
        let permit = g.permit.take();
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
    fn refuse(&mut self, l: CallId, why: Refusal, sched: &mut Scheduler<Event>) {
        self.trace_refused(l, self.logicals[l].gated().tries, why.name(), sched.now());
        let lc = &mut self.logicals[l];
        let g = lc.gated();
        let hedge_refused = g.next_is_hedge && g.in_flight > 0;
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
            self.logicals[l].gated_mut().next_is_hedge = false;
            return;
        }
        self.after_failure(l, status, None, sched);
    }

    /// After a failed attempt: hedge on, retry after a backoff, or give up.
    pub(super) fn after_failure(
        &mut self,
        l: CallId,
        status: Status,
        pushback: Option<Pushback>,
        sched: &mut Scheduler<Event>,
    ) {
        let Some(lc) = self.logicals.get(l) else {
            return;
        };
        let policy = self.spec.policy_of(lc.edge);
        if let Some(h) = policy.hedge {
            return self.after_hedge_failure(l, h, status, pushback, sched);
        }
        if policy.retry.is_some() {
            return self.after_try_failure(l, status, pushback, sched);
        }
        self.complete(l, Outcome::Failed(status), sched);
    }

    /// A hedged call's attempt failed: a fatal status ends the call; otherwise the next
    /// hedge may come sooner (pushback), never (throttle, no attempts left), or on time.
    fn after_hedge_failure(
        &mut self,
        l: CallId,
        h: HedgeSpec,
        status: Status,
        pushback: Option<Pushback>,
        sched: &mut Scheduler<Event>,
    ) {
        let now = sched.now();
        if !h.non_fatal.contains(status) {
            return self.complete(l, Outcome::Failed(status), sched);
        }
        let pushback = pushback.filter(|_| h.pushback);
        // The tokens already count this failure (`throttle_note`).
        let throttled = self.hedge_throttled(self.logicals[l].edge);
        let lc = self.logicals[l].gated_mut();
        lc.failed_with = status;
        if throttled && h.follows == HedgeRules::GrpcJava {
            // Not hedgeable (RetriableStream.java:1112): the call fails with it.
            return self.complete(l, Outcome::Failed(status), sched);
        }
        if throttled || pushback == Some(Pushback::Stop) || lc.tries >= h.max_attempts {
            // gRFC A6: no further hedges; those sent carry on.
            lc.next_hedge_at = None;
        } else {
            let next = match (h.follows, pushback) {
                (HedgeRules::A6, Some(Pushback::After(d))) => now.checked_add(d),
                (HedgeRules::A6, _) | (HedgeRules::GrpcJava, Some(_)) => Some(now),
                (HedgeRules::GrpcJava, None) => None, // the timer stands
            };
            if let Some(at) = next {
                lc.next_hedge_at = Some(at);
                if at == now {
                    self.immediate.push_back(Event::Hedge(l));
                } else {
                    sched.at(at, Event::Hedge(l));
                }
            }
        }
        let lc = self.logicals[l].gated();
        if lc.next_hedge_at.is_none() && !lc.attempt_pending() {
            self.complete(l, Outcome::Failed(status), sched);
        }
        // else another attempt may still succeed
    }

    /// A retried call's attempt failed: retry after a backoff if the status, the
    /// attempts left, the budget or throttle and the deadline allow it, else give up.
    fn after_try_failure(
        &mut self,
        l: CallId,
        status: Status,
        pushback: Option<Pushback>,
        sched: &mut Scheduler<Event>,
    ) {
        let now = sched.now();
        let spec = self.spec.clone();
        let lc = &mut self.logicals[l];
        let (edge, measured, deadline) = (lc.edge, lc.measured, lc.deadline);
        let lc = lc.gated_mut();
        let retry = spec
            .policy_of(edge)
            .retry
            .as_ref()
            .expect("a retrying policy");
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
        if !retry_allowed(retry, client, retryable, now) {
            if measured {
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
        if deadline != NO_DEADLINE && now.checked_add(delay).is_none_or(|t| t >= deadline) {
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
}

/// May one more retry go out? The gRPC throttle (checked by grpc-java only for a status
/// it counted, RetriableStream.java:1074-1080), else the retry budget, if any.
fn retry_allowed(
    retry: &RetrySpec,
    client: &mut ClientState,
    retryable: bool,
    now: SimTime,
) -> bool {
    match (&retry.throttle, &client.throttle) {
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
    }
}
