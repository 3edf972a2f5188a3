//! The static description of a system to simulate: services, endpoints and their
//! handler programs, the network, workloads. Built by the scenario layer (which knows
//! TOML); the model knows nothing about where it came from.

use super::dist::Dist;
use super::policy::PolicySpec;
use super::status::{Status, Translation};
use crate::engine::{SimDuration, SimTime};

macro_rules! id {
    ($name:ident) => {
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub u32);
        impl $name {
            pub fn index(self) -> usize {
                self.0 as usize
            }
        }
    };
}
id!(ServiceId);
id!(EndpointId);
id!(WorkloadId);
id!(EdgeId);
id!(LinkId);
id!(SeqId);
id!(ParallelId);
id!(DistId);
id!(PolicyId);
id!(BrokerId);
id!(QueueId);
id!(ExchangeId);
id!(TopicId);
id!(ConsumerId);
id!(PublishId);
id!(EffectId);
id!(SagaId);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Balancer {
    RoundRobin,
    Random,
    LeastOutstanding,
    PowerOfTwoChoices,
}

/// Whether a request keeps its worker while the handler waits on a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkerHold {
    /// Thread per request: the worker stays blocked during calls. Slow callees fill the
    /// caller's pool, which is how cascading failures spread upstream.
    Held,
    /// Event loop: the worker is let go during calls and parallel blocks; the handler
    /// queues again (ahead of the capacity check) to continue.
    Released,
}

#[derive(Clone, Debug)]
pub struct ServiceSpec {
    pub name: String,
    pub replicas: u32,
    pub workers: u32,
    /// Requests that may wait for a worker, per replica; one more is rejected unavailable.
    pub queue_capacity: u32,
    pub balancer: Balancer,
    pub hold: WorkerHold,
    /// Deadline-aware server (gRPC): a request whose propagated deadline has passed is
    /// dropped from the queue unserved, and one in progress is abandoned at its deadline.
    pub drop_expired: bool,
    pub endpoints: Vec<EndpointId>,
    /// Set for the service a consumer runs as (its instances are the replicas).
    pub consumer: Option<ConsumerId>,
}

#[derive(Clone, Debug)]
pub struct EndpointSpec {
    pub service: ServiceId,
    /// "service/endpoint"
    pub name: String,
    pub handler: SeqId,
    /// Payload sizes, for protocol encode/decode costs.
    pub request_kb: f64,
    pub response_kb: f64,
    /// Idempotency keys (Stripe semantics): the first result per operation is stored
    /// for this long and replayed to retries; effects commit with it.
    pub idempotency: Option<SimDuration>,
}

/// One instruction of a handler program.
#[derive(Clone, Copy, Debug)]
pub enum Step {
    /// Hold the worker for a sampled duration.
    Work(DistId),
    /// Server streaming: send `messages` messages, one per sampled `interval`; the
    /// call ends with the last one (the caller's timeout covers the whole stream).
    Stream { messages: u32, interval: DistId },
    /// Synchronous call; the handler continues when it is answered.
    Call(CallSite),
    /// Run branches concurrently and join them.
    Parallel(ParallelId),
    /// Send a message to a broker (waiting for its confirm if the site asks for one).
    Publish(PublishId),
    /// Apply a business effect for the request's operation (recorded in the ledger).
    Effect(EffectId),
    /// An orchestrated saga: actions in order, compensations in reverse on failure.
    Saga(SagaId),
    /// End the handler with `status` with probability `p`, optionally asking the caller
    /// to wait before retrying, or not to retry (Retry-After / gRPC pushback).
    Fail {
        status: Status,
        p: f64,
        retry_after: Option<super::policy::Pushback>,
    },
}

