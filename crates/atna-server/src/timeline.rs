//! A key's usage over time as every face shows it (REST API, dashboard chart, CLI): one bucket per hour or day in a
//! range, empty ones included, each with its allowed requests and its refused attempts by reason. Read from the store
//! and topped up with what this node has gathered but not flushed yet (like `Verifier::overlay_usage`).

use std::collections::BTreeMap;

use atna_domain::{CredentialId, Millis, VerifyCode};
use atna_store::{Granularity, Store, StoreResult};

use crate::usage::UsageBuffer;

/// Most buckets one request may ask for (the API answers `invalid_range` beyond it).
pub const MAX_BUCKETS: i64 = 1000;

/// One bucket of a key's usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    /// Start (UTC), Unix ms.
    pub start: Millis,
    /// Requests that were let through.
    pub allowed: i64,
    /// Refused attempts by reason: a verify code in lowercase (`invalid_secret`, `ip_not_allowed`, …).
    pub refused: BTreeMap<String, i64>,
}

impl Bucket {
    /// All refused attempts.
    pub fn refused_total(&self) -> i64 {
        self.refused.values().sum()
    }

    fn add(&mut self, outcome: &str, n: i64) {
        if outcome == VerifyCode::Valid.as_str() {
            self.allowed += n;
        } else {
            *self.refused.entry(outcome.to_ascii_lowercase()).or_default() += n;
        }
    }
}

/// The buckets of `granularity` from the one containing `from` up to (not including) `to`, oldest first, every one
/// present. With `pending`, this node's unflushed counts are added.
pub async fn series(
    store: &dyn Store,
    pending: Option<&UsageBuffer>,
    id: &CredentialId,
    granularity: Granularity,
    from: Millis,
    to: Millis,
) -> StoreResult<Vec<Bucket>> {
    let first = granularity.floor(from);
    let step = granularity.millis();
    let mut buckets: Vec<Bucket> = (0..)
        .map(|i| first + i * step)
        .take_while(|&start| start < to)
        .take(MAX_BUCKETS as usize)
        .map(|start| Bucket { start, allowed: 0, refused: BTreeMap::new() })
        .collect();
    let end = buckets.last().map_or(first, |b| b.start + step);
    let index = |t: Millis| -> Option<usize> {
        (t >= first && t < end).then(|| ((granularity.floor(t) - first) / step) as usize)
    };
    for row in store.usage_buckets(id, granularity, first, end).await? {
        if let Some(i) = index(row.start) {
            buckets[i].add(&row.outcome, row.count);
        }
    }
    if let Some(p) = pending {
        for h in p.pending_hours(id) {
            let Some(i) = index(h.hour) else { continue };
            for (slot, &n) in h.counts.iter().enumerate() {
                if n > 0 {
                    buckets[i].add(VerifyCode::ALL[slot].as_str(), i64::from(n));
                }
            }
        }
    }
    Ok(buckets)
}

/// Allowed requests per day for the last `days` days (today last) of each of `ids`, in one store query plus this
/// node's unflushed counts: a page's sparklines.
pub async fn daily_allowed(
    store: &dyn Store,
    pending: Option<&UsageBuffer>,
    ids: &[CredentialId],
    days: usize,
    now: Millis,
) -> StoreResult<BTreeMap<CredentialId, Vec<i64>>> {
    let step = Granularity::Day.millis();
    let today = Granularity::Day.floor(now);
    let first = today - (days as i64 - 1) * step;
    let mut out: BTreeMap<CredentialId, Vec<i64>> = ids.iter().map(|id| (*id, vec![0; days])).collect();
    let slot =
        |t: Millis| (t >= first && t < today + step).then(|| ((Granularity::Day.floor(t) - first) / step) as usize);
    for (id, start, n) in store.daily_allowed(ids, first).await? {
        if let (Some(v), Some(i)) = (out.get_mut(&id), slot(start)) {
            v[i] += n;
        }
    }
    if let Some(p) = pending {
        for id in ids {
            for h in p.pending_hours(id) {
                if let (Some(v), Some(i)) = (out.get_mut(id), slot(h.hour)) {
                    v[i] += i64::from(h.counts[VerifyCode::Valid.index()]);
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use atna_store_sqlite::SqliteStore;

    #[tokio::test]
    async fn unflushed_counts_show_in_series_and_sparklines() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open_file(&dir.path().join("atna.db")).await.unwrap();
        let buf = UsageBuffer::default();
        let id = CredentialId::generate();
        let now = 1_780_000_000_000 + 5 * 3_600_000 + 123; // some hours into a day
        for _ in 0..3 {
            buf.record(id, now, None);
        }
        buf.refuse(id, VerifyCode::Expired, now);
        let week = daily_allowed(&store, Some(&buf), &[id], 7, now).await.unwrap();
        assert_eq!(week[&id], [0, 0, 0, 0, 0, 0, 3], "today's hours count towards today");
        let hours = series(&store, Some(&buf), &id, Granularity::Hour, now - 3 * 3_600_000, now + 1).await.unwrap();
        assert_eq!(hours.len(), 4);
        assert_eq!((hours[3].allowed, hours[3].refused_total()), (3, 1));
        assert_eq!(hours[3].refused["expired"], 1);
        assert!(hours[..3].iter().all(|b| b.allowed == 0 && b.refused.is_empty()));
    }
}
