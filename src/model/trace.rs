//! The span recorder: what happened to a request, kept while the request lasts, for
//! traces (`meshsim trace`, `run --trace-sample`) and for attribution (where a
//! workload's time goes). Off unless asked for: the `World` holds an
//! `Option<Box<Recorder>>`, and every hook is one call that tests it and returns, so a
//! run without it allocates nothing here and does one predictable branch per hook.
//!
//! The recorder never draws a random number, schedules an event or changes the
//! model: a run with it on makes the same report byte for byte. Which requests are
//! traced is a hash of (seed, workload, request number), not a draw.
//!
//! For each recorded root request (a workload's logical call) it keeps a small buffer
//! of nodes (calls, attempts, invocations, fibers, their segments, joins), linked by
//! index; ids of the model's arenas are mapped to nodes by slot. When the root call
//! ends, the buffer is folded into the attribution sums and, if the request is traced,
//! turned into spans; then it goes back to the pool. Memory is bounded by the requests
//! in flight (plus the traces kept, at most `MAX_TRACES`).

use super::World;
use super::arena::Id;
use super::client::Origin;
use super::spec::{EdgeId, EndpointId, Spec, WorkloadId};
use super::status::Status;
use crate::engine::SimDuration;
use crate::metrics::attribution::{AttributionSums, Parts, What};
use crate::metrics::trace::{Arg, Flow, MAX_TRACES, RequestTrace, Span, Traces, Track};

const NONE: u32 = u32::MAX;
/// Not happened (yet): an end still open, a request never arrived.
const OPEN: u64 = u64::MAX;

/// Which root requests to trace.
#[derive(Clone, Debug, PartialEq)]
pub enum TraceSelect {
    /// Each request with this probability, by a hash of (seed, workload, number).
    Sample(f64),
    /// The `number`-th request (from 1) of one workload.
    Request { workload: WorkloadId, number: u64 },
}

/// What a run records beyond its metrics.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observe {
    pub trace: Option<TraceSelect>,
}

/// How an attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum AttemptEnd {
    InFlight,
    Answered(Status),
    Timeout,
    Cancelled,
    /// Refused before it left: "breaker", "bulkhead", "rate_limit".
    Refused(&'static str),
}

#[derive(Clone, Copy, Debug)]
enum Seg {
    Work,
    Call(u32),
    Join(u32),
    Publish,
}

#[derive(Clone, Copy, Debug)]
enum Node {
    Call {
        edge: EdgeId,
        /// The fiber that called, or NONE for the root.
        fiber: u32,
        start: u64,
        end: u64,
        status: Option<Status>,
    },
    Attempt {
        call: u32,
        number: u32,
        hedge: bool,
        sent: u64,
        arrived: u64,
        replied: u64,
        end: u64,
        how: AttemptEnd,
        backoff: u64,
        invocation: u32,
    },
    Invocation {
        attempt: u32,
        endpoint: EndpointId,
        replica: u32,
        arrived: u64,
        started: u64,
        end: u64,
        status: Option<Status>,
        fiber: u32,
    },
    Fiber {
        invocation: u32,
        /// The join a branch belongs to (NONE for a root fiber), and its branch.
        join: u32,
        branch: u32,
        start: u64,
        last_run: u64,
        open_seg: u32,
        end: u64,
    },
    Seg {
        fiber: u32,
        kind: Seg,
        start: u64,
        until: u64,
    },
    Join {
        decided: u64,
        decider: u32,
    },
}

impl Node {
    /// The node whose child list this one is in.
    fn parent(&self) -> u32 {
        match *self {
            Node::Attempt { call, .. } => call,
            Node::Seg { fiber, .. } => fiber,
            Node::Fiber { join, .. } => join,
            _ => NONE,
        }
    }
}

struct Root {
    generation: u32,
    live: bool,
    workload: WorkloadId,
    number: u64,
    traced: bool,
    measured: bool,
    nodes: Vec<Node>,
}

