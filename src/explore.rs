//! `meshsim explore`: many seeds, each with a fault schedule drawn from the scenario's
//! `[explore]` section; every run is checked against the scenario's expectations and
//! the consistency invariants (conservation per queue and group, and exactly-once for
//! the effects `[explore] exactly_once` names). The first failure is shrunk (faults
//! removed, then shortened, while it still fails) and written out as a scenario file
//! that replays it.
//!
//! A scenario without an `[explore]` section, or one with no fault templates, is a
//! seed search: every seed runs as written, against its expectations and invariants.
//! A replay carries what failed as `[[expect]]` tables, so running it fails (exit 1)
//! and it can stay in a repository as a regression test.
//!
//! Schedules are appended to the scenario's text as `[[faults]]` tables, so a trial
//! is validated and built exactly as `meshsim run` would, and the replay file is
//! nothing but the scenario plus its faults.

use crate::engine::{SimDuration, stream};
use crate::scenario::diag::{self, Diagnostic};
use crate::scenario::raw::{RawExplore, RawExploreFault, RawScenario};
use crate::scenario::{self, ScenarioError, duration};
use rand::RngExt;
use toml::Spanned;

/// One kind of fault the explorer may draw.
#[derive(Clone, Debug)]
pub struct Template {
    pub kind: String,
    /// `service = "..."`, `broker = "..."` or `between = [...]`, as TOML.
    pub target: String,
    pub loss: Option<f64>,
    pub max: u32,
    pub shortest: SimDuration,
    pub longest: SimDuration,
}

#[derive(Clone, Debug)]
pub struct Plan {
    pub seeds: u64,
    pub from: SimDuration,
    pub until: SimDuration,
    pub templates: Vec<Template>,
    /// Effects that must apply exactly once, with where each is named (for errors).
    pub exactly_once: Vec<(String, std::ops::Range<usize>)>,
}

impl Plan {
    /// The plan of a scenario without an `[explore]` section: 100 seeds, no faults.
    pub fn seed_search() -> Plan {
        Plan {
            seeds: 100,
            from: SimDuration::ZERO,
            until: SimDuration::from_secs(60),
            templates: Vec::new(),
            exactly_once: Vec::new(),
        }
    }
}

/// What a trial found wrong, and the `[[expect]]` check that catches it in a replay
/// (None when the scenario's own expectation already does).
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    pub text: String,
    pub expect: Option<String>,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// A drawn fault: template index and its window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Drawn {
    pub template: usize,
    pub from: SimDuration,
    pub until: SimDuration,
}

/// Reads and checks the `[explore]` section (None: the scenario has none).
pub fn plan(path: &str, text: &str) -> Result<Option<Plan>, ScenarioError> {
    let raw: RawScenario = match toml::from_str(text) {
        Ok(r) => r,
        // `scenario::from_source` has reported syntax errors already.
        Err(_) => return Ok(None),
    };
    let Some(ex) = &raw.explore else {
        return Ok(None);
    };
    let mut diags = Vec::new();
    let plan = check(ex, &raw, &mut diags);
    if diags.is_empty() {
        Ok(plan)
    } else {
        Err(ScenarioError::Invalid {
            rendered: diag::render(path, text, &diags, None),
            located: diags.iter().map(|d| diag::locate(path, text, d)).collect(),
        })
    }
}

fn dur(s: &Spanned<String>, diags: &mut Vec<Diagnostic>) -> Option<SimDuration> {
    match duration::parse(s.get_ref()) {
        Ok(d) => Some(d),
        Err(e) => {
            diags.push(Diagnostic::new(s.span(), e, "a duration such as \"10s\""));
            None
        }
    }
}

fn pair(
    v: &Spanned<Vec<Spanned<String>>>,
    diags: &mut Vec<Diagnostic>,
) -> Option<(SimDuration, SimDuration)> {
    let list = v.get_ref();
    if list.len() != 2 {
        diags.push(Diagnostic::new(
            v.span(),
            format!("{} values", list.len()),
            "two durations: [\"1s\", \"20s\"]",
        ));
        return None;
    }
    let (a, b) = (dur(&list[0], diags)?, dur(&list[1], diags)?);
    if b < a {
        diags.push(Diagnostic::new(
            v.span(),
            "the range ends before it starts",
            "[low, high] with low <= high",
        ));
        return None;
    }
    Some((a, b))
}

