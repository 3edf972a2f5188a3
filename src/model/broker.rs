//! Brokers and consumers: RabbitMQ-like queues (competing consumers, prefetch,
//! ack/nack/reject, ack timeouts, delivery limits, dead-lettering, TTL, max length),
//! exchanges (resolved to queue lists when the scenario is built), SQS FIFO groups
//! and deduplication, Kafka-like partitioned logs read by consumer groups (offsets,
//! commits, rebalances), publisher confirms and the transactional outbox.
//!
//! A consumer runs as a service: one replica per instance, `concurrency` workers each,
//! and its handler is an ordinary handler program. A delivery becomes an invocation
//! whose answer is an ack, nack or reject sent back to the broker instead of a reply.
//! Everything a message does is counted in `metrics.consistency`, so that
//! published = acked + dead-lettered + expired + dropped + deduplicated + lost +
//! publish-failed + in flight holds for every queue and group.

use super::arena::{Arena, Id};
use super::routing::{self, Assignor};
use super::spec::*;
use super::status::Status;
use super::world::{Event, Invocation, NO_DEADLINE, Outcome, Wait, World};
use crate::engine::{Scheduler, SimDuration, SimTime, Stream, stream};
use crate::metrics::consistency::*;
use rand::RngExt;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::rc::Rc;

/// One copy of a message in one queue.
pub(super) struct Message {
    pub msg: u64,
    pub op: u64,
    pub key: u32,
    pub queue: QueueId,
    pub published_at: SimTime,
    pub expires_at: SimTime,
    pub deliveries: u32,
    /// Returns that count against the delivery limit.
    pub returns: u32,
}

#[derive(Clone, Copy, Debug)]
pub(super) enum Source {
    Queue(Id),
    Log { partition: u32, offset: u64 },
}

