//! The `World`'s hooks: one call each from the model's rooms, a branch when the
//! recorder is off.

use super::*;

/// The hooks the model calls. Each is one test of the recorder when it is off (the
/// larger ones keep their bodies out of line, in `*_recorded`, so that test stays inlined).
impl World {
    /// The path's step alone, when the tree records nothing: true, and the hook is done.
    /// False when the tree records too: the hook's `_tree` variant steps the path itself.
    #[inline(always)]
    fn path_only(&mut self, step: impl FnOnce(&mut Paths)) -> bool {
        match self.recorder.as_deref_mut() {
            Some(r) if !r.tree_records() => {
                if let Some(p) = &mut r.path {
                    step(p);
                }
                true
            }
            _ => false,
        }
    }

    #[inline]
    pub(in crate::model) fn trace_call(
        &mut self,
        l: CallId,
        origin: Origin,
        edge: EdgeId,
        now: crate::engine::SimTime,
    ) {
        if self.recorder.is_some() {
            self.trace_call_recorded(l, origin, edge, now);
        }
    }

    #[inline(never)]
    fn trace_call_recorded(
        &mut self,
        l: CallId,
        origin: Origin,
        edge: EdgeId,
        now: crate::engine::SimTime,
    ) {
        if let Some(r) = self.recorder.as_deref_mut() {
            let measured = now >= self.warmup_end;
            if r.tree_records() {
                r.call_started(&self.spec, l, origin, edge, now.as_nanos(), measured);
            } else {
                r.path_call(&self.spec, l, origin, edge, now.as_nanos(), measured);
            }
        }
    }

    /// A logical call is over (`None`: abandoned by its caller).
    #[inline]
    pub(in crate::model) fn trace_call_end(
        &mut self,
        l: CallId,
        status: Option<Status>,
        now: crate::engine::SimTime,
    ) {
        if self.recorder.is_some() {
            self.trace_call_end_recorded(l, status, now);
        }
    }

    /// The path's step alone unless the tree records too (then `_tree` takes both).
    #[inline(never)]
    fn trace_call_end_recorded(
        &mut self,
        l: CallId,
        status: Option<Status>,
        now: crate::engine::SimTime,
    ) {
        match self.recorder.as_deref_mut() {
            Some(r) if !r.tree_records() => r.path_call_end(l, now.as_nanos()),
            _ => self.trace_call_end_tree(l, status, now),
        }
    }

    #[inline(never)]
    fn trace_call_end_tree(
        &mut self,
        l: CallId,
        status: Option<Status>,
        now: crate::engine::SimTime,
    ) {
        if let Some(r) = self.recorder.as_deref_mut() {
            let now = now.as_nanos();
            r.path_call_end(l, now);
            if !r.tree_records() {
                return;
            }
            let Some((root, n)) = r.calls.get(l, &r.roots) else {
                return;
            };
            if let Node::Call {
                end,
                status: s,
                fiber,
                ..
            } = r.node(root, n)
            {
                if *end != OPEN {
                    return;
                }
                *end = now;
                *s = status;
                if *fiber == NONE {
                    r.root_ended(&self.spec, root);
                }
            }
        }
    }

    #[inline]
    pub(in crate::model) fn trace_attempt(
        &mut self,
        a: AttemptId,
        l: CallId,
        number: u32,
        hedge: bool,
        now: crate::engine::SimTime,
    ) {
        if self.recorder.is_some() {
            self.trace_attempt_recorded(a, l, number, hedge, now);
        }
    }

    #[inline(never)]
    fn trace_attempt_recorded(
        &mut self,
        a: AttemptId,
        l: CallId,
        number: u32,
        hedge: bool,
        now: crate::engine::SimTime,
    ) {
        if !self.path_only(|p| p.attempt(a, l, now.as_nanos())) {
            self.trace_attempt_tree(a, l, number, hedge, now);
        }
    }

    #[inline(never)]
    fn trace_attempt_tree(
        &mut self,
        a: AttemptId,
        l: CallId,
        number: u32,
        hedge: bool,
        now: crate::engine::SimTime,
    ) {
        if let Some(r) = self.recorder.as_deref_mut()
            && r.on_path(|p| p.attempt(a, l, now.as_nanos()))
        {
            r.attempt(a, l, number, hedge, now.as_nanos(), AttemptEnd::InFlight);
        }
    }

