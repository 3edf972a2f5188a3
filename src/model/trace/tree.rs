//! Attribution: a finished root's nodes as a tree, and its critical path cut into
//! (endpoint, what) parts that sum to the request's latency.

use super::*;

pub(super) struct Tree<'a> {
    pub(super) nodes: &'a [Node],
    pub(super) kid_start: &'a [u32],
    pub(super) kids: &'a [u32],
    pub(super) spec: &'a Spec,
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
    pub(super) fn kids(&self, n: u32) -> &[u32] {
        let (a, b) = (
            self.kid_start[n as usize] as usize,
            self.kid_start[n as usize + 1] as usize,
        );
        &self.kids[a..b]
    }

    pub(super) fn target(&self, edge: EdgeId) -> usize {
        self.spec.edges[edge.index()].target.index()
    }

    /// Attributes [lo, hi] of a call (within its life) along its critical path: the
    /// attempt that decided it, then, going back in time, whatever attempt was in
    /// flight, the backoffs and the waits before attempts left.
    pub(super) fn call(&self, parts: &mut Parts, c: u32, lo: u64, hi: u64) {
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
