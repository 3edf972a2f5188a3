//! Faults on a schedule: replicas down or crashed, slow, failing; links partitioned,
//! lossy or slow. Each fault counts what it actually touched (`affected`), so that a
//! check can never pass because a fault silently never fired.

use super::spec::{FaultKind, FaultTarget, LinkId, ServiceId, Spec};
use super::status::Status;
use super::world::{Event, World};
use crate::engine::{Scheduler, SimDuration, Stream, stream};
use rand::RngExt;

pub(super) struct FaultState {
    pub affected: Vec<u64>,
    /// Active faults per service and per link (usually empty: one check per use).
    by_service: Vec<Vec<u32>>,
    by_link: Vec<Vec<u32>>,
    /// Each fault draws (loss, error, extra latency) from its own stream.
    rngs: Vec<Stream>,
}

impl FaultState {
    pub fn new(spec: &Spec, seed: u64) -> Self {
        FaultState {
            affected: vec![0; spec.faults.len()],
            by_service: vec![Vec::new(); spec.services.len()],
            by_link: vec![Vec::new(); spec.links.len()],
            rngs: (0..spec.faults.len())
                .map(|i| stream(seed, &format!("fault/{i}")))
                .collect(),
        }
    }

    pub fn service_faulted(&self, s: ServiceId) -> bool {
        !self.by_service[s.index()].is_empty()
    }

    pub fn link_faulted(&self, l: LinkId) -> bool {
        !self.by_link[l.index()].is_empty()
    }

    fn targets_replica(spec: &Spec, fault: usize, first: u32, replica: u32) -> bool {
        match spec.faults[fault].target {
            FaultTarget::Service { replica: None, .. } => true,
            FaultTarget::Service {
                replica: Some(r), ..
            } => first + r == replica,
            FaultTarget::Links(_) | FaultTarget::Broker(_) => false,
        }
    }

    /// A request reaches `replica` of a faulted service: refused or failed, or None.
    pub fn on_arrival(
        &mut self,
        spec: &Spec,
        first: u32,
        s: ServiceId,
        replica: u32,
    ) -> Option<Status> {
        for &f in &self.by_service[s.index()] {
            let f = f as usize;
            if !Self::targets_replica(spec, f, first, replica) {
                continue;
            }
            match spec.faults[f].kind {
                FaultKind::Down | FaultKind::Crash => {
                    self.affected[f] += 1;
                    return Some(Status::Unavailable);
                }
                FaultKind::Error { status, p } if self.rngs[f].random::<f64>() < p => {
                    self.affected[f] += 1;
                    return Some(status);
                }
                _ => {}
            }
        }
        None
    }

    /// Whether a crash or down fault still holds `replica` (without counting it).
    pub fn on_arrival_peek(&self, spec: &Spec, first: u32, s: ServiceId, replica: u32) -> bool {
        self.by_service[s.index()].iter().any(|&f| {
            let f = f as usize;
            matches!(spec.faults[f].kind, FaultKind::Down | FaultKind::Crash)
                && Self::targets_replica(spec, f, first, replica)
        })
    }

    /// Extra time a `work` step takes on a slowed replica.
    pub fn extra_work(
        &mut self,
        spec: &Spec,
        first: u32,
        s: ServiceId,
        replica: u32,
    ) -> SimDuration {
        let mut extra = SimDuration::ZERO;
        for &f in &self.by_service[s.index()] {
            let f = f as usize;
            if let FaultKind::Slow(d) = &spec.faults[f].kind
                && Self::targets_replica(spec, f, first, replica)
            {
                extra = extra + d.sample(&mut self.rngs[f]);
                self.affected[f] += 1;
            }
        }
        extra
    }

