//! Attribution without a tree, for scenarios whose requests never do two things at once
//! (no `parallel` step, no hedging): a request is then always in exactly one place,
//! the innermost of a stack of frames (its root call, the attempt in flight, the
//! invocation serving it, that invocation's call, ...), and its critical path is its
//! whole life. Each hook that moves the request charges the time since the last move to
//! the top frame's (endpoint, what) and pushes or pops a frame; what happens in a frame
//! no longer on the stack (a callee that carries on after its caller timed out) is not
//! on the path and is ignored. When the root call ends, the parts are complete: no
//! nodes, no walk, nothing allocated once the pool is warm.
//!
//! An attempt's arrival and its reply need no hook here: a request that arrives is
//! admitted or answered (refused, rejected, faulted) at the same instant, and an
//! invocation's reply leaves when it answers, so the attempt's `WaitingOnCallee` between
//! them takes no time; only a lost invocation leaves its caller waiting on it.
//!
//! Nor does a fiber's run, unless the scenario has an event-loop service or a publish
//! step: a thread-per-request handler gets on with its work at the instant its call is
//! answered, so the call's end puts its invocation straight back to `Work`, and only a
//! released worker (queue_wait until it is back) or a publisher confirm
//! (`WaitingOnCallee`) makes a run change what the invocation's time is.
//!
//! It cuts a request exactly as `tree.rs` cuts the same request's nodes (the tree
//! follows, backwards, the only path there is); `Observe::check_attribution` runs both
//! and asserts they agree on every request (`tests/it/trace.rs`, over every bundled
//! scenario).

use super::*;
use crate::metrics::attribution::part_key;
use crate::model::arena::Key as ArenaKey;
use crate::model::spec::WorkerHold;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Call,
    Attempt,
    Invocation,
}

/// An arena id's slot, and the id as one word (generation above slot): one compare
/// tells a frame's own id from a stale one.
#[inline(always)]
fn packed(id: impl ArenaKey) -> (usize, u64) {
    let (slot, generation) = id.id().parts();
    (
        slot as usize,
        (u64::from(generation) << 32) | u64::from(slot),
    )
}

/// No id (a frame that is not an invocation has no fiber).
const NO_ID: u64 = u64::MAX;

#[derive(Clone, Copy, Debug)]
struct Frame {
    kind: Kind,
    /// What the frame's time is now: a call's `Connection` (its `Backoff` is kept
    /// apart); an attempt's `Network` or `WaitingOnCallee`; an invocation's
    /// `QueueWait`, `Work` or `WaitingOnCallee` (a publisher confirm).
    what: What,
    /// An invocation has had a worker.
    started: bool,
    /// An invocation's fiber has ended (it was cancelled, perhaps while in a call).
    ended: bool,
    /// An invocation of an event-loop service: after a call it waits for a worker.
    released: bool,
    /// The endpoint the frame's time is charged to: a call's and an attempt's target,
    /// an invocation's own.
    endpoint: u32,
    /// The call's, attempt's or invocation's id (`packed`).
    id: u64,
    /// An invocation's root fiber (`packed`), else `NO_ID`.
    fiber: u64,
    /// A call's last attempt ended then (or was refused), and its retry waits
    /// `backoff` from there.
    attempt_end: u64,
    backoff: u64,
}

impl Frame {
    #[inline(always)]
    fn new(kind: Kind, id: u64, endpoint: usize, what: What) -> Frame {
        Frame {
            kind,
            what,
            started: false,
            ended: false,
            released: false,
            endpoint: endpoint as u32,
            id,
            fiber: NO_ID,
            attempt_end: 0,
            backoff: 0,
        }
    }
}

/// One root request in flight.
#[derive(Default)]
struct Request {
    /// The time charged up to.
    charged: u64,
    start: u64,
    workload: u32,
    /// The frames on the path, root call first; empty once the request is over.
    frames: Vec<Frame>,
    parts: Parts,
}

