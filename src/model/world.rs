//! The running system: replicas with worker pools and queues, calls in flight, handler
//! programs being interpreted, workloads sending requests.
//!
//! Handlers run as fibers: an invocation (one request being served) has a root fiber,
//! and each `parallel` step spawns one fiber per branch plus a join. Fibers, calls,
//! invocations and joins live in generational arenas; events carry their ids, so an
//! event for something already gone (a timer for an answered call, work of a cancelled
//! branch) is recognised and dropped. That is the whole of cancellation.
//!
//! Messages with zero latency, and fibers woken by another fiber, go through a FIFO
//! `immediate` queue drained before the next engine event: no handler ever re-enters
//! another, and zero-latency hops cost no trip through the event heap.

use super::arena::{Arena, Id};
use super::spec::*;
use super::status::Status;
use crate::engine::{Scheduler, SimDuration, SimTime, Stream, stream};
use crate::metrics::{
    EdgeMetrics, EndpointMetrics, Metrics, Series, SeriesKind, StatusCounts, Summary, TimeWeighted,
    WorkloadMetrics,
};
use rand::RngExt;
use std::collections::VecDeque;

#[derive(Clone, Copy, Debug)]
pub enum Event {
    /// Open loop: the next request of a workload is due.
    Arrival(WorkloadId),
    /// Closed loop: a user has finished thinking.
    UserReady { workload: WorkloadId, user: u32 },
    /// A call's request reaches the callee's service. `measured`: sent after warmup.
    Request {
        call: Id,
        edge: EdgeId,
        measured: bool,
    },
    /// A call's answer reaches the caller.
    Reply {
        call: Id,
        edge: EdgeId,
        status: Status,
        degraded: bool,
        measured: bool,
    },
    /// A fiber's `work` step is over.
    WorkDone(Id),
    /// A call's timeout fires (ignored if it was answered).
    Timeout(Id),
    /// Continue a fiber now.
    Run(Id),
    /// A time-series bucket ends.
    Tick,
}

#[derive(Clone, Copy, Debug)]
enum Origin {
    Workload { workload: WorkloadId, user: u32 },
    Fiber(Id),
}

/// A call from the caller's side: alive until answered, timed out or cancelled.
struct Call {
    origin: Origin,
    edge: EdgeId,
    sent_at: SimTime,
    measured: bool,
}

