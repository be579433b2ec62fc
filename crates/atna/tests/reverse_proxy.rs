//! Reverse-proxy mode, end to end: a real `atna serve` with `upstream` and `proxy_listen` in front of a real upstream
//! (an axum server in this process), driven over HTTP and WebSocket. Requests whose paths a client library would
//! tidy up (dot segments, encoded slashes) and hop-by-hop headers go over a raw TCP connection.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;
use common::{atna_env, database, free_port, ok, Server, BIN};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MB: u64 = 1024 * 1024;

/// What the upstream saw.
#[derive(Default)]
struct Seen {
    requests: AtomicU64,
}

/// The upstream: `/upload` counts a streamed body, `/download/{n}` streams `n` bytes, `/ws` says which key it was
/// given and then echoes, `/hang` never answers, and every other request is echoed back as JSON (method, target,
/// headers).
async fn upstream() -> (SocketAddr, Arc<Seen>) {
    async fn echo(State(seen): State<Arc<Seen>>, method: Method, uri: Uri, headers: HeaderMap) -> Response {
        seen.requests.fetch_add(1, Relaxed);
        let mut h: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, v) in &headers {
            h.entry(k.as_str().to_owned()).or_default().push(String::from_utf8_lossy(v.as_bytes()).into_owned());
        }
        axum::Json(json!({"method": method.as_str(), "target": uri.to_string(), "headers": h})).into_response()
    }
    async fn upload(State(seen): State<Arc<Seen>>, body: Body) -> String {
        seen.requests.fetch_add(1, Relaxed);
        let mut stream = body.into_data_stream();
        let mut n = 0u64;
        while let Some(chunk) = stream.next().await {
            n += chunk.unwrap().len() as u64;
        }
        n.to_string()
    }
    async fn download(UrlPath(n): UrlPath<u64>) -> Response {
        let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
        let chunks = n / chunk.len() as u64;
        let stream = futures::stream::iter((0..chunks).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
        ([("content-length", (chunks * 64 * 1024).to_string())], Body::from_stream(stream)).into_response()
    }
    async fn ws(headers: HeaderMap, up: WebSocketUpgrade) -> Response {
        let key = headers.get("x-atna-key-id").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        up.on_upgrade(move |mut socket: WebSocket| async move {
            let _ = socket.send(Message::Text(format!("key {key}").into())).await;
            while let Some(Ok(m)) = socket.recv().await {
                if matches!(m, Message::Close(_)) || socket.send(m).await.is_err() {
                    break;
                }
            }
        })
    }
    let seen = Arc::new(Seen::default());
    let app = Router::new()
        .route("/upload", post(upload))
        .route("/download/{n}", get(download))
        .route("/ws", get(ws))
        .route("/hang", any(std::future::pending::<&'static str>))
        .fallback(echo)
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, seen)
}

/// A running atna in reverse-proxy mode.
struct Proxy {
    server: Server,
    /// `http://127.0.0.1:PORT` of the proxy listener.
    base: String,
    addr: SocketAddr,
    /// A key with the scope `api` only.
    api_key: String,
    /// A key with `api` and `admin:write`.
    admin_key: String,
    /// Its Credential ID.
    admin_id: String,
    /// The environment that points the command line at its database.
    db: Vec<(&'static str, String)>,
    _dir: tempfile::TempDir,
}

impl Proxy {
    /// Runs `atna ARGS` on this proxy's database.
    fn cli(&self, args: &[&str]) -> String {
        let env: Vec<(&str, &str)> = self.db.iter().map(|(k, v)| (*k, v.as_str())).collect();
        ok(atna_env(&env, args, None))
    }
}

fn create_key(env: &[(&str, &str)], name: &str, scopes: &[&str]) -> Value {
    let mut args = vec!["key", "create", "--user", "alice@example.com", "--name", name, "--json"];
    for s in scopes {
        args.extend(["--scope", s]);
    }
    serde_json::from_str(&ok(atna_env(env, &args, None))).unwrap()
}

/// Starts atna with the proxy in front of `upstream`, with `extra` TOML lines, on the backend `ATNA_TEST_BACKEND`
/// names.
async fn start(upstream: &str, extra: &str) -> Proxy {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let db = database(&data).await;
    let env: Vec<(&str, &str)> = db.iter().map(|(k, v)| (*k, v.as_str())).collect();
    ok(atna_env(
        &env,
        &["user", "create", "--email", "alice@example.com", "--password-stdin"],
        Some("correct horse battery"),
    ));
    let api = create_key(&env, "api", &["api"]);
    let admin = create_key(&env, "admin", &["api", "admin:write"]);
    let config = dir.path().join("atna.toml");
    std::fs::write(
        &config,
        format!(
            "upstream = \"{upstream}\"\nproxy_listen = \"127.0.0.1:0\"\n{extra}\n\
             [[proxy.routes]]\npath_prefix = \"/\"\nscopes = [\"api\"]\n\
             [[proxy.routes]]\npath_prefix = \"/admin\"\nmethods = [\"POST\", \"DELETE\"]\nscopes = [\"admin:write\"]\n"
        ),
    )
    .unwrap();
    let mut cmd = std::process::Command::new(BIN);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--config", config.to_str().unwrap()])
        .env_remove("ATNA_DATABASE_URL")
        .envs(env.iter().copied())
        .env("ATNA_LOG", "warn");
    let server = Server::spawn(cmd);
    let line = server.next_line(Duration::from_secs(10)).expect("the proxy's address is printed");
    let base = line
        .strip_prefix("atna proxy listening on ")
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("unexpected line: {line}"))
        .to_owned();
    let addr = base.trim_start_matches("http://").parse().unwrap();
    let s = |v: &Value, k: &str| v[k].as_str().unwrap().to_owned();
    Proxy {
        server,
        base,
        addr,
        api_key: s(&api, "secret"),
        admin_key: s(&admin, "secret"),
        admin_id: s(&admin, "id"),
        db: db.clone(),
        _dir: dir,
    }
}

/// Sends `head` (request line and headers, without the blank line) and `body` on a new connection that is closed
/// after the answer; returns the status, the headers (names in lower case) and the body.
async fn raw(addr: SocketAddr, head: impl AsRef<str>, body: &[u8]) -> (u16, BTreeMap<String, String>, Vec<u8>) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("{}\r\n\r\n", head.as_ref()).as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut all)).await.unwrap().unwrap();
    let end = all.windows(4).position(|w| w == b"\r\n\r\n").expect("a complete head");
    let text = String::from_utf8_lossy(&all[..end]).into_owned();
    let mut lines = text.lines();
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut rest = all[end + 4..].to_vec();
    if headers.get("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        rest = dechunk(&rest);
    }
    (status, headers, rest)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = usize::from_str_radix(std::str::from_utf8(&b[..line_end]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[line_end + 2..line_end + 2 + size]);
        b = &b[line_end + 2 + size + 2..];
    }
}

