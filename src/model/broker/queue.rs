//! Queues: enqueue (deduplication, max length), delivery to the consumer instances under
//! their prefetch, settlement (ack, nack, reject, delayed retry), ack timeouts, take-backs
//! and dead-lettering.

use super::{Async, Command, Ctx, Delivery, Enqueued, Message, Reason, Source, violates_order};
use crate::engine::{SimDuration, SimTime};
use crate::model::spec::*;
use crate::model::world::{DeliveryId, Event, MessageId, NO_DEADLINE, Settlement};

impl Async {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn enqueue(
        &mut self,
        q: QueueId,
        msg: u64,
        op: u64,
        key: u32,
        published_at: SimTime,
        cx: &mut Ctx,
    ) -> Enqueued {
        let now = cx.now();
        let all = cx.spec;
        let spec = &all.queues[q.index()];
        let qs = &mut self.queues[q.index()];
        if let Some(window) = spec.dedup_window {
            qs.dedup.expire(now);
            if qs.dedup.contains(op) {
                cx.metrics.flows[q.index()].deduplicated += 1;
                return Enqueued::Duplicate;
            }
            let until = now.checked_add(window).unwrap_or(SimTime::MAX);
            qs.dedup.insert(op, until);
        }
        if let Some(max) = spec.max_length
            && qs.ready.len() as u64 >= u64::from(max)
        {
            match spec.overflow {
                Overflow::RejectPublish => return Enqueued::Refused,
                Overflow::DropHead => {
                    if let Some(head) = qs.ready.pop_front() {
                        self.dead_letter(head, Reason::Maxlen, cx);
                    }
                }
            }
        }
        let expires_at = spec
            .ttl
            .and_then(|t| published_at.checked_add(t))
            .unwrap_or(NO_DEADLINE);
        let m = self.messages.insert(Message {
            msg,
            op,
            key,
            queue: q,
            published_at,
            expires_at,
            deliveries: 0,
            returns: 0,
        });
        cx.trace_enqueued(q, msg);
        let qs = &mut self.queues[q.index()];
        qs.ready.push_back(m);
        let depth = qs.ready.len() as u64 + u64::from(qs.unacked) + u64::from(qs.delayed);
        let f = &mut cx.metrics.flows[q.index()];
        f.enqueued += 1;
        f.max_depth = f.max_depth.max(depth);
        Enqueued::Yes
    }

    /// Removes a message from its queue for good: to the dead-letter queue if there
    /// is one, else counted as expired or dropped.
    pub(super) fn dead_letter(&mut self, m: MessageId, reason: Reason, cx: &mut Ctx) {
        let now = cx.now();
        let msg = self.messages.remove(m).expect("a live message");
        let all = cx.spec;
        let spec = &all.queues[msg.queue.index()];
        let dlq = spec.dead_letter;
        let f = &mut cx.metrics.flows[msg.queue.index()];
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
        self.copy_settled(msg.msg, true, now, cx);
        if let Some(d) = dlq {
            cx.metrics.flows[d.index()].published += 1;
            match self.enqueue(d, msg.msg, msg.op, msg.key, msg.published_at, cx) {
                Enqueued::Yes | Enqueued::Duplicate => {}
                Enqueued::Refused => cx.metrics.flows[d.index()].dropped += 1,
            }
            cx.immediate.push_back(Event::DeliverQueue(d));
        }
        cx.trace_dead_lettered(msg.msg, msg.queue, reason);
    }

    // ---- queues: delivering and settling ----

    /// The next consumer instance of queue `q` with room for one more delivery.
    fn pick_instance(&mut self, q: QueueId, all: &Spec) -> Option<(ConsumerId, u32)> {
        let spec = &all.queues[q.index()];
        let total = self.queues[q.index()].instances;
        // Round robin from `next_instance`, counted across the consumers in order.
        let mut next = self.queues[q.index()].next_instance;
        for _ in 0..total {
            let at = next;
            next = if next + 1 == total { 0 } else { next + 1 };
            let mut idx = at;
            for &c in &spec.consumers {
                let cs = &all.consumers[c.index()];
                if idx < cs.instances {
                    let inst = self.consumers[c.index()].instances[idx as usize];
                    if inst.up && (cs.prefetch == 0 || inst.unacked < cs.prefetch) {
                        self.queues[q.index()].next_instance = next;
                        return Some((c, idx));
                    }
                    break;
                }
                idx -= cs.instances;
            }
        }
        None
    }

