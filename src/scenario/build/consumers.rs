//! `[consumers.NAME]`: each consumer declared as a service with one endpoint,
//! `NAME/handle`, and its handler compiled with the services' handlers.

use super::brokers::{DEDUPE_RETENTION, KAFKA_LOG, RETRY_ATTEMPTS, preset};
use super::*;
use crate::model::routing::Assignor;

/// A consumer's group settings, as `ConsumerSpec` holds them.
struct Group {
    commit: Commit,
    assignor: Assignor,
    start: StartFrom,
    session_timeout: SimDuration,
    max_poll_interval: Option<SimDuration>,
}

impl Builder {
    /// Declares each consumer as a service (one replica per instance) with one
    /// endpoint, NAME/handle, whose handler is the consumer's steps.
    pub(super) fn declare_consumers(&mut self, raw: &RawScenario) {
        for (name, c) in &raw.consumers {
            self.check_name(name, "consumer");
            if self.service_ids.contains_key(name.get_ref()) {
                self.error(
                    span(name),
                    format!("`{}` names both a service and a consumer", name.get_ref()),
                    "distinct names: a consumer runs as a service of its own",
                );
                continue;
            }
            let v = c.get_ref();
            let Some(subscription) = self.subscription(c) else {
                continue;
            };
            let broker = match subscription {
                Subscription::Queue(q) => self.queues[q.index()].broker,
                Subscription::Topic(t) => self.topics[t.index()].broker,
            };
            let p = preset(self.flavor_of(broker));
            let (instances, concurrency, prefetch) = self.capacity(v, p.prefetch);
            let is_topic = matches!(subscription, Subscription::Topic(_));
            let on_failure = self.on_failure(v, p.on_failure, is_topic);
            let on_failure = self.retry_settings(v, on_failure);
            let dedupe = v.dedupe.as_ref().and_then(|d| self.dedupe(d));
            self.check_subscription_fields(v, is_topic);
            let group = self.group(v, is_topic);
            let (sid, eid, cid) = self.consumer_service(name.get_ref(), instances, concurrency);
            match subscription {
                Subscription::Queue(q) => self.queues[q.index()].consumers.push(cid),
                Subscription::Topic(t) => self.topics[t.index()].groups.push(cid),
            }
            self.consumers.push(ConsumerSpec {
                name: name.get_ref().clone(),
                service: sid,
                endpoint: eid,
                subscription,
                instances,
                prefetch,
                on_failure,
                dedupe,
                commit: group.commit,
                assignor: group.assignor,
                start: group.start,
                session_timeout: group.session_timeout,
                max_poll_interval: group.max_poll_interval,
            });
        }
    }

    /// A consumer's (instances, handlers per instance, prefetch). Prefetch defaults to
    /// the library's, or where it has none (BullMQ) to the concurrency: an instance
    /// then fetches only what it can run.
    fn capacity(&mut self, v: &RawConsumer, preset_prefetch: Option<u32>) -> (u32, u32, u32) {
        let instances = v
            .instances
            .as_ref()
            .and_then(|n| {
                self.bounded(
                    n,
                    1,
                    bounds::MAX_INSTANCES,
                    "instances",
                    "at least 1 instance",
                )
            })
            .unwrap_or(1);
        let concurrency = v
            .concurrency
            .as_ref()
            .and_then(|n| {
                self.bounded(
                    n,
                    1,
                    bounds::MAX_CONCURRENCY,
                    "concurrency",
                    "at least 1 handler at a time",
                )
            })
            .unwrap_or(1);
        let prefetch = match &v.prefetch {
            Some(n) => self
                .int_u32(
                    n,
                    0,
                    "prefetch",
                    "unacked deliveries per instance, 0 = unlimited",
                )
                .unwrap_or(0),
            None => preset_prefetch.unwrap_or(concurrency),
        };
        (instances, concurrency, prefetch)
    }

