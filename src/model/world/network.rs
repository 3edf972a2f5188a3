//! The network: a message crosses a link with its latency and loss (and any link fault),
//! plus the protocol's per-edge costs.

use super::World;
use super::event::Event;
use crate::engine::{Scheduler, SimDuration};
use crate::model::spec::*;
use rand::RngExt;

/// What the protocol adds to each call on an edge (zero without a protocol profile).
#[derive(Clone, Copy, Debug, Default)]
pub(in crate::model) struct EdgeCost {
    /// Client encode + per-message overhead (+ connection set-up), on the way out.
    pub request: SimDuration,
    /// Server decode, holding the server's worker before the handler runs.
    pub server_decode: SimDuration,
    /// Per reply message: server encode + overhead + client decode.
    pub per_message: SimDuration,
}

impl EdgeCost {
    /// Every edge's protocol costs, from its policy's protocol and its endpoint's sizes.
    pub(super) fn all(spec: &Spec) -> Vec<EdgeCost> {
        spec.edges
            .iter()
            .map(|e| {
                let ep = &spec.endpoints[e.target.index()];
                match spec.policies[e.policy.index()].protocol {
                    None => EdgeCost::default(),
                    Some(p) => {
                        let per_kb = |d: SimDuration, kb: f64| {
                            SimDuration::from_secs_f64(d.as_secs_f64() * kb)
                        };
                        EdgeCost {
                            request: p.overhead
                                + per_kb(p.encode_per_kb, ep.request_kb)
                                + p.setup_per_call.unwrap_or(SimDuration::ZERO),
                            server_decode: per_kb(p.decode_per_kb, ep.request_kb),
                            per_message: p.overhead
                                + per_kb(p.encode_per_kb, ep.response_kb)
                                + per_kb(p.decode_per_kb, ep.response_kb),
                        }
                    }
                }
            })
            .collect()
    }
}

impl World {
    /// Sends a message over a link: dropped with the link's loss probability (and any
    /// link fault), else delivered after its latency. Returns false when dropped.
    pub(in crate::model) fn transmit(
        &mut self,
        link: LinkId,
        event: Event,
        extra: SimDuration,
        sched: &mut Scheduler<Event>,
    ) -> bool {
        let spec = &self.spec.links[link.index()];
        let rng = &mut self.links[link.index()];
        if spec.loss > 0.0 && rng.random::<f64>() < spec.loss {
            return false;
        }
        let mut delay = if spec.latency.is_constant_zero() {
            SimDuration::ZERO
        } else {
            spec.latency.sample(rng)
        };
        delay = delay + extra;
        if self.faults.link_faulted(link) {
            match self.faults.on_message(&self.spec, link) {
                None => return false,
                Some(extra) => delay = delay + extra,
            }
        }
        if delay.is_zero() {
            self.immediate.push_back(event);
        } else {
            sched.after(delay, event);
        }
        true
    }
}
