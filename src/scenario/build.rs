//! Stage two: check a raw scenario and build the model's `Spec` from it. Every problem
//! becomes a diagnostic that points at the value at fault; building goes on past the
//! first problem so that one run reports them all.

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
use toml::Spanned;

pub const DEFAULT_SEED: u64 = 1;
pub const DEFAULT_MAX_EVENTS: u64 = 2_000_000_000;
pub const DEFAULT_QUEUE: u32 = 1000;
pub const DEFAULT_BUCKET: SimDuration = SimDuration::from_secs(1);

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
        let warmup = match &sim.warmup {
            Some(w) => {
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
            None => Some(SimDuration::ZERO),
        };
        let max_events = match &sim.max_events {
            Some(m) => self.int(m, 1, i64::MAX, "the event budget", "a positive integer"),
            None => Some(DEFAULT_MAX_EVENTS),
        };
        let bucket = match &raw.report.bucket {
            Some(b) => self.positive_duration(b, "the time-series bucket"),
            None => Some(DEFAULT_BUCKET),
        };

        self.network(&raw.network);
        self.policies(raw);
        self.declare_brokers(raw);
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

        let seed = seed?;
        let spec = Spec {
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
            bucket: bucket?,
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
        Some(Built {
            name,
            description: sim.description.clone().unwrap_or_default(),
            spec,
            expectations: std::mem::take(&mut self.expectations),
        })
    }

    // ---- values ----

    fn check_name(&mut self, n: &Spanned<String>, what: &str) {
        let s = n.get_ref();
        if s.is_empty()
            || !s
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            self.error(
                span(n),
                format!("`{s}` is not a valid {what} name"),
                NAME_EXPECTED,
            );
        }
    }

    fn duration(&mut self, s: &Spanned<String>) -> Option<SimDuration> {
        match duration::parse(s.get_ref()) {
            Ok(d) => Some(d),
            Err(e) => {
                self.error(span(s), format!("bad duration: {e}"), duration::EXPECTED);
                None
            }
        }
    }

    fn positive_duration(&mut self, s: &Spanned<String>, what: &str) -> Option<SimDuration> {
        let d = self.duration(s)?;
        if d.is_zero() {
            self.error(
                span(s),
                format!("{what} must be longer than zero"),
                "a positive duration",
            );
            return None;
        }
        Some(d)
    }

    fn int(
        &mut self,
        v: &Spanned<i64>,
        min: i64,
        max: i64,
        what: &str,
        expected: &str,
    ) -> Option<u64> {
        let x = *v.get_ref();
        if x < min || x > max {
            self.error(span(v), format!("{what} is {x}, out of range"), expected);
            return None;
        }
        Some(x as u64)
    }

    fn int_u32(&mut self, v: &Spanned<i64>, min: i64, what: &str, expected: &str) -> Option<u32> {
        self.int(v, min, i64::from(u32::MAX), what, expected)
            .map(|x| x as u32)
    }

    fn probability(&mut self, v: &Spanned<f64>, what: &str) -> Option<f64> {
        let p = *v.get_ref();
        if !(0.0..=1.0).contains(&p) {
            self.error(
                span(v),
                format!("{what} is {p}, not a probability"),
                "a number from 0 to 1",
            );
            return None;
        }
        Some(p)
    }

    fn status(&mut self, s: &Spanned<String>, allow_ok: bool) -> Option<Status> {
        let names: Vec<&str> = Status::ALL
            .iter()
            .filter(|st| allow_ok || !st.is_ok())
            .map(|st| st.name())
            .collect();
        match Status::from_name(s.get_ref()) {
            Some(st) if allow_ok || !st.is_ok() => Some(st),
            _ => {
                self.error(
                    span(s),
                    format!("`{}` is not a status code here", s.get_ref()),
                    format!("one of: {}", names.join(", ")),
                );
                None
            }
        }
    }

    fn translation(&mut self, map: &Spanned<BTreeMap<Name, Spanned<String>>>) -> Translation {
        let mut t = Translation::default();
        for (from, to) in map.get_ref() {
            let from_status = self.status(from, false);
            let to_status = self.status(to, true);
            if let (Some(f), Some(to)) = (from_status, to_status) {
                t.set(f, to);
            }
        }
        t
    }

    fn dist(&mut self, d: &Spanned<RawDist>) -> Option<Dist> {
        let table = match d.get_ref() {
            RawDist::Constant(s) => {
                let d = duration::parse(s).map_err(|e| {
                    self.error(span(d), format!("bad duration: {e}"), duration::EXPECTED)
                });
                return d.ok().map(Dist::Constant);
            }
            RawDist::Table(t) => t,
        };
        let kind = table.dist.get_ref().as_str();
        // (field, present) for every field, to reject the ones a kind does not use.
        let fields: [(&str, Option<Range<usize>>); 13] = [
            ("value", table.value.as_ref().map(span)),
            ("min", table.min.as_ref().map(span)),
            ("max", table.max.as_ref().map(span)),
            ("mean", table.mean.as_ref().map(span)),
            ("stddev", table.stddev.as_ref().map(span)),
            ("median", table.median.as_ref().map(span)),
            ("p99", table.p99.as_ref().map(span)),
            ("mu", table.mu.as_ref().map(span)),
            ("sigma", table.sigma.as_ref().map(span)),
            ("scale", table.scale.as_ref().map(span)),
            ("shape", table.shape.as_ref().map(span)),
            ("samples", table.samples.as_ref().map(span)),
            ("bins", table.bins.as_ref().map(span)),
        ];
        let allowed: &[&str] = match kind {
            "constant" => &["value"],
            "uniform" => &["min", "max"],
            "exponential" => &["mean"],
            "normal" => &["mean", "stddev"],
            "lognormal" => &["median", "p99", "mu", "sigma"],
            "pareto" => &["scale", "shape"],
            "empirical" => &["samples", "bins"],
            _ => {
                self.error(
                    span(&table.dist),
                    format!("unknown distribution `{kind}`"),
                    "one of: constant, uniform, exponential, normal, lognormal, pareto, empirical",
                );
                return None;
            }
        };
        let mut ok = true;
        for (field, sp) in &fields {
            if let Some(sp) = sp
                && !allowed.contains(field)
            {
                self.error(
                    sp.clone(),
                    format!("`{field}` does not apply to a {kind} distribution"),
                    format!("only: {}", allowed.join(", ")),
                );
                ok = false;
            }
        }
        let whole = span(d);
        let need =
            |b: &mut Builder, v: &Option<Spanned<String>>, field: &str| -> Option<SimDuration> {
                match v {
                    Some(s) => b.duration(s),
                    None => {
                        b.error(
                            whole.clone(),
                            format!("a {kind} distribution needs `{field}`"),
                            format!("`{field} = \"...\"` (a duration)"),
                        );
                        None
                    }
                }
            };
        let dist = match kind {
            "constant" => Dist::Constant(need(self, &table.value, "value")?),
            "uniform" => {
                let (min, max) = (need(self, &table.min, "min"), need(self, &table.max, "max"));
                let (min, max) = (min?, max?);
                if min > max {
                    self.error(
                        span(d),
                        format!("min ({min}) is above max ({max})"),
                        "min <= max",
                    );
                    return None;
                }
                Dist::Uniform { min, max }
            }
            "exponential" => {
                let mean = need(self, &table.mean, "mean")?;
                if mean.is_zero() {
                    self.error(
                        whole,
                        "an exponential distribution needs a mean above zero",
                        "mean > 0",
                    );
                    return None;
                }
                Dist::Exponential {
                    mean_ns: mean.as_nanos() as f64,
                }
            }
            "normal" => {
                let (mean, sd) = (
                    need(self, &table.mean, "mean"),
                    need(self, &table.stddev, "stddev"),
                );
                let (mean, sd) = (mean?, sd?);
                if mean.is_zero() {
                    self.error(
                        whole,
                        "a normal distribution needs a mean above zero",
                        "mean > 0",
                    );
                    return None;
                }
                Dist::Normal {
                    mean_ns: mean.as_nanos() as f64,
                    stddev_ns: sd.as_nanos() as f64,
                }
            }
            "lognormal" => match (&table.median, &table.p99, &table.mu, &table.sigma) {
                (Some(m), Some(p), None, None) => {
                    let (median, p99) = (self.duration(m)?, self.duration(p)?);
                    if median.is_zero() || p99 < median {
                        self.error(
                            whole,
                            "a lognormal needs 0 < median <= p99",
                            "median > 0 and p99 >= median",
                        );
                        return None;
                    }
                    Dist::lognormal_from_median_p99(median, p99)
                }
                (None, None, Some(mu), Some(sigma)) => {
                    let (mu, sigma) = (*mu.get_ref(), *sigma.get_ref());
                    if !mu.is_finite() || !sigma.is_finite() || sigma < 0.0 {
                        self.error(
                            whole,
                            "a lognormal needs a finite mu and sigma >= 0",
                            "sigma >= 0",
                        );
                        return None;
                    }
                    Dist::LogNormal { mu, sigma }
                }
                _ => {
                    self.error(
                        whole,
                        "a lognormal distribution is given by `median` and `p99`, or by `mu` and `sigma`",
                        "median = \"800ms\", p99 = \"2s\"  or  mu = -0.2, sigma = 0.4 (of ln seconds)",
                    );
                    return None;
                }
            },
            "pareto" => {
                let scale = need(self, &table.scale, "scale")?;
                let Some(shape) = &table.shape else {
                    self.error(
                        whole,
                        "a pareto distribution needs `shape`",
                        "shape = 1.5 (alpha > 0)",
                    );
                    return None;
                };
                let alpha = *shape.get_ref();
                if !(alpha > 0.0 && alpha.is_finite()) || scale.is_zero() {
                    self.error(
                        span(shape),
                        "a pareto needs shape > 0 and scale > 0",
                        "shape > 0, scale > 0",
                    );
                    return None;
                }
                Dist::Pareto {
                    scale_ns: scale.as_nanos() as f64,
                    shape: alpha,
                }
            }
            "empirical" => match (&table.samples, &table.bins) {
                (Some(samples), None) => {
                    if samples.get_ref().is_empty() {
                        self.error(span(samples), "no samples", "at least one duration");
                        return None;
                    }
                    let parsed: Vec<Option<SimDuration>> =
                        samples.get_ref().iter().map(|s| self.duration(s)).collect();
                    Dist::Samples(parsed.into_iter().collect::<Option<Vec<_>>>()?)
                }
                (None, Some(bins)) => {
                    if bins.get_ref().is_empty() {
                        self.error(span(bins), "no bins", "at least one { from, to, weight }");
                        return None;
                    }
                    let mut cumulative = Vec::new();
                    let mut ranges = Vec::new();
                    let mut total = 0.0;
                    for bin in bins.get_ref() {
                        let bin = bin.get_ref();
                        let (from, to) = (self.duration(&bin.from), self.duration(&bin.to));
                        let w = *bin.weight.get_ref();
                        if !(w >= 0.0 && w.is_finite()) {
                            self.error(
                                span(&bin.weight),
                                "a bin weight must be >= 0",
                                "a weight >= 0",
                            );
                        }
                        if let (Some(from), Some(to)) = (from, to) {
                            if from > to {
                                self.error(
                                    span(&bin.to),
                                    "a bin ends before it starts",
                                    "from <= to",
                                );
                            }
                            ranges.push((from, to));
                        }
                        total += w.max(0.0);
                        cumulative.push(total);
                    }
                    if total <= 0.0 {
                        self.error(
                            span(bins),
                            "the bins weigh nothing in all",
                            "some weight above zero",
                        );
                        return None;
                    }
                    if ranges.len() != cumulative.len() {
                        return None;
                    }
                    Dist::Bins {
                        cumulative,
                        bins: ranges,
                    }
                }
                _ => {
                    self.error(
                        whole,
                        "an empirical distribution takes `samples` or `bins`, one of the two",
                        "samples = [\"10ms\", \"12ms\"]  or  bins = [{ from = \"0ms\", to = \"10ms\", weight = 3 }]",
                    );
                    return None;
                }
            },
            _ => unreachable!("kinds checked above"),
        };
        ok.then_some(dist)
    }

    fn dist_id(&mut self, d: &Spanned<RawDist>) -> Option<DistId> {
        let dist = self.dist(d)?;
        self.dists.push(dist);
        Some(DistId(self.dists.len() as u32 - 1))
    }

    // ---- policies ----

    fn statuses(&mut self, list: &Statuses) -> StatusSet {
        let mut set = StatusSet::EMPTY;
        for st in list.get_ref() {
            if let Some(st) = self.status(st, false) {
                set.insert(st);
            }
        }
        set
    }

    /// A percentage (0 to 100) as a fraction.
    fn percent(&mut self, v: &Spanned<f64>, what: &str) -> Option<f64> {
        let x = *v.get_ref();
        if !(0.0..=100.0).contains(&x) {
            self.error(
                span(v),
                format!("{what} is {x}, not a percentage"),
                "a number from 0 to 100",
            );
            return None;
        }
        Some(x / 100.0)
    }

    fn positive_f64(&mut self, v: &Spanned<f64>, what: &str) -> Option<f64> {
        let x = *v.get_ref();
        if !(x > 0.0 && x.is_finite()) {
            self.error(span(v), format!("{what} is {x}"), "a number above zero");
            return None;
        }
        Some(x)
    }

    fn policies(&mut self, raw: &RawScenario) {
        for (name, p) in &raw.policies {
            self.check_name(name, "policy");
            if name.get_ref() == "none" {
                self.error(
                    span(name),
                    "`none` is the name of the implicit empty policy",
                    "another name",
                );
            }
            let spec = self
                .policy(name.get_ref(), p)
                .unwrap_or_else(|| PolicySpec::none(name.get_ref()));
            self.policy_ids
                .insert(name.get_ref().clone(), PolicyId(self.policies.len() as u32));
            self.policies.push(spec);
        }
        // Calls that name no policy use `default` if the scenario has one, else none.
        self.default_policy = match self.policy_ids.get("default") {
            Some(&id) => id,
            None => {
                self.policies.push(PolicySpec::none("none"));
                PolicyId(self.policies.len() as u32 - 1)
            }
        };
    }

    fn policy_ref(&mut self, name: Option<&Spanned<String>>) -> PolicyId {
        let Some(name) = name else {
            return self.default_policy;
        };
        if let Some(&id) = self.policy_ids.get(name.get_ref()) {
            return id;
        }
        let known: Vec<&str> = self.policy_ids.keys().map(String::as_str).collect();
        self.error(
            span(name),
            format!("unknown policy `{}`", name.get_ref()),
            if known.is_empty() {
                "a [policies.NAME] table (this scenario has none)".to_owned()
            } else {
                format!("one of: {}", known.join(", "))
            },
        );
        self.default_policy
    }

    fn policy(&mut self, name: &str, raw: &Spanned<RawPolicy>) -> Option<PolicySpec> {
        let r = raw.get_ref();
        let mut p = match &r.preset {
            Some(ps) => match PolicySpec::preset(name, ps.get_ref()) {
                Some(p) => p,
                None => {
                    self.error(
                        span(ps),
                        format!("unknown preset `{}`", ps.get_ref()),
                        format!("one of: {}", PRESETS.join(", ")),
                    );
                    PolicySpec::none(name)
                }
            },
            None => PolicySpec::none(name),
        };
        if let Some(t) = &r.timeout {
            p.try_timeout = self.positive_duration(t, "a timeout");
        }
        if let Some(d) = &r.deadline {
            p.deadline = self.positive_duration(d, "a deadline");
        }
        if let Some(b) = &r.propagate_deadline {
            p.propagate_deadline = *b.get_ref();
        }
        if let Some(f) = &r.fallback {
            p.fallback = if f.get_ref() == "degraded" {
                Some(Fallback::Degraded)
            } else {
                match Status::from_name(f.get_ref()) {
                    Some(st) if !st.is_ok() => Some(Fallback::Status(st)),
                    _ => {
                        self.error(
                            span(f),
                            format!("`{}` is not a fallback", f.get_ref()),
                            "\"degraded\" (ok, marked degraded) or an error status",
                        );
                        None
                    }
                }
            };
        }
        if let Some(retry) = &r.retry {
            let base = p.retry.take();
            p.retry = self.retry(retry, base);
        }
        if let (Some(ps), Some(retry)) = (&r.preset, &mut p.retry)
            && ps.get_ref() == "grpc"
        {
            // gRFC A6: maxAttempts above 5 is treated as 5.
            retry.max_attempts = retry.max_attempts.min(5);
        }
        if let Some(b) = &r.breaker {
            let base = p.breaker.take().unwrap_or_else(BreakerSpec::resilience4j);
            p.breaker = self.breaker(b, base, &mut p);
        }
        if let Some(b) = &r.bulkhead {
            let bh = b.get_ref();
            let max_concurrent = match (&bh.max_concurrent, p.bulkhead) {
                (Some(m), _) => self.int_u32(m, 1, "max_concurrent", "at least 1"),
                (None, Some(base)) => Some(base.max_concurrent),
                (None, None) => {
                    self.error(
                        span(b),
                        "a bulkhead needs `max_concurrent`",
                        "max_concurrent = N",
                    );
                    None
                }
            };
            let max_wait = match &bh.max_wait {
                Some(w) => self.duration(w),
                None => Some(p.bulkhead.map_or(SimDuration::ZERO, |b| b.max_wait)),
            };
            p.bulkhead = match (max_concurrent, max_wait) {
                (Some(max_concurrent), Some(max_wait)) => Some(BulkheadSpec {
                    max_concurrent,
                    max_wait,
                }),
                _ => None,
            };
        }
        if let Some(l) = &r.rate_limit {
            let rl = l.get_ref();
            let rate = match &rl.rate {
                Some(x) => self.positive_f64(x, "the rate"),
                None => {
                    self.error(
                        span(l),
                        "a rate limiter needs `rate` (per second)",
                        "rate = 50",
                    );
                    None
                }
            };
            let burst = match &rl.burst {
                Some(b) => self.positive_f64(b, "the burst"),
                None => rate.map(|r| r.max(1.0)),
            };
            let max_wait = match &rl.max_wait {
                Some(w) => self.duration(w),
                None => Some(SimDuration::ZERO),
            };
            if let (Some(rate_per_s), Some(burst), Some(max_wait)) = (rate, burst, max_wait) {
                p.rate_limit = Some(RateLimitSpec {
                    rate_per_s,
                    burst,
                    max_wait,
                });
            }
        }
        if let Some(pr) = &r.protocol {
            p.protocol = self.protocol(pr);
        }
        if let Some(c) = &r.cache {
            let ch = c.get_ref();
            let ttl = self.positive_duration(&ch.ttl, "the cache ttl");
            let change_rate = match &ch.change_rate {
                Some(x) if !(*x.get_ref() >= 0.0 && x.get_ref().is_finite()) => {
                    self.error(
                        span(x),
                        format!("change_rate is {}", x.get_ref()),
                        "changes per key per second, >= 0",
                    );
                    None
                }
                Some(x) => Some(*x.get_ref()),
                None => Some(0.0),
            };
            if let (Some(ttl), Some(change_rate)) = (ttl, change_rate) {
                p.cache = Some(crate::model::policy::CacheSpec { ttl, change_rate });
            }
        }
        if let Some(h) = &r.hedge {
            let hg = h.get_ref();
            let delay = match &hg.delay {
                Some(d) => self.duration(d),
                None => {
                    self.error(span(h), "hedging needs `delay`", "delay = \"50ms\"");
                    None
                }
            };
            let max_attempts = match &hg.max_attempts {
                Some(m) => self.int_u32(
                    m,
                    2,
                    "max_attempts",
                    "at least 2 (the original and one hedge)",
                ),
                None => Some(2),
            };
            let non_fatal = hg
                .non_fatal
                .as_ref()
                .map(|l| self.statuses(l))
                .unwrap_or_default();
            if let (Some(delay), Some(max_attempts)) = (delay, max_attempts) {
                p.hedge = Some(HedgeSpec {
                    delay,
                    max_attempts,
                    non_fatal,
                    throttle: None,
                    pushback: false,
                    follows: crate::model::policy::HedgeRules::A6,
                });
            }
            if p.retry.is_some() {
                self.error(
                    span(h),
                    "a policy cannot both retry and hedge",
                    "either [retry] or [hedge] (as in gRPC's service config)",
                );
            }
        }
        Some(p)
    }

    fn protocol(&mut self, raw: &Spanned<RawProtocol>) -> Option<ProtocolSpec> {
        let preset = |b: &mut Builder, name: &Spanned<String>| {
            let p = ProtocolSpec::preset(name.get_ref());
            if p.is_none() {
                b.error(
                    span(name),
                    format!("unknown protocol `{}`", name.get_ref()),
                    "\"rest_json\" or \"grpc\" (or a table of your own numbers)",
                );
            }
            p
        };
        let t = match raw.get_ref() {
            RawProtocol::Preset(name) => {
                let named = Spanned::new(span(raw), name.clone());
                return preset(self, &named);
            }
            RawProtocol::Table(t) => t,
        };
        let mut p = match &t.preset {
            Some(name) => preset(self, name)?,
            None => ProtocolSpec::preset("rest_json").expect("a known preset"),
        };
        if let Some(d) = &t.overhead {
            p.overhead = self.duration(d)?;
        }
        if let Some(d) = &t.encode_per_kb {
            p.encode_per_kb = self.duration(d)?;
        }
        if let Some(d) = &t.decode_per_kb {
            p.decode_per_kb = self.duration(d)?;
        }
        match t.connection.as_ref().map(|c| (c, c.get_ref().as_str())) {
            None => {}
            Some((_, "keep_alive")) => p.setup_per_call = None,
            Some((_, "per_call")) => {
                p.setup_per_call = Some(match &t.setup {
                    Some(s) => self.duration(s)?,
                    None => SimDuration::from_micros(1500),
                })
            }
            Some((c, other)) => {
                self.error(
                    span(c),
                    format!("unknown connection `{other}`"),
                    "\"keep_alive\" or \"per_call\"",
                );
                return None;
            }
        }
        if t.setup.is_some() && p.setup_per_call.is_none() {
            self.error(
                span(t.setup.as_ref().expect("some")),
                "`setup` is paid only with connection = \"per_call\"",
                "connection = \"per_call\"",
            );
        }
        let count = |b: &mut Builder, v: &Option<Spanned<i64>>, what: &str, default: u32| match v {
            Some(n) => b.int_u32(n, 1, what, "at least 1"),
            None => Some(default),
        };
        let pool_kind = match t.pool.as_ref().map(|x| (x, x.get_ref().as_str())) {
            None => match p.pool {
                Pool::Http1 { .. } => "http1",
                Pool::Http2 { .. } => "http2",
            },
            Some((_, k @ ("http1" | "http2"))) => k,
            Some((x, other)) => {
                self.error(
                    span(x),
                    format!("unknown pool `{other}`"),
                    "\"http1\" (a request per connection) or \"http2\" (streams multiplexed)",
                );
                return None;
            }
        };
        p.pool = match (pool_kind, p.pool) {
            ("http1", Pool::Http1 { max_connections }) => Pool::Http1 {
                max_connections: count(
                    self,
                    &t.max_connections,
                    "max_connections",
                    max_connections,
                )?,
            },
            ("http1", _) => Pool::Http1 {
                max_connections: count(self, &t.max_connections, "max_connections", 10)?,
            },
            (
                _,
                Pool::Http2 {
                    connections,
                    max_streams,
                },
            ) => Pool::Http2 {
                connections: count(self, &t.connections, "connections", connections)?,
                max_streams: count(self, &t.max_streams, "max_streams", max_streams)?,
            },
            _ => Pool::Http2 {
                connections: count(self, &t.connections, "connections", 1)?,
                max_streams: count(self, &t.max_streams, "max_streams", 100)?,
            },
        };
        Some(p)
    }

    fn retry(&mut self, raw: &Spanned<RawRetry>, base: Option<RetrySpec>) -> Option<RetrySpec> {
        let r = raw.get_ref();
        let max_attempts = match (&r.max_attempts, &r.retries, &base) {
            (Some(_), Some(rt), _) => {
                self.error(
                    span(rt),
                    "both `max_attempts` and `retries`",
                    "one of them: max_attempts counts the original, retries does not",
                );
                None
            }
            (Some(m), None, _) => {
                self.int_u32(m, 1, "max_attempts", "at least 1 (the original attempt)")
            }
            (None, Some(rt), _) => self.int_u32(rt, 0, "retries", "0 or more").map(|n| n + 1),
            (None, None, Some(b)) => Some(b.max_attempts),
            (None, None, None) => {
                self.error(
                    span(raw),
                    "a retry policy needs `max_attempts` or `retries`",
                    "max_attempts = 3 (the original included) or retries = 2",
                );
                None
            }
        };
        let mut backoff = base.as_ref().map_or(
            Backoff {
                kind: BackoffKind::Fixed,
                base: SimDuration::ZERO,
                multiplier: 2.0,
                cap: crate::model::backoff::UNCAPPED,
                jitter: Jitter::None,
            },
            |b| b.backoff,
        );
        if let Some(k) = &r.backoff {
            backoff.kind = match k.get_ref().as_str() {
                "fixed" => BackoffKind::Fixed,
                "linear" => BackoffKind::Linear,
                "exponential" => BackoffKind::Exponential,
                other => {
                    self.error(
                        span(k),
                        format!("unknown backoff `{other}`"),
                        "fixed, linear or exponential",
                    );
                    backoff.kind
                }
            };
        }
        if let Some(b) = &r.base {
            backoff.base = self.duration(b).unwrap_or(backoff.base);
        }
        if let Some(m) = &r.multiplier {
            backoff.multiplier = self
                .positive_f64(m, "the multiplier")
                .unwrap_or(backoff.multiplier);
        }
        if let Some(c) = &r.cap {
            backoff.cap = self.duration(c).unwrap_or(backoff.cap);
        }
        if let Some(j) = &r.jitter {
            let range = r.jitter_range.as_ref();
            backoff.jitter = match j.get_ref().as_str() {
                "none" => Jitter::None,
                "full" => Jitter::Full,
                "equal" => Jitter::Equal,
                "decorrelated" => Jitter::Decorrelated,
                "proportional" => match (range.map(|r| r.get_ref().as_slice()), backoff.jitter) {
                    (Some(&[low, high]), _) if (-1.0..=high).contains(&low) && high.is_finite() => {
                        Jitter::Proportional { low, high }
                    }
                    (None, Jitter::Proportional { low, high }) => {
                        Jitter::Proportional { low, high }
                    }
                    _ => {
                        self.error(span(j), "proportional jitter needs `jitter_range = [low, high]`", "e.g. [0, 0.2] (axios-retry), [-0.2, 0.2] (gRPC), [-0.5, 0.5] (resilience4j); -1 <= low <= high");
                        backoff.jitter
                    }
                },
                other => {
                    self.error(
                        span(j),
                        format!("unknown jitter `{other}`"),
                        "none, full, equal, decorrelated or proportional",
                    );
                    backoff.jitter
                }
            };
        }
        let retry_on = match &r.on {
            Some(list) => self.statuses(list),
            None => base
                .as_ref()
                .map_or(StatusSet::of(&[Status::Unavailable]), |b| b.retry_on),
        };
        let pushback = r
            .pushback
            .as_ref()
            .map_or(base.as_ref().is_some_and(|b| b.pushback), |b| *b.get_ref());
        let budget = match &r.budget {
            None => base.as_ref().and_then(|b| b.budget.clone()),
            Some(b) => {
                let bg = b.get_ref();
                let percent = self.percent(&bg.percent, "the budget percentage")?;
                match (&bg.min_concurrency, &bg.min_per_s, &bg.ttl) {
                    (Some(m), None, None) => Some(RetryBudget::Concurrency {
                        percent,
                        min: self.int_u32(m, 0, "min_concurrency", "0 or more")?,
                    }),
                    (None, min, ttl) => Some(RetryBudget::Rate {
                        percent,
                        min_per_s: match min {
                            None => 0.0,
                            Some(m) => {
                                let x = *m.get_ref();
                                if !(x >= 0.0 && x.is_finite()) {
                                    self.error(
                                        span(m),
                                        format!("min_per_s is {x}"),
                                        "a number of retries per second >= 0",
                                    );
                                    return None;
                                }
                                x
                            }
                        },
                        ttl: match ttl {
                            Some(t) => self.positive_duration(t, "the budget ttl")?,
                            None => SimDuration::from_secs(10),
                        },
                    }),
                    _ => {
                        self.error(span(b), "a budget is either a rate (min_per_s, ttl) or a concurrency (min_concurrency)", "Finagle: { percent = 20, min_per_s = 10, ttl = \"10s\" }; Envoy: { percent = 20, min_concurrency = 3 }");
                        None
                    }
                }
            }
        };
        let throttle = match &r.throttle {
            None => base.as_ref().and_then(|b| b.throttle),
            Some(t) => {
                let th = t.get_ref();
                let max_tokens = self.positive_f64(&th.max_tokens, "max_tokens");
                let token_ratio = self.positive_f64(&th.token_ratio, "token_ratio");
                Some(Throttle {
                    max_tokens: max_tokens?,
                    token_ratio: token_ratio?,
                })
            }
        };
        Some(RetrySpec {
            max_attempts: max_attempts?,
            backoff,
            retry_on,
            pushback,
            pushback_any_status: base.as_ref().is_some_and(|b| b.pushback_any_status),
            budget,
            throttle,
        })
    }

    fn breaker(
        &mut self,
        raw: &Spanned<RawBreaker>,
        mut b: BreakerSpec,
        policy: &mut PolicySpec,
    ) -> Option<BreakerSpec> {
        let r = raw.get_ref();
        // `size` alone means a count window; `duration` or `buckets` alone a time window.
        let implied = match (&r.size, r.duration.is_some() || r.buckets.is_some()) {
            (Some(_), _) => "count",
            (None, true) => "time",
            (None, false) => "",
        };
        let window = match &r.window {
            Some(w) => Some((span(w), w.get_ref().as_str())),
            None if !implied.is_empty() => Some((span(raw), implied)),
            None => None,
        };
        match window {
            None => {}
            Some((_, "count")) => {
                let calls = match &r.size {
                    Some(n) => self.int_u32(n, 1, "the window size", "at least 1 call")?,
                    None => match b.window {
                        BreakerWindow::Count { calls } => calls,
                        BreakerWindow::Time { .. } => 100,
                    },
                };
                b.window = BreakerWindow::Count { calls };
            }
            Some((_, "time")) => {
                // Unwritten parts keep the preset's time window (Polly: 30 s in 10).
                let (base_buckets, base_total) = match b.window {
                    BreakerWindow::Time { buckets, bucket } => (
                        buckets,
                        SimDuration::from_nanos(bucket.as_nanos() * u64::from(buckets)),
                    ),
                    BreakerWindow::Count { .. } => (10, SimDuration::from_secs(10)),
                };
                let buckets = match &r.buckets {
                    Some(n) => self.int_u32(n, 1, "buckets", "at least 1")?,
                    None => base_buckets,
                };
                let total = match &r.duration {
                    Some(d) => self.positive_duration(d, "the window duration")?,
                    None => base_total,
                };
                b.window = BreakerWindow::Time {
                    buckets,
                    bucket: SimDuration::from_nanos((total.as_nanos() / u64::from(buckets)).max(1)),
                };
            }
            Some((w, other)) => {
                self.error(
                    w,
                    format!("unknown breaker window `{other}`"),
                    "\"count\" (the last N calls) or \"time\" (the last `duration`)",
                );
            }
        }
        if let Some(x) = &r.failure_rate {
            b.failure_rate = self.percent(x, "failure_rate")?;
        }
        if let Some(c) = &r.compare {
            b.compare = match c.get_ref().as_str() {
                ">" => Compare::Greater,
                ">=" => Compare::GreaterOrEqual,
                other => {
                    self.error(
                        span(c),
                        format!("unknown comparison `{other}`"),
                        "\">\" (opossum) or \">=\" (resilience4j, Polly)",
                    );
                    b.compare
                }
            };
        }
        match (&r.slow_call_duration, &r.slow_call_rate) {
            (None, None) => {}
            (d, rate) => {
                let duration = match d {
                    Some(d) => self.positive_duration(d, "slow_call_duration")?,
                    None => b
                        .slow_call
                        .map_or(SimDuration::from_secs(60), |s| s.duration),
                };
                let rate = match rate {
                    Some(x) => self.percent(x, "slow_call_rate")?,
                    None => b.slow_call.map_or(1.0, |s| s.rate),
                };
                b.slow_call = Some(SlowCall { duration, rate });
            }
        }
        if let Some(m) = &r.minimum_calls {
            b.minimum_calls = self.int_u32(m, 0, "minimum_calls", "0 or more")?;
        }
        if let Some(e) = &r.evaluate {
            b.evaluate = match e.get_ref().as_str() {
                "every_call" => Evaluate::EveryCall,
                "on_failure" => Evaluate::OnFailure,
                other => {
                    self.error(
                        span(e),
                        format!("unknown evaluate `{other}`"),
                        "\"every_call\" (resilience4j) or \"on_failure\" (opossum, Polly)",
                    );
                    b.evaluate
                }
            };
        }
        if let Some(c) = &r.count_rejections {
            b.count_rejections = *c.get_ref();
        }
        if let Some(o) = &r.open_for {
            b.open_for = self.positive_duration(o, "open_for")?;
            b.open_max = b.open_max.max(b.open_for);
        }
        if let Some(g) = &r.open_growth {
            let x = *g.get_ref();
            if !(x >= 1.0 && x.is_finite()) {
                self.error(
                    span(g),
                    format!("open_growth is {x}"),
                    "1 (fixed) or more (growing)",
                );
                return None;
            }
            b.open_growth = x;
            if r.open_max.is_none() && x > 1.0 {
                b.open_max = crate::model::backoff::UNCAPPED;
            }
        }
        if let Some(m) = &r.open_max {
            b.open_max = self.positive_duration(m, "open_max")?;
            if b.open_max < b.open_for {
                self.error(
                    span(m),
                    "open_max is shorter than open_for",
                    "open_max >= open_for",
                );
            }
        }
        if let Some(n) = &r.half_open_probes {
            b.half_open_probes = self.int_u32(n, 1, "half_open_probes", "at least 1")?;
        }
        if let Some(h) = &r.half_open {
            b.transition = match h.get_ref().as_str() {
                "lazy" => Transition::Lazy,
                "timer" => Transition::Timer,
                other => {
                    self.error(
                        span(h),
                        format!("unknown half_open `{other}`"),
                        "\"lazy\" (on the next call: resilience4j, Polly) or \"timer\" (opossum)",
                    );
                    b.transition
                }
            };
        }
        if let Some(x) = &r.reset_on_transition {
            b.reset_on_transition = *x.get_ref();
        }
        if let Some(list) = &r.failure_on {
            policy.failure.statuses = self.statuses(list);
        }
        if let Some(t) = &r.timeouts_are_failures {
            policy.failure.timeouts = *t.get_ref();
        }
        if let Some(t) = &r.rejections_are_failures {
            policy.failure.rejections = *t.get_ref();
        }
        Some(b)
    }

    // ---- expectations ----

    fn expectation(&mut self, raw: &Spanned<RawExpect>, workloads: &[WorkloadSpec]) {
        let e = raw.get_ref();
        let check = match crate::report::expect::parse(e.check.get_ref()) {
            Ok(c) => c,
            Err(msg) => {
                self.error(span(&e.check), msg, crate::report::expect::EXPECTED);
                return;
            }
        };
        let window = match (&e.from, &e.until) {
            (None, None) => None,
            (from, until) => {
                let from = match from {
                    Some(f) => match self.duration(f) {
                        Some(d) => d,
                        None => return,
                    },
                    None => SimDuration::ZERO,
                };
                let until = match until {
                    Some(u) => match self.duration(u) {
                        Some(d) => Some(d),
                        None => return,
                    },
                    None => None,
                };
                let until = until.map_or(SimTime::MAX, |u| SimTime::ZERO + u);
                if until <= SimTime::ZERO + from {
                    self.error(
                        span(raw),
                        "the window ends before it starts",
                        "until > from",
                    );
                    return;
                }
                let name = check.path.get(1).cloned().unwrap_or_default();
                let target = match check.path.first().map(String::as_str) {
                    Some("workloads") => workloads
                        .iter()
                        .position(|w| w.name == name)
                        .map(|i| WindowTarget::Workload(WorkloadId(i as u32))),
                    Some("endpoints") => self
                        .endpoint_ids
                        .get(&name)
                        .map(|&e| WindowTarget::Endpoint(e)),
                    _ => None,
                };
                let Some(target) = target else {
                    self.error(
                        span(&e.check),
                        "a windowed check reads one workload or endpoint",
                        "workloads.NAME.FIELD or endpoints.SERVICE/ENDPOINT.FIELD (fields: answers, ok, errors, error_rate, throughput_rps, latency_ms)",
                    );
                    return;
                };
                self.windows.push(WindowSpec {
                    target,
                    from: SimTime::ZERO + from,
                    until,
                });
                Some(self.windows.len() - 1)
            }
        };
        self.expectations.push(ExpectSpec {
            text: e.check.get_ref().trim().to_owned(),
            check,
            window,
            span: span(&e.check),
        });
    }

    // ---- faults ----

    fn fault(&mut self, raw: &Spanned<RawFault>) {
        let f = raw.get_ref();
        let kind = f.kind.get_ref().as_str();
        let service_kind = matches!(kind, "down" | "crash" | "slow" | "error");
        let link_kind = matches!(kind, "partition" | "link_loss" | "link_latency");
        let broker_kind = kind == "broker_down";
        if !service_kind && !link_kind && !broker_kind {
            self.error(
                span(&f.kind),
                format!("unknown fault `{kind}`"),
                "one of: down, crash, slow, error, partition, link_loss, link_latency, broker_down",
            );
            return;
        }
        let fields: [(&str, Option<Range<usize>>, &[&str]); 9] = [
            ("broker", f.broker.as_ref().map(span), &["broker_down"]),
            (
                "service",
                f.service.as_ref().map(span),
                &["down", "crash", "slow", "error"],
            ),
            (
                "replica",
                f.replica.as_ref().map(span),
                &["down", "crash", "slow", "error"],
            ),
            (
                "between",
                f.between.as_ref().map(span),
                &["partition", "link_loss", "link_latency"],
            ),
            ("extra", f.extra.as_ref().map(span), &["slow"]),
            ("status", f.status.as_ref().map(span), &["error"]),
            ("p", f.p.as_ref().map(span), &["error"]),
            ("loss", f.loss.as_ref().map(span), &["link_loss"]),
            ("latency", f.latency.as_ref().map(span), &["link_latency"]),
        ];
        for (field, sp, kinds) in fields {
            if let Some(sp) = sp
                && !kinds.contains(&kind)
            {
                self.error(
                    sp,
                    format!("`{field}` does not apply to a `{kind}` fault"),
                    format!("`{field}` on: {}", kinds.join(", ")),
                );
            }
        }
        let (Some(from), Some(until)) = (self.duration(&f.from), self.duration(&f.until)) else {
            return;
        };
        if until <= from {
            self.error(
                span(&f.until),
                "the fault ends before it starts",
                "until > from",
            );
            return;
        }
        let missing = |b: &mut Builder, field: &str, example: &str| {
            b.error(
                span(raw),
                format!("a `{kind}` fault needs `{field}`"),
                example.to_owned(),
            );
        };
        let (target, what) = if broker_kind {
            let Some(b) = &f.broker else {
                return missing(self, "broker", "broker = \"NAME\"");
            };
            let Some(&bid) = self.broker_ids.get(b.get_ref()) else {
                let known: Vec<&str> = self.broker_ids.keys().map(String::as_str).collect();
                self.error(
                    span(b),
                    format!("unknown broker `{}`", b.get_ref()),
                    format!("one of: {}", known.join(", ")),
                );
                return;
            };
            (FaultTarget::Broker(bid), b.get_ref().clone())
        } else if service_kind {
            let Some(svc) = &f.service else {
                return missing(self, "service", "service = \"NAME\"");
            };
            let Some(&sid) = self.service_ids.get(svc.get_ref()) else {
                let known: Vec<&str> = self.service_ids.keys().map(String::as_str).collect();
                self.error(
                    span(svc),
                    format!("unknown service `{}`", svc.get_ref()),
                    format!("one of: {}", known.join(", ")),
                );
                return;
            };
            let count = self.services[sid.index()].replicas;
            let replica = match &f.replica {
                Some(r) => {
                    let Some(i) = self.int_u32(r, 0, "replica", "a replica index") else {
                        return;
                    };
                    if i >= count {
                        self.error(
                            span(r),
                            format!("service `{}` has {count} replicas", svc.get_ref()),
                            format!("0 to {}", count - 1),
                        );
                        return;
                    }
                    Some(i)
                }
                None => None,
            };
            let what = match replica {
                Some(r) => format!("{}#{r}", svc.get_ref()),
                None => svc.get_ref().clone(),
            };
            (
                FaultTarget::Service {
                    service: sid,
                    replica,
                },
                what,
            )
        } else {
            let Some(between) = &f.between else {
                return missing(self, "between", "between = [\"caller\", \"service\"]");
            };
            let names = between.get_ref();
            if names.len() != 2 {
                self.error(
                    span(between),
                    "`between` names two parties",
                    "between = [\"a\", \"b\"]",
                );
                return;
            }
            let (a, b) = (names[0].get_ref().clone(), names[1].get_ref().clone());
            let mut links = Vec::new();
            for (caller, callee) in [(&a, &b), (&b, &a)] {
                if let Some(&sid) = self.service_ids.get(callee.as_str())
                    && let Some(&l) = self.link_ids.get(&(caller.clone(), sid))
                {
                    links.push(l);
                }
            }
            if links.is_empty() {
                self.error(
                    span(between),
                    format!("no call goes between `{a}` and `{b}`, so this fault could never fire"),
                    "two parties of which one calls the other",
                );
                return;
            }
            (FaultTarget::Links(links), format!("{a}<->{b}"))
        };
        let kind_spec = match kind {
            "broker_down" => FaultKind::BrokerDown,
            "down" => FaultKind::Down,
            "crash" => FaultKind::Crash,
            "partition" => FaultKind::Partition,
            "slow" => match &f.extra {
                Some(d) => match self.dist(d) {
                    Some(d) => FaultKind::Slow(d),
                    None => return,
                },
                None => return missing(self, "extra", "extra = \"200ms\" (a distribution)"),
            },
            "error" => {
                let Some(st) = &f.status else {
                    return missing(self, "status", "status = \"internal\"");
                };
                let Some(status) = self.status(st, false) else {
                    return;
                };
                let p = match &f.p {
                    Some(p) => match self.probability(p, "`p`") {
                        Some(p) => p,
                        None => return,
                    },
                    None => 1.0,
                };
                FaultKind::Error { status, p }
            }
            "link_loss" => match &f.loss {
                Some(l) => match self.probability(l, "the loss") {
                    Some(p) => FaultKind::LinkLoss(p),
                    None => return,
                },
                None => return missing(self, "loss", "loss = 0.3"),
            },
            "link_latency" => match &f.latency {
                Some(d) => match self.dist(d) {
                    Some(d) => FaultKind::LinkLatency(d),
                    None => return,
                },
                None => {
                    return missing(
                        self,
                        "latency",
                        "latency = \"100ms\" (a distribution, added)",
                    );
                }
            },
            _ => unreachable!("kinds checked above"),
        };
        self.faults.push(FaultSpec {
            label: format!("{kind} {what} {from}..{until}"),
            kind: kind_spec,
            target,
            from: SimTime::ZERO + from,
            until: SimTime::ZERO + until,
        });
    }

    // ---- network ----

    fn network(&mut self, n: &RawNetwork) {
        self.default_latency = match &n.latency {
            Some(l) => self.dist(l),
            None => Some(Dist::Constant(SimDuration::ZERO)),
        };
        self.default_loss = n
            .loss
            .as_ref()
            .and_then(|l| self.probability(l, "the loss"))
            .unwrap_or(0.0);
        for link in &n.links {
            let l = link.get_ref();
            let key = (l.from.get_ref().clone(), l.to.get_ref().clone());
            let latency = l.latency.as_ref().and_then(|d| self.dist(d));
            let loss = l
                .loss
                .as_ref()
                .and_then(|p| self.probability(p, "the loss"));
            if self.link_overrides.contains_key(&key) {
                self.error(
                    span(link),
                    format!("a second link from `{}` to `{}`", key.0, key.1),
                    "one [[network.links]] entry per (from, to)",
                );
                continue;
            }
            self.link_overrides.insert(
                key,
                LinkOverride {
                    latency,
                    loss,
                    span: span(link),
                    used: false,
                },
            );
        }
    }

    fn link(&mut self, caller: &str, service: ServiceId) -> LinkId {
        let key = (caller.to_owned(), service);
        if let Some(&id) = self.link_ids.get(&key) {
            return id;
        }
        let service_name = self.services[service.index()].name.clone();
        let over = self
            .link_overrides
            .get_mut(&(caller.to_owned(), service_name.clone()));
        let (mut latency, mut loss) = (
            self.default_latency
                .clone()
                .unwrap_or(Dist::Constant(SimDuration::ZERO)),
            self.default_loss,
        );
        if let Some(o) = over {
            o.used = true;
            if let Some(l) = &o.latency {
                latency = l.clone();
            }
            if let Some(p) = o.loss {
                loss = p;
            }
        }
        self.links.push(LinkSpec {
            name: format!("{caller}->{service_name}"),
            latency,
            loss,
        });
        let id = LinkId(self.links.len() as u32 - 1);
        self.link_ids.insert(key, id);
        id
    }

    /// The edge from `caller` to `target`, whose calls all use `policy` (the span is
    /// the call site's, to point at a conflict).
    fn edge(
        &mut self,
        caller: &str,
        target: EndpointId,
        policy: PolicyId,
        at: Range<usize>,
    ) -> EdgeId {
        let key = (caller.to_owned(), target);
        if let Some(&id) = self.edge_ids.get(&key) {
            let had = self.edges[id.index()].policy;
            if had != policy {
                let (had, now) = (
                    &self.policies[had.index()].name,
                    &self.policies[policy.index()].name,
                );
                let message = format!(
                    "`{caller}` calls `{}` with policy `{now}` here and `{had}` elsewhere",
                    self.endpoints[target.index()].name
                );
                self.error(at, message, "one policy per caller and endpoint (it owns the breaker, bulkhead and budgets)");
            }
            return id;
        }
        let service = self.endpoints[target.index()].service;
        let link = self.link(caller, service);
        self.edges.push(EdgeSpec {
            name: format!("{caller}->{}", self.endpoints[target.index()].name),
            target,
            link,
            policy,
        });
        let id = EdgeId(self.edges.len() as u32 - 1);
        self.edge_policy_span.insert(id, at);
        self.edge_ids.insert(key, id);
        id
    }

    fn check_link_overrides_used(&mut self) {
        let unused: Vec<(String, String, Range<usize>)> = self
            .link_overrides
            .iter()
            .filter(|(_, o)| !o.used)
            .map(|((f, t), o)| (f.clone(), t.clone(), o.span.clone()))
            .collect();
        for (from, to, sp) in unused {
            self.error(
                sp,
                format!("no call goes from `{from}` to `{to}`, so this link would never be used"),
                "`from` a service or workload that calls the service `to`",
            );
        }
    }

    // ---- services ----

    fn declare_services(&mut self, raw: &RawScenario) {
        for (s, (name, svc)) in raw.services.iter().enumerate() {
            self.check_name(name, "service");
            let id = ServiceId(s as u32);
            self.service_ids.insert(name.get_ref().clone(), id);
            let v = svc.get_ref();
            let replicas = v
                .replicas
                .as_ref()
                .and_then(|r| self.int_u32(r, 1, "replicas", "at least 1 replica"))
                .unwrap_or(1);
            let workers = v
                .workers
                .as_ref()
                .and_then(|w| self.int_u32(w, 1, "workers", "at least 1 worker per replica"))
                .unwrap_or(1);
            let queue_capacity = v
                .queue
                .as_ref()
                .and_then(|q| self.int_u32(q, 0, "the queue capacity", "a capacity >= 0"))
                .unwrap_or(DEFAULT_QUEUE);
            let balancer = match v.balancer.as_ref().map(|b| (b, b.get_ref().as_str())) {
                None | Some((_, "round_robin")) => Balancer::RoundRobin,
                Some((_, "random")) => Balancer::Random,
                Some((_, "least_outstanding")) => Balancer::LeastOutstanding,
                Some((_, "power_of_two_choices")) => Balancer::PowerOfTwoChoices,
                Some((b, other)) => {
                    self.error(
                        span(b),
                        format!("unknown balancer `{other}`"),
                        "one of: round_robin, random, least_outstanding, power_of_two_choices",
                    );
                    Balancer::RoundRobin
                }
            };
            let hold = match v
                .worker_during_calls
                .as_ref()
                .map(|h| (h, h.get_ref().as_str()))
            {
                None | Some((_, "held")) => WorkerHold::Held,
                Some((_, "released")) => WorkerHold::Released,
                Some((h, other)) => {
                    self.error(
                        span(h),
                        format!("unknown worker_during_calls `{other}`"),
                        "\"held\" (thread per request) or \"released\" (event loop)",
                    );
                    WorkerHold::Held
                }
            };
            if v.endpoints.is_empty() {
                self.error(
                    span(svc),
                    format!("service `{}` has no endpoint", name.get_ref()),
                    "a [services.NAME.endpoints.ENDPOINT] table with `steps`",
                );
            }
            let mut endpoints = Vec::new();
            for (ep_name, ep) in &v.endpoints {
                let kb = |b: &mut Builder, v: &Option<Spanned<f64>>| match v {
                    Some(x) if !(*x.get_ref() >= 0.0 && x.get_ref().is_finite()) => {
                        b.error(
                            span(x),
                            format!("a payload of {} KB", x.get_ref()),
                            "a size in KB >= 0",
                        );
                        1.0
                    }
                    Some(x) => *x.get_ref(),
                    None => 1.0,
                };
                let request_kb = kb(self, &ep.get_ref().request_kb);
                let response_kb = kb(self, &ep.get_ref().response_kb);
                self.check_name(ep_name, "endpoint");
                let full = format!("{}/{}", name.get_ref(), ep_name.get_ref());
                let eid = EndpointId(self.endpoints.len() as u32);
                let idempotency = ep
                    .get_ref()
                    .idempotency
                    .as_ref()
                    .and_then(|d| self.positive_duration(d, "the idempotency-key retention"));
                self.endpoints.push(EndpointSpec {
                    service: id,
                    name: full.clone(),
                    handler: SeqId(u32::MAX),
                    request_kb,
                    response_kb,
                    idempotency,
                });
                self.endpoint_ids.insert(full, eid);
                endpoints.push(eid);
            }
            self.services.push(ServiceSpec {
                name: name.get_ref().clone(),
                replicas,
                workers,
                queue_capacity,
                balancer,
                hold,
                drop_expired: v.drop_expired.as_ref().is_some_and(|d| *d.get_ref()),
                endpoints,
                consumer: None,
            });
        }
    }

    fn compile_service(&mut self, service: ServiceId, raw: &RawService) {
        let endpoints = self.services[service.index()].endpoints.clone();
        for (eid, (_, ep)) in endpoints.into_iter().zip(&raw.endpoints) {
            let ep = ep.get_ref();
            let translate = ep
                .translate
                .as_ref()
                .map(|t| self.translation(t))
                .unwrap_or_default();
            let ctx = Ctx {
                service,
                endpoint: eid,
                translate,
            };
            if ep.steps.get_ref().is_empty() {
                self.error(
                    span(&ep.steps),
                    "an endpoint with no steps",
                    "at least one step, e.g. { work = \"10ms\" }",
                );
            }
            let seq = self.compile_seq(&ctx, ep.steps.get_ref(), false);
            self.endpoints[eid.index()].handler = seq;
        }
    }

    fn compile_seq(&mut self, ctx: &Ctx, steps: &[Spanned<RawStep>], branch: bool) -> SeqId {
        let mut out = Vec::new();
        for s in steps {
            self.compile_step(ctx, s, branch, &mut out);
        }
        self.seqs.push(out);
        SeqId(self.seqs.len() as u32 - 1)
    }

    /// Appends the steps `step` compiles to; a `steps` sequence is flattened in place.
    fn compile_step(
        &mut self,
        ctx: &Ctx,
        step: &Spanned<RawStep>,
        branch: bool,
        out: &mut Vec<Step>,
    ) {
        let s = step.get_ref();
        let kinds: Vec<&str> = [
            ("work", s.work.is_some()),
            ("call", s.call.is_some()),
            ("parallel", s.parallel.is_some()),
            ("fail", s.fail.is_some()),
            ("steps", s.steps.is_some()),
            ("stream", s.stream.is_some()),
            ("publish", s.publish.is_some()),
            ("effect", s.effect.is_some()),
            ("saga", s.saga.is_some()),
        ]
        .into_iter()
        .filter_map(|(k, present)| present.then_some(k))
        .collect();
        if kinds.len() != 1 {
            let found = if kinds.is_empty() {
                "none".to_owned()
            } else {
                kinds
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(" and ")
            };
            self.error(
                span(step),
                format!("a step needs exactly one kind; found {found}"),
                "one of `work`, `call`, `parallel`, `fail`, `steps`, `stream`, `publish`, `effect`, `saga`",
            );
            return;
        }
        let kind = kinds[0];
        let misplaced: [(&str, Option<Range<usize>>, &str); 15] = [
            ("key", s.key.as_ref().map(span), "publish"),
            ("confirms", s.confirms.as_ref().map(span), "publish"),
            ("outbox", s.outbox.as_ref().map(span), "publish"),
            ("retries", s.retries.as_ref().map(span), "publish"),
            ("name", s.name.as_ref().map(span), "saga"),
            ("policy", None, "call"),
            ("timeout", s.timeout.as_ref().map(span), "call"),
            ("translate", s.translate.as_ref().map(span), "call"),
            ("policy", s.policy.as_ref().map(span), "call"),
            ("retry_after", s.retry_after.as_ref().map(span), "fail"),
            ("interval", s.interval.as_ref().map(span), "stream"),
            ("join", s.join.as_ref().map(span), "parallel"),
            ("quorum", s.quorum.as_ref().map(span), "parallel"),
            ("p", s.p.as_ref().map(span), "fail"),
            ("required", s.required.as_ref().map(span), ""),
        ];
        for (field, sp, owner) in misplaced {
            let Some(sp) = sp else { continue };
            if field == "required" {
                if !branch {
                    self.error(
                        sp,
                        "`required` only applies to a branch of a parallel step",
                        "`required` on a branch of `parallel` with join = \"all_settled\"",
                    );
                }
            } else if owner != kind {
                self.error(
                    sp,
                    format!("`{field}` does not apply to a `{kind}` step"),
                    format!("`{field}` on a `{owner}` step"),
                );
            }
        }
        match kind {
            "work" => {
                if let Some(d) = self.dist_id(s.work.as_ref().expect("kind")) {
                    out.push(Step::Work(d));
                }
            }
            "fail" => {
                let status = self.status(s.fail.as_ref().expect("kind"), false);
                let p = match &s.p {
                    Some(p) => self.probability(p, "`p`"),
                    None => Some(1.0),
                };
                let retry_after = s
                    .retry_after
                    .as_ref()
                    .and_then(|r| self.positive_duration(r, "retry_after"));
                if let (Some(status), Some(p)) = (status, p) {
                    out.push(Step::Fail {
                        status,
                        p,
                        retry_after: retry_after.map(crate::model::policy::Pushback::After),
                    });
                }
            }
            "call" => {
                let target = s.call.as_ref().expect("kind");
                let timeout = s
                    .timeout
                    .as_ref()
                    .and_then(|t| self.positive_duration(t, "a timeout"));
                let translate = match &s.translate {
                    Some(t) => ctx.translate.overlaid(&self.translation(t)),
                    None => ctx.translate,
                };
                let policy = self.policy_ref(s.policy.as_ref());
                if let Some(eid) = self.resolve_endpoint(target) {
                    let caller = self.services[ctx.service.index()].name.clone();
                    let at = s.policy.as_ref().map_or_else(|| span(target), span);
                    let edge = self.edge(&caller, eid, policy, at);
                    self.graph
                        .entry(ctx.endpoint)
                        .or_default()
                        .push((eid, span(target)));
                    out.push(Step::Call(CallSite {
                        edge,
                        timeout,
                        translate,
                    }));
                }
            }
            "stream" => {
                let n = s.stream.as_ref().expect("kind");
                let messages = self.int_u32(n, 1, "the number of messages", "at least 1 message");
                let interval = match &s.interval {
                    Some(d) => self.dist_id(d),
                    None => {
                        self.dists.push(Dist::Constant(SimDuration::ZERO));
                        Some(DistId(self.dists.len() as u32 - 1))
                    }
                };
                if let (Some(messages), Some(interval)) = (messages, interval) {
                    out.push(Step::Stream { messages, interval });
                }
            }
            "steps" => {
                for sub in s.steps.as_ref().expect("kind").get_ref() {
                    self.compile_step(ctx, sub, false, out);
                }
            }
            "parallel" => {
                if let Some(p) = self.compile_parallel(ctx, step) {
                    out.push(Step::Parallel(p));
                }
            }
            "publish" => self.compile_publish(ctx, s, out),
            "effect" => self.compile_effect(ctx, s, out),
            "saga" => self.compile_saga(ctx, s, out),
            _ => unreachable!(),
        }
    }

    fn compile_parallel(&mut self, ctx: &Ctx, step: &Spanned<RawStep>) -> Option<ParallelId> {
        let s = step.get_ref();
        let branches_raw = s.parallel.as_ref().expect("kind");
        let n = branches_raw.get_ref().len();
        if n == 0 {
            self.error(
                span(branches_raw),
                "a parallel step with no branches",
                "at least one branch",
            );
            return None;
        }
        let join = match s.join.as_ref().map(|j| (j, j.get_ref().as_str())) {
            None | Some((_, "all")) => Join::All,
            Some((_, "all_settled")) => Join::AllSettled,
            Some((_, "any")) => Join::Any,
            Some((_, "quorum")) => {
                let Some(q) = &s.quorum else {
                    self.error(
                        span(step),
                        "join = \"quorum\" needs `quorum = N`",
                        "`quorum = N` with 1 <= N <= the number of branches",
                    );
                    return None;
                };
                Join::Quorum(self.int_u32(
                    q,
                    1,
                    "the quorum",
                    "1 <= quorum <= the number of branches",
                )?)
            }
            Some((j, other)) => {
                self.error(
                    span(j),
                    format!("unknown join `{other}`"),
                    "one of: all, all_settled, any, quorum",
                );
                return None;
            }
        };
        if let Join::Quorum(q) = join
            && q as usize > n
        {
            self.error(
                span(s.quorum.as_ref().expect("quorum join")),
                format!("a quorum of {q} out of {n} branches can never be reached"),
                format!("a quorum from 1 to {n}"),
            );
            return None;
        }
        if s.quorum.is_some() && !matches!(join, Join::Quorum(_)) {
            self.error(
                span(s.quorum.as_ref().expect("checked")),
                "`quorum` needs join = \"quorum\"",
                "join = \"quorum\"",
            );
        }
        let mut branches = Vec::new();
        for b in branches_raw.get_ref() {
            if let Some(r) = &b.get_ref().required
                && join != Join::AllSettled
            {
                self.error(
                    span(r),
                    "`required` only means something with join = \"all_settled\"",
                    "join = \"all_settled\" on the parallel step",
                );
            }
            let required = b.get_ref().required.as_ref().is_none_or(|r| *r.get_ref());
            let body = self.compile_seq(ctx, std::slice::from_ref(b), true);
            branches.push(Branch { body, required });
        }
        self.parallels.push(ParallelSpec { join, branches });
        Some(ParallelId(self.parallels.len() as u32 - 1))
    }

    fn resolve_endpoint(&mut self, target: &Spanned<String>) -> Option<EndpointId> {
        let t = target.get_ref();
        if let Some(&id) = self.endpoint_ids.get(t) {
            return Some(id);
        }
        let (svc, _) = t.split_once('/').unwrap_or((t, ""));
        let (message, expected) = if !t.contains('/') {
            (
                format!("`{t}` does not name an endpoint"),
                "SERVICE/ENDPOINT, e.g. \"inventory/check\"".to_owned(),
            )
        } else if let Some(&sid) = self.service_ids.get(svc) {
            let eps: Vec<&str> = self.services[sid.index()]
                .endpoints
                .iter()
                .map(|e| self.endpoints[e.index()].name.as_str())
                .collect();
            (
                format!("service `{svc}` has no endpoint `{}`", &t[svc.len() + 1..]),
                format!("one of: {}", eps.join(", ")),
            )
        } else {
            let known: Vec<&str> = self.service_ids.keys().map(String::as_str).collect();
            (
                format!("unknown service `{svc}` in `{t}`"),
                format!("a service of this scenario: {}", known.join(", ")),
            )
        };
        self.error(span(target), message, expected);
        None
    }

    // ---- workloads ----

    fn workload(&mut self, name: &Name, w: &RawWorkload) -> Option<WorkloadSpec> {
        let target = self.resolve_endpoint(&w.target);
        let timeout = w
            .timeout
            .as_ref()
            .and_then(|t| self.positive_duration(t, "a timeout"));
        let load = if let Some(users) = &w.users {
            for (field, sp) in [
                ("rate", w.rate.as_ref().map(span)),
                ("schedule", w.schedule.as_ref().map(span)),
                ("arrivals", w.arrivals.as_ref().map(span)),
            ] {
                if let Some(sp) = sp {
                    self.error(
                        sp,
                        format!("`{field}` is for open-loop workloads; this one has `users`"),
                        "either `users` (closed loop) or `rate`/`schedule` (open loop)",
                    );
                }
            }
            let users = self.int_u32(users, 1, "users", "at least 1 user")?;
            let think = match &w.think {
                Some(t) => self.dist(t)?,
                None => Dist::Constant(SimDuration::ZERO),
            };
            Load::Closed { users, think }
        } else {
            if let Some(t) = &w.think {
                self.error(
                    span(t),
                    "`think` is for closed-loop workloads (with `users`)",
                    "`users = N` next to `think`",
                );
            }
            let pattern = match w.arrivals.as_ref().map(|a| (a, a.get_ref().as_str())) {
                None | Some((_, "poisson")) => ArrivalPattern::Poisson,
                Some((_, "constant")) => ArrivalPattern::Constant,
                Some((a, other)) => {
                    self.error(
                        span(a),
                        format!("unknown arrival pattern `{other}`"),
                        "\"poisson\" or \"constant\"",
                    );
                    return None;
                }
            };
            let segments = match (&w.rate, &w.schedule) {
                (Some(r), None) => {
                    let rate = *r.get_ref();
                    if !(rate > 0.0 && rate.is_finite()) {
                        self.error(
                            span(r),
                            format!("a rate of {rate} per second sends nothing"),
                            "a rate above zero (requests per second)",
                        );
                        return None;
                    }
                    vec![RateSegment {
                        start: SimTime::ZERO,
                        rate_per_s: rate,
                    }]
                }
                (None, Some(schedule)) => self.schedule(schedule)?,
                _ => {
                    self.error(
                        span(&w.target),
                        format!("workload `{}` needs exactly one of `rate`, `schedule`, `users`", name.get_ref()),
                        "rate = 10 (per second), or schedule = [{ at = \"0s\", rate = 10 }, ...], or users = N",
                    );
                    return None;
                }
            };
            Load::Open { pattern, segments }
        };
        let policy = self.policy_ref(w.policy.as_ref());
        let at = w.policy.as_ref().map_or_else(|| span(&w.target), span);
        let edge = self.edge(name.get_ref(), target?, policy, at);
        let keys = match (&w.keys, &w.zipf) {
            (None, None) => None,
            (None, Some(z)) => {
                self.error(
                    span(z),
                    "`zipf` shapes a key space: it needs `keys`",
                    "keys = N next to zipf",
                );
                None
            }
            (Some(n), z) => {
                let count = self.int_u32(n, 1, "keys", "at least 1 key")?;
                let zipf = match z {
                    Some(z) if !(*z.get_ref() > 0.0 && z.get_ref().is_finite()) => {
                        self.error(
                            span(z),
                            format!("a zipf exponent of {}", z.get_ref()),
                            "an exponent above 0 (1.0 is the classic)",
                        );
                        return None;
                    }
                    Some(z) => Some(*z.get_ref()),
                    None => None,
                };
                Some(KeySpace { count, zipf })
            }
        };
        let operation_is_key = match w.operation.as_ref().map(|o| (o, o.get_ref().as_str())) {
            None | Some((_, "request")) => false,
            Some((o, "key")) => {
                if keys.is_none() {
                    self.error(
                        span(o),
                        "operation = \"key\" needs a key space",
                        "keys = N on this workload",
                    );
                }
                true
            }
            Some((o, other)) => {
                self.error(
                    span(o),
                    format!("unknown operation `{other}`"),
                    "\"request\" (each request is an operation) or \"key\" (requests with one key are one operation, e.g. a form submitted twice)",
                );
                false
            }
        };
        Some(WorkloadSpec {
            operation_is_key,
            keys,
            name: name.get_ref().clone(),
            edge,
            timeout,
            load,
        })
    }

    fn schedule(
        &mut self,
        schedule: &Spanned<Vec<Spanned<RawSegment>>>,
    ) -> Option<Vec<RateSegment>> {
        let mut out: Vec<RateSegment> = Vec::new();
        for seg in schedule.get_ref() {
            let s = seg.get_ref();
            let at = self.duration(&s.at)?;
            let rate = *s.rate.get_ref();
            if !(rate >= 0.0 && rate.is_finite()) {
                self.error(
                    span(&s.rate),
                    format!("a rate of {rate}"),
                    "a rate >= 0 (0 pauses the arrivals)",
                );
                return None;
            }
            let start = SimTime::ZERO + at;
            match out.last() {
                None if !at.is_zero() => {
                    self.error(
                        span(&s.at),
                        "the schedule must start at \"0s\"",
                        "at = \"0s\" on the first entry",
                    );
                    return None;
                }
                Some(prev) if start <= prev.start => {
                    self.error(
                        span(&s.at),
                        "schedule entries must be in increasing time order",
                        "an `at` later than the entry before",
                    );
                    return None;
                }
                _ => {}
            }
            out.push(RateSegment {
                start,
                rate_per_s: rate,
            });
        }
        if out.is_empty() {
            self.error(
                span(schedule),
                "an empty schedule",
                "at least one { at = \"0s\", rate = N }",
            );
            return None;
        }
        Some(out)
    }

    /// A call cycle would make a request call itself forever; refuse it up front.
    fn check_cycles(&mut self) {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            OnPath,
            Done,
        }
        let n = self.endpoints.len();
        let mut mark = vec![Mark::New; n];
        let mut found: Option<(Vec<EndpointId>, Range<usize>)> = None;
        fn visit(
            e: EndpointId,
            graph: &Graph,
            mark: &mut [Mark],
            path: &mut Vec<EndpointId>,
            found: &mut Option<(Vec<EndpointId>, Range<usize>)>,
        ) {
            mark[e.index()] = Mark::OnPath;
            path.push(e);
            for (next, sp) in graph.get(&e).map(Vec::as_slice).unwrap_or(&[]) {
                if found.is_some() {
                    return;
                }
                match mark[next.index()] {
                    Mark::OnPath => {
                        let start = path.iter().position(|p| p == next).expect("on path");
                        let mut cycle = path[start..].to_vec();
                        cycle.push(*next);
                        *found = Some((cycle, sp.clone()));
                        return;
                    }
                    Mark::New => visit(*next, graph, mark, path, found),
                    Mark::Done => {}
                }
            }
            path.pop();
            mark[e.index()] = Mark::Done;
        }
        for e in 0..n {
            if mark[e] == Mark::New && found.is_none() {
                visit(
                    EndpointId(e as u32),
                    &self.graph,
                    &mut mark,
                    &mut Vec::new(),
                    &mut found,
                );
            }
        }
        if let Some((cycle, sp)) = found {
            let names: Vec<&str> = cycle
                .iter()
                .map(|e| self.endpoints[e.index()].name.as_str())
                .collect();
            let message = format!("call cycle {} can recurse forever", names.join(" -> "));
            self.error(sp, message, "a call graph without cycles");
        }
    }
}

struct Ctx {
    service: ServiceId,
    endpoint: EndpointId,
    translate: Translation,
}
