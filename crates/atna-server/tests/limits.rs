//! Per-key rate limits and usage quotas over real sockets, at every entry point: `/v1/whoami` (the direct fast path),
//! the Bearer routes (`/v1/keys`), `/v1/forward-auth` and `/v1/keys/verify`. Exact timing is tested in process with an
//! injected clock (`limits.rs`, `atna-domain`'s `limits.rs`); here the periods are long (an hour) so that a burst is
//! exact whatever the machine's speed.

mod common;

use atna_domain::CredentialId;
use atna_server::api::dto::{QuotaRefill, QuotaRule, RateLimitRule};
use atna_server::service::{self, KeySpec};
use atna_store::{Actor, KeyRecord};
use common::TestApp;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// Creates a key for Alice with a rate limit (`limit` per hour) and/or a quota, as the operator would.
async fn limited(
    t: &TestApp,
    name: &str,
    scopes: &[&str],
    rate: Option<i64>,
    quota: Option<i64>,
) -> (KeyRecord, String) {
    let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
    let quota = quota.map(|remaining| QuotaRule { remaining, refill: None });
    let spec = KeySpec {
        rate_limit: rate.map(|limit| RateLimitRule { limit, period_seconds: 3600 }),
        quota: quota.as_ref(),
        once: None,
        name,
        scopes: &scopes,
        expires_at: None,
        by_key: None,
        ip_allowlist: &[],
    };
    let (rec, secret) =
        service::create_key(&*t.store, t.alice, Actor::Operator, spec, atna_server::clock::now()).await.unwrap();
    (rec, secret.expose().to_owned())
}

fn uses(t: &TestApp, id: &CredentialId) -> i64 {
    t.state.verifier.usage().pending(id).map_or(0, |p| p.count)
}

async fn code(r: reqwest::Response) -> (StatusCode, String) {
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    (status, body["code"].as_str().unwrap_or_default().to_owned())
}

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers().get(name).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
}

