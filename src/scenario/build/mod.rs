//! Stage two: check a raw scenario and build the model's `Spec` from it. Every problem
//! becomes a diagnostic that points at the value at fault; building goes on past the
//! first problem so that one run reports them all.

use super::bounds;
use super::diag::Diagnostic;
use super::duration;
use super::raw::*;
use crate::engine::{SimDuration, SimTime};
use crate::model::backoff::{Backoff, BackoffKind, Jitter};
use crate::model::breaker::{BreakerSpec, BreakerWindow, Compare, Evaluate, SlowCall, Transition};
use crate::model::policy::{
    BulkheadSpec, Fallback, HedgeSpec, PRESETS, PolicySpec, Pool, ProtocolSpec, RateLimitSpec,
    RetryBudget, RetrySpec, StatusSet, Throttle,
};
use crate::model::spec::*;
use crate::model::{Dist, Status, Translation};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

mod brokers;
mod bucket;
mod consumers;
mod dist;
mod effects;
mod expect;
mod faults;
mod handlers;
mod network;
mod policies;
mod services;
mod values;
mod workloads;
use toml::Spanned;

pub const DEFAULT_SEED: u64 = 1;
pub const DEFAULT_MAX_EVENTS: u64 = 2_000_000_000;
/// Far above any burst at one instant a bundled scenario makes, far below the minutes
/// a zero-time loop takes to reach `DEFAULT_MAX_EVENTS`.
pub const DEFAULT_MAX_EVENTS_AT_ONE_INSTANT: u64 = 10_000_000;
/// What the unset hold limits are sized to when no budget is given (`meshsim run`
/// gives its `--max-memory`, or three quarters of the machine's memory).
pub const DEFAULT_MEMORY_BUDGET: u64 = 4 << 30;
pub const DEFAULT_QUEUE: u32 = 1000;
/// `[report] attribution` unless set: on, it costs little (see docs/traces.md).
pub const DEFAULT_ATTRIBUTION: bool = true;

/// What the scenario layer adds to the model's spec: names and descriptions for people.
pub struct Built {
    pub name: String,
    pub description: String,
    pub spec: Spec,
    pub expectations: Vec<ExpectSpec>,
}

/// A parsed `[[expect]]`: its text, the check, and the window it reads, if any.
#[derive(Clone, Debug)]
pub struct ExpectSpec {
    pub text: String,
    pub check: crate::report::expect::Check,
    /// Index into `Spec::windows`.
    pub window: Option<usize>,
    /// Where the check is written, for errors found later (unknown paths).
    pub span: Range<usize>,
    /// The statistic checked when the scenario runs at many seeds.
    pub over: crate::report::expect::Over,
}

pub fn build(raw: &RawScenario, default_name: &str) -> Result<Built, Vec<Diagnostic>> {
    let mut b = Builder::default();
    let built = b.scenario(raw, default_name);
    if b.diags.is_empty() {
        Ok(built.expect("no diagnostics means a complete build"))
    } else {
        Err(b.diags)
    }
}

type Graph = BTreeMap<EndpointId, Vec<(EndpointId, Range<usize>)>>;

struct LinkOverride {
    latency: Option<Dist>,
    loss: Option<f64>,
    span: Range<usize>,
    used: bool,
}

/// `[simulation]` and `[report]`, checked; None where a value is wrong.
struct Settings {
    name: String,
    seed: Option<u64>,
    /// Outer: whether `duration` is written.
    run_length: Option<Option<SimDuration>>,
    /// Outer: whether `requests` is written.
    requests: Option<Option<u64>>,
    warmup: Option<SimDuration>,
    max_events: Option<u64>,
    max_events_at_one_instant: Option<u64>,
    holds: Option<HoldLimits>,
    /// Inner None: not written (the default follows from the run's length).
    bucket: Option<Option<SimDuration>>,
}

