//! Leak reports from secret scanners, end to end over HTTP: requests signed with a P-256 key pair generated here (the
//! same code path as GitHub's and GitLab's keys), on the backend `ATNA_TEST_BACKEND` names. A second node on the same
//! database learns revocations and prefix changes only through the change feed.

mod common;

use std::time::Duration;

use atna_server::leaks::KeySource;
use base64::Engine;
use common::{eventually, problem, TestApp};
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{DerSignature, SigningKey};
use p256::pkcs8::{EncodePublicKey, LineEnding};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const REVOCATION_TOKEN: &str = "gitlab-revocation-token-0123456789";

/// A scanner: a key pair, its public key in GitHub's document format on disk, and signed requests.
struct Scanner {
    key: SigningKey,
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
}

impl Scanner {
    fn new() -> Self {
        let key = SigningKey::random(&mut rand::rngs::OsRng);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("public_keys.json");
        let pem = key.verifying_key().to_public_key_pem(LineEnding::LF).unwrap();
        let doc = json!({"public_keys": [{"key_identifier": "test-key-1", "key": pem, "is_current": true}]});
        std::fs::write(&path, doc.to_string()).unwrap();
        Self { key, _dir: dir, path }
    }

    fn sign(&self, body: &[u8]) -> String {
        let sig: DerSignature = self.key.sign(body);
        base64::engine::general_purpose::STANDARD.encode(sig.as_bytes())
    }
}

fn configure(s: &mut atna_server::Settings, scanner: &Scanner) {
    s.leaks.github_public_keys = Some(KeySource::File(scanner.path.clone()));
    s.leaks.gitlab_public_keys = Some(KeySource::File(scanner.path.clone()));
    s.leaks.gitlab_revocation_token = Some(REVOCATION_TOKEN.into());
}

async fn spawn(scanner: &Scanner, tweak: impl FnOnce(&mut atna_server::Settings)) -> TestApp {
    TestApp::spawn_with(|s| {
        configure(s, scanner);
        tweak(s);
    })
    .await
}

/// A second node on the same database, with the same settings.
async fn second_node(t: &TestApp, scanner: &Scanner) -> (String, tokio::sync::oneshot::Sender<()>) {
    let mut settings = atna_server::Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        change_poll_interval: Duration::from_millis(20),
        ..Default::default()
    };
    configure(&mut settings, scanner);
    let app = atna_server::App::build(settings, t.store.clone()).await.unwrap();
    let base = format!("http://{}", app.local_addr());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run(async {
        let _ = rx.await;
    }));
    (base, tx)
}

async fn post_signed(t: &TestApp, scanner: &Scanner, who: &str, body: &[u8]) -> reqwest::Response {
    t.http
        .post(t.url(&format!("/v1/leaks/{who}")))
        .header(format!("{who}-Public-Key-Identifier"), "test-key-1")
        .header(format!("{who}-Public-Key-Signature"), scanner.sign(body))
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
}

async fn status_at(http: &reqwest::Client, base: &str, key: &str) -> u16 {
    http.get(format!("{base}/v1/whoami")).bearer_auth(key).send().await.unwrap().status().as_u16()
}

fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

async fn leak_events(t: &TestApp) -> Vec<atna_store::AuditEvent> {
    let events = t.store.audit_events(t.alice, 1000).await.unwrap();
    events.into_iter().filter(|e| e.action == "key.leaked").collect()
}

