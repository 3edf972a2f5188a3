//! `[network]`: default latency and loss, per-link overrides, and the links and call
//! edges the services' calls create.

use super::*;

impl Builder {
    pub(super) fn network(&mut self, n: &RawNetwork) {
        self.default_latency = match &n.latency {
            Some(l) => self.dist(l),
            None => Some(Dist::Constant(SimDuration::ZERO)),
        };
        self.default_loss = n
            .loss
            .as_ref()
            .and_then(|l| self.probability(l, "the loss"))
            .unwrap_or(0.0);
        for link in &n.links {
            let l = link.get_ref();
            let key = (l.from.get_ref().clone(), l.to.get_ref().clone());
            let latency = l.latency.as_ref().and_then(|d| self.dist(d));
            let loss = l
                .loss
                .as_ref()
                .and_then(|p| self.probability(p, "the loss"));
            if self.link_overrides.contains_key(&key) {
                self.error(
                    span(link),
                    format!("a second link from `{}` to `{}`", key.0, key.1),
                    "one [[network.links]] entry per (from, to)",
                );
                continue;
            }
            self.link_overrides.insert(
                key,
                LinkOverride {
                    latency,
                    loss,
                    span: span(link),
                    used: false,
                },
            );
        }
    }

    fn link(&mut self, caller: &str, service: ServiceId) -> LinkId {
        let key = (caller.to_owned(), service);
        if let Some(&id) = self.link_ids.get(&key) {
            return id;
        }
        let service_name = self.services[service.index()].name.clone();
        let over = self
            .link_overrides
            .get_mut(&(caller.to_owned(), service_name.clone()));
        let (mut latency, mut loss) = (
            self.default_latency
                .clone()
                .unwrap_or(Dist::Constant(SimDuration::ZERO)),
            self.default_loss,
        );
        if let Some(o) = over {
            o.used = true;
            if let Some(l) = &o.latency {
                latency = l.clone();
            }
            if let Some(p) = o.loss {
                loss = p;
            }
        }
        self.links.push(LinkSpec {
            name: format!("{caller}->{service_name}"),
            latency,
            loss,
        });
        let id = LinkId(self.links.len() as u32 - 1);
        self.link_ids.insert(key, id);
        id
    }

    /// The edge from `caller` to `target`, whose calls all use `policy` (the span is
    /// the call site's, to point at a conflict).
    pub(super) fn edge(
        &mut self,
        caller: &str,
        target: EndpointId,
        policy: PolicyId,
        at: Range<usize>,
    ) -> EdgeId {
        let key = (caller.to_owned(), target);
        if let Some(&id) = self.edge_ids.get(&key) {
            let had = self.edges[id.index()].policy;
            if had != policy {
                let (had, now) = (
                    &self.policies[had.index()].name,
                    &self.policies[policy.index()].name,
                );
                let message = format!(
                    "`{caller}` calls `{}` with policy `{now}` here and `{had}` elsewhere",
                    self.endpoints[target.index()].name
                );
                self.error(at, message, "one policy per caller and endpoint (it owns the breaker, bulkhead and budgets)");
            }
            return id;
        }
        let service = self.endpoints[target.index()].service;
        let link = self.link(caller, service);
        self.edges.push(EdgeSpec {
            name: format!("{caller}->{}", self.endpoints[target.index()].name),
            target,
            link,
            policy,
        });
        let id = EdgeId(self.edges.len() as u32 - 1);
        self.edge_policy_span.insert(id, at);
        self.edge_ids.insert(key, id);
        id
    }

    pub(super) fn check_link_overrides_used(&mut self) {
        let unused: Vec<(String, String, Range<usize>)> = self
            .link_overrides
            .iter()
            .filter(|(_, o)| !o.used)
            .map(|((f, t), o)| (f.clone(), t.clone(), o.span.clone()))
            .collect();
        for (from, to, sp) in unused {
            self.error(
                sp,
                format!("no call goes from `{from}` to `{to}`, so this link would never be used"),
                "`from` a service or workload that calls the service `to`",
            );
        }
    }
}
