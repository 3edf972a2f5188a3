//! Everything that can happen in a run, as the engine's events: one enum for every
//! subsystem, so the heap holds plain values and `World::dispatch` is one match.

use crate::engine::SimTime;
use crate::model::arena::typed_id;
use crate::model::spec::*;
use crate::model::status::Status;

#[derive(Clone, Copy, Debug)]
pub enum Event {
    /// Open loop: the next request of a workload is due.
    Arrival(WorkloadId),
    /// Closed loop: a user has finished thinking.
    UserReady {
        workload: WorkloadId,
        user: u32,
    },
    /// An attempt's request reaches the callee's service. `measured`: sent after
    /// warmup; `deadline`: the caller's propagated deadline, or NO_DEADLINE.
    Request {
        attempt: AttemptId,
        edge: EdgeId,
        measured: bool,
        deadline: SimTime,
    },
    /// An attempt's answer reaches the caller. `retry_after_ms`: the callee's pushback
    /// hint (`Pushback::to_wire`; 0: none).
    Reply {
        attempt: AttemptId,
        edge: EdgeId,
        status: Status,
        degraded: bool,
        measured: bool,
        retry_after_ms: u32,
    },
    /// A fiber's `work` step is over.
    WorkDone(FiberId),
    /// An attempt's per-try timeout fires (ignored if it was answered).
    AttemptTimeout(AttemptId),
    /// A logical call's overall deadline passes.
    Deadline(CallId),
    /// Send a logical call's next attempt (after a backoff or a rate-limiter wait).
    Launch(CallId),
    /// A logical call's hedging delay has passed.
    Hedge(CallId),
    /// A logical call has waited for a bulkhead slot as long as it may; `try_number`
    /// tells which of its waits.
    BulkheadTimeout {
        call: CallId,
        try_number: u32,
    },
    /// An open breaker's timer (opossum-style open -> half-open) on an edge.
    BreakerTimer(EdgeId),
    /// A deadline-aware server gives up on a request at its deadline.
    Abort(InvocationId),
    /// A fault begins or ends.
    FaultStart(u32),
    FaultEnd(u32),
    /// A fiber's call is over (delivered through the immediate queue).
    CallDone {
        fiber: FiberId,
        status: Status,
        degraded: bool,
    },
    /// Continue a fiber now.
    Run(FiberId),
    /// A publish reaches its broker.
    PublishArrive(TransitId),
    /// The broker's answer to a confirmed publish (try `try_number`).
    Confirm {
        pending: PendingId,
        try_number: u32,
        ok: bool,
    },
    ConfirmTimeout {
        pending: PendingId,
        try_number: u32,
    },
    /// Publish again after a nack or a missing confirm.
    Republish(PendingId),
    /// A delivery reaches its consumer instance.
    Deliver(DeliveryId),
    /// A queue may have messages to hand out (after a dead-lettering into it).
    DeliverQueue(QueueId),
    /// An ack, nack or reject reaches the broker.
    Settle {
        delivery: DeliveryId,
        how: Settlement,
    },
    AckTimeout(DeliveryId),
    /// The head of a queue with a TTL reaches its expiry.
    Expire(QueueId),
    /// A message's retry backoff is over: back to its queue.
    Requeue(MessageId),
    /// A log message retried in place is due again.
    Refetch {
        consumer: ConsumerId,
        partition: u32,
    },
    /// A consumer's handler has run past max.poll.interval.
    PollTimeout(DeliveryId),
    /// A crashed group member's session has expired.
    SessionTimeout {
        consumer: ConsumerId,
        instance: u32,
    },
    AutoCommit(ConsumerId),
    /// An outbox relay polls its outbox.
    RelayTick(PublishId),
    /// A time-series bucket ends.
    Tick,
}

/// What a consumer tells the broker about a delivery it handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settlement {
    Ack,
    /// nack(requeue=true)
    Nack,
    /// reject(requeue=false)
    Reject,
    /// Give it back after a backoff (counted as a delivery attempt).
    Retry,
}

typed_id!(
    /// A message copy in a queue.
    MessageId
);
typed_id!(
    /// A message handed to a consumer instance and not yet settled.
    DeliveryId
);
typed_id!(
    /// A publish on its way to the broker.
    TransitId
);
typed_id!(
    /// A publish waiting for its confirm.
    PendingId
);
typed_id!(
    /// A row of a transactional outbox.
    OutboxRowId
);
typed_id!(
    /// A logical call: what a caller's code asked for, carried out by attempts.
    CallId
);
typed_id!(
    /// One attempt of a logical call (the first try, a retry or a hedge).
    AttemptId
);
typed_id!(
    /// One request (or delivery) being served by one replica.
    InvocationId
);
typed_id!(
    /// A fiber running a handler's steps (an invocation's root, or a branch).
    FiberId
);
typed_id!(
    /// The join a `parallel` step's parent waits on.
    JoinId
);
