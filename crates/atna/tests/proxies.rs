//! The gateway suite: the real `atna` binary behind the four real proxies, each running the copy-paste
//! configuration from `deploy/` in front of an echo service. For each proxy: a good key (Bearer or `X-API-Key`)
//! reaches the service with the identity atna vouched for; no key, a bad key, a key deleted a moment ago and a key
//! without the path's scope are refused with atna's status and challenge and never reach the service; identity
//! headers a client forges (also as look-alikes, or by naming them in `Connection`) never reach it either; when
//! atna is down, nothing gets through. On PostgreSQL (`ATNA_TEST_POSTGRES_URL`), atna's own `503` (it cannot reach
//! its database) reaches the client as a `503` through every gateway, nginx included.
//!
//! A proxy that is not installed is skipped with "SKIPPED: <proxy> not installed" (a failure with `CI=true`);
//! `scripts/install-proxies` installs all four and prints the `ATNA_NGINX`, `ATNA_CADDY`, `ATNA_TRAEFIK` and
//! `ATNA_ENVOY` paths the suite looks for.

mod common;
mod gateway;

use std::path::{Path, PathBuf};

use common::{atna, atna_env, ok, Server};
use gateway::{Echo, Kind, Proxy};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::Response;
use serde_json::Value;
use sqlx::Connection;