#[derive(Clone, Copy, Debug)]
pub struct CallSite {
    pub edge: EdgeId,
    /// Overrides the policy's per-try timeout for this call.
    pub timeout: Option<SimDuration>,
    /// Maps the callee's failure status to the status this handler fails with.
    pub translate: Translation,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Join {
    /// Every branch must succeed; the first failure fails the join and cancels the rest.
    All,
    /// Wait for every branch; fail if a required one failed, else succeed (degraded if an
    /// optional one failed).
    AllSettled,
    /// The first success wins and cancels the rest; fails when every branch failed.
    Any,
    /// Succeeds once `n` branches succeeded (cancelling the rest); fails as soon as `n`
    /// successes are out of reach.
    Quorum(u32),
}

#[derive(Clone, Debug)]
pub struct Branch {
    pub body: SeqId,
    pub required: bool,
}

#[derive(Clone, Debug)]
pub struct ParallelSpec {
    pub join: Join,
    pub branches: Vec<Branch>,
}

/// A caller -> endpoint pair: where its metrics go and which link its messages take.
#[derive(Clone, Debug)]
pub struct EdgeSpec {
    /// "caller->service/endpoint"
    pub name: String,
    pub target: EndpointId,
    pub link: LinkId,
    /// The client policy of every call on this edge.
    pub policy: PolicyId,
}

/// The network between one caller and one service, both directions.
#[derive(Clone, Debug)]
pub struct LinkSpec {
    /// "caller->service", also the name of its random stream.
    pub name: String,
    /// One-way latency, sampled independently for the request and for the reply.
    pub latency: Dist,
    /// Probability that a message (request or reply) is dropped.
    pub loss: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArrivalPattern {
    /// Exponential gaps.
    Poisson,
    /// Exactly 1/rate apart.
    Constant,
}

/// From `start` on, arrivals come at `rate_per_s` (0 pauses them).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateSegment {
    pub start: SimTime,
    pub rate_per_s: f64,
}

#[derive(Clone, Debug)]
pub enum Load {
    Open {
        pattern: ArrivalPattern,
        /// Sorted by start; the first starts at zero.
        segments: Vec<RateSegment>,
    },
    Closed {
        users: u32,
        think: Dist,
    },
}

/// The keys requests carry (a customer, a product...): caches are keyed by them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KeySpace {
    pub count: u32,
    /// Zipf exponent: a few keys are hot. None: every key equally likely.
    pub zipf: Option<f64>,
}

#[derive(Clone, Debug)]
pub struct WorkloadSpec {
    pub keys: Option<KeySpace>,
    pub name: String,
    pub edge: EdgeId,
    /// Overrides the policy's per-try timeout.
    pub timeout: Option<SimDuration>,
    pub load: Load,
    /// The operation id of a request is its key (a resubmitted form: same key, same
    /// operation) rather than the request itself.
    pub operation_is_key: bool,
}

/// Limits on what a run holds at once, each checked between events every
/// `model::PROGRESS_EVERY` events. A limit left `None` is sized to `memory_budget`.
#[derive(Clone, Copy, Debug)]
pub struct HoldLimits {
    /// Calls in flight, every hop (a workload's request and the calls its handlers make).
    pub requests_in_flight: Option<u64>,
    /// Message copies in queues and topic log entries not yet removed by retention.
    pub messages_in_flight: Option<u64>,
    /// Events waiting in the engine's queue.
    pub pending_events: Option<u64>,
    /// The bytes the unset limits are sized to.
    pub memory_budget: u64,
}

#[derive(Clone, Debug)]
pub struct Spec {
    pub seed: u64,
    pub warmup: SimDuration,
    /// Arrivals stop and the run ends here (in-flight requests are reported as such).
    pub duration: Option<SimDuration>,
    /// Arrivals stop after this many requests in all; the run then drains.
    pub max_requests: Option<u64>,
    pub max_events: u64,
    /// The most events in a row at one simulated instant (a zero-time loop beyond it).
    pub max_events_at_one_instant: u64,
    /// What a run may hold at once before it is stopped as runaway.
    pub holds: HoldLimits,
    pub bucket: SimDuration,
    /// Record where each workload's time goes (`[report] attribution`).
    pub attribution: bool,
    pub services: Vec<ServiceSpec>,
    pub endpoints: Vec<EndpointSpec>,
    pub workloads: Vec<WorkloadSpec>,
    pub edges: Vec<EdgeSpec>,
    pub links: Vec<LinkSpec>,
    /// Handler programs: a sequence is a list of steps run one after the other.
    pub seqs: Vec<Vec<Step>>,
    pub parallels: Vec<ParallelSpec>,
    pub dists: Vec<Dist>,
    pub policies: Vec<PolicySpec>,
    pub faults: Vec<FaultSpec>,
    /// Extra measurements over a time window (for expectations such as "the error
    /// rate of the last 30 s").
    pub windows: Vec<WindowSpec>,
    pub brokers: Vec<BrokerSpec>,
    pub queues: Vec<QueueSpec>,
    pub exchanges: Vec<ExchangeSpec>,
    pub topics: Vec<TopicSpec>,
    pub consumers: Vec<ConsumerSpec>,
    pub publishes: Vec<PublishSpec>,
    pub effects: Vec<EffectSpec>,
    pub sagas: Vec<SagaSpec>,
    /// Choreographed sagas, judged from the effects ledger.
    pub choreographies: Vec<ChoreographySpec>,
}

