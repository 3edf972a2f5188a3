//! The endpoints' `steps`: each handler compiled to sequences of `Step`s, call targets
//! resolved, and the call graph checked for cycles.

use super::*;

/// A step's one kind, with the field that names it.
#[derive(Clone, Copy)]
enum StepKind<'s> {
    Work(&'s Spanned<RawDist>),
    Call(&'s Spanned<String>),
    Parallel(&'s Spanned<Vec<Spanned<RawStep>>>),
    Fail(&'s Spanned<String>),
    Steps(&'s Spanned<Vec<Spanned<RawStep>>>),
    Stream(&'s Spanned<i64>),
    Publish(&'s Spanned<String>),
    Effect(&'s Spanned<String>),
    Saga(&'s Spanned<Vec<Spanned<RawSagaStep>>>),
}

impl StepKind<'_> {
    /// The field that names the kind in TOML.
    fn name(self) -> &'static str {
        match self {
            StepKind::Work(_) => "work",
            StepKind::Call(_) => "call",
            StepKind::Parallel(_) => "parallel",
            StepKind::Fail(_) => "fail",
            StepKind::Steps(_) => "steps",
            StepKind::Stream(_) => "stream",
            StepKind::Publish(_) => "publish",
            StepKind::Effect(_) => "effect",
            StepKind::Saga(_) => "saga",
        }
    }
}

impl Builder {
    pub(super) fn compile_service(&mut self, service: ServiceId, raw: &RawService) {
        let endpoints = self.services[service.index()].endpoints.clone();
        for (eid, (_, ep)) in endpoints.into_iter().zip(&raw.endpoints) {
            let ep = ep.get_ref();
            let translate = ep
                .translate
                .as_ref()
                .map(|t| self.translation(t))
                .unwrap_or_default();
            let ctx = Ctx {
                service,
                endpoint: eid,
                translate,
            };
            if ep.steps.get_ref().is_empty() {
                self.error(
                    span(&ep.steps),
                    "an endpoint with no steps",
                    "at least one step, e.g. { work = \"10ms\" }",
                );
            }
            let seq = self.compile_seq(&ctx, ep.steps.get_ref(), false);
            self.endpoints[eid.index()].handler = seq;
        }
    }

    pub(super) fn compile_seq(
        &mut self,
        ctx: &Ctx,
        steps: &[Spanned<RawStep>],
        branch: bool,
    ) -> SeqId {
        let mut out = Vec::new();
        for s in steps {
            self.compile_step(ctx, s, branch, &mut out);
        }
        self.seqs.push(out);
        SeqId(self.seqs.len() as u32 - 1)
    }

    /// Appends the steps `step` compiles to; a `steps` sequence is flattened in place.
    fn compile_step(
        &mut self,
        ctx: &Ctx,
        step: &Spanned<RawStep>,
        branch: bool,
        out: &mut Vec<Step>,
    ) {
        let s = step.get_ref();
        let Some(kind) = self.step_kind(step) else {
            return;
        };
        self.check_step_fields(s, kind.name(), branch);
        match kind {
            StepKind::Work(d) => {
                if let Some(d) = self.dist_id(d) {
                    out.push(Step::Work(d));
                }
            }
            StepKind::Fail(status) => self.compile_fail(status, s, out),
            StepKind::Call(target) => self.compile_call(ctx, target, s, out),
            StepKind::Stream(n) => self.compile_stream(n, s, out),
            StepKind::Steps(steps) => {
                for sub in steps.get_ref() {
                    self.compile_step(ctx, sub, false, out);
                }
            }
            StepKind::Parallel(branches) => {
                if let Some(p) = self.compile_parallel(ctx, branches, step) {
                    out.push(Step::Parallel(p));
                }
            }
            StepKind::Publish(target) => self.compile_publish(ctx, target, s, out),
            StepKind::Effect(name) => self.compile_effect(ctx, name, out),
            StepKind::Saga(list) => self.compile_saga(ctx, list, s, out),
        }
    }

    /// The one kind of a step (`work`, `call`, ...), or an error.
    fn step_kind<'s>(&mut self, step: &'s Spanned<RawStep>) -> Option<StepKind<'s>> {
        let s = step.get_ref();
        let kinds: Vec<StepKind> = [
            s.work.as_ref().map(StepKind::Work),
            s.call.as_ref().map(StepKind::Call),
            s.parallel.as_ref().map(StepKind::Parallel),
            s.fail.as_ref().map(StepKind::Fail),
            s.steps.as_ref().map(StepKind::Steps),
            s.stream.as_ref().map(StepKind::Stream),
            s.publish.as_ref().map(StepKind::Publish),
            s.effect.as_ref().map(StepKind::Effect),
            s.saga.as_ref().map(StepKind::Saga),
        ]
        .into_iter()
        .flatten()
        .collect();
        match kinds[..] {
            [kind] => Some(kind),
            _ => {
                let found = if kinds.is_empty() {
                    "none".to_owned()
                } else {
                    kinds
                        .iter()
                        .map(|k| format!("`{}`", k.name()))
                        .collect::<Vec<_>>()
                        .join(" and ")
                };
                self.error(
                    span(step),
                    format!("a step needs exactly one kind; found {found}"),
                    "one of `work`, `call`, `parallel`, `fail`, `steps`, `stream`, `publish`, `effect`, `saga`",
                );
                None
            }
        }
    }

    /// Refuses the fields of other kinds of step, and `required` outside a branch.
    fn check_step_fields(&mut self, s: &RawStep, kind: &str, branch: bool) {
        let misplaced: [(&str, Option<Range<usize>>, &str); 15] = [
            ("key", s.key.as_ref().map(span), "publish"),
            ("confirms", s.confirms.as_ref().map(span), "publish"),
            ("outbox", s.outbox.as_ref().map(span), "publish"),
            ("retries", s.retries.as_ref().map(span), "publish"),
            ("name", s.name.as_ref().map(span), "saga"),
            ("policy", None, "call"),
            ("timeout", s.timeout.as_ref().map(span), "call"),
            ("translate", s.translate.as_ref().map(span), "call"),
            ("policy", s.policy.as_ref().map(span), "call"),
            ("retry_after", s.retry_after.as_ref().map(span), "fail"),
            ("interval", s.interval.as_ref().map(span), "stream"),
            ("join", s.join.as_ref().map(span), "parallel"),
            ("quorum", s.quorum.as_ref().map(span), "parallel"),
            ("p", s.p.as_ref().map(span), "fail"),
            ("required", s.required.as_ref().map(span), ""),
        ];
        for (field, sp, owner) in misplaced {
            let Some(sp) = sp else { continue };
            if field == "required" {
                if !branch {
                    self.error(
                        sp,
                        "`required` only applies to a branch of a parallel step",
                        "`required` on a branch of `parallel` with join = \"all_settled\"",
                    );
                }
            } else if owner != kind {
                self.error(
                    sp,
                    format!("`{field}` does not apply to a `{kind}` step"),
                    format!("`{field}` on a `{owner}` step"),
                );
            }
        }
    }

    /// A `fail` step: a status with probability `p`.
    fn compile_fail(&mut self, status: &Spanned<String>, s: &RawStep, out: &mut Vec<Step>) {
        let status = self.status(status, false);
        let p = match &s.p {
            Some(p) => self.probability(p, "`p`"),
            None => Some(1.0),
        };
        let retry_after = s.retry_after.as_ref().and_then(|r| self.pushback(r));
        if let (Some(status), Some(p)) = (status, p) {
            out.push(Step::Fail {
                status,
                p,
                retry_after,
            });
        }
    }

    /// A `call` step: its edge (under a policy), timeout and status translation.
    fn compile_call(
        &mut self,
        ctx: &Ctx,
        target: &Spanned<String>,
        s: &RawStep,
        out: &mut Vec<Step>,
    ) {
        let timeout = s
            .timeout
            .as_ref()
            .and_then(|t| self.positive_duration(t, "a timeout"));
        let translate = match &s.translate {
            Some(t) => ctx.translate.overlaid(&self.translation(t)),
            None => ctx.translate,
        };
        let policy = self.policy_ref(s.policy.as_ref());
        if let Some(eid) = self.resolve_endpoint(target) {
            let caller = self.services[ctx.service.index()].name.clone();
            let at = s.policy.as_ref().map_or_else(|| span(target), span);
            let edge = self.edge(&caller, eid, policy, at);
            self.graph
                .entry(ctx.endpoint)
                .or_default()
                .push((eid, span(target)));
            out.push(Step::Call(CallSite {
                edge,
                timeout,
                translate,
            }));
        }
    }

    /// A `stream` step: `messages` sent `interval` apart.
    fn compile_stream(&mut self, n: &Spanned<i64>, s: &RawStep, out: &mut Vec<Step>) {
        let messages = self.bounded(
            n,
            1,
            bounds::MAX_STREAM_MESSAGES,
            "the number of messages",
            "at least 1 message",
        );
        let interval = match &s.interval {
            Some(d) => self.dist_id(d),
            None => {
                self.dists.push(Dist::Constant(SimDuration::ZERO));
                Some(DistId(self.dists.len() as u32 - 1))
            }
        };
        if let (Some(messages), Some(interval)) = (messages, interval) {
            out.push(Step::Stream { messages, interval });
        }
    }

    fn compile_parallel(
        &mut self,
        ctx: &Ctx,
        branches_raw: &Spanned<Vec<Spanned<RawStep>>>,
        step: &Spanned<RawStep>,
    ) -> Option<ParallelId> {
        let s = step.get_ref();
        let n = branches_raw.get_ref().len();
        if n == 0 {
            self.error(
                span(branches_raw),
                "a parallel step with no branches",
                "at least one branch",
            );
            return None;
        }
        let join = self.join(step)?;
        if let Join::Quorum(q) = join
            && q as usize > n
        {
            self.error(
                span(s.quorum.as_ref().expect("quorum join")),
                format!("a quorum of {q} out of {n} branches can never be reached"),
                format!("a quorum from 1 to {n}"),
            );
            return None;
        }
        if let Some(quorum) = &s.quorum
            && !matches!(join, Join::Quorum(_))
        {
            self.error(
                span(quorum),
                "`quorum` needs join = \"quorum\"",
                "join = \"quorum\"",
            );
        }
        let mut branches = Vec::new();
        for b in branches_raw.get_ref() {
            if let Some(r) = &b.get_ref().required
                && join != Join::AllSettled
            {
                self.error(
                    span(r),
                    "`required` only means something with join = \"all_settled\"",
                    "join = \"all_settled\" on the parallel step",
                );
            }
            let required = b.get_ref().required.as_ref().is_none_or(|r| *r.get_ref());
            let body = self.compile_seq(ctx, std::slice::from_ref(b), true);
            branches.push(Branch { body, required });
        }
        self.parallels.push(ParallelSpec { join, branches });
        Some(ParallelId(self.parallels.len() as u32 - 1))
    }

    /// How a parallel step joins its branches: `join`, and `quorum` for a quorum.
    fn join(&mut self, step: &Spanned<RawStep>) -> Option<Join> {
        let s = step.get_ref();
        Some(match s.join.as_ref().map(|j| (j, j.get_ref().as_str())) {
            None | Some((_, "all")) => Join::All,
            Some((_, "all_settled")) => Join::AllSettled,
            Some((_, "any")) => Join::Any,
            Some((_, "quorum")) => {
                let Some(q) = &s.quorum else {
                    self.error(
                        span(step),
                        "join = \"quorum\" needs `quorum = N`",
                        "`quorum = N` with 1 <= N <= the number of branches",
                    );
                    return None;
                };
                Join::Quorum(self.int_u32(
                    q,
                    1,
                    "the quorum",
                    "1 <= quorum <= the number of branches",
                )?)
            }
            Some((j, other)) => {
                self.error(
                    span(j),
                    format!("unknown join `{other}`"),
                    "one of: all, all_settled, any, quorum",
                );
                return None;
            }
        })
    }

    pub(super) fn resolve_endpoint(&mut self, target: &Spanned<String>) -> Option<EndpointId> {
        let t = target.get_ref();
        if let Some(&id) = self.endpoint_ids.get(t) {
            return Some(id);
        }
        let (svc, _) = t.split_once('/').unwrap_or((t, ""));
        let (message, expected) = if !t.contains('/') {
            (
                format!("`{t}` does not name an endpoint"),
                "SERVICE/ENDPOINT, e.g. \"inventory/check\"".to_owned(),
            )
        } else if let Some(&sid) = self.service_ids.get(svc) {
            let eps: Vec<&str> = self.services[sid.index()]
                .endpoints
                .iter()
                .map(|e| self.endpoints[e.index()].name.as_str())
                .collect();
            (
                format!("service `{svc}` has no endpoint `{}`", &t[svc.len() + 1..]),
                format!("one of: {}", eps.join(", ")),
            )
        } else {
            let known: Vec<&str> = self.service_ids.keys().map(String::as_str).collect();
            (
                format!("unknown service `{svc}` in `{t}`"),
                format!("a service of this scenario: {}", known.join(", ")),
            )
        };
        self.error(span(target), message, expected);
        None
    }

    /// A call cycle would make a request call itself forever; refuse it up front.
    pub(super) fn check_cycles(&mut self) {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            OnPath,
            Done,
        }
        let n = self.endpoints.len();
        let mut mark = vec![Mark::New; n];
        let mut found: Option<(Vec<EndpointId>, Range<usize>)> = None;
        fn visit(
            e: EndpointId,
            graph: &Graph,
            mark: &mut [Mark],
            path: &mut Vec<EndpointId>,
            found: &mut Option<(Vec<EndpointId>, Range<usize>)>,
        ) {
            mark[e.index()] = Mark::OnPath;
            path.push(e);
            for (next, sp) in graph.get(&e).map(Vec::as_slice).unwrap_or(&[]) {
                if found.is_some() {
                    return;
                }
                match mark[next.index()] {
                    Mark::OnPath => {
                        let start = path.iter().position(|p| p == next).expect("on path");
                        let mut cycle = path[start..].to_vec();
                        cycle.push(*next);
                        *found = Some((cycle, sp.clone()));
                        return;
                    }
                    Mark::New => visit(*next, graph, mark, path, found),
                    Mark::Done => {}
                }
            }
            path.pop();
            mark[e.index()] = Mark::Done;
        }
        for e in 0..n {
            if mark[e] == Mark::New && found.is_none() {
                visit(
                    EndpointId(e as u32),
                    &self.graph,
                    &mut mark,
                    &mut Vec::new(),
                    &mut found,
                );
            }
        }
        if let Some((cycle, sp)) = found {
            let names: Vec<&str> = cycle
                .iter()
                .map(|e| self.endpoints[e.index()].name.as_str())
                .collect();
            let message = format!("call cycle {} can recurse forever", names.join(" -> "));
            self.error(sp, message, "a call graph without cycles");
        }
    }
}
