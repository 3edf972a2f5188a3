//! Queues: enqueue (deduplication, max length), delivery to the consumer instances under
//! their prefetch, settlement (ack, nack, reject, delayed retry), ack timeouts, take-backs
//! and dead-lettering.

use super::{Delivery, Enqueued, Message, Reason, Source, violates_order};
use crate::engine::{Scheduler, SimDuration, SimTime};
use crate::model::retention::prune;
use crate::model::spec::*;
use crate::model::world::{DeliveryId, Event, MessageId, NO_DEADLINE, Settlement, World};
use std::rc::Rc;

impl World {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn enqueue(
        &mut self,
        q: QueueId,
        msg: u64,
        op: u64,
        key: u32,
        published_at: SimTime,
        now: SimTime,
        sched: &mut Scheduler<Event>,
    ) -> Enqueued {
        let all = Rc::clone(&self.spec);
        let spec = &all.queues[q.index()];
        let qs = &mut self.asy.queues[q.index()];
        if let Some(window) = spec.dedup_window {
            prune(&mut qs.dedup_order, &mut qs.dedup, now, |&t| t);
            if qs.dedup.contains_key(&op) {
                self.metrics.consistency.flows[q.index()].deduplicated += 1;
                return Enqueued::Duplicate;
            }
            let until = now.checked_add(window).unwrap_or(SimTime::MAX);
            qs.dedup.insert(op, until);
            qs.dedup_order.push_back((until, op));
        }
        if let Some(max) = spec.max_length
            && qs.ready.len() as u64 >= u64::from(max)
        {
            match spec.overflow {
                Overflow::RejectPublish => return Enqueued::Refused,
                Overflow::DropHead => {
                    if let Some(head) = qs.ready.pop_front() {
                        self.dead_letter(head, Reason::Maxlen, now, sched);
                    }
                }
            }
        }
        let expires_at = spec
            .ttl
            .and_then(|t| published_at.checked_add(t))
            .unwrap_or(NO_DEADLINE);
        let m = self.asy.messages.insert(Message {
            msg,
            op,
            key,
            queue: q,
            published_at,
            expires_at,
            deliveries: 0,
            returns: 0,
        });
        let qs = &mut self.asy.queues[q.index()];
        qs.ready.push_back(m);
        let depth = qs.ready.len() as u64 + u64::from(qs.unacked) + u64::from(qs.delayed);
        let f = &mut self.metrics.consistency.flows[q.index()];
        f.enqueued += 1;
        f.max_depth = f.max_depth.max(depth);
        Enqueued::Yes
    }

    /// Removes a message from its queue for good: to the dead-letter queue if there
    /// is one, else counted as expired or dropped.
    pub(super) fn dead_letter(
        &mut self,
        m: MessageId,
        reason: Reason,
        now: SimTime,
        sched: &mut Scheduler<Event>,
    ) {
        let msg = self.asy.messages.remove(m).expect("a live message");
        let spec = &self.spec.queues[msg.queue.index()];
        let dlq = spec.dead_letter;
        let f = &mut self.metrics.consistency.flows[msg.queue.index()];
        match dlq {
            Some(_) => match reason {
                Reason::Rejected => f.dead_lettered.rejected += 1,
                Reason::Expired => f.dead_lettered.expired += 1,
                Reason::Maxlen => f.dead_lettered.maxlen += 1,
                Reason::DeliveryLimit => f.dead_lettered.delivery_limit += 1,
            },
            None => match reason {
                Reason::Expired => f.expired += 1,
                _ => f.dropped += 1,
            },
        }
        self.copy_settled(msg.msg, true, now);
        if let Some(d) = dlq {
            self.metrics.consistency.flows[d.index()].published += 1;
            match self.enqueue(d, msg.msg, msg.op, msg.key, msg.published_at, now, sched) {
                Enqueued::Yes | Enqueued::Duplicate => {}
                Enqueued::Refused => self.metrics.consistency.flows[d.index()].dropped += 1,
            }
            self.immediate.push_back(Event::DeliverQueue(d));
        }
    }

    // ---- queues: delivering and settling ----

    /// The next consumer instance of queue `q` with room for one more delivery.
    pub(super) fn pick_instance(&mut self, q: QueueId) -> Option<(ConsumerId, u32)> {
        let spec = &self.spec.queues[q.index()];
        let total: u32 = spec
            .consumers
            .iter()
            .map(|c| self.spec.consumers[c.index()].instances)
            .sum();
        let start = self.asy.queues[q.index()].next_instance;
        for k in 0..total {
            let mut idx = (start + k) % total;
            for &c in &spec.consumers {
                let cs = &self.spec.consumers[c.index()];
                if idx < cs.instances {
                    let inst = self.asy.consumers[c.index()].instances[idx as usize];
                    if inst.up && (cs.prefetch == 0 || inst.unacked < cs.prefetch) {
                        self.asy.queues[q.index()].next_instance = (start + k + 1) % total;
                        return Some((c, idx));
                    }
                    break;
                }
                idx -= cs.instances;
            }
        }
        None
    }