/// Arena id -> (root, root generation, node), by the id's slot.
#[derive(Default)]
struct IdMap {
    slots: Vec<(u32, u32, u32, u32)>,
}

impl IdMap {
    fn set(&mut self, id: Id, root: u32, root_gen: u32, node: u32) {
        let (slot, generation) = id.parts();
        let slot = slot as usize;
        if self.slots.len() <= slot {
            self.slots.resize(slot + 1, (u32::MAX, NONE, 0, NONE));
        }
        self.slots[slot] = (generation, root, root_gen, node);
    }

    #[inline]
    fn get(&self, id: Id, roots: &[Root]) -> Option<(u32, u32)> {
        let (slot, generation) = id.parts();
        let &(g, root, root_gen, node) = self.slots.get(slot as usize)?;
        let r = roots.get(root as usize)?;
        (g == generation && r.live && r.generation == root_gen).then_some((root, node))
    }
}

pub struct Recorder {
    seed: u64,
    select: Option<TraceSelect>,
    attribution: Option<AttributionSums>,
    roots: Vec<Root>,
    free: Vec<u32>,
    calls: IdMap,
    attempts: IdMap,
    invocations: IdMap,
    fibers: IdMap,
    joins: IdMap,
    /// Requests started per workload (the trace numbers).
    started: Vec<u64>,
    parts: Parts,
    kid_start: Vec<u32>,
    kids: Vec<u32>,
    traces: Traces,
}

impl Recorder {
    /// A recorder for what `observe` asks and, with `attribution`, every measured
    /// request's parts. None when there is nothing to record.
    pub fn new(spec: &Spec, observe: &Observe, attribution: bool) -> Option<Box<Recorder>> {
        if observe.trace.is_none() && !attribution {
            return None;
        }
        Some(Box::new(Recorder {
            seed: spec.seed,
            select: observe.trace.clone(),
            attribution: attribution
                .then(|| AttributionSums::new(spec.workloads.len(), spec.endpoints.len())),
            roots: Vec::new(),
            free: Vec::new(),
            calls: IdMap::default(),
            attempts: IdMap::default(),
            invocations: IdMap::default(),
            fibers: IdMap::default(),
            joins: IdMap::default(),
            started: vec![0; spec.workloads.len()],
            parts: Parts::default(),
            kid_start: Vec::new(),
            kids: Vec::new(),
            traces: Traces::default(),
        }))
    }

    fn selected(&self, spec: &Spec, workload: WorkloadId, number: u64) -> bool {
        match self.select {
            None => false,
            Some(TraceSelect::Request {
                workload: w,
                number: n,
            }) => w == workload && n == number,
            Some(TraceSelect::Sample(rate)) => {
                sample_hash(self.seed, &spec.workloads[workload.index()].name, number)
                    < rate_threshold(rate)
            }
        }
    }

    fn push(&mut self, root: u32, node: Node) -> u32 {
        let nodes = &mut self.roots[root as usize].nodes;
        nodes.push(node);
        (nodes.len() - 1) as u32
    }

    fn node(&mut self, root: u32, n: u32) -> &mut Node {
        &mut self.roots[root as usize].nodes[n as usize]
    }

    fn new_root(&mut self, workload: WorkloadId, number: u64, traced: bool, measured: bool) -> u32 {
        match self.free.pop() {
            Some(r) => {
                let root = &mut self.roots[r as usize];
                root.generation = root.generation.wrapping_add(1);
                root.live = true;
                root.workload = workload;
                root.number = number;
                root.traced = traced;
                root.measured = measured;
                root.nodes.clear();
                r
            }
            None => {
                self.roots.push(Root {
                    generation: 0,
                    live: true,
                    workload,
                    number,
                    traced,
                    measured,
                    nodes: Vec::new(),
                });
                (self.roots.len() - 1) as u32
            }
        }
    }

