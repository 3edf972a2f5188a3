//! `[workloads.NAME]`: arrivals, targets, schedules.

use super::*;

impl Builder {
    pub(super) fn workload(&mut self, name: &Name, w: &RawWorkload) -> Option<WorkloadSpec> {
        let target = self.resolve_endpoint(&w.target);
        let timeout = w
            .timeout
            .as_ref()
            .and_then(|t| self.positive_duration(t, "a timeout"));
        let load = match &w.users {
            Some(users) => self.closed_load(w, users)?,
            None => self.open_load(name, w)?,
        };
        let policy = self.policy_ref(w.policy.as_ref());
        let at = w.policy.as_ref().map_or_else(|| span(&w.target), span);
        let edge = self.edge(name.get_ref(), target?, policy, at);
        let keys = self.key_space(w)?;
        let operation_is_key = self.operation_is_key(w, keys.is_some());
        Some(WorkloadSpec {
            operation_is_key,
            keys,
            name: name.get_ref().clone(),
            edge,
            timeout,
            load,
        })
    }

    /// A closed loop: `users`, each thinking `think` between requests.
    fn closed_load(&mut self, w: &RawWorkload, users: &Spanned<i64>) -> Option<Load> {
        for (field, sp) in [
            ("rate", w.rate.as_ref().map(span)),
            ("schedule", w.schedule.as_ref().map(span)),
            ("arrivals", w.arrivals.as_ref().map(span)),
        ] {
            if let Some(sp) = sp {
                self.error(
                    sp,
                    format!("`{field}` is for open-loop workloads; this one has `users`"),
                    "either `users` (closed loop) or `rate`/`schedule` (open loop)",
                );
            }
        }
        let users = self.bounded(users, 1, bounds::MAX_USERS, "users", "at least 1 user")?;
        let think = match &w.think {
            Some(t) => self.dist(t)?,
            None => Dist::Constant(SimDuration::ZERO),
        };
        Some(Load::Closed { users, think })
    }

    /// An open loop: `arrivals` at a `rate` or along a `schedule`.
    fn open_load(&mut self, name: &Name, w: &RawWorkload) -> Option<Load> {
        if let Some(t) = &w.think {
            self.error(
                span(t),
                "`think` is for closed-loop workloads (with `users`)",
                "`users = N` next to `think`",
            );
        }
        let pattern = match w.arrivals.as_ref().map(|a| (a, a.get_ref().as_str())) {
            None | Some((_, "poisson")) => ArrivalPattern::Poisson,
            Some((_, "constant")) => ArrivalPattern::Constant,
            Some((a, other)) => {
                self.error(
                    span(a),
                    format!("unknown arrival pattern `{other}`"),
                    "\"poisson\" or \"constant\"",
                );
                return None;
            }
        };
        let segments = match (&w.rate, &w.schedule) {
            (Some(r), None) => {
                let rate = *r.get_ref();
                if !(rate > 0.0 && rate.is_finite()) {
                    self.error(
                        span(r),
                        format!("a rate of {rate} per second sends nothing"),
                        "a rate above zero (requests per second)",
                    );
                    return None;
                }
                self.rate_within_bound(r)?;
                vec![RateSegment {
                    start: SimTime::ZERO,
                    rate_per_s: rate,
                }]
            }
            (None, Some(schedule)) => self.schedule(schedule)?,
            _ => {
                self.error(
                    span(&w.target),
                    format!("workload `{}` needs exactly one of `rate`, `schedule`, `users`", name.get_ref()),
                    "rate = 10 (per second), or schedule = [{ at = \"0s\", rate = 10 }, ...], or users = N",
                );
                return None;
            }
        };
        Some(Load::Open { pattern, segments })
    }

    /// The key space requests draw from (`keys`, `zipf`); None when a bad value drops
    /// the workload.
    fn key_space(&mut self, w: &RawWorkload) -> Option<Option<KeySpace>> {
        let keys = match (&w.keys, &w.zipf) {
            (None, None) => None,
            (None, Some(z)) => {
                self.error(
                    span(z),
                    "`zipf` shapes a key space: it needs `keys`",
                    "keys = N next to zipf",
                );
                None
            }
            (Some(n), z) => {
                let count = self.bounded(n, 1, bounds::MAX_KEYS, "keys", "at least 1 key")?;
                let zipf = match z {
                    Some(z) if !(*z.get_ref() > 0.0 && z.get_ref().is_finite()) => {
                        self.error(
                            span(z),
                            format!("a zipf exponent of {}", z.get_ref()),
                            "an exponent above 0 (1.0 is the classic)",
                        );
                        return None;
                    }
                    Some(z) => Some(*z.get_ref()),
                    None => None,
                };
                Some(KeySpace { count, zipf })
            }
        };
        Some(keys)
    }

    /// `operation`: whether requests with one key count as one operation.
    fn operation_is_key(&mut self, w: &RawWorkload, has_keys: bool) -> bool {
        match w.operation.as_ref().map(|o| (o, o.get_ref().as_str())) {
            None | Some((_, "request")) => false,
            Some((o, "key")) => {
                if !has_keys {
                    self.error(
                        span(o),
                        "operation = \"key\" needs a key space",
                        "keys = N on this workload",
                    );
                }
                true
            }
            Some((o, other)) => {
                self.error(
                    span(o),
                    format!("unknown operation `{other}`"),
                    "\"request\" (each request is an operation) or \"key\" (requests with one key are one operation, e.g. a form submitted twice)",
                );
                false
            }
        }
    }

    fn schedule(
        &mut self,
        schedule: &Spanned<Vec<Spanned<RawSegment>>>,
    ) -> Option<Vec<RateSegment>> {
        let mut out: Vec<RateSegment> = Vec::new();
        for seg in schedule.get_ref() {
            let s = seg.get_ref();
            let at = self.duration(&s.at)?;
            let rate = *s.rate.get_ref();
            self.rate_within_bound(&s.rate)?;
            if !(rate >= 0.0 && rate.is_finite()) {
                self.error(
                    span(&s.rate),
                    format!("a rate of {rate}"),
                    "a rate >= 0 (0 pauses the arrivals)",
                );
                return None;
            }
            let start = SimTime::ZERO + at;
            match out.last() {
                None if !at.is_zero() => {
                    self.error(
                        span(&s.at),
                        "the schedule must start at \"0s\"",
                        "at = \"0s\" on the first entry",
                    );
                    return None;
                }
                Some(prev) if start <= prev.start => {
                    self.error(
                        span(&s.at),
                        "schedule entries must be in increasing time order",
                        "an `at` later than the entry before",
                    );
                    return None;
                }
                _ => {}
            }
            out.push(RateSegment {
                start,
                rate_per_s: rate,
            });
        }
        if out.is_empty() {
            self.error(
                span(schedule),
                "an empty schedule",
                "at least one { at = \"0s\", rate = N }",
            );
            return None;
        }
        Some(out)
    }

    /// A rate above `bounds::MAX_RATE` (one request per nanosecond) is refused.
    fn rate_within_bound(&mut self, r: &Spanned<f64>) -> Option<()> {
        let rate = *r.get_ref();
        if rate > bounds::MAX_RATE {
            self.error(
                span(r),
                format!("a rate of {rate:e} per second is above meshsim's maximum of 1e9"),
                "at most 1e9 requests per second (one per nanosecond; see ARCHITECTURE.md, Bounds)",
            );
            return None;
        }
        Some(())
    }
}
