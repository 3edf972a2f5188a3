//! Stores that forget after a retention: the processed-messages stores, the FIFO
//! deduplication windows (`ExpiringIds`) and the endpoints' idempotency keys
//! (`IdempotencyKeys`). One store has one retention and time only moves forward, so its
//! entries end in the order they were added: the ends are a queue of variable-length
//! deltas (about 5 bytes an entry at tens of entries a second), and what is held per id
//! is a few bits between the lowest and the highest id held, instead of a map node and a
//! queue slot (about 56 bytes). Their memory follows the window they remember, not the
//! run (ids are dense: message and operation numbers).

use crate::engine::SimTime;
use crate::status::Status;
use std::collections::VecDeque;

/// A value of `BITS` bits per id (0: none), for the ids between the lowest and the
/// highest with a value; the words beyond either end are dropped as soon as they are 0.
#[derive(Default)]
struct Slots<const BITS: u32> {
    /// Slot `id % PER_WORD` of word `id / PER_WORD - first_word`.
    words: VecDeque<u64>,
    first_word: u64,
}

impl<const BITS: u32> Slots<BITS> {
    const PER_WORD: u64 = 64 / BITS as u64;
    const MASK: u64 = (1 << BITS) - 1;

    fn get(&self, id: u64) -> u64 {
        let w = id / Self::PER_WORD;
        if w < self.first_word {
            return 0;
        }
        self.words
            .get((w - self.first_word) as usize)
            .map_or(0, |x| {
                x >> (id % Self::PER_WORD * u64::from(BITS)) & Self::MASK
            })
    }

    fn set(&mut self, id: u64, value: u64) {
        assert!(value <= Self::MASK, "a value fits its slot");
        let w = id / Self::PER_WORD;
        if self.words.is_empty() {
            if value == 0 {
                return;
            }
            self.first_word = w;
        }
        while w < self.first_word {
            self.words.push_front(0);
            self.first_word -= 1;
        }
        let i = (w - self.first_word) as usize;
        if i >= self.words.len() {
            self.words.resize(i + 1, 0);
        }
        let shift = id % Self::PER_WORD * u64::from(BITS);
        self.words[i] = self.words[i] & !(Self::MASK << shift) | value << shift;
        if value == 0 {
            while self.words.front() == Some(&0) {
                self.words.pop_front();
                self.first_word += 1;
            }
            while self.words.back() == Some(&0) {
                self.words.pop_back();
            }
        }
    }
}

/// (end, id) pairs in the order of their ends: the oldest, then the others as deltas
/// from the one before (the end's as an unsigned varint, the id's as a zigzag varint).
#[derive(Default)]
struct Ends {
    oldest: Option<(SimTime, u64)>,
    deltas: Varints,
    newest: (SimTime, u64),
    len: usize,
}

impl Ends {
    /// Adds `id`, whose retention ends at `end` (no earlier than the ends already held).
    fn push(&mut self, end: SimTime, id: u64) {
        match self.oldest {
            None => self.oldest = Some((end, id)),
            Some(_) => {
                let (last_end, last_id) = self.newest;
                assert!(end >= last_end, "retention ends are added in time order");
                self.deltas.push(end.as_nanos() - last_end.as_nanos());
                let d = id.wrapping_sub(last_id) as i64;
                self.deltas.push(((d << 1) ^ (d >> 63)) as u64);
            }
        }
        self.newest = (end, id);
        self.len += 1;
    }

    /// Takes out the oldest id if its retention ended by `now`.
    fn pop_due(&mut self, now: SimTime) -> Option<u64> {
        let (end, id) = self.oldest.filter(|&(end, _)| end <= now)?;
        self.len -= 1;
        self.oldest = if self.deltas.is_empty() {
            None
        } else {
            let dt = self.deltas.pop();
            let z = self.deltas.pop();
            let d = ((z >> 1) as i64) ^ -((z & 1) as i64);
            Some((
                SimTime::from_nanos(end.as_nanos() + dt),
                id.wrapping_add(d as u64),
            ))
        };
        Some(id)
    }
}

