//! Serving: a request arrives at a service, the balancer picks a replica, a worker takes
//! it (or it waits in the replica's queue, or is rejected), and the invocation answers
//! once: a reply over the link, or, for a consumer, a settlement of its delivery.

use super::event::{AttemptId, DeliveryId, Event, FiberId, InvocationId};
use super::fiber::{Fiber, Wait};
use super::{NO_DEADLINE, Outcome, World, overlap_ns};
use crate::engine::{Scheduler, SimDuration, SimTime, Stream, stream};
use crate::model::spec::*;
use crate::model::status::Status;
use rand::RngExt;
use std::collections::VecDeque;

/// Where an invocation's answer goes.
#[derive(Clone, Copy, Debug)]
pub(in crate::model) enum AnswerTo {
    /// A reply to a caller's attempt over the edge's link; the caller may have given up,
    /// then the reply is late. `measured`: the attempt was sent after warmup (its late
    /// reply, if any, is counted).
    Attempt {
        attempt: AttemptId,
        edge: EdgeId,
        measured: bool,
    },
    /// A settlement of a consumer's delivery: an ack (or nack...), not a reply.
    Delivery(DeliveryId),
}

/// One request being served by one replica.
pub(in crate::model) struct Invocation {
    pub endpoint: EndpointId,
    /// Where the answer goes: a reply to an attempt, or a consumer's settlement.
    pub answer_to: AnswerTo,
    /// The logical operation (workload request, or its key) the work belongs to.
    pub op: u64,
    /// The message a consumer handles (deliveries only).
    pub msg: u64,
    pub replica: u32,
    pub arrived_at: SimTime,
    /// The caller's propagated deadline (NO_DEADLINE if none).
    pub deadline: SimTime,
    /// When this invocation took the worker it holds, if it holds one.
    pub worker_since: Option<SimTime>,
    /// Worker time spent so far (for the wasted-work count): disjoint spans of the
    /// simulated clock, so it fits the clock's u64.
    pub busy_ns: u64,
    /// Waiting in the replica's queue for its first worker.
    pub queued: bool,
    /// The request's key (from the workload's key space), passed on to its calls.
    pub key: u32,
    /// Reply messages (more than one for a server stream).
    pub messages: u32,
    /// A `fail` step's retry-after hint, as sent with the answer (`Pushback::to_wire`).
    pub retry_after_ms: u32,
    /// The root fiber (the handler's steps).
    pub root: FiberId,
    pub degraded: bool,
    pub measured: bool,
    /// Fibers alive; zero when the answer is sent.
    pub fibers: u32,
    /// Whether anyone up the chain still waits for the answer (`lineage.rs`).
    pub lineage: super::lineage::Lineage,
}

#[derive(Clone, Copy, Debug)]
pub(in crate::model) enum Queued {
    /// A new request waiting for its first worker.
    Start(InvocationId),
    /// A released-mode handler waiting for a worker to continue.
    Resume(FiberId),
}

pub(in crate::model) struct Replica {
    pub service: ServiceId,
    pub workers: u32,
    pub busy: u32,
    pub queue: VecDeque<Queued>,
    /// `Start` entries in `queue`: what the capacity bounds.
    pub queued_new: u32,
    /// Admitted and not yet answered, for least-outstanding balancing.
    pub outstanding: u32,
    pub rng: Stream,
}

pub(super) struct BalancerState {
    pub(super) next: u32,
    pub(super) rng: Stream,
}

impl Replica {
    /// Every service's replicas, in service order, and the index of each service's first.
    pub(super) fn all(spec: &Spec, seed: u64) -> (Vec<Replica>, Vec<u32>) {
        let mut replicas = Vec::new();
        let mut first_replica = Vec::new();
        for (s, svc) in spec.services.iter().enumerate() {
            first_replica.push(replicas.len() as u32);
            for r in 0..svc.replicas {
                replicas.push(Replica {
                    service: ServiceId(s as u32),
                    workers: svc.workers,
                    busy: 0,
                    queue: VecDeque::new(),
                    queued_new: 0,
                    outstanding: 0,
                    rng: stream(seed, &format!("replica/{}/{r}", svc.name)),
                });
            }
        }
        (replicas, first_replica)
    }
}

impl BalancerState {
    pub(super) fn all(spec: &Spec, seed: u64) -> Vec<BalancerState> {
        spec.services
            .iter()
            .map(|s| BalancerState {
                next: 0,
                rng: stream(seed, &format!("balancer/{}", s.name)),
            })
            .collect()
    }
}

