//! The consumer bridge: a delivery becomes an invocation on its instance's replica, and
//! the handler's end settles the delivery. The only broker code that touches an
//! `Invocation`.

use crate::engine::{Scheduler, SimDuration, SimTime};
use crate::model::spec::*;
use crate::model::status::Status;
use crate::model::world::{
    AnswerTo, DeliveryId, Event, Invocation, NO_DEADLINE, Outcome, Settlement, World,
};
use std::rc::Rc;

impl World {
    // ---- consumers ----

    /// A delivery reaches its consumer instance: the handler starts (or waits for a
    /// worker), unless the processed-messages store already has it.
    pub(in crate::model) fn on_deliver(&mut self, d: DeliveryId, sched: &mut Scheduler<Event>) {
        let now = sched.now();
        let Some(del) = self.asy.deliveries.get(d) else {
            return;
        };
        let (c, instance) = (del.consumer, del.instance);
        let all = Rc::clone(&self.spec);
        let cspec = &all.consumers[c.index()];
        if !self.asy.consumers[c.index()].instances[instance as usize].up {
            return; // arrives at a dead process: the broker finds out by its own rules
        }
        if let Some(dd) = cspec.dedupe {
            let id = dd.id(del.msg, del.op);
            if self.asy.consumers[c.index()].processed(id, now) {
                self.metrics.consistency.consumers[c.index()].duplicates_skipped += 1;
                return self.handled(d, Outcome::Ok { degraded: false }, sched);
            }
        }
        let service = cspec.service;
        let endpoint = cspec.endpoint;
        let first = self.first_replica[service.index()];
        let r = first + instance;
        let measured = now >= self.warmup_end;
        self.metrics.endpoints[endpoint.index()].arrivals += u64::from(measured);
        if self.faults.service_faulted(service)
            && let Some(_status) = self.faults.on_arrival(&self.spec, first, service, r)
        {
            self.metrics.endpoints[endpoint.index()].faulted += u64::from(measured);
            return self.handled(d, Outcome::Failed(Status::Unavailable), sched);
        }
        let (op, key, del_msg) = (del.op, del.key, del.msg);
        let replica = &self.replicas[r as usize];
        let starts_now = replica.busy < replica.workers;
        let inv = |root| Invocation {
            endpoint,
            replica: r,
            answer_to: AnswerTo::Delivery(d),
            msg: del_msg,
            arrived_at: now,
            deadline: NO_DEADLINE,
            worker_since: starts_now.then_some(now),
            busy_ns: 0,
            key,
            op,
            messages: 1,
            queued: !starts_now,
            retry_after: None,
            root,
            degraded: false,
            measured,
            fibers: 1,
        };
        let i = self.admit(inv, starts_now, SimDuration::ZERO, sched);
        // A handler whose steps all take no time (a work draw can round to 0 ns) has
        // already ended inside `admit` and settled its delivery, which may be gone.
        let Some(del) = self.asy.deliveries.get_mut(d) else {
            return;
        };
        del.handler = Some(i);
        if let Some(limit) = cspec.max_poll_interval
            && matches!(cspec.subscription, Subscription::Topic(_))
        {
            self.asy.periodic += 1;
            sched.after(limit, Event::PollTimeout(d));
        }
    }

    /// A consumer's handler is over (or skipped): settle the delivery.
    pub(in crate::model) fn handled(
        &mut self,
        d: DeliveryId,
        outcome: Outcome,
        sched: &mut Scheduler<Event>,
    ) {
        let Some(del) = self.asy.deliveries.get(d) else {
            // Taken back meanwhile (ack timeout, rebalance): the ack goes nowhere.
            if let Some(q) = self.asy.stale_queue.remove(&d) {
                self.metrics.consistency.flows[q.index()].stale_acks +=
                    u64::from(matches!(outcome, Outcome::Ok { .. }));
            }
            return;
        };
        let c = del.consumer;
        let cm = &mut self.metrics.consistency.consumers[c.index()];
        let ok = matches!(outcome, Outcome::Ok { .. });
        if ok {
            cm.handled_ok += 1;
        } else {
            cm.handled_failed += 1;
        }
        let spec = &self.spec.consumers[c.index()];
        match spec.subscription {
            Subscription::Queue(q) => {
                if !ok && spec.on_failure == OnFailure::Abandon {
                    return; // left to the ack (visibility) timeout
                }
                let how = match (ok, spec.on_failure) {
                    (true, _) => Settlement::Ack,
                    (false, OnFailure::Abandon) => unreachable!("returned above"),
                    (false, OnFailure::Requeue) => Settlement::Nack,
                    (false, OnFailure::Reject | OnFailure::Skip) => Settlement::Reject,
                    (false, OnFailure::Retry { .. }) => Settlement::Retry,
                };
                let b = self.spec.queues[q.index()].broker;
                self.broker_hop(b, Event::Settle { delivery: d, how }, sched);
            }
            Subscription::Topic(_) => self.log_handled(d, ok, sched),
        }
    }

    /// Inserts a handled message into its consumer's processed-messages store; false
    /// when the store had it already (the handler's transaction rolls back: the store's
    /// unique key).
    pub(in crate::model) fn store_processed(
        &mut self,
        c: ConsumerId,
        dd: Dedupe,
        msg: u64,
        op: u64,
        now: SimTime,
    ) -> bool {
        let id = dd.id(msg, op);
        let cs = &mut self.asy.consumers[c.index()];
        if cs.processed(id, now) {
            return false;
        }
        let until = now.checked_add(dd.retention).unwrap_or(SimTime::MAX);
        cs.processed.insert(id, until);
        cs.processed_order.push_back((until, id));
        true
    }
}