    pub(in crate::model) fn try_deliver(&mut self, q: QueueId, sched: &mut Scheduler<Event>) {
        let now = sched.now();
        let b = self.spec.queues[q.index()].broker;
        if self.asy.down[b.index()] {
            return;
        }
        let fifo = self.spec.queues[q.index()].fifo;
        loop {
            // Expired messages leave from the head, as RabbitMQ does.
            while let Some(&head) = self.asy.queues[q.index()].ready.front() {
                if self.asy.messages[head].expires_at > now {
                    break;
                }
                self.asy.queues[q.index()].ready.pop_front();
                self.dead_letter(head, Reason::Expired, now, sched);
            }
            if self.asy.queues[q.index()].ready.is_empty()
                || self.spec.queues[q.index()].consumers.is_empty()
            {
                return;
            }
            let qs = &self.asy.queues[q.index()];
            let index = if fifo {
                let messages = &self.asy.messages;
                match qs
                    .ready
                    .iter()
                    .position(|&m| !qs.busy_groups.contains(&messages[m].key))
                {
                    Some(i) => i,
                    None => return,
                }
            } else {
                0
            };
            let Some((c, instance)) = self.pick_instance(q) else {
                return;
            };
            let qs = &mut self.asy.queues[q.index()];
            let m = qs.ready.remove(index).expect("index in range");
            qs.unacked += 1;
            let message = &mut self.asy.messages[m];
            message.deliveries += 1;
            if fifo {
                qs.busy_groups.insert(message.key);
            }
            let d = self.asy.deliveries.insert(Delivery {
                consumer: c,
                instance,
                source: Source::Queue(m),
                msg: message.msg,
                op: message.op,
                key: message.key,
                number: message.deliveries,
                handler: None,
            });
            let redelivered = message.deliveries > 1;
            let inst = &mut self.asy.consumers[c.index()].instances[instance as usize];
            inst.unacked += 1;
            let prefetch = self.spec.consumers[c.index()].prefetch;
            assert!(
                prefetch == 0 || inst.unacked <= prefetch,
                "prefetch exceeded: {} unacked, prefetch {prefetch}",
                inst.unacked
            );
            let f = &mut self.metrics.consistency.flows[q.index()];
            f.delivered += 1;
            f.redelivered += u64::from(redelivered);
            self.metrics.consistency.consumers[c.index()].deliveries += 1;
            if let Some(t) = self.spec.queues[q.index()].ack_timeout {
                self.asy.periodic += 1;
                sched.after(t, Event::AckTimeout(d));
            }
            self.broker_hop(b, Event::Deliver(d), sched);
        }
    }

    /// Takes a delivery back from its consumer: the message returns to the head of its
    /// queue, or is dead-lettered once it reached the delivery limit.
    pub(super) fn take_back(
        &mut self,
        d: DeliveryId,
        counts: bool,
        now: SimTime,
        sched: &mut Scheduler<Event>,
    ) {
        let del = self.asy.deliveries.remove(d).expect("a live delivery");
        let Source::Queue(m) = del.source else {
            unreachable!("only queue deliveries are taken back")
        };
        let q = self.release_delivery(&del, m);
        // The slot is free again, so the copy waiting in the consumer goes with it: else
        // the broker refills the window while the old copies still wait, and the
        // consumer's backlog is no longer bounded by its prefetch.
        if let Some(i) = del.handler
            && self.discard_waiting(i, now)
        {
            self.asy.stale_queue.remove(&d);
        }
        let spec = &self.spec.queues[q.index()];
        let message = &mut self.asy.messages[m];
        message.returns += u32::from(counts);
        // RabbitMQ and SQS dead-letter once the count EXCEEDS the limit.
        if spec.delivery_limit.is_some_and(|l| message.returns > l) {
            self.dead_letter(m, Reason::DeliveryLimit, now, sched);
        } else {
            self.asy.queues[q.index()].ready.push_front(m);
        }
    }

    /// Undoes a queue delivery's bookkeeping (unacked counts, FIFO group).
    pub(super) fn release_delivery(&mut self, del: &Delivery, m: MessageId) -> QueueId {
        let q = self.asy.messages[m].queue;
        let qs = &mut self.asy.queues[q.index()];
        qs.unacked -= 1;
        if self.spec.queues[q.index()].fifo {
            qs.busy_groups.remove(&del.key);
        }
        let inst = &mut self.asy.consumers[del.consumer.index()].instances[del.instance as usize];
        inst.unacked -= 1;
        q
    }

