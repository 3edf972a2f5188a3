//! The running system: replicas with worker pools and queues, handler programs being
//! interpreted, workloads sending requests. The client side of calls (policies,
//! attempts) is in `client.rs`, faults in `faults.rs`.
//!
//! Handlers run as fibers: an invocation (one request being served) has a root fiber,
//! and each `parallel` step spawns one fiber per branch plus a join. Fibers, calls,
//! attempts, invocations and joins live in generational arenas; events carry their
//! ids, so an event for something already gone (a timer for an answered call, work of
//! a cancelled branch) is recognised and dropped. That is the whole of cancellation.
//!
//! Messages with zero latency, and fibers woken by another fiber, go through a FIFO
//! `immediate` queue drained before the next engine event: no handler ever re-enters
//! another, and zero-latency hops cost no trip through the event heap.

use super::arena::{Arena, Id};
use super::broker::{Async, Settlement};
use super::client::{Attempt, ClientState, Logical, Origin};
use super::faults::FaultState;
use super::spec::*;
use super::status::Status;
use crate::engine::{Scheduler, SimDuration, SimTime, Stream, stream};
use crate::metrics::{
    BucketExtras, EdgeMetrics, EndpointMetrics, FaultMetrics, Metrics, Series, SeriesKind,
    StatusCounts, Summary, TimeWeighted, WorkloadMetrics,
};
use rand::RngExt;
use std::collections::VecDeque;
use std::rc::Rc;

/// "No deadline" in events, where an `Option<SimTime>` would make every event larger.
pub const NO_DEADLINE: SimTime = SimTime::MAX;

#[derive(Clone, Copy, Debug)]
pub enum Event {
    /// Open loop: the next request of a workload is due.
    Arrival(WorkloadId),
    /// Closed loop: a user has finished thinking.
    UserReady {
        workload: WorkloadId,
        user: u32,
    },
    /// An attempt's request reaches the callee's service. `measured`: sent after
    /// warmup; `deadline`: the caller's propagated deadline, or NO_DEADLINE.
    Request {
        attempt: Id,
        edge: EdgeId,
        measured: bool,
        deadline: SimTime,
    },
    /// An attempt's answer reaches the caller. `retry_after_ms`: the callee's pushback
    /// hint (0: none).
    Reply {
        attempt: Id,
        edge: EdgeId,
        status: Status,
        degraded: bool,
        measured: bool,
        retry_after_ms: u32,
    },
    /// A fiber's `work` step is over.
    WorkDone(Id),
    /// An attempt's per-try timeout fires (ignored if it was answered).
    AttemptTimeout(Id),
    /// A logical call's overall deadline passes.
    Deadline(Id),
    /// Send a logical call's next attempt (after a backoff or a rate-limiter wait).
    Launch(Id),
    /// A logical call's hedging delay has passed.
    Hedge(Id),
    /// A logical call has waited for a bulkhead slot as long as it may; `try_number`
    /// tells which of its waits.
    BulkheadTimeout {
        logical: Id,
        try_number: u32,
    },
    /// An open breaker's timer (opossum-style open -> half-open) on an edge.
    BreakerTimer(EdgeId),
    /// A deadline-aware server gives up on a request at its deadline.
    Abort(Id),
    /// A fault begins or ends.
    FaultStart(u32),
    FaultEnd(u32),
    /// A fiber's call is over (delivered through the immediate queue).
    CallDone {
        fiber: Id,
        status: Status,
        degraded: bool,
    },
    /// Continue a fiber now.
    Run(Id),
    /// A publish reaches its broker.
    PublishArrive(Id),
    /// The broker's answer to a confirmed publish (try `try_number`).
    Confirm {
        pending: Id,
        try_number: u32,
        ok: bool,
    },
    ConfirmTimeout {
        pending: Id,
        try_number: u32,
    },
    /// Publish again after a nack or a missing confirm.
    Republish(Id),
    /// A delivery reaches its consumer instance.
    Deliver(Id),
    /// A queue may have messages to hand out (after a dead-lettering into it).
    DeliverQueue(QueueId),
    /// An ack, nack or reject reaches the broker.
    Settle {
        delivery: Id,
        how: Settlement,
    },
    AckTimeout(Id),
    /// A message's retry backoff is over: back to its queue.
    Requeue(Id),
    /// A log message retried in place is due again.
    Refetch {
        consumer: ConsumerId,
        partition: u32,
    },
    /// A consumer's handler has run past max.poll.interval.
    PollTimeout(Id),
    /// A crashed group member's session has expired.
    SessionTimeout {
        consumer: ConsumerId,
        instance: u32,
    },
    AutoCommit(ConsumerId),
    /// An outbox relay polls its outbox.
    RelayTick(PublishId),
    /// A time-series bucket ends.
    Tick,
}

