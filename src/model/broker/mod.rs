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

mod books;
mod consumer;
mod log;
mod outage;
mod propagation;
mod publish;
mod queue;

use super::arena::Arena;
use super::retention::ExpiringIds;
use super::spec::*;
use super::status::Status;
use super::world::{
    DeliveryId, Event, FiberId, InvocationId, MessageId, OutboxRowId, PendingId, TransitId,
};
use crate::engine::{Scheduler, SimDuration, SimTime, Stream, stream};
use crate::metrics::consistency::Consistency;
pub(super) use books::new_consistency;
pub(super) use publish::Published;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// What a broker call is given: the spec, the clock and the future (events it
/// schedules, and zero-latency hops on the immediate queue), the consistency books it
/// writes, and where it leaves the commands only the `World` may carry out.
pub(in crate::model) struct Ctx<'a> {
    pub spec: &'a Spec,
    pub sched: &'a mut Scheduler<Event>,
    pub immediate: &'a mut VecDeque<Event>,
    pub metrics: &'a mut Consistency,
    pub commands: &'a mut Vec<Command>,
    /// The span recorder, when a run traces requests (`cx.trace_*` hooks).
    pub trace: Option<&'a mut crate::model::trace::Recorder>,
}

impl Ctx<'_> {
    pub fn now(&self) -> SimTime {
        self.sched.now()
    }

    /// Arms a watchdog (a queue's ack timeout, a publish's confirm timeout, a
    /// consumer's poll interval) as a timer: one of them (30 minutes under RabbitMQ) is
    /// armed at every delivery and nearly always stale when it fires, and a heap full of
    /// them made every other event climb over them (half a broker run's instructions).
    pub fn watchdog(&mut self, delay: SimDuration, event: Event) {
        self.sched.after_timer(delay, event);
    }
}

/// What the broker asks of the world, which owns fibers, invocations and the fault
/// books: carried out in order once the broker call returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::model) enum Command {
    /// A confirmed publish was accepted: the fiber that waits for it continues.
    Resume { fiber: FiberId },
    /// A confirmed publish failed after its retries: the fiber that waits for it fails.
    Fail { fiber: FiberId, status: Status },
    /// A queue took delivery back: the copy still waiting for a worker in its consumer
    /// (the invocation `handler`) leaves with its prefetch slot.
    Discard {
        delivery: DeliveryId,
        handler: InvocationId,
    },
    /// A publish reached broker `broker` while it was down (the fault's `affected`).
    Refused { broker: BrokerId },
}

