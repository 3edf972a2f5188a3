//! Latency distributions (`latency = "10ms"` or a `{ dist = ... }` table) and the
//! spec's table of them.

use super::*;

impl Builder {
    pub(super) fn dist(&mut self, d: &Spanned<RawDist>) -> Option<Dist> {
        let table = match d.get_ref() {
            RawDist::Constant(s) => {
                let d = duration::parse(s).map_err(|e| {
                    self.error(span(d), format!("bad duration: {e}"), duration::EXPECTED)
                });
                return d.ok().map(Dist::Constant);
            }
            RawDist::Table(t) => t,
        };
        let kind = table.dist.get_ref().as_str();
        let ok = self.check_dist_fields(table, kind)?;
        let whole = span(d);
        let dist = match kind {
            "constant" => Dist::Constant(self.need(&table.value, "value", kind, &whole)?),
            "uniform" => self.uniform(table, whole)?,
            "exponential" => self.exponential(table, whole)?,
            "normal" => self.normal(table, whole)?,
            "lognormal" => self.lognormal(table, whole)?,
            "pareto" => self.pareto(table, whole)?,
            "empirical" => self.empirical(table, whole)?,
            _ => unreachable!("kinds checked above"),
        };
        ok.then_some(dist)
    }

    pub(super) fn dist_id(&mut self, d: &Spanned<RawDist>) -> Option<DistId> {
        let dist = self.dist(d)?;
        self.dists.push(dist);
        Some(DistId(self.dists.len() as u32 - 1))
    }

    /// Refuses an unknown kind (None) and the fields a kind does not use (false).
    fn check_dist_fields(&mut self, table: &RawDistTable, kind: &str) -> Option<bool> {
        // (field, present) for every field, to reject the ones a kind does not use.
        let fields: [(&str, Option<Range<usize>>); 13] = [
            ("value", table.value.as_ref().map(span)),
            ("min", table.min.as_ref().map(span)),
            ("max", table.max.as_ref().map(span)),
            ("mean", table.mean.as_ref().map(span)),
            ("stddev", table.stddev.as_ref().map(span)),
            ("median", table.median.as_ref().map(span)),
            ("p99", table.p99.as_ref().map(span)),
            ("mu", table.mu.as_ref().map(span)),
            ("sigma", table.sigma.as_ref().map(span)),
            ("scale", table.scale.as_ref().map(span)),
            ("shape", table.shape.as_ref().map(span)),
            ("samples", table.samples.as_ref().map(span)),
            ("bins", table.bins.as_ref().map(span)),
        ];
        let allowed: &[&str] = match kind {
            "constant" => &["value"],
            "uniform" => &["min", "max"],
            "exponential" => &["mean"],
            "normal" => &["mean", "stddev"],
            "lognormal" => &["median", "p99", "mu", "sigma"],
            "pareto" => &["scale", "shape"],
            "empirical" => &["samples", "bins"],
            _ => {
                self.error(
                    span(&table.dist),
                    format!("unknown distribution `{kind}`"),
                    "one of: constant, uniform, exponential, normal, lognormal, pareto, empirical",
                );
                return None;
            }
        };
        let mut ok = true;
        for (field, sp) in &fields {
            if let Some(sp) = sp
                && !allowed.contains(field)
            {
                self.error(
                    sp.clone(),
                    format!("`{field}` does not apply to a {kind} distribution"),
                    format!("only: {}", allowed.join(", ")),
                );
                ok = false;
            }
        }
        Some(ok)
    }

    /// A duration field the distribution `kind` needs.
    fn need(
        &mut self,
        v: &Option<Spanned<String>>,
        field: &str,
        kind: &str,
        whole: &Range<usize>,
    ) -> Option<SimDuration> {
        match v {
            Some(s) => self.duration(s),
            None => {
                self.error(
                    whole.clone(),
                    format!("a {kind} distribution needs `{field}`"),
                    format!("`{field} = \"...\"` (a duration)"),
                );
                None
            }
        }
    }

    fn uniform(&mut self, table: &RawDistTable, whole: Range<usize>) -> Option<Dist> {
        let (min, max) = (
            self.need(&table.min, "min", "uniform", &whole),
            self.need(&table.max, "max", "uniform", &whole),
        );
        let (min, max) = (min?, max?);
        if min > max {
            self.error(
                whole,
                format!("min ({min}) is above max ({max})"),
                "min <= max",
            );
            return None;
        }
        Some(Dist::Uniform { min, max })
    }

    fn exponential(&mut self, table: &RawDistTable, whole: Range<usize>) -> Option<Dist> {
        let mean = self.need(&table.mean, "mean", "exponential", &whole)?;
        if mean.is_zero() {
            self.error(
                whole,
                "an exponential distribution needs a mean above zero",
                "mean > 0",
            );
            return None;
        }
        Some(Dist::Exponential {
            mean_ns: mean.as_nanos() as f64,
        })
    }

