//! `[[faults]]`: crashes, slowdowns, partitions, loss and broker outages, and what each
//! one targets.

use super::*;

impl Builder {
    pub(super) fn fault(&mut self, raw: &Spanned<RawFault>) {
        let f = raw.get_ref();
        let kind = f.kind.get_ref().as_str();
        let service_kind = matches!(kind, "down" | "crash" | "slow" | "error");
        let link_kind = matches!(kind, "partition" | "link_loss" | "link_latency");
        let broker_kind = kind == "broker_down";
        if !service_kind && !link_kind && !broker_kind {
            self.error(
                span(&f.kind),
                format!("unknown fault `{kind}`"),
                "one of: down, crash, slow, error, partition, link_loss, link_latency, broker_down",
            );
            return;
        }
        self.check_fault_fields(f, kind);
        let (Some(from), Some(until)) = (self.duration(&f.from), self.duration(&f.until)) else {
            return;
        };
        if until <= from {
            self.error(
                span(&f.until),
                "the fault ends before it starts",
                "until > from",
            );
            return;
        }
        let target = if broker_kind {
            self.broker_target(raw)
        } else if service_kind {
            self.service_target(raw)
        } else {
            self.link_target(raw)
        };
        let Some((target, what)) = target else {
            return;
        };
        let Some(kind_spec) = self.fault_kind(raw) else {
            return;
        };
        self.faults.push(FaultSpec {
            label: format!("{kind} {what} {from}..{until}"),
            kind: kind_spec,
            target,
            from: SimTime::ZERO + from,
            until: SimTime::ZERO + until,
        });
    }

