//! Logs and consumer groups: retention, one fetch at a time per owned partition, offsets
//! handled and committed, retries in place, rebalances, poll timeouts.

use super::{Delivery, Source, violates_order};
use crate::engine::{Scheduler, SimDuration, SimTime};
use crate::model::routing;
use crate::model::routing::Assignor;
use crate::model::spec::*;
use crate::model::world::{DeliveryId, Event, World};

impl World {
    // ---- logs and consumer groups ----

    pub(super) fn apply_retention(&mut self, t: TopicId, part: u32, now: SimTime) {
        let Some(keep) = self.spec.topics[t.index()].retention else {
            return;
        };
        let p = &mut self.asy.partitions[t.index()][part as usize];
        while let Some(e) = p.log.front() {
            if e.published_at.checked_add(keep).is_some_and(|x| x <= now) {
                p.log.pop_front();
                p.base += 1;
                self.metrics.consistency.topics[t.index()].retention_removed += 1;
            } else {
                break;
            }
        }
    }

    /// Hands the next message of a partition to its owner, if it is idle.
    pub(in crate::model) fn try_fetch(
        &mut self,
        c: ConsumerId,
        part: u32,
        sched: &mut Scheduler<Event>,
    ) {
        let Subscription::Topic(t) = self.spec.consumers[c.index()].subscription else {
            unreachable!("groups read topics")
        };
        let b = self.spec.topics[t.index()].broker;
        if self.asy.down[b.index()] {
            return;
        }
        let gp = self.asy.consumers[c.index()].parts[part as usize];
        let Some(owner) = gp.owner else { return };
        let inst = self.asy.consumers[c.index()].instances[owner as usize];
        if gp.in_flight.is_some() || gp.waiting_retry || !inst.up || !inst.member {
            return;
        }
        let log = &self.asy.partitions[t.index()][part as usize];
        let (base, end) = (log.base, log.end());
        let flow = self.flow_of_group(c);
        let gp = &mut self.asy.consumers[c.index()].parts[part as usize];
        if gp.position < base {
            // Retention removed what the group had not read yet.
            if gp.high < base {
                self.metrics.consistency.flows[flow].expired += base - gp.high;
                gp.high = base;
            }
            gp.position = base;
            gp.processed = gp.processed.max(base);
        }
        if gp.position >= end {
            return;
        }
        let offset = gp.position;
        gp.position += 1;
        let e = &log.log[(offset - base) as usize];
        let redelivered = offset < gp.fetched;
        gp.fetched = gp.fetched.max(offset + 1);
        let number = std::mem::take(&mut gp.retry_number).max(1);
        let d = self.asy.deliveries.insert(Delivery {
            consumer: c,
            instance: owner,
            source: Source::Log {
                partition: part,
                offset,
            },
            msg: e.msg,
            op: e.op,
            key: e.key,
            number,
            handler: None,
        });
        self.asy.consumers[c.index()].parts[part as usize].in_flight = Some(d);
        let f = &mut self.metrics.consistency.flows[flow];
        f.delivered += 1;
        f.redelivered += u64::from(redelivered);
        self.metrics.consistency.consumers[c.index()].deliveries += 1;
        self.broker_hop(b, Event::Deliver(d), sched);
    }

