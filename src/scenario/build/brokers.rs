//! Building brokers, queues, exchanges, topics, consumers, publish/effect/saga steps,
//! effects and choreographies. Broker presets pick each library's defaults
//! (SEMANTICS.md section 5).

use super::*;
use crate::model::routing::{Assignor, topic_matches};

/// The defaults a broker preset brings.
struct Preset {
    ack_timeout: Option<SimDuration>,
    on_ack_timeout: AckTimeout,
    requeue_on_crash: bool,
    delivery_limit: Option<u32>,
    nack_counts: bool,
    /// None: the consumer's concurrency (BullMQ fetches only what it can run).
    prefetch: Option<u32>,
    on_failure: OnFailure,
    confirms: bool,
    retries: u32,
    confirm_timeout: SimDuration,
    /// A publish retry waits this long (Kafka's `retry.backoff.ms`, kept for the others).
    retry_backoff: SimDuration,
    /// A FIFO queue's deduplication interval; None: the library has no FIFO queues.
    dedup_window: Option<SimDuration>,
}

/// The defaults of topics and consumer groups: Kafka's, the only preset with topics.
struct LogPreset {
    /// `num.partitions`.
    partitions: u32,
    /// `retention.ms`.
    retention: SimDuration,
    /// `auto.commit.interval.ms`.
    commit_interval: SimDuration,
    /// `partition.assignment.strategy`.
    assignor: Assignor,
    /// `auto.offset.reset`.
    start: StartFrom,
    /// `session.timeout.ms`.
    session_timeout: SimDuration,
    /// `max.poll.interval.ms`.
    max_poll_interval: SimDuration,
}

const KAFKA_LOG: LogPreset = LogPreset {
    partitions: 1,
    retention: SimDuration::from_secs(7 * 24 * 3600),
    commit_interval: SimDuration::from_secs(5),
    assignor: Assignor::Range,
    start: StartFrom::Latest,
    session_timeout: SimDuration::from_secs(45),
    max_poll_interval: SimDuration::from_secs(300),
};

// meshsim's own defaults, the same under every preset.
/// A broker's one-way latency when the scenario gives none.
const BROKER_LATENCY: SimDuration = SimDuration::from_millis(1);
/// Deliveries in all when `on_failure = "retry"` is written without `attempts`.
const RETRY_ATTEMPTS: u32 = 3;
/// How long an idempotent consumer keeps the ids it has seen.
const DEDUPE_RETENTION: SimDuration = SimDuration::from_secs(24 * 3600);
/// How often an outbox relay polls its table.
const RELAY_INTERVAL: SimDuration = SimDuration::from_millis(100);

/// A consumer's group settings, as `ConsumerSpec` holds them.
struct Group {
    commit: Commit,
    assignor: Assignor,
    start: StartFrom,
    session_timeout: SimDuration,
    max_poll_interval: Option<SimDuration>,
}