    fn call_started(
        &mut self,
        spec: &Spec,
        l: Id,
        origin: Origin,
        edge: EdgeId,
        now: u64,
        measured: bool,
    ) {
        let (root, fiber) = match origin {
            Origin::Workload { workload, .. } => {
                let w = workload.index();
                self.started[w] += 1;
                let number = self.started[w];
                let traced =
                    self.selected(spec, workload, number) && self.traces.traces.len() < MAX_TRACES;
                if !traced && self.select.is_some() && self.selected(spec, workload, number) {
                    self.traces.dropped += 1;
                }
                let attributed = measured && self.attribution.is_some();
                if !traced && !attributed {
                    return;
                }
                (self.new_root(workload, number, traced, measured), NONE)
            }
            Origin::Fiber(f) => match self.fibers.get(f, &self.roots) {
                Some(x) => x,
                None => return,
            },
        };
        let call = self.push(
            root,
            Node::Call {
                edge,
                fiber,
                start: now,
                end: OPEN,
                status: None,
            },
        );
        let generation = self.roots[root as usize].generation;
        self.calls.set(l, root, generation, call);
        if fiber != NONE {
            self.open_seg(root, fiber, Seg::Call(call), now);
        }
    }

    /// A fiber starts waiting on something: what it did since it last ran was work.
    fn open_seg(&mut self, root: u32, fiber: u32, kind: Seg, now: u64) {
        self.close_seg(root, fiber, now);
        let seg = self.push(
            root,
            Node::Seg {
                fiber,
                kind,
                start: now,
                until: OPEN,
            },
        );
        if let Node::Fiber { open_seg, .. } = self.node(root, fiber) {
            *open_seg = seg;
        }
    }

    /// A fiber runs (or ends) at `now`: its wait is over, or it worked since it last ran.
    fn close_seg(&mut self, root: u32, fiber: u32, now: u64) {
        let Node::Fiber {
            open_seg, last_run, ..
        } = *self.node(root, fiber)
        else {
            unreachable!("a fiber node")
        };
        if open_seg != NONE {
            if let Node::Seg { until, .. } = self.node(root, open_seg) {
                *until = now;
            }
        } else if last_run != OPEN && now > last_run {
            self.push(
                root,
                Node::Seg {
                    fiber,
                    kind: Seg::Work,
                    start: last_run,
                    until: now,
                },
            );
        }
        if let Node::Fiber {
            open_seg, last_run, ..
        } = self.node(root, fiber)
        {
            *open_seg = NONE;
            *last_run = now;
        }
    }

    fn new_fiber(
        &mut self,
        root: u32,
        f: Id,
        invocation: u32,
        join: u32,
        branch: u32,
        start: u64,
    ) -> u32 {
        let n = self.push(
            root,
            Node::Fiber {
                invocation,
                join,
                branch,
                start,
                last_run: start,
                open_seg: NONE,
                end: OPEN,
            },
        );
        let generation = self.roots[root as usize].generation;
        self.fibers.set(f, root, generation, n);
        n
    }

    /// The root call is over: fold its parts, keep its trace, free its buffer.
    fn root_ended(&mut self, spec: &Spec, root: u32) {
        let r = root as usize;
        let nodes = std::mem::take(&mut self.roots[r].nodes);
        // Child lists (attempts of a call, segments of a fiber, branches of a join),
        // in creation order, which is time order: a counting sort by parent, where
        // kid_start[p]..kid_start[p + 1] ends up as p's list.
        self.kid_start.clear();
        self.kid_start.resize(nodes.len() + 2, 0);
        for n in &nodes {
            let p = n.parent();
            if p != NONE {
                self.kid_start[p as usize + 2] += 1;
            }
        }
        for i in 2..self.kid_start.len() {
            self.kid_start[i] += self.kid_start[i - 1];
        }
        self.kids.clear();
        self.kids.resize(nodes.len(), NONE);
        for (i, n) in nodes.iter().enumerate() {
            let p = n.parent();
            if p != NONE {
                let at = &mut self.kid_start[p as usize + 1];
                self.kids[*at as usize] = i as u32;
                *at += 1;
            }
        }
        let Node::Call { start, end, .. } = nodes[0] else {
            unreachable!("a root starts with its call")
        };
        let (workload, number, traced, measured) = {
            let x = &self.roots[r];
            (x.workload, x.number, x.traced, x.measured)
        };
        let tree = Tree {
            nodes: &nodes,
            kid_start: &self.kid_start,
            kids: &self.kids,
            spec,
        };
        if measured && let Some(sums) = &mut self.attribution {
            self.parts.clear();
            tree.call(&mut self.parts, 0, start, end);
            sums.fold(workload.index(), end - start, &self.parts);
        }
        if traced {
            let trace = tree.spans(workload, number);
            self.traces.traces.push(trace);
        }
        let root = &mut self.roots[r];
        root.nodes = nodes;
        root.nodes.clear();
        root.live = false;
        self.free.push(r as u32);
    }
}