    /// Hands out what the queue's consumers have room for. Every change to a queue's
    /// ready messages ends here (or the broker is down, and its return comes here), so
    /// this is where the next expiry is armed.
    pub(in crate::model) fn try_deliver(&mut self, q: QueueId, cx: &mut Ctx) {
        let b = cx.spec.queues[q.index()].broker;
        if self.down[b.index()] {
            return;
        }
        self.deliver_ready(q, cx);
        self.arm_expiry(q, cx);
    }

    /// Expired messages leave from the head, as RabbitMQ does: on time, since the head's
    /// expiry is an event (`arm_expiry`); a message behind an unexpired head (back from
    /// a retry backoff, or behind a busy FIFO group) leaves when it reaches the head.
    fn expire_head(&mut self, q: QueueId, cx: &mut Ctx) {
        if cx.spec.queues[q.index()].ttl.is_none() {
            return; // its messages never expire (`NO_DEADLINE`)
        }
        let now = cx.now();
        while let Some(&head) = self.queues[q.index()].ready.front() {
            if self.messages[head].expires_at > now {
                break;
            }
            self.queues[q.index()].ready.pop_front();
            self.dead_letter(head, Reason::Expired, cx);
        }
    }

    /// Schedules an `Expire` at the head's expiry, unless one at or before it is pending.
    fn arm_expiry(&mut self, q: QueueId, cx: &mut Ctx) {
        if cx.spec.queues[q.index()].ttl.is_none() {
            return;
        }
        let qs = &self.queues[q.index()];
        let Some(&head) = qs.ready.front() else {
            return;
        };
        let at = self.messages[head].expires_at.max(cx.now());
        if at == NO_DEADLINE || qs.expiry_at.is_some_and(|t| t <= at) {
            return;
        }
        self.queues[q.index()].expiry_at = Some(at);
        self.periodic += 1;
        cx.sched.at(at, Event::Expire(q));
    }

    /// A queue's head may have reached its TTL.
    pub(in crate::model) fn on_expire(&mut self, q: QueueId, cx: &mut Ctx) {
        let qs = &mut self.queues[q.index()];
        if qs.expiry_at == Some(cx.now()) {
            qs.expiry_at = None;
        }
        if self.down[cx.spec.queues[q.index()].broker.index()] {
            return; // nothing expires in a stopped broker; its return re-arms
        }
        self.expire_head(q, cx);
        self.arm_expiry(q, cx);
    }

    /// Whether an `Expire` finds something to do (else it is no activity).
    pub(super) fn head_expired(&self, q: QueueId, now: SimTime, spec: &Spec) -> bool {
        !self.down[spec.queues[q.index()].broker.index()]
            && self.queues[q.index()]
                .ready
                .front()
                .is_some_and(|&m| self.messages[m].expires_at <= now)
    }

    /// FIFO: the first ready message whose group has none in flight.
    fn first_free_group(&self, q: QueueId) -> Option<usize> {
        let qs = &self.queues[q.index()];
        qs.ready
            .iter()
            .position(|&m| !qs.busy_groups.contains(&self.messages[m].key))
    }

