//! Logs and consumer groups: retention, one fetch at a time per owned partition, offsets
//! handled and committed, retries in place, rebalances, poll timeouts.

use super::{Async, Ctx, Delivery, Source, violates_order};
use crate::engine::{SimDuration, SimTime};
use crate::metrics::consistency::Consistency;
use crate::model::routing;
use crate::model::routing::Assignor;
use crate::model::spec::*;
use crate::model::world::{DeliveryId, Event};

impl Async {
    // ---- logs and consumer groups ----

    pub(super) fn apply_retention(&mut self, t: TopicId, part: u32, now: SimTime, cx: &mut Ctx) {
        let Some(keep) = cx.spec.topics[t.index()].retention else {
            return;
        };
        let p = &mut self.partitions[t.index()][part as usize];
        while let Some(e) = p.log.front() {
            if e.published_at.checked_add(keep).is_some_and(|x| x <= now) {
                p.log.pop_front();
                p.base += 1;
                cx.metrics.topics[t.index()].retention_removed += 1;
            } else {
                break;
            }
        }
    }

    /// Hands the next message of a partition to its owner, if it is idle. Most calls
    /// find nothing to do (the owner is busy, or has read everything): those are told
    /// from the partition's own state before anything else is looked up.
    #[inline]
    pub(in crate::model) fn try_fetch(&mut self, c: ConsumerId, part: u32, cx: &mut Ctx) {
        let cs = &self.consumers[c.index()];
        let gp = &cs.parts[part as usize];
        let Some(owner) = gp.owner else { return };
        if gp.in_flight.is_some() || gp.waiting_retry {
            return;
        }
        let inst = cs.instances[owner as usize];
        if !inst.up || !inst.member || self.down[cs.broker.index()] {
            return;
        }
        // Behind the log's base, the position moves up to it and there is an entry.
        if gp.position >= self.partitions[cs.topic.index()][part as usize].end() {
            return;
        }
        self.fetch(c, part, owner, cx);
    }

