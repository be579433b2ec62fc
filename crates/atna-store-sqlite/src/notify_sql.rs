//! [`NotifyStore`](atna_store::NotifyStore) for both SQL backends, written once (like `sql_store.rs`, the PostgreSQL
//! crate includes this file with `#[path]`). Placeholders are numbered in order of first appearance, as there.
//!
//! What differs per backend is passed to [`notify_store!`]: the locking clause of the outbox claim (PostgreSQL's
//! `FOR UPDATE SKIP LOCKED`, so nodes claiming at once take different rows instead of queueing; SQLite needs none, as
//! its writers take turns) and the key-cursor comparison of the scan (byte order on both).

use crate::rows::db;
use crate::DbRow;
use atna_domain::{CredentialId, ReminderKind, UserId};
use atna_store::*;
use sqlx::Row;

pub const REMINDER_COLUMNS: &str = "id, user_id, kind, key_id, key_name, created_at, sent_at, message";
pub const DELIVERY_COLUMNS: &str = "id, message, channel, user_id, body, created_at, attempts, next_attempt_at, \
                                    delivered_at, failed_at, last_status, last_error, last_duration_ms";

/// The installation's webhook is stored under owner 0 (user IDs start at 1).
pub fn owner_id(owner: Option<UserId>) -> i64 {
    owner.map_or(0, |u| u.0)
}

pub fn reminder_from_row(r: &DbRow) -> StoreResult<Reminder> {
    let kind: &str = r.try_get("kind").map_err(db)?;
    let key: &str = r.try_get("key_id").map_err(db)?;
    Ok(Reminder {
        id: r.try_get("id").map_err(db)?,
        user: UserId(r.try_get("user_id").map_err(db)?),
        kind: ReminderKind::parse(kind).ok_or_else(|| StoreError::Corrupt(format!("reminder kind {kind}")))?,
        key_id: CredentialId::parse(key).map_err(|_| StoreError::Corrupt("reminder key id".into()))?,
        key_name: r.try_get("key_name").map_err(db)?,
        created_at: r.try_get("created_at").map_err(db)?,
        sent_at: r.try_get("sent_at").map_err(db)?,
        message: r.try_get("message").map_err(db)?,
    })
}

pub fn delivery_from_row(r: &DbRow) -> StoreResult<Delivery> {
    let channel: &str = r.try_get("channel").map_err(db)?;
    let user: Option<i64> = r.try_get("user_id").map_err(db)?;
    Ok(Delivery {
        id: r.try_get("id").map_err(db)?,
        message: r.try_get("message").map_err(db)?,
        channel: Channel::parse(channel).ok_or_else(|| StoreError::Corrupt(format!("outbox channel {channel}")))?,
        user: user.map(UserId),
        body: r.try_get("body").map_err(db)?,
        created_at: r.try_get("created_at").map_err(db)?,
        attempts: r.try_get("attempts").map_err(db)?,
        next_attempt_at: r.try_get("next_attempt_at").map_err(db)?,
        delivered_at: r.try_get("delivered_at").map_err(db)?,
        failed_at: r.try_get("failed_at").map_err(db)?,
        last_status: r.try_get("last_status").map_err(db)?,
        last_error: r.try_get("last_error").map_err(db)?,
        last_duration_ms: r.try_get("last_duration_ms").map_err(db)?,
    })
}

pub fn webhook_from_row(r: &DbRow) -> StoreResult<Webhook> {
    let owner: i64 = r.try_get("owner_id").map_err(db)?;
    Ok(Webhook {
        owner: (owner != 0).then_some(UserId(owner)),
        url: r.try_get("url").map_err(db)?,
        secret: r.try_get("secret").map_err(db)?,
        created_at: r.try_get("created_at").map_err(db)?,
    })
}