    /// The one queue or topic a consumer reads.
    fn subscription(&mut self, c: &Spanned<RawConsumer>) -> Option<Subscription> {
        let v = c.get_ref();
        match (&v.queue, &v.topic) {
            (Some(q), None) => match self.queue_ids.get(q.get_ref()) {
                Some(&id) => Some(Subscription::Queue(id)),
                None => {
                    let known: Vec<&str> = self.queue_ids.keys().map(String::as_str).collect();
                    self.error(
                        span(q),
                        format!("unknown queue `{}`", q.get_ref()),
                        format!("BROKER/QUEUE, one of: {}", known.join(", ")),
                    );
                    None
                }
            },
            (None, Some(t)) => match self.topic_ids.get(t.get_ref()) {
                Some(&id) => Some(Subscription::Topic(id)),
                None => {
                    let known: Vec<&str> = self.topic_ids.keys().map(String::as_str).collect();
                    self.error(
                        span(t),
                        format!("unknown topic `{}`", t.get_ref()),
                        format!("BROKER/TOPIC, one of: {}", known.join(", ")),
                    );
                    None
                }
            },
            _ => {
                self.error(span(c), "a consumer reads exactly one queue or topic", "queue = \"BROKER/QUEUE\" or topic = \"BROKER/TOPIC\" (the consumer's name is its group)");
                None
            }
        }
    }

    /// The kind of `on_failure`, or the preset's; a `retry` gets its settings after.
    fn on_failure(&mut self, v: &RawConsumer, preset: OnFailure, is_topic: bool) -> OnFailure {
        let Some(x) = &v.on_failure else {
            return preset;
        };
        let kind = x.get_ref().as_str();
        let ok_kinds: &[&str] = if is_topic {
            &["retry", "skip"]
        } else {
            &["requeue", "reject", "retry", "timeout"]
        };
        if !ok_kinds.contains(&kind) {
            self.error(
                span(x),
                format!(
                    "unknown on_failure `{kind}` for a {} consumer",
                    if is_topic { "topic" } else { "queue" }
                ),
                format!("one of: {}", ok_kinds.join(", ")),
            );
            return preset;
        }
        match kind {
            "requeue" => OnFailure::Requeue,
            "reject" => OnFailure::Reject,
            "skip" => OnFailure::Skip,
            "timeout" => OnFailure::Abandon,
            _ => OnFailure::Retry {
                attempts: RETRY_ATTEMPTS,
                backoff: crate::model::backoff::Backoff::bullmq(SimDuration::ZERO),
            },
        }
    }

    /// A retry's `attempts`, `backoff` and `delay`; refused on any other `on_failure`.
    fn retry_settings(&mut self, v: &RawConsumer, on_failure: OnFailure) -> OnFailure {
        match on_failure {
            OnFailure::Retry { attempts, .. } => {
                let attempts = v
                    .attempts
                    .as_ref()
                    .and_then(|a| {
                        self.int_u32(a, 1, "attempts", "at least 1 (the first delivery included)")
                    })
                    .unwrap_or(attempts);
                let delay = v
                    .delay
                    .as_ref()
                    .and_then(|d| self.duration(d))
                    .unwrap_or(SimDuration::ZERO);
                let mut backoff = crate::model::backoff::Backoff::bullmq(delay);
                match v.backoff.as_ref().map(|b| (b, b.get_ref().as_str())) {
                    None | Some((_, "fixed")) => {
                        backoff.kind = crate::model::backoff::BackoffKind::Fixed
                    }
                    Some((_, "exponential")) => {
                        backoff.kind = crate::model::backoff::BackoffKind::Exponential
                    }
                    Some((b, other)) => self.error(
                        span(b),
                        format!("unknown backoff `{other}`"),
                        "\"fixed\" or \"exponential\" (BullMQ: delay, then 2^(n-1) x delay)",
                    ),
                }
                OnFailure::Retry { attempts, backoff }
            }
            other => {
                for (field, sp) in [
                    ("attempts", v.attempts.as_ref().map(span)),
                    ("backoff", v.backoff.as_ref().map(span)),
                    ("delay", v.delay.as_ref().map(span)),
                ] {
                    if let Some(sp) = sp {
                        self.error(
                            sp,
                            format!("`{field}` only applies to on_failure = \"retry\""),
                            "on_failure = \"retry\"",
                        );
                    }
                }
                other
            }
        }
    }