/// A set of ids that each leave it at the end of a retention: the processed-messages
/// store and the FIFO deduplication window. One bit per id between the lowest and the
/// highest held, and the queue of ends.
#[derive(Default)]
pub(super) struct ExpiringIds {
    members: Slots<1>,
    ends: Ends,
}

impl ExpiringIds {
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.ends.len
    }

    pub fn contains(&self, id: u64) -> bool {
        self.members.get(id) == 1
    }

    /// Adds `id`, absent, until `end` (no earlier than the ends already held).
    pub fn insert(&mut self, id: u64, end: SimTime) {
        assert!(!self.contains(id), "an id is added once per retention");
        self.ends.push(end, id);
        self.members.set(id, 1);
    }

    /// Drops the ids whose retention ended by `now`.
    pub fn expire(&mut self, now: SimTime) {
        while let Some(id) = self.ends.pop_due(now) {
            self.members.set(id, 0);
        }
    }
}

/// What an idempotent endpoint knows of an operation's key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Key {
    Unknown,
    /// The first request with this key still runs.
    Running,
    /// Answered with this status, kept until its retention ends.
    Answered(Status),
}

/// An endpoint's idempotency keys: 4 bits per operation between the lowest and the
/// highest held (unknown, running, or the answer's status), and the queue of ends of
/// the answered ones. A running key has no end: it leaves when its request is answered
/// (then stays for the retention) or forgotten (its replica crashed).
#[derive(Default)]
pub(super) struct IdempotencyKeys {
    keys: Slots<4>,
    ends: Ends,
}

// The answered statuses fit the 4 bits after the two other states.
const _: () = assert!(IdempotencyKeys::ANSWERED as usize + Status::COUNT <= 16);

impl IdempotencyKeys {
    const RUNNING: u64 = 1;
    /// `ANSWERED + status` for an answered key.
    const ANSWERED: u64 = 2;

    pub fn get(&self, op: u64) -> Key {
        match self.keys.get(op) {
            0 => Key::Unknown,
            Self::RUNNING => Key::Running,
            v => Key::Answered(Status::ALL[(v - Self::ANSWERED) as usize]),
        }
    }

    /// The first request of `op`, unknown, starts.
    pub fn start(&mut self, op: u64) {
        assert_eq!(
            self.get(op),
            Key::Unknown,
            "a key starts once per retention"
        );
        self.keys.set(op, Self::RUNNING);
    }

    /// The running request of `op` is answered: kept until `end` (no earlier than the
    /// ends already held).
    pub fn answer(&mut self, op: u64, status: Status, end: SimTime) {
        assert_eq!(self.get(op), Key::Running, "only a running key is answered");
        self.ends.push(end, op);
        self.keys.set(op, Self::ANSWERED + status as u64);
    }

    /// The running request of `op` will never be answered: its key is free again (an
    /// answered key stays).
    pub fn forget(&mut self, op: u64) {
        if self.get(op) == Key::Running {
            self.keys.set(op, 0);
        }
    }

    /// Drops the answered keys whose retention ended by `now`.
    pub fn expire(&mut self, now: SimTime) {
        while let Some(op) = self.ends.pop_due(now) {
            assert!(
                matches!(self.get(op), Key::Answered(_)),
                "an ending key is answered"
            );
            self.keys.set(op, 0);
        }
    }
}

/// A queue of varints (7 bits a byte, low first, the high bit set on all but the last
/// byte): bytes added at the end of a `Vec` and read from a cursor, the read ones
/// dropped once they are a quarter of the bytes held (a copy of what is left: at most
/// three bytes copied a byte read, and at most a third more held than a queue would).
#[derive(Default)]
struct Varints {
    bytes: Vec<u8>,
    /// The first byte not yet read.
    head: usize,
}

impl Varints {
    /// Read bytes are dropped only past this many (small queues never copy).
    const KEEP_READ: usize = 4096;

    #[cfg(test)]
    fn len(&self) -> usize {
        self.bytes.len() - self.head
    }

