//! A key's life over real HTTP: rolling with an overlap (a live client switches keys without one failed request),
//! disabling, enabling and editing with a JSON merge patch, and the audit trail that records it all. Runs on SQLite,
//! and on PostgreSQL with `ATNA_TEST_BACKEND=postgres`.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{eventually, problem, TestApp};
use serde_json::{json, Value};

fn key_id(secret: &str) -> &str {
    &secret[5..21]
}

async fn roll(app: &TestApp, key: &str, id: &str, body: Option<Value>) -> reqwest::Response {
    let req = app.http.post(app.url(&format!("/v1/keys/{id}/roll"))).bearer_auth(key);
    let req = match body {
        Some(b) => req.json(&b),
        None => req,
    };
    req.send().await.unwrap()
}

async fn patch(app: &TestApp, key: &str, id: &str, content_type: &str, body: &str) -> reqwest::Response {
    app.http
        .patch(app.url(&format!("/v1/keys/{id}")))
        .bearer_auth(key)
        .header("content-type", content_type)
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

/// The issue's "done when": a client loop keeps calling with the old key while it is rolled, switches to the new key,
/// and sees no failure; once the overlap ends the old key answers `key_expired`.
#[tokio::test]
async fn a_live_client_rolls_to_the_new_key_without_a_failed_request() {
    let app = Arc::new(TestApp::spawn().await);
    let old = app.key_for(app.alice, "billing-service-26_11_2026-14_05", &["keys:manage"]).await;
    let current = Arc::new(tokio::sync::RwLock::new(old.clone()));
    let (ok, failed, stop) =
        (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
    let client = {
        let (app, current, ok, failed, stop) = (app.clone(), current.clone(), ok.clone(), failed.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let key = current.read().await.clone();
                if app.whoami(&key).await.status() == 200 {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    eventually("the client is running", Duration::from_secs(10), || async { ok.load(Ordering::Relaxed) > 20 }).await;
    // A short overlap keeps the test quick; the old key must keep working until the client has switched.
    let res = roll(&app, &app.admin_key, key_id(&old), Some(json!({"overlap_seconds": 3}))).await;
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let body: Value = res.json().await.unwrap();
    let new = body["secret"].as_str().unwrap().to_owned();
    let before_switch = ok.load(Ordering::Relaxed);
    eventually("the old key still serves after the roll", Duration::from_secs(10), || async {
        ok.load(Ordering::Relaxed) > before_switch + 20
    })
    .await;
    *current.write().await = new.clone();
    let switched = ok.load(Ordering::Relaxed);
    eventually("the client uses the new key", Duration::from_secs(10), || async {
        ok.load(Ordering::Relaxed) > switched + 20
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    client.await.unwrap();
    assert_eq!(failed.load(Ordering::Relaxed), 0, "no request failed while rolling");
    // After the overlap, the old key is refused as expired; the new one keeps working.
    eventually("the old key stops at the end of the overlap", Duration::from_secs(30), || async {
        app.whoami(&old).await.status() == 401
    })
    .await;
    let (status, p) = problem(app.whoami(&old).await).await;
    assert_eq!((status, p["code"].as_str().unwrap()), (401, "key_expired"));
    assert_eq!(app.whoami(&new).await.status(), 200);

    // What the roll made: the same scopes, a name with the new date and time, links both ways.
    assert_eq!(body["scopes"], json!(["keys:manage"]));
    let name = body["name"].as_str().unwrap();
    assert!(name.starts_with("billing-service-") && name != "billing-service-26_11_2026-14_05", "{name}");
    assert_eq!(body["follows_naming_convention"], true);
    assert_eq!(body["rolled_from"], key_id(&old));
    assert_eq!(body["old_key"]["rolled_to"], body["id"]);
    let listed = app.get_json(&format!("/v1/keys/{}", key_id(&old)), &app.admin_key).await;
    assert_eq!((listed["rolled_to"].clone(), listed["status"].clone()), (body["id"].clone(), json!("expired")));
    // A key is rolled once.
    let (status, p) = problem(roll(&app, &app.admin_key, key_id(&old), None).await).await;
    assert_eq!((status, p["code"].as_str().unwrap()), (409, "key_already_rolled"));
    // The audit trail tells who rolled what.
    let trail = app.get_json("/v1/audit?kind=key.rolled", &app.admin_key).await;
    let e = &trail["data"][0];
    assert_eq!((e["kind"].as_str(), e["key_id"].as_str()), (Some("key.rolled"), Some(key_id(&old))));
    assert_eq!(e["actor"]["type"], "key");
    assert_eq!(e["actor"]["key_id"], key_id(&app.admin_key));
    assert_eq!(e["detail"]["successor"], body["id"]);
    assert!(e["ip"].as_str().is_some_and(|ip| ip.starts_with("127.")));
    Arc::try_unwrap(app).ok().unwrap().stop().await;
}

#[tokio::test]
async fn rolling_checks_its_input_and_names_with_a_suffix_on_a_clash() {
    let app = TestApp::spawn().await;
    let old = app.key_for(app.alice, "crm", &[]).await;
    for bad in [json!({"overlap_seconds": -1}), json!({"overlap_seconds": 2_592_001})] {
        let (status, p) = problem(roll(&app, &app.admin_key, key_id(&old), Some(bad)).await).await;
        assert_eq!((status, p["code"].as_str().unwrap()), (422, "invalid_overlap"));
    }
    let (status, p) = problem(roll(&app, &app.admin_key, key_id(&old), Some(json!({"overlap": 1}))).await).await;
    assert_eq!((status, p["code"].as_str().unwrap()), (422, "unknown_member"));
    let (status, _) = problem(roll(&app, &app.admin_key, "AAAAAAAAAAAAAAAA", None).await).await;
    assert_eq!(status, 404);
    // Without a body: a day's overlap, and a conventional name.
    let res = roll(&app, &app.admin_key, key_id(&old), None).await;
    assert_eq!(res.status(), 201);
    let first: Value = res.json().await.unwrap();
    let name = first["name"].as_str().unwrap().to_owned();
    assert!(name.starts_with("crm-"), "{name}");
    let ends = chrono::DateTime::parse_from_rfc3339(first["old_key"]["expires_at"].as_str().unwrap()).unwrap();
    let hours = (ends.timestamp() - chrono::Utc::now().timestamp()) / 3600;
    assert!((23..=24).contains(&hours), "a day's overlap: {hours} h");
    // Rolling the new key within the same minute: its name is taken, so it gets `-2`.
    let again: Value = roll(&app, &app.admin_key, first["id"].as_str().unwrap(), Some(json!({"overlap_seconds": 0})))
        .await
        .json()
        .await
        .unwrap();
    let second = again["name"].as_str().unwrap();
    assert!(second == format!("{name}-2") || !second.starts_with(&name), "a clash adds -2: {second}");
    // Overlap 0: the old key stops at once.
    let (status, p) = problem(app.whoami(first["secret"].as_str().unwrap()).await).await;
    assert_eq!((status, p["code"].as_str().unwrap()), (401, "key_expired"));
    // A key that expires rolls to a key with the same lifetime, never beyond the calling key's own expiry.
    let short = app
        .http
        .post(app.url("/v1/keys"))
        .bearer_auth(&app.admin_key)
        .json(&json!({"name": "short", "scopes": ["keys:manage"], "expires_at": (chrono::Utc::now() + chrono::Duration::hours(2)).to_rfc3339()}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let short_secret = short["secret"].as_str().unwrap();
    let target = app.key_for(app.alice, "long-lived", &[]).await;
    let rolled: Value = roll(&app, short_secret, key_id(&target), None).await.json().await.unwrap();
    assert_eq!(rolled["expires_at"], short["expires_at"], "capped at the caller's expiry");
    // A key cannot roll a key with scopes it lacks.
    let weak = app
        .http
        .post(app.url("/v1/keys"))
        .bearer_auth(&app.admin_key)
        .json(&json!({"name": "weak", "scopes": ["keys:manage"]}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let strong = app.key_for(app.alice, "strong", &["keys:manage", "billing:write"]).await;
    let (status, p) = problem(roll(&app, weak["secret"].as_str().unwrap(), key_id(&strong), None).await).await;
    assert_eq!((status, p["code"].as_str().unwrap()), (403, "scope_not_held"));
    app.stop().await;
}

#[tokio::test]
async fn disable_enable_and_edit_with_a_merge_patch() {
    let app = TestApp::spawn().await;
    let k = app.key_for(app.alice, "worker", &[]).await;
    let id = key_id(&k);
    assert_eq!(app.whoami(&k).await.status(), 200);
    let res = patch(&app, &app.admin_key, id, "application/merge-patch+json", r#"{"status":"disabled"}"#).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "disabled");
    let (status, p) = problem(app.whoami(&k).await).await;
    assert_eq!((status, p["code"].as_str().unwrap()), (401, "key_disabled"), "at once");
    let res = patch(&app, &app.admin_key, id, "application/json", r#"{"status":"active"}"#).await;
    assert_eq!(res.status(), 200);
    assert_eq!(app.whoami(&k).await.status(), 200);
    // Rename, scopes, expiry and allowlist in one patch; null removes.
    let body = r#"{"name":"worker-renamed","scopes":["keys:manage"],"expires_at":"2099-01-01T00:00:00Z","ip_allowlist":["127.0.0.0/8"]}"#;
    let got: Value = patch(&app, &app.admin_key, id, "application/merge-patch+json", body).await.json().await.unwrap();
    assert_eq!(got["name"], "worker-renamed");
    assert_eq!(got["scopes"], json!(["keys:manage"]));
    assert_eq!(got["expires_at"], "2099-01-01T00:00:00Z");
    assert_eq!(got["ip_allowlist"], json!(["127.0.0.0/8"]));
    let got: Value =
        patch(&app, &app.admin_key, id, "application/merge-patch+json", r#"{"expires_at":null,"ip_allowlist":null}"#)
            .await
            .json()
            .await
            .unwrap();
    assert_eq!((got["expires_at"].clone(), got["ip_allowlist"].clone()), (Value::Null, Value::Null));
    // Bad patches: precise 4xx.
    let cases = [
        ("application/merge-patch+json", r#"{"owner":1}"#, 422, "unknown_member"),
        ("application/merge-patch+json", r#"{"status":"revoked"}"#, 422, "invalid_status"),
        ("application/merge-patch+json", r#"{"status":5}"#, 422, "invalid_body"),
        ("application/merge-patch+json", r#"{"name":""}"#, 422, "invalid_name"),
        ("application/merge-patch+json", r#"{"expires_at":"2001-01-01T00:00:00Z"}"#, 422, "invalid_expiry"),
        ("application/merge-patch+json", r#"{"scopes":["keys:manage","x y"]}"#, 422, "invalid_scopes"),
        ("application/merge-patch+json", r#"{"ip_allowlist":["nope"]}"#, 422, "invalid_ip_allowlist"),
        ("application/merge-patch+json", r#"[1]"#, 422, "invalid_body"),
        ("application/merge-patch+json", r#"{"#, 400, "invalid_json"),
        ("text/plain", r#"{"status":"disabled"}"#, 415, "unsupported_media_type"),
        ("application/merge-patch+json", r#"{"name":"admin-key"}"#, 409, "name_taken"),
    ];
    for (ct, body, want_status, want_code) in cases {
        let (status, p) = problem(patch(&app, &app.admin_key, id, ct, body).await).await;
        assert_eq!((status, p["code"].as_str().unwrap()), (want_status, want_code), "{body}");
    }
    // Enabling an expired key is refused, unless the same patch gives it a new expiry.
    let expired = app.expired_key_for(app.alice, "expired").await;
    let eid = expired.id.to_string();
    patch(&app, &app.admin_key, &eid, "application/json", r#"{"status":"disabled"}"#).await;
    let (status, p) =
        problem(patch(&app, &app.admin_key, &eid, "application/json", r#"{"status":"active"}"#).await).await;
    assert_eq!((status, p["code"].as_str().unwrap()), (422, "key_expired"));
    let res = patch(
        &app,
        &app.admin_key,
        &eid,
        "application/json",
        r#"{"status":"active","expires_at":"2099-01-01T00:00:00Z"}"#,
    )
    .await;
    assert_eq!(res.status(), 200);
    // Another user's key is not there.
    let bob = common::user(&*app.store, "bob@example.com").await;
    let bobs = app.key_for(bob, "bobs", &[]).await;
    let (status, _) =
        problem(patch(&app, &app.admin_key, key_id(&bobs), "application/json", r#"{"status":"disabled"}"#).await).await;
    assert_eq!(status, 404);
    // A key cannot grant scopes it does not hold.
    let (status, p) =
        problem(patch(&app, &app.admin_key, id, "application/json", r#"{"scopes":["billing:write"]}"#).await).await;
    assert_eq!((status, p["code"].as_str().unwrap()), (403, "scope_not_held"));
    // Every change is in the trail, newest first, with a cursor to page on.
    let trail = app.get_json(&format!("/v1/audit?key_id={id}&limit=2"), &app.admin_key).await;
    let kinds: Vec<&str> = trail["data"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["key.edited", "key.edited"]);
    let cursor = trail["next_cursor"].as_str().unwrap();
    let next = app.get_json(&format!("/v1/audit?key_id={id}&cursor={cursor}&limit=10"), &app.admin_key).await;
    let kinds: Vec<&str> = next["data"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["key.enabled", "key.disabled", "key.created"]);
    assert!(app.get_json("/v1/audit", &app.admin_key).await["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["user_id"] == app.alice.0));
    let (status, p) =
        problem(app.http.get(app.url("/v1/audit?cursor=x")).bearer_auth(&app.admin_key).send().await.unwrap()).await;
    assert_eq!((status, p["code"].as_str().unwrap()), (400, "invalid_cursor"));
    app.stop().await;
}

#[tokio::test]
async fn the_openapi_document_lists_the_lifecycle_endpoints() {
    let app = TestApp::spawn().await;
    let doc: Value = app.http.get(app.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    for (path, method) in [("/v1/keys/{id}/roll", "post"), ("/v1/keys/{id}", "patch"), ("/v1/audit", "get")] {
        assert!(doc["paths"][path][method].is_object(), "{method} {path}");
    }
    assert!(
        doc["paths"]["/v1/keys/{id}"]["patch"]["requestBody"]["content"]["application/merge-patch+json"].is_object()
    );
    app.stop().await;
}

/// A roll never doubles a key's limits: during the overlap the old key and its successor draw on one rate allowance
/// and one quota, and what the old key used before the roll stays used.
#[tokio::test]
async fn a_rolled_key_and_its_successor_share_one_rate_limit_and_one_quota() {
    let app = TestApp::spawn().await;
    let create = |name: &str, rules: Value| {
        let mut body = json!({"name": name});
        body.as_object_mut().unwrap().extend(rules.as_object().unwrap().clone());
        app.http.post(app.url("/v1/keys")).bearer_auth(&app.admin_key).json(&body).send()
    };
    // The rate limit: 4 an hour, 2 used before the roll.
    let res = create("rated", json!({"rate_limit": {"limit": 4, "period_seconds": 3600}})).await.unwrap();
    assert_eq!(res.status(), 201);
    let old = res.json::<Value>().await.unwrap()["secret"].as_str().unwrap().to_owned();
    for _ in 0..2 {
        assert_eq!(app.whoami(&old).await.status(), 200);
    }
    let body: Value = roll(&app, &app.admin_key, key_id(&old), None).await.json().await.unwrap();
    assert_eq!(body["rate_limit"], json!({"limit": 4, "period_seconds": 3600}), "the rules carry over");
    let new = body["secret"].as_str().unwrap().to_owned();
    assert_eq!(app.whoami(&new).await.status(), 200);
    assert_eq!(app.whoami(&old).await.status(), 200);
    for key in [&new, &old] {
        let (status, p) = problem(app.whoami(key).await).await;
        assert_eq!((status, p["code"].as_str().unwrap()), (429, "rate_limited"), "4 in all, not 4 each");
    }

    // The quota: 5 uses, 2 before the roll, 3 left for both keys together.
    let res = create("metered", json!({"quota": {"remaining": 5}})).await.unwrap();
    let old = res.json::<Value>().await.unwrap()["secret"].as_str().unwrap().to_owned();
    for _ in 0..2 {
        assert_eq!(app.whoami(&old).await.status(), 200);
    }
    let body: Value = roll(&app, &app.admin_key, key_id(&old), None).await.json().await.unwrap();
    assert_eq!(body["quota"]["remaining"], 3, "the successor starts with what is left");
    let new = body["secret"].as_str().unwrap().to_owned();
    let mut allowed = 0;
    for key in [&old, &new, &old, &new, &old] {
        if app.whoami(key).await.status() == 200 {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 3);
    let (status, p) = problem(app.whoami(&new).await).await;
    assert_eq!((status, p["code"].as_str().unwrap()), (429, "usage_exceeded"));
    app.stop().await;
}

/// `PATCH` changes a key's rate limit and quota too, and takes effect at once; a bad rule is a precise 422.
#[tokio::test]
async fn a_merge_patch_sets_and_removes_rate_limits_and_quotas() {
    let app = TestApp::spawn().await;
    let k = app.key_for(app.alice, "patched", &[]).await;
    let id = key_id(&k);
    let body = r#"{"rate_limit":{"limit":2,"period_seconds":3600},"quota":{"remaining":100,"refill":{"amount":100,"interval":"daily"}}}"#;
    let res = patch(&app, &app.admin_key, id, "application/merge-patch+json", body).await;
    assert_eq!(res.status(), 200);
    let got: Value = res.json().await.unwrap();
    assert_eq!(got["rate_limit"], json!({"limit": 2, "period_seconds": 3600}));
    assert_eq!(got["quota"]["remaining"], 100);
    assert_eq!(got["quota"]["refill"], json!({"amount": 100, "interval": "daily"}));
    assert_eq!(app.whoami(&k).await.status(), 200);
    assert_eq!(app.whoami(&k).await.status(), 200);
    assert_eq!(app.whoami(&k).await.status(), 429, "the new limit holds at once");
    // Changing something else leaves the limits' counts alone.
    let got: Value =
        patch(&app, &app.admin_key, id, "application/json", r#"{"name":"patched-2"}"#).await.json().await.unwrap();
    assert_eq!(got["rate_limit"]["limit"], 2);
    assert_eq!(got["quota"]["refill"]["interval"], "daily");
    assert_eq!(app.whoami(&k).await.status(), 429, "an edit does not hand out a new allowance");
    let got: Value = patch(&app, &app.admin_key, id, "application/json", r#"{"rate_limit":null,"quota":null}"#)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!((got["rate_limit"].clone(), got["quota"].clone()), (Value::Null, Value::Null));
    assert_eq!(app.whoami(&k).await.status(), 200, "no limit any more");
    for (body, code) in [
        (r#"{"rate_limit":{"limit":0,"period_seconds":60}}"#, "invalid_rate_limit"),
        (r#"{"rate_limit":{"limit":5}}"#, "invalid_body"),
        (r#"{"quota":{"remaining":-1}}"#, "invalid_quota"),
        (r#"{"quota":{"remaining":5,"refill":{"amount":5,"interval":"hourly"}}}"#, "invalid_quota"),
    ] {
        let (status, p) = problem(patch(&app, &app.admin_key, id, "application/json", body).await).await;
        assert_eq!((status, p["code"].as_str().unwrap()), (422, code), "{body}");
    }
    let trail = app.get_json(&format!("/v1/audit?key_id={id}&kind=key.edited&limit=10"), &app.admin_key).await;
    let details: Vec<String> = trail["data"].as_array().unwrap().iter().map(|e| e["detail"].to_string()).collect();
    assert!(details.iter().any(|d| d.contains("rate_limit") && d.contains("quota")), "{details:?}");
    app.stop().await;
}

/// Under a policy with a maximum lifetime, a roll caps the successor's expiry at it, and `PATCH` refuses an expiry
/// beyond it (or none) with `lifetime_exceeds_policy`.
#[tokio::test]
async fn the_policy_caps_rolls_and_refuses_longer_lives_in_a_patch() {
    let app = TestApp::spawn_with(|s| s.policy.max_lifetime_days = Some(30)).await;
    let k = app.key_for(app.alice, "capped", &[]).await;
    let id = key_id(&k);
    let (status, p) =
        problem(patch(&app, &app.admin_key, id, "application/json", r#"{"expires_at":"2099-01-01T00:00:00Z"}"#).await)
            .await;
    assert_eq!((status, p["code"].as_str().unwrap()), (422, "lifetime_exceeds_policy"));
    let (status, p) =
        problem(patch(&app, &app.admin_key, id, "application/json", r#"{"expires_at":null}"#).await).await;
    assert_eq!((status, p["code"].as_str().unwrap()), (422, "lifetime_exceeds_policy"));
    let body: Value = roll(&app, &app.admin_key, id, None).await.json().await.unwrap();
    let expires = chrono::DateTime::parse_from_rfc3339(body["expires_at"].as_str().unwrap()).unwrap();
    let days = (expires.timestamp() - chrono::Utc::now().timestamp()) as f64 / 86_400.0;
    assert!((29.9..=30.0).contains(&days), "capped at 30 days, not never: {days}");
    app.stop().await;
}