fn preset(flavor: Flavor) -> Preset {
    use crate::model::backoff::{Backoff, BackoffKind, Jitter, UNCAPPED};
    let none = Backoff {
        kind: BackoffKind::Fixed,
        base: SimDuration::ZERO,
        multiplier: 1.0,
        cap: UNCAPPED,
        jitter: Jitter::None,
    };
    match flavor {
        // RabbitMQ 4.x quorum queue: consumer_timeout 30 min closes the channel,
        // delivery-limit 20, nack(requeue) not counted (4.3), prefetch unlimited.
        Flavor::RabbitMq => Preset {
            ack_timeout: Some(SimDuration::from_secs(30 * 60)),
            on_ack_timeout: AckTimeout::CloseChannel,
            requeue_on_crash: true,
            delivery_limit: Some(20),
            nack_counts: false,
            prefetch: Some(0),
            on_failure: OnFailure::Requeue,
            confirms: false,
            retries: 0,
            confirm_timeout: SimDuration::from_secs(5),
            retry_backoff: SimDuration::from_millis(100),
            dedup_window: None,
        },
        // SQS: visibility timeout 30 s; a failed message simply reappears then;
        // ReceiveMessage takes up to 10; SendMessage answers (a confirm).
        Flavor::Sqs => Preset {
            ack_timeout: Some(SimDuration::from_secs(30)),
            on_ack_timeout: AckTimeout::Reappear,
            requeue_on_crash: false,
            delivery_limit: None,
            nack_counts: true,
            prefetch: Some(10),
            on_failure: OnFailure::Abandon,
            confirms: true,
            retries: 0,
            confirm_timeout: SimDuration::from_secs(5),
            retry_backoff: SimDuration::from_millis(100),
            // FIFO queues drop a repeated deduplication id for 5 minutes.
            dedup_window: Some(SimDuration::from_secs(5 * 60)),
        },
        // BullMQ: lock 30 s (stalled jobs return), attempts 1, concurrency 1.
        Flavor::BullMq => Preset {
            ack_timeout: Some(SimDuration::from_secs(30)),
            on_ack_timeout: AckTimeout::Reappear,
            requeue_on_crash: false,
            delivery_limit: None,
            nack_counts: true,
            prefetch: None,
            on_failure: OnFailure::Retry {
                attempts: 1,
                backoff: none,
            },
            confirms: true,
            retries: 0,
            confirm_timeout: SimDuration::from_secs(5),
            retry_backoff: SimDuration::from_millis(100),
            dedup_window: None,
        },
        // Kafka: acks=all with retries (idempotent producer), request timeout 30 s.
        Flavor::Kafka => Preset {
            ack_timeout: None,
            on_ack_timeout: AckTimeout::Reappear,
            requeue_on_crash: false,
            delivery_limit: None,
            nack_counts: true,
            prefetch: Some(0),
            on_failure: OnFailure::Skip,
            confirms: true,
            retries: 10,
            confirm_timeout: SimDuration::from_secs(30),
            retry_backoff: SimDuration::from_millis(100),
            dedup_window: None,
        },
    }
}

impl Builder {
    fn flavor_of(&self, b: BrokerId) -> Flavor {
        self.brokers[b.index()].flavor
    }

    /// Declares every broker with its queues, exchanges and topics.
    pub(super) fn declare_brokers(&mut self, raw: &RawScenario) {
        for (name, b) in &raw.brokers {
            self.check_name(name, "broker");
            let v = b.get_ref();
            let flavor = self.flavor(v.preset.as_ref());
            let latency = match &v.latency {
                Some(l) => self.dist(l).unwrap_or(Dist::Constant(SimDuration::ZERO)),
                None => Dist::Constant(BROKER_LATENCY),
            };
            let loss = v
                .loss
                .as_ref()
                .and_then(|l| self.probability(l, "the loss"))
                .unwrap_or(0.0);
            let bid = BrokerId(self.brokers.len() as u32);
            self.broker_ids.insert(name.get_ref().clone(), bid);
            self.brokers.push(BrokerSpec {
                name: name.get_ref().clone(),
                flavor,
                latency,
                loss,
            });
            if flavor == Flavor::Kafka && (!v.queues.is_empty() || !v.exchanges.is_empty()) {
                self.error(
                    span(b),
                    "a kafka broker has topics, not queues or exchanges",
                    "[brokers.NAME.topics.TOPIC] with `partitions`",
                );
            }
            if flavor != Flavor::Kafka && !v.topics.is_empty() {
                self.error(
                    span(b),
                    format!("a {} broker has queues, not topics", flavor.name()),
                    "preset = \"kafka\" for partitioned logs",
                );
            }
            let p = preset(flavor);
            for (qname, q) in &v.queues {
                self.declare_queue(name.get_ref(), qname, q.get_ref(), bid, flavor, &p);
            }
            self.link_dead_letters(name.get_ref(), v);
            for (ename, e) in &v.exchanges {
                self.declare_exchange(name.get_ref(), ename, e.get_ref(), v, bid);
            }
            for (tname, t) in &v.topics {
                self.declare_topic(name.get_ref(), tname, t.get_ref(), bid);
            }
        }
    }