impl Request {
    /// Charges [charged, now] to the top frame (most moves take no time).
    #[inline(always)]
    fn charge(&mut self, now: u64) {
        if now == self.charged {
            return;
        }
        let top = self
            .frames
            .last()
            .expect("a live request has its root call");
        if top.backoff > 0 {
            return self.charge_backoff(now);
        }
        let key = part_key(top.endpoint as usize, top.what);
        self.parts.push(key, now - self.charged);
        self.charged = now;
    }

    /// A call waiting out its retry's backoff: backoff first, then `Connection`.
    #[inline(never)]
    fn charge_backoff(&mut self, now: u64) {
        let top = *self
            .frames
            .last()
            .expect("a live request has its root call");
        let ep = top.endpoint as usize;
        let mut t = self.charged;
        let until = top.attempt_end.saturating_add(top.backoff).min(now);
        if until > t {
            self.parts.push(part_key(ep, What::Backoff), until - t);
            t = until;
        }
        if now > t {
            self.parts.push(part_key(ep, top.what), now - t);
        }
        self.charged = now;
    }

    #[inline(always)]
    fn top(&mut self) -> &mut Frame {
        self.frames
            .last_mut()
            .expect("a live request has its root call")
    }
}

/// Arena slot -> (request, frame) for one kind of id; checked against the frame's own
/// id, so a stale id or a popped frame finds nothing.
#[derive(Default)]
struct Slots(Vec<(u32, u32)>);

impl Slots {
    #[inline(always)]
    fn set(&mut self, slot: usize, request: usize, frame: usize) {
        if self.0.len() <= slot {
            self.grow(slot);
        }
        self.0[slot] = (request as u32, frame as u32);
    }

    #[cold]
    #[inline(never)]
    fn grow(&mut self, slot: usize) {
        self.0.resize(slot + 1, (NONE, NONE));
    }
}

/// The requests in flight, their frames and the id tables.
pub(super) struct Paths {
    requests: Vec<Request>,
    free: Vec<u32>,
    calls: Slots,
    attempts: Slots,
    invocations: Slots,
    fibers: Slots,
    /// Per endpoint: its service lets the worker go during calls.
    released: Vec<bool>,
    /// A fiber's run can change what its invocation's time is (see the top).
    pub(super) runs_move: bool,
}

/// A finished root request: its workload, latency and parts (valid until the next
/// request starts).
pub(super) struct Finished<'a> {
    pub(super) workload: usize,
    pub(super) latency_ns: u64,
    pub(super) parts: &'a Parts,
}

impl Paths {
    /// Whether every request of `spec` is sequential: one fiber per invocation (no
    /// `parallel`), one attempt in flight per call (no hedging).
    pub(super) fn fit(spec: &Spec) -> bool {
        spec.parallels.is_empty() && spec.policies.iter().all(|p| p.hedge.is_none())
    }

    pub(super) fn new(spec: &Spec) -> Paths {
        let released: Vec<bool> = spec
            .endpoints
            .iter()
            .map(|e| spec.services[e.service.index()].hold == WorkerHold::Released)
            .collect();
        Paths {
            requests: Vec::new(),
            free: Vec::new(),
            calls: Slots::default(),
            attempts: Slots::default(),
            invocations: Slots::default(),
            fibers: Slots::default(),
            runs_move: released.contains(&true) || !spec.publishes.is_empty(),
            released,
        }
    }

    /// The (request, frame) of kind `kind` whose id is `key`, at `slot` of `slots`,
    /// if that frame is still on its request's path.
    #[inline(always)]
    fn find_in(
        requests: &[Request],
        slots: &Slots,
        slot: usize,
        key: u64,
        kind: Kind,
    ) -> Option<(usize, usize)> {
        let &(r, f) = slots.0.get(slot)?;
        let frame = requests.get(r as usize)?.frames.get(f as usize)?;
        (frame.id == key && frame.kind == kind).then_some((r as usize, f as usize))
    }

    #[inline(always)]
    fn find_call(&self, l: CallId) -> Option<(usize, usize)> {
        let (slot, key) = packed(l);
        Self::find_in(&self.requests, &self.calls, slot, key, Kind::Call)
    }

