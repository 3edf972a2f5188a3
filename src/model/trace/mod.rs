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

mod hooks;
mod messages;
mod path;
mod spans;
mod tree;

use super::World;
use super::arena::Key;
use super::client::Origin;
use super::spec::{ConsumerId, EdgeId, EndpointId, PublishId, QueueId, Spec, TopicId, WorkloadId};
use super::status::Status;
use super::world::{AttemptId, CallId, DeliveryId, FiberId, InvocationId, JoinId};
use crate::engine::SimDuration;
use crate::metrics::attribution::{AttributionSums, Parts, What};
use crate::metrics::trace::{MAX_TRACES, Traces};
use path::Paths;
use std::collections::BTreeMap;
use tree::Tree;

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
    /// Cut every attributed request both ways, along its recorded tree and along its
    /// path as it goes (`path.rs`, where the scenario allows), and assert they agree
    /// (tests).
    pub check_attribution: bool,
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
    /// A message a fiber published (traced roots only, like the two below).
    Publish {
        fiber: u32,
        site: PublishId,
        msg: u64,
        at: u64,
        /// Tries on their way to the broker, and when the first one arrived.
        in_flight: u32,
        arrived: u64,
    },
    /// One copy of a message at its broker: in a queue, or at a topic partition's
    /// offset for one consumer group.
    Copy {
        msg: u64,
        /// The `Publish` that sent it, or the copy it was dead-lettered from.
        publish: u32,
        from: u32,
        place: Place,
        start: u64,
        end: u64,
        how: CopyEnd,
    },
    /// A copy handed to a consumer instance.
    Delivery {
        copy: u32,
        consumer: ConsumerId,
        instance: u32,
        number: u32,
        redelivered: bool,
        sent: u64,
        /// When a retry's backoff (after a `retry` settlement) was over.
        requeued: u64,
        end: u64,
        how: DeliveryEnd,
        invocation: u32,
    },
}

/// Where a message copy waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    Queue(QueueId),
    Log {
        topic: TopicId,
        partition: u32,
        offset: u64,
        group: ConsumerId,
    },
}

/// How a message copy left its broker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CopyEnd {
    Open,
    Acked,
    /// A topic group handled its offset (ok), or gave up on it.
    Handled,
    GaveUp,
    /// Dead-lettered (or dropped without a dead-letter queue), and why.
    Rejected,
    Expired,
    MaxLength,
    DeliveryLimit,
}

/// How a delivery ended, as the broker saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DeliveryEnd {
    Open,
    Ack,
    Nack,
    Reject,
    Retry,
    AckTimeout,
    /// Taken back: the consumer's channel closed (a crash, another delivery's ack
    /// timeout) or, for a topic, its partition moved in a rebalance.
    TakenBack,
    HandledOk,
    HandledFailed,
}

