//! Which webhooks an event goes to: the fan-out of new events (every active webhook of the
//! tenant with a pattern matching the type) and the targets of a manual retry. Both backends
//! apply these rules to the rows they read.

use std::collections::HashMap;

use super::event_type::any_pattern_matches;

/// An event waiting to be fanned out.
#[derive(Debug, Clone)]
pub struct PendingEvent {
    pub seq: i64,
    pub tenant: String,
    pub event_type: String,
}

/// What fanning out decides for a batch of pending events: a delivery for each active
/// webhook of the event's tenant with a pattern matching its type; an event with at least
/// one is `processing`, the others are `skipped`. `W` is how the backend's deliveries name
/// their webhook.
#[derive(Debug, PartialEq)]
pub struct FanOutPlan<W> {
    /// (event seq, webhook)
    pub deliveries: Vec<(i64, W)>,
    pub processing: Vec<i64>,
    pub skipped: Vec<i64>,
}

impl<W> Default for FanOutPlan<W> {
    fn default() -> Self {
        FanOutPlan {
            deliveries: Vec::new(),
            processing: Vec::new(),
            skipped: Vec::new(),
        }
    }
}

impl<W> FanOutPlan<W> {
    /// How many events the plan fans out.
    pub fn events(&self) -> usize {
        self.processing.len() + self.skipped.len()
    }
}

/// Plans the fan-out of `pending` to `webhooks`: (tenant, webhook, event type patterns as a
/// JSON array), the active webhooks of the pending events' tenants.
pub fn plan_fan_out<W: Clone>(
    pending: &[PendingEvent],
    webhooks: Vec<(String, W, String)>,
) -> FanOutPlan<W> {
    let mut subscribers: HashMap<String, Vec<(W, Vec<String>)>> = HashMap::new();
    for (tenant, id, patterns) in webhooks {
        let patterns: Vec<String> = serde_json::from_str(&patterns).unwrap_or_default();
        subscribers.entry(tenant).or_default().push((id, patterns));
    }
    let mut plan = FanOutPlan::default();
    for event in pending {
        let before = plan.deliveries.len();
        for (webhook_id, patterns) in subscribers.get(&event.tenant).into_iter().flatten() {
            if any_pattern_matches(patterns, &event.event_type) {
                plan.deliveries.push((event.seq, webhook_id.clone()));
            }
        }
        if plan.deliveries.len() > before {
            plan.processing.push(event.seq);
        } else {
            plan.skipped.push(event.seq);
        }
    }
    plan
}

/// A webhook as a manual retry sees it.
pub struct RetryCandidate<'a, K> {
    /// How the backend names the webhook.
    pub key: K,
    pub is_active: bool,
    pub event_types: &'a [String],
}

/// Which webhooks a manual retry opens a new cycle for.
#[derive(Debug, PartialEq, Eq)]
pub enum RetryTargets<K> {
    Webhooks(Vec<K>),
    /// The one webhook asked for does not exist (for this tenant).
    NotFound,
    /// The one webhook asked for is inactive.
    Inactive,
}

/// The targets of a retry of an event of `event_type`: the one webhook asked for (`one`,
/// then `webhooks` holds it or nothing) if it is active, else every active webhook of the
/// tenant subscribed to the type.
pub fn retry_targets<K>(
    webhooks: Vec<RetryCandidate<'_, K>>,
    one: bool,
    event_type: &str,
) -> RetryTargets<K> {
    if one {
        return match webhooks.into_iter().next() {
            None => RetryTargets::NotFound,
            Some(w) if !w.is_active => RetryTargets::Inactive,
            Some(w) => RetryTargets::Webhooks(vec![w.key]),
        };
    }
    RetryTargets::Webhooks(
        webhooks
            .into_iter()
            .filter(|w| w.is_active && any_pattern_matches(w.event_types, event_type))
            .map(|w| w.key)
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fan_out_plans_a_delivery_per_matching_webhook_of_the_tenant() {
        let event = |seq: i64, tenant: &str, event_type: &str| PendingEvent {
            seq,
            tenant: tenant.into(),
            event_type: event_type.into(),
        };
        let pending = [
            event(1, "acme", "card.issued"),
            event(2, "acme", "kyc.approved"),
            event(3, "globex", "card.issued"),
            event(4, "initech", "card.issued"),
        ];
        let webhook = |tenant: &str, id: &str, patterns: &str| {
            (tenant.to_string(), id.to_string(), patterns.to_string())
        };
        let webhooks = vec![
            webhook("acme", "cards", r#"["card.*"]"#),
            webhook("acme", "all", r#"["*"]"#),
            webhook("globex", "kyc", r#"["kyc.approved"]"#),
        ];
        assert_eq!(
            plan_fan_out(&pending, webhooks),
            FanOutPlan {
                deliveries: vec![(1, "cards".into()), (1, "all".into()), (2, "all".into())],
                processing: vec![1, 2],
                // globex subscribes to another type; initech has no webhook.
                skipped: vec![3, 4],
            }
        );
    }

    #[test]
    fn a_retry_goes_to_the_webhook_asked_for_or_to_every_active_subscriber() {
        let (cards, all, none) = (
            vec!["card.*".to_string()],
            vec!["*".to_string()],
            Vec::new(),
        );
        let candidate = |key: u8, is_active: bool, event_types| RetryCandidate {
            key,
            is_active,
            event_types,
        };
        let every = || {
            vec![
                candidate(1, true, &cards[..]),
                candidate(2, false, &all[..]),
                candidate(3, true, &all[..]),
                candidate(4, true, &none[..]),
            ]
        };
        assert_eq!(
            retry_targets(every(), false, "card.issued"),
            RetryTargets::Webhooks(vec![1, 3])
        );
        assert_eq!(
            retry_targets(vec![candidate(2, false, &all[..])], true, "a.b"),
            RetryTargets::Inactive
        );
        assert_eq!(
            retry_targets(vec![candidate(4, true, &none[..])], true, "a.b"),
            RetryTargets::Webhooks(vec![4])
        );
        assert_eq!(
            retry_targets(Vec::<RetryCandidate<u8>>::new(), true, "a.b"),
            RetryTargets::NotFound
        );
    }
}
