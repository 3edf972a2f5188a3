//! The largest sizes a scenario may ask for, checked when it is validated (a located
//! error, exit 2), so that `validate` never accepts what `run` cannot allocate. Each is
//! far above what a study of a service mesh needs, and low enough that the structures
//! it sizes fit in memory on a laptop. ARCHITECTURE.md ("Bounds") lists them all.

/// Replicas of one service (each has its own queue, balancer slot and random stream).
pub const MAX_REPLICAS: u32 = 10_000;
/// Workers of one replica.
pub const MAX_WORKERS: u32 = 1_000_000;
/// A replica's queue capacity: what it may hold waiting, per replica.
pub const MAX_QUEUE: u32 = 10_000_000;
/// Services and consumers together (each costs its endpoints' histograms and series).
pub const MAX_SERVICES: usize = 10_000;
/// Closed-loop users of one workload (each is a pending event from the start).
pub const MAX_USERS: u32 = 10_000_000;
/// An open-loop workload's rate, per second: one request per nanosecond.
pub const MAX_RATE: f64 = 1e9;
/// Keys of one workload's key space (a table of that size is kept for Zipf draws).
pub const MAX_KEYS: u32 = 10_000_000;
/// Messages of one `stream` step (sent from one handler).
pub const MAX_STREAM_MESSAGES: u32 = 1_000_000;
/// Partitions of one topic (each has its log and, per group, its offsets).
pub const MAX_PARTITIONS: u32 = 100_000;
/// Instances of one consumer (each is a replica of the consumer's service).
pub const MAX_INSTANCES: u32 = 10_000;
/// Handlers an instance of a consumer runs at a time.
pub const MAX_CONCURRENCY: u32 = 1_000_000;
/// Calls in a count-based breaker window (kept as a ring of that size per edge).
pub const MAX_BREAKER_WINDOW: u32 = 1_000_000;
/// Buckets of a time-based breaker window (allocated per edge).
pub const MAX_BREAKER_BUCKETS: u32 = 100_000;