    #[inline(always)]
    fn find_attempt(&self, a: AttemptId) -> Option<(usize, usize)> {
        let (slot, key) = packed(a);
        Self::find_in(&self.requests, &self.attempts, slot, key, Kind::Attempt)
    }

    #[inline(always)]
    fn find_invocation(&self, i: InvocationId) -> Option<(usize, usize)> {
        let (slot, key) = packed(i);
        Self::find_in(
            &self.requests,
            &self.invocations,
            slot,
            key,
            Kind::Invocation,
        )
    }

    /// The invocation frame whose root fiber is `f` (only invocations have a fiber).
    #[inline(always)]
    fn find_fiber(&self, f: FiberId) -> Option<(usize, usize)> {
        let (slot, key) = packed(f);
        let &(r, n) = self.fibers.0.get(slot)?;
        let frame = self.requests.get(r as usize)?.frames.get(n as usize)?;
        (frame.fiber == key).then_some((r as usize, n as usize))
    }

    /// Only the top frame moves the request.
    #[inline(always)]
    fn on_top(&self, found: Option<(usize, usize)>) -> Option<usize> {
        let (r, f) = found?;
        (f + 1 == self.requests[r].frames.len()).then_some(r)
    }

    /// A measured root call of `workload` starts.
    #[inline(always)]
    pub(super) fn root_call(&mut self, l: CallId, workload: usize, endpoint: usize, now: u64) {
        let r = match self.free.pop() {
            Some(r) => r as usize,
            None => self.new_request(),
        };
        let (slot, key) = packed(l);
        let q = &mut self.requests[r];
        assert!(q.frames.is_empty(), "a free request has no frames");
        q.workload = workload as u32;
        q.start = now;
        q.charged = now;
        q.parts.clear();
        q.frames
            .push(Frame::new(Kind::Call, key, endpoint, What::Connection));
        self.calls.set(slot, r, 0);
    }

    #[cold]
    #[inline(never)]
    fn new_request(&mut self) -> usize {
        self.requests.push(Request::default());
        self.requests.len() - 1
    }

    /// A fiber calls `endpoint`.
    #[inline(always)]
    pub(super) fn call(&mut self, l: CallId, f: FiberId, endpoint: usize, now: u64) {
        let Some(r) = self.on_top(self.find_fiber(f)) else {
            return;
        };
        let (slot, key) = packed(l);
        let q = &mut self.requests[r];
        q.charge(now);
        q.frames
            .push(Frame::new(Kind::Call, key, endpoint, What::Connection));
        let n = q.frames.len() - 1;
        self.calls.set(slot, r, n);
    }