fn json_of(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body)))
}

/// A GET through the proxy with `Connection: close` and these extra header lines.
async fn get_raw(p: &Proxy, target: &str, headers: &[&str]) -> (u16, BTreeMap<String, String>, Vec<u8>) {
    let mut head = format!("GET {target} HTTP/1.1\r\nHost: api.example.com\r\nConnection: close");
    for h in headers {
        head.push_str("\r\n");
        head.push_str(h);
    }
    raw(p.addr, &head, b"").await
}

/// The peak resident memory of a process, in bytes (`VmHWM`).
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

#[tokio::test]
async fn good_keys_pass_and_the_rest_get_the_forward_auth_answers() {
    let (up, seen) = upstream().await;
    let p = start(&format!("http://{up}"), "").await;
    let http = reqwest::Client::new();
    let get = |path: &str, key: Option<&str>| {
        let mut r = http.get(format!("{}{path}", p.base));
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        r.send()
    };
    let res = get("/v1/invoices?limit=2", Some(&p.api_key)).await.unwrap();
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    assert_eq!((v["method"].as_str(), v["target"].as_str()), (Some("GET"), Some("/v1/invoices?limit=2")));

    let before = seen.requests.load(Relaxed);
    for (key, want_code) in [
        (None, "credentials_missing"),
        (Some("atna_nope"), "key_malformed"),
        (Some(&p.api_key[..p.api_key.len() - 1]), "key_malformed"),
    ] {
        let res = get("/v1/invoices", key).await.unwrap();
        assert_eq!(res.status(), 401, "{key:?}");
        assert_eq!(res.headers()["content-type"], "application/problem+json");
        assert!(res.headers().contains_key("www-authenticate"));
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["code"], want_code, "{body}");
    }
    // The key header works as at forward-auth.
    let res = http.get(format!("{}/x", p.base)).header("x-api-key", &p.api_key).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(seen.requests.load(Relaxed), before + 1, "refused requests never reach the upstream");

    // A deleted key stops working at once.
    p.cli(&["key", "delete", &p.admin_id]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let status = get("/x", Some(&p.admin_key)).await.unwrap().status();
        if status == 401 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the deleted key still works: {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let metrics = http.get(format!("{}/metrics", p.server.base)).send().await.unwrap().text().await.unwrap();
    for want in [
        "atna_key_checks_total{entry=\"proxy\",outcome=\"allowed\"}",
        "atna_key_checks_total{entry=\"proxy\",outcome=\"credentials_missing\"} 1\n",
    ] {
        assert!(metrics.contains(want), "{want} in\n{metrics}");
    }
    assert!(!metrics.contains("atna_key_checks_total{entry=\"proxy\",outcome=\"allowed\"} 0\n"));
}

#[tokio::test]
async fn routes_require_their_scopes_on_the_normalised_path() {
    let (up, seen) = upstream().await;
    let p = start(&format!("http://{up}"), "").await;
    let api = format!("Authorization: Bearer {}", p.api_key);
    let admin = format!("Authorization: Bearer {}", p.admin_key);
    let post = |key: &str, target: &str| {
        let head = format!("POST {target} HTTP/1.1\r\nHost: h\r\nConnection: close\r\nContent-Length: 0\r\n{key}");
        raw(p.addr, head, b"")
    };
    // POST /admin needs admin:write; GET /admin does not (the route names POST and DELETE).
    let (status, _, body) = post(&api, "/admin/users").await;
    assert_eq!(status, 403);
    assert_eq!(json_of(&body)["code"], "insufficient_scope");
    for spelling in ["/admin/users", "//admin/users", "/%61dmin/users", "/ADMIN%2dx"] {
        let (status, _, _) = post(&api, spelling).await;
        let want = if spelling.starts_with("/ADMIN") { 200 } else { 403 };
        assert_eq!(status, want, "{spelling}");
    }
    let (status, _, body) = post(&admin, "//%61dmin///users?x=%2F").await;
    assert_eq!(status, 200);
    assert_eq!(json_of(&body)["target"], "/admin/users?x=%2F", "the normalised path is the one forwarded");
    let (status, _, _) = get_raw(&p, "/admin/users", &[&api]).await;
    assert_eq!(status, 200, "GET is not in the route's methods");
    let (status, _, _) = post(&api, "/administrators").await;
    assert_eq!(status, 200, "prefixes match whole segments");

    // What would need a guess is refused before anything else, and never reaches the upstream.
    let before = seen.requests.load(Relaxed);
    for target in [
        "/public/../admin/users",
        "/public/%2e%2e/admin/users",
        "/public/.%2E/admin",
        "/./admin",
        "/admin%2Fusers",
        "/admin%2fusers",
        "/admin%5Cusers",
        "/admin\\users",
    ] {
        let (status, headers, body) = post(&admin, target).await;
        assert_eq!(status, 400, "{target}");
        assert_eq!(headers["content-type"], "application/problem+json");
        assert_eq!(json_of(&body)["code"], "invalid_path", "{target}");
    }
    assert_eq!(seen.requests.load(Relaxed), before);
}

#[tokio::test]
async fn the_upstream_gets_the_identity_and_none_of_the_clients_own_or_hop_by_hop_headers() {
    let (up, _) = upstream().await;
    let p = start(&format!("http://{up}"), "").await;
    let (status, headers, body) = get_raw(
        &p,
        "/echo?q=1",
        &[
            &format!("Authorization: Bearer {}", p.admin_key),
            "X-API-Key: another",
            "X-Atna-Key-Id: forged",
            "X-Atna-Scopes: admin:write everything",
            "x-atna-whatever: forged",
            "Connection: close, X-Private, x-other",
            "X-Private: hop",
            "X-Other: hop",
            "Keep-Alive: timeout=5",
            "TE: trailers",
            "Proxy-Authorization: Basic eDp5",
            "X-Forwarded-For: 203.0.113.7",
            "X-Forwarded-Proto: https",
            "Forwarded: for=203.0.113.7",
            "Accept: application/json",
        ],
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let v = json_of(&body);
    let h = v["headers"].as_object().unwrap();
    let one = |name: &str| {
        let vals = h.get(name).unwrap_or_else(|| panic!("{name} missing: {v}")).as_array().unwrap();
        assert_eq!(vals.len(), 1, "{name}: {vals:?}");
        vals[0].as_str().unwrap().to_owned()
    };
    assert_eq!(one("x-atna-key-id"), p.admin_id);
    assert_eq!(one("x-atna-key-name"), "admin");
    assert_eq!(one("x-atna-owner-email"), "alice@example.com");
    assert_eq!(one("x-atna-scopes"), "admin:write api");
    assert!(h.contains_key("x-atna-owner-id"));
    for gone in [
        "authorization",
        "x-api-key",
        "x-atna-whatever",
        "x-private",
        "x-other",
        "keep-alive",
        "te",
        "proxy-authorization",
        "forwarded",
    ] {
        assert!(!h.contains_key(gone), "{gone} reached the upstream: {v}");
    }
    assert_eq!(one("x-forwarded-for"), "127.0.0.1", "not a trusted proxy: its claims are dropped");
    assert_eq!(one("x-forwarded-proto"), "http");
    assert_eq!(one("x-forwarded-host"), "api.example.com");
    assert_eq!(one("host"), up.to_string());
    assert_eq!(one("accept"), "application/json");
    assert!(!headers.contains_key("x-atna-key-id"), "the identity is for the upstream only");
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarding_chain_is_kept_and_the_key_forwarded_when_configured() {
    let (up, _) = upstream().await;
    let p =
        start(&format!("http://{up}"), "proxy_trusted_proxies = [\"127.0.0.1\"]\nproxy_forward_authorization = true")
            .await;
    let (status, _, body) = get_raw(
        &p,
        "/echo",
        &[
            &format!("Authorization: Bearer {}", p.api_key),
            "X-Forwarded-For: 203.0.113.7",
            "X-Forwarded-Proto: https",
            "X-Atna-Key-Id: forged",
        ],
    )
    .await;
    assert_eq!(status, 200);
    let v = json_of(&body);
    assert_eq!(v["headers"]["x-forwarded-for"][0], "203.0.113.7, 127.0.0.1");
    assert_eq!(v["headers"]["x-forwarded-proto"][0], "https");
    assert_eq!(v["headers"]["authorization"][0], format!("Bearer {}", p.api_key));
    assert_eq!(v["headers"]["x-atna-key-id"].as_array().unwrap().len(), 1);
    assert_ne!(v["headers"]["x-atna-key-id"][0], "forged");

    // A key's IP allowlist applies to the client behind the trusted proxy, as at forward-auth.
    let office = {
        let args = [
            "key",
            "create",
            "--user",
            "alice@example.com",
            "--name",
            "office",
            "--scope",
            "api",
            "--allow-ip",
            "203.0.113.0/24",
            "--json",
        ];
        serde_json::from_str::<Value>(&p.cli(&args)).unwrap()["secret"].as_str().unwrap().to_owned()
    };
    let bearer = format!("Authorization: Bearer {office}");
    let (status, _, _) = get_raw(&p, "/echo", &[&bearer, "X-Forwarded-For: 203.0.113.7"]).await;
    assert_eq!(status, 200);
    let (status, _, body) = get_raw(&p, "/echo", &[&bearer, "X-Forwarded-For: 198.51.100.1"]).await;
    assert_eq!(status, 403);
    assert_eq!(json_of(&body)["code"], "ip_not_allowed");
}

#[tokio::test]
async fn a_hundred_megabytes_stream_up_and_down_without_being_held_in_memory() {
    let (up, _) = upstream().await;
    let p = start(&format!("http://{up}"), "").await;
    let pid = p.server.child.id();
    let http = reqwest::Client::new();
    // Warm up (the first request loads the key and opens the pool), then take the baseline.
    assert_eq!(http.get(format!("{}/x", p.base)).bearer_auth(&p.api_key).send().await.unwrap().status(), 200);
    let baseline = peak_rss(pid);

    let size = 100 * MB;
    let chunk = Bytes::from(vec![b'u'; 64 * 1024]);
    let chunks = size / chunk.len() as u64;
    let stream = futures::stream::iter((0..chunks).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
    let res = http
        .post(format!("{}/upload", p.base))
        .bearer_auth(&p.api_key)
        .header("content-length", size)
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), size.to_string(), "the upstream got every byte");
    let after_upload = peak_rss(pid);

    let mut res = http.get(format!("{}/download/{size}", p.base)).bearer_auth(&p.api_key).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.content_length(), Some(size));
    let mut got = 0u64;
    while let Some(c) = res.chunk().await.unwrap() {
        got += c.len() as u64;
    }
    assert_eq!(got, size);
    let after_download = peak_rss(pid);
    eprintln!(
        "atna peak RSS: {:.1} MiB before, {:.1} MiB after a 100 MiB upload, {:.1} MiB after a 100 MiB download",
        baseline as f64 / MB as f64,
        after_upload as f64 / MB as f64,
        after_download as f64 / MB as f64
    );
    assert!(after_download < baseline + 20 * MB, "{baseline} -> {after_upload} -> {after_download}");
    assert!(after_download < 64 * MB, "well under the 100 MiB that went through: {after_download}");
}

#[tokio::test]
async fn body_limits_and_upstream_timeouts_have_their_own_answers() {
    let (up, seen) = upstream().await;
    let p = start(&format!("http://{up}"), "proxy_max_body_bytes = 1000\nproxy_upstream_timeout_secs = 1").await;
    let auth = format!("Authorization: Bearer {}", p.api_key);
    let head = format!("POST /upload HTTP/1.1\r\nHost: h\r\nConnection: close\r\n{auth}\r\nContent-Length: 2000");
    let (status, _, body) = raw(p.addr, &head, &[b'a'; 2000]).await;
    assert_eq!(status, 413);
    assert_eq!(json_of(&body)["code"], "body_too_large");
    let before = seen.requests.load(Relaxed);
    // Without a length up front, the limit cuts the stream.
    let head = format!("POST /upload HTTP/1.1\r\nHost: h\r\nConnection: close\r\n{auth}\r\nTransfer-Encoding: chunked");
    let chunked = format!("7d0\r\n{}\r\n0\r\n\r\n", "a".repeat(2000));
    let (status, _, body) = raw(p.addr, &head, chunked.as_bytes()).await;
    assert_eq!(status, 413, "{}", String::from_utf8_lossy(&body));
    assert_eq!(json_of(&body)["code"], "body_too_large");
    let head = format!("POST /upload HTTP/1.1\r\nHost: h\r\nConnection: close\r\n{auth}\r\nContent-Length: 1000");
    let (status, _, body) = raw(p.addr, &head, &[b'a'; 1000]).await;
    assert_eq!((status, body.as_slice()), (200, &b"1000"[..]), "up to the limit passes");
    assert!(seen.requests.load(Relaxed) > before);

    let (status, headers, body) = get_raw(&p, "/hang", &[&auth]).await;
    assert_eq!(status, 504);
    assert_eq!(headers["content-type"], "application/problem+json");
    assert_eq!(json_of(&body)["code"], "upstream_timeout");
}

#[tokio::test]
async fn an_upstream_that_is_down_is_a_502() {
    let p = start(&format!("http://127.0.0.1:{}", free_port()), "").await;
    let (status, headers, body) = get_raw(&p, "/x", &[&format!("Authorization: Bearer {}", p.api_key)]).await;
    assert_eq!(status, 502);
    assert_eq!(headers["content-type"], "application/problem+json");
    assert_eq!(json_of(&body)["code"], "upstream_unavailable");
    // Refusals come first: a bad key is a 401 even when the upstream is down.
    assert_eq!(get_raw(&p, "/x", &[]).await.0, 401);
    let metrics = reqwest::get(format!("{}/metrics", p.server.base)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("atna_proxy_upstream_errors_total 1\n"), "{metrics}");
    // Both listeners stop on SIGTERM, and the process exits cleanly.
    let log = p.server.stop();
    assert!(!log.contains("panicked"), "{log}");
}

#[tokio::test]
async fn websockets_pass_through_with_the_identity_and_outlive_the_idle_timeout() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message as Ws;
    let (up, _) = upstream().await;
    // An idle timeout of one second: the upgraded connection must not be cut by it.
    let p = start(&format!("http://{up}"), "idle_timeout_secs = 1").await;
    let url = format!("{}/ws", p.base.replace("http://", "ws://"));

    let refused = tokio_tungstenite::connect_async(url.clone()).await.unwrap_err();
    match refused {
        tokio_tungstenite::tungstenite::Error::Http(res) => assert_eq!(res.status(), 401),
        e => panic!("expected a 401, got {e}"),
    }

    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert("authorization", format!("Bearer {}", p.admin_key).parse().unwrap());
    req.headers_mut().insert("x-atna-key-id", "forged".parse().unwrap());
    let (mut ws, res) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(res.status(), 101);
    let first = ws.next().await.unwrap().unwrap();
    assert_eq!(first, Ws::Text(format!("key {}", p.admin_id).into()), "the upstream saw the real identity");
    ws.send(Ws::Text("hello".into())).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Ws::Text("hello".into()));
    // Quiet for longer than the idle timeout, then still open.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    ws.send(Ws::Binary(vec![1u8, 2, 3].into())).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Ws::Binary(vec![1u8, 2, 3].into()));
    ws.close(None).await.unwrap();
}