    /// An attempt refused before it left ("breaker", "bulkhead", "rate_limit").
    #[inline]
    pub(in crate::model) fn trace_refused(
        &mut self,
        l: CallId,
        number: u32,
        why: &'static str,
        now: crate::engine::SimTime,
    ) {
        if let Some(r) = self.recorder.as_deref_mut()
            && r.on_path(|p| p.refused(l, now.as_nanos()))
        {
            r.attempt_refused(l, number, now.as_nanos(), why);
        }
    }

    #[inline]
    pub(in crate::model) fn trace_attempt_end(
        &mut self,
        a: AttemptId,
        how: AttemptEnd,
        now: crate::engine::SimTime,
    ) {
        if self.recorder.is_some() {
            self.trace_attempt_end_recorded(a, how, now);
        }
    }

    #[inline(never)]
    fn trace_attempt_end_recorded(
        &mut self,
        a: AttemptId,
        how: AttemptEnd,
        now: crate::engine::SimTime,
    ) {
        if !self.path_only(|p| p.attempt_end(a, now.as_nanos())) {
            self.trace_attempt_end_tree(a, how, now);
        }
    }

    #[inline(never)]
    fn trace_attempt_end_tree(
        &mut self,
        a: AttemptId,
        how: AttemptEnd,
        now: crate::engine::SimTime,
    ) {
        if let Some(r) = self.recorder.as_deref_mut()
            && r.on_path(|p| p.attempt_end(a, now.as_nanos()))
            && let Some((root, n)) = r.attempts.get(a, &r.roots)
            && let Node::Attempt { end, how: h, .. } = r.node(root, n)
            && *end == OPEN
        {
            *end = now.as_nanos();
            *h = how;
        }
    }

    /// A failed attempt's call waits `delay` before its next attempt.
    #[inline]
    pub(in crate::model) fn trace_backoff(&mut self, l: CallId, delay: SimDuration) {
        if let Some(r) = self.recorder.as_deref_mut()
            && r.on_path(|p| p.backoff(l, delay.as_nanos()))
            && let Some((root, c)) = r.calls.get(l, &r.roots)
        {
            let last = r.roots[root as usize]
                .nodes
                .iter()
                .rposition(|n| matches!(n, Node::Attempt { call, .. } if *call == c));
            if let Some(a) = last
                && let Node::Attempt { backoff, .. } = &mut r.roots[root as usize].nodes[a]
            {
                *backoff = delay.as_nanos();
            }
        }
    }

    /// An attempt's request reaches its callee.
    #[inline]
    pub(in crate::model) fn trace_arrived(&mut self, a: AttemptId, now: crate::engine::SimTime) {
        if let Some(r) = self.recorder.as_deref_mut()
            && r.tree_records()
            && let Some((root, n)) = r.attempts.get(a, &r.roots)
            && let Node::Attempt { arrived, .. } = r.node(root, n)
        {
            *arrived = now.as_nanos();
        }
    }

    /// The callee sends an attempt's reply.
    #[inline]
    pub(in crate::model) fn trace_replied(&mut self, a: AttemptId, now: crate::engine::SimTime) {
        if let Some(r) = self.recorder.as_deref_mut()
            && r.tree_records()
            && let Some((root, n)) = r.attempts.get(a, &r.roots)
            && let Node::Attempt { replied, .. } = r.node(root, n)
        {
            *replied = now.as_nanos();
        }
    }

    /// A request is admitted (on a worker now, or queued); `root` is its handler's fiber.
    #[inline]
    pub(in crate::model) fn trace_admitted(
        &mut self,
        i: InvocationId,
        now: crate::engine::SimTime,
    ) {
        if self.recorder.is_some() {
            self.trace_admitted_recorded(i, now);
        }
    }

    #[inline(never)]
    fn trace_admitted_recorded(&mut self, i: InvocationId, now: crate::engine::SimTime) {
        match self.recorder.as_deref_mut() {
            Some(r) if !r.tree_records() => {
                r.path_admitted(&self.invocations[i], i, now.as_nanos());
            }
            _ => self.trace_admitted_tree(i, now),
        }
    }

