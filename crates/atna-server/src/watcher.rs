//! Background work of a running server: following the change feed (so a key deleted anywhere, by this node, another
//! node or the CLI, stops working here at once) and flushing usage counters.

use std::sync::Arc;
use std::time::Duration;

use atna_store::{ChangeKind, Pruned, Store, Wake};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::verify::Verifier;

const BATCH: i64 = 1000;

/// Follows the change feed until `stop` turns true. An installation change (a new key prefix) rereads the recorded
/// prefixes (`configured` stands in while none is recorded); so does a catch-up after lost notifications.
pub fn follow_changes(
    store: Arc<dyn Store>,
    verifier: Arc<Verifier>,
    configured: atna_domain::KeyPrefix,
    poll: Duration,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut last = loop {
            let started = crate::clock::now();
            match store.latest_change().await {
                Ok(seq) => {
                    // Requests may have cached records before this starting point was read; a change committed in
                    // between is behind it and would never be seen. Forget them: from here on the feed covers all.
                    verifier.evict_all();
                    verifier.feed_read(started);
                    break seq;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the change feed yet; retrying (cached keys not trusted)");
                    tokio::select! { _ = tokio::time::sleep(poll) => {}, _ = stop.changed() => return }
                }
            }
        };
        loop {
            let wake = tokio::select! {
                w = store.wait_for_change(poll) => w,
                _ = stop.changed() => return,
            };
            // Notifications may have been missed. The feed itself is durable and ordered, so reading it from `last`
            // settles the doubt; until that read succeeds nothing cached can be trusted.
            let unsure = wake == Wake::Lost;
            if unsure {
                tracing::warn!("change notifications were interrupted; catching up from the change feed");
            }
            let started = crate::clock::now();
            let mut reread_prefixes = unsure;
            loop {
                match store.changes_since(last, BATCH).await {
                    Ok(changes) => {
                        for c in &changes {
                            match &c.what {
                                ChangeKind::Key(id) => verifier.evict(id),
                                ChangeKind::User(_) => verifier.evict_all(),
                                ChangeKind::Installation => reread_prefixes = true,
                            }
                            last = c.seq;
                        }
                        if (changes.len() as i64) < BATCH {
                            if reread_prefixes {
                                if let Err(e) = crate::prefixes::reload(store.as_ref(), &verifier, &configured).await {
                                    // Nothing was lost: the keys of the prefixes known so far keep working, and the
                                    // next installation change or lost notification reads them again.
                                    tracing::warn!(error = %e, "cannot read the key prefixes; keeping the known ones");
                                }
                            }
                            verifier.feed_read(started);
                            break;
                        }
                    }
                    Err(e) if unsure => {
                        tracing::warn!(error = %e, "cannot read the change feed either; forgetting all cached keys");
                        verifier.evict_all();
                        break;
                    }
                    Err(e) => {
                        // The verifier stops trusting its cache once the last good read is too old (it reads the
                        // store instead, or answers 503), so this node fails closed while the feed is unreadable.
                        tracing::warn!(error = %e, "cannot read the change feed; cached keys not trusted meanwhile");
                        break;
                    }
                }
            }
        }
    })
}

/// Flushes usage every `every` until `stop` turns true. The final flush is the caller's, after the server stops.
pub fn flush_usage(verifier: Arc<Verifier>, every: Duration, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! { _ = tick.tick() => {}, _ = stop.changed() => return }
            if let Err(e) = verifier.flush_usage().await {
                tracing::warn!(error = %e, "usage not written yet; kept for the next flush");
            }
        }
    })
}

/// Shares rate-limit and quota counts with the other nodes every `every`, until `stop` turns true (then once more,
/// so that uses admitted just before a graceful stop still count).
pub fn sync_limits(
    verifier: Arc<Verifier>,
    node: String,
    every: Duration,
    idle: Duration,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let stopping = tokio::select! { _ = tick.tick() => false, _ = stop.changed() => true };
            if let Err(e) = verifier.sync_limits(&node, idle).await {
                tracing::warn!(error = %e, "rate-limit and quota counts not shared yet; kept for the next sync");
            }
            if stopping {
                return;
            }
        }
    })
}

/// How long change-feed entries are kept: far longer than any node's cache trusts a record, so no running node can
/// still need one that is gone.
pub const CHANGE_RETENTION: Duration = Duration::from_secs(24 * 60 * 60);

/// Deletes old change-feed entries, expired sessions, old sign-in attempts and usage buckets past their retention, at start and then every `every`, until `stop` turns true.
/// Every node does it; deleting what is already gone costs nothing.
pub fn housekeeping(
    store: Arc<dyn Store>,
    settings: &crate::Settings,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let keep = CHANGE_RETENTION.max(settings.cache_ttl * 2).as_millis() as i64;
    let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    let (keep_hours, keep_days) = (ms(settings.usage_hourly_retention), ms(settings.usage_daily_retention));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! { _ = tick.tick() => {}, _ = stop.changed() => return }
            let now = crate::clock::now();
            match store.prune(now - keep, now).await {
                Ok(p) if p != Pruned::default() => tracing::info!(
                    changes = p.changes,
                    sessions = p.sessions,
                    sign_in_attempts = p.sign_in_attempts,
                    device_tokens = p.device_tokens,
                    "pruned old change-feed entries, expired sessions and device tokens, and old sign-in attempts"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "housekeeping failed; trying again later"),
            }
            // Whole buckets only: one that started before the cut-off is deleted.
            match store.prune_usage(now.saturating_sub(keep_hours), now.saturating_sub(keep_days)).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(buckets = n, "pruned old usage buckets"),
                Err(e) => tracing::warn!(error = %e, "pruning usage buckets failed; trying again later"),
            }
        }
    })
}