fn check(ex: &Spanned<RawExplore>, raw: &RawScenario, diags: &mut Vec<Diagnostic>) -> Option<Plan> {
    let v = ex.get_ref();
    let seeds = match &v.seeds {
        Some(n) if *n.get_ref() < 1 => {
            diags.push(Diagnostic::new(n.span(), "no seeds", "seeds >= 1"));
            1
        }
        Some(n) => *n.get_ref() as u64,
        None => 100,
    };
    let (from, until) = match &v.window {
        Some(w) => pair(w, diags).unwrap_or((SimDuration::ZERO, SimDuration::from_secs(60))),
        None => (SimDuration::ZERO, SimDuration::from_secs(60)),
    };
    let templates = v
        .faults
        .iter()
        .filter_map(|f| template(f, raw, diags))
        .collect();
    let mut exactly_once = Vec::new();
    if let Some(list) = &v.exactly_once {
        for e in list.get_ref() {
            exactly_once.push((e.get_ref().clone(), e.span()));
        }
    }
    Some(Plan {
        seeds,
        from,
        until,
        templates,
        exactly_once,
    })
}

/// One fault template, checked: its kind and target, the loss of a link_loss, how many
/// faults a schedule may hold and their lengths.
fn template(
    f: &Spanned<RawExploreFault>,
    raw: &RawScenario,
    diags: &mut Vec<Diagnostic>,
) -> Option<Template> {
    let fv = f.get_ref();
    let kind = fv.kind.get_ref().clone();
    let target = target(fv, &kind, raw, diags)?;
    let Some(target) = target else {
        diags.push(Diagnostic::new(
            f.span(),
            format!("a `{kind}` template needs its target"),
            "service = \"NAME\" (crash, down), broker = \"NAME\" (broker_down) or between = [\"a\", \"b\"]",
        ));
        return None;
    };
    let loss = loss(fv, &kind, diags);
    let max = match &fv.max {
        Some(m) if *m.get_ref() < 1 || *m.get_ref() > 100 => {
            diags.push(Diagnostic::new(
                m.span(),
                format!("max = {}", m.get_ref()),
                "1 to 100 faults per schedule",
            ));
            1
        }
        Some(m) => *m.get_ref() as u32,
        None => 1,
    };
    let (shortest, longest) = match &fv.length {
        Some(l) => {
            pair(l, diags).unwrap_or((SimDuration::from_secs(1), SimDuration::from_secs(10)))
        }
        None => (SimDuration::from_secs(1), SimDuration::from_secs(10)),
    };
    if shortest.is_zero()
        && let Some(l) = &fv.length
    {
        diags.push(Diagnostic::new(
            l.span(),
            "a fault of zero length",
            "a shortest length above 0",
        ));
    }
    Some(Template {
        kind,
        target,
        loss,
        max,
        shortest,
        longest,
    })
}

/// A link_loss template's probability of losing a message (0.5 unless given); `loss`
/// on any other kind is reported.
fn loss(fv: &RawExploreFault, kind: &str, diags: &mut Vec<Diagnostic>) -> Option<f64> {
    match (&fv.loss, kind) {
        (Some(l), "link_loss") if (0.0..=1.0).contains(l.get_ref()) => Some(*l.get_ref()),
        (Some(l), "link_loss") => {
            diags.push(Diagnostic::new(
                l.span(),
                format!("a loss of {}", l.get_ref()),
                "a probability from 0 to 1",
            ));
            None
        }
        (None, "link_loss") => Some(0.5),
        (Some(l), _) => {
            diags.push(Diagnostic::new(
                l.span(),
                "`loss` applies to link_loss templates",
                "kind = \"link_loss\"",
            ));
            None
        }
        (None, _) => None,
    }
}

/// What a template's fault strikes, as the fault's TOML line (`service = "api"`); None
/// inside when the template names no target, None outside when its kind cannot be
/// explored (both reported).
fn target(
    fv: &RawExploreFault,
    kind: &str,
    raw: &RawScenario,
    diags: &mut Vec<Diagnostic>,
) -> Option<Option<String>> {
    let target = match kind {
        "crash" | "down" => fv.service.as_ref().map(|s| {
            if !raw.services.keys().any(|k| k.get_ref() == s.get_ref())
                && !raw.consumers.keys().any(|k| k.get_ref() == s.get_ref())
            {
                diags.push(Diagnostic::new(
                    s.span(),
                    format!("unknown service `{}`", s.get_ref()),
                    "a service or consumer of this scenario",
                ));
            }
            format!("service = {:?}", s.get_ref())
        }),
        "broker_down" => fv.broker.as_ref().map(|b| {
            if !raw.brokers.keys().any(|k| k.get_ref() == b.get_ref()) {
                diags.push(Diagnostic::new(
                    b.span(),
                    format!("unknown broker `{}`", b.get_ref()),
                    "a broker of this scenario",
                ));
            }
            format!("broker = {:?}", b.get_ref())
        }),
        "partition" | "link_loss" => fv.between.as_ref().map(|b| {
            let names: Vec<String> = b
                .get_ref()
                .iter()
                .map(|x| format!("{:?}", x.get_ref()))
                .collect();
            format!("between = [{}]", names.join(", "))
        }),
        other => {
            diags.push(Diagnostic::new(
                fv.kind.span(),
                format!("`{other}` cannot be explored"),
                "one of: crash, down, broker_down, partition, link_loss",
            ));
            return None;
        }
    };
    Some(target)
}

