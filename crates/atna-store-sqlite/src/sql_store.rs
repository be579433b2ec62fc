//! The `Store` methods whose SQL is the same on SQLite and PostgreSQL, written once.
//!
//! Both SQL backends include this file with `#[path]` (like `rows.rs`) and call [`sql_store!`] with their store type,
//! their sqlx database type and the methods that differ (listing and searching, usage merging, change
//! notifications). Queries here use `$1, $2, …` placeholders in order of first appearance: PostgreSQL numbers them,
//! SQLite binds `$NAME` parameters in that same order. Each backend also defines what differs in a shared step:
//! `publish` (append to the change feed), `begin_import` / `after_import`, `EXPORT_BEGIN` and `KEY_ORDER`.

/// Warns when the database's schema is newer than this build's (an upgraded node migrated it): this node keeps
/// serving, because migrations only add, but the operator should finish the upgrade.
pub(crate) fn check_schema(applied: Option<i64>, migrator: &sqlx::migrate::Migrator) {
    let known = migrator.iter().map(|m| m.version).max().unwrap_or(0);
    if let Some(newest) = applied.filter(|&v| v > known) {
        tracing::warn!(
            "this database was upgraded by a newer atna (schema {newest}; this build knows {known}); serving it \
             anyway, since migrations only add: upgrade this node too"
        );
    }
}

/// A page of an owner's live keys, newest first. Parameters: `$1` the owner; with `search`, `$2` the name pattern
/// ([`contains_pattern`](crate::rows::contains_pattern)); then the limit; with `after`, the keyset cursor (created_at
/// and ID of the last key shown). A search and a cursor each make a statement of their own, never `$n IS NULL OR …`:
/// that is only a filter (a plan made for any parameters must work without it), so a late page read and dropped every
/// earlier row, and the planner could not tell whether there was a search at all. The row comparison is a range on the
/// `api_keys_live_search` index on both backends; the name test is the backend's [`NAME_MATCH`](crate::NAME_MATCH).
pub fn list_keys_sql(after: bool, search: bool) -> String {
    let columns = crate::rows::KEY_COLUMNS;
    let (name, limit) = if search { (format!("AND {}", crate::NAME_MATCH), 3) } else { (String::new(), 2) };
    let cursor = if after { format!("AND (created_at, id) < (${}, ${})", limit + 1, limit + 2) } else { String::new() };
    format!(
        "SELECT {columns} FROM api_keys
         WHERE owner_id = $1 AND status <> 'revoked' {name} {cursor}
         ORDER BY created_at DESC, id DESC LIMIT ${limit}"
    )
}

/// An owner's live keys (`$1`), those whose names match `$2` with `search` (as in [`list_keys_sql`]).
fn owner_keys_where(search: bool) -> String {
    let name = if search { format!("AND {}", crate::NAME_MATCH) } else { String::new() };
    format!("WHERE owner_id = $1 AND status <> 'revoked' {name}")
}

/// How many of an owner's live keys there are (or match a search): [`owner_keys_where`].
pub(crate) fn count_keys_sql(search: bool) -> String {
    format!("SELECT COUNT(*) FROM api_keys {}", owner_keys_where(search))
}

/// The same, stopping at a cap (the next parameter after the search's).
pub(crate) fn count_keys_upto_sql(search: bool) -> String {
    let cap = if search { 3 } else { 2 };
    format!("SELECT COUNT(*) FROM (SELECT 1 FROM api_keys {} LIMIT ${cap}) AS capped", owner_keys_where(search))
}

/// A quota's due refill (an interval began since the last fill: `$2` is the start of today, `$3` of this month, UTC).
const REFILL_DUE: &str = "(quota_refill_amount IS NOT NULL AND quota_refilled_at < \
    (CASE quota_refill_interval WHEN 'daily' THEN CAST($2 AS BIGINT) ELSE CAST($3 AS BIGINT) END))";

/// Takes `$1` uses off key `$4`'s quota, after a due refill, never below 0; returns what is left.
pub fn quota_take_sql() -> String {
    let left = format!("(CASE WHEN {REFILL_DUE} THEN quota_refill_amount ELSE quota_remaining END)");
    format!(
        "UPDATE api_keys SET
            quota_remaining = CASE WHEN {left} - CAST($1 AS BIGINT) > 0 THEN {left} - CAST($1 AS BIGINT) ELSE 0 END,
            quota_refilled_at = CASE WHEN {REFILL_DUE}
                THEN (CASE quota_refill_interval WHEN 'daily' THEN CAST($2 AS BIGINT) ELSE CAST($3 AS BIGINT) END)
                ELSE quota_refilled_at END
         WHERE id = $4 AND quota_remaining IS NOT NULL
         RETURNING quota_remaining, quota_refilled_at"
    )
}

