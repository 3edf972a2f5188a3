//! A run refused half way (its event budget ran out, the clock stood still too long, or
//! a delay ran past the end of the simulated clock) is still the scenario's fault, so its
//! error is located in the scenario like any other: the budget at `max_events`, the
//! zero-time loop at `max_events_at_one_instant`, a runaway at the limit it passed
//! (`max_requests_in_flight`, ...; each or `[simulation]`), a run past its memory
//! budget at `[simulation]`, a clock
//! overflow at the durations and distributions that can draw a delay that long.
//!
//! The engine only knows the delay it could not schedule, not which step drew it, so
//! for a clock overflow every site that can draw at least a quarter of the clock that
//! was left is shown (a delay is a sum of a few terms: a link's latency and a fault's
//! extra, say), unbounded distributions first, heaviest tail first.

use super::diag::{self, Diagnostic, Located};
use super::duration;
use crate::engine::{RunError, SimDuration, SimTime};
use std::ops::Range;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// The most sites a clock overflow points at.
const SHOWN: usize = 3;

/// What a run error looks like to a user: rendered against the scenario's text, and
/// its locations.
pub struct RunRefusal {
    pub rendered: String,
    pub located: Vec<Located>,
}

impl std::fmt::Display for RunRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(&self.rendered)
    }
}

/// Locates `error` in the scenario `text` (named `path`).
pub fn locate(path: &str, text: &str, error: &RunError) -> RunRefusal {
    let root = DeTable::parse(text).ok();
    let root = root.as_ref().map(|r| r.get_ref());
    let simulation = root.and_then(|r| lookup(r, "simulation"));
    let whole_simulation = simulation.map_or(0..0, |s| s.span());
    let diags = match error {
        RunError::BudgetExhausted { .. } => {
            let at = simulation_setting(simulation, "max_events");
            vec![Diagnostic::new(
                at,
                error.to_string(),
                "the event budget (`max_events`, 2000000000 unless set)",
            )]
        }
        RunError::ZeroTimeLoop { .. } => {
            let at = simulation_setting(simulation, "max_events_at_one_instant");
            vec![Diagnostic::new(
                at,
                error.to_string(),
                "the clock to advance within `max_events_at_one_instant` events (10000000 unless set)",
            )]
        }
        RunError::Runaway { setting, .. } => {
            let at = simulation_setting(simulation, setting);
            vec![Diagnostic::new(
                at,
                error.to_string(),
                format!("a run within `{setting}` (sized to the memory budget unless set)"),
            )]
        }
        RunError::MemoryBudget { .. } => vec![Diagnostic::new(
            whole_simulation,
            error.to_string(),
            "a run within the memory budget (`--max-memory`, three quarters of the machine's memory unless set)",
        )],
        RunError::Interrupted { .. } => vec![Diagnostic::new(
            whole_simulation,
            error.to_string(),
            "the run to finish (it was stopped from outside, not by the scenario)",
        )],
        RunError::ClockOverflow { at, delay } => {
            let mut diags = overflow_sites(root, *at, error);
            if diags.is_empty() {
                // Nothing drew it alone: the run itself reached the end of the clock.
                diags.push(Diagnostic::new(
                    simulation_setting(simulation, "duration"),
                    error.to_string(),
                    format!("the run reached {at}, {delay} short of the end of the clock"),
                ));
            }
            diags
        }
    };
    RunRefusal {
        rendered: diag::render(path, text, &diags, None),
        located: diags.iter().map(|d| diag::locate(path, text, d)).collect(),
    }
}

fn lookup<'a, 'i>(table: &'a DeTable<'i>, key: &str) -> Option<&'a Spanned<DeValue<'i>>> {
    table
        .iter()
        .find(|(k, _)| k.get_ref() == key)
        .map(|(_, v)| v)
}

/// The span of `[simulation]`'s setting `key`, or of the whole table when it is unset.
fn simulation_setting(simulation: Option<&Spanned<DeValue>>, key: &str) -> Range<usize> {
    let whole_simulation = simulation.map_or(0..0, |s| s.span());
    simulation
        .and_then(|s| s.get_ref().as_table())
        .and_then(|s| lookup(s, key))
        .map_or(whole_simulation, |v| v.span())
}

