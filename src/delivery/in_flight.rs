//! This node's attempts in flight, per webhook and per tenant: what each claim may still
//! take, and the slot an attempt frees when it ends (even by panicking).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;
use uuid::Uuid;

use crate::domain::claim::Capacity;
use crate::store::ClaimedDelivery;

/// Attempts in flight on this node: per webhook, per tenant, and which deliveries.
#[derive(Default)]
pub(super) struct InFlight {
    per_webhook: HashMap<Uuid, usize>,
    per_tenant: HashMap<String, usize>,
    deliveries: HashMap<i64, (Uuid, String)>,
}

impl InFlight {
    pub(super) fn start(&mut self, delivery: &ClaimedDelivery) {
        let (webhook, tenant) = (delivery.webhook_id.as_uuid(), delivery.tenant.as_str());
        *self.per_webhook.entry(webhook).or_insert(0) += 1;
        match self.per_tenant.get_mut(tenant) {
            Some(count) => *count += 1,
            None => {
                self.per_tenant.insert(tenant.to_string(), 1);
            }
        }
        self.deliveries
            .insert(delivery.delivery_id, (webhook, tenant.to_string()));
    }

    pub(super) fn finish(&mut self, delivery_id: i64) {
        if let Some((webhook, tenant)) = self.deliveries.remove(&delivery_id) {
            if let Some(count) = self.per_webhook.get_mut(&webhook) {
                *count -= 1;
                if *count == 0 {
                    self.per_webhook.remove(&webhook);
                }
            }
            if let Some(count) = self.per_tenant.get_mut(&tenant) {
                *count -= 1;
                if *count == 0 {
                    self.per_tenant.remove(&tenant);
                }
            }
        }
    }

    pub(super) fn len(&self) -> usize {
        self.deliveries.len()
    }

    /// The deliveries in flight.
    pub(super) fn deliveries(&self) -> Vec<i64> {
        self.deliveries.keys().copied().collect()
    }

    /// What a claim may take with `free` slots left on the node.
    pub(super) fn capacity(
        &self,
        free: usize,
        per_webhook_limit: usize,
        per_tenant_limit: usize,
    ) -> Capacity {
        Capacity {
            limit: free,
            per_webhook_limit,
            in_flight: self.per_webhook.clone(),
            per_tenant_limit,
            in_flight_per_tenant: self.per_tenant.clone(),
        }
    }
}

/// The node's attempts in flight, shared with the attempt tasks, and the signal each sends
/// when it ends.
#[derive(Clone, Default)]
pub(super) struct Slots {
    in_flight: Arc<Mutex<InFlight>>,
    /// An attempt finished: its slot is free (and its result waits to be recorded).
    pub(super) attempt_done: Arc<Notify>,
}

impl Slots {
    pub(super) fn lock(&self) -> MutexGuard<'_, InFlight> {
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Frees a finished attempt's slot and says so.
    pub(super) fn finish(&self, delivery_id: i64) {
        self.lock().finish(delivery_id);
        self.attempt_done.notify_one();
    }

    /// Frees the attempt's slot if its task panics, so a bug in one attempt cannot shrink
    /// the node's capacity for good. A task cancelled at shutdown keeps its slot: the drain
    /// releases what is still in flight.
    pub(super) fn guard(&self, delivery_id: i64) -> SlotGuard {
        SlotGuard {
            slots: self.clone(),
            delivery_id,
        }
    }
}

pub(super) struct SlotGuard {
    slots: Slots,
    delivery_id: i64,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            tracing::error!(
                delivery_id = self.delivery_id,
                "an attempt panicked; its delivery is attempted again when its lease runs out"
            );
            self.slots.finish(self.delivery_id);
        }
    }
}
