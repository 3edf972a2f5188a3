//! Stores that forget after a retention (FIFO deduplication windows, processed-messages
//! stores, idempotency keys) keep their entries in a map and their ends in time order.

use crate::engine::SimTime;
use std::collections::{BTreeMap, VecDeque};

/// Drops the entries whose retention ended by `now`; `order` lists (end, id) in time
/// order, and an entry renewed since (a later end) stays.
pub(super) fn prune<V>(
    order: &mut VecDeque<(SimTime, u64)>,
    map: &mut BTreeMap<u64, V>,
    now: SimTime,
    end: impl Fn(&V) -> SimTime,
) {
    while let Some(&(t, id)) = order.front() {
        if t > now {
            break;
        }
        order.pop_front();
        if map.get(&id).is_some_and(|v| end(v) == t) {
            map.remove(&id);
        }
    }
}

/// A set of ids that each leave it at the end of a retention, added in order of those
/// ends (one retention per store, and time only moves forward): the processed-messages
/// store. Its memory follows the window it remembers, not the run: membership is one bit
/// per id between the lowest and the highest id held, and the ends are a queue of
/// variable-length deltas (about 5 bytes an entry) instead of a map node and a queue slot
/// (about 56 bytes).
#[derive(Default)]
pub(super) struct ExpiringIds {
    /// Bit `id % 64` of word `id / 64 - first_word`.
    words: VecDeque<u64>,
    first_word: u64,
    /// The oldest entry (end, id), then the others as deltas from the one before:
    /// the end's as an unsigned varint, the id's as a zigzag varint.
    oldest: Option<(SimTime, u64)>,
    deltas: VecDeque<u8>,
    newest: (SimTime, u64),
    len: usize,
}

impl ExpiringIds {
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn contains(&self, id: u64) -> bool {
        let w = id / 64;
        w >= self.first_word
            && self
                .words
                .get((w - self.first_word) as usize)
                .is_some_and(|x| x >> (id % 64) & 1 == 1)
    }

    /// Adds `id`, absent, until `end` (no earlier than the ends already held).
    pub fn insert(&mut self, id: u64, end: SimTime) {
        assert!(!self.contains(id), "an id is added once per retention");
        match self.oldest {
            None => self.oldest = Some((end, id)),
            Some(_) => {
                let (last_end, last_id) = self.newest;
                assert!(end >= last_end, "retention ends are added in time order");
                push_varint(&mut self.deltas, end.as_nanos() - last_end.as_nanos());
                let d = id.wrapping_sub(last_id) as i64;
                push_varint(&mut self.deltas, ((d << 1) ^ (d >> 63)) as u64);
            }
        }
        self.newest = (end, id);
        self.set(id, true);
        self.len += 1;
    }

    /// Drops the ids whose retention ended by `now`.
    pub fn expire(&mut self, now: SimTime) {
        while let Some((end, id)) = self.oldest {
            if end > now {
                break;
            }
            self.set(id, false);
            self.len -= 1;
            self.oldest = if self.deltas.is_empty() {
                None
            } else {
                let dt = pop_varint(&mut self.deltas);
                let z = pop_varint(&mut self.deltas);
                let d = ((z >> 1) as i64) ^ -((z & 1) as i64);
                Some((
                    SimTime::from_nanos(end.as_nanos() + dt),
                    id.wrapping_add(d as u64),
                ))
            };
        }
    }

    fn set(&mut self, id: u64, on: bool) {
        let w = id / 64;
        if self.words.is_empty() {
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
        if on {
            self.words[i] |= 1 << (id % 64);
        } else {
            self.words[i] &= !(1 << (id % 64));
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

fn push_varint(out: &mut VecDeque<u8>, mut x: u64) {
    while x >= 0x80 {
        out.push_back(x as u8 | 0x80);
        x >>= 7;
    }
    out.push_back(x as u8);
}

fn pop_varint(from: &mut VecDeque<u8>) -> u64 {
    let mut x = 0;
    let mut shift = 0;
    loop {
        let b = from.pop_front().expect("a whole varint");
        x |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return x;
        }
        shift += 7;
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
        assert_eq!(s.words.len(), 1);
        s.insert(4, t(30));
        assert!(s.contains(4) && s.contains(1_000_000) && !s.contains(5));
        s.expire(t(30));
        assert_eq!((s.len(), s.words.len(), s.deltas.len()), (0, 0, 0));
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
        assert_eq!(s.deltas.len(), 5 * 29_999);
        assert_eq!(s.words.len(), (179_999 / 64 - 150_000 / 64 + 1) as usize);
    }

    #[test]
    #[should_panic(expected = "in time order")]
    fn an_earlier_end_is_refused() {
        let mut s = ExpiringIds::default();
        s.insert(1, t(5));
        s.insert(2, t(4));
    }
}
