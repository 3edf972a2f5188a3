//! `[policies.NAME]`: presets, timeouts, retry, breaker, bulkhead, rate limit, hedging,
//! protocol and cache, and the policy a call site refers to.

use super::*;
use crate::model::breaker::{BucketStart, CountAt, LateOutcomes, OpenEnd};
use crate::model::policy::{HedgeRules, Pushback};

impl Builder {
    pub(super) fn policies(&mut self, raw: &RawScenario) {
        for (name, p) in &raw.policies {
            self.check_name(name, "policy");
            if name.get_ref() == "none" {
                self.error(
                    span(name),
                    "`none` is the name of the implicit empty policy",
                    "another name",
                );
            }
            let spec = self
                .policy(name.get_ref(), p)
                .unwrap_or_else(|| PolicySpec::none(name.get_ref()));
            self.policy_ids
                .insert(name.get_ref().clone(), PolicyId(self.policies.len() as u32));
            self.policies.push(spec);
        }
        // Calls that name no policy use `default` if the scenario has one, else none.
        self.default_policy = match self.policy_ids.get("default") {
            Some(&id) => id,
            None => {
                self.policies.push(PolicySpec::none("none"));
                PolicyId(self.policies.len() as u32 - 1)
            }
        };
    }

    pub(super) fn policy_ref(&mut self, name: Option<&Spanned<String>>) -> PolicyId {
        let Some(name) = name else {
            return self.default_policy;
        };
        if let Some(&id) = self.policy_ids.get(name.get_ref()) {
            return id;
        }
        let known: Vec<&str> = self.policy_ids.keys().map(String::as_str).collect();
        self.error(
            span(name),
            format!("unknown policy `{}`", name.get_ref()),
            if known.is_empty() {
                "a [policies.NAME] table (this scenario has none)".to_owned()
            } else {
                format!("one of: {}", known.join(", "))
            },
        );
        self.default_policy
    }

    fn policy(&mut self, name: &str, raw: &Spanned<RawPolicy>) -> Option<PolicySpec> {
        let r = raw.get_ref();
        let mut p = self.policy_preset(name, r);
        if let Some(t) = &r.timeout {
            p.try_timeout = self.positive_duration(t, "a timeout");
        }
        if let Some(d) = &r.deadline {
            p.deadline = self.positive_duration(d, "a deadline");
        }
        if let Some(b) = &r.propagate_deadline {
            p.propagate_deadline = *b.get_ref();
        }
        if let Some(f) = &r.fallback {
            p.fallback = self.fallback(f);
        }
        if let Some(retry) = &r.retry {
            let base = p.retry.take();
            p.retry = self.retry(retry, base);
        }
        if let (Some(ps), Some(retry)) = (&r.preset, &mut p.retry)
            && ps.get_ref() == "grpc"
        {
            // gRFC A6: maxAttempts above 5 is treated as 5.
            retry.max_attempts = retry.max_attempts.min(5);
        }
        if let Some(b) = &r.breaker {
            let base = p.breaker.take().unwrap_or_else(BreakerSpec::resilience4j);
            p.breaker = self.breaker(b, base, &mut p);
        }
        if let Some(b) = &r.bulkhead {
            p.bulkhead = self.bulkhead(b, p.bulkhead);
        }
        if let Some(l) = &r.rate_limit
            && let Some(rl) = self.rate_limit(l)
        {
            p.rate_limit = Some(rl);
        }
        if let Some(pr) = &r.protocol {
            p.protocol = self.protocol(pr);
        }
        if let Some(c) = &r.cache
            && let Some(cache) = self.cache(c)
        {
            p.cache = Some(cache);
        }
        if let Some(h) = &r.hedge {
            self.hedge(h, r, &mut p);
        }
        Some(p)
    }