/// The fault schedule of one seed: for each template 0..=max faults, each with a
/// uniform length and a start such that it ends inside the window.
pub fn draw(plan: &Plan, seed: u64) -> Vec<Drawn> {
    let mut rng = stream(seed, "explore");
    let mut out = Vec::new();
    for (t, tpl) in plan.templates.iter().enumerate() {
        let n = rng.random_range(0..=tpl.max);
        for _ in 0..n {
            let len = rng.random_range(tpl.shortest.as_nanos()..=tpl.longest.as_nanos());
            let span = plan.until.as_nanos().saturating_sub(plan.from.as_nanos());
            let latest = span.saturating_sub(len);
            let start = plan.from.as_nanos() + rng.random_range(0..=latest);
            out.push(Drawn {
                template: t,
                from: SimDuration::from_nanos(start),
                until: SimDuration::from_nanos(start + len.max(1)),
            });
        }
    }
    out
}

/// The `[[faults]]` tables of a schedule, as TOML.
pub fn faults_toml(plan: &Plan, faults: &[Drawn]) -> String {
    let mut s = String::new();
    for f in faults {
        let t = &plan.templates[f.template];
        s.push_str(&format!(
            "\n[[faults]]\nkind = {:?}\n{}\nfrom = \"{}ns\"\nuntil = \"{}ns\"\n",
            t.kind,
            t.target,
            f.from.as_nanos(),
            f.until.as_nanos()
        ));
        if let Some(l) = t.loss {
            s.push_str(&format!("loss = {l}\n"));
        }
    }
    s
}

/// Every effect `exactly_once` names must be one the scenario applies: a name that
/// does not exist is a typo to report (exit 2), never a failure found by exploring.
pub fn check_effects(
    path: &str,
    text: &str,
    plan: &Plan,
    known: &[&str],
) -> Result<(), ScenarioError> {
    let diags: Vec<Diagnostic> = plan
        .exactly_once
        .iter()
        .filter(|(n, _)| !known.contains(&n.as_str()))
        .map(|(n, span)| {
            Diagnostic::new(
                span.clone(),
                format!("no effect named `{n}` in this scenario"),
                if known.is_empty() {
                    "an effect some step applies ({ effect = \"NAME\" }); this scenario has none"
                        .to_owned()
                } else {
                    format!("one of the scenario's effects: {}", known.join(", "))
                },
            )
        })
        .collect();
    if diags.is_empty() {
        return Ok(());
    }
    Err(ScenarioError::Invalid {
        rendered: diag::render(path, text, &diags, None),
        located: diags.iter().map(|d| diag::locate(path, text, d)).collect(),
    })
}

/// A path segment as an expectation reads it (quoted unless plain).
fn segment(name: &str) -> String {
    if name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_-/@>".contains(c))
    {
        name.to_owned()
    } else {
        format!("{name:?}")
    }
}

/// What a trial found wrong (empty: it passed).
pub fn trial(
    path: &str,
    name: &str,
    text: &str,
    plan: &Plan,
    seed: u64,
    faults: &[Drawn],
) -> Result<Vec<Problem>, String> {
    let full = format!("{text}{}", faults_toml(plan, faults));
    let sc = scenario::from_source(path, name, &full, &[format!("simulation.seed={seed}")])
        .map_err(|e| e.to_string())?;
    let outcome = crate::simulate(sc).map_err(|e| e.to_string())?;
    let mut problems: Vec<Problem> = outcome
        .report
        .expectations
        .iter()
        .filter(|e| !e.passed)
        .map(|e| Problem {
            text: format!("expectation failed: {} (value {})", e.check, e.value),
            expect: None,
        })
        .collect();
    let c = &outcome.metrics.consistency;
    for f in c.flows.iter().filter(|f| !f.conserved()) {
        let table = if f.kind == "group" {
            "groups"
        } else {
            "queues"
        };
        problems.push(Problem {
            text: format!("conservation violated on {}", f.name),
            expect: Some(format!(
                "consistency.{table}.{}.conserved == 1",
                segment(&f.name)
            )),
        });
    }
    for (name, _) in &plan.exactly_once {
        // Names were checked against the scenario's effects before any trial.
        let Some(e) = c.effects.iter().find(|e| &e.name == name) else {
            continue;
        };
        let at = format!("consistency.effects.{}", segment(name));
        if e.duplicated > 0 || e.never > 0 {
            let text = format!(
                "effect {name} not exactly once: {} duplicated (max {}), {} never",
                e.duplicated, e.max_count, e.never
            );
            let which = if e.duplicated > 0 {
                "duplicated"
            } else {
                "never"
            };
            problems.push(Problem {
                text,
                expect: Some(format!("{at}.{which} == 0")),
            });
        }
    }
    Ok(problems)
}

