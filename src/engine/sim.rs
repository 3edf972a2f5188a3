//! The run loop. It pops the earliest event, advances the clock and hands the event to
//! the model; the model answers by scheduling future events through a `Scheduler`,
//! which can only add events, never reorder or remove them.

use super::queue::EventQueue;
use super::time::{SimDuration, SimTime};

/// A simulation model: a state machine driven by its own closed event type.
pub trait Model {
    /// A plain value: the event queue copies it through its heap.
    type Event: Copy;
    fn handle(&mut self, event: Self::Event, sched: &mut Scheduler<Self::Event>);
}

/// What a model may do to the future: schedule events at or after the present.
pub struct Scheduler<E> {
    queue: EventQueue<E>,
    now: SimTime,
    /// Set when an event was asked for past the end of the clock; the run then stops.
    overflow: Option<SimDuration>,
    /// Work counted against `Limits::max_events`: every handled event, from the heap or
    /// handed to the model's own queue (`count_event`), plus work `charge`d inside one.
    used: u64,
    /// The part of `used` the report does not call events: the model's own queue and
    /// charged work. Reported events stay pops of the heap, as throughput is measured.
    unreported: u64,
    max_events: u64,
    /// Events handled since the clock last advanced.
    at_instant: u64,
    max_at_instant: u64,
}

impl<E: Copy> Scheduler<E> {
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

    /// Schedules a timer: `event` after `delay`, usually stale by then (a call's
    /// timeout, answered long before). Timers of one delay share a lane out of the heap
    /// (see `queue`), so a scenario's few distinct timeouts cost O(1) each; events come
    /// out in the same order as with `after`.
    pub fn after_timer(&mut self, delay: SimDuration, event: E) {
        match self.now.checked_add(delay) {
            Some(time) => self.queue.push_timer(delay.as_nanos(), time, event),
            None => self.overflow = Some(delay),
        }
    }

    /// Events still waiting, the one being handled excluded.
    pub fn pending(&self) -> usize {
        self.queue.len()
    }

    /// Counts an event the model handles without a trip through the heap (its own
    /// queue of zero-delay work). False once a limit is passed: the model must stop
    /// handling and return, and the run then fails.
    #[inline]
    pub fn count_event(&mut self) -> bool {
        self.used += 1;
        self.unreported += 1;
        self.at_instant += 1;
        self.within_limits()
    }

    /// Counts `work` units done inside one event (a loop the model runs) against the
    /// event budget. False once the budget is passed: the model must skip the work.
    #[inline]
    pub fn charge(&mut self, work: u64) -> bool {
        self.used = self.used.saturating_add(work);
        self.unreported = self.unreported.saturating_add(work);
        self.within_limits()
    }

    #[inline]
    fn within_limits(&self) -> bool {
        self.used <= self.max_events && self.at_instant <= self.max_at_instant
    }
}

/// When a run must stop.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Events at or after this instant are not handled; `None` runs until the queue drains.
    pub end: Option<SimTime>,
    /// The most events a run may handle before it is refused as runaway.
    pub max_events: u64,
    /// The most events a run may handle in a row without the clock advancing.
    pub max_at_instant: u64,
    /// Return `Stop::Paused` once this many events were reported (`u64::MAX`: never), so
    /// a caller can show progress; calling `run` again resumes exactly where it paused.
    pub pause_at_events: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// No event was left.
    Drained,
    /// The clock reached `Limits::end`.
    EndTime,
    /// `Limits::pause_at_events` was reached: the run is not over, `run` resumes it.
    Paused,
}

