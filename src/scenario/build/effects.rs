//! `[effects.NAME]` and `[sagas.NAME]`, and the `effect` and `saga` steps: effects, their
//! default expectations (which workloads can reach them), orchestrated and choreographed
//! sagas.

use super::*;

impl Builder {
    pub(super) fn compile_effect(
        &mut self,
        ctx: &Ctx,
        name: &Spanned<String>,
        out: &mut Vec<Step>,
    ) {
        self.check_name(name, "effect");
        let id = self.effect_id(name.get_ref());
        self.effect_sites.push((id, ctx.endpoint));
        out.push(Step::Effect(id));
    }

    pub(super) fn effect_id(&mut self, name: &str) -> EffectId {
        if let Some(&id) = self.effect_ids.get(name) {
            return id;
        }
        let id = EffectId(self.effects.len() as u32);
        self.effect_ids.insert(name.to_owned(), id);
        self.effects.push(EffectSpec {
            name: name.to_owned(),
            expected_for: Vec::new(),
        });
        id
    }

    pub(super) fn compile_saga(
        &mut self,
        ctx: &Ctx,
        list: &Spanned<Vec<Spanned<RawSagaStep>>>,
        s: &RawStep,
        out: &mut Vec<Step>,
    ) {
        if list.get_ref().is_empty() {
            self.error(
                span(list),
                "a saga with no steps",
                "[{ action = \"payments/charge\", compensation = \"payments/refund\" }, ...]",
            );
            return;
        }
        let name = match &s.name {
            Some(n) => {
                self.check_name(n, "saga");
                n.get_ref().clone()
            }
            None => format!(
                "{}#{}",
                self.endpoints[ctx.endpoint.index()].name,
                self.sagas.len()
            ),
        };
        let caller = self.services[ctx.service.index()].name.clone();
        let mut steps = Vec::new();
        for st in list.get_ref() {
            let v = st.get_ref();
            let action = self.saga_site(ctx, &caller, &v.action, v.policy.as_ref(), true);
            let comp = match &v.compensation {
                Some(c) => self.saga_site(ctx, &caller, c, v.compensation_policy.as_ref(), false),
                None => {
                    if let Some(p) = &v.compensation_policy {
                        self.error(
                            span(p),
                            "`compensation_policy` without a compensation",
                            "compensation = \"SERVICE/ENDPOINT\"",
                        );
                    }
                    None
                }
            };
            if let Some(a) = action {
                steps.push((a, comp));
            }
        }
        if steps.len() != list.get_ref().len() {
            return;
        }
        self.sagas.push(SagaSpec { name, steps });
        out.push(Step::Saga(SagaId(self.sagas.len() as u32 - 1)));
    }

    /// The call a saga step makes to its action or its compensation. Actions count as
    /// reached for effects' expectations; compensations are remembered so that a lint
    /// does not take their endpoints for unused.
    fn saga_site(
        &mut self,
        ctx: &Ctx,
        caller: &str,
        target: &Spanned<String>,
        policy: Option<&Spanned<String>>,
        action: bool,
    ) -> Option<CallSite> {
        let eid = self.resolve_endpoint(target)?;
        let pid = self.policy_ref(policy);
        let at = policy.map_or_else(|| span(target), span);
        let edge = self.edge(caller, eid, pid, at);
        self.graph
            .entry(ctx.endpoint)
            .or_default()
            .push((eid, span(target)));
        if action {
            self.reach.entry(ctx.endpoint).or_default().push(eid);
        } else {
            let at = span(target);
            self.compensation_sites.insert((at.start, at.end));
        }
        Some(CallSite {
            edge,
            timeout: None,
            translate: ctx.translate,
        })
    }

    /// `[effects.NAME]` and `[sagas.NAME]`, after every handler is compiled; effects'
    /// default expectations come from which workloads can reach them.
    pub(super) fn finish_effects(&mut self, raw: &RawScenario, workloads: &[WorkloadSpec]) {
        self.expect_reachable_effects(workloads);
        self.effects_expected_for(raw, workloads);
        self.choreographies(raw);
    }