/// A usage bucket row to add: key, start, outcome, count.
pub(crate) type UsageInsert = (atna_domain::CredentialId, i64, &'static str, i64);

/// The hourly rows and the daily rows a batch adds, each summed per bucket (one multi-row upsert may touch a row only
/// once) and sorted by key, start and outcome (the one order every node locks rows in).
pub(crate) fn usage_rows(batch: &[atna_store::UsageCount]) -> (Vec<UsageInsert>, Vec<UsageInsert>) {
    use std::collections::BTreeMap;
    let mut hourly: BTreeMap<(&str, i64, &'static str), (atna_domain::CredentialId, i64)> = BTreeMap::new();
    let mut daily: BTreeMap<(&str, i64, &'static str), (atna_domain::CredentialId, i64)> = BTreeMap::new();
    for c in batch {
        let outcome = c.outcome.as_str();
        let hour = atna_store::Granularity::Hour.floor(c.hour);
        let day = atna_store::Granularity::Day.floor(c.hour);
        hourly.entry((c.id.as_str(), hour, outcome)).or_insert((c.id, 0)).1 += c.count;
        daily.entry((c.id.as_str(), day, outcome)).or_insert((c.id, 0)).1 += c.count;
    }
    let rows = |m: BTreeMap<(&str, i64, &'static str), (atna_domain::CredentialId, i64)>| {
        m.into_iter().map(|((_, start, outcome), (id, n))| (id, start, outcome, n)).collect()
    };
    (rows(hourly), rows(daily))
}

/// The table holding buckets of one width.
pub(crate) fn usage_table(g: atna_store::Granularity) -> &'static str {
    match g {
        atna_store::Granularity::Hour => "usage_hourly",
        atna_store::Granularity::Day => "usage_daily",
    }
}

/// A page of audit events, newest first: a condition per filter that is set, in the order `owner`, `key`, `action`,
/// `since`, `until`, the cursor (two parameters), then the limit, numbered in that order (the caller binds in the same
/// order). Each filter is its own condition rather than `$n IS NULL OR …`, so the planner sees a range on one of the
/// `audit_events_*_newest` indexes.
pub fn audit_page_sql(q: &atna_store::AuditQuery) -> String {
    let mut n = 0;
    let mut next = || {
        n += 1;
        format!("${n}")
    };
    let mut conds = Vec::new();
    if q.owner.is_some() {
        conds.push(format!("owner_id = {}", next()));
    }
    if q.key.is_some() {
        conds.push(format!("key_id = {}", next()));
    }
    if q.action.is_some() {
        conds.push(format!("action = {}", next()));
    }
    if q.since.is_some() {
        conds.push(format!("at >= {}", next()));
    }
    if q.until.is_some() {
        conds.push(format!("at < {}", next()));
    }
    if q.after.is_some() {
        let (t, id) = (next(), next());
        conds.push(format!("(at, id) < ({t}, {id})"));
    }
    let filter = if conds.is_empty() { String::new() } else { format!("WHERE {}", conds.join(" AND ")) };
    format!(
        "SELECT id, at, owner_id, actor_id, actor_key_id, action, key_id, key_name, ip, user_agent, detail
         FROM audit_events {filter} ORDER BY at DESC, id DESC LIMIT {}",
        next()
    )
}

macro_rules! sql_store {
    ($store:ty, $db:ty, { $($specific:tt)* }) => {
        #[async_trait::async_trait]
        impl Store for $store {
            async fn ping(&self) -> StoreResult<()> {
                sqlx::query("SELECT 1").execute(&self.pool).await.map_err(db)?;
                Ok(())
            }

            async fn create_user(&self, u: NewUser) -> StoreResult<User> {
                let row = insert_user(&self.pool, &u)
                    .await
                    .map_err(|e| rows::conflict(e, "a user with this e-mail address"))?;
                user_from_row(&row)
            }

            async fn user_by_email(&self, email: &Email) -> StoreResult<Option<User>> {
                let row = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE email = $1"))
                    .bind(email.as_str())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db)?;
                row.as_ref().map(user_from_row).transpose()
            }

            async fn user_by_id(&self, id: UserId) -> StoreResult<Option<User>> {
                let row = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
                    .bind(id.0)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db)?;
                row.as_ref().map(user_from_row).transpose()
            }

            async fn list_users(&self) -> StoreResult<Vec<User>> {
                let rows = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY id"))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db)?;
                rows.iter().map(user_from_row).collect()
            }

            async fn count_users(&self) -> StoreResult<i64> {
                sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(&self.pool).await.map_err(db)
            }

            async fn set_user_disabled(&self, id: UserId, disabled: bool, at: Millis) -> StoreResult<bool> {
                let mut tx = self.pool.begin().await.map_err(db)?;
                let n = sqlx::query("UPDATE users SET disabled = $1 WHERE id = $2")
                    .bind(disabled)
                    .bind(id.0)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?
                    .rows_affected();
                if n == 0 {
                    return Ok(false);
                }
                if disabled {
                    sqlx::query("DELETE FROM sessions WHERE user_id = $1").bind(id.0).execute(&mut *tx).await.map_err(db)?;
                }
                publish(&mut tx, None, Some(id.0), at).await?;
                tx.commit().await.map_err(db)?;
                Ok(true)
            }

            async fn set_password(&self, id: UserId, hash: &PasswordHash) -> StoreResult<bool> {
                let r = sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
                    .bind(hash.as_str())
                    .bind(id.0)
                    .execute(&self.pool)
                    .await
                    .map_err(db)?;
                Ok(r.rows_affected() > 0)
            }

            async fn insert_key(&self, k: NewKey) -> StoreResult<KeyRecord> {
                let mut tx = self.pool.begin().await.map_err(db)?;
                let rec = insert_key_row(&mut tx, &k).await?;
                record_event(&mut *tx, &key_created(&k)).await?;
                tx.commit().await.map_err(db)?;
                Ok(rec)
            }

            async fn roll_key(
                &self,
                owner: Option<UserId>,
                old: &CredentialId,
                new: NewKey,
                old_expires_at: Millis,
            ) -> StoreResult<Option<KeyRecord>> {
                let mut tx = self.pool.begin().await.map_err(db)?;
                // Takes the write lock (SQLite) or the row lock (PostgreSQL) first: two rolls of one key cannot both
                // pass the `rolled_to IS NULL` check.
                let locked = sqlx::query(
                    "UPDATE api_keys SET status = status WHERE id = $1 AND (CAST($2 AS BIGINT) IS NULL OR owner_id = $2)
                     AND status <> 'revoked' AND rolled_to IS NULL",
                )
                .bind(old.as_str())
                .bind(owner.map(|o| o.0))
                .execute(&mut *tx)
                .await
                .map_err(db)?
                .rows_affected();
                if locked == 0 {
                    tx.rollback().await.map_err(db)?;
                    return Ok(None);
                }
                let fresh = insert_key_row(&mut tx, &new).await?;
                let row = sqlx::query(&format!(
                    "UPDATE api_keys SET rolled_to = $1,
                        expires_at = CASE WHEN expires_at IS NOT NULL AND expires_at < $2 THEN expires_at ELSE $2 END
                     WHERE id = $3 RETURNING {KEY_COLUMNS}"
                ))
                .bind(new.id.as_str())
                .bind(old_expires_at)
                .bind(old.as_str())
                .fetch_one(&mut *tx)
                .await
                .map_err(db)?;
                let before = key_from_row(&row)?;
                publish(&mut tx, Some(old.as_str()), None, new.created_at).await?;
                record_event(&mut *tx, &key_created(&new)).await?;
                let detail = serde_json::json!({
                    "successor": fresh.id.as_str(),
                    "successor_name": fresh.name.as_str(),
                    "old_key_expires_at": before.expires_at,
                });
                record_event(
                    &mut *tx,
                    &NewAuditEvent {
                        at: new.created_at,
                        owner: before.owner,
                        who: new.actor.clone(),
                        action: audit_kind::KEY_ROLLED,
                        key_id: Some(before.id),
                        key_name: Some(before.name.to_string()),
                        detail: Some(detail.to_string()),
                    },
                )
                .await?;
                tx.commit().await.map_err(db)?;
                Ok(Some(before))
            }

            async fn update_key(
                &self,
                owner: Option<UserId>,
                id: &CredentialId,
                patch: &KeyPatch,
                who: &Who,
                at: Millis,
            ) -> StoreResult<Option<(KeyRecord, KeyRecord)>> {
                let mut tx = self.pool.begin().await.map_err(db)?;
                // The lock first (see `roll_key`), then the row as it is under that lock.
                let locked = sqlx::query(
                    "UPDATE api_keys SET status = status WHERE id = $1 AND (CAST($2 AS BIGINT) IS NULL OR owner_id = $2)
                     AND status <> 'revoked'",
                )
                .bind(id.as_str())
                .bind(owner.map(|o| o.0))
                .execute(&mut *tx)
                .await
                .map_err(db)?
                .rows_affected();
                if locked == 0 {
                    tx.rollback().await.map_err(db)?;
                    return Ok(None);
                }
                let row = sqlx::query(&format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1"))
                    .bind(id.as_str())
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db)?;
                let before = key_from_row(&row)?;
                let name = patch.name.clone().unwrap_or_else(|| before.name.clone());
                let scopes = patch.scopes.clone().unwrap_or_else(|| before.scopes.clone());
                let expires_at = patch.expires_at.unwrap_or(before.expires_at);
                let mut rules = patch.rules.clone().unwrap_or_else(|| before.rules.clone());
                // The quota the caller read and passed back unchanged (same size, refill and last fill) keeps what is
                // left of it now: uses taken since the caller read the key count. A quota set anew is taken as given.
                if let (Some(new), Some(old)) = (rules.quota.as_mut(), before.rules.quota) {
                    if (new.total, new.refill, new.refilled_at) == (old.total, old.refill, old.refilled_at) {
                        *new = old;
                    }
                }
                let status = patch.status.filter(|s| *s != atna_domain::KeyStatus::Revoked).unwrap_or(before.status);
                let limits = StoredLimits::of(rules.rate_limit, rules.quota);
                let row = sqlx::query(&format!(
                    "UPDATE api_keys SET name = $1, scopes = $2, expires_at = $3, ip_allowlist = $4, status = $5,
                        rate_limit = $7, rate_period_seconds = $8, quota_remaining = $9, quota_total = $10,
                        quota_refilled_at = $11, quota_refill_amount = $12, quota_refill_interval = $13
                     WHERE id = $6 RETURNING {KEY_COLUMNS}"
                ))
                .bind(name.as_str())
                .bind(scopes.to_stored())
                .bind(expires_at)
                .bind(rules.ip_allowlist.to_stored())
                .bind(status.as_str())
                .bind(id.as_str())
                .bind(limits.rate_limit)
                .bind(limits.rate_period_seconds)
                .bind(limits.quota_remaining)
                .bind(limits.quota_total)
                .bind(limits.quota_refilled_at)
                .bind(limits.quota_refill_amount)
                .bind(limits.quota_refill_interval)
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| rows::conflict(e, "a key with this name"))?;
                let after = key_from_row(&row)?;
                publish(&mut tx, Some(id.as_str()), None, at).await?;
                let event = |action: &'static str, detail: Option<String>| NewAuditEvent {
                    at,
                    owner: after.owner,
                    who: who.clone(),
                    action,
                    key_id: Some(after.id),
                    key_name: Some(after.name.to_string()),
                    detail,
                };
                if before.status != after.status {
                    let kind = if after.status == atna_domain::KeyStatus::Disabled {
                        audit_kind::KEY_DISABLED
                    } else {
                        audit_kind::KEY_ENABLED
                    };
                    record_event(&mut *tx, &event(kind, None)).await?;
                }
                let mut changed = serde_json::Map::new();
                if before.name != after.name {
                    changed.insert("name".into(), serde_json::json!({"from": before.name.as_str(), "to": after.name.as_str()}));
                }
                if before.scopes != after.scopes {
                    changed.insert("scopes".into(), serde_json::json!({"from": before.scopes.to_stored(), "to": after.scopes.to_stored()}));
                }
                if before.expires_at != after.expires_at {
                    changed.insert("expires_at".into(), serde_json::json!({"from": before.expires_at, "to": after.expires_at}));
                }
                if before.rules.ip_allowlist != after.rules.ip_allowlist {
                    changed.insert("ip_allowlist".into(), serde_json::json!({
                        "from": before.rules.ip_allowlist.to_stored(), "to": after.rules.ip_allowlist.to_stored()
                    }));
                }
                if before.rules.rate_limit != after.rules.rate_limit {
                    let show = |r: Option<atna_domain::RateLimit>| r.map(|r| format!("{}/{}s", r.limit(), r.period_seconds()));
                    changed.insert("rate_limit".into(), serde_json::json!({
                        "from": show(before.rules.rate_limit), "to": show(after.rules.rate_limit)
                    }));
                }
                let quota_size = |q: Option<atna_domain::Quota>| q.map(|q| (q.total, q.refill.map(|r| (r.amount, r.interval.as_str()))));
                if quota_size(before.rules.quota) != quota_size(after.rules.quota) {
                    changed.insert("quota".into(), serde_json::json!({
                        "from": quota_size(before.rules.quota), "to": quota_size(after.rules.quota)
                    }));
                }
                if !changed.is_empty() {
                    let detail = serde_json::Value::Object(changed).to_string();
                    record_event(&mut *tx, &event(audit_kind::KEY_EDITED, Some(detail))).await?;
                }
                tx.commit().await.map_err(db)?;
                Ok(Some((before, after)))
            }

            async fn keys_matching(&self, f: &KeyFilter) -> StoreResult<Vec<KeyRecord>> {
                let rows = sqlx::query(&format!(
                    "SELECT {KEY_COLUMNS} FROM api_keys WHERE status <> 'revoked'
                     AND (CAST($1 AS BIGINT) IS NULL OR owner_id = $1) AND (CAST($2 AS BIGINT) IS NULL OR created_at < $2)
                     ORDER BY created_at DESC, id DESC"
                ))
                .bind(f.owner.map(|o| o.0))
                .bind(f.created_before)
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
                rows.iter().map(key_from_row).collect()
            }

            async fn revoke_keys(
                &self,
                f: &KeyFilter,
                who: &Who,
                mut detail: serde_json::Map<String, serde_json::Value>,
                at: Millis,
            ) -> StoreResult<Vec<KeyRecord>> {
                let mut tx = self.pool.begin().await.map_err(db)?;
                let rows = sqlx::query(&format!(
                    "UPDATE api_keys SET status = 'revoked', revoked_at = $1 WHERE status <> 'revoked'
                     AND (CAST($2 AS BIGINT) IS NULL OR owner_id = $2) AND (CAST($3 AS BIGINT) IS NULL OR created_at < $3)
                     RETURNING {KEY_COLUMNS}"
                ))
                .bind(at)
                .bind(f.owner.map(|o| o.0))
                .bind(f.created_before)
                .fetch_all(&mut *tx)
                .await
                .map_err(db)?;
                let mut gone = rows.iter().map(key_from_row).collect::<StoreResult<Vec<_>>>()?;
                let owners: std::collections::BTreeSet<i64> = gone.iter().map(|k| k.owner.0).collect();
                for o in owners {
                    publish(&mut tx, None, Some(o), at).await?;
                }
                detail.insert("count".into(), gone.len().into());
                detail.insert("keys".into(), gone.iter().map(|k| serde_json::Value::from(k.id.as_str())).collect());
                let event = NewAuditEvent {
                    at,
                    owner: f.owner.or(who.actor.user()).unwrap_or(NO_USER),
                    who: who.clone(),
                    action: audit_kind::KEYS_REVOKED,
                    key_id: None,
                    key_name: None,
                    detail: Some(serde_json::Value::Object(detail).to_string()),
                };
                record_event(&mut *tx, &event).await?;
                tx.commit().await.map_err(db)?;
                for k in &mut gone {
                    k.status = atna_domain::KeyStatus::Revoked;
                }
                Ok(gone)
            }

            async fn key_by_form_nonce(&self, owner: UserId, nonce: &str) -> StoreResult<Option<KeyRecord>> {
                let row =
                    sqlx::query(&format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE owner_id = $1 AND form_nonce = $2"))
                        .bind(owner.0)
                        .bind(nonce)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(db)?;
                row.as_ref().map(key_from_row).transpose()
            }

            async fn get_key(&self, owner: UserId, id: &CredentialId) -> StoreResult<Option<KeyRecord>> {
                let row = sqlx::query(&format!(
                    "SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1 AND owner_id = $2 AND status <> 'revoked'"
                ))
                .bind(id.as_str())
                .bind(owner.0)
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
                row.as_ref().map(key_from_row).transpose()
            }

            async fn list_keys(&self, owner: UserId, q: &KeyQuery) -> StoreResult<Vec<KeyRecord>> {
                let search = q.search.as_deref().map(rows::contains_pattern);
                let sql = sql_store::list_keys_sql(q.after.is_some(), search.is_some());
                let mut query = sqlx::query(&sql).bind(owner.0);
                if let Some(pattern) = search.as_ref() {
                    query = query.bind(pattern).persistent(SEARCH_PERSISTENT);
                }
                query = query.bind(q.limit);
                if let Some((t, id)) = &q.after {
                    query = query.bind(*t).bind(id.as_str());
                }
                let rows = query.fetch_all(&self.pool).await.map_err(db)?;
                rows.iter().map(key_from_row).collect()
            }

            async fn count_keys(&self, owner: UserId, search: Option<&str>) -> StoreResult<i64> {
                let search = search.map(rows::contains_pattern);
                let sql = sql_store::count_keys_sql(search.is_some());
                let mut query = sqlx::query_scalar(&sql).bind(owner.0);
                if let Some(pattern) = search.as_ref() {
                    query = query.bind(pattern).persistent(SEARCH_PERSISTENT);
                }
                query.fetch_one(&self.pool).await.map_err(db)
            }

            async fn count_keys_upto(&self, owner: UserId, search: Option<&str>, cap: i64) -> StoreResult<i64> {
                let search = search.map(rows::contains_pattern);
                let sql = sql_store::count_keys_upto_sql(search.is_some());
                let mut query = sqlx::query_scalar(&sql).bind(owner.0);
                if let Some(pattern) = search.as_ref() {
                    query = query.bind(pattern).persistent(SEARCH_PERSISTENT);
                }
                query.bind(cap.max(0)).fetch_one(&self.pool).await.map_err(db)
            }

            async fn revoke_key(
                &self,
                owner: Option<UserId>,
                id: &CredentialId,
                who: &Who,
                at: Millis,
            ) -> StoreResult<Option<KeyRecord>> {
                let mut tx = self.pool.begin().await.map_err(db)?;
                let row = sqlx::query(&format!(
                    "UPDATE api_keys SET status = 'revoked', revoked_at = $1
                     WHERE id = $2 AND (CAST($3 AS BIGINT) IS NULL OR owner_id = $3) AND status <> 'revoked' RETURNING {KEY_COLUMNS}"
                ))
                .bind(at)
                .bind(id.as_str())
                .bind(owner.map(|o| o.0))
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
                let Some(row) = row else { return Ok(None) };
                let mut rec = key_from_row(&row)?;
                publish(&mut tx, Some(id.as_str()), None, at).await?;
                let event = NewAuditEvent {
                    at,
                    owner: rec.owner,
                    who: who.clone(),
                    action: audit_kind::KEY_DELETED,
                    key_id: Some(*id),
                    key_name: Some(rec.name.to_string()),
                    detail: None,
                };
                record_event(&mut *tx, &event).await?;
                tx.commit().await.map_err(db)?;
                rec.status = atna_domain::KeyStatus::Revoked;
                Ok(Some(rec))
            }

            async fn auth_record(&self, id: &CredentialId) -> StoreResult<Option<AuthRecord>> {
                let row = sqlx::query(
                    "SELECT k.*, u.email AS owner_email, u.disabled AS owner_disabled
                     FROM api_keys k JOIN users u ON u.id = k.owner_id WHERE k.id = $1",
                )
                .bind(id.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
                row.as_ref().map(rows::auth_from_row).transpose()
            }

            async fn sync_limits(
                &self,
                node: &str,
                batch: &[LimitUses],
                since: Millis,
                forget_before: Millis,
                now: Millis,
            ) -> StoreResult<LimitSync> {
                let mut tx = self.pool.begin().await.map_err(db)?;
                let mut quotas = Vec::new();
                let (day, month) = (
                    atna_domain::RefillInterval::Daily.start_of(now),
                    atna_domain::RefillInterval::Monthly.start_of(now),
                );
                let take = sql_store::quota_take_sql();
                let mut wrote = false;
                for u in batch {
                    if u.rate_uses > 0 {
                        wrote = true;
                        sqlx::query("INSERT INTO rate_limit_uses (key_id, node, at, uses) VALUES ($1, $2, $3, $4)")
                            .bind(u.id.as_str())
                            .bind(node)
                            .bind(now)
                            .bind(u.rate_uses)
                            .execute(&mut *tx)
                            .await
                            .map_err(db)?;
                    }
                    if let Some(n) = u.quota_uses {
                        let row = sqlx::query(&take)
                            .bind(n)
                            .bind(day)
                            .bind(month)
                            .bind(u.id.as_str())
                            .fetch_optional(&mut *tx)
                            .await
                            .map_err(db)?;
                        if let Some(r) = row {
                            use sqlx::Row as _;
                            quotas.push(QuotaLeft {
                                id: u.id,
                                remaining: r.try_get("quota_remaining").map_err(db)?,
                                refilled_at: r.try_get("quota_refilled_at").map_err(db)?,
                            });
                        }
                    }
                }
                if wrote {
                    sqlx::query("DELETE FROM rate_limit_uses WHERE at < $1")
                        .bind(forget_before)
                        .execute(&mut *tx)
                        .await
                        .map_err(db)?;
                }
                let rows = sqlx::query("SELECT seq, key_id, at, uses FROM rate_limit_uses WHERE node <> $1 AND at > $2")
                    .bind(node)
                    .bind(since)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(db)?;
                tx.commit().await.map_err(db)?;
                let remote = rows.iter().map(rows::remote_uses_from_row).collect::<StoreResult<Vec<_>>>()?;
                Ok(LimitSync { quotas, remote })
            }

            async fn usage_buckets(
                &self,
                id: &CredentialId,
                granularity: Granularity,
                from: Millis,
                to: Millis,
            ) -> StoreResult<Vec<UsageRow>> {
                let table = sql_store::usage_table(granularity);
                let rows: Vec<(i64, String, i64)> = sqlx::query_as(&format!(
                    "SELECT start, outcome, count FROM {table}
                     WHERE key_id = $1 AND start >= $2 AND start < $3 ORDER BY start, outcome"
                ))
                .bind(id.as_str())
                .bind(from)
                .bind(to)
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
                Ok(rows.into_iter().map(|(start, outcome, count)| UsageRow { start, outcome, count }).collect())
            }

            async fn daily_allowed(
                &self,
                ids: &[CredentialId],
                from: Millis,
            ) -> StoreResult<Vec<(CredentialId, Millis, i64)>> {
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                let mut q = sqlx::QueryBuilder::<$db>::new("SELECT key_id, start, count FROM usage_daily WHERE start >= ");
                q.push_bind(from);
                q.push(" AND outcome = 'VALID' AND key_id IN (");
                let mut list = q.separated(", ");
                for id in ids {
                    list.push_bind(id.as_str());
                }
                q.push(") ORDER BY key_id, start");
                let rows: Vec<(String, i64, i64)> = q.build_query_as().fetch_all(&self.pool).await.map_err(db)?;
                rows.into_iter()
                    .map(|(id, start, n)| {
                        let id = CredentialId::parse(&id).map_err(|_| StoreError::Corrupt(format!("usage of key {id}")))?;
                        Ok((id, start, n))
                    })
                    .collect()
            }

            async fn prune_usage(&self, hours_before: Millis, days_before: Millis) -> StoreResult<u64> {
                let mut n = 0;
                for (table, before) in [("usage_hourly", hours_before), ("usage_daily", days_before)] {
                    n += sqlx::query(&format!("DELETE FROM {table} WHERE start < $1"))
                        .bind(before)
                        .execute(&self.pool)
                        .await
                        .map_err(db)?
                        .rows_affected();
                }
                Ok(n)
            }

            async fn auth_records(&self, ids: &[CredentialId]) -> StoreResult<Vec<AuthRecord>> {
                let mut out = Vec::with_capacity(ids.len());
                // Few enough parameters per statement for every backend (SQLite allows 32,766, PostgreSQL 65,535).
                for chunk in ids.chunks(500) {
                    let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
                    let sql = format!(
                        "SELECT k.*, u.email AS owner_email, u.disabled AS owner_disabled
                         FROM api_keys k JOIN users u ON u.id = k.owner_id WHERE k.id IN ({})",
                        marks.join(", ")
                    );
                    let mut q = sqlx::query(&sql);
                    for id in chunk {
                        q = q.bind(id.as_str());
                    }
                    for row in q.fetch_all(&self.pool).await.map_err(db)? {
                        out.push(rows::auth_from_row(&row)?);
                    }
                }
                Ok(out)
            }

            async fn key_prefixes(&self) -> StoreResult<KeyPrefixes> {
                let rows = sqlx::query("SELECT prefix, is_current FROM key_prefixes ORDER BY recorded_at, prefix")
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db)?;
                rows::key_prefixes_from_rows(&rows)
            }

            async fn init_key_prefix(&self, prefix: &atna_domain::KeyPrefix, at: Millis) -> StoreResult<KeyPrefixes> {
                let now = self.key_prefixes().await?;
                if now.current.is_some() {
                    return Ok(now);
                }
                // Another process starting at the same time may record its own first: the partial unique index lets
                // one current prefix exist, and the loser reads the winner's.
                let r = sqlx::query(
                    "INSERT INTO key_prefixes (prefix, recorded_at, is_current) VALUES ($1, $2, TRUE)
                     ON CONFLICT (prefix) DO UPDATE SET is_current = TRUE",
                )
                .bind(prefix.as_str())
                .bind(at)
                .execute(&self.pool)
                .await;
                match r {
                    Ok(_) => {}
                    Err(sqlx::Error::Database(d)) if d.is_unique_violation() => {}
                    Err(e) => return Err(db(e)),
                }
                self.key_prefixes().await
            }

            async fn set_key_prefix(&self, prefix: &atna_domain::KeyPrefix, at: Millis) -> StoreResult<KeyPrefixChange> {
                let mut tx = self.pool.begin().await.map_err(db)?;
                // A write first, so SQLite takes its write lock before reading what it changes.
                let previous: Option<String> =
                    sqlx::query_scalar("UPDATE key_prefixes SET is_current = FALSE WHERE is_current RETURNING prefix")
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(db)?;
                let previous = previous
                    .map(|p| atna_domain::KeyPrefix::parse(&p))
                    .transpose()
                    .map_err(|_| StoreError::Corrupt("key prefix".into()))?;
                if previous.as_ref() == Some(prefix) {
                    tx.rollback().await.map_err(db)?;
                    return Ok(KeyPrefixChange { previous, unchanged: true });
                }
                sqlx::query(
                    "INSERT INTO key_prefixes (prefix, recorded_at, is_current) VALUES ($1, $2, TRUE)
                     ON CONFLICT (prefix) DO UPDATE SET is_current = TRUE",
                )
                .bind(prefix.as_str())
                .bind(at)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                let detail = format!("{} -> {prefix}", previous.as_ref().map_or("(none)", |p| p.as_str()));
                sqlx::query(
                    "INSERT INTO audit_events (at, owner_id, actor_id, action, detail)
                     VALUES ($1, $2, NULL, 'installation.key_prefix_changed', $3)",
                )
                .bind(at)
                .bind(INSTALLATION_OWNER.0)
                .bind(detail)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                publish(&mut tx, None, Some(INSTALLATION_CHANGE_USER), at).await?;
                tx.commit().await.map_err(db)?;
                Ok(KeyPrefixChange { previous, unchanged: false })
            }

            async fn record_leaks(
                &self,
                reports: &[NewLeakReport],
                action: LeakAction,
                at: Millis,
            ) -> StoreResult<Vec<(KeyRecord, LeakOutcome)>> {
                let mut out = Vec::with_capacity(reports.len());
                if reports.is_empty() {
                    return Ok(out);
                }
                let mut tx = self.pool.begin().await.map_err(db)?;
                for r in reports {
                    let id = r.key.as_str();
                    // The report row first: a replay (same key, same place) conflicts and changes nothing.
                    let report: Option<i64> = sqlx::query_scalar(
                        "INSERT INTO leak_reports (key_id, owner_id, source, url, reported_at)
                         SELECT id, owner_id, $2, $3, $4 FROM api_keys WHERE id = $1
                         ON CONFLICT (key_id, url) DO NOTHING RETURNING id",
                    )
                    .bind(id)
                    .bind(r.source)
                    .bind(&r.url)
                    .bind(at)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db)?;
                    let changed = match (report, action) {
                        (None, _) | (Some(_), LeakAction::Notify) => None,
                        (Some(_), LeakAction::Revoke) => sqlx::query_scalar::<_, String>(
                            "UPDATE api_keys SET status = 'revoked', revoked_at = $1
                             WHERE id = $2 AND status <> 'revoked' RETURNING id",
                        )
                        .bind(at)
                        .bind(id)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(db)?
                        .map(|_| (LeakOutcome::Revoked, "key.deleted")),
                        (Some(_), LeakAction::Disable) => sqlx::query_scalar::<_, String>(
                            "UPDATE api_keys SET status = 'disabled' WHERE id = $1 AND status = 'active' RETURNING id",
                        )
                        .bind(id)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(db)?
                        .map(|_| (LeakOutcome::Disabled, "key.disabled")),
                    };
                    let row = sqlx::query(&format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1"))
                        .bind(id)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(db)?;
                    let Some(row) = row else {
                        return Err(StoreError::Corrupt(format!("leak report for a key that does not exist: {id}")));
                    };
                    let rec = key_from_row(&row)?;
                    let Some(report) = report else {
                        out.push((rec, LeakOutcome::Replayed));
                        continue;
                    };
                    let detail = if r.url.is_empty() { r.source.to_owned() } else { format!("{} {}", r.source, r.url) };
                    audit_detail(&mut tx, at, rec.owner, "key.leaked", &rec.id, rec.name.as_str(), &detail).await?;
                    let outcome = match changed {
                        Some((outcome, event)) => {
                            publish(&mut tx, Some(id), None, at).await?;
                            audit_detail(&mut tx, at, rec.owner, event, &rec.id, rec.name.as_str(), "leak report").await?;
                            outcome
                        }
                        None => LeakOutcome::Unchanged,
                    };
                    sqlx::query("UPDATE leak_reports SET outcome = $1 WHERE id = $2")
                        .bind(outcome.as_str())
                        .bind(report)
                        .execute(&mut *tx)
                        .await
                        .map_err(db)?;
                    out.push((rec, outcome));
                }
                tx.commit().await.map_err(db)?;
                Ok(out)
            }

            async fn leak_reports(&self, owner: UserId, limit: i64) -> StoreResult<Vec<LeakRecord>> {
                let rows = sqlx::query(
                    "SELECT l.key_id, k.name AS key_name, k.status, l.source, l.url, l.reported_at, l.outcome
                     FROM leak_reports l LEFT JOIN api_keys k ON k.id = l.key_id
                     WHERE l.owner_id = $1 ORDER BY l.reported_at DESC, l.id DESC LIMIT $2",
                )
                .bind(owner.0)
                .bind(limit)
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
                rows.iter().map(rows::leak_from_row).collect()
            }

            async fn latest_change(&self) -> StoreResult<i64> {
                sqlx::query_scalar("SELECT CAST(COALESCE(MAX(seq), 0) AS BIGINT) FROM changes").fetch_one(self.feed_pool()).await.map_err(db)
            }

            async fn changes_since(&self, seq: i64, limit: i64) -> StoreResult<Vec<Change>> {
                let rows = sqlx::query("SELECT seq, key_id, user_id FROM changes WHERE seq > $1 ORDER BY seq LIMIT $2")
                    .bind(seq)
                    .bind(limit)
                    .fetch_all(self.feed_pool())
                    .await
                    .map_err(db)?;
                rows.iter().map(rows::change_from_row).collect()
            }

            async fn prune(&self, changes_before: Millis, now: Millis) -> StoreResult<Pruned> {
                let changes = sqlx::query("DELETE FROM changes WHERE at < $1")
                    .bind(changes_before)
                    .execute(&self.pool)
                    .await
                    .map_err(db)?
                    .rows_affected();
                let sessions = sqlx::query("DELETE FROM sessions WHERE idle_expires_at <= $1 OR absolute_expires_at <= $1")
                    .bind(now)
                    .execute(&self.pool)
                    .await
                    .map_err(db)?
                    .rows_affected();
                let sign_in_attempts = sqlx::query("DELETE FROM sign_in_attempts WHERE at < $1")
                .bind(changes_before)
                .execute(&self.pool)
                .await
                .map_err(db)?
                .rows_affected();
            let device_tokens = sqlx::query("DELETE FROM device_tokens WHERE expires_at <= $1")
                .bind(now)
                .execute(&self.pool)
                .await
                .map_err(db)?
                .rows_affected();
            let failed_sign_ins = sqlx::query("DELETE FROM audit_events WHERE action = $1 AND at < $2")
                .bind(audit_kind::SIGN_IN_FAILED)
                .bind(now.saturating_sub(FAILED_SIGN_IN_RETENTION))
                .execute(&self.pool)
                .await
                .map_err(db)?
                .rows_affected();
            Ok(Pruned { changes, sessions, sign_in_attempts, device_tokens, failed_sign_ins })
        }

        async fn add_setup_token(&self, token_hash: &[u8; 32], issuer: &str, at: Millis) -> StoreResult<()> {
            let mut tx = self.pool.begin().await.map_err(db)?;
            // The issuer's earlier links die with its restart; tokens of older versions have no issuer and expire.
            sqlx::query("DELETE FROM setup_tokens WHERE issuer = $1")
                .bind(issuer)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            sqlx::query("INSERT INTO setup_tokens (token_hash, issuer, created_at) VALUES ($1, $2, $3)")
                .bind(&token_hash[..])
                .bind(issuer)
                .bind(at)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            tx.commit().await.map_err(db)?;
            Ok(())
        }

        async fn setup_open(&self, token_hash: &[u8; 32], now: Millis) -> StoreResult<bool> {
            let open: i64 = sqlx::query_scalar(SETUP_OPEN)
                .bind(&token_hash[..])
                .bind(now.saturating_sub(atna_store::SETUP_TOKEN_TTL))
                .fetch_one(&self.pool)
                .await
                .map_err(db)?;
            Ok(open == 1)
        }

        async fn create_first_admin(&self, u: NewUser, token_hash: &[u8; 32]) -> StoreResult<Option<User>> {
            // The same exclusive start as an import: no other process can create a user in between.
            let mut tx = begin_import(&self.pool).await?;
            let open: i64 = sqlx::query_scalar(SETUP_OPEN)
                .bind(&token_hash[..])
                .bind(u.created_at.saturating_sub(atna_store::SETUP_TOKEN_TTL))
                .fetch_one(&mut *tx)
                .await
                .map_err(db)?;
            if open != 1 {
                tx.rollback().await.map_err(db)?;
                return Ok(None);
            }
            let row = insert_user(&mut *tx, &u).await.map_err(db)?;
            sqlx::query("DELETE FROM setup_tokens").execute(&mut *tx).await.map_err(db)?;
            tx.commit().await.map_err(db)?;
            user_from_row(&row).map(Some)
        }

        async fn throttle_begin(&self, rules: &[ThrottleRule<'_>], now: Millis) -> StoreResult<Option<Millis>> {
            let keys: Vec<&str> = rules.iter().map(|r| r.key).collect();
            let mut tx = begin_throttle(&self.pool, &keys).await?;
            let mut wait: Millis = 0;
            for rule in rules {
                if rule.limit <= 0 {
                    continue;
                }
                let since = now - rule.window;
                match rule.over {
                    Over::Refuse => {
                        let recent: Vec<i64> = sqlx::query_scalar(
                            "SELECT at FROM sign_in_attempts WHERE key = $1 AND at > $2 ORDER BY at DESC LIMIT $3",
                        )
                        .bind(rule.key)
                        .bind(since)
                        .bind(rule.limit)
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(db)?;
                        if recent.len() as i64 >= rule.limit {
                            // Allowed again when the limit-th newest attempt leaves the window.
                            wait = wait.max(recent[recent.len() - 1] + rule.window - now);
                        }
                    }
                    Over::Backoff { first, max } => {
                        let (n, newest): (i64, Option<i64>) = sqlx::query_as(
                            "SELECT COUNT(*), MAX(at) FROM sign_in_attempts WHERE key = $1 AND at > $2",
                        )
                        .bind(rule.key)
                        .bind(since)
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(db)?;
                        if let Some(newest) = newest {
                            wait = wait.max(newest + backoff_delay(n, rule.limit, first, max) - now);
                        }
                    }
                }
            }
            if wait > 0 {
                tx.rollback().await.map_err(db)?;
                return Ok(Some(wait));
            }
            for key in keys {
                sqlx::query("INSERT INTO sign_in_attempts (key, at) VALUES ($1, $2)")
                    .bind(key)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
            }
            tx.commit().await.map_err(db)?;
            Ok(None)
        }

        async fn throttle_succeed(&self, forget: &str, take_back: &[&str]) -> StoreResult<()> {
            let mut tx = self.pool.begin().await.map_err(db)?;
            sqlx::query("DELETE FROM sign_in_attempts WHERE key = $1").bind(forget).execute(&mut *tx).await.map_err(db)?;
            for key in take_back {
                sqlx::query(
                    "DELETE FROM sign_in_attempts WHERE id = \
                     (SELECT id FROM sign_in_attempts WHERE key = $1 ORDER BY id DESC LIMIT 1)",
                )
                .bind(*key)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            }
            tx.commit().await.map_err(db)
        }

        async fn add_device_token(&self, token_hash: &[u8; 32], user: UserId, expires_at: Millis) -> StoreResult<()> {
            sqlx::query("INSERT INTO device_tokens (token_hash, user_id, expires_at) VALUES ($1, $2, $3)")
                .bind(&token_hash[..])
                .bind(user.0)
                .bind(expires_at)
                .execute(&self.pool)
                .await
                .map_err(db)?;
            Ok(())
        }

        async fn device_token_user(&self, token_hash: &[u8; 32], now: Millis) -> StoreResult<Option<UserId>> {
            let id: Option<i64> =
                sqlx::query_scalar("SELECT user_id FROM device_tokens WHERE token_hash = $1 AND expires_at > $2")
                    .bind(&token_hash[..])
                    .bind(now)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db)?;
            Ok(id.map(UserId))
        }

            async fn audit_page(&self, q: &AuditQuery) -> StoreResult<Vec<AuditEvent>> {
                let sql = sql_store::audit_page_sql(q);
                let mut query = sqlx::query(&sql);
                if let Some(o) = q.owner {
                    query = query.bind(o.0);
                }
                if let Some(k) = &q.key {
                    query = query.bind(k.as_str());
                }
                if let Some(a) = &q.action {
                    query = query.bind(a.as_str());
                }
                if let Some(t) = q.since {
                    query = query.bind(t);
                }
                if let Some(t) = q.until {
                    query = query.bind(t);
                }
                if let Some((t, id)) = q.after {
                    query = query.bind(t).bind(id);
                }
                let rows = query.bind(q.limit).fetch_all(&self.pool).await.map_err(db)?;
                rows.iter().map(rows::audit_from_row).collect()
            }

            async fn append_audit(&self, event: &NewAuditEvent) -> StoreResult<()> {
                record_event(&self.pool, event).await
            }

            async fn create_session(&self, s: NewSession) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO sessions (token_hash, user_id, csrf, created_at, idle_expires_at, absolute_expires_at)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&s.token_hash[..])
                .bind(s.user.0)
                .bind(&s.csrf)
                .bind(s.created_at)
                .bind(s.idle_expires_at)
                .bind(s.absolute_expires_at)
                .execute(&self.pool)
                .await
                .map_err(db)?;
                Ok(())
            }

            async fn session(&self, token_hash: &[u8; 32], now: Millis) -> StoreResult<Option<Session>> {
                let row = sqlx::query(
                    "SELECT u.*, s.csrf, s.created_at AS s_created_at, s.idle_expires_at, s.absolute_expires_at
                     FROM sessions s JOIN users u ON u.id = s.user_id
                     WHERE s.token_hash = $1 AND s.idle_expires_at > $2 AND s.absolute_expires_at > $2",
                )
                .bind(&token_hash[..])
                .bind(now)
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
                row.as_ref().map(rows::session_from_row).transpose()
            }

            async fn touch_session(&self, token_hash: &[u8; 32], idle_expires_at: Millis) -> StoreResult<()> {
                sqlx::query("UPDATE sessions SET idle_expires_at = $1 WHERE token_hash = $2")
                    .bind(idle_expires_at)
                    .bind(&token_hash[..])
                    .execute(&self.pool)
                    .await
                    .map_err(db)?;
                Ok(())
            }

            async fn delete_session(&self, token_hash: &[u8; 32]) -> StoreResult<()> {
                sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
                    .bind(&token_hash[..])
                    .execute(&self.pool)
                    .await
                    .map_err(db)?;
                Ok(())
            }

            async fn delete_user_sessions(&self, user: UserId) -> StoreResult<u64> {
                let r = sqlx::query("DELETE FROM sessions WHERE user_id = $1")
                    .bind(user.0)
                    .execute(&self.pool)
                    .await
                    .map_err(db)?;
                Ok(r.rows_affected())
            }

            async fn export_all(&self) -> StoreResult<Snapshot> {
                // One snapshot of all three tables, even while nodes keep serving.
                let mut tx = self.pool.begin_with(EXPORT_BEGIN).await.map_err(db)?;
                let users = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY id"))
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(db)?
                    .iter()
                    .map(rows::exported_user_from_row)
                    .collect::<StoreResult<Vec<_>>>()?;
                let keys = sqlx::query(&format!(
                    "SELECT id, owner_id, name, secret_hash, scopes, status, created_at, expires_at, revoked_at,
                            last_used_at, last_used_ip, use_count, created_by_key, ip_allowlist, {LIMIT_COLUMNS}, rolled_from,
                            rolled_to
                     FROM api_keys ORDER BY {KEY_ORDER}"
                ))
                .fetch_all(&mut *tx)
                .await
                .map_err(db)?
                .iter()
                .map(rows::exported_key_from_row)
                .collect::<StoreResult<Vec<_>>>()?;
                let audit_events =
                    sqlx::query(
                        "SELECT at, owner_id, actor_id, actor_key_id, action, key_id, key_name, ip, user_agent, detail
                         FROM audit_events ORDER BY id",
                    )
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(db)?
                        .iter()
                        .map(rows::exported_audit_from_row)
                        .collect::<StoreResult<Vec<_>>>()?;
                let key_prefixes = sqlx::query("SELECT prefix, recorded_at, is_current FROM key_prefixes ORDER BY prefix")
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(db)?
                    .iter()
                    .map(|r| {
                        use sqlx::Row;
                        Ok(ExportedKeyPrefix {
                            prefix: r.try_get("prefix").map_err(db)?,
                            recorded_at: r.try_get("recorded_at").map_err(db)?,
                            current: r.try_get("is_current").map_err(db)?,
                        })
                    })
                    .collect::<StoreResult<Vec<_>>>()?;
                tx.commit().await.map_err(db)?;
                let exported_at = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis() as Millis)
                    .unwrap_or_default();
                Ok(Snapshot { format: SNAPSHOT_FORMAT.to_owned(), exported_at, users, keys, audit_events, key_prefixes })
            }

            async fn import_all(&self, snap: &Snapshot) -> StoreResult<ImportSummary> {
                snap.check()?;
                // No other writer may slip in between the emptiness check and the inserts.
                let mut tx = begin_import(&self.pool).await?;
                let present: i64 = sqlx::query_scalar(
                    "SELECT (SELECT COUNT(*) FROM users) + (SELECT COUNT(*) FROM api_keys) + (SELECT COUNT(*) FROM audit_events)",
                )
                .fetch_one(&mut *tx)
                .await
                .map_err(db)?;
                if present > 0 {
                    return Err(StoreError::NotEmpty);
                }
                for u in &snap.users {
                    sqlx::query(
                        "INSERT INTO users (id, email, password_hash, is_admin, disabled, created_at)
                         VALUES ($1, $2, $3, $4, $5, $6)",
                    )
                    .bind(u.id)
                    .bind(&u.email)
                    .bind(&u.password_hash)
                    .bind(u.is_admin)
                    .bind(u.disabled)
                    .bind(u.created_at)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| rows::conflict(e, "a user in the export file"))?;
                }
                for k in &snap.keys {
                    let hash = atna_domain::SecretHash::from_hex(&k.secret_hash)
                        .ok_or_else(|| StoreError::InvalidSnapshot(format!("key {}: bad secret_hash", k.id)))?;
                    sqlx::query(&format!(
                        "INSERT INTO api_keys (id, owner_id, name, secret_hash, scopes, status, created_at, expires_at,
                                               revoked_at, last_used_at, last_used_ip, use_count, created_by_key,
                                               ip_allowlist, {LIMIT_COLUMNS}, rolled_from, rolled_to)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19,
                                 $20, $21, $22, $23)",
                    ))
                    .bind(&k.id)
                    .bind(k.owner_id)
                    .bind(&k.name)
                    .bind(&hash.as_bytes()[..])
                    .bind(&k.scopes)
                    .bind(&k.status)
                    .bind(k.created_at)
                    .bind(k.expires_at)
                    .bind(k.revoked_at)
                    .bind(k.last_used_at)
                    .bind(k.last_used_ip.as_deref())
                    .bind(k.use_count)
                    .bind(k.created_by_key.as_deref())
                    .bind(k.ip_allowlist.as_deref())
                    .bind(k.rate_limit)
                    .bind(k.rate_period_seconds)
                    .bind(k.quota_remaining)
                    .bind(k.quota_total)
                    .bind(k.quota_refilled_at)
                    .bind(k.quota_refill_amount)
                    .bind(k.quota_refill_interval.as_deref())
                    .bind(k.rolled_from.as_deref())
                    .bind(k.rolled_to.as_deref())
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| rows::conflict(e, "a key in the export file"))?;
                }
                for e in &snap.audit_events {
                    sqlx::query(
                        "INSERT INTO audit_events (at, owner_id, actor_id, action, key_id, key_name, actor_key_id, ip,
                                                   user_agent, detail)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                    )
                    .bind(e.at)
                    .bind(e.owner_id)
                    .bind(e.actor_id)
                    .bind(&e.action)
                    .bind(e.key_id.as_deref())
                    .bind(e.key_name.as_deref())
                    .bind(e.actor_key_id.as_deref())
                    .bind(e.ip.as_deref())
                    .bind(e.user_agent.as_deref())
                    .bind(e.detail.as_deref())
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                }
                // The prefixes the snapshot's keys were issued with replace whatever a start of this (empty) database
                // recorded; a snapshot from before prefixes existed holds only `atna_` keys.
                let mut prefixes = snap.key_prefixes.clone();
                if prefixes.is_empty() && !snap.keys.is_empty() {
                    prefixes.push(ExportedKeyPrefix { prefix: "atna".into(), recorded_at: snap.exported_at, current: false });
                }
                if !prefixes.is_empty() {
                    sqlx::query("DELETE FROM key_prefixes").execute(&mut *tx).await.map_err(db)?;
                }
                for p in &prefixes {
                    sqlx::query("INSERT INTO key_prefixes (prefix, recorded_at, is_current) VALUES ($1, $2, $3)")
                        .bind(&p.prefix)
                        .bind(p.recorded_at)
                        .bind(p.current)
                        .execute(&mut *tx)
                        .await
                        .map_err(db)?;
                }
                after_import(&mut tx).await?;
                tx.commit().await.map_err(db)?;
                Ok(snap.summary())
            }

            $($specific)*
        }

        /// Records one audit event, inside the transaction of the change it describes (or on its own for events that
        /// change nothing else). Every audited change passes through here, so this is the one place where something
        /// that must happen with each event (a reminder's outbox entry) goes too, in the same transaction.
        async fn record_event<'e, E: sqlx::Executor<'e, Database = $db>>(ex: E, e: &NewAuditEvent) -> StoreResult<()> {
            sqlx::query(
                "INSERT INTO audit_events (at, owner_id, actor_id, action, key_id, key_name, actor_key_id, ip, user_agent,
                                           detail)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(e.at)
            .bind(e.owner.0)
            .bind(e.who.actor.user().map(|u| u.0))
            .bind(e.action)
            .bind(e.key_id.as_ref().map(CredentialId::as_str))
            .bind(e.key_name.as_deref())
            .bind(e.who.actor.key().as_ref().map(CredentialId::as_str))
            .bind(e.who.ip.as_deref())
            .bind(e.who.user_agent.as_deref())
            .bind(e.detail.as_deref())
            .execute(ex)
            .await
            .map_err(db)?;
            Ok(())
        }

        /// An audit event by the installation itself (a leak report), with a detail.
        async fn audit_detail(
            tx: &mut sqlx::Transaction<'_, $db>,
            at: Millis,
            owner: UserId,
            action: &str,
            key: &CredentialId,
            key_name: &str,
            detail: &str,
        ) -> StoreResult<()> {
            sqlx::query(
                "INSERT INTO audit_events (at, owner_id, actor_id, action, key_id, key_name, detail)
                 VALUES ($1, $2, NULL, $3, $4, $5, $6)",
            )
            .bind(at)
            .bind(owner.0)
            .bind(action)
            .bind(key.as_str())
            .bind(key_name)
            .bind(detail)
            .execute(&mut **tx)
            .await
            .map_err(db)?;
            Ok(())
        }

        /// The `key.created` event of a new key (naming the key it was rolled from, if any).
        fn key_created(k: &NewKey) -> NewAuditEvent {
            NewAuditEvent {
                at: k.created_at,
                owner: k.owner,
                who: k.actor.clone(),
                action: audit_kind::KEY_CREATED,
                key_id: Some(k.id),
                key_name: Some(k.name.to_string()),
                detail: k.rolled_from.map(|from| serde_json::json!({ "rolled_from": from.as_str() }).to_string()),
            }
        }

        /// Inserts a new key, returning the stored record.
        async fn insert_key_row(tx: &mut sqlx::Transaction<'_, $db>, k: &NewKey) -> StoreResult<KeyRecord> {
            let limits = StoredLimits::of(k.rules.rate_limit, k.rules.quota);
            let row = sqlx::query(&format!(
                "INSERT INTO api_keys (id, owner_id, name, secret_hash, scopes, created_at, expires_at, form_nonce,
                                       created_by_key, ip_allowlist, rolled_from, {LIMIT_COLUMNS})
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
                 RETURNING {KEY_COLUMNS}"
            ))
            .bind(k.id.as_str())
            .bind(k.owner.0)
            .bind(k.name.as_str())
            .bind(&k.hash.as_bytes()[..])
            .bind(k.scopes.to_stored())
            .bind(k.created_at)
            .bind(k.expires_at)
            .bind(k.form_nonce.as_deref())
            .bind(k.created_by_key.as_ref().map(CredentialId::as_str))
            .bind(k.rules.ip_allowlist.to_stored())
            .bind(k.rolled_from.as_ref().map(CredentialId::as_str))
            .bind(limits.rate_limit)
            .bind(limits.rate_period_seconds)
            .bind(limits.quota_remaining)
            .bind(limits.quota_total)
            .bind(limits.quota_refilled_at)
            .bind(limits.quota_refill_amount)
            .bind(limits.quota_refill_interval)
            .fetch_one(&mut **tx)
            .await
            .map_err(|e| rows::conflict(e, "a key with this name"))?;
            key_from_row(&row)
        }

        /// Inserts a user, returning the stored row.
        async fn insert_user<'e, E: sqlx::Executor<'e, Database = $db>>(
            ex: E,
            u: &NewUser,
        ) -> Result<DbRow, sqlx::Error> {
            sqlx::query(&format!(
                "INSERT INTO users (email, password_hash, is_admin, created_at) VALUES ($1, $2, $3, $4) \
                 RETURNING {USER_COLUMNS}"
            ))
            .bind(u.email.as_str())
            .bind(u.password_hash.as_str())
            .bind(u.is_admin)
            .bind(u.created_at)
            .fetch_one(ex)
            .await
        }

        /// 1 when the setup token `$1` is recorded, was issued after `$2` (now minus its lifetime) and no user exists
        /// yet, else 0.
        const SETUP_OPEN: &str = "SELECT CAST(CASE WHEN EXISTS (SELECT 1 FROM setup_tokens WHERE token_hash = $1
                                  AND created_at > $2) AND NOT EXISTS (SELECT 1 FROM users) THEN 1 ELSE 0 END AS BIGINT)";
    };
}
