//! The one place the lints read the model's `Spec` (and the raw TOML, for spans): it is
//! adapted here into plain numbers and indices, so a change in the model's types is
//! fixed in this file alone.

use crate::model::Spec;
use crate::model::policy::{PolicySpec, RetryBudget};
use crate::model::spec::{
    ConsumerSpec, EndpointSpec, Load, PublishTarget, ServiceSpec, Step, Subscription, WorkerHold,
};
use crate::scenario::raw::{RawScenario, RawStep};
use std::collections::BTreeMap;
use std::ops::Range;

/// How a parallel block's branches are waited for (for the nominal latency).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Wait {
    All,
    First,
    Nth(usize),
}

/// A handler as the lints see it: time, calls (with fan-out), what it writes.
#[derive(Clone, Debug)]
pub enum Node {
    Work(f64),
    Call {
        edge: usize,
        timeout_s: Option<f64>,
    },
    Publish(usize),
    Effect(usize),
    /// A `fail` step that can fire (p > 0).
    Fail,
    Parallel {
        wait: Wait,
        branches: Vec<Vec<Node>>,
    },
}

pub struct Service {
    pub name: String,
    pub replicas: u32,
    pub workers: u32,
    /// Workers stay busy while their handler waits on a call.
    pub held: bool,
    pub endpoints: Vec<usize>,
    pub consumer: Option<usize>,
    pub span: Range<usize>,
}

pub struct Endpoint {
    pub name: String,
    pub service: usize,
    pub steps: Vec<Node>,
    pub idempotent: bool,
    pub span: Range<usize>,
}

pub struct Retry {
    pub max_attempts: u32,
    /// The longest wait before each retry (index 0: before the first retry), seconds.
    pub backoff_max_s: Vec<f64>,
    /// Retries may add at most this share of the calls (a budget), if capped.
    pub budget_share: Option<f64>,
    pub throttled: bool,
}

pub struct Edge {
    pub name: String,
    /// The calling service, or None for a workload.
    pub caller: Option<usize>,
    pub target: usize,
    pub policy: usize,
    pub link_one_way_s: f64,
    pub span: Range<usize>,
}

pub struct Policy {
    pub name: String,
    pub try_timeout_s: Option<f64>,
    pub deadline_s: Option<f64>,
    pub retry: Option<Retry>,
    pub hedge_attempts: u32,
    pub cache: bool,
    pub span: Option<Range<usize>>,
}

pub struct Workload {
    pub name: String,
    pub edge: usize,
    /// Requests per second at the busiest point of its schedule (closed loops: users
    /// over their think time).
    pub peak_rate: f64,
    pub timeout_s: Option<f64>,
}

pub struct Queue {
    pub name: String,
    pub consumers: Vec<usize>,
    pub ttl: bool,
    pub dead_letter_target: bool,
    pub span: Range<usize>,
}

pub struct Consumer {
    pub name: String,
    pub endpoint: usize,
    /// The queue it reads, or None for a topic (a log).
    pub queue: Option<usize>,
    pub topic: Option<usize>,
    pub dedupe: bool,
    pub span: Range<usize>,
}

pub struct Publish {
    pub queues: Vec<usize>,
    pub topic: Option<usize>,
}

pub struct System {
    pub services: Vec<Service>,
    pub endpoints: Vec<Endpoint>,
    pub edges: Vec<Edge>,
    pub policies: Vec<Policy>,
    pub workloads: Vec<Workload>,
    pub queues: Vec<Queue>,
    pub topic_groups: Vec<Vec<usize>>,
    pub consumers: Vec<Consumer>,
    pub publishes: Vec<Publish>,
    pub effects: Vec<String>,
    /// Where an effect step is written, by effect index (the first one).
    pub effect_spans: BTreeMap<usize, Range<usize>>,
}

fn secs(d: crate::engine::SimDuration) -> f64 {
    d.as_secs_f64()
}

/// A distribution's mean, seconds (0 when it has none: a truncated normal, a heavy tail).
fn mean_s(d: &crate::model::Dist) -> f64 {
    match d {
        // Truncated at 0: the parameter is the mean unless much of the mass is below 0.
        crate::model::Dist::Normal { mean_ns, .. } => mean_ns * 1e-9,
        _ => d.mean_s().unwrap_or(0.0),
    }
    .max(0.0)
}

