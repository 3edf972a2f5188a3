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
        let Some(window) = self.window(raw, &check, workloads) else {
            return;
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

    /// The window a check reads (`from`, `until`), as an index into the windows; None
    /// inside when the check reads the whole run, None outside after an error.
    fn window(
        &mut self,
        raw: &Spanned<RawExpect>,
        check: &crate::report::expect::Check,
        workloads: &[WorkloadSpec],
    ) -> Option<Option<usize>> {
        let e = raw.get_ref();
        if e.from.is_none() && e.until.is_none() {
            return Some(None);
        }
        let from = match &e.from {
            Some(f) => self.duration(f)?,
            None => SimDuration::ZERO,
        };
        let until = match &e.until {
            Some(u) => Some(self.duration(u)?),
            None => None,
        };
        let until = until.map_or(SimTime::MAX, |u| SimTime::ZERO + u);
        if until <= SimTime::ZERO + from {
            self.error(
                span(raw),
                "the window ends before it starts",
                "until > from",
            );
            return None;
        }
        let Some(target) = self.window_target(check, workloads) else {
            self.error(
                span(&e.check),
                "a windowed check reads one workload or endpoint",
                "workloads.NAME.FIELD or endpoints.SERVICE/ENDPOINT.FIELD (fields: answers, ok, errors, error_rate, throughput_rps, latency_ms)",
            );
            return None;
        };
        self.windows.push(WindowSpec {
            target,
            from: SimTime::ZERO + from,
            until,
        });
        Some(Some(self.windows.len() - 1))
    }

    /// The one workload or endpoint a windowed check names (`workloads.NAME.FIELD`,
    /// `endpoints.SERVICE/ENDPOINT.FIELD`).
    fn window_target(
        &self,
        check: &crate::report::expect::Check,
        workloads: &[WorkloadSpec],
    ) -> Option<WindowTarget> {
        let name = check.path.get(1).cloned().unwrap_or_default();
        match check.path.first().map(String::as_str) {
            Some("workloads") => workloads
                .iter()
                .position(|w| w.name == name)
                .map(|i| WindowTarget::Workload(WorkloadId(i as u32))),
            Some("endpoints") => self
                .endpoint_ids
                .get(&name)
                .map(|&e| WindowTarget::Endpoint(e)),
            _ => None,
        }
    }
}
