//! How much one claim may take: at most its limit, and per webhook and per tenant no more
//! than their free in-flight slots on the claiming node. Both backends apply these rules to
//! the due deliveries they read.

use std::collections::{HashMap, HashSet};

use uuid::Uuid;

/// A node's room for new attempts when it claims.
#[derive(Debug, Clone, Default)]
pub struct Capacity {
    /// Most deliveries claimed in this claim.
    pub limit: usize,
    /// Most deliveries one webhook may have in flight on this node.
    pub per_webhook_limit: usize,
    /// This node's deliveries in flight, per webhook.
    pub in_flight: HashMap<Uuid, usize>,
    /// Most deliveries of one tenant in flight on this node.
    pub per_tenant_limit: usize,
    /// This node's deliveries in flight, per tenant.
    pub in_flight_per_tenant: HashMap<String, usize>,
}

/// The two numbers [`Capacity::per_webhook_quota`] divides and caps by, for a backend that
/// does the division in SQL (counting the ready webhooks in the claim statement itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaBounds {
    /// Due deliveries one claim reads in all.
    pub reads: usize,
    /// The most one webhook gives.
    pub most: usize,
}

impl Capacity {
    /// Picks, in order, the candidates this node may claim: at most `limit`, and per
    /// webhook and per tenant no more than their free in-flight slots. A candidate over a
    /// limit is passed over, not waited for, so the others behind it are still taken.
    /// While several webhooks of one tenant have due work, each may hold at most an equal
    /// part (rounded up) of the tenant's slots: an endpoint that never answers would otherwise hold them
    /// all until its timeouts and starve its tenant's other webhooks.
    /// `owner` names a candidate's webhook and tenant.
    pub fn within_limits<C>(
        &self,
        candidates: Vec<C>,
        owner: impl Fn(&C) -> (Uuid, &str),
    ) -> Vec<C> {
        let webhooks_per_tenant = webhooks_per_tenant(&candidates, &owner);
        let mut taken: HashMap<Uuid, usize> = HashMap::new();
        let mut taken_by_tenant: HashMap<String, usize> = HashMap::new();
        let mut chosen = Vec::with_capacity(candidates.len().min(self.limit));
        for candidate in candidates {
            if chosen.len() >= self.limit {
                break;
            }
            let (webhook, tenant) = owner(&candidate);
            let busy = self.in_flight.get(&webhook).copied().unwrap_or(0);
            let count = taken.entry(webhook).or_insert(0);
            let webhook_limit = match webhooks_per_tenant.get(tenant) {
                // Rounded up, so that the parts add up to the tenant's whole limit.
                Some(&sharing) if sharing > 1 => self
                    .per_webhook_limit
                    .min(self.per_tenant_limit.div_ceil(sharing).max(1)),
                _ => self.per_webhook_limit,
            };
            if busy + *count >= webhook_limit {
                continue;
            }
            let tenant_busy = self.in_flight_per_tenant.get(tenant).copied().unwrap_or(0);
            let tenant_taken = taken_by_tenant.get(tenant).copied().unwrap_or(0);
            if tenant_busy + tenant_taken >= self.per_tenant_limit {
                continue;
            }
            *count += 1;
            match taken_by_tenant.get_mut(tenant) {
                Some(taken) => *taken += 1,
                None => {
                    taken_by_tenant.insert(tenant.to_string(), 1);
                }
            }
            chosen.push(candidate);
        }
        chosen
    }

    /// The webhooks with no free slot on this node.
    pub fn saturated_webhooks(&self) -> Vec<String> {
        self.in_flight
            .iter()
            .filter(|(_, count)| **count >= self.per_webhook_limit)
            .map(|(id, _)| id.to_string())
            .collect()
    }

    /// The tenants with no free slot on this node: their webhooks are left out of the claim,
    /// so that it reads only work it may take.
    pub fn saturated_tenants(&self) -> Vec<&str> {
        self.in_flight_per_tenant
            .iter()
            .filter(|(_, count)| **count >= self.per_tenant_limit)
            .map(|(tenant, _)| tenant.as_str())
            .collect()
    }

    /// Of the webhooks with queued deliveries (id, first due time, tenant), those with one
    /// due by `now_ms` and room under their own and their tenant's in-flight limits.
    pub fn webhooks_ready(&self, queued: Vec<(String, i64, String)>, now_ms: i64) -> Vec<String> {
        let saturated = self.saturated_tenants();
        queued
            .into_iter()
            .filter(|(id, first_due, tenant)| {
                let busy = Uuid::parse_str(id)
                    .ok()
                    .and_then(|id| self.in_flight.get(&id).copied())
                    .unwrap_or(0);
                *first_due <= now_ms
                    && busy < self.per_webhook_limit
                    && !saturated.contains(&tenant.as_str())
            })
            .map(|(id, _, _)| id)
            .collect()
    }

    /// How many due deliveries a claim reads per ready webhook: each webhook's whole share
    /// when few are ready, fewer as more are (at least one each), so a claim reads about
    /// four times what it may take however many webhooks have work.
    pub fn per_webhook_quota(&self, ready_webhooks: usize) -> usize {
        let QuotaBounds { reads, most } = self.quota_bounds();
        reads.div_ceil(ready_webhooks.max(1)).clamp(1, most)
    }

    pub fn quota_bounds(&self) -> QuotaBounds {
        QuotaBounds {
            reads: self.limit * 4,
            most: self.per_webhook_limit.min(self.limit).max(1),
        }
    }
}

