//! Orchestrated sagas: a `saga` step runs its actions in order through the fiber that
//! started it; when one fails, the compensations of the completed actions run in
//! reverse, and the step fails with the action's status.

use super::arena::Id;
use super::status::Status;
use super::world::{Event, Outcome, SagaRun, World};
use crate::engine::Scheduler;
use std::rc::Rc;

impl World {
    /// A saga's action or compensation is answered: the next action, the next
    /// compensation (in reverse), or the saga's end.
    pub(super) fn saga_call_done(
        &mut self,
        f: Id,
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
            Some(failed) if status.is_ok() => {
                let _ = failed;
                self.saga_compensate(f, run, sched);
            }
            Some(failed) => {
                // A compensation failed: the saga is left half undone.
                self.metrics.consistency.sagas[run.saga.index()].compensation_failed += 1;
                self.fibers[f].saga = None;
                self.finish_fiber(f, Outcome::Failed(failed), sched);
            }
        }
    }

    /// Runs the compensation of the latest completed action that has one.
    fn saga_compensate(&mut self, f: Id, mut run: SagaRun, sched: &mut Scheduler<Event>) {
        let spec = Rc::clone(&self.spec);
        let saga = &spec.sagas[run.saga.index()];
        while run.done > 0 {
            run.done -= 1;
            if let Some(comp) = saga.steps[run.done as usize].1 {
                self.fibers[f].saga = Some(run);
                return self.call_from(f, comp, sched);
            }
        }
        self.metrics.consistency.sagas[run.saga.index()].compensated += 1;
        self.fibers[f].saga = None;
        let failed = run.failed.expect("compensating after a failure");
        self.finish_fiber(f, Outcome::Failed(failed), sched);
    }
}
