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

/// A page of an owner's live keys, newest first; `after` adds the keyset cursor (`$4`, `$5`: created_at and ID of the
/// last key shown). The cursor is a row comparison in a query of its own, never `$n IS NULL OR …`: that is only a
/// filter (a plan made for any parameters must work without a cursor), so a late page read and dropped every earlier
/// row, while the row comparison is a range on the `api_keys_live_newest` index on both backends.
pub fn list_keys_sql(after: bool) -> String {
    let cursor = if after { "AND (created_at, id) < ($4, $5)" } else { "" };
    let columns = crate::rows::KEY_COLUMNS;
    format!(
        "SELECT {columns} FROM api_keys
         WHERE owner_id = $1 AND status <> 'revoked' {cursor}
           AND (CAST($2 AS TEXT) IS NULL OR lower(name) LIKE lower($2) ESCAPE '\\')
         ORDER BY created_at DESC, id DESC LIMIT $3"
    )
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
                let rules = patch.rules.clone().unwrap_or_else(|| before.rules.clone());
                let status = patch.status.filter(|s| *s != atna_domain::KeyStatus::Revoked).unwrap_or(before.status);
                let row = sqlx::query(&format!(
                    "UPDATE api_keys SET name = $1, scopes = $2, expires_at = $3, ip_allowlist = $4, status = $5
                     WHERE id = $6 RETURNING {KEY_COLUMNS}"
                ))
                .bind(name.as_str())
                .bind(scopes.to_stored())
                .bind(expires_at)
                .bind(rules.ip_allowlist.to_stored())
                .bind(status.as_str())
                .bind(id.as_str())
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
                if before.rules != after.rules {
                    changed.insert("ip_allowlist".into(), serde_json::json!({
                        "from": before.rules.ip_allowlist.to_stored(), "to": after.rules.ip_allowlist.to_stored()
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
                let sql = sql_store::list_keys_sql(q.after.is_some());
                let rows = match &q.after {
                    Some((t, id)) => sqlx::query(&sql)
                        .bind(owner.0)
                        .bind(search)
                        .bind(q.limit)
                        .bind(*t)
                        .bind(id.as_str()),
                    None => sqlx::query(&sql).bind(owner.0).bind(search).bind(q.limit),
                }
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
                rows.iter().map(key_from_row).collect()
            }

            async fn count_keys(&self, owner: UserId, search: Option<&str>) -> StoreResult<i64> {
                sqlx::query_scalar(
                    "SELECT COUNT(*) FROM api_keys WHERE owner_id = $1 AND status <> 'revoked'
                     AND (CAST($2 AS TEXT) IS NULL OR lower(name) LIKE lower($2) ESCAPE '\\')",
                )
                .bind(owner.0)
                .bind(search.map(rows::contains_pattern))
                .fetch_one(&self.pool)
                .await
                .map_err(db)
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
                            last_used_at, last_used_ip, use_count, created_by_key, ip_allowlist, rolled_from, rolled_to
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
                tx.commit().await.map_err(db)?;
                let exported_at = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis() as Millis)
                    .unwrap_or_default();
                Ok(Snapshot { format: SNAPSHOT_FORMAT.to_owned(), exported_at, users, keys, audit_events })
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
                    sqlx::query(
                        "INSERT INTO api_keys (id, owner_id, name, secret_hash, scopes, status, created_at, expires_at,
                                               revoked_at, last_used_at, last_used_ip, use_count, created_by_key,
                                               ip_allowlist, rolled_from, rolled_to)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
                    )
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
            let row = sqlx::query(&format!(
                "INSERT INTO api_keys (id, owner_id, name, secret_hash, scopes, created_at, expires_at, form_nonce,
                                       created_by_key, ip_allowlist, rolled_from)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING {KEY_COLUMNS}"
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
