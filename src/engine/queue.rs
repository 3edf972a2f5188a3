//! The future event list: a binary heap ordered by (time, insertion sequence), and
//! lanes of timers that bypass it.
//!
//! The sequence number only goes up, so events scheduled for the same instant come
//! out in the order they were scheduled, on every run and every platform.
//!
//! A lane holds events that are each scheduled the same delay after the present (a
//! queue's ack timeout for every delivery): the clock only moves forward, so they
//! arrive in time order and a FIFO keeps them sorted. Such timers are long and mostly
//! stale (the delivery was acked long before), and in the heap they would make every
//! push and pop climb O(log n) levels over them; in a lane they cost O(1). Events come
//! out of the heap and the lanes in exactly the (time, seq) order of one heap.

use super::time::SimTime;
use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, VecDeque};

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
    lanes: Vec<VecDeque<Entry<E>>>,
    /// The first entry of every non-empty lane: (time, seq, lane), earliest first.
    heads: BinaryHeap<Reverse<(SimTime, u64, usize)>>,
    in_lanes: usize,
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
            lanes: Vec::new(),
            heads: BinaryHeap::new(),
            in_lanes: 0,
            next_seq: 0,
        }
    }

    fn entry(&mut self, time: SimTime, event: E) -> Entry<E> {
        let seq = self.next_seq;
        self.next_seq += 1;
        Entry { time, seq, event }
    }

    pub fn push(&mut self, time: SimTime, event: E) {
        let e = self.entry(time, event);
        self.heap.push(e);
    }

    /// Pushes onto lane `lane`, whose events must come in time order.
    pub fn push_lane(&mut self, lane: usize, time: SimTime, event: E) {
        let e = self.entry(time, event);
        if self.lanes.len() <= lane {
            self.lanes.resize_with(lane + 1, VecDeque::new);
        }
        let l = &mut self.lanes[lane];
        match l.back() {
            Some(last) => assert!(
                time >= last.time,
                "lane {lane}: an event at {time} after one at {}",
                last.time
            ),
            None => self.heads.push(Reverse((e.time, e.seq, lane))),
        }
        l.push_back(e);
        self.in_lanes += 1;
    }

    pub fn pop(&mut self) -> Option<(SimTime, E)> {
        let from_lane = match (self.heads.peek(), self.heap.peek()) {
            (Some(&Reverse((t, s, lane))), Some(h)) => ((t, s) < (h.time, h.seq)).then_some(lane),
            (Some(&Reverse((_, _, lane))), None) => Some(lane),
            (None, _) => None,
        };
        let Some(lane) = from_lane else {
            return self.heap.pop().map(|e| (e.time, e.event));
        };
        self.heads.pop();
        let l = &mut self.lanes[lane];
        let e = l.pop_front().expect("a lane with a head");
        if let Some(next) = l.front() {
            self.heads.push(Reverse((next.time, next.seq, lane)));
        }
        self.in_lanes -= 1;
        Some((e.time, e.event))
    }

    pub fn peek_time(&self) -> Option<SimTime> {
        let lane = self.heads.peek().map(|r| r.0.0);
        let heap = self.heap.peek().map(|e| e.time);
        match (lane, heap) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn len(&self) -> usize {
        self.heap.len() + self.in_lanes
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::stream;
    use proptest::prelude::*;
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

    #[test]
    fn lanes_and_heap_interleave_by_time_then_sequence() {
        let mut q = EventQueue::new();
        let t = SimTime::from_nanos;
        q.push_lane(0, t(10), "lane0 10 first");
        q.push(t(10), "heap 10 second");
        q.push_lane(1, t(5), "lane1 5");
        q.push_lane(0, t(10), "lane0 10 third");
        q.push(t(7), "heap 7");
        q.push_lane(1, t(20), "lane1 20");
        assert_eq!((q.len(), q.peek_time()), (6, Some(t(5))));
        let order: Vec<&str> = std::iter::from_fn(|| q.pop().map(|(_, e)| e)).collect();
        assert_eq!(
            order,
            [
                "lane1 5",
                "heap 7",
                "lane0 10 first",
                "heap 10 second",
                "lane0 10 third",
                "lane1 20"
            ]
        );
        assert!(q.is_empty() && q.peek_time().is_none());
    }

    #[test]
    #[should_panic(expected = "lane 2: an event at")]
    fn a_lane_refuses_an_earlier_event() {
        let mut q = EventQueue::new();
        q.push_lane(2, SimTime::from_nanos(10), ());
        q.push_lane(2, SimTime::from_nanos(9), ());
    }

    proptest! {
        /// Any mix of heap and lane pushes (each lane at a fixed delay from a clock
        /// that moves forward as events are popped) pops in the order of one heap.
        #[test]
        fn lanes_pop_in_the_order_of_one_heap(
            steps in prop::collection::vec((0u8..6, 0u64..50), 1..300),
        ) {
            let mut mixed = EventQueue::new();
            let mut heap = EventQueue::new();
            let mut now = 0;
            let mut popped = (Vec::new(), Vec::new());
            for (id, (what, x)) in (0u32..).zip(steps) {
                match what {
                    0 | 1 => {
                        let a = mixed.pop();
                        let b = heap.pop();
                        if let Some((t, _)) = a {
                            now = t.as_nanos();
                        }
                        popped.0.push(a);
                        popped.1.push(b);
                    }
                    2 => {
                        let t = SimTime::from_nanos(now + x);
                        mixed.push(t, id);
                        heap.push(t, id);
                    }
                    lane => {
                        // Lane k's delay: 10 k ns, so ties with the heap happen.
                        let t = SimTime::from_nanos(now + 10 * u64::from(lane));
                        mixed.push_lane(usize::from(lane), t, id);
                        heap.push(t, id);
                    }
                }
                prop_assert_eq!(mixed.len(), heap.len());
                prop_assert_eq!(mixed.peek_time(), heap.peek_time());
            }
            while let Some(a) = heap.pop() {
                popped.1.push(Some(a));
                popped.0.push(mixed.pop());
            }
            prop_assert_eq!(popped.0, popped.1);
        }
    }
}