    /// The preset a broker names (RabbitMQ when it names none).
    fn flavor(&mut self, preset: Option<&Spanned<String>>) -> Flavor {
        match preset.map(|p| (p, p.get_ref().as_str())) {
            None | Some((_, "rabbitmq")) => Flavor::RabbitMq,
            Some((_, "kafka")) => Flavor::Kafka,
            Some((_, "sqs")) => Flavor::Sqs,
            Some((_, "bullmq")) => Flavor::BullMq,
            Some((p, other)) => {
                self.error(
                    span(p),
                    format!("unknown broker preset `{other}`"),
                    "one of: rabbitmq, kafka, sqs, bullmq",
                );
                Flavor::RabbitMq
            }
        }
    }

    /// A queue of broker `broker`, under its preset `p`.
    fn declare_queue(
        &mut self,
        broker: &str,
        qname: &Name,
        qv: &RawQueue,
        bid: BrokerId,
        flavor: Flavor,
        p: &Preset,
    ) {
        self.check_name(qname, "queue");
        let full = format!("{}/{}", broker, qname.get_ref());
        let dur = |b: &mut Builder, d: &Option<Spanned<String>>, what: &str| {
            d.as_ref().and_then(|d| b.positive_duration(d, what))
        };
        let ack_timeout = dur(self, &qv.ack_timeout, "the ack timeout").or(p.ack_timeout);
        let on_ack_timeout = self.on_ack_timeout(qv.on_ack_timeout.as_ref(), p.on_ack_timeout);
        let delivery_limit = match &qv.delivery_limit {
            Some(l) if *l.get_ref() == -1 => None,
            Some(l) => self.int_u32(l, 1, "the delivery limit", "at least 1 (or -1: unlimited)"),
            None => p.delivery_limit,
        };
        let max_length = qv
            .max_length
            .as_ref()
            .and_then(|m| self.int_u32(m, 1, "the max length", "at least 1 message"));
        let overflow = match qv.overflow.as_ref().map(|x| (x, x.get_ref().as_str())) {
            None | Some((_, "drop_head")) => Overflow::DropHead,
            Some((_, "reject_publish")) => Overflow::RejectPublish,
            Some((x, other)) => {
                self.error(
                    span(x),
                    format!("unknown overflow `{other}`"),
                    "\"drop_head\" or \"reject_publish\"",
                );
                Overflow::DropHead
            }
        };
        let (fifo, dedup_window) = self.fifo(qv, flavor, p);
        let ttl = dur(self, &qv.ttl, "the message TTL");
        let qid = QueueId(self.queues.len() as u32);
        self.queue_ids.insert(full.clone(), qid);
        self.queues.push(QueueSpec {
            name: full,
            broker: bid,
            ack_timeout,
            on_ack_timeout,
            requeue_on_crash: qv
                .requeue_on_crash
                .as_ref()
                .map_or(p.requeue_on_crash, |x| *x.get_ref()),
            delivery_limit,
            nack_counts: qv
                .nack_counts
                .as_ref()
                .map_or(p.nack_counts, |x| *x.get_ref()),
            dead_letter: None,
            ttl,
            max_length,
            overflow,
            fifo,
            dedup_window,
            consumers: Vec::new(),
        });
    }

    /// What an ack timeout does to the consumer instance, or the preset's.
    fn on_ack_timeout(&mut self, x: Option<&Spanned<String>>, preset: AckTimeout) -> AckTimeout {
        match x.map(|x| (x, x.get_ref().as_str())) {
            None => preset,
            Some((_, "close_channel")) => AckTimeout::CloseChannel,
            Some((_, "reappear")) => AckTimeout::Reappear,
            Some((x, other)) => {
                self.error(
                    span(x),
                    format!("unknown on_ack_timeout `{other}`"),
                    "\"close_channel\" (RabbitMQ) or \"reappear\" (SQS, BullMQ)",
                );
                preset
            }
        }
    }

