//! The key holders' endpoints, `/v1/credentials/status` and `/v1/credentials/revoke`, over real HTTP on port 0. Runs
//! on SQLite, and on PostgreSQL with `ATNA_TEST_BACKEND=postgres` (the `atna` crate's `tests/scan.rs` drives them
//! through `atna scan --check --server` too).

mod common;

use atna_domain::credential::{encode, SECRET_LEN};
use atna_domain::ParsedKey;
use atna_store::Actor;
use common::TestApp;
use serde_json::{json, Value};

async fn post(app: &TestApp, path: &str, body: Value) -> reqwest::Response {
    app.http.post(app.url(path)).json(&body).send().await.unwrap()
}

#[tokio::test]
async fn holders_learn_live_or_deleted_and_revoke_with_an_audited_202() {
    let app = TestApp::spawn().await;
    let live = app.key_for(app.alice, "found-in-a-repo", &[]).await;
    let id = ParsedKey::parse(&live).unwrap().id;
    // The same Credential ID with another secret: well-formed, checksum right, not the key.
    let forged = encode(&id, &[b'x'; SECRET_LEN]);

    let res = post(&app, "/v1/credentials/status", json!({ "keys": [live, forged, "nope"] })).await;
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    assert_eq!(
        v["keys"],
        json!([
            { "credential_id": id.to_string(), "status": "live" },
            { "credential_id": id.to_string(), "status": "unknown" },
            { "credential_id": null, "status": "unknown" },
        ])
    );

    for keys in [json!([forged]), json!(["nope"]), json!([])] {
        assert_eq!(post(&app, "/v1/credentials/revoke", json!({ "keys": keys })).await.status(), 202);
    }
    assert_eq!(app.whoami(&live).await.status(), 200, "a forged key revokes nothing");

    assert_eq!(post(&app, "/v1/credentials/revoke", json!({ "keys": [live] })).await.status(), 202);
    assert_eq!(app.whoami(&live).await.status(), 401, "revoked at once");
    let v: Value = post(&app, "/v1/credentials/status", json!({ "keys": [live] })).await.json().await.unwrap();
    assert_eq!(v["keys"][0]["status"], "deleted");
    assert_eq!(post(&app, "/v1/credentials/revoke", json!({ "keys": [live] })).await.status(), 202, "again");

    let events = app.store.audit_events(app.alice, 10).await.unwrap();
    let deleted: Vec<_> = events.iter().filter(|e| e.action == "key.deleted").collect();
    assert_eq!(deleted.len(), 1, "{events:?}");
    assert_eq!(deleted[0].actor, Actor::Key { user: app.alice, key: id }, "the key itself acted");
    app.stop().await;
}

/// A key of the installation's own prefix (`atna key-prefix set acme`) is one of its keys here too: before, the key
/// holders' endpoints knew only `atna_` keys and called an `acme_` key "unknown".
#[tokio::test]
async fn keys_of_the_installations_own_prefix_are_recognised() {
    let app = TestApp::spawn().await;
    let acme = atna_domain::KeyPrefix::parse("acme").unwrap();
    app.store.set_key_prefix(&acme, atna_server::clock::now()).await.unwrap();
    let key = app.key_for(app.alice, "acme-service", &[]).await;
    assert!(key.starts_with("acme_"), "{key}");
    // The node learns the new prefix through the change feed.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let v: Value = post(&app, "/v1/credentials/status", json!({ "keys": [key] })).await.json().await.unwrap();
        if v["keys"][0]["status"] == "live" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "an acme_ key was never recognised: {v}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(post(&app, "/v1/credentials/revoke", json!({ "keys": [key] })).await.status(), 202);
    assert_eq!(app.whoami(&key).await.status(), 401, "revoked");
}
