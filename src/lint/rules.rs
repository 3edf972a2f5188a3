//! The lints, one function each. Arithmetic is on means (the design's nominal numbers)
//! and on worst cases (every retry fires); a retry budget or gRPC throttling caps a
//! worst case, because under widespread failure (the case these lints are about) it is
//! what limits retries.

use super::system::{Node, Service, System, Wait};
use super::{Finding, Severity};
use crate::report::numbers::number;

/// Utilization at or above this is a warning (queues grow long well before 1).
pub const UTILIZATION_WARN: f64 = 0.85;
/// Attempts per client request at one endpoint at or above this is a warning.
pub const AMPLIFICATION_WARN: f64 = 10.0;
/// Call graphs deeper than this are not followed (a cycle through a broker, or a design
/// no lint can help).
const MAX_DEPTH: usize = 32;
/// At most this many (endpoint, path) visits per walk: a graph with exponentially many
/// paths (fan-outs through republishing consumers) is cut off rather than hanging.
const MAX_VISITS: usize = 1_000_000;

pub fn all(s: &System) -> Vec<Finding> {
    let mut out = Vec::new();
    overload(s, &mut out);
    retry_amplification(s, &mut out);
    timeout_inversion(s, &mut out);
    retry_outside_deadline(s, &mut out);
    unbounded_wait(s, &mut out);
    cached_write(s, &mut out);
    redelivered_effect(s, &mut out);
    retried_effect(s, &mut out);
    replayed_failure(s, &mut out);
    unused(s, &mut out);
    out
}

fn ms(seconds: f64) -> String {
    if seconds >= 1.0 {
        format!("{} s", number(seconds))
    } else {
        format!("{} ms", number(seconds * 1e3))
    }
}

/// Attempts one logical call on `edge` may make: (worst case, capped by a budget).
pub fn attempts(s: &System, edge: usize) -> (f64, f64) {
    let p = &s.policies[s.edges[edge].policy];
    let hedge = f64::from(p.hedge_attempts);
    match &p.retry {
        None => (hedge, hedge),
        Some(r) => {
            let worst = f64::from(r.max_attempts) * hedge;
            let capped = match (r.budget_share, r.throttled) {
                (Some(share), _) => (1.0 + share).min(f64::from(r.max_attempts)) * hedge,
                (None, true) => hedge,
                (None, false) => worst,
            };
            (worst, capped)
        }
    }
}

/// Mean time to answer each endpoint, from its work, its calls' round trips and its
/// callees' own times (parallel branches: the one the join waits for). Calls form a
/// graph without cycles (the scenario refuses them), so each endpoint is computed once.
pub fn latencies(s: &System) -> Vec<f64> {
    fn seq(s: &System, nodes: &[Node], memo: &mut Vec<Option<f64>>, depth: usize) -> f64 {
        nodes.iter().map(|n| node(s, n, memo, depth)).sum()
    }
    fn node(s: &System, n: &Node, memo: &mut Vec<Option<f64>>, depth: usize) -> f64 {
        match n {
            Node::Work(w) => *w,
            Node::Call { edge, .. } => {
                let e = &s.edges[*edge];
                2.0 * e.link_one_way_s + endpoint(s, e.target, memo, depth + 1)
            }
            Node::Parallel { wait, branches } => {
                let mut t: Vec<f64> = branches.iter().map(|b| seq(s, b, memo, depth)).collect();
                t.sort_by(f64::total_cmp);
                match wait {
                    Wait::All => t.last().copied().unwrap_or(0.0),
                    Wait::First => t.first().copied().unwrap_or(0.0),
                    Wait::Nth(n) => t.get(n.saturating_sub(1)).copied().unwrap_or(0.0),
                }
            }
            Node::Publish(_) | Node::Effect(_) | Node::Fail => 0.0,
        }
    }
    fn endpoint(s: &System, ep: usize, memo: &mut Vec<Option<f64>>, depth: usize) -> f64 {
        if let Some(t) = memo[ep] {
            return t;
        }
        if depth >= MAX_DEPTH {
            return 0.0;
        }
        let t = seq(s, &s.endpoints[ep].steps, memo, depth);
        memo[ep] = Some(t);
        t
    }
    let mut memo = vec![None; s.endpoints.len()];
    (0..s.endpoints.len())
        .map(|ep| endpoint(s, ep, &mut memo, 0))
        .collect()
}