#[derive(Default)]
struct Builder {
    diags: Vec<Diagnostic>,
    services: Vec<ServiceSpec>,
    endpoints: Vec<EndpointSpec>,
    seqs: Vec<Vec<Step>>,
    parallels: Vec<ParallelSpec>,
    dists: Vec<Dist>,
    edges: Vec<EdgeSpec>,
    links: Vec<LinkSpec>,
    service_ids: BTreeMap<String, ServiceId>,
    endpoint_ids: BTreeMap<String, EndpointId>,
    edge_ids: BTreeMap<(String, EndpointId), EdgeId>,
    link_ids: BTreeMap<(String, ServiceId), LinkId>,
    link_overrides: BTreeMap<(String, String), LinkOverride>,
    default_latency: Option<Dist>,
    default_loss: f64,
    graph: Graph,
    policies: Vec<PolicySpec>,
    policy_ids: BTreeMap<String, PolicyId>,
    default_policy: PolicyId,
    /// The span of the call site that fixed each edge's policy, for conflicts.
    edge_policy_span: BTreeMap<EdgeId, Range<usize>>,
    faults: Vec<FaultSpec>,
    windows: Vec<WindowSpec>,
    expectations: Vec<ExpectSpec>,
    brokers: Vec<BrokerSpec>,
    queues: Vec<QueueSpec>,
    exchanges: Vec<ExchangeSpec>,
    /// Per exchange: (binding key, queue).
    bindings: Vec<Vec<(String, QueueId)>>,
    topics: Vec<TopicSpec>,
    consumers: Vec<ConsumerSpec>,
    publishes: Vec<PublishSpec>,
    effects: Vec<EffectSpec>,
    sagas: Vec<SagaSpec>,
    choreographies: Vec<ChoreographySpec>,
    broker_ids: BTreeMap<String, BrokerId>,
    queue_ids: BTreeMap<String, QueueId>,
    exchange_ids: BTreeMap<String, ExchangeId>,
    topic_ids: BTreeMap<String, TopicId>,
    effect_ids: BTreeMap<String, EffectId>,
    /// Where each effect is applied.
    effect_sites: Vec<(EffectId, EndpointId)>,
    /// Endpoint -> endpoints its work reaches besides calls: consumers of what it
    /// publishes, saga actions (for effects' default expectations).
    reach: BTreeMap<EndpointId, Vec<EndpointId>>,
    /// Where saga compensations are written (start, end): in `graph` for call cycles,
    /// but not followed for effects' default expectations.
    compensation_sites: BTreeSet<(usize, usize)>,
}

fn span<T>(s: &Spanned<T>) -> Range<usize> {
    s.span()
}

const NAME_EXPECTED: &str = "a name of letters, digits, `_` and `-`";

impl Builder {
    fn error(
        &mut self,
        span: Range<usize>,
        message: impl Into<String>,
        expected: impl Into<String>,
    ) {
        self.diags.push(Diagnostic::new(span, message, expected));
    }

    fn scenario(&mut self, raw: &RawScenario, default_name: &str) -> Option<Built> {
        let Settings {
            name,
            seed,
            run_length,
            requests,
            warmup,
            max_events,
            max_events_at_one_instant,
            holds,
            bucket,
        } = self.settings(raw, default_name);
        let workloads = self.tables(raw);
        let sim = raw.simulation.get_ref();
        let seed = seed?;
        let bucket = bucket?;
        let mut spec = Spec {
            seed,
            warmup: warmup?,
            duration: match run_length {
                Some(d) => Some(d?),
                None => None,
            },
            max_requests: match requests {
                Some(r) => Some(r?),
                None => None,
            },
            max_events: max_events?,
            max_events_at_one_instant: max_events_at_one_instant?,
            holds: holds?,
            bucket: bucket.unwrap_or(SimDuration::ZERO),
            attribution: raw
                .report
                .attribution
                .as_ref()
                .map_or(DEFAULT_ATTRIBUTION, |a| *a.get_ref()),
            services: std::mem::take(&mut self.services),
            endpoints: std::mem::take(&mut self.endpoints),
            workloads,
            edges: std::mem::take(&mut self.edges),
            links: std::mem::take(&mut self.links),
            seqs: std::mem::take(&mut self.seqs),
            parallels: std::mem::take(&mut self.parallels),
            dists: std::mem::take(&mut self.dists),
            policies: std::mem::take(&mut self.policies),
            faults: std::mem::take(&mut self.faults),
            windows: std::mem::take(&mut self.windows),
            brokers: std::mem::take(&mut self.brokers),
            queues: std::mem::take(&mut self.queues),
            exchanges: std::mem::take(&mut self.exchanges),
            topics: std::mem::take(&mut self.topics),
            consumers: std::mem::take(&mut self.consumers),
            publishes: std::mem::take(&mut self.publishes),
            effects: std::mem::take(&mut self.effects),
            sagas: std::mem::take(&mut self.sagas),
            choreographies: std::mem::take(&mut self.choreographies),
        };
        if bucket.is_none() {
            spec.bucket = bucket::default_bucket(&spec);
        }
        Some(Built {
            name,
            description: sim.description.clone().unwrap_or_default(),
            spec,
            expectations: std::mem::take(&mut self.expectations),
        })
    }

