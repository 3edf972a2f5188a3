//! A finished root's nodes turned into the spans and flows of a Chrome trace.

use super::tree::Tree;
use super::*;
use crate::metrics::trace::{Arg, Flow, RequestTrace, Span, Track};
use crate::model::spec::BrokerId;

impl Tree<'_> {
    /// The spans and hops of a finished root, ends still open cut at `cut` (and
    /// marked with the argument `cut_arg`).
    pub(super) fn spans(
        &self,
        workload: WorkloadId,
        number: u64,
        cut: u64,
        cut_arg: &'static str,
    ) -> RequestTrace {
        let mut b = SpanBuilder {
            tree: self,
            cut,
            cut_arg,
            spans: Vec::new(),
            flows: Vec::new(),
            span_of: vec![NONE; self.nodes.len()],
            publish_waits: Vec::new(),
        };
        let name = self.spec.workloads[workload.index()].name.clone();
        let track = Track::Client {
            workload: name.clone(),
        };
        b.call(0, None, &track, Some(number));
        b.messages();
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
    cut_arg: &'static str,
    spans: Vec<Span>,
    flows: Vec<Flow>,
    /// Per node, its span: for a fiber, the span its steps go in (its invocation or
    /// branch); for a publish, where its hop leaves from. NONE when not drawn.
    span_of: Vec<u32>,
    /// Confirm waits drawn: (fiber node, start, span).
    publish_waits: Vec<(u32, u64, u32)>,
}

fn status_text(s: Option<Status>) -> Arg {
    Arg::Text(s.map_or("none (cancelled)", Status::name).to_owned())
}

impl SpanBuilder<'_, '_> {
    #[allow(clippy::too_many_arguments)]
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
            args.push((self.cut_arg, Arg::Flag(true)));
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
            free_from = self.attempt(a, call, end, track, target, free_from);
        }
    }

    /// One attempt of a call (with the wait for a connection before it, its hops,
    /// and the backoff after it); returns when the next attempt may leave.
    fn attempt(
        &mut self,
        a: u32,
        call: u32,
        call_end: u64,
        track: &Track,
        target: &str,
        free_from: u64,
    ) -> u64 {
        let Node::Attempt {
            number,
            hedge,
            sent,
            end: a_end,
            how,
            backoff,
            ..
        } = self.tree.nodes[a as usize]
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
        let outcome = attempt_outcome(how);
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
        // A refused attempt never left the caller.
        if !matches!(how, AttemptEnd::Refused(_)) {
            self.attempt_hops(a, span, a_end, track, target);
        }
        if backoff > 0 {
            self.backoff_span(call, track, a_end, backoff, call_end)
        } else {
            a_end
        }
    }

    /// An attempt's hop to its target and back, and the flows to and from the
    /// invocation it made there.
    fn attempt_hops(&mut self, a: u32, span: u32, a_end: u64, track: &Track, target: &str) {
        let Node::Attempt {
            sent,
            arrived,
            replied,
            invocation,
            ..
        } = self.tree.nodes[a as usize]
        else {
            unreachable!()
        };
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
        let mut name = t.spec.endpoints[endpoint.index()].name.clone();
        match t.nodes[attempt as usize] {
            Node::Attempt { number, .. } => args.push(("attempt", Arg::Int(u64::from(number)))),
            Node::Delivery {
                number,
                redelivered,
                copy,
                ..
            } => {
                if let Node::Copy { msg, .. } = t.nodes[copy as usize] {
                    name = format!("{name} (msg #{msg}, delivery {number})");
                    args.push(("message", Arg::Int(msg)));
                }
                args.push(("delivery", Arg::Int(u64::from(number))));
                args.push(("redelivered", Arg::Flag(redelivered)));
            }
            _ => unreachable!("an invocation answers an attempt or a delivery"),
        }
        let inv = self.span(None, &track, name, "invocation", arrived, end, args);
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
        self.span_of[i as usize] = inv;
        self.span_of[fiber as usize] = inv;
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
                    let span = self.span(
                        Some(parent),
                        track,
                        "publish (waiting for the confirm)".to_owned(),
                        "publish",
                        start,
                        until,
                        vec![],
                    );
                    self.publish_waits.push((f, start, span));
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
                Seg::Join(j) => self.join(j, parent, track, start, until),
            }
        }
    }

    /// A parallel step: its span, and a span per branch holding the branch's steps.
    fn join(&mut self, j: u32, parent: u32, track: &Track, start: u64, until: u64) {
        let t = self.tree;
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
            self.span_of[b as usize] = branch_span;
            self.fiber(b, branch_span, track);
        }
    }
}

