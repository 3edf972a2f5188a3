//! The consistency books: the flows, effects and sagas rows, closed at the end of a run
//! (what is still in flight, the effects ledger judged per operation), and the depth and
//! lag time series.

use super::{Async, Source};
use crate::engine::SimTime;
use crate::metrics::consistency::*;
use crate::model::spec::*;
use crate::model::world::MessageId;
use std::collections::BTreeMap;

/// The flows (queues, then one per consumer group on a topic), effects, sagas.
pub(in crate::model) fn new_consistency(spec: &Spec) -> Consistency {
    let mut c = Consistency::default();
    messaging_rows(spec, &mut c);
    ledger_rows(spec, &mut c);
    c
}

/// A row per queue, consumer group, topic, exchange and consumer.
fn messaging_rows(spec: &Spec, c: &mut Consistency) {
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
            appended_per_partition: vec![0; t.partitions as usize],
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
}

/// A row per effect, saga, choreography and idempotent endpoint.
fn ledger_rows(spec: &Spec, c: &mut Consistency) {
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
}

impl Async {
    // ---- the end of the run ----

    /// Closes the consistency books: what is still in flight, and the effects ledger and
    /// choreographed sagas judged per operation.
    pub(in crate::model) fn finish_consistency(&self, spec: &Spec, metrics: &mut Consistency) {
        self.assert_deliveries_placed(spec);
        self.account_skipped(spec, metrics);
        self.close_flows(spec, metrics);
    }

    /// What is still in flight in every queue and group, and the groups' lag.
    fn close_flows(&self, spec: &Spec, c: &mut Consistency) {
        for m in self.messages.values() {
            c.flows[m.queue.index()].in_flight_end += 1;
        }
        for (ci, cs) in spec.consumers.iter().enumerate() {
            let Subscription::Topic(t) = cs.subscription else {
                continue;
            };
            let flow = self.group_flow[ci];
            for (p, gp) in self.consumers[ci].parts.iter().enumerate() {
                let end = self.partitions[t.index()][p].end();
                c.flows[flow].in_flight_end += end.saturating_sub(gp.high);
                c.flows[flow].lag_end += end.saturating_sub(gp.committed);
            }
        }
        c.not_propagated += self.propagation.len() as u64;
    }

    /// Every queue message is in exactly one place: ready in its queue, waiting out a
    /// retry backoff, or delivered (one live delivery); every instance's prefetch count
    /// is its live deliveries. Run once, at the end (it scans everything).
    pub(super) fn assert_deliveries_placed(&self, spec: &Spec) {
        let mut placed: BTreeMap<MessageId, u32> = BTreeMap::new();
        let mut unacked = vec![0u32; self.queues.len()];
        let mut by_instance: Vec<Vec<u32>> = self
            .consumers
            .iter()
            .map(|c| vec![0; c.instances.len()])
            .collect();
        for del in self.deliveries.values() {
            if let Source::Queue(m) = del.source {
                *placed.entry(m).or_default() += 1;
                unacked[self.messages[m].queue.index()] += 1;
                by_instance[del.consumer.index()][del.instance as usize] += 1;
            }
        }
        for qs in &self.queues {
            for &m in &qs.ready {
                *placed.entry(m).or_default() += 1;
            }
        }
        let mut delayed = vec![0u32; self.queues.len()];
        for m in self.messages.ids() {
            match placed.get(&m) {
                Some(1) => {}
                None => delayed[self.messages[m].queue.index()] += 1,
                Some(n) => panic!("a message is in {n} places at once"),
            }
        }
        for (q, qs) in self.queues.iter().enumerate() {
            assert_eq!(qs.unacked, unacked[q], "queue {q}: unacked count");
            assert_eq!(qs.delayed, delayed[q], "queue {q}: messages in no place");
        }
        for (c, cs) in self.consumers.iter().enumerate() {
            if matches!(spec.consumers[c].subscription, Subscription::Queue(_)) {
                for (i, inst) in cs.instances.iter().enumerate() {
                    assert_eq!(
                        inst.unacked, by_instance[c][i],
                        "consumer {c}/{i}: prefetch count"
                    );
                }
            }
        }
    }

    /// The lag of a topic consumer group: entries appended and not yet committed.
    fn group_lag(&self, spec: &Spec, ci: usize) -> Option<u64> {
        let Subscription::Topic(t) = spec.consumers[ci].subscription else {
            return None;
        };
        Some(
            self.consumers[ci]
                .parts
                .iter()
                .enumerate()
                .map(|(p, gp)| {
                    self.partitions[t.index()][p]
                        .end()
                        .saturating_sub(gp.committed)
                })
                .sum(),
        )
    }

    /// Topic log entries some group has still to consume, summed over the groups (an
    /// entry every group has committed is only kept for retention, not waiting).
    pub(in crate::model) fn unconsumed(&self, spec: &Spec) -> u64 {
        (0..spec.consumers.len())
            .filter_map(|ci| self.group_lag(spec, ci))
            .sum()
    }

    /// The depth of every queue and the lag of every group, for the time series.
    pub(in crate::model) fn sample_lag(
        &self,
        spec: &Spec,
        series: &mut crate::metrics::Series,
        metrics: &mut Consistency,
        start: SimTime,
        end: SimTime,
    ) {
        let mut rows = Vec::new();
        for (q, qs) in self.queues.iter().enumerate() {
            rows.push(LagRow {
                start,
                end,
                flow: q as u32,
                depth: qs.ready.len() as u64 + u64::from(qs.unacked) + u64::from(qs.delayed),
            });
        }
        for ci in 0..spec.consumers.len() {
            let Some(lag) = self.group_lag(spec, ci) else {
                continue;
            };
            let flow = self.group_flow[ci];
            let f = &mut metrics.flows[flow];
            f.max_depth = f.max_depth.max(lag);
            rows.push(LagRow {
                start,
                end,
                flow: flow as u32,
                depth: lag,
            });
        }
        rows.sort_by_key(|r| r.flow);
        series.flow_rows(&metrics.flows, &rows, &mut metrics.lag_rows);
    }
}