/// One request being served by one replica.
struct Invocation {
    endpoint: EndpointId,
    replica: u32,
    /// Where the answer goes; the caller may have given up, then the answer is late.
    call: Id,
    edge: EdgeId,
    /// The call was sent after warmup (its late reply, if any, is counted).
    call_measured: bool,
    arrived_at: SimTime,
    /// When this invocation took the worker it holds, if it holds one.
    worker_since: Option<SimTime>,
    root: Id,
    degraded: bool,
    measured: bool,
    /// Fibers alive; zero when the answer is sent.
    fibers: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wait {
    Ready,
    Work,
    Call(Id),
    Join(Id),
}

struct Fiber {
    invocation: Id,
    seq: SeqId,
    pc: u32,
    /// (join, branch index) for branch fibers; None for the root.
    join: Option<(Id, u32)>,
    wait: Wait,
}

struct JoinState {
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
enum Outcome {
    Ok { degraded: bool },
    Failed(Status),
}

#[derive(Clone, Copy, Debug)]
enum Queued {
    /// A new request waiting for its first worker.
    Start(Id),
    /// A released-mode handler waiting for a worker to continue.
    Resume(Id),
}

struct Replica {
    service: ServiceId,
    workers: u32,
    busy: u32,
    queue: VecDeque<Queued>,
    /// `Start` entries in `queue`: what the capacity bounds.
    queued_new: u32,
    /// Admitted and not yet answered, for least-outstanding balancing.
    outstanding: u32,
    rng: Stream,
}

struct BalancerState {
    next: u32,
    rng: Stream,
}

struct WorkloadState {
    rng: Stream,
}

pub struct World {
    spec: Spec,
    warmup_end: SimTime,
    replicas: Vec<Replica>,
    /// First replica of each service in `replicas`.
    first_replica: Vec<u32>,
    balancers: Vec<BalancerState>,
    links: Vec<Stream>,
    workloads: Vec<WorkloadState>,
    calls: Arena<Call>,
    invocations: Arena<Invocation>,
    fibers: Arena<Fiber>,
    joins: Arena<JoinState>,
    spare_children: Vec<Vec<Id>>,
    immediate: VecDeque<Event>,
    requests_sent: u64,
    last_activity: SimTime,
    metrics: Metrics,
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
            })
            .collect();
        let warmup_end = SimTime::ZERO + spec.warmup;
        let metrics = Metrics {
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
                        completed: 0,
                        ok: 0,
                        errors: StatusCounts::default(),
                        queue_wait: Summary::default(),
                        latency: Summary::default(),
                        queue_length: TimeWeighted::new(warmup_end),
                        in_system: TimeWeighted::new(warmup_end),
                        busy_ns: 0,
                        workers: u64::from(svc.workers) * u64::from(svc.replicas),
                    }
                })
                .collect(),
            edges: spec
                .edges
                .iter()
                .map(|e| EdgeMetrics {
                    name: e.name.clone(),
                    calls: 0,
                    ok: 0,
                    timeouts: 0,
                    errors: StatusCounts::default(),
                    latency: Summary::default(),
                    lost_requests: 0,
                    lost_replies: 0,
                    late_replies: 0,
                    cancelled: 0,
                })
                .collect(),
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
                    .collect(),
            ),
        };
        World {
            spec,
            warmup_end,
            replicas,
            first_replica,
            balancers,
            links,
            workloads,
            calls: Arena::default(),
            invocations: Arena::default(),
            fibers: Arena::default(),
            joins: Arena::default(),
            spare_children: Vec::new(),
            immediate: VecDeque::new(),
            requests_sent: 0,
            last_activity: SimTime::ZERO,
            metrics,
        }
    }

    /// Schedules the first arrivals and the first bucket tick.
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
        sched.after(self.spec.bucket, Event::Tick);
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
        for call in self.calls.values() {
            if let Origin::Workload { workload, .. } = call.origin
                && call.measured
            {
                self.metrics.workloads[workload.index()].in_flight += 1;
            }
        }
        let Metrics {
            series, endpoints, ..
        } = &mut self.metrics;
        let w = self.spec.workloads.len();
        series.close_bucket(end, |i| {
            (i >= w).then(|| endpoints[i - w].queue_length.area_all_at(end))
        });
        for e in endpoints.iter_mut() {
            e.queue_length.flush(end);
            e.in_system.flush(end);
        }
        self.metrics.window_start = warmup_end.min(end);
        self.metrics.window_end = end;
        self.metrics
    }

    pub fn requests_sent(&self) -> u64 {
        self.requests_sent
    }

    fn dispatch(&mut self, event: Event, sched: &mut Scheduler<Event>) {
        let now = sched.now();
        if !matches!(event, Event::Tick) {
            self.last_activity = now;
        }
        match event {
            Event::Arrival(w) => {
                if self.take_request_slot() {
                    self.send_call(
                        Origin::Workload {
                            workload: w,
                            user: 0,
                        },
                        self.spec.workloads[w.index()].edge,
                        self.spec.workloads[w.index()].timeout,
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
                    self.send_call(
                        Origin::Workload { workload, user },
                        spec.edge,
                        spec.timeout,
                        sched,
                    );
                }
            }
            Event::Request {
                call,
                edge,
                measured,
            } => self.on_request(call, edge, measured, sched),
            Event::Reply {
                call,
                edge,
                status,
                degraded,
                measured,
            } => self.on_reply(call, edge, status, degraded, measured, sched),
            Event::WorkDone(f) => {
                if let Some(fiber) = self.fibers.get_mut(f) {
                    debug_assert_eq!(fiber.wait, Wait::Work);
                    fiber.wait = Wait::Ready;
                    self.advance(f, sched);
                }
            }
            Event::Timeout(c) => self.on_timeout(c, sched),
            Event::Run(f) => {
                if self.fibers.contains(f) {
                    self.advance(f, sched);
                }
            }
            Event::Tick => {
                let Metrics {
                    series, endpoints, ..
                } = &mut self.metrics;
                let w = self.spec.workloads.len();
                series.close_bucket(now, |i| {
                    (i >= w).then(|| endpoints[i - w].queue_length.area_all_at(now))
                });
                // Keep ticking only while something else can still happen.
                if sched.pending() > 0 {
                    sched.after(self.spec.bucket, Event::Tick);
                }
            }
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

    /// Sends a message over a link: dropped with the link's loss probability, else
    /// delivered after its latency. Returns false when the network dropped it.
    fn transmit(&mut self, link: LinkId, event: Event, sched: &mut Scheduler<Event>) -> bool {
        let spec = &self.spec.links[link.index()];
        let rng = &mut self.links[link.index()];
        if spec.loss > 0.0 && rng.random::<f64>() < spec.loss {
            return false;
        }
        let delay = if spec.latency.is_constant_zero() {
            SimDuration::ZERO
        } else {
            spec.latency.sample(rng)
        };
        if delay.is_zero() {
            self.immediate.push_back(event);
        } else {
            sched.after(delay, event);
        }
        true
    }

    fn send_call(
        &mut self,
        origin: Origin,
        edge: EdgeId,
        timeout: Option<SimDuration>,
        sched: &mut Scheduler<Event>,
    ) -> Id {
        let now = sched.now();
        let measured = now >= self.warmup_end;
        let call = self.calls.insert(Call {
            origin,
            edge,
            sent_at: now,
            measured,
        });
        if measured {
            self.metrics.edges[edge.index()].calls += 1;
            if let Origin::Workload { workload, .. } = origin {
                self.metrics.workloads[workload.index()].requests += 1;
            }
        }
        if let Some(t) = timeout {
            sched.after(t, Event::Timeout(call));
        }
        let link = self.spec.edges[edge.index()].link;
        if !self.transmit(
            link,
            Event::Request {
                call,
                edge,
                measured,
            },
            sched,
        ) {
            self.metrics.edges[edge.index()].lost_requests += 1;
        }
        call
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

    fn on_request(
        &mut self,
        call: Id,
        edge: EdgeId,
        call_measured: bool,
        sched: &mut Scheduler<Event>,
    ) {
        let now = sched.now();
        let endpoint = self.spec.edges[edge.index()].target;
        let service = self.spec.endpoints[endpoint.index()].service;
        let r = self.pick_replica(service);
        let measured = now >= self.warmup_end;
        self.metrics.endpoints[endpoint.index()].arrivals += u64::from(measured);
        let capacity = self.spec.services[service.index()].queue_capacity;
        let replica = &self.replicas[r as usize];
        debug_assert_eq!(replica.service, service);
        let starts_now = replica.busy < replica.workers;
        if !starts_now && replica.queued_new >= capacity {
            self.metrics.endpoints[endpoint.index()].rejected += u64::from(measured);
            let link = self.spec.edges[edge.index()].link;
            let reply = Event::Reply {
                call,
                edge,
                status: Status::Unavailable,
                degraded: false,
                measured: call_measured,
            };
            if !self.transmit(link, reply, sched) {
                self.metrics.edges[edge.index()].lost_replies += 1;
            }
            return;
        }
        let inv = self.invocations.insert(Invocation {
            endpoint,
            replica: r,
            call,
            edge,
            call_measured,
            arrived_at: now,
            worker_since: starts_now.then_some(now),
            root: Id::PLACEHOLDER,
            degraded: false,
            measured,
            fibers: 1,
        });
        let root = self.fibers.insert(Fiber {
            invocation: inv,
            seq: self.spec.endpoints[endpoint.index()].handler,
            pc: 0,
            join: None,
            wait: Wait::Ready,
        });
        self.invocations[inv].root = root;
        let replica = &mut self.replicas[r as usize];
        replica.outstanding += 1;
        let em = &mut self.metrics.endpoints[endpoint.index()];
        em.in_system.increment(now);
        if starts_now {
            replica.busy += 1;
            if measured {
                em.queue_wait.record(SimDuration::ZERO);
            }
            self.advance(root, sched);
        } else {
            replica.queue.push_back(Queued::Start(inv));
            replica.queued_new += 1;
            em.queue_length.increment(now);
        }
    }

    /// Runs a fiber's steps until it blocks or ends.
    fn advance(&mut self, f: Id, sched: &mut Scheduler<Event>) {
        loop {
            let fiber = &mut self.fibers[f];
            debug_assert_eq!(fiber.wait, Wait::Ready);
            let steps = &self.spec.seqs[fiber.seq.index()];
            let Some(&step) = steps.get(fiber.pc as usize) else {
                return self.finish_fiber(f, Outcome::Ok { degraded: false }, sched);
            };
            fiber.pc += 1;
            let replica = self.invocations[fiber.invocation].replica as usize;
            match step {
                Step::Work(d) => {
                    let dur = self.spec.dists[d.index()].sample(&mut self.replicas[replica].rng);
                    if !dur.is_zero() {
                        fiber.wait = Wait::Work;
                        sched.after(dur, Event::WorkDone(f));
                        return;
                    }
                }
                Step::Fail { status, p } => {
                    if self.replicas[replica].rng.random::<f64>() < p {
                        return self.finish_fiber(f, Outcome::Failed(status), sched);
                    }
                }
                Step::Call(site) => {
                    let call = self.send_call(Origin::Fiber(f), site.edge, site.timeout, sched);
                    self.fibers[f].wait = Wait::Call(call);
                    self.release_if_event_loop(f, sched);
                    return;
                }
                Step::Parallel(p) => {
                    let invocation = fiber.invocation;
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
            self.release_worker(replica, endpoint, since, sched);
        }
    }

    /// Continues a fiber whose wait is over, first getting a worker back if it let its
    /// worker go (released mode, root fiber only).
    fn resume(&mut self, f: Id, now: SimTime) {
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

    fn release_worker(
        &mut self,
        r: u32,
        endpoint: EndpointId,
        since: SimTime,
        sched: &mut Scheduler<Event>,
    ) {
        let now = sched.now();
        self.metrics.endpoints[endpoint.index()].busy_ns += overlap_ns(since, now, self.warmup_end);
        let replica = &mut self.replicas[r as usize];
        // The worker goes straight to the next in line, if any.
        while let Some(next) = replica.queue.pop_front() {
            match next {
                Queued::Start(i) => {
                    replica.queued_new -= 1;
                    let Some(inv) = self.invocations.get_mut(i) else {
                        continue;
                    };
                    inv.worker_since = Some(now);
                    let em = &mut self.metrics.endpoints[inv.endpoint.index()];
                    em.queue_length.decrement(now);
                    if inv.measured {
                        em.queue_wait.record(now.since(inv.arrived_at));
                    }
                    self.immediate.push_back(Event::Run(inv.root));
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
        replica.busy -= 1;
    }

    fn finish_fiber(&mut self, f: Id, outcome: Outcome, sched: &mut Scheduler<Event>) {
        let fiber = self.fibers.remove(f).expect("finishing a live fiber");
        self.invocations[fiber.invocation].fibers -= 1;
        match fiber.join {
            None => self.respond(fiber.invocation, outcome, sched),
            Some((join, branch)) => self.branch_settled(join, branch, outcome, sched),
        }
    }

    fn respond(&mut self, i: Id, outcome: Outcome, sched: &mut Scheduler<Event>) {
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
        }
        em.in_system.decrement(now);
        let series = self.spec.workloads.len() + inv.endpoint.index();
        self.metrics.series.record(series, latency, !status.is_ok());
        self.replicas[inv.replica as usize].outstanding -= 1;
        let link = self.spec.edges[inv.edge.index()].link;
        let reply = Event::Reply {
            call: inv.call,
            edge: inv.edge,
            status,
            degraded,
            measured: inv.call_measured,
        };
        if !self.transmit(link, reply, sched) {
            self.metrics.edges[inv.edge.index()].lost_replies += 1;
        }
        if let Some(since) = inv.worker_since {
            self.release_worker(inv.replica, inv.endpoint, since, sched);
        }
    }

    fn on_reply(
        &mut self,
        call: Id,
        edge: EdgeId,
        status: Status,
        degraded: bool,
        measured: bool,
        sched: &mut Scheduler<Event>,
    ) {
        let now = sched.now();
        let Some(c) = self.calls.remove(call) else {
            self.metrics.edges[edge.index()].late_replies += u64::from(measured);
            return;
        };
        debug_assert_eq!(c.edge, edge);
        let m = &mut self.metrics.edges[edge.index()];
        if c.measured {
            if status.is_ok() {
                m.ok += 1;
            } else {
                m.errors.add(status);
            }
            m.latency.record(now.since(c.sent_at));
        }
        self.call_settled(c, status, degraded, sched);
    }

    fn on_timeout(&mut self, call: Id, sched: &mut Scheduler<Event>) {
        let now = sched.now();
        // Already answered or cancelled: this timer is stale.
        let Some(c) = self.calls.remove(call) else {
            return;
        };
        let m = &mut self.metrics.edges[c.edge.index()];
        if c.measured {
            m.timeouts += 1;
            m.latency.record(now.since(c.sent_at));
        }
        self.call_settled(c, Status::DeadlineExceeded, false, sched);
    }

    /// The caller learns the outcome of its call (an answer or its own timeout).
    fn call_settled(
        &mut self,
        c: Call,
        status: Status,
        degraded: bool,
        sched: &mut Scheduler<Event>,
    ) {
        match c.origin {
            Origin::Workload { workload, user } => {
                let now = sched.now();
                let latency = now.since(c.sent_at);
                let wm = &mut self.metrics.workloads[workload.index()];
                if c.measured {
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
                if let Load::Closed { think, .. } = &self.spec.workloads[workload.index()].load {
                    let delay = think.sample(&mut self.workloads[workload.index()].rng);
                    // Through the heap even when zero, so a loop that never advances time
                    // still counts against the event budget.
                    sched.after(delay, Event::UserReady { workload, user });
                }
            }
            Origin::Fiber(f) => {
                let fiber = &self.fibers[f];
                debug_assert!(matches!(fiber.wait, Wait::Call(_)));
                if status.is_ok() {
                    if degraded {
                        self.invocations[fiber.invocation].degraded = true;
                    }
                    self.resume(f, sched.now());
                } else {
                    let Step::Call(site) = self.spec.seqs[fiber.seq.index()][fiber.pc as usize - 1]
                    else {
                        unreachable!("a fiber waiting on a call stopped at a call step")
                    };
                    self.finish_fiber(f, Outcome::Failed(site.translate.apply(status)), sched);
                }
            }
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
        self.cancel_children(join.children);
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
    fn cancel_children(&mut self, mut children: Vec<Id>) {
        for &child in &children {
            self.cancel_fiber(child);
        }
        children.clear();
        self.spare_children.push(children);
    }

    /// Abandons a branch the join no longer needs. Calls it is waiting on are given up
    /// (their servers carry on and answer late); nested joins are cancelled too.
    fn cancel_fiber(&mut self, f: Id) {
        let Some(fiber) = self.fibers.remove(f) else {
            return; // already settled
        };
        self.invocations[fiber.invocation].fibers -= 1;
        match fiber.wait {
            Wait::Call(c) => {
                if let Some(call) = self.calls.remove(c)
                    && call.measured
                {
                    self.metrics.edges[call.edge.index()].cancelled += 1;
                }
            }
            Wait::Join(j) => {
                if let Some(join) = self.joins.remove(j) {
                    self.cancel_children(join.children);
                }
            }
            Wait::Work | Wait::Ready => {}
        }
    }
}

impl crate::engine::Model for World {
    type Event = Event;

    fn handle(&mut self, event: Event, sched: &mut Scheduler<Event>) {
        self.dispatch(event, sched);
        while let Some(e) = self.immediate.pop_front() {
            self.dispatch(e, sched);
        }
    }
}

/// Nanoseconds of [since, now] that fall after `from`.
fn overlap_ns(since: SimTime, now: SimTime, from: SimTime) -> u128 {
    u128::from(now.saturating_since(since.max(from)).as_nanos())
}