    /// A call is over; `Some` when it was a root call.
    #[inline(always)]
    pub(super) fn call_end(&mut self, l: CallId, now: u64) -> Option<Finished<'_>> {
        let (r, n) = self.find_call(l)?;
        let q = &mut self.requests[r];
        q.charge(now);
        q.frames.truncate(n);
        if let Some(top) = q.frames.last_mut() {
            // A thread-per-request handler works on at once; an event-loop one waits
            // for a worker until its fiber runs; a fiber cancelled while it called
            // works until its invocation answers.
            top.what = if top.released && !top.ended {
                What::QueueWait
            } else {
                What::Work
            };
            return None;
        }
        self.free.push(r as u32);
        let q = &self.requests[r];
        Some(Finished {
            workload: q.workload as usize,
            latency_ns: now - q.start,
            parts: &q.parts,
        })
    }

    /// An attempt leaves.
    #[inline(never)]
    pub(super) fn attempt(&mut self, a: AttemptId, l: CallId, now: u64) {
        let Some((r, n)) = self.find_call(l) else {
            return;
        };
        let (slot, key) = packed(a);
        let q = &mut self.requests[r];
        assert_eq!(
            n + 1,
            q.frames.len(),
            "one attempt in flight per call (no hedging)"
        );
        q.charge(now);
        let endpoint = q.frames[n].endpoint as usize;
        q.frames
            .push(Frame::new(Kind::Attempt, key, endpoint, What::Network));
        self.attempts.set(slot, r, n + 1);
    }

    /// An attempt refused before it left: its retry's backoff counts from now.
    pub(super) fn refused(&mut self, l: CallId, now: u64) {
        if let Some(r) = self.on_top(self.find_call(l)) {
            let q = &mut self.requests[r];
            q.charge(now);
            let top = q.top();
            top.attempt_end = now;
            top.backoff = 0;
        }
    }

    /// An attempt is over (answered, timed out, cancelled): whatever its callee still
    /// does is off the path.
    #[inline(never)]
    pub(super) fn attempt_end(&mut self, a: AttemptId, now: u64) {
        if let Some((r, n)) = self.find_attempt(a) {
            let q = &mut self.requests[r];
            q.charge(now);
            q.frames.truncate(n);
            let call = q.top();
            call.attempt_end = now;
            call.backoff = 0;
        }
    }

    /// The call's failed attempt is followed by a retry after `delay`.
    pub(super) fn backoff(&mut self, l: CallId, delay: u64) {
        if let Some(r) = self.on_top(self.find_call(l)) {
            self.requests[r].top().backoff = delay;
        }
    }

    /// The callee takes the attempt in: on a worker now (`started`) or queued.
    #[inline(always)]
    pub(super) fn admitted(
        &mut self,
        a: AttemptId,
        i: InvocationId,
        fiber: FiberId,
        endpoint: usize,
        started: bool,
        now: u64,
    ) {
        let Some(r) = self.on_top(self.find_attempt(a)) else {
            return;
        };
        let (slot, key) = packed(i);
        let (fiber_slot, fiber_key) = packed(fiber);
        let released = self.released[endpoint];
        let q = &mut self.requests[r];
        q.charge(now);
        let what = if started { What::Work } else { What::QueueWait };
        let mut frame = Frame::new(Kind::Invocation, key, endpoint, what);
        frame.fiber = fiber_key;
        frame.started = started;
        frame.released = released;
        q.frames.push(frame);
        let n = q.frames.len() - 1;
        self.invocations.set(slot, r, n);
        self.fibers.set(fiber_slot, r, n);
    }

    /// A queued invocation gets its first worker.
    #[inline(never)]
    pub(super) fn started(&mut self, i: InvocationId, now: u64) {
        if let Some(r) = self.on_top(self.find_invocation(i)) {
            let q = &mut self.requests[r];
            if !q.top().started {
                q.charge(now);
                let top = q.top();
                top.started = true;
                top.what = What::Work;
            }
        }
    }

    /// The fiber runs (`Work`) or waits for a publisher confirm (`WaitingOnCallee`).
    #[inline(never)]
    pub(super) fn fiber_moves(&mut self, f: FiberId, what: What, now: u64) {
        if what == What::Work && !self.runs_move {
            return;
        }
        if let Some(r) = self.on_top(self.find_fiber(f)) {
            let q = &mut self.requests[r];
            let top = q.top();
            if top.started && top.what != what {
                q.charge(now);
                q.top().what = what;
            }
        }
    }

    /// The fiber ends (finished or cancelled): its invocation works until it answers,
    /// if it ever had a worker.
    #[inline(never)]
    pub(super) fn fiber_end(&mut self, f: FiberId, now: u64) {
        if let Some((r, n)) = self.find_fiber(f) {
            let q = &mut self.requests[r];
            let top = n + 1 == q.frames.len();
            let frame = q.frames[n];
            if top && frame.started && frame.what != What::Work {
                q.charge(now);
                q.frames[n].what = What::Work;
            }
            q.frames[n].ended = true;
        }
    }

    /// An invocation answers (`replied`: its reply leaves now) or is lost (its attempt
    /// waits on it until the attempt ends).
    #[inline(never)]
    pub(super) fn answered(&mut self, i: InvocationId, replied: bool, now: u64) {
        if let Some((r, n)) = self.find_invocation(i) {
            let q = &mut self.requests[r];
            q.charge(now);
            q.frames.truncate(n);
            q.top().what = if replied {
                What::Network
            } else {
                What::WaitingOnCallee
            };
        }
    }
}