    /// An idempotent consumer's `dedupe = { by, retention }`.
    fn dedupe(&mut self, d: &Spanned<RawDedupe>) -> Option<Dedupe> {
        let dv = d.get_ref();
        let by = match dv.by.as_ref().map(|b| (b, b.get_ref().as_str())) {
            None | Some((_, "message")) => DedupeBy::Message,
            Some((_, "operation")) => DedupeBy::Operation,
            Some((b, other)) => {
                self.error(
                    span(b),
                    format!("unknown dedupe key `{other}`"),
                    "\"message\" (the message id) or \"operation\"",
                );
                DedupeBy::Message
            }
        };
        let retention = match &dv.retention {
            Some(r) => self.positive_duration(r, "the retention")?,
            None => DEDUPE_RETENTION,
        };
        Some(Dedupe { by, retention })
    }

    /// Refuses the fields of queue consumers on a topic consumer, and the reverse.
    fn check_subscription_fields(&mut self, v: &RawConsumer, is_topic: bool) {
        let queue_only = [("prefetch", v.prefetch.as_ref().map(span))];
        let topic_only = [
            ("commit", v.commit.as_ref().map(span)),
            ("commit_interval", v.commit_interval.as_ref().map(span)),
            ("commit_batch", v.commit_batch.as_ref().map(span)),
            ("assignment", v.assignment.as_ref().map(span)),
            ("start", v.start.as_ref().map(span)),
            ("start_offset", v.start_offset.as_ref().map(span)),
            ("session_timeout", v.session_timeout.as_ref().map(span)),
            ("max_poll_interval", v.max_poll_interval.as_ref().map(span)),
        ];
        for (field, sp) in queue_only {
            if let Some(sp) = sp
                && is_topic
            {
                self.error(
                    sp,
                    format!("`{field}` applies to queue consumers"),
                    "a consumer with `queue = ...`",
                );
            }
        }
        for (field, sp) in topic_only {
            if let Some(sp) = sp
                && !is_topic
            {
                self.error(
                    sp,
                    format!("`{field}` applies to topic consumers (groups)"),
                    "a consumer with `topic = ...`",
                );
            }
        }
    }

    /// A consumer group's settings (a queue consumer gets them too, unused).
    fn group(&mut self, v: &RawConsumer, is_topic: bool) -> Group {
        let commit = self.commit(v);
        let assignor = match v.assignment.as_ref().map(|x| (x, x.get_ref().as_str())) {
            None => KAFKA_LOG.assignor,
            Some((_, "range")) => Assignor::Range,
            Some((_, "round_robin")) => Assignor::RoundRobin,
            Some((_, "cooperative")) => Assignor::CooperativeSticky,
            Some((x, other)) => {
                self.error(
                    span(x),
                    format!("unknown assignment `{other}`"),
                    "one of: range, round_robin, cooperative",
                );
                Assignor::Range
            }
        };
        let start = match (
            v.start.as_ref().map(|x| (x, x.get_ref().as_str())),
            &v.start_offset,
        ) {
            (None, None) => KAFKA_LOG.start,
            (Some((_, "latest")), None) => StartFrom::Latest,
            (Some((_, "earliest")), None) => StartFrom::Earliest,
            (None, Some(o)) | (Some((_, "offset")), Some(o)) => StartFrom::Offset(
                self.int(o, 0, i64::MAX, "the start offset", "an offset >= 0")
                    .unwrap_or(0),
            ),
            (Some((x, _)), _) => {
                self.error(
                    span(x),
                    "unknown start",
                    "\"earliest\", \"latest\" (Kafka's default), or start_offset = N",
                );
                StartFrom::Latest
            }
        };
        let session_timeout = v
            .session_timeout
            .as_ref()
            .and_then(|d| self.positive_duration(d, "the session timeout"))
            .unwrap_or(KAFKA_LOG.session_timeout);
        let max_poll_interval = match &v.max_poll_interval {
            Some(d) => self.positive_duration(d, "max_poll_interval"),
            None if is_topic => Some(KAFKA_LOG.max_poll_interval),
            None => None,
        };
        Group {
            commit,
            assignor,
            start,
            session_timeout,
            max_poll_interval,
        }
    }