    /// `try_fetch` once the partition's owner is idle and has an entry to read.
    fn fetch(&mut self, c: ConsumerId, part: u32, owner: u32, cx: &mut Ctx) {
        let flow = self.flow_of_group(c);
        let cs = &mut self.consumers[c.index()];
        let b = cs.broker;
        let log = &self.partitions[cs.topic.index()][part as usize];
        let base = log.base;
        let gp = &mut cs.parts[part as usize];
        if gp.position < base {
            // Retention removed what the group had not read yet.
            if gp.high < base {
                cx.metrics.flows[flow].expired += base - gp.high;
                gp.high = base;
            }
            gp.position = base;
            gp.processed = gp.processed.max(base);
        }
        let offset = gp.position;
        gp.position += 1;
        let e = &log.log[(offset - base) as usize];
        let redelivered = offset < gp.fetched;
        gp.fetched = gp.fetched.max(offset + 1);
        let number = std::mem::take(&mut gp.retry_number).max(1);
        let d = self.deliveries.insert(Delivery {
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
        gp.in_flight = Some(d);
        cx.trace_delivered(d, c, owner, e.msg, number, redelivered);
        let f = &mut cx.metrics.flows[flow];
        f.delivered += 1;
        f.redelivered += u64::from(redelivered);
        cx.metrics.consumers[c.index()].deliveries += 1;
        self.broker_hop(b, Event::Deliver(d), cx);
    }

    pub(super) fn log_handled(&mut self, d: DeliveryId, ok: bool, cx: &mut Ctx) {
        let now = cx.now();
        cx.trace_log_handled(d, ok);
        let del = self.deliveries.remove(d).expect("live");
        let Source::Log { partition, offset } = del.source else {
            unreachable!()
        };
        let c = del.consumer;
        let flow = self.flow_of_group(c);
        let all = cx.spec;
        let spec = &all.consumers[c.index()];
        let gp = &mut self.consumers[c.index()].parts[partition as usize];
        gp.in_flight = None;
        if !ok
            && let OnFailure::Retry { attempts, backoff } = spec.on_failure
            && del.number < attempts
        {
            self.retry_in_place(c, partition, offset, del.number, backoff, cx);
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
        cx.trace_log_done(del.msg, c, ok, first_time);
        if first_time {
            gp.high = offset + 1;
            let f = &mut cx.metrics.flows[flow];
            if ok {
                f.acked += 1;
            } else {
                f.dead_lettered.delivery_limit += 1;
            }
            self.copy_settled(del.msg, !ok, now, cx);
        } else {
            cx.metrics.flows[flow].stale_acks += 1;
        }
        // Re-handling after a rewind is a duplicate, not a reordering: only first
        // handlings are checked.
        if ok
            && first_time
            && self.keyed_messages
            && violates_order(&mut self.consumers[c.index()].last_by_key, del.key, del.msg)
        {
            cx.metrics.flows[flow].ordering_violations += 1;
        }
        self.commit_handled(c, partition, del.instance, cx.spec);
        // Usually the partition has nothing more to read: told here, without the call.
        let cs = &self.consumers[c.index()];
        if cs.parts[partition as usize].position
            < self.partitions[cs.topic.index()][partition as usize].end()
        {
            self.try_fetch(c, partition, cx);
        }
    }

    /// A record of `partition` was handled by `instance`: a commit, if the group's
    /// commit policy makes one now.
    fn commit_handled(&mut self, c: ConsumerId, partition: u32, instance: u32, spec: &Spec) {
        let inst = &mut self.consumers[c.index()].instances[instance as usize];
        match spec.consumers[c.index()].commit {
            Commit::Each => self.commit_partition(c, partition, spec),
            Commit::Batch(n) => {
                inst.since_commit += 1;
                if inst.since_commit >= n {
                    inst.since_commit = 0;
                    self.commit_instance(c, instance, spec);
                }
            }
            Commit::Auto(_) => {}
        }
    }

    /// A failed record retried in place: the partition waits for its backoff
    /// (order is kept), then fetches the record again.
    #[cold]
    fn retry_in_place(
        &mut self,
        c: ConsumerId,
        partition: u32,
        offset: u64,
        number: u32,
        backoff: crate::model::backoff::Backoff,
        cx: &mut Ctx,
    ) {
        let gp = &mut self.consumers[c.index()].parts[partition as usize];
        gp.position = offset;
        gp.waiting_retry = true;
        let wait = backoff.delay(
            number,
            SimDuration::ZERO,
            &mut self.consumer_rngs[c.index()],
        );
        gp.retry_number = number + 1;
        cx.sched.after(
            wait,
            Event::Refetch {
                consumer: c,
                partition,
            },
        );
    }

    pub(super) fn commit_partition(&mut self, c: ConsumerId, part: u32, spec: &Spec) {
        let Subscription::Topic(t) = spec.consumers[c.index()].subscription else {
            return;
        };
        if self.down[spec.topics[t.index()].broker.index()] {
            return;
        }
        let gp = &mut self.consumers[c.index()].parts[part as usize];
        assert!(gp.processed <= gp.position, "committing past the position");
        gp.committed = gp.committed.max(gp.processed);
    }

    pub(super) fn commit_instance(&mut self, c: ConsumerId, instance: u32, spec: &Spec) {
        for p in 0..self.consumers[c.index()].parts.len() {
            if self.consumers[c.index()].parts[p].owner == Some(instance) {
                self.commit_partition(c, p as u32, spec);
            }
        }
    }

    pub(in crate::model) fn on_refetch(&mut self, c: ConsumerId, part: u32, cx: &mut Ctx) {
        self.consumers[c.index()].parts[part as usize].waiting_retry = false;
        self.try_fetch(c, part, cx);
    }

    pub(in crate::model) fn on_auto_commit(&mut self, c: ConsumerId, cx: &mut Ctx) {
        self.periodic -= 1;
        for i in 0..cx.spec.consumers[c.index()].instances {
            let inst = self.consumers[c.index()].instances[i as usize];
            if inst.up && inst.member {
                self.commit_instance(c, i, cx.spec);
            }
        }
        if let Commit::Auto(every) = cx.spec.consumers[c.index()].commit
            && cx.sched.pending() > self.periodic
        {
            self.periodic += 1;
            cx.sched.after(every, Event::AutoCommit(c));
        }
    }

    /// Recomputes a group's assignment from its live members; moving partitions
    /// restart from their committed offsets (eager assignors move them all).
    pub(super) fn rebalance(&mut self, c: ConsumerId, cx: &mut Ctx) {
        let all = cx.spec;
        let spec = &all.consumers[c.index()];
        let assignor = spec.assignor;
        let auto = matches!(spec.commit, Commit::Auto(_));
        let cs = &self.consumers[c.index()];
        let members: Vec<u32> = (0..spec.instances)
            .filter(|&i| cs.instances[i as usize].up && cs.instances[i as usize].member)
            .collect();
        let previous: Vec<Option<u32>> = cs.parts.iter().map(|p| p.owner).collect();
        let next = routing::assign(assignor, previous.len() as u32, &members, &previous);
        let moved = routing::moved(&previous, &next);
        let cm = &mut cx.metrics.consumers[c.index()];
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
                && self.consumers[c.index()].instances[o as usize].up
            {
                self.commit_partition(c, p as u32, cx.spec);
            }
            let gp = &mut self.consumers[c.index()].parts[p];
            if let Some(d) = gp.in_flight.take() {
                // Its handler runs on; its completion will find the delivery gone.
                cx.trace_taken_back(d);
                self.deliveries.remove(d);
            }
            gp.owner = next[p];
            gp.position = gp.committed;
            gp.processed = gp.committed;
            gp.waiting_retry = false;
        }
        for p in 0..n {
            self.try_fetch(c, p as u32, cx);
        }
    }

    /// Groups join at the start: each gets its first assignment and start offsets.
    pub(in crate::model) fn start_groups(&mut self, cx: &mut Ctx) {
        for c in 0..cx.spec.consumers.len() {
            let cid = ConsumerId(c as u32);
            let all = cx.spec;
            let spec = &all.consumers[c];
            let Subscription::Topic(t) = spec.subscription else {
                continue;
            };
            let start = spec.start;
            let commit = spec.commit;
            for (p, gp) in self.consumers[c].parts.iter_mut().enumerate() {
                let log = &self.partitions[t.index()][p];
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
            self.rebalance(cid, cx);
            if let Commit::Auto(every) = commit {
                self.periodic += 1;
                cx.sched.after(every, Event::AutoCommit(cid));
            }
        }
    }

    /// Offsets below a group's start offset were skipped (dropped), up to the end.
    pub(super) fn account_skipped(&self, spec: &Spec, metrics: &mut Consistency) {
        for (c, cs) in spec.consumers.iter().enumerate() {
            let (Subscription::Topic(t), StartFrom::Offset(o)) = (cs.subscription, cs.start) else {
                continue;
            };
            let flow = self.group_flow[c];
            for p in &self.partitions[t.index()] {
                metrics.flows[flow].dropped += o.min(p.end());
            }
        }
    }

    pub(in crate::model) fn on_poll_timeout(&mut self, d: DeliveryId, cx: &mut Ctx) {
        let Some(del) = self.deliveries.get(d) else {
            return;
        };
        let (c, i) = (del.consumer, del.instance);
        let inst = &mut self.consumers[c.index()].instances[i as usize];
        if !inst.member {
            return;
        }
        // max.poll.interval.ms passed without a poll: the consumer leaves the group and
        // rejoins at its next poll (when this handler ends).
        inst.member = false;
        self.rejoin_after.push((d, c, i));
        self.rebalance(c, cx);
    }

    /// A handler of an instance that left the group ended: it polls again, so rejoins.
    pub(in crate::model) fn maybe_rejoin(&mut self, d: DeliveryId, cx: &mut Ctx) {
        let Some(k) = self.rejoin_after.iter().position(|&(x, _, _)| x == d) else {
            return;
        };
        let (_, c, i) = self.rejoin_after.swap_remove(k);
        let inst = &mut self.consumers[c.index()].instances[i as usize];
        if inst.up && !inst.member {
            inst.member = true;
            self.rebalance(c, cx);
        }
    }
}
