//! The system's diagram: the topology a scenario builds, as plain data (`Topology`),
//! rendered as Mermaid, Graphviz DOT, or an SVG drawn here (`render`), for
//! `meshsim graph` and the HTML report.
//!
//! This file is the only place that reads the model's `Spec`: when the spec's shape
//! changes, only `Topology::from_spec` follows.

mod render;

pub use render::{dot, mermaid, svg};

use crate::engine::SimDuration;
use crate::model::Spec;
use crate::model::spec::{
    BrokerId, ConsumerSpec, EdgeId, ExchangeKind, Join, Load, PublishId, PublishTarget, SeqId,
    ServiceSpec, Step, Subscription, WorkerHold,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeKind {
    Workload,
    Endpoint,
    Queue,
    Exchange,
    Topic,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// Stable and unique: `n0`, `n1`, ... in the order nodes were found.
    pub id: String,
    pub kind: NodeKind,
    /// First line: the node's name; then details (replicas x workers, load...).
    pub lines: Vec<String>,
    /// The group it is drawn in: a service or a broker (None: on its own).
    pub group: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkKind {
    /// A synchronous call (a workload's requests too).
    Call,
    /// A message sent to a broker, or routed inside it.
    Message,
    /// A consumer's subscription: the broker delivers to it.
    Delivery,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Link {
    pub from: usize,
    pub to: usize,
    pub kind: LinkKind,
    pub label: String,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Topology {
    pub nodes: Vec<Node>,
    pub links: Vec<Link>,
}

impl Topology {
    pub fn from_spec(spec: &Spec) -> Topology {
        let mut t = Topology::default();
        let workloads: Vec<usize> = spec
            .workloads
            .iter()
            .map(|w| {
                let lines = vec![w.name.clone(), load_line(&w.load)];
                t.node(NodeKind::Workload, lines, None)
            })
            .collect();
        let endpoints: Vec<usize> = spec
            .endpoints
            .iter()
            .map(|e| {
                let s = &spec.services[e.service.index()];
                let lines = vec![e.name.clone(), endpoint_detail(spec, s)];
                t.node(NodeKind::Endpoint, lines, Some(s.name.clone()))
            })
            .collect();
        let queues: Vec<usize> = spec
            .queues
            .iter()
            .map(|q| {
                let lines = vec![q.name.clone(), "queue".into()];
                t.node(NodeKind::Queue, lines, broker_group(spec, q.broker))
            })
            .collect();
        let exchanges: Vec<usize> = spec
            .exchanges
            .iter()
            .map(|x| {
                let lines = vec![x.name.clone(), exchange_kind(x.kind).into()];
                t.node(NodeKind::Exchange, lines, broker_group(spec, x.broker))
            })
            .collect();
        let topics: Vec<usize> = spec
            .topics
            .iter()
            .map(|x| {
                let lines = vec![
                    x.name.clone(),
                    format!("topic, {} partitions", x.partitions),
                ];
                t.node(NodeKind::Topic, lines, broker_group(spec, x.broker))
            })
            .collect();
        let mut d = Drawing {
            spec,
            t,
            endpoints,
            queues,
            exchanges,
            topics,
        };
        for (w, &n) in spec.workloads.iter().zip(&workloads) {
            d.call(n, w.edge, w.timeout, "");
        }
        for (e, &from) in spec.endpoints.iter().zip(&d.endpoints.clone()) {
            d.handler(from, e.handler);
        }
        for (q, &n) in spec.queues.iter().zip(&d.queues) {
            if let Some(dl) = q.dead_letter {
                d.t.push_once(n, d.queues[dl.index()], LinkKind::Message, "dead letter");
            }
        }
        for c in &spec.consumers {
            d.subscription(c);
        }
        d.t
    }

    /// Adds a node; its id is its index.
    fn node(&mut self, kind: NodeKind, lines: Vec<String>, group: Option<String>) -> usize {
        let i = self.nodes.len();
        self.nodes.push(Node {
            id: format!("n{i}"),
            kind,
            lines,
            group,
        });
        i
    }

    fn push_once(&mut self, from: usize, to: usize, kind: LinkKind, label: &str) {
        if !self
            .links
            .iter()
            .any(|l| l.from == from && l.to == to && l.kind == kind)
        {
            self.links.push(Link {
                from,
                to,
                kind,
                label: label.to_owned(),
            });
        }
    }
}

/// A workload's load in a few words: its first rate, or its users.
fn load_line(load: &Load) -> String {
    match load {
        Load::Open { segments, .. } => {
            let rate = segments.first().map_or(0.0, |s| s.rate_per_s);
            let more = if segments.len() > 1 {
                ", then changes"
            } else {
                ""
            };
            format!("open: {} rps{more}", trim(rate))
        }
        Load::Closed { users, .. } => format!("closed: {users} users"),
    }
}

/// An endpoint's capacity: its service's replicas (a consumer's instances) x workers.
fn endpoint_detail(spec: &Spec, s: &ServiceSpec) -> String {
    let hold = match s.hold {
        WorkerHold::Held => "",
        WorkerHold::Released => ", event loop",
    };
    match s.consumer {
        Some(c) => format!(
            "consumer: {} x {} workers",
            spec.consumers[c.index()].instances,
            s.workers
        ),
        None => format!("{} x {} workers{hold}", s.replicas, s.workers),
    }
}

/// The group a broker's queues, exchanges and topics are drawn in.
fn broker_group(spec: &Spec, b: BrokerId) -> Option<String> {
    let b = &spec.brokers[b.index()];
    Some(format!("{} ({})", b.name, b.flavor.name()))
}

fn exchange_kind(kind: ExchangeKind) -> &'static str {
    match kind {
        ExchangeKind::Direct => "direct exchange",
        ExchangeKind::Fanout => "fanout exchange",
        ExchangeKind::Topic => "topic exchange",
    }
}

fn join_name(join: Join) -> String {
    match join {
        Join::All => "all".to_owned(),
        Join::AllSettled => "all_settled".to_owned(),
        Join::Any => "any".to_owned(),
        Join::Quorum(n) => format!("quorum {n}"),
    }
}

/// The topology being drawn, and the node each endpoint, queue, exchange and topic of
/// the spec became (indexed as the spec's own vectors).
struct Drawing<'a> {
    spec: &'a Spec,
    t: Topology,
    endpoints: Vec<usize>,
    queues: Vec<usize>,
    exchanges: Vec<usize>,
    topics: Vec<usize>,
}

impl Drawing<'_> {
    /// A call along `edge`, labelled `how` (a parallel branch, a saga) and the policy
    /// with its timeouts.
    fn call(&mut self, from: usize, edge: EdgeId, timeout: Option<SimDuration>, how: &str) {
        let p = self.spec.policy_of(edge);
        let mut label = format!("{how}{}", p.name);
        if let Some(t) = timeout.or(p.try_timeout) {
            label.push_str(&format!(", timeout {t}"));
        }
        if let Some(d) = p.deadline {
            label.push_str(&format!(", deadline {d}"));
        }
        let to = self.endpoints[self.spec.edges[edge.index()].target.index()];
        self.t.links.push(Link {
            from,
            to,
            kind: LinkKind::Call,
            label,
        });
    }

    /// An endpoint's handler, walked step by step (parallel branches inside).
    fn handler(&mut self, from: usize, handler: SeqId) {
        let spec = self.spec;
        let mut stack: Vec<(SeqId, String)> = vec![(handler, String::new())];
        while let Some((seq, how)) = stack.pop() {
            for step in &spec.seqs[seq.index()] {
                match *step {
                    Step::Call(site) => self.call(from, site.edge, site.timeout, &how),
                    Step::Parallel(p) => {
                        let p = &spec.parallels[p.index()];
                        let join = join_name(p.join);
                        // Pushed in reverse so branches come out in order.
                        for b in p.branches.iter().rev() {
                            let optional = if b.required { "" } else { " optional" };
                            stack.push((b.body, format!("parallel {join}{optional}: ")));
                        }
                    }
                    Step::Publish(p) => self.publish(from, p),
                    Step::Saga(s) => {
                        let saga = &spec.sagas[s.index()];
                        for (action, compensation) in &saga.steps {
                            let how = format!("saga {}: ", saga.name);
                            self.call(from, action.edge, action.timeout, &how);
                            if let Some(c) = compensation {
                                let how = format!("saga {} compensation: ", saga.name);
                                self.call(from, c.edge, c.timeout, &how);
                            }
                        }
                    }
                    Step::Work(_) | Step::Stream { .. } | Step::Effect(_) | Step::Fail { .. } => {}
                }
            }
        }
    }

    /// A publish: a message to its exchange, queue or topic, and an exchange's routes
    /// to the queues it reaches.
    fn publish(&mut self, from: usize, p: PublishId) {
        let p = &self.spec.publishes[p.index()];
        let mut label = String::from("publish");
        if p.outbox {
            label.push_str(" (outbox)");
        } else if p.confirms {
            label.push_str(" (confirms)");
        }
        if !p.routing_key.is_empty() {
            label.push_str(&format!(" key {}", p.routing_key));
        }
        let to = match &p.target {
            PublishTarget::Queues {
                exchange: Some(x), ..
            } => self.exchanges[x.index()],
            PublishTarget::Queues { queues: qs, .. } => match qs.first() {
                Some(q) => self.queues[q.index()],
                None => return,
            },
            PublishTarget::Topic(tp) => self.topics[tp.index()],
        };
        self.t.links.push(Link {
            from,
            to,
            kind: LinkKind::Message,
            label,
        });
        if let PublishTarget::Queues {
            exchange: Some(x),
            queues: qs,
        } = &p.target
        {
            for q in qs {
                self.t.push_once(
                    self.exchanges[x.index()],
                    self.queues[q.index()],
                    LinkKind::Message,
                    "routes",
                );
            }
        }
    }

    /// A consumer's subscription: its queue delivers to it, or its group reads the
    /// topic.
    fn subscription(&mut self, c: &ConsumerSpec) {
        let to = self.endpoints[c.endpoint.index()];
        let (from, what) = match c.subscription {
            Subscription::Queue(q) => (self.queues[q.index()], "delivers"),
            Subscription::Topic(tp) => (self.topics[tp.index()], "group reads"),
        };
        let label = if c.prefetch > 0 {
            format!("{what}, prefetch {}", c.prefetch)
        } else {
            what.to_owned()
        };
        self.t.links.push(Link {
            from,
            to,
            kind: LinkKind::Delivery,
            label,
        });
    }
}

/// 80 -> "80", 12.5 -> "12.5".
fn trim(x: f64) -> String {
    let s = format!("{x:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}