impl Node {
    /// The node whose child list this one is in.
    fn parent(&self) -> u32 {
        match *self {
            Node::Attempt { call, .. } => call,
            Node::Seg { fiber, .. } => fiber,
            Node::Fiber { join, .. } => join,
            Node::Delivery { copy, .. } => copy,
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
    /// Traced, its call over, kept until its messages are settled.
    lingering: bool,
    nodes: Vec<Node>,
}

/// Arena id of kind `K` -> (root, root generation, node), by the id's slot.
struct IdMap<K> {
    /// Per slot: (id generation, root, root generation, node), once set.
    slots: Vec<Option<(u32, u32, u32, u32)>>,
    key: std::marker::PhantomData<K>,
}

impl<K> Default for IdMap<K> {
    fn default() -> Self {
        IdMap {
            slots: Vec::new(),
            key: std::marker::PhantomData,
        }
    }
}

impl<K: Key> IdMap<K> {
    fn set(&mut self, id: K, root: u32, root_gen: u32, node: u32) {
        let (slot, generation) = id.id().parts();
        let slot = slot as usize;
        if self.slots.len() <= slot {
            self.slots.resize(slot + 1, None);
        }
        self.slots[slot] = Some((generation, root, root_gen, node));
    }

    #[inline]
    fn get(&self, id: K, roots: &[Root]) -> Option<(u32, u32)> {
        let (slot, generation) = id.id().parts();
        let &(g, root, root_gen, node) = self.slots.get(slot as usize)?.as_ref()?;
        let r = roots.get(root as usize)?;
        (g == generation && r.live && r.generation == root_gen).then_some((root, node))
    }
}

pub struct Recorder {
    seed: u64,
    select: Option<TraceSelect>,
    attribution: Option<AttributionSums>,
    /// Attribution as requests go, for scenarios whose requests are sequential; the
    /// tree then records traced requests only.
    path: Option<Paths>,
    /// The tree cuts attributed requests (no `path`, or checking it).
    tree_attributes: bool,
    /// The tree records anything: traced requests, or every attributed one.
    tree: bool,
    /// A fiber's run is recorded: by the tree, or by the path (`Paths::runs_move`).
    runs_matter: bool,
    /// The path's parts of the root that just ended, while checking.
    path_parts: Parts,
    roots: Vec<Root>,
    free: Vec<u32>,
    calls: IdMap<CallId>,
    attempts: IdMap<AttemptId>,
    invocations: IdMap<InvocationId>,
    fibers: IdMap<FiberId>,
    joins: IdMap<JoinId>,
    deliveries: IdMap<DeliveryId>,
    /// The messages of traced roots: msg -> (root, root generation).
    messages: BTreeMap<u64, (u32, u32)>,
    /// Roots traced so far (kept or lingering), against `MAX_TRACES`.
    traced: usize,
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
        let by_path = attribution && Paths::fit(spec);
        let tree_attributes = attribution && (!by_path || observe.check_attribution);
        let tree = tree_attributes || observe.trace.is_some();
        let path = by_path.then(|| Paths::new(spec));
        Some(Box::new(Recorder {
            seed: spec.seed,
            select: observe.trace.clone(),
            attribution: attribution
                .then(|| AttributionSums::new(spec.workloads.len(), spec.endpoints.len())),
            runs_matter: tree || path.as_ref().is_some_and(|p| p.runs_move),
            path,
            tree_attributes,
            tree,
            path_parts: Parts::default(),
            roots: Vec::new(),
            free: Vec::new(),
            calls: IdMap::default(),
            attempts: IdMap::default(),
            invocations: IdMap::default(),
            fibers: IdMap::default(),
            joins: IdMap::default(),
            deliveries: IdMap::default(),
            messages: BTreeMap::new(),
            traced: 0,
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
                root.lingering = false;
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
                    lingering: false,
                    nodes: Vec::new(),
                });
                (self.roots.len() - 1) as u32
            }
        }
    }

    /// A logical call starts.
    fn call_started(
        &mut self,
        spec: &Spec,
        l: CallId,
        origin: Origin,
        edge: EdgeId,
        now: u64,
        measured: bool,
    ) {
        self.path_call(spec, l, origin, edge, now, measured);
        if self.tree {
            self.tree_call_started(spec, l, origin, edge, now, measured);
        }
    }

    /// A logical call starts, on the path.
    #[inline(never)]
    fn path_call(
        &mut self,
        spec: &Spec,
        l: CallId,
        origin: Origin,
        edge: EdgeId,
        now: u64,
        measured: bool,
    ) {
        if let Some(p) = &mut self.path {
            let target = spec.edges[edge.index()].target.index();
            match origin {
                Origin::Workload { workload, .. } => {
                    if measured {
                        p.root_call(l, workload.index(), target, now);
                    }
                }
                Origin::Fiber(f) => p.call(l, f, target, now),
            }
        }
    }