    /// The policy a `preset` starts from (none without one).
    fn policy_preset(&mut self, name: &str, r: &RawPolicy) -> PolicySpec {
        match &r.preset {
            Some(ps) => match PolicySpec::preset(name, ps.get_ref()) {
                Some(p) => p,
                None => {
                    self.error(
                        span(ps),
                        format!("unknown preset `{}`", ps.get_ref()),
                        format!("one of: {}", PRESETS.join(", ")),
                    );
                    PolicySpec::none(name)
                }
            },
            None => PolicySpec::none(name),
        }
    }

    /// `fallback`: "degraded" or an error status.
    fn fallback(&mut self, f: &Spanned<String>) -> Option<Fallback> {
        if f.get_ref() == "degraded" {
            return Some(Fallback::Degraded);
        }
        match Status::from_name(f.get_ref()) {
            Some(st) if !st.is_ok() => Some(Fallback::Status(st)),
            _ => {
                self.error(
                    span(f),
                    format!("`{}` is not a fallback", f.get_ref()),
                    "\"degraded\" (ok, marked degraded) or an error status",
                );
                None
            }
        }
    }

    /// `[bulkhead]`, over the preset's (`base`).
    fn bulkhead(
        &mut self,
        b: &Spanned<RawBulkhead>,
        base: Option<BulkheadSpec>,
    ) -> Option<BulkheadSpec> {
        let bh = b.get_ref();
        let max_concurrent = match (&bh.max_concurrent, base) {
            (Some(m), _) => self.int_u32(m, 1, "max_concurrent", "at least 1"),
            (None, Some(base)) => Some(base.max_concurrent),
            (None, None) => {
                self.error(
                    span(b),
                    "a bulkhead needs `max_concurrent`",
                    "max_concurrent = N",
                );
                None
            }
        };
        let max_wait = match &bh.max_wait {
            Some(w) => self.duration(w),
            None => Some(base.map_or(SimDuration::ZERO, |b| b.max_wait)),
        };
        match (max_concurrent, max_wait) {
            (Some(max_concurrent), Some(max_wait)) => Some(BulkheadSpec {
                max_concurrent,
                max_wait,
            }),
            _ => None,
        }
    }

    /// `[rate_limit]`: a token bucket.
    fn rate_limit(&mut self, l: &Spanned<RawRateLimit>) -> Option<RateLimitSpec> {
        let rl = l.get_ref();
        let rate = match &rl.rate {
            Some(x) => self.positive_f64(x, "the rate"),
            None => {
                self.error(
                    span(l),
                    "a rate limiter needs `rate` (per second)",
                    "rate = 50",
                );
                None
            }
        };
        let burst = match &rl.burst {
            Some(b) => self.positive_f64(b, "the burst"),
            None => rate.map(|r| r.max(1.0)),
        };
        let max_wait = match &rl.max_wait {
            Some(w) => self.duration(w),
            None => Some(SimDuration::ZERO),
        };
        Some(RateLimitSpec {
            rate_per_s: rate?,
            burst: burst?,
            max_wait: max_wait?,
        })
    }

    /// `[cache]`: a read-through cache per key.
    fn cache(&mut self, c: &Spanned<RawCache>) -> Option<crate::model::policy::CacheSpec> {
        let ch = c.get_ref();
        let ttl = self.positive_duration(&ch.ttl, "the cache ttl");
        let change_rate = match &ch.change_rate {
            Some(x) if !(*x.get_ref() >= 0.0 && x.get_ref().is_finite()) => {
                self.error(
                    span(x),
                    format!("change_rate is {}", x.get_ref()),
                    "changes per key per second, >= 0",
                );
                None
            }
            Some(x) => Some(*x.get_ref()),
            None => Some(0.0),
        };
        Some(crate::model::policy::CacheSpec {
            ttl: ttl?,
            change_rate: change_rate?,
        })
    }

