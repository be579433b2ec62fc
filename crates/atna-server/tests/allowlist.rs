//! Per-key IP allowlists over real sockets, at every entry point: `/v1/whoami` (the direct fast path), the Bearer
//! routes (`/v1/keys`), `/v1/forward-auth` and `/v1/keys/verify`. Clients bind to 127.0.0.2 to come from elsewhere
//! (all of 127.0.0.0/8 is loopback on Linux); IPv6 clients come through `X-Forwarded-For` from a trusted proxy
//! (`trusted_proxies`).

mod common;

use std::net::IpAddr;

use atna_domain::CredentialId;
use atna_server::service::{self, KeySpec};
use atna_store::{Actor, KeyRecord};
use common::TestApp;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// A client whose connections come from `ip` (a loopback address).
fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder().local_address(ip.parse::<IpAddr>().unwrap()).build().unwrap()
}

/// Creates a key for Alice with an IP allowlist, as the operator would.
async fn fenced(t: &TestApp, name: &str, scopes: &[&str], allow: &[&str]) -> (KeyRecord, String) {
    let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
    let allow: Vec<String> = allow.iter().map(|s| s.to_string()).collect();
    let spec = KeySpec {
        rate_limit: None,
        quota: None,
        once: None,
        name,
        scopes: &scopes,
        expires_at: None,
        by_key: None,
        ip_allowlist: &allow,
    };
    let (rec, secret) =
        service::create_key(&*t.store, t.alice, Actor::Operator, spec, atna_server::clock::now()).await.unwrap();
    (rec, secret.expose().to_owned())
}

/// Uses of a key counted in memory and not yet flushed.
fn uses(t: &TestApp, id: &CredentialId) -> i64 {
    t.state.verifier.usage().pending(id).map_or(0, |p| p.count)
}