/// Worker time one request of each endpoint takes: its work, and with workers held
/// during calls, the time it waits on them too.
pub fn holding_times(s: &System) -> Vec<f64> {
    fn work(nodes: &[Node]) -> f64 {
        nodes
            .iter()
            .map(|n| match n {
                Node::Work(w) => *w,
                Node::Parallel { branches, .. } => branches.iter().map(|b| work(b)).sum(),
                _ => 0.0,
            })
            .sum()
    }
    let latency = latencies(s);
    s.endpoints
        .iter()
        .enumerate()
        .map(|(i, ep)| {
            if s.services[ep.service].held {
                latency[i]
            } else {
                work(&ep.steps)
            }
        })
        .collect()
}

/// Requests per second offered to every endpoint at the workloads' peak rates:
/// (nominal: one attempt per call, worst case: every retry fires, capped by budgets).
pub fn offered_load(s: &System) -> Vec<(f64, f64)> {
    let mut load = vec![(0.0, 0.0); s.endpoints.len()];
    let mut visits = 0;
    for w in &s.workloads {
        let (_, capped) = attempts(s, w.edge);
        let target = s.edges[w.edge].target;
        arrive(
            s,
            target,
            (w.peak_rate, w.peak_rate * capped),
            &mut load,
            0,
            &mut visits,
        );
    }
    load
}

/// Adds `rate` to an endpoint's load and sends on what its steps call or publish,
/// up to MAX_DEPTH hops and MAX_VISITS in all (a cycle must not loop forever).
fn arrive(
    s: &System,
    ep: usize,
    rate: (f64, f64),
    load: &mut [(f64, f64)],
    depth: usize,
    visits: &mut usize,
) {
    *visits += 1;
    if *visits > MAX_VISITS {
        return;
    }
    load[ep].0 += rate.0;
    load[ep].1 += rate.1;
    if depth >= MAX_DEPTH {
        return;
    }
    send(s, &s.endpoints[ep].steps, rate, load, depth, visits);
}

/// Sends `rate` along a sequence of steps: each call's target, capped retries
/// multiplying the worst case; each publish's consumers.
fn send(
    s: &System,
    nodes: &[Node],
    rate: (f64, f64),
    load: &mut [(f64, f64)],
    depth: usize,
    visits: &mut usize,
) {
    for n in nodes {
        match n {
            Node::Call { edge, .. } => {
                let (_, capped) = attempts(s, *edge);
                let target = s.edges[*edge].target;
                arrive(
                    s,
                    target,
                    (rate.0, rate.1 * capped),
                    load,
                    depth + 1,
                    visits,
                );
            }
            Node::Parallel { branches, .. } => {
                for b in branches {
                    send(s, b, rate, load, depth, visits);
                }
            }
            Node::Publish(p) => publish(s, *p, rate, load, depth, visits),
            Node::Work(_) | Node::Effect(_) | Node::Fail => {}
        }
    }
}

/// A publish at `rate`: competing consumers share a queue's messages, and every
/// consumer group reads every message of a topic.
fn publish(
    s: &System,
    p: usize,
    rate: (f64, f64),
    load: &mut [(f64, f64)],
    depth: usize,
    visits: &mut usize,
) {
    let p = &s.publishes[p];
    for &q in &p.queues {
        // Competing consumers share a queue's messages.
        let consumers = &s.queues[q].consumers;
        let share = 1.0 / consumers.len().max(1) as f64;
        for &c in consumers {
            let to = s.consumers[c].endpoint;
            arrive(
                s,
                to,
                (rate.0 * share, rate.1 * share),
                load,
                depth + 1,
                visits,
            );
        }
    }
    // Every consumer group reads every message of a topic.
    for &g in p.topic.map(|t| &s.topic_groups[t]).into_iter().flatten() {
        arrive(s, s.consumers[g].endpoint, rate, load, depth + 1, visits);
    }
}