    /// `[hedge]`, which replaces retrying (under the `grpc` preset, its retries).
    fn hedge(&mut self, h: &Spanned<RawHedge>, r: &RawPolicy, p: &mut PolicySpec) {
        let hg = h.get_ref();
        // gRPC's service config has a retryPolicy or a hedgingPolicy: under the grpc
        // preset, hedging replaces the preset's retries and keeps its throttle and
        // pushback (gRFC A6: both are shared by retries and hedges).
        let grpc = r.preset.as_ref().is_some_and(|ps| ps.get_ref() == "grpc");
        let preset_retry = if grpc && r.retry.is_none() {
            p.retry.take()
        } else {
            None
        };
        let throttle = match &hg.throttle {
            None => Some(preset_retry.as_ref().and_then(|r| r.throttle)),
            Some(t) => self.throttle(t).map(Some),
        };
        let pushback = hg
            .pushback
            .as_ref()
            .map_or(preset_retry.as_ref().is_some_and(|r| r.pushback), |b| {
                *b.get_ref()
            });
        let follows = self.hedge_rules(hg.follows.as_ref());
        let delay = match &hg.delay {
            Some(d) => self.duration(d),
            None => {
                self.error(span(h), "hedging needs `delay`", "delay = \"50ms\"");
                None
            }
        };
        let max_attempts = match &hg.max_attempts {
            Some(m) => self.int_u32(
                m,
                2,
                "max_attempts",
                "at least 2 (the original and one hedge)",
            ),
            None => Some(2),
        }
        // gRFC A6 "Limits on Retries and Hedges": above 5 is treated as 5.
        .map(|m| if grpc { m.min(5) } else { m });
        let non_fatal = hg
            .non_fatal
            .as_ref()
            .map(|l| self.statuses(l))
            .unwrap_or_default();
        if let (Some(delay), Some(max_attempts), Some(throttle), Some(follows)) =
            (delay, max_attempts, throttle, follows)
        {
            p.hedge = Some(HedgeSpec {
                delay,
                max_attempts,
                non_fatal,
                throttle,
                pushback,
                follows,
            });
        }
        if p.retry.is_some() {
            self.error(
                span(h),
                "a policy cannot both retry and hedge",
                "either [retry] or [hedge] (as in gRPC's service config)",
            );
        }
    }

    fn protocol(&mut self, raw: &Spanned<RawProtocol>) -> Option<ProtocolSpec> {
        let preset = |b: &mut Builder, name: &Spanned<String>| {
            let p = ProtocolSpec::preset(name.get_ref());
            if p.is_none() {
                b.error(
                    span(name),
                    format!("unknown protocol `{}`", name.get_ref()),
                    "\"rest_json\" or \"grpc\" (or a table of your own numbers)",
                );
            }
            p
        };
        let t = match raw.get_ref() {
            RawProtocol::Preset(name) => {
                let named = Spanned::new(span(raw), name.clone());
                return preset(self, &named);
            }
            RawProtocol::Table(t) => t,
        };
        let mut p = match &t.preset {
            Some(name) => preset(self, name)?,
            None => ProtocolSpec::preset("rest_json").expect("a known preset"),
        };
        if let Some(d) = &t.overhead {
            p.overhead = self.duration(d)?;
        }
        if let Some(d) = &t.encode_per_kb {
            p.encode_per_kb = self.duration(d)?;
        }
        if let Some(d) = &t.decode_per_kb {
            p.decode_per_kb = self.duration(d)?;
        }
        match t.connection.as_ref().map(|c| (c, c.get_ref().as_str())) {
            None => {}
            Some((_, "keep_alive")) => p.setup_per_call = None,
            Some((_, "per_call")) => {
                p.setup_per_call = Some(match &t.setup {
                    Some(s) => self.duration(s)?,
                    None => SimDuration::from_micros(1500),
                })
            }
            Some((c, other)) => {
                self.error(
                    span(c),
                    format!("unknown connection `{other}`"),
                    "\"keep_alive\" or \"per_call\"",
                );
                return None;
            }
        }
        if let Some(setup) = &t.setup
            && p.setup_per_call.is_none()
        {
            self.error(
                span(setup),
                "`setup` is paid only with connection = \"per_call\"",
                "connection = \"per_call\"",
            );
        }
        p.pool = self.protocol_pool(t, p.pool)?;
        Some(p)
    }