#[derive(Clone, Copy, Debug)]
pub struct RunStats {
    /// Events popped from the heap. The budget counted more: the model's own queue
    /// and its charged work too.
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
    #[error(
        "more than {limit} events in a row were handled at simulated time {at} without the clock \
         advancing ({pending} events queued): a loop that takes no time, such \
         as a consumer publishing to its own queue with zero latency, or zero work with \
         zero think time; if the scenario is right, raise \
         `simulation.max_events_at_one_instant`"
    )]
    ZeroTimeLoop {
        limit: u64,
        at: SimTime,
        pending: usize,
    },
    /// Something the model holds grew past its limit. The model names what grew and
    /// the setting that bounds it; the engine only carries the numbers.
    #[error(
        "{what} grew to {count} at simulated time {at} ({events} events in), past the limit of \
         {limit}: {hint}; if the scenario is right, raise `simulation.{setting}`"
    )]
    Runaway {
        what: &'static str,
        setting: &'static str,
        hint: &'static str,
        count: u64,
        limit: u64,
        at: SimTime,
        events: u64,
    },
    /// The process held more memory than its budget (whoever runs the model measures
    /// it, between two events).
    #[error(
        "the run held {} MiB of memory at simulated time {at} ({events} events in), above the \
         memory budget of {} MiB; nothing was written. Look for what grows with the run (queues \
         under overload, requests that are never answered, a long run with effects), or raise \
         the budget with --max-memory",
        .held.div_ceil(1 << 20), .budget / (1 << 20)
    )]
    MemoryBudget {
        held: u64,
        budget: u64,
        at: SimTime,
        events: u64,
    },
    /// Whoever runs the model asked it to stop between two events (the CLI, on Ctrl-C
    /// or a termination signal).
    #[error(
        "the run was interrupted at simulated time {at} ({events} events in); nothing was written"
    )]
    Interrupted { at: SimTime, events: u64 },
}

pub struct Simulation<M: Model> {
    pub model: M,
    sched: Scheduler<M::Event>,
}

impl<M: Model> Simulation<M> {
    pub fn new(model: M) -> Self {
        Simulation {
            model,
            sched: Scheduler {
                queue: EventQueue::new(),
                now: SimTime::ZERO,
                overflow: None,
                used: 0,
                unreported: 0,
                max_events: u64::MAX,
                at_instant: 0,
                max_at_instant: u64::MAX,
            },
        }
    }

    /// Lets the model schedule its first events before the run.
    pub fn scheduler(&mut self) -> (&mut M, &mut Scheduler<M::Event>) {
        (&mut self.model, &mut self.sched)
    }

    pub fn run(&mut self, limits: Limits) -> Result<RunStats, RunError> {
        self.sched.max_events = limits.max_events;
        self.sched.max_at_instant = limits.max_at_instant;
        loop {
            // Between two events, so a paused run resumes exactly as if it had not paused.
            if self.sched.used - self.sched.unreported >= limits.pause_at_events {
                return Ok(self.stats(Stop::Paused, self.sched.now));
            }
            let Some(time) = self.sched.queue.peek_time() else {
                return Ok(self.stats(Stop::Drained, self.sched.now));
            };
            if let Some(end) = limits.end
                && time >= end
            {
                self.sched.now = end;
                return Ok(self.stats(Stop::EndTime, end));
            }
            if self.sched.used >= limits.max_events {
                return Err(self.budget_exhausted());
            }
            let (time, event) = self.sched.queue.pop().expect("peeked");
            assert!(time >= self.sched.now, "time went backwards");
            if time > self.sched.now {
                self.sched.at_instant = 0;
            }
            self.sched.now = time;
            self.sched.used += 1;
            self.sched.at_instant += 1;
            if self.sched.within_limits() {
                self.model.handle(event, &mut self.sched);
            }
            if let Some(delay) = self.sched.overflow {
                return Err(RunError::ClockOverflow {
                    at: self.sched.now,
                    delay,
                });
            }
            if self.sched.used > limits.max_events {
                return Err(self.budget_exhausted());
            }
            if self.sched.at_instant > limits.max_at_instant {
                return Err(RunError::ZeroTimeLoop {
                    limit: limits.max_at_instant,
                    at: self.sched.now,
                    pending: self.sched.queue.len(),
                });
            }
        }
    }

    fn stats(&self, stop: Stop, end_time: SimTime) -> RunStats {
        RunStats {
            events: self.sched.used - self.sched.unreported,
            stop,
            end_time,
        }
    }

    fn budget_exhausted(&self) -> RunError {
        RunError::BudgetExhausted {
            budget: self.sched.max_events,
            at: self.sched.now,
            pending: self.sched.queue.len(),
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
                pause_at_events: u64::MAX,
                end: None,
                max_events: 100,
                max_at_instant: u64::MAX,
            })
            .unwrap();
        assert_eq!((stats.events, stats.stop), (10, Stop::Drained));
        assert_eq!(stats.end_time, SimTime::from_nanos(9));