/// Per service: (nominal utilization, worst-case utilization).
pub fn utilization(s: &System) -> Vec<(f64, f64)> {
    let load = offered_load(s);
    let hold = holding_times(s);
    s.services
        .iter()
        .map(|svc| {
            let workers = f64::from(svc.replicas) * f64::from(svc.workers);
            let busy = |pick: fn(&(f64, f64)) -> f64| {
                svc.endpoints
                    .iter()
                    .map(|&e| pick(&load[e]) * hold[e])
                    .sum::<f64>()
                    / workers.max(1.0)
            };
            (busy(|l| l.0), busy(|l| l.1))
        })
        .collect()
}

fn overload(s: &System, out: &mut Vec<Finding>) {
    let load = offered_load(s);
    let hold = holding_times(s);
    for (svc, (nominal, worst)) in s.services.iter().zip(utilization(s)) {
        let workers = svc.replicas * svc.workers;
        let busiest = svc
            .endpoints
            .iter()
            .copied()
            .max_by(|a, b| (load[*a].0 * hold[*a]).total_cmp(&(load[*b].0 * hold[*b])));
        let Some(busiest) = busiest else { continue };
        let per = |e: usize| {
            format!(
                "{} at {}/s x {} of worker time",
                s.endpoints[e].name,
                number(load[e].0),
                ms(hold[e])
            )
        };
        let waits = svc
            .endpoints
            .iter()
            .any(|&e| !calls_of(&s.endpoints[e].steps).is_empty());
        let explain_hold = if svc.held && waits {
            " (its workers stay held while it waits on calls, so that wait counts as worker time)"
        } else {
            ""
        };
        if nominal >= UTILIZATION_WARN {
            let error = nominal >= 1.0;
            out.push(Finding {
                code: "overload",
                severity: if error { Severity::Error } else { Severity::Warning },
                span: svc.span.clone(),
                message: format!(
                    "`{}` is offered {:.0}% of its capacity: {} on {}",
                    svc.name,
                    nominal * 100.0,
                    per(busiest),
                    crate::report::numbers::plural(u64::from(workers), "worker")
                ),
                label: format!("utilization {}", number(nominal)),
                explanation: format!(
                    "utilization = offered requests/s x worker time per request / (replicas x workers){explain_hold}. {}",
                    if error {
                        "At 1 or more the queue grows without bound: requests are rejected or time out."
                    } else {
                        "Above 0.85 waiting times grow steeply (queueing theory: as 1 / (1 - utilization))."
                    }
                ),
                fix: "add replicas or workers, make the work cheaper, or take work off the request path (publish it to a queue)".to_owned(),
                measure: Some(nominal),
            });
        } else if worst >= 1.0 {
            let worst_rps = svc.endpoints.iter().map(|&e| load[e].1).sum::<f64>();
            out.push(overload_by_retries(
                svc,
                nominal,
                worst,
                worst_rps,
                explain_hold,
            ));
        }
    }
}

/// A service under capacity that retries can push over it: `worst` is its utilization
/// when every retry fires, at `worst_rps` offered.
fn overload_by_retries(
    svc: &Service,
    nominal: f64,
    worst: f64,
    worst_rps: f64,
    explain_hold: &str,
) -> Finding {
    Finding {
        code: "overload",
        severity: Severity::Warning,
        span: svc.span.clone(),
        message: format!(
            "`{}` is at {:.0}% of its capacity, but {:.0}% when every retry fires ({}/s offered at worst)",
            svc.name,
            nominal * 100.0,
            worst * 100.0,
            number(worst_rps)
        ),
        label: format!("utilization {} (worst case {})", number(nominal), number(worst)),
        explanation: format!(
            "retries multiply the load exactly when the service is in trouble: a brief slowdown makes callers retry, the retries keep it overloaded after the slowdown ends (a metastable failure){explain_hold}"
        ),
        fix: "cap retries with a retry budget (`retry.budget`) or gRPC throttling, retry at one layer only, or add capacity".to_owned(),
        measure: Some(worst),
    }
}

