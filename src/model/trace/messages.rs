//! A traced request's messages: what the brokers did with every message its handlers
//! published (and their consumers' handlers published in turn), from the publish to
//! the last ack. The brokers call the recorder through their `Ctx` (`cx.trace_*`, one
//! line each, a test of `cx.trace` when the recorder is off); the consumers' handlers
//! are invocations like any other (`trace_admitted` knows them by their delivery).
//!
//! Only traced roots record messages: attribution ends with the request's answer. A
//! traced root whose messages are still at a broker when its call ends lingers until
//! the last of them is settled (acked, handled, dead-lettered or dropped), or until
//! the run's end; its spans are cut there.

use super::tree::Tree;
use super::*;
use crate::model::broker::Ctx;
use crate::model::spec::Subscription;
use crate::model::world::{DeliveryId, Settlement};

/// Whether a root still has a message on its way, at a broker, or in a consumer's
/// handler.
pub(super) fn unsettled(nodes: &[Node]) -> bool {
    nodes.iter().any(|n| match *n {
        Node::Publish {
            in_flight, arrived, ..
        } => in_flight > 0 || arrived == OPEN,
        Node::Copy { how, .. } => how == CopyEnd::Open,
        Node::Invocation { attempt, end, .. } => {
            end == OPEN && matches!(nodes[attempt as usize], Node::Delivery { .. })
        }
        _ => false,
    })
}

/// The last instant a root's nodes recorded (where a trace left open at the run's end
/// is cut).
fn last_time(nodes: &[Node]) -> u64 {
    let mut t = 0;
    let mut see = |x: u64| {
        if x != OPEN {
            t = t.max(x);
        }
    };
    for n in nodes {
        match *n {
            Node::Call { start, end, .. } => [start, end].into_iter().for_each(&mut see),
            Node::Attempt { sent, end, .. } => [sent, end].into_iter().for_each(&mut see),
            Node::Invocation { arrived, end, .. } => [arrived, end].into_iter().for_each(&mut see),
            Node::Fiber { start, end, .. } => [start, end].into_iter().for_each(&mut see),
            Node::Seg { start, until, .. } => [start, until].into_iter().for_each(&mut see),
            Node::Join { decided, .. } => see(decided),
            Node::Publish { at, arrived, .. } => [at, arrived].into_iter().for_each(&mut see),
            Node::Copy { start, end, .. } => [start, end].into_iter().for_each(&mut see),
            Node::Delivery {
                sent,
                requeued,
                end,
                ..
            } => [sent, requeued, end].into_iter().for_each(&mut see),
        }
    }
    t
}

impl Recorder {
    /// The live root a traced message belongs to.
    fn message_root(&self, msg: u64) -> Option<u32> {
        let &(root, generation) = self.messages.get(&msg)?;
        let r = &self.roots[root as usize];
        (r.live && r.generation == generation).then_some(root)
    }

    fn latest(&self, root: u32, pick: impl Fn(&Node) -> bool) -> Option<u32> {
        self.roots[root as usize]
            .nodes
            .iter()
            .rposition(pick)
            .map(|i| i as u32)
    }

    fn publish_node(&self, root: u32, msg: u64) -> Option<u32> {
        self.latest(
            root,
            |n| matches!(*n, Node::Publish { msg: m, .. } if m == msg),
        )
    }

    /// The copy a delivery to consumer `c` is of: the open copy in its queue, or its
    /// group's copy of the record (a rewound group reads a handled record again).
    fn copy_for(&self, spec: &Spec, root: u32, msg: u64, c: ConsumerId) -> Option<u32> {
        match spec.consumers[c.index()].subscription {
            Subscription::Queue(q) => self.open_copy(root, msg, q),
            Subscription::Topic(_) => self.latest(root, |n| {
                matches!(*n, Node::Copy { msg: m, place: Place::Log { group, .. }, .. }
                    if m == msg && group == c)
            }),
        }
    }

    fn open_copy(&self, root: u32, msg: u64, q: QueueId) -> Option<u32> {
        self.latest(root, |n| {
            matches!(*n, Node::Copy { msg: m, place: Place::Queue(x), how: CopyEnd::Open, .. }
                if m == msg && x == q)
        })
    }