    /// A protocol's connection pool: HTTP/1.1 (a request per connection) or HTTP/2
    /// (streams multiplexed), over the preset's.
    fn protocol_pool(&mut self, t: &RawProtocolTable, pool: Pool) -> Option<Pool> {
        let count = |b: &mut Builder, v: &Option<Spanned<i64>>, what: &str, default: u32| match v {
            Some(n) => b.int_u32(n, 1, what, "at least 1"),
            None => Some(default),
        };
        let pool_kind = match t.pool.as_ref().map(|x| (x, x.get_ref().as_str())) {
            None => match pool {
                Pool::Http1 { .. } => "http1",
                Pool::Http2 { .. } => "http2",
            },
            Some((_, k @ ("http1" | "http2"))) => k,
            Some((x, other)) => {
                self.error(
                    span(x),
                    format!("unknown pool `{other}`"),
                    "\"http1\" (a request per connection) or \"http2\" (streams multiplexed)",
                );
                return None;
            }
        };
        Some(match (pool_kind, pool) {
            ("http1", Pool::Http1 { max_connections }) => Pool::Http1 {
                max_connections: count(
                    self,
                    &t.max_connections,
                    "max_connections",
                    max_connections,
                )?,
            },
            ("http1", _) => Pool::Http1 {
                max_connections: count(self, &t.max_connections, "max_connections", 10)?,
            },
            (
                _,
                Pool::Http2 {
                    connections,
                    max_streams,
                },
            ) => Pool::Http2 {
                connections: count(self, &t.connections, "connections", connections)?,
                max_streams: count(self, &t.max_streams, "max_streams", max_streams)?,
            },
            _ => Pool::Http2 {
                connections: count(self, &t.connections, "connections", 1)?,
                max_streams: count(self, &t.max_streams, "max_streams", 100)?,
            },
        })
    }

    fn retry(&mut self, raw: &Spanned<RawRetry>, base: Option<RetrySpec>) -> Option<RetrySpec> {
        let r = raw.get_ref();
        let max_attempts = match (&r.max_attempts, &r.retries, &base) {
            (Some(_), Some(rt), _) => {
                self.error(
                    span(rt),
                    "both `max_attempts` and `retries`",
                    "one of them: max_attempts counts the original, retries does not",
                );
                None
            }
            (Some(m), None, _) => {
                self.int_u32(m, 1, "max_attempts", "at least 1 (the original attempt)")
            }
            (None, Some(rt), _) => self.int_u32(rt, 0, "retries", "0 or more").map(|n| n + 1),
            (None, None, Some(b)) => Some(b.max_attempts),
            (None, None, None) => {
                self.error(
                    span(raw),
                    "a retry policy needs `max_attempts` or `retries`",
                    "max_attempts = 3 (the original included) or retries = 2",
                );
                None
            }
        };
        let backoff = self.backoff(r, base.as_ref());
        let retry_on = match &r.on {
            Some(list) => self.statuses(list),
            None => base
                .as_ref()
                .map_or(StatusSet::of(&[Status::Unavailable]), |b| b.retry_on),
        };
        let pushback = r
            .pushback
            .as_ref()
            .map_or(base.as_ref().is_some_and(|b| b.pushback), |b| *b.get_ref());
        let budget = match &r.budget {
            None => base.as_ref().and_then(|b| b.budget.clone()),
            Some(b) => self.retry_budget(b)?,
        };
        let throttle = match &r.throttle {
            None => base.as_ref().and_then(|b| b.throttle),
            Some(t) => Some(self.throttle(t)?),
        };
        let pushback_any_status = r
            .pushback_any_status
            .as_ref()
            .map_or(base.as_ref().is_some_and(|b| b.pushback_any_status), |b| {
                *b.get_ref()
            });
        Some(RetrySpec {
            max_attempts: max_attempts?,
            backoff,
            retry_on,
            pushback,
            pushback_any_status,
            budget,
            throttle,
        })
    }

