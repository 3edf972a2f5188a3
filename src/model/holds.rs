//! Runaway detectors: what a run holds at once (requests in flight, messages in
//! brokers, events waiting in the engine's queue), checked between two events every
//! `PROGRESS_EVERY` events, so a run that grows without bound stops early with an error
//! naming what grew, long before its event budget or the machine's memory runs out.
//!
//! The check happens at the engine's pauses, which fall at fixed counts of events: a
//! detector trips at the same event on every run, whatever the machine.

use super::World;
use super::spec::HoldLimits;
use crate::engine::{RunError, SimTime};

/// Bytes one call in flight holds, measured with the counting allocator: 856 MB held
/// with 2.0 million requests waiting in a service's queue (each a logical call, an
/// attempt, a queue entry; the queue's room to double), 430 bytes each, rounded up.
pub const REQUEST_BYTES: u64 = 512;
/// Bytes one message held by a broker takes, measured the same way: 928 MB with 2.0
/// million messages in a queue whose consumer publishes two for each it handles (the
/// message, its place in the queue, its propagation entry, hops in transit), 465
/// bytes each, rounded up.
pub const MESSAGE_BYTES: u64 = 512;
/// Bytes one event waiting in the engine's heap takes: a 40-byte entry (time,
/// sequence, a 24-byte event), twice for the heap's room to double.
pub const EVENT_BYTES: u64 = 80;

/// The limits a run is held to: the scenario's, or what fills half the memory budget
/// (the other half is for everything else a run keeps; the budget itself is the
/// counting allocator's, in the CLI).
#[derive(Clone, Copy, Debug)]
pub struct Holds {
    requests: u64,
    messages: u64,
    events: u64,
}

impl Holds {
    pub fn new(limits: &HoldLimits) -> Holds {
        let fill = |unit: u64| (limits.memory_budget / 2 / unit).max(1);
        Holds {
            requests: limits
                .requests_in_flight
                .unwrap_or_else(|| fill(REQUEST_BYTES)),
            messages: limits
                .messages_in_flight
                .unwrap_or_else(|| fill(MESSAGE_BYTES)),
            events: limits.pending_events.unwrap_or_else(|| fill(EVENT_BYTES)),
        }
    }

    /// An error when the world, with `pending` events queued, holds more than a limit.
    pub fn check(
        &self,
        world: &World,
        pending: usize,
        at: SimTime,
        events: u64,
    ) -> Result<(), RunError> {
        let runaway = |what, setting, hint, count, limit| RunError::Runaway {
            what,
            setting,
            hint,
            count,
            limit,
            at,
            events,
        };
        let requests = world.logicals.len() as u64;
        if requests > self.requests {
            return Err(runaway(
                "the requests in flight",
                "max_requests_in_flight",
                "more requests arrive than the services answer (a queue that grows under \
                 overload, or replies that never come with no timeout)",
                requests,
                self.requests,
            ));
        }
        let messages = world.messages_in_flight();
        if messages > self.messages {
            return Err(runaway(
                "the messages in brokers",
                "max_messages_in_flight",
                "more messages are published than consumed (consumers too slow or down, or a \
                 consumer that publishes more than it handles)",
                messages,
                self.messages,
            ));
        }
        let pending = pending as u64;
        if pending > self.events {
            return Err(runaway(
                "the events waiting to be handled",
                "max_pending_events",
                "more is scheduled than handled (timers of calls that never end, or arrivals \
                 far faster than anything finishes)",
                pending,
                self.events,
            ));
        }
        Ok(())
    }
}

impl World {
    /// Message copies in queues (ready, delivered and unacked, waiting out a retry) and
    /// topic log entries a consumer group has still to consume. Entries every group has
    /// committed stay in the log until retention removes them, but they are not a
    /// runaway: at a steady rate they are bounded by rate x retention (a week by default,
    /// so counting them would stop healthy Kafka runs after about an hour at 1000/s).
    fn messages_in_flight(&self) -> u64 {
        self.asy.messages_held() as u64 + self.asy.unconsumed(&self.spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pending_event_fits_in_its_estimate() {
        // An entry of the heap is (time, sequence, event); the heap may hold twice its
        // length while it grows. A larger `Event` needs a larger `EVENT_BYTES`.
        let entry = 16 + std::mem::size_of::<crate::model::Event>() as u64;
        assert!(2 * entry <= EVENT_BYTES, "{entry}");
    }

    #[test]
    fn unset_limits_fill_half_the_memory_budget() {
        let holds = Holds::new(&HoldLimits {
            requests_in_flight: None,
            messages_in_flight: Some(7),
            pending_events: None,
            memory_budget: 64 << 20,
        });
        assert_eq!(
            (holds.requests, holds.messages, holds.events),
            (65_536, 7, 419_430)
        );
    }
}
