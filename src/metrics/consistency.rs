//! What asynchronous designs get wrong, measured: per queue (or consumer group on a
//! topic) where every published message ended up, per effect how many times each
//! operation applied it, sagas' outcomes, and how long a message takes to reach every
//! subscriber. Unlike latencies, these counts cover the whole run (warmup included):
//! a message published during warmup must still be accounted for.

use super::Summary;
use crate::engine::SimTime;
use std::collections::BTreeMap;

/// Dead-lettered messages by RabbitMQ's reasons.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeadLetters {
    /// reject(requeue=false), or a consumer that gave up.
    pub rejected: u64,
    /// The message's TTL passed while it waited.
    pub expired: u64,
    /// Pushed out of a full queue (overflow drop_head).
    pub maxlen: u64,
    /// Delivered (or tried) as many times as the queue or consumer allows.
    pub delivery_limit: u64,
}

impl DeadLetters {
    pub fn total(&self) -> u64 {
        self.rejected + self.expired + self.maxlen + self.delivery_limit
    }
}

/// Where the messages of one queue, or of one consumer group on a topic, went.
#[derive(Clone, Debug, Default)]
pub struct FlowMetrics {
    /// "broker/queue", or "broker/topic@group".
    pub name: String,
    /// "queue" or "group".
    pub kind: &'static str,
    /// Publishes aimed here (lost and refused ones included; one per copy).
    pub published: u64,
    /// Accepted by the broker.
    pub enqueued: u64,
    /// Never reached the broker, and nobody was told (no publisher confirms).
    pub lost: u64,
    /// Refused or unconfirmed, and the publisher was told (it may publish again).
    pub publish_failed: u64,
    /// Dropped by the broker as a duplicate (FIFO deduplication window).
    pub deduplicated: u64,
    /// Gone without a dead-letter queue to go to (overflow, reject), or skipped.
    pub dropped: u64,
    /// TTL or retention passed before anyone handled it (without a DLQ).
    pub expired: u64,
    pub dead_lettered: DeadLetters,
    pub delivered: u64,
    /// Deliveries of a message delivered before (the redelivered flag).
    pub redelivered: u64,
    /// Handled: acked (queues), or committed past for the first time (groups).
    pub acked: u64,
    /// Acks for deliveries the broker had already taken back (handled twice).
    pub stale_acks: u64,
    /// Waiting, delivered-unacked, or unconsumed when the run ended.
    pub in_flight_end: u64,
    /// Most messages waiting or unacked at once (queues); largest lag (groups).
    pub max_depth: u64,
    /// Messages of one key handled after a later-published message of that key.
    pub ordering_violations: u64,
    /// Groups: messages not yet committed at the end (end offset - committed).
    pub lag_end: u64,
}

impl FlowMetrics {
    /// published = acked + dead-lettered + expired + dropped + deduplicated + lost +
    /// publish_failed + in flight at the end.
    pub fn conserved(&self) -> bool {
        self.published
            == self.acked
                + self.dead_lettered.total()
                + self.expired
                + self.dropped
                + self.deduplicated
                + self.lost
                + self.publish_failed
                + self.in_flight_end
    }
}

#[derive(Clone, Debug, Default)]
pub struct ExchangeMetrics {
    pub name: String,
    pub kind: &'static str,
    pub published: u64,
    /// Routed to no queue (RabbitMQ drops them; a confirm still says ok).
    pub unroutable: u64,
}

#[derive(Clone, Debug, Default)]
pub struct TopicMetrics {
    pub name: String,
    pub partitions: u32,
    pub published: u64,
    pub appended: u64,
    /// `appended`, per partition.
    pub appended_per_partition: Vec<u64>,
    pub lost: u64,
    pub publish_failed: u64,
    /// Removed by retention (consumed or not).
    pub retention_removed: u64,
}