    /// Each effect is expected for every workload whose requests can reach a step that
    /// applies it.
    fn expect_reachable_effects(&mut self, workloads: &[WorkloadSpec]) {
        let reach_from = |b: &Builder, start: EndpointId| -> BTreeSet<EndpointId> {
            let mut seen = BTreeSet::new();
            let mut stack = vec![start];
            while let Some(e) = stack.pop() {
                if !seen.insert(e) {
                    continue;
                }
                if let Some(next) = b.graph.get(&e) {
                    stack.extend(
                        next.iter()
                            .filter(|(_, at)| !b.compensation_sites.contains(&(at.start, at.end)))
                            .map(|(x, _)| *x),
                    );
                }
                if let Some(next) = b.reach.get(&e) {
                    stack.extend(next.iter().copied());
                }
            }
            seen
        };
        // Saga compensations are in `graph` (for call cycles) but must not make effects
        // expected: a refund runs only when the saga failed. Follow `reach` for saga
        // actions and publishes, `graph` minus the compensation sites for calls.
        let mut expected: Vec<Vec<WorkloadId>> = vec![Vec::new(); self.effects.len()];
        for (w, wl) in workloads.iter().enumerate() {
            let target = self.edges[wl.edge.index()].target;
            let seen = reach_from(self, target);
            for &(e, at) in &self.effect_sites {
                if seen.contains(&at) && !expected[e.index()].contains(&WorkloadId(w as u32)) {
                    expected[e.index()].push(WorkloadId(w as u32));
                }
            }
        }
        for (e, list) in expected.into_iter().enumerate() {
            self.effects[e].expected_for = list;
        }
    }

    /// `[effects.NAME]`: an `expected_for` list replaces the reachable workloads.
    fn effects_expected_for(&mut self, raw: &RawScenario, workloads: &[WorkloadSpec]) {
        for (name, eff) in &raw.effects {
            let Some(&id) = self.effect_ids.get(name.get_ref()) else {
                let known: Vec<&str> = self.effect_ids.keys().map(String::as_str).collect();
                self.error(
                    span(name),
                    format!("no step applies effect `{}`", name.get_ref()),
                    if known.is_empty() {
                        "an `effect = \"NAME\"` step in some handler".to_owned()
                    } else {
                        format!("one of: {}", known.join(", "))
                    },
                );
                continue;
            };
            if let Some(list) = &eff.get_ref().expected_for {
                let mut ws = Vec::new();
                for w in list.get_ref() {
                    match workloads.iter().position(|x| &x.name == w.get_ref()) {
                        Some(i) => ws.push(WorkloadId(i as u32)),
                        None => {
                            let known: Vec<&str> =
                                workloads.iter().map(|x| x.name.as_str()).collect();
                            self.error(
                                span(w),
                                format!("unknown workload `{}`", w.get_ref()),
                                format!("one of: {}", known.join(", ")),
                            );
                        }
                    }
                }
                self.effects[id.index()].expected_for = ws;
            }
        }
    }

    /// `[sagas.NAME]`: choreographed sagas, as lists of effects and their compensations.
    fn choreographies(&mut self, raw: &RawScenario) {
        for (name, saga) in &raw.sagas {
            self.check_name(name, "saga");
            let mut steps = Vec::new();
            for st in saga.get_ref().steps.get_ref() {
                let v = st.get_ref();
                let lookup = |b: &mut Builder, n: &Name| -> Option<EffectId> {
                    let id = b.effect_ids.get(n.get_ref()).copied();
                    if id.is_none() {
                        let known: Vec<&str> = b.effect_ids.keys().map(String::as_str).collect();
                        b.error(
                            span(n),
                            format!("no step applies effect `{}`", n.get_ref()),
                            format!("an effect of this scenario: {}", known.join(", ")),
                        );
                    }
                    id
                };
                let e = lookup(self, &v.effect);
                let c = match &v.compensation {
                    Some(c) => lookup(self, c).map(Some),
                    None => Some(None),
                };
                if let (Some(e), Some(c)) = (e, c) {
                    steps.push((e, c));
                }
            }
            if steps.is_empty() {
                self.error(
                    span(&saga.get_ref().steps),
                    "a choreographed saga with no steps",
                    "steps = [{ effect = \"reserve\", compensation = \"release\" }, ...]",
                );
                continue;
            }
            self.choreographies.push(ChoreographySpec {
                name: name.get_ref().clone(),
                steps,
            });
        }
    }
}