impl World {
    pub(super) fn pick_replica(&mut self, service: ServiceId) -> u32 {
        let count = self.spec.services[service.index()].replicas;
        let first = self.first_replica[service.index()];
        if count == 1 {
            return first;
        }
        let b = &mut self.balancers[service.index()];
        let outstanding = |r: u32| self.replicas[(first + r) as usize].outstanding;
        let pick = match self.spec.services[service.index()].balancer {
            Balancer::RoundRobin => {
                let r = b.next % count;
                b.next = b.next.wrapping_add(1);
                r
            }
            Balancer::Random => b.rng.random_range(0..count),
            Balancer::LeastOutstanding => {
                // Ties go round-robin, so an idle service still spreads its load.
                let start = b.next % count;
                b.next = b.next.wrapping_add(1);
                (0..count)
                    .map(|k| (start + k) % count)
                    .min_by_key(|&r| outstanding(r))
                    .expect("at least one replica")
            }
            Balancer::PowerOfTwoChoices => {
                let a = b.rng.random_range(0..count);
                let mut c = b.rng.random_range(0..count - 1);
                if c >= a {
                    c += 1;
                }
                if outstanding(c) < outstanding(a) {
                    c
                } else {
                    a
                }
            }
        };
        first + pick
    }

    /// Answers a request without serving it (refused, rejected, failed by a fault).
    pub(in crate::model) fn answer_unserved(
        &mut self,
        attempt: AttemptId,
        edge: EdgeId,
        status: Status,
        measured: bool,
        sched: &mut Scheduler<Event>,
    ) {
        self.trace_replied(attempt, sched.now());
        let link = self.spec.edges[edge.index()].link;
        let reply = Event::Reply {
            attempt,
            edge,
            status,
            degraded: false,
            measured,
            retry_after_ms: 0,
        };
        let extra = self.edge_costs[edge.index()].per_message;
        if !self.transmit(link, reply, extra, sched) {
            self.metrics.edges[edge.index()].lost_replies += 1;
        }
    }

    /// An attempt's request reaches the callee's service: turned away, or admitted on
    /// the replica the balancer picks.
    pub(super) fn on_request(
        &mut self,
        attempt: AttemptId,
        edge: EdgeId,
        attempt_measured: bool,
        deadline: SimTime,
        sched: &mut Scheduler<Event>,
    ) {
        let now = sched.now();
        self.trace_arrived(attempt, now);
        let endpoint = self.spec.edges[edge.index()].target;
        let service = self.spec.endpoints[endpoint.index()].service;
        let r = self.pick_replica(service);
        let measured = now >= self.warmup_end;
        self.metrics.endpoints[endpoint.index()].arrivals += u64::from(measured);
        let (key, op) = self.request_key(attempt);
        let replica = &self.replicas[r as usize];
        assert_eq!(replica.service, service);
        let starts_now = replica.busy < replica.workers;
        if let Some(status) = self.turned_away(endpoint, r, starts_now, deadline, op, now) {
            return self.answer_unserved(attempt, edge, status, attempt_measured, sched);
        }
        let answer_to = AnswerTo::Attempt {
            attempt,
            edge,
            measured: attempt_measured,
        };
        let inv = |root| Invocation {
            op,
            deadline,
            key,
            ..Invocation::arriving(endpoint, r, answer_to, now, starts_now, measured, root)
        };
        let decode = self.edge_costs[edge.index()].server_decode;
        let inv = self.admit(inv, starts_now, decode, sched);
        if self.spec.services[service.index()].drop_expired && deadline != NO_DEADLINE {
            sched.at(deadline, Event::Abort(inv));
        }
    }

    /// The (key, operation) a request carries down the chain, when something uses them.
    fn request_key(&self, attempt: AttemptId) -> (u32, u64) {
        if !self.keyed {
            return (0, 0);
        }
        self.logicals
            .call_of(attempt)
            .map_or((0, 0), |l| self.logicals.carried(l))
    }