    pub(super) fn log_handled(&mut self, d: DeliveryId, ok: bool, sched: &mut Scheduler<Event>) {
        let now = sched.now();
        let del = self.asy.deliveries.remove(d).expect("live");
        let Source::Log { partition, offset } = del.source else {
            unreachable!()
        };
        let c = del.consumer;
        let flow = self.flow_of_group(c);
        let spec = self.spec.consumers[c.index()].clone();
        let gp = &mut self.asy.consumers[c.index()].parts[partition as usize];
        gp.in_flight = None;
        if !ok
            && let OnFailure::Retry { attempts, backoff } = spec.on_failure
            && del.number < attempts
        {
            // Retried in place: the partition waits (order is kept).
            gp.position = offset;
            gp.waiting_retry = true;
            let wait = backoff.delay(
                del.number,
                SimDuration::ZERO,
                &mut self.asy.consumer_rngs[c.index()],
            );
            gp.retry_number = del.number + 1;
            sched.after(
                wait,
                Event::Refetch {
                    consumer: c,
                    partition,
                },
            );
            return;
        }
        assert!(
            gp.committed <= gp.processed && gp.processed <= offset && offset < gp.position,
            "offsets out of order: committed {} processed {} handled {offset} position {}",
            gp.committed,
            gp.processed,
            gp.position
        );
        gp.processed = offset + 1;
        let first_time = offset >= gp.high;
        if first_time {
            gp.high = offset + 1;
            let f = &mut self.metrics.consistency.flows[flow];
            if ok {
                f.acked += 1;
            } else {
                f.dead_lettered.delivery_limit += 1;
            }
            self.copy_settled(del.msg, !ok, now);
        } else {
            self.metrics.consistency.flows[flow].stale_acks += 1;
        }
        // Re-handling after a rewind is a duplicate, not a reordering: only first
        // handlings are checked.
        if ok
            && first_time
            && self.asy.keyed_messages
            && violates_order(
                &mut self.asy.consumers[c.index()].last_by_key,
                del.key,
                del.msg,
            )
        {
            self.metrics.consistency.flows[flow].ordering_violations += 1;
        }
        let inst = &mut self.asy.consumers[c.index()].instances[del.instance as usize];
        match spec.commit {
            Commit::Each => self.commit_partition(c, partition),
            Commit::Batch(n) => {
                inst.since_commit += 1;
                if inst.since_commit >= n {
                    inst.since_commit = 0;
                    self.commit_instance(c, del.instance);
                }
            }
            Commit::Auto(_) => {}
        }
        self.try_fetch(c, partition, sched);
    }

    pub(super) fn commit_partition(&mut self, c: ConsumerId, part: u32) {
        let Subscription::Topic(t) = self.spec.consumers[c.index()].subscription else {
            return;
        };
        if self.asy.down[self.spec.topics[t.index()].broker.index()] {
            return;
        }
        let gp = &mut self.asy.consumers[c.index()].parts[part as usize];
        assert!(gp.processed <= gp.position, "committing past the position");
        gp.committed = gp.committed.max(gp.processed);
    }

    pub(super) fn commit_instance(&mut self, c: ConsumerId, instance: u32) {
        for p in 0..self.asy.consumers[c.index()].parts.len() {
            if self.asy.consumers[c.index()].parts[p].owner == Some(instance) {
                self.commit_partition(c, p as u32);
            }
        }
    }

    pub(in crate::model) fn on_refetch(
        &mut self,
        c: ConsumerId,
        part: u32,
        sched: &mut Scheduler<Event>,
    ) {
        self.asy.consumers[c.index()].parts[part as usize].waiting_retry = false;
        self.try_fetch(c, part, sched);
    }

    pub(in crate::model) fn on_auto_commit(&mut self, c: ConsumerId, sched: &mut Scheduler<Event>) {
        self.asy.periodic -= 1;
        for i in 0..self.spec.consumers[c.index()].instances {
            let inst = self.asy.consumers[c.index()].instances[i as usize];
            if inst.up && inst.member {
                self.commit_instance(c, i);
            }
        }
        if let Commit::Auto(every) = self.spec.consumers[c.index()].commit
            && sched.pending() > self.asy.periodic
        {
            self.asy.periodic += 1;
            sched.after(every, Event::AutoCommit(c));
        }
    }

