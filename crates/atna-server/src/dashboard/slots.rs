//! The node's argon2 slots: at most `password_hash_concurrency` password hashes or checks run at once (each takes
//! 19 MiB and tens of milliseconds of CPU on purpose), and the rest wait in two queues. People the node already
//! knows — a browser holding the account's device cookie, a signed-in user, the first-run setup — wait in the
//! first; anonymous sign-ins in the second, served only when the first is empty. A flood of wrong passwords from
//! many addresses then lengthens only its own queue: the owner's sign-in waits for one running check, not for the
//! thousands queued behind it. (Queued requests still end at `request_timeout`, with a 503.)
//!
//! Anonymous sign-ins are also bounded as a whole, from their first database read to their answer: at most
//! [`ANONYMOUS_PER_SLOT`] per slot at once; the others wait, parked, before they touch the database. Without that
//! bound the argon2 queue protected only the CPU: every queued guess had already taken its turn at the database
//! (throttle counters, written and synced), and on SQLite a burst of hundreds of those writes kept the owner's own
//! sign-in waiting behind them for seconds. Refusing the excess at once would be worse: a refusal is cheap to
//! repeat, and a flood of them takes the CPU; a parked request costs nothing until its turn or its timeout.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

/// Which queue a request for a slot waits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// Someone the node already knows: served first.
    Known,
    /// An anonymous sign-in.
    Anonymous,
}

/// Anonymous sign-ins in progress at once, per argon2 slot: enough to keep the slots busy, few enough that their
/// database work cannot crowd out everyone else's.
pub const ANONYMOUS_PER_SLOT: usize = 2;

/// The slots and their queues.
pub struct PasswordSlots {
    inner: Mutex<Inner>,
    anonymous: Arc<Semaphore>,
}

/// An anonymous sign-in's place among those in progress, given back on drop.
pub struct Anonymous(#[allow(dead_code)] Option<OwnedSemaphorePermit>);

struct Inner {
    free: usize,
    known: VecDeque<oneshot::Sender<Slot>>,
    anonymous: VecDeque<oneshot::Sender<Slot>>,
}

/// One slot, given back (to the next in line, or to the pool) on drop.
pub struct Slot {
    slots: Option<Arc<PasswordSlots>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(slots) = self.slots.take() {
            slots.release();
        }
    }
}

impl PasswordSlots {
    /// `n` slots (at least one).
    pub fn new(n: usize) -> Arc<Self> {
        let n = n.max(1);
        let inner = Inner { free: n, known: VecDeque::new(), anonymous: VecDeque::new() };
        let anonymous = Arc::new(Semaphore::new(n * ANONYMOUS_PER_SLOT));
        Arc::new(Self { inner: Mutex::new(inner), anonymous })
    }

    /// Waits (first come, first served) for a place among the anonymous sign-ins in progress.
    pub async fn enter_anonymous(&self) -> Anonymous {
        // The semaphore is never closed.
        Anonymous(self.anonymous.clone().acquire_owned().await.ok())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for a slot in `lane`'s queue.
    pub async fn acquire(self: &Arc<Self>, lane: Lane) -> Slot {
        let rx = {
            let mut inner = self.lock();
            if inner.free > 0 {
                inner.free -= 1;
                return Slot { slots: Some(self.clone()) };
            }
            let (tx, rx) = oneshot::channel();
            match lane {
                Lane::Known => inner.known.push_back(tx),
                Lane::Anonymous => inner.anonymous.push_back(tx),
            }
            rx
        };
        // The sender is dropped unsent only with `self`, which this holds: an error cannot happen.
        rx.await.unwrap_or(Slot { slots: None })
    }

    /// Hands a freed slot to the first waiter still waiting (known ones first), or back to the pool.
    fn release(self: Arc<Self>) {
        loop {
            let next = {
                let mut inner = self.lock();
                match inner.known.pop_front().or_else(|| inner.anonymous.pop_front()) {
                    Some(tx) => tx,
                    None => {
                        inner.free += 1;
                        return;
                    }
                }
            };
            // A waiter that gave up (its request timed out) has dropped its receiver: try the next.
            match next.send(Slot { slots: Some(self.clone()) }) {
                Ok(()) => return,
                Err(mut unsent) => unsent.slots = None,
            }
        }
    }

    /// Slots free right now.
    #[cfg(test)]
    fn free(&self) -> usize {
        self.lock().free
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn queued(slots: &PasswordSlots) -> usize {
        let inner = slots.lock();
        inner.known.len() + inner.anonymous.len()
    }

    #[tokio::test]
    async fn known_waiters_go_before_anonymous_ones_and_slots_come_back() {
        let slots = PasswordSlots::new(1);
        let held = slots.acquire(Lane::Anonymous).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (i, lane) in [Lane::Anonymous, Lane::Anonymous, Lane::Known].into_iter().enumerate() {
            let (mine, order) = (slots.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let _slot = mine.acquire(lane).await;
                order.lock().unwrap().push(i);
            }));
            // Queued in this order.
            while queued(&slots) < i + 1 {
                tokio::task::yield_now().await;
            }
        }
        drop(held);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), [2, 0, 1], "the known waiter first, then the anonymous ones in order");
        assert_eq!(slots.free(), 1);
    }

    #[tokio::test]
    async fn anonymous_sign_ins_are_bounded_and_give_their_places_back() {
        let slots = PasswordSlots::new(2);
        let mut held = Vec::new();
        for _ in 0..2 * ANONYMOUS_PER_SLOT {
            held.push(slots.enter_anonymous().await);
        }
        let more = tokio::time::timeout(Duration::from_millis(10), slots.enter_anonymous()).await;
        assert!(more.is_err(), "one more waits");
        drop(held);
        let more = tokio::time::timeout(Duration::from_millis(10), slots.enter_anonymous()).await;
        assert!(more.is_ok(), "places come back");
    }

    #[tokio::test]
    async fn a_waiter_that_gave_up_does_not_keep_its_slot() {
        let slots = PasswordSlots::new(1);
        let held = slots.acquire(Lane::Known).await;
        let gave_up = tokio::time::timeout(Duration::from_millis(10), slots.acquire(Lane::Known)).await;
        assert!(gave_up.is_err());
        drop(held);
        assert_eq!(slots.free(), 1, "the slot went back to the pool, not to the gone waiter");
        let _again = slots.acquire(Lane::Anonymous).await;
        assert_eq!(slots.free(), 0);
    }
}