    /// A retry's `backoff`, `base`, `multiplier`, `cap` and `jitter`, over the preset's.
    fn backoff(&mut self, r: &RawRetry, base: Option<&RetrySpec>) -> Backoff {
        let mut backoff = base.map_or(
            Backoff {
                kind: BackoffKind::Fixed,
                base: SimDuration::ZERO,
                multiplier: 2.0,
                cap: crate::model::backoff::UNCAPPED,
                jitter: Jitter::None,
            },
            |b| b.backoff,
        );
        if let Some(k) = &r.backoff {
            backoff.kind = match k.get_ref().as_str() {
                "fixed" => BackoffKind::Fixed,
                "linear" => BackoffKind::Linear,
                "exponential" => BackoffKind::Exponential,
                other => {
                    self.error(
                        span(k),
                        format!("unknown backoff `{other}`"),
                        "fixed, linear or exponential",
                    );
                    backoff.kind
                }
            };
        }
        if let Some(b) = &r.base {
            backoff.base = self.duration(b).unwrap_or(backoff.base);
        }
        if let Some(m) = &r.multiplier {
            backoff.multiplier = self
                .positive_f64(m, "the multiplier")
                .unwrap_or(backoff.multiplier);
        }
        if let Some(c) = &r.cap {
            backoff.cap = self.duration(c).unwrap_or(backoff.cap);
        }
        if let Some(j) = &r.jitter {
            let range = r.jitter_range.as_ref();
            backoff.jitter = match j.get_ref().as_str() {
                "none" => Jitter::None,
                "full" => Jitter::Full,
                "equal" => Jitter::Equal,
                "decorrelated" => Jitter::Decorrelated,
                "proportional" => match (range.map(|r| r.get_ref().as_slice()), backoff.jitter) {
                    (Some(&[low, high]), _) if (-1.0..=high).contains(&low) && high.is_finite() => {
                        Jitter::Proportional { low, high }
                    }
                    (None, Jitter::Proportional { low, high }) => {
                        Jitter::Proportional { low, high }
                    }
                    _ => {
                        self.error(span(j), "proportional jitter needs `jitter_range = [low, high]`", "e.g. [0, 0.2] (axios-retry), [-0.2, 0.2] (gRPC), [-0.5, 0.5] (resilience4j); -1 <= low <= high");
                        backoff.jitter
                    }
                },
                other => {
                    self.error(
                        span(j),
                        format!("unknown jitter `{other}`"),
                        "none, full, equal, decorrelated or proportional",
                    );
                    backoff.jitter
                }
            };
        }
        backoff
    }

    /// A retry `budget`: a rate (Finagle) or a concurrency (Envoy); None when it is
    /// invalid in a way that voids the retry policy.
    fn retry_budget(&mut self, b: &Spanned<RawBudget>) -> Option<Option<RetryBudget>> {
        let bg = b.get_ref();
        let percent = self.percent(&bg.percent, "the budget percentage")?;
        Some(match (&bg.min_concurrency, &bg.min_per_s, &bg.ttl) {
            (Some(m), None, None) => Some(RetryBudget::Concurrency {
                percent,
                min: self.int_u32(m, 0, "min_concurrency", "0 or more")?,
            }),
            (None, min, ttl) => Some(RetryBudget::Rate {
                percent,
                min_per_s: match min {
                    None => 0.0,
                    Some(m) => {
                        let x = *m.get_ref();
                        if !(x >= 0.0 && x.is_finite()) {
                            self.error(
                                span(m),
                                format!("min_per_s is {x}"),
                                "a number of retries per second >= 0",
                            );
                            return None;
                        }
                        x
                    }
                },
                ttl: match ttl {
                    Some(t) => self.positive_duration(t, "the budget ttl")?,
                    None => SimDuration::from_secs(10),
                },
            }),
            _ => {
                self.error(span(b), "a budget is either a rate (min_per_s, ttl) or a concurrency (min_concurrency)", "Finagle: { percent = 20, min_per_s = 10, ttl = \"10s\" }; Envoy: { percent = 20, min_concurrency = 3 }");
                None
            }
        })
    }

