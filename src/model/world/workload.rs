//! Workloads: open-loop arrivals under a rate schedule, closed-loop users who think
//! between requests, keys drawn from a key space, the run's request limit.

use super::World;
use super::event::Event;
use crate::engine::{Scheduler, SimDuration, SimTime, Stream, stream};
use crate::model::client::Origin;
use crate::model::spec::*;
use rand::RngExt;

pub(super) struct WorkloadState {
    pub(super) rng: Stream,
    pub(super) zipf: Option<rand_distr::Zipf<f64>>,
}

impl WorkloadState {
    pub(super) fn all(spec: &Spec, seed: u64) -> Vec<WorkloadState> {
        spec.workloads
            .iter()
            .map(|w| WorkloadState {
                rng: stream(seed, &format!("workload/{}", w.name)),
                zipf: w.keys.and_then(|k| {
                    k.zipf.map(|s| {
                        rand_distr::Zipf::new(f64::from(k.count), s).expect("validated key space")
                    })
                }),
            })
            .collect()
    }
}

impl World {
    /// An open-loop workload's next request: sent (unless the request limit is
    /// reached), and the one after it scheduled.
    pub(super) fn on_arrival(&mut self, w: WorkloadId, sched: &mut Scheduler<Event>) {
        if self.take_request_slot() {
            let spec = &self.spec.workloads[w.index()];
            let (edge, timeout) = (spec.edge, spec.timeout);
            let key = self.draw_key(w);
            let op = self.ledger.new_op(&self.spec.workloads[w.index()], w, key);
            self.start_call(
                Origin::Workload {
                    workload: w,
                    user: 0,
                },
                edge,
                timeout,
                key,
                op,
                sched,
            );
            if let Some(t) = self.next_arrival(w, sched.now()) {
                sched.at(t, Event::Arrival(w));
            }
        }
    }

    /// A closed-loop user is done thinking: it sends its next request.
    pub(super) fn on_user_ready(
        &mut self,
        workload: WorkloadId,
        user: u32,
        sched: &mut Scheduler<Event>,
    ) {
        if self.take_request_slot() {
            let spec = &self.spec.workloads[workload.index()];
            let (edge, timeout) = (spec.edge, spec.timeout);
            let key = self.draw_key(workload);
            let op = self
                .ledger
                .new_op(&self.spec.workloads[workload.index()], workload, key);
            self.start_call(
                Origin::Workload { workload, user },
                edge,
                timeout,
                key,
                op,
                sched,
            );
        }
    }

    /// A key from the workload's key space (0 when it has none).
    pub(super) fn draw_key(&mut self, w: WorkloadId) -> u32 {
        let Some(keys) = self.spec.workloads[w.index()].keys else {
            return 0;
        };
        let state = &mut self.workloads[w.index()];
        match &state.zipf {
            // Zipf draws 1..=count; keys are 0-based.
            Some(z) => {
                (rand_distr::Distribution::sample(z, &mut state.rng) as u32).saturating_sub(1)
            }
            None => state.rng.random_range(0..keys.count),
        }
    }

    /// Counts a workload request against the run's request limit.
    pub(super) fn take_request_slot(&mut self) -> bool {
        if let Some(max) = self.spec.max_requests
            && self.requests_sent >= max
        {
            return false;
        }
        self.requests_sent += 1;
        true
    }

    /// The time of the next open-loop arrival after `now`, honouring the rate schedule.
    pub(super) fn next_arrival(&mut self, w: WorkloadId, now: SimTime) -> Option<SimTime> {
        let Load::Open { pattern, segments } = &self.spec.workloads[w.index()].load else {
            unreachable!("closed workloads have no arrival process")
        };
        let rng = &mut self.workloads[w.index()].rng;
        let mut from = now;
        let mut seg = segments.partition_point(|s| s.start <= from) - 1;
        loop {
            let rate = segments[seg].rate_per_s;
            let next_start = segments.get(seg + 1).map(|s| s.start);
            if rate > 0.0 {
                let gap_s = match pattern {
                    ArrivalPattern::Poisson => {
                        let x: f64 = rand_distr::Distribution::sample(&rand_distr::Exp1, rng);
                        x / rate
                    }
                    ArrivalPattern::Constant => 1.0 / rate,
                };
                // Past the end of the clock there are no more arrivals.
                let t = from.checked_add(SimDuration::from_secs_f64(gap_s))?;
                // Poisson arrivals are memoryless, so restarting at a rate change is exact.
                match next_start {
                    Some(s) if t >= s => {}
                    _ => return Some(t),
                }
            }
            from = next_start?;
            seg += 1;
        }
    }

    /// A workload's request is answered: a closed-loop user thinks, then sends again.
    pub(in crate::model) fn workload_answered(
        &mut self,
        workload: WorkloadId,
        user: u32,
        sched: &mut Scheduler<Event>,
    ) {
        self.requests_answered += 1;
        if let Load::Closed { think, .. } = &self.spec.workloads[workload.index()].load {
            let delay = think.sample(&mut self.workloads[workload.index()].rng);
            // Through the heap even when zero, so a loop that never advances time still
            // counts against the event budget.
            sched.after(delay, Event::UserReady { workload, user });
        }
    }
}
