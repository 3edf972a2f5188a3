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
    /// End the handler with `status` with probability `p`, optionally asking the caller
    /// to wait before retrying (Retry-After / gRPC pushback).
    Fail {
        status: Status,
        p: f64,
        retry_after: Option<SimDuration>,
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
    pub bucket: SimDuration,
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
