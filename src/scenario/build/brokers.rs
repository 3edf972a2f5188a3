//! `[brokers.NAME]`: brokers, queues, exchanges, topics, and the `publish` steps that
//! write to them. Broker presets pick each library's defaults (SEMANTICS.md section 5);
//! every broker default is here, beside them.

use super::*;
use crate::model::routing::{Assignor, topic_matches};

/// The defaults a broker preset brings.
pub(super) struct Preset {
    pub(super) ack_timeout: Option<SimDuration>,
    pub(super) on_ack_timeout: AckTimeout,
    pub(super) requeue_on_crash: bool,
    pub(super) delivery_limit: Option<u32>,
    pub(super) nack_counts: bool,
    /// None: the consumer's concurrency (BullMQ fetches only what it can run).
    pub(super) prefetch: Option<u32>,
    pub(super) on_failure: OnFailure,
    pub(super) confirms: bool,
    pub(super) retries: u32,
    pub(super) confirm_timeout: SimDuration,
    /// A publish retry waits this long (Kafka's `retry.backoff.ms`, kept for the others).
    pub(super) retry_backoff: SimDuration,
    /// A FIFO queue's deduplication interval; None: the library has no FIFO queues.
    pub(super) dedup_window: Option<SimDuration>,
}

/// The defaults of topics and consumer groups: Kafka's, the only preset with topics.
pub(super) struct LogPreset {
    /// `num.partitions`.
    pub(super) partitions: u32,
    /// `retention.ms`.
    pub(super) retention: SimDuration,
    /// `auto.commit.interval.ms`.
    pub(super) commit_interval: SimDuration,
    /// `partition.assignment.strategy`.
    pub(super) assignor: Assignor,
    /// `auto.offset.reset`.
    pub(super) start: StartFrom,
    /// `session.timeout.ms`.
    pub(super) session_timeout: SimDuration,
    /// `max.poll.interval.ms`.
    pub(super) max_poll_interval: SimDuration,
}

pub(super) const KAFKA_LOG: LogPreset = LogPreset {
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
pub(super) const RETRY_ATTEMPTS: u32 = 3;
/// How long an idempotent consumer keeps the ids it has seen.
pub(super) const DEDUPE_RETENTION: SimDuration = SimDuration::from_secs(24 * 3600);
/// How often an outbox relay polls its table.
const RELAY_INTERVAL: SimDuration = SimDuration::from_millis(100);

/// The defaults of the broker library a scenario names.
pub(super) fn preset(flavor: Flavor) -> Preset {
    match flavor {
        Flavor::RabbitMq => RABBITMQ,
        Flavor::Sqs => SQS,
        Flavor::BullMq => BULLMQ,
        Flavor::Kafka => KAFKA,
    }
}

/// RabbitMQ 4.x quorum queue: consumer_timeout 30 min closes the channel,
/// delivery-limit 20, nack(requeue) not counted (4.3), prefetch unlimited.
const RABBITMQ: Preset = Preset {
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
};

/// SQS: visibility timeout 30 s; a failed message simply reappears then;
/// ReceiveMessage takes up to 10; SendMessage answers (a confirm).
const SQS: Preset = Preset {
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
};

/// BullMQ: lock 30 s (stalled jobs return), attempts 1 (no backoff), concurrency 1.
const BULLMQ: Preset = {
    use crate::model::backoff::{Backoff, BackoffKind, Jitter, UNCAPPED};
    Preset {
        ack_timeout: Some(SimDuration::from_secs(30)),
        on_ack_timeout: AckTimeout::Reappear,
        requeue_on_crash: false,
        delivery_limit: None,
        nack_counts: true,
        prefetch: None,
        on_failure: OnFailure::Retry {
            attempts: 1,
            backoff: Backoff {
                kind: BackoffKind::Fixed,
                base: SimDuration::ZERO,
                multiplier: 1.0,
                cap: UNCAPPED,
                jitter: Jitter::None,
            },
        },
        confirms: true,
        retries: 0,
        confirm_timeout: SimDuration::from_secs(5),
        retry_backoff: SimDuration::from_millis(100),
        dedup_window: None,
    }
};

/// Kafka: acks=all with retries (idempotent producer), request timeout 30 s.
const KAFKA: Preset = Preset {
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
};

impl Builder {
    pub(super) fn flavor_of(&self, b: BrokerId) -> Flavor {
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

    /// A `publish` step: its target and how it is sent.
    pub(super) fn compile_publish(
        &mut self,
        ctx: &Ctx,
        target: &Spanned<String>,
        s: &RawStep,
        out: &mut Vec<Step>,
    ) {
        let Some((target_spec, broker)) = self.publish_target(target, s.key.as_ref()) else {
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

    /// What a publish step's `to` names, and its broker: an exchange (with the queues
    /// its key routes to), a queue, or a topic. None after reporting an error.
    fn publish_target(
        &mut self,
        target: &Spanned<String>,
        key: Option<&Spanned<String>>,
    ) -> Option<(PublishTarget, BrokerId)> {
        let t = target.get_ref();
        if let Some(&e) = self.exchange_ids.get(t) {
            let ex = &self.exchanges[e.index()];
            let (kind, broker) = (ex.kind, ex.broker);
            let queues = match key {
                Some(key) => self.route(e, kind, key.get_ref()),
                None if kind == ExchangeKind::Fanout => {
                    self.bindings[e.index()].iter().map(|&(_, q)| q).collect()
                }
                None => {
                    self.error(
                        span(target),
                        "publishing to a direct or topic exchange needs a routing key",
                        "key = \"order.created\"",
                    );
                    return None;
                }
            };
            let target = PublishTarget::Queues {
                exchange: Some(e),
                queues,
            };
            Some((target, broker))
        } else if let Some(&q) = self.queue_ids.get(t) {
            let target = PublishTarget::Queues {
                exchange: None,
                queues: vec![q],
            };
            Some((target, self.queues[q.index()].broker))
        } else if let Some(&tp) = self.topic_ids.get(t) {
            Some((PublishTarget::Topic(tp), self.topics[tp.index()].broker))
        } else {
            self.no_such_target(target);
            None
        }
    }

    /// Reports a publish to a name that is no exchange, queue or topic, listing those
    /// that are.
    fn no_such_target(&mut self, target: &Spanned<String>) {
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
            format!("`{}` is no exchange, queue or topic", target.get_ref()),
            format!("BROKER/NAME, one of: {}", known.join(", ")),
        );
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
        let targets = self.consumers_reached(&target);
        self.reach.entry(ctx.endpoint).or_default().extend(targets);
        let partition = match (&target, &s.key) {
            (PublishTarget::Topic(t), Some(_)) => Some(crate::model::routing::kafka_partition(
                routing_key.as_bytes(),
                self.topics[t.index()].partitions,
            )),
            _ => None,
        };
        self.publishes.push(PublishSpec {
            broker,
            target,
            routing_key,
            partition,
            confirms,
            outbox,
            retries,
            retry_backoff: p.retry_backoff,
            confirm_timeout: p.confirm_timeout,
            relay_interval: RELAY_INTERVAL,
        });
        out.push(Step::Publish(PublishId(self.publishes.len() as u32 - 1)));
    }

    /// The handler endpoints of the consumers a publish reaches: those of every queue
    /// it routes to, or every group reading its topic.
    fn consumers_reached(&self, target: &PublishTarget) -> Vec<EndpointId> {
        let mut targets = Vec::new();
        match target {
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
        targets
    }
}