impl Spec {
    /// The client policy of every call on `edge`.
    pub fn policy_of(&self, edge: EdgeId) -> &PolicySpec {
        &self.policies[self.edges[edge.index()].policy.index()]
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowTarget {
    Workload(WorkloadId),
    Endpoint(EndpointId),
}

/// Answers in [from, until) of one workload or endpoint, by the time they were given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowSpec {
    pub target: WindowTarget,
    pub from: SimTime,
    pub until: SimTime,
}

#[derive(Clone, Debug)]
pub enum FaultKind {
    /// Replicas refuse connections: every request is answered `unavailable` at once.
    Down,
    /// Replicas crash at `from` (work in progress and queued requests are lost, their
    /// callers only see timeouts) and restart empty at `until`; refused while down.
    Crash,
    /// Every `work` step takes this much longer.
    Slow(Dist),
    /// Requests fail at arrival with `status`, with probability `p`.
    Error { status: Status, p: f64 },
    /// Every message between the two sides is dropped, both ways.
    Partition,
    /// Messages on the link are dropped with this probability (on top of its own loss).
    LinkLoss(f64),
    /// Messages on the link take this much longer.
    LinkLatency(Dist),
    /// The broker is unreachable: publishes fail (or are lost without confirms),
    /// connections drop (unacked deliveries return to their queues), nothing is
    /// delivered until it is back.
    BrokerDown,
}

#[derive(Clone, Debug)]
pub enum FaultTarget {
    /// A service, or one replica of it.
    Service {
        service: ServiceId,
        replica: Option<u32>,
    },
    /// The links between two parties, both directions.
    Links(Vec<LinkId>),
    Broker(BrokerId),
}

#[derive(Clone, Debug)]
pub struct FaultSpec {
    /// Human-readable, e.g. "slow c 30s..60s".
    pub label: String,
    pub kind: FaultKind,
    pub target: FaultTarget,
    pub from: SimTime,
    pub until: SimTime,
}

// ---- brokers, consumers, effects, sagas ----

/// Which broker's behaviour the defaults and the redelivery rules follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    RabbitMq,
    Kafka,
    Sqs,
    BullMq,
}

impl Flavor {
    pub fn name(self) -> &'static str {
        match self {
            Flavor::RabbitMq => "rabbitmq",
            Flavor::Kafka => "kafka",
            Flavor::Sqs => "sqs",
            Flavor::BullMq => "bullmq",
        }
    }
}

#[derive(Clone, Debug)]
pub struct BrokerSpec {
    pub name: String,
    pub flavor: Flavor,
    /// One way, for every hop between a client and the broker.
    pub latency: Dist,
    /// Probability that a publish is lost on its way to the broker.
    pub loss: f64,
}

/// What an expired ack timeout does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckTimeout {
    /// RabbitMQ consumer_timeout: the channel is closed, so every unacked delivery of
    /// that consumer instance returns to the queue.
    CloseChannel,
    /// SQS visibility timeout, BullMQ lock expiry: that message alone reappears.
    Reappear,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overflow {
    /// RabbitMQ default: the oldest ready message is dropped (dead-lettered `maxlen`).
    DropHead,
    /// The new message is refused (a nack with confirms; lost without).
    RejectPublish,
}

