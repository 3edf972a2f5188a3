//! The run loop. It pops the earliest event, advances the clock and hands the event to
//! the model; the model answers by scheduling future events through a `Scheduler`,
//! which can only add events, never reorder or remove them.

use super::queue::EventQueue;
use super::time::{SimDuration, SimTime};

/// A simulation model: a state machine driven by its own closed event type.
pub trait Model {
    type Event;
    fn handle(&mut self, event: Self::Event, sched: &mut Scheduler<Self::Event>);
}

/// What a model may do to the future: schedule events at or after the present.
pub struct Scheduler<E> {
    queue: EventQueue<E>,
    now: SimTime,
    /// Set when an event was asked for past the end of the clock; the run then stops.
    overflow: Option<SimDuration>,
}

impl<E> Scheduler<E> {
    pub fn now(&self) -> SimTime {
        self.now
    }

    /// Schedules `event` at `time`. Scheduling in the past is a bug in the model.
    pub fn at(&mut self, time: SimTime, event: E) {
        assert!(
            time >= self.now,
            "event scheduled in the past: {time} < now {}",
            self.now
        );
        self.queue.push(time, event);
    }

    /// Schedules `event` after `delay`. A delay that would carry the clock past its
    /// end (about 584 years) drops the event and makes the run fail with
    /// `RunError::ClockOverflow`, rather than wrap or panic.
    pub fn after(&mut self, delay: SimDuration, event: E) {
        match self.now.checked_add(delay) {
            Some(time) => self.queue.push(time, event),
            None => self.overflow = Some(delay),
        }
    }

    /// Events still waiting, the one being handled excluded.
    pub fn pending(&self) -> usize {
        self.queue.len()
    }
}

/// When a run must stop.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Events at or after this instant are not handled; `None` runs until the queue drains.
    pub end: Option<SimTime>,
    /// The most events a run may handle before it is refused as runaway.
    pub max_events: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// No event was left.
    Drained,
    /// The clock reached `Limits::end`.
    EndTime,
}

#[derive(Clone, Copy, Debug)]
pub struct RunStats {
    pub events: u64,
    pub stop: Stop,
    /// The clock when the run stopped: the end time, or the last event's time.
    pub end_time: SimTime,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(
        "the event budget of {budget} events ran out at simulated time {at} with {pending} events \
         still queued; if the scenario is right, raise `simulation.max_events`, otherwise look for \
         work that takes no time (zero think time and zero work make a loop that never advances) \
         or a time-series bucket far shorter than the run (`report.bucket`)"
    )]
    BudgetExhausted {
        budget: u64,
        at: SimTime,
        pending: usize,
    },
    #[error(
        "at simulated time {at} an event was scheduled {delay} later, past the end of the \
         simulated clock (about 584 years); shorten the durations in the scenario"
    )]
    ClockOverflow { at: SimTime, delay: SimDuration },
}

pub struct Simulation<M: Model> {
    pub model: M,
    sched: Scheduler<M::Event>,
    events: u64,
}

impl<M: Model> Simulation<M> {
    pub fn new(model: M) -> Self {
        Simulation {
            model,
            sched: Scheduler {
                queue: EventQueue::new(),
                now: SimTime::ZERO,
                overflow: None,
            },
            events: 0,
        }
    }

    /// Lets the model schedule its first events before the run.
    pub fn scheduler(&mut self) -> (&mut M, &mut Scheduler<M::Event>) {
        (&mut self.model, &mut self.sched)
    }

    pub fn run(&mut self, limits: Limits) -> Result<RunStats, RunError> {
        loop {
            let Some(time) = self.sched.queue.peek_time() else {
                return Ok(RunStats {
                    events: self.events,
                    stop: Stop::Drained,
                    end_time: self.sched.now,
                });
            };
            if let Some(end) = limits.end
                && time >= end
            {
                self.sched.now = end;
                return Ok(RunStats {
                    events: self.events,
                    stop: Stop::EndTime,
                    end_time: end,
                });
            }
            if self.events >= limits.max_events {
                return Err(RunError::BudgetExhausted {
                    budget: limits.max_events,
                    at: self.sched.now,
                    pending: self.sched.queue.len(),
                });
            }
            let (time, event) = self.sched.queue.pop().expect("peeked");
            assert!(time >= self.sched.now, "time went backwards");
            self.sched.now = time;
            self.events += 1;
            self.model.handle(event, &mut self.sched);
            if let Some(delay) = self.sched.overflow {
                return Err(RunError::ClockOverflow {
                    at: self.sched.now,
                    delay,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each event reschedules itself after 1 ns until it has fired `left` times.
    struct Ticker {
        fired: Vec<SimTime>,
        left: u32,
    }
    impl Model for Ticker {
        type Event = ();
        fn handle(&mut self, _: (), s: &mut Scheduler<()>) {
            self.fired.push(s.now());
            if self.left > 0 {
                self.left -= 1;
                s.after(SimDuration::from_nanos(1), ());
            }
        }
    }

    fn ticker(left: u32) -> Simulation<Ticker> {
        let mut sim = Simulation::new(Ticker {
            fired: vec![],
            left,
        });
        sim.scheduler().1.at(SimTime::ZERO, ());
        sim
    }

    #[test]
    fn drains_and_stops_at_end_time() {
        let mut sim = ticker(9);
        let stats = sim
            .run(Limits {
                end: None,
                max_events: 100,
            })
            .unwrap();
        assert_eq!((stats.events, stats.stop), (10, Stop::Drained));
        assert_eq!(stats.end_time, SimTime::from_nanos(9));

        let mut sim = ticker(9);
        let stats = sim
            .run(Limits {
                end: Some(SimTime::from_nanos(4)),
                max_events: 100,
            })
            .unwrap();
        assert_eq!((stats.events, stats.stop), (4, Stop::EndTime));
        assert_eq!(sim.model.fired.last(), Some(&SimTime::from_nanos(3)));
    }

    #[test]
    fn refuses_to_run_past_the_budget() {
        let mut sim = ticker(1_000);
        let err = sim
            .run(Limits {
                end: None,
                max_events: 50,
            })
            .unwrap_err();
        assert!(err.to_string().contains("event budget of 50 events"));
    }

    #[test]
    fn an_event_past_the_end_of_the_clock_is_an_error() {
        struct Far;
        impl Model for Far {
            type Event = ();
            fn handle(&mut self, _: (), s: &mut Scheduler<()>) {
                s.after(SimDuration::from_nanos(u64::MAX), ());
            }
        }
        let mut sim = Simulation::new(Far);
        sim.scheduler().1.at(SimTime::from_nanos(5), ());
        let err = sim
            .run(Limits {
                end: None,
                max_events: 10,
            })
            .unwrap_err();
        assert!(matches!(err, RunError::ClockOverflow { .. }), "{err}");
    }

    #[test]
    #[should_panic(expected = "scheduled in the past")]
    fn scheduling_in_the_past_is_a_bug() {
        struct Bad;
        impl Model for Bad {
            type Event = ();
            fn handle(&mut self, _: (), s: &mut Scheduler<()>) {
                s.at(SimTime::ZERO, ());
            }
        }
        let mut sim = Simulation::new(Bad);
        sim.scheduler().1.at(SimTime::from_nanos(5), ());
        let _ = sim.run(Limits {
            end: None,
            max_events: 10,
        });
    }
}
