//! The ledger: the effects ledger (applications per effect and operation), the
//! transaction buffer of idempotent handlers, and the endpoints' idempotency-key stores.

use super::retention::{IdempotencyKeys, Key};
use super::spec::*;
use super::status::Status;
use super::world::InvocationId;
use crate::engine::{SimDuration, SimTime};
use crate::metrics::consistency::{Consistency, EffectMetrics};
use std::collections::BTreeMap;

/// The effects ledger and the transaction buffer, owned by the `World` next to the
/// brokers: what handlers did to the outside world, whether or not messages are involved.
pub(super) struct Ledger {
    /// Effects and outbox rows of transactional handlers, committed at their end.
    pub txn_effects: Vec<(InvocationId, EffectId)>,
    pub txn_outbox: Vec<(InvocationId, PublishId, u64)>,
    /// Per effect, per operation: applications (saturating at 255).
    pub counts: Vec<EffectCounts>,
    /// Per operation: how its request was answered, and by which workload.
    answers: Answers,
    next_op: u64,
    key_base: Vec<u64>,
    idem: Vec<IdempotencyKeys>,
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
            counts: spec
                .effects
                .iter()
                .map(|_| EffectCounts::default())
                .collect(),
            answers: if spec.workloads.len() > 1 {
                Answers::Tagged(Vec::new())
            } else {
                Answers::OneWorkload(Vec::new())
            },
            next_op,
            key_base,
            idem: spec
                .endpoints
                .iter()
                .map(|_| IdempotencyKeys::default())
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
            .map(EffectCounts::len)
            .chain(std::iter::once(self.answers.len()))
            .max()
            .unwrap_or(0);
        self.judge_effects(spec, c, ops);
        self.judge_choreographies(spec, c, ops);
    }

    fn judge_effects(&self, spec: &Spec, c: &mut Consistency, ops: usize) {
        for (e, effect) in spec.effects.iter().enumerate() {
            judge_effect(
                &self.counts[e],
                &self.answers,
                &effect.expected_for,
                ops,
                &mut c.effects[e],
            );
        }
    }

    fn judge_choreographies(&self, spec: &Spec, c: &mut Consistency, ops: usize) {
        let first = spec.sagas.len();
        for (s, saga) in spec.choreographies.iter().enumerate() {
            let m = &mut c.sagas[first + s];
            let count = |e: EffectId, op: usize| self.counts[e.index()].get(op as u64);
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
        self.answers.record(op, w, ok);
    }
}

/// Judges operations `0..ops` for one effect: how many times each was applied (never,
/// once, more), counted for the operations that applied it or whose request, from a
/// workload in `expected_for`, was answered ok.
fn judge_effect(
    counts: &EffectCounts,
    answers: &Answers,
    expected_for: &[WorkloadId],
    ops: usize,
    m: &mut EffectMetrics,
) {
    // By workload tag (flags >> 2: 0 for none, else the workload + 1).
    let mut expected_of = [false; 64];
    for w in expected_for {
        if let Some(x) = expected_of.get_mut(w.index() + 1) {
            *x = true;
        }
    }
    let judge = |m: &mut EffectMetrics, op: usize| {
        let n = u64::from(counts.get(op as u64));
        let flags = answers.flags(op);
        let expected = flags & 1 == 1 && expected_of[(flags >> 2) as usize];
        if n > 0 || expected {
            m.count_operation(n, flags);
        }
    };
    // Four operations share a byte of counts and, with one workload, a byte of answers:
    // a group with nothing applied and nothing expected is skipped whole, and one with
    // every operation applied once and answered ok is counted at once. The rest go one
    // by one.
    let expected_ok = expected_of[1];
    for group in 0..ops.div_ceil(4) {
        if let Answers::OneWorkload(v) = answers {
            let applied = counts.packed.get(group).copied().unwrap_or(0);
            let answered = v.get(group).copied().unwrap_or(0);
            if applied == 0 && (answered == 0 || !expected_ok) {
                continue;
            }
            if applied == 0b0101_0101 && answered == 0b0101_0101 {
                m.operations += 4;
                m.exactly_once += 4;
                m.max_count = m.max_count.max(1);
                continue;
            }
        }
        for op in group * 4..(group * 4 + 4).min(ops) {
            judge(m, op);
        }
    }
}