async fn problem(r: reqwest::Response) -> (StatusCode, String) {
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    (status, body["code"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn whoami_and_the_key_routes_refuse_a_key_outside_its_allowlist() {
    let t = TestApp::spawn().await;
    let (rec, key) = fenced(&t, "fenced", &["keys:manage"], &["127.0.0.2"]).await;
    let (inside, outside) = (client_from("127.0.0.2"), client_from("127.0.0.1"));

    let r = outside.get(t.url("/v1/whoami")).bearer_auth(&key).send().await.unwrap();
    assert_eq!(problem(r).await, (StatusCode::FORBIDDEN, "ip_not_allowed".into()));
    // A stolen `keys:manage` key is no use from elsewhere: not for listing, not for making keys.
    let r = outside.get(t.url("/v1/keys")).bearer_auth(&key).send().await.unwrap();
    assert_eq!(problem(r).await, (StatusCode::FORBIDDEN, "ip_not_allowed".into()));
    let r = outside.post(t.url("/v1/keys")).bearer_auth(&key).json(&json!({"name": "x"})).send().await.unwrap();
    assert_eq!(problem(r).await, (StatusCode::FORBIDDEN, "ip_not_allowed".into()));
    assert_eq!(uses(&t, &rec.id), 0, "refused requests count no use");
    let metrics = t.http.get(t.url("/metrics")).send().await.unwrap().text().await.unwrap();
    for series in [
        r#"atna_key_checks_total{entry="whoami",outcome="ip_not_allowed"} 1"#,
        r#"atna_key_checks_total{entry="api",outcome="ip_not_allowed"} 2"#,
    ] {
        assert!(metrics.lines().any(|l| l == series), "{series} in\n{metrics}");
    }

    let r = inside.get(t.url("/v1/whoami")).bearer_auth(&key).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = inside.get(t.url("/v1/keys")).bearer_auth(&key).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let listed: Value = r.json().await.unwrap();
    let me = listed["data"].as_array().unwrap().iter().find(|k| k["id"] == rec.id.as_str()).unwrap().clone();
    assert_eq!(me["ip_allowlist"], json!(["127.0.0.2/32"]), "shown wherever the key is shown");
    assert_eq!(uses(&t, &rec.id), 2);

    // Keys without an allowlist work from anywhere, as before.
    assert_eq!(outside.get(t.url("/v1/whoami")).bearer_auth(&t.admin_key).send().await.unwrap().status(), 200);
    t.stop().await;
}

#[tokio::test]
async fn forward_auth_checks_the_allowlist_before_scopes_over_ipv4_and_ipv6() {
    let t = TestApp::spawn_with(|s| s.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()]).await;
    let (rec, key) = fenced(&t, "gw", &["invoices:read"], &["198.51.100.0/24", "2001:db8::/32"]).await;
    let ask = |from: &'static str, query: &'static str| {
        t.http.get(t.url(&format!("/v1/forward-auth{query}"))).bearer_auth(&key).header("x-forwarded-for", from).send()
    };
    for (from, want) in [
        ("198.51.100.7", StatusCode::OK),
        ("2001:db8:42::1", StatusCode::OK),
        ("198.51.101.7", StatusCode::FORBIDDEN),
        ("2001:db9::1", StatusCode::FORBIDDEN),
        // A client's own claim left of the proxy's entry changes nothing.
        ("198.51.100.7, 203.0.113.9", StatusCode::FORBIDDEN),
    ] {
        let r = ask(from, "").await.unwrap();
        assert_eq!(r.status(), want, "from {from}");
        assert_eq!(r.headers()["x-atna-status"], want.as_str(), "nginx reads the real status here");
        if want == StatusCode::FORBIDDEN {
            assert_eq!(problem(r).await.1, "ip_not_allowed", "from {from}");
        }
    }
    // From outside, the IP says no before a missing scope does; from inside, the scope decides.
    let r = ask("203.0.113.9", "?scope=invoices:write").await.unwrap();
    assert_eq!(problem(r).await, (StatusCode::FORBIDDEN, "ip_not_allowed".into()));
    let r = ask("2001:db8::1", "?scope=invoices:write").await.unwrap();
    assert_eq!(problem(r).await, (StatusCode::FORBIDDEN, "insufficient_scope".into()));
    assert_eq!(uses(&t, &rec.id), 2, "only the two allowed requests counted");
    t.stop().await;
}

#[tokio::test]
async fn verify_checks_the_given_ip_or_the_callers_and_asked_scopes() {
    let t = TestApp::spawn().await;
    let (rec, key) = fenced(&t, "svc", &["reports:read"], &["203.0.113.0/24", "127.0.0.2"]).await;
    let verify = |from: &'static str, body: Value| {
        let url = t.url("/v1/keys/verify");
        async move {
            let r = client_from(from).post(url).json(&body).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            r.json::<Value>().await.unwrap()
        }
    };
    let v = verify("127.0.0.1", json!({"key": key, "ip": "203.0.113.50"})).await;
    assert_eq!((v["valid"].clone(), v["code"].clone()), (json!(true), json!("VALID")));
    assert_eq!(v["ip_allowlist"], json!(["203.0.113.0/24", "127.0.0.2/32"]));
    let v = verify("127.0.0.2", json!({"key": key, "ip": "2001:db8::1"})).await;
    assert_eq!((v["valid"].clone(), v["code"].clone()), (json!(false), json!("IP_NOT_ALLOWED")));
    assert_eq!(v["key_id"], rec.id.as_str(), "the secret matched: the key is named");
    // Without `ip`, the caller's own address is checked.
    assert_eq!(verify("127.0.0.1", json!({"key": key})).await["code"], "IP_NOT_ALLOWED");
    assert_eq!(verify("127.0.0.2", json!({"key": key})).await["code"], "VALID");
    // Scopes: all must be held; the IP is checked first.
    let v = verify("127.0.0.2", json!({"key": key, "scopes": ["reports:read", "reports:write"]})).await;
    assert_eq!((v["valid"].clone(), v["code"].clone()), (json!(false), json!("INSUFFICIENT_SCOPE")));
    assert_eq!(v["scopes"], json!(["reports:read"]));
    let v = verify("127.0.0.1", json!({"key": key, "scopes": ["reports:write"]})).await;
    assert_eq!(v["code"], "IP_NOT_ALLOWED");
    assert_eq!(verify("127.0.0.2", json!({"key": key, "scopes": ["reports:read"]})).await["code"], "VALID");
    assert_eq!(uses(&t, &rec.id), 3, "only the three VALID answers counted a use");
    // An `ip` that is not an address is the asker's mistake: 422.
    let r = t.http.post(t.url("/v1/keys/verify")).json(&json!({"key": key, "ip": "nope"})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    t.stop().await;
}

#[tokio::test]
async fn the_api_sets_shows_and_checks_allowlists_when_making_keys() {
    let t = TestApp::spawn().await;
    let create = |key: String, body: Value| t.http.post(t.url("/v1/keys")).bearer_auth(key).json(&body).send();

    let r = create(t.admin_key.clone(), json!({"name": "a", "ip_allowlist": ["203.0.113.9/24", "2001:DB8::1"]}));
    let r = r.await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let made: Value = r.json().await.unwrap();
    assert_eq!(made["ip_allowlist"], json!(["203.0.113.0/24", "2001:db8::1/128"]), "canonical form");
    let r = create(t.admin_key.clone(), json!({"name": "b", "ip_allowlist": null})).await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["ip_allowlist"], Value::Null, "null: anywhere");

    let r = create(t.admin_key.clone(), json!({"name": "c", "ip_allowlist": ["10.0.0.0/8", "10.0.0.300"]}));
    let r = r.await.unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "invalid_ip_allowlist");
    assert!(body["detail"].as_str().unwrap().contains("`10.0.0.300`"), "the bad entry is named: {body}");
    let many: Vec<String> = (0..65).map(|i| format!("10.0.{i}.0/24")).collect();
    let r = create(t.admin_key.clone(), json!({"name": "d", "ip_allowlist": many})).await.unwrap();
    assert_eq!(problem(r).await, (StatusCode::UNPROCESSABLE_ENTITY, "invalid_ip_allowlist".into()));

    // A key with an allowlist makes keys only within it; an omitted allowlist is inherited.
    let (_, parent) = fenced(&t, "parent", &["keys:manage"], &["127.0.0.0/8", "2001:db8::/32"]).await;
    let r = create(parent.clone(), json!({"name": "child"})).await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["ip_allowlist"], json!(["127.0.0.0/8", "2001:db8::/32"]));
    let r = create(parent.clone(), json!({"name": "narrow", "ip_allowlist": ["127.0.0.2", "2001:db8:1::/48"]}));
    assert_eq!(r.await.unwrap().status(), StatusCode::CREATED);
    let r = create(parent.clone(), json!({"name": "wide", "ip_allowlist": ["127.0.0.2", "10.0.0.0/8"]}));
    let r = r.await.unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "ip_allowlist_beyond_caller");
    assert!(body["detail"].as_str().unwrap().contains("10.0.0.0/8"), "{body}");
    let r = create(parent, json!({"name": "everywhere", "ip_allowlist": ["0.0.0.0/0"]})).await.unwrap();
    assert_eq!(problem(r).await, (StatusCode::UNPROCESSABLE_ENTITY, "ip_allowlist_beyond_caller".into()));
    t.stop().await;
}