    fn close_copy(&mut self, root: u32, copy: u32, why: CopyEnd, now: u64) {
        if let Node::Copy { end, how, .. } = self.node(root, copy)
            && *how == CopyEnd::Open
        {
            *end = now;
            *how = why;
        }
    }

    /// A delivery ends (`why`), unless it ended already; the root and node when it did now.
    fn end_delivery(&mut self, d: DeliveryId, why: DeliveryEnd, now: u64) -> Option<(u32, u32)> {
        let (root, n) = self.deliveries.get(d, &self.roots)?;
        match self.node(root, n) {
            Node::Delivery { end, how, .. } if *how == DeliveryEnd::Open => {
                *end = now;
                *how = why;
                Some((root, n))
            }
            _ => None,
        }
    }

    /// A lingering root whose messages are all settled becomes its trace.
    fn maybe_finish(&mut self, spec: &Spec, root: u32, now: u64) {
        let r = &self.roots[root as usize];
        if r.lingering && !unsettled(&r.nodes) {
            self.finish_trace(spec, root, now, "cut_at_trace_end");
        }
    }

    /// A traced root's spans, cut at `cut`, and its buffer freed.
    pub(super) fn finish_trace(&mut self, spec: &Spec, root: u32, cut: u64, why: &'static str) {
        let r = root as usize;
        let nodes = std::mem::take(&mut self.roots[r].nodes);
        self.child_lists(&nodes);
        let tree = Tree {
            nodes: &nodes,
            kid_start: &self.kid_start,
            kids: &self.kids,
            spec,
        };
        let (workload, number) = (self.roots[r].workload, self.roots[r].number);
        let trace = tree.spans(workload, number, cut, why);
        self.traces.traces.push(trace);
        self.forget_messages(&nodes);
        let root = &mut self.roots[r];
        root.nodes = nodes;
        root.nodes.clear();
        root.live = false;
        root.lingering = false;
        self.free.push(r as u32);
    }

    pub(super) fn forget_messages(&mut self, nodes: &[Node]) {
        for n in nodes {
            if let Node::Publish { msg, .. } = n {
                self.messages.remove(msg);
            }
        }
    }

    /// The run is over: traces still waiting for a message end at the last thing
    /// they recorded.
    pub(super) fn finish_lingering(&mut self, spec: &Spec) {
        for root in 0..self.roots.len() as u32 {
            let r = &self.roots[root as usize];
            if r.live && r.lingering {
                let cut = last_time(&r.nodes);
                self.finish_trace(spec, root, cut, "cut_at_run_end");
            }
        }
    }
}

