//! Faults on the asynchronous side: consumer instances down and up (connections closed,
//! session timeouts), broker outages.

use crate::engine::Scheduler;
use crate::model::spec::*;
use crate::model::world::{Event, World};
use std::rc::Rc;

impl World {
    // ---- faults: consumer crashes and broker outages ----

    /// A consumer instance crashed or went down.
    pub(in crate::model) fn consumer_down(
        &mut self,
        c: ConsumerId,
        instance: u32,
        sched: &mut Scheduler<Event>,
    ) {
        let now = sched.now();
        let inst = &mut self.asy.consumers[c.index()].instances[instance as usize];
        if !inst.up {
            return;
        }
        inst.up = false;
        match self.spec.consumers[c.index()].subscription {
            Subscription::Queue(q) => {
                if self.spec.queues[q.index()].requeue_on_crash {
                    self.return_all(c, instance, now, sched);
                    self.try_deliver(q, sched);
                }
            }
            Subscription::Topic(_) => {
                // Its in-flight messages die with it; the group notices after the
                // session timeout.
                for p in 0..self.asy.consumers[c.index()].parts.len() {
                    let gp = &mut self.asy.consumers[c.index()].parts[p];
                    if gp.owner == Some(instance)
                        && let Some(d) = gp.in_flight.take()
                    {
                        self.asy.deliveries.remove(d);
                        gp.position = gp.processed;
                    }
                }
                let timeout = self.spec.consumers[c.index()].session_timeout;
                self.asy.periodic += 1;
                sched.after(
                    timeout,
                    Event::SessionTimeout {
                        consumer: c,
                        instance,
                    },
                );
            }
        }
    }

    pub(in crate::model) fn consumer_up(
        &mut self,
        c: ConsumerId,
        instance: u32,
        sched: &mut Scheduler<Event>,
    ) {
        let inst = &mut self.asy.consumers[c.index()].instances[instance as usize];
        if inst.up {
            return;
        }
        inst.up = true;
        match self.spec.consumers[c.index()].subscription {
            Subscription::Queue(q) => self.try_deliver(q, sched),
            Subscription::Topic(_) => {
                // A restarted process starts over: it rejoins the group (a rebalance).
                let inst = &mut self.asy.consumers[c.index()].instances[instance as usize];
                inst.member = true;
                inst.since_commit = 0;
                self.rebalance(c, sched);
            }
        }
    }

    pub(in crate::model) fn on_session_timeout(
        &mut self,
        c: ConsumerId,
        instance: u32,
        sched: &mut Scheduler<Event>,
    ) {
        let inst = &mut self.asy.consumers[c.index()].instances[instance as usize];
        if inst.up || !inst.member {
            return; // back already, or already out
        }
        inst.member = false;
        self.rebalance(c, sched);
    }

    pub(in crate::model) fn broker_down(
        &mut self,
        b: BrokerId,
        sched: &mut Scheduler<Event>,
    ) -> u64 {
        let now = sched.now();
        self.asy.down[b.index()] = true;
        // Connections drop: every unacked delivery of its queues returns.
        let spec = Rc::clone(&self.spec);
        self.return_where(|_, q| spec.queues[q.index()].broker == b, now, sched)
    }

    pub(in crate::model) fn broker_up(&mut self, b: BrokerId, sched: &mut Scheduler<Event>) {
        self.asy.down[b.index()] = false;
        for q in 0..self.spec.queues.len() {
            if self.spec.queues[q].broker == b {
                self.try_deliver(QueueId(q as u32), sched);
            }
        }
        for c in 0..self.spec.consumers.len() {
            if let Subscription::Topic(t) = self.spec.consumers[c].subscription
                && self.spec.topics[t.index()].broker == b
            {
                for p in 0..self.spec.topics[t.index()].partitions {
                    self.try_fetch(ConsumerId(c as u32), p, sched);
                }
            }
        }
    }

    pub(super) fn faults_touch_broker(&mut self, b: BrokerId) {
        for (i, f) in self.spec.faults.iter().enumerate() {
            if let FaultTarget::Broker(x) = f.target
                && x == b
                && self.asy.broker_fault_active[i]
            {
                self.faults.affected[i] += 1;
            }
        }
    }
}