impl CopyEnd {
    fn text(self, dead_letter_queue: bool) -> String {
        let gone = |why: &str| {
            if dead_letter_queue {
                format!("dead-lettered ({why})")
            } else {
                format!("dropped ({why})")
            }
        };
        match self {
            CopyEnd::Open => "still at the broker".to_owned(),
            CopyEnd::Acked => "acked".to_owned(),
            CopyEnd::Handled => "handled".to_owned(),
            CopyEnd::GaveUp => "given up (the handler failed)".to_owned(),
            CopyEnd::Rejected => gone("rejected"),
            CopyEnd::Expired => gone("expired"),
            CopyEnd::MaxLength => gone("max length"),
            CopyEnd::DeliveryLimit => gone("delivery limit"),
        }
    }
}

impl DeliveryEnd {
    fn text(self) -> &'static str {
        match self {
            DeliveryEnd::Open => "unsettled",
            DeliveryEnd::Ack => "ack",
            DeliveryEnd::Nack => "nack (requeue)",
            DeliveryEnd::Reject => "reject",
            DeliveryEnd::Retry => "retry after a backoff",
            DeliveryEnd::AckTimeout => "ack timeout",
            DeliveryEnd::TakenBack => "taken back",
            DeliveryEnd::HandledOk => "handled",
            DeliveryEnd::HandledFailed => "handler failed",
        }
    }

    /// The name of the hop that carried the consumer's answer back, if one did.
    fn settlement(self) -> Option<&'static str> {
        match self {
            DeliveryEnd::Ack => Some("ack"),
            DeliveryEnd::Nack => Some("nack"),
            DeliveryEnd::Reject => Some("reject"),
            DeliveryEnd::Retry => Some("retry"),
            DeliveryEnd::HandledOk => Some("handled"),
            DeliveryEnd::HandledFailed => Some("failed"),
            DeliveryEnd::Open | DeliveryEnd::AckTimeout | DeliveryEnd::TakenBack => None,
        }
    }
}