fn policy(p: &PolicySpec, span: Option<Range<usize>>) -> Policy {
    let retry = p.retry.as_ref().filter(|r| r.max_attempts > 1).map(|r| {
        let mut previous = crate::engine::SimDuration::ZERO;
        let backoff_max_s = (1..r.max_attempts)
            .map(|k| {
                let (_, high) = r.backoff.bounds(k, previous);
                previous = high;
                secs(high)
            })
            .collect();
        Retry {
            max_attempts: r.max_attempts,
            backoff_max_s,
            budget_share: r.budget.as_ref().map(|b| match b {
                RetryBudget::Rate { percent, .. } => percent / 100.0,
                RetryBudget::Concurrency { percent, .. } => percent / 100.0,
            }),
            throttled: r.throttle.is_some(),
        }
    });
    Policy {
        name: p.name.clone(),
        try_timeout_s: p.try_timeout.map(secs),
        deadline_s: p.deadline.map(secs),
        retry,
        hedge_attempts: p.hedge.map_or(1, |h| h.max_attempts.max(1)),
        cache: p.cache.is_some(),
        span,
    }
}

/// Where `name` is written, by the spans of one kind of entity (0..0: not found).
fn at(spans: &BTreeMap<String, Range<usize>>, name: &str) -> Range<usize> {
    spans.get(name).cloned().unwrap_or(0..0)
}

fn service(s: &ServiceSpec, span: Range<usize>) -> Service {
    Service {
        name: s.name.clone(),
        replicas: s.replicas,
        workers: s.workers,
        held: s.hold == WorkerHold::Held,
        endpoints: s.endpoints.iter().map(|e| e.index()).collect(),
        consumer: s.consumer.map(|c| c.index()),
        span,
    }
}

fn endpoint(spec: &Spec, e: &EndpointSpec, span: Range<usize>) -> Endpoint {
    Endpoint {
        name: e.name.clone(),
        service: e.service.index(),
        steps: nodes(spec, e.handler.index()),
        idempotent: e.idempotency.is_some(),
        span,
    }
}

/// Every edge, with the service that calls along it (read from the endpoints' steps).
fn edges(spec: &Spec, endpoints: &[Endpoint], spans: &BTreeMap<String, Range<usize>>) -> Vec<Edge> {
    let caller_of = callers(endpoints);
    spec.edges
        .iter()
        .enumerate()
        .map(|(i, e)| Edge {
            name: e.name.clone(),
            caller: caller_of.get(&i).copied(),
            target: e.target.index(),
            policy: e.policy.index(),
            link_one_way_s: mean_s(&spec.links[e.link.index()].latency),
            span: at(spans, &e.name),
        })
        .collect()
}

/// Every queue, marking those another queue dead-letters into.
fn queues(spec: &Spec, spans: &BTreeMap<String, Range<usize>>) -> Vec<Queue> {
    let dlq: Vec<usize> = spec
        .queues
        .iter()
        .filter_map(|q| q.dead_letter.map(|d| d.index()))
        .collect();
    spec.queues
        .iter()
        .enumerate()
        .map(|(i, q)| Queue {
            name: q.name.clone(),
            consumers: q.consumers.iter().map(|c| c.index()).collect(),
            ttl: q.ttl.is_some(),
            dead_letter_target: dlq.contains(&i),
            span: at(spans, &q.name),
        })
        .collect()
}

/// Which service makes the calls of each edge (by edge index): the one whose handler
/// holds it.
fn callers(endpoints: &[Endpoint]) -> BTreeMap<usize, usize> {
    fn note_calls(nodes: &[Node], service: usize, caller_of: &mut BTreeMap<usize, usize>) {
        for n in nodes {
            match n {
                Node::Call { edge, .. } => {
                    caller_of.insert(*edge, service);
                }
                Node::Parallel { branches, .. } => {
                    for b in branches {
                        note_calls(b, service, caller_of);
                    }
                }
                _ => {}
            }
        }
    }
    let mut caller_of = BTreeMap::new();
    for e in endpoints {
        note_calls(&e.steps, e.service, &mut caller_of);
    }
    caller_of
}