#[tokio::test]
async fn a_signed_github_report_revokes_a_live_key_on_every_node_within_a_second() {
    let scanner = Scanner::new();
    let t = spawn(&scanner, |_| {}).await;
    let (other, _stop) = second_node(&t, &scanner).await;
    let key = t.key_for(t.alice, "leaky", &[]).await;
    assert_eq!(status_at(&t.http, &other, &key).await, 200, "the second node has it cached now");
    let lookalike = atna_domain::GeneratedKey::generate().secret.expose().to_owned();
    let url = "https://github.com/octo/repo/blob/abc123/.env";
    let body = json!([
        {"token": key, "type": "atna_api_key", "url": url, "source": "content"},
        {"token": lookalike, "type": "atna_api_key", "url": url, "source": "content"},
        {"token": "atna_not_a_key", "type": "atna_api_key", "url": url, "source": "content"},
    ])
    .to_string();
    let res = post_signed(&t, &scanner, "github", body.as_bytes()).await;
    assert_eq!(res.status(), 200);
    let feedback: Value = res.json().await.unwrap();
    assert_eq!(
        feedback,
        json!([
            {"token_hash": sha256_hex(&key), "token_type": "atna_api_key", "label": "true_positive"},
            {"token_hash": sha256_hex(&lookalike), "token_type": "atna_api_key", "label": "false_positive"},
            {"token_hash": sha256_hex("atna_not_a_key"), "token_type": "atna_api_key", "label": "false_positive"},
        ])
    );
    assert_eq!(t.whoami(&key).await.status(), 401, "refused at once on the node that got the report");
    eventually("the other node refuses the reported key", Duration::from_secs(1), || async {
        status_at(&t.http, &other, &key).await == 401
    })
    .await;
    let problem_body: Value = t.whoami(&key).await.json().await.unwrap();
    assert_eq!(problem_body["code"], "key_revoked");
    let events = leak_events(&t).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].detail.as_deref(), Some(&format!("github {url}") as &str));

    // Replaying the signed request changes nothing and answers the same.
    let all_events = t.store.audit_events(t.alice, 1000).await.unwrap().len();
    let res = post_signed(&t, &scanner, "github", body.as_bytes()).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap(), feedback, "a deleted key is still a true positive");
    assert_eq!(t.store.audit_events(t.alice, 1000).await.unwrap().len(), all_events);
    let reports = t.store.leak_reports(t.alice, 10).await.unwrap();
    assert_eq!(reports.len(), 1);
    assert_eq!((reports[0].url.as_str(), reports[0].outcome), (url, atna_store::LeakOutcome::Revoked));
    // The owner is told at once (a message of its own, not the daily digest), and once: the replay added nothing.
    let told: Vec<_> = t
        .store
        .reminders(t.alice, 10)
        .await
        .unwrap()
        .into_iter()
        .filter(|(r, _)| r.kind == atna_domain::ReminderKind::Leaked)
        .collect();
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0].0.key_name, "leaky");
    assert!(told[0].0.message.is_some(), "sent at once, not left for the digest");
    t.stop().await;
}

