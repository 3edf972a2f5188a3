//! Which messages still have copies to settle, for the end-to-end propagation time: an
//! entry per message from its first routed copy to its last settled one.
//!
//! Message ids are dense and nearly every message settles within moments of its
//! publish, so the recent ones sit in a window indexed by id (a slot, not a map node,
//! per message); a message still open when the window moves past it (a copy stuck in a
//! queue, a record no group reads) waits in an ordered map. The window is bounded, so
//! the memory is that of the messages in flight, as with a map alone.

use crate::engine::SimTime;
use std::collections::{BTreeMap, VecDeque};

/// The most ids the window spans: beyond it, the oldest open entries move to the map.
const WINDOW: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Spread {
    /// When its first copy was routed.
    pub at: SimTime,
    /// Copies not yet settled.
    pub open: u32,
    /// A copy was settled without being handled.
    pub failed: bool,
}

impl Spread {
    /// One copy settled; true when it was the last.
    fn settle_copy(&mut self, failed: bool) -> bool {
        self.open -= 1;
        self.failed |= failed;
        self.open == 0
    }
}

#[derive(Default)]
pub(super) struct Propagation {
    /// Messages `base ..`: None when not open (settled, or never routed).
    window: VecDeque<Option<Spread>>,
    base: u64,
    /// Open messages below `base`.
    old: BTreeMap<u64, Spread>,
    open: usize,
}

impl Propagation {
    /// Messages with copies still to settle.
    pub fn len(&self) -> usize {
        self.open
    }

    /// `copies` more copies of `msg` were routed at `now`.
    pub fn expect(&mut self, msg: u64, now: SimTime, copies: u32) {
        let fresh = Spread {
            at: now,
            open: copies,
            failed: false,
        };
        let Some(i) = msg.checked_sub(self.base) else {
            self.old
                .entry(msg)
                .and_modify(|e| e.open += copies)
                .or_insert_with(|| {
                    self.open += 1;
                    fresh
                });
            return;
        };
        let mut i = i as usize;
        if i >= WINDOW {
            // Slide so that `msg` is the window's last id.
            self.slide(i + 1 - WINDOW);
            i = WINDOW - 1;
        }
        while self.window.len() <= i {
            self.window.push_back(None);
        }
        match &mut self.window[i] {
            Some(e) => e.open += copies,
            slot @ None => {
                *slot = Some(fresh);
                self.open += 1;
            }
        }
    }

    /// Moves the window `n` ids up: its open entries among them go to the map (ids
    /// past its end were never held).
    fn slide(&mut self, n: usize) {
        for id in self.base..self.base + n.min(self.window.len()) as u64 {
            if let Some(Some(e)) = self.window.pop_front() {
                self.old.insert(id, e);
            }
        }
        self.base += n as u64;
    }

    /// A copy of `msg` is settled (`failed`: without being handled). Returns the entry
    /// when this was its last copy; None while copies remain, or for a message never
    /// routed.
    pub fn settle(&mut self, msg: u64, failed: bool) -> Option<Spread> {
        let Some(i) = msg.checked_sub(self.base) else {
            if !self.old.get_mut(&msg)?.settle_copy(failed) {
                return None;
            }
            self.open -= 1;
            return self.old.remove(&msg);
        };
        let slot = self.window.get_mut(i as usize)?;
        if !slot.as_mut()?.settle_copy(failed) {
            return None;
        }
        let done = slot.take();
        self.open -= 1;
        while self.window.front() == Some(&None) {
            self.window.pop_front();
            self.base += 1;
        }
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against a map of every open message, through a window overrun: the same entries
    /// close, with the same times and failures, and the same number stays open.
    #[test]
    fn behaves_as_a_map_of_open_messages() {
        let mut p = Propagation::default();
        let mut map: BTreeMap<u64, Spread> = BTreeMap::new();
        let t = SimTime::from_nanos;
        let mut ops: Vec<(u64, Option<u32>, bool)> = Vec::new();
        // Message 0 stays open the whole run, pushed out of the window; every tenth
        // gets a second routing (a republish), every seventh copy fails.
        ops.push((0, Some(2), false));
        for m in 1..3 * WINDOW as u64 {
            ops.push((m, Some(2), false));
            if m % 10 == 0 {
                ops.push((m, Some(1), false));
            }
            if m > 5 {
                ops.push((m - 5, None, m % 7 == 0));
                ops.push((m - 5, None, false));
                if (m - 5) % 10 == 0 {
                    ops.push((m - 5, None, false));
                }
            }
        }
        // A message far past the window (a long run of lost publishes before it).
        ops.push((1_000_000, Some(1), false));
        ops.push((3 * WINDOW as u64 + 1, Some(1), false));
        ops.push((1_000_000, None, true));
        ops.push((0, None, true));
        ops.push((12_345_678, None, false));
        for (k, &(msg, copies, failed)) in ops.iter().enumerate() {
            match copies {
                Some(n) => {
                    p.expect(msg, t(k as u64), n);
                    map.entry(msg)
                        .and_modify(|e| e.open += n)
                        .or_insert(Spread {
                            at: t(k as u64),
                            open: n,
                            failed: false,
                        });
                }
                None => {
                    let want = map.get_mut(&msg).and_then(|e| {
                        e.open -= 1;
                        e.failed |= failed;
                        (e.open == 0).then_some(*e)
                    });
                    if want.is_some() {
                        map.remove(&msg);
                    }
                    assert_eq!(p.settle(msg, failed), want, "op {k}: message {msg}");
                }
            }
            assert_eq!(p.len(), map.len());
        }
        assert!(p.old.contains_key(&0) && p.window.len() <= WINDOW);
    }
}