/// Requests per second at a load's busiest point; a closed loop's users over their
/// mean think time (0 without one: the lint cannot bound it).
fn peak_rate(load: &Load) -> f64 {
    match load {
        Load::Open { segments, .. } => segments.iter().map(|s| s.rate_per_s).fold(0.0, f64::max),
        Load::Closed { users, think } => {
            let t = mean_s(think);
            if t > 0.0 { f64::from(*users) / t } else { 0.0 }
        }
    }
}

fn consumer(c: &ConsumerSpec, span: Range<usize>) -> Consumer {
    Consumer {
        name: c.name.clone(),
        endpoint: c.endpoint.index(),
        queue: match c.subscription {
            Subscription::Queue(q) => Some(q.index()),
            Subscription::Topic(_) => None,
        },
        topic: match c.subscription {
            Subscription::Topic(t) => Some(t.index()),
            Subscription::Queue(_) => None,
        },
        dedupe: c.dedupe.is_some(),
        span,
    }
}

fn publish(target: &PublishTarget) -> Publish {
    match target {
        PublishTarget::Queues { queues, .. } => Publish {
            queues: queues.iter().map(|q| q.index()).collect(),
            topic: None,
        },
        PublishTarget::Topic(t) => Publish {
            queues: vec![],
            topic: Some(t.index()),
        },
    }
}

fn nodes(spec: &Spec, seq: usize) -> Vec<Node> {
    spec.seqs[seq]
        .iter()
        .flat_map(|step| -> Vec<Node> {
            match step {
                Step::Work(d) => vec![Node::Work(mean_s(&spec.dists[d.index()]))],
                Step::Stream { messages, interval } => vec![Node::Work(
                    f64::from(*messages) * mean_s(&spec.dists[interval.index()]),
                )],
                Step::Call(site) => {
                    let edge = site.edge.index();
                    vec![Node::Call {
                        edge,
                        timeout_s: site
                            .timeout
                            .map(secs)
                            .or(spec.policy_of(site.edge).try_timeout.map(secs)),
                    }]
                }
                Step::Parallel(p) => {
                    let p = &spec.parallels[p.index()];
                    let wait = match p.join {
                        crate::model::spec::Join::All | crate::model::spec::Join::AllSettled => {
                            Wait::All
                        }
                        crate::model::spec::Join::Any => Wait::First,
                        crate::model::spec::Join::Quorum(n) => Wait::Nth(n as usize),
                    };
                    vec![Node::Parallel {
                        wait,
                        branches: p
                            .branches
                            .iter()
                            .map(|b| nodes(spec, b.body.index()))
                            .collect(),
                    }]
                }
                Step::Publish(p) => vec![Node::Publish(p.index())],
                Step::Effect(e) => vec![Node::Effect(e.index())],
                Step::Saga(s) => spec.sagas[s.index()]
                    .steps
                    .iter()
                    .map(|(action, _)| Node::Call {
                        edge: action.edge.index(),
                        timeout_s: action
                            .timeout
                            .map(secs)
                            .or(spec.policy_of(action.edge).try_timeout.map(secs)),
                    })
                    .collect(),
                Step::Fail { p, .. } if *p > 0.0 => vec![Node::Fail],
                Step::Fail { .. } => vec![],
            }
        })
        .collect()
}

/// Spans from the scenario as written.
#[derive(Default)]
struct Spans {
    services: BTreeMap<String, Range<usize>>,
    endpoints: BTreeMap<String, Range<usize>>,
    /// "caller->service/endpoint" -> the call step (or the workload's target).
    calls: BTreeMap<String, Range<usize>>,
    policies: BTreeMap<String, Range<usize>>,
    queues: BTreeMap<String, Range<usize>>,
    consumers: BTreeMap<String, Range<usize>>,
    effects: BTreeMap<String, Range<usize>>,
}