/// A path of calls from a workload, and its attempts (capped) at each step.
fn retry_amplification(s: &System, out: &mut Vec<Finding>) {
    struct Walk<'a> {
        s: &'a System,
        out: &'a mut Vec<Finding>,
        workload: &'a str,
        visits: usize,
    }
    impl Walk<'_> {
        /// Returns whether a finding was made at or below this edge.
        fn edge(&mut self, edge: usize, path: &mut Vec<(usize, f64, f64)>, depth: usize) -> bool {
            self.visits += 1;
            if self.visits > MAX_VISITS {
                return false;
            }
            let (worst, capped) = attempts(self.s, edge);
            path.push((edge, worst, capped));
            let target = self.s.edges[edge].target;
            let mut below = false;
            if depth < MAX_DEPTH {
                let calls = calls_of(&self.s.endpoints[target].steps);
                for c in calls {
                    below |= self.edge(c, path, depth + 1);
                }
            }
            let product: f64 = path.iter().map(|p| p.2).product();
            let mut made = below;
            if !below && product >= AMPLIFICATION_WARN {
                let factors: Vec<String> = path
                    .iter()
                    .map(|(e, _, c)| format!("{} {}", self.s.edges[*e].name, number(*c)))
                    .collect();
                self.out.push(Finding {
                    code: "retry-amplification",
                    severity: Severity::Warning,
                    span: self.s.edges[edge].span.clone(),
                    message: format!(
                        "up to {} attempts at {} per request of `{}`",
                        number(product),
                        self.s.endpoints[target].name,
                        self.workload
                    ),
                    label: factors.join(" x "),
                    explanation: "retries at every layer multiply: when the bottom is slow or failing, each layer retries the layer below, which retries again, and the bottom receives many times the client's load exactly when it can least take it".to_owned(),
                    fix: "retry at one layer only (usually the outermost or the innermost), or give each retrying policy a budget (`retry.budget = { percent = 20 }`)".to_owned(),
                    measure: Some(product),
                });
                made = true;
            }
            path.pop();
            made
        }
    }
    for w in &s.workloads {
        let mut walk = Walk {
            s,
            out: &mut *out,
            workload: &w.name,
            visits: 0,
        };
        walk.edge(w.edge, &mut Vec::new(), 0);
    }
}

/// Every edge a handler calls (parallel branches included, publishes not).
fn calls_of(nodes: &[Node]) -> Vec<usize> {
    let mut v = Vec::new();
    for n in nodes {
        match n {
            Node::Call { edge, .. } => v.push(*edge),
            Node::Parallel { branches, .. } => {
                for b in branches {
                    v.extend(calls_of(b));
                }
            }
            _ => {}
        }
    }
    v
}

/// How long one call on `edge` may take before its caller's policy ends it: its
/// attempts x per-try timeout plus the longest backoffs, or its deadline. None: no bound.
fn call_bound(s: &System, edge: usize, timeout_s: Option<f64>) -> Option<(f64, String)> {
    let p = &s.policies[s.edges[edge].policy];
    let (_, capped) = attempts(s, edge);
    let hedge = f64::from(p.hedge_attempts);
    let tries = (capped / hedge).floor().max(1.0) as usize;
    let by_tries = timeout_s.map(|t| {
        let backoff: f64 = p
            .retry
            .as_ref()
            .map(|r| r.backoff_max_s.iter().take(tries - 1).sum())
            .unwrap_or(0.0);
        let text = if tries > 1 {
            format!(
                "{}: {tries} attempts x {} + up to {} of backoff",
                s.edges[edge].name,
                ms(t),
                ms(backoff)
            )
        } else {
            format!("{}: timeout {}", s.edges[edge].name, ms(t))
        };
        (tries as f64 * t + backoff, text)
    });
    match (by_tries, p.deadline_s) {
        (Some((t, _)), Some(d)) if d < t => {
            Some((d, format!("{}: deadline {}", s.edges[edge].name, ms(d))))
        }
        (Some(x), _) => Some(x),
        (None, Some(d)) => Some((d, format!("{}: deadline {}", s.edges[edge].name, ms(d)))),
        (None, None) => None,
    }
}

