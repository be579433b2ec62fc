//! `/v1/keys`: a key with the `keys:manage` scope manages its owner's keys.

use atna_domain::scope::MANAGE_KEYS;
use atna_domain::{ApiKeySecret, CredentialId};
use atna_store::{Actor, Granularity, KeyQuery, KeyRecord};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::dto::{
    CreateKey, CreatedKey, Key, KeyList, KeyMergePatch, ListParams, RollKey, RolledKey, UsageParams, UsageSeries,
};
use crate::audit::Origin;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiJson, Caller};
use crate::lifecycle::{self, KeyChanges, RollSpec};
use crate::service::{self, KeySpec};
use crate::AppState;
use crate::{clock, timeline};

const DEFAULT_LIMIT: i64 = 20;
const MAX_LIMIT: i64 = 100;

fn parse_id(id: &str) -> ApiResult<CredentialId> {
    // An ID that cannot exist is answered like one that does not: 404.
    CredentialId::parse(id).map_err(|_| ApiError::no_such_key())
}

/// Create a key. The response holds the Credential Secret: the only time it is ever returned.
#[utoipa::path(post, path = "/v1/keys", tag = "keys", request_body = CreateKey,
    security(("bearer" = ["keys:manage"])),
    responses(
        (status = 201, description = "Created; `secret` is shown this once", body = CreatedKey),
        (status = 400, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or bad key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Lacks `keys:manage`, asks for scopes it lacks, or `ip_not_allowed` (the calling key's IP allowlist)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A key with this name exists", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not `application/json`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid name, scopes, expiry, IP allowlist, rate limit or quota (`invalid_ip_allowlist` names the bad entry; `invalid_rate_limit`, `invalid_quota`; `expiry_beyond_caller` / `ip_allowlist_beyond_caller` / `rate_limit_beyond_caller` / `quota_beyond_caller`: a key cannot make a key that outlives it, works from more addresses, calls faster or has more uses than it has left; `lifetime_exceeds_policy`: `expires_at` is beyond the installation's maximum key lifetime; left out, the policy's default lifetime applies)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited` or `usage_exceeded`: the calling key's rate limit or quota (with `Retry-After`)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is not reachable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(s): State<AppState>,
    caller: Caller,
    origin: Origin,
    ApiJson(body): ApiJson<CreateKey>,
) -> ApiResult<Response> {
    caller.require(MANAGE_KEYS)?;
    let parent = &caller.0.record;
    let owner = parent.owner;
    let now = clock::now();
    let spec = KeySpec {
        once: None,
        name: &body.name,
        scopes: &body.scopes,
        expires_at: body.expires_at.map(|t| t.timestamp_millis()),
        ip_allowlist: body.ip_allowlist.as_deref().unwrap_or_default(),
        rate_limit: body.rate_limit,
        quota: body.quota.as_ref(),
        by_key: Some(parent),
    };
    let actor = origin.who(Actor::Key { user: owner, key: parent.id });
    // The whole response is built before the key is committed: nothing can fail between the commit and the secret
    // leaving.
    let present = |rec: &KeyRecord, secret: &ApiKeySecret| {
        let body = CreatedKey { key: Key::under(rec, now, &s.settings.policy), secret: secret.expose().to_owned() };
        let json = serde_json::to_vec(&body).map_err(|_| ApiError::internal())?;
        let location = HeaderValue::from_str(&format!("/v1/keys/{}", rec.id)).map_err(|_| ApiError::internal())?;
        Ok::<_, ApiError>(
            (
                StatusCode::CREATED,
                [
                    (header::LOCATION, location),
                    (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
                    (header::CONTENT_TYPE, HeaderValue::from_static("application/json")),
                ],
                json,
            )
                .into_response(),
        )
    };
    let lifetime = service::Lifetime { policy: &s.settings.policy, never: false };
    service::create_key_under(s.store.as_ref(), owner, actor, spec, lifetime, now, present).await?
}

/// List the owner's keys, newest first. Never includes secrets.
#[utoipa::path(get, path = "/v1/keys", tag = "keys", params(ListParams),
    security(("bearer" = ["keys:manage"])),
    responses(
        (status = 200, body = KeyList),
        (status = 400, description = "Bad cursor or limit", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or bad key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Lacks `keys:manage`, or `ip_not_allowed` (the calling key's IP allowlist)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is not reachable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(s): State<AppState>,
    caller: Caller,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<KeyList>> {
    caller.require(MANAGE_KEYS)?;
    let Query(p) = params.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let limit = p.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request("invalid_limit", format!("`limit` must be between 1 and {MAX_LIMIT}.")));
    }
    let after = p.cursor.as_deref().map(parse_cursor).transpose()?;
    let search = p.search.filter(|s| !s.trim().is_empty());
    let q = KeyQuery { after, limit, search };
    let mut recs = s.store.list_keys(caller.0.record.owner, &q).await?;
    let next_cursor =
        (recs.len() as i64 == limit).then(|| recs.last().map(|r| format!("{}.{}", r.created_at, r.id))).flatten();
    let now = clock::now();
    let data = recs
        .iter_mut()
        .map(|r| {
            s.verifier.overlay_usage(r);
            Key::under(r, now, &s.settings.policy)
        })
        .collect();
    Ok(Json(KeyList { data, next_cursor }))
}

fn parse_cursor(c: &str) -> ApiResult<(i64, CredentialId)> {
    let bad = || ApiError::bad_request("invalid_cursor", "`cursor` must be a `next_cursor` from a previous page.");
    let (t, id) = c.split_once('.').ok_or_else(bad)?;
    Ok((t.parse().map_err(|_| bad())?, CredentialId::parse(id).map_err(|_| bad())?))
}

/// One key of the owner.
#[utoipa::path(get, path = "/v1/keys/{id}", tag = "keys", params(("id" = String, Path, description = "Credential ID", pattern = "^[0-9A-Za-z]{16}$")),
    security(("bearer" = ["keys:manage"])),
    responses(
        (status = 200, body = Key),
        (status = 401, description = "Missing or bad key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Lacks `keys:manage`, or `ip_not_allowed` (the calling key's IP allowlist)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such key of yours", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is not reachable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(State(s): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<Json<Key>> {
    caller.require(MANAGE_KEYS)?;
    let id = parse_id(&id)?;
    let mut rec = s.store.get_key(caller.0.record.owner, &id).await?.ok_or_else(ApiError::no_such_key)?;
    s.verifier.overlay_usage(&mut rec);
    Ok(Json(Key::under(&rec, clock::now(), &s.settings.policy)))
}

/// Delete a key: permanent, and it stops working at once, everywhere.
#[utoipa::path(delete, path = "/v1/keys/{id}", tag = "keys", params(("id" = String, Path, description = "Credential ID", pattern = "^[0-9A-Za-z]{16}$")),
    security(("bearer" = ["keys:manage"])),
    responses(
        (status = 204, description = "Deleted; the key is revoked"),
        (status = 401, description = "Missing or bad key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Lacks `keys:manage`, or `ip_not_allowed` (the calling key's IP allowlist)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such key of yours", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "`key_already_deleted`: this key was deleted before", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is not reachable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete(
    State(s): State<AppState>,
    caller: Caller,
    origin: Origin,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(MANAGE_KEYS)?;
    let id = parse_id(&id)?;
    let owner = caller.0.record.owner;
    let who = origin.who(Actor::Key { user: owner, key: caller.0.record.id });
    let now = clock::now();
    match service::delete_key(s.store.as_ref(), Some(&s.verifier), Some(owner), &id, &who, now).await? {
        Some(k) => {
            s.notifier.enqueue_logged(&k, atna_domain::ReminderKind::Deleted, now).await;
            Ok(StatusCode::NO_CONTENT)
        }
        None => Err(service::why_not_deleted(s.store.as_ref(), Some(owner), &id).await?.into()),
    }
}

/// A key's usage over time: allowed requests and refused attempts by reason, per hour or per day.
#[utoipa::path(get, path = "/v1/keys/{id}/usage", tag = "keys",
    params(("id" = String, Path, description = "Credential ID"), UsageParams),
    security(("bearer" = ["keys:manage"])),
    responses(
        (status = 200, body = UsageSeries),
        (status = 400, description = "`invalid_time` (`from`/`to` not RFC 3339), `invalid_granularity` (not `hour` or `day`), `invalid_range` (`from` not before `to`, or more than 1000 buckets)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or bad key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Lacks `keys:manage`, or `ip_not_allowed` (the calling key's IP allowlist)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such key of yours", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is not reachable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn usage(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    params: Result<Query<UsageParams>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<UsageSeries>> {
    caller.require(MANAGE_KEYS)?;
    let id = parse_id(&id)?;
    let Query(p) = params.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let granularity = match p.granularity.as_deref() {
        None | Some("hour") => Granularity::Hour,
        Some("day") => Granularity::Day,
        Some(_) => return Err(ApiError::bad_request("invalid_granularity", "`granularity` must be `hour` or `day`.")),
    };
    let time = |v: &str, name: &str| {
        chrono::DateTime::parse_from_rfc3339(v).map(|t| t.timestamp_millis()).map_err(|_| {
            ApiError::bad_request(
                "invalid_time",
                format!("`{name}` must be an RFC 3339 date-time, such as 2026-11-27T14:00:00Z."),
            )
        })
    };
    let to = p.to.as_deref().map(|v| time(v, "to")).transpose()?.unwrap_or_else(clock::now);
    let default_span = match granularity {
        Granularity::Hour => 24 * Granularity::Hour.millis(),
        Granularity::Day => 30 * Granularity::Day.millis(),
    };
    let step = granularity.millis();
    // By default the 24 hourly (30 daily) buckets up to the one `to` falls in.
    let default_from = granularity.floor(to.saturating_sub(1)) + step - default_span;
    let from = p.from.as_deref().map(|v| time(v, "from")).transpose()?.unwrap_or(default_from);
    if from >= to || (to - granularity.floor(from) + step - 1) / step > timeline::MAX_BUCKETS {
        return Err(ApiError::bad_request(
            "invalid_range",
            format!("`from` must be before `to`, at most {} buckets apart.", timeline::MAX_BUCKETS),
        ));
    }
    s.store.get_key(caller.0.record.owner, &id).await?.ok_or_else(ApiError::no_such_key)?;
    let buckets = timeline::series(s.store.as_ref(), Some(s.verifier.usage()), &id, granularity, from, to).await?;
    Ok(Json(UsageSeries::new(granularity, buckets)))
}

/// Roll a key: a new key with the same scopes and rules (and the old key's lifetime as its expiry) replaces it; the old
/// key keeps working until the overlap ends, then answers `key_expired`.
#[utoipa::path(post, path = "/v1/keys/{id}/roll", tag = "keys", request_body(content = Option<RollKey>, description = "Optional; an empty body rolls with a day's overlap"),
    params(("id" = String, Path, description = "Credential ID of the key to roll")),
    security(("bearer" = ["keys:manage"])),
    responses(
        (status = 201, description = "Rolled; `secret` (the new key's) is shown this once, `old_key` is the old key as it now is", body = RolledKey),
        (status = 400, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or bad key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Lacks `keys:manage`, `scope_not_held` (the key to roll has scopes the calling key lacks), or `ip_not_allowed`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such key of yours", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`key_already_rolled`: roll its successor instead; `name_taken`: no free name", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not `application/json`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid_overlap` (0 to 2592000 seconds) or an unknown member", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is not reachable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn roll(
    State(s): State<AppState>,
    caller: Caller,
    origin: Origin,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
    body: bytes::Bytes,
) -> ApiResult<Response> {
    caller.require(MANAGE_KEYS)?;
    let id = parse_id(&id)?;
    let req: RollKey =
        if body.iter().all(u8::is_ascii_whitespace) { RollKey::default() } else { json_body(&headers, &body, false)? };
    let me = &caller.0.record;
    let now = clock::now();
    let spec = RollSpec {
        overlap_secs: req.overlap_seconds.unwrap_or(lifecycle::DEFAULT_OVERLAP_SECS),
        name: None,
        by_key: Some(me),
        once: None,
        policy: &s.settings.policy,
    };
    let who = origin.who(Actor::Key { user: me.owner, key: me.id });
    let present = |old: &KeyRecord, new: &KeyRecord, secret: &ApiKeySecret| {
        let body =
            RolledKey { key: Key::new(new, now), secret: secret.expose().to_owned(), old_key: Key::new(old, now) };
        let json = serde_json::to_vec(&body).map_err(|_| ApiError::internal())?;
        let location = HeaderValue::from_str(&format!("/v1/keys/{}", new.id)).map_err(|_| ApiError::internal())?;
        Ok::<_, ApiError>(
            (
                StatusCode::CREATED,
                [
                    (header::LOCATION, location),
                    (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
                    (header::CONTENT_TYPE, HeaderValue::from_static("application/json")),
                ],
                json,
            )
                .into_response(),
        )
    };
    let owner = Some(me.owner);
    let (response, old) =
        lifecycle::roll_key(s.store.as_ref(), Some(&s.verifier), owner, &id, who, spec, now, present).await?;
    s.notifier.enqueue_logged(&old, atna_domain::ReminderKind::Rolled, now).await;
    response
}

/// Change a key: disable or enable it, rename it, change its scopes, expiry, IP allowlist, rate limit or quota. Takes
/// effect on every node at once.
#[utoipa::path(patch, path = "/v1/keys/{id}", tag = "keys",
    request_body(content = KeyMergePatch, content_type = "application/merge-patch+json", description = "A JSON merge patch (`application/json` is accepted too)"),
    params(("id" = String, Path, description = "Credential ID")),
    security(("bearer" = ["keys:manage"])),
    responses(
        (status = 200, description = "The key as it now is", body = Key),
        (status = 400, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or bad key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Lacks `keys:manage`, `scope_not_held`, or `ip_not_allowed`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such key of yours", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`name_taken`: you have a key with this name", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Neither `application/merge-patch+json` nor `application/json`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`unknown_member`, `invalid_body` (a member of the wrong type), `invalid_status`, `key_expired` (enabling an expired key), `invalid_name`, `invalid_scopes`, `invalid_expiry`, `expiry_beyond_caller`, `invalid_ip_allowlist`, `ip_allowlist_beyond_caller`, `invalid_rate_limit`, `invalid_quota`, `rate_limit_beyond_caller`, `quota_beyond_caller`, `lifetime_exceeds_policy` (an expiry beyond the policy's maximum lifetime, or none when it has one)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is not reachable", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn patch(
    State(s): State<AppState>,
    caller: Caller,
    origin: Origin,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
    body: bytes::Bytes,
) -> ApiResult<Json<Key>> {
    caller.require(MANAGE_KEYS)?;
    let id = parse_id(&id)?;
    let doc: serde_json::Value = json_body(&headers, &body, true)?;
    let changes = merge_patch(doc)?;
    let me = &caller.0.record;
    let who = origin.who(Actor::Key { user: me.owner, key: me.id });
    let now = clock::now();
    let mut rec = lifecycle::update_key(
        s.store.as_ref(),
        Some(&s.verifier),
        Some(me.owner),
        &id,
        changes,
        &who,
        Some(me),
        &s.settings.policy,
        now,
    )
    .await?;
    s.verifier.overlay_usage(&mut rec);
    Ok(Json(Key::new(&rec, now)))
}

/// A JSON body: `application/json`, or with `merge_patch` also `application/merge-patch+json`.
fn json_body<T: serde::de::DeserializeOwned>(
    headers: &axum::http::HeaderMap,
    body: &[u8],
    merge_patch: bool,
) -> ApiResult<T> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let ok = mime == "application/json" || (merge_patch && mime == "application/merge-patch+json");
    if !ok {
        let want =
            if merge_patch { "`application/merge-patch+json` or `application/json`" } else { "`application/json`" };
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("Send a JSON body with `Content-Type: {}`.", want.trim_matches('`')).replace("` or `", " or "),
        ));
    }
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| ApiError::bad_request("invalid_json", e.to_string()))?;
    serde_json::from_value(value).map_err(|e| {
        let msg = e.to_string();
        if msg.starts_with("unknown field") {
            ApiError::unprocessable("unknown_member", msg)
        } else {
            ApiError::unprocessable("invalid_body", msg.replace("struct RollKey", "a JSON object"))
        }
    })
}

/// Reads a merge patch of a key: each member present is a change, `null` removes what can be removed.
fn merge_patch(doc: serde_json::Value) -> ApiResult<KeyChanges> {
    use serde_json::Value;
    let Value::Object(members) = doc else {
        return Err(ApiError::unprocessable("invalid_body", "A merge patch of a key is a JSON object."));
    };
    let bad = |member: &str, what: &str| ApiError::unprocessable("invalid_body", format!("`{member}` must be {what}."));
    let mut c = KeyChanges::default();
    for (k, v) in members {
        match k.as_str() {
            "status" => c.status = Some(v.as_str().ok_or_else(|| bad("status", "`active` or `disabled`"))?.to_owned()),
            "name" => c.name = Some(v.as_str().ok_or_else(|| bad("name", "a string"))?.to_owned()),
            "scopes" => c.scopes = Some(string_list(&v).ok_or_else(|| bad("scopes", "a list of strings or null"))?),
            "expires_at" => {
                c.expires_at = Some(match v {
                    Value::Null => None,
                    Value::String(t) => Some(
                        chrono::DateTime::parse_from_rfc3339(&t)
                            .map_err(|_| bad("expires_at", "an RFC 3339 date-time or null"))?
                            .timestamp_millis(),
                    ),
                    _ => return Err(bad("expires_at", "an RFC 3339 date-time or null")),
                })
            }
            "ip_allowlist" => {
                let list = string_list(&v).ok_or_else(|| bad("ip_allowlist", "a list of CIDR ranges or null"))?;
                c.ip_allowlist = Some(Some(list).filter(|l| !l.is_empty()));
            }
            "rate_limit" => {
                c.rate_limit = Some(
                    serde_json::from_value(v)
                        .map_err(|_| bad("rate_limit", "`{\"limit\": N, \"period_seconds\": S}` or null"))?,
                )
            }
            "quota" => {
                c.quota = Some(serde_json::from_value(v).map_err(|_| {
                    bad("quota", "`{\"remaining\": N, \"refill\": {\"amount\": N, \"interval\": \"daily\"}}` or null")
                })?)
            }
            other => {
                return Err(ApiError::unprocessable(
                    "unknown_member",
                    format!(
                        "`{}` cannot be changed: a key's patch may hold `status`, `name`, `scopes`, `expires_at`, \
                         `ip_allowlist`, `rate_limit` and `quota`.",
                        other.chars().take(64).collect::<String>()
                    ),
                ))
            }
        }
    }
    Ok(c)
}

/// A JSON list of strings; `null` is the empty list.
fn string_list(v: &serde_json::Value) -> Option<Vec<String>> {
    match v {
        serde_json::Value::Null => Some(Vec::new()),
        serde_json::Value::Array(items) => items.iter().map(|i| i.as_str().map(str::to_owned)).collect(),
        _ => None,
    }
}
