//! Policy and reminders over real HTTP (issue 10 §4): lifetimes under `[policy]`, reminder webhooks signed with the
//! Standard Webhooks scheme (verified by the official Python `standardwebhooks` package), retried with the same
//! `webhook-id`, refused for internal addresses, and reminder e-mails arriving at a real SMTP server (Python's
//! `aiosmtpd` on 127.0.0.1).
//!
//! The Python tools come from `scripts/install-test-python` (`ATNA_TEST_PYTHON`); without them the tests that need
//! them say so and skip, except under `CI=true`, where they fail.

mod common;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use atna_domain::{GeneratedKey, KeyName, ReminderKind, Scopes, DAY_MS};
use atna_server::notify::{webhook, SmtpSettings, SmtpTls};
use atna_server::Settings;
use atna_store::{Actor, Channel, NewKey, Store, Webhook};
use axum::http::HeaderMap;
use common::{eventually, problem, TestApp};

/// Fast jobs for tests: a scan every 50 ms, digests as soon as something is pending, quick retries.
fn fast(s: &mut Settings) {
    s.notify.scan_interval = Duration::from_millis(50);
    s.notify.digest_interval = Duration::ZERO;
    s.notify.outbox_poll_interval = Duration::from_millis(20);
    s.notify.retry_base = Duration::from_millis(50);
    s.notify.webhooks_allow_private_addresses = true;
}

/// The Python with aiosmtpd and standardwebhooks, or `None` (skipping, unless CI requires it).
fn python(test: &str) -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("ATNA_TEST_PYTHON").map(PathBuf::from),
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/test-python-venv/bin/python")),
    ];
    if let Some(p) = candidates.into_iter().flatten().find(|p| p.exists()) {
        return Some(p);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test}: CI requires the Python test tools: eval \"$(scripts/install-test-python)\""
    );
    eprintln!("SKIPPED {test}: no Python test tools (run: eval \"$(scripts/install-test-python)\")");
    None
}

/// One request a receiver got.
#[derive(Debug, Clone)]
struct Received {
    headers: HeaderMap,
    body: String,
}

/// A webhook receiver on 127.0.0.1: answers with the statuses in `script` in turn, then 200.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
}

async fn receiver(script: &[u16]) -> Receiver {
    let got: Arc<Mutex<Vec<Received>>> = Arc::default();
    let statuses = Arc::new(Mutex::new(script.to_vec()));
    let (g, st) = (got.clone(), statuses.clone());
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let (g, st) = (g.clone(), st.clone());
            async move {
                g.lock().unwrap().push(Received { headers, body });
                let mut st = st.lock().unwrap();
                let code = if st.is_empty() { 200 } else { st.remove(0) };
                (axum::http::StatusCode::from_u16(code).unwrap(), "receiver says: secret internals")
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Receiver { url, got }
}

impl Receiver {
    fn requests(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
}

async fn set_webhook(store: &dyn Store, owner: Option<atna_domain::UserId>, url: &str) -> String {
    let secret = webhook::new_secret();
    let w = Webhook { owner, url: url.into(), secret: secret.clone(), created_at: atna_server::clock::now() };
    store.set_webhook(&w).await.unwrap();
    secret
}

/// A key of `owner` stored directly, with the given times.
async fn key_at(
    store: &dyn Store,
    owner: atna_domain::UserId,
    name: &str,
    created_at: i64,
    expires_at: Option<i64>,
) -> atna_store::KeyRecord {
    let g = GeneratedKey::generate();
    store
        .insert_key(NewKey {
            form_nonce: None,
            created_by_key: None,
            rules: Default::default(),
            id: g.id,
            owner,
            name: KeyName::parse(name).unwrap(),
            hash: g.hash,
            scopes: Scopes::default(),
            created_at,
            expires_at,
            actor: Actor::Operator.into(),
            rolled_from: None,
        })
        .await
        .unwrap()
}

fn header<'a>(r: &'a Received, name: &str) -> &'a str {
    r.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
}