    fn throttle(&mut self, t: &Spanned<RawThrottle>) -> Option<Throttle> {
        let th = t.get_ref();
        let max_tokens = self.positive_f64(&th.max_tokens, "max_tokens");
        let token_ratio = self.positive_f64(&th.token_ratio, "token_ratio");
        Some(Throttle {
            max_tokens: max_tokens?,
            token_ratio: token_ratio?,
        })
    }

    /// A `fail` step's `retry_after`: a duration (0 retries at once), or a negative one
    /// ("-1ms"), gRPC's pushback that says not to retry.
    pub(super) fn pushback(&mut self, raw: &Spanned<String>) -> Option<Pushback> {
        let text = raw.get_ref().trim();
        match text.strip_prefix('-') {
            Some(rest) => match duration::parse(rest) {
                Ok(d) if !d.is_zero() => Some(Pushback::Stop),
                _ => {
                    self.error(
                        span(raw),
                        format!("`{text}` is not a pushback"),
                        "a duration (\"0s\": retry at once) or a negative one (\"-1ms\": do not retry)",
                    );
                    None
                }
            },
            None => self.duration(raw).map(Pushback::After),
        }
    }

    fn breaker(
        &mut self,
        raw: &Spanned<RawBreaker>,
        mut b: BreakerSpec,
        policy: &mut PolicySpec,
    ) -> Option<BreakerSpec> {
        let r = raw.get_ref();
        self.breaker_window(raw, &mut b)?;
        self.breaker_thresholds(r, &mut b)?;
        if let Some(c) = &r.count_rejections {
            b.count_rejections = *c.get_ref();
        }
        self.breaker_open_state(r, &mut b)?;
        self.breaker_library_choices(r, &mut b);
        if let Some(list) = &r.failure_on {
            policy.failure.statuses = self.statuses(list);
        }
        if let Some(t) = &r.timeouts_are_failures {
            policy.failure.timeouts = *t.get_ref();
        }
        if let Some(t) = &r.rejections_are_failures {
            policy.failure.rejections = *t.get_ref();
        }
        Some(b)
    }

    /// The breaker's `window`: the last `size` calls, or the last `duration` in
    /// `buckets` (unwritten parts keep the preset's).
    fn breaker_window(&mut self, raw: &Spanned<RawBreaker>, b: &mut BreakerSpec) -> Option<()> {
        let r = raw.get_ref();
        // `size` alone means a count window; `duration` or `buckets` alone a time window.
        let implied = match (&r.size, r.duration.is_some() || r.buckets.is_some()) {
            (Some(_), _) => "count",
            (None, true) => "time",
            (None, false) => "",
        };
        let window = match &r.window {
            Some(w) => Some((span(w), w.get_ref().as_str())),
            None if !implied.is_empty() => Some((span(raw), implied)),
            None => None,
        };
        match window {
            None => {}
            Some((_, "count")) => {
                let calls = match &r.size {
                    Some(n) => self.bounded(
                        n,
                        1,
                        bounds::MAX_BREAKER_WINDOW,
                        "the window size",
                        "at least 1 call",
                    )?,
                    None => match b.window {
                        BreakerWindow::Count { calls } => calls,
                        BreakerWindow::Time { .. } => 100,
                    },
                };
                b.window = BreakerWindow::Count { calls };
            }
            Some((_, "time")) => {
                // Unwritten parts keep the preset's time window (Polly: 30 s in 10).
                let (base_buckets, base_total) = match b.window {
                    BreakerWindow::Time { buckets, bucket } => (
                        buckets,
                        SimDuration::from_nanos(bucket.as_nanos() * u64::from(buckets)),
                    ),
                    BreakerWindow::Count { .. } => (10, SimDuration::from_secs(10)),
                };
                let buckets = match &r.buckets {
                    Some(n) => {
                        self.bounded(n, 1, bounds::MAX_BREAKER_BUCKETS, "buckets", "at least 1")?
                    }
                    None => base_buckets,
                };
                let total = match &r.duration {
                    Some(d) => self.positive_duration(d, "the window duration")?,
                    None => base_total,
                };
                b.window = BreakerWindow::Time {
                    buckets,
                    bucket: SimDuration::from_nanos((total.as_nanos() / u64::from(buckets)).max(1)),
                };
            }
            Some((w, other)) => {
                self.error(
                    w,
                    format!("unknown breaker window `{other}`"),
                    "\"count\" (the last N calls) or \"time\" (the last `duration`)",
                );
            }
        }
        Some(())
    }