    fn normal(&mut self, table: &RawDistTable, whole: Range<usize>) -> Option<Dist> {
        let (mean, sd) = (
            self.need(&table.mean, "mean", "normal", &whole),
            self.need(&table.stddev, "stddev", "normal", &whole),
        );
        let (mean, sd) = (mean?, sd?);
        if mean.is_zero() {
            self.error(
                whole,
                "a normal distribution needs a mean above zero",
                "mean > 0",
            );
            return None;
        }
        Some(Dist::Normal {
            mean_ns: mean.as_nanos() as f64,
            stddev_ns: sd.as_nanos() as f64,
        })
    }

    /// A lognormal by its median and p99, or by `mu` and `sigma`.
    fn lognormal(&mut self, table: &RawDistTable, whole: Range<usize>) -> Option<Dist> {
        match (&table.median, &table.p99, &table.mu, &table.sigma) {
            (Some(m), Some(p), None, None) => {
                let (median, p99) = (self.duration(m)?, self.duration(p)?);
                if median.is_zero() || p99 < median {
                    self.error(
                        whole,
                        "a lognormal needs 0 < median <= p99",
                        "median > 0 and p99 >= median",
                    );
                    return None;
                }
                Some(Dist::lognormal_from_median_p99(median, p99))
            }
            (None, None, Some(mu), Some(sigma)) => {
                let (mu, sigma) = (*mu.get_ref(), *sigma.get_ref());
                if !mu.is_finite() || !sigma.is_finite() || sigma < 0.0 {
                    self.error(
                        whole,
                        "a lognormal needs a finite mu and sigma >= 0",
                        "sigma >= 0",
                    );
                    return None;
                }
                Some(Dist::LogNormal { mu, sigma })
            }
            _ => {
                self.error(
                    whole,
                    "a lognormal distribution is given by `median` and `p99`, or by `mu` and `sigma`",
                    "median = \"800ms\", p99 = \"2s\"  or  mu = -0.2, sigma = 0.4 (of ln seconds)",
                );
                None
            }
        }
    }

    fn pareto(&mut self, table: &RawDistTable, whole: Range<usize>) -> Option<Dist> {
        let scale = self.need(&table.scale, "scale", "pareto", &whole)?;
        let Some(shape) = &table.shape else {
            self.error(
                whole,
                "a pareto distribution needs `shape`",
                "shape = 1.5 (alpha > 0)",
            );
            return None;
        };
        let alpha = *shape.get_ref();
        if !(alpha > 0.0 && alpha.is_finite()) || scale.is_zero() {
            self.error(
                span(shape),
                "a pareto needs shape > 0 and scale > 0",
                "shape > 0, scale > 0",
            );
            return None;
        }
        Some(Dist::Pareto {
            scale_ns: scale.as_nanos() as f64,
            shape: alpha,
        })
    }

    /// Drawn from `samples`, or from weighted `bins`.
    fn empirical(&mut self, table: &RawDistTable, whole: Range<usize>) -> Option<Dist> {
        match (&table.samples, &table.bins) {
            (Some(samples), None) => {
                if samples.get_ref().is_empty() {
                    self.error(span(samples), "no samples", "at least one duration");
                    return None;
                }
                let parsed: Vec<Option<SimDuration>> =
                    samples.get_ref().iter().map(|s| self.duration(s)).collect();
                Some(Dist::Samples(
                    parsed.into_iter().collect::<Option<Vec<_>>>()?,
                ))
            }
            (None, Some(bins)) => self.bins(bins),
            _ => {
                self.error(
                    whole,
                    "an empirical distribution takes `samples` or `bins`, one of the two",
                    "samples = [\"10ms\", \"12ms\"]  or  bins = [{ from = \"0ms\", to = \"10ms\", weight = 3 }]",
                );
                None
            }
        }
    }

    fn bins(&mut self, bins: &Spanned<Vec<Spanned<RawBin>>>) -> Option<Dist> {
        if bins.get_ref().is_empty() {
            self.error(span(bins), "no bins", "at least one { from, to, weight }");
            return None;
        }
        let mut cumulative = Vec::new();
        let mut ranges = Vec::new();
        let mut total = 0.0;
        for bin in bins.get_ref() {
            let bin = bin.get_ref();
            let (from, to) = (self.duration(&bin.from), self.duration(&bin.to));
            let w = *bin.weight.get_ref();
            if !(w >= 0.0 && w.is_finite()) {
                self.error(
                    span(&bin.weight),
                    "a bin weight must be >= 0",
                    "a weight >= 0",
                );
            }
            if let (Some(from), Some(to)) = (from, to) {
                if from > to {
                    self.error(span(&bin.to), "a bin ends before it starts", "from <= to");
                }
                ranges.push((from, to));
            }
            total += w.max(0.0);
            cumulative.push(total);
        }
        if total <= 0.0 {
            self.error(
                span(bins),
                "the bins weigh nothing in all",
                "some weight above zero",
            );
            return None;
        }
        if ranges.len() != cumulative.len() {
            return None;
        }
        Some(Dist::Bins {
            cumulative,
            bins: ranges,
        })
    }
}
