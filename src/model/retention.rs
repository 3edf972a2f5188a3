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
