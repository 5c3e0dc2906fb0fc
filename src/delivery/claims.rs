//! Claiming for this node, one claim at a time: what it may take (its free slots within the
//! per-webhook and per-tenant limits), and an attempt task for each delivery claimed. The
//! dispatcher claims through it every tick; a publishing commit claims through it too when no
//! other claim is under way ([`Claims::try_begin`]), so that an event published at a steady
//! rate is claimed by the transaction that stores it, not by one of its own after a wake-up.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{Mutex, MutexGuard};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::attempt::Attempts;
use super::clock::Clock;
use super::in_flight::Slots;
use super::sender::Sender;
use crate::config::Config;
use crate::domain::ids::NodeId;
use crate::store::{ClaimRequest, ClaimedWork, Store};

/// Most pending events fanned out per claim.
pub(super) const FAN_OUT_BATCH: usize = 500;
/// Most deliveries claimed at once. The claim reads a few times this many due deliveries, so
/// a smaller batch keeps each claim (and the writer it holds) short; a full batch makes the
/// dispatcher go round again at once.
const CLAIM_BATCH: usize = 128;
/// Most events a publishing commit carries to claim even while the dispatcher is awake.
const SMALL_PUBLISH: usize = 8;
/// Claims outlive the delivery timeout by this margin (the contract allows at most 10 s).
const LEASE_MARGIN: Duration = Duration::from_secs(5);

/// What one claim did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tick {
    /// Pending events fanned out.
    pub fanned_out: usize,
    /// Deliveries claimed, each now attempted by a task of its own.
    pub claimed: usize,
    /// More is probably waiting: a full fan-out or a full claim.
    pub more: bool,
    /// Slots were left free after the claim.
    pub room_left: bool,
    /// Due deliveries were left for want of room ([`ClaimedWork::due_left`]).
    pub due_left: bool,
    /// The instant the claim was made at.
    pub at_ms: i64,
}

/// This node's claims and the attempts they start; cheap to clone.
#[derive(Clone)]
pub struct Claims(Arc<Shared>);

struct Shared {
    attempts: Attempts,
    config: Arc<Config>,
    lease_ms: i64,
    /// Held from reading the free slots until the claimed deliveries hold theirs, so two
    /// claims never count the same free slot.
    turn: Mutex<()>,
    /// Set at shutdown: publishing commits claim no more (the dispatcher is draining).
    closed: AtomicBool,
    /// Cleared while the dispatcher is awake: it is about to claim, or claiming, so a large
    /// publishing commit leaves the claim to it rather than adding one of its own.
    dispatcher_idle: AtomicBool,
    sends: TaskTracker,
    /// Cancels the attempts still running when the shutdown's grace period is over.
    abandon: CancellationToken,
}

impl Claims {
    pub fn new(
        store: Arc<dyn Store>,
        config: Arc<Config>,
        node: NodeId,
        clock: Clock,
    ) -> anyhow::Result<Claims> {
        let lease = config.delivery_timeout.saturating_add(LEASE_MARGIN);
        Ok(Claims(Arc::new(Shared {
            attempts: Attempts {
                sender: Arc::new(Sender::new(&config)?),
                policy: config.retry_policy(),
                node,
                slots: Slots::default(),
                clock,
                store,
            },
            lease_ms: i64::try_from(lease.as_millis()).unwrap_or(i64::MAX),
            config,
            turn: Mutex::new(()),
            closed: AtomicBool::new(false),
            dispatcher_idle: AtomicBool::new(true),
            sends: TaskTracker::new(),
            abandon: CancellationToken::new(),
        })))
    }

