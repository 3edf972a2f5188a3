//! Traces as Chrome trace-event JSON (`{"traceEvents": [...]}`), which Perfetto
//! (ui.perfetto.dev) and chrome://tracing open. One process per service, one thread per
//! replica (and a "clients" process with a thread per workload, a "broker NAME" process
//! with a thread per queue or topic partition and group); spans are complete
//! events ("X", microseconds, fractional), hops are flow events ("s" then "f" with
//! `"bp": "e"`, bound to the enclosing spans). The format: docs/traces.md.
//!
//! A thread shows only properly nested spans, so what overlaps without nesting on one
//! replica (two requests at once, parallel branches, an orphaned attempt beside its
//! retry) goes to another lane of that replica: a thread named "svc/0 (2)".

use crate::metrics::trace::{Arg, RequestTrace, Span, Traces, Track};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// Where each span goes: (pid, tid).
struct Layout {
    /// Per span of each trace, its lane.
    lanes: Vec<Vec<u32>>,
    /// Process name -> pid.
    pids: BTreeMap<String, u32>,
    /// Track -> its place among its process's tracks (a replica's number, a
    /// workload's rank among the clients): its thread ids start there.
    bases: BTreeMap<Track, u32>,
}

/// Microseconds, as Chrome traces count.
fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

/// A flow binds to the span enclosing its timestamp: one at a span's very end is moved
/// a nanosecond inside it.
fn inside(s: &Span, ns: u64) -> f64 {
    if ns >= s.end_ns && s.end_ns > s.start_ns {
        us(s.end_ns - 1)
    } else {
        us(ns.max(s.start_ns))
    }
}

fn process_name(t: &Track) -> String {
    match t {
        Track::Client { .. } => "clients".to_owned(),
        Track::Replica { service, .. } => service.clone(),
        Track::Broker { broker, .. } => format!("broker {broker}"),
    }
}

fn thread_name(t: &Track) -> String {
    match t {
        Track::Client { workload } => workload.clone(),
        Track::Replica { service, replica } => format!("{service}/{replica}"),
        Track::Broker { place, .. } => place.clone(),
    }
}

/// Does `s` nest properly with every span already in a lane (inside, around, or apart)?
fn fits(lane: &[(u64, u64)], s: &Span) -> bool {
    lane.iter().all(|&(a, b)| {
        b <= s.start_ns
            || s.end_ns <= a
            || (a <= s.start_ns && s.end_ns <= b)
            || (s.start_ns <= a && b <= s.end_ns)
    })
}

fn layout(traces: &Traces) -> Layout {
    // Per track, per lane, the intervals placed there (across every trace).
    let mut placed: BTreeMap<Track, Vec<Vec<(u64, u64)>>> = BTreeMap::new();
    let mut lanes = Vec::new();
    for t in &traces.traces {
        let mut mine = vec![0u32; t.spans.len()];
        for (i, s) in t.spans.iter().enumerate() {
            let track_lanes = placed.entry(s.track.clone()).or_default();
            // The parent's lane first, when the parent is on this track.
            let preferred = s
                .parent
                .filter(|&p| t.spans[p as usize].track == s.track)
                .map(|p| mine[p as usize]);
            let lane = preferred
                .filter(|&l| fits(&track_lanes[l as usize], s))
                .or_else(|| {
                    (0..track_lanes.len() as u32).find(|&l| fits(&track_lanes[l as usize], s))
                })
                .unwrap_or_else(|| {
                    track_lanes.push(Vec::new());
                    (track_lanes.len() - 1) as u32
                });
            track_lanes[lane as usize].push((s.start_ns, s.end_ns));
            mine[i] = lane;
        }
        lanes.push(mine);
    }
    let mut pids = BTreeMap::new();
    let mut bases = BTreeMap::new();
    // "clients" first, then services by name.
    for track in placed.keys() {
        let name = process_name(track);
        let next = pids.len() as u32 + 1;
        pids.entry(name).or_insert(next);
        let base = match track {
            Track::Replica { replica, .. } => *replica,
            // Rank among the process's tracks so far (tracks come sorted).
            Track::Client { .. } | Track::Broker { .. } => bases
                .keys()
                .filter(|t| process_name(t) == process_name(track))
                .count() as u32,
        };
        bases.insert(track.clone(), base);
    }
    Layout { lanes, pids, bases }
}

