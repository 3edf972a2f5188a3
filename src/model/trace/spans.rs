//! A finished root's nodes turned into the spans and flows of a Chrome trace.

use super::tree::Tree;
use super::*;
use crate::metrics::trace::{Arg, Flow, RequestTrace, Span, Track};

impl Tree<'_> {
    /// The spans and hops of a finished root, ends still open cut at the root's end.
    pub(super) fn spans(&self, workload: WorkloadId, number: u64) -> RequestTrace {
        let Node::Call { end, .. } = self.nodes[0] else {
            unreachable!()
        };
        let mut b = SpanBuilder {
            tree: self,
            cut: end,
            spans: Vec::new(),
            flows: Vec::new(),
        };
        let name = self.spec.workloads[workload.index()].name.clone();
        let track = Track::Client {
            workload: name.clone(),
        };
        b.call(0, None, &track, Some(number));
        RequestTrace {
            workload: name,
            number,
            spans: b.spans,
            flows: b.flows,
        }
    }
}

struct SpanBuilder<'a, 'b> {
    tree: &'b Tree<'a>,
    cut: u64,
    spans: Vec<Span>,
    flows: Vec<Flow>,
}

fn status_text(s: Option<Status>) -> Arg {
    Arg::Text(s.map_or("none (cancelled)", Status::name).to_owned())
}