#[tokio::test]
async fn a_burst_of_n_plus_k_at_once_lets_exactly_n_through_with_ietf_headers() {
    let t = TestApp::spawn().await;
    let (rec, key) = limited(&t, "burst", &[], Some(5), None).await;
    // Eight at once, on eight connections.
    let sends = (0..8).map(|_| {
        let (c, url, key) = (reqwest::Client::new(), t.url("/v1/whoami"), key.clone());
        async move { c.get(url).bearer_auth(key).send().await.unwrap() }
    });
    let answers = futures::future::join_all(sends).await;
    let ok: Vec<_> = answers.iter().filter(|r| r.status() == StatusCode::OK).collect();
    assert_eq!(ok.len(), 5, "exactly the limit passes");
    let mut left: Vec<String> = ok.iter().map(|r| header(r, "ratelimit")).collect();
    left.sort();
    // One per 720 s; the allowance is whole 720 s after each use, so `t` grows with the uses.
    assert_eq!(left[0], r#""default";r=0;t=3600"#);
    assert!(left.contains(&r#""default";r=4;t=720"#.to_owned()), "{left:?}");
    for r in &ok {
        assert_eq!(header(r, "ratelimit-policy"), r#""default";q=5;w=3600"#);
    }
    for r in answers.into_iter().filter(|r| r.status() != StatusCode::OK) {
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(header(&r, "retry-after"), "720", "one request comes back every 3600/5 s");
        assert_eq!(header(&r, "ratelimit"), r#""default";r=0;t=720"#);
        assert_eq!(header(&r, "content-type"), "application/problem+json");
        assert_eq!(code(r).await.1, "rate_limited");
    }
    assert_eq!(uses(&t, &rec.id), 5, "refused requests count no use");
    // Keys without limits carry no RateLimit headers.
    let r = t.whoami(&t.admin_key).await;
    assert_eq!((r.status(), header(&r, "ratelimit")), (StatusCode::OK, String::new()));
    let metrics = t.http.get(t.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let series = r#"atna_key_checks_total{entry="whoami",outcome="rate_limited"} 3"#;
    assert!(metrics.lines().any(|l| l == series), "{series} in\n{metrics}");
    t.stop().await;
}

#[tokio::test]
async fn a_quota_runs_out_and_a_refused_request_consumes_nothing() {
    let t = TestApp::spawn().await;
    // 3 uses, 2 per hour: the third request is rate-limited while quota is left; it must not spend the quota.
    let (rec, key) = limited(&t, "metered", &["keys:manage"], Some(2), Some(3)).await;
    assert_eq!(t.whoami(&key).await.status(), StatusCode::OK);
    // The Bearer routes count too.
    assert_eq!(t.http.get(t.url("/v1/keys")).bearer_auth(&key).send().await.unwrap().status(), StatusCode::OK);
    for _ in 0..3 {
        let r = t.whoami(&key).await;
        assert_eq!(code(r).await, (StatusCode::TOO_MANY_REQUESTS, "rate_limited".into()));
    }
    let v = t.get_json(&format!("/v1/keys/{}", rec.id), &t.admin_key).await;
    assert_eq!(v["quota"], json!({"remaining": 1, "refill": null}), "two used, none by the refusals");
    assert_eq!(v["rate_limit"], json!({"limit": 2, "period_seconds": 3600}));
    assert_eq!(uses(&t, &rec.id), 2);

    // A quota-only key: uses until 0, then usage_exceeded (no Retry-After: never refilled) at every entry point.
    let (rec, key) = limited(&t, "credits", &[], None, Some(2)).await;
    assert_eq!(t.whoami(&key).await.status(), StatusCode::OK);
    let fa = || t.http.get(t.url("/v1/forward-auth")).bearer_auth(&key).send();
    let r = fa().await.unwrap();
    assert_eq!((r.status(), header(&r, "ratelimit")), (StatusCode::OK, String::new()));
    let r = t.whoami(&key).await;
    assert_eq!(header(&r, "retry-after"), "");
    assert_eq!(code(r).await, (StatusCode::TOO_MANY_REQUESTS, "usage_exceeded".into()));
    let r = fa().await.unwrap();
    assert_eq!(header(&r, "x-atna-status"), "429", "nginx reads the real status here");
    assert_eq!(code(r).await, (StatusCode::TOO_MANY_REQUESTS, "usage_exceeded".into()));
    let v: Value =
        t.http.post(t.url("/v1/keys/verify")).json(&json!({"key": key})).send().await.unwrap().json().await.unwrap();
    assert_eq!((v["valid"].clone(), v["code"].clone()), (json!(false), json!("USAGE_EXCEEDED")));
    assert_eq!(v["quota"], json!({"remaining": 0, "refill": null}));
    assert_eq!(uses(&t, &rec.id), 2);
    let metrics = t.http.get(t.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"atna_key_checks_total{entry="whoami",outcome="usage_exceeded"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"atna_key_checks_total{entry="forward_auth",outcome="usage_exceeded"} 1"#));
    assert!(metrics.contains(r#"atna_key_checks_total{entry="verify",outcome="usage_exceeded"} 1"#));
    t.stop().await;
}

#[tokio::test]
async fn only_a_matching_secret_touches_a_limit_and_scopes_are_checked_first() {
    let t = TestApp::spawn().await;
    let (rec, key) = limited(&t, "victim", &["invoices:read"], Some(2), Some(5)).await;
    // The Credential ID is public: a wrong secret with it must not drain anything.
    let forged = atna_domain::credential::encode(&rec.id, &[b'x'; atna_domain::credential::SECRET_LEN]);
    for _ in 0..10 {
        assert_eq!(code(t.whoami(&forged).await).await, (StatusCode::UNAUTHORIZED, "key_invalid_secret".into()));
    }
    // A missing scope is refused before the limits are asked: nothing consumed.
    for _ in 0..5 {
        let r = t.http.get(t.url("/v1/forward-auth?scope=invoices:write")).bearer_auth(&key).send().await.unwrap();
        assert_eq!(code(r).await, (StatusCode::FORBIDDEN, "insufficient_scope".into()));
    }
    let r = t.http.get(t.url("/v1/forward-auth?scope=invoices:read")).bearer_auth(&key).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "ratelimit"), r#""default";r=1;t=1800"#, "the whole allowance was there");
    assert_eq!(header(&r, "ratelimit-policy"), r#""default";q=2;w=3600"#);
    assert_eq!(header(&r, "x-atna-key-id"), rec.id.as_str());
    let r = t.http.get(t.url("/v1/forward-auth")).bearer_auth(&key).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = t.http.get(t.url("/v1/forward-auth")).bearer_auth(&key).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&r, "x-atna-status"), "429");
    assert_eq!(header(&r, "retry-after"), "1800");
    assert_eq!(header(&r, "cache-control"), "no-store");
    assert_eq!(t.state.verifier.limits().peek(&rec.id, atna_server::clock::now()).1, Some(3));
    t.stop().await;
}

#[tokio::test]
async fn verify_applies_and_reports_the_limits() {
    let t = TestApp::spawn().await;
    let (_, key) = limited(&t, "svc", &["reports:read"], Some(2), Some(10)).await;
    let verify = |body: Value| {
        let (c, url) = (t.http.clone(), t.url("/v1/keys/verify"));
        async move { c.post(url).json(&body).send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let v = verify(json!({"key": key, "ip": "203.0.113.7", "scopes": ["reports:read"]})).await;
    assert_eq!(v["code"], "VALID");
    assert_eq!(v["rate_limit"], json!({"limit": 2, "period_seconds": 3600, "remaining": 1, "reset_seconds": 1800}));
    assert_eq!(v["quota"], json!({"remaining": 9, "refill": null}));
    assert_eq!(v["retry_after_seconds"], Value::Null);
    // Scopes are checked first: no use.
    assert_eq!(verify(json!({"key": key, "scopes": ["reports:write"]})).await["code"], "INSUFFICIENT_SCOPE");
    assert_eq!(verify(json!({"key": key})).await["code"], "VALID");
    let v = verify(json!({"key": key})).await;
    assert_eq!((v["valid"].clone(), v["code"].clone()), (json!(false), json!("RATE_LIMITED")));
    assert_eq!(v["retry_after_seconds"], 1800);
    assert_eq!(v["rate_limit"]["remaining"], 0);
    assert_eq!(v["quota"]["remaining"], 8, "the refused check spent no quota");
    t.stop().await;
}

#[tokio::test]
async fn the_api_sets_shows_and_checks_limits() {
    let t = TestApp::spawn().await;
    let create = |body: Value| t.http.post(t.url("/v1/keys")).bearer_auth(&t.admin_key).json(&body).send();
    let body = json!({
        "name": "metered",
        "rate_limit": {"limit": 100, "period_seconds": 60},
        "quota": {"remaining": 10000, "refill": {"amount": 10000, "interval": "daily"}},
    });
    let r = create(body).await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let made: Value = r.json().await.unwrap();
    assert_eq!(made["rate_limit"], json!({"limit": 100, "period_seconds": 60}));
    assert_eq!(made["quota"], json!({"remaining": 10000, "refill": {"amount": 10000, "interval": "daily"}}));
    let listed = t.get_json("/v1/keys", &t.admin_key).await;
    let me = listed["data"].as_array().unwrap().iter().find(|k| k["id"] == made["id"]).unwrap().clone();
    assert_eq!((me["rate_limit"].clone(), me["quota"].clone()), (made["rate_limit"].clone(), made["quota"].clone()));
    let r = create(json!({"name": "plain", "rate_limit": null, "quota": null})).await.unwrap();
    let plain: Value = r.json().await.unwrap();
    assert_eq!((plain["rate_limit"].clone(), plain["quota"].clone()), (Value::Null, Value::Null));

    for (body, want) in [
        (json!({"name": "a", "rate_limit": {"limit": 0, "period_seconds": 60}}), "invalid_rate_limit"),
        (json!({"name": "b", "rate_limit": {"limit": 10, "period_seconds": 86401}}), "invalid_rate_limit"),
        (json!({"name": "c", "rate_limit": {"limit": 1e12 as i64, "period_seconds": 1}}), "invalid_rate_limit"),
        (json!({"name": "d", "quota": {"remaining": -1}}), "invalid_quota"),
        (
            json!({"name": "e", "quota": {"remaining": 5, "refill": {"amount": 5, "interval": "weekly"}}}),
            "invalid_quota",
        ),
        (
            json!({"name": "f", "quota": {"remaining": 5, "refill": {"amount": 0, "interval": "daily"}}}),
            "invalid_quota",
        ),
        (json!({"name": "g", "rate_limit": {"limit": 10}}), "invalid_body"),
        (json!({"name": "h", "quota": {"remaining": 5, "extra": 1}}), "invalid_body"),
    ] {
        let r = create(body.clone()).await.unwrap();
        assert_eq!(code(r).await, (StatusCode::UNPROCESSABLE_ENTITY, want.into()), "{body}");
    }
    let doc: Value = t.http.get(t.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    let schemas = &doc["components"]["schemas"];
    for (schema, field) in [
        ("Key", "rate_limit"),
        ("Key", "quota"),
        ("CreateKey", "rate_limit"),
        ("CreateKey", "quota"),
        ("VerifyResponse", "rate_limit"),
        ("VerifyResponse", "quota"),
        ("VerifyResponse", "retry_after_seconds"),
        ("QuotaRule", "refill"),
    ] {
        assert!(schemas[schema]["properties"][field].is_object(), "{schema}.{field} documented");
    }
    for path in ["/v1/whoami", "/v1/forward-auth", "/v1/keys"] {
        let ops = &doc["paths"][path];
        let any429 = ["get", "post"].iter().any(|m| ops[m]["responses"]["429"].is_object());
        assert!(any429, "{path} documents 429");
    }
    t.stop().await;
}

#[tokio::test]
async fn a_daily_quota_is_shown_with_its_refill() {
    let t = TestApp::spawn().await;
    let q = QuotaRule { remaining: 1234, refill: Some(QuotaRefill { amount: 10_000, interval: "daily".into() }) };
    let spec = KeySpec {
        rate_limit: None,
        quota: Some(&q),
        once: None,
        name: "daily",
        scopes: &[],
        expires_at: None,
        by_key: None,
        ip_allowlist: &[],
    };
    let now = atna_server::clock::now();
    let (rec, _) = service::create_key(&*t.store, t.alice, Actor::Operator, spec, now).await.unwrap();
    assert_eq!(rec.rules.quota.unwrap().describe(now), "1,234 of 10,000 left, refilled daily");
    t.stop().await;
}

/// A key never makes (or changes) a key that calls faster or more often than itself: a limited `keys:manage` key's
/// children get its rate limit and what is left of its quota when none is asked for, a stricter one when asked, and
/// a precise 422 for anything looser (creating, and `PATCH`, where removing a limit is asking for more).
#[tokio::test]
async fn keys_made_by_a_limited_key_stay_within_its_limits() {
    let t = TestApp::spawn().await;
    let (_, parent) = limited(&t, "parent", &["keys:manage"], Some(100), Some(50)).await;
    let post = |body: Value| t.http.post(t.url("/v1/keys")).bearer_auth(&parent).json(&body).send();
    let r = post(json!({"name": "child-default"})).await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let child: Value = r.json().await.unwrap();
    assert_eq!(child["rate_limit"], json!({"limit": 100, "period_seconds": 3600}), "the caller's limit");
    let left = child["quota"]["remaining"].as_i64().unwrap();
    assert!((45..=50).contains(&left), "what the caller has left: {left}");
    let strict =
        json!({"name": "child-strict", "rate_limit": {"limit": 10, "period_seconds": 3600}, "quota": {"remaining": 5}});
    let r = post(strict).await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let id = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    for (body, want) in [
        // 10 a minute is 600 an hour: more over time than 100 an hour.
        (json!({"name": "fast", "rate_limit": {"limit": 10, "period_seconds": 60}}), "rate_limit_beyond_caller"),
        // 200 in two hours is the same rate, but a burst of 200 is more than 100 at once.
        (json!({"name": "bursty", "rate_limit": {"limit": 200, "period_seconds": 7200}}), "rate_limit_beyond_caller"),
        (json!({"name": "greedy", "quota": {"remaining": 51}}), "quota_beyond_caller"),
    ] {
        assert_eq!(
            code(post(body.clone()).await.unwrap()).await,
            (StatusCode::UNPROCESSABLE_ENTITY, want.into()),
            "{body}"
        );
    }
    let patch = |body: &'static str| {
        t.http
            .patch(t.url(&format!("/v1/keys/{id}")))
            .bearer_auth(&parent)
            .header("content-type", "application/merge-patch+json")
            .body(body)
            .send()
    };
    for (body, want) in
        [(r#"{"rate_limit":null}"#, "rate_limit_beyond_caller"), (r#"{"quota":null}"#, "quota_beyond_caller")]
    {
        assert_eq!(code(patch(body).await.unwrap()).await, (StatusCode::UNPROCESSABLE_ENTITY, want.into()), "{body}");
    }
    let r = patch(r#"{"rate_limit":{"limit":50,"period_seconds":3600}}"#).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // A key without limits makes keys without limits, as before.
    let r =
        t.http.post(t.url("/v1/keys")).bearer_auth(&t.admin_key).json(&json!({"name": "free"})).send().await.unwrap();
    let free: Value = r.json().await.unwrap();
    assert_eq!((free["rate_limit"].clone(), free["quota"].clone()), (Value::Null, Value::Null));
    t.stop().await;
}

/// Every allowed answer of a rate-limited key carries the RateLimit headers, on the management routes too (listing,
/// getting, creating, the audit trail); a key without a limit gets none.
#[tokio::test]
async fn management_routes_carry_the_ratelimit_headers_of_a_limited_key() {
    let t = TestApp::spawn().await;
    let (rec, key) = limited(&t, "manager", &["keys:manage"], Some(10), None).await;
    let get = |path: String, key: String| t.http.get(t.url(&path)).bearer_auth(key).send();
    let r = get("/v1/keys".into(), key.clone()).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "ratelimit-policy"), r#""default";q=10;w=3600"#);
    // `t` (seconds until the allowance is whole) depends on how long the requests took: only `r` is exact.
    let remaining = |r: &reqwest::Response| header(r, "ratelimit").split(";t=").next().unwrap_or_default().to_owned();
    assert_eq!(remaining(&r), r#""default";r=9"#);
    let r = get(format!("/v1/keys/{}", rec.id), key.clone()).await.unwrap();
    assert_eq!((r.status(), remaining(&r)), (StatusCode::OK, r#""default";r=8"#.into()));
    let r = get("/v1/audit".into(), key.clone()).await.unwrap();
    assert_eq!((r.status(), remaining(&r)), (StatusCode::OK, r#""default";r=7"#.into()));
    let r = t.http.post(t.url("/v1/keys")).bearer_auth(&key).json(&json!({"name": "child"})).send().await.unwrap();
    assert_eq!((r.status(), remaining(&r)), (StatusCode::CREATED, r#""default";r=6"#.into()));
    let r = get("/v1/keys".into(), t.admin_key.clone()).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers().get("ratelimit-policy").is_none() && r.headers().get("ratelimit").is_none());
    t.stop().await;
}