fn timeout_inversion(s: &System, out: &mut Vec<Finding>) {
    // How long an endpoint may legitimately take: its work plus its calls' bounds;
    // None when one of its calls has no bound (unbounded-wait's business).
    fn legit(s: &System, nodes: &[Node], why: &mut Vec<String>) -> Option<f64> {
        let mut t = 0.0;
        for n in nodes {
            t += match n {
                Node::Work(w) => *w,
                Node::Call { edge, timeout_s } => {
                    let (b, text) = call_bound(s, *edge, *timeout_s)?;
                    why.push(text);
                    b
                }
                Node::Parallel { branches, .. } => {
                    let mut m: f64 = 0.0;
                    for b in branches {
                        m = m.max(legit(s, b, why)?);
                    }
                    m
                }
                _ => 0.0,
            };
        }
        Some(t)
    }
    let timeouts = s.edges.iter().enumerate().filter_map(|(i, e)| {
        let p = &s.policies[e.policy];
        let t = match (site_timeout(s, i), p.deadline_s) {
            (Some(t), Some(d)) => t.min(d),
            (t, d) => t.or(d)?,
        };
        Some((i, t))
    });
    for (edge, t) in timeouts {
        let e = &s.edges[edge];
        let callee = &s.endpoints[e.target];
        if calls_of(&callee.steps).is_empty() {
            continue;
        }
        let mut why = Vec::new();
        let Some(needed) = legit(s, &callee.steps, &mut why) else {
            continue;
        };
        if why.is_empty() || t >= needed {
            continue;
        }
        let caller = e.caller.map_or_else(
            || e.name.split("->").next().unwrap_or("").to_owned(),
            |c| s.services[c].name.clone(),
        );
        out.push(Finding {
            code: "timeout-inversion",
            severity: Severity::Warning,
            span: e.span.clone(),
            message: format!(
                "`{caller}` gives up on {} after {}, but it may legitimately take {}",
                callee.name,
                ms(t),
                ms(needed)
            ),
            label: why.join("; "),
            explanation: format!(
                "when the caller's timeout fires first, {} keeps working (and retrying) for an answer nobody waits for, while the caller retries or fails: the work is wasted and adds load exactly when the system is slow",
                callee.name
            ),
            fix: "make timeouts shrink with depth: a caller's timeout above what its callee's own timeouts, attempts and backoff add up to; or give the callee fewer attempts, or propagate a deadline (`deadline` + `propagate_deadline = true`)".to_owned(),
            measure: Some(needed),
        });
    }
}

/// The per-try timeout of calls on an edge: the first call site's own, else its policy's.
fn site_timeout(s: &System, edge: usize) -> Option<f64> {
    fn find(nodes: &[Node], edge: usize) -> Option<Option<f64>> {
        for n in nodes {
            match n {
                Node::Call { edge: e, timeout_s } if *e == edge => return Some(*timeout_s),
                Node::Parallel { branches, .. } => {
                    for b in branches {
                        if let Some(t) = find(b, edge) {
                            return Some(t);
                        }
                    }
                }
                _ => {}
            }
        }
        None
    }
    let e = &s.edges[edge];
    let policy = s.policies[e.policy].try_timeout_s;
    match e.caller {
        Some(c) => s.services[c]
            .endpoints
            .iter()
            .find_map(|&ep| find(&s.endpoints[ep].steps, edge))
            .unwrap_or(policy),
        None => s
            .workloads
            .iter()
            .find(|w| w.edge == edge)
            .and_then(|w| w.timeout_s)
            .or(policy),
    }
}

