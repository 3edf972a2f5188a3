//! Orchestrated sagas: a `saga` step runs its actions in order through the fiber that
//! started it; when one fails, the compensations of the completed actions run in
//! reverse, and the step fails with the action's status.
//!
//! A compensation is a call under its own policy (`compensation_policy`), so it is
//! retried as that policy says. One that still fails does not stop the others: every
//! earlier step is still compensated, as Temporal's `Saga` does with `continueWithError`
//! and as Camel's LRA coordinator does by retrying each compensation on its own. The saga
//! then ends `compensation_failed`, and the steps left uncompensated are counted per
//! action (`SagaMetrics::uncompensated`).

use super::spec::Spec;
use super::status::Status;
use super::world::{Event, FiberId, Outcome, SagaRun, World};
use crate::engine::Scheduler;
use crate::metrics::consistency::SagaMetrics;
use std::rc::Rc;

/// Every action with a compensation starts in `uncompensated` at 0, so the report has
/// the same keys whatever happened (and `[[expect]]` paths into it resolve).
pub(super) fn open_books(spec: &Spec, sagas: &mut [SagaMetrics]) {
    for (saga, m) in spec.sagas.iter().zip(sagas.iter_mut()) {
        assert_eq!(saga.name, m.name, "orchestrated sagas come first, in order");
        for (action, compensation) in &saga.steps {
            if compensation.is_some() {
                let target = spec.edges[action.edge.index()].target;
                m.uncompensated
                    .insert(spec.endpoints[target.index()].name.clone(), 0);
            }
        }
    }
}

impl World {
    /// A saga's action or compensation is answered: the next action, the next
    /// compensation (in reverse), or the saga's end.
    pub(super) fn saga_call_done(
        &mut self,
        f: FiberId,
        mut run: SagaRun,
        status: Status,
        sched: &mut Scheduler<Event>,
    ) {
        let spec = Rc::clone(&self.spec);
        let saga = &spec.sagas[run.saga.index()];
        match run.failed {
            None if status.is_ok() => {
                run.done += 1;
                if run.done as usize == saga.steps.len() {
                    self.metrics.consistency.sagas[run.saga.index()].completed += 1;
                    self.fibers[f].saga = None;
                    return self.resume(f, sched.now());
                }
                self.fibers[f].saga = Some(run);
                self.call_from(f, saga.steps[run.done as usize].0, sched);
            }
            None => {
                let site = saga.steps[run.done as usize].0;
                run.failed = Some(site.translate.apply(status));
                self.saga_compensate(f, run, sched);
            }
            Some(_) if status.is_ok() => self.saga_compensate(f, run, sched),
            Some(_) => {
                // The compensation failed after its policy's retries: the step stays
                // done, and the earlier steps are still compensated (Temporal's
                // `continueWithError`): a failed refund must not leave stock reserved.
                let step = saga.steps[run.done as usize].0;
                let action = &spec.endpoints[spec.edges[step.edge.index()].target.index()].name;
                *self.metrics.consistency.sagas[run.saga.index()]
                    .uncompensated
                    .get_mut(action)
                    .expect("every compensated action is in the books") += 1;
                run.uncompensated += 1;
                self.saga_compensate(f, run, sched);
            }
        }
    }

    /// Runs the compensation of the latest completed action that has one.
    fn saga_compensate(&mut self, f: FiberId, mut run: SagaRun, sched: &mut Scheduler<Event>) {
        let spec = Rc::clone(&self.spec);
        let saga = &spec.sagas[run.saga.index()];
        while run.done > 0 {
            run.done -= 1;
            if let Some(comp) = saga.steps[run.done as usize].1 {
                self.fibers[f].saga = Some(run);
                return self.call_from(f, comp, sched);
            }
        }
        let m = &mut self.metrics.consistency.sagas[run.saga.index()];
        if run.uncompensated == 0 {
            m.compensated += 1;
        } else {
            m.compensation_failed += 1;
        }
        self.fibers[f].saga = None;
        let failed = run.failed.expect("compensating after a failure");
        self.finish_fiber(f, Outcome::Failed(failed), sched);
    }
}
