//! The REST API over real HTTP on port 0: authentication, key management, bad input, isolation between users,
//! revocation and usage. Runs on SQLite, and on PostgreSQL with `ATNA_TEST_BACKEND=postgres`.

mod common;

use std::time::Duration;

use atna_domain::credential::{encode, SECRET_LEN};
use atna_domain::{CredentialId, GeneratedKey};
use atna_store::Actor;
use common::{eventually, problem, user, TestApp};
use serde_json::{json, Value};

async fn create(app: &TestApp, key: &str, body: Value) -> reqwest::Response {
    app.http.post(app.url("/v1/keys")).bearer_auth(key).json(&body).send().await.unwrap()
}

#[tokio::test]
async fn whoami_describes_the_calling_key() {
    let app = TestApp::spawn().await;
    let res = app.whoami(&app.admin_key).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/json");
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["name"], "admin-key");
    assert_eq!(body["owner"]["email"], "alice@example.com");
    assert_eq!(body["scopes"], json!(["keys:manage"]));
    assert_eq!(body["key_id"].as_str().unwrap(), &app.admin_key[5..21]);
    assert!(body.get("secret").is_none());
    // The same address by the router's other doors: HEAD answers like GET without a body, a query string is ignored,
    // other methods are refused, a trailing slash is another address.
    let head = app.http.head(app.url("/v1/whoami")).bearer_auth(&app.admin_key).send().await.unwrap();
    assert_eq!((head.status().as_u16(), head.headers()["x-content-type-options"].to_str().unwrap()), (200, "nosniff"));
    let q = app.http.get(app.url("/v1/whoami?verbose=1")).bearer_auth(&app.admin_key).send().await.unwrap();
    assert_eq!(q.json::<Value>().await.unwrap(), body);
    let (status, p) =
        problem(app.http.post(app.url("/v1/whoami")).bearer_auth(&app.admin_key).send().await.unwrap()).await;
    assert_eq!((status, p["code"].as_str().unwrap()), (405, "method_not_allowed"));
    let (status, _) =
        problem(app.http.get(app.url("/v1/whoami/")).bearer_auth(&app.admin_key).send().await.unwrap()).await;
    assert_eq!(status, 404);
    app.stop().await;
}

