//! The floor under meshsim's M/M/c speed: the same queue written directly on meshsim's
//! engine, with nothing of the service model. Arrivals and departures are events in
//! the engine's (time, seq) queue, each entity draws from its own ChaCha8 stream, and
//! every customer records its latency, its wait and its endpoint latency in the same
//! streaming `Summary` the reports use. No scenario, no logical calls or attempts, no
//! fibers, no network, no time series, no attribution.
//!
//! `scripts/compare_simpy.py` runs it beside SimPy and meshsim, so the three are timed
//! in one window: what SimPy takes, what meshsim takes, and what no model on this
//! engine could take less than.
//!
//!     cargo run --release --example mmc_floor -- 1000000 [--c 10 --lam 9 --mu 1]
//!
//! Prints one JSON line: customers, the wall time of the run loop, customers/s, and the
//! mean response time W (against Erlang-C: 1.668732 s at c = 10, lambda = 9, mu = 1).

use meshsim::engine::{Limits, Model, Scheduler, SimDuration, Simulation, Stream, stream};
use meshsim::metrics::Summary;
use rand_distr::{Distribution, Exp1};
use std::collections::VecDeque;
use std::time::Instant;

#[derive(Clone, Copy)]
enum Event {
    Arrival,
    Departure(u32),
}

struct Station {
    arrivals: Stream,
    services: Stream,
    mean_gap_ns: f64,
    mean_service_ns: f64,
    customers: u64,
    sent: u64,
    free: u32,
    /// Arrival time of each customer in the system, by slot; freed slots are reused.
    arrived: Vec<u64>,
    free_slots: Vec<u32>,
    queue: VecDeque<u32>,
    response: Summary,
    wait: Summary,
    endpoint: Summary,
}

impl Station {
    fn start_service(&mut self, slot: u32, sched: &mut Scheduler<Event>) {
        let now = sched.now().as_nanos();
        self.wait
            .record(SimDuration::from_nanos(now - self.arrived[slot as usize]));
        let x: f64 = Exp1.sample(&mut self.services);
        let d = SimDuration::from_nanos((x * self.mean_service_ns) as u64);
        sched.after(d, Event::Departure(slot));
    }
}

impl Model for Station {
    type Event = Event;

    fn handle(&mut self, event: Event, sched: &mut Scheduler<Event>) {
        let now = sched.now().as_nanos();
        match event {
            Event::Arrival => {
                self.sent += 1;
                if self.sent < self.customers {
                    let x: f64 = Exp1.sample(&mut self.arrivals);
                    let gap = SimDuration::from_nanos((x * self.mean_gap_ns) as u64);
                    sched.after(gap, Event::Arrival);
                }
                let slot = match self.free_slots.pop() {
                    Some(s) => {
                        self.arrived[s as usize] = now;
                        s
                    }
                    None => {
                        self.arrived.push(now);
                        (self.arrived.len() - 1) as u32
                    }
                };
                if self.free > 0 {
                    self.free -= 1;
                    self.start_service(slot, sched);
                } else {
                    self.queue.push_back(slot);
                }
            }
            Event::Departure(slot) => {
                let latency = SimDuration::from_nanos(now - self.arrived[slot as usize]);
                self.response.record(latency);
                self.endpoint.record(latency);
                self.free_slots.push(slot);
                match self.queue.pop_front() {
                    Some(next) => self.start_service(next, sched),
                    None => self.free += 1,
                }
            }
        }
    }
}

fn arg(args: &[String], name: &str, default: f64) -> f64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().expect("a number"))
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let customers: u64 = args
        .get(1)
        .and_then(|n| n.replace('_', "").parse().ok())
        .unwrap_or(1_000_000);
    let (c, lam, mu) = (
        arg(&args, "--c", 10.0),
        arg(&args, "--lam", 9.0),
        arg(&args, "--mu", 1.0),
    );
    let mut sim = Simulation::new(Station {
        arrivals: stream(42, "workload/customers"),
        services: stream(42, "server/0"),
        mean_gap_ns: 1e9 / lam,
        mean_service_ns: 1e9 / mu,
        customers,
        sent: 0,
        free: c as u32,
        arrived: Vec::new(),
        free_slots: Vec::new(),
        queue: VecDeque::new(),
        response: Summary::default(),
        wait: Summary::default(),
        endpoint: Summary::default(),
    });
    let (_, sched) = sim.scheduler();
    sched.after(SimDuration::ZERO, Event::Arrival);
    let started = Instant::now();
    let stats = sim
        .run(Limits {
            end: None,
            max_events: u64::MAX,
            max_at_instant: u64::MAX,
            pause_at_events: u64::MAX,
        })
        .expect("the floor model cannot fail");
    let loop_s = started.elapsed().as_secs_f64();
    let st = &sim.model;
    assert_eq!(st.response.count(), customers, "every customer departed");
    println!(
        "{{\"customers\": {customers}, \"events\": {}, \"loop_s\": {loop_s:.6}, \
         \"customers_per_s\": {:.0}, \"mean_w_s\": {:.6}, \"mean_wq_s\": {:.6}}}",
        stats.events,
        customers as f64 / loop_s,
        st.response.mean_ms() / 1e3,
        st.wait.mean_ms() / 1e3,
    );
}