/// FNV-1a of (seed, workload, number), mixed: the same requests are traced on every
/// run, and nothing is drawn from the model's streams.
fn sample_hash(seed: u64, workload: &str, number: u64) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in seed
        .to_le_bytes()
        .iter()
        .chain(workload.as_bytes())
        .chain(&number.to_le_bytes())
    {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    // splitmix64's finaliser: FNV's low bits alone are poorly spread.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58476d1ce4e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d049bb133111eb);
    h ^ (h >> 31)
}

/// The status an outcome ends a call with (before any fallback).
pub(super) fn status_of(outcome: super::world::Outcome) -> Status {
    match outcome {
        super::world::Outcome::Ok { .. } => Status::Ok,
        super::world::Outcome::Failed(s) => s,
    }
}

fn rate_threshold(rate: f64) -> u64 {
    if rate >= 1.0 {
        u64::MAX
    } else {
        (rate.max(0.0) * 2f64.powi(64)) as u64
    }
}

/// One finished root's nodes, with their child lists.
struct Tree<'a> {
    nodes: &'a [Node],
    kid_start: &'a [u32],
    kids: &'a [u32],
    spec: &'a Spec,
}

/// Adds [*t, min(until, hi)] to (endpoint, what) and moves the cursor there.
fn take(parts: &mut Parts, ep: usize, what: What, t: &mut u64, until: u64, hi: u64) {
    let u = until.min(hi);
    if u > *t {
        parts.add(ep, what, u - *t);
        *t = u;
    }
}