const OWNER: &str = "alice@example.com";
/// A name that is not ASCII: it must reach the service percent-encoded.
const UNICODE_NAME: &str = "Schlüssel für Zoë ✓";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_enforces_atna_keys() {
    gateway_contract(Kind::Nginx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caddy_enforces_atna_keys() {
    gateway_contract(Kind::Caddy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traefik_enforces_atna_keys() {
    gateway_contract(Kind::Traefik).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_enforces_atna_keys() {
    gateway_contract(Kind::Envoy).await;
}

/// atna answers `503` when it cannot decide (a key not in memory, and the database gone); each gateway must pass
/// that on as a `503`, never as a pass or a misleading `401`. nginx needs its `X-Atna-Status` mapping for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn atna_that_cannot_decide_is_a_503_through_every_gateway() {
    let Some(server) = atna_store_postgres::testdb::server_url() else {
        gateway::say("SKIPPED: PostgreSQL not configured (ATNA_TEST_POSTGRES_URL)");
        return;
    };
    let installed: Vec<(Kind, PathBuf)> = [Kind::Nginx, Kind::Caddy, Kind::Traefik, Kind::Envoy]
        .into_iter()
        .filter_map(|kind| Some((kind, kind.installed()?)))
        .collect();
    if installed.is_empty() {
        return;
    }
    let url = atna_store_postgres::testdb::fresh_schema_url(&server).await;
    let db = [("ATNA_DATABASE_URL", url.as_str())];
    ok(atna_env(&db, &["user", "create", "--email", OWNER, "--password-stdin"], Some("correct horse battery\n")));
    let out = ok(atna_env(&db, &["key", "create", "--user", OWNER, "--name", "never-used", "--json"], None));
    let key = serde_json::from_str::<Value>(&out).unwrap()["secret"].as_str().unwrap().to_owned();
    let atna_server = Atna(Some(Server::start_env(&[("ATNA_DATABASE_URL", url.as_str()), ("ATNA_LOG", "off")])));
    let atna_addr = atna_server.addr();
    let echo = Echo::start().await;
    let mut proxies = Vec::new();
    for (kind, bin) in &installed {
        proxies.push(Proxy::start(*kind, bin, &atna_addr, echo.addr).await);
    }

    // The schema goes away under the running server: the key is not in its memory, so it cannot decide.
    let schema = url.rsplit("search_path%3D").next().unwrap();
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE")).execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();

    let client = reqwest::Client::new();
    for proxy in &proxies {
        let res = client.get(format!("{}/hello", proxy.base)).bearer_auth(&key).send().await.unwrap();
        let ctx = format!("{} — atna cannot decide\nproxy log:\n{}", proxy.kind.name(), proxy.log());
        let ctx = format!("{ctx}\nanswer: {res:?}");
        assert_eq!(res.status(), 503, "{ctx}");
        // Envoy takes an authorization service's 5xx for a failure of the service and answers with its own
        // status_on_error (503, no body); the others pass on atna's answer (nginx: its status and X-Atna-Status).
        if !matches!(proxy.kind, Kind::Envoy) {
            assert_eq!(res.headers().get("x-atna-status").map(|v| v.to_str().unwrap()), Some("503"), "{ctx}");
            let ctype = res.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
            assert!(ctype.unwrap_or_default().starts_with("application/problem+json"), "{ctx}");
        }
    }
    assert_eq!(echo.hits(), 0, "nothing reached the service");
}

/// The atna server of a test, killed if the test fails before it stops it (a panic must not leave it running).
struct Atna(Option<Server>);

impl Atna {
    fn base(&self) -> &str {
        &self.0.as_ref().unwrap().base
    }

    fn addr(&self) -> String {
        self.base().trim_start_matches("http://").to_owned()
    }

    /// SIGTERM and a graceful exit.
    fn stop(mut self) {
        let _ = self.0.take().unwrap().stop();
    }
}

impl Drop for Atna {
    fn drop(&mut self) {
        if let Some(server) = self.0.take() {
            server.kill9();
        }
    }
}

/// A key made by the CLI: what the service should be told about it.
struct Key {
    id: String,
    secret: String,
    name: String,
    scopes: String,
}

fn create_key(data: &Path, name: &str, scopes: &[&str]) -> Key {
    let mut args = vec!["key", "create", "--user", OWNER, "--name", name, "--json"];
    for s in scopes {
        args.extend(["--scope", s]);
    }
    let v: Value = serde_json::from_str(&ok(atna(data, &args, None))).unwrap();
    Key {
        id: v["id"].as_str().unwrap().to_owned(),
        secret: v["secret"].as_str().unwrap().to_owned(),
        name: name.to_owned(),
        scopes: scopes.join(" "),
    }
}

async fn gateway_contract(kind: Kind) {
    let Some(bin) = kind.installed() else { return };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out =
        ok(atna(&data, &["user", "create", "--email", OWNER, "--password-stdin"], Some("correct horse battery\n")));
    // "created user alice@example.com (id 1)"
    let owner_id = out.split("(id ").nth(1).unwrap().trim_end_matches([')', '\n']).to_owned();
    let reader = create_key(&data, "billing-reader", &["invoices:read", "reports:read"]);
    let plain = create_key(&data, UNICODE_NAME, &[]);
    let admin = create_key(&data, "ops", &["keys:manage"]);

    let atna_server = Atna(Some(Server::start_env(&[
        ("ATNA_DATA_DIR", data.to_str().unwrap()),
        ("ATNA_LOG", "warn"),
        ("ATNA_TRUSTED_PROXIES", "127.0.0.1/32"),
    ])));
    let atna_addr = atna_server.addr();
    let echo = Echo::start().await;
    let proxy = Proxy::start(kind, &bin, &atna_addr, echo.addr).await;
    let client = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", proxy.base);
    let ctx = |what: &str| format!("{} — {what}\nproxy log:\n{}", kind.name(), proxy.log());

    // A good key as a Bearer token: the service sees the request as sent, with atna's identity headers.
    let res = client.get(url("/orders/7?expand=lines")).bearer_auth(&reader.secret).send().await.unwrap();
    let seen = upstream_view(res, &ctx("Bearer key")).await;
    assert_eq!(seen["uri"], "/orders/7?expand=lines", "{}", ctx("the URI reaches the service unchanged"));
    assert_identity(&seen, &reader, &owner_id, &ctx("Bearer key"));

    // Any method, with a body: atna is asked about it (without the body), and the service gets it whole.
    let body = r#"{"amount": 42}"#;
    let res = client.post(url("/orders")).bearer_auth(&reader.secret).body(body).send().await.unwrap();
    let seen = upstream_view(res, &ctx("POST with a body")).await;
    assert_eq!((seen["method"].as_str(), seen["body"].as_str()), (Some("POST"), Some(body)), "{}", ctx("POST"));

    // The same through X-API-Key; the Unicode name arrives percent-encoded; no scopes is an empty (or no) header.
    let res = client.get(url("/hello")).header("X-API-Key", &plain.secret).send().await.unwrap();
    let seen = upstream_view(res, &ctx("X-API-Key")).await;
    assert_identity(&seen, &plain, &owner_id, &ctx("X-API-Key, Unicode name"));

    // Refusals: atna's status and challenge, and the service is not reached.
    let before = echo.hits();
    let res = client.get(url("/hello")).send().await.unwrap();
    assert_refusal(res, 401, "Bearer realm=\"atna\"", &ctx("no key")).await;
    let wrong = format!("{}xyz", &reader.secret[..reader.secret.len() - 3]);
    let res = client.get(url("/hello")).bearer_auth(&wrong).send().await.unwrap();
    assert_refusal(res, 401, "error=\"invalid_token\"", &ctx("a wrong secret")).await;
    let res = client.get(url("/invoices/7")).bearer_auth(&plain.secret).send().await.unwrap();
    assert_refusal(res, 403, "error=\"insufficient_scope\"", &ctx("/invoices without invoices:read")).await;
    // Claiming the scope, or clearing the requirement, from the client side changes nothing.
    let res = client
        .get(url("/invoices/7"))
        .bearer_auth(&plain.secret)
        .header("X-Atna-Scopes", "invoices:read")
        .header("X-Atna-Require-Scope", "")
        .send()
        .await
        .unwrap();
    assert_refusal(res, 403, "error=\"insufficient_scope\"", &ctx("/invoices with forged scope headers")).await;
    assert_eq!(echo.hits(), before, "{}", ctx("refused requests never reach the service"));
    let res = client.get(url("/invoices/7")).bearer_auth(&reader.secret).send().await.unwrap();
    assert_identity(&upstream_view(res, &ctx("/invoices")).await, &reader, &owner_id, &ctx("/invoices with scope"));

    // Forged identity headers: as sent, as look-alikes that CGI/WSGI/PHP backends read as the same header, and
    // named in Connection (a hop-by-hop header list), which some proxies apply after copying atna's answer in.
    let forged = forged_headers();
    let res = client.get(url("/hello")).bearer_auth(&reader.secret).headers(forged.clone()).send().await.unwrap();
    assert_identity(&upstream_view(res, &ctx("forged headers")).await, &reader, &owner_id, &ctx("forged headers"));
    let res = client.get(url("/hello")).header("X-API-Key", &plain.secret).headers(forged).send().await.unwrap();
    let seen = upstream_view(res, &ctx("forged headers, key without scopes")).await;
    assert_identity(&seen, &plain, &owner_id, &ctx("forged headers, key without scopes"));

    // A rate-limited key: 2 per hour. Allowed answers carry RateLimit-Policy / RateLimit where the proxy can pass
    // atna's headers to the client (nginx, Envoy; Caddy's and Traefik's forward-auth copy them only to the upstream
    // request); the third request is a real 429 with Retry-After at the client, and never reaches the service.
    let res = client
        .post(format!("{}/v1/keys", atna_server.base()))
        .bearer_auth(&admin.secret)
        .json(&serde_json::json!({"name": "metered", "rate_limit": {"limit": 2, "period_seconds": 3600}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let metered: Value = res.json().await.unwrap();
    let metered = metered["secret"].as_str().unwrap().to_owned();
    for left in [1, 0] {
        let res = client.get(url("/hello")).bearer_auth(&metered).send().await.unwrap();
        assert_eq!(res.status(), 200, "{}", ctx("a rate-limited key within its limit"));
        let h = |n: &str| res.headers().get(n).map(|v| v.to_str().unwrap().to_owned());
        if matches!(kind, Kind::Nginx | Kind::Envoy) {
            assert_eq!(
                h("ratelimit-policy").as_deref(),
                Some(r#""default";q=2;w=3600"#),
                "{}",
                ctx("RateLimit-Policy")
            );
            let state = h("ratelimit").unwrap_or_default();
            assert!(state.starts_with(&format!(r#""default";r={left};t="#)), "{state}: {}", ctx("RateLimit"));
        }
    }
    let before = echo.hits();
    let res = client.get(url("/hello")).bearer_auth(&metered).send().await.unwrap();
    assert_eq!(res.status(), 429, "{}", ctx("over the rate limit"));
    let retry = res.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(retry.as_deref(), Some("1800"), "{}", ctx("Retry-After at the client"));
    assert_eq!(echo.hits(), before, "{}", ctx("a rate-limited request never reaches the service"));

    // A key deleted through the API is refused on the very next request.
    let res = client
        .post(format!("{}/v1/keys", atna_server.base()))
        .bearer_auth(&admin.secret)
        .json(&serde_json::json!({"name": "short-lived"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let created: Value = res.json().await.unwrap();
    let (doomed_id, doomed) = (created["id"].as_str().unwrap(), created["secret"].as_str().unwrap());
    let res = client.get(url("/hello")).bearer_auth(doomed).send().await.unwrap();
    assert_eq!(res.status(), 200, "{}", ctx("a new key works at once"));
    let res = client
        .delete(format!("{}/v1/keys/{doomed_id}", atna_server.base()))
        .bearer_auth(&admin.secret)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let before = echo.hits();
    let res = client.get(url("/hello")).bearer_auth(doomed).send().await.unwrap();
    assert_refusal(res, 401, "error=\"invalid_token\"", &ctx("the key just deleted")).await;
    assert_eq!(echo.hits(), before, "{}", ctx("a deleted key never reaches the service"));

    // atna down: the proxy fails closed (nginx's mapping and Envoy's status_on_error make it a 503).
    atna_server.stop();
    let res = client.get(url("/hello")).bearer_auth(&reader.secret).send().await.unwrap();
    let status = res.status().as_u16();
    match kind {
        Kind::Nginx | Kind::Envoy => assert_eq!(status, 503, "{}", ctx("atna unreachable")),
        Kind::Caddy | Kind::Traefik => assert!(status >= 500, "{}", ctx(&format!("atna unreachable: {status}"))),
    }
    assert_eq!(echo.hits(), before, "{}", ctx("without atna nothing reaches the service"));
}

/// Client-sent identity headers, their look-alikes, and a `Connection` header naming the real ones.
fn forged_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    let mut add = |name: &str, value: &str| {
        h.append(HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_str(value).unwrap());
    };
    add("x-atna-owner-email", "admin@evil.example");
    add("x-atna-key-id", "AAAAAAAAAAAAAAAA");
    add("x-atna-scopes", "keys:manage");
    add("x-atna-key-name", "forged");
    add("x_atna_owner_email", "admin@evil.example");
    add("x.atna.owner.email", "admin@evil.example");
    add("x-atna_owner_id", "999");
    add("x_atna_scopes", "keys:manage");
    add("connection", "X-Atna-Key-Id, x-atna-owner-email");
    h
}

/// The echo service's account of the request: asserts that it got through.
async fn upstream_view(res: Response, ctx: &str) -> Value {
    let status = res.status();
    let body = res.text().await.unwrap();
    assert_eq!(status, 200, "{ctx}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{ctx}: not the echo service's answer ({e}): {body}"))
}

/// The service saw exactly atna's identity for `key`: each `X-Atna-*` header once with atna's value, and no other
/// header whose name reads as an `X-Atna-*` one once punctuation is folded (as CGI-style backends fold it).
fn assert_identity(seen: &Value, key: &Key, owner_id: &str, ctx: &str) {
    let headers: Vec<(String, String)> = seen["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h[0].as_str().unwrap().to_owned(), h[1].as_str().unwrap().to_owned()))
        .collect();
    let folded = |n: &str| n.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect::<String>();
    let mut atna: Vec<&(String, String)> = headers.iter().filter(|(n, _)| folded(n).starts_with("x_atna_")).collect();
    atna.sort();
    for (name, _) in &atna {
        assert!(name.starts_with("x-atna-") && !name.contains('_'), "{ctx}: a look-alike reached the service: {name}");
    }
    let value = |name: &str| {
        let all: Vec<&str> = atna.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect();
        assert!(all.len() <= 1, "{ctx}: {name} reached the service {} times: {all:?}", all.len());
        all.first().copied()
    };
    assert_eq!(value("x-atna-key-id"), Some(key.id.as_str()), "{ctx}: {atna:?}");
    assert_eq!(value("x-atna-owner-id"), Some(owner_id), "{ctx}: {atna:?}");
    assert_eq!(value("x-atna-owner-email"), Some(OWNER), "{ctx}: {atna:?}");
    // nginx drops a header whose value is empty: "no scopes" may arrive as no header at all.
    assert_eq!(value("x-atna-scopes").unwrap_or(""), key.scopes, "{ctx}: {atna:?}");
    let name = value("x-atna-key-name").unwrap_or_else(|| panic!("{ctx}: no X-Atna-Key-Name: {atna:?}"));
    assert!(name.is_ascii(), "{ctx}: the key name must arrive percent-encoded: {name:?}");
    assert_eq!(percent_decode(name), key.name, "{ctx}: {atna:?}");
    for (name, _) in &atna {
        let known = ["x-atna-key-id", "x-atna-key-name", "x-atna-owner-id", "x-atna-owner-email", "x-atna-scopes"];
        assert!(known.contains(&name.as_str()) || name == "x-atna-status", "{ctx}: unexpected {name} at the service");
    }
}

/// A refusal passed on from atna: its status, a challenge containing `challenge`, a problem document.
async fn assert_refusal(res: Response, status: u16, challenge: &str, ctx: &str) {
    let got = res.status().as_u16();
    let www: Vec<String> =
        res.headers().get_all("www-authenticate").iter().map(|v| v.to_str().unwrap().to_owned()).collect();
    let ctype = res.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    let body = res.text().await.unwrap();
    assert_eq!(got, status, "{ctx}: {body}");
    assert_eq!(www.len(), 1, "{ctx}: one WWW-Authenticate challenge, got {www:?}");
    assert!(www[0].starts_with("Bearer realm=\"atna\"") && www[0].contains(challenge), "{ctx}: {www:?}");
    assert!(ctype.starts_with("application/problem+json"), "{ctx}: content-type {ctype:?}");
}

/// Decodes `%XX` escapes (UTF-8), as the service would to show a key's name.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap_or_else(|_| panic!("bad escape in {s:?}")));
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}
