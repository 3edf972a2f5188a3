//! Recorded requests, as the model hands them over: spans on tracks (a workload's
//! client, a service replica), their parent links, and the hops between them. Times are
//! simulated nanoseconds; `report::trace` renders them as Chrome trace-event JSON.

/// Where a span happens: one track per workload's client, per service replica (a
/// consumer's instances are its replicas), and per broker queue or topic partition
/// (and group).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Track {
    Client { workload: String },
    Replica { service: String, replica: u32 },
    Broker { broker: String, place: String },
}

/// A value shown with a span (Perfetto's "Arguments").
#[derive(Clone, Debug, PartialEq)]
pub enum Arg {
    Int(u64),
    Ms(f64),
    Text(String),
    Flag(bool),
}

#[derive(Clone, Debug)]
pub struct Span {
    /// The span this one is part of (an index into the same trace's spans); a parent
    /// comes before its children and contains them in time.
    pub parent: Option<u32>,
    pub track: Track,
    pub name: String,
    /// "request", "call", "attempt", "backoff", "connection", "network", "invocation",
    /// "queue_wait", "work", "parallel", "branch", "publish"; on a broker: "message",
    /// "queued", "delivery", "backoff".
    pub cat: &'static str,
    pub start_ns: u64,
    pub end_ns: u64,
    pub args: Vec<(&'static str, Arg)>,
}

/// A hop from one span to another: a request or a reply crossing a link; a publish, a
/// delivery, a settlement or a dead-lettering crossing a broker hop.
#[derive(Clone, Debug)]
pub struct Flow {
    pub name: &'static str,
    pub from: u32,
    pub from_ns: u64,
    pub to: u32,
    pub to_ns: u64,
}

/// One root request (a workload's call) and everything it caused while it lasted.
#[derive(Clone, Debug)]
pub struct RequestTrace {
    pub workload: String,
    /// 1 for the workload's first request.
    pub number: u64,
    pub spans: Vec<Span>,
    pub flows: Vec<Flow>,
}

/// The traces of a run.
#[derive(Clone, Debug, Default)]
pub struct Traces {
    pub traces: Vec<RequestTrace>,
    /// Selected requests not kept because `MAX_TRACES` were already kept.
    pub dropped: u64,
}

/// The most requests a run keeps traces of (a sample rate too high for a long run
/// would otherwise keep every request in memory).
pub const MAX_TRACES: usize = 10_000;