/// A track's lane as a thread id: lanes of one replica (or client) are consecutive.
/// Under 2^31 (10,000 replicas or workloads): some viewers read ids as int32.
fn tid(layout: &Layout, track: &Track, lane: u32) -> u64 {
    u64::from(layout.bases[track]) * 100_000 + u64::from(lane) + 1
}

/// A span's arguments: its own, which request it belongs to, and its id and its
/// parent's (ids count spans across the file), so a reader can rebuild the tree.
fn args(s: &Span, trace: &RequestTrace, first_id: u64) -> Value {
    let mut m = Map::new();
    if let Some(p) = s.parent {
        m.insert("parent".to_owned(), json!(first_id + u64::from(p)));
    }
    m.insert("request".to_owned(), json!(trace.number));
    m.insert("workload".to_owned(), json!(trace.workload));
    for (k, v) in &s.args {
        let v = match v {
            Arg::Int(n) => json!(n),
            Arg::Ms(x) => json!(x),
            Arg::Text(t) => json!(t),
            Arg::Flag(b) => json!(b),
        };
        m.insert((*k).to_owned(), v);
    }
    Value::Object(m)
}

/// The metadata events that name and order the processes and threads.
fn metadata_events(traces: &Traces, layout: &Layout) -> Vec<Value> {
    let mut events = Vec::new();
    // Names of processes and threads, sorted so the clients come first.
    let mut threads: BTreeMap<(u32, u64), String> = BTreeMap::new();
    for (t, lanes) in traces.traces.iter().zip(&layout.lanes) {
        for (s, &lane) in t.spans.iter().zip(lanes) {
            let pid = layout.pids[&process_name(&s.track)];
            let name = thread_name(&s.track);
            let name = if lane == 0 {
                name
            } else {
                format!("{name} ({})", lane + 1)
            };
            threads.insert((pid, tid(layout, &s.track, lane)), name);
        }
    }
    for (name, &pid) in &layout.pids {
        events.push(
            json!({"ph": "M", "name": "process_name", "pid": pid, "tid": 0,
            "args": {"name": name}}),
        );
        events.push(
            json!({"ph": "M", "name": "process_sort_index", "pid": pid, "tid": 0,
            "args": {"sort_index": if name == "clients" { 0 } else { pid }}}),
        );
    }
    for (&(pid, tid), name) in &threads {
        events.push(
            json!({"ph": "M", "name": "thread_name", "pid": pid, "tid": tid,
            "args": {"name": name}}),
        );
        events.push(
            json!({"ph": "M", "name": "thread_sort_index", "pid": pid, "tid": tid,
            "args": {"sort_index": tid}}),
        );
    }
    events
}

/// The traces as one Chrome trace-event JSON document.
pub fn chrome_json(traces: &Traces) -> String {
    let layout = layout(traces);
    let mut events = metadata_events(traces, &layout);
    let mut flow_id = 0u64;
    let mut first_id = 1u64;
    for (t, lanes) in traces.traces.iter().zip(&layout.lanes) {
        let place = |i: u32| {
            let s = &t.spans[i as usize];
            (
                layout.pids[&process_name(&s.track)],
                tid(&layout, &s.track, lanes[i as usize]),
            )
        };
        for (i, s) in t.spans.iter().enumerate() {
            let (pid, tid) = place(i as u32);
            let mut args = args(s, t, first_id);
            args["span"] = json!(first_id + i as u64);
            events.push(json!({
                "name": s.name, "cat": s.cat, "ph": "X",
                "ts": us(s.start_ns), "dur": us(s.end_ns - s.start_ns),
                "pid": pid, "tid": tid, "args": args,
            }));
        }
        first_id += t.spans.len() as u64;
        for f in &t.flows {
            flow_id += 1;
            let (pid, tid) = place(f.from);
            let ts = inside(&t.spans[f.from as usize], f.from_ns);
            events.push(
                json!({"name": f.name, "cat": "hop", "ph": "s", "id": flow_id,
                "ts": ts, "pid": pid, "tid": tid}),
            );
            let (pid, tid) = place(f.to);
            let ts = inside(&t.spans[f.to as usize], f.to_ns);
            events.push(
                json!({"name": f.name, "cat": "hop", "ph": "f", "bp": "e", "id": flow_id,
                "ts": ts, "pid": pid, "tid": tid}),
            );
        }
    }
    let doc = json!({
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {
            "generator": "meshsim",
            "requests": traces.traces.len(),
            "dropped_over_limit": traces.dropped,
        },
    });
    let mut s = serde_json::to_string(&doc).expect("a trace always serializes");
    s.push('\n');
    s
}