    #[inline(never)]
    fn tree_call_started(
        &mut self,
        spec: &Spec,
        l: CallId,
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
                let traced = self.selected(spec, workload, number) && self.traced < MAX_TRACES;
                self.traced += usize::from(traced);
                if !traced && self.select.is_some() && self.selected(spec, workload, number) {
                    self.traces.dropped += 1;
                }
                let attributed = measured && self.tree_attributes;
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
        f: FiberId,
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

    /// Whether the tree records anything beyond the path: traced requests, or every
    /// attributed one. The `path_*` methods move the path and return this, so that a
    /// hook goes on to the tree's nodes only when they exist.
    #[inline(always)]
    fn tree_records(&self) -> bool {
        self.tree
    }

    /// A step of the path recorder, when there is one; whether the tree records too.
    #[inline(always)]
    fn on_path(&mut self, step: impl FnOnce(&mut Paths)) -> bool {
        if let Some(p) = &mut self.path {
            step(p);
        }
        self.tree_records()
    }

    /// The path follows requests; a delivery's handler is not on one.
    #[inline(never)]
    fn path_admitted(&mut self, inv: &super::world::Invocation, i: InvocationId, now: u64) -> bool {
        if let Some(p) = &mut self.path
            && let super::world::AnswerTo::Attempt { attempt, .. } = inv.answer_to
        {
            let on_worker = inv.worker_since.is_some();
            p.admitted(attempt, i, inv.root, inv.endpoint.index(), on_worker, now);
        }
        self.tree_records()
    }

    /// A call is over, on the path: a root's parts are folded (or kept, to be checked
    /// against the tree's).
    #[inline(never)]
    fn path_call_end(&mut self, l: CallId, now: u64) {
        let Some(p) = &mut self.path else {
            return;
        };
        let Some(done) = p.call_end(l, now) else {
            return;
        };
        if self.tree_attributes {
            self.path_parts.clone_from(done.parts);
        } else if let Some(sums) = &mut self.attribution {
            sums.fold(done.workload, done.latency_ns, done.parts);
        }
    }

    /// The root call is over: fold its parts, keep its trace, free its buffer.
    fn root_ended(&mut self, spec: &Spec, root: u32) {
        let r = root as usize;
        let nodes = std::mem::take(&mut self.roots[r].nodes);
        self.child_lists(&nodes);
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
        if measured
            && self.tree_attributes
            && let Some(sums) = &mut self.attribution
        {
            self.parts.clear();
            tree.call(&mut self.parts, 0, start, end);
            if self.path.is_some() {
                assert!(
                    self.parts.same_as(&self.path_parts),
                    "request {number} of workload {}: the tree cut it into {:?}, the path into {:?}",
                    workload.index(),
                    self.parts,
                    self.path_parts
                );
                self.path_parts.clear();
            }
            sums.fold(workload.index(), end - start, &self.parts);
        }
        if traced {
            if messages::unsettled(&nodes) {
                // Its messages live on: the trace ends when they are settled.
                self.roots[r].nodes = nodes;
                self.roots[r].lingering = true;
                return;
            }
            let trace = tree.spans(workload, number, end, "cut_at_request_end");
            self.traces.traces.push(trace);
            self.forget_messages(&nodes);
        }
        let root = &mut self.roots[r];
        root.nodes = nodes;
        root.nodes.clear();
        root.live = false;
        self.free.push(r as u32);
    }
}

impl Recorder {
    /// Child lists (attempts of a call, segments of a fiber, branches of a join,
    /// deliveries of a message copy), in creation order, which is time order: a
    /// counting sort by parent, where kid_start[p]..kid_start[p + 1] ends up as p's list.
    fn child_lists(&mut self, nodes: &[Node]) {
        self.kid_start.clear();
        self.kid_start.resize(nodes.len() + 2, 0);
        for n in nodes {
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
    }
}

/// Whether `spec`'s attribution is cut along each request's path as it goes (its
/// requests are sequential) rather than from a recorded tree.
pub fn attributes_by_path(spec: &Spec) -> bool {
    Paths::fit(spec)
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
impl Recorder {
    fn attempt(
        &mut self,
        a: AttemptId,
        l: CallId,
        number: u32,
        hedge: bool,
        now: u64,
        how: AttemptEnd,
    ) {
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

    fn attempt_refused(&mut self, l: CallId, number: u32, now: u64, why: &'static str) {
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
