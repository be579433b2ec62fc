//! `/v1/forward-auth` over real HTTP, the contract every gateway relies on: statuses, challenges, identity headers,
//! requirements that only add up, and no use counted for a refused request. Runs on SQLite, and on PostgreSQL with
//! `ATNA_TEST_BACKEND=postgres`. The real proxies in front of it are tested by `crates/atna/tests/proxies.rs`.

mod common;

use common::TestApp;
use reqwest::{Method, Response};
use serde_json::Value;

const IDENTITY: [&str; 5] =
    ["x-atna-key-id", "x-atna-key-name", "x-atna-owner-id", "x-atna-owner-email", "x-atna-scopes"];

fn header(res: &Response, name: &str) -> Option<String> {
    res.headers().get(name).map(|v| v.to_str().unwrap().to_owned())
}

async fn ask(app: &TestApp, method: Method, path: &str, headers: &[(&str, &str)]) -> Response {
    let mut req = app.http.request(method, app.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn a_good_key_passes_with_its_identity_on_every_method_and_path() {
    let app = TestApp::spawn().await;
    let key = app.key_for(app.alice, "billing-26_11_2026-14_05", &["keys:manage"]).await;
    let bearer = format!("Bearer {key}");
    for method in [Method::GET, Method::HEAD, Method::POST, Method::PUT, Method::DELETE, Method::OPTIONS, Method::PATCH]
    {
        for path in ["/v1/forward-auth", "/v1/forward-auth/api/invoices?page=2"] {
            let res = ask(&app, method.clone(), path, &[("authorization", &bearer)]).await;
            assert_eq!(res.status(), 200, "{method} {path}");
            assert_eq!(header(&res, "x-atna-status").as_deref(), Some("200"));
            assert_eq!(header(&res, "cache-control").as_deref(), Some("no-store"));
            assert_eq!(header(&res, "x-atna-key-id").as_deref(), Some(&key[5..21]));
            assert_eq!(header(&res, "x-atna-key-name").as_deref(), Some("billing-26_11_2026-14_05"));
            assert_eq!(header(&res, "x-atna-owner-id"), Some(app.alice.0.to_string()));
            assert_eq!(header(&res, "x-atna-owner-email").as_deref(), Some("alice@example.com"));
            assert_eq!(header(&res, "x-atna-scopes").as_deref(), Some("keys:manage"));
            assert!(res.bytes().await.unwrap().is_empty(), "empty body");
        }
    }
    // X-API-Key for clients that cannot set Authorization; the upstream's own Basic auth does not get in the way.
    let res =
        ask(&app, Method::GET, "/v1/forward-auth", &[("x-api-key", &key), ("authorization", "Basic dXNlcjpwYXNz")])
            .await;
    assert_eq!(res.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn every_identity_header_is_present_even_when_empty_and_unicode_is_percent_encoded() {
    let app = TestApp::spawn().await;
    let key = app.key_for(app.alice, "café ☕", &[]).await;
    let res = ask(&app, Method::GET, "/v1/forward-auth", &[("authorization", &format!("Bearer {key}"))]).await;
    assert_eq!(res.status(), 200);
    for h in IDENTITY {
        assert!(res.headers().contains_key(h), "{h} is always sent");
    }
    assert_eq!(header(&res, "x-atna-scopes").as_deref(), Some(""));
    assert_eq!(header(&res, "x-atna-key-name").as_deref(), Some("caf%C3%A9 %E2%98%95"));
    app.stop().await;
}

#[tokio::test]
async fn refusals_say_why_with_the_right_status_and_challenge() {
    let app = TestApp::spawn().await;
    let key = app.key_for(app.alice, "reader", &[]).await;
    let deleted = app.key_for(app.alice, "gone", &[]).await;
    let del = app.http.delete(app.url(&format!("/v1/keys/{}", &deleted[5..21]))).bearer_auth(&app.admin_key).send();
    assert_eq!(del.await.unwrap().status(), 204);
    // (request headers, status, code, challenge)
    type Case<'a> = (Vec<(&'a str, String)>, u16, &'a str, &'a str);
    let cases: Vec<Case> = vec![
        (vec![], 401, "credentials_missing", r#"Bearer realm="atna""#),
        (vec![("authorization", "Basic eDp5".into())], 401, "credentials_unsupported_scheme", r#"Bearer realm="atna""#),
        (
            vec![("authorization", "Bearer nope".into())],
            401,
            "key_malformed",
            r#"Bearer realm="atna", error="invalid_token""#,
        ),
        (vec![("x-api-key", "nope".into())], 401, "key_malformed", r#"Bearer realm="atna", error="invalid_token""#),
        (
            vec![("authorization", format!("Bearer {deleted}"))],
            401,
            "key_revoked",
            r#"Bearer realm="atna", error="invalid_token""#,
        ),
    ];
    for (headers, status, code, challenge) in cases {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let res = ask(&app, Method::GET, "/v1/forward-auth", &h).await;
        assert_eq!(res.status(), status, "{headers:?}");
        assert_eq!(header(&res, "www-authenticate").as_deref(), Some(challenge), "{headers:?}");
        assert_eq!(header(&res, "x-atna-status"), Some(status.to_string()));
        assert_eq!(header(&res, "cache-control").as_deref(), Some("no-store"));
        for h in IDENTITY {
            assert!(!res.headers().contains_key(h), "no identity on a refusal");
        }
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["code"], code);
    }

    // A good key without the scope the configuration requires: 403, by query string or by header.
    let bearer = format!("Bearer {key}");
    let res = ask(&app, Method::GET, "/v1/forward-auth?scope=invoices:read", &[("authorization", &bearer)]).await;
    assert_eq!(res.status(), 403);
    assert_eq!(
        header(&res, "www-authenticate").as_deref(),
        Some(r#"Bearer realm="atna", error="insufficient_scope", scope="invoices:read""#)
    );
    assert_eq!(header(&res, "x-atna-status").as_deref(), Some("403"));
    let res = ask(
        &app,
        Method::POST,
        "/v1/forward-auth/invoices",
        &[("authorization", &bearer), ("x-atna-require-scope", "invoices:read")],
    )
    .await;
    assert_eq!(res.status(), 403);
    // Unreadable requirements are the configuration's fault, told as a 400, never a 5xx.
    let many = (0..40).map(|i| format!("scope=s{i}")).collect::<Vec<_>>().join("&");
    let res = ask(&app, Method::GET, &format!("/v1/forward-auth?{many}"), &[("authorization", &bearer)]).await;
    assert_eq!(res.status(), 400);
    app.stop().await;
}

#[tokio::test]
async fn requirements_only_add_up() {
    let app = TestApp::spawn().await;
    // The key holds keys:manage only.
    let bearer = format!("Bearer {}", app.admin_key);
    let ok = |path: &'static str, extra: Option<&'static str>| {
        let bearer = bearer.clone();
        let app = &app;
        async move {
            let mut h = vec![("authorization", bearer.as_str())];
            if let Some(s) = extra {
                h.push(("x-atna-require-scope", s));
            }
            ask(app, Method::GET, path, &h).await.status().as_u16()
        }
    };
    assert_eq!(ok("/v1/forward-auth?scope=keys:manage", None).await, 200);
    // Whatever else arrives (a client's own query on Envoy's appended path, an extra header) can only narrow.
    assert_eq!(ok("/v1/forward-auth?scope=keys:manage", Some("admin")).await, 403);
    assert_eq!(ok("/v1/forward-auth/x?scope=keys:manage&scope=admin", None).await, 403);
    assert_eq!(ok("/v1/forward-auth?scope=", Some(" , ")).await, 200, "empty requirements require nothing");
    app.stop().await;
}

#[tokio::test]
async fn a_refused_request_counts_no_use_and_an_allowed_one_does() {
    let app = TestApp::spawn().await;
    let key = app.key_for(app.alice, "counted", &[]).await;
    let bearer = format!("Bearer {key}");
    for _ in 0..3 {
        let res = ask(&app, Method::GET, "/v1/forward-auth?scope=invoices:read", &[("authorization", &bearer)]).await;
        assert_eq!(res.status(), 403);
    }
    let id = atna_domain::CredentialId::parse(&key[5..21]).unwrap();
    assert!(app.state.verifier.usage().pending(&id).is_none(), "refused requests consume nothing");
    assert_eq!(ask(&app, Method::GET, "/v1/forward-auth", &[("authorization", &bearer)]).await.status(), 200);
    assert_eq!(app.state.verifier.usage().pending(&id).map(|p| p.count), Some(1));
    app.stop().await;
}

#[tokio::test]
async fn the_openapi_document_describes_forward_auth() {
    let app = TestApp::spawn().await;
    let doc: Value = app.http.get(app.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    let op = &doc["paths"]["/v1/forward-auth"]["get"];
    let statuses: Vec<&String> = op["responses"].as_object().unwrap().keys().collect();
    assert_eq!(statuses, ["200", "400", "401", "403", "414", "429", "431", "503"]);
    app.stop().await;
}

#[tokio::test]
async fn metrics_count_checks_by_entry_point_and_outcome() {
    let app = TestApp::spawn().await;
    let scrape = || async {
        let res = app.http.get(app.url("/metrics")).send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert!(header(&res, "content-type").unwrap().starts_with("text/plain; version=0.0.4"));
        res.text().await.unwrap()
    };
    let sample = |text: &str, series: &str| -> u64 {
        let line = text.lines().find(|l| l.starts_with(series) && l[series.len()..].starts_with(' ')).unwrap();
        line.rsplit(' ').next().unwrap().parse::<f64>().unwrap() as u64
    };
    let before = scrape().await;
    let bearer = format!("Bearer {}", app.admin_key);
    for _ in 0..3 {
        ask(&app, Method::GET, "/v1/forward-auth", &[("authorization", &bearer)]).await;
    }
    ask(&app, Method::GET, "/v1/forward-auth?scope=nope", &[("authorization", &bearer)]).await;
    ask(&app, Method::GET, "/v1/forward-auth", &[]).await;
    app.whoami(&app.admin_key).await;
    app.whoami("atna_nope").await;
    let verify = app.http.post(app.url("/v1/keys/verify")).json(&serde_json::json!({"key": app.admin_key})).send();
    assert_eq!(verify.await.unwrap().status(), 200);
    app.http.get(app.url("/v1/keys")).bearer_auth(&app.admin_key).send().await.unwrap();
    let after = scrape().await;
    let moved = |series: &str| sample(&after, series) - sample(&before, series);
    assert_eq!(moved(r#"atna_key_checks_total{entry="forward_auth",outcome="allowed"}"#), 3);
    assert_eq!(moved(r#"atna_key_checks_total{entry="forward_auth",outcome="insufficient_scope"}"#), 1);
    assert_eq!(moved(r#"atna_key_checks_total{entry="forward_auth",outcome="credentials_missing"}"#), 1);
    assert_eq!(moved(r#"atna_key_checks_total{entry="whoami",outcome="allowed"}"#), 1);
    assert_eq!(moved(r#"atna_key_checks_total{entry="whoami",outcome="key_malformed"}"#), 1);
    assert_eq!(moved(r#"atna_key_checks_total{entry="verify",outcome="allowed"}"#), 1);
    assert_eq!(moved(r#"atna_key_checks_total{entry="api",outcome="allowed"}"#), 1);
    assert_eq!(moved(r#"atna_key_check_duration_seconds_count{entry="forward_auth"}"#), 5);
    assert!(moved("atna_cache_hits_total") >= 6, "{after}");
    assert!(sample(&after, "atna_cache_keys") >= 1);
    assert!(!after.contains(&app.admin_key[22..60]) && !after.contains("alice@"), "no secrets, no people");
    app.stop().await;
}

#[tokio::test]
async fn metrics_listen_moves_metrics_off_the_main_listener() {
    let store = common::fresh_store().await;
    let settings = atna_server::Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        metrics_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..Default::default()
    };
    let app = atna_server::App::build(settings, store).await.unwrap();
    let (main, metrics) = (app.local_addr(), app.metrics_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(app.run(async {
        let _ = rx.await;
    }));
    let http = reqwest::Client::new();
    let on_main = http.get(format!("http://{main}/metrics")).send().await.unwrap();
    assert_eq!(on_main.status(), 404, "not on the public listener any more");
    let scraped = http.get(format!("http://{metrics}/metrics")).send().await.unwrap();
    assert_eq!(scraped.status(), 200);
    assert!(scraped.text().await.unwrap().contains("# TYPE atna_key_checks_total counter"));
    // The metrics listener serves nothing else.
    assert_eq!(http.get(format!("http://{metrics}/v1/whoami")).send().await.unwrap().status(), 404);
    assert_eq!(http.get(format!("http://{metrics}/healthz")).send().await.unwrap().status(), 404);
    assert_eq!(http.get(format!("http://{main}/healthz")).send().await.unwrap().status(), 200);
    let _ = tx.send(());
    task.await.unwrap().unwrap();
}