    #[inline(never)]
    fn trace_admitted_tree(&mut self, i: InvocationId, now: crate::engine::SimTime) {
        if let Some(r) = self.recorder.as_deref_mut() {
            let inv = &self.invocations[i];
            if !r.path_admitted(inv, i, now.as_nanos()) {
                return;
            }
            // Its parent: the attempt it answers, or the delivery it handles.
            let parent = match inv.answer_to {
                crate::model::world::AnswerTo::Attempt { attempt, .. } => {
                    r.attempts.get(attempt, &r.roots)
                }
                crate::model::world::AnswerTo::Delivery(d) => r.deliveries.get(d, &r.roots),
            };
            let Some((root, a)) = parent else {
                return;
            };
            let now = now.as_nanos();
            let started = if inv.worker_since.is_some() {
                now
            } else {
                OPEN
            };
            let (endpoint, replica, fiber_id) = (inv.endpoint, inv.replica, inv.root);
            let n = r.push(
                root,
                Node::Invocation {
                    attempt: a,
                    endpoint,
                    replica: replica
                        - self.first_replica[self.spec.endpoints[endpoint.index()].service.index()],
                    arrived: now,
                    started,
                    end: OPEN,
                    status: None,
                    fiber: NONE,
                },
            );
            let generation = r.roots[root as usize].generation;
            r.invocations.set(i, root, generation, n);
            let f = r.new_fiber(root, fiber_id, n, NONE, 0, started);
            if let Node::Invocation { fiber, .. } = r.node(root, n) {
                *fiber = f;
            }
            match r.node(root, a) {
                Node::Attempt { invocation, .. } | Node::Delivery { invocation, .. } => {
                    *invocation = n;
                }
                _ => {}
            }
        }
    }

    /// A queued request gets its worker.
    #[inline]
    pub(in crate::model) fn trace_started(&mut self, i: InvocationId, now: crate::engine::SimTime) {
        if self.recorder.is_some() {
            self.trace_started_recorded(i, now);
        }
    }

    #[inline(never)]
    fn trace_started_recorded(&mut self, i: InvocationId, now: crate::engine::SimTime) {
        if !self.path_only(|p| p.started(i, now.as_nanos())) {
            self.trace_started_tree(i, now);
        }
    }

    #[inline(never)]
    fn trace_started_tree(&mut self, i: InvocationId, now: crate::engine::SimTime) {
        if let Some(r) = self.recorder.as_deref_mut()
            && r.on_path(|p| p.started(i, now.as_nanos()))
            && let Some((root, n)) = r.invocations.get(i, &r.roots)
            && let Node::Invocation { started, fiber, .. } = *r.node(root, n)
            && started == OPEN
        {
            let now = now.as_nanos();
            if let Node::Invocation { started, .. } = r.node(root, n) {
                *started = now;
            }
            if let Node::Fiber {
                last_run, start, ..
            } = r.node(root, fiber)
            {
                *last_run = now;
                *start = now;
            }
        }
    }

    /// An invocation answers (`None`: lost in a crash).
    #[inline]
    pub(in crate::model) fn trace_answered(
        &mut self,
        i: InvocationId,
        status: Option<Status>,
        now: crate::engine::SimTime,
    ) {
        if self.recorder.is_some() {
            self.trace_answered_recorded(i, status, now);
        }
    }

    #[inline(never)]
    fn trace_answered_recorded(
        &mut self,
        i: InvocationId,
        status: Option<Status>,
        now: crate::engine::SimTime,
    ) {
        if !self.path_only(|p| p.answered(i, status.is_some(), now.as_nanos())) {
            self.trace_answered_tree(i, status, now);
        }
    }

    #[inline(never)]
    fn trace_answered_tree(
        &mut self,
        i: InvocationId,
        status: Option<Status>,
        now: crate::engine::SimTime,
    ) {
        if let Some(r) = self.recorder.as_deref_mut()
            && r.on_path(|p| p.answered(i, status.is_some(), now.as_nanos()))
            && let Some((root, n)) = r.invocations.get(i, &r.roots)
            && let Node::Invocation { end, status: s, .. } = r.node(root, n)
        {
            *end = now.as_nanos();
            *s = status;
        }
    }

    /// A fiber runs its next steps.
    #[inline]
    pub(in crate::model) fn trace_runs(&mut self, f: FiberId, now: crate::engine::SimTime) {
        if let Some(r) = self.recorder.as_deref()
            && r.runs_matter
        {
            self.trace_runs_recorded(f, now);
        }
    }

    #[inline(never)]
    fn trace_runs_recorded(&mut self, f: FiberId, now: crate::engine::SimTime) {
        if !self.path_only(|p| p.fiber_moves(f, What::Work, now.as_nanos())) {
            self.trace_runs_tree(f, now);
        }
    }

