//! The future event list: a binary heap ordered by (time, insertion sequence).
//!
//! The sequence number only goes up, so events scheduled for the same instant come
//! out in the order they were scheduled, on every run and every platform.

use super::time::SimTime;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

struct Entry<E> {
    time: SimTime,
    seq: u64,
    event: E,
}

impl<E> PartialEq for Entry<E> {
    fn eq(&self, other: &Self) -> bool {
        self.time == other.time && self.seq == other.seq
    }
}
impl<E> Eq for Entry<E> {}
impl<E> PartialOrd for Entry<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<E> Ord for Entry<E> {
    // Reversed: BinaryHeap is a max-heap and we want the earliest (time, seq) first.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .time
            .cmp(&self.time)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

pub struct EventQueue<E> {
    heap: BinaryHeap<Entry<E>>,
    next_seq: u64,
}

impl<E> Default for EventQueue<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E> EventQueue<E> {
    pub fn new() -> Self {
        EventQueue {
            heap: BinaryHeap::with_capacity(1024),
            next_seq: 0,
        }
    }

    pub fn push(&mut self, time: SimTime, event: E) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.heap.push(Entry { time, seq, event });
    }

    pub fn pop(&mut self) -> Option<(SimTime, E)> {
        self.heap.pop().map(|e| (e.time, e.event))
    }

    pub fn peek_time(&self) -> Option<SimTime> {
        self.heap.peek().map(|e| e.time)
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
            if rng.random_range(0..2) == 0 || reference.is_empty() {
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
