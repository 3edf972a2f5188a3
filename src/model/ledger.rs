//! The ledger: the effects ledger (applications per effect and operation), the
//! transaction buffer of idempotent handlers, and the endpoints' idempotency-key stores.

use super::arena::Id;
use super::retention::prune;
use super::spec::*;
use super::status::Status;
use super::world::{AnswerTo, Invocation, World};
use crate::engine::SimTime;
use crate::metrics::consistency::Consistency;
use std::collections::{BTreeMap, VecDeque};

/// The effects ledger and the transaction buffer, owned by the `World` next to the
/// brokers: what handlers did to the outside world, whether or not messages are involved.
pub(super) struct Ledger {
    /// Effects and outbox rows of transactional handlers, committed at their end.
    pub txn_effects: Vec<(Id, EffectId)>,
    pub txn_outbox: Vec<(Id, PublishId, u64)>,
    /// Per effect, per operation: applications (saturating at 255).
    pub counts: Vec<Vec<u8>>,
    /// Per operation: bit 0 answered ok, bit 1 answered with an error, bits 2..8 the
    /// workload + 1 (0 when there are more than 62 workloads).
    pub op_flags: Vec<u8>,
    next_op: u64,
    key_base: Vec<u64>,
    idem: Vec<IdemStore>,
    /// Per endpoint, its row in `consistency.idempotency` (idempotent endpoints only).
    idem_slot: Vec<usize>,
    /// The scenario uses transactions (effects, idempotency, outboxes): the paths
    /// that serve requests check for them only then.
    pub in_use: bool,
}

impl Ledger {
    pub fn new(spec: &Spec) -> Ledger {
        let mut key_base = Vec::new();
        let mut next_op = 0;
        for w in &spec.workloads {
            key_base.push(next_op);
            if w.operation_is_key {
                next_op += u64::from(w.keys.map_or(1, |k| k.count));
            }
        }
        Ledger {
            txn_effects: Vec::new(),
            txn_outbox: Vec::new(),
            counts: vec![Vec::new(); spec.effects.len()],
            op_flags: Vec::new(),
            next_op,
            key_base,
            idem: spec
                .endpoints
                .iter()
                .map(|_| IdemStore::default())
                .collect(),
            idem_slot: spec
                .endpoints
                .iter()
                .scan(0, |n, e| {
                    let slot = *n;
                    *n += usize::from(e.idempotency.is_some());
                    Some(slot)
                })
                .collect(),
            in_use: !spec.effects.is_empty()
                || !spec.publishes.is_empty()
                || spec.endpoints.iter().any(|e| e.idempotency.is_some()),
        }
    }

    /// The operation id of a new workload request.
    pub fn new_op(&mut self, spec: &WorkloadSpec, w: WorkloadId, key: u32) -> u64 {
        if spec.operation_is_key {
            self.key_base[w.index()] + u64::from(key)
        } else {
            let op = self.next_op;
            self.next_op += 1;
            op
        }
    }

    /// Judges every operation at the end of a run: per effect, how many times it was
    /// applied (never, once, more) and whether despite a failure; per choreographed saga,
    /// whether it completed, was compensated, or was left half done.
    pub fn judge(&self, spec: &Spec, c: &mut Consistency) {
        let ops = self
            .counts
            .iter()
            .map(Vec::len)
            .chain(std::iter::once(self.op_flags.len()))
            .max()
            .unwrap_or(0);
        self.judge_effects(spec, c, ops);
        self.judge_choreographies(spec, c, ops);
    }

    fn judge_effects(&self, spec: &Spec, c: &mut Consistency, ops: usize) {
        for (e, effect) in spec.effects.iter().enumerate() {
            let l = &self.counts[e];
            let m = &mut c.effects[e];
            for op in 0..ops {
                let n = u64::from(l.get(op).copied().unwrap_or(0));
                let flags = self.op_flags.get(op).copied().unwrap_or(0);
                let workload = (flags >> 2) as usize;
                let expected = flags & 1 == 1
                    && workload > 0
                    && effect
                        .expected_for
                        .contains(&WorkloadId(workload as u32 - 1));
                if n == 0 && !expected {
                    continue;
                }
                m.operations += 1;
                match n {
                    0 => m.never += 1,
                    1 => m.exactly_once += 1,
                    _ => m.duplicated += 1,
                }
                m.max_count = m.max_count.max(n);
                if n > 0 && flags & 3 == 2 {
                    m.despite_failure += 1;
                }
            }
        }
    }

    fn judge_choreographies(&self, spec: &Spec, c: &mut Consistency, ops: usize) {
        let first = spec.sagas.len();
        for (s, saga) in spec.choreographies.iter().enumerate() {
            let m = &mut c.sagas[first + s];
            let count =
                |e: EffectId, op: usize| self.counts[e.index()].get(op).copied().unwrap_or(0);
            for op in 0..ops {
                let Some(&(first_step, _)) = saga.steps.first() else {
                    break;
                };
                if count(first_step, op) == 0 {
                    continue;
                }
                m.started += 1;
                let done: Vec<bool> = saga.steps.iter().map(|&(e, _)| count(e, op) > 0).collect();
                if done.iter().all(|&x| x)
                    && saga
                        .steps
                        .iter()
                        .all(|&(_, comp)| comp.is_none_or(|x| count(x, op) == 0))
                {
                    m.completed += 1;
                    continue;
                }
                // Failed part way: every applied step must have been compensated.
                let all_undone = saga
                    .steps
                    .iter()
                    .zip(&done)
                    .all(|(&(_, comp), &d)| !d || comp.is_none_or(|x| count(x, op) > 0));
                if all_undone {
                    m.compensated += 1;
                } else {
                    m.compensation_failed += 1;
                }
            }
        }
    }

