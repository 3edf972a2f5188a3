//! `[services.NAME]`: replicas, workers, queues and endpoints, declared before any
//! handler is compiled so that calls can name any endpoint.

use super::*;

impl Builder {
    pub(super) fn declare_services(&mut self, raw: &RawScenario) {
        for (s, (name, svc)) in raw.services.iter().enumerate() {
            self.check_name(name, "service");
            let id = ServiceId(s as u32);
            self.service_ids.insert(name.get_ref().clone(), id);
            let v = svc.get_ref();
            let replicas = v
                .replicas
                .as_ref()
                .and_then(|r| {
                    self.bounded(r, 1, bounds::MAX_REPLICAS, "replicas", "at least 1 replica")
                })
                .unwrap_or(1);
            let workers = v
                .workers
                .as_ref()
                .and_then(|w| {
                    self.bounded(
                        w,
                        1,
                        bounds::MAX_WORKERS,
                        "workers",
                        "at least 1 worker per replica",
                    )
                })
                .unwrap_or(1);
            let queue_capacity = v
                .queue
                .as_ref()
                .and_then(|q| {
                    self.bounded(
                        q,
                        0,
                        bounds::MAX_QUEUE,
                        "the queue capacity",
                        "a capacity >= 0",
                    )
                })
                .unwrap_or(DEFAULT_QUEUE);
            let balancer = self.balancer(v);
            let hold = self.worker_hold(v);
            if v.endpoints.is_empty() {
                self.error(
                    span(svc),
                    format!("service `{}` has no endpoint", name.get_ref()),
                    "a [services.NAME.endpoints.ENDPOINT] table with `steps`",
                );
            }
            let endpoints = self.declare_endpoints(name.get_ref(), id, v);
            self.services.push(ServiceSpec {
                name: name.get_ref().clone(),
                replicas,
                workers,
                queue_capacity,
                balancer,
                hold,
                drop_expired: v.drop_expired.as_ref().is_some_and(|d| *d.get_ref()),
                endpoints,
                consumer: None,
            });
        }
    }

    /// How a caller picks one of the service's replicas.
    fn balancer(&mut self, v: &RawService) -> Balancer {
        match v.balancer.as_ref().map(|b| (b, b.get_ref().as_str())) {
            None | Some((_, "round_robin")) => Balancer::RoundRobin,
            Some((_, "random")) => Balancer::Random,
            Some((_, "least_outstanding")) => Balancer::LeastOutstanding,
            Some((_, "power_of_two_choices")) => Balancer::PowerOfTwoChoices,
            Some((b, other)) => {
                self.error(
                    span(b),
                    format!("unknown balancer `{other}`"),
                    "one of: round_robin, random, least_outstanding, power_of_two_choices",
                );
                Balancer::RoundRobin
            }
        }
    }

    /// Whether a worker stays busy while its handler waits on a call.
    fn worker_hold(&mut self, v: &RawService) -> WorkerHold {
        match v
            .worker_during_calls
            .as_ref()
            .map(|h| (h, h.get_ref().as_str()))
        {
            None | Some((_, "held")) => WorkerHold::Held,
            Some((_, "released")) => WorkerHold::Released,
            Some((h, other)) => {
                self.error(
                    span(h),
                    format!("unknown worker_during_calls `{other}`"),
                    "\"held\" (thread per request) or \"released\" (event loop)",
                );
                WorkerHold::Held
            }
        }
    }

    /// The endpoints of service `service`, named SERVICE/ENDPOINT, their handlers
    /// compiled later.
    fn declare_endpoints(
        &mut self,
        service: &str,
        id: ServiceId,
        v: &RawService,
    ) -> Vec<EndpointId> {
        let mut endpoints = Vec::new();
        for (ep_name, ep) in &v.endpoints {
            let kb = |b: &mut Builder, v: &Option<Spanned<f64>>| match v {
                Some(x) if !(*x.get_ref() >= 0.0 && x.get_ref().is_finite()) => {
                    b.error(
                        span(x),
                        format!("a payload of {} KB", x.get_ref()),
                        "a size in KB >= 0",
                    );
                    1.0
                }
                Some(x) => *x.get_ref(),
                None => 1.0,
            };
            let request_kb = kb(self, &ep.get_ref().request_kb);
            let response_kb = kb(self, &ep.get_ref().response_kb);
            self.check_name(ep_name, "endpoint");
            let full = format!("{}/{}", service, ep_name.get_ref());
            let eid = EndpointId(self.endpoints.len() as u32);
            let idempotency = ep
                .get_ref()
                .idempotency
                .as_ref()
                .and_then(|d| self.positive_duration(d, "the idempotency-key retention"));
            self.endpoints.push(EndpointSpec {
                service: id,
                name: full.clone(),
                handler: SeqId(u32::MAX),
                request_kb,
                response_kb,
                idempotency,
            });
            self.endpoint_ids.insert(full, eid);
            endpoints.push(eid);
        }
        endpoints
    }
}