/// How each operation's request was answered (ok, with an error, or both after a retry),
/// and by which workload, for `judge`'s `expected_for`. As flags: bit 0 answered ok, bit
/// 1 answered with an error, bits 2..8 the workload + 1 (0 when there are more than 62
/// workloads, or before an answer).
pub(super) enum Answers {
    /// A byte of flags per operation.
    Tagged(Vec<u8>),
    /// One workload: bits 0 and 1 only, 2 bits per operation (four in a byte); the
    /// workload is that one's once answered. A quarter of the bytes, on the run's longest
    /// array (10^8 requests: 25 MB instead of 100).
    OneWorkload(Vec<u8>),
}

impl Answers {
    /// Operations there is room for (never-answered ones read 0).
    fn len(&self) -> usize {
        match self {
            Answers::Tagged(v) => v.len(),
            Answers::OneWorkload(v) => v.len() * 4,
        }
    }

    fn record(&mut self, op: u64, w: WorkloadId, ok: bool) {
        let answer = if ok { 1 } else { 2 };
        match self {
            Answers::Tagged(v) => {
                let i = op as usize;
                if v.len() <= i {
                    v.resize(i + 1, 0);
                }
                let tag = if w.index() < 62 {
                    ((w.index() + 1) as u8) << 2
                } else {
                    0
                };
                v[i] |= tag | answer;
            }
            Answers::OneWorkload(v) => {
                assert_eq!(w.index(), 0, "one workload");
                let i = (op / 4) as usize;
                if v.len() <= i {
                    v.resize(i + 1, 0);
                }
                v[i] |= answer << ((op % 4) * 2);
            }
        }
    }

    /// The flags of `op`.
    fn flags(&self, op: usize) -> u8 {
        match self {
            Answers::Tagged(v) => v.get(op).copied().unwrap_or(0),
            Answers::OneWorkload(v) => {
                let answer = v.get(op / 4).map_or(0, |b| (b >> ((op % 4) * 2)) & 3);
                if answer == 0 { 0 } else { 1 << 2 | answer }
            }
        }
    }
}

/// Applications of one effect per operation, 2 bits each (0, 1, 2, or 3 = "3 or more,
/// exactly in `many`"): a run's ledger costs a quarter byte per operation and effect,
/// plus a map entry only for the rare operations applied three times or more.
#[derive(Default)]
pub(super) struct EffectCounts {
    packed: Vec<u8>,
    /// Counts >= 3 (saturating at 255), by operation; ordered, so nothing depends on hashing.
    many: BTreeMap<u64, u8>,
}

impl EffectCounts {
    const MANY: u8 = 3;

    /// Operations the ledger has room for (a multiple of 4: never-applied ones count 0).
    pub fn len(&self) -> usize {
        self.packed.len() * 4
    }

    pub fn get(&self, op: u64) -> u8 {
        let Some(&byte) = self.packed.get((op / 4) as usize) else {
            return 0;
        };
        match (byte >> ((op % 4) * 2)) & 3 {
            Self::MANY => self.many[&op],
            n => n,
        }
    }

    /// One more application of `op`.
    pub fn add(&mut self, op: u64) {
        let i = (op / 4) as usize;
        if self.packed.len() <= i {
            self.packed.resize(i + 1, 0);
        }
        let shift = (op % 4) * 2;
        match (self.packed[i] >> shift) & 3 {
            Self::MANY => {
                let n = self
                    .many
                    .get_mut(&op)
                    .expect("a count of 3 or more is in the map");
                *n = n.saturating_add(1);
            }
            n => {
                self.packed[i] += 1 << shift;
                if n + 1 == Self::MANY {
                    self.many.insert(op, Self::MANY);
                }
            }
        }
    }
}

