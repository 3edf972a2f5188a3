//! Publishing: a `publish` step sends a message over a broker hop; with confirms the
//! fiber waits and a failed try is published again under the same id; the broker routes
//! what arrives to queues and topic partitions; the outbox relay publishes committed rows.

use super::{Enqueued, LogEntry, OutboxRow, Pending, Publisher, Transit};
use crate::engine::{Scheduler, SimTime};
use crate::metrics::consistency::*;
use crate::model::arena::Id;
use crate::model::routing;
use crate::model::spec::*;
use crate::model::status::Status;
use crate::model::world::{Event, OutboxRowId, Outcome, PendingId, TransitId, Wait, World};
use rand::RngExt;
use std::rc::Rc;

impl World {
    // ---- publishing ----

    /// A `publish` step. Returns true when the fiber waits for a confirm.
    pub(in crate::model) fn publish_step(
        &mut self,
        f: Id,
        inv: Id,
        p: PublishId,
        sched: &mut Scheduler<Event>,
    ) -> bool {
        let site = &self.spec.publishes[p.index()];
        let (op, key) = {
            let i = &self.invocations[inv];
            (i.op, i.key)
        };
        let msg = self.asy.next_msg;
        self.asy.next_msg += 1;
        if site.outbox {
            // Written with the handler's own transaction: published only if it succeeds.
            self.ledger.txn_outbox.push((inv, p, msg));
            return false;
        }
        if site.confirms {
            let pending = self.asy.pending.insert(Pending {
                publisher: Publisher::Fiber(f),
                publish: p,
                msg,
                op,
                key,
                tries: 1,
            });
            self.fibers[f].wait = Wait::Publish(pending);
            self.send_publish(p, msg, op, key, Some((pending, 1)), sched);
            true
        } else {
            self.send_publish(p, msg, op, key, None, sched);
            false
        }
    }

    pub(super) fn send_publish(
        &mut self,
        p: PublishId,
        msg: u64,
        op: u64,
        key: u32,
        pending: Option<(PendingId, u32)>,
        sched: &mut Scheduler<Event>,
    ) {
        let site = &self.spec.publishes[p.index()];
        let b = site.broker;
        let loss = self.spec.brokers[b.index()].loss;
        if pending.is_some() {
            let timeout = site.confirm_timeout;
            let (pid, try_number) = pending.expect("checked");
            self.asy.periodic += 1;
            sched.after(
                timeout,
                Event::ConfirmTimeout {
                    pending: pid,
                    try_number,
                },
            );
        }
        if loss > 0.0 && self.asy.rngs[b.index()].random::<f64>() < loss {
            if pending.is_none() {
                self.count_unaccepted(p, false);
            }
            return;
        }
        let t = self.asy.transit.insert(Transit {
            publish: p,
            msg,
            op,
            key,
            pending,
        });
        self.broker_hop(b, Event::PublishArrive(t), sched);
    }