/// The brokers' hooks. Each is one test of `trace` when the recorder is off; with it
/// on, only the messages of traced roots are looked at.
impl Ctx<'_> {
    /// A handler's `publish` step made message `msg`.
    #[inline]
    pub(in crate::model) fn trace_publish(&mut self, fiber: FiberId, site: PublishId, msg: u64) {
        let now = self.sched.now().as_nanos();
        if let Some(r) = self.trace.as_deref_mut()
            && let Some((root, f)) = r.fibers.get(fiber, &r.roots)
            && r.roots[root as usize].traced
        {
            r.push(
                root,
                Node::Publish {
                    fiber: f,
                    site,
                    msg,
                    at: now,
                    in_flight: 0,
                    arrived: OPEN,
                },
            );
            let generation = r.roots[root as usize].generation;
            r.messages.insert(msg, (root, generation));
        }
    }

    /// A try of publishing `msg` left for the broker (not lost on the way).
    #[inline]
    pub(in crate::model) fn trace_publish_sent(&mut self, msg: u64) {
        if let Some(r) = self.trace.as_deref_mut()
            && let Some(root) = r.message_root(msg)
            && let Some(p) = r.publish_node(root, msg)
            && let Node::Publish { in_flight, .. } = r.node(root, p)
        {
            *in_flight += 1;
        }
    }

    /// A try of publishing `msg` reached the broker, which routed it (or refused it).
    #[inline]
    pub(in crate::model) fn trace_publish_arrived(&mut self, msg: u64) {
        let now = self.sched.now().as_nanos();
        if let Some(r) = self.trace.as_deref_mut()
            && let Some(root) = r.message_root(msg)
            && let Some(p) = r.publish_node(root, msg)
        {
            if let Node::Publish {
                in_flight, arrived, ..
            } = r.node(root, p)
            {
                *in_flight = in_flight.saturating_sub(1);
                *arrived = (*arrived).min(now);
            }
            r.maybe_finish(self.spec, root, now);
        }
    }

    /// A copy of `msg` joins queue `q` (published, or dead-lettered there).
    #[inline]
    pub(in crate::model) fn trace_enqueued(&mut self, q: QueueId, msg: u64) {
        let now = self.sched.now().as_nanos();
        if let Some(r) = self.trace.as_deref_mut()
            && let Some(root) = r.message_root(msg)
        {
            let publish = r.publish_node(root, msg).unwrap_or(NONE);
            r.push(
                root,
                Node::Copy {
                    msg,
                    publish,
                    from: NONE,
                    place: Place::Queue(q),
                    start: now,
                    end: OPEN,
                    how: CopyEnd::Open,
                },
            );
        }
    }

    /// `msg` is appended to a topic's partition at `offset`: a copy per group.
    #[inline]
    pub(in crate::model) fn trace_appended(
        &mut self,
        topic: TopicId,
        partition: u32,
        offset: u64,
        msg: u64,
    ) {
        let now = self.sched.now().as_nanos();
        if let Some(r) = self.trace.as_deref_mut()
            && let Some(root) = r.message_root(msg)
        {
            let publish = r.publish_node(root, msg).unwrap_or(NONE);
            for &group in &self.spec.topics[topic.index()].groups {
                r.push(
                    root,
                    Node::Copy {
                        msg,
                        publish,
                        from: NONE,
                        place: Place::Log {
                            topic,
                            partition,
                            offset,
                            group,
                        },
                        start: now,
                        end: OPEN,
                        how: CopyEnd::Open,
                    },
                );
            }
        }
    }

    /// The broker hands `msg` to instance `instance` of consumer `c` as delivery `d`,
    /// its `number`-th.
    #[inline]
    pub(in crate::model) fn trace_delivered(
        &mut self,
        d: DeliveryId,
        c: ConsumerId,
        instance: u32,
        msg: u64,
        number: u32,
        redelivered: bool,
    ) {
        let now = self.sched.now().as_nanos();
        if let Some(r) = self.trace.as_deref_mut()
            && let Some(root) = r.message_root(msg)
            && let Some(copy) = r.copy_for(self.spec, root, msg, c)
        {
            let n = r.push(
                root,
                Node::Delivery {
                    copy,
                    consumer: c,
                    instance,
                    number,
                    redelivered,
                    sent: now,
                    requeued: OPEN,
                    end: OPEN,
                    how: DeliveryEnd::Open,
                    invocation: NONE,
                },
            );
            let generation = r.roots[root as usize].generation;
            r.deliveries.set(d, root, generation, n);
        }
    }

    /// An ack, nack, reject or retry of delivery `d` reaches the broker.
    #[inline]
    pub(in crate::model) fn trace_settled(&mut self, d: DeliveryId, how: Settlement) {
        let now = self.sched.now().as_nanos();
        if let Some(r) = self.trace.as_deref_mut() {
            let why = match how {
                Settlement::Ack => DeliveryEnd::Ack,
                Settlement::Nack => DeliveryEnd::Nack,
                Settlement::Reject => DeliveryEnd::Reject,
                Settlement::Retry => DeliveryEnd::Retry,
            };
            // A delivery the broker took back already: its late ack changes nothing.
            if let Some((root, n)) = r.end_delivery(d, why, now)
                && how == Settlement::Ack
                && let Node::Delivery { copy, .. } = *r.node(root, n)
            {
                r.close_copy(root, copy, CopyEnd::Acked, now);
                r.maybe_finish(self.spec, root, now);
            }
        }
    }

    /// Delivery `d`'s ack (visibility) timeout passed.
    #[inline]
    pub(in crate::model) fn trace_ack_timeout(&mut self, d: DeliveryId) {
        let now = self.sched.now().as_nanos();
        if let Some(r) = self.trace.as_deref_mut() {
            r.end_delivery(d, DeliveryEnd::AckTimeout, now);
        }
    }

    /// The broker takes delivery `d` back (unless it ended already: a nack, a timeout).
    #[inline]
    pub(in crate::model) fn trace_taken_back(&mut self, d: DeliveryId) {
        let now = self.sched.now().as_nanos();
        if let Some(r) = self.trace.as_deref_mut() {
            r.end_delivery(d, DeliveryEnd::TakenBack, now);
        }
    }

    /// `msg`'s retry backoff in queue `q` is over: it is ready again.
    #[inline]
    pub(in crate::model) fn trace_requeued(&mut self, msg: u64, q: QueueId) {
        let now = self.sched.now().as_nanos();
        if let Some(r) = self.trace.as_deref_mut()
            && let Some(root) = r.message_root(msg)
            && let Some(copy) = r.open_copy(root, msg, q)
            && let Some(d) = r.latest(
                root,
                |n| matches!(*n, Node::Delivery { copy: c, .. } if c == copy),
            )
            && let Node::Delivery { requeued, .. } = r.node(root, d)
        {
            *requeued = now;
        }
    }

    /// `msg` leaves queue `q` for good (`reason`: "Rejected", "Expired", "Maxlen",
    /// "DeliveryLimit"), into its dead-letter queue if it has one (already enqueued).
    #[inline]
    pub(in crate::model) fn trace_dead_lettered(
        &mut self,
        msg: u64,
        q: QueueId,
        reason: impl std::fmt::Debug,
    ) {
        let now = self.sched.now().as_nanos();
        if let Some(r) = self.trace.as_deref_mut()
            && let Some(root) = r.message_root(msg)
            && let Some(old) = r.open_copy(root, msg, q)
        {
            let why = match format!("{reason:?}").as_str() {
                "Rejected" => CopyEnd::Rejected,
                "Expired" => CopyEnd::Expired,
                "Maxlen" => CopyEnd::MaxLength,
                _ => CopyEnd::DeliveryLimit,
            };
            r.close_copy(root, old, why, now);
            if let Some(dlq) = self.spec.queues[q.index()].dead_letter
                && let Some(new) = r.latest(root, |n| {
                    matches!(*n, Node::Copy { msg: m, place: Place::Queue(x), start, from, .. }
                        if m == msg && x == dlq && start == now && from == NONE)
                })
                && let Node::Copy { from, publish, .. } = r.node(root, new)
            {
                *from = old;
                *publish = NONE;
            }
            r.maybe_finish(self.spec, root, now);
        }
    }

    /// A topic delivery's handler ended (`ok`): the group moves on, or retries in place.
    #[inline]
    pub(in crate::model) fn trace_log_handled(&mut self, d: DeliveryId, ok: bool) {
        let now = self.sched.now().as_nanos();
        if let Some(r) = self.trace.as_deref_mut() {
            let why = if ok {
                DeliveryEnd::HandledOk
            } else {
                DeliveryEnd::HandledFailed
            };
            r.end_delivery(d, why, now);
        }
    }

    /// Group `c` is done with its copy of `msg` (`first_time`: not a rewound reread).
    #[inline]
    pub(in crate::model) fn trace_log_done(
        &mut self,
        msg: u64,
        c: ConsumerId,
        ok: bool,
        first_time: bool,
    ) {
        let now = self.sched.now().as_nanos();
        if first_time
            && let Some(r) = self.trace.as_deref_mut()
            && let Some(root) = r.message_root(msg)
            && let Some(copy) = r.copy_for(self.spec, root, msg, c)
        {
            let why = if ok {
                CopyEnd::Handled
            } else {
                CopyEnd::GaveUp
            };
            r.close_copy(root, copy, why, now);
            r.maybe_finish(self.spec, root, now);
        }
    }
}

impl World {
    /// A consumer's handler waiting for a worker is discarded with its delivery.
    #[inline]
    pub(in crate::model) fn trace_discarded(
        &mut self,
        i: InvocationId,
        now: crate::engine::SimTime,
    ) {
        self.trace_answered(i, None, now);
    }
}