#[tokio::test]
async fn bad_credentials_get_401_with_a_bearer_challenge_and_a_reason() {
    let app = TestApp::spawn().await;
    let good = &app.admin_key;
    let id = CredentialId::parse(&good[5..21]).unwrap();
    let wrong_secret = encode(&id, &[b'x'; SECRET_LEN]);
    let unknown = GeneratedKey::generate();
    let mut typo = good.clone().into_bytes();
    typo[40] = if typo[40] == b'a' { b'b' } else { b'a' };
    let typo = String::from_utf8(typo).unwrap();
    let cases: Vec<(Option<String>, &str)> = vec![
        (None, "credentials_missing"),
        (Some(format!("Basic {good}")), "credentials_unsupported_scheme"),
        (Some("Bearer".into()), "key_malformed"),
        (Some("Bearer not-a-key".into()), "key_malformed"),
        (Some(format!("Bearer {}", &good[..good.len() - 3])), "key_malformed"),
        (Some(format!("Bearer {typo}")), "key_malformed"),
        (Some(format!("Bearer {}", "A".repeat(16 * 1024))), "key_malformed"),
        (Some(format!("Bearer {wrong_secret}")), "key_invalid_secret"),
        (Some(format!("Bearer {}", unknown.secret.expose())), "key_not_found"),
    ];
    for (header, code) in cases {
        let mut req = app.http.get(app.url("/v1/whoami"));
        if let Some(h) = &header {
            req = req.header("authorization", h);
        }
        let res = req.send().await.unwrap();
        let challenge = res.headers().get("www-authenticate").unwrap().to_str().unwrap().to_owned();
        assert!(challenge.starts_with(r#"Bearer realm="atna""#), "{challenge}");
        if code.starts_with("key_") {
            assert!(challenge.contains(r#"error="invalid_token""#), "{challenge}");
        }
        let (status, body) = problem(res).await;
        assert_eq!((status, body["code"].as_str().unwrap()), (401, code), "{header:?}");
        assert!(!body["detail"].as_str().unwrap().is_empty());
    }
    // The scheme is case-insensitive.
    let res = app.http.get(app.url("/v1/whoami")).header("authorization", format!("bearer {good}")).send().await;
    assert_eq!(res.unwrap().status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn an_oversized_header_is_refused_without_harm() {
    let app = TestApp::spawn().await;
    let res = app
        .http
        .get(app.url("/v1/whoami"))
        .header("authorization", format!("Bearer {}", "A".repeat(1 << 20)))
        .send()
        .await;
    match res {
        Ok(r) => assert!(r.status().is_client_error(), "{}", r.status()),
        Err(e) => assert!(e.is_request() || e.is_connect() || e.is_body(), "{e}"),
    }
    // The server is fine afterwards.
    assert_eq!(app.whoami(&app.admin_key).await.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn expired_revoked_and_disabled_keys_are_refused() {
    let app = TestApp::spawn().await;
    // Expired: written straight to the store, since the API refuses past expiry dates.
    let g = app.expired_key_for(app.alice, "old").await;
    let (_, body) = problem(app.whoami(g.secret.expose()).await).await;
    assert_eq!(body["code"], "key_expired");

    // Revoked through the API: refused on the very next request.
    let k = app.key_for(app.alice, "to-delete", &[]).await;
    assert_eq!(app.whoami(&k).await.status(), 200);
    let res = app.http.delete(app.url(&format!("/v1/keys/{}", &k[5..21]))).bearer_auth(&app.admin_key).send().await;
    assert_eq!(res.unwrap().status(), 204);
    let (_, body) = problem(app.whoami(&k).await).await;
    assert_eq!(body["code"], "key_revoked");

    // Revoked behind the server's back (as `atna key delete` does): the change feed evicts it.
    let k2 = app.key_for(app.alice, "cli-deleted", &[]).await;
    assert_eq!(app.whoami(&k2).await.status(), 200);
    let id2 = CredentialId::parse(&k2[5..21]).unwrap();
    app.store.revoke_key(None, &id2, &Actor::Operator.into(), atna_server::clock::now()).await.unwrap().unwrap();
    eventually("the CLI's deletion reaches the server", Duration::from_secs(5), || async {
        app.whoami(&k2).await.status() == 401
    })
    .await;

    // A disabled owner's keys stop working; re-enabled, they work again.
    let bob = user(&*app.store, "bob@example.com").await;
    let bk = app.key_for(bob, "bob-key", &[]).await;
    assert_eq!(app.whoami(&bk).await.status(), 200);
    app.store.set_user_disabled(bob, true, atna_server::clock::now()).await.unwrap();
    eventually("disabling reaches the server", Duration::from_secs(5), || async {
        app.whoami(&bk).await.status() == 401
    })
    .await;
    let (_, body) = problem(app.whoami(&bk).await).await;
    assert_eq!(body["code"], "key_disabled");
    app.store.set_user_disabled(bob, false, atna_server::clock::now()).await.unwrap();
    eventually("enabling reaches the server", Duration::from_secs(5), || async {
        app.whoami(&bk).await.status() == 200
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn keys_are_created_once_shown_and_then_only_described() {
    let app = TestApp::spawn().await;
    let res =
        create(&app, &app.admin_key, json!({"name": "billing-service-26_11_2026-14_05", "scopes": ["keys:manage"]}))
            .await;
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let created: Value = res.json().await.unwrap();
    let id = created["id"].as_str().unwrap();
    let secret = created["secret"].as_str().unwrap();
    assert_eq!(location, format!("/v1/keys/{id}"));
    assert!(secret.starts_with(&format!("atna_{id}_")));
    assert_eq!(created["follows_naming_convention"], true);
    assert_eq!(created["status"], "active");
    assert_eq!(app.whoami(secret).await.status(), 200);

    let got: Value =
        app.http.get(app.url(&location)).bearer_auth(&app.admin_key).send().await.unwrap().json().await.unwrap();
    assert_eq!(got["name"], "billing-service-26_11_2026-14_05");
    assert!(got.get("secret").is_none());
    let list =
        app.http.get(app.url("/v1/keys")).bearer_auth(&app.admin_key).send().await.unwrap().text().await.unwrap();
    assert!(!list.contains(secret), "a list never holds a secret");
    assert!(list.contains(id));
    app.stop().await;
}

#[tokio::test]
async fn key_creation_rules() {
    let app = TestApp::spawn().await;
    let k = &app.admin_key;
    assert_eq!(create(&app, k, json!({"name": "crm"})).await.status(), 201);
    let cases = [
        (json!({"name": "crm"}), 409, "name_taken"),
        (json!({"name": "  "}), 422, "invalid_name"),
        (json!({"name": "a\nb"}), 422, "invalid_name"),
        (json!({"name": "x".repeat(10 * 1024)}), 422, "invalid_name"),
        (json!({"name": "ok", "scopes": ["Not A Scope"]}), 422, "invalid_scopes"),
        (json!({"name": "ok", "scopes": ["billing:write"]}), 403, "scope_not_held"),
        (json!({"name": "ok", "expires_at": "2001-01-01T00:00:00Z"}), 422, "invalid_expiry"),
        (json!({"name": "ok", "expires_at": "tomorrow"}), 422, "invalid_body"),
        (json!({"name": "ok", "admin": true}), 422, "invalid_body"),
        (json!({"scopes": []}), 422, "invalid_body"),
        (json!(["name"]), 422, "invalid_body"),
    ];
    for (body, status, code) in cases {
        let (s, p) = problem(create(&app, k, body.clone()).await).await;
        assert_eq!((s, p["code"].as_str().unwrap()), (status, code), "{body}");
    }
    // A key without keys:manage can call the API but not manage keys.
    let plain = app.key_for(app.alice, "plain", &[]).await;
    assert_eq!(app.whoami(&plain).await.status(), 200);
    let res = create(&app, &plain, json!({"name": "sneaky"})).await;
    assert!(res.headers()["www-authenticate"].to_str().unwrap().contains("insufficient_scope"));
    let (s, p) = problem(res).await;
    assert_eq!((s, p["code"].as_str().unwrap()), (403, "insufficient_scope"));
    let (s, _) = problem(app.http.get(app.url("/v1/keys")).bearer_auth(&plain).send().await.unwrap()).await;
    assert_eq!(s, 403);
    // Nothing of the refused requests was stored.
    assert_eq!(app.store.count_keys(app.alice, None).await.unwrap(), 3);
    app.stop().await;
}

#[tokio::test]
async fn malformed_bodies_get_clear_errors() {
    let app = TestApp::spawn().await;
    let post = |body: Vec<u8>, ct: Option<&'static str>| {
        let mut r = app.http.post(app.url("/v1/keys")).bearer_auth(&app.admin_key).body(body);
        if let Some(ct) = ct {
            r = r.header("content-type", ct);
        }
        r.send()
    };
    let (s, p) = problem(post(b"{\"name\": ".to_vec(), Some("application/json")).await.unwrap()).await;
    assert_eq!((s, p["code"].as_str().unwrap()), (400, "invalid_json"));
    let (s, p) = problem(post(b"{\"name\": \"x\"}".to_vec(), None).await.unwrap()).await;
    assert_eq!((s, p["code"].as_str().unwrap()), (415, "unsupported_media_type"));
    let big = format!("{{\"name\": \"{}\"}}", "x".repeat(200 * 1024)).into_bytes();
    let (s, p) = problem(post(big, Some("application/json")).await.unwrap()).await;
    assert_eq!((s, p["code"].as_str().unwrap()), (413, "payload_too_large"));
    let (s, p) = problem(post(vec![0xff, 0xfe, 0x00], Some("application/json")).await.unwrap()).await;
    assert_eq!((s, p["code"].as_str().unwrap()), (400, "invalid_json"));
    let (s, p) = problem(app.http.get(app.url("/v1/nothing")).send().await.unwrap()).await;
    assert_eq!((s, p["code"].as_str().unwrap()), (404, "not_found"));
    let (s, p) = problem(app.http.put(app.url("/v1/keys")).send().await.unwrap()).await;
    assert_eq!((s, p["code"].as_str().unwrap()), (405, "method_not_allowed"));
    let (s, p) =
        problem(app.http.get(app.url("/v1/keys?limit=0")).bearer_auth(&app.admin_key).send().await.unwrap()).await;
    assert_eq!((s, p["code"].as_str().unwrap()), (400, "invalid_limit"));
    let (s, p) =
        problem(app.http.get(app.url("/v1/keys?cursor=abc")).bearer_auth(&app.admin_key).send().await.unwrap()).await;
    assert_eq!((s, p["code"].as_str().unwrap()), (400, "invalid_cursor"));
    let (s, p) =
        problem(app.http.get(app.url("/v1/keys?limit=x")).bearer_auth(&app.admin_key).send().await.unwrap()).await;
    assert_eq!((s, p["code"].as_str().unwrap()), (400, "invalid_query"));
    for id in ["short", "%00", "AAAAAAAAAAAAAAAA", &"x".repeat(5000)] {
        let (s, p) =
            problem(app.http.get(app.url(&format!("/v1/keys/{id}"))).bearer_auth(&app.admin_key).send().await.unwrap())
                .await;
        assert_eq!((s, p["code"].as_str().unwrap()), (404, "key_not_found"), "{id}");
    }
    app.stop().await;
}

#[tokio::test]
async fn users_never_see_or_touch_each_others_keys() {
    let app = TestApp::spawn().await;
    let bob = user(&*app.store, "bob@example.com").await;
    let bob_admin = app.key_for(bob, "bob-admin", &["keys:manage"]).await;
    let bob_key = app.key_for(bob, "bob-service", &[]).await;
    let bob_id = &bob_key[5..21];
    let alice_view = |method: reqwest::Method| {
        app.http.request(method, app.url(&format!("/v1/keys/{bob_id}"))).bearer_auth(&app.admin_key).send()
    };
    // 404, exactly as for a key that does not exist: no 403 that would confirm it.
    let (s, p) = problem(alice_view(reqwest::Method::GET).await.unwrap()).await;
    assert_eq!((s, p["code"].as_str().unwrap()), (404, "key_not_found"));
    let (s, _) = problem(alice_view(reqwest::Method::DELETE).await.unwrap()).await;
    assert_eq!(s, 404);
    assert_eq!(app.whoami(&bob_key).await.status(), 200, "bob's key still works");
    let alice_list: Value =
        app.http.get(app.url("/v1/keys")).bearer_auth(&app.admin_key).send().await.unwrap().json().await.unwrap();
    assert!(!alice_list.to_string().contains(bob_id));
    let bob_list: Value =
        app.http.get(app.url("/v1/keys")).bearer_auth(&bob_admin).send().await.unwrap().json().await.unwrap();
    assert_eq!(bob_list["data"].as_array().unwrap().len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn listing_pages_newest_first() {
    let app = TestApp::spawn().await;
    for i in 0..24 {
        assert_eq!(create(&app, &app.admin_key, json!({"name": format!("svc-{i:02}")})).await.status(), 201);
    }
    let mut names = Vec::new();
    let mut url = app.url("/v1/keys?limit=10");
    loop {
        let page: Value = app.http.get(&url).bearer_auth(&app.admin_key).send().await.unwrap().json().await.unwrap();
        names.extend(page["data"].as_array().unwrap().iter().map(|k| k["name"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(c) => url = app.url(&format!("/v1/keys?limit=10&cursor={c}")),
            None => break,
        }
    }
    assert_eq!(names.len(), 25);
    assert_eq!(names[0], "svc-23", "newest first");
    assert_eq!(names[24], "admin-key");
    let found: Value = app
        .http
        .get(app.url("/v1/keys?search=svc-1"))
        .bearer_auth(&app.admin_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(found["data"].as_array().unwrap().len(), 10);
    app.stop().await;
}

#[tokio::test]
async fn verify_reports_every_outcome() {
    let app = TestApp::spawn().await;
    let verify = |key: String| {
        let app = &app;
        async move {
            let res = app.http.post(app.url("/v1/keys/verify")).json(&json!({ "key": key })).send().await.unwrap();
            assert_eq!(res.status(), 200);
            res.json::<Value>().await.unwrap()
        }
    };
    let v = verify(app.admin_key.clone()).await;
    assert_eq!((v["valid"].as_bool(), v["code"].as_str()), (Some(true), Some("VALID")));
    assert_eq!(v["owner"]["email"], "alice@example.com");
    assert_eq!(v["scopes"], json!(["keys:manage"]));
    assert_eq!(verify("nope".into()).await["code"], "MALFORMED");
    assert_eq!(verify(GeneratedKey::generate().secret.expose().to_owned()).await["code"], "NOT_FOUND");
    let id = CredentialId::parse(&app.admin_key[5..21]).unwrap();
    let wrong = verify(encode(&id, &[b'z'; SECRET_LEN])).await;
    assert_eq!(wrong["code"], "INVALID_SECRET");
    assert!(wrong["owner"].is_null(), "nothing about the key without its secret");
    let k = app.key_for(app.alice, "soon-gone", &[]).await;
    app.http.delete(app.url(&format!("/v1/keys/{}", &k[5..21]))).bearer_auth(&app.admin_key).send().await.unwrap();
    let v = verify(k).await;
    assert_eq!((v["valid"].as_bool(), v["code"].as_str()), (Some(false), Some("REVOKED")));
    let (s, p) =
        problem(app.http.post(app.url("/v1/keys/verify")).json(&json!({"token": "x"})).send().await.unwrap()).await;
    assert_eq!((s, p["code"].as_str().unwrap()), (422, "invalid_body"));
    app.stop().await;
}

#[tokio::test]
async fn usage_is_counted_in_memory_and_written_in_batches() {
    let app = TestApp::spawn().await;
    let k = app.key_for(app.alice, "used", &[]).await;
    let id = CredentialId::parse(&k[5..21]).unwrap();
    for _ in 0..5 {
        assert_eq!(app.whoami(&k).await.status(), 200);
    }
    // Nothing written per request...
    let stored = app.store.get_key(app.alice, &id).await.unwrap().unwrap();
    assert_eq!((stored.use_count, stored.last_used_at), (0, None));
    // ...but the API shows what this node has gathered.
    let shown: Value = app
        .http
        .get(app.url(&format!("/v1/keys/{id}")))
        .bearer_auth(&app.admin_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(shown["use_count"], 5);
    assert_eq!(shown["last_used_ip"], "127.0.0.1");
    // A graceful stop writes it.
    let store = app.store.clone();
    let alice = app.alice;
    app.stop().await;
    let stored = store.get_key(alice, &id).await.unwrap().unwrap();
    assert_eq!(stored.use_count, 5);
    assert_eq!(stored.last_used_ip.as_deref(), Some("127.0.0.1"));
    assert!(stored.last_used_at.is_some());
}

#[tokio::test]
async fn health_and_openapi() {
    let app = TestApp::spawn().await;
    let h: Value = app.http.get(app.url("/healthz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(h["status"], "ok");
    let r: Value = app.http.get(app.url("/readyz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(r["status"], "ready");
    let doc: Value = app.http.get(app.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    for (path, method) in [
        ("/v1/whoami", "get"),
        ("/v1/keys", "get"),
        ("/v1/keys", "post"),
        ("/v1/keys/{id}", "get"),
        ("/v1/keys/{id}", "delete"),
        ("/v1/keys/verify", "post"),
        ("/healthz", "get"),
        ("/readyz", "get"),
    ] {
        assert!(doc["paths"][path][method].is_object(), "{method} {path} documented");
        // Every operation may get hyper's refusals of a head, worded by atna (serve::bare).
        for status in ["400", "414", "431"] {
            let answer = &doc["paths"][path][method]["responses"][status]["content"]["application/problem+json"];
            assert!(answer.is_object(), "{method} {path} documents {status}");
        }
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    app.stop().await;
}

#[tokio::test]
async fn the_client_address_comes_from_the_proxy_only_when_trusted() {
    for (trust, want) in [(false, "127.0.0.1"), (true, "203.0.113.7")] {
        let app = TestApp::spawn_with(|s| s.trust_forwarded_for = trust).await;
        let k = app.key_for(app.alice, "behind-proxy", &[]).await;
        let res = app
            .http
            .get(app.url("/v1/whoami"))
            .bearer_auth(&k)
            .header("x-forwarded-for", "10.9.9.9, 203.0.113.7")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let list: Value = app
            .http
            .get(app.url("/v1/keys?search=behind"))
            .bearer_auth(&app.admin_key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(list["data"][0]["last_used_ip"], want, "trust_forwarded_for = {trust}");
        app.stop().await;
    }
}

#[tokio::test]
async fn usage_over_time_counts_allowed_requests_and_refusals_by_reason() {
    let app = TestApp::spawn().await;
    let k = app.key_for(app.alice, "billing", &["billing:read"]).await;
    let id = &k[5..21];
    let wrong = encode(&CredentialId::parse(id).unwrap(), &[b'x'; SECRET_LEN]);
    for _ in 0..4 {
        assert_eq!(app.whoami(&k).await.status(), 200);
    }
    for _ in 0..2 {
        assert_eq!(app.whoami(&wrong).await.status(), 401);
    }
    let refused = app.http.get(app.url("/v1/forward-auth?scope=admin")).bearer_auth(&k).send().await.unwrap();
    assert_eq!(refused.status(), 403);
    // An unknown Credential ID is refused and gets no buckets anywhere.
    let stranger = GeneratedKey::generate();
    assert_eq!(app.whoami(stranger.secret.expose()).await.status(), 401);
    assert!(app.state.verifier.usage().pending_hours(&stranger.id).is_empty());

    // Shown before the flush (this node's memory) and after it (the store), the same.
    let url = format!("/v1/keys/{id}/usage");
    for flushed in [false, true] {
        if flushed {
            app.state.verifier.flush_usage().await.unwrap();
            assert!(app.state.verifier.usage().pending_hours(&CredentialId::parse(id).unwrap()).is_empty());
        }
        let v = app.get_json(&url, &app.admin_key).await;
        assert_eq!(v["granularity"], "hour");
        let buckets = v["buckets"].as_array().unwrap();
        assert_eq!(buckets.len(), 24);
        let busy: Vec<&Value> = buckets.iter().filter(|b| b["allowed"] != 0 || b["refused"] != json!({})).collect();
        assert_eq!(busy.len(), 1, "all in this hour (flushed: {flushed}): {v}");
        assert_eq!(busy[0]["allowed"], 4);
        assert_eq!(busy[0]["refused"], json!({"insufficient_scope": 1, "invalid_secret": 2}));
        assert!(busy[0]["start"].as_str().unwrap().ends_with(":00:00Z"));
    }
    // Daily buckets over an explicit range.
    let today = chrono::Utc::now().date_naive();
    let from = format!("{}T00:00:00Z", today - chrono::Days::new(6));
    let v = app.get_json(&format!("{url}?granularity=day&from={from}"), &app.admin_key).await;
    let buckets = v["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), 7);
    assert_eq!(buckets[6]["allowed"], 4);
    assert_eq!(buckets[0]["start"], from);

    // Bad input gets precise 400s; other people's keys and deleted keys are 404.
    for (query, code) in [
        ("granularity=week", "invalid_granularity"),
        ("from=yesterday", "invalid_time"),
        ("to=2026-13-01T00:00:00Z", "invalid_time"),
        ("from=2026-11-02T00:00:00Z&to=2026-11-01T00:00:00Z", "invalid_range"),
        ("from=2020-01-01T00:00:00Z&to=2026-01-01T00:00:00Z", "invalid_range"),
    ] {
        let res = app.http.get(app.url(&format!("{url}?{query}"))).bearer_auth(&app.admin_key).send().await.unwrap();
        let (status, p) = problem(res).await;
        assert_eq!((status, p["code"].as_str().unwrap()), (400, code), "{query}");
    }
    let bob = user(app.store.as_ref(), "bob@example.com").await;
    let bobs = app.key_for(bob, "bobs", &[]).await;
    let res = app.http.get(app.url(&format!("/v1/keys/{}/usage", &bobs[5..21]))).bearer_auth(&app.admin_key);
    assert_eq!(problem(res.send().await.unwrap()).await.0, 404);
    let res = app.http.get(app.url(&url)).bearer_auth(&k).send().await.unwrap();
    assert_eq!(problem(res).await.1["code"], "insufficient_scope", "needs keys:manage");
    // The OpenAPI document describes it.
    let doc = app.get_json("/openapi.json", &app.admin_key).await;
    assert!(doc["paths"]["/v1/keys/{id}/usage"]["get"].is_object());
    assert!(doc["components"]["schemas"]["UsageSeries"].is_object());
    app.stop().await;
}