impl Ledger {
    /// Ends a handler's transaction: its effects are applied if it commits, and its
    /// outbox rows, in the order it wrote them, are returned to be relayed (none if it
    /// does not commit).
    pub fn end(
        &mut self,
        i: InvocationId,
        commit: bool,
        op: u64,
        c: &mut Consistency,
    ) -> Vec<(PublishId, u64)> {
        if !self.txn_effects.is_empty() {
            let mut k = 0;
            while k < self.txn_effects.len() {
                if self.txn_effects[k].0 == i {
                    let (_, e) = self.txn_effects.swap_remove(k);
                    if commit {
                        self.apply(e, op, c);
                    }
                } else {
                    k += 1;
                }
            }
        }
        let mut rows = Vec::new();
        if !self.txn_outbox.is_empty() {
            self.txn_outbox.retain(|&(x, p, msg)| {
                if x == i {
                    rows.push((p, msg));
                    false
                } else {
                    true
                }
            });
            // Rows keep the order the handler wrote them in.
            rows.sort_by_key(|&(_, msg)| msg);
            if !commit {
                rows.clear();
            }
        }
        rows
    }

    /// An effect applies to an operation, now.
    pub fn apply(&mut self, e: EffectId, op: u64, c: &mut Consistency) {
        self.counts[e.index()].add(op);
        c.effects[e.index()].applied += 1;
    }

    /// Drops the transaction of an invocation that will never end (its replica crashed).
    pub fn abort(&mut self, i: InvocationId) {
        self.txn_effects.retain(|&(x, _)| x != i);
        self.txn_outbox.retain(|&(x, _, _)| x != i);
    }

    // ---- endpoint idempotency keys ----

    /// A request reaches an idempotent endpoint: Some(status) if it is answered from
    /// the store (a replay, or a conflict with the first request still running).
    pub fn idempotency_check(
        &mut self,
        e: EndpointId,
        op: u64,
        now: SimTime,
        c: &mut Consistency,
    ) -> Option<Status> {
        let slot = self.idem_slot[e.index()];
        let keys = &mut self.idem[e.index()];
        keys.expire(now);
        match keys.get(op) {
            Key::Answered(s) => {
                c.idempotency[slot].replayed += 1;
                Some(s)
            }
            Key::Running => {
                c.idempotency[slot].conflicts += 1;
                Some(Status::Unavailable)
            }
            Key::Unknown => {
                keys.start(op);
                None
            }
        }
    }

    /// The first request with this key is answered: its result is kept for replays
    /// during `retention`.
    pub fn idempotency_store(
        &mut self,
        e: EndpointId,
        op: u64,
        status: Status,
        retention: SimDuration,
        now: SimTime,
        c: &mut Consistency,
    ) {
        let until = now.checked_add(retention).unwrap_or(SimTime::MAX);
        self.idem[e.index()].answer(op, status, until);
        c.idempotency[self.idem_slot[e.index()]].stored += 1;
    }

    /// The first request never finished (its replica crashed): the key is free again.
    pub fn idempotency_forget(&mut self, e: EndpointId, op: u64) {
        self.idem[e.index()].forget(op);
    }
}

#[cfg(test)]
mod tests {
    use super::{Answers, EffectCounts, judge_effect};
    use crate::metrics::consistency::EffectMetrics;
    use crate::model::spec::WorkloadId;
    use proptest::prelude::*;

    /// `judge_effect` one operation at a time, as it was before it read four at once.
    fn judge_naive(
        counts: &EffectCounts,
        answers: &Answers,
        expected_for: &[WorkloadId],
        ops: usize,
    ) -> EffectMetrics {
        let mut m = EffectMetrics::default();
        for op in 0..ops {
            let n = u64::from(counts.get(op as u64));
            let flags = answers.flags(op);
            let workload = (flags >> 2) as usize;
            let expected = flags & 1 == 1
                && workload > 0
                && expected_for.contains(&WorkloadId(workload as u32 - 1));
            if n > 0 || expected {
                m.count_operation(n, flags);
            }
        }
        m
    }

    fn tally(m: &EffectMetrics) -> [u64; 6] {
        [
            m.operations,
            m.never,
            m.exactly_once,
            m.duplicated,
            m.max_count,
            m.despite_failure,
        ]
    }

