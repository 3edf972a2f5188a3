//! Orphaned work: an answer nobody up the chain waits for any more. A caller that gives
//! up cuts off everything below it, at any depth, including requests that arrive after
//! it gave up; callers above it are not affected.

use super::support::{json, run};

/// A chain s0 -> s1 -> ... of `depth` services, each doing 100 ms of constant work on a
/// held worker before it calls the next; `timeouts[i]` on the call into s{i} (the
/// workload's for i = 0). Ten requests, one a second: nothing queues, nothing overlaps.
fn chain(depth: usize, timeouts: &[(usize, &str)]) -> String {
    let timeout = |i: usize| {
        timeouts
            .iter()
            .find(|(at, _)| *at == i)
            .map_or(String::new(), |(_, t)| format!(", timeout = \"{t}\""))
    };
    let mut toml = String::from("[simulation]\nrequests = 10\nseed = 1\n");
    for h in 0..depth {
        let call = if h + 1 < depth {
            format!(", {{ call = \"s{}/get\"{} }}", h + 1, timeout(h + 1))
        } else {
            String::new()
        };
        toml += &format!(
            "[services.s{h}]\nworkers = 4\n[services.s{h}.endpoints.get]\n\
             steps = [{{ work = \"100ms\" }}{call}]\n"
        );
    }
    toml += "[workloads.w]\ntarget = \"s0/get\"\nrate = 1\narrivals = \"constant\"\n";
    if let Some((_, t)) = timeouts.iter().find(|(at, _)| *at == 0) {
        toml += &format!("timeout = \"{t}\"\n");
    }
    toml
}

fn orphaned(report: &serde_json::Value, depth: usize) -> Vec<u64> {
    (0..depth)
        .map(|h| {
            let e = &report["endpoints"][format!("s{h}/get")];
            assert_eq!(
                e["completed"].as_u64(),
                Some(10),
                "s{h} answers every request"
            );
            e["orphaned"].as_u64().expect("orphaned")
        })
        .collect()
}

#[test]
fn nobody_gives_up_nothing_is_orphaned() {
    let out = run(&chain(6, &[]), &[]);
    assert_eq!(orphaned(&json(&out.report), 6), vec![0; 6]);
}

/// The workload gives up at 250 ms, while s2 works: s0 and s1 (waiting) and s2 (working)
/// are cut off then, s3..s5 arrive later and inherit it: all six are orphaned.
#[test]
fn the_top_giving_up_orphans_the_whole_chain_below_even_later_arrivals() {
    let out = run(&chain(6, &[(0, "250ms")]), &[]);
    assert_eq!(orphaned(&json(&out.report), 6), vec![10; 6]);
}

/// s1 gives up on s2 after 150 ms (at 250 ms): s2..s5 are orphaned, s0 and s1 answer
/// callers that still wait (s1 with a timeout error).
#[test]
fn a_caller_in_the_middle_orphans_only_what_is_below_it() {
    let out = run(&chain(6, &[(2, "150ms")]), &[]);
    let report = json(&out.report);
    assert_eq!(orphaned(&report, 6), vec![0, 0, 10, 10, 10, 10]);
    assert_eq!(report["workloads"]["w"]["ok"].as_u64(), Some(0));
}

/// Two cuts on one path: the workload gives up at 420 ms (s0..s4 cut, s5 arrives later
/// and inherits it), then s2 gives up on s3 at 450 ms, finding s3 already cut; each
/// answer is counted once.
#[test]
fn two_callers_giving_up_count_each_answer_once() {
    let out = run(&chain(6, &[(3, "150ms"), (0, "420ms")]), &[]);
    assert_eq!(orphaned(&json(&out.report), 6), vec![10; 6]);
}