#[tokio::test]
async fn the_policy_sets_default_lifetimes_and_refuses_longer_ones() {
    let app = TestApp::spawn_with(|s| {
        s.policy.default_lifetime_days = Some(90);
        s.policy.max_lifetime_days = Some(365);
    })
    .await;
    let now = chrono::Utc::now();
    let create =
        |body: serde_json::Value| app.http.post(app.url("/v1/keys")).bearer_auth(&app.admin_key).json(&body).send();
    let r = create(serde_json::json!({"name": "svc-default"})).await.unwrap();
    assert_eq!(r.status(), 201);
    let v: serde_json::Value = r.json().await.unwrap();
    let exp = chrono::DateTime::parse_from_rfc3339(v["expires_at"].as_str().unwrap()).unwrap();
    let days = (exp.timestamp_millis() - now.timestamp_millis()) as f64 / DAY_MS as f64;
    assert!((89.9..90.1).contains(&days), "the default lifetime applies: {days} days");

    let too_long = (now + chrono::Duration::days(400)).to_rfc3339();
    let (status, body) =
        problem(create(serde_json::json!({"name": "svc-long", "expires_at": too_long})).await.unwrap()).await;
    assert_eq!((status, body["code"].as_str()), (422, Some("lifetime_exceeds_policy")), "{body}");
    assert!(body["detail"].as_str().unwrap().contains("365 days"), "{body}");

    let fine = (now + chrono::Duration::days(364)).to_rfc3339();
    assert_eq!(create(serde_json::json!({"name": "svc-year", "expires_at": fine})).await.unwrap().status(), 201);
    app.stop().await;
}

