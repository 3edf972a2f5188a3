//! Is anyone still waiting for an invocation's answer? An answer nobody up the call chain
//! waits for any more is wasted work (`orphaned`). Walking up the chain at every answer
//! cost O(depth) per answer, O(depth^2) per request; instead each invocation carries a
//! flag set once, when a caller somewhere above gives up (its attempt is removed: a
//! timeout, a cancelled branch, a losing hedge), and passed down to the invocations
//! below at that moment. Each invocation is marked at most once, so the marking costs
//! O(1) per invocation over the run, whatever the topology.
//!
//! A consumer's chain ends at its delivery, which the broker may take back at any time:
//! that top is looked up when the answer is recorded (O(1)).

use super::World;
use super::event::{DeliveryId, FiberId, InvocationId};
use super::fiber::Wait;
use super::server::AnswerTo;
use crate::model::client::Origin;

/// What an invocation inherits from the chain above it (kept in the invocation: its
/// answer reads it, and a deep chain's invocations in flight touch no other table).
/// (One enum, 12 bytes: a cut chain's delivery no longer matters.)
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(in crate::model) enum Lineage {
    /// Every caller up the chain still waits.
    #[default]
    Waited,
    /// A caller up the chain gave up: the answer will not be waited for.
    Cut,
    /// Work done for a consumer: waited for while the broker still holds this delivery,
    /// the one at the top of the chain.
    Delivery(DeliveryId),
}

impl World {
    /// The lineage of invocation `i`, being admitted; lets the attempt it serves know
    /// which invocation serves it.
    pub(super) fn inherit_lineage(&mut self, i: InvocationId, answer_to: AnswerTo) -> Lineage {
        match answer_to {
            AnswerTo::Delivery(d) => Lineage::Delivery(d),
            AnswerTo::Attempt { attempt, .. } => match self.logicals.served(attempt, i) {
                None => Lineage::Cut,
                Some(l) => {
                    // A live attempt's call is live, and so is the fiber that made it.
                    match self.logicals[l].origin {
                        Origin::Workload { .. } => Lineage::default(),
                        Origin::Fiber(f) => self.invocations[self.fibers[f].invocation].lineage,
                    }
                }
            },
        }
    }

    /// Has anyone up the chain given up on this invocation? Its answer is then wasted
    /// work, even when the immediate caller (which set no timeout) still waits.
    pub(super) fn abandoned(&self, lineage: Lineage) -> bool {
        match lineage {
            Lineage::Waited => false,
            Lineage::Cut => true,
            Lineage::Delivery(d) => !self.asy.delivery_live(d),
        }
    }

    /// A caller gave up on an attempt (removed before its answer): the invocation
    /// serving it, if any is still running, and everything it called are cut off.
    pub(in crate::model) fn orphan(&mut self, served_by: Option<InvocationId>) {
        let Some(i) = served_by else {
            return;
        };
        let (mut fibers, mut below) = std::mem::take(&mut self.orphan_walk);
        self.cut(i, &mut fibers);
        while let Some(f) = fibers.pop() {
            let Some(fiber) = self.fibers.get(f) else {
                continue;
            };
            match fiber.wait {
                Wait::Call(l) => {
                    self.logicals.serving(l, &mut below);
                    for i in below.drain(..) {
                        self.cut(i, &mut fibers);
                    }
                }
                Wait::Join(j) => {
                    if let Some(join) = self.joins.get(j) {
                        fibers.extend_from_slice(&join.children);
                    }
                }
                Wait::Ready | Wait::Work | Wait::Publish(_) => {}
            }
        }
        self.orphan_walk = (fibers, below);
    }

    /// Marks one running invocation as cut off, once, and queues its root fiber for the
    /// walk down.
    fn cut(&mut self, i: InvocationId, fibers: &mut Vec<FiberId>) {
        let Some(inv) = self.invocations.get_mut(i) else {
            return;
        };
        if inv.lineage != Lineage::Cut {
            inv.lineage = Lineage::Cut;
            fibers.push(inv.root);
        }
    }
}
