//! Reminder delivery across a `kill -9`: the real binary claims an outbox entry and starts sending it, is killed
//! mid-request, and after a restart the same webhook (same `webhook-id`) is delivered.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{atna, ok, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A webhook receiver on a raw socket: the first request is read and never answered (the sender dies meanwhile);
/// later ones get `200`. Returns its URL and the `webhook-id` of each request, in order.
async fn hanging_receiver() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let ids: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = ids.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // Headers, then the body by its Content-Length.
            let (head_end, length) = loop {
                let n = sock.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break (0, 0);
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..i]).to_lowercase();
                    let len = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
                        .unwrap_or(0);
                    break (i + 4, len);
                }
            };
            if head_end == 0 {
                continue;
            }
            while buf.len() < head_end + length {
                let n = sock.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
            let id = head
                .lines()
                .find_map(|l| l.to_lowercase().starts_with("webhook-id:").then(|| l[11..].trim().to_owned()))
                .unwrap_or_default();
            let first = {
                let mut s = seen.lock().unwrap();
                s.push(id);
                s.len() == 1
            };
            if first {
                held.push(sock); // never answered
            } else {
                let _ = sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
            }
        }
    });
    (url, ids)
}

async fn wait_for(what: &str, deadline: Duration, check: impl Fn() -> bool) {
    let end = tokio::time::Instant::now() + deadline;
    while !check() {
        assert!(tokio::time::Instant::now() < end, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_outbox_entry_survives_kill_9_and_is_delivered_after_restart_with_the_same_id() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    ok(atna(
        &data,
        &["user", "create", "--email", "alice@example.com", "--password-stdin"],
        Some("correct horse battery\n"),
    ));
    let out = ok(atna(&data, &["key", "create", "--user", "alice@example.com", "--name", "svc", "--json"], None));
    let id = serde_json::from_str::<serde_json::Value>(&out).unwrap()["id"].as_str().unwrap().to_owned();

    let (url, ids) = hanging_receiver().await;
    {
        let store = atna_server::store_url::open(&atna_server::store_url::default_url(&data), &Default::default())
            .await
            .unwrap();
        let secret = atna_server::notify::webhook::new_secret();
        let hook = atna_store::Webhook { owner: Some(atna_domain::UserId(1)), url, secret, created_at: 0 };
        store.set_webhook(&hook).await.unwrap();
    }
    let config = dir.path().join("atna.toml");
    std::fs::write(
        &config,
        "webhooks_allow_private_addresses = true\ndelivery_timeout_secs = 1\noutbox_poll_ms = 50\n\
         reminder_scan_secs = 1\ndigest_interval_secs = 0\ndelivery_retry_base_ms = 100\n",
    )
    .unwrap();
    let env =
        [("ATNA_DATA_DIR", data.to_str().unwrap()), ("ATNA_CONFIG", config.to_str().unwrap()), ("ATNA_LOG", "info")];

    // The CLI deletes the key and records the reminder; the server's next scan puts the digest in the outbox and
    // starts sending it. The receiver holds that request; the server dies in the middle of it.
    ok(atna(&data, &["key", "delete", &id], None));
    let server = Server::start_env(&env);
    wait_for("the first attempt", Duration::from_secs(20), || !ids.lock().unwrap().is_empty()).await;
    server.kill9();

    // A new process (another node name) takes the entry once the dead one's lease has passed.
    let server = Server::start_env(&env);
    wait_for("the redelivery", Duration::from_secs(30), || ids.lock().unwrap().len() >= 2).await;
    let got = ids.lock().unwrap().clone();
    assert!(got[0].starts_with("msg_"), "{got:?}");
    assert_eq!(got[0], got[1], "the redelivery carries the same webhook-id");
    let _ = server.stop();
}
