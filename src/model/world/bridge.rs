//! The `World`'s side of the brokers. Every call into `Async` goes through `broker`,
//! which hands it its context and then carries out the commands it left (fibers,
//! invocations and fault books are the `World`'s alone). And the consumer bridge: a
//! delivery becomes an invocation on its instance's replica, and the handler's end
//! settles the delivery. The only code that builds an `Invocation` for a message.

use super::event::{DeliveryId, Event, FiberId, InvocationId, PendingId};
use super::fiber::Wait;
use super::{AnswerTo, Invocation, Outcome, World};
use crate::engine::{Scheduler, SimDuration};
use crate::model::broker::{Async, Command, Ctx, Published};
use crate::model::spec::*;
use crate::model::status::Status;

impl World {
    /// Runs `call` on the brokers with their context, then the commands it left.
    #[inline]
    pub(in crate::model) fn broker<R>(
        &mut self,
        sched: &mut Scheduler<Event>,
        call: impl FnOnce(&mut Async, &mut Ctx) -> R,
    ) -> R {
        let mut cx = Ctx {
            spec: &self.spec,
            sched,
            immediate: &mut self.immediate,
            metrics: &mut self.metrics.consistency,
            commands: &mut self.broker_commands,
            trace: self.recorder.as_deref_mut(),
        };
        let r = call(&mut self.asy, &mut cx);
        if !self.broker_commands.is_empty() {
            self.carry_out(sched);
        }
        r
    }

    /// The broker's commands, in the order it gave them.
    fn carry_out(&mut self, sched: &mut Scheduler<Event>) {
        // One command (a confirm's resume) is the common case: out of the buffer before
        // it runs, so that commands a nested broker call leaves are that call's own.
        if self.broker_commands.len() == 1 {
            let command = self.broker_commands.pop().expect("one command");
            self.command(command, sched);
            return;
        }
        let mut commands = std::mem::take(&mut self.broker_commands);
        for command in commands.drain(..) {
            self.command(command, sched);
        }
        // Keep the buffer (and its capacity) unless a nested call left commands there.
        if self.broker_commands.is_empty() {
            self.broker_commands = commands;
        }
    }

    fn command(&mut self, command: Command, sched: &mut Scheduler<Event>) {
        match command {
            Command::Resume { fiber } => {
                if self.fibers.contains(fiber) {
                    self.resume(fiber, sched.now());
                }
            }
            Command::Fail { fiber, status } => {
                if self.fibers.contains(fiber) {
                    self.finish_fiber(fiber, Outcome::Failed(status), sched);
                }
            }
            Command::Discard { delivery, handler } => {
                if self.discard_waiting(handler, sched.now()) {
                    self.trace_discarded(handler, sched.now());
                    self.asy.forget_stale(delivery);
                }
            }
            Command::Refused { broker } => {
                for (i, f) in self.spec.faults.iter().enumerate() {
                    if let FaultTarget::Broker(x) = f.target
                        && x == broker
                        && self.asy.broker_fault_active[i]
                    {
                        self.faults.affected[i] += 1;
                    }
                }
            }
        }
    }

    // ---- publishing ----

    /// A `publish` step of fiber `f` in invocation `inv`. Returns true when the fiber
    /// waits for a confirm.
    pub(in crate::model) fn publish_step(
        &mut self,
        f: FiberId,
        inv: InvocationId,
        p: PublishId,
        sched: &mut Scheduler<Event>,
    ) -> bool {
        let (op, key) = {
            let i = &self.invocations[inv];
            (i.op, i.key)
        };
        match self.broker(sched, |a, cx| a.publish_step(f, p, op, key, cx)) {
            Published::Sent => false,
            Published::Confirming(pending) => {
                self.fibers[f].wait = Wait::Publish(pending);
                true
            }
            Published::Outbox(msg) => {
                // Written with the handler's own transaction: published only if it
                // succeeds.
                self.ledger.txn_outbox.push((inv, p, msg));
                false
            }
        }
    }

    /// Publish again after a nack or a missing confirm, unless the publishing fiber is
    /// gone.
    pub(super) fn on_republish(&mut self, pending: PendingId, sched: &mut Scheduler<Event>) {
        if let Some(f) = self.asy.publishing_fiber(pending)
            && !self.fibers.contains(f)
        {
            self.asy.forget_publish(pending);
            return;
        }
        self.broker(sched, |a, cx| a.on_republish(pending, cx));
    }

    /// A fiber waiting on a confirm is cancelled: whatever the broker says is ignored.
    pub(in crate::model) fn forget_publish(&mut self, pending: PendingId) {
        self.asy.forget_publish(pending);
    }

    // ---- the consumer bridge ----

    /// A delivery reaches its consumer instance: the handler starts (or waits for a
    /// worker), unless the broker's side says it is not to run.
    pub(super) fn on_deliver(&mut self, d: DeliveryId, sched: &mut Scheduler<Event>) {
        let now = sched.now();
        let Some(arrival) = self.broker(sched, |a, cx| a.arrive(d, cx)) else {
            return;
        };
        let cspec = &self.spec.consumers[arrival.consumer.index()];
        let service = cspec.service;
        let endpoint = cspec.endpoint;
        let first = self.first_replica[service.index()];
        let r = first + arrival.instance;
        let measured = now >= self.warmup_end;
        self.metrics.endpoints[endpoint.index()].arrivals += u64::from(measured);
        if self.faults.service_faulted(service)
            && let Some(_status) = self.faults.on_arrival(&self.spec, first, service, r)
        {
            self.metrics.endpoints[endpoint.index()].faulted += u64::from(measured);
            self.broker(sched, |a, cx| a.handled(d, false, cx));
            return;
        }
        let replica = &self.replicas[r as usize];
        let starts_now = replica.busy < replica.workers;
        let inv = |root| Invocation {
            msg: arrival.msg,
            key: arrival.key,
            op: arrival.op,
            ..Invocation::arriving(
                endpoint,
                r,
                AnswerTo::Delivery(d),
                now,
                starts_now,
                measured,
                root,
            )
        };
        let i = self.admit(inv, starts_now, SimDuration::ZERO, sched);
        // A handler whose steps all take no time (a work draw can round to 0 ns) has
        // already ended inside `admit` and settled its delivery, which may be gone.
        self.broker(sched, |a, cx| a.note_handler(d, i, cx));
    }

    /// A consumer's handler answered `status`: a member that left its group polls
    /// again (rejoins), and the delivery is settled.
    pub(in crate::model) fn delivery_handled(
        &mut self,
        d: DeliveryId,
        status: Status,
        sched: &mut Scheduler<Event>,
    ) {
        self.broker(sched, |a, cx| {
            a.maybe_rejoin(d, cx);
            a.handled(d, status.is_ok(), cx);
        });
    }
}
