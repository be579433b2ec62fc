//! Connections over real sockets: header and idle timeouts, the global and per-peer caps (with trusted proxies
//! exempt), and HSTS only over HTTPS that a trusted proxy vouches for.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::TestApp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

fn addr(app: &TestApp) -> SocketAddr {
    app.base.trim_start_matches("http://").parse().unwrap()
}

/// A connection from `from` (any 127.0.0.0/8 address works on Linux loopback).
async fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(format!("{from}:0").parse().unwrap()).unwrap();
    s.connect(to).await.unwrap()
}

/// Sends half a request: the headers never end.
async fn half_header(from: &str, to: SocketAddr) -> TcpStream {
    let mut s = connect_from(from, to).await;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: atna\r\n").await.unwrap();
    s
}

/// Waits (up to `within`) for the server to close the connection; how long that took, or `None` if it stayed open.
async fn closed_within(s: &mut TcpStream, within: Duration) -> Option<Duration> {
    let t0 = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(t0 + within, s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(t0.elapsed()),
            Ok(Ok(_)) => continue, // a response (e.g. a refusal) before the close
        }
    }
}

/// One `GET path` on a fresh connection from `from`; the raw response (the server closes after it).
async fn get_from(from: &str, to: SocketAddr, path: &str, within: Duration) -> String {
    let mut s = connect_from(from, to).await;
    let req = format!("GET {path} HTTP/1.1\r\nHost: atna\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(within, s.read_to_end(&mut out)).await.expect("answered in time").unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn connections_that_never_finish_their_headers_are_closed() {
    let app = TestApp::spawn_with(|s| s.header_read_timeout = Duration::from_secs(1)).await;
    let t0 = Instant::now();
    let mut silent = connect_from("127.0.0.1", addr(&app)).await;
    let mut slow = half_header("127.0.0.1", addr(&app)).await;
    for s in [&mut silent, &mut slow] {
        closed_within(s, Duration::from_secs(10)).await.expect("closed by the header timeout");
        let took = t0.elapsed();
        assert!(took >= Duration::from_millis(800) && took < Duration::from_secs(4), "closed after {took:?}");
    }
    app.stop().await;
}

#[tokio::test]
async fn kept_alive_connections_wait_for_the_idle_timeout_not_the_header_timeout() {
    let app = TestApp::spawn_with(|s| {
        s.header_read_timeout = Duration::from_secs(1);
        s.idle_timeout = Duration::from_secs(3);
    })
    .await;
    let mut s = connect_from("127.0.0.1", addr(&app)).await;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: atna\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let took = closed_within(&mut s, Duration::from_secs(10)).await.expect("closed by the idle timeout");
    assert!(took >= Duration::from_millis(2500) && took < Duration::from_secs(6), "closed after {took:?}");
    app.stop().await;
}

#[tokio::test]
async fn one_peer_cannot_take_every_connection_but_a_trusted_proxy_may() {
    let app = TestApp::spawn_with(|s| s.max_connections_per_peer = 5).await;
    let to = addr(&app);
    let mut flood = Vec::new();
    for _ in 0..5 {
        flood.push(half_header("127.0.0.2", to).await);
    }
    // The sixth from that peer is refused at once, with a 503, while another client is served normally.
    let refused = get_from("127.0.0.2", to, "/healthz", Duration::from_secs(2)).await;
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(refused.contains("too_many_connections"), "{refused}");
    let ok = get_from("127.0.0.1", to, "/healthz", Duration::from_secs(2)).await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    // Once the peer closes its connections, it is served again.
    drop(flood);
    common::eventually("the peer's places are given back", Duration::from_secs(5), || async {
        get_from("127.0.0.2", to, "/healthz", Duration::from_secs(2)).await.starts_with("HTTP/1.1 200")
    })
    .await;
    app.stop().await;

    let app = TestApp::spawn_with(|s| {
        s.max_connections_per_peer = 5;
        s.trusted_proxies = vec!["127.0.0.2/32".parse().unwrap()];
    })
    .await;
    let to = addr(&app);
    let mut flood = Vec::new();
    for _ in 0..8 {
        flood.push(half_header("127.0.0.2", to).await);
    }
    let ok = get_from("127.0.0.2", to, "/healthz", Duration::from_secs(2)).await;
    assert!(ok.starts_with("HTTP/1.1 200"), "a trusted proxy has no per-peer cap: {ok}");
    app.stop().await;
}

#[tokio::test]
async fn over_the_global_cap_new_connections_are_refused_and_open_ones_keep_working() {
    let app = TestApp::spawn_with(|s| s.max_connections = Some(3)).await;
    let to = addr(&app);
    let mut open = Vec::new();
    for i in 0..3 {
        open.push(connect_from(&format!("127.0.0.{}", i + 1), to).await);
    }
    let refused = get_from("127.0.0.9", to, "/healthz", Duration::from_secs(2)).await;
    assert!(refused.starts_with("HTTP/1.1 503") && refused.contains("too_many_connections"), "{refused}");
    // An admitted connection is still served.
    let s = &mut open[0];
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: atna\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    drop(open);
    common::eventually("places are given back", Duration::from_secs(5), || async {
        get_from("127.0.0.9", to, "/healthz", Duration::from_secs(2)).await.starts_with("HTTP/1.1 200")
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn hsts_only_over_https_vouched_for_by_a_trusted_proxy() {
    let hsts = |app: &TestApp, proto: Option<&'static str>| {
        let mut req = app.http.get(app.url("/login"));
        if let Some(p) = proto {
            req = req.header("x-forwarded-proto", p);
        }
        async move {
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.headers().get("strict-transport-security").map(|v| v.to_str().unwrap().to_owned())
        }
    };
    let app = TestApp::spawn_with(|s| s.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()]).await;
    assert_eq!(hsts(&app, Some("https")).await.as_deref(), Some("max-age=31536000"));
    assert_eq!(hsts(&app, None).await, None, "plain HTTP");
    assert_eq!(hsts(&app, Some("http")).await, None);
    app.stop().await;
    let app = TestApp::spawn_with(|s| s.trusted_proxies = vec!["10.0.0.0/8".parse().unwrap()]).await;
    assert_eq!(hsts(&app, Some("https")).await, None, "an untrusted peer's X-Forwarded-Proto is ignored");
    app.stop().await;
}

#[tokio::test]
async fn the_client_address_comes_from_x_forwarded_for_only_through_trusted_proxies() {
    for (proxies, want) in
        [(vec![], "127.0.0.1"), (vec!["10.0.0.0/8"], "127.0.0.1"), (vec!["127.0.0.1/32", "10.0.0.0/8"], "203.0.113.7")]
    {
        let app =
            TestApp::spawn_with(|s| s.trusted_proxies = proxies.iter().map(|p| p.parse().unwrap()).collect()).await;
        let k = app.key_for(app.alice, "behind-proxy", &[]).await;
        let res = app
            .http
            .get(app.url("/v1/whoami"))
            .bearer_auth(&k)
            .header("x-forwarded-for", "6.6.6.6, 203.0.113.7, 10.1.1.1")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let list: serde_json::Value = app
            .http
            .get(app.url("/v1/keys?search=behind"))
            .bearer_auth(&app.admin_key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(list["data"][0]["last_used_ip"], want, "trusted_proxies = {proxies:?}");
        app.stop().await;
    }
}

/// Sends `req` on `s` and reads until the server closes; the answer's status line, headers and body.
async fn answer_of(s: &mut TcpStream, req: &[u8]) -> (String, String, serde_json::Value) {
    s.write_all(req).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await.expect("answered in time").unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no complete head: {text}"));
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    let body = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {text}"));
    (status.to_owned(), headers.to_ascii_lowercase(), body)
}

#[tokio::test]
async fn heads_hyper_refuses_are_answered_with_problem_documents() {
    let app = TestApp::spawn().await;
    let to = addr(&app);
    let mut many = String::from("GET /v1/whoami HTTP/1.1\r\nHost: atna\r\n");
    for i in 0..1000 {
        many.push_str(&format!("X-Header-{i}: {i}\r\n"));
    }
    many.push_str("\r\n");
    let long_url = format!("GET /v1/whoami?q={} HTTP/1.1\r\nHost: atna\r\n\r\n", "a".repeat(70_000));
    let cases = [
        (many.as_str(), "HTTP/1.1 431 Request Header Fields Too Large", "request_header_fields_too_large"),
        (long_url.as_str(), "HTTP/1.1 414 URI Too Long", "uri_too_long"),
        ("GET /v1/whoami HTTP/1.1\r\nHost atna\r\n\r\n", "HTTP/1.1 400 Bad Request", "malformed_request"),
    ];
    for (req, status, code) in cases {
        // On a fresh connection, and after an answered request on a kept-alive one (whose own answer is untouched).
        let (line, headers, body) = answer_of(&mut connect_from("127.0.0.1", to).await, req.as_bytes()).await;
        assert_eq!(line, status);
        assert!(headers.contains("content-type: application/problem+json"), "{headers}");
        assert_eq!((body["code"].as_str(), body["status"].as_u64()), (Some(code), line[9..12].parse().ok()));

        let mut s = connect_from("127.0.0.1", to).await;
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: atna\r\n\r\n").await.unwrap();
        let mut first = Vec::new();
        while !first.ends_with(b"}") {
            let mut buf = [0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await.unwrap().unwrap();
            assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&first));
            first.extend_from_slice(&buf[..n]);
        }
        assert!(first.starts_with(b"HTTP/1.1 200 OK\r\n"), "{}", String::from_utf8_lossy(&first));
        let (line, headers, body) = answer_of(&mut s, req.as_bytes()).await;
        assert_eq!(line, status);
        assert!(headers.contains("content-type: application/problem+json"), "{headers}");
        assert_eq!(body["code"], code);
    }
}
