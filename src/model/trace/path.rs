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
//! It cuts a request exactly as `tree.rs` cuts the same request's nodes (the tree
//! follows, backwards, the only path there is); `Observe::check_attribution` runs both
//! and asserts they agree on every request (`tests/it/trace.rs`, over every bundled
//! scenario).

use super::*;
use crate::model::arena::Key as ArenaKey;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Call,
    Attempt,
    Invocation,
}

/// Which id a hook names (a fiber is found by its invocation's frame).
#[derive(Clone, Copy)]
enum Of {
    Call,
    Attempt,
    Invocation,
    Fiber,
}

/// An arena id's (slot, generation).
type Key = (u32, u32);

#[derive(Clone, Copy, Debug)]
struct Frame {
    kind: Kind,
    /// The call's, attempt's or invocation's id.
    id: Key,
    /// An invocation's root fiber.
    fiber: Key,
    /// The endpoint the frame's time is charged to: a call's and an attempt's target,
    /// an invocation's own.
    endpoint: u32,
    /// What the frame's time is now: a call's `Connection` (its `Backoff` is kept
    /// apart); an attempt's `Network` or `WaitingOnCallee`; an invocation's
    /// `QueueWait`, `Work` or `WaitingOnCallee` (a publisher confirm).
    what: What,
    /// An invocation has had a worker.
    started: bool,
    /// An invocation's fiber has ended (it was cancelled, perhaps while in a call).
    ended: bool,
    /// A call's last attempt ended then (or was refused), and its retry waits
    /// `backoff` from there.
    attempt_end: u64,
    backoff: u64,
}

/// One root request in flight.
#[derive(Default)]
struct Request {
    workload: u32,
    start: u64,
    /// The time charged up to.
    charged: u64,
    /// The frames on the path, root call first; empty once the request is over.
    frames: Vec<Frame>,
    parts: Parts,
}

impl Request {
    /// Charges [charged, now] to the top frame (most moves take no time: inlined).
    #[inline(always)]
    fn charge(&mut self, now: u64) {
        if now != self.charged {
            self.charge_since(now);
        }
    }

    #[inline(never)]
    fn charge_since(&mut self, now: u64) {
        let top = self
            .frames
            .last()
            .expect("a live request has its root call");
        let ep = top.endpoint as usize;
        let mut t = self.charged;
        if top.kind == Kind::Call && top.backoff > 0 {
            let until = top.attempt_end.saturating_add(top.backoff).min(now);
            if until > t {
                self.parts.add(ep, What::Backoff, until - t);
                t = until;
            }
        }
        if now > t {
            self.parts.add(ep, top.what, now - t);
        }
        self.charged = now;
    }

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
    #[inline]
    fn set(&mut self, id: Key, request: usize, frame: usize) {
        let slot = id.0 as usize;
        if self.0.len() <= slot {
            self.0.resize(slot + 1, (NONE, NONE));
        }
        self.0[slot] = (request as u32, frame as u32);
    }
}

/// The requests in flight, their frames and the id tables.
#[derive(Default)]
pub(super) struct Paths {
    requests: Vec<Request>,
    free: Vec<u32>,
    calls: Slots,
    attempts: Slots,
    invocations: Slots,
    fibers: Slots,
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

    /// The (request, frame) `id` names, if that frame is still on its request's path.
    #[inline]
    fn find(&self, of: Of, id: impl ArenaKey) -> Option<(usize, usize)> {
        let slots = match of {
            Of::Call => &self.calls,
            Of::Attempt => &self.attempts,
            Of::Invocation => &self.invocations,
            Of::Fiber => &self.fibers,
        };
        let key = id.id().parts();
        let &(r, f) = slots.0.get(key.0 as usize)?;
        let frame = self.requests.get(r as usize)?.frames.get(f as usize)?;
        let found = match of {
            Of::Call => frame.kind == Kind::Call && frame.id == key,
            Of::Attempt => frame.kind == Kind::Attempt && frame.id == key,
            Of::Invocation => frame.kind == Kind::Invocation && frame.id == key,
            Of::Fiber => frame.kind == Kind::Invocation && frame.fiber == key,
        };
        found.then_some((r as usize, f as usize))
    }

    /// The request whose top frame `id` is.
    #[inline]
    fn top(&self, of: Of, id: impl ArenaKey) -> Option<usize> {
        let (r, f) = self.find(of, id)?;
        (f + 1 == self.requests[r].frames.len()).then_some(r)
    }

    fn push(&mut self, r: usize, frame: Frame) -> usize {
        let frames = &mut self.requests[r].frames;
        frames.push(frame);
        frames.len() - 1
    }

