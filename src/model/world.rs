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

mod bridge;
mod event;
mod fiber;
mod lineage;
mod network;
mod server;
mod transaction;
mod workload;

use super::arena::Arena;
use super::broker::{Async, Command};
use super::client::{Calls, ClientState, Gated, Origin};
use super::faults::FaultState;
use super::ledger::Ledger;
use super::spec::*;
use super::status::Status;
use crate::engine::{Scheduler, SimDuration, SimTime, Stream, stream};
use crate::metrics::{
    BucketExtras, EdgeMetrics, EndpointMetrics, FaultMetrics, Metrics, Series, SeriesKind,
    StatusCounts, Summary, TimeWeighted, WorkloadMetrics,
};
pub use event::{
    AttemptId, CallId, DeliveryId, Event, FiberId, InvocationId, JoinId, MessageId, OutboxRowId,
    PendingId, Settlement, TransitId,
};
use fiber::JoinState;
pub(super) use fiber::{Fiber, SagaRun};
use network::EdgeCost;
pub(super) use server::{AnswerTo, Invocation};
use server::{BalancerState, Replica};
use std::collections::VecDeque;
use std::rc::Rc;
use workload::WorkloadState;

/// "No deadline" in events, where an `Option<SimTime>` would make every event larger.
pub const NO_DEADLINE: SimTime = SimTime::MAX;

/// How a handler, a branch or a logical call ended.
#[derive(Clone, Copy, Debug)]
pub(super) enum Outcome {
    Ok { degraded: bool },
    Failed(Status),
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
    /// Logical calls and their attempts in flight (one arena: see `Calls`).
    pub(super) logicals: Calls,
    /// The policy state of finished calls, for the next call that has gates. Boxes, not
    /// values: a call slot holds its state boxed (to stay small), and reusing a box is
    /// what spares the allocation.
    #[allow(clippy::vec_box)]
    pub(super) spare_gated: Vec<Box<Gated>>,
    pub(super) clients: Vec<ClientState>,
    pub(super) invocations: Arena<Invocation, InvocationId>,
    pub(super) fibers: Arena<Fiber, FiberId>,
    joins: Arena<JoinState, JoinId>,
    spare_children: Vec<Vec<FiberId>>,
    /// The walk down a chain a caller gave up on: fibers to visit, invocations found.
    orphan_walk: (Vec<FiberId>, Vec<InvocationId>),
    pub(super) faults: FaultState,
    /// Some policy caches, or effects and idempotency keys need operations: requests
    /// carry their keys and operations down the call chain.
    pub(super) keyed: bool,
    pub(super) immediate: VecDeque<Event>,
    /// Brokers, queues, topics, consumer groups.
    pub(super) asy: Async,
    /// What the brokers' last call asked of the world (`bridge.rs`), kept for its capacity.
    broker_commands: Vec<Command>,
    /// The effects ledger, transaction buffers, idempotency stores.
    pub(super) ledger: Ledger,
    bucket_start: SimTime,
    requests_sent: u64,
    /// Workload requests whose answer reached their client (the progress bar's count).
    requests_answered: u64,
    last_activity: SimTime,
    pub(super) metrics: Metrics,
    /// Traces and attribution (`model::trace`); None costs one branch per hook.
    pub(super) recorder: Option<Box<super::trace::Recorder>>,
}