/// One copy of a message in one queue.
struct Message {
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
enum Source {
    Queue(MessageId),
    Log { partition: u32, offset: u64 },
}

/// A message handed to a consumer instance and not yet settled.
struct Delivery {
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
    pub handler: Option<InvocationId>,
}

#[derive(Default)]
struct QueueState {
    ready: VecDeque<MessageId>,
    unacked: u32,
    /// Waiting out a retry backoff.
    delayed: u32,
    /// FIFO: message groups with a message in flight.
    busy_groups: BTreeSet<u32>,
    /// FIFO deduplication: the operations published within the window.
    dedup: ExpiringIds,
    next_instance: u32,
    /// The instances of all its consumers (fixed by the spec).
    instances: u32,
    /// Per key, the latest message id handled (ordering check).
    last_by_key: Vec<u64>,
    /// The earliest `Expire` event pending for this queue.
    expiry_at: Option<SimTime>,
}

impl QueueState {
    fn new(q: &QueueSpec, spec: &Spec) -> QueueState {
        QueueState {
            instances: q
                .consumers
                .iter()
                .map(|c| spec.consumers[c.index()].instances)
                .sum(),
            ..QueueState::default()
        }
    }
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
    in_flight: Option<DeliveryId>,
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
    /// The topic a group reads and that topic's broker (0 for a queue's consumer): the
    /// spec's answer, kept here because every fetch asks.
    topic: TopicId,
    broker: BrokerId,
    instances: Vec<Instance>,
    /// Processed-messages store: the ids handled within the retention.
    processed: ExpiringIds,
    parts: Vec<GroupPart>,
    last_by_key: Vec<u64>,
}

impl ConsumerState {
    fn new(c: &ConsumerSpec, spec: &Spec) -> ConsumerState {
        let (topic, broker, partitions) = match c.subscription {
            Subscription::Topic(t) => {
                let topic = &spec.topics[t.index()];
                (t, topic.broker, topic.partitions as usize)
            }
            Subscription::Queue(_) => (TopicId::default(), BrokerId::default(), 0),
        };
        ConsumerState {
            topic,
            broker,
            instances: vec![
                Instance {
                    up: true,
                    member: true,
                    ..Default::default()
                };
                c.instances as usize
            ],
            parts: vec![GroupPart::default(); partitions],
            ..Default::default()
        }
    }
}

/// A publish on its way to the broker.
struct Transit {
    publish: PublishId,
    msg: u64,
    op: u64,
    key: u32,
    /// Waiting for a confirm, if the publisher asked for one.
    pending: Option<(PendingId, u32)>,
}

#[derive(Clone, Copy)]
enum Publisher {
    /// A handler's `publish` step: the fiber that waits for the confirm.
    Step(FiberId),
    Relay(OutboxRowId),
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
    rows: VecDeque<OutboxRowId>,
    scheduled: bool,
}

/// The state of every broker, queue, topic and consumer.
pub(super) struct Async {
    down: Vec<bool>,
    rngs: Vec<Stream>,
    /// Per broker, its hop's latency when constant (nothing to draw).
    fixed_latency: Vec<Option<SimDuration>>,
    /// Per topic, the partition of each workload key seen so far (`NO_PARTITION`: not
    /// yet): a keyed record's partition is a hash of the key's decimal spelling, the
    /// same for every record of that key.
    key_partition: Vec<Vec<u32>>,
    messages: Arena<Message, MessageId>,
    deliveries: Arena<Delivery, DeliveryId>,
    queues: Vec<QueueState>,
    partitions: Vec<Vec<Partition>>,
    consumers: Vec<ConsumerState>,
    consumer_rngs: Vec<Stream>,
    transit: Arena<Transit, TransitId>,
    pending: Arena<Pending, PendingId>,
    outbox: Arena<OutboxRow, OutboxRowId>,
    relays: Vec<Relay>,
    next_msg: u64,
    /// The messages with copies not yet settled.
    propagation: propagation::Propagation,
    /// Periodic events (ticks, auto-commit timers) and watchdog timers (ack, confirm,
    /// poll and session timeouts) in the heap: they alone do not keep the time series
    /// and auto-commits going once a run has drained.
    pub periodic: usize,
    /// The flow index of each consumer group (queues come first).
    group_flow: Vec<usize>,
    /// Deliveries the broker took back, so a late ack is known for what it is.
    stale_queue: BTreeMap<DeliveryId, QueueId>,
    /// Outbox relays to start polling (they have rows now).
    pub pending_relays: Vec<PublishId>,
    /// Deliveries whose instance left its group (poll overrun), with the instance.
    rejoin_after: Vec<(DeliveryId, ConsumerId, u32)>,
    /// Per fault: a broker outage in progress.
    pub broker_fault_active: Vec<bool>,
    /// Messages carry workload keys (some workload has a key space): ordering per key
    /// is checked only then.
    keyed_messages: bool,
}

impl Async {
    pub fn new(spec: &Spec, seed: u64) -> Async {
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
            .map(|c| ConsumerState::new(c, spec))
            .collect();
        Async {
            down: vec![false; spec.brokers.len()],
            rngs: spec
                .brokers
                .iter()
                .map(|b| stream(seed, &format!("broker/{}", b.name)))
                .collect(),
            fixed_latency: spec
                .brokers
                .iter()
                .map(|b| match &b.latency {
                    super::dist::Dist::Constant(d) => Some(*d),
                    _ => None,
                })
                .collect(),
            key_partition: spec.topics.iter().map(|_| Vec::new()).collect(),
            messages: Arena::default(),
            deliveries: Arena::default(),
            queues: spec
                .queues
                .iter()
                .map(|q| QueueState::new(q, spec))
                .collect(),
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
            propagation: propagation::Propagation::default(),
            periodic: 0,
            group_flow,
            stale_queue: BTreeMap::new(),
            pending_relays: Vec::new(),
            rejoin_after: Vec::new(),
            broker_fault_active: vec![false; spec.faults.len()],
            keyed_messages: spec.workloads.iter().any(|w| w.keys.is_some()),
        }
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
        self.processed.expire(now);
        self.processed.contains(id)
    }
}

#[inline]
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

impl Async {
    #[inline]
    fn broker_delay(&mut self, b: BrokerId, spec: &Spec) -> SimDuration {
        match self.fixed_latency[b.index()] {
            Some(d) => d,
            None => spec.brokers[b.index()]
                .latency
                .sample(&mut self.rngs[b.index()]),
        }
    }

    /// Sends an event over a client-broker hop.
    #[inline]
    fn broker_hop(&mut self, b: BrokerId, event: Event, cx: &mut Ctx) {
        let delay = self.broker_delay(b, cx.spec);
        if delay.is_zero() {
            cx.immediate.push_back(event);
        } else {
            cx.sched.after(delay, event);
        }
    }

    fn flow_of_group(&self, c: ConsumerId) -> usize {
        self.group_flow[c.index()]
    }

    /// Whether a watchdog timer still guards something (else it is stale).
    pub(in crate::model) fn timer_live(&self, event: &Event, now: SimTime, spec: &Spec) -> bool {
        match *event {
            Event::AckTimeout(d) | Event::PollTimeout(d) => self.deliveries.contains(d),
            Event::ConfirmTimeout { pending, .. } => self.pending.contains(pending),
            Event::Expire(q) => self.head_expired(q, now, spec),
            _ => true,
        }
    }

    /// Message copies held (ready, delivered and unacked, waiting out a retry).
    pub(in crate::model) fn messages_held(&self) -> usize {
        self.messages.len()
    }

    /// Whether a delivery is still out (not settled, not taken back).
    pub(in crate::model) fn delivery_live(&self, d: DeliveryId) -> bool {
        self.deliveries.contains(d)
    }

    /// The fiber waiting for a confirmed publish, if a fiber published it.
    pub(in crate::model) fn publishing_fiber(&self, pending: PendingId) -> Option<FiberId> {
        match self.pending.get(pending)?.publisher {
            Publisher::Step(f) => Some(f),
            Publisher::Relay(_) => None,
        }
    }

    /// A queue delivery taken back was discarded in its consumer before it ran, so no
    /// late ack of it will come.
    pub(in crate::model) fn forget_stale(&mut self, d: DeliveryId) {
        self.stale_queue.remove(&d);
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