/// How many distinct webhooks each tenant has among the candidates.
fn webhooks_per_tenant<C>(
    candidates: &[C],
    owner: &impl Fn(&C) -> (Uuid, &str),
) -> HashMap<String, usize> {
    let mut seen: HashSet<Uuid> = HashSet::new();
    let mut counts: HashMap<String, usize> = HashMap::new();
    for candidate in candidates {
        let (webhook, tenant) = owner(candidate);
        if seen.insert(webhook) {
            match counts.get_mut(tenant) {
                Some(count) => *count += 1,
                None => {
                    counts.insert(tenant.to_string(), 1);
                }
            }
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capacity(limit: usize, per_webhook_limit: usize, busy: &[(Uuid, usize)]) -> Capacity {
        Capacity {
            limit,
            per_webhook_limit,
            in_flight: busy.iter().copied().collect(),
            per_tenant_limit: 128,
            in_flight_per_tenant: HashMap::new(),
        }
    }

    #[test]
    fn a_claim_gives_no_tenant_more_than_its_free_share_and_takes_the_others_work() {
        let (dead_a, dead_b, live) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let mut capacity = capacity(128, 128, &[(dead_a, 2)]);
        capacity.per_tenant_limit = 3;
        capacity.in_flight_per_tenant = [("acme".to_string(), 2)].into();
        // acme's two webhooks come first in due order; globex's work is behind them.
        let mut candidates: Vec<(i64, Uuid, &str)> = (1..=6)
            .map(|id| (id, if id % 2 == 0 { dead_a } else { dead_b }, "acme"))
            .collect();
        candidates.extend((7..=9).map(|id| (id, live, "globex")));
        let claimed: Vec<i64> = capacity
            .within_limits(candidates, |(_, webhook, tenant)| (*webhook, tenant))
            .iter()
            .map(|(id, _, _)| *id)
            .collect();
        assert_eq!(claimed, vec![1, 7, 8, 9]);
    }

    #[test]
    fn webhooks_of_one_tenant_with_due_work_share_its_slots() {
        let (black_hole, healthy) = (Uuid::now_v7(), Uuid::now_v7());
        let mut shared = capacity(128, 128, &[(black_hole, 60)]);
        shared.per_tenant_limit = 128;
        shared.in_flight_per_tenant = [("acme".to_string(), 60)].into();
        // The black hole's work comes first in due order, the healthy webhook's behind it.
        let candidates: Vec<(i64, Uuid)> = (0..100)
            .map(|id| (id, black_hole))
            .chain((100..200).map(|id| (id, healthy)))
            .collect();
        let claimed = shared.within_limits(candidates, |(_, webhook)| (*webhook, "acme"));
        let of = |webhook| claimed.iter().filter(|(_, w)| *w == webhook).count();
        assert_eq!(
            of(black_hole),
            4,
            "up to half of acme's 128, counting its 60 in flight"
        );
        assert_eq!(of(healthy), 64);
        // Alone, a webhook may use its own whole limit.
        let alone: Vec<(i64, Uuid)> = (0..100).map(|id| (id, black_hole)).collect();
        let claimed = shared.within_limits(alone, |(_, webhook)| (*webhook, "acme"));
        assert_eq!(claimed.len(), 68);
        // Parts are rounded up: two webhooks sharing 3 slots can still fill all three.
        let (one, two) = (Uuid::now_v7(), Uuid::now_v7());
        let mut small = capacity(128, 128, &[]);
        small.per_tenant_limit = 3;
        let candidates: Vec<(i64, Uuid)> = (0..4)
            .map(|id| (id, one))
            .chain((4..8).map(|id| (id, two)))
            .collect();
        let claimed = small.within_limits(candidates, |(_, webhook)| (*webhook, "acme"));
        assert_eq!(claimed.len(), 3);
    }

    #[test]
    fn ready_webhooks_have_due_work_and_room() {
        let (full, partly, idle, later) = (
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
        );
        let saturated = Uuid::now_v7();
        let mut capacity = capacity(128, 4, &[(full, 4), (partly, 3)]);
        capacity.per_tenant_limit = 5;
        capacity.in_flight_per_tenant = [("acme".to_string(), 7), ("globex".to_string(), 5)].into();
        let queued = vec![
            (full.to_string(), 10, "acme".to_string()),
            (partly.to_string(), 10, "initech".to_string()),
            (idle.to_string(), 1_000, "initech".to_string()),
            (later.to_string(), 1_001, "initech".to_string()),
            (saturated.to_string(), 10, "globex".to_string()),
        ];
        assert_eq!(
            capacity.webhooks_ready(queued, 1_000),
            vec![partly.to_string(), idle.to_string()]
        );
        assert_eq!(capacity.saturated_webhooks(), vec![full.to_string()]);
    }

    #[test]
    fn quota_shares_four_times_the_claim_between_ready_webhooks() {
        // Few webhooks: each may fill its in-flight limit (bounded by the claim).
        assert_eq!(capacity(128, 128, &[]).per_webhook_quota(1), 128);
        assert_eq!(capacity(128, 32, &[]).per_webhook_quota(2), 32);
        assert_eq!(capacity(10, 128, &[]).per_webhook_quota(1), 10);
        // Many webhooks: a share each, never less than one.
        assert_eq!(capacity(128, 128, &[]).per_webhook_quota(64), 8);
        assert_eq!(capacity(128, 128, &[]).per_webhook_quota(10_000), 1);
        // A claim with no room reads nothing more than one row per webhook.
        assert_eq!(capacity(0, 128, &[]).per_webhook_quota(3), 1);
    }
}