    /// Why a request arriving at replica `r` is answered without being served, in the
    /// order checked: a fault, its deadline already past (deadline-aware services), a
    /// full queue, a duplicate idempotency key. Counts it in the endpoint's books.
    fn turned_away(
        &mut self,
        endpoint: EndpointId,
        r: u32,
        starts_now: bool,
        deadline: SimTime,
        op: u64,
        now: SimTime,
    ) -> Option<Status> {
        let measured = u64::from(now >= self.warmup_end);
        let service = self.spec.endpoints[endpoint.index()].service;
        let first = self.first_replica[service.index()];
        let em = &mut self.metrics.endpoints[endpoint.index()];
        if self.faults.service_faulted(service)
            && let Some(status) = self.faults.on_arrival(&self.spec, first, service, r)
        {
            em.faulted += measured;
            return Some(status);
        }
        let svc = &self.spec.services[service.index()];
        if svc.drop_expired && deadline <= now {
            em.expired += measured;
            return Some(Status::DeadlineExceeded);
        }
        if !starts_now && self.replicas[r as usize].queued_new >= svc.queue_capacity {
            em.rejected += measured;
            return Some(Status::Unavailable);
        }
        if self.spec.endpoints[endpoint.index()].idempotency.is_some() {
            return self
                .ledger
                .idempotency_check(endpoint, op, now, &mut self.metrics.consistency);
        }
        None
    }

    /// Takes an invocation in: it starts on a worker now, or waits in the replica's
    /// queue. `decode`: protocol decode time before the handler runs.
    /// `make` builds the invocation around the id of its root fiber.
    pub(in crate::model) fn admit(
        &mut self,
        make: impl FnOnce(FiberId) -> Invocation,
        starts_now: bool,
        decode: SimDuration,
        sched: &mut Scheduler<Event>,
    ) -> InvocationId {
        let now = sched.now();
        let root = self.fibers.next_id();
        let mut inv = make(root);
        let (endpoint, r, measured, answer_to) =
            (inv.endpoint, inv.replica, inv.measured, inv.answer_to);
        let id = self.invocations.next_id();
        inv.lineage = self.inherit_lineage(id, answer_to);
        let inv = self.invocations.insert(inv);
        assert_eq!(inv, id, "the invocation has the id its lineage was given");
        let fiber = self.fibers.insert(Fiber {
            invocation: inv,
            seq: self.spec.endpoints[endpoint.index()].handler,
            pc: 0,
            join: None,
            wait: Wait::Ready,
            saga: None,
        });
        assert_eq!(
            fiber, root,
            "the root fiber has the id its invocation was given"
        );
        self.trace_admitted(inv, now);
        let replica = &mut self.replicas[r as usize];
        replica.outstanding += 1;
        let em = &mut self.metrics.endpoints[endpoint.index()];
        em.admitted += u64::from(measured);
        em.in_system.increment(now);
        if starts_now {
            replica.busy += 1;
            if measured {
                em.queue_wait.record(SimDuration::ZERO);
            }
            self.begin(root, decode, sched);
        } else {
            replica.queue.push_back(Queued::Start(inv));
            replica.queued_new += 1;
            em.queue_length.increment(now);
        }
        inv
    }

    /// Starts a request's handler on its worker, after the protocol's decode time.
    pub(super) fn begin(
        &mut self,
        root: FiberId,
        decode: SimDuration,
        sched: &mut Scheduler<Event>,
    ) {
        if decode.is_zero() {
            self.advance(root, sched);
        } else {
            self.fibers[root].wait = Wait::Work;
            sched.after(decode, Event::WorkDone(root));
        }
    }

    pub(in crate::model) fn release_worker(
        &mut self,
        r: u32,
        endpoint: EndpointId,
        since: SimTime,
        sched: &mut Scheduler<Event>,
    ) {
        let now = sched.now();
        self.metrics.endpoints[endpoint.index()].busy_ns += overlap_ns(since, now, self.warmup_end);
        // The worker goes straight to the next in line, if any. (A loop, not recursion:
        // a long queue of expired requests must not grow the stack.)
        while let Some(next) = self.replicas[r as usize].queue.pop_front() {
            match next {
                Queued::Start(i) => {
                    self.replicas[r as usize].queued_new -= 1;
                    let Some(inv) = self.invocations.get_mut(i) else {
                        continue;
                    };
                    inv.queued = false;
                    let em = &mut self.metrics.endpoints[inv.endpoint.index()];
                    em.queue_length.decrement(now);
                    let service = self.spec.endpoints[inv.endpoint.index()].service;
                    if self.spec.services[service.index()].drop_expired && inv.deadline <= now {
                        // Its caller has given up already: do not waste a worker on it.
                        em.expired += u64::from(inv.measured);
                        let root = inv.root;
                        self.cancel_fiber(root, sched);
                        self.respond(i, Outcome::Failed(Status::DeadlineExceeded), sched);
                        continue;
                    }
                    inv.worker_since = Some(now);
                    if inv.measured {
                        em.queue_wait.record(now.since(inv.arrived_at));
                    }
                    self.trace_started(i, now);
                    let inv = &self.invocations[i];
                    let root = inv.root;
                    let decode = match inv.answer_to {
                        AnswerTo::Attempt { edge, .. } => {
                            self.edge_costs[edge.index()].server_decode
                        }
                        AnswerTo::Delivery(_) => SimDuration::ZERO,
                    };
                    if decode.is_zero() {
                        self.immediate.push_back(Event::Run(root));
                    } else {
                        self.begin(root, decode, sched);
                    }
                    return;
                }
                Queued::Resume(f) => {
                    let Some(fiber) = self.fibers.get(f) else {
                        continue;
                    };
                    self.invocations[fiber.invocation].worker_since = Some(now);
                    self.immediate.push_back(Event::Run(f));
                    return;
                }
            }
        }
        self.replicas[r as usize].busy -= 1;
    }