    /// When a group commits its offsets: `commit`, `commit_interval`, `commit_batch`.
    fn commit(&mut self, v: &RawConsumer) -> Commit {
        let interval = match &v.commit_interval {
            Some(d) => self
                .positive_duration(d, "the commit interval")
                .unwrap_or(KAFKA_LOG.commit_interval),
            None => KAFKA_LOG.commit_interval,
        };
        match v.commit.as_ref().map(|x| (x, x.get_ref().as_str())) {
            None | Some((_, "auto")) => Commit::Auto(interval),
            Some((_, "each")) => Commit::Each,
            Some((x, "batch")) => match &v.commit_batch {
                Some(n) => Commit::Batch(
                    self.int_u32(n, 1, "the batch", "at least 1 message")
                        .unwrap_or(1),
                ),
                None => {
                    self.error(
                        span(x),
                        "commit = \"batch\" needs `commit_batch = N`",
                        "commit_batch = 100",
                    );
                    Commit::Each
                }
            },
            Some((x, other)) => {
                self.error(
                    span(x),
                    format!("unknown commit `{other}`"),
                    "one of: auto (every commit_interval, default 5s), each, batch",
                );
                Commit::Each
            }
        }
    }

    /// The service a consumer runs as: `instances` replicas of `concurrency` workers and
    /// one endpoint, NAME/handle, whose handler is compiled later.
    fn consumer_service(
        &mut self,
        name: &str,
        instances: u32,
        concurrency: u32,
    ) -> (ServiceId, EndpointId, ConsumerId) {
        let sid = ServiceId(self.services.len() as u32);
        let eid = EndpointId(self.endpoints.len() as u32);
        let cid = ConsumerId(self.consumers.len() as u32);
        self.service_ids.insert(name.to_owned(), sid);
        let ep_name = format!("{name}/handle");
        self.endpoint_ids.insert(ep_name.clone(), eid);
        self.endpoints.push(EndpointSpec {
            service: sid,
            name: ep_name,
            handler: SeqId(u32::MAX),
            request_kb: 1.0,
            response_kb: 1.0,
            idempotency: None,
        });
        self.services.push(ServiceSpec {
            name: name.to_owned(),
            replicas: instances,
            workers: concurrency,
            // Prefetch bounds what waits here.
            queue_capacity: u32::MAX,
            balancer: Balancer::RoundRobin,
            hold: WorkerHold::Held,
            drop_expired: false,
            endpoints: vec![eid],
            consumer: Some(cid),
        });
        (sid, eid, cid)
    }

    pub(super) fn compile_consumers(&mut self, raw: &RawScenario) {
        let mut k = 0;
        for (name, c) in &raw.consumers {
            let Some(&sid) = self.service_ids.get(name.get_ref()) else {
                continue;
            };
            let Some(cid) = self.services[sid.index()].consumer else {
                continue;
            };
            assert_eq!(cid.index(), k);
            k += 1;
            let eid = self.consumers[cid.index()].endpoint;
            let ctx = Ctx {
                service: sid,
                endpoint: eid,
                translate: Translation::default(),
            };
            let steps = c.get_ref().steps.get_ref();
            if steps.is_empty() {
                self.error(
                    span(&c.get_ref().steps),
                    "a consumer with no steps",
                    "at least one step, e.g. { work = \"10ms\" }",
                );
            }
            let seq = self.compile_seq(&ctx, steps, false);
            self.endpoints[eid.index()].handler = seq;
        }
    }
}
