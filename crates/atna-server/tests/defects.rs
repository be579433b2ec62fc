//! Regression tests for the defects of the security and fault reviews (issue 7) that the REST API shows: each test
//! failed before its fix. Runs on SQLite, and on PostgreSQL with `ATNA_TEST_BACKEND=postgres`.

mod common;

use atna_store::Actor;
use common::{problem, TestApp};
use serde_json::{json, Value};

async fn create(app: &TestApp, key: &str, body: Value) -> reqwest::Response {
    app.http.post(app.url("/v1/keys")).bearer_auth(key).json(&body).send().await.unwrap()
}

async fn list(app: &TestApp, key: &str) -> Value {
    let res = app.http.get(app.url("/v1/keys?limit=100")).bearer_auth(key).send().await.unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

#[tokio::test]
async fn an_accented_name_is_created_listed_and_shown() {
    // Was: the naming-convention check sliced inside "é", the request panicked after the key was committed, the
    // secret was lost and every later listing of that user's keys dropped the connection.
    let app = TestApp::spawn().await;
    for name in ["svc-1é1_2026-14_05", "café-26_11_2026-14_05", "計費-2é_11_2026-14_05"] {
        let res = create(&app, &app.admin_key, json!({ "name": name })).await;
        assert_eq!(res.status(), 201, "{name}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["name"], name);
        assert!(body["secret"].as_str().unwrap().starts_with("atna_"));
        assert_eq!(app.whoami(body["secret"].as_str().unwrap()).await.status(), 200, "the secret shown works");
    }
    let keys = list(&app, &app.admin_key).await;
    let conventional: Vec<(&str, bool)> = keys["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["name"].as_str().unwrap(), k["follows_naming_convention"].as_bool().unwrap()))
        .filter(|(n, _)| *n != "admin-key")
        .collect();
    assert_eq!(
        conventional,
        [("計費-2é_11_2026-14_05", false), ("café-26_11_2026-14_05", true), ("svc-1é1_2026-14_05", false)]
    );
    app.stop().await;
}

#[tokio::test]
async fn invisible_formatting_characters_in_names_are_refused() {
    let app = TestApp::spawn().await;
    for name in ["billing\u{202E}gnp.exe", "billing\u{200B}", "\u{2066}crm\u{2069}"] {
        let (status, p) = problem(create(&app, &app.admin_key, json!({ "name": name })).await).await;
        assert_eq!((status, p["code"].as_str().unwrap()), (422, "invalid_name"), "{name:?}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_key_never_makes_a_key_that_outlives_it() {
    let app = TestApp::spawn().await;
    // A management key that expires in two minutes.
    let parent = create(
        &app,
        &app.admin_key,
        json!({ "name": "short-lived", "scopes": ["keys:manage"], "expires_at": in_secs(120) }),
    )
    .await
    .json::<Value>()
    .await
    .unwrap();
    let parent_secret = parent["secret"].as_str().unwrap();
    let parent_id = parent["id"].as_str().unwrap();
    let parent_expiry = parent["expires_at"].as_str().unwrap();

    // An omitted expiry becomes the parent's.
    let res = create(&app, parent_secret, json!({ "name": "child", "scopes": ["keys:manage"] })).await;
    assert_eq!(res.status(), 201);
    let child: Value = res.json().await.unwrap();
    assert_eq!(child["expires_at"].as_str().unwrap(), parent_expiry, "inherits the parent's expiry");
    assert_eq!(child["created_by_key"], parent_id);

    // A later expiry, or none at all by asking for a far date, is refused, and nothing is created.
    for late in [in_secs(121), in_secs(10 * 365 * 24 * 3600)] {
        let (status, p) =
            problem(create(&app, parent_secret, json!({ "name": "grandchild", "expires_at": late })).await).await;
        assert_eq!((status, p["code"].as_str().unwrap()), (422, "expiry_beyond_caller"));
        assert!(p["detail"].as_str().unwrap().contains("outlives"));
    }
    // An earlier one is fine.
    assert_eq!(create(&app, parent_secret, json!({ "name": "sooner", "expires_at": in_secs(60) })).await.status(), 201);
    let names: Vec<String> = list(&app, parent_secret).await["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(!names.contains(&"grandchild".to_owned()));

    // A key without expiry may still make keys without expiry (the owner's own choice).
    let forever = create(&app, &app.admin_key, json!({ "name": "forever" })).await.json::<Value>().await.unwrap();
    assert!(forever["expires_at"].is_null());
    assert!(forever["created_by_key"].as_str().is_some(), "made through the API by the admin key");

    // Deleting the parent leaves its children, which say which key made them; the audit trail names the key.
    let del = app.http.delete(app.url(&format!("/v1/keys/{parent_id}"))).bearer_auth(&app.admin_key).send().await;
    assert_eq!(del.unwrap().status(), 204);
    assert_eq!(app.whoami(child["secret"].as_str().unwrap()).await.status(), 200);
    let got = app.get_json(&format!("/v1/keys/{}", child["id"].as_str().unwrap()), &app.admin_key).await;
    assert_eq!(got["created_by_key"], parent_id);
    let events = app.store.audit_events(app.alice, 50).await.unwrap();
    let made = events
        .iter()
        .find(|e| e.action == "key.created" && e.key_id.map(|k| k.to_string()).as_deref() == child["id"].as_str())
        .unwrap();
    assert_eq!(made.actor.key().map(|k| k.to_string()).as_deref(), Some(parent_id));
    app.stop().await;
}

#[tokio::test]
async fn deleting_twice_says_already_deleted_and_others_keys_stay_unknown() {
    let app = TestApp::spawn().await;
    let k = app.key_for(app.alice, "twice", &[]).await;
    let url = app.url(&format!("/v1/keys/{}", &k[5..21]));
    assert_eq!(app.http.delete(&url).bearer_auth(&app.admin_key).send().await.unwrap().status(), 204);
    let (status, p) = problem(app.http.delete(&url).bearer_auth(&app.admin_key).send().await.unwrap()).await;
    assert_eq!((status, p["code"].as_str().unwrap()), (410, "key_already_deleted"));

    // Bob's deleted key is, for Alice, a key that does not exist.
    let bob = common::user(app.store.as_ref(), "bob@example.com").await;
    let bob_manage = app.key_for(bob, "bob-admin", &["keys:manage"]).await;
    let bobs = app.key_for(bob, "bobs", &[]).await;
    let bobs_url = app.url(&format!("/v1/keys/{}", &bobs[5..21]));
    assert_eq!(app.http.delete(&bobs_url).bearer_auth(&bob_manage).send().await.unwrap().status(), 204);
    let (status, p) = problem(app.http.delete(&bobs_url).bearer_auth(&app.admin_key).send().await.unwrap()).await;
    assert_eq!((status, p["code"].as_str().unwrap()), (404, "key_not_found"));
    app.stop().await;
}

#[tokio::test]
async fn expired_keys_say_expired() {
    let app = TestApp::spawn().await;
    let g = app.expired_key_for(app.alice, "old").await;
    let got = app.get_json(&format!("/v1/keys/{}", g.id), &app.admin_key).await;
    assert_eq!(got["status"], "expired");
    let listed = list(&app, &app.admin_key).await;
    let old = listed["data"].as_array().unwrap().iter().find(|k| k["name"] == "old").unwrap().clone();
    assert_eq!(old["status"], "expired");
    app.stop().await;
}

#[tokio::test]
async fn json_errors_do_not_name_rust_types() {
    let app = TestApp::spawn().await;
    for body in ["[]", "[1,2,3]", "\"name\"", "{\"name\": 5}"] {
        let res = app
            .http
            .post(app.url("/v1/keys"))
            .bearer_auth(&app.admin_key)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let (status, p) = problem(res).await;
        assert_eq!((status, p["code"].as_str().unwrap()), (422, "invalid_body"), "{body}");
        let detail = p["detail"].as_str().unwrap();
        assert!(!detail.contains("CreateKey") && !detail.contains("struct"), "{detail}");
    }
    app.stop().await;
}

#[tokio::test]
async fn health_names_the_backend_and_openapi_lists_query_parameters_as_optional() {
    let app = TestApp::spawn().await;
    let live: Value = app.http.get(app.url("/healthz")).send().await.unwrap().json().await.unwrap();
    let ready: Value = app.http.get(app.url("/readyz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(live["backend"], ready["backend"]);
    assert!(matches!(live["backend"].as_str(), Some("sqlite" | "postgres")), "{live}");

    let doc: Value = app.http.get(app.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    let params = doc["paths"]["/v1/keys"]["get"]["parameters"].as_array().unwrap();
    let mut seen: Vec<(&str, &str, bool)> = params
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), p["in"].as_str().unwrap(), p["required"].as_bool().unwrap_or(false)))
        .collect();
    seen.sort();
    assert_eq!(seen, [("cursor", "query", false), ("limit", "query", false), ("search", "query", false)]);
    // Every status the key routes answer is documented.
    let documented = |path: &str, method: &str| -> Vec<String> {
        doc["paths"][path][method]["responses"].as_object().unwrap().keys().cloned().collect()
    };
    for s in ["201", "400", "401", "403", "409", "413", "415", "422"] {
        assert!(documented("/v1/keys", "post").contains(&s.to_owned()), "POST /v1/keys {s}");
    }
    for s in ["204", "401", "403", "404", "410"] {
        assert!(documented("/v1/keys/{id}", "delete").contains(&s.to_owned()), "DELETE {s}");
    }
    for s in ["401", "403", "404"] {
        assert!(documented("/v1/keys/{id}", "get").contains(&s.to_owned()), "GET {s}");
    }
    app.stop().await;
}

fn in_secs(s: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(s)).to_rfc3339()
}

#[tokio::test]
async fn a_failure_while_presenting_a_new_key_leaves_no_key_behind() {
    // What shows the secret is built before the commit: if building it panics, no key exists whose secret nobody saw.
    let app = TestApp::spawn().await;
    let store = app.store.clone();
    let owner = app.alice;
    let before = store.count_keys(owner, None).await.unwrap();
    let task = tokio::spawn(async move {
        let spec = atna_server::service::KeySpec {
            rate_limit: None,
            quota: None,
            once: None,
            name: "doomed",
            scopes: &[],
            expires_at: None,
            by_key: None,
            ip_allowlist: &[],
        };
        let now = atna_server::clock::now();
        atna_server::service::create_key_presented(store.as_ref(), owner, Actor::User(owner), spec, now, |_, _| {
            panic!("rendering failed")
        })
        .await
    });
    assert!(task.await.unwrap_err().is_panic());
    assert_eq!(app.store.count_keys(owner, None).await.unwrap(), before, "nothing was committed");
    app.stop().await;
}