#[derive(Clone, Debug, Default)]
pub struct ConsumerMetrics {
    pub name: String,
    pub subscription: String,
    pub deliveries: u64,
    pub handled_ok: u64,
    pub handled_failed: u64,
    /// Deliveries the processed-messages store recognised and skipped.
    pub duplicates_skipped: u64,
    /// Handlers whose effects were rolled back because a concurrent duplicate had
    /// committed first (the store's unique key).
    pub rolled_back: u64,
    pub rebalances: u64,
    pub partitions_moved: u64,
}

#[derive(Clone, Debug, Default)]
pub struct EffectMetrics {
    pub name: String,
    /// Applications in all.
    pub applied: u64,
    /// Operations that applied it, or should have.
    pub operations: u64,
    pub exactly_once: u64,
    /// Operations that should have applied it (a successful request of an expecting
    /// workload) and never did.
    pub never: u64,
    /// Operations that applied it more than once.
    pub duplicated: u64,
    pub max_count: u64,
    /// Operations that applied it although their request was answered with an error.
    pub despite_failure: u64,
}

impl EffectMetrics {
    /// Counts one operation that applied the effect `n` times (and so needed judging):
    /// `flags` are its request's answers (bit 0 ok, bit 1 an error).
    pub fn count_operation(&mut self, n: u64, flags: u8) {
        self.operations += 1;
        match n {
            0 => self.never += 1,
            1 => self.exactly_once += 1,
            _ => self.duplicated += 1,
        }
        self.max_count = self.max_count.max(n);
        if n > 0 && flags & 3 == 2 {
            self.despite_failure += 1;
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct SagaMetrics {
    pub name: String,
    /// "orchestrated" or "choreography".
    pub kind: &'static str,
    pub started: u64,
    pub completed: u64,
    /// Failed, and every completed step was compensated.
    pub compensated: u64,
    /// Failed, and a compensation failed too (after its policy's retries): left
    /// inconsistent, every other step compensated.
    pub compensation_failed: u64,
    /// Still running when the run ended.
    pub in_flight: u64,
    /// Orchestrated: per action ("service/endpoint"), the sagas whose compensation of
    /// that step failed, leaving it done.
    pub uncompensated: BTreeMap<String, u64>,
}

/// Operations whose idempotency key was replayed or in use, per endpoint.
#[derive(Clone, Debug, Default)]
pub struct IdempotencyMetrics {
    pub endpoint: String,
    pub stored: u64,
    /// Retries answered from the store without running the handler.
    pub replayed: u64,
    /// Retries that found the first request still running (Stripe's 409).
    pub conflicts: u64,
}

/// The depth (queues) or lag (groups) of every flow, per time bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LagRow {
    pub start: SimTime,
    pub end: SimTime,
    pub flow: u32,
    pub depth: u64,
}

#[derive(Debug, Default)]
pub struct Consistency {
    pub flows: Vec<FlowMetrics>,
    pub exchanges: Vec<ExchangeMetrics>,
    pub topics: Vec<TopicMetrics>,
    pub consumers: Vec<ConsumerMetrics>,
    pub effects: Vec<EffectMetrics>,
    pub sagas: Vec<SagaMetrics>,
    pub idempotency: Vec<IdempotencyMetrics>,
    /// Publish to every subscriber having handled the message.
    pub propagation: Summary,
    /// Messages some subscriber never handled (dead-lettered, dropped, in flight).
    pub not_propagated: u64,
    pub lag_rows: Vec<LagRow>,
}

impl Consistency {
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
            && self.effects.is_empty()
            && self.sagas.is_empty()
            && self.idempotency.is_empty()
    }

    pub fn conserved(&self) -> bool {
        self.flows.iter().all(FlowMetrics::conserved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conservation_counts_every_term() {
        let mut f = FlowMetrics {
            published: 10,
            acked: 3,
            expired: 1,
            dropped: 1,
            deduplicated: 1,
            lost: 1,
            publish_failed: 1,
            in_flight_end: 1,
            ..Default::default()
        };
        f.dead_lettered.rejected = 1;
        assert!(f.conserved());
        f.acked += 1;
        assert!(!f.conserved());
    }
}