/// One request being served by one replica.
pub(super) struct Invocation {
    pub endpoint: EndpointId,
    /// Set when a consumer handles a delivery (the answer is an ack, not a reply).
    pub delivery: Id,
    /// The logical operation (workload request, or its key) the work belongs to.
    pub op: u64,
    /// The message a consumer handles (deliveries only).
    pub msg: u64,
    pub replica: u32,
    /// Where the answer goes; the caller may have given up, then the answer is late.
    pub attempt: Id,
    pub edge: EdgeId,
    /// The attempt was sent after warmup (its late reply, if any, is counted).
    pub attempt_measured: bool,
    pub arrived_at: SimTime,
    /// The caller's propagated deadline (NO_DEADLINE if none).
    pub deadline: SimTime,
    /// When this invocation took the worker it holds, if it holds one.
    pub worker_since: Option<SimTime>,
    /// Worker time spent so far (for the wasted-work count).
    pub busy_ns: u128,
    /// Waiting in the replica's queue for its first worker.
    pub queued: bool,
    /// The request's key (from the workload's key space), passed on to its calls.
    pub key: u32,
    /// Reply messages (more than one for a server stream).
    pub messages: u32,
    /// A `fail` step's retry-after hint, sent with the answer.
    pub retry_after: Option<SimDuration>,
    pub root: Id,
    pub degraded: bool,
    pub measured: bool,
    /// Fibers alive; zero when the answer is sent.
    pub fibers: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Wait {
    Ready,
    Work,
    Call(Id),
    Join(Id),
    /// A publisher confirm.
    Publish(Id),
}

pub(super) struct Fiber {
    pub invocation: Id,
    pub seq: SeqId,
    pub pc: u32,
    /// (join, branch index) for branch fibers; None for the root.
    pub join: Option<(Id, u32)>,
    pub wait: Wait,
    /// Running a saga step.
    pub saga: Option<SagaRun>,
}

#[derive(Clone, Copy, Debug)]
pub(super) struct SagaRun {
    pub saga: SagaId,
    /// Actions completed (and, while compensating, not yet compensated).
    pub done: u32,
    /// The failed action's status, once compensating.
    pub failed: Option<Status>,
}

pub(super) struct JoinState {
    parent: Id,
    parallel: ParallelId,
    children: Vec<Id>,
    settled: u32,
    ok: u32,
    failed: u32,
    first_failure: Option<Status>,
    required_failure: Option<Status>,
    degraded: bool,
}

#[derive(Clone, Copy, Debug)]
pub(super) enum Outcome {
    Ok { degraded: bool },
    Failed(Status),
}

#[derive(Clone, Copy, Debug)]
pub(super) enum Queued {
    /// A new request waiting for its first worker.
    Start(Id),
    /// A released-mode handler waiting for a worker to continue.
    Resume(Id),
}

pub(super) struct Replica {
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

struct BalancerState {
    next: u32,
    rng: Stream,
}

struct WorkloadState {
    rng: Stream,
    zipf: Option<rand_distr::Zipf<f64>>,
}

/// What the protocol adds to each call on an edge (zero without a protocol profile).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct EdgeCost {
    /// Client encode + per-message overhead (+ connection set-up), on the way out.
    pub request: SimDuration,
    /// Server decode, holding the server's worker before the handler runs.
    pub server_decode: SimDuration,
    /// Per reply message: server encode + overhead + client decode.
    pub per_message: SimDuration,
}

pub struct World {
    /// Immutable for the whole run; shared so a handler can hold `&policy` while it
    /// changes the world.
    pub(super) spec: Rc<Spec>,
    pub(super) edge_costs: Vec<EdgeCost>,
    pub(super) warmup_end: SimTime,
    pub(super) replicas: Vec<Replica>,
    /// First replica of each service in `replicas`.
    pub(super) first_replica: Vec<u32>,
    balancers: Vec<BalancerState>,
    pub(super) links: Vec<Stream>,
    workloads: Vec<WorkloadState>,
    pub(super) logicals: Arena<Logical>,
    pub(super) attempts: Arena<Attempt>,
    pub(super) clients: Vec<ClientState>,
    pub(super) invocations: Arena<Invocation>,
    pub(super) fibers: Arena<Fiber>,
    joins: Arena<JoinState>,
    spare_children: Vec<Vec<Id>>,
    pub(super) faults: FaultState,
    /// Some policy caches, or effects and idempotency keys need operations: requests
    /// carry their keys and operations down the call chain.
    pub(super) keyed: bool,
    pub(super) immediate: VecDeque<Event>,
    pub(super) asy: Async,
    bucket_start: SimTime,
    requests_sent: u64,
    last_activity: SimTime,
    pub(super) metrics: Metrics,
}

impl World {
    pub fn new(spec: Spec) -> World {
        let seed = spec.seed;
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
        let balancers = spec
            .services
            .iter()
            .map(|s| BalancerState {
                next: 0,
                rng: stream(seed, &format!("balancer/{}", s.name)),
            })
            .collect();
        let links = spec
            .links
            .iter()
            .map(|l| stream(seed, &format!("link/{}", l.name)))
            .collect();
        let workloads = spec
            .workloads
            .iter()
            .map(|w| WorkloadState {
                rng: stream(seed, &format!("workload/{}", w.name)),
                zipf: w.keys.and_then(|k| {
                    k.zipf.map(|s| {
                        rand_distr::Zipf::new(f64::from(k.count), s).expect("validated key space")
                    })
                }),
            })
            .collect();
        let clients = spec
            .edges
            .iter()
            .map(|e| ClientState::new(&spec.policies[e.policy.index()], seed, &e.name))
            .collect();
        let faults = FaultState::new(&spec, seed);
        let warmup_end = SimTime::ZERO + spec.warmup;
        let mut metrics = new_metrics(&spec, warmup_end);
        // A workload's edge sees exactly the workload's calls: record them once.
        let (w, e) = (spec.workloads.len(), spec.endpoints.len());
        for (i, wl) in spec.workloads.iter().enumerate() {
            metrics.series.mirror(w + e + wl.edge.index(), i);
        }
        let spec_keyed = spec.policies.iter().any(|p| p.cache.is_some());
        let edge_costs = spec
            .edges
            .iter()
            .map(|e| {
                let ep = &spec.endpoints[e.target.index()];
                match spec.policies[e.policy.index()].protocol {
                    None => EdgeCost::default(),
                    Some(p) => {
                        let per_kb = |d: SimDuration, kb: f64| {
                            SimDuration::from_secs_f64(d.as_secs_f64() * kb)
                        };
                        EdgeCost {
                            request: p.overhead
                                + per_kb(p.encode_per_kb, ep.request_kb)
                                + p.setup_per_call.unwrap_or(SimDuration::ZERO),
                            server_decode: per_kb(p.decode_per_kb, ep.request_kb),
                            per_message: p.overhead
                                + per_kb(p.encode_per_kb, ep.response_kb)
                                + per_kb(p.decode_per_kb, ep.response_kb),
                        }
                    }
                }
            })
            .collect();
        let asy = Async::new(&spec, seed);
        World {
            spec: Rc::new(spec),
            edge_costs,
            warmup_end,
            replicas,
            first_replica,
            balancers,
            links,
            workloads,
            logicals: Arena::default(),
            attempts: Arena::default(),
            clients,
            invocations: Arena::default(),
            fibers: Arena::default(),
            joins: Arena::default(),
            spare_children: Vec::new(),
            faults,
            keyed: spec_keyed || asy.in_use,
            immediate: VecDeque::new(),
            asy,
            bucket_start: SimTime::ZERO,
            requests_sent: 0,
            last_activity: SimTime::ZERO,
            metrics,
        }
    }

