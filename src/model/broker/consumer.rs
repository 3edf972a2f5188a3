//! The broker's side of its consumers: whether a delivery that reaches its instance is
//! handled at all (the instance is up, the processed-messages store has not seen it),
//! the handler noted on the delivery, and the handler's end turned into a settlement.
//! The `World`'s consumer bridge (`world/bridge.rs`) runs the handler itself.

use super::{Async, Ctx};
use crate::engine::SimTime;
use crate::model::spec::*;
use crate::model::world::{DeliveryId, Event, InvocationId, Settlement};

/// A delivery its consumer instance is to handle.
#[derive(Clone, Copy, Debug)]
pub(in crate::model) struct Arrival {
    pub consumer: ConsumerId,
    pub instance: u32,
    pub msg: u64,
    pub op: u64,
    pub key: u32,
}

impl Async {
    // ---- consumers ----

    /// A delivery reaches its consumer instance: the handler is to run, unless the
    /// delivery is gone, the instance is down, or the processed-messages store already
    /// has the message (then it is settled as handled, and None).
    pub(in crate::model) fn arrive(&mut self, d: DeliveryId, cx: &mut Ctx) -> Option<Arrival> {
        let now = cx.now();
        let del = self.deliveries.get(d)?;
        let (c, instance) = (del.consumer, del.instance);
        if !self.consumers[c.index()].instances[instance as usize].up {
            return None; // arrives at a dead process: the broker finds out by its own rules
        }
        let arrival = Arrival {
            consumer: c,
            instance,
            msg: del.msg,
            op: del.op,
            key: del.key,
        };
        if let Some(dd) = cx.spec.consumers[c.index()].dedupe {
            let id = dd.id(del.msg, del.op);
            if self.consumers[c.index()].processed(id, now) {
                cx.metrics.consumers[c.index()].duplicates_skipped += 1;
                self.handled(d, true, cx);
                return None;
            }
        }
        Some(arrival)
    }

    /// The consumer's invocation `handler` took the delivery (a handler that ended
    /// within its admission may have settled it already).
    pub(in crate::model) fn note_handler(
        &mut self,
        d: DeliveryId,
        handler: InvocationId,
        cx: &mut Ctx,
    ) {
        let Some(del) = self.deliveries.get_mut(d) else {
            return;
        };
        del.handler = Some(handler);
        let all = cx.spec;
        let cspec = &all.consumers[del.consumer.index()];
        if let Some(limit) = cspec.max_poll_interval
            && matches!(cspec.subscription, Subscription::Topic(_))
        {
            self.periodic += 1;
            cx.watchdog(limit, Event::PollTimeout(d));
        }
    }

    /// A consumer's handler is over (or skipped, or refused by a fault): settle the
    /// delivery.
    pub(in crate::model) fn handled(&mut self, d: DeliveryId, ok: bool, cx: &mut Ctx) {
        let Some(del) = self.deliveries.get(d) else {
            // Taken back meanwhile (ack timeout, rebalance): the ack goes nowhere.
            if let Some(q) = self.stale_queue.remove(&d) {
                cx.metrics.flows[q.index()].stale_acks += u64::from(ok);
            }
            return;
        };
        let c = del.consumer;
        let cm = &mut cx.metrics.consumers[c.index()];
        if ok {
            cm.handled_ok += 1;
        } else {
            cm.handled_failed += 1;
        }
        let all = cx.spec;
        let spec = &all.consumers[c.index()];
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
                let b = cx.spec.queues[q.index()].broker;
                self.broker_hop(b, Event::Settle { delivery: d, how }, cx);
            }
            Subscription::Topic(_) => self.log_handled(d, ok, cx),
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
        let cs = &mut self.consumers[c.index()];
        if cs.processed(id, now) {
            return false;
        }
        let until = now.checked_add(dd.retention).unwrap_or(SimTime::MAX);
        cs.processed.insert(id, until);
        true
    }
}