    /// `[simulation]` and `[report]`: each value None when it is wrong (an error is
    /// recorded), so that building goes on to find the other errors.
    fn settings(&mut self, raw: &RawScenario, default_name: &str) -> Settings {
        let sim = raw.simulation.get_ref();
        let name = match &sim.name {
            Some(n) => {
                self.check_name(n, "scenario");
                n.get_ref().clone()
            }
            None => default_name.to_owned(),
        };
        let seed = match &sim.seed {
            Some(s) => self.int(s, 0, i64::MAX, "the seed", "a non-negative integer"),
            None => Some(DEFAULT_SEED),
        };
        let run_length = sim
            .duration
            .as_ref()
            .map(|d| self.positive_duration(d, "the duration"));
        let requests = sim
            .requests
            .as_ref()
            .map(|r| self.int(r, 1, i64::MAX, "the request limit", "a positive integer"));
        if sim.duration.is_none() && sim.requests.is_none() {
            self.error(
                span(&raw.simulation),
                "the simulation never ends",
                "`duration = \"...\"` or `requests = N` (or both) in [simulation]",
            );
        }
        let warmup = self.warmup(sim, run_length);
        let max_events = match &sim.max_events {
            Some(m) => self.int(m, 1, i64::MAX, "the event budget", "a positive integer"),
            None => Some(DEFAULT_MAX_EVENTS),
        };
        let max_events_at_one_instant = match &sim.max_events_at_one_instant {
            Some(m) => self.int(
                m,
                1,
                i64::MAX,
                "the limit of events at one instant",
                "a positive integer",
            ),
            None => Some(DEFAULT_MAX_EVENTS_AT_ONE_INSTANT),
        };
        let holds = self.hold_limits(sim);
        let bucket = match &raw.report.bucket {
            Some(b) => self
                .positive_duration(b, "the time-series bucket")
                .map(Some),
            None => Some(None),
        };
        Settings {
            name,
            seed,
            run_length,
            requests,
            warmup,
            max_events,
            max_events_at_one_instant,
            holds,
            bucket,
        }
    }

    /// The warmup (zero when unset), which must end before the run does.
    fn warmup(
        &mut self,
        sim: &RawSimulation,
        run_length: Option<Option<SimDuration>>,
    ) -> Option<SimDuration> {
        let Some(w) = &sim.warmup else {
            return Some(SimDuration::ZERO);
        };
        let d = self.duration(w);
        if let (Some(d), Some(Some(len))) = (d, run_length)
            && d >= len
        {
            self.error(
                span(w),
                format!("the warmup ({d}) covers the whole run ({len})"),
                "a warmup shorter than `duration`",
            );
        }
        d
    }

    /// `max_requests_in_flight`, `max_messages_in_flight`, `max_pending_events`: each
    /// unset one is sized to the memory budget when the run starts.
    fn hold_limits(&mut self, sim: &RawSimulation) -> Option<HoldLimits> {
        let mut limit = |v: &Option<Spanned<i64>>, what: &str| match v {
            Some(m) => self
                .int(m, 1, i64::MAX, what, "a positive integer")
                .map(Some),
            None => Some(None),
        };
        let requests_in_flight = limit(
            &sim.max_requests_in_flight,
            "the limit of requests in flight",
        );
        let messages_in_flight = limit(
            &sim.max_messages_in_flight,
            "the limit of messages in flight",
        );
        let pending_events = limit(&sim.max_pending_events, "the limit of pending events");
        Some(HoldLimits {
            requests_in_flight: requests_in_flight?,
            messages_in_flight: messages_in_flight?,
            pending_events: pending_events?,
            memory_budget: DEFAULT_MEMORY_BUDGET,
        })
    }

    /// Every table, in the order their names become known: what a later table refers
    /// to is declared first. Returns the workloads.
    fn tables(&mut self, raw: &RawScenario) -> Vec<WorkloadSpec> {
        self.network(&raw.network);
        self.policies(raw);
        self.declare_brokers(raw);
        // Services and consumers (each a service) within `bounds::MAX_SERVICES`.
        if let Some(name) = raw
            .services
            .keys()
            .chain(raw.consumers.keys())
            .nth(bounds::MAX_SERVICES)
        {
            self.error(
                span(name),
                format!(
                    "{} services and consumers, above meshsim's maximum of {}",
                    raw.services.len() + raw.consumers.len(),
                    bounds::MAX_SERVICES
                ),
                "at most 10000 services and consumers together (see ARCHITECTURE.md, Bounds)",
            );
            // The error fails the build; nothing more is declared.
            return Vec::new();
        }
        self.declare_services(raw);
        self.declare_consumers(raw);
        let workload_names: Vec<&Name> = raw.workloads.keys().collect();
        for w in &workload_names {
            self.check_name(w, "workload");
            if self.service_ids.contains_key(w.get_ref()) {
                self.error(
                    span(w),
                    format!("`{}` names both a service and a workload", w.get_ref()),
                    "distinct names: links and metrics refer to callers by name",
                );
            }
        }
        for (s, (_, svc)) in raw.services.iter().enumerate() {
            self.compile_service(ServiceId(s as u32), svc.get_ref());
        }
        self.compile_consumers(raw);
        let mut workloads = Vec::new();
        for (name, w) in &raw.workloads {
            if let Some(w) = self.workload(name, w.get_ref()) {
                workloads.push(w);
            }
        }
        if raw.workloads.is_empty() {
            self.error(
                span(&raw.simulation),
                "the scenario has no workload, so nothing would happen",
                "a [workloads.NAME] table with a `target`",
            );
        }
        self.check_cycles();
        self.check_link_overrides_used();
        self.finish_effects(raw, &workloads);
        for f in &raw.faults {
            self.fault(f);
        }
        for e in &raw.expect {
            self.expectation(e, &workloads);
        }
        workloads
    }
}

struct Ctx {
    service: ServiceId,
    endpoint: EndpointId,
    translate: Translation,
}