    /// Whether a queue is FIFO (SQS's message groups) and its deduplication window.
    fn fifo(&mut self, qv: &RawQueue, flavor: Flavor, p: &Preset) -> (bool, Option<SimDuration>) {
        let fifo = qv.fifo.as_ref().is_some_and(|f| *f.get_ref());
        if let Some(f) = &qv.fifo
            && *f.get_ref()
            && flavor != Flavor::Sqs
        {
            self.error(
                span(f),
                "FIFO queues with message groups are SQS's",
                "preset = \"sqs\"",
            );
        }
        let dedup_window = match &qv.dedup_window {
            Some(d) => {
                if !fifo {
                    self.error(
                        span(d),
                        "a deduplication window needs a FIFO queue",
                        "fifo = true",
                    );
                }
                self.positive_duration(d, "the deduplication window")
            }
            None if fifo => p.dedup_window,
            None => None,
        };
        (fifo, dedup_window)
    }

    /// Dead-letter queues, once every queue of the broker is known.
    fn link_dead_letters(&mut self, broker: &str, v: &RawBroker) {
        for (qname, q) in &v.queues {
            if let Some(dl) = &q.get_ref().dead_letter {
                let full = format!("{}/{}", broker, qname.get_ref());
                let dl_full = format!("{}/{}", broker, dl.get_ref());
                match self.queue_ids.get(&dl_full) {
                    Some(&d) if dl_full != full => {
                        let q = self.queue_ids[&full];
                        self.queues[q.index()].dead_letter = Some(d);
                    }
                    Some(_) => self.error(
                        span(dl),
                        "a queue cannot dead-letter into itself",
                        "another queue of this broker",
                    ),
                    None => {
                        let known: Vec<&str> =
                            v.queues.keys().map(|k| k.get_ref().as_str()).collect();
                        self.error(
                            span(dl),
                            format!("broker `{}` has no queue `{}`", broker, dl.get_ref()),
                            format!("one of: {}", known.join(", ")),
                        );
                    }
                }
            }
        }
    }

    /// An exchange and its bindings, each to a queue of the same broker.
    fn declare_exchange(
        &mut self,
        broker: &str,
        ename: &Name,
        ev: &RawExchange,
        v: &RawBroker,
        bid: BrokerId,
    ) {
        self.check_name(ename, "exchange");
        let kind = match ev.kind.get_ref().as_str() {
            "direct" => ExchangeKind::Direct,
            "fanout" => ExchangeKind::Fanout,
            "topic" => ExchangeKind::Topic,
            other => {
                self.error(
                    span(&ev.kind),
                    format!("unknown exchange type `{other}`"),
                    "one of: direct, fanout, topic",
                );
                return;
            }
        };
        let full = format!("{}/{}", broker, ename.get_ref());
        let mut bindings = Vec::new();
        for bnd in &ev.bindings {
            let bv = bnd.get_ref();
            let qfull = format!("{}/{}", broker, bv.queue.get_ref());
            let Some(&q) = self.queue_ids.get(&qfull) else {
                let known: Vec<&str> = v.queues.keys().map(|k| k.get_ref().as_str()).collect();
                self.error(
                    span(&bv.queue),
                    format!("broker `{}` has no queue `{}`", broker, bv.queue.get_ref()),
                    format!("one of: {}", known.join(", ")),
                );
                continue;
            };
            let key = match (&bv.key, kind) {
                (None, ExchangeKind::Fanout) => String::new(),
                (Some(k), ExchangeKind::Fanout) => {
                    self.error(
                        span(k),
                        "a fanout exchange ignores binding keys",
                        "no `key` on a fanout binding",
                    );
                    String::new()
                }
                (Some(k), _) => k.get_ref().clone(),
                (None, _) => {
                    self.error(
                        span(bnd),
                        "a binding of a direct or topic exchange needs a key",
                        "key = \"order.created\" (topic: `*` one word, `#` zero or more)",
                    );
                    continue;
                }
            };
            bindings.push((key, q));
        }
        let eid = ExchangeId(self.exchanges.len() as u32);
        self.exchange_ids.insert(full.clone(), eid);
        self.exchanges.push(ExchangeSpec {
            name: full,
            broker: bid,
            kind,
        });
        self.bindings.push(bindings);
    }