#[tokio::test]
async fn a_deleted_key_is_reminded_by_a_signed_webhook_that_standardwebhooks_verifies() {
    let app = TestApp::spawn_with(fast).await;
    let hook = receiver(&[]).await;
    let secret = set_webhook(&*app.store, Some(app.alice), &hook.url).await;
    let ops = receiver(&[]).await;
    set_webhook(&*app.store, None, &ops.url).await;
    let k = key_at(&*app.store, app.alice, "billing-26_11_2026-14_05", atna_server::clock::now(), None).await;
    let r = app.http.delete(app.url(&format!("/v1/keys/{}", k.id))).bearer_auth(&app.admin_key).send().await.unwrap();
    assert_eq!(r.status(), 204);

    eventually("the digest webhook", Duration::from_secs(10), || async { !hook.requests().is_empty() }).await;
    eventually("the installation's webhook", Duration::from_secs(10), || async { !ops.requests().is_empty() }).await;
    let got = hook.requests().remove(0);
    let id = header(&got, "webhook-id");
    let ts: i64 = header(&got, "webhook-timestamp").parse().unwrap();
    assert!(id.starts_with("msg_"), "{id}");
    assert_eq!(header(&got, "webhook-signature"), webhook::sign(&secret, id, ts, &got.body).unwrap());
    let v: serde_json::Value = serde_json::from_str(&got.body).unwrap();
    assert_eq!(v["type"], "reminders.digest");
    assert_eq!(v["data"]["user"]["email"], "alice@example.com");
    let item = &v["data"]["reminders"][0];
    assert_eq!((item["kind"].as_str(), item["key"]["id"].as_str()), (Some("deleted"), Some(k.id.as_str())));
    assert!(item.get("links").is_none(), "a deleted key has no page to act on");
    assert_ne!(header(&ops.requests()[0], "webhook-id"), id, "each endpoint gets its own message ID");

    // The official library agrees.
    if let Some(py) = python("standardwebhooks verification") {
        let script = "import sys, json\nfrom standardwebhooks.webhooks import Webhook\n\
                      h = json.loads(sys.argv[2])\nWebhook(sys.argv[1]).verify(sys.stdin.read(), h)\nprint('verified')\n";
        let headers = serde_json::json!({
            "webhook-id": id, "webhook-timestamp": ts.to_string(), "webhook-signature": header(&got, "webhook-signature")
        });
        let run = |secret: &str| {
            let mut c = std::process::Command::new(&py)
                .args(["-c", script, secret, &headers.to_string()])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            use std::io::Write;
            c.stdin.take().unwrap().write_all(got.body.as_bytes()).unwrap();
            c.wait_with_output().unwrap()
        };
        let ok = run(&secret);
        assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
        assert_eq!(String::from_utf8_lossy(&ok.stdout).trim(), "verified");
        assert!(!run(&webhook::new_secret()).status.success(), "another secret does not verify");
    }

    // Recorded once; the dashboard's data says what was sent and when.
    let shown = app.store.reminders(app.alice, 10).await.unwrap();
    assert_eq!(shown.len(), 1);
    assert!(shown[0].0.sent_at.is_some());
    eventually("deliveries recorded", Duration::from_secs(5), || async {
        let d = app.store.reminders(app.alice, 10).await.unwrap().remove(0).1;
        d.len() == 2 && d.iter().all(|d| d.delivered_at.is_some() && d.last_status == Some(200))
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn a_failing_webhook_is_retried_with_the_same_id() {
    let app = TestApp::spawn_with(fast).await;
    let hook = receiver(&[500, 503]).await;
    set_webhook(&*app.store, Some(app.alice), &hook.url).await;
    let k = key_at(&*app.store, app.alice, "crm", atna_server::clock::now(), None).await;
    // A leak is sent at once, not in the digest.
    assert!(app.state.notifier.enqueue(&k, ReminderKind::Leaked, atna_server::clock::now()).await.unwrap());
    assert!(!app.state.notifier.enqueue(&k, ReminderKind::Leaked, atna_server::clock::now()).await.unwrap(), "once");
    eventually("three attempts", Duration::from_secs(10), || async { hook.requests().len() >= 3 }).await;
    let got = hook.requests();
    let ids: Vec<&str> = got.iter().map(|r| header(r, "webhook-id")).collect();
    assert!(ids.iter().all(|i| *i == ids[0]), "the same webhook-id on every retry: {ids:?}");
    let v: serde_json::Value = serde_json::from_str(&got[2].body).unwrap();
    assert_eq!(v["type"], "key.leaked");
    assert_eq!(v["data"]["reminders"][0]["links"]["roll"], format!("/keys/{}/roll", k.id));
    eventually("delivered on the third attempt", Duration::from_secs(5), || async {
        let d = &app.store.reminders(app.alice, 1).await.unwrap()[0].1;
        d.len() == 1 && d[0].delivered_at.is_some() && d[0].attempts == 3
    })
    .await;
    assert_eq!(hook.requests().len(), 3, "nothing after the success");
    app.stop().await;
}

#[tokio::test]
async fn webhooks_to_internal_addresses_are_refused_and_bodies_never_kept() {
    let app = TestApp::spawn_with(|s| {
        fast(s);
        s.notify.webhooks_allow_private_addresses = false;
        s.notify.max_attempts = 1;
    })
    .await;
    let hook = receiver(&[]).await;
    set_webhook(&*app.store, Some(app.alice), &hook.url).await;
    let k = key_at(&*app.store, app.alice, "crm", atna_server::clock::now(), None).await;
    app.state.notifier.enqueue(&k, ReminderKind::Leaked, atna_server::clock::now()).await.unwrap();
    eventually("given up", Duration::from_secs(10), || async {
        let d = &app.store.reminders(app.alice, 1).await.unwrap()[0].1;
        d.len() == 1 && d[0].failed_at.is_some()
    })
    .await;
    let d = app.store.reminders(app.alice, 1).await.unwrap().remove(0).1.remove(0);
    assert!(d.last_error.as_deref().unwrap().contains("loopback, private"), "{:?}", d.last_error);
    assert!(hook.requests().is_empty(), "nothing was sent to 127.0.0.1");

    // Allowed, a failing receiver's body is still never recorded: status only.
    let app2 = TestApp::spawn_with(|s| {
        fast(s);
        s.notify.max_attempts = 1;
    })
    .await;
    let bad = receiver(&[500]).await;
    set_webhook(&*app2.store, Some(app2.alice), &bad.url).await;
    let k2 = key_at(&*app2.store, app2.alice, "crm", atna_server::clock::now(), None).await;
    app2.state.notifier.enqueue(&k2, ReminderKind::Leaked, atna_server::clock::now()).await.unwrap();
    eventually("given up", Duration::from_secs(10), || async {
        let d = &app2.store.reminders(app2.alice, 1).await.unwrap()[0].1;
        d.len() == 1 && d[0].failed_at.is_some()
    })
    .await;
    let d = app2.store.reminders(app2.alice, 1).await.unwrap().remove(0).1.remove(0);
    assert_eq!(d.last_status, Some(500));
    assert!(!format!("{d:?}").contains("secret internals"), "{d:?}");
    app.stop().await;
    app2.stop().await;
}

/// aiosmtpd on a free port of 127.0.0.1, writing what it receives into a maildir.
struct Smtp {
    port: u16,
    maildir: tempfile::TempDir,
    child: std::process::Child,
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn smtp(py: &std::path::Path) -> Smtp {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let maildir = tempfile::tempdir().unwrap();
    let child = std::process::Command::new(py)
        .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox"])
        .arg(maildir.path().join("mail"))
        .spawn()
        .unwrap();
    eventually("aiosmtpd listening", Duration::from_secs(20), || async move {
        tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok()
    })
    .await;
    Smtp { port, maildir, child }
}

impl Smtp {
    /// Every message received so far, as raw text.
    fn messages(&self) -> Vec<String> {
        let mut out = Vec::new();
        for sub in ["new", "cur"] {
            if let Ok(entries) = std::fs::read_dir(self.maildir.path().join("mail").join(sub)) {
                for e in entries.flatten() {
                    out.push(std::fs::read_to_string(e.path()).unwrap_or_default());
                }
            }
        }
        out
    }
}

#[tokio::test]
async fn reminder_emails_arrive_at_a_real_smtp_server_once_per_condition() {
    let Some(py) = python("reminder e-mails") else { return };
    let server = smtp(&py).await;
    let port = server.port;
    let app = TestApp::spawn_with(move |s| {
        fast(s);
        s.notify.public_url = Some("https://keys.example.com".into());
        s.notify.smtp = Some(SmtpSettings {
            host: "127.0.0.1".into(),
            port,
            tls: SmtpTls::None,
            username: None,
            password: None,
            from: "atna <atna@example.com>".into(),
        });
    })
    .await;
    let now = atna_server::clock::now();
    let soon = key_at(&*app.store, app.alice, "billing-expiring", now, Some(now + 3 * DAY_MS)).await;
    eventually("the digest e-mail", Duration::from_secs(15), || async { !server.messages().is_empty() }).await;
    let m = server.messages().remove(0);
    assert!(m.contains("To: alice@example.com"), "{m}");
    assert!(m.contains("Subject: atna: Your API key billing-expiring expires within 7 days"), "{m}");
    assert!(m.contains(&format!("https://keys.example.com/keys/{}/roll", soon.id)), "{m}");

    // A leak is mailed at once; the expiring key, scanned again and again, is not mailed again.
    let leaked = key_at(&*app.store, app.alice, "crm-leaked", now, None).await;
    app.state.notifier.enqueue(&leaked, ReminderKind::Leaked, atna_server::clock::now()).await.unwrap();
    eventually("the leak e-mail", Duration::from_secs(15), || async { server.messages().len() >= 2 }).await;
    // More scans notice the same conditions again: nothing new may be recorded or queued.
    let policy = app.state.settings.policy;
    for _ in 0..3 {
        atna_server::notify::worker::scan(&app.state.notifier, &policy, atna_server::clock::now()).await.unwrap();
    }
    eventually("every queued e-mail delivered", Duration::from_secs(15), || async {
        let r = app.store.reminders(app.alice, 10).await.unwrap();
        r.iter().all(|(_, d)| d.iter().all(|d| d.delivered_at.is_some()))
    })
    .await;
    let all = server.messages();
    assert_eq!(all.len(), 2, "{all:?}");
    assert!(all.iter().any(|m| m.contains("crm-leaked was reported leaked")));
    let sent = app.store.reminders(app.alice, 10).await.unwrap();
    assert_eq!(sent.len(), 2);
    assert!(sent.iter().all(|(_, d)| d.iter().all(|d| d.channel == Channel::Email)));
    app.stop().await;
}

/// The `value` of the first element after `marker` in a page (askama escapes `"`, `&`, `<`, `>`, `'`).
fn value_after(html: &str, marker: &str) -> String {
    let at = html.find(marker).unwrap_or_else(|| panic!("{marker} not in page:\n{html}"));
    let rest = &html[at..];
    let v = &rest[rest.find("value=\"").unwrap() + 7..];
    v[..v.find('"').unwrap()].replace("&#43;", "+").replace("&#47;", "/").replace("&#61;", "=").replace("&#38;", "&")
}

#[tokio::test]
async fn the_dashboard_sets_a_webhook_once_and_shows_what_was_sent_with_roll_and_delete_links() {
    let app = TestApp::spawn_with(|s| {
        fast(s);
        s.policy.max_lifetime_days = Some(30);
    })
    .await;
    let pw = "correct horse battery";
    let bob = app
        .store
        .create_user(atna_store::NewUser {
            email: atna_domain::Email::parse("bob@example.com").unwrap(),
            password_hash: atna_domain::PasswordHash::hash(&atna_domain::Password::new(pw.into()).unwrap()),
            is_admin: false,
            created_at: atna_server::clock::now(),
        })
        .await
        .unwrap();
    let c = reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let login = c.get(app.url("/login")).send().await.unwrap().text().await.unwrap();
    let form =
        [("csrf", value_after(&login, "name=\"csrf\"")), ("email", "bob@example.com".into()), ("password", pw.into())];
    assert_eq!(c.post(app.url("/login")).form(&form).send().await.unwrap().status(), 303);

    // The policy shapes the form: no "Never", nothing beyond 30 days.
    let new = c.get(app.url("/keys/new")).send().await.unwrap().text().await.unwrap();
    // The Expires menu only (the quota's refill menu has a "never" of its own).
    let at = new.find("name=\"expires\"").expect("the Expires menu");
    let expires = &new[at..at + new[at..].find("</select>").unwrap()];
    assert!(
        expires.contains("value=\"30\"") && !expires.contains("value=\"never\"") && !expires.contains("value=\"90\""),
        "{expires}"
    );

    let hook = receiver(&[]).await;
    let account = c.get(app.url("/account")).send().await.unwrap().text().await.unwrap();
    let form = [("csrf", value_after(&account, "name=\"csrf\"")), ("url", hook.url.clone())];
    let saved = c.post(app.url("/account/webhook")).form(&form).send().await.unwrap();
    assert_eq!(saved.status(), 200);
    assert_eq!(saved.headers()["cache-control"], "no-store");
    let html = saved.text().await.unwrap();
    let shown = value_after(&html, "id=\"webhook-secret\"");
    let stored = app.store.webhook(Some(bob.id)).await.unwrap().unwrap();
    assert_eq!((stored.url.as_str(), stored.secret.as_str()), (hook.url.as_str(), shown.as_str()));
    let again = c.get(app.url("/account")).send().await.unwrap().text().await.unwrap();
    assert!(again.contains(&hook.url) && !again.contains(&shown), "the secret is shown once");

    let bad = [("csrf", value_after(&account, "name=\"csrf\"")), ("url", "ftp://example.com/".to_owned())];
    assert_eq!(c.post(app.url("/account/webhook")).form(&bad).send().await.unwrap().status(), 422);

    let k = key_at(&*app.store, bob.id, "billing-leaky", atna_server::clock::now(), None).await;
    app.state.notifier.enqueue(&k, ReminderKind::Leaked, atna_server::clock::now()).await.unwrap();
    eventually("the leak webhook", Duration::from_secs(10), || async { !hook.requests().is_empty() }).await;
    eventually("shown as delivered", Duration::from_secs(10), || async {
        let page = c.get(app.url("/reminders")).send().await.unwrap().text().await.unwrap();
        page.contains("Your webhook: delivered")
    })
    .await;
    let page = c.get(app.url("/reminders")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("billing-leaky was reported leaked"), "{page}");
    assert!(page.contains(&format!("href=\"/keys/{}/roll\"", k.id)), "{page}");
    assert!(page.contains(&format!("href=\"/keys/{}/delete\"", k.id)), "{page}");
    assert!(page.contains("HTTP 200"), "{page}");
    // Not an administrator: no Policy page.
    assert_eq!(c.get(app.url("/admin/policy")).send().await.unwrap().status(), 404);
    app.stop().await;
}

#[tokio::test]
async fn with_two_nodes_on_one_database_each_message_is_sent_once() {
    let app = TestApp::spawn_with(fast).await;
    // A second node on the same database.
    let mut settings = Settings { listen: "127.0.0.1:0".parse().unwrap(), ..Settings::default() };
    fast(&mut settings);
    let second = atna_server::App::build(settings, app.store.clone()).await.unwrap();
    let second_state = second.state().clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(second.run(async move {
        let _ = rx.await;
    }));
    let hook = receiver(&[]).await;
    set_webhook(&*app.store, Some(app.alice), &hook.url).await;
    let now = atna_server::clock::now();
    for i in 0..20 {
        let k = key_at(&*app.store, app.alice, &format!("leaked-{i}"), now, None).await;
        // Half recorded through each node, so both are woken.
        let n = if i % 2 == 0 { &app.state.notifier } else { &second_state.notifier };
        assert!(n.enqueue(&k, ReminderKind::Leaked, now).await.unwrap());
    }
    eventually("20 deliveries", Duration::from_secs(20), || async {
        let all = app.store.reminders(app.alice, 100).await.unwrap();
        all.len() == 20 && all.iter().all(|(_, d)| d.len() == 1 && d[0].delivered_at.is_some())
    })
    .await;
    let mut ids: Vec<String> = hook.requests().iter().map(|r| header(r, "webhook-id").to_owned()).collect();
    assert_eq!(ids.len(), 20, "no message sent twice: {ids:?}");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 20);
    let _ = tx.send(());
    task.await.unwrap().unwrap();
    app.stop().await;
}

/// The policy's `auto_disable_unused_days`: a key unused that long is disabled (refused with `key_disabled` at once,
/// audited as `key.disabled` by the installation) and its owner is told at once; a used key and a key already
/// disabled are left alone, and a second scan changes nothing.
#[tokio::test]
async fn keys_unused_past_the_policy_are_disabled_automatically_and_the_owner_told() {
    let app = TestApp::spawn_with(fast).await;
    let now = atna_server::clock::now();
    let stale = key_at(&*app.store, app.alice, "stale-service", now - 40 * DAY_MS, None).await;
    let fresh = key_at(&*app.store, app.alice, "fresh-service", now - DAY_MS, None).await;
    let mut policy = app.state.settings.policy;
    policy.auto_disable_unused_days = Some(30);
    for _ in 0..2 {
        atna_server::notify::worker::scan(&app.state.notifier, &policy, atna_server::clock::now()).await.unwrap();
    }
    let status = |id| {
        let store = app.store.clone();
        async move { store.get_key(app.alice, &id).await.unwrap().unwrap().status }
    };
    assert_eq!(status(stale.id).await, atna_domain::KeyStatus::Disabled);
    assert_eq!(status(fresh.id).await, atna_domain::KeyStatus::Active);
    let events = app.store.audit_events(app.alice, 50).await.unwrap();
    let disabled: Vec<_> = events.iter().filter(|e| e.action == "key.disabled").collect();
    assert_eq!(disabled.len(), 1, "once, however many scans");
    assert_eq!((disabled[0].key_id, disabled[0].actor), (Some(stale.id), atna_store::Actor::Operator));
    let told: Vec<_> = app
        .store
        .reminders(app.alice, 20)
        .await
        .unwrap()
        .into_iter()
        .filter(|(r, _)| r.kind == ReminderKind::AutoDisabled)
        .collect();
    assert_eq!(told.len(), 1);
    assert_eq!(told[0].0.key_id, stale.id);
    assert!(told[0].0.message.is_some(), "told at once, not in the digest");
    app.stop().await;
}