impl Tree<'_> {
    fn kids(&self, n: u32) -> &[u32] {
        let (a, b) = (
            self.kid_start[n as usize] as usize,
            self.kid_start[n as usize + 1] as usize,
        );
        &self.kids[a..b]
    }

    fn target(&self, edge: EdgeId) -> usize {
        self.spec.edges[edge.index()].target.index()
    }

    /// Attributes [lo, hi] of a call (within its life) along its critical path: the
    /// attempt that decided it, then, going back in time, whatever attempt was in
    /// flight, the backoffs and the waits before attempts left.
    fn call(&self, parts: &mut Parts, c: u32, lo: u64, hi: u64) {
        let Node::Call { edge, end, .. } = self.nodes[c as usize] else {
            unreachable!()
        };
        let ep = self.target(edge);
        let attempts = self.kids(c);
        let mut cur = hi;
        let mut rest = attempts;
        if hi >= end
            && let Some(pos) = attempts.iter().rposition(|&a| {
                let Node::Attempt { end: e, how, .. } = self.nodes[a as usize] else {
                    unreachable!()
                };
                e == end && !matches!(how, AttemptEnd::Cancelled | AttemptEnd::InFlight)
            })
        {
            let d = attempts[pos];
            let Node::Attempt { sent, .. } = self.nodes[d as usize] else {
                unreachable!()
            };
            let from = sent.clamp(lo, cur);
            self.attempt(parts, d, from, cur, ep);
            cur = from;
            rest = &attempts[..pos];
        }
        for &a in rest.iter().rev() {
            if cur <= lo {
                break;
            }
            let Node::Attempt {
                sent,
                end: a_end,
                backoff,
                ..
            } = self.nodes[a as usize]
            else {
                unreachable!()
            };
            if sent >= cur {
                continue;
            }
            let a_end = a_end.min(cur);
            let gap_from = a_end.max(lo);
            let backoff_end = a_end.saturating_add(backoff).min(cur).max(gap_from);
            let mut t = gap_from;
            take(parts, ep, What::Backoff, &mut t, backoff_end, cur);
            take(parts, ep, What::Connection, &mut t, cur, cur);
            let from = sent.max(lo);
            self.attempt(parts, a, from, a_end.max(from), ep);
            cur = from;
        }
        let mut t = lo;
        take(parts, ep, What::Connection, &mut t, cur, cur);
    }

    /// [lo, hi] of an attempt: the request on the wire, the callee's invocation, the
    /// reply on the wire; what the callee did up to hi if it timed out.
    fn attempt(&self, parts: &mut Parts, a: u32, lo: u64, hi: u64, ep: usize) {
        let Node::Attempt {
            arrived,
            replied,
            invocation,
            ..
        } = self.nodes[a as usize]
        else {
            unreachable!()
        };
        let mut t = lo;
        take(parts, ep, What::Network, &mut t, arrived, hi);
        if invocation != NONE {
            let Node::Invocation { end, .. } = self.nodes[invocation as usize] else {
                unreachable!()
            };
            let until = end.min(hi).max(t);
            self.invocation(parts, invocation, t, until);
            t = until;
        }
        if replied != OPEN {
            take(parts, ep, What::WaitingOnCallee, &mut t, replied, hi);
            take(parts, ep, What::Network, &mut t, hi, hi);
        }
        take(parts, ep, What::WaitingOnCallee, &mut t, hi, hi);
    }

    fn invocation(&self, parts: &mut Parts, i: u32, lo: u64, hi: u64) {
        let Node::Invocation {
            endpoint,
            started,
            fiber,
            ..
        } = self.nodes[i as usize]
        else {
            unreachable!()
        };
        let ep = endpoint.index();
        let mut t = lo;
        take(parts, ep, What::QueueWait, &mut t, started, hi);
        if started != OPEN && t < hi {
            self.fiber(parts, fiber, t, hi, ep);
            t = hi;
        }
        take(parts, ep, What::Work, &mut t, hi, hi);
    }

    /// [lo, hi] of a fiber: its segments in order; a call is split into the callee's
    /// parts, a join follows the branch that decided it.
    fn fiber(&self, parts: &mut Parts, f: u32, lo: u64, hi: u64, ep: usize) {
        let mut t = lo;
        for &s in self.kids(f) {
            let Node::Seg {
                kind, start, until, ..
            } = self.nodes[s as usize]
            else {
                unreachable!()
            };
            if start >= hi {
                break;
            }
            let until = until.min(hi);
            if until <= t {
                continue;
            }
            take(parts, ep, What::Work, &mut t, start, hi);
            match kind {
                Seg::Work => take(parts, ep, What::Work, &mut t, until, hi),
                Seg::Publish => take(parts, ep, What::WaitingOnCallee, &mut t, until, hi),
                Seg::Call(c) => {
                    let Node::Call { end, .. } = self.nodes[c as usize] else {
                        unreachable!()
                    };
                    let ce = end.min(until);
                    if ce > t {
                        self.call(parts, c, t, ce);
                        t = ce;
                    }
                    // Released mode: waiting for a worker after the call.
                    take(parts, ep, What::QueueWait, &mut t, until, hi);
                }
                Seg::Join(j) => {
                    let Node::Join { decided, decider } = self.nodes[j as usize] else {
                        unreachable!()
                    };
                    let de = decided.min(until);
                    if de > t {
                        let branch = self.branch_on_path(j, decider);
                        self.fiber(parts, branch, t, de, ep);
                        t = de;
                    }
                    take(parts, ep, What::QueueWait, &mut t, until, hi);
                }
            }
        }
        take(parts, ep, What::Work, &mut t, hi, hi);
    }

    /// The branch that decided a join; before a decision (the caller gave up first),
    /// the one that ran longest (the first of those).
    fn branch_on_path(&self, j: u32, decider: u32) -> u32 {
        let mut best = (0u64, NONE);
        for &b in self.kids(j) {
            let Node::Fiber { branch, end, .. } = self.nodes[b as usize] else {
                unreachable!()
            };
            if decider != NONE && branch == decider {
                return b;
            }
            if best.1 == NONE || end > best.0 {
                best = (end, b);
            }
        }
        best.1
    }
}