        let mut sim = ticker(9);
        let stats = sim
            .run(Limits {
                pause_at_events: u64::MAX,
                end: Some(SimTime::from_nanos(4)),
                max_events: 100,
                max_at_instant: u64::MAX,
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
                pause_at_events: u64::MAX,
                end: None,
                max_events: 50,
                max_at_instant: u64::MAX,
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
                pause_at_events: u64::MAX,
                end: None,
                max_events: 10,
                max_at_instant: u64::MAX,
            })
            .unwrap_err();
        assert!(matches!(err, RunError::ClockOverflow { .. }), "{err}");
    }

    /// Each event hands `fanout` events to its own queue, all at the present; `count_event`
    /// is called for each as the world does for its immediate queue.
    struct Burst {
        fanout: u64,
        handled: u64,
    }
    impl Model for Burst {
        type Event = ();
        fn handle(&mut self, _: (), s: &mut Scheduler<()>) {
            self.handled += 1;
            for _ in 0..self.fanout {
                if !s.count_event() {
                    return;
                }
                self.handled += 1;
            }
            s.after(SimDuration::from_nanos(1), ());
        }
    }

    fn burst(fanout: u64, limits: Limits) -> (Result<RunStats, RunError>, u64) {
        let mut sim = Simulation::new(Burst { fanout, handled: 0 });
        sim.scheduler().1.at(SimTime::ZERO, ());
        let r = sim.run(limits);
        (r, sim.model.handled)
    }

    #[test]
    fn events_the_model_counts_meet_the_budget_but_only_pops_are_reported() {
        let limits = Limits {
            pause_at_events: u64::MAX,
            end: Some(SimTime::from_nanos(3)),
            max_events: 100,
            max_at_instant: u64::MAX,
        };
        let (r, handled) = burst(9, limits);
        let stats = r.unwrap();
        assert_eq!((stats.events, handled), (3, 30));
        // 10 per instant: the 11th burst passes a budget of 105 half way.
        let (r, handled) = burst(
            9,
            Limits {
                pause_at_events: u64::MAX,
                end: None,
                max_events: 105,
                ..limits
            },
        );
        assert!(
            matches!(r, Err(RunError::BudgetExhausted { budget: 105, .. })),
            "{r:?}"
        );
        assert_eq!(handled, 105);
    }

    #[test]
    fn charged_work_meets_the_budget_but_is_not_an_event() {
        struct Streams;
        impl Model for Streams {
            type Event = ();
            fn handle(&mut self, _: (), s: &mut Scheduler<()>) {
                if s.charge(40) {
                    s.after(SimDuration::from_nanos(1), ());
                }
            }
        }
        let run = |end, max_events| {
            let mut sim = Simulation::new(Streams);
            sim.scheduler().1.at(SimTime::ZERO, ());
            sim.run(Limits {
                pause_at_events: u64::MAX,
                end: Some(SimTime::from_nanos(end)),
                max_events,
                max_at_instant: u64::MAX,
            })
        };
        assert_eq!(run(2, 82).unwrap().events, 2);
        let err = run(3, 100).unwrap_err();
        assert!(
            matches!(err, RunError::BudgetExhausted { budget: 100, .. }),
            "{err}"
        );
    }

    #[test]
    fn a_clock_that_stands_still_is_a_zero_time_loop() {
        let limits = Limits {
            pause_at_events: u64::MAX,
            end: Some(SimTime::from_nanos(5)),
            max_events: u64::MAX,
            max_at_instant: 10,
        };
        // 10 events per instant is within the limit at every instant: it resets.
        let (r, handled) = burst(9, limits);
        assert_eq!((r.unwrap().events, handled), (5, 50));
        let (r, handled) = burst(10, limits);
        assert!(
            matches!(r, Err(RunError::ZeroTimeLoop { limit: 10, .. })),
            "{r:?}"
        );
        assert_eq!(handled, 10);
        let err = r.unwrap_err().to_string();
        assert!(
            err.contains(
                "more than 10 events in a row were handled at simulated time 0.000000000s"
            ),
            "{err}"
        );
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
            pause_at_events: u64::MAX,
            end: None,
            max_events: 10,
            max_at_instant: u64::MAX,
        });
    }
}