fn retry_outside_deadline(s: &System, out: &mut Vec<Finding>) {
    for (i, p) in s.policies.iter().enumerate() {
        let (Some(span), Some(r), Some(d), Some(t)) =
            (&p.span, &p.retry, p.deadline_s, p.try_timeout_s)
        else {
            continue;
        };
        if !s.edges.iter().any(|e| e.policy == i) {
            continue;
        }
        let first_backoff = r.backoff_max_s.first().copied().unwrap_or(0.0);
        if t < d {
            continue;
        }
        out.push(Finding {
            code: "retry-outside-deadline",
            severity: Severity::Warning,
            span: span.clone(),
            message: format!(
                "policy `{}` retries up to {} times, but its per-try timeout ({}) is not shorter than its deadline ({})",
                p.name,
                r.max_attempts,
                ms(t),
                ms(d)
            ),
            label: format!(
                "a timed-out attempt has used the whole deadline: no room for a retry (next backoff up to {})",
                ms(first_backoff)
            ),
            explanation: "the deadline bounds the whole call, every attempt included; an attempt that runs into its per-try timeout has already spent the deadline, so the retries configured here never happen after a timeout".to_owned(),
            fix: "make the per-try timeout a fraction of the deadline (e.g. deadline / attempts, minus the backoff), or drop the retries".to_owned(),
            measure: Some(t),
        });
    }
}

fn unbounded_wait(s: &System, out: &mut Vec<Finding>) {
    for (i, e) in s.edges.iter().enumerate() {
        let Some(caller) = e.caller else { continue };
        let svc = &s.services[caller];
        if !svc.held || site_timeout(s, i).is_some() || s.policies[e.policy].deadline_s.is_some() {
            continue;
        }
        let callee = &s.endpoints[e.target];
        if calls_of(&callee.steps).is_empty() {
            continue;
        }
        out.push(Finding {
            code: "unbounded-wait",
            severity: Severity::Warning,
            span: e.span.clone(),
            message: format!(
                "`{}` waits on {} with no timeout, holding one of its {}",
                svc.name,
                callee.name,
                crate::report::numbers::plural(u64::from(svc.replicas * svc.workers), "worker")
            ),
            label: "no timeout, no deadline".to_owned(),
            explanation: format!(
                "{} itself waits on further calls, so a slow service anywhere below makes `{}`'s workers wait as long as it is slow; they fill up and `{}` rejects everything, also requests that never touch the slow service (the cascading failure)",
                callee.name, svc.name, svc.name
            ),
            fix: "give the call a timeout (policy `timeout`, shorter than the caller's own caller's), and consider a breaker and a bulkhead (`bulkhead.max_concurrent`) on it".to_owned(),
            measure: None,
        });
    }
}

/// Whether a handler (or what it calls, down to an idempotent endpoint) has `what`.
fn reaches(
    s: &System,
    nodes: &[Node],
    what: fn(&Node) -> bool,
    through_idempotent: bool,
    depth: usize,
) -> bool {
    nodes.iter().any(|n| {
        what(n)
            || match n {
                Node::Call { edge, .. } if depth < MAX_DEPTH => {
                    let t = &s.endpoints[s.edges[*edge].target];
                    (through_idempotent || !t.idempotent)
                        && reaches(s, &t.steps, what, through_idempotent, depth + 1)
                }
                Node::Parallel { branches, .. } => branches
                    .iter()
                    .any(|b| reaches(s, b, what, through_idempotent, depth)),
                _ => false,
            }
    })
}

fn is_write(n: &Node) -> bool {
    matches!(n, Node::Effect(_) | Node::Publish(_))
}

fn is_effect(n: &Node) -> bool {
    matches!(n, Node::Effect(_))
}

fn cached_write(s: &System, out: &mut Vec<Finding>) {
    for e in &s.edges {
        let p = &s.policies[e.policy];
        let callee = &s.endpoints[e.target];
        if !p.cache || !reaches(s, &callee.steps, is_write, true, 0) {
            continue;
        }
        out.push(Finding {
            code: "cached-write",
            severity: Severity::Warning,
            span: e.span.clone(),
            message: format!(
                "policy `{}` caches answers of {}, which writes (an `effect` or a `publish`)",
                p.name, callee.name
            ),
            label: "a cache hit skips the call".to_owned(),
            explanation: "a cache returns a stored answer without calling: for a write, the effect or the message silently does not happen for every hit".to_owned(),
            fix: "cache only reads; split the endpoint into a read (cached) and a write (not cached)".to_owned(),
            measure: None,
        });
    }
}