/// The replay scenario: the text, the minimal schedule, and an `[[expect]]` for every
/// invariant that failed, so `meshsim run` of it fails as the trial did.
pub fn replay(
    text: &str,
    plan: &Plan,
    seed: u64,
    faults: &[Drawn],
    problems: &[Problem],
) -> String {
    let mut out = format!(
        "{text}\n# ---- added by `meshsim explore`: the minimal failing fault schedule of seed {seed} ----\n{}",
        faults_toml(plan, faults)
    );
    for check in problems.iter().filter_map(|p| p.expect.as_ref()) {
        out.push_str(&format!(
            "\n# the invariant seed {seed} broke: this run must fail until it holds\n[[expect]]\ncheck = {check:?}\n"
        ));
    }
    out
}

/// Shrinks a failing schedule: drop faults while it still fails, then halve each
/// remaining fault's length while it still fails.
pub fn shrink(mut still_fails: impl FnMut(&[Drawn]) -> bool, mut faults: Vec<Drawn>) -> Vec<Drawn> {
    let mut i = 0;
    while i < faults.len() {
        let mut fewer = faults.clone();
        fewer.remove(i);
        if still_fails(&fewer) {
            faults = fewer;
        } else {
            i += 1;
        }
    }
    for i in 0..faults.len() {
        for _ in 0..16 {
            let f = faults[i];
            let len = f.until.as_nanos() - f.from.as_nanos();
            if len < 2_000_000 {
                break; // a few milliseconds is narrow enough
            }
            let mut narrower = faults.clone();
            narrower[i].until = SimDuration::from_nanos(f.from.as_nanos() + len / 2);
            if still_fails(&narrower) {
                faults = narrower;
            } else {
                break;
            }
        }
    }
    faults
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        Plan {
            seeds: 10,
            from: SimDuration::from_secs(10),
            until: SimDuration::from_secs(60),
            templates: vec![Template {
                kind: "crash".into(),
                target: "service = \"w\"".into(),
                loss: None,
                max: 3,
                shortest: SimDuration::from_secs(1),
                longest: SimDuration::from_secs(5),
            }],
            exactly_once: vec![],
        }
    }

    #[test]
    fn draws_stay_inside_the_window_and_repeat_per_seed() {
        let p = plan();
        for seed in 0..200 {
            let d = draw(&p, seed);
            assert_eq!(d, draw(&p, seed));
            assert!(d.len() <= 3);
            for f in d {
                assert!(f.from >= p.from && f.until <= p.until);
                let len = f.until.as_nanos() - f.from.as_nanos();
                assert!((1_000_000_000..=5_000_000_000).contains(&len));
            }
        }
    }

    #[test]
    fn shrink_keeps_only_the_culprit_and_narrows_it() {
        let f = |t, a: u64, b: u64| Drawn {
            template: t,
            from: SimDuration::from_secs(a),
            until: SimDuration::from_secs(b),
        };
        // Fails whenever a fault covers t = 20 s.
        let covers = |fs: &[Drawn]| {
            fs.iter().any(|x| {
                x.from <= SimDuration::from_secs(20) && x.until > SimDuration::from_secs(20)
            })
        };
        let out = shrink(covers, vec![f(0, 1, 5), f(0, 18, 34), f(0, 40, 50)]);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].from, SimDuration::from_secs(18));
        // Halved from 16 s while it still covers 20 s: 16 -> 8 -> 4 (2 would end at 20).
        assert_eq!(out[0].until, SimDuration::from_secs(22));
    }

    #[test]
    fn faults_toml_is_valid_toml() {
        let p = plan();
        let d = draw(&p, 3);
        let t: toml::Table = toml::from_str(&faults_toml(&p, &d)).unwrap();
        assert_eq!(
            t.get("faults").map_or(0, |f| f.as_array().unwrap().len()),
            d.len()
        );
    }
}