/// The sites (at most SHOWN) that could have drawn a delay past the end of the clock
/// from `at`: unbounded ones, and bounded ones reaching a quarter of the clock left.
fn overflow_sites(root: Option<&DeTable>, at: SimTime, error: &RunError) -> Vec<Diagnostic> {
    let left = SimDuration::from_nanos(SimTime::MAX.as_nanos() - at.as_nanos());
    let mut sites = Vec::new();
    if let Some(root) = root {
        collect(root, &mut sites);
    }
    let mut culprits: Vec<&Site> = sites
        .iter()
        .filter(|s| s.reach.is_none_or(|r| r.as_nanos() >= left.as_nanos() / 4))
        .collect();
    culprits.sort_by_key(|s| (s.reach.is_some(), s.tail_rank, std::cmp::Reverse(s.reach)));
    culprits
        .iter()
        .take(SHOWN)
        .map(|s| {
            Diagnostic::new(
                s.span.clone(),
                error.to_string(),
                match s.reach {
                    None => format!("a {} distribution: its draws have no upper bound", s.kind),
                    Some(r) => format!("this can take {r}"),
                },
            )
        })
        .collect()
}

/// A place in the scenario that can make a delay.
struct Site {
    span: Range<usize>,
    kind: &'static str,
    /// The longest it can draw; `None` when unbounded.
    reach: Option<SimDuration>,
    /// Heavier tails first: pareto, lognormal, exponential, normal, then bounded ones.
    tail_rank: u8,
}

/// Every duration string and every `dist` table, anywhere in the document. Absolute
/// times (`from`, `until`) and the run's own length are not delays.
fn collect(table: &DeTable, out: &mut Vec<Site>) {
    if let Some(kind) = lookup(table, "dist").and_then(|d| match d.get_ref() {
        DeValue::String(s) => Some(s.as_ref()),
        _ => None,
    }) {
        let (kind, tail_rank) = match kind {
            "pareto" => ("pareto", 0),
            "lognormal" => ("lognormal", 1),
            "exponential" => ("exponential", 2),
            "normal" => ("normal", 3),
            _ => ("bounded", 4),
        };
        let span = table
            .iter()
            .map(|(k, v)| k.span().start.min(v.span().start)..v.span().end)
            .reduce(|a, b| a.start.min(b.start)..a.end.max(b.end))
            .unwrap_or(0..0);
        let reach = if tail_rank < 4 {
            None
        } else {
            let mut longest = SimDuration::ZERO;
            for (_, v) in table.iter() {
                longest = longest.max(longest_duration(v.get_ref()));
            }
            Some(longest)
        };
        out.push(Site {
            span,
            kind,
            reach,
            tail_rank,
        });
        return;
    }
    for (k, v) in table.iter() {
        if matches!(
            k.get_ref().as_ref(),
            "from" | "until" | "duration" | "warmup"
        ) {
            continue;
        }
        walk(v, out);
    }
}

fn walk(v: &Spanned<DeValue>, out: &mut Vec<Site>) {
    match v.get_ref() {
        DeValue::String(s) => {
            if let Ok(d) = duration::parse(s) {
                out.push(Site {
                    span: v.span(),
                    kind: "constant",
                    reach: Some(d),
                    tail_rank: 4,
                });
            }
        }
        DeValue::Table(t) => collect(t, out),
        DeValue::Array(a) => a.iter().for_each(|v| walk(v, out)),
        _ => {}
    }
}

fn longest_duration(v: &DeValue) -> SimDuration {
    match v {
        DeValue::String(s) => duration::parse(s).unwrap_or(SimDuration::ZERO),
        DeValue::Table(t) => t
            .iter()
            .map(|(_, v)| longest_duration(v.get_ref()))
            .max()
            .unwrap_or(SimDuration::ZERO),
        DeValue::Array(a) => a
            .iter()
            .map(|v| longest_duration(v.get_ref()))
            .max()
            .unwrap_or(SimDuration::ZERO),
        _ => SimDuration::ZERO,
    }
}