/// Implements `NotifyStore` for `$store` on `$db`; `$claim_lock` ends the claim's inner SELECT, `$key_after` compares
/// a key's ID with the scan cursor `$1`.
macro_rules! notify_store {
    ($store:ty, $db:ty, $claim_lock:expr, $key_after:expr) => {
        #[async_trait::async_trait]
        impl NotifyStore for $store {
            async fn add_reminder(
                &self,
                r: &NewReminder,
                send_now: Option<(&str, &[NewDelivery])>,
            ) -> StoreResult<bool> {
                let mut tx = self.pool.begin().await.map_err(db)?;
                let n = sqlx::query(
                    "INSERT INTO reminders (user_id, kind, key_id, key_name, immediate, created_at, sent_at, message)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (key_id, kind) DO NOTHING",
                )
                .bind(r.user.0)
                .bind(r.kind.as_str())
                .bind(r.key_id.as_str())
                .bind(&r.key_name)
                .bind(r.kind.immediate())
                .bind(r.at)
                .bind(send_now.map(|_| r.at))
                .bind(send_now.map(|(m, _)| m))
                .execute(&mut *tx)
                .await
                .map_err(db)?
                .rows_affected();
                if n == 0 {
                    tx.rollback().await.map_err(db)?;
                    return Ok(false);
                }
                if let Some((message, deliveries)) = send_now {
                    insert_deliveries(&mut tx, message, r.at, deliveries).await?;
                }
                tx.commit().await.map_err(db)?;
                Ok(true)
            }

            async fn digest_due(&self, last_digest_before: Millis, limit: i64) -> StoreResult<Vec<UserId>> {
                let ids: Vec<i64> = sqlx::query_scalar(
                    "SELECT DISTINCT r.user_id FROM reminders r WHERE r.sent_at IS NULL
                     AND NOT EXISTS (SELECT 1 FROM reminders d WHERE d.user_id = r.user_id AND d.immediate = FALSE
                                     AND d.sent_at >= $1)
                     ORDER BY r.user_id LIMIT $2",
                )
                .bind(last_digest_before)
                .bind(limit)
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
                Ok(ids.into_iter().map(UserId).collect())
            }

            async fn pending_reminders(&self, user: UserId) -> StoreResult<Vec<Reminder>> {
                let rows = sqlx::query(&format!(
                    "SELECT {} FROM reminders WHERE user_id = $1 AND sent_at IS NULL ORDER BY id",
                    notify_sql::REMINDER_COLUMNS
                ))
                .bind(user.0)
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
                rows.iter().map(notify_sql::reminder_from_row).collect()
            }

            async fn send_digest(
                &self,
                user: UserId,
                reminders: &[i64],
                message: &str,
                at: Millis,
                deliveries: &[NewDelivery],
            ) -> StoreResult<bool> {
                let mut tx = self.pool.begin().await.map_err(db)?;
                for id in reminders {
                    let n = sqlx::query(
                        "UPDATE reminders SET sent_at = $1, message = $2 WHERE id = $3 AND user_id = $4 AND sent_at IS NULL",
                    )
                    .bind(at)
                    .bind(message)
                    .bind(*id)
                    .bind(user.0)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?
                    .rows_affected();
                    if n == 0 {
                        tx.rollback().await.map_err(db)?;
                        return Ok(false);
                    }
                }
                insert_deliveries(&mut tx, message, at, deliveries).await?;
                tx.commit().await.map_err(db)?;
                Ok(true)
            }

            async fn reminders(&self, user: UserId, limit: i64) -> StoreResult<Vec<(Reminder, Vec<Delivery>)>> {
                let rows = sqlx::query(&format!(
                    "SELECT {} FROM reminders WHERE user_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2",
                    notify_sql::REMINDER_COLUMNS
                ))
                .bind(user.0)
                .bind(limit)
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
                let reminders = rows.iter().map(notify_sql::reminder_from_row).collect::<StoreResult<Vec<_>>>()?;
                let mut by_message: std::collections::HashMap<String, Vec<Delivery>> = Default::default();
                let mut out = Vec::with_capacity(reminders.len());
                for r in reminders {
                    let deliveries = match &r.message {
                        Some(m) => match by_message.get(m) {
                            Some(d) => d.clone(),
                            None => {
                                let d = self.deliveries(m).await?;
                                by_message.insert(m.clone(), d.clone());
                                d
                            }
                        },
                        None => Vec::new(),
                    };
                    out.push((r, deliveries));
                }
                Ok(out)
            }

            async fn deliveries(&self, message: &str) -> StoreResult<Vec<Delivery>> {
                let rows = sqlx::query(&format!(
                    "SELECT {} FROM outbox WHERE message = $1 ORDER BY channel, id",
                    notify_sql::DELIVERY_COLUMNS
                ))
                .bind(message)
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
                rows.iter().map(notify_sql::delivery_from_row).collect()
            }

            async fn claim_deliveries(
                &self,
                node: &str,
                now: Millis,
                lease_until: Millis,
                limit: i64,
            ) -> StoreResult<Vec<Delivery>> {
                let rows = sqlx::query(&format!(
                    "UPDATE outbox SET claimed_by = $1, claimed_until = $2
                     WHERE id IN (SELECT id FROM outbox
                                  WHERE delivered_at IS NULL AND failed_at IS NULL AND next_attempt_at <= $3
                                    AND (claimed_until IS NULL OR claimed_until <= $3)
                                  ORDER BY next_attempt_at, id LIMIT $4 {})
                     RETURNING {}",
                    $claim_lock,
                    notify_sql::DELIVERY_COLUMNS
                ))
                .bind(node)
                .bind(lease_until)
                .bind(now)
                .bind(limit)
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
                rows.iter().map(notify_sql::delivery_from_row).collect()
            }

            async fn finish_delivery(&self, id: &str, node: &str, a: &Attempt, now: Millis) -> StoreResult<bool> {
                let n = sqlx::query(
                    "UPDATE outbox SET attempts = attempts + 1, claimed_by = NULL, claimed_until = NULL,
                        delivered_at = $1, failed_at = $2, next_attempt_at = COALESCE($3, next_attempt_at),
                        last_status = $4, last_error = $5, last_duration_ms = $6
                     WHERE id = $7 AND claimed_by = $8",
                )
                .bind(a.delivered.then_some(now))
                .bind((!a.delivered && a.retry_at.is_none()).then_some(now))
                .bind(if a.delivered { None } else { a.retry_at })
                .bind(a.status)
                .bind(a.error.as_deref())
                .bind(a.duration_ms)
                .bind(id)
                .bind(node)
                .execute(&self.pool)
                .await
                .map_err(db)?
                .rows_affected();
                Ok(n > 0)
            }

            async fn webhook(&self, owner: Option<UserId>) -> StoreResult<Option<Webhook>> {
                let row = sqlx::query("SELECT owner_id, url, secret, created_at FROM webhooks WHERE owner_id = $1")
                    .bind(notify_sql::owner_id(owner))
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db)?;
                row.as_ref().map(notify_sql::webhook_from_row).transpose()
            }

            async fn set_webhook(&self, w: &Webhook) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO webhooks (owner_id, url, secret, created_at) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (owner_id) DO UPDATE SET url = excluded.url, secret = excluded.secret,
                     created_at = excluded.created_at",
                )
                .bind(notify_sql::owner_id(w.owner))
                .bind(&w.url)
                .bind(&w.secret)
                .bind(w.created_at)
                .execute(&self.pool)
                .await
                .map_err(db)?;
                Ok(())
            }

            async fn delete_webhook(&self, owner: Option<UserId>) -> StoreResult<bool> {
                let n = sqlx::query("DELETE FROM webhooks WHERE owner_id = $1")
                    .bind(notify_sql::owner_id(owner))
                    .execute(&self.pool)
                    .await
                    .map_err(db)?
                    .rows_affected();
                Ok(n > 0)
            }

            async fn scan_keys(&self, after: Option<&CredentialId>, limit: i64) -> StoreResult<Vec<KeyRecord>> {
                let rows = sqlx::query(&format!(
                    "SELECT {KEY_COLUMNS} FROM api_keys
                     WHERE {} AND status = 'active' AND owner_id IN (SELECT id FROM users WHERE disabled = FALSE)
                     ORDER BY {KEY_ORDER} LIMIT $2",
                    $key_after
                ))
                .bind(after.map_or("", CredentialId::as_str))
                .bind(limit)
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
                rows.iter().map(key_from_row).collect()
            }
        }

        async fn insert_deliveries(
            tx: &mut sqlx::Transaction<'_, $db>,
            message: &str,
            at: Millis,
            deliveries: &[NewDelivery],
        ) -> StoreResult<()> {
            for d in deliveries {
                sqlx::query(
                    "INSERT INTO outbox (id, message, channel, user_id, body, created_at, next_attempt_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $6)",
                )
                .bind(&d.id)
                .bind(message)
                .bind(d.channel.as_str())
                .bind(d.user.map(|u| u.0))
                .bind(&d.body)
                .bind(at)
                .execute(&mut **tx)
                .await
                .map_err(db)?;
            }
            Ok(())
        }
    };
}
