//! Publishing: a `publish` step sends a message over a broker hop; with confirms the
//! fiber waits and a failed try is published again under the same id; the broker routes
//! what arrives to queues and topic partitions; the outbox relay publishes committed rows.

use super::{Async, Command, Ctx, Enqueued, LogEntry, OutboxRow, Pending, Publisher, Transit};
use crate::engine::SimTime;
use crate::metrics::consistency::*;
use crate::model::routing;
use crate::model::spec::*;
use crate::model::status::Status;
use crate::model::world::{Event, FiberId, OutboxRowId, PendingId, TransitId};
use rand::RngExt;

/// What became of a `publish` step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::model) enum Published {
    /// On its way, nothing to wait for.
    Sent,
    /// On its way; the fiber waits for this confirm.
    Confirming(PendingId),
    /// An outbox row with this message id, written with the handler's transaction.
    Outbox(u64),
}

/// A copy a queue refused: a failed publish the publisher hears of (with confirms),
/// else a silent drop.
#[cold]
fn count_refused(f: &mut FlowMetrics, confirms: bool) {
    if confirms {
        f.publish_failed += 1;
    } else {
        f.dropped += 1;
    }
}

/// Not yet in `Async::key_partition`.
const NO_PARTITION: u32 = u32::MAX;
/// The keys whose partition is remembered: at most 256 KiB per topic (a workload's key
/// space is usually far smaller; the keys beyond are hashed at every publish).
const CACHED_KEYS: u32 = 1 << 16;

