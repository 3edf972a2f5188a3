//! The future event list: a 4-ary min-heap ordered by (time, insertion sequence).
//!
//! The sequence number only goes up, so events scheduled for the same instant come
//! out in the order they were scheduled, on every run and every platform. Keys are
//! unique, so any correct heap pops the same order; four children per node halve the
//! heap's depth against a binary heap, and events are plain values moved once per
//! level (a hole slides down or up, as in `std`'s heap, without `unsafe`).

use super::time::SimTime;

const ARITY: usize = 4;

#[derive(Clone, Copy)]
struct Entry<E> {
    time: SimTime,
    seq: u64,
    event: E,
}

impl<E> Entry<E> {
    /// Earlier in (time, seq) order.
    #[inline(always)]
    fn before(&self, other: &Self) -> bool {
        self.time < other.time || (self.time == other.time && self.seq < other.seq)
    }
}

pub struct EventQueue<E> {
    heap: Vec<Entry<E>>,
    next_seq: u64,
}

impl<E: Copy> Default for EventQueue<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E: Copy> EventQueue<E> {
    pub fn new() -> Self {
        EventQueue {
            heap: Vec::with_capacity(1024),
            next_seq: 0,
        }
    }

    #[inline]
    pub fn push(&mut self, time: SimTime, event: E) {
        let entry = Entry {
            time,
            seq: self.next_seq,
            event,
        };
        self.next_seq += 1;
        let mut hole = self.heap.len();
        self.heap.push(entry);
        while hole > 0 {
            let parent = (hole - 1) / ARITY;
            if !entry.before(&self.heap[parent]) {
                break;
            }
            self.heap[hole] = self.heap[parent];
            hole = parent;
        }
        self.heap[hole] = entry;
    }

    #[inline]
    pub fn pop(&mut self) -> Option<(SimTime, E)> {
        let last = self.heap.pop()?;
        let Some(&top) = self.heap.first() else {
            return Some((last.time, last.event));
        };
        // `last` goes where the root was and sinks below its earliest child until none
        // is earlier.
        let n = self.heap.len();
        let mut hole = 0;
        loop {
            let first = hole * ARITY + 1;
            if first >= n {
                break;
            }
            let mut earliest = first;
            for c in first + 1..(first + ARITY).min(n) {
                if self.heap[c].before(&self.heap[earliest]) {
                    earliest = c;
                }
            }
            if !self.heap[earliest].before(&last) {
                break;
            }
            self.heap[hole] = self.heap[earliest];
            hole = earliest;
        }
        self.heap[hole] = last;
        Some((top.time, top.event))
    }

    pub fn peek_time(&self) -> Option<SimTime> {
        self.heap.first().map(|e| e.time)
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::stream;
    use rand::RngExt;

    #[test]
    fn ties_come_out_in_insertion_order() {
        let mut q = EventQueue::new();
        q.push(SimTime::from_nanos(10), 'c');
        q.push(SimTime::from_nanos(5), 'a');
        q.push(SimTime::from_nanos(10), 'd');
        q.push(SimTime::from_nanos(5), 'b');
        let order: Vec<char> = std::iter::from_fn(|| q.pop().map(|(_, e)| e)).collect();
        assert_eq!(order, vec!['a', 'b', 'c', 'd']);
    }

    /// Pushes and pops interleaved at random, against a sorted list of (time, seq):
    /// every pop is the earliest time, and among equal times the first pushed.
    #[test]
    fn pops_follow_time_then_insertion_order_under_random_use() {
        let mut rng = stream(7, "queue test");
        let mut q = EventQueue::new();
        let mut reference: Vec<(u64, u32)> = Vec::new();
        let mut pushed = 0u32;
        let mut popped = 0;
        for _ in 0..20_000 {
            if rng.random_range(0..3) < 2 || reference.is_empty() {
                // Few distinct times, so ties are common.
                let t = rng.random_range(0..50u64);
                q.push(SimTime::from_nanos(t), pushed);
                reference.push((t, pushed));
                pushed += 1;
            } else {
                let (i, &want) = reference
                    .iter()
                    .enumerate()
                    .min_by_key(|&(_, w)| *w)
                    .unwrap();
                reference.remove(i);
                let (t, e) = q.pop().unwrap();
                assert_eq!((t.as_nanos(), e), want);
                popped += 1;
            }
            assert_eq!(q.len(), reference.len());
        }
        assert!(popped > 5_000, "popped only {popped}");
        reference.sort();
        for want in reference {
            let (t, e) = q.pop().unwrap();
            assert_eq!((t.as_nanos(), e), want);
        }
        assert!(q.pop().is_none());
    }
}