/// A message handed to a consumer instance and not yet settled.
pub(super) struct Delivery {
    pub consumer: ConsumerId,
    pub instance: u32,
    pub source: Source,
    pub msg: u64,
    pub op: u64,
    pub key: u32,
    /// Deliveries of this message so far, this one included.
    pub number: u32,
    /// The consumer's invocation handling it, once it reached its instance: the
    /// consumer bridge's side of the delivery, which the broker never reads.
    pub handler: Option<Id>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settlement {
    Ack,
    /// nack(requeue=true)
    Nack,
    /// reject(requeue=false)
    Reject,
    /// Give it back after a backoff (counted as a delivery attempt).
    Retry,
}

#[derive(Default)]
struct QueueState {
    ready: VecDeque<Id>,
    unacked: u32,
    /// Waiting out a retry backoff.
    delayed: u32,
    /// FIFO: message groups with a message in flight.
    busy_groups: BTreeSet<u32>,
    /// FIFO deduplication: operation -> end of its window, and the windows in order.
    dedup: BTreeMap<u64, SimTime>,
    dedup_order: VecDeque<(SimTime, u64)>,
    next_instance: u32,
    /// Per key, the latest message id handled (ordering check).
    last_by_key: Vec<u64>,
}

struct LogEntry {
    msg: u64,
    op: u64,
    key: u32,
    published_at: SimTime,
}

#[derive(Default)]
struct Partition {
    log: VecDeque<LogEntry>,
    /// Offset of `log[0]`.
    base: u64,
}

impl Partition {
    fn end(&self) -> u64 {
        self.base + self.log.len() as u64
    }
}

#[derive(Clone, Copy, Default)]
struct GroupPart {
    owner: Option<u32>,
    committed: u64,
    /// Next offset to hand out.
    position: u64,
    /// Handled up to here (exclusive) by the current owner.
    processed: u64,
    /// Every offset below this has been accounted for once (handled, skipped...).
    high: u64,
    in_flight: Option<Id>,
    waiting_retry: bool,
    /// The delivery number of the next fetch when it retries a failed message in
    /// place (0: a first delivery).
    retry_number: u32,
    /// Every offset below this has been handed out at least once (redeliveries).
    fetched: u64,
}

#[derive(Clone, Copy, Default)]
struct Instance {
    up: bool,
    /// In the consumer group (false after a crash is noticed, or a poll overrun).
    member: bool,
    unacked: u32,
    since_commit: u32,
}

#[derive(Default)]
struct ConsumerState {
    instances: Vec<Instance>,
    /// Processed-messages store: id -> end of retention, and retentions in order.
    processed: BTreeMap<u64, SimTime>,
    processed_order: VecDeque<(SimTime, u64)>,
    parts: Vec<GroupPart>,
    last_by_key: Vec<u64>,
}

/// A publish on its way to the broker.
struct Transit {
    publish: PublishId,
    msg: u64,
    op: u64,
    key: u32,
    /// Waiting for a confirm, if the publisher asked for one.
    pending: Option<(Id, u32)>,
}

#[derive(Clone, Copy)]
enum Publisher {
    Fiber(Id),
    Relay(Id),
}

/// A confirmed publish not yet confirmed.
struct Pending {
    publisher: Publisher,
    publish: PublishId,
    msg: u64,
    op: u64,
    key: u32,
    tries: u32,
}

/// A row of a transactional outbox waiting for the relay.
struct OutboxRow {
    msg: u64,
    op: u64,
    key: u32,
    /// Sent and waiting for its confirm.
    sent: bool,
}

#[derive(Default)]
struct Relay {
    rows: VecDeque<Id>,
    scheduled: bool,
}

struct IdemEntry {
    expires: SimTime,
    /// None while the first request runs.
    result: Option<Status>,
}

#[derive(Default)]
struct IdemStore {
    entries: BTreeMap<u64, IdemEntry>,
    order: VecDeque<(SimTime, u64)>,
}

/// The state of every broker, queue, topic and consumer, and the effects ledger.
pub(super) struct Async {
    down: Vec<bool>,
    rngs: Vec<Stream>,
    pub messages: Arena<Message>,
    pub deliveries: Arena<Delivery>,
    queues: Vec<QueueState>,
    partitions: Vec<Vec<Partition>>,
    consumers: Vec<ConsumerState>,
    consumer_rngs: Vec<Stream>,
    transit: Arena<Transit>,
    pending: Arena<Pending>,
    outbox: Arena<OutboxRow>,
    relays: Vec<Relay>,
    next_msg: u64,
    /// msg -> (published at, copies not yet handled, a copy failed).
    propagation: BTreeMap<u64, (SimTime, u32, bool)>,
    /// Effects and outbox rows of transactional handlers, committed at their end.
    txn_effects: Vec<(Id, EffectId)>,
    txn_outbox: Vec<(Id, PublishId, u64)>,
    /// Per effect, per operation: applications (saturating at 255).
    ledger: Vec<Vec<u8>>,
    /// Per operation: bit 0 answered ok, bit 1 answered with an error, bits 2..8 the
    /// workload + 1 (0 when there are more than 62 workloads).
    op_flags: Vec<u8>,
    next_op: u64,
    key_base: Vec<u64>,
    idem: Vec<IdemStore>,
    /// Per endpoint, its row in `consistency.idempotency` (idempotent endpoints only).
    idem_slot: Vec<usize>,
    /// Periodic events (ticks, auto-commit timers) and watchdog timers (ack, confirm,
    /// poll and session timeouts) in the heap: they alone do not keep the time series
    /// and auto-commits going once a run has drained.
    pub periodic: usize,
    /// The flow index of each consumer group (queues come first).
    group_flow: Vec<usize>,
    /// Deliveries the broker took back, so a late ack is known for what it is.
    stale_queue: BTreeMap<Id, QueueId>,
    /// Outbox relays to start polling (they have rows now).
    pub pending_relays: Vec<PublishId>,
    /// Deliveries whose instance left its group (poll overrun), with the instance.
    rejoin_after: Vec<(Id, ConsumerId, u32)>,
    /// Per fault: a broker outage in progress.
    pub broker_fault_active: Vec<bool>,
    /// The scenario uses transactions (effects, idempotency, outboxes): the paths
    /// that serve requests check for them only then.
    pub in_use: bool,
    /// Messages carry workload keys (some workload has a key space): ordering per key
    /// is checked only then.
    keyed_messages: bool,
}

/// The flows (queues, then one per consumer group on a topic), effects, sagas.
pub(super) fn new_consistency(spec: &Spec) -> Consistency {
    let mut c = Consistency::default();
    for q in &spec.queues {
        c.flows.push(FlowMetrics {
            name: q.name.clone(),
            kind: "queue",
            ..Default::default()
        });
    }
    for t in &spec.topics {
        for &g in &t.groups {
            c.flows.push(FlowMetrics {
                name: format!("{}@{}", t.name, spec.consumers[g.index()].name),
                kind: "group",
                ..Default::default()
            });
        }
        c.topics.push(TopicMetrics {
            name: t.name.clone(),
            partitions: t.partitions,
            ..Default::default()
        });
    }
    for e in &spec.exchanges {
        c.exchanges.push(ExchangeMetrics {
            name: e.name.clone(),
            kind: match e.kind {
                ExchangeKind::Direct => "direct",
                ExchangeKind::Fanout => "fanout",
                ExchangeKind::Topic => "topic",
            },
            ..Default::default()
        });
    }
    for cs in &spec.consumers {
        c.consumers.push(ConsumerMetrics {
            name: cs.name.clone(),
            subscription: match cs.subscription {
                Subscription::Queue(q) => spec.queues[q.index()].name.clone(),
                Subscription::Topic(t) => spec.topics[t.index()].name.clone(),
            },
            ..Default::default()
        });
    }
    for e in &spec.effects {
        c.effects.push(EffectMetrics {
            name: e.name.clone(),
            ..Default::default()
        });
    }
    for s in &spec.sagas {
        c.sagas.push(SagaMetrics {
            name: s.name.clone(),
            kind: "orchestrated",
            ..Default::default()
        });
    }
    for s in &spec.choreographies {
        c.sagas.push(SagaMetrics {
            name: s.name.clone(),
            kind: "choreography",
            ..Default::default()
        });
    }
    for e in &spec.endpoints {
        if e.idempotency.is_some() {
            c.idempotency.push(IdempotencyMetrics {
                endpoint: e.name.clone(),
                ..Default::default()
            });
        }
    }
    c
}

impl Async {
    pub fn new(spec: &Spec, seed: u64) -> Async {
        let mut key_base = Vec::new();
        let mut next_op = 0;
        for w in &spec.workloads {
            key_base.push(next_op);
            if w.operation_is_key {
                next_op += u64::from(w.keys.map_or(1, |k| k.count));
            }
        }
        let mut group_flow = vec![usize::MAX; spec.consumers.len()];
        let mut flow = spec.queues.len();
        for t in &spec.topics {
            for &g in &t.groups {
                group_flow[g.index()] = flow;
                flow += 1;
            }
        }
        let consumers = spec
            .consumers
            .iter()
            .map(|c| ConsumerState {
                instances: vec![
                    Instance {
                        up: true,
                        member: true,
                        ..Default::default()
                    };
                    c.instances as usize
                ],
                parts: match c.subscription {
                    Subscription::Topic(t) => {
                        vec![GroupPart::default(); spec.topics[t.index()].partitions as usize]
                    }
                    Subscription::Queue(_) => Vec::new(),
                },
                ..Default::default()
            })
            .collect();
        Async {
            down: vec![false; spec.brokers.len()],
            rngs: spec
                .brokers
                .iter()
                .map(|b| stream(seed, &format!("broker/{}", b.name)))
                .collect(),
            messages: Arena::default(),
            deliveries: Arena::default(),
            queues: spec.queues.iter().map(|_| QueueState::default()).collect(),
            partitions: spec
                .topics
                .iter()
                .map(|t| (0..t.partitions).map(|_| Partition::default()).collect())
                .collect(),
            consumers,
            consumer_rngs: spec
                .consumers
                .iter()
                .map(|c| stream(seed, &format!("consumer/{}", c.name)))
                .collect(),
            transit: Arena::default(),
            pending: Arena::default(),
            outbox: Arena::default(),
            relays: spec.publishes.iter().map(|_| Relay::default()).collect(),
            next_msg: 0,
            propagation: BTreeMap::new(),
            txn_effects: Vec::new(),
            txn_outbox: Vec::new(),
            ledger: vec![Vec::new(); spec.effects.len()],
            op_flags: Vec::new(),
            next_op,
            key_base,
            idem: spec
                .endpoints
                .iter()
                .map(|_| IdemStore::default())
                .collect(),
            idem_slot: spec
                .endpoints
                .iter()
                .scan(0, |n, e| {
                    let slot = *n;
                    *n += usize::from(e.idempotency.is_some());
                    Some(slot)
                })
                .collect(),
            periodic: 0,
            group_flow,
            stale_queue: BTreeMap::new(),
            pending_relays: Vec::new(),
            rejoin_after: Vec::new(),
            broker_fault_active: vec![false; spec.faults.len()],
            keyed_messages: spec.workloads.iter().any(|w| w.keys.is_some()),
            in_use: !spec.effects.is_empty()
                || !spec.publishes.is_empty()
                || spec.endpoints.iter().any(|e| e.idempotency.is_some()),
        }
    }