    /// An ack, nack or reject reaches the broker.
    pub(in crate::model) fn on_settle(
        &mut self,
        d: DeliveryId,
        how: Settlement,
        sched: &mut Scheduler<Event>,
    ) {
        let now = sched.now();
        let Some(del) = self.asy.deliveries.get(d) else {
            // The broker took it back already (timeout, lost connection): the message
            // was or will be handled again.
            if let Some(q) = self.asy.stale_queue.remove(&d) {
                self.metrics.consistency.flows[q.index()].stale_acks +=
                    u64::from(how == Settlement::Ack);
            }
            return;
        };
        let Source::Queue(m) = del.source else {
            unreachable!("logs are not settled per message")
        };
        let q = self.asy.messages[m].queue;
        let c = del.consumer;
        match how {
            Settlement::Ack => {
                let del = self.asy.deliveries.remove(d).expect("live");
                self.release_delivery(&del, m);
                let message = self.asy.messages.remove(m).expect("live");
                let f = &mut self.metrics.consistency.flows[q.index()];
                f.acked += 1;
                if self.asy.keyed_messages
                    && violates_order(
                        &mut self.asy.queues[q.index()].last_by_key,
                        message.key,
                        message.msg,
                    )
                {
                    self.metrics.consistency.flows[q.index()].ordering_violations += 1;
                }
                self.copy_settled(message.msg, false, now);
            }
            Settlement::Nack => {
                let counts = self.spec.queues[q.index()].nack_counts;
                self.take_back(d, counts, now, sched);
            }
            Settlement::Reject => {
                let del = self.asy.deliveries.remove(d).expect("live");
                self.release_delivery(&del, m);
                self.dead_letter(m, Reason::Rejected, now, sched);
            }
            Settlement::Retry => {
                let OnFailure::Retry { attempts, backoff } =
                    self.spec.consumers[c.index()].on_failure
                else {
                    unreachable!("retry settlements come from retrying consumers")
                };
                let del = self.asy.deliveries.remove(d).expect("live");
                self.release_delivery(&del, m);
                let message = &mut self.asy.messages[m];
                message.returns += 1;
                if message.deliveries >= attempts {
                    self.dead_letter(m, Reason::DeliveryLimit, now, sched);
                } else {
                    let n = message.deliveries;
                    let wait =
                        backoff.delay(n, SimDuration::ZERO, &mut self.asy.consumer_rngs[c.index()]);
                    self.asy.queues[q.index()].delayed += 1;
                    sched.after(wait, Event::Requeue(m));
                }
            }
        }
        self.try_deliver(q, sched);
    }

    pub(in crate::model) fn on_requeue(&mut self, m: MessageId, sched: &mut Scheduler<Event>) {
        let q = self.asy.messages[m].queue;
        let qs = &mut self.asy.queues[q.index()];
        qs.delayed -= 1;
        qs.ready.push_back(m);
        self.try_deliver(q, sched);
    }

    pub(in crate::model) fn on_ack_timeout(&mut self, d: DeliveryId, sched: &mut Scheduler<Event>) {
        let Some(del) = self.asy.deliveries.get(d) else {
            return;
        };
        let Source::Queue(m) = del.source else {
            return;
        };
        let q = self.asy.messages[m].queue;
        let now = sched.now();
        match self.spec.queues[q.index()].on_ack_timeout {
            AckTimeout::Reappear => {
                self.note_stale(d, q);
                self.take_back(d, true, now, sched);
            }
            AckTimeout::CloseChannel => {
                let (c, i) = (del.consumer, del.instance);
                self.return_all(c, i, now, sched);
            }
        }
        self.try_deliver(q, sched);
    }

    pub(super) fn note_stale(&mut self, d: DeliveryId, q: QueueId) {
        self.asy.stale_queue.insert(d, q);
    }

    /// Every unacked queue delivery `pick` selects returns to its queue (a channel or
    /// connection closed). Returns how many.
    pub(super) fn return_where(
        &mut self,
        pick: impl Fn(&Delivery, QueueId) -> bool,
        now: SimTime,
        sched: &mut Scheduler<Event>,
    ) -> u64 {
        let ds: Vec<(DeliveryId, QueueId)> = self
            .asy
            .deliveries
            .ids()
            .filter_map(|d| {
                let del = &self.asy.deliveries[d];
                let Source::Queue(m) = del.source else {
                    return None;
                };
                let q = self.asy.messages[m].queue;
                pick(del, q).then_some((d, q))
            })
            .collect();
        for &(d, q) in &ds {
            self.note_stale(d, q);
            self.take_back(d, true, now, sched);
        }
        ds.len() as u64
    }

    /// Every unacked delivery of one consumer instance returns (its channel closed).
    pub(super) fn return_all(
        &mut self,
        c: ConsumerId,
        instance: u32,
        now: SimTime,
        sched: &mut Scheduler<Event>,
    ) {
        self.return_where(
            |del, _| del.consumer == c && del.instance == instance,
            now,
            sched,
        );
    }
}