    proptest! {
        /// Whole groups of four (skipped, or all once and ok) judge exactly as one by
        /// one: runs of plain operations among applications 0..4, errors, retries and
        /// operations never answered, with one workload and with several.
        #[test]
        fn judging_four_at_once_is_judging_one_by_one(
            ops in prop::collection::vec((0u32..5, 0u8..4, 0u32..3, 0u8..4), 0..200),
            expected in prop::collection::vec(0u32..3, 0..3),
        ) {
            let expected: Vec<WorkloadId> = expected.into_iter().map(WorkloadId).collect();
            let mut counts = EffectCounts::default();
            let mut one = Answers::OneWorkload(Vec::new());
            let mut tagged = Answers::Tagged(Vec::new());
            for (op, &(applied, answer, workload, kind)) in ops.iter().enumerate() {
                let op = op as u64;
                // Plain (applied once, answered ok) as in a healthy run, untouched,
                // answered ok without applying it, or anything.
                let (applied, answer) = match kind {
                    0 => (1, 1),
                    1 => (0, 0),
                    2 => (0, 1),
                    _ => (applied, answer),
                };
                for _ in 0..applied {
                    counts.add(op);
                }
                // Bit 0: answered ok, bit 1: answered with an error.
                for (bit, ok) in [(1, true), (2, false)] {
                    if answer & bit != 0 {
                        one.record(op, WorkloadId(0), ok);
                        tagged.record(op, WorkloadId(workload), ok);
                    }
                }
            }
            for answers in [&one, &tagged] {
                let ops = counts.len().max(answers.len());
                let mut m = EffectMetrics::default();
                judge_effect(&counts, answers, &expected, ops, &mut m);
                prop_assert_eq!(tally(&m), tally(&judge_naive(&counts, answers, &expected, ops)));
            }
        }
    }

    #[test]
    fn one_workload_answers_read_as_the_tagged_flags() {
        let mut one = Answers::OneWorkload(Vec::new());
        let mut tagged = Answers::Tagged(Vec::new());
        // op -> answers: none, ok, an error, an error then ok (a retry), far out.
        let answers: [(u64, &[bool]); 5] = [
            (0, &[]),
            (1, &[true]),
            (2, &[false]),
            (5, &[false, true]),
            (1_001, &[true]),
        ];
        for &(op, oks) in &answers {
            for &ok in oks {
                one.record(op, WorkloadId(0), ok);
                tagged.record(op, WorkloadId(0), ok);
            }
        }
        for op in 0..1_010 {
            assert_eq!(one.flags(op), tagged.flags(op), "operation {op}");
        }
        assert_eq!(
            [0, 1, 2, 5].map(|op| one.flags(op)),
            [0, 0b101, 0b110, 0b111]
        );
        // A quarter of the bytes.
        assert_eq!((one.len(), tagged.len()), (1_004, 1_002));
        let mut two = Answers::Tagged(Vec::new());
        two.record(3, WorkloadId(1), true);
        two.record(4, WorkloadId(70), false);
        assert_eq!((two.flags(3), two.flags(4)), (0b1001, 0b10));
    }

    #[test]
    fn counts_are_exact_through_the_packed_bits_and_the_map() {
        let mut c = EffectCounts::default();
        // op -> applications: 0, 1, 2 in the packed bits; 3, 7, 300 (saturating) in the map.
        let wanted: [(u64, u32); 6] = [(0, 0), (1, 1), (2, 2), (5, 3), (6, 7), (9, 300)];
        for &(op, n) in &wanted {
            for _ in 0..n {
                c.add(op);
            }
        }
        for &(op, n) in &wanted {
            assert_eq!(u32::from(c.get(op)), n.min(255), "operation {op}");
        }
        // Neighbours sharing a byte are untouched; past the end reads 0.
        assert_eq!(
            (c.get(3), c.get(4), c.get(7), c.get(8), c.get(1_000)),
            (0, 0, 0, 0, 0)
        );
        assert_eq!(c.many.len(), 3);
        assert_eq!(c.len(), 12);
        assert_eq!(c.packed.len(), 3);
    }
}