    /// The operation id of a new workload request.
    pub fn new_op(&mut self, spec: &WorkloadSpec, w: WorkloadId, key: u32) -> u64 {
        if spec.operation_is_key {
            self.key_base[w.index()] + u64::from(key)
        } else {
            let op = self.next_op;
            self.next_op += 1;
            op
        }
    }

    /// A workload request with operation `op` was answered.
    pub fn op_answered(&mut self, op: u64, w: WorkloadId, ok: bool) {
        if self.ledger.is_empty() {
            return;
        }
        let i = op as usize;
        if self.op_flags.len() <= i {
            self.op_flags.resize(i + 1, 0);
        }
        let tag = if w.index() < 62 {
            ((w.index() + 1) as u8) << 2
        } else {
            0
        };
        self.op_flags[i] |= tag | if ok { 1 } else { 2 };
    }
}

impl Dedupe {
    /// The id a processed-messages store keys a delivery by.
    fn id(self, msg: u64, op: u64) -> u64 {
        match self.by {
            DedupeBy::Message => msg,
            DedupeBy::Operation => op,
        }
    }
}

impl ConsumerState {
    /// Whether the store (pruned to its retention) holds `id`.
    fn processed(&mut self, id: u64, now: SimTime) -> bool {
        prune(&mut self.processed_order, &mut self.processed, now, |&t| t);
        self.processed.contains_key(&id)
    }
}

fn violates_order(last_by_key: &mut Vec<u64>, key: u32, msg: u64) -> bool {
    let k = key as usize;
    if last_by_key.len() <= k {
        last_by_key.resize(k + 1, 0);
    }
    // Stored as msg + 1 so that 0 means "none yet".
    let last = last_by_key[k];
    if msg + 1 < last {
        true
    } else {
        last_by_key[k] = msg + 1;
        false
    }
}

/// Drops the entries whose retention ended by `now`; `order` lists (end, id) in time
/// order, and an entry renewed since (a later end) stays.
fn prune<V>(
    order: &mut VecDeque<(SimTime, u64)>,
    map: &mut BTreeMap<u64, V>,
    now: SimTime,
    end: impl Fn(&V) -> SimTime,
) {
    while let Some(&(t, id)) = order.front() {
        if t > now {
            break;
        }
        order.pop_front();
        if map.get(&id).is_some_and(|v| end(v) == t) {
            map.remove(&id);
        }
    }
}

impl World {
    fn broker_delay(&mut self, b: BrokerId) -> SimDuration {
        let d = &self.spec.brokers[b.index()].latency;
        if d.is_constant_zero() {
            SimDuration::ZERO
        } else {
            d.sample(&mut self.asy.rngs[b.index()])
        }
    }