impl Tree<'_> {
    /// The spans and hops of a finished root, ends still open cut at the root's end.
    fn spans(&self, workload: WorkloadId, number: u64) -> RequestTrace {
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

/// The hooks the model calls. Each is one test of the recorder when it is off.
impl World {
    #[inline]
    pub(super) fn trace_call(
        &mut self,
        l: Id,
        origin: Origin,
        edge: EdgeId,
        now: crate::engine::SimTime,
    ) {
        if let Some(r) = self.recorder.as_deref_mut() {
            let measured = now >= self.warmup_end;
            r.call_started(&self.spec, l, origin, edge, now.as_nanos(), measured);
        }
    }

    /// A logical call is over (`None`: abandoned by its caller).
    #[inline]
    pub(super) fn trace_call_end(
        &mut self,
        l: Id,
        status: Option<Status>,
        now: crate::engine::SimTime,
    ) {
        if let Some(r) = self.recorder.as_deref_mut() {
            let Some((root, n)) = r.calls.get(l, &r.roots) else {
                return;
            };
            let now = now.as_nanos();
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
    pub(super) fn trace_attempt(
        &mut self,
        a: Id,
        l: Id,
        number: u32,
        hedge: bool,
        now: crate::engine::SimTime,
    ) {
        if let Some(r) = self.recorder.as_deref_mut() {
            r.attempt(a, l, number, hedge, now.as_nanos(), AttemptEnd::InFlight);
        }
    }

    /// An attempt refused before it left ("breaker", "bulkhead", "rate_limit").
    #[inline]
    pub(super) fn trace_refused(
        &mut self,
        l: Id,
        number: u32,
        why: &'static str,
        now: crate::engine::SimTime,
    ) {
        if let Some(r) = self.recorder.as_deref_mut() {
            r.attempt_refused(l, number, now.as_nanos(), why);
        }
    }

    #[inline]
    pub(super) fn trace_attempt_end(
        &mut self,
        a: Id,
        how: AttemptEnd,
        now: crate::engine::SimTime,
    ) {
        if let Some(r) = self.recorder.as_deref_mut()
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
    pub(super) fn trace_backoff(&mut self, l: Id, delay: SimDuration) {
        if let Some(r) = self.recorder.as_deref_mut()
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
    pub(super) fn trace_arrived(&mut self, a: Id, now: crate::engine::SimTime) {
        if let Some(r) = self.recorder.as_deref_mut()
            && let Some((root, n)) = r.attempts.get(a, &r.roots)
            && let Node::Attempt { arrived, .. } = r.node(root, n)
        {
            *arrived = now.as_nanos();
        }
    }

    /// The callee sends an attempt's reply.
    #[inline]
    pub(super) fn trace_replied(&mut self, a: Id, now: crate::engine::SimTime) {
        if let Some(r) = self.recorder.as_deref_mut()
            && let Some((root, n)) = r.attempts.get(a, &r.roots)
            && let Node::Attempt { replied, .. } = r.node(root, n)
        {
            *replied = now.as_nanos();
        }
    }

    /// A request is admitted (on a worker now, or queued); `root` is its handler's fiber.
    #[inline]
    pub(super) fn trace_admitted(&mut self, i: Id, now: crate::engine::SimTime) {
        if let Some(r) = self.recorder.as_deref_mut() {
            let inv = &self.invocations[i];
            let super::world::AnswerTo::Attempt { attempt, .. } = inv.answer_to else {
                return;
            };
            let Some((root, a)) = r.attempts.get(attempt, &r.roots) else {
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
            if let Node::Attempt { invocation, .. } = r.node(root, a) {
                *invocation = n;
            }
        }
    }

    /// A queued request gets its worker.
    #[inline]
    pub(super) fn trace_started(&mut self, i: Id, now: crate::engine::SimTime) {
        if let Some(r) = self.recorder.as_deref_mut()
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
    pub(super) fn trace_answered(
        &mut self,
        i: Id,
        status: Option<Status>,
        now: crate::engine::SimTime,
    ) {
        if let Some(r) = self.recorder.as_deref_mut()
            && let Some((root, n)) = r.invocations.get(i, &r.roots)
            && let Node::Invocation { end, status: s, .. } = r.node(root, n)
        {
            *end = now.as_nanos();
            *s = status;
        }
    }

    /// A fiber runs its next steps.
    #[inline]
    pub(super) fn trace_runs(&mut self, f: Id, now: crate::engine::SimTime) {
        if let Some(r) = self.recorder.as_deref_mut()
            && let Some((root, n)) = r.fibers.get(f, &r.roots)
        {
            r.close_seg(root, n, now.as_nanos());
        }
    }

    /// A fiber ends (finished or cancelled).
    #[inline]
    pub(super) fn trace_fiber_end(&mut self, f: Id, now: crate::engine::SimTime) {
        if let Some(r) = self.recorder.as_deref_mut()
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
    pub(super) fn trace_publish_wait(&mut self, f: Id, now: crate::engine::SimTime) {
        if let Some(r) = self.recorder.as_deref_mut()
            && let Some((root, n)) = r.fibers.get(f, &r.roots)
        {
            r.open_seg(root, n, Seg::Publish, now.as_nanos());
        }
    }

    /// A `parallel` step: fiber `f` waits on `join` for `children`.
    #[inline]
    pub(super) fn trace_fork(
        &mut self,
        f: Id,
        join: Id,
        children: &[Id],
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
    pub(super) fn trace_join(&mut self, j: Id, branch: u32, now: crate::engine::SimTime) {
        if let Some(r) = self.recorder.as_deref_mut()
            && let Some((root, n)) = r.joins.get(j, &r.roots)
            && let Node::Join { decided, decider } = r.node(root, n)
        {
            *decided = now.as_nanos();
            *decider = branch;
        }
    }

    /// Hands over the traces kept and every workload's attribution (empty when off).
    pub(super) fn take_recorded(&mut self) -> Traces {
        let Some(r) = self.recorder.take() else {
            return Traces::default();
        };
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

impl Recorder {
    fn attempt(&mut self, a: Id, l: Id, number: u32, hedge: bool, now: u64, how: AttemptEnd) {
        let Some((root, call)) = self.calls.get(l, &self.roots) else {
            return;
        };
        let end = if how == AttemptEnd::InFlight {
            OPEN
        } else {
            now
        };
        let n = self.push(
            root,
            Node::Attempt {
                call,
                number,
                hedge,
                sent: now,
                arrived: OPEN,
                replied: OPEN,
                end,
                how,
                backoff: 0,
                invocation: NONE,
            },
        );
        let generation = self.roots[root as usize].generation;
        self.attempts.set(a, root, generation, n);
    }

    fn attempt_refused(&mut self, l: Id, number: u32, now: u64, why: &'static str) {
        let Some((root, call)) = self.calls.get(l, &self.roots) else {
            return;
        };
        self.push(
            root,
            Node::Attempt {
                call,
                number,
                hedge: false,
                sent: now,
                arrived: OPEN,
                replied: OPEN,
                end: now,
                how: AttemptEnd::Refused(why),
                backoff: 0,
                invocation: NONE,
            },
        );
    }
}
