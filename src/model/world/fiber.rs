//! The handler interpreter: fibers run an invocation's steps (work, calls, publishes,
//! effects, parallel branches and their joins), wait, resume and are cancelled lazily.

use super::event::{CallId, Event, FiberId, InvocationId, JoinId, PendingId};
use super::server::Queued;
use super::{Outcome, World};
use crate::engine::{Scheduler, SimDuration, SimTime};
use crate::model::client::Origin;
use crate::model::spec::*;
use crate::model::status::Status;
use rand::RngExt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::model) enum Wait {
    Ready,
    Work,
    Call(CallId),
    Join(JoinId),
    /// A publisher confirm.
    Publish(PendingId),
}

pub(in crate::model) struct Fiber {
    pub invocation: InvocationId,
    pub seq: SeqId,
    pub pc: u32,
    /// (join, branch index) for branch fibers; None for the root.
    pub join: Option<(JoinId, u32)>,
    pub wait: Wait,
    /// Running a saga step.
    pub saga: Option<SagaRun>,
}

#[derive(Clone, Copy, Debug)]
pub(in crate::model) struct SagaRun {
    pub saga: SagaId,
    /// Actions completed (and, while compensating, not yet compensated).
    pub done: u32,
    /// The failed action's status, once compensating.
    pub failed: Option<Status>,
    /// Compensations that failed (after their policy's retries) so far.
    pub uncompensated: u32,
}

pub(in crate::model) struct JoinState {
    pub(super) parent: FiberId,
    pub(super) parallel: ParallelId,
    pub(super) children: Vec<FiberId>,
    pub(super) settled: u32,
    pub(super) ok: u32,
    pub(super) failed: u32,
    pub(super) first_failure: Option<Status>,
    pub(super) required_failure: Option<Status>,
    pub(super) degraded: bool,
}