    /// Sends an event over a client-broker hop.
    fn broker_hop(&mut self, b: BrokerId, event: Event, sched: &mut Scheduler<Event>) {
        let delay = self.broker_delay(b);
        if delay.is_zero() {
            self.immediate.push_back(event);
        } else {
            sched.after(delay, event);
        }
    }

    fn flow_of_group(&self, c: ConsumerId) -> usize {
        self.asy.group_flow[c.index()]
    }

    // ---- publishing ----

    /// A `publish` step. Returns true when the fiber waits for a confirm.
    pub(super) fn publish_step(
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
            self.asy.txn_outbox.push((inv, p, msg));
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

    fn send_publish(
        &mut self,
        p: PublishId,
        msg: u64,
        op: u64,
        key: u32,
        pending: Option<(Id, u32)>,
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
    fn count_unaccepted(&mut self, p: PublishId, told: bool) {
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

    pub(super) fn on_publish_arrive(&mut self, t: Id, sched: &mut Scheduler<Event>) {
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
    fn route(
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

    fn expect_copies(&mut self, msg: u64, now: SimTime, copies: u32) {
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
    fn copy_settled(&mut self, msg: u64, failed: bool, now: SimTime) {
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

    #[allow(clippy::too_many_arguments)]
    fn enqueue(
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
    fn dead_letter(&mut self, m: Id, reason: Reason, now: SimTime, sched: &mut Scheduler<Event>) {
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
    fn pick_instance(&mut self, q: QueueId) -> Option<(ConsumerId, u32)> {
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

    pub(super) fn try_deliver(&mut self, q: QueueId, sched: &mut Scheduler<Event>) {
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
    fn take_back(&mut self, d: Id, counts: bool, now: SimTime, sched: &mut Scheduler<Event>) {
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
    fn release_delivery(&mut self, del: &Delivery, m: Id) -> QueueId {
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
    pub(super) fn on_settle(&mut self, d: Id, how: Settlement, sched: &mut Scheduler<Event>) {
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

    pub(super) fn on_requeue(&mut self, m: Id, sched: &mut Scheduler<Event>) {
        let q = self.asy.messages[m].queue;
        let qs = &mut self.asy.queues[q.index()];
        qs.delayed -= 1;
        qs.ready.push_back(m);
        self.try_deliver(q, sched);
    }

    pub(super) fn on_ack_timeout(&mut self, d: Id, sched: &mut Scheduler<Event>) {
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

    fn note_stale(&mut self, d: Id, q: QueueId) {
        self.asy.stale_queue.insert(d, q);
    }

    /// Every unacked queue delivery `pick` selects returns to its queue (a channel or
    /// connection closed). Returns how many.
    fn return_where(
        &mut self,
        pick: impl Fn(&Delivery, QueueId) -> bool,
        now: SimTime,
        sched: &mut Scheduler<Event>,
    ) -> u64 {
        let ds: Vec<(Id, QueueId)> = self
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
    fn return_all(
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

    // ---- consumers ----

    /// A delivery reaches its consumer instance: the handler starts (or waits for a
    /// worker), unless the processed-messages store already has it.
    pub(super) fn on_deliver(&mut self, d: Id, sched: &mut Scheduler<Event>) {
        let now = sched.now();
        let Some(del) = self.asy.deliveries.get(d) else {
            return;
        };
        let (c, instance) = (del.consumer, del.instance);
        let all = Rc::clone(&self.spec);
        let cspec = &all.consumers[c.index()];
        if !self.asy.consumers[c.index()].instances[instance as usize].up {
            return; // arrives at a dead process: the broker finds out by its own rules
        }
        if let Some(dd) = cspec.dedupe {
            let id = dd.id(del.msg, del.op);
            if self.asy.consumers[c.index()].processed(id, now) {
                self.metrics.consistency.consumers[c.index()].duplicates_skipped += 1;
                return self.handled(d, Outcome::Ok { degraded: false }, sched);
            }
        }
        let service = cspec.service;
        let endpoint = cspec.endpoint;
        let first = self.first_replica[service.index()];
        let r = first + instance;
        let measured = now >= self.warmup_end;
        self.metrics.endpoints[endpoint.index()].arrivals += u64::from(measured);
        if self.faults.service_faulted(service)
            && let Some(_status) = self.faults.on_arrival(&self.spec, first, service, r)
        {
            self.metrics.endpoints[endpoint.index()].faulted += u64::from(measured);
            return self.handled(d, Outcome::Failed(Status::Unavailable), sched);
        }
        let (op, key, del_msg) = (del.op, del.key, del.msg);
        let replica = &self.replicas[r as usize];
        let starts_now = replica.busy < replica.workers;
        let inv = Invocation {
            endpoint,
            replica: r,
            attempt: Id::PLACEHOLDER,
            edge: EdgeId(u32::MAX),
            delivery: d,
            msg: del_msg,
            attempt_measured: measured,
            arrived_at: now,
            deadline: NO_DEADLINE,
            worker_since: starts_now.then_some(now),
            busy_ns: 0,
            key,
            op,
            messages: 1,
            queued: !starts_now,
            retry_after: None,
            root: Id::PLACEHOLDER,
            degraded: false,
            measured,
            fibers: 1,
        };
        let i = self.admit(inv, starts_now, SimDuration::ZERO, sched);
        self.asy.deliveries[d].handler = Some(i);
        if let Some(limit) = cspec.max_poll_interval
            && matches!(cspec.subscription, Subscription::Topic(_))
        {
            self.asy.periodic += 1;
            sched.after(limit, Event::PollTimeout(d));
        }
    }

    /// A consumer's handler is over (or skipped): settle the delivery.
    pub(super) fn handled(&mut self, d: Id, outcome: Outcome, sched: &mut Scheduler<Event>) {
        let Some(del) = self.asy.deliveries.get(d) else {
            // Taken back meanwhile (ack timeout, rebalance): the ack goes nowhere.
            if let Some(q) = self.asy.stale_queue.remove(&d) {
                self.metrics.consistency.flows[q.index()].stale_acks +=
                    u64::from(matches!(outcome, Outcome::Ok { .. }));
            }
            return;
        };
        let c = del.consumer;
        let cm = &mut self.metrics.consistency.consumers[c.index()];
        let ok = matches!(outcome, Outcome::Ok { .. });
        if ok {
            cm.handled_ok += 1;
        } else {
            cm.handled_failed += 1;
        }
        let spec = &self.spec.consumers[c.index()];
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
                let b = self.spec.queues[q.index()].broker;
                self.broker_hop(b, Event::Settle { delivery: d, how }, sched);
            }
            Subscription::Topic(_) => self.log_handled(d, ok, sched),
        }
    }

    /// Commits a transactional handler's effects and outbox rows, or drops them.
    /// Returns false when a consumer's processed-messages store already had the
    /// message: the handler's work is rolled back (the store's unique key).
    pub(super) fn end_transaction(&mut self, i: Id, inv: &Invocation, ok: bool, now: SimTime) {
        let mut commit = ok;
        // The delivery may have been taken back meanwhile (ack timeout, lost
        // connection): the transaction commits all the same; only the ack is lost.
        if ok
            && let Some(c) = self.consumer_of(inv)
            && let Some(dd) = self.spec.consumers[c.index()].dedupe
        {
            let id = dd.id(inv.msg, inv.op);
            let cs = &mut self.asy.consumers[c.index()];
            if cs.processed(id, now) {
                self.metrics.consistency.consumers[c.index()].rolled_back += 1;
                commit = false;
            } else {
                let until = now.checked_add(dd.retention).unwrap_or(SimTime::MAX);
                cs.processed.insert(id, until);
                cs.processed_order.push_back((until, id));
            }
        }
        if !self.asy.txn_effects.is_empty() {
            let mut k = 0;
            while k < self.asy.txn_effects.len() {
                if self.asy.txn_effects[k].0 == i {
                    let (_, e) = self.asy.txn_effects.swap_remove(k);
                    if commit {
                        self.apply_effect(e, inv.op);
                    }
                } else {
                    k += 1;
                }
            }
        }
        if !self.asy.txn_outbox.is_empty() {
            let mut rows = Vec::new();
            self.asy.txn_outbox.retain(|&(x, p, msg)| {
                if x == i {
                    rows.push((p, msg));
                    false
                } else {
                    true
                }
            });
            // Rows keep the order the handler wrote them in.
            rows.sort_by_key(|&(_, msg)| msg);
            if commit {
                for (p, msg) in rows {
                    let row = self.asy.outbox.insert(OutboxRow {
                        msg,
                        op: inv.op,
                        key: inv.key,
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
    }

    /// Whether an invocation's effects wait for its end (an idempotent consumer or
    /// endpoint keeps them in one transaction with its store).
    pub(super) fn transactional(&self, inv: &Invocation) -> bool {
        match self.consumer_of(inv) {
            Some(c) => self.spec.consumers[c.index()].dedupe.is_some(),
            None => self.spec.endpoints[inv.endpoint.index()]
                .idempotency
                .is_some(),
        }
    }

    /// The consumer an invocation runs in, if it handles a delivery.
    fn consumer_of(&self, inv: &Invocation) -> Option<ConsumerId> {
        if inv.delivery == Id::PLACEHOLDER {
            return None;
        }
        self.spec.services[self.spec.endpoints[inv.endpoint.index()].service.index()].consumer
    }

    pub(super) fn effect_step(&mut self, inv: Id, e: EffectId) {
        let i = &self.invocations[inv];
        if self.transactional(i) {
            self.asy.txn_effects.push((inv, e));
        } else {
            let op = i.op;
            self.apply_effect(e, op);
        }
    }

    fn apply_effect(&mut self, e: EffectId, op: u64) {
        let l = &mut self.asy.ledger[e.index()];
        let i = op as usize;
        if l.len() <= i {
            l.resize(i + 1, 0);
        }
        l[i] = l[i].saturating_add(1);
        self.metrics.consistency.effects[e.index()].applied += 1;
    }

    /// Drops the transaction of an invocation that will never end (its replica crashed).
    pub(super) fn abort_transaction(&mut self, i: Id) {
        self.asy.txn_effects.retain(|&(x, _)| x != i);
        self.asy.txn_outbox.retain(|&(x, _, _)| x != i);
    }

    // ---- confirms and the outbox relay ----

    pub(super) fn on_confirm(
        &mut self,
        pending: Id,
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

    pub(super) fn on_republish(&mut self, pending: Id, sched: &mut Scheduler<Event>) {
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

    /// Whether a watchdog timer still guards something (else it is stale).
    pub(super) fn timer_live(&self, event: &Event) -> bool {
        match *event {
            Event::AckTimeout(d) | Event::PollTimeout(d) => self.asy.deliveries.contains(d),
            Event::ConfirmTimeout { pending, .. } => self.asy.pending.contains(pending),
            _ => true,
        }
    }

    /// A fiber waiting on a confirm is cancelled: whatever the broker says is ignored.
    pub(super) fn forget_publish(&mut self, pending: Id) {
        self.asy.pending.remove(pending);
    }

    pub(super) fn schedule_relays(&mut self, sched: &mut Scheduler<Event>) {
        while let Some(p) = self.asy.pending_relays.pop() {
            let every = self.spec.publishes[p.index()].relay_interval;
            sched.after(every, Event::RelayTick(p));
        }
    }

    pub(super) fn on_relay_tick(&mut self, p: PublishId, sched: &mut Scheduler<Event>) {
        let rows: Vec<Id> = self.asy.relays[p.index()].rows.iter().copied().collect();
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

    // ---- endpoint idempotency keys ----

    /// A request reaches an idempotent endpoint: Some(status) if it is answered from
    /// the store (a replay, or a conflict with the first request still running).
    pub(super) fn idempotency_check(
        &mut self,
        e: EndpointId,
        op: u64,
        now: SimTime,
    ) -> Option<Status> {
        let slot = self.asy.idem_slot[e.index()];
        let store = &mut self.asy.idem[e.index()];
        prune(&mut store.order, &mut store.entries, now, |x| x.expires);
        match store.entries.get(&op) {
            Some(IdemEntry {
                result: Some(s), ..
            }) => {
                let s = *s;
                self.metrics.consistency.idempotency[slot].replayed += 1;
                Some(s)
            }
            Some(IdemEntry { result: None, .. }) => {
                self.metrics.consistency.idempotency[slot].conflicts += 1;
                Some(Status::Unavailable)
            }
            None => {
                store.entries.insert(
                    op,
                    IdemEntry {
                        expires: SimTime::MAX,
                        result: None,
                    },
                );
                None
            }
        }
    }

    /// The first request with this key is answered: its result is kept for replays.
    pub(super) fn idempotency_store(
        &mut self,
        e: EndpointId,
        op: u64,
        status: Status,
        now: SimTime,
    ) {
        let retention = self.spec.endpoints[e.index()]
            .idempotency
            .expect("idempotent");
        let until = now.checked_add(retention).unwrap_or(SimTime::MAX);
        let store = &mut self.asy.idem[e.index()];
        store.entries.insert(
            op,
            IdemEntry {
                expires: until,
                result: Some(status),
            },
        );
        store.order.push_back((until, op));
        let slot = self.asy.idem_slot[e.index()];
        self.metrics.consistency.idempotency[slot].stored += 1;
    }

    /// The first request never finished (its replica crashed): the key is free again.
    pub(super) fn idempotency_forget(&mut self, e: EndpointId, op: u64) {
        let store = &mut self.asy.idem[e.index()];
        if store.entries.get(&op).is_some_and(|x| x.result.is_none()) {
            store.entries.remove(&op);
        }
    }

    // ---- logs and consumer groups ----

    fn apply_retention(&mut self, t: TopicId, part: u32, now: SimTime) {
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
    pub(super) fn try_fetch(&mut self, c: ConsumerId, part: u32, sched: &mut Scheduler<Event>) {
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

    fn log_handled(&mut self, d: Id, ok: bool, sched: &mut Scheduler<Event>) {
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

    fn commit_partition(&mut self, c: ConsumerId, part: u32) {
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

    fn commit_instance(&mut self, c: ConsumerId, instance: u32) {
        for p in 0..self.asy.consumers[c.index()].parts.len() {
            if self.asy.consumers[c.index()].parts[p].owner == Some(instance) {
                self.commit_partition(c, p as u32);
            }
        }
    }

    pub(super) fn on_refetch(&mut self, c: ConsumerId, part: u32, sched: &mut Scheduler<Event>) {
        self.asy.consumers[c.index()].parts[part as usize].waiting_retry = false;
        self.try_fetch(c, part, sched);
    }

    pub(super) fn on_auto_commit(&mut self, c: ConsumerId, sched: &mut Scheduler<Event>) {
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
    fn rebalance(&mut self, c: ConsumerId, sched: &mut Scheduler<Event>) {
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
    pub(super) fn start_groups(&mut self, sched: &mut Scheduler<Event>) {
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
    fn account_skipped(&mut self) {
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

    pub(super) fn on_poll_timeout(&mut self, d: Id, sched: &mut Scheduler<Event>) {
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
    pub(super) fn maybe_rejoin(&mut self, d: Id, sched: &mut Scheduler<Event>) {
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

    // ---- faults: consumer crashes and broker outages ----

    /// A consumer instance crashed or went down.
    pub(super) fn consumer_down(
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

    pub(super) fn consumer_up(
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

    pub(super) fn on_session_timeout(
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

    pub(super) fn broker_down(&mut self, b: BrokerId, sched: &mut Scheduler<Event>) -> u64 {
        let now = sched.now();
        self.asy.down[b.index()] = true;
        // Connections drop: every unacked delivery of its queues returns.
        let spec = Rc::clone(&self.spec);
        self.return_where(|_, q| spec.queues[q.index()].broker == b, now, sched)
    }

    pub(super) fn broker_up(&mut self, b: BrokerId, sched: &mut Scheduler<Event>) {
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

    fn faults_touch_broker(&mut self, b: BrokerId) {
        for (i, f) in self.spec.faults.iter().enumerate() {
            if let FaultTarget::Broker(x) = f.target
                && x == b
                && self.asy.broker_fault_active[i]
            {
                self.faults.affected[i] += 1;
            }
        }
    }

    // ---- the end of the run ----

    /// Closes the consistency books: what is still in flight, the effects ledger,
    /// sagas judged from effects.
    pub(super) fn finish_consistency(&mut self) {
        self.assert_deliveries_placed();
        self.account_skipped();
        let spec = Rc::clone(&self.spec);
        let c = &mut self.metrics.consistency;
        for m in self.asy.messages.values() {
            c.flows[m.queue.index()].in_flight_end += 1;
        }
        for (ci, cs) in spec.consumers.iter().enumerate() {
            let Subscription::Topic(t) = cs.subscription else {
                continue;
            };
            let flow = self.asy.group_flow[ci];
            for (p, gp) in self.asy.consumers[ci].parts.iter().enumerate() {
                let end = self.asy.partitions[t.index()][p].end();
                c.flows[flow].in_flight_end += end.saturating_sub(gp.high);
                c.flows[flow].lag_end += end.saturating_sub(gp.committed);
            }
        }
        c.not_propagated += self.asy.propagation.len() as u64;
        let ops = self
            .asy
            .ledger
            .iter()
            .map(Vec::len)
            .chain(std::iter::once(self.asy.op_flags.len()))
            .max()
            .unwrap_or(0);
        for (e, effect) in spec.effects.iter().enumerate() {
            let l = &self.asy.ledger[e];
            let m = &mut c.effects[e];
            for op in 0..ops {
                let n = u64::from(l.get(op).copied().unwrap_or(0));
                let flags = self.asy.op_flags.get(op).copied().unwrap_or(0);
                let workload = (flags >> 2) as usize;
                let expected = flags & 1 == 1
                    && workload > 0
                    && effect
                        .expected_for
                        .contains(&WorkloadId(workload as u32 - 1));
                if n == 0 && !expected {
                    continue;
                }
                m.operations += 1;
                match n {
                    0 => m.never += 1,
                    1 => m.exactly_once += 1,
                    _ => m.duplicated += 1,
                }
                m.max_count = m.max_count.max(n);
                if n > 0 && flags & 3 == 2 {
                    m.despite_failure += 1;
                }
            }
        }
        let first = spec.sagas.len();
        for (s, saga) in spec.choreographies.iter().enumerate() {
            let m = &mut c.sagas[first + s];
            let count =
                |e: EffectId, op: usize| self.asy.ledger[e.index()].get(op).copied().unwrap_or(0);
            for op in 0..ops {
                let Some(&(first_step, _)) = saga.steps.first() else {
                    break;
                };
                if count(first_step, op) == 0 {
                    continue;
                }
                m.started += 1;
                let done: Vec<bool> = saga.steps.iter().map(|&(e, _)| count(e, op) > 0).collect();
                if done.iter().all(|&x| x)
                    && saga
                        .steps
                        .iter()
                        .all(|&(_, comp)| comp.is_none_or(|x| count(x, op) == 0))
                {
                    m.completed += 1;
                    continue;
                }
                // Failed part way: every applied step must have been compensated.
                let all_undone = saga
                    .steps
                    .iter()
                    .zip(&done)
                    .all(|(&(_, comp), &d)| !d || comp.is_none_or(|x| count(x, op) > 0));
                if all_undone {
                    m.compensated += 1;
                } else {
                    m.compensation_failed += 1;
                }
            }
        }
    }

    /// Every queue message is in exactly one place: ready in its queue, waiting out a
    /// retry backoff, or delivered (one live delivery); every instance's prefetch count
    /// is its live deliveries. Run once, at the end (it scans everything).
    fn assert_deliveries_placed(&self) {
        let mut placed: BTreeMap<Id, u32> = BTreeMap::new();
        let mut unacked = vec![0u32; self.asy.queues.len()];
        let mut by_instance: Vec<Vec<u32>> = self
            .asy
            .consumers
            .iter()
            .map(|c| vec![0; c.instances.len()])
            .collect();
        for del in self.asy.deliveries.values() {
            if let Source::Queue(m) = del.source {
                *placed.entry(m).or_default() += 1;
                unacked[self.asy.messages[m].queue.index()] += 1;
                by_instance[del.consumer.index()][del.instance as usize] += 1;
            }
        }
        for qs in &self.asy.queues {
            for &m in &qs.ready {
                *placed.entry(m).or_default() += 1;
            }
        }
        let mut delayed = vec![0u32; self.asy.queues.len()];
        for m in self.asy.messages.ids() {
            match placed.get(&m) {
                Some(1) => {}
                None => delayed[self.asy.messages[m].queue.index()] += 1,
                Some(n) => panic!("a message is in {n} places at once"),
            }
        }
        for (q, qs) in self.asy.queues.iter().enumerate() {
            assert_eq!(qs.unacked, unacked[q], "queue {q}: unacked count");
            assert_eq!(qs.delayed, delayed[q], "queue {q}: messages in no place");
        }
        for (c, cs) in self.asy.consumers.iter().enumerate() {
            if matches!(self.spec.consumers[c].subscription, Subscription::Queue(_)) {
                for (i, inst) in cs.instances.iter().enumerate() {
                    assert_eq!(inst.unacked, by_instance[c][i], "consumer {c}/{i}: prefetch count");
                }
            }
        }
    }

    /// The depth of every queue and the lag of every group, for the time series.
    pub(super) fn sample_lag(&mut self, start: SimTime, end: SimTime) {
        let mut rows = Vec::new();
        for (q, qs) in self.asy.queues.iter().enumerate() {
            rows.push(LagRow {
                start,
                end,
                flow: q as u32,
                depth: qs.ready.len() as u64 + u64::from(qs.unacked) + u64::from(qs.delayed),
            });
        }
        for (ci, cs) in self.spec.consumers.iter().enumerate() {
            let Subscription::Topic(t) = cs.subscription else {
                continue;
            };
            let flow = self.asy.group_flow[ci];
            let lag: u64 = self.asy.consumers[ci]
                .parts
                .iter()
                .enumerate()
                .map(|(p, gp)| {
                    self.asy.partitions[t.index()][p]
                        .end()
                        .saturating_sub(gp.committed)
                })
                .sum();
            let f = &mut self.metrics.consistency.flows[flow];
            f.max_depth = f.max_depth.max(lag);
            rows.push(LagRow {
                start,
                end,
                flow: flow as u32,
                depth: lag,
            });
        }
        rows.sort_by_key(|r| r.flow);
        self.metrics.consistency.lag_rows.extend(rows);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Enqueued {
    Yes,
    Duplicate,
    Refused,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reason {
    Rejected,
    Expired,
    Maxlen,
    DeliveryLimit,
}