    /// Refuses the fields a fault of this kind does not use.
    fn check_fault_fields(&mut self, f: &RawFault, kind: &str) {
        // (field, where it is written, the kinds that use it)
        type FieldUse<'a> = (&'a str, Option<Range<usize>>, &'a [&'a str]);
        let fields: [FieldUse; 9] = [
            ("broker", f.broker.as_ref().map(span), &["broker_down"]),
            (
                "service",
                f.service.as_ref().map(span),
                &["down", "crash", "slow", "error"],
            ),
            (
                "replica",
                f.replica.as_ref().map(span),
                &["down", "crash", "slow", "error"],
            ),
            (
                "between",
                f.between.as_ref().map(span),
                &["partition", "link_loss", "link_latency"],
            ),
            ("extra", f.extra.as_ref().map(span), &["slow"]),
            ("status", f.status.as_ref().map(span), &["error"]),
            ("p", f.p.as_ref().map(span), &["error"]),
            ("loss", f.loss.as_ref().map(span), &["link_loss"]),
            ("latency", f.latency.as_ref().map(span), &["link_latency"]),
        ];
        for (field, sp, kinds) in fields {
            if let Some(sp) = sp
                && !kinds.contains(&kind)
            {
                self.error(
                    sp,
                    format!("`{field}` does not apply to a `{kind}` fault"),
                    format!("`{field}` on: {}", kinds.join(", ")),
                );
            }
        }
    }

    /// Reports a field the fault's kind needs.
    fn missing<T>(&mut self, raw: &Spanned<RawFault>, field: &str, example: &str) -> Option<T> {
        let kind = raw.get_ref().kind.get_ref();
        self.error(
            span(raw),
            format!("a `{kind}` fault needs `{field}`"),
            example.to_owned(),
        );
        None
    }

    /// A `broker_down` fault's broker.
    fn broker_target(&mut self, raw: &Spanned<RawFault>) -> Option<(FaultTarget, String)> {
        let f = raw.get_ref();
        let Some(b) = &f.broker else {
            return self.missing(raw, "broker", "broker = \"NAME\"");
        };
        let Some(&bid) = self.broker_ids.get(b.get_ref()) else {
            let known: Vec<&str> = self.broker_ids.keys().map(String::as_str).collect();
            self.error(
                span(b),
                format!("unknown broker `{}`", b.get_ref()),
                format!("one of: {}", known.join(", ")),
            );
            return None;
        };
        Some((FaultTarget::Broker(bid), b.get_ref().clone()))
    }

    /// A service fault's service, and its replica if it names one.
    fn service_target(&mut self, raw: &Spanned<RawFault>) -> Option<(FaultTarget, String)> {
        let f = raw.get_ref();
        let Some(svc) = &f.service else {
            return self.missing(raw, "service", "service = \"NAME\"");
        };
        let Some(&sid) = self.service_ids.get(svc.get_ref()) else {
            let known: Vec<&str> = self.service_ids.keys().map(String::as_str).collect();
            self.error(
                span(svc),
                format!("unknown service `{}`", svc.get_ref()),
                format!("one of: {}", known.join(", ")),
            );
            return None;
        };
        let count = self.services[sid.index()].replicas;
        let replica = match &f.replica {
            Some(r) => {
                let i = self.int_u32(r, 0, "replica", "a replica index")?;
                if i >= count {
                    self.error(
                        span(r),
                        format!("service `{}` has {count} replicas", svc.get_ref()),
                        format!("0 to {}", count - 1),
                    );
                    return None;
                }
                Some(i)
            }
            None => None,
        };
        let what = match replica {
            Some(r) => format!("{}#{r}", svc.get_ref()),
            None => svc.get_ref().clone(),
        };
        Some((
            FaultTarget::Service {
                service: sid,
                replica,
            },
            what,
        ))
    }

    /// A link fault's links: both directions of calls `between` two parties.
    fn link_target(&mut self, raw: &Spanned<RawFault>) -> Option<(FaultTarget, String)> {
        let f = raw.get_ref();
        let Some(between) = &f.between else {
            return self.missing(raw, "between", "between = [\"caller\", \"service\"]");
        };
        let names = between.get_ref();
        if names.len() != 2 {
            self.error(
                span(between),
                "`between` names two parties",
                "between = [\"a\", \"b\"]",
            );
            return None;
        }
        let (a, b) = (names[0].get_ref().clone(), names[1].get_ref().clone());
        let mut links = Vec::new();
        for (caller, callee) in [(&a, &b), (&b, &a)] {
            if let Some(&sid) = self.service_ids.get(callee.as_str())
                && let Some(&l) = self.link_ids.get(&(caller.clone(), sid))
            {
                links.push(l);
            }
        }
        if links.is_empty() {
            self.error(
                span(between),
                format!("no call goes between `{a}` and `{b}`, so this fault could never fire"),
                "two parties of which one calls the other",
            );
            return None;
        }
        Some((FaultTarget::Links(links), format!("{a}<->{b}")))
    }

    /// What the fault does, with the fields its kind needs.
    fn fault_kind(&mut self, raw: &Spanned<RawFault>) -> Option<FaultKind> {
        let f = raw.get_ref();
        let kind = f.kind.get_ref().as_str();
        Some(match kind {
            "broker_down" => FaultKind::BrokerDown,
            "down" => FaultKind::Down,
            "crash" => FaultKind::Crash,
            "partition" => FaultKind::Partition,
            "slow" => match &f.extra {
                Some(d) => match self.dist(d) {
                    Some(d) => FaultKind::Slow(d),
                    None => return None,
                },
                None => return self.missing(raw, "extra", "extra = \"200ms\" (a distribution)"),
            },
            "error" => {
                let Some(st) = &f.status else {
                    return self.missing(raw, "status", "status = \"internal\"");
                };
                let status = self.status(st, false)?;
                let p = match &f.p {
                    Some(p) => self.probability(p, "`p`")?,
                    None => 1.0,
                };
                FaultKind::Error { status, p }
            }
            "link_loss" => match &f.loss {
                Some(l) => match self.probability(l, "the loss") {
                    Some(p) => FaultKind::LinkLoss(p),
                    None => return None,
                },
                None => return self.missing(raw, "loss", "loss = 0.3"),
            },
            "link_latency" => match &f.latency {
                Some(d) => match self.dist(d) {
                    Some(d) => FaultKind::LinkLatency(d),
                    None => return None,
                },
                None => {
                    return self.missing(
                        raw,
                        "latency",
                        "latency = \"100ms\" (a distribution, added)",
                    );
                }
            },
            _ => unreachable!("kinds checked above"),
        })
    }
}
