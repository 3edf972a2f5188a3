//! The future event list: a binary heap ordered by (time, insertion sequence), and
//! lanes of timers that bypass it.
//!
//! The sequence number only goes up, so events scheduled for the same instant come
//! out in the order they were scheduled, on every run and every platform.
//!
//! A timer (`push_timer`: a call's timeout, a queue's ack timeout for every delivery)
//! goes to a lane, a FIFO the queue opens for each distinct delay: timers of one delay
//! armed by a clock that only moves forward fall due in the order they were armed, so
//! the FIFO stays sorted. Such timers are long and mostly stale (the call was answered
//! long before), and in the heap they would make every push and pop climb O(log n)
//! levels over them; in a lane they cost O(1). Events come out of the heap and the
//! lanes in exactly the (time, seq) order of one heap. Past `MAX_TIMER_LANES` distinct
//! delays, a timer goes to the heap.

use super::time::SimTime;
use std::collections::VecDeque;

#[derive(Clone, Copy)]
struct Entry<E> {
    time: SimTime,
    seq: u64,
    event: E,
}

/// (time, seq) as one number: one comparison orders two entries.
#[inline]
fn key(time: SimTime, seq: u64) -> u128 {
    (u128::from(time.as_nanos()) << 64) | u128::from(seq)
}

/// No entry has this key: its sequence number would be the last of 2^64.
const NONE: u128 = u128::MAX;

/// What a heap orders: a plain value with a key, all keys distinct.
trait Keyed: Copy {
    fn key(&self) -> u128;
}

impl<E: Copy> Keyed for Entry<E> {
    #[inline]
    fn key(&self) -> u128 {
        key(self.time, self.seq)
    }
}

/// The first entry of a non-empty lane.
#[derive(Clone, Copy)]
struct Head {
    key: u128,
    lane: usize,
}

impl Keyed for Head {
    #[inline]
    fn key(&self) -> u128 {
        self.key
    }
}

/// Binary min-heaps in a `Vec` (the parent of `i` is `(i - 1) / 2`), moved through a
/// hole: one copy a level, not a swap of two.
mod min_heap {
    use super::Keyed;

    pub fn push<T: Keyed>(heap: &mut Vec<T>, e: T) {
        let i = heap.len();
        heap.push(e);
        sift_up(heap, i, e);
    }

    pub fn pop<T: Keyed>(heap: &mut Vec<T>) -> Option<T> {
        let last = heap.pop()?;
        let Some(&top) = heap.first() else {
            return Some(last);
        };
        replace_top(heap, last);
        Some(top)
    }

    /// Puts `e` in the root's place: the hole goes down to a leaf along the earlier
    /// children, and `e` rises from there (what replaces a root is usually among the
    /// latest, so it would sink to the bottom anyway).
    pub fn replace_top<T: Keyed>(heap: &mut [T], e: T) {
        let n = heap.len();
        let mut i = 0;
        loop {
            let mut child = 2 * i + 1;
            if child >= n {
                break;
            }
            if child + 1 < n && heap[child + 1].key() < heap[child].key() {
                child += 1;
            }
            heap[i] = heap[child];
            i = child;
        }
        sift_up(heap, i, e);
    }

    /// Puts `e` at `i` or above: the parents later than it move down a level.
    #[inline]
    fn sift_up<T: Keyed>(heap: &mut [T], mut i: usize, e: T) {
        let k = e.key();
        while i > 0 {
            let parent = (i - 1) / 2;
            let p = heap[parent];
            if p.key() < k {
                break;
            }
            heap[i] = p;
            i = parent;
        }
        heap[i] = e;
    }
}

/// The most lanes the queue opens for timers, one per distinct delay: a scenario has a
/// few timeouts (its policies' and call sites'), and a scan of this many stays cheap.
pub const MAX_TIMER_LANES: usize = 64;