fn redelivered_effect(s: &System, out: &mut Vec<Finding>) {
    for c in &s.consumers {
        let handler = &s.endpoints[c.endpoint];
        if c.dedupe || !reaches(s, &handler.steps, is_effect, false, 0) {
            continue;
        }
        let source = match (c.queue, c.topic) {
            (Some(q), _) => format!("queue {}", s.queues[q].name),
            _ => "its topic".to_owned(),
        };
        out.push(Finding {
            code: "redelivered-effect",
            severity: Severity::Warning,
            span: c.span.clone(),
            message: format!(
                "consumer `{}` applies an effect, but does not deduplicate the messages of {source}",
                c.name
            ),
            label: "no `dedupe`".to_owned(),
            explanation: "brokers deliver at least once: a crash, an ack timeout, a nack or a rebalance hands the same message out again, and every redelivery applies the effect again".to_owned(),
            fix: "make the consumer idempotent: `dedupe = { by = \"message\" }` (a processed-messages store written with the effect), or call an endpoint with `idempotency`".to_owned(),
            measure: None,
        });
    }
}

fn retried_effect(s: &System, out: &mut Vec<Finding>) {
    for (i, e) in s.edges.iter().enumerate() {
        let (worst, _) = attempts(s, i);
        let callee = &s.endpoints[e.target];
        if worst <= 1.0 || callee.idempotent || !reaches(s, &callee.steps, is_effect, false, 0) {
            continue;
        }
        out.push(Finding {
            code: "retried-effect",
            severity: Severity::Warning,
            span: e.span.clone(),
            message: format!(
                "{} applies an effect and is called with up to {} attempts, without an idempotency key",
                callee.name,
                number(worst)
            ),
            label: format!("policy `{}` retries", s.policies[e.policy].name),
            explanation: "an attempt that timed out may still have succeeded (its reply was late or lost): the retry applies the effect a second time (the double-charge trap)".to_owned(),
            fix: format!(
                "give {} an `idempotency` window (the first result per operation is stored and replayed to retries), or do not retry this call",
                callee.name
            ),
            measure: Some(worst),
        });
    }
}

fn is_fail(n: &Node) -> bool {
    matches!(n, Node::Fail)
}

/// An idempotent endpoint stores its first answer, failures included, and replays it:
/// retrying it after a failure gets the same failure back, and a consumer that
/// requeues such a message loops until its delivery limit (or forever).
fn replayed_failure(s: &System, out: &mut Vec<Finding>) {
    for (i, e) in s.edges.iter().enumerate() {
        let callee = &s.endpoints[e.target];
        if !callee.idempotent || !reaches(s, &callee.steps, is_fail, true, 0) {
            continue;
        }
        let (worst, _) = attempts(s, i);
        let consumer = e
            .caller
            .and_then(|c| s.services[c].consumer)
            .map(|c| s.consumers[c].name.clone());
        let why = match (&consumer, worst > 1.0) {
            (_, true) => format!("it is called with up to {} attempts", number(worst)),
            (Some(c), false) => format!("consumer `{c}` handles a failure by redelivering"),
            (None, false) => continue,
        };
        out.push(Finding {
            code: "replayed-failure",
            severity: Severity::Warning,
            span: e.span.clone(),
            message: format!(
                "{} has `idempotency` and can fail, and {why}: every retry gets the stored failure back",
                callee.name
            ),
            label: "retried into a stored answer".to_owned(),
            explanation: "an idempotency key stores the first answer of an operation, an error included, and replays it to every later request of that operation (Stripe's semantics): a retry never runs the handler again, and a consumer that requeues the message on failure redelivers it until its delivery limit, or forever".to_owned(),
            fix: "retry below the idempotent endpoint (where the failure happens), or make the consumer idempotent itself (`dedupe`) instead of calling an idempotent endpoint, or do not requeue on failure".to_owned(),
            measure: None,
        });
    }
}