    pub(in crate::model) fn respond(
        &mut self,
        i: InvocationId,
        outcome: Outcome,
        sched: &mut Scheduler<Event>,
    ) {
        let now = sched.now();
        let inv = self
            .invocations
            .remove(i)
            .expect("answering a live request");
        assert_eq!(inv.fibers, 0, "answered with branches still running");
        let (status, degraded) = match outcome {
            Outcome::Ok { degraded } => (Status::Ok, degraded || inv.degraded),
            Outcome::Failed(s) => (s, false),
        };
        self.trace_answered(i, Some(status), now);
        if self.ledger.in_use {
            self.end_transaction(i, &inv, status.is_ok(), now);
            if let AnswerTo::Attempt { .. } = inv.answer_to
                && let Some(retention) = self.spec.endpoints[inv.endpoint.index()].idempotency
            {
                self.ledger.idempotency_store(
                    inv.endpoint,
                    inv.op,
                    status,
                    retention,
                    now,
                    &mut self.metrics.consistency,
                );
            }
        }
        let orphaned = inv.measured && self.abandoned(inv.lineage);
        self.record_answer(&inv, status, orphaned, now);
        self.replicas[inv.replica as usize].outstanding -= 1;
        match inv.answer_to {
            AnswerTo::Delivery(d) => self.delivery_handled(d, status, sched),
            AnswerTo::Attempt {
                attempt,
                edge,
                measured,
            } => {
                self.trace_replied(attempt, now);
                let link = self.spec.edges[edge.index()].link;
                let reply = Event::Reply {
                    attempt,
                    edge,
                    status,
                    degraded,
                    measured,
                    retry_after_ms: inv.retry_after_ms,
                };
                let extra = SimDuration::from_nanos(
                    self.edge_costs[edge.index()]
                        .per_message
                        .as_nanos()
                        .saturating_mul(u64::from(inv.messages)),
                );
                if !self.transmit(link, reply, extra, sched) {
                    self.metrics.edges[edge.index()].lost_replies += 1;
                }
            }
        }
        if let Some(since) = inv.worker_since {
            self.release_worker(inv.replica, inv.endpoint, since, sched);
        }
    }

    /// The endpoint's books for an answer: counts, latency, wasted work, windows, series.
    fn record_answer(&mut self, inv: &Invocation, status: Status, orphaned: bool, now: SimTime) {
        let latency = now.since(inv.arrived_at);
        let em = &mut self.metrics.endpoints[inv.endpoint.index()];
        if inv.measured {
            em.completed += 1;
            if status.is_ok() {
                em.ok += 1;
            } else {
                em.errors.add(status);
            }
            em.latency.record(latency);
            if orphaned {
                em.orphaned += 1;
                let held = inv
                    .worker_since
                    .map_or(0, |s| u128::from(now.since(s).as_nanos()));
                em.orphaned_work_ns += u128::from(inv.busy_ns) + held;
            }
        }
        em.in_system.decrement(now);
        self.record_windows(WindowTarget::Endpoint(inv.endpoint), now, latency, status);
        let series = self.spec.workloads.len() + inv.endpoint.index();
        self.metrics.series.record(series, latency, !status.is_ok());
    }