    /// Schedules the first arrivals, the faults and the first bucket tick.
    pub fn start(&mut self, sched: &mut Scheduler<Event>) {
        for w in 0..self.spec.workloads.len() {
            let id = WorkloadId(w as u32);
            match &self.spec.workloads[w].load {
                Load::Open { .. } => {
                    if let Some(t) = self.next_arrival(id, SimTime::ZERO) {
                        sched.at(t, Event::Arrival(id));
                    }
                }
                Load::Closed { users, think } => {
                    // Each user thinks once before its first request, so users that start
                    // together do not stay in lockstep.
                    for user in 0..*users {
                        let delay = think.sample(&mut self.workloads[w].rng);
                        sched.after(delay, Event::UserReady { workload: id, user });
                    }
                }
            }
        }
        for (i, f) in self.spec.faults.iter().enumerate() {
            sched.at(f.from, Event::FaultStart(i as u32));
            sched.at(f.until, Event::FaultEnd(i as u32));
        }
        self.asy.periodic += 1;
        sched.after(self.spec.bucket, Event::Tick);
        self.start_groups(sched);
    }

    /// Closes the books at the end of the run and hands over what was measured.
    pub fn finish(mut self, stopped_at: SimTime, drained: bool) -> Metrics {
        let end = if drained {
            self.last_activity
        } else {
            stopped_at
        };
        let warmup_end = self.warmup_end;
        for inv in self.invocations.values() {
            if let Some(since) = inv.worker_since {
                self.metrics.endpoints[inv.endpoint.index()].busy_ns +=
                    overlap_ns(since, end, warmup_end);
            }
        }
        for lc in self.logicals.values() {
            if let Origin::Workload { workload, .. } = lc.origin
                && lc.measured
            {
                self.metrics.workloads[workload.index()].in_flight += 1;
            }
        }
        self.close_bucket(end);
        for e in self.metrics.endpoints.iter_mut() {
            e.queue_length.flush(end);
            e.in_system.flush(end);
        }
        for w in 0..self.spec.workloads.len() {
            let edge = self.spec.workloads[w].edge.index();
            self.metrics.edges[edge].latency = self.metrics.workloads[w].latency.clone();
        }
        for (i, c) in self.clients.iter().enumerate() {
            if let Some(b) = &c.breaker {
                self.metrics.edges[i].breaker = Some(crate::metrics::BreakerMetrics {
                    changes: b
                        .changes()
                        .iter()
                        .map(|ch| (ch.at, ch.from.name(), ch.to.name()))
                        .collect(),
                    time_open: b.time_open(end),
                    state_at_end: b.state().name(),
                });
            }
        }
        self.metrics.faults = self
            .spec
            .faults
            .iter()
            .zip(&self.faults.affected)
            .map(|(f, &affected)| FaultMetrics {
                label: f.label.clone(),
                from: f.from,
                until: f.until,
                affected,
            })
            .collect();
        self.finish_consistency();
        self.metrics.window_start = warmup_end.min(end);
        self.metrics.window_end = end;
        self.metrics
    }

    pub fn requests_sent(&self) -> u64 {
        self.requests_sent
    }

    fn close_bucket(&mut self, now: SimTime) {
        if (!self.spec.queues.is_empty() || !self.spec.consumers.is_empty())
            && now > self.bucket_start
        {
            let start = self.bucket_start;
            self.sample_lag(start, now);
            self.bucket_start = now;
        }
        let Metrics {
            series, endpoints, ..
        } = &mut self.metrics;
        let w = self.spec.workloads.len();
        let e = endpoints.len();
        let clients = &self.clients;
        series.close_bucket(now, |i| {
            if i < w {
                BucketExtras::default()
            } else if i < w + e {
                BucketExtras {
                    queue_area: Some(endpoints[i - w].queue_length.area_all_at(now)),
                    breaker: None,
                }
            } else {
                BucketExtras {
                    queue_area: None,
                    breaker: clients[i - w - e]
                        .breaker
                        .as_ref()
                        .map(|b| b.state().name()),
                }
            }
        });
    }

    /// The time-series index of an edge.
    pub(super) fn edge_series(&self, edge: EdgeId) -> usize {
        self.spec.workloads.len() + self.spec.endpoints.len() + edge.index()
    }