#[tokio::test]
async fn bad_reports_are_refused_with_a_problem_code_and_revoke_nothing() {
    let scanner = Scanner::new();
    let t = spawn(&scanner, |_| {}).await;
    let key = t.key_for(t.alice, "safe", &[]).await;
    let body = json!([{"token": key, "type": "t", "url": "https://x.test", "source": "content"}]).to_string();
    let url = t.url("/v1/leaks/github");

    // No signature at all.
    let res = t.http.post(&url).body(body.clone()).send().await.unwrap();
    let (status, p) = problem(res).await;
    assert_eq!((status, p["code"].as_str()), (401, Some("leak_signature_invalid")));
    // Signed by someone else's key, under the right identifier.
    let impostor = Scanner::new();
    let res = t
        .http
        .post(&url)
        .header("Github-Public-Key-Identifier", "test-key-1")
        .header("Github-Public-Key-Signature", impostor.sign(body.as_bytes()))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    let (status, wrong) = problem(res).await;
    assert_eq!((status, wrong["code"].as_str()), (401, Some("leak_signature_invalid")));
    // A signature of another body.
    let res = t
        .http
        .post(&url)
        .header("Github-Public-Key-Identifier", "test-key-1")
        .header("Github-Public-Key-Signature", scanner.sign(b"[]"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    let (_, other_body) = problem(res).await;
    // An unknown identifier.
    let res = t
        .http
        .post(&url)
        .header("Github-Public-Key-Identifier", "no-such-key")
        .header("Github-Public-Key-Signature", scanner.sign(body.as_bytes()))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    let (status, unknown) = problem(res).await;
    assert_eq!(status, 401);
    assert_eq!(unknown, wrong, "every signature failure gets the same answer");
    assert_eq!(other_body, wrong);
    // Correctly signed, but not JSON.
    let (status, p) = problem(post_signed(&t, &scanner, "github", b"[{\"token\": ").await).await;
    assert_eq!((status, p["code"].as_str()), (400, Some("leak_report_invalid")));
    let (status, p) = problem(post_signed(&t, &scanner, "github", br#"{"token": "x"}"#).await).await;
    assert_eq!((status, p["code"].as_str()), (400, Some("leak_report_invalid")));
    // Over 1 MiB.
    let big = format!("[{}]", vec![format!("{{\"token\":\"{key}\",\"type\":\"t\",\"url\":\"u\"}}"); 20_000].join(","));
    assert!(big.len() > 1 << 20);
    let (status, p) = problem(post_signed(&t, &scanner, "github", big.as_bytes()).await).await;
    assert_eq!((status, p["code"].as_str()), (413, Some("body_too_large")));
    // GitLab's endpoint checks its own headers the same way.
    let res = t
        .http
        .post(t.url("/v1/leaks/gitlab"))
        .header("Github-Public-Key-Identifier", "test-key-1")
        .header("Github-Public-Key-Signature", scanner.sign(body.as_bytes()))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(problem(res).await.1["code"], "leak_signature_invalid");

    assert_eq!(t.whoami(&key).await.status(), 200, "nothing was revoked");
    assert!(leak_events(&t).await.is_empty());
    assert!(t.store.leak_reports(t.alice, 10).await.unwrap().is_empty());
    t.stop().await;
}

#[tokio::test]
async fn gitlab_partner_reports_and_self_managed_revocations_work_the_same_way() {
    let scanner = Scanner::new();
    let t = spawn(&scanner, |_| {}).await;
    let a = t.key_for(t.alice, "a", &[]).await;
    let b = t.key_for(t.alice, "b", &[]).await;
    let body = json!([{"type": "atna_api_key", "token": a, "url": "https://gitlab.com/g/p/-/blob/main/x"}]).to_string();
    let res = post_signed(&t, &scanner, "gitlab", body.as_bytes()).await;
    assert_eq!(res.status(), 204);
    assert_eq!(t.whoami(&a).await.status(), 401);

    // Self-managed GitLab: a pre-shared token.
    let types = t.url("/v1/revocable_token_types");
    let (status, p) = problem(t.http.get(&types).send().await.unwrap()).await;
    assert_eq!((status, p["code"].as_str()), (401, Some("revocation_token_invalid")));
    let (status, _) = problem(t.http.get(&types).bearer_auth("wrong-token-wrong-token").send().await.unwrap()).await;
    assert_eq!(status, 401);
    let listed: Value = t.http.get(&types).bearer_auth(REVOCATION_TOKEN).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed, json!({"types": ["gitleaks_rule_id_atna-api-key"]}));
    let revoke = t.url("/v1/revoke_tokens");
    let body = json!([{"type": "gitleaks_rule_id_atna-api-key", "token": b, "location": "https://gitlab.example/x"}]);
    let res = t.http.post(&revoke).header("authorization", REVOCATION_TOKEN).json(&body).send().await.unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(t.whoami(&b).await.status(), 401);
    let res = t.http.post(&revoke).header("authorization", REVOCATION_TOKEN).json(&body).send().await.unwrap();
    assert_eq!(res.status(), 204, "idempotent");
    let res = t.http.post(&revoke).bearer_auth(REVOCATION_TOKEN).body("{").send().await.unwrap();
    assert_eq!(problem(res).await.1["code"], "leak_report_invalid");
    let res = t.http.post(&revoke).json(&body).send().await.unwrap();
    assert_eq!(problem(res).await.0, 401);
    assert_eq!(leak_events(&t).await.len(), 2);
    t.stop().await;
}

#[tokio::test]
async fn the_leak_action_can_disable_or_only_notify() {
    let scanner = Scanner::new();
    for (action, after, outcome) in [
        (atna_store::LeakAction::Disable, 401, atna_store::LeakOutcome::Disabled),
        (atna_store::LeakAction::Notify, 200, atna_store::LeakOutcome::Unchanged),
    ] {
        let t = spawn(&scanner, |s| s.leaks.action = action).await;
        let key = t.key_for(t.alice, "k", &[]).await;
        assert_eq!(t.whoami(&key).await.status(), 200);
        let body = json!([{"token": key, "type": "t", "url": "https://x.test/1", "source": "content"}]).to_string();
        let res = post_signed(&t, &scanner, "github", body.as_bytes()).await;
        assert_eq!(res.json::<Value>().await.unwrap()[0]["label"], "true_positive");
        assert_eq!(t.whoami(&key).await.status(), after, "{action:?}");
        assert_eq!(t.store.leak_reports(t.alice, 10).await.unwrap()[0].outcome, outcome);
        assert_eq!(leak_events(&t).await.len(), 1, "every report is audited");
        t.stop().await;
    }
}

#[tokio::test]
async fn a_thousand_tokens_are_answered_in_one_request() {
    let scanner = Scanner::new();
    let t = spawn(&scanner, |_| {}).await;
    let mut tokens = Vec::new();
    for i in 0..100 {
        tokens.push(t.key_for(t.alice, &format!("k{i}"), &[]).await);
    }
    while tokens.len() < 1000 {
        tokens.push(atna_domain::GeneratedKey::generate().secret.expose().to_owned());
    }
    let body: Vec<Value> = tokens
        .iter()
        .enumerate()
        .map(|(i, k)| json!({"token": k, "type": "atna_api_key", "url": format!("https://github.com/o/r/blob/{i}/f"), "source": "content"}))
        .collect();
    let body = serde_json::to_vec(&body).unwrap();
    let started = std::time::Instant::now();
    let res = post_signed(&t, &scanner, "github", &body).await;
    let took = started.elapsed();
    assert_eq!(res.status(), 200);
    let labels: Vec<Value> = res.json().await.unwrap();
    assert_eq!(labels.len(), 1000);
    assert_eq!(labels.iter().filter(|l| l["label"] == "true_positive").count(), 100);
    // A figure for docs/performance.md, not an assertion.
    eprintln!("1000 tokens ({} bytes, 100 live keys revoked): answered in {took:?}", body.len());
    assert_eq!(t.whoami(&tokens[0]).await.status(), 401);
    t.stop().await;
}

#[tokio::test]
async fn a_new_prefix_reaches_every_node_and_old_keys_keep_working() {
    let scanner = Scanner::new();
    let t = spawn(&scanner, |_| {}).await;
    let (other, _stop) = second_node(&t, &scanner).await;
    let old = t.key_for(t.alice, "old", &[]).await;
    assert!(old.starts_with("atna_"));
    let acme = atna_domain::KeyPrefix::parse("acme").unwrap();
    t.store.set_key_prefix(&acme, atna_server::clock::now()).await.unwrap();
    let new = t.key_for(t.alice, "new", &[]).await;
    assert!(new.starts_with("acme_"), "{new}");
    for base in [&t.base, &other] {
        eventually("every node accepts the new prefix", Duration::from_secs(1), || async {
            status_at(&t.http, base, &new).await == 200
        })
        .await;
        assert_eq!(status_at(&t.http, base, &old).await, 200, "keys issued before the change keep working");
    }
    // A well-formed key of a prefix this installation never issued is malformed, decided without a store read.
    let stranger = atna_domain::GeneratedKey::generate_with(&atna_domain::KeyPrefix::parse("othr").unwrap());
    let reads = t.state.verifier.store_reads();
    let res = t.whoami(stranger.secret.expose()).await;
    assert_eq!(problem(res).await.1["code"], "key_malformed");
    assert_eq!(t.state.verifier.store_reads(), reads);
    // Leak reports follow the prefixes too: the new key is a true positive, the stranger's is not.
    let body = json!([
        {"token": new, "type": "t", "url": "https://x.test/a", "source": "content"},
        {"token": stranger.secret.expose(), "type": "t", "url": "https://x.test/a", "source": "content"}
    ])
    .to_string();
    let labels: Value = post_signed(&t, &scanner, "github", body.as_bytes()).await.json().await.unwrap();
    assert_eq!(
        (labels[0]["label"].as_str(), labels[1]["label"].as_str()),
        (Some("true_positive"), Some("false_positive"))
    );
    let types: Value = t
        .http
        .get(t.url("/v1/revocable_token_types"))
        .bearer_auth(REVOCATION_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(types, json!({"types": ["gitleaks_rule_id_acme-api-key", "gitleaks_rule_id_atna-api-key"]}));
    t.stop().await;
}

#[tokio::test]
async fn the_leak_endpoints_are_off_until_configured_and_in_openapi() {
    let t = TestApp::spawn().await;
    for path in ["/v1/leaks/github", "/v1/leaks/gitlab", "/v1/revoke_tokens"] {
        let (status, p) = problem(t.http.post(t.url(path)).body("[]").send().await.unwrap()).await;
        assert_eq!((status, p["code"].as_str()), (404, Some("leak_endpoint_disabled")), "{path}");
    }
    let doc = t.get_json("/openapi.json", &t.admin_key).await;
    for path in ["/v1/leaks/github", "/v1/leaks/gitlab", "/v1/revocable_token_types", "/v1/revoke_tokens"] {
        assert!(doc["paths"][path].is_object(), "{path} is documented");
    }
    t.stop().await;
}
