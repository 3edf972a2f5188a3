//! Faults on the asynchronous side: consumer instances down and up (connections closed,
//! session timeouts), broker outages.

use super::{Async, Ctx};
use crate::model::spec::*;
use crate::model::world::Event;

impl Async {
    // ---- faults: consumer crashes and broker outages ----

    /// A consumer instance crashed or went down.
    pub(in crate::model) fn consumer_down(&mut self, c: ConsumerId, instance: u32, cx: &mut Ctx) {
        let inst = &mut self.consumers[c.index()].instances[instance as usize];
        if !inst.up {
            return;
        }
        inst.up = false;
        match cx.spec.consumers[c.index()].subscription {
            Subscription::Queue(q) => {
                if cx.spec.queues[q.index()].requeue_on_crash {
                    self.return_all(c, instance, cx);
                    self.try_deliver(q, cx);
                }
            }
            Subscription::Topic(_) => {
                // Its in-flight messages die with it; the group notices after the
                // session timeout.
                for p in 0..self.consumers[c.index()].parts.len() {
                    let gp = &mut self.consumers[c.index()].parts[p];
                    if gp.owner == Some(instance)
                        && let Some(d) = gp.in_flight.take()
                    {
                        self.deliveries.remove(d);
                        gp.position = gp.processed;
                    }
                }
                let timeout = cx.spec.consumers[c.index()].session_timeout;
                self.periodic += 1;
                cx.sched.after(
                    timeout,
                    Event::SessionTimeout {
                        consumer: c,
                        instance,
                    },
                );
            }
        }
    }

    pub(in crate::model) fn consumer_up(&mut self, c: ConsumerId, instance: u32, cx: &mut Ctx) {
        let inst = &mut self.consumers[c.index()].instances[instance as usize];
        if inst.up {
            return;
        }
        inst.up = true;
        match cx.spec.consumers[c.index()].subscription {
            Subscription::Queue(q) => self.try_deliver(q, cx),
            Subscription::Topic(_) => {
                // A restarted process starts over: it rejoins the group (a rebalance).
                let inst = &mut self.consumers[c.index()].instances[instance as usize];
                inst.member = true;
                inst.since_commit = 0;
                self.rebalance(c, cx);
            }
        }
    }

    pub(in crate::model) fn on_session_timeout(
        &mut self,
        c: ConsumerId,
        instance: u32,
        cx: &mut Ctx,
    ) {
        let inst = &mut self.consumers[c.index()].instances[instance as usize];
        if inst.up || !inst.member {
            return; // back already, or already out
        }
        inst.member = false;
        self.rebalance(c, cx);
    }

    pub(in crate::model) fn broker_down(&mut self, b: BrokerId, cx: &mut Ctx) -> u64 {
        self.down[b.index()] = true;
        // Connections drop: every unacked delivery of its queues returns.
        let spec = cx.spec;
        self.return_where(|_, q| spec.queues[q.index()].broker == b, cx)
    }

    pub(in crate::model) fn broker_up(&mut self, b: BrokerId, cx: &mut Ctx) {
        self.down[b.index()] = false;
        for q in 0..cx.spec.queues.len() {
            if cx.spec.queues[q].broker == b {
                self.try_deliver(QueueId(q as u32), cx);
            }
        }
        for c in 0..cx.spec.consumers.len() {
            if let Subscription::Topic(t) = cx.spec.consumers[c].subscription
                && cx.spec.topics[t.index()].broker == b
            {
                for p in 0..cx.spec.topics[t.index()].partitions {
                    self.try_fetch(ConsumerId(c as u32), p, cx);
                }
            }
        }
    }
}