    /// A publish the broker never took, counted against every copy it would have made:
    /// `lost` when nobody was told (no confirms), else `publish_failed`.
    pub(super) fn count_unaccepted(&mut self, p: PublishId, told: bool) {
        let c = &mut self.metrics.consistency;
        let bump = |f: &mut FlowMetrics| {
            f.published += 1;
            if told {
                f.publish_failed += 1;
            } else {
                f.lost += 1;
            }
        };
        match &self.spec.publishes[p.index()].target {
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
                for g in &self.spec.topics[t.index()].groups {
                    bump(&mut c.flows[self.asy.group_flow[g.index()]]);
                }
            }
        }
    }

    pub(in crate::model) fn on_publish_arrive(
        &mut self,
        t: TransitId,
        sched: &mut Scheduler<Event>,
    ) {
        let tr = self.asy.transit.remove(t).expect("a publish arrives once");
        let now = sched.now();
        let site = &self.spec.publishes[tr.publish.index()];
        let b = site.broker;
        let accepted = if self.asy.down[b.index()] {
            self.count_unaccepted(tr.publish, tr.pending.is_some());
            self.faults_touch_broker(b);
            false
        } else {
            self.route(
                tr.publish,
                tr.msg,
                tr.op,
                tr.key,
                tr.pending.is_some(),
                now,
                sched,
            )
        };
        if let Some((pending, try_number)) = tr.pending {
            self.broker_hop(
                b,
                Event::Confirm {
                    pending,
                    try_number,
                    ok: accepted,
                },
                sched,
            );
        }
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
        now: SimTime,
        sched: &mut Scheduler<Event>,
    ) -> bool {
        let spec = Rc::clone(&self.spec);
        match &spec.publishes[p.index()].target {
            PublishTarget::Queues { exchange, queues } => {
                if let Some(e) = exchange {
                    let em = &mut self.metrics.consistency.exchanges[e.index()];
                    em.published += 1;
                    em.unroutable += u64::from(queues.is_empty());
                }
                let mut accepted = true;
                let mut copies = 0;
                for &q in queues {
                    self.metrics.consistency.flows[q.index()].published += 1;
                    match self.enqueue(q, msg, op, key, now, now, sched) {
                        Enqueued::Yes => copies += 1,
                        Enqueued::Duplicate => {}
                        Enqueued::Refused => {
                            let f = &mut self.metrics.consistency.flows[q.index()];
                            if confirms {
                                f.publish_failed += 1;
                            } else {
                                f.dropped += 1;
                            }
                            accepted = false;
                        }
                    }
                }
                self.expect_copies(msg, now, copies);
                for &q in queues {
                    self.try_deliver(q, sched);
                }
                accepted
            }
            PublishTarget::Topic(t) => {
                let topic = &spec.topics[t.index()];
                let part = routing::kafka_partition(key.to_string().as_bytes(), topic.partitions);
                let log = &mut self.asy.partitions[t.index()][part as usize];
                log.log.push_back(LogEntry {
                    msg,
                    op,
                    key,
                    published_at: now,
                });
                let tm = &mut self.metrics.consistency.topics[t.index()];
                tm.published += 1;
                tm.appended += 1;
                for g in &topic.groups {
                    let f = self.asy.group_flow[g.index()];
                    self.metrics.consistency.flows[f].published += 1;
                }
                self.expect_copies(msg, now, topic.groups.len() as u32);
                self.apply_retention(*t, part, now);
                for &g in &topic.groups {
                    self.try_fetch(g, part, sched);
                }
                true
            }
        }
    }

    pub(super) fn expect_copies(&mut self, msg: u64, now: SimTime, copies: u32) {
        if copies == 0 {
            return;
        }
        self.asy
            .propagation
            .entry(msg)
            .and_modify(|e| e.1 += copies)
            .or_insert((now, copies, false));
    }

    /// A copy of `msg` is settled: handled by its subscriber, or not (`failed`).
    pub(super) fn copy_settled(&mut self, msg: u64, failed: bool, now: SimTime) {
        let Some(e) = self.asy.propagation.get_mut(&msg) else {
            return;
        };
        e.1 -= 1;
        e.2 |= failed;
        if e.1 == 0 {
            let (at, _, failed) = self.asy.propagation.remove(&msg).expect("present");
            if failed {
                self.metrics.consistency.not_propagated += 1;
            } else {
                self.metrics.consistency.propagation.record(now.since(at));
            }
        }
    }

    // ---- confirms and the outbox relay ----

    pub(in crate::model) fn on_confirm(
        &mut self,
        pending: PendingId,
        try_number: u32,
        ok: bool,
        sched: &mut Scheduler<Event>,
    ) {
        let Some(p) = self.asy.pending.get(pending) else {
            return;
        };
        if p.tries != try_number {
            return; // an answer to an earlier try
        }
        if ok {
            let p = self.asy.pending.remove(pending).expect("live");
            match p.publisher {
                Publisher::Fiber(f) => {
                    if self.fibers.contains(f) {
                        self.resume(f, sched.now());
                    }
                }
                Publisher::Relay(row) => {
                    self.asy.outbox.remove(row);
                    let relay = &mut self.asy.relays[p.publish.index()];
                    relay.rows.retain(|&r| r != row);
                }
            }
            return;
        }
        let site = &self.spec.publishes[p.publish.index()];
        match p.publisher {
            Publisher::Relay(row) => {
                // The relay tries again at its next poll, forever: at least once.
                self.asy.pending.remove(pending);
                if let Some(r) = self.asy.outbox.get_mut(row) {
                    r.sent = false;
                }
            }
            Publisher::Fiber(f) => {
                if p.tries <= site.retries {
                    let wait = site.retry_backoff;
                    self.asy.pending[pending].tries += 1;
                    sched.after(wait, Event::Republish(pending));
                } else {
                    self.asy.pending.remove(pending);
                    if self.fibers.contains(f) {
                        self.finish_fiber(f, Outcome::Failed(Status::Unavailable), sched);
                    }
                }
            }
        }
    }

    pub(in crate::model) fn on_republish(
        &mut self,
        pending: PendingId,
        sched: &mut Scheduler<Event>,
    ) {
        let Some(p) = self.asy.pending.get(pending) else {
            return;
        };
        if let Publisher::Fiber(f) = p.publisher
            && !self.fibers.contains(f)
        {
            self.asy.pending.remove(pending);
            return;
        }
        let (publish, msg, op, key, tries) = (p.publish, p.msg, p.op, p.key, p.tries);
        self.send_publish(publish, msg, op, key, Some((pending, tries)), sched);
    }

    /// A fiber waiting on a confirm is cancelled: whatever the broker says is ignored.
    pub(in crate::model) fn forget_publish(&mut self, pending: PendingId) {
        self.asy.pending.remove(pending);
    }

    pub(in crate::model) fn schedule_relays(&mut self, sched: &mut Scheduler<Event>) {
        while let Some(p) = self.asy.pending_relays.pop() {
            let every = self.spec.publishes[p.index()].relay_interval;
            sched.after(every, Event::RelayTick(p));
        }
    }

    pub(in crate::model) fn on_relay_tick(&mut self, p: PublishId, sched: &mut Scheduler<Event>) {
        let rows: Vec<OutboxRowId> = self.asy.relays[p.index()].rows.iter().copied().collect();
        for row in rows {
            let r = &mut self.asy.outbox[row];
            if r.sent {
                continue;
            }
            r.sent = true;
            let (msg, op, key) = (r.msg, r.op, r.key);
            let pending = self.asy.pending.insert(Pending {
                publisher: Publisher::Relay(row),
                publish: p,
                msg,
                op,
                key,
                tries: 1,
            });
            self.send_publish(p, msg, op, key, Some((pending, 1)), sched);
        }
        let relay = &mut self.asy.relays[p.index()];
        if relay.rows.is_empty() {
            relay.scheduled = false;
        } else {
            let every = self.spec.publishes[p.index()].relay_interval;
            sched.after(every, Event::RelayTick(p));
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
            let row = self.asy.outbox.insert(OutboxRow {
                msg,
                op,
                key,
                sent: false,
            });
            self.asy.relays[p.index()].rows.push_back(row);
            if !self.asy.relays[p.index()].scheduled {
                self.asy.relays[p.index()].scheduled = true;
                self.asy.pending_relays.push(p);
            }
        }
    }
}