pub struct EventQueue<E> {
    /// A min-heap on the entries' keys.
    heap: Vec<Entry<E>>,
    lanes: Vec<VecDeque<Entry<E>>>,
    /// (delay in ns, lane) of each timer lane, in the order they opened.
    timer_lanes: Vec<(u64, usize)>,
    /// A min-heap of the heads of the non-empty lanes.
    heads: Vec<Head>,
    /// The key of the earliest lane head (`NONE`: every lane is empty), so that a pop
    /// compares two numbers to choose between the heap and the lanes.
    lane_next: u128,
    in_lanes: usize,
    next_seq: u64,
}

impl<E: Copy> Default for EventQueue<E> {
    fn default() -> Self {
        Self::new()
    }
}

/// Events are plain values (`Copy`), which the heap moves through a hole.
impl<E: Copy> EventQueue<E> {
    pub fn new() -> Self {
        EventQueue {
            heap: Vec::with_capacity(1024),
            lanes: Vec::new(),
            timer_lanes: Vec::new(),
            heads: Vec::new(),
            lane_next: NONE,
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
        min_heap::push(&mut self.heap, e);
    }

    /// Pushes a timer due `delay_ns` after the present (`time`): onto the lane of its
    /// delay, opened if need be, or onto the heap once `MAX_TIMER_LANES` are open.
    pub fn push_timer(&mut self, delay_ns: u64, time: SimTime, event: E) {
        let lane = match self.timer_lanes.iter().find(|&&(d, _)| d == delay_ns) {
            Some(&(_, lane)) => lane,
            None if self.timer_lanes.len() < MAX_TIMER_LANES => {
                let lane = self.open_lane();
                self.timer_lanes.push((delay_ns, lane));
                lane
            }
            None => return self.push(time, event),
        };
        self.push_into(lane, time, event);
    }

    /// Lanes the queue opened for timers, one per distinct delay.
    pub fn timer_lanes(&self) -> usize {
        self.timer_lanes.len()
    }

    fn open_lane(&mut self) -> usize {
        self.lanes.push(VecDeque::new());
        self.lanes.len() - 1
    }

    fn push_into(&mut self, lane: usize, time: SimTime, event: E) {
        let e = self.entry(time, event);
        let l = &mut self.lanes[lane];
        match l.back() {
            Some(last) => assert!(
                time >= last.time,
                "a lane's event at {time} after one at {}",
                last.time
            ),
            None => {
                let key = e.key();
                min_heap::push(&mut self.heads, Head { key, lane });
                self.lane_next = self.lane_next.min(key);
            }
        }
        l.push_back(e);
        self.in_lanes += 1;
    }

    #[inline]
    fn heap_next(&self) -> u128 {
        self.heap.first().map_or(NONE, Keyed::key)
    }

    #[inline]
    pub fn pop(&mut self) -> Option<(SimTime, E)> {
        let e = if self.lane_next < self.heap_next() {
            self.pop_lane()
        } else {
            min_heap::pop(&mut self.heap)?
        };
        Some((e.time, e.event))
    }

    fn pop_lane(&mut self) -> Entry<E> {
        let lane = self.heads[0].lane;
        let l = &mut self.lanes[lane];
        let e = l.pop_front().expect("a lane with a head");
        match l.front() {
            Some(next) => min_heap::replace_top(
                &mut self.heads,
                Head {
                    key: next.key(),
                    lane,
                },
            ),
            None => {
                min_heap::pop(&mut self.heads);
            }
        }
        self.lane_next = self.heads.first().map_or(NONE, |h| h.key);
        self.in_lanes -= 1;
        e
    }

    #[inline]
    pub fn peek_time(&self) -> Option<SimTime> {
        let next = self.lane_next.min(self.heap_next());
        (next != NONE).then(|| SimTime::from_nanos((next >> 64) as u64))
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
        q.push_timer(100, t(10), "lane0 10 first");
        q.push(t(10), "heap 10 second");
        q.push_timer(200, t(5), "lane1 5");
        q.push_timer(100, t(10), "lane0 10 third");
        q.push(t(7), "heap 7");
        q.push_timer(200, t(20), "lane1 20");
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
    #[should_panic(expected = "a lane's event at 0.000000009s after one at 0.000000010s")]
    fn a_lane_refuses_an_earlier_event() {
        let mut q = EventQueue::new();
        q.push_timer(7, SimTime::from_nanos(10), ());
        q.push_timer(7, SimTime::from_nanos(9), ());
    }

    #[test]
    fn timers_share_a_lane_per_delay_up_to_the_cap() {
        let mut q = EventQueue::new();
        let n = MAX_TIMER_LANES as u64 + 6;
        for round in 0..2 {
            for delay in 1..=n {
                q.push_timer(delay, SimTime::from_nanos(delay + round), (delay, round));
            }
        }
        assert_eq!(q.timer_lanes(), MAX_TIMER_LANES);
        assert_eq!((q.in_lanes, q.heap.len()), (2 * MAX_TIMER_LANES, 12));
        let order: Vec<(u64, u64)> = std::iter::from_fn(|| q.pop().map(|(_, e)| e)).collect();
        let mut want: Vec<(u64, u64)> = (0..2).flat_map(|r| (1..=n).map(move |d| (d, r))).collect();
        want.sort_by_key(|&(d, r)| (d + r, r));
        assert_eq!(order, want);
    }

    proptest! {
        /// Any mix of heap and lane pushes (each lane at a fixed delay from a clock
        /// that moves forward as events are popped) pops in (time, push order), as a
        /// sorted set of the events waiting says.
        #[test]
        fn lanes_pop_in_the_order_of_one_heap(
            steps in prop::collection::vec((0u8..8, 0u64..50), 1..300),
        ) {
            let mut mixed = EventQueue::new();
            let mut heap = EventQueue::new();
            let mut waiting = std::collections::BTreeSet::new();
            let mut now = 0;
            for (id, (what, x)) in (0u32..).zip(steps) {
                match what {
                    0 | 1 => {
                        let want = waiting.pop_first().map(|(t, id)| (SimTime::from_nanos(t), id));
                        let a = mixed.pop();
                        prop_assert_eq!(a, want);
                        prop_assert_eq!(heap.pop(), want);
                        if let Some((t, _)) = a {
                            now = t.as_nanos();
                        }
                    }
                    2 => {
                        let t = now + x;
                        mixed.push(SimTime::from_nanos(t), id);
                        heap.push(SimTime::from_nanos(t), id);
                        waiting.insert((t, id));
                    }
                    6 | 7 => {
                        // Timers of up to 100 delays: past MAX_TIMER_LANES, the heap's.
                        let delay = x + 50 * u64::from(what - 6);
                        let t = now + delay;
                        mixed.push_timer(delay, SimTime::from_nanos(t), id);
                        heap.push(SimTime::from_nanos(t), id);
                        waiting.insert((t, id));
                    }
                    lane => {
                        // Lane k's delay: 10 k ns, so ties with the heap happen.
                        let t = now + 10 * u64::from(lane);
                        mixed.push_timer(10 * u64::from(lane), SimTime::from_nanos(t), id);
                        heap.push(SimTime::from_nanos(t), id);
                        waiting.insert((t, id));
                    }
                }
                prop_assert_eq!(mixed.len(), waiting.len());
                prop_assert_eq!(heap.len(), waiting.len());
                let first = waiting.first().map(|&(t, _)| SimTime::from_nanos(t));
                prop_assert_eq!(mixed.peek_time(), first);
                prop_assert_eq!(heap.peek_time(), first);
            }
            while let Some((t, id)) = waiting.pop_first() {
                let want = Some((SimTime::from_nanos(t), id));
                prop_assert_eq!(mixed.pop(), want);
                prop_assert_eq!(heap.pop(), want);
            }
            prop_assert!(mixed.pop().is_none() && heap.pop().is_none());
        }
    }
}