/// What the scenario declares and never uses: services and endpoints nothing calls,
/// policies on no call, queues nothing publishes to or nothing drains.
fn unused(s: &System, out: &mut Vec<Finding>) {
    unused_services(s, out);
    unused_policies(s, out);
    unused_queues(s, out);
}

fn unused_services(s: &System, out: &mut Vec<Finding>) {
    let called: Vec<bool> = (0..s.endpoints.len())
        .map(|ep| s.edges.iter().any(|e| e.target == ep))
        .collect();
    for svc in &s.services {
        if svc.consumer.is_some() {
            continue;
        }
        if !svc.endpoints.iter().any(|&e| called[e]) {
            out.push(Finding {
                code: "unreachable-service",
                severity: Severity::Warning,
                span: svc.span.clone(),
                message: format!("nothing calls `{}`", svc.name),
                label: "no workload or service calls any of its endpoints".to_owned(),
                explanation: "it takes no part in the run: its numbers will all be zero, which is usually a misspelled or forgotten call".to_owned(),
                fix: "call it (`{ call = \"SERVICE/ENDPOINT\" }` or a workload's `target`), or remove it".to_owned(),
                measure: None,
            });
            continue;
        }
        for &e in svc.endpoints.iter().filter(|&&e| !called[e]) {
            out.push(Finding {
                code: "unused-endpoint",
                severity: Severity::Note,
                span: s.endpoints[e].span.clone(),
                message: format!("nothing calls {}", s.endpoints[e].name),
                label: "never called".to_owned(),
                explanation: "an endpoint nobody calls is never run".to_owned(),
                fix: "call it, or remove it".to_owned(),
                measure: None,
            });
        }
    }
}

fn unused_policies(s: &System, out: &mut Vec<Finding>) {
    for (i, p) in s.policies.iter().enumerate() {
        let Some(span) = &p.span else { continue };
        if s.edges.iter().any(|e| e.policy == i) {
            continue;
        }
        out.push(Finding {
            code: "unused-policy",
            severity: Severity::Warning,
            span: span.clone(),
            message: format!("policy `{}` is on no call", p.name),
            label: "never used".to_owned(),
            explanation: "a policy applies only to calls and workloads that name it (`policy = \"NAME\"`), or to all that name none if it is called `default`: this one protects nothing".to_owned(),
            fix: format!("add `policy = \"{}\"` to the calls it is meant for, or remove it", p.name),
            measure: None,
        });
    }
}

fn unused_queues(s: &System, out: &mut Vec<Finding>) {
    let published: Vec<bool> = (0..s.queues.len())
        .map(|q| s.publishes.iter().any(|p| p.queues.contains(&q)))
        .collect();
    for (q, queue) in s.queues.iter().enumerate() {
        if !published[q] && !queue.dead_letter_target {
            out.push(Finding {
                code: "unused-queue",
                severity: Severity::Warning,
                span: queue.span.clone(),
                message: format!("nothing publishes to {}", queue.name),
                label: "no `publish` reaches it (directly or through an exchange)".to_owned(),
                explanation: "a queue nobody publishes to stays empty; usually a routing key or binding that does not match".to_owned(),
                fix: "publish to it (`{ publish = \"BROKER/QUEUE\" }`), bind it to an exchange with a matching key, or remove it".to_owned(),
                measure: None,
            });
        } else if queue.consumers.is_empty() && !queue.ttl {
            out.push(Finding {
                code: "queue-grows-forever",
                severity: if queue.dead_letter_target { Severity::Note } else { Severity::Warning },
                span: queue.span.clone(),
                message: format!("{} has no consumer and no TTL", queue.name),
                label: "messages only come in".to_owned(),
                explanation: if queue.dead_letter_target {
                    "a dead-letter queue nobody reads keeps every failed message: fine while someone inspects it, a disk filling up otherwise".to_owned()
                } else {
                    "every message published here stays forever: the queue grows until the broker runs out of memory or disk".to_owned()
                },
                fix: "add a consumer (`[consumers.NAME] queue = ...`), or a `ttl` (and a `max_length`)".to_owned(),
                measure: None,
            });
        }
    }
}