    /// A Kafka topic: its partitions and retention.
    fn declare_topic(&mut self, broker: &str, tname: &Name, tv: &RawTopic, bid: BrokerId) {
        self.check_name(tname, "topic");
        let partitions = tv
            .partitions
            .as_ref()
            .and_then(|n| {
                self.bounded(
                    n,
                    1,
                    bounds::MAX_PARTITIONS,
                    "partitions",
                    "at least 1 partition",
                )
            })
            .unwrap_or(KAFKA_LOG.partitions);
        let retention = match &tv.retention {
            Some(r) => self.positive_duration(r, "the retention"),
            None => Some(KAFKA_LOG.retention),
        };
        let full = format!("{}/{}", broker, tname.get_ref());
        let tid = TopicId(self.topics.len() as u32);
        self.topic_ids.insert(full.clone(), tid);
        self.topics.push(TopicSpec {
            name: full,
            broker: bid,
            partitions,
            retention,
            groups: Vec::new(),
        });
    }

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
                None => p.prefetch.unwrap_or(concurrency),
            };
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

    /// A `publish` step: its target and how it is sent.
    pub(super) fn compile_publish(&mut self, ctx: &Ctx, s: &RawStep, out: &mut Vec<Step>) {
        let target = s.publish.as_ref().expect("kind");
        let t = target.get_ref();
        let (target_spec, broker) = if let Some(&e) = self.exchange_ids.get(t) {
            let ex = &self.exchanges[e.index()];
            let (kind, broker) = (ex.kind, ex.broker);
            let Some(key) = &s.key else {
                if kind != ExchangeKind::Fanout {
                    self.error(
                        span(target),
                        "publishing to a direct or topic exchange needs a routing key",
                        "key = \"order.created\"",
                    );
                    return;
                }
                let queues = self.bindings[e.index()].iter().map(|&(_, q)| q).collect();
                return self.push_publish(
                    ctx,
                    s,
                    PublishTarget::Queues {
                        exchange: Some(e),
                        queues,
                    },
                    broker,
                    String::new(),
                    out,
                );
            };
            let queues = self.route(e, kind, key.get_ref());
            (
                PublishTarget::Queues {
                    exchange: Some(e),
                    queues,
                },
                broker,
            )
        } else if let Some(&q) = self.queue_ids.get(t) {
            (
                PublishTarget::Queues {
                    exchange: None,
                    queues: vec![q],
                },
                self.queues[q.index()].broker,
            )
        } else if let Some(&tp) = self.topic_ids.get(t) {
            (PublishTarget::Topic(tp), self.topics[tp.index()].broker)
        } else {
            let mut known: Vec<&str> = self
                .exchange_ids
                .keys()
                .chain(self.queue_ids.keys())
                .chain(self.topic_ids.keys())
                .map(String::as_str)
                .collect();
            known.sort();
            self.error(
                span(target),
                format!("`{t}` is no exchange, queue or topic"),
                format!("BROKER/NAME, one of: {}", known.join(", ")),
            );
            return;
        };
        let rk = s
            .key
            .as_ref()
            .map(|k| k.get_ref().clone())
            .unwrap_or_default();
        self.push_publish(ctx, s, target_spec, broker, rk, out);
    }

    /// The queues an exchange routes `routing_key` to, each once.
    fn route(&self, e: ExchangeId, kind: ExchangeKind, routing_key: &str) -> Vec<QueueId> {
        let mut queues: Vec<QueueId> = self.bindings[e.index()]
            .iter()
            .filter(|(pattern, _)| match kind {
                ExchangeKind::Fanout => true,
                ExchangeKind::Direct => pattern == routing_key,
                ExchangeKind::Topic => topic_matches(pattern, routing_key),
            })
            .map(|&(_, q)| q)
            .collect();
        // A queue bound twice still gets one copy.
        queues.sort();
        queues.dedup();
        queues
    }

    fn push_publish(
        &mut self,
        ctx: &Ctx,
        s: &RawStep,
        target: PublishTarget,
        broker: BrokerId,
        routing_key: String,
        out: &mut Vec<Step>,
    ) {
        let p = preset(self.flavor_of(broker));
        let outbox = s.outbox.as_ref().is_some_and(|o| *o.get_ref());
        let confirms = s
            .confirms
            .as_ref()
            .map_or(p.confirms || outbox, |c| *c.get_ref());
        if let (Some(c), true) = (&s.confirms, outbox)
            && !*c.get_ref()
        {
            self.error(span(c), "an outbox relay always waits for confirms (it deletes a row only once the broker has it)", "drop `confirms` on an outbox publish");
        }
        let retries = match &s.retries {
            Some(r) => {
                if !confirms {
                    self.error(
                        span(r),
                        "retries need publisher confirms (without them a failure is never seen)",
                        "confirms = true",
                    );
                }
                self.int_u32(r, 0, "retries", "a number of retries >= 0")
                    .unwrap_or(0)
            }
            None => p.retries,
        };
        // Reachability for effects' expectations: published messages reach consumers.
        let mut targets = Vec::new();
        match &target {
            PublishTarget::Queues { queues, .. } => {
                for q in queues {
                    targets.extend(
                        self.queues[q.index()]
                            .consumers
                            .iter()
                            .map(|c| self.consumers[c.index()].endpoint),
                    );
                }
            }
            PublishTarget::Topic(t) => targets.extend(
                self.topics[t.index()]
                    .groups
                    .iter()
                    .map(|c| self.consumers[c.index()].endpoint),
            ),
        }
        self.reach.entry(ctx.endpoint).or_default().extend(targets);
        self.publishes.push(PublishSpec {
            broker,
            target,
            routing_key,
            confirms,
            outbox,
            retries,
            retry_backoff: p.retry_backoff,
            confirm_timeout: p.confirm_timeout,
            relay_interval: RELAY_INTERVAL,
        });
        out.push(Step::Publish(PublishId(self.publishes.len() as u32 - 1)));
    }

    pub(super) fn compile_effect(&mut self, ctx: &Ctx, s: &RawStep, out: &mut Vec<Step>) {
        let name = s.effect.as_ref().expect("kind");
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

    pub(super) fn compile_saga(&mut self, ctx: &Ctx, s: &RawStep, out: &mut Vec<Step>) {
        let list = s.saga.as_ref().expect("kind");
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
            let site = |b: &mut Builder,
                        target: &Spanned<String>,
                        policy: Option<&Spanned<String>>,
                        action: bool|
             -> Option<CallSite> {
                let eid = b.resolve_endpoint(target)?;
                let pid = b.policy_ref(policy);
                let at = policy.map_or_else(|| span(target), span);
                let edge = b.edge(&caller, eid, pid, at);
                b.graph
                    .entry(ctx.endpoint)
                    .or_default()
                    .push((eid, span(target)));
                if action {
                    b.reach.entry(ctx.endpoint).or_default().push(eid);
                }
                Some(CallSite {
                    edge,
                    timeout: None,
                    translate: ctx.translate,
                })
            };
            let action = site(self, &v.action, v.policy.as_ref(), true);
            let comp = match &v.compensation {
                Some(c) => site(self, c, v.compensation_policy.as_ref(), false),
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
                    stack.extend(next.iter().map(|(x, _)| *x));
                }
                if let Some(next) = b.reach.get(&e) {
                    stack.extend(next.iter().copied());
                }
            }
            seen
        };
        // Saga compensations are in `graph` but must not make effects expected: use
        // `reach` for saga actions and publishes, `graph` minus compensations for calls.
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
                    Some(c) => match lookup(self, c) {
                        Some(id) => Some(Some(id)),
                        None => None,
                    },
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