#[tokio::test]
async fn heads_too_large_for_hyper_get_problem_documents_on_the_proxy_listener() {
    let (up, seen) = upstream().await;
    let p = start(&format!("http://{up}"), "").await;
    let mut many = format!("GET /x HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer {}", p.api_key);
    for i in 0..1000 {
        many.push_str(&format!("\r\nX-Header-{i}: {i}"));
    }
    let long_url =
        format!("GET /x?q={} HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer {}", "a".repeat(70_000), p.api_key);
    for (head, status, code) in [(many, 431, "request_header_fields_too_large"), (long_url, 414, "uri_too_long")] {
        let (got, headers, body) = raw(p.addr, &head, b"").await;
        assert_eq!(got, status, "{}", String::from_utf8_lossy(&body));
        assert_eq!(headers["content-type"], "application/problem+json");
        assert_eq!(json_of(&body)["code"], code);
    }
    assert_eq!(seen.requests.load(Relaxed), 0, "nothing reached the upstream");
}

/// A raw upstream that answers `200 ok` to each request head; with `close`, it closes each connection after its first
/// answer without saying so (no `Connection: close`), as an upstream whose keep-alive timeout passed does. Reports each
/// closed connection on the channel; counts the connections it accepted.
async fn counting_upstream(close: bool) -> (SocketAddr, Arc<AtomicU64>, tokio::sync::mpsc::UnboundedReceiver<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicU64::new(0));
    let (closed_tx, closed_rx) = tokio::sync::mpsc::unbounded_channel();
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            count.fetch_add(1, Relaxed);
            let closed = closed_tx.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let Ok(n) = s.read(&mut buf).await else { return };
                    if n == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..n]);
                    while let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                        got.drain(..end + 4);
                        s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await.unwrap();
                        if close {
                            drop(s);
                            let _ = closed.send(());
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, accepted, closed_rx)
}

