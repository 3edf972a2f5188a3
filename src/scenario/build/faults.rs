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
        let fields: [(&str, Option<Range<usize>>, &[&str]); 9] = [
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
        let missing = |b: &mut Builder, field: &str, example: &str| {
            b.error(
                span(raw),
                format!("a `{kind}` fault needs `{field}`"),
                example.to_owned(),
            );
        };
        let (target, what) = if broker_kind {
            let Some(b) = &f.broker else {
                return missing(self, "broker", "broker = \"NAME\"");
            };
            let Some(&bid) = self.broker_ids.get(b.get_ref()) else {
                let known: Vec<&str> = self.broker_ids.keys().map(String::as_str).collect();
                self.error(
                    span(b),
                    format!("unknown broker `{}`", b.get_ref()),
                    format!("one of: {}", known.join(", ")),
                );
                return;
            };
            (FaultTarget::Broker(bid), b.get_ref().clone())
        } else if service_kind {
            let Some(svc) = &f.service else {
                return missing(self, "service", "service = \"NAME\"");
            };
            let Some(&sid) = self.service_ids.get(svc.get_ref()) else {
                let known: Vec<&str> = self.service_ids.keys().map(String::as_str).collect();
                self.error(
                    span(svc),
                    format!("unknown service `{}`", svc.get_ref()),
                    format!("one of: {}", known.join(", ")),
                );
                return;
            };
            let count = self.services[sid.index()].replicas;
            let replica = match &f.replica {
                Some(r) => {
                    let Some(i) = self.int_u32(r, 0, "replica", "a replica index") else {
                        return;
                    };
                    if i >= count {
                        self.error(
                            span(r),
                            format!("service `{}` has {count} replicas", svc.get_ref()),
                            format!("0 to {}", count - 1),
                        );
                        return;
                    }
                    Some(i)
                }
                None => None,
            };
            let what = match replica {
                Some(r) => format!("{}#{r}", svc.get_ref()),
                None => svc.get_ref().clone(),
            };
            (
                FaultTarget::Service {
                    service: sid,
                    replica,
                },
                what,
            )
        } else {
            let Some(between) = &f.between else {
                return missing(self, "between", "between = [\"caller\", \"service\"]");
            };
            let names = between.get_ref();
            if names.len() != 2 {
                self.error(
                    span(between),
                    "`between` names two parties",
                    "between = [\"a\", \"b\"]",
                );
                return;
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
                return;
            }
            (FaultTarget::Links(links), format!("{a}<->{b}"))
        };
        let kind_spec = match kind {
            "broker_down" => FaultKind::BrokerDown,
            "down" => FaultKind::Down,
            "crash" => FaultKind::Crash,
            "partition" => FaultKind::Partition,
            "slow" => match &f.extra {
                Some(d) => match self.dist(d) {
                    Some(d) => FaultKind::Slow(d),
                    None => return,
                },
                None => return missing(self, "extra", "extra = \"200ms\" (a distribution)"),
            },
            "error" => {
                let Some(st) = &f.status else {
                    return missing(self, "status", "status = \"internal\"");
                };
                let Some(status) = self.status(st, false) else {
                    return;
                };
                let p = match &f.p {
                    Some(p) => match self.probability(p, "`p`") {
                        Some(p) => p,
                        None => return,
                    },
                    None => 1.0,
                };
                FaultKind::Error { status, p }
            }
            "link_loss" => match &f.loss {
                Some(l) => match self.probability(l, "the loss") {
                    Some(p) => FaultKind::LinkLoss(p),
                    None => return,
                },
                None => return missing(self, "loss", "loss = 0.3"),
            },
            "link_latency" => match &f.latency {
                Some(d) => match self.dist(d) {
                    Some(d) => FaultKind::LinkLatency(d),
                    None => return,
                },
                None => {
                    return missing(
                        self,
                        "latency",
                        "latency = \"100ms\" (a distribution, added)",
                    );
                }
            },
            _ => unreachable!("kinds checked above"),
        };
        self.faults.push(FaultSpec {
            label: format!("{kind} {what} {from}..{until}"),
            kind: kind_spec,
            target,
            from: SimTime::ZERO + from,
            until: SimTime::ZERO + until,
        });
    }
}