    /// Drops an invocation still waiting for its first worker, unanswered (a consumer
    /// lets go of a delivery the broker took back). Returns whether it was waiting; its
    /// entry in the replica's queue stays and is skipped when a worker reaches it.
    pub(in crate::model) fn discard_waiting(&mut self, i: InvocationId, now: SimTime) -> bool {
        if !self.invocations.get(i).is_some_and(|inv| inv.queued) {
            return false;
        }
        let inv = self.invocations.remove(i).expect("live");
        let root = self
            .fibers
            .remove(inv.root)
            .expect("a waiting handler's root fiber");
        assert_eq!(root.pc, 0, "a waiting handler has not run");
        let em = &mut self.metrics.endpoints[inv.endpoint.index()];
        em.queue_length.decrement(now);
        em.in_system.decrement(now);
        self.replicas[inv.replica as usize].outstanding -= 1;
        true
    }

    /// A deadline-aware server stops working on a request whose deadline passed.
    pub(super) fn on_abort(&mut self, i: InvocationId, sched: &mut Scheduler<Event>) {
        let Some(inv) = self.invocations.get(i) else {
            return;
        };
        let (root, replica, endpoint) = (inv.root, inv.replica, inv.endpoint);
        if inv.measured {
            self.metrics.endpoints[endpoint.index()].expired += 1;
        }
        if inv.queued {
            // It leaves the queue now, not when a worker would have reached it.
            let rep = &mut self.replicas[replica as usize];
            rep.queue
                .retain(|q| !matches!(q, Queued::Start(x) if *x == i));
            rep.queued_new -= 1;
            self.metrics.endpoints[endpoint.index()]
                .queue_length
                .decrement(sched.now());
        }
        self.cancel_fiber(root, sched);
        self.respond(i, Outcome::Failed(Status::DeadlineExceeded), sched);
    }

    /// Crashes a replica: every request it holds is lost without an answer.
    pub(in crate::model) fn crash_replica(&mut self, r: u32, sched: &mut Scheduler<Event>) -> u64 {
        let now = sched.now();
        let lost: Vec<InvocationId> = self
            .invocations
            .ids()
            .filter(|&i| self.invocations[i].replica == r)
            .collect();
        for &i in &lost {
            self.trace_answered(i, None, now);
            let root = self.invocations[i].root;
            self.cancel_fiber(root, sched);
            let inv = self.invocations.remove(i).expect("live");
            if self.ledger.in_use {
                self.ledger.abort(i);
                if self.spec.endpoints[inv.endpoint.index()]
                    .idempotency
                    .is_some()
                {
                    self.ledger.idempotency_forget(inv.endpoint, inv.op);
                }
            }
            let em = &mut self.metrics.endpoints[inv.endpoint.index()];
            em.in_system.decrement(now);
            if let Some(since) = inv.worker_since {
                em.busy_ns += overlap_ns(since, now, self.warmup_end);
            }
        }
        // Queued requests are invocations too: all were in `lost`.
        let replica = &mut self.replicas[r as usize];
        replica.queue.clear();
        replica.queued_new = 0;
        replica.busy = 0;
        replica.outstanding = 0;
        self.recount_queues(now);
        lost.len() as u64
    }

    /// Rebuilds every endpoint's queue-length gauge from the replicas' queues (after a
    /// crash emptied some of them).
    pub(super) fn recount_queues(&mut self, now: SimTime) {
        let mut counts = vec![0u64; self.spec.endpoints.len()];
        for rep in &self.replicas {
            for q in &rep.queue {
                if let Queued::Start(i) = q
                    && let Some(inv) = self.invocations.get(*i)
                {
                    counts[inv.endpoint.index()] += 1;
                }
            }
        }
        for (e, n) in self.metrics.endpoints.iter_mut().zip(counts) {
            e.queue_length.set(now, n);
        }
    }
}

impl Invocation {
    /// A request or delivery arriving at replica `replica` at `now`, on a worker at once
    /// when `starts_now`, else queued; what differs by how it came (`msg`, `deadline`,
    /// `key`, `op`) is set by the caller over these defaults.
    pub(super) fn arriving(
        endpoint: EndpointId,
        replica: u32,
        answer_to: AnswerTo,
        now: SimTime,
        starts_now: bool,
        measured: bool,
        root: FiberId,
    ) -> Invocation {
        Invocation {
            endpoint,
            answer_to,
            op: 0,
            msg: 0,
            replica,
            arrived_at: now,
            deadline: NO_DEADLINE,
            worker_since: starts_now.then_some(now),
            busy_ns: 0,
            queued: !starts_now,
            key: 0,
            messages: 1,
            retry_after_ms: 0,
            root,
            degraded: false,
            measured,
            fibers: 1,
            lineage: super::lineage::Lineage::default(),
        }
    }
}