    /// How long the breaker stays open (`open_for`, growing by `open_growth` up to
    /// `open_max`) and how it half-opens.
    fn breaker_open_state(&mut self, r: &RawBreaker, b: &mut BreakerSpec) -> Option<()> {
        if let Some(o) = &r.open_for {
            b.open_for = self.positive_duration(o, "open_for")?;
            b.open_max = b.open_max.max(b.open_for);
        }
        if let Some(g) = &r.open_growth {
            let x = *g.get_ref();
            if !(x >= 1.0 && x.is_finite()) {
                self.error(
                    span(g),
                    format!("open_growth is {x}"),
                    "1 (fixed) or more (growing)",
                );
                return None;
            }
            b.open_growth = x;
            if r.open_max.is_none() && x > 1.0 {
                b.open_max = crate::model::backoff::UNCAPPED;
            }
        }
        if let Some(m) = &r.open_max {
            b.open_max = self.positive_duration(m, "open_max")?;
            if b.open_max < b.open_for {
                self.error(
                    span(m),
                    "open_max is shorter than open_for",
                    "open_max >= open_for",
                );
            }
        }
        if let Some(n) = &r.half_open_probes {
            b.half_open_probes = self.int_u32(n, 1, "half_open_probes", "at least 1")?;
        }
        if let Some(h) = &r.half_open {
            b.transition = match h.get_ref().as_str() {
                "lazy" => Transition::Lazy,
                "timer" => Transition::Timer,
                other => {
                    self.error(
                        span(h),
                        format!("unknown half_open `{other}`"),
                        "\"lazy\" (on the next call: resilience4j, Polly) or \"timer\" (opossum)",
                    );
                    b.transition
                }
            };
        }
        if let Some(x) = &r.reset_on_transition {
            b.reset_on_transition = *x.get_ref();
        }
        Some(())
    }

