//! The scenario file as written: serde structs that mirror the TOML, with spans kept
//! for every value a later check may need to point at. Nothing here is validated
//! beyond TOML syntax, field names and types.

use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

pub type Name = Spanned<String>;

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawScenario {
    pub simulation: Spanned<RawSimulation>,
    #[serde(default)]
    pub report: RawReport,
    #[serde(default)]
    pub network: RawNetwork,
    #[serde(default)]
    pub services: BTreeMap<Name, Spanned<RawService>>,
    #[serde(default)]
    pub workloads: BTreeMap<Name, Spanned<RawWorkload>>,
    #[serde(default)]
    pub policies: BTreeMap<Name, Spanned<RawPolicy>>,
    #[serde(default)]
    pub faults: Vec<Spanned<RawFault>>,
    #[serde(default)]
    pub expect: Vec<Spanned<RawExpect>>,
    #[serde(default)]
    pub brokers: BTreeMap<Name, Spanned<RawBroker>>,
    #[serde(default)]
    pub consumers: BTreeMap<Name, Spanned<RawConsumer>>,
    #[serde(default)]
    pub effects: BTreeMap<Name, Spanned<RawEffect>>,
    #[serde(default)]
    pub sagas: BTreeMap<Name, Spanned<RawChoreography>>,
    pub explore: Option<Spanned<RawExplore>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawBroker {
    pub preset: Option<Spanned<String>>,
    pub latency: Option<Spanned<RawDist>>,
    pub loss: Option<Spanned<f64>>,
    #[serde(default)]
    pub queues: BTreeMap<Name, Spanned<RawQueue>>,
    #[serde(default)]
    pub exchanges: BTreeMap<Name, Spanned<RawExchange>>,
    #[serde(default)]
    pub topics: BTreeMap<Name, Spanned<RawTopic>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawQueue {
    pub ack_timeout: Option<Spanned<String>>,
    pub on_ack_timeout: Option<Spanned<String>>,
    pub requeue_on_crash: Option<Spanned<bool>>,
    pub delivery_limit: Option<Spanned<i64>>,
    pub nack_counts: Option<Spanned<bool>>,
    pub dead_letter: Option<Name>,
    pub ttl: Option<Spanned<String>>,
    pub max_length: Option<Spanned<i64>>,
    pub overflow: Option<Spanned<String>>,
    pub fifo: Option<Spanned<bool>>,
    pub dedup_window: Option<Spanned<String>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawExchange {
    #[serde(rename = "type")]
    pub kind: Spanned<String>,
    #[serde(default)]
    pub bindings: Vec<Spanned<RawBinding>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawBinding {
    pub queue: Name,
    pub key: Option<Spanned<String>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawTopic {
    pub partitions: Option<Spanned<i64>>,
    pub retention: Option<Spanned<String>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawConsumer {
    pub queue: Option<Spanned<String>>,
    pub topic: Option<Spanned<String>>,
    pub instances: Option<Spanned<i64>>,
    pub prefetch: Option<Spanned<i64>>,
    pub concurrency: Option<Spanned<i64>>,
    pub on_failure: Option<Spanned<String>>,
    pub attempts: Option<Spanned<i64>>,
    pub backoff: Option<Spanned<String>>,
    pub delay: Option<Spanned<String>>,
    pub dedupe: Option<Spanned<RawDedupe>>,
    pub commit: Option<Spanned<String>>,
    pub commit_interval: Option<Spanned<String>>,
    pub commit_batch: Option<Spanned<i64>>,
    pub assignment: Option<Spanned<String>>,
    pub start: Option<Spanned<String>>,
    pub start_offset: Option<Spanned<i64>>,
    pub session_timeout: Option<Spanned<String>>,
    pub max_poll_interval: Option<Spanned<String>>,
    pub steps: Spanned<Vec<Spanned<RawStep>>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawDedupe {
    pub by: Option<Spanned<String>>,
    pub retention: Option<Spanned<String>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawEffect {
    pub expected_for: Option<Spanned<Vec<Name>>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawChoreography {
    pub steps: Spanned<Vec<Spanned<RawChoreoStep>>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawChoreoStep {
    pub effect: Name,
    pub compensation: Option<Name>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawSagaStep {
    pub action: Spanned<String>,
    pub compensation: Option<Spanned<String>>,
    pub policy: Option<Spanned<String>>,
    pub compensation_policy: Option<Spanned<String>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawExplore {
    pub seeds: Option<Spanned<i64>>,
    /// [earliest start, latest end] of drawn faults.
    pub window: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub faults: Vec<Spanned<RawExploreFault>>,
    pub exactly_once: Option<Spanned<Vec<Name>>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawExploreFault {
    pub kind: Spanned<String>,
    pub service: Option<Spanned<String>>,
    pub broker: Option<Spanned<String>>,
    pub between: Option<Spanned<Vec<Spanned<String>>>>,
    pub loss: Option<Spanned<f64>>,
    /// At most this many faults of this template per schedule.
    pub max: Option<Spanned<i64>>,
    /// [shortest, longest] fault.
    pub length: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    pub preset: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub deadline: Option<Spanned<String>>,
    pub propagate_deadline: Option<Spanned<bool>>,
    pub fallback: Option<Spanned<String>>,
    pub retry: Option<Spanned<RawRetry>>,
    pub breaker: Option<Spanned<RawBreaker>>,
    pub bulkhead: Option<Spanned<RawBulkhead>>,
    pub rate_limit: Option<Spanned<RawRateLimit>>,
    pub hedge: Option<Spanned<RawHedge>>,
    pub protocol: Option<Spanned<RawProtocol>>,
    pub cache: Option<Spanned<RawCache>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    pub ttl: Spanned<String>,
    pub change_rate: Option<Spanned<f64>>,
}

/// A protocol: a preset name ("rest_json", "grpc") or a table.
#[derive(Debug)]
pub enum RawProtocol {
    Preset(String),
    Table(Box<RawProtocolTable>),
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawProtocolTable {
    pub preset: Option<Spanned<String>>,
    pub overhead: Option<Spanned<String>>,
    pub encode_per_kb: Option<Spanned<String>>,
    pub decode_per_kb: Option<Spanned<String>>,
    pub connection: Option<Spanned<String>>,
    pub setup: Option<Spanned<String>>,
    pub pool: Option<Spanned<String>>,
    pub max_connections: Option<Spanned<i64>>,
    pub connections: Option<Spanned<i64>>,
    pub max_streams: Option<Spanned<i64>>,
}

impl<'de> Deserialize<'de> for RawProtocol {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawProtocol;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("\"rest_json\", \"grpc\", or a table such as { preset = \"grpc\", overhead = \"80us\" }")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<RawProtocol, E> {
                Ok(RawProtocol::Preset(s.to_owned()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<RawProtocol, A::Error> {
                RawProtocolTable::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(|t| RawProtocol::Table(Box::new(t)))
            }
        }
        d.deserialize_any(V)
    }
}

pub type Statuses = Spanned<Vec<Spanned<String>>>;

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawRetry {
    pub max_attempts: Option<Spanned<i64>>,
    pub retries: Option<Spanned<i64>>,
    pub backoff: Option<Spanned<String>>,
    pub base: Option<Spanned<String>>,
    pub multiplier: Option<Spanned<f64>>,
    pub cap: Option<Spanned<String>>,
    pub jitter: Option<Spanned<String>>,
    pub jitter_range: Option<Spanned<Vec<f64>>>,
    pub on: Option<Statuses>,
    pub pushback: Option<Spanned<bool>>,
    pub pushback_any_status: Option<Spanned<bool>>,
    pub budget: Option<Spanned<RawBudget>>,
    pub throttle: Option<Spanned<RawThrottle>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawBudget {
    pub percent: Spanned<f64>,
    pub min_per_s: Option<Spanned<f64>>,
    pub ttl: Option<Spanned<String>>,
    pub min_concurrency: Option<Spanned<i64>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawThrottle {
    pub max_tokens: Spanned<f64>,
    pub token_ratio: Spanned<f64>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawBreaker {
    pub window: Option<Spanned<String>>,
    pub size: Option<Spanned<i64>>,
    pub duration: Option<Spanned<String>>,
    pub buckets: Option<Spanned<i64>>,
    pub failure_rate: Option<Spanned<f64>>,
    pub compare: Option<Spanned<String>>,
    pub slow_call_duration: Option<Spanned<String>>,
    pub slow_call_rate: Option<Spanned<f64>>,
    pub minimum_calls: Option<Spanned<i64>>,
    pub evaluate: Option<Spanned<String>>,
    pub count_rejections: Option<Spanned<bool>>,
    pub open_for: Option<Spanned<String>>,
    pub open_growth: Option<Spanned<f64>>,
    pub open_max: Option<Spanned<String>>,
    pub half_open_probes: Option<Spanned<i64>>,
    pub half_open: Option<Spanned<String>>,
    pub reset_on_transition: Option<Spanned<bool>>,
    pub count_at: Option<Spanned<String>>,
    pub late_outcomes: Option<Spanned<String>>,
    pub buckets_start: Option<Spanned<String>>,
    pub open_end: Option<Spanned<String>>,
    pub failure_on: Option<Statuses>,
    pub timeouts_are_failures: Option<Spanned<bool>>,
    pub rejections_are_failures: Option<Spanned<bool>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawBulkhead {
    pub max_concurrent: Option<Spanned<i64>>,
    pub max_wait: Option<Spanned<String>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    pub rate: Option<Spanned<f64>>,
    pub burst: Option<Spanned<f64>>,
    pub max_wait: Option<Spanned<String>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawHedge {
    pub delay: Option<Spanned<String>>,
    pub max_attempts: Option<Spanned<i64>>,
    pub non_fatal: Option<Statuses>,
    pub throttle: Option<Spanned<RawThrottle>>,
    pub pushback: Option<Spanned<bool>>,
    pub follows: Option<Spanned<String>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawFault {
    pub kind: Spanned<String>,
    pub service: Option<Spanned<String>>,
    pub broker: Option<Spanned<String>>,
    pub replica: Option<Spanned<i64>>,
    pub between: Option<Spanned<Vec<Spanned<String>>>>,
    pub from: Spanned<String>,
    pub until: Spanned<String>,
    pub extra: Option<Spanned<RawDist>>,
    pub status: Option<Spanned<String>>,
    pub p: Option<Spanned<f64>>,
    pub loss: Option<Spanned<f64>>,
    pub latency: Option<Spanned<RawDist>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawExpect {
    pub check: Spanned<String>,
    pub from: Option<Spanned<String>>,
    pub until: Option<Spanned<String>>,
    /// With many seeds: "mean", "all_seeds" or "ci95".
    pub over: Option<Spanned<String>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawSimulation {
    pub name: Option<Spanned<String>>,
    pub description: Option<String>,
    pub seed: Option<Spanned<i64>>,
    pub duration: Option<Spanned<String>>,
    pub requests: Option<Spanned<i64>>,
    pub warmup: Option<Spanned<String>>,
    pub max_events: Option<Spanned<i64>>,
    pub max_events_at_one_instant: Option<Spanned<i64>>,
    pub max_requests_in_flight: Option<Spanned<i64>>,
    pub max_messages_in_flight: Option<Spanned<i64>>,
    pub max_pending_events: Option<Spanned<i64>>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct RawReport {
    pub bucket: Option<Spanned<String>>,
    /// Where each workload's p99 and p50 go (`report.json`'s `attribution`).
    pub attribution: Option<Spanned<bool>>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct RawNetwork {
    pub latency: Option<Spanned<RawDist>>,
    pub loss: Option<Spanned<f64>>,
    #[serde(default)]
    pub links: Vec<Spanned<RawLink>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawLink {
    pub from: Name,
    pub to: Name,
    pub latency: Option<Spanned<RawDist>>,
    pub loss: Option<Spanned<f64>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    pub replicas: Option<Spanned<i64>>,
    pub workers: Option<Spanned<i64>>,
    pub queue: Option<Spanned<i64>>,
    pub balancer: Option<Spanned<String>>,
    pub worker_during_calls: Option<Spanned<String>>,
    pub drop_expired: Option<Spanned<bool>>,
    #[serde(default)]
    pub endpoints: BTreeMap<Name, Spanned<RawEndpoint>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawEndpoint {
    pub steps: Spanned<Vec<Spanned<RawStep>>>,
    pub request_kb: Option<Spanned<f64>>,
    pub response_kb: Option<Spanned<f64>>,
    pub translate: Option<Spanned<BTreeMap<Name, Spanned<String>>>>,
    pub idempotency: Option<Spanned<String>>,
}

/// One step; which kind it is depends on which of `work`, `call`, `parallel`, `fail`,
/// `steps` is present (exactly one must be).
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawStep {
    pub work: Option<Spanned<RawDist>>,
    pub call: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub translate: Option<Spanned<BTreeMap<Name, Spanned<String>>>>,
    pub parallel: Option<Spanned<Vec<Spanned<RawStep>>>>,
    pub join: Option<Spanned<String>>,
    pub quorum: Option<Spanned<i64>>,
    pub fail: Option<Spanned<String>>,
    pub p: Option<Spanned<f64>>,
    pub retry_after: Option<Spanned<String>>,
    pub policy: Option<Spanned<String>>,
    pub stream: Option<Spanned<i64>>,
    pub interval: Option<Spanned<RawDist>>,
    pub steps: Option<Spanned<Vec<Spanned<RawStep>>>>,
    pub required: Option<Spanned<bool>>,
    pub publish: Option<Spanned<String>>,
    pub key: Option<Spanned<String>>,
    pub confirms: Option<Spanned<bool>>,
    pub outbox: Option<Spanned<bool>>,
    pub retries: Option<Spanned<i64>>,
    pub effect: Option<Spanned<String>>,
    pub saga: Option<Spanned<Vec<Spanned<RawSagaStep>>>>,
    pub name: Option<Spanned<String>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawWorkload {
    pub target: Spanned<String>,
    pub arrivals: Option<Spanned<String>>,
    pub rate: Option<Spanned<f64>>,
    pub schedule: Option<Spanned<Vec<Spanned<RawSegment>>>>,
    pub users: Option<Spanned<i64>>,
    pub think: Option<Spanned<RawDist>>,
    pub timeout: Option<Spanned<String>>,
    pub policy: Option<Spanned<String>>,
    pub keys: Option<Spanned<i64>>,
    pub zipf: Option<Spanned<f64>>,
    pub operation: Option<Spanned<String>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawSegment {
    pub at: Spanned<String>,
    pub rate: Spanned<f64>,
}

/// A distribution: a duration string (a constant) or a table with `dist = KIND`.
#[derive(Debug)]
pub enum RawDist {
    Constant(String),
    Table(Box<RawDistTable>),
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawDistTable {
    pub dist: Spanned<String>,
    pub value: Option<Spanned<String>>,
    pub min: Option<Spanned<String>>,
    pub max: Option<Spanned<String>>,
    pub mean: Option<Spanned<String>>,
    pub stddev: Option<Spanned<String>>,
    pub median: Option<Spanned<String>>,
    pub p99: Option<Spanned<String>>,
    pub mu: Option<Spanned<f64>>,
    pub sigma: Option<Spanned<f64>>,
    pub scale: Option<Spanned<String>>,
    pub shape: Option<Spanned<f64>>,
    pub samples: Option<Spanned<Vec<Spanned<String>>>>,
    pub bins: Option<Spanned<Vec<Spanned<RawBin>>>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawBin {
    pub from: Spanned<String>,
    pub to: Spanned<String>,
    pub weight: Spanned<f64>,
}

impl<'de> Deserialize<'de> for RawDist {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawDist;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(
                    "a duration such as \"50ms\" (a constant) or a table such as \
                     { dist = \"exponential\", mean = \"50ms\" }",
                )
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<RawDist, E> {
                Ok(RawDist::Constant(s.to_owned()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<RawDist, A::Error> {
                RawDistTable::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(|t| RawDist::Table(Box::new(t)))
            }
        }
        d.deserialize_any(V)
    }
}