#[derive(Clone, Debug)]
pub struct QueueSpec {
    /// "broker/queue"
    pub name: String,
    pub broker: BrokerId,
    pub ack_timeout: Option<SimDuration>,
    pub on_ack_timeout: AckTimeout,
    /// A crashed consumer's deliveries return at once (its connection closes, RabbitMQ)
    /// or only when their ack timeout passes (SQS visibility, BullMQ lock).
    pub requeue_on_crash: bool,
    /// Returns (failures, timeouts, crashes) before a message is dead-lettered.
    pub delivery_limit: Option<u32>,
    /// Whether nack(requeue) counts against the delivery limit (RabbitMQ 4.3: no).
    pub nack_counts: bool,
    pub dead_letter: Option<QueueId>,
    pub ttl: Option<SimDuration>,
    pub max_length: Option<u32>,
    pub overflow: Overflow,
    /// SQS FIFO: messages of one group (the message key) are handed out one at a time,
    /// in order.
    pub fifo: bool,
    /// SQS FIFO deduplication: a message whose operation was published within the
    /// window is accepted and dropped.
    pub dedup_window: Option<SimDuration>,
    /// Consumers subscribed (filled by the builder).
    pub consumers: Vec<ConsumerId>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExchangeKind {
    Direct,
    Fanout,
    Topic,
}

#[derive(Clone, Debug)]
pub struct ExchangeSpec {
    /// "broker/exchange"
    pub name: String,
    pub broker: BrokerId,
    pub kind: ExchangeKind,
}

#[derive(Clone, Debug)]
pub struct TopicSpec {
    /// "broker/topic"
    pub name: String,
    pub broker: BrokerId,
    pub partitions: u32,
    pub retention: Option<SimDuration>,
    /// Consumer groups reading it (filled by the builder).
    pub groups: Vec<ConsumerId>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subscription {
    Queue(QueueId),
    Topic(TopicId),
}

/// What a consumer does with a message its handler failed on.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OnFailure {
    /// nack(requeue=true): back to the queue (near its old position), at once.
    Requeue,
    /// reject(requeue=false): dead-lettered `rejected` (dropped without a DLQ).
    Reject,
    /// Tried again after a backoff, up to `attempts` deliveries in all (BullMQ
    /// attempts; in place for a log); then dead-lettered `delivery_limit`.
    Retry {
        attempts: u32,
        backoff: super::backoff::Backoff,
    },
    /// Logs: commit past it and go on (the message is dropped).
    Skip,
    /// Neither ack nor nack: the ack timeout (SQS visibility) brings it back.
    Abandon,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Commit {
    /// enable.auto.commit: what was handled is committed every interval (and on revoke).
    Auto(SimDuration),
    /// After each message.
    Each,
    /// After every N messages handled by an instance.
    Batch(u32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartFrom {
    Earliest,
    Latest,
    Offset(u64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DedupeBy {
    /// The message id (redeliveries and republished copies of one message).
    Message,
    /// The operation the message belongs to.
    Operation,
}

/// An idempotent consumer: a processed-messages store written in the same
/// transaction as the handler's effects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dedupe {
    pub by: DedupeBy,
    pub retention: SimDuration,
}

#[derive(Clone, Debug)]
pub struct ConsumerSpec {
    pub name: String,
    /// The service it runs as: one replica per instance, `concurrency` workers each.
    pub service: ServiceId,
    pub endpoint: EndpointId,
    pub subscription: Subscription,
    pub instances: u32,
    /// Unacked deliveries per instance (0: unlimited).
    pub prefetch: u32,
    pub on_failure: OnFailure,
    pub dedupe: Option<Dedupe>,
    pub commit: Commit,
    pub assignor: super::routing::Assignor,
    pub start: StartFrom,
    /// A crashed group member is noticed (and its partitions reassigned) this late.
    pub session_timeout: SimDuration,
    /// A handler that runs longer makes its instance leave the group.
    pub max_poll_interval: Option<SimDuration>,
}

#[derive(Clone, Debug)]
pub enum PublishTarget {
    /// Through an exchange (routing resolved when the scenario is built), or straight
    /// to one queue.
    Queues {
        exchange: Option<ExchangeId>,
        queues: Vec<QueueId>,
    },
    Topic(TopicId),
}

#[derive(Clone, Debug)]
pub struct PublishSpec {
    pub broker: BrokerId,
    pub target: PublishTarget,
    pub routing_key: String,
    /// A topic publish with a `key`: the partition Kafka's partitioner gives that key
    /// (without one, each message's partition comes from the request's key).
    pub partition: Option<u32>,
    /// Publisher confirms: wait for the broker; a failure is seen (and retried).
    pub confirms: bool,
    /// Transactional outbox: stored with the handler's success, published later by a
    /// relay, at least once.
    pub outbox: bool,
    /// Publishes tried again after a nack or a missing confirm (same message).
    pub retries: u32,
    pub retry_backoff: SimDuration,
    pub confirm_timeout: SimDuration,
    /// How often the outbox relay looks for rows to publish.
    pub relay_interval: SimDuration,
}

#[derive(Clone, Debug)]
pub struct EffectSpec {
    pub name: String,
    /// Workloads whose successful requests must apply it exactly once.
    pub expected_for: Vec<WorkloadId>,
}

#[derive(Clone, Debug)]
pub struct SagaSpec {
    pub name: String,
    /// (action, compensation) in order.
    pub steps: Vec<(CallSite, Option<CallSite>)>,
}

#[derive(Clone, Debug)]
pub struct ChoreographySpec {
    pub name: String,
    /// The effects of the saga's steps, in order, each with its compensating effect.
    pub steps: Vec<(EffectId, Option<EffectId>)>,
}