#[tokio::test]
async fn the_openapi_document_describes_allowlists_and_their_refusals() {
    let t = TestApp::spawn().await;
    let doc: Value = t.http.get(t.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    let schemas = &doc["components"]["schemas"];
    for (schema, field) in [
        ("Key", "ip_allowlist"),
        ("CreateKey", "ip_allowlist"),
        ("VerifyRequest", "ip"),
        ("VerifyRequest", "scopes"),
        ("VerifyResponse", "ip_allowlist"),
    ] {
        assert!(schemas[schema]["properties"][field].is_object(), "{schema}.{field} documented");
    }
    for (path, method) in
        [("/v1/whoami", "get"), ("/v1/keys", "get"), ("/v1/keys", "post"), ("/v1/forward-auth", "get")]
    {
        let forbidden = doc["paths"][path][method]["responses"]["403"]["description"].as_str().unwrap_or_default();
        assert!(forbidden.contains("ip_not_allowed"), "{method} {path}: 403 ip_not_allowed documented");
    }
    let post = doc["paths"]["/v1/keys"]["post"]["responses"]["422"]["description"].as_str().unwrap();
    assert!(post.contains("invalid_ip_allowlist") && post.contains("ip_allowlist_beyond_caller"), "{post}");
    t.stop().await;
}