fn walk_steps(caller: &str, steps: &[toml::Spanned<RawStep>], spans: &mut Spans) {
    for s in steps {
        let step = s.get_ref();
        if let Some(c) = &step.call {
            spans
                .calls
                .entry(format!("{caller}->{}", c.get_ref()))
                .or_insert(c.span());
        }
        if let Some(e) = &step.effect {
            spans.effects.entry(e.get_ref().clone()).or_insert(e.span());
        }
        if let Some(p) = &step.parallel {
            walk_steps(caller, p.get_ref(), spans);
        }
        if let Some(p) = &step.steps {
            walk_steps(caller, p.get_ref(), spans);
        }
        if let Some(saga) = &step.saga {
            for st in saga.get_ref() {
                for c in [
                    Some(&st.get_ref().action),
                    st.get_ref().compensation.as_ref(),
                ]
                .into_iter()
                .flatten()
                {
                    spans
                        .calls
                        .entry(format!("{caller}->{}", c.get_ref()))
                        .or_insert(c.span());
                }
            }
        }
    }
}

fn spans(raw: &RawScenario) -> Spans {
    let mut s = Spans::default();
    for (name, svc) in &raw.services {
        s.services.insert(name.get_ref().clone(), name.span());
        for (ep, e) in &svc.get_ref().endpoints {
            s.endpoints
                .insert(format!("{}/{}", name.get_ref(), ep.get_ref()), ep.span());
            walk_steps(name.get_ref(), e.get_ref().steps.get_ref(), &mut s);
        }
    }
    for (name, c) in &raw.consumers {
        s.consumers.insert(name.get_ref().clone(), name.span());
        walk_steps(name.get_ref(), c.get_ref().steps.get_ref(), &mut s);
    }
    for (name, w) in &raw.workloads {
        let t = &w.get_ref().target;
        s.calls
            .insert(format!("{}->{}", name.get_ref(), t.get_ref()), t.span());
    }
    for name in raw.policies.keys() {
        s.policies.insert(name.get_ref().clone(), name.span());
    }
    for (broker, b) in &raw.brokers {
        for q in b.get_ref().queues.keys() {
            s.queues
                .insert(format!("{}/{}", broker.get_ref(), q.get_ref()), q.span());
        }
    }
    s
}

impl System {
    /// Adapts a built scenario. `text` is the source it was built from.
    pub fn new(spec: &Spec, text: &str) -> System {
        let spans = toml::from_str::<RawScenario>(text)
            .map(|r| spans(&r))
            .unwrap_or_default();
        let mut services: Vec<Service> = spec
            .services
            .iter()
            .map(|s| service(s, at(&spans.services, &s.name)))
            .collect();
        let endpoints: Vec<Endpoint> = spec
            .endpoints
            .iter()
            .map(|e| endpoint(spec, e, at(&spans.endpoints, &e.name)))
            .collect();
        let edges = edges(spec, &endpoints, &spans.calls);
        let policies = spec
            .policies
            .iter()
            .map(|p| policy(p, spans.policies.get(&p.name).cloned()))
            .collect();
        let workloads = spec
            .workloads
            .iter()
            .map(|w| Workload {
                name: w.name.clone(),
                edge: w.edge.index(),
                peak_rate: peak_rate(&w.load),
                timeout_s: w.timeout.map(secs),
            })
            .collect();
        let queues = queues(spec, &spans.queues);
        let consumers: Vec<Consumer> = spec
            .consumers
            .iter()
            .map(|c| consumer(c, at(&spans.consumers, &c.name)))
            .collect();
        for c in &consumers {
            let svc = endpoints[c.endpoint].service;
            services[svc].span = c.span.clone();
        }
        let publishes = spec.publishes.iter().map(|p| publish(&p.target)).collect();
        let effects: Vec<String> = spec.effects.iter().map(|e| e.name.clone()).collect();
        let effect_spans = effects
            .iter()
            .enumerate()
            .filter_map(|(i, n)| spans.effects.get(n).map(|s| (i, s.clone())))
            .collect();
        System {
            services,
            endpoints,
            edges,
            policies,
            workloads,
            queues,
            topic_groups: spec
                .topics
                .iter()
                .map(|t| t.groups.iter().map(|g| g.index()).collect())
                .collect(),
            consumers,
            publishes,
            effects,
            effect_spans,
        }
    }
}