    fn deliver_ready(&mut self, q: QueueId, cx: &mut Ctx) {
        let spec = &cx.spec.queues[q.index()];
        let (b, fifo, ttl) = (spec.broker, spec.fifo, spec.ttl.is_some());
        let unconsumed = spec.consumers.is_empty();
        loop {
            if ttl {
                self.expire_head(q, cx);
            }
            if unconsumed || self.queues[q.index()].ready.is_empty() {
                return;
            }
            let index = if fifo {
                self.first_free_group(q)
            } else {
                Some(0)
            };
            let Some(index) = index else {
                return;
            };
            let Some((c, instance)) = self.pick_instance(q, cx.spec) else {
                return;
            };
            let qs = &mut self.queues[q.index()];
            let m = if index == 0 {
                qs.ready.pop_front()
            } else {
                qs.ready.remove(index)
            }
            .expect("index in range");
            qs.unacked += 1;
            let message = &mut self.messages[m];
            message.deliveries += 1;
            if fifo {
                qs.busy_groups.insert(message.key);
            }
            let d = self.deliveries.insert(Delivery {
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
            cx.trace_delivered(d, c, instance, message.msg, message.deliveries, redelivered);
            let inst = &mut self.consumers[c.index()].instances[instance as usize];
            inst.unacked += 1;
            let prefetch = cx.spec.consumers[c.index()].prefetch;
            assert!(
                prefetch == 0 || inst.unacked <= prefetch,
                "prefetch exceeded: {} unacked, prefetch {prefetch}",
                inst.unacked
            );
            let f = &mut cx.metrics.flows[q.index()];
            f.delivered += 1;
            f.redelivered += u64::from(redelivered);
            cx.metrics.consumers[c.index()].deliveries += 1;
            if let Some(t) = cx.spec.queues[q.index()].ack_timeout {
                self.periodic += 1;
                cx.watchdog(t, Event::AckTimeout(d));
            }
            self.broker_hop(b, Event::Deliver(d), cx);
        }
    }

    /// Takes a delivery back from its consumer: the message returns to the head of its
    /// queue, or is dead-lettered once it reached the delivery limit.
    pub(super) fn take_back(&mut self, d: DeliveryId, counts: bool, cx: &mut Ctx) {
        cx.trace_taken_back(d);
        let del = self.deliveries.remove(d).expect("a live delivery");
        let Source::Queue(m) = del.source else {
            unreachable!("only queue deliveries are taken back")
        };
        let q = self.release_delivery(&del, m, cx.spec);
        // The slot is free again, so the copy waiting in the consumer goes with it: else
        // the broker refills the window while the old copies still wait, and the
        // consumer's backlog is no longer bounded by its prefetch.
        if let Some(handler) = del.handler {
            cx.commands.push(Command::Discard {
                delivery: d,
                handler,
            });
        }
        let all = cx.spec;
        let spec = &all.queues[q.index()];
        let message = &mut self.messages[m];
        message.returns += u32::from(counts);
        // RabbitMQ and SQS dead-letter once the count EXCEEDS the limit.
        if spec.delivery_limit.is_some_and(|l| message.returns > l) {
            self.dead_letter(m, Reason::DeliveryLimit, cx);
        } else {
            self.queues[q.index()].ready.push_front(m);
        }
    }

    /// Undoes a queue delivery's bookkeeping (unacked counts, FIFO group).
    fn release_delivery(&mut self, del: &Delivery, m: MessageId, spec: &Spec) -> QueueId {
        let q = self.messages[m].queue;
        let qs = &mut self.queues[q.index()];
        qs.unacked -= 1;
        if spec.queues[q.index()].fifo {
            qs.busy_groups.remove(&del.key);
        }
        let inst = &mut self.consumers[del.consumer.index()].instances[del.instance as usize];
        inst.unacked -= 1;
        q
    }

    /// An ack, nack or reject reaches the broker.
    pub(in crate::model) fn on_settle(&mut self, d: DeliveryId, how: Settlement, cx: &mut Ctx) {
        let now = cx.now();
        cx.trace_settled(d, how);
        let Some(del) = self.deliveries.get(d) else {
            // The broker took it back already (timeout, lost connection): the message
            // was or will be handled again.
            if let Some(q) = self.stale_queue.remove(&d) {
                cx.metrics.flows[q.index()].stale_acks += u64::from(how == Settlement::Ack);
            }
            return;
        };
        let Source::Queue(m) = del.source else {
            unreachable!("logs are not settled per message")
        };
        let q = self.messages[m].queue;
        let c = del.consumer;
        match how {
            Settlement::Ack => {
                let del = self.deliveries.remove(d).expect("live");
                self.release_delivery(&del, m, cx.spec);
                let message = self.messages.remove(m).expect("live");
                let f = &mut cx.metrics.flows[q.index()];
                f.acked += 1;
                if self.keyed_messages
                    && violates_order(
                        &mut self.queues[q.index()].last_by_key,
                        message.key,
                        message.msg,
                    )
                {
                    cx.metrics.flows[q.index()].ordering_violations += 1;
                }
                self.copy_settled(message.msg, false, now, cx);
            }
            Settlement::Nack => {
                let counts = cx.spec.queues[q.index()].nack_counts;
                self.take_back(d, counts, cx);
            }
            Settlement::Reject => {
                let del = self.deliveries.remove(d).expect("live");
                self.release_delivery(&del, m, cx.spec);
                self.dead_letter(m, Reason::Rejected, cx);
            }
            Settlement::Retry => {
                let OnFailure::Retry { attempts, backoff } =
                    cx.spec.consumers[c.index()].on_failure
                else {
                    unreachable!("retry settlements come from retrying consumers")
                };
                let del = self.deliveries.remove(d).expect("live");
                self.release_delivery(&del, m, cx.spec);
                let message = &mut self.messages[m];
                message.returns += 1;
                if message.deliveries >= attempts {
                    self.dead_letter(m, Reason::DeliveryLimit, cx);
                } else {
                    let n = message.deliveries;
                    let wait =
                        backoff.delay(n, SimDuration::ZERO, &mut self.consumer_rngs[c.index()]);
                    self.queues[q.index()].delayed += 1;
                    cx.sched.after(wait, Event::Requeue(m));
                }
            }
        }
        self.try_deliver(q, cx);
    }

    pub(in crate::model) fn on_requeue(&mut self, m: MessageId, cx: &mut Ctx) {
        let q = self.messages[m].queue;
        cx.trace_requeued(self.messages[m].msg, q);
        let qs = &mut self.queues[q.index()];
        qs.delayed -= 1;
        qs.ready.push_back(m);
        self.try_deliver(q, cx);
    }

    pub(in crate::model) fn on_ack_timeout(&mut self, d: DeliveryId, cx: &mut Ctx) {
        let Some(del) = self.deliveries.get(d) else {
            return;
        };
        let Source::Queue(m) = del.source else {
            return;
        };
        let q = self.messages[m].queue;
        cx.trace_ack_timeout(d);
        match cx.spec.queues[q.index()].on_ack_timeout {
            AckTimeout::Reappear => {
                self.note_stale(d, q);
                self.take_back(d, true, cx);
            }
            AckTimeout::CloseChannel => {
                let (c, i) = (del.consumer, del.instance);
                self.return_all(c, i, cx);
            }
        }
        self.try_deliver(q, cx);
    }

    pub(super) fn note_stale(&mut self, d: DeliveryId, q: QueueId) {
        self.stale_queue.insert(d, q);
    }

    /// Every unacked queue delivery `pick` selects returns to its queue (a channel or
    /// connection closed). Returns how many.
    pub(super) fn return_where(
        &mut self,
        pick: impl Fn(&Delivery, QueueId) -> bool,
        cx: &mut Ctx,
    ) -> u64 {
        let ds: Vec<(DeliveryId, QueueId)> = self
            .deliveries
            .ids()
            .filter_map(|d| {
                let del = &self.deliveries[d];
                let Source::Queue(m) = del.source else {
                    return None;
                };
                let q = self.messages[m].queue;
                pick(del, q).then_some((d, q))
            })
            .collect();
        for &(d, q) in &ds {
            self.note_stale(d, q);
            self.take_back(d, true, cx);
        }
        ds.len() as u64
    }

    /// Every unacked delivery of one consumer instance returns (its channel closed).
    pub(super) fn return_all(&mut self, c: ConsumerId, instance: u32, cx: &mut Ctx) {
        self.return_where(|del, _| del.consumer == c && del.instance == instance, cx);
    }
}