impl World {
    /// Runs a fiber's steps until it blocks or ends.
    pub(in crate::model) fn advance(&mut self, f: FiberId, sched: &mut Scheduler<Event>) {
        self.trace_runs(f, sched.now());
        loop {
            let fiber = &mut self.fibers[f];
            assert_eq!(fiber.wait, Wait::Ready);
            let steps = &self.spec.seqs[fiber.seq.index()];
            let Some(&step) = steps.get(fiber.pc as usize) else {
                return self.finish_fiber(f, Outcome::Ok { degraded: false }, sched);
            };
            fiber.pc += 1;
            let invocation = fiber.invocation;
            let replica = self.invocations[invocation].replica as usize;
            match step {
                Step::Work(d) => {
                    let dur = self.work_time(replica, d);
                    if !dur.is_zero() {
                        self.fibers[f].wait = Wait::Work;
                        sched.after(dur, Event::WorkDone(f));
                        return;
                    }
                }
                Step::Stream { messages, interval } => {
                    // Every message is a draw: the loop counts against the event budget.
                    if !sched.charge(u64::from(messages)) {
                        return;
                    }
                    let total = self.stream_time(replica, messages, interval);
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
                        self.invocations[invocation].retry_after_ms =
                            crate::model::policy::Pushback::to_wire(retry_after);
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
                        self.trace_publish_wait(f, sched.now());
                        self.release_if_event_loop(f, sched);
                        return;
                    }
                }
                Step::Effect(e) => self.effect_step(invocation, e),
                Step::Saga(s) => return self.start_saga(f, s, sched),
                Step::Parallel(p) => return self.fork(f, invocation, p, sched),
            }
        }
    }

    /// A fiber's work is over (unless it was cancelled meanwhile).
    pub(super) fn on_work_done(&mut self, f: FiberId, sched: &mut Scheduler<Event>) {
        if let Some(fiber) = self.fibers.get_mut(f) {
            assert_eq!(fiber.wait, Wait::Work);
            fiber.wait = Wait::Ready;
            self.advance(f, sched);
        }
    }

    /// A fiber continues now (unless it was cancelled meanwhile).
    pub(super) fn on_run(&mut self, f: FiberId, sched: &mut Scheduler<Event>) {
        if self.fibers.contains(f) {
            self.advance(f, sched);
        }
    }

    /// A `work` step's duration on this replica: a draw, plus a fault's extra work.
    fn work_time(&mut self, replica: usize, d: DistId) -> SimDuration {
        let dur = self.spec.dists[d.index()].sample(&mut self.replicas[replica].rng);
        let service = self.replicas[replica].service;
        if !self.faults.service_faulted(service) {
            return dur;
        }
        let first = self.first_replica[service.index()];
        dur + self
            .faults
            .extra_work(&self.spec, first, service, replica as u32)
    }

    /// A server stream's duration: one interval per message.
    fn stream_time(&mut self, replica: usize, messages: u32, interval: DistId) -> SimDuration {
        let dist = &self.spec.dists[interval.index()];
        let rng = &mut self.replicas[replica].rng;
        let mut total = SimDuration::ZERO;
        for _ in 0..messages {
            total = total + dist.sample(rng);
        }
        total
    }

    /// A `saga` step: its first action is called; the rest follows from its answers.
    fn start_saga(&mut self, f: FiberId, s: SagaId, sched: &mut Scheduler<Event>) {
        self.metrics.consistency.sagas[s.index()].started += 1;
        self.fibers[f].saga = Some(SagaRun {
            saga: s,
            done: 0,
            failed: None,
            uncompensated: 0,
        });
        let (action, _) = self.spec.sagas[s.index()].steps[0];
        self.call_from(f, action, sched)
    }

    /// A `parallel` step: one fiber per branch and a join the parent waits on.
    fn fork(
        &mut self,
        f: FiberId,
        invocation: InvocationId,
        p: ParallelId,
        sched: &mut Scheduler<Event>,
    ) {
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
        self.trace_fork(f, join, &children, sched.now());
        self.invocations[invocation].fibers += children.len() as u32;
        self.joins[join].children = children;
        self.fibers[f].wait = Wait::Join(join);
        self.release_if_event_loop(f, sched);
    }

    /// A fiber calls out and waits for the answer.
    pub(in crate::model) fn call_from(
        &mut self,
        f: FiberId,
        site: CallSite,
        sched: &mut Scheduler<Event>,
    ) {
        let inv = &self.invocations[self.fibers[f].invocation];
        let (key, op) = (inv.key, inv.op);
        let logical = self.start_call(Origin::Fiber(f), site.edge, site.timeout, key, op, sched);
        self.fibers[f].wait = Wait::Call(logical);
        self.release_if_event_loop(f, sched);
    }

    /// An event-loop service lets the worker go while its handler waits.
    pub(super) fn release_if_event_loop(&mut self, f: FiberId, sched: &mut Scheduler<Event>) {
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
            inv.busy_ns += sched.now().since(since).as_nanos();
            self.release_worker(replica, endpoint, since, sched);
        }
    }

    /// Continues a fiber whose wait is over, first getting a worker back if it let its
    /// worker go (released mode, root fiber only).
    pub(in crate::model) fn resume(&mut self, f: FiberId, now: SimTime) {
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

    pub(in crate::model) fn finish_fiber(
        &mut self,
        f: FiberId,
        outcome: Outcome,
        sched: &mut Scheduler<Event>,
    ) {
        self.trace_fiber_finished(f, sched.now());
        let fiber = self.fibers.remove(f).expect("finishing a live fiber");
        self.invocations[fiber.invocation].fibers -= 1;
        match fiber.join {
            None => self.respond(fiber.invocation, outcome, sched),
            Some((join, branch)) => self.branch_settled(join, branch, outcome, sched),
        }
    }

    pub(super) fn branch_settled(
        &mut self,
        j: JoinId,
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
                (join.settled == n).then_some(match join.required_failure {
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
        self.trace_join(j, branch, sched.now());
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
    pub(super) fn cancel_children(
        &mut self,
        mut children: Vec<FiberId>,
        sched: &mut Scheduler<Event>,
    ) {
        for &child in &children {
            self.cancel_fiber(child, sched);
        }
        children.clear();
        self.spare_children.push(children);
    }

    /// Abandons a fiber: calls it is waiting on are given up (their servers carry on
    /// and answer late); nested joins are cancelled too.
    pub(in crate::model) fn cancel_fiber(&mut self, f: FiberId, sched: &mut Scheduler<Event>) {
        let Some(fiber) = self.fibers.remove(f) else {
            return; // already settled
        };
        self.trace_fiber_end(f, sched.now());
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