    fn dispatch(&mut self, event: Event, sched: &mut Scheduler<Event>) {
        let now = sched.now();
        let background = matches!(
            event,
            Event::AckTimeout(_)
                | Event::ConfirmTimeout { .. }
                | Event::PollTimeout(_)
                | Event::SessionTimeout { .. }
        );
        if background {
            self.asy.periodic -= 1;
        }
        // Ticks, auto-commits and watchdogs that find nothing to do are not activity:
        // a drained run ends with its last real event.
        if !matches!(event, Event::Tick | Event::AutoCommit(_))
            && (!background || self.timer_live(&event))
        {
            self.last_activity = now;
        }
        match event {
            Event::Arrival(w) => {
                if self.take_request_slot() {
                    let spec = &self.spec.workloads[w.index()];
                    let (edge, timeout) = (spec.edge, spec.timeout);
                    let key = self.draw_key(w);
                    let op = self.asy.new_op(&self.spec.workloads[w.index()], w, key);
                    self.start_call(
                        Origin::Workload {
                            workload: w,
                            user: 0,
                        },
                        edge,
                        timeout,
                        key,
                        op,
                        sched,
                    );
                    if let Some(t) = self.next_arrival(w, now) {
                        sched.at(t, Event::Arrival(w));
                    }
                }
            }
            Event::UserReady { workload, user } => {
                if self.take_request_slot() {
                    let spec = &self.spec.workloads[workload.index()];
                    let (edge, timeout) = (spec.edge, spec.timeout);
                    let key = self.draw_key(workload);
                    let op = self
                        .asy
                        .new_op(&self.spec.workloads[workload.index()], workload, key);
                    self.start_call(
                        Origin::Workload { workload, user },
                        edge,
                        timeout,
                        key,
                        op,
                        sched,
                    );
                }
            }
            Event::Request {
                attempt,
                edge,
                measured,
                deadline,
            } => self.on_request(attempt, edge, measured, deadline, sched),
            Event::Reply {
                attempt,
                edge,
                status,
                degraded,
                measured,
                retry_after_ms,
            } => self.on_reply(
                attempt,
                edge,
                status,
                degraded,
                measured,
                retry_after_ms,
                sched,
            ),
            Event::WorkDone(f) => {
                if let Some(fiber) = self.fibers.get_mut(f) {
                    debug_assert_eq!(fiber.wait, Wait::Work);
                    fiber.wait = Wait::Ready;
                    self.advance(f, sched);
                }
            }
            Event::AttemptTimeout(a) => self.on_attempt_timeout(a, sched),
            Event::Deadline(l) => self.on_deadline(l, sched),
            Event::Launch(l) => {
                if self.logicals.contains(l) {
                    self.launch(l, sched);
                }
            }
            Event::Hedge(l) => self.on_hedge(l, sched),
            Event::BulkheadTimeout {
                logical,
                try_number,
            } => self.on_bulkhead_timeout(logical, try_number, sched),
            Event::BreakerTimer(edge) => self.on_breaker_timer(edge, sched),
            Event::Abort(i) => self.on_abort(i, sched),
            Event::FaultStart(i) => self.fault_start(i as usize, sched),
            Event::FaultEnd(i) => self.fault_end(i as usize, sched),
            Event::CallDone {
                fiber,
                status,
                degraded,
            } => self.call_done(fiber, status, degraded, sched),
            Event::Run(f) => {
                if self.fibers.contains(f) {
                    self.advance(f, sched);
                }
            }
            Event::Tick => {
                self.close_bucket(now);
                // Keep ticking only while something else (not periodic) can happen.
                self.asy.periodic -= 1;
                if sched.pending() > self.asy.periodic {
                    self.asy.periodic += 1;
                    sched.after(self.spec.bucket, Event::Tick);
                }
            }
            Event::PublishArrive(t) => self.on_publish_arrive(t, sched),
            Event::Confirm {
                pending,
                try_number,
                ok,
            } => self.on_confirm(pending, try_number, ok, sched),
            Event::ConfirmTimeout {
                pending,
                try_number,
            } => self.on_confirm(pending, try_number, false, sched),
            Event::Republish(p) => self.on_republish(p, sched),
            Event::Deliver(d) => self.on_deliver(d, sched),
            Event::DeliverQueue(q) => self.try_deliver(q, sched),
            Event::Settle { delivery, how } => self.on_settle(delivery, how, sched),
            Event::AckTimeout(d) => self.on_ack_timeout(d, sched),
            Event::Requeue(m) => self.on_requeue(m, sched),
            Event::Refetch {
                consumer,
                partition,
            } => self.on_refetch(consumer, partition, sched),
            Event::PollTimeout(d) => self.on_poll_timeout(d, sched),
            Event::SessionTimeout { consumer, instance } => {
                self.on_session_timeout(consumer, instance, sched)
            }
            Event::AutoCommit(c) => self.on_auto_commit(c, sched),
            Event::RelayTick(p) => self.on_relay_tick(p, sched),
        }
    }

    /// A key from the workload's key space (0 when it has none).
    fn draw_key(&mut self, w: WorkloadId) -> u32 {
        let Some(keys) = self.spec.workloads[w.index()].keys else {
            return 0;
        };
        let state = &mut self.workloads[w.index()];
        match &state.zipf {
            // Zipf draws 1..=count; keys are 0-based.
            Some(z) => {
                (rand_distr::Distribution::sample(z, &mut state.rng) as u32).saturating_sub(1)
            }
            None => state.rng.random_range(0..keys.count),
        }
    }

    /// Counts a workload request against the run's request limit.
    fn take_request_slot(&mut self) -> bool {
        if let Some(max) = self.spec.max_requests
            && self.requests_sent >= max
        {
            return false;
        }
        self.requests_sent += 1;
        true
    }

    /// The time of the next open-loop arrival after `now`, honouring the rate schedule.
    fn next_arrival(&mut self, w: WorkloadId, now: SimTime) -> Option<SimTime> {
        let Load::Open { pattern, segments } = &self.spec.workloads[w.index()].load else {
            unreachable!("closed workloads have no arrival process")
        };
        let rng = &mut self.workloads[w.index()].rng;
        let mut from = now;
        let mut seg = segments.partition_point(|s| s.start <= from) - 1;
        loop {
            let rate = segments[seg].rate_per_s;
            let next_start = segments.get(seg + 1).map(|s| s.start);
            if rate > 0.0 {
                let gap_s = match pattern {
                    ArrivalPattern::Poisson => {
                        let x: f64 = rand_distr::Distribution::sample(&rand_distr::Exp1, rng);
                        x / rate
                    }
                    ArrivalPattern::Constant => 1.0 / rate,
                };
                // Past the end of the clock there are no more arrivals.
                let t = from.checked_add(SimDuration::from_secs_f64(gap_s))?;
                // Poisson arrivals are memoryless, so restarting at a rate change is exact.
                match next_start {
                    Some(s) if t >= s => {}
                    _ => return Some(t),
                }
            }
            from = next_start?;
            seg += 1;
        }
    }

    /// Sends a message over a link: dropped with the link's loss probability (and any
    /// link fault), else delivered after its latency. Returns false when dropped.
    pub(super) fn transmit(
        &mut self,
        link: LinkId,
        event: Event,
        extra: SimDuration,
        sched: &mut Scheduler<Event>,
    ) -> bool {
        let spec = &self.spec.links[link.index()];
        let rng = &mut self.links[link.index()];
        if spec.loss > 0.0 && rng.random::<f64>() < spec.loss {
            return false;
        }
        let mut delay = if spec.latency.is_constant_zero() {
            SimDuration::ZERO
        } else {
            spec.latency.sample(rng)
        };
        delay = delay + extra;
        if self.faults.link_faulted(link) {
            match self.faults.on_message(&self.spec, link) {
                None => return false,
                Some(extra) => delay = delay + extra,
            }
        }
        if delay.is_zero() {
            self.immediate.push_back(event);
        } else {
            sched.after(delay, event);
        }
        true
    }