/// `n` in decimal, as `n.to_string()` spells it, written at the end of `buf`: a
/// record's key as the producer serializes it, without an allocation per publish.
fn decimal(mut n: u32, buf: &mut [u8; 10]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

impl Async {
    // ---- publishing ----

    /// A `publish` step of fiber `fiber`, for operation `op` with key `key`.
    pub(in crate::model) fn publish_step(
        &mut self,
        fiber: FiberId,
        p: PublishId,
        op: u64,
        key: u32,
        cx: &mut Ctx,
    ) -> Published {
        let all = cx.spec;
        let site = &all.publishes[p.index()];
        let msg = self.next_msg;
        self.next_msg += 1;
        cx.trace_publish(fiber, p, msg);
        if site.outbox {
            // Published only if the handler's transaction commits.
            return Published::Outbox(msg);
        }
        if site.confirms {
            let pending = self.pending.insert(Pending {
                publisher: Publisher::Step(fiber),
                publish: p,
                msg,
                op,
                key,
                tries: 1,
            });
            self.send_publish(p, msg, op, key, Some((pending, 1)), cx);
            Published::Confirming(pending)
        } else {
            self.send_publish(p, msg, op, key, None, cx);
            Published::Sent
        }
    }

    pub(super) fn send_publish(
        &mut self,
        p: PublishId,
        msg: u64,
        op: u64,
        key: u32,
        pending: Option<(PendingId, u32)>,
        cx: &mut Ctx,
    ) {
        let all = cx.spec;
        let site = &all.publishes[p.index()];
        let b = site.broker;
        let loss = cx.spec.brokers[b.index()].loss;
        if let Some((pid, try_number)) = pending {
            let timeout = site.confirm_timeout;
            self.periodic += 1;
            cx.watchdog(
                timeout,
                Event::ConfirmTimeout {
                    pending: pid,
                    try_number,
                },
            );
        }
        if loss > 0.0 && self.rngs[b.index()].random::<f64>() < loss {
            if pending.is_none() {
                self.count_unaccepted(p, false, cx);
            }
            return;
        }
        let t = self.transit.insert(Transit {
            publish: p,
            msg,
            op,
            key,
            pending,
        });
        cx.trace_publish_sent(msg);
        self.broker_hop(b, Event::PublishArrive(t), cx);
    }

    /// A publish the broker never took, counted against every copy it would have made:
    /// `lost` when nobody was told (no confirms), else `publish_failed`.
    pub(super) fn count_unaccepted(&mut self, p: PublishId, told: bool, cx: &mut Ctx) {
        let c = &mut *cx.metrics;
        let bump = |f: &mut FlowMetrics| {
            f.published += 1;
            if told {
                f.publish_failed += 1;
            } else {
                f.lost += 1;
            }
        };
        match &cx.spec.publishes[p.index()].target {
            PublishTarget::Queues { exchange, queues } => {
                if let Some(e) = exchange {
                    c.exchanges[e.index()].published += 1;
                }
                for q in queues {
                    bump(&mut c.flows[q.index()]);
                }
            }
            PublishTarget::Topic(t) => {
                let tm = &mut c.topics[t.index()];
                tm.published += 1;
                if told {
                    tm.publish_failed += 1;
                } else {
                    tm.lost += 1;
                }
                for g in &cx.spec.topics[t.index()].groups {
                    bump(&mut c.flows[self.group_flow[g.index()]]);
                }
            }
        }
    }

    pub(in crate::model) fn on_publish_arrive(&mut self, t: TransitId, cx: &mut Ctx) {
        let tr = self.transit.remove(t).expect("a publish arrives once");
        let all = cx.spec;
        let site = &all.publishes[tr.publish.index()];
        let b = site.broker;
        let accepted = if self.down[b.index()] {
            self.count_unaccepted(tr.publish, tr.pending.is_some(), cx);
            cx.commands.push(Command::Refused { broker: b });
            false
        } else {
            self.route(tr.publish, tr.msg, tr.op, tr.key, tr.pending.is_some(), cx)
        };
        if let Some((pending, try_number)) = tr.pending {
            self.broker_hop(
                b,
                Event::Confirm {
                    pending,
                    try_number,
                    ok: accepted,
                },
                cx,
            );
        }
        cx.trace_publish_arrived(tr.msg);
    }

    /// The broker takes a publish: copies go to every bound queue, or to the topic's
    /// partition. Returns whether it was accepted (a confirm's ack).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn route(
        &mut self,
        p: PublishId,
        msg: u64,
        op: u64,
        key: u32,
        confirms: bool,
        cx: &mut Ctx,
    ) -> bool {
        let now = cx.now();
        let spec = cx.spec;
        match &spec.publishes[p.index()].target {
            PublishTarget::Queues { exchange, queues } => {
                if let Some(e) = exchange {
                    let em = &mut cx.metrics.exchanges[e.index()];
                    em.published += 1;
                    em.unroutable += u64::from(queues.is_empty());
                }
                let mut accepted = true;
                let mut copies = 0;
                for &q in queues {
                    cx.metrics.flows[q.index()].published += 1;
                    match self.enqueue(q, msg, op, key, now, cx) {
                        Enqueued::Yes => copies += 1,
                        Enqueued::Duplicate => {}
                        Enqueued::Refused => {
                            count_refused(&mut cx.metrics.flows[q.index()], confirms);
                            accepted = false;
                        }
                    }
                }
                self.expect_copies(msg, now, copies);
                for &q in queues {
                    self.try_deliver(q, cx);
                }
                accepted
            }
            PublishTarget::Topic(t) => {
                let topic = &spec.topics[t.index()];
                let part = match spec.publishes[p.index()].partition {
                    Some(part) => part,
                    None => self.partition_of(*t, key, topic.partitions),
                };
                let log = &mut self.partitions[t.index()][part as usize];
                log.log.push_back(LogEntry {
                    msg,
                    op,
                    key,
                    published_at: now,
                });
                cx.trace_appended(*t, part, log.end() - 1, msg);
                let tm = &mut cx.metrics.topics[t.index()];
                tm.published += 1;
                tm.appended += 1;
                tm.appended_per_partition[part as usize] += 1;
                for g in &topic.groups {
                    let f = self.group_flow[g.index()];
                    cx.metrics.flows[f].published += 1;
                }
                self.expect_copies(msg, now, topic.groups.len() as u32);
                self.apply_retention(*t, part, now, cx);
                for &g in &topic.groups {
                    self.try_fetch(g, part, cx);
                }
                true
            }
        }
    }

    /// The partition of a record with workload key `key`: Kafka's default partitioner
    /// (murmur2 of the key as the producer spells it), remembered for the keys below
    /// `CACHED_KEYS`.
    #[inline]
    fn partition_of(&mut self, t: TopicId, key: u32, partitions: u32) -> u32 {
        let hash = |key| routing::kafka_partition(decimal(key, &mut [0; 10]), partitions);
        if key >= CACHED_KEYS {
            return hash(key);
        }
        let known = &mut self.key_partition[t.index()];
        let k = key as usize;
        if known.len() <= k {
            known.resize(k + 1, NO_PARTITION);
        }
        if known[k] == NO_PARTITION {
            known[k] = hash(key);
        }
        known[k]
    }

    pub(super) fn expect_copies(&mut self, msg: u64, now: SimTime, copies: u32) {
        if copies == 0 {
            return;
        }
        self.propagation.expect(msg, now, copies);
    }

    /// A copy of `msg` is settled: handled by its subscriber, or not (`failed`).
    pub(super) fn copy_settled(&mut self, msg: u64, failed: bool, now: SimTime, cx: &mut Ctx) {
        let Some(done) = self.propagation.settle(msg, failed) else {
            return;
        };
        if done.failed {
            cx.metrics.not_propagated += 1;
        } else {
            cx.metrics.propagation.record(now.since(done.at));
        }
    }

    // ---- confirms and the outbox relay ----

    pub(in crate::model) fn on_confirm(
        &mut self,
        pending: PendingId,
        try_number: u32,
        ok: bool,
        cx: &mut Ctx,
    ) {
        let Some(p) = self.pending.get(pending) else {
            return;
        };
        if p.tries != try_number {
            return; // an answer to an earlier try
        }
        if ok {
            let p = self.pending.remove(pending).expect("live");
            match p.publisher {
                Publisher::Step(fiber) => cx.commands.push(Command::Resume { fiber }),
                Publisher::Relay(row) => {
                    self.outbox.remove(row);
                    let relay = &mut self.relays[p.publish.index()];
                    relay.rows.retain(|&r| r != row);
                }
            }
            return;
        }
        let all = cx.spec;
        let site = &all.publishes[p.publish.index()];
        match p.publisher {
            Publisher::Relay(row) => {
                // The relay tries again at its next poll, forever: at least once.
                self.pending.remove(pending);
                if let Some(r) = self.outbox.get_mut(row) {
                    r.sent = false;
                }
            }
            Publisher::Step(f) => {
                if p.tries <= site.retries {
                    let wait = site.retry_backoff;
                    self.pending[pending].tries += 1;
                    cx.sched.after(wait, Event::Republish(pending));
                } else {
                    self.pending.remove(pending);
                    cx.commands.push(Command::Fail {
                        fiber: f,
                        status: Status::Unavailable,
                    });
                }
            }
        }
    }

    pub(in crate::model) fn on_republish(&mut self, pending: PendingId, cx: &mut Ctx) {
        let Some(p) = self.pending.get(pending) else {
            return;
        };
        let (publish, msg, op, key, tries) = (p.publish, p.msg, p.op, p.key, p.tries);
        self.send_publish(publish, msg, op, key, Some((pending, tries)), cx);
    }

    /// A fiber waiting on a confirm is cancelled (or gone): whatever the broker says is
    /// ignored.
    pub(in crate::model) fn forget_publish(&mut self, pending: PendingId) {
        self.pending.remove(pending);
    }

    pub(in crate::model) fn schedule_relays(&mut self, cx: &mut Ctx) {
        while let Some(p) = self.pending_relays.pop() {
            let every = cx.spec.publishes[p.index()].relay_interval;
            cx.sched.after(every, Event::RelayTick(p));
        }
    }

    pub(in crate::model) fn on_relay_tick(&mut self, p: PublishId, cx: &mut Ctx) {
        let rows: Vec<OutboxRowId> = self.relays[p.index()].rows.iter().copied().collect();
        for row in rows {
            let r = &mut self.outbox[row];
            if r.sent {
                continue;
            }
            r.sent = true;
            let (msg, op, key) = (r.msg, r.op, r.key);
            let pending = self.pending.insert(Pending {
                publisher: Publisher::Relay(row),
                publish: p,
                msg,
                op,
                key,
                tries: 1,
            });
            self.send_publish(p, msg, op, key, Some((pending, 1)), cx);
        }
        let relay = &mut self.relays[p.index()];
        if relay.rows.is_empty() {
            relay.scheduled = false;
        } else {
            let every = cx.spec.publishes[p.index()].relay_interval;
            cx.sched.after(every, Event::RelayTick(p));
        }
    }

    /// Hands a committed transaction's outbox rows (site, message id) to their sites'
    /// relays.
    pub(in crate::model) fn commit_outbox(
        &mut self,
        rows: Vec<(PublishId, u64)>,
        op: u64,
        key: u32,
    ) {
        for (p, msg) in rows {
            let row = self.outbox.insert(OutboxRow {
                msg,
                op,
                key,
                sent: false,
            });
            self.relays[p.index()].rows.push_back(row);
            if !self.relays[p.index()].scheduled {
                self.relays[p.index()].scheduled = true;
                self.pending_relays.push(p);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::decimal;

    #[test]
    fn decimal_spells_keys_as_to_string_does() {
        for n in [0, 7, 10, 199, 200, 4_000_000, u32::MAX] {
            assert_eq!(decimal(n, &mut [0; 10]), n.to_string().as_bytes());
        }
    }
}