    #[inline(never)]
    fn trace_runs_tree(&mut self, f: FiberId, now: crate::engine::SimTime) {
        if let Some(r) = self.recorder.as_deref_mut()
            && r.on_path(|p| p.fiber_moves(f, What::Work, now.as_nanos()))
            && let Some((root, n)) = r.fibers.get(f, &r.roots)
        {
            r.close_seg(root, n, now.as_nanos());
        }
    }

    /// A fiber finished its steps (or failed one): its invocation answers at once
    /// (`trace_answered`), which moves the path as far as this would, so only the tree
    /// records it.
    #[inline]
    pub(in crate::model) fn trace_fiber_finished(
        &mut self,
        f: FiberId,
        now: crate::engine::SimTime,
    ) {
        if let Some(r) = self.recorder.as_deref()
            && r.tree_records()
        {
            self.trace_fiber_end_tree(f, now);
        }
    }

    /// A fiber is cancelled.
    #[inline]
    pub(in crate::model) fn trace_fiber_end(&mut self, f: FiberId, now: crate::engine::SimTime) {
        if self.recorder.is_some() {
            self.trace_fiber_end_recorded(f, now);
        }
    }

    #[inline(never)]
    fn trace_fiber_end_recorded(&mut self, f: FiberId, now: crate::engine::SimTime) {
        if !self.path_only(|p| p.fiber_end(f, now.as_nanos())) {
            self.trace_fiber_end_tree(f, now);
        }
    }

    #[inline(never)]
    fn trace_fiber_end_tree(&mut self, f: FiberId, now: crate::engine::SimTime) {
        if let Some(r) = self.recorder.as_deref_mut()
            && r.on_path(|p| p.fiber_end(f, now.as_nanos()))
            && let Some((root, n)) = r.fibers.get(f, &r.roots)
        {
            let now = now.as_nanos();
            r.close_seg(root, n, now);
            if let Node::Fiber { end, .. } = r.node(root, n) {
                *end = now;
            }
        }
    }

    /// A fiber waits for a publisher confirm.
    #[inline]
    pub(in crate::model) fn trace_publish_wait(&mut self, f: FiberId, now: crate::engine::SimTime) {
        if let Some(r) = self.recorder.as_deref_mut()
            && r.on_path(|p| p.fiber_moves(f, What::WaitingOnCallee, now.as_nanos()))
            && let Some((root, n)) = r.fibers.get(f, &r.roots)
        {
            r.open_seg(root, n, Seg::Publish, now.as_nanos());
        }
    }

    /// A `parallel` step: fiber `f` waits on `join` for `children`.
    #[inline]
    pub(in crate::model) fn trace_fork(
        &mut self,
        f: FiberId,
        join: JoinId,
        children: &[FiberId],
        now: crate::engine::SimTime,
    ) {
        if let Some(r) = self.recorder.as_deref_mut()
            && let Some((root, n)) = r.fibers.get(f, &r.roots)
        {
            let now = now.as_nanos();
            let Node::Fiber { invocation, .. } = *r.node(root, n) else {
                unreachable!()
            };
            let j = r.push(
                root,
                Node::Join {
                    decided: OPEN,
                    decider: NONE,
                },
            );
            let generation = r.roots[root as usize].generation;
            r.joins.set(join, root, generation, j);
            r.open_seg(root, n, Seg::Join(j), now);
            for (i, &child) in children.iter().enumerate() {
                r.new_fiber(root, child, invocation, j, i as u32, now);
            }
        }
    }

    /// A join is decided by the settling of `branch`.
    #[inline]
    pub(in crate::model) fn trace_join(
        &mut self,
        j: JoinId,
        branch: u32,
        now: crate::engine::SimTime,
    ) {
        if let Some(r) = self.recorder.as_deref_mut()
            && let Some((root, n)) = r.joins.get(j, &r.roots)
            && let Node::Join { decided, decider } = r.node(root, n)
        {
            *decided = now.as_nanos();
            *decider = branch;
        }
    }

    /// Hands over the traces kept and every workload's attribution (empty when off).
    pub(in crate::model) fn take_recorded(&mut self) -> Traces {
        let Some(mut r) = self.recorder.take() else {
            return Traces::default();
        };
        r.finish_lingering(&self.spec);
        if let Some(sums) = &r.attribution {
            let names: Vec<String> = self.spec.endpoints.iter().map(|e| e.name.clone()).collect();
            self.metrics.attribution = (0..self.spec.workloads.len())
                .map(|w| {
                    let (hist, _, _) = self.metrics.workloads[w].latency.histogram();
                    sums.finish(w, hist, &names)
                })
                .collect();
        }
        r.traces
    }
}