    fn pick_replica(&mut self, service: ServiceId) -> u32 {
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
    pub(super) fn answer_unserved(
        &mut self,
        attempt: Id,
        edge: EdgeId,
        status: Status,
        measured: bool,
        sched: &mut Scheduler<Event>,
    ) {
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

    fn on_request(
        &mut self,
        attempt: Id,
        edge: EdgeId,
        attempt_measured: bool,
        deadline: SimTime,
        sched: &mut Scheduler<Event>,
    ) {
        let now = sched.now();
        let endpoint = self.spec.edges[edge.index()].target;
        let service = self.spec.endpoints[endpoint.index()].service;
        let r = self.pick_replica(service);
        let measured = now >= self.warmup_end;
        self.metrics.endpoints[endpoint.index()].arrivals += u64::from(measured);
        let first = self.first_replica[service.index()];
        if self.faults.service_faulted(service)
            && let Some(status) = self.faults.on_arrival(&self.spec, first, service, r)
        {
            self.metrics.endpoints[endpoint.index()].faulted += u64::from(measured);
            return self.answer_unserved(attempt, edge, status, attempt_measured, sched);
        }
        let svc = &self.spec.services[service.index()];
        if svc.drop_expired && deadline <= now {
            self.metrics.endpoints[endpoint.index()].expired += u64::from(measured);
            return self.answer_unserved(
                attempt,
                edge,
                Status::DeadlineExceeded,
                attempt_measured,
                sched,
            );
        }
        let capacity = svc.queue_capacity;
        let drop_expired = svc.drop_expired;
        let (key, op) = if self.keyed {
            self.attempts
                .get(attempt)
                .and_then(|a| self.logicals.get(a.logical))
                .map_or((0, 0), |l| (l.key, l.op))
        } else {
            (0, 0)
        };
        let replica = &self.replicas[r as usize];
        debug_assert_eq!(replica.service, service);
        let starts_now = replica.busy < replica.workers;
        if !starts_now && replica.queued_new >= capacity {
            self.metrics.endpoints[endpoint.index()].rejected += u64::from(measured);
            return self.answer_unserved(
                attempt,
                edge,
                Status::Unavailable,
                attempt_measured,
                sched,
            );
        }
        if self.spec.endpoints[endpoint.index()].idempotency.is_some()
            && let Some(status) = self.idempotency_check(endpoint, op, now)
        {
            return self.answer_unserved(attempt, edge, status, attempt_measured, sched);
        }
        let inv = Invocation {
            endpoint,
            delivery: Id::PLACEHOLDER,
            op,
            msg: 0,
            replica: r,
            attempt,
            edge,
            attempt_measured,
            arrived_at: now,
            deadline,
            worker_since: starts_now.then_some(now),
            busy_ns: 0,
            key,
            messages: 1,
            queued: !starts_now,
            retry_after: None,
            root: Id::PLACEHOLDER,
            degraded: false,
            measured,
            fibers: 1,
        };
        let decode = self.edge_costs[edge.index()].server_decode;
        let inv = self.admit(inv, starts_now, decode, sched);
        if drop_expired && deadline != NO_DEADLINE {
            sched.at(deadline, Event::Abort(inv));
        }
    }

    /// Takes an invocation in: it starts on a worker now, or waits in the replica's
    /// queue. `decode`: protocol decode time before the handler runs.
    pub(super) fn admit(
        &mut self,
        inv: Invocation,
        starts_now: bool,
        decode: SimDuration,
        sched: &mut Scheduler<Event>,
    ) -> Id {
        let now = sched.now();
        let (endpoint, r, measured) = (inv.endpoint, inv.replica, inv.measured);
        let inv = self.invocations.insert(inv);
        let root = self.fibers.insert(Fiber {
            invocation: inv,
            seq: self.spec.endpoints[endpoint.index()].handler,
            pc: 0,
            join: None,
            wait: Wait::Ready,
            saga: None,
        });
        self.invocations[inv].root = root;
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
    fn begin(&mut self, root: Id, decode: SimDuration, sched: &mut Scheduler<Event>) {
        if decode.is_zero() {
            self.advance(root, sched);
        } else {
            self.fibers[root].wait = Wait::Work;
            sched.after(decode, Event::WorkDone(root));
        }
    }

    /// Runs a fiber's steps until it blocks or ends.
    pub(super) fn advance(&mut self, f: Id, sched: &mut Scheduler<Event>) {
        loop {
            let fiber = &mut self.fibers[f];
            debug_assert_eq!(fiber.wait, Wait::Ready);
            let steps = &self.spec.seqs[fiber.seq.index()];
            let Some(&step) = steps.get(fiber.pc as usize) else {
                return self.finish_fiber(f, Outcome::Ok { degraded: false }, sched);
            };
            fiber.pc += 1;
            let invocation = fiber.invocation;
            let replica = self.invocations[invocation].replica as usize;
            match step {
                Step::Work(d) => {
                    let mut dur =
                        self.spec.dists[d.index()].sample(&mut self.replicas[replica].rng);
                    let service = self.replicas[replica].service;
                    if self.faults.service_faulted(service) {
                        let first = self.first_replica[service.index()];
                        dur = dur
                            + self
                                .faults
                                .extra_work(&self.spec, first, service, replica as u32);
                    }
                    if !dur.is_zero() {
                        self.fibers[f].wait = Wait::Work;
                        sched.after(dur, Event::WorkDone(f));
                        return;
                    }
                }
                Step::Stream { messages, interval } => {
                    let dist = &self.spec.dists[interval.index()];
                    let rng = &mut self.replicas[replica].rng;
                    let mut total = SimDuration::ZERO;
                    for _ in 0..messages {
                        total = total + dist.sample(rng);
                    }
                    self.invocations[invocation].messages = messages.max(1);
                    if !total.is_zero() {
                        self.fibers[f].wait = Wait::Work;
                        sched.after(total, Event::WorkDone(f));
                        return;
                    }
                }
                Step::Fail {
                    status,
                    p,
                    retry_after,
                } => {
                    if self.replicas[replica].rng.random::<f64>() < p {
                        self.invocations[invocation].retry_after = retry_after;
                        return self.finish_fiber(f, Outcome::Failed(status), sched);
                    }
                }
                Step::Call(site) => {
                    // Even a call that is over at once (refused, nothing to retry, a cache
                    // hit) is answered through the immediate queue: waiting is always right.
                    return self.call_from(f, site, sched);
                }
                Step::Publish(p) => {
                    if self.publish_step(f, invocation, p, sched) {
                        self.release_if_event_loop(f, sched);
                        return;
                    }
                }
                Step::Effect(e) => self.effect_step(invocation, e),
                Step::Saga(s) => {
                    self.metrics.consistency.sagas[s.index()].started += 1;
                    self.fibers[f].saga = Some(SagaRun {
                        saga: s,
                        done: 0,
                        failed: None,
                    });
                    let (action, _) = self.spec.sagas[s.index()].steps[0];
                    return self.call_from(f, action, sched);
                }
                Step::Parallel(p) => {
                    let mut children = self.spare_children.pop().unwrap_or_default();
                    let join = self.joins.insert(JoinState {
                        parent: f,
                        parallel: p,
                        children: Vec::new(),
                        settled: 0,
                        ok: 0,
                        failed: 0,
                        first_failure: None,
                        required_failure: None,
                        degraded: false,
                    });
                    for (i, b) in self.spec.parallels[p.index()].branches.iter().enumerate() {
                        let child = self.fibers.insert(Fiber {
                            invocation,
                            seq: b.body,
                            pc: 0,
                            join: Some((join, i as u32)),
                            wait: Wait::Ready,
                            saga: None,
                        });
                        children.push(child);
                        self.immediate.push_back(Event::Run(child));
                    }
                    self.invocations[invocation].fibers += children.len() as u32;
                    self.joins[join].children = children;
                    self.fibers[f].wait = Wait::Join(join);
                    self.release_if_event_loop(f, sched);
                    return;
                }
            }
        }
    }

    /// A fiber calls out and waits for the answer.
    pub(super) fn call_from(&mut self, f: Id, site: CallSite, sched: &mut Scheduler<Event>) {
        let inv = &self.invocations[self.fibers[f].invocation];
        let (key, op) = (inv.key, inv.op);
        let logical = self.start_call(Origin::Fiber(f), site.edge, site.timeout, key, op, sched);
        self.fibers[f].wait = Wait::Call(logical);
        self.release_if_event_loop(f, sched);
    }

    /// An event-loop service lets the worker go while its handler waits.
    fn release_if_event_loop(&mut self, f: Id, sched: &mut Scheduler<Event>) {
        let fiber = &self.fibers[f];
        if fiber.join.is_some() {
            return;
        }
        let inv = &mut self.invocations[fiber.invocation];
        let service = self.spec.endpoints[inv.endpoint.index()].service;
        if self.spec.services[service.index()].hold == WorkerHold::Released
            && let Some(since) = inv.worker_since.take()
        {
            let (replica, endpoint) = (inv.replica, inv.endpoint);
            inv.busy_ns += u128::from(sched.now().since(since).as_nanos());
            self.release_worker(replica, endpoint, since, sched);
        }
    }

    /// Continues a fiber whose wait is over, first getting a worker back if it let its
    /// worker go (released mode, root fiber only).
    pub(super) fn resume(&mut self, f: Id, now: SimTime) {
        let fiber = &mut self.fibers[f];
        fiber.wait = Wait::Ready;
        let inv = &self.invocations[fiber.invocation];
        if fiber.join.is_none() && inv.worker_since.is_none() {
            let replica = &mut self.replicas[inv.replica as usize];
            if replica.busy < replica.workers {
                replica.busy += 1;
                self.invocations[fiber.invocation].worker_since = Some(now);
            } else {
                replica.queue.push_back(Queued::Resume(f));
                return;
            }
        }
        self.immediate.push_back(Event::Run(f));
    }

    pub(super) fn release_worker(
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
                    let root = inv.root;
                    let decode = if inv.delivery == Id::PLACEHOLDER {
                        self.edge_costs[inv.edge.index()].server_decode
                    } else {
                        SimDuration::ZERO
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

    pub(super) fn finish_fiber(&mut self, f: Id, outcome: Outcome, sched: &mut Scheduler<Event>) {
        let fiber = self.fibers.remove(f).expect("finishing a live fiber");
        self.invocations[fiber.invocation].fibers -= 1;
        match fiber.join {
            None => self.respond(fiber.invocation, outcome, sched),
            Some((join, branch)) => self.branch_settled(join, branch, outcome, sched),
        }
    }

    pub(super) fn respond(&mut self, i: Id, outcome: Outcome, sched: &mut Scheduler<Event>) {
        let now = sched.now();
        let inv = self
            .invocations
            .remove(i)
            .expect("answering a live request");
        debug_assert_eq!(inv.fibers, 0, "answered with branches still running");
        let (status, degraded) = match outcome {
            Outcome::Ok { degraded } => (Status::Ok, degraded || inv.degraded),
            Outcome::Failed(s) => (s, false),
        };
        if self.asy.in_use {
            self.end_transaction(i, &inv, status.is_ok(), now);
            if inv.delivery == Id::PLACEHOLDER
                && self.spec.endpoints[inv.endpoint.index()]
                    .idempotency
                    .is_some()
            {
                self.idempotency_store(inv.endpoint, inv.op, status, now);
            }
        }
        let latency = now.since(inv.arrived_at);
        let orphaned = inv.measured && self.abandoned(inv.attempt);
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
                em.orphaned_work_ns += inv.busy_ns + held;
            }
        }
        em.in_system.decrement(now);
        self.record_windows(WindowTarget::Endpoint(inv.endpoint), now, latency, status);
        let series = self.spec.workloads.len() + inv.endpoint.index();
        self.metrics.series.record(series, latency, !status.is_ok());
        self.replicas[inv.replica as usize].outstanding -= 1;
        if inv.delivery != Id::PLACEHOLDER {
            self.maybe_rejoin(inv.delivery, sched);
            self.handled(inv.delivery, outcome_of(status, degraded), sched);
            if let Some(since) = inv.worker_since {
                self.release_worker(inv.replica, inv.endpoint, since, sched);
            }
            return;
        }
        let link = self.spec.edges[inv.edge.index()].link;
        let reply = Event::Reply {
            attempt: inv.attempt,
            edge: inv.edge,
            status,
            degraded,
            measured: inv.attempt_measured,
            retry_after_ms: inv.retry_after_ms(),
        };
        let extra = SimDuration::from_nanos(
            self.edge_costs[inv.edge.index()]
                .per_message
                .as_nanos()
                .saturating_mul(u64::from(inv.messages)),
        );
        if !self.transmit(link, reply, extra, sched) {
            self.metrics.edges[inv.edge.index()].lost_replies += 1;
        }
        if let Some(since) = inv.worker_since {
            self.release_worker(inv.replica, inv.endpoint, since, sched);
        }
    }

    /// A deadline-aware server stops working on a request whose deadline passed.
    fn on_abort(&mut self, i: Id, sched: &mut Scheduler<Event>) {
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
    pub(super) fn crash_replica(&mut self, r: u32, sched: &mut Scheduler<Event>) -> u64 {
        let now = sched.now();
        let lost: Vec<Id> = self
            .invocations
            .ids()
            .filter(|&i| self.invocations[i].replica == r)
            .collect();
        for &i in &lost {
            let root = self.invocations[i].root;
            self.cancel_fiber(root, sched);
            let inv = self.invocations.remove(i).expect("live");
            if self.asy.in_use {
                self.abort_transaction(i);
                if self.spec.endpoints[inv.endpoint.index()]
                    .idempotency
                    .is_some()
                {
                    self.idempotency_forget(inv.endpoint, inv.op);
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
    fn recount_queues(&mut self, now: SimTime) {
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

    fn branch_settled(
        &mut self,
        j: Id,
        branch: u32,
        outcome: Outcome,
        sched: &mut Scheduler<Event>,
    ) {
        let join = &mut self.joins[j];
        let parallel = &self.spec.parallels[join.parallel.index()];
        let n = parallel.branches.len() as u32;
        join.settled += 1;
        let decided = match (parallel.join, outcome) {
            (Join::All, Outcome::Ok { degraded }) => {
                join.ok += 1;
                join.degraded |= degraded;
                (join.ok == n).then_some(Outcome::Ok {
                    degraded: join.degraded,
                })
            }
            (Join::All, Outcome::Failed(s)) => Some(Outcome::Failed(s)),
            (Join::Any, Outcome::Ok { degraded }) => Some(Outcome::Ok { degraded }),
            (Join::Quorum(q), Outcome::Ok { degraded }) => {
                join.ok += 1;
                join.degraded |= degraded;
                (join.ok == q).then_some(Outcome::Ok {
                    degraded: join.degraded,
                })
            }
            (Join::Any | Join::Quorum(_), Outcome::Failed(s)) => {
                join.failed += 1;
                let first = *join.first_failure.get_or_insert(s);
                let needed = match parallel.join {
                    Join::Quorum(q) => q,
                    _ => 1,
                };
                (join.failed > n - needed).then_some(Outcome::Failed(first))
            }
            (Join::AllSettled, outcome) => {
                match outcome {
                    Outcome::Ok { degraded } => join.degraded |= degraded,
                    Outcome::Failed(s) if parallel.branches[branch as usize].required => {
                        join.required_failure.get_or_insert(s);
                    }
                    Outcome::Failed(_) => join.degraded = true,
                }
                (join.settled == n).then(|| match join.required_failure {
                    Some(s) => Outcome::Failed(s),
                    None => Outcome::Ok {
                        degraded: join.degraded,
                    },
                })
            }
        };
        let Some(result) = decided else {
            return;
        };
        let join = self.joins.remove(j).expect("live join");
        self.cancel_children(join.children, sched);
        match result {
            Outcome::Ok { degraded } => {
                if degraded {
                    let inv = self.fibers[join.parent].invocation;
                    self.invocations[inv].degraded = true;
                }
                self.resume(join.parent, sched.now());
            }
            Outcome::Failed(s) => self.finish_fiber(join.parent, Outcome::Failed(s), sched),
        }
    }

    /// Cancels the branches of a decided join (the settled ones are already gone) and
    /// keeps the list's allocation for the next join.
    fn cancel_children(&mut self, mut children: Vec<Id>, sched: &mut Scheduler<Event>) {
        for &child in &children {
            self.cancel_fiber(child, sched);
        }
        children.clear();
        self.spare_children.push(children);
    }

    /// Abandons a fiber: calls it is waiting on are given up (their servers carry on
    /// and answer late); nested joins are cancelled too.
    pub(super) fn cancel_fiber(&mut self, f: Id, sched: &mut Scheduler<Event>) {
        let Some(fiber) = self.fibers.remove(f) else {
            return; // already settled
        };
        self.invocations[fiber.invocation].fibers -= 1;
        match fiber.wait {
            Wait::Call(l) => self.abandon_call(l, sched),
            Wait::Join(j) => {
                if let Some(join) = self.joins.remove(j) {
                    self.cancel_children(join.children, sched);
                }
            }
            Wait::Publish(p) => self.forget_publish(p),
            Wait::Work | Wait::Ready => {}
        }
    }
}

impl World {
    /// Has anyone up the chain given up on this attempt? Its answer is then wasted
    /// work, even when the immediate caller (which set no timeout) still waits.
    fn abandoned(&self, mut attempt: Id) -> bool {
        loop {
            let Some(a) = self.attempts.get(attempt) else {
                return true;
            };
            let Some(lc) = self.logicals.get(a.logical) else {
                return true;
            };
            match lc.origin {
                Origin::Workload { .. } => return false,
                Origin::Fiber(f) => {
                    let Some(fiber) = self.fibers.get(f) else {
                        return true;
                    };
                    let inv = &self.invocations[fiber.invocation];
                    if inv.delivery != Id::PLACEHOLDER {
                        // A consumer's work is wasted once its delivery was taken back.
                        return !self.asy.deliveries.contains(inv.delivery);
                    }
                    attempt = inv.attempt;
                }
            }
        }
    }

    /// Adds an answer to the windows watching its workload or endpoint.
    #[inline]
    pub(super) fn record_windows(
        &mut self,
        target: WindowTarget,
        now: SimTime,
        latency: SimDuration,
        status: Status,
    ) {
        if self.spec.windows.is_empty() {
            return;
        }
        for (w, m) in self.spec.windows.iter().zip(&mut self.metrics.windows) {
            if w.target == target {
                m.record(now, latency, status);
            }
        }
    }

    /// A workload's request is answered: a closed-loop user thinks, then sends again.
    pub(super) fn workload_answered(
        &mut self,
        workload: WorkloadId,
        user: u32,
        sched: &mut Scheduler<Event>,
    ) {
        if let Load::Closed { think, .. } = &self.spec.workloads[workload.index()].load {
            let delay = think.sample(&mut self.workloads[workload.index()].rng);
            // Through the heap even when zero, so a loop that never advances time still
            // counts against the event budget.
            sched.after(delay, Event::UserReady { workload, user });
        }
    }
}

impl Invocation {
    /// The retry-after hint in whole milliseconds, as it travels in a reply (0: none).
    fn retry_after_ms(&self) -> u32 {
        self.retry_after.map_or(0, |d| {
            u32::try_from(d.as_nanos().div_ceil(1_000_000)).unwrap_or(u32::MAX)
        })
    }
}

impl crate::engine::Model for World {
    type Event = Event;

    fn handle(&mut self, event: Event, sched: &mut Scheduler<Event>) {
        self.dispatch(event, sched);
        while let Some(e) = self.immediate.pop_front() {
            self.dispatch(e, sched);
        }
        if !self.asy.pending_relays.is_empty() {
            self.schedule_relays(sched);
        }
    }
}

fn outcome_of(status: Status, degraded: bool) -> Outcome {
    if status.is_ok() {
        Outcome::Ok { degraded }
    } else {
        Outcome::Failed(status)
    }
}

/// Nanoseconds of [since, now] that fall after `from`.
pub(super) fn overlap_ns(since: SimTime, now: SimTime, from: SimTime) -> u128 {
    u128::from(now.saturating_since(since.max(from)).as_nanos())
}

fn new_metrics(spec: &Spec, warmup_end: SimTime) -> Metrics {
    Metrics {
        window_start: warmup_end,
        window_end: warmup_end,
        workloads: spec
            .workloads
            .iter()
            .map(|w| WorkloadMetrics {
                name: w.name.clone(),
                target: spec.endpoints[spec.edges[w.edge.index()].target.index()]
                    .name
                    .clone(),
                requests: 0,
                ok: 0,
                degraded: 0,
                errors: StatusCounts::default(),
                latency: Summary::default(),
                in_flight: 0,
            })
            .collect(),
        endpoints: spec
            .endpoints
            .iter()
            .map(|e| {
                let svc = &spec.services[e.service.index()];
                EndpointMetrics {
                    name: e.name.clone(),
                    service: svc.name.clone(),
                    arrivals: 0,
                    rejected: 0,
                    admitted: 0,
                    faulted: 0,
                    completed: 0,
                    ok: 0,
                    errors: StatusCounts::default(),
                    queue_wait: Summary::default(),
                    latency: Summary::default(),
                    queue_length: TimeWeighted::new(warmup_end),
                    in_system: TimeWeighted::new(warmup_end),
                    busy_ns: 0,
                    workers: u64::from(svc.workers) * u64::from(svc.replicas),
                    orphaned: 0,
                    orphaned_work_ns: 0,
                    expired: 0,
                }
            })
            .collect(),
        edges: spec
            .edges
            .iter()
            .map(|e| EdgeMetrics {
                name: e.name.clone(),
                policy: spec.policies[e.policy.index()].name.clone(),
                calls: 0,
                attempts: 0,
                retries: 0,
                hedges: 0,
                hedges_won: 0,
                ok: 0,
                errors: StatusCounts::default(),
                fallbacks: 0,
                timeouts: 0,
                rejected_breaker: 0,
                rejected_bulkhead: 0,
                rejected_rate_limit: 0,
                rejected_budget: 0,
                expired: 0,
                cached: spec.policies[e.policy.index()].cache.is_some(),
                cache_hits: 0,
                cache_misses: 0,
                cache_stale: 0,
                latency: Summary::default(),
                breaker: None,
                lost_requests: 0,
                lost_replies: 0,
                late_replies: 0,
                cancelled: 0,
            })
            .collect(),
        faults: Vec::new(),
        windows: spec
            .windows
            .iter()
            .map(|w| {
                let (section, name) = match w.target {
                    WindowTarget::Workload(i) => {
                        ("workloads", spec.workloads[i.index()].name.clone())
                    }
                    WindowTarget::Endpoint(i) => {
                        ("endpoints", spec.endpoints[i.index()].name.clone())
                    }
                };
                crate::metrics::WindowMetrics {
                    section,
                    name,
                    from: w.from,
                    until: w.until,
                    answers: 0,
                    ok: 0,
                    errors: StatusCounts::default(),
                    latency: Summary::default(),
                }
            })
            .collect(),
        consistency: super::broker::new_consistency(spec),
        series: Series::new(
            spec.bucket,
            spec.workloads
                .iter()
                .map(|w| (SeriesKind::Workload, w.name.clone()))
                .chain(
                    spec.endpoints
                        .iter()
                        .map(|e| (SeriesKind::Endpoint, e.name.clone())),
                )
                .chain(
                    spec.edges
                        .iter()
                        .map(|e| (SeriesKind::Edge, e.name.clone())),
                )
                .collect(),
        ),
    }
}