    /// A workload request with operation `op` was answered.
    pub fn op_answered(&mut self, op: u64, w: WorkloadId, ok: bool) {
        if self.counts.is_empty() {
            return;
        }
        let i = op as usize;
        if self.op_flags.len() <= i {
            self.op_flags.resize(i + 1, 0);
        }
        let tag = if w.index() < 62 {
            ((w.index() + 1) as u8) << 2
        } else {
            0
        };
        self.op_flags[i] |= tag | if ok { 1 } else { 2 };
    }
}

struct IdemEntry {
    expires: SimTime,
    /// None while the first request runs.
    result: Option<Status>,
}

#[derive(Default)]
struct IdemStore {
    entries: BTreeMap<u64, IdemEntry>,
    order: VecDeque<(SimTime, u64)>,
}

impl World {
    /// Commits a transactional handler's effects and outbox rows, or drops them.
    /// Returns false when a consumer's processed-messages store already had the
    /// message: the handler's work is rolled back (the store's unique key).
    pub(super) fn end_transaction(&mut self, i: Id, inv: &Invocation, ok: bool, now: SimTime) {
        let mut commit = ok;
        // The delivery may have been taken back meanwhile (ack timeout, lost
        // connection): the transaction commits all the same; only the ack is lost.
        if ok
            && let Some(c) = self.consumer_of(inv)
            && let Some(dd) = self.spec.consumers[c.index()].dedupe
            && !self.store_processed(c, dd, inv.msg, inv.op, now)
        {
            self.metrics.consistency.consumers[c.index()].rolled_back += 1;
            commit = false;
        }
        if !self.ledger.txn_effects.is_empty() {
            let mut k = 0;
            while k < self.ledger.txn_effects.len() {
                if self.ledger.txn_effects[k].0 == i {
                    let (_, e) = self.ledger.txn_effects.swap_remove(k);
                    if commit {
                        self.apply_effect(e, inv.op);
                    }
                } else {
                    k += 1;
                }
            }
        }
        if !self.ledger.txn_outbox.is_empty() {
            let mut rows = Vec::new();
            self.ledger.txn_outbox.retain(|&(x, p, msg)| {
                if x == i {
                    rows.push((p, msg));
                    false
                } else {
                    true
                }
            });
            // Rows keep the order the handler wrote them in.
            rows.sort_by_key(|&(_, msg)| msg);
            if commit {
                self.commit_outbox(rows, inv.op, inv.key);
            }
        }
    }

    /// Whether an invocation's effects wait for its end (an idempotent consumer or
    /// endpoint keeps them in one transaction with its store).
    pub(super) fn transactional(&self, inv: &Invocation) -> bool {
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

    pub(super) fn effect_step(&mut self, inv: Id, e: EffectId) {
        let i = &self.invocations[inv];
        if self.transactional(i) {
            self.ledger.txn_effects.push((inv, e));
        } else {
            let op = i.op;
            self.apply_effect(e, op);
        }
    }

    fn apply_effect(&mut self, e: EffectId, op: u64) {
        let l = &mut self.ledger.counts[e.index()];
        let i = op as usize;
        if l.len() <= i {
            l.resize(i + 1, 0);
        }
        l[i] = l[i].saturating_add(1);
        self.metrics.consistency.effects[e.index()].applied += 1;
    }

    /// Drops the transaction of an invocation that will never end (its replica crashed).
    pub(super) fn abort_transaction(&mut self, i: Id) {
        self.ledger.txn_effects.retain(|&(x, _)| x != i);
        self.ledger.txn_outbox.retain(|&(x, _, _)| x != i);
    }

    // ---- endpoint idempotency keys ----

    /// A request reaches an idempotent endpoint: Some(status) if it is answered from
    /// the store (a replay, or a conflict with the first request still running).
    pub(super) fn idempotency_check(
        &mut self,
        e: EndpointId,
        op: u64,
        now: SimTime,
    ) -> Option<Status> {
        let slot = self.ledger.idem_slot[e.index()];
        let store = &mut self.ledger.idem[e.index()];
        prune(&mut store.order, &mut store.entries, now, |x| x.expires);
        match store.entries.get(&op) {
            Some(IdemEntry {
                result: Some(s), ..
            }) => {
                let s = *s;
                self.metrics.consistency.idempotency[slot].replayed += 1;
                Some(s)
            }
            Some(IdemEntry { result: None, .. }) => {
                self.metrics.consistency.idempotency[slot].conflicts += 1;
                Some(Status::Unavailable)
            }
            None => {
                store.entries.insert(
                    op,
                    IdemEntry {
                        expires: SimTime::MAX,
                        result: None,
                    },
                );
                None
            }
        }
    }

    /// The first request with this key is answered: its result is kept for replays.
    pub(super) fn idempotency_store(
        &mut self,
        e: EndpointId,
        op: u64,
        status: Status,
        now: SimTime,
    ) {
        let retention = self.spec.endpoints[e.index()]
            .idempotency
            .expect("idempotent");
        let until = now.checked_add(retention).unwrap_or(SimTime::MAX);
        let store = &mut self.ledger.idem[e.index()];
        store.entries.insert(
            op,
            IdemEntry {
                expires: until,
                result: Some(status),
            },
        );
        store.order.push_back((until, op));
        let slot = self.ledger.idem_slot[e.index()];
        self.metrics.consistency.idempotency[slot].stored += 1;
    }

    /// The first request never finished (its replica crashed): the key is free again.
    pub(super) fn idempotency_forget(&mut self, e: EndpointId, op: u64) {
        let store = &mut self.ledger.idem[e.index()];
        if store.entries.get(&op).is_some_and(|x| x.result.is_none()) {
            store.entries.remove(&op);
        }
    }
}
