//! `[[expect]]`: each check, the window it reads and the workloads it names.

use super::*;

impl Builder {
    pub(super) fn expectation(&mut self, raw: &Spanned<RawExpect>, workloads: &[WorkloadSpec]) {
        let e = raw.get_ref();
        let check = match crate::report::expect::parse(e.check.get_ref()) {
            Ok(c) => c,
            Err(msg) => {
                self.error(span(&e.check), msg, crate::report::expect::EXPECTED);
                return;
            }
        };
        let window = match (&e.from, &e.until) {
            (None, None) => None,
            (from, until) => {
                let from = match from {
                    Some(f) => match self.duration(f) {
                        Some(d) => d,
                        None => return,
                    },
                    None => SimDuration::ZERO,
                };
                let until = match until {
                    Some(u) => match self.duration(u) {
                        Some(d) => Some(d),
                        None => return,
                    },
                    None => None,
                };
                let until = until.map_or(SimTime::MAX, |u| SimTime::ZERO + u);
                if until <= SimTime::ZERO + from {
                    self.error(
                        span(raw),
                        "the window ends before it starts",
                        "until > from",
                    );
                    return;
                }
                let name = check.path.get(1).cloned().unwrap_or_default();
                let target = match check.path.first().map(String::as_str) {
                    Some("workloads") => workloads
                        .iter()
                        .position(|w| w.name == name)
                        .map(|i| WindowTarget::Workload(WorkloadId(i as u32))),
                    Some("endpoints") => self
                        .endpoint_ids
                        .get(&name)
                        .map(|&e| WindowTarget::Endpoint(e)),
                    _ => None,
                };
                let Some(target) = target else {
                    self.error(
                        span(&e.check),
                        "a windowed check reads one workload or endpoint",
                        "workloads.NAME.FIELD or endpoints.SERVICE/ENDPOINT.FIELD (fields: answers, ok, errors, error_rate, throughput_rps, latency_ms)",
                    );
                    return;
                };
                self.windows.push(WindowSpec {
                    target,
                    from: SimTime::ZERO + from,
                    until,
                });
                Some(self.windows.len() - 1)
            }
        };
        let over = match &e.over {
            None => crate::report::expect::Over::Mean,
            Some(o) => match crate::report::expect::Over::parse(o.get_ref()) {
                Some(x) => x,
                None => {
                    self.error(
                        span(o),
                        format!("`over = {:?}`", o.get_ref()),
                        crate::report::expect::Over::EXPECTED,
                    );
                    return;
                }
            },
        };
        self.expectations.push(ExpectSpec {
            text: e.check.get_ref().trim().to_owned(),
            check,
            window,
            span: span(&e.check),
            over,
        });
    }
}