    /// The choices that tell the libraries apart: when a call is counted, late
    /// outcomes, when buckets start, whether the end of the open period is inclusive.
    fn breaker_library_choices(&mut self, r: &RawBreaker, b: &mut BreakerSpec) {
        let choose =
            |b: &mut Builder, raw: &Option<Spanned<String>>, options: &[&str], expected: &str| {
                let raw = raw.as_ref()?;
                let found = options.iter().position(|o| *o == raw.get_ref().as_str());
                if found.is_none() {
                    b.error(
                        span(raw),
                        format!("unknown value `{}`", raw.get_ref()),
                        expected,
                    );
                }
                found
            };
        if let Some(i) = choose(
            self,
            &r.count_at,
            &["outcome", "fire"],
            "\"outcome\" (resilience4j, Polly) or \"fire\" (opossum: every call when it starts, refused ones too)",
        ) {
            b.count_at = [CountAt::Outcome, CountAt::Fire][i];
        }
        if let Some(i) = choose(
            self,
            &r.late_outcomes,
            &["current", "ignore"],
            "\"current\" (the libraries: recorded in the state the breaker is in) or \"ignore\" (only outcomes of calls admitted in the current state count)",
        ) {
            b.late_outcomes = [LateOutcomes::Current, LateOutcomes::Ignore][i];
        }
        if let Some(i) = choose(
            self,
            &r.buckets_start,
            &["clock", "first_outcome"],
            "\"clock\" (resilience4j, opossum) or \"first_outcome\" (Polly)",
        ) {
            b.bucket_start = [BucketStart::Clock, BucketStart::FirstOutcome][i];
        }
        if let Some(i) = choose(
            self,
            &r.open_end,
            &["inclusive", "exclusive"],
            "\"inclusive\" (Polly: a call at the end is the probe) or \"exclusive\" (resilience4j: strictly after)",
        ) {
            b.open_end = [OpenEnd::Inclusive, OpenEnd::Exclusive][i];
        }
        if b.count_at == CountAt::Fire && matches!(b.window, BreakerWindow::Count { .. }) {
            match &r.count_at {
                Some(c) => self.error(
                    span(c),
                    "counting calls when fired needs a time window",
                    "window = \"time\", or count_at = \"outcome\"",
                ),
                // opossum's breaker given a count window: its fires are counted as they
                // end, refused ones too.
                None => {
                    b.count_at = CountAt::Outcome;
                    b.count_rejections = true;
                }
            }
        }
    }

    /// A hedge's `follows`: gRFC A6's rules (default) or grpc-java's.
    fn hedge_rules(&mut self, follows: Option<&Spanned<String>>) -> Option<HedgeRules> {
        match follows.map(|f| (f, f.get_ref().as_str())) {
            None | Some((_, "a6")) => Some(HedgeRules::A6),
            Some((_, "grpc-java")) => Some(HedgeRules::GrpcJava),
            Some((f, other)) => {
                self.error(
                span(f),
                format!("unknown hedging rules `{other}`"),
                "\"a6\" (gRFC A6: the next hedge at once after a non-fatal failure) or \"grpc-java\"",
            );
                None
            }
        }
    }

    /// When the breaker opens: the failure rate (compared with `>` or `>=`), slow calls,
    /// the minimum number of calls, and when the rate is evaluated.
    fn breaker_thresholds(&mut self, r: &RawBreaker, b: &mut BreakerSpec) -> Option<()> {
        if let Some(x) = &r.failure_rate {
            b.failure_rate = self.percent(x, "failure_rate")?;
        }
        if let Some(c) = &r.compare {
            b.compare = match c.get_ref().as_str() {
                ">" => Compare::Greater,
                ">=" => Compare::GreaterOrEqual,
                other => {
                    self.error(
                        span(c),
                        format!("unknown comparison `{other}`"),
                        "\">\" (opossum) or \">=\" (resilience4j, Polly)",
                    );
                    b.compare
                }
            };
        }
        match (&r.slow_call_duration, &r.slow_call_rate) {
            (None, None) => {}
            (d, rate) => {
                let duration = match d {
                    Some(d) => self.positive_duration(d, "slow_call_duration")?,
                    None => b
                        .slow_call
                        .map_or(SimDuration::from_secs(60), |s| s.duration),
                };
                let rate = match rate {
                    Some(x) => self.percent(x, "slow_call_rate")?,
                    None => b.slow_call.map_or(1.0, |s| s.rate),
                };
                b.slow_call = Some(SlowCall { duration, rate });
            }
        }
        if let Some(m) = &r.minimum_calls {
            b.minimum_calls = self.int_u32(m, 0, "minimum_calls", "0 or more")?;
        }
        if let Some(e) = &r.evaluate {
            b.evaluate = match e.get_ref().as_str() {
                "every_call" => Evaluate::EveryCall,
                "on_failure" => Evaluate::OnFailure,
                other => {
                    self.error(
                        span(e),
                        format!("unknown evaluate `{other}`"),
                        "\"every_call\" (resilience4j) or \"on_failure\" (opossum, Polly)",
                    );
                    b.evaluate
                }
            };
        }
        Some(())
    }
}
