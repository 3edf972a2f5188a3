//! A handler's transaction: an idempotent endpoint's or a deduplicating consumer's
//! effects and outbox rows wait in the `Ledger` until the handler ends, then commit
//! together with its store, or are dropped.

use super::World;
use super::event::InvocationId;
use super::server::{AnswerTo, Invocation};
use crate::engine::SimTime;
use crate::model::spec::*;

impl World {
    /// Commits a transactional handler's effects and outbox rows, or drops them. A
    /// consumer's processed-messages store that already had the message rolls the
    /// handler's work back (the store's unique key).
    pub(in crate::model) fn end_transaction(
        &mut self,
        i: InvocationId,
        inv: &Invocation,
        ok: bool,
        now: SimTime,
    ) {
        let mut commit = ok;
        // The delivery may have been taken back meanwhile (ack timeout, lost
        // connection): the transaction commits all the same; only the ack is lost.
        if ok
            && let Some(c) = self.consumer_of(inv)
            && let Some(dd) = self.spec.consumers[c.index()].dedupe
            && !self.asy.store_processed(c, dd, inv.msg, inv.op, now)
        {
            self.metrics.consistency.consumers[c.index()].rolled_back += 1;
            commit = false;
        }
        let rows = self
            .ledger
            .end(i, commit, inv.op, &mut self.metrics.consistency);
        if !rows.is_empty() {
            self.asy.commit_outbox(rows, inv.op, inv.key);
        }
    }

    /// Whether an invocation's effects wait for its end (an idempotent consumer or
    /// endpoint keeps them in one transaction with its store).
    pub(in crate::model) fn transactional(&self, inv: &Invocation) -> bool {
        match self.consumer_of(inv) {
            Some(c) => self.spec.consumers[c.index()].dedupe.is_some(),
            None => self.spec.endpoints[inv.endpoint.index()]
                .idempotency
                .is_some(),
        }
    }

    /// The consumer an invocation runs in, if it handles a delivery.
    fn consumer_of(&self, inv: &Invocation) -> Option<ConsumerId> {
        let AnswerTo::Delivery(_) = inv.answer_to else {
            return None;
        };
        self.spec.services[self.spec.endpoints[inv.endpoint.index()].service.index()].consumer
    }

    /// An `effect` step: applied now, or held until the handler's transaction ends.
    pub(in crate::model) fn effect_step(&mut self, inv: InvocationId, e: EffectId) {
        let i = &self.invocations[inv];
        if self.transactional(i) {
            self.ledger.txn_effects.push((inv, e));
        } else {
            let op = i.op;
            self.ledger.apply(e, op, &mut self.metrics.consistency);
        }
    }
}