    fn is_empty(&self) -> bool {
        self.head == self.bytes.len()
    }

    fn push(&mut self, mut x: u64) {
        while x >= 0x80 {
            self.bytes.push(x as u8 | 0x80);
            x >>= 7;
        }
        self.bytes.push(x as u8);
    }

    fn pop(&mut self) -> u64 {
        let mut x = 0;
        let mut shift = 0;
        loop {
            let b = *self.bytes.get(self.head).expect("a whole varint");
            self.head += 1;
            x |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        if self.head == self.bytes.len() {
            self.bytes.clear();
            self.head = 0;
        } else if self.head >= Self::KEEP_READ && self.head * 4 >= self.bytes.len() {
            self.bytes.drain(..self.head);
            self.head = 0;
        }
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: u64) -> SimTime {
        SimTime::from_nanos(s * 1_000_000_000)
    }

    #[test]
    fn ids_leave_in_the_order_of_their_ends() {
        let mut s = ExpiringIds::default();
        // Out-of-order ids (a redelivery handled late), far apart, and a tie in ends.
        for (id, end) in [(10, 5), (3, 6), (200, 6), (11, 9), (1_000_000, 20)] {
            s.insert(id, t(end));
        }
        assert_eq!(s.len(), 5);
        s.expire(SimTime::from_nanos(t(5).as_nanos() - 1));
        assert_eq!(s.len(), 5);
        s.expire(t(5));
        assert_eq!((s.len(), s.contains(10), s.contains(3)), (4, false, true));
        s.expire(t(6));
        assert_eq!(
            (s.len(), s.contains(3), s.contains(200), s.contains(11)),
            (2, false, false, true)
        );
        s.expire(t(19));
        assert_eq!(
            (s.len(), s.contains(11), s.contains(1_000_000)),
            (1, false, true)
        );
        // Only the one word of the last id is left.
        assert_eq!(s.members.words.len(), 1);
        s.insert(4, t(30));
        assert!(s.contains(4) && s.contains(1_000_000) && !s.contains(5));
        s.expire(t(30));
        assert_eq!(
            (s.len(), s.members.words.len(), s.ends.deltas.len()),
            (0, 0, 0)
        );
        assert!(!s.contains(4));
    }

    #[test]
    fn a_window_of_dense_ids_costs_a_few_bytes_each() {
        let mut s = ExpiringIds::default();
        // 50 ids a second for an hour, kept 10 minutes: 30000 in the window.
        let step = 20_000_000;
        for id in 0..180_000u64 {
            let now = SimTime::from_nanos(id * step);
            s.expire(now);
            assert!(!s.contains(id));
            s.insert(id, SimTime::from_nanos(id * step + 600_000_000_000));
        }
        assert_eq!(s.len(), 30_000);
        assert!(s.contains(179_999) && s.contains(150_000) && !s.contains(149_999));
        // 4 bytes for 20 ms in ns, 1 for the id's step of one; 1 bit of membership.
        assert_eq!(s.ends.deltas.len(), 5 * 29_999);
        assert_eq!(
            s.members.words.len(),
            (179_999 / 64 - 150_000 / 64 + 1) as usize
        );
        // The bytes already read are dropped as they go: at most a third more is held.
        assert!(s.ends.deltas.bytes.len() <= 5 * 29_999 * 4 / 3);
    }

    #[test]
    fn varints_come_out_as_they_went_in_across_the_dropping_of_read_bytes() {
        let mut q = Varints::default();
        let value = |i: u64| match i % 4 {
            0 => i,
            1 => u64::MAX - i,
            2 => 0x7f,
            _ => 0x80 << (i % 50),
        };
        let (mut pushed, mut popped) = (0, 0);
        // Three in, two out: the queue grows, and its read bytes are dropped many times.
        for round in 0..20_000u64 {
            for _ in 0..3 {
                q.push(value(pushed));
                pushed += 1;
            }
            for _ in 0..2 {
                assert_eq!(q.pop(), value(popped), "round {round}");
                popped += 1;
            }
            assert!(q.head < Varints::KEEP_READ.max(q.bytes.len() / 4 + 10));
        }
        while popped < pushed {
            assert_eq!(q.pop(), value(popped));
            popped += 1;
        }
        assert!(q.is_empty());
        assert_eq!((q.len(), q.bytes.len(), q.head), (0, 0, 0));
    }

    #[test]
    #[should_panic(expected = "in time order")]
    fn an_earlier_end_is_refused() {
        let mut s = ExpiringIds::default();
        s.insert(1, t(5));
        s.insert(2, t(4));
    }

    /// The stores as they were before they were made compact (a map entry per id and
    /// a queue of (end, id), an entry renewed since staying): the reference the
    /// compact stores must answer exactly like.
    #[derive(Default)]
    struct Naive<V> {
        map: BTreeMap<u64, (SimTime, V)>,
        order: VecDeque<(SimTime, u64)>,
    }

    impl<V> Naive<V> {
        fn prune(&mut self, now: SimTime) {
            while let Some(&(t, id)) = self.order.front() {
                if t > now {
                    break;
                }
                self.order.pop_front();
                if self.map.get(&id).is_some_and(|v| v.0 == t) {
                    self.map.remove(&id);
                }
            }
        }
    }

    use proptest::prelude::*;
    use std::collections::{BTreeMap, VecDeque};

    /// Ids near the newest operation (dense, as operation and message numbers are),
    /// with now and then an old one far below (a redelivery of an old message).
    fn id_strategy() -> impl Strategy<Value = (u8, u64)> {
        (0u8..10, 0u64..40)
    }

    fn pick_id((kind, x): (u8, u64), next: &mut u64) -> u64 {
        match kind {
            0..=5 => {
                *next += x % 3;
                *next
            }
            6..=8 => next.saturating_sub(x),
            _ => x * 7,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// The FIFO deduplication window and the processed-messages store: between
        /// steps of time, ids are looked up and added when absent, as `enqueue` and
        /// `store_processed` do.
        #[test]
        fn expiring_ids_answer_like_a_map(
            steps in prop::collection::vec((0u64..4_000, id_strategy()), 1..400),
            retention in 1u64..3_000,
        ) {
            let mut compact = ExpiringIds::default();
            let mut naive = Naive::<()>::default();
            let (mut now, mut next) = (0, 1_000);
            for (dt, pick) in steps {
                now += dt / 4; // often several at one instant
                let now_t = SimTime::from_nanos(now);
                let id = pick_id(pick, &mut next);
                compact.expire(now_t);
                naive.prune(now_t);
                let held = naive.map.contains_key(&id);
                prop_assert_eq!(compact.contains(id), held, "id {} at {}", id, now);
                if !held {
                    let end = SimTime::from_nanos(now + retention);
                    compact.insert(id, end);
                    naive.map.insert(id, (end, ()));
                    naive.order.push_back((end, id));
                }
                prop_assert_eq!(compact.len(), naive.map.len());
            }
            compact.expire(SimTime::MAX);
            prop_assert_eq!((compact.len(), compact.members.words.len()), (0, 0));
        }

        /// The idempotency keys: a request checks its key (replay, conflict, or it
        /// starts), a running one is answered or forgotten (a crash), as the
        /// ledger's `idempotency_check`, `_store` and `_forget` do.
        #[test]
        fn idempotency_keys_answer_like_a_map(
            steps in prop::collection::vec((0u64..4_000, 0u8..10, id_strategy(), 0usize..9), 1..400),
            retention in 1u64..3_000,
        ) {
            let mut compact = IdempotencyKeys::default();
            let mut naive = Naive::<Option<Status>>::default();
            let mut running: Vec<u64> = Vec::new();
            let (mut now, mut next) = (0, 1_000);
            for (dt, action, pick, status) in steps {
                now += dt / 4;
                let now_t = SimTime::from_nanos(now);
                let status = Status::ALL[status];
                match action {
                    // A request arrives.
                    0..=5 => {
                        let op = pick_id(pick, &mut next);
                        compact.expire(now_t);
                        naive.prune(now_t);
                        let want = match naive.map.get(&op) {
                            Some(&(_, Some(s))) => Key::Answered(s),
                            Some(&(_, None)) => Key::Running,
                            None => Key::Unknown,
                        };
                        prop_assert_eq!(compact.get(op), want, "op {} at {}", op, now);
                        if want == Key::Unknown {
                            compact.start(op);
                            naive.map.insert(op, (SimTime::MAX, None));
                            running.push(op);
                        }
                    }
                    // A running request is answered.
                    6..=8 if !running.is_empty() => {
                        let op = running.swap_remove(pick.1 as usize % running.len());
                        let end = SimTime::from_nanos(now + retention);
                        compact.answer(op, status, end);
                        naive.map.insert(op, (end, Some(status)));
                        naive.order.push_back((end, op));
                    }
                    // A replica crashes under a running request, or any key is forgotten.
                    _ => {
                        let op = if running.is_empty() || pick.0 < 5 {
                            pick_id(pick, &mut next)
                        } else {
                            running.swap_remove(pick.1 as usize % running.len())
                        };
                        running.retain(|&x| x != op);
                        compact.forget(op);
                        if naive.map.get(&op).is_some_and(|x| x.1.is_none()) {
                            naive.map.remove(&op);
                        }
                    }
                }
            }
            for (&op, &(_, v)) in &naive.map {
                let want = v.map_or(Key::Running, Key::Answered);
                prop_assert_eq!(compact.get(op), want);
            }
        }
    }

    #[test]
    fn idempotency_keys_keep_the_answer_until_the_retention_ends() {
        let mut k = IdempotencyKeys::default();
        k.start(7);
        k.start(3);
        assert_eq!(
            (k.get(7), k.get(3), k.get(5)),
            (Key::Running, Key::Running, Key::Unknown)
        );
        k.answer(7, Status::Internal, t(10));
        k.answer(3, Status::Ok, t(11));
        k.forget(3); // answered: stays
        k.start(5);
        k.forget(5);
        assert_eq!(
            (k.get(7), k.get(3), k.get(5)),
            (
                Key::Answered(Status::Internal),
                Key::Answered(Status::Ok),
                Key::Unknown
            )
        );
        k.expire(t(10));
        assert_eq!(
            (k.get(7), k.get(3)),
            (Key::Unknown, Key::Answered(Status::Ok))
        );
        k.expire(t(11));
        assert_eq!(
            (k.get(3), k.keys.words.len(), k.ends.len),
            (Key::Unknown, 0, 0)
        );
    }

    #[test]
    fn an_idempotency_window_of_dense_operations_costs_a_few_bytes_each() {
        let mut k = IdempotencyKeys::default();
        // 50 operations a second for an hour, each answered 100 ms after it starts
        // and kept 10 minutes: 30000 in the window.
        let step = 20_000_000;
        for op in 0..180_000u64 {
            let now = SimTime::from_nanos(op * step);
            k.expire(now);
            k.start(op);
            if op >= 5 {
                let answered = op - 5;
                let status = if answered % 10 == 0 {
                    Status::Unavailable
                } else {
                    Status::Ok
                };
                k.answer(
                    answered,
                    status,
                    SimTime::from_nanos(now.as_nanos() + 600_000_000_000),
                );
            }
        }
        assert_eq!(k.ends.len, 30_000);
        assert_eq!(k.get(150_000), Key::Answered(Status::Unavailable));
        assert_eq!(k.get(150_001), Key::Answered(Status::Ok));
        assert_eq!(
            (k.get(149_994), k.get(179_999)),
            (Key::Unknown, Key::Running)
        );
        // 4 bytes for 20 ms in ns, 1 for the operation's step of one; 4 bits a key.
        assert_eq!(k.ends.deltas.len(), 5 * 29_999);
        assert_eq!(
            k.keys.words.len(),
            (179_999 / 16 - 149_995 / 16 + 1) as usize
        );
    }
}