impl World {
    pub fn new(spec: Spec) -> World {
        let seed = spec.seed;
        let (replicas, first_replica) = Replica::all(&spec, seed);
        let balancers = BalancerState::all(&spec, seed);
        let links = spec
            .links
            .iter()
            .map(|l| stream(seed, &format!("link/{}", l.name)))
            .collect();
        let workloads = WorkloadState::all(&spec, seed);
        let clients = spec
            .edges
            .iter()
            .map(|e| ClientState::new(&spec.policies[e.policy.index()], seed, &e.name))
            .collect();
        let faults = FaultState::new(&spec, seed);
        let warmup_end = SimTime::ZERO + spec.warmup;
        let mut metrics = new_metrics(&spec, warmup_end);
        super::saga::open_books(&spec, &mut metrics.consistency.sagas);
        // A workload's edge sees exactly the workload's calls: record them once.
        let (w, e) = (spec.workloads.len(), spec.endpoints.len());
        for (i, wl) in spec.workloads.iter().enumerate() {
            metrics.series.mirror(w + e + wl.edge.index(), i);
        }
        let spec_keyed = spec.policies.iter().any(|p| p.cache.is_some());
        let edge_costs = EdgeCost::all(&spec);
        let asy = Async::new(&spec, seed);
        let ledger = Ledger::new(&spec);
        World {
            spec: Rc::new(spec),
            edge_costs,
            warmup_end,
            replicas,
            first_replica,
            balancers,
            links,
            workloads,
            logicals: Calls::new(spec_keyed || ledger.in_use),
            spare_gated: Vec::new(),
            clients,
            invocations: Arena::default(),
            fibers: Arena::default(),
            joins: Arena::default(),
            spare_children: Vec::new(),
            orphan_walk: (Vec::new(), Vec::new()),
            faults,
            keyed: spec_keyed || ledger.in_use,
            immediate: VecDeque::new(),
            asy,
            broker_commands: Vec::new(),
            ledger,
            bucket_start: SimTime::ZERO,
            requests_sent: 0,
            requests_answered: 0,
            last_activity: SimTime::ZERO,
            metrics,
            recorder: None,
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
        self.broker(sched, |a, cx| a.start_groups(cx));
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
        self.asy
            .finish_consistency(&self.spec, &mut self.metrics.consistency);
        self.ledger.judge(&self.spec, &mut self.metrics.consistency);
        self.metrics.window_start = warmup_end.min(end);
        self.metrics.window_end = end;
        self.metrics
    }

    pub fn requests_sent(&self) -> u64 {
        self.requests_sent
    }

    pub fn requests_answered(&self) -> u64 {
        self.requests_answered
    }

    fn close_bucket(&mut self, now: SimTime) {
        if (!self.spec.queues.is_empty() || !self.spec.consumers.is_empty())
            && now > self.bucket_start
        {
            let start = self.bucket_start;
            let Metrics {
                series,
                consistency,
                ..
            } = &mut self.metrics;
            self.asy
                .sample_lag(&self.spec, series, consistency, start, now);
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
        self.note_activity(&event, now);
        match event {
            Event::Arrival(w) => self.on_arrival(w, sched),
            Event::UserReady { workload, user } => self.on_user_ready(workload, user, sched),
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
            Event::WorkDone(f) => self.on_work_done(f, sched),
            Event::AttemptTimeout(a) => self.on_attempt_timeout(a, sched),
            Event::Deadline(l) => self.on_deadline(l, sched),
            Event::Launch(l) => self.on_launch(l, sched),
            Event::Hedge(l) => self.on_hedge(l, sched),
            Event::BulkheadTimeout { call, try_number } => {
                self.on_bulkhead_timeout(call, try_number, sched)
            }
            Event::BreakerTimer(edge) => self.on_breaker_timer(edge, sched),
            Event::Abort(i) => self.on_abort(i, sched),
            Event::FaultStart(i) => self.fault_start(i as usize, sched),
            Event::FaultEnd(i) => self.fault_end(i as usize, sched),
            Event::CallDone {
                fiber,
                status,
                degraded,
            } => self.call_done(fiber, status, degraded, sched),
            Event::Run(f) => self.on_run(f, sched),
            Event::Tick => self.on_tick(sched),
            e @ (Event::PublishArrive(_)
            | Event::Confirm { .. }
            | Event::ConfirmTimeout { .. }
            | Event::Republish(_)
            | Event::Deliver(_)
            | Event::DeliverQueue(_)
            | Event::Settle { .. }
            | Event::AckTimeout(_)
            | Event::Requeue(_)
            | Event::Expire(_)
            | Event::Refetch { .. }
            | Event::PollTimeout(_)
            | Event::SessionTimeout { .. }
            | Event::AutoCommit(_)
            | Event::RelayTick(_)) => self.dispatch_broker(e, sched),
        }
    }

    /// Keeps the time of the last real event: ticks, auto-commits and watchdogs that
    /// find nothing to do are not activity, so a drained run ends with its last real
    /// event. A background timer firing is one periodic event fewer pending.
    #[inline]
    fn note_activity(&mut self, event: &Event, now: SimTime) {
        let background = matches!(
            event,
            Event::AckTimeout(_)
                | Event::Expire(_)
                | Event::ConfirmTimeout { .. }
                | Event::PollTimeout(_)
                | Event::SessionTimeout { .. }
        );
        if background {
            self.asy.periodic -= 1;
        }
        if !matches!(event, Event::Tick | Event::AutoCommit(_))
            && (!background || self.asy.timer_live(event, now, &self.spec))
        {
            self.last_activity = now;
        }
    }

    /// A time-series bucket ends. Keep ticking only while something else (not
    /// periodic) can happen, and a bucket can still make a row or sample a queue's depth.
    fn on_tick(&mut self, sched: &mut Scheduler<Event>) {
        self.close_bucket(sched.now());
        self.asy.periodic -= 1;
        let sampling = !self.metrics.series.full()
            || !self.spec.queues.is_empty()
            || !self.spec.consumers.is_empty();
        if sched.pending() > self.asy.periodic && sampling {
            self.asy.periodic += 1;
            sched.after(self.spec.bucket, Event::Tick);
        }
    }

    /// The brokers' events: publishing, delivery, settlement and their timers.
    fn dispatch_broker(&mut self, event: Event, sched: &mut Scheduler<Event>) {
        match event {
            Event::PublishArrive(t) => self.broker(sched, |a, cx| a.on_publish_arrive(t, cx)),
            Event::Confirm {
                pending,
                try_number,
                ok,
            } => self.broker(sched, |a, cx| a.on_confirm(pending, try_number, ok, cx)),
            Event::ConfirmTimeout {
                pending,
                try_number,
            } => self.broker(sched, |a, cx| a.on_confirm(pending, try_number, false, cx)),
            Event::Republish(p) => self.on_republish(p, sched),
            Event::Deliver(d) => self.on_deliver(d, sched),
            Event::DeliverQueue(q) => self.broker(sched, |a, cx| a.try_deliver(q, cx)),
            Event::Settle { delivery, how } => {
                self.broker(sched, |a, cx| a.on_settle(delivery, how, cx))
            }
            Event::AckTimeout(d) => self.broker(sched, |a, cx| a.on_ack_timeout(d, cx)),
            Event::Requeue(m) => self.broker(sched, |a, cx| a.on_requeue(m, cx)),
            Event::Expire(q) => self.broker(sched, |a, cx| a.on_expire(q, cx)),
            Event::Refetch {
                consumer,
                partition,
            } => self.broker(sched, |a, cx| a.on_refetch(consumer, partition, cx)),
            Event::PollTimeout(d) => self.broker(sched, |a, cx| a.on_poll_timeout(d, cx)),
            Event::SessionTimeout { consumer, instance } => {
                self.broker(sched, |a, cx| a.on_session_timeout(consumer, instance, cx))
            }
            Event::AutoCommit(c) => self.broker(sched, |a, cx| a.on_auto_commit(c, cx)),
            Event::RelayTick(p) => self.broker(sched, |a, cx| a.on_relay_tick(p, cx)),
            other => unreachable!("not a broker event: {other:?}"),
        }
    }
}

impl World {
    /// Adds an answer to the windows watching its workload or endpoint. Most scenarios
    /// have none: that test is inlined at every answer, the loop is not.
    #[inline(always)]
    pub(super) fn record_windows(
        &mut self,
        target: WindowTarget,
        now: SimTime,
        latency: SimDuration,
        status: Status,
    ) {
        if !self.spec.windows.is_empty() {
            self.record_in_windows(target, now, latency, status);
        }
    }

    #[inline(never)]
    fn record_in_windows(
        &mut self,
        target: WindowTarget,
        now: SimTime,
        latency: SimDuration,
        status: Status,
    ) {
        for (w, m) in self.spec.windows.iter().zip(&mut self.metrics.windows) {
            if w.target == target {
                m.record(now, latency, status);
            }
        }
    }
}

impl crate::engine::Model for World {
    type Event = Event;

    fn handle(&mut self, event: Event, sched: &mut Scheduler<Event>) {
        self.dispatch(event, sched);
        while let Some(e) = self.immediate.pop_front() {
            // Zero-latency work counts like any event, so a loop of it meets the budget.
            if !sched.count_event() {
                self.immediate.clear();
                return;
            }
            self.dispatch(e, sched);
        }
        if !self.asy.pending_relays.is_empty() {
            self.broker(sched, |a, cx| a.schedule_relays(cx));
        }
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
            .map(|w| workload_metrics(spec, w))
            .collect(),
        endpoints: spec
            .endpoints
            .iter()
            .map(|e| endpoint_metrics(spec, e, warmup_end))
            .collect(),
        edges: spec.edges.iter().map(|e| edge_metrics(spec, e)).collect(),
        faults: Vec::new(),
        attribution: Vec::new(),
        windows: spec
            .windows
            .iter()
            .map(|w| window_metrics(spec, w))
            .collect(),
        consistency: super::broker::new_consistency(spec),
        series: new_series(spec),
    }
}

fn workload_metrics(spec: &Spec, w: &WorkloadSpec) -> WorkloadMetrics {
    WorkloadMetrics {
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
    }
}

fn endpoint_metrics(spec: &Spec, e: &EndpointSpec, warmup_end: SimTime) -> EndpointMetrics {
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
}

fn edge_metrics(spec: &Spec, e: &EdgeSpec) -> EdgeMetrics {
    EdgeMetrics {
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
    }
}

fn window_metrics(spec: &Spec, w: &WindowSpec) -> crate::metrics::WindowMetrics {
    let (section, name) = match w.target {
        WindowTarget::Workload(i) => ("workloads", spec.workloads[i.index()].name.clone()),
        WindowTarget::Endpoint(i) => ("endpoints", spec.endpoints[i.index()].name.clone()),
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
}

/// One time series per workload, endpoint and edge, in that order (`edge_series`).
fn new_series(spec: &Spec) -> Series {
    let workloads = spec
        .workloads
        .iter()
        .map(|w| (SeriesKind::Workload, w.name.clone()));
    let endpoints = spec
        .endpoints
        .iter()
        .map(|e| (SeriesKind::Endpoint, e.name.clone()));
    let edges = spec
        .edges
        .iter()
        .map(|e| (SeriesKind::Edge, e.name.clone()));
    Series::new(
        spec.bucket,
        workloads.chain(endpoints).chain(edges).collect(),
    )
}