    /// A message crosses a faulted link: None if dropped, else its extra latency.
    pub fn on_message(&mut self, spec: &Spec, l: LinkId) -> Option<SimDuration> {
        let mut extra = SimDuration::ZERO;
        for &f in &self.by_link[l.index()] {
            let f = f as usize;
            match &spec.faults[f].kind {
                FaultKind::Partition => {
                    self.affected[f] += 1;
                    return None;
                }
                FaultKind::LinkLoss(p) if self.rngs[f].random::<f64>() < *p => {
                    self.affected[f] += 1;
                    return None;
                }
                FaultKind::LinkLatency(d) => {
                    extra = extra + d.sample(&mut self.rngs[f]);
                    self.affected[f] += 1;
                }
                _ => {}
            }
        }
        Some(extra)
    }
}

/// The replicas (consumer instances) a service fault targets: one, or all.
fn targeted(replica: Option<u32>, count: u32) -> std::ops::Range<u32> {
    match replica {
        Some(r) => r..r + 1,
        None => 0..count,
    }
}

impl World {
    pub(super) fn fault_start(&mut self, i: usize, sched: &mut Scheduler<Event>) {
        let spec = std::rc::Rc::clone(&self.spec);
        let fault = &spec.faults[i];
        match &fault.target {
            FaultTarget::Service { service, replica } => {
                self.faults.by_service[service.index()].push(i as u32);
                if let FaultKind::Crash = fault.kind {
                    let first = self.first_replica[service.index()];
                    let count = self.spec.services[service.index()].replicas;
                    let crashed: Vec<u32> = match replica {
                        Some(r) => vec![first + r],
                        None => (first..first + count).collect(),
                    };
                    for &r in &crashed {
                        let lost = self.crash_replica(r, sched);
                        self.faults.affected[i] += lost;
                    }
                }
                // A consumer instance that crashed or refuses connections takes no
                // deliveries: the broker's rules say what happens to its unacked ones.
                if let (Some(c), FaultKind::Crash | FaultKind::Down) =
                    (self.spec.services[service.index()].consumer, &fault.kind)
                {
                    let instances = targeted(*replica, spec.services[service.index()].replicas);
                    for inst in instances {
                        self.faults.affected[i] += 1;
                        self.broker(sched, |a, cx| a.consumer_down(c, inst, cx));
                    }
                }
            }
            FaultTarget::Broker(b) => {
                let b = *b;
                self.asy.broker_fault_active[i] = true;
                let returned = self.broker(sched, |a, cx| a.broker_down(b, cx));
                self.faults.affected[i] += returned;
            }
            FaultTarget::Links(links) => {
                for l in links {
                    self.faults.by_link[l.index()].push(i as u32);
                }
            }
        }
    }

    pub(super) fn fault_end(&mut self, i: usize, sched: &mut Scheduler<Event>) {
        let i32 = i as u32;
        let spec = std::rc::Rc::clone(&self.spec);
        let fault = &spec.faults[i];
        match &fault.target {
            FaultTarget::Service { service, replica } => {
                self.faults.by_service[service.index()].retain(|&f| f != i32);
                if let (Some(c), FaultKind::Crash | FaultKind::Down) =
                    (self.spec.services[service.index()].consumer, &fault.kind)
                {
                    let instances = targeted(*replica, spec.services[service.index()].replicas);
                    for inst in instances {
                        // Unless another fault still holds it down.
                        let first = self.first_replica[service.index()];
                        if self
                            .faults
                            .on_arrival_peek(&self.spec, first, *service, first + inst)
                        {
                            continue;
                        }
                        self.broker(sched, |a, cx| a.consumer_up(c, inst, cx));
                    }
                }
            }
            FaultTarget::Broker(b) => {
                let b = *b;
                self.asy.broker_fault_active[i] = false;
                let still_down = self.spec.faults.iter().enumerate().any(|(j, f)| {
                    j != i
                        && self.asy.broker_fault_active[j]
                        && matches!(f.target, FaultTarget::Broker(x) if x == b)
                });
                if !still_down {
                    self.broker(sched, |a, cx| a.broker_up(b, cx));
                }
            }
            FaultTarget::Links(links) => {
                for l in links {
                    self.faults.by_link[l.index()].retain(|&f| f != i32);
                }
            }
        }
    }
}