impl SpanBuilder<'_, '_> {
    fn span(
        &mut self,
        parent: Option<u32>,
        track: &Track,
        name: String,
        cat: &'static str,
        start: u64,
        end: u64,
        mut args: Vec<(&'static str, Arg)>,
    ) -> u32 {
        let end = if end == OPEN || end > self.cut {
            args.push(("cut_at_request_end", Arg::Flag(true)));
            self.cut.max(start)
        } else {
            end
        };
        self.spans.push(Span {
            parent,
            track: track.clone(),
            name,
            cat,
            start_ns: start,
            end_ns: end,
            args,
        });
        (self.spans.len() - 1) as u32
    }

    fn call(&mut self, c: u32, parent: Option<u32>, track: &Track, request: Option<u64>) {
        let t = self.tree;
        let Node::Call {
            edge,
            start,
            end,
            status,
            ..
        } = t.nodes[c as usize]
        else {
            unreachable!()
        };
        let target = &t.spec.endpoints[t.target(edge)].name;
        let (name, cat) = match request {
            Some(n) => (format!("request #{n} -> {target}"), "request"),
            None => (format!("call {target}"), "call"),
        };
        let mut args = vec![
            ("edge", Arg::Text(t.spec.edges[edge.index()].name.clone())),
            ("status", status_text(status)),
        ];
        if let Some(n) = request {
            args.push(("request", Arg::Int(n)));
        }
        let call = self.span(parent, track, name, cat, start, end, args);
        let mut free_from = start;
        for &a in t.kids(c) {
            let Node::Attempt {
                number,
                hedge,
                sent,
                arrived,
                replied,
                end: a_end,
                how,
                backoff,
                invocation,
                ..
            } = t.nodes[a as usize]
            else {
                unreachable!()
            };
            if sent > free_from && !hedge {
                self.span(
                    Some(call),
                    track,
                    "waiting to send".to_owned(),
                    "connection",
                    free_from,
                    sent,
                    vec![],
                );
            }
            let outcome = match how {
                AttemptEnd::InFlight => "in flight".to_owned(),
                AttemptEnd::Answered(s) if s.is_ok() => "ok".to_owned(),
                AttemptEnd::Answered(s) => format!("error {}", s.name()),
                AttemptEnd::Timeout => "timeout".to_owned(),
                AttemptEnd::Cancelled => "cancelled".to_owned(),
                AttemptEnd::Refused(why) => format!("rejected by {why}"),
            };
            let mut args = vec![
                ("attempt", Arg::Int(u64::from(number))),
                ("outcome", Arg::Text(outcome.clone())),
                ("hedge", Arg::Flag(hedge)),
            ];
            if let AttemptEnd::Answered(s) = how {
                args.push(("status", Arg::Text(s.name().to_owned())));
            }
            if backoff > 0 {
                args.push(("backoff_before_next_ms", Arg::Ms(backoff as f64 / 1e6)));
            }
            let kind = if hedge { "hedge" } else { "attempt" };
            let span = self.span(
                Some(call),
                track,
                format!("{kind} {number}: {outcome}"),
                "attempt",
                sent,
                a_end,
                args,
            );
            let a_end = self.spans[span as usize].end_ns;
            if let AttemptEnd::Refused(_) = how {
                // Never left the caller.
                free_from = a_end;
                if backoff > 0 {
                    free_from = self.backoff_span(call, track, a_end, backoff, end);
                }
                continue;
            }
            let out_end = arrived.min(a_end);
            let out = self.span(
                Some(span),
                track,
                format!("-> {target}"),
                "network",
                sent,
                out_end,
                vec![],
            );
            let mut back = None;
            if replied != OPEN && replied <= a_end {
                back = Some(self.span(
                    Some(span),
                    track,
                    format!("<- {target}"),
                    "network",
                    replied,
                    a_end,
                    vec![],
                ));
            }
            if invocation != NONE && arrived <= self.cut {
                let inv = self.invocation(invocation);
                self.flows.push(Flow {
                    name: "request",
                    from: out,
                    from_ns: sent,
                    to: inv,
                    to_ns: arrived,
                });
                if let Some(back) = back {
                    self.flows.push(Flow {
                        name: "reply",
                        from: inv,
                        from_ns: replied,
                        to: back,
                        to_ns: replied,
                    });
                }
            }
            free_from = a_end;
            if backoff > 0 {
                free_from = self.backoff_span(call, track, a_end, backoff, end);
            }
        }
    }

    /// A retry's backoff after an attempt; returns when the next attempt may leave.
    fn backoff_span(
        &mut self,
        call: u32,
        track: &Track,
        from: u64,
        backoff: u64,
        call_end: u64,
    ) -> u64 {
        let until = from.saturating_add(backoff).min(call_end);
        if until > from {
            self.span(
                Some(call),
                track,
                "backoff".to_owned(),
                "backoff",
                from,
                until,
                vec![("ms", Arg::Ms(backoff as f64 / 1e6))],
            );
        }
        until.max(from)
    }

    fn invocation(&mut self, i: u32) -> u32 {
        let t = self.tree;
        let Node::Invocation {
            endpoint,
            replica,
            arrived,
            started,
            end,
            status,
            fiber,
            attempt,
        } = t.nodes[i as usize]
        else {
            unreachable!()
        };
        let service = t.spec.endpoints[endpoint.index()].service;
        let svc = &t.spec.services[service.index()];
        let track = Track::Replica {
            service: svc.name.clone(),
            replica,
        };
        let mut args = vec![
            ("status", status_text(status)),
            ("replica", Arg::Int(u64::from(replica))),
        ];
        if let Node::Attempt { number, .. } = t.nodes[attempt as usize] {
            args.push(("attempt", Arg::Int(u64::from(number))));
        }
        let inv = self.span(
            None,
            &track,
            t.spec.endpoints[endpoint.index()].name.clone(),
            "invocation",
            arrived,
            end,
            args,
        );
        let q_end = started.min(end);
        if q_end > arrived {
            self.span(
                Some(inv),
                &track,
                "queue wait".to_owned(),
                "queue_wait",
                arrived,
                q_end,
                vec![],
            );
        }
        if started != OPEN && started <= self.cut {
            self.fiber(fiber, inv, &track);
        }
        inv
    }

    fn fiber(&mut self, f: u32, parent: u32, track: &Track) {
        let t = self.tree;
        for &s in t.kids(f) {
            let Node::Seg {
                kind, start, until, ..
            } = t.nodes[s as usize]
            else {
                unreachable!()
            };
            if start > self.cut {
                break;
            }
            match kind {
                Seg::Work => {
                    self.span(
                        Some(parent),
                        track,
                        "work".to_owned(),
                        "work",
                        start,
                        until,
                        vec![],
                    );
                }
                Seg::Publish => {
                    self.span(
                        Some(parent),
                        track,
                        "publish (waiting for the confirm)".to_owned(),
                        "publish",
                        start,
                        until,
                        vec![],
                    );
                }
                Seg::Call(c) => {
                    self.call(c, Some(parent), track, None);
                    let Node::Call { end, .. } = t.nodes[c as usize] else {
                        unreachable!()
                    };
                    if until != OPEN && until > end {
                        self.span(
                            Some(parent),
                            track,
                            "waiting for a worker".to_owned(),
                            "queue_wait",
                            end,
                            until,
                            vec![],
                        );
                    }
                }
                Seg::Join(j) => {
                    let Node::Join { decider, .. } = t.nodes[j as usize] else {
                        unreachable!()
                    };
                    let join = self.span(
                        Some(parent),
                        track,
                        "parallel".to_owned(),
                        "parallel",
                        start,
                        until,
                        vec![],
                    );
                    for &b in t.kids(j) {
                        let Node::Fiber {
                            branch,
                            start: b_start,
                            end: b_end,
                            ..
                        } = t.nodes[b as usize]
                        else {
                            unreachable!()
                        };
                        let branch_span = self.span(
                            Some(join),
                            track,
                            format!("branch {}", branch + 1),
                            "branch",
                            b_start,
                            b_end,
                            vec![("decided_the_join", Arg::Flag(decider == branch))],
                        );
                        self.fiber(b, branch_span, track);
                    }
                }
            }
        }
    }
}