    fn frame(kind: Kind, id: Key, endpoint: usize, what: What) -> Frame {
        Frame {
            kind,
            id,
            fiber: (NONE, NONE),
            endpoint: endpoint as u32,
            what,
            started: false,
            ended: false,
            attempt_end: 0,
            backoff: 0,
        }
    }

    /// A measured root call of `workload` starts.
    pub(super) fn root_call(&mut self, l: CallId, workload: usize, endpoint: usize, now: u64) {
        let r = match self.free.pop() {
            Some(r) => r as usize,
            None => {
                self.requests.push(Request::default());
                self.requests.len() - 1
            }
        };
        let q = &mut self.requests[r];
        assert!(q.frames.is_empty(), "a free request has no frames");
        q.workload = workload as u32;
        q.start = now;
        q.charged = now;
        q.parts.clear();
        let key = l.id().parts();
        q.frames
            .push(Self::frame(Kind::Call, key, endpoint, What::Connection));
        self.calls.set(key, r, 0);
    }

    /// A fiber calls `endpoint`.
    pub(super) fn call(&mut self, l: CallId, f: FiberId, endpoint: usize, now: u64) {
        let Some(r) = self.top(Of::Fiber, f) else {
            return;
        };
        self.requests[r].charge(now);
        let key = l.id().parts();
        let n = self.push(r, Self::frame(Kind::Call, key, endpoint, What::Connection));
        self.calls.set(key, r, n);
    }

    /// A call is over; `Some` when it was a root call.
    pub(super) fn call_end(&mut self, l: CallId, now: u64) -> Option<Finished<'_>> {
        let (r, n) = self.find(Of::Call, l)?;
        let q = &mut self.requests[r];
        q.charge(now);
        q.frames.truncate(n);
        if n > 0 {
            // Released mode: the caller waits for a worker until its fiber runs; a
            // fiber cancelled while it called works until its invocation answers.
            let top = q.top();
            top.what = if top.ended {
                What::Work
            } else {
                What::QueueWait
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
    pub(super) fn attempt(&mut self, a: AttemptId, l: CallId, now: u64) {
        let Some((r, n)) = self.find(Of::Call, l) else {
            return;
        };
        let q = &mut self.requests[r];
        assert_eq!(
            n + 1,
            q.frames.len(),
            "one attempt in flight per call (no hedging)"
        );
        q.charge(now);
        let endpoint = q.frames[n].endpoint as usize;
        let key = a.id().parts();
        let m = self.push(r, Self::frame(Kind::Attempt, key, endpoint, What::Network));
        self.attempts.set(key, r, m);
    }

    /// An attempt refused before it left: its retry's backoff counts from now.
    pub(super) fn refused(&mut self, l: CallId, now: u64) {
        if let Some(r) = self.top(Of::Call, l) {
            let q = &mut self.requests[r];
            q.charge(now);
            let top = q.top();
            top.attempt_end = now;
            top.backoff = 0;
        }
    }

    /// An attempt is over (answered, timed out, cancelled): whatever its callee still
    /// does is off the path.
    pub(super) fn attempt_end(&mut self, a: AttemptId, now: u64) {
        if let Some((r, n)) = self.find(Of::Attempt, a) {
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
        if let Some(r) = self.top(Of::Call, l) {
            self.requests[r].top().backoff = delay;
        }
    }

    /// The callee takes the attempt in: on a worker now (`started`) or queued.
    pub(super) fn admitted(
        &mut self,
        a: AttemptId,
        i: InvocationId,
        fiber: FiberId,
        endpoint: usize,
        started: bool,
        now: u64,
    ) {
        let Some(r) = self.top(Of::Attempt, a) else {
            return;
        };
        self.requests[r].charge(now);
        let what = if started { What::Work } else { What::QueueWait };
        let mut frame = Self::frame(Kind::Invocation, i.id().parts(), endpoint, what);
        frame.fiber = fiber.id().parts();
        frame.started = started;
        let n = self.push(r, frame);
        self.invocations.set(i.id().parts(), r, n);
        self.fibers.set(fiber.id().parts(), r, n);
    }

    /// A queued invocation gets its first worker.
    pub(super) fn started(&mut self, i: InvocationId, now: u64) {
        if let Some(r) = self.top(Of::Invocation, i) {
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
    pub(super) fn fiber_moves(&mut self, f: FiberId, what: What, now: u64) {
        if let Some(r) = self.top(Of::Fiber, f) {
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
    pub(super) fn fiber_end(&mut self, f: FiberId, now: u64) {
        if let Some((r, n)) = self.find(Of::Fiber, f) {
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
    pub(super) fn answered(&mut self, i: InvocationId, replied: bool, now: u64) {
        if let Some((r, n)) = self.find(Of::Invocation, i) {
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