#[tokio::test]
async fn a_client_connection_keeps_one_upstream_connection_and_replaces_it_when_the_upstream_closes_it() {
    let client = reqwest::Client::new(); // one keep-alive connection to the proxy
    let get = |p: &Proxy, path: &str| client.get(format!("{}{path}", p.base)).bearer_auth(&p.api_key).send();

    // An upstream that keeps its connections: ten requests of one client connection use one upstream connection.
    let (up, accepted, _) = counting_upstream(false).await;
    let p = start(&format!("http://{up}"), "").await;
    for i in 0..10 {
        let res = get(&p, &format!("/r{i}")).await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.text().await.unwrap(), "ok");
    }
    assert_eq!(accepted.load(Relaxed), 1, "one upstream connection for one client connection");

    // An upstream that closes each connection after one answer: each next request finds its kept connection closed
    // and gets a new one, without an error for the client.
    let (up, accepted, mut closed) = counting_upstream(true).await;
    let p = start(&format!("http://{up}"), "").await;
    for i in 0..5 {
        let res = get(&p, &format!("/c{i}")).await.unwrap();
        assert_eq!(res.status(), 200, "request {i}");
        assert_eq!(res.text().await.unwrap(), "ok");
        tokio::time::timeout(Duration::from_secs(10), closed.recv()).await.expect("the upstream closed").unwrap();
    }
    assert_eq!(accepted.load(Relaxed), 5);
    let log = p.server.stop();
    assert!(!log.contains("upstream request failed"), "{log}");
}