    /// A claim, once no other is under way.
    pub async fn begin(&self) -> Claim<'_> {
        let turn = self.0.turn.lock().await;
        self.claim(turn)
    }

    /// A claim for a publishing commit of `events` events, unless another claim is under
    /// way or the node is shutting down. A large commit claims only while the dispatcher
    /// sleeps: under load the dispatcher's own claims take the work, and claims in large
    /// publishing commits only lengthened them (herald bench d and h fell 9%). A small one
    /// (a steady rate, where each commit carries a few events) claims all the same: it saves
    /// the transaction the dispatcher would start for its events.
    pub fn try_begin(&self, events: usize) -> Option<Claim<'_>> {
        if events > SMALL_PUBLISH && !self.0.dispatcher_idle.load(Ordering::Acquire) {
            return None;
        }
        let turn = self.0.turn.try_lock().ok()?;
        if self.0.closed.load(Ordering::Acquire) {
            return None;
        }
        Some(self.claim(turn))
    }

    /// The dispatcher goes to sleep (`true`) or wakes up (`false`).
    pub(super) fn dispatcher_idle(&self, idle: bool) {
        self.0.dispatcher_idle.store(idle, Ordering::Release);
    }

    /// Stops publishing commits from claiming, once a claim under way has started its
    /// attempts: what is in flight from then on is what the shutdown drains.
    pub(super) async fn close(&self) {
        let _turn = self.0.turn.lock().await;
        self.0.closed.store(true, Ordering::Release);
    }

    fn claim<'a>(&'a self, turn: MutexGuard<'a, ()>) -> Claim<'a> {
        let shared = &self.0;
        let config = &shared.config;
        let max_in_flight = config.max_in_flight as usize;
        let (free, capacity) = {
            let in_flight = shared.attempts.slots.lock();
            let free = max_in_flight.saturating_sub(in_flight.len());
            let capacity = in_flight.capacity(
                free.min(CLAIM_BATCH),
                config.max_in_flight_per_webhook as usize,
                config.max_in_flight_per_tenant as usize,
            );
            (free, capacity)
        };
        metrics::gauge!("herald_deliveries_in_flight_node").set((max_in_flight - free) as f64);
        Claim {
            claims: self,
            _turn: turn,
            free,
            request: ClaimRequest {
                node: shared.attempts.node.clone(),
                now_ms: shared.attempts.clock.now_ms(),
                lease_ms: shared.lease_ms,
                fan_out_limit: FAN_OUT_BATCH,
                capacity,
            },
        }
    }

    pub fn node(&self) -> &NodeId {
        &self.0.attempts.node
    }

    pub(super) fn clock(&self) -> &Clock {
        &self.0.attempts.clock
    }

    pub(super) fn slots(&self) -> &Slots {
        &self.0.attempts.slots
    }

    pub(super) fn sender(&self) -> Arc<Sender> {
        self.0.attempts.sender.clone()
    }

    /// Waits until every attempt started so far has ended and handed its result over.
    pub(super) async fn settle(&self) {
        let sends = &self.0.sends;
        sends.close();
        sends.wait().await;
        sends.reopen();
    }

    /// Cancels the attempts still running; their deliveries stay counted as in flight.
    pub(super) async fn abandon(&self) {
        self.0.abandon.cancel();
        self.settle().await;
    }

    fn spawn(&self, attempt: impl Future<Output = ()> + Send + 'static) {
        let abandon = self.0.abandon.clone();
        self.0.sends.spawn(async move {
            tokio::select! {
                _ = attempt => {}
                _ = abandon.cancelled() => {}
            }
        });
    }
}

/// A claim under way: its request, made from the node's free slots, and the turn it holds
/// until [`Claim::start`].
pub struct Claim<'a> {
    claims: &'a Claims,
    _turn: MutexGuard<'a, ()>,
    free: usize,
    request: ClaimRequest,
}

impl Claim<'_> {
    pub fn request(&self) -> &ClaimRequest {
        &self.request
    }

    /// Starts an attempt task for each delivery the store claimed for this request.
    pub fn start(self, work: ClaimedWork) -> Tick {
        let claimed = work.deliveries.len();
        let due_left = work.due_left;
        let attempts = &self.claims.0.attempts;
        for delivery in work.deliveries {
            attempts.slots.lock().start(&delivery);
            self.claims.spawn(attempts.attempt(delivery));
        }
        let limit = self.request.capacity.limit;
        Tick {
            fanned_out: work.fanned_out,
            claimed,
            more: work.fanned_out == FAN_OUT_BATCH || (claimed == limit && claimed > 0),
            room_left: self.free > claimed,
            due_left,
            at_ms: self.request.now_ms,
        }
    }
}
