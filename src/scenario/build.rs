//! Stage two: check a raw scenario and build the model's `Spec` from it. Every problem
//! becomes a diagnostic that points at the value at fault; building goes on past the
//! first problem so that one run reports them all.

use super::diag::Diagnostic;
use super::duration;
use super::raw::*;
use crate::engine::{SimDuration, SimTime};
use crate::model::spec::*;
use crate::model::{Dist, Status, Translation};
use std::collections::BTreeMap;
use std::ops::Range;
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
        self.declare_services(raw);
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
            policies: vec![crate::model::policy::PolicySpec::none("none")],
            faults: Vec::new(),
        };
        Some(Built {
            name,
            description: sim.description.clone().unwrap_or_default(),
            spec,
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

    fn edge(&mut self, caller: &str, target: EndpointId) -> EdgeId {
        let key = (caller.to_owned(), target);
        if let Some(&id) = self.edge_ids.get(&key) {
            return id;
        }
        let service = self.endpoints[target.index()].service;
        let link = self.link(caller, service);
        self.edges.push(EdgeSpec {
            name: format!("{caller}->{}", self.endpoints[target.index()].name),
            target,
            link,
            policy: PolicyId(0),
        });
        let id = EdgeId(self.edges.len() as u32 - 1);
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
            for ep_name in v.endpoints.keys() {
                self.check_name(ep_name, "endpoint");
                let full = format!("{}/{}", name.get_ref(), ep_name.get_ref());
                let eid = EndpointId(self.endpoints.len() as u32);
                self.endpoints.push(EndpointSpec {
                    service: id,
                    name: full.clone(),
                    handler: SeqId(u32::MAX),
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
                drop_expired: false,
                endpoints,
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
                "one of `work`, `call`, `parallel`, `fail`, `steps`",
            );
            return;
        }
        let kind = kinds[0];
        let misplaced: [(&str, Option<Range<usize>>, &str); 6] = [
            ("timeout", s.timeout.as_ref().map(span), "call"),
            ("translate", s.translate.as_ref().map(span), "call"),
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
                if let (Some(status), Some(p)) = (status, p) {
                    out.push(Step::Fail {
                        status,
                        p,
                        retry_after: None,
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
                if let Some(eid) = self.resolve_endpoint(target) {
                    let caller = self.services[ctx.service.index()].name.clone();
                    let edge = self.edge(&caller, eid);
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
        let edge = self.edge(name.get_ref(), target?);
        Some(WorkloadSpec {
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