    /// Recomputes a group's assignment from its live members; moving partitions
    /// restart from their committed offsets (eager assignors move them all).
    pub(super) fn rebalance(&mut self, c: ConsumerId, sched: &mut Scheduler<Event>) {
        let spec = &self.spec.consumers[c.index()];
        let assignor = spec.assignor;
        let auto = matches!(spec.commit, Commit::Auto(_));
        let cs = &self.asy.consumers[c.index()];
        let members: Vec<u32> = (0..spec.instances)
            .filter(|&i| cs.instances[i as usize].up && cs.instances[i as usize].member)
            .collect();
        let previous: Vec<Option<u32>> = cs.parts.iter().map(|p| p.owner).collect();
        let next = routing::assign(assignor, previous.len() as u32, &members, &previous);
        let moved = routing::moved(&previous, &next);
        let cm = &mut self.metrics.consistency.consumers[c.index()];
        cm.rebalances += 1;
        cm.partitions_moved += u64::from(moved);
        let eager = assignor != Assignor::CooperativeSticky;
        let n = previous.len();
        for p in 0..n {
            let revoked = eager || previous[p] != next[p];
            if !revoked {
                continue;
            }
            // A live owner commits what it handled before giving the partition up.
            if auto
                && let Some(o) = previous[p]
                && self.asy.consumers[c.index()].instances[o as usize].up
            {
                self.commit_partition(c, p as u32);
            }
            let gp = &mut self.asy.consumers[c.index()].parts[p];
            if let Some(d) = gp.in_flight.take() {
                // Its handler runs on; its completion will find the delivery gone.
                self.asy.deliveries.remove(d);
            }
            gp.owner = next[p];
            gp.position = gp.committed;
            gp.processed = gp.committed;
            gp.waiting_retry = false;
        }
        for p in 0..n {
            self.try_fetch(c, p as u32, sched);
        }
    }

    /// Groups join at the start: each gets its first assignment and start offsets.
    pub(in crate::model) fn start_groups(&mut self, sched: &mut Scheduler<Event>) {
        for c in 0..self.spec.consumers.len() {
            let cid = ConsumerId(c as u32);
            let spec = &self.spec.consumers[c];
            let Subscription::Topic(t) = spec.subscription else {
                continue;
            };
            let start = spec.start;
            let commit = spec.commit;
            for (p, gp) in self.asy.consumers[c].parts.iter_mut().enumerate() {
                let log = &self.asy.partitions[t.index()][p];
                let at = match start {
                    StartFrom::Earliest => log.base,
                    StartFrom::Latest => log.end(),
                    StartFrom::Offset(o) => o,
                };
                gp.committed = at;
                gp.position = at;
                gp.processed = at;
                // Offsets before the start are never read: accounted as skipped.
                gp.high = at;
            }
            self.rebalance(cid, sched);
            if let Commit::Auto(every) = commit {
                self.asy.periodic += 1;
                sched.after(every, Event::AutoCommit(cid));
            }
        }
    }

    /// Offsets below a group's start offset were skipped (dropped), up to the end.
    pub(super) fn account_skipped(&mut self) {
        for (c, cs) in self.spec.consumers.iter().enumerate() {
            let (Subscription::Topic(t), StartFrom::Offset(o)) = (cs.subscription, cs.start) else {
                continue;
            };
            let flow = self.asy.group_flow[c];
            for p in &self.asy.partitions[t.index()] {
                self.metrics.consistency.flows[flow].dropped += o.min(p.end());
            }
        }
    }

    pub(in crate::model) fn on_poll_timeout(
        &mut self,
        d: DeliveryId,
        sched: &mut Scheduler<Event>,
    ) {
        let Some(del) = self.asy.deliveries.get(d) else {
            return;
        };
        let (c, i) = (del.consumer, del.instance);
        let inst = &mut self.asy.consumers[c.index()].instances[i as usize];
        if !inst.member {
            return;
        }
        // max.poll.interval.ms passed without a poll: the consumer leaves the group and
        // rejoins at its next poll (when this handler ends).
        inst.member = false;
        self.asy.rejoin_after.push((d, c, i));
        self.rebalance(c, sched);
    }

    /// A handler of an instance that left the group ended: it polls again, so rejoins.
    pub(in crate::model) fn maybe_rejoin(&mut self, d: DeliveryId, sched: &mut Scheduler<Event>) {
        let Some(k) = self.asy.rejoin_after.iter().position(|&(x, _, _)| x == d) else {
            return;
        };
        let (_, c, i) = self.asy.rejoin_after.swap_remove(k);
        let inst = &mut self.asy.consumers[c.index()].instances[i as usize];
        if inst.up && !inst.member {
            inst.member = true;
            self.rebalance(c, sched);
        }
    }
}
