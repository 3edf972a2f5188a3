//! The system's diagram: the topology a scenario builds, as plain data (`Topology`),
//! rendered as Mermaid, Graphviz DOT, or an SVG drawn here (`render`), for
//! `meshsim graph` and the HTML report.
//!
//! This file is the only place that reads the model's `Spec`: when the spec's shape
//! changes, only `Topology::from_spec` follows.

mod render;

pub use render::{dot, mermaid, svg};

use crate::model::Spec;
use crate::model::spec::{
    ExchangeKind, Join, Load, PublishTarget, SeqId, Step, Subscription, WorkerHold,
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
        let node = |t: &mut Topology, kind, lines: Vec<String>, group: Option<String>| {
            let i = t.nodes.len();
            t.nodes.push(Node {
                id: format!("n{i}"),
                kind,
                lines,
                group,
            });
            i
        };
        let workloads: Vec<usize> = spec
            .workloads
            .iter()
            .map(|w| {
                let load = match &w.load {
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
                };
                node(&mut t, NodeKind::Workload, vec![w.name.clone(), load], None)
            })
            .collect();
        let endpoints: Vec<usize> = spec
            .endpoints
            .iter()
            .map(|e| {
                let s = &spec.services[e.service.index()];
                let hold = match s.hold {
                    WorkerHold::Held => "",
                    WorkerHold::Released => ", event loop",
                };
                let detail = match s.consumer {
                    Some(c) => format!(
                        "consumer: {} x {} workers",
                        spec.consumers[c.index()].instances,
                        s.workers
                    ),
                    None => format!("{} x {} workers{hold}", s.replicas, s.workers),
                };
                node(
                    &mut t,
                    NodeKind::Endpoint,
                    vec![e.name.clone(), detail],
                    Some(s.name.clone()),
                )
            })
            .collect();
        let broker = |b: crate::model::spec::BrokerId| {
            let b = &spec.brokers[b.index()];
            Some(format!("{} ({})", b.name, b.flavor.name()))
        };
        let queues: Vec<usize> = spec
            .queues
            .iter()
            .map(|q| {
                node(
                    &mut t,
                    NodeKind::Queue,
                    vec![q.name.clone(), "queue".into()],
                    broker(q.broker),
                )
            })
            .collect();
        let exchanges: Vec<usize> = spec
            .exchanges
            .iter()
            .map(|x| {
                let kind = match x.kind {
                    ExchangeKind::Direct => "direct exchange",
                    ExchangeKind::Fanout => "fanout exchange",
                    ExchangeKind::Topic => "topic exchange",
                };
                node(
                    &mut t,
                    NodeKind::Exchange,
                    vec![x.name.clone(), kind.into()],
                    broker(x.broker),
                )
            })
            .collect();
        let topics: Vec<usize> = spec
            .topics
            .iter()
            .map(|x| {
                let detail = format!("topic, {} partitions", x.partitions);
                node(
                    &mut t,
                    NodeKind::Topic,
                    vec![x.name.clone(), detail],
                    broker(x.broker),
                )
            })
            .collect();

        let call_label = |edge: crate::model::spec::EdgeId,
                          timeout: Option<crate::engine::SimDuration>,
                          how: &str| {
            let p = spec.policy_of(edge);
            let mut label = format!("{how}{}", p.name);
            if let Some(t) = timeout.or(p.try_timeout) {
                label.push_str(&format!(", timeout {t}"));
            }
            if let Some(d) = p.deadline {
                label.push_str(&format!(", deadline {d}"));
            }
            label
        };
        for (w, &n) in spec.workloads.iter().zip(&workloads) {
            let target = spec.edges[w.edge.index()].target.index();
            let label = call_label(w.edge, w.timeout, "");
            t.links.push(Link {
                from: n,
                to: endpoints[target],
                kind: LinkKind::Call,
                label,
            });
        }
        // Each endpoint's handler, walked step by step (parallel branches inside).
        for (e, &from) in spec.endpoints.iter().zip(&endpoints) {
            let mut stack: Vec<(SeqId, String)> = vec![(e.handler, String::new())];
            while let Some((seq, how)) = stack.pop() {
                for step in &spec.seqs[seq.index()] {
                    match *step {
                        Step::Call(site) => {
                            let to = endpoints[spec.edges[site.edge.index()].target.index()];
                            let label = call_label(site.edge, site.timeout, &how);
                            t.links.push(Link {
                                from,
                                to,
                                kind: LinkKind::Call,
                                label,
                            });
                        }
                        Step::Parallel(p) => {
                            let p = &spec.parallels[p.index()];
                            let join = match p.join {
                                Join::All => "all".to_owned(),
                                Join::AllSettled => "all_settled".to_owned(),
                                Join::Any => "any".to_owned(),
                                Join::Quorum(n) => format!("quorum {n}"),
                            };
                            // Pushed in reverse so branches come out in order.
                            for b in p.branches.iter().rev() {
                                let optional = if b.required { "" } else { " optional" };
                                stack.push((b.body, format!("parallel {join}{optional}: ")));
                            }
                        }
                        Step::Publish(p) => {
                            let p = &spec.publishes[p.index()];
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
                                } => exchanges[x.index()],
                                PublishTarget::Queues { queues: qs, .. } => match qs.first() {
                                    Some(q) => queues[q.index()],
                                    None => continue,
                                },
                                PublishTarget::Topic(tp) => topics[tp.index()],
                            };
                            t.links.push(Link {
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
                                    t.push_once(
                                        exchanges[x.index()],
                                        queues[q.index()],
                                        LinkKind::Message,
                                        "routes",
                                    );
                                }
                            }
                        }
                        Step::Saga(s) => {
                            for (action, compensation) in &spec.sagas[s.index()].steps {
                                let name = &spec.sagas[s.index()].name;
                                let to = endpoints[spec.edges[action.edge.index()].target.index()];
                                let label = call_label(
                                    action.edge,
                                    action.timeout,
                                    &format!("saga {name}: "),
                                );
                                t.links.push(Link {
                                    from,
                                    to,
                                    kind: LinkKind::Call,
                                    label,
                                });
                                if let Some(c) = compensation {
                                    let to = endpoints[spec.edges[c.edge.index()].target.index()];
                                    let label = call_label(
                                        c.edge,
                                        c.timeout,
                                        &format!("saga {name} compensation: "),
                                    );
                                    t.links.push(Link {
                                        from,
                                        to,
                                        kind: LinkKind::Call,
                                        label,
                                    });
                                }
                            }
                        }
                        Step::Work(_)
                        | Step::Stream { .. }
                        | Step::Effect(_)
                        | Step::Fail { .. } => {}
                    }
                }
            }
        }
        for (q, &n) in spec.queues.iter().zip(&queues) {
            if let Some(d) = q.dead_letter {
                t.push_once(n, queues[d.index()], LinkKind::Message, "dead letter");
            }
        }
        for c in &spec.consumers {
            let to = endpoints[c.endpoint.index()];
            let (from, what) = match c.subscription {
                Subscription::Queue(q) => (queues[q.index()], "delivers"),
                Subscription::Topic(tp) => (topics[tp.index()], "group reads"),
            };
            let label = if c.prefetch > 0 {
                format!("{what}, prefetch {}", c.prefetch)
            } else {
                what.to_owned()
            };
            t.links.push(Link {
                from,
                to,
                kind: LinkKind::Delivery,
                label,
            });
        }
        t
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

/// 80 -> "80", 12.5 -> "12.5".
fn trim(x: f64) -> String {
    let s = format!("{x:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}