/// Where a publish site sends: its exchange, its queue(s) or its topic.
fn publish_target(spec: &Spec, site: PublishId) -> String {
    match &spec.publishes[site.index()].target {
        crate::model::spec::PublishTarget::Queues { exchange, queues } => match exchange {
            Some(e) => spec.exchanges[e.index()].name.clone(),
            None => queues
                .iter()
                .map(|q| spec.queues[q.index()].name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        },
        crate::model::spec::PublishTarget::Topic(t) => spec.topics[t.index()].name.clone(),
    }
}

impl SpanBuilder<'_, '_> {
    /// The messages the root's handlers published: the publish on the publisher's
    /// track, each copy's life on its broker's track (waiting, deliveries, retry
    /// backoffs), each delivery's handler on its consumer's track, and the hops
    /// between them. Nodes come in time order, so a publish is drawn before its
    /// copies, and a consumer's handler before what it publishes.
    fn messages(&mut self) {
        let t = self.tree;
        for n in 0..t.nodes.len() as u32 {
            match t.nodes[n as usize] {
                Node::Publish { .. } => self.publish(n),
                Node::Copy { .. } => self.copy(n),
                _ => {}
            }
        }
    }

    fn publish(&mut self, p: u32) {
        let t = self.tree;
        let Node::Publish {
            fiber,
            site,
            msg,
            at,
            ..
        } = t.nodes[p as usize]
        else {
            unreachable!()
        };
        let container = self.span_of[fiber as usize];
        if container == NONE || at > self.cut {
            return;
        }
        let target = publish_target(t.spec, site);
        let args = vec![
            ("message", Arg::Int(msg)),
            ("to", Arg::Text(target.clone())),
        ];
        if let Some(&(_, _, wait)) = self
            .publish_waits
            .iter()
            .find(|&&(f, start, _)| f == fiber && start == at)
        {
            let s = &mut self.spans[wait as usize];
            s.name = format!("publish msg #{msg} -> {target} (waiting for the confirm)");
            s.args.extend(args);
            self.span_of[p as usize] = wait;
        } else {
            let track = self.spans[container as usize].track.clone();
            self.span(
                Some(container),
                &track,
                format!("publish msg #{msg} -> {target}"),
                "publish",
                at,
                at,
                args,
            );
            // The hop leaves from the handler (a zero-length span binds no flow).
            self.span_of[p as usize] = container;
        }
    }

    fn copy(&mut self, c: u32) {
        let t = self.tree;
        let Node::Copy {
            msg,
            place,
            start,
            end,
            how,
            ..
        } = t.nodes[c as usize]
        else {
            unreachable!()
        };
        if start > self.cut {
            return;
        }
        let spec = t.spec;
        let (broker, thread, name, waiting, mut args) = copy_place(spec, place, msg, how);
        args.insert(0, ("message", Arg::Int(msg)));
        let deliveries = t.kids(c);
        args.push(("deliveries", Arg::Int(deliveries.len() as u64)));
        let track = Track::Broker {
            broker: spec.brokers[broker.index()].name.clone(),
            place: thread,
        };
        let span = self.span(None, &track, name, "message", start, end, args);
        self.span_of[c as usize] = span;
        self.copy_arrival(c, span);
        let copy_end = self.spans[span as usize].end_ns;
        let mut ready_from = start;
        for &d in deliveries {
            let Node::Delivery { sent, .. } = t.nodes[d as usize] else {
                unreachable!()
            };
            if sent > self.cut {
                break;
            }
            // A topic group rewound to a record it had handled reads it again.
            let inside = sent < copy_end || how == CopyEnd::Open;
            let parent = inside.then_some(span);
            ready_from = self.delivery(d, msg, parent, &track, waiting, ready_from);
        }
        // Left the queue without a delivery ending it: expired, dropped, or cut.
        if copy_end > ready_from && !matches!(how, CopyEnd::Acked | CopyEnd::Handled) {
            self.span(
                Some(span),
                &track,
                waiting.to_owned(),
                "queued",
                ready_from,
                copy_end,
                vec![],
            );
        }
    }

    /// The hop a message copy came by: published, or dead-lettered from another queue.
    fn copy_arrival(&mut self, c: u32, span: u32) {
        let t = self.tree;
        let Node::Copy {
            publish,
            from,
            start,
            ..
        } = t.nodes[c as usize]
        else {
            unreachable!()
        };
        let (hop, source, at) = if from != NONE {
            let Node::Copy { end, .. } = t.nodes[from as usize] else {
                unreachable!()
            };
            ("dead-letter", from, end)
        } else if publish != NONE {
            let Node::Publish { at, .. } = t.nodes[publish as usize] else {
                unreachable!()
            };
            ("publish", publish, at)
        } else {
            ("", NONE, 0)
        };
        if source != NONE && self.span_of[source as usize] != NONE {
            self.flows.push(Flow {
                name: hop,
                from: self.span_of[source as usize],
                from_ns: at,
                to: span,
                to_ns: start,
            });
        }
    }

    /// One delivery of a message copy: its span (inside the copy's span when
    /// `parent` is set, with the wait before it and the retry backoff after it) and
    /// its consumer's handler. Returns when the copy is next ready for delivery.
    fn delivery(
        &mut self,
        d: u32,
        msg: u64,
        parent: Option<u32>,
        track: &Track,
        waiting: &'static str,
        ready_from: u64,
    ) -> u64 {
        let t = self.tree;
        let Node::Delivery {
            number,
            sent,
            requeued,
            end: d_end,
            how: d_how,
            invocation,
            ..
        } = t.nodes[d as usize]
        else {
            unreachable!()
        };
        let mut args = self.delivery_args(d, msg);
        if parent.is_some() {
            if sent > ready_from {
                self.span(
                    parent,
                    track,
                    waiting.to_owned(),
                    "queued",
                    ready_from,
                    sent,
                    vec![],
                );
            }
            args.push(("waited_ms", Arg::Ms((sent - ready_from) as f64 / 1e6)));
        }
        let dspan = self.span(
            parent,
            track,
            format!("delivery {number}: {}", d_how.text()),
            "delivery",
            sent,
            d_end,
            args,
        );
        self.span_of[d as usize] = dspan;
        let d_end = self.spans[dspan as usize].end_ns;
        let mut ready_from = d_end;
        if requeued != OPEN && requeued <= self.cut {
            if parent.is_some() && requeued > d_end {
                self.span(
                    parent,
                    track,
                    "retry backoff".to_owned(),
                    "backoff",
                    d_end,
                    requeued,
                    vec![],
                );
            }
            ready_from = requeued;
        }
        if invocation != NONE {
            self.consumer(d, dspan, invocation, d_how);
        }
        ready_from
    }

    /// A delivery span's arguments: which message, which try, who took it, how it ended.
    fn delivery_args(&self, d: u32, msg: u64) -> Vec<(&'static str, Arg)> {
        let Node::Delivery {
            consumer,
            instance,
            number,
            redelivered,
            how,
            ..
        } = self.tree.nodes[d as usize]
        else {
            unreachable!()
        };
        vec![
            ("message", Arg::Int(msg)),
            ("delivery", Arg::Int(u64::from(number))),
            ("redelivered", Arg::Flag(redelivered)),
            (
                "consumer",
                Arg::Text(self.tree.spec.consumers[consumer.index()].name.clone()),
            ),
            ("instance", Arg::Int(u64::from(instance))),
            ("outcome", Arg::Text(how.text().to_owned())),
        ]
    }

    /// A delivery's handler on its consumer's track, with the hop there and the
    /// settlement's hop back.
    fn consumer(&mut self, d: u32, dspan: u32, i: u32, how: DeliveryEnd) {
        let Node::Invocation { arrived, end, .. } = self.tree.nodes[i as usize] else {
            unreachable!()
        };
        if arrived > self.cut {
            return;
        }
        let inv = self.invocation(i);
        let Node::Delivery { sent, .. } = self.tree.nodes[d as usize] else {
            unreachable!()
        };
        self.flows.push(Flow {
            name: "deliver",
            from: dspan,
            from_ns: sent,
            to: inv,
            to_ns: arrived,
        });
        let d_end = self.spans[dspan as usize].end_ns;
        if let Some(name) = how.settlement()
            && end != OPEN
            && end <= d_end
        {
            self.flows.push(Flow {
                name,
                from: inv,
                from_ns: end,
                to: dspan,
                to_ns: d_end,
            });
        }
    }
}

/// Where a message copy waits: (broker, its place on the broker's track, the copy's
/// span name, the name of its waiting spans, the place's arguments).
fn copy_place(
    spec: &Spec,
    place: Place,
    msg: u64,
    how: CopyEnd,
) -> (
    BrokerId,
    String,
    String,
    &'static str,
    Vec<(&'static str, Arg)>,
) {
    match place {
        Place::Queue(q) => {
            let qs = &spec.queues[q.index()];
            (
                qs.broker,
                qs.name.clone(),
                format!("msg #{msg} in {}", qs.name),
                "in queue",
                vec![
                    ("queue", Arg::Text(qs.name.clone())),
                    ("outcome", Arg::Text(how.text(qs.dead_letter.is_some()))),
                ],
            )
        }
        Place::Log {
            topic,
            partition,
            offset,
            group,
        } => {
            let ts = &spec.topics[topic.index()];
            let g = &spec.consumers[group.index()].name;
            (
                ts.broker,
                format!("{}/p{partition} ({g})", ts.name),
                format!("msg #{msg} at offset {offset}"),
                "in partition",
                vec![
                    ("topic", Arg::Text(ts.name.clone())),
                    ("partition", Arg::Int(u64::from(partition))),
                    ("offset", Arg::Int(offset)),
                    ("group", Arg::Text(g.clone())),
                    ("outcome", Arg::Text(how.text(false))),
                ],
            )
        }
    }
}

/// How an attempt ended, as its span names it.
fn attempt_outcome(how: AttemptEnd) -> String {
    match how {
        AttemptEnd::InFlight => "in flight".to_owned(),
        AttemptEnd::Answered(s) if s.is_ok() => "ok".to_owned(),
        AttemptEnd::Answered(s) => format!("error {}", s.name()),
        AttemptEnd::Timeout => "timeout".to_owned(),
        AttemptEnd::Cancelled => "cancelled".to_owned(),
        AttemptEnd::Refused(why) => format!("rejected by {why}"),
    }
}
