//! The consistency books: the flows, effects and sagas rows, closed at the end of a run
//! (what is still in flight, the effects ledger judged per operation), and the depth and
//! lag time series.

use super::Source;
use crate::engine::SimTime;
use crate::metrics::consistency::*;
use crate::model::spec::*;
use crate::model::world::{MessageId, World};
use std::collections::BTreeMap;
use std::rc::Rc;

/// The flows (queues, then one per consumer group on a topic), effects, sagas.
pub(in crate::model) fn new_consistency(spec: &Spec) -> Consistency {
    let mut c = Consistency::default();
    for q in &spec.queues {
        c.flows.push(FlowMetrics {
            name: q.name.clone(),
            kind: "queue",
            ..Default::default()
        });
    }
    for t in &spec.topics {
        for &g in &t.groups {
            c.flows.push(FlowMetrics {
                name: format!("{}@{}", t.name, spec.consumers[g.index()].name),
                kind: "group",
                ..Default::default()
            });
        }
        c.topics.push(TopicMetrics {
            name: t.name.clone(),
            partitions: t.partitions,
            ..Default::default()
        });
    }
    for e in &spec.exchanges {
        c.exchanges.push(ExchangeMetrics {
            name: e.name.clone(),
            kind: match e.kind {
                ExchangeKind::Direct => "direct",
                ExchangeKind::Fanout => "fanout",
                ExchangeKind::Topic => "topic",
            },
            ..Default::default()
        });
    }
    for cs in &spec.consumers {
        c.consumers.push(ConsumerMetrics {
            name: cs.name.clone(),
            subscription: match cs.subscription {
                Subscription::Queue(q) => spec.queues[q.index()].name.clone(),
                Subscription::Topic(t) => spec.topics[t.index()].name.clone(),
            },
            ..Default::default()
        });
    }
    for e in &spec.effects {
        c.effects.push(EffectMetrics {
            name: e.name.clone(),
            ..Default::default()
        });
    }
    for s in &spec.sagas {
        c.sagas.push(SagaMetrics {
            name: s.name.clone(),
            kind: "orchestrated",
            ..Default::default()
        });
    }
    for s in &spec.choreographies {
        c.sagas.push(SagaMetrics {
            name: s.name.clone(),
            kind: "choreography",
            ..Default::default()
        });
    }
    for e in &spec.endpoints {
        if e.idempotency.is_some() {
            c.idempotency.push(IdempotencyMetrics {
                endpoint: e.name.clone(),
                ..Default::default()
            });
        }
    }
    c
}

impl World {
    // ---- the end of the run ----

    /// Closes the consistency books: what is still in flight, and the effects ledger and
    /// choreographed sagas judged per operation.
    pub(in crate::model) fn finish_consistency(&mut self) {
        self.assert_deliveries_placed();
        self.account_skipped();
        self.close_flows();
        self.ledger.judge(&self.spec, &mut self.metrics.consistency);
    }

    /// What is still in flight in every queue and group, and the groups' lag.
    fn close_flows(&mut self) {
        let spec = Rc::clone(&self.spec);
        let c = &mut self.metrics.consistency;
        for m in self.asy.messages.values() {
            c.flows[m.queue.index()].in_flight_end += 1;
        }
        for (ci, cs) in spec.consumers.iter().enumerate() {
            let Subscription::Topic(t) = cs.subscription else {
                continue;
            };
            let flow = self.asy.group_flow[ci];
            for (p, gp) in self.asy.consumers[ci].parts.iter().enumerate() {
                let end = self.asy.partitions[t.index()][p].end();
                c.flows[flow].in_flight_end += end.saturating_sub(gp.high);
                c.flows[flow].lag_end += end.saturating_sub(gp.committed);
            }
        }
        c.not_propagated += self.asy.propagation.len() as u64;
    }

    /// Every queue message is in exactly one place: ready in its queue, waiting out a
    /// retry backoff, or delivered (one live delivery); every instance's prefetch count
    /// is its live deliveries. Run once, at the end (it scans everything).
    pub(super) fn assert_deliveries_placed(&self) {
        let mut placed: BTreeMap<MessageId, u32> = BTreeMap::new();
        let mut unacked = vec![0u32; self.asy.queues.len()];
        let mut by_instance: Vec<Vec<u32>> = self
            .asy
            .consumers
            .iter()
            .map(|c| vec![0; c.instances.len()])
            .collect();
        for del in self.asy.deliveries.values() {
            if let Source::Queue(m) = del.source {
                *placed.entry(m).or_default() += 1;
                unacked[self.asy.messages[m].queue.index()] += 1;
                by_instance[del.consumer.index()][del.instance as usize] += 1;
            }
        }
        for qs in &self.asy.queues {
            for &m in &qs.ready {
                *placed.entry(m).or_default() += 1;
            }
        }
        let mut delayed = vec![0u32; self.asy.queues.len()];
        for m in self.asy.messages.ids() {
            match placed.get(&m) {
                Some(1) => {}
                None => delayed[self.asy.messages[m].queue.index()] += 1,
                Some(n) => panic!("a message is in {n} places at once"),
            }
        }
        for (q, qs) in self.asy.queues.iter().enumerate() {
            assert_eq!(qs.unacked, unacked[q], "queue {q}: unacked count");
            assert_eq!(qs.delayed, delayed[q], "queue {q}: messages in no place");
        }
        for (c, cs) in self.asy.consumers.iter().enumerate() {
            if matches!(self.spec.consumers[c].subscription, Subscription::Queue(_)) {
                for (i, inst) in cs.instances.iter().enumerate() {
                    assert_eq!(
                        inst.unacked, by_instance[c][i],
                        "consumer {c}/{i}: prefetch count"
                    );
                }
            }
        }
    }

    /// The depth of every queue and the lag of every group, for the time series.
    pub(in crate::model) fn sample_lag(&mut self, start: SimTime, end: SimTime) {
        let mut rows = Vec::new();
        for (q, qs) in self.asy.queues.iter().enumerate() {
            rows.push(LagRow {
                start,
                end,
                flow: q as u32,
                depth: qs.ready.len() as u64 + u64::from(qs.unacked) + u64::from(qs.delayed),
            });
        }
        for (ci, cs) in self.spec.consumers.iter().enumerate() {
            let Subscription::Topic(t) = cs.subscription else {
                continue;
            };
            let flow = self.asy.group_flow[ci];
            let lag: u64 = self.asy.consumers[ci]
                .parts
                .iter()
                .enumerate()
                .map(|(p, gp)| {
                    self.asy.partitions[t.index()][p]
                        .end()
                        .saturating_sub(gp.committed)
                })
                .sum();
            let f = &mut self.metrics.consistency.flows[flow];
            f.max_depth = f.max_depth.max(lag);
            rows.push(LagRow {
                start,
                end,
                flow: flow as u32,
                depth: lag,
            });
        }
        rows.sort_by_key(|r| r.flow);
        let crate::metrics::Metrics {
            series,
            consistency,
            ..
        } = &mut self.metrics;
        series.flow_rows(&consistency.flows, &rows, &mut consistency.lag_rows);
    }
}
