//! The dashboard over real HTTP: the app on port 0 with a fresh store, driven by a cookie-keeping client the way a
//! browser would (forms, redirects not followed so each step is visible).

mod common;

use std::sync::Arc;
use std::time::Duration;

use atna_domain::{CredentialId, Email, Password, PasswordHash};
use atna_server::service::{self, KeySpec};
use atna_server::{App, Settings};
use atna_store::{Actor, NewUser, Store, User};
use reqwest::header::{CACHE_CONTROL, LOCATION, SET_COOKIE};
use reqwest::{redirect, Client, Response, StatusCode};

const PW: &str = "correct horse battery";

struct Server {
    base: String,
    store: Arc<dyn Store>,
    setup: Option<String>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start_with(tune: impl FnOnce(&mut Settings)) -> Server {
    start_on(common::fresh_store().await, tune).await
}

async fn start_on(store: Arc<dyn Store>, tune: impl FnOnce(&mut Settings)) -> Server {
    let mut settings = Settings { listen: "127.0.0.1:0".parse().unwrap(), ..Settings::default() };
    tune(&mut settings);
    let app = App::build(settings, store.clone()).await.unwrap();
    let base = format!("http://{}", app.local_addr());
    let setup = app.setup_token().map(str::to_owned);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run(async move {
        let _ = rx.await;
    }));
    Server { base, store, setup, _stop: tx }
}

async fn start() -> Server {
    start_with(|_| {}).await
}

fn browser() -> Client {
    Client::builder().cookie_store(true).redirect(redirect::Policy::none()).build().unwrap()
}

async fn user(store: &dyn Store, email: &str, admin: bool) -> User {
    store
        .create_user(NewUser {
            email: Email::parse(email).unwrap(),
            password_hash: PasswordHash::hash(&Password::new(PW.into()).unwrap()),
            is_admin: admin,
            created_at: atna_server::clock::now(),
        })
        .await
        .unwrap()
}

/// Undoes askama's HTML escaping (numeric entities).
fn unescape(html: &str) -> String {
    html.replace("&#34;", "\"").replace("&#39;", "'").replace("&#60;", "<").replace("&#62;", ">").replace("&#38;", "&")
}

/// The `value` of the first element after `marker`.
fn value_after(html: &str, marker: &str) -> String {
    let at = html.find(marker).unwrap_or_else(|| panic!("{marker} not in page:\n{html}"));
    let rest = &html[at..];
    let v = &rest[rest.find("value=\"").unwrap() + 7..];
    unescape(&v[..v.find('"').unwrap()])
}

fn csrf(html: &str) -> String {
    value_after(html, "name=\"csrf\"")
}

async fn page(c: &Client, url: &str) -> (StatusCode, String) {
    let r = c.get(url).send().await.unwrap();
    (r.status(), r.text().await.unwrap())
}

async fn login_as(c: &Client, base: &str, email: &str, password: &str) -> Response {
    let (_, html) = page(c, &format!("{base}/login")).await;
    let form = [("csrf", csrf(&html)), ("email", email.into()), ("password", password.into())];
    c.post(format!("{base}/login")).form(&form).send().await.unwrap()
}

async fn signed_in(s: &Server, email: &str) -> Client {
    let c = browser();
    let r = login_as(&c, &s.base, email, PW).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "{}", r.text().await.unwrap());
    c
}

/// Fills "Generate an API Key" and presses Save & Add; returns the response.
async fn save_and_add(c: &Client, base: &str, name: &str) -> Response {
    let (status, html) = page(c, &format!("{base}/keys/new")).await;
    assert_eq!(status, StatusCode::OK);
    let form = [("csrf", csrf(&html)), ("nonce", value_after(&html, "name=\"nonce\"")), ("name", name.into())];
    c.post(format!("{base}/keys/new")).form(&form).send().await.unwrap()
}

async fn whoami(base: &str, secret: &str) -> StatusCode {
    Client::new().get(format!("{base}/v1/whoami")).bearer_auth(secret).send().await.unwrap().status()
}

fn set_cookies(r: &Response) -> Vec<String> {
    r.headers().get_all(SET_COOKIE).iter().map(|v| v.to_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn the_seed_flow_creates_uses_and_deletes_a_key() {
    let s = start().await;
    user(s.store.as_ref(), "alice@example.com", false).await;
    let c = signed_in(&s, "alice@example.com").await;

    let (status, html) = page(&c, &format!("{}/keys", s.base)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("My API Keys") && html.contains("+ Generate an API Key"));
    assert!(html.contains("You have no API keys yet"), "empty state");
    assert!(html.contains("alice@example.com"), "profile name in the header");

    let r = save_and_add(&c, &s.base, "billing-26_11_2026-14_05").await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.headers()[CACHE_CONTROL], "no-store");
    let html = r.text().await.unwrap();
    let id = value_after(&html, "id=\"credential-id\"");
    let secret = value_after(&html, "id=\"credential-secret\"");
    assert!(secret.starts_with(&format!("atna_{id}_")));
    assert!(html.contains("will not be shown again"));
    assert!(html.contains(&format!("export ATNA_API_KEY={secret}")));
    assert!(unescape(&html).contains(&format!("curl -H \"Authorization: Bearer {secret}\" {}/v1/whoami", s.base)));
    assert!(html.contains("href=\"/help/secure-storage\""));
    assert!(!html.contains("doesn't follow"), "a conventional name gets no warning");

    assert_eq!(whoami(&s.base, &secret).await, StatusCode::OK);

    let (_, list) = page(&c, &format!("{}/keys", s.base)).await;
    assert!(list.contains(&id) && list.contains("billing-26_11_2026-14_05"));
    assert!(list.contains("aria-label=\"More Options\"") && list.contains(&format!("/keys/{id}/delete")));
    assert!(!list.contains(&secret), "the list never shows secrets");

    let (status, confirm) = page(&c, &format!("{}/keys/{id}/delete", s.base)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(confirm.contains("from 127.0.0.1 — services using it will fail"), "{confirm}");
    let r = c.post(format!("{}/keys/{id}/delete", s.base)).form(&[("csrf", csrf(&confirm))]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let back_to = r.headers()[LOCATION].to_str().unwrap().to_owned();
    assert_eq!(whoami(&s.base, &secret).await, StatusCode::UNAUTHORIZED, "revoked at once");
    let (_, list) = page(&c, &format!("{}{back_to}", s.base)).await;
    assert!(list.contains("was deleted") && !list.contains("billing-26_11_2026-14_05"));
}

#[tokio::test]
async fn a_resent_form_creates_no_second_key_and_shows_no_secret() {
    let s = start().await;
    let alice = user(s.store.as_ref(), "alice@example.com", false).await;
    let c = signed_in(&s, "alice@example.com").await;
    let (_, html) = page(&c, &format!("{}/keys/new", s.base)).await;
    let form = [("csrf", csrf(&html)), ("nonce", value_after(&html, "name=\"nonce\"")), ("name", "crm".into())];
    let first = c.post(format!("{}/keys/new", s.base)).form(&form).send().await.unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    let first = first.text().await.unwrap();
    let secret = value_after(&first, "id=\"credential-secret\"");
    assert!(first.contains("doesn't follow the recommended"), "soft warning, not a refusal");

    let again = c.post(format!("{}/keys/new", s.base)).form(&form).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(again.headers()[CACHE_CONTROL], "no-store");
    let again = again.text().await.unwrap();
    assert!(again.contains("already created") && !again.contains(&secret));
    assert_eq!(s.store.count_keys(alice.id, None).await.unwrap(), 1);
}

/// The opening tag of the element with `id`.
fn tag_with_id<'a>(html: &'a str, id: &str) -> &'a str {
    let at = html.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no #{id} in page:\n{html}"));
    let start = html[..at].rfind('<').unwrap();
    &html[start..at + html[at..].find('>').unwrap()]
}

#[tokio::test]
async fn the_box_labelled_name_for_the_key_is_the_one_submitted() {
    let s = start().await;
    user(s.store.as_ref(), "alice@example.com", false).await;
    let c = signed_in(&s, "alice@example.com").await;
    let (_, html) = page(&c, &format!("{}/keys/new", s.base)).await;
    // "Provide a name for the key": the label says which box that is, and that box is the form's `name`.
    assert!(html.contains("<label for=\"name\">Name for the key</label>"), "{html}");
    assert!(tag_with_id(&html, "name").contains(" name=\"name\""));
    // The Service name shortcut only fills that box in (with the page's script); it is never sent itself, and
    // without the script it stays hidden.
    assert!(!tag_with_id(&html, "service").contains(" name="));
    assert!(tag_with_id(&html, "service-field").contains(" hidden"));
}

#[tokio::test]
async fn form_errors_are_shown_inline_keeping_the_input() {
    let s = start().await;
    user(s.store.as_ref(), "alice@example.com", false).await;
    let c = signed_in(&s, "alice@example.com").await;
    assert_eq!(save_and_add(&c, &s.base, "dup").await.status(), StatusCode::CREATED);
    let r = save_and_add(&c, &s.base, "dup").await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = r.text().await.unwrap();
    assert!(html.contains("You already have a key with this name") && html.contains("value=\"dup\""));
    let r = save_and_add(&c, &s.base, "   ").await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // Mistyped addresses and unreadable query strings get HTML error pages.
    let r = c.get(format!("{}/keys/nope/no-such-page", s.base)).header("accept", "text/html").send().await.unwrap();
    let (status, html) = (r.status(), r.text().await.unwrap());
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(html.contains("<h1>Not found</h1>"));
    // A key page whose Credential ID is not one of yours (or not one at all) says so.
    let (status, html) = page(&c, &format!("{}/keys/nope", s.base)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(html.contains("<h1>No such API key</h1>"));
    let (status, html) = page(&c, &format!("{}/keys?q=%ZZ&after=x&q=1", s.base)).await;
    assert!(status == StatusCode::OK || status == StatusCode::BAD_REQUEST, "{status}");
    assert!(html.contains("<html"));
    let (status, html) = page(&c, &format!("{}/logout", s.base)).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(html.contains("<h1>Use the buttons on the page</h1>"));
    // Unreadable bodies get the HTML error page, not a bare 500.
    let r = c.post(format!("{}/keys/new", s.base)).body("\u{0}").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("<h1>The form could not be read</h1>"));
}

#[tokio::test]
async fn session_cookie_flags_and_security_headers() {
    let s = start_with(|s| s.trust_forwarded_for = true).await;
    user(s.store.as_ref(), "alice@example.com", false).await;
    let c = browser();
    let r = login_as(&c, &s.base, "alice@example.com", PW).await;
    let cookie = set_cookies(&r).into_iter().find(|c| c.starts_with("atna_session=")).unwrap();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax") && cookie.contains("Path=/"));
    assert!(!cookie.contains("Secure"), "plain HTTP: no Secure flag");
    let token = cookie["atna_session=".len()..cookie.find(';').unwrap()].to_owned();
    assert!(token.len() >= 32, "at least 128 bits");

    // Behind a trusted TLS-terminating proxy the cookie is Secure.
    let c2 = browser();
    let (_, html) = page(&c2, &format!("{}/login", s.base)).await;
    let form = [("csrf", csrf(&html)), ("email", "alice@example.com".into()), ("password", PW.into())];
    let r = c2.post(format!("{}/login", s.base)).header("x-forwarded-proto", "https").form(&form).send().await.unwrap();
    assert!(set_cookies(&r).iter().any(|c| c.starts_with("atna_session=") && c.contains("; Secure")));

    for path in ["/login", "/keys", "/keys/new", "/account"] {
        let r = c.get(format!("{}{path}", s.base)).send().await.unwrap();
        let h = r.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("script-src 'self'")
                && csp.contains("frame-ancestors 'none'")
                && !csp.contains("unsafe-inline")
        );
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["referrer-policy"], "same-origin");
    }
    let r = Client::new().get(format!("{}/v1/whoami", s.base)).send().await.unwrap();
    assert!(r.headers().get("content-security-policy").is_none(), "the API carries no dashboard layers");
    let r = Client::new().put(format!("{}/v1/whoami", s.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.headers()["content-type"], "application/problem+json", "the API keeps its own errors");
    // An unknown address: a browser gets the dashboard's page, a program (or anything under /v1) a problem document.
    let html = "text/html,application/xhtml+xml,*/*;q=0.8";
    let r = c.get(format!("{}/no-such-page", s.base)).header("accept", html).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(r.headers()["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"));
    assert!(r.text().await.unwrap().contains("Not found"));
    for (path, accept) in [("/no-such-page", "application/json"), ("/no-such-page", "*/*"), ("/v1/nope", html)] {
        let r = c.get(format!("{}{path}", s.base)).header("accept", accept).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(r.headers()["content-type"], "application/problem+json", "{path} with Accept: {accept}");
    }
    // Assets are cacheable for a long time.
    let (_, html) = page(&c, &format!("{}/keys", s.base)).await;
    let css = value_after(&html.replace("href=", "value="), "rel=\"stylesheet\"");
    let r = c.get(format!("{}{css}", s.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()[CACHE_CONTROL].to_str().unwrap().contains("max-age=31536000"));
}

#[tokio::test]
async fn csrf_tokens_and_origins_are_checked() {
    let s = start().await;
    let alice = user(s.store.as_ref(), "alice@example.com", false).await;
    let c = signed_in(&s, "alice@example.com").await;
    let (_, html) = page(&c, &format!("{}/keys/new", s.base)).await;
    let nonce = value_after(&html, "name=\"nonce\"");
    let good = csrf(&html);
    let url = format!("{}/keys/new", s.base);

    let r = c.post(&url).form(&[("nonce", nonce.as_str()), ("name", "x")]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "missing token");
    let bad = "0".repeat(good.len());
    let r = c.post(&url).form(&[("csrf", bad.as_str()), ("nonce", &nonce), ("name", "x")]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "wrong token");
    let r = c
        .post(&url)
        .header("origin", "https://evil.example")
        .form(&[("csrf", good.as_str()), ("nonce", &nonce), ("name", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "cross-origin");
    assert!(r.text().await.unwrap().contains("came from another site"));
    assert_eq!(s.store.count_keys(alice.id, None).await.unwrap(), 0);

    // The same-origin form with the right token works.
    let origin = s.base.clone();
    let r = c
        .post(&url)
        .header("origin", origin)
        .form(&[("csrf", good.as_str()), ("nonce", &nonce), ("name", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);

    // Sign-in has its own pre-session token.
    let fresh = browser();
    let r = fresh
        .post(format!("{}/login", s.base))
        .form(&[("email", "alice@example.com"), ("password", PW)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn failed_sign_ins_are_throttled_per_account_and_per_address() {
    let s = start().await;
    user(s.store.as_ref(), "alice@example.com", false).await;
    let c = browser();
    for _ in 0..5 {
        assert_eq!(
            login_as(&c, &s.base, "alice@example.com", "wrong password").await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    let r = login_as(&c, &s.base, "alice@example.com", PW).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "even the right password waits");
    assert!(r.text().await.unwrap().contains("Too many failed sign-ins; try again in 15 minutes"));

    // 20 failures from one address, spread over accounts, block the address.
    for i in 0..15 {
        login_as(&c, &s.base, &format!("nobody{i}@example.com"), "x").await;
    }
    let r = login_as(&c, &s.base, "someone-else@example.com", "x").await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn logout_ends_the_session_in_the_store() {
    let s = start().await;
    user(s.store.as_ref(), "alice@example.com", false).await;
    let c = browser();
    let r = login_as(&c, &s.base, "alice@example.com", PW).await;
    let cookie = set_cookies(&r).into_iter().find(|c| c.starts_with("atna_session=")).unwrap();
    let pair = cookie[..cookie.find(';').unwrap()].to_owned();
    let (_, html) = page(&c, &format!("{}/keys", s.base)).await;
    let r = c.post(format!("{}/logout", s.base)).form(&[("csrf", csrf(&html))]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    // Replaying the old cookie (as a thief would) no longer works.
    let r = Client::builder()
        .redirect(redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{}/keys", s.base))
        .header("cookie", pair)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "/login");
}

#[tokio::test]
async fn sessions_expire_when_idle_and_absolutely() {
    use sha2::{Digest, Sha256};
    // Idle: no request in between (a request would count as activity), so watch the store, then ask over HTTP.
    let s = start_with(|s| s.session_idle_timeout = Duration::from_millis(500)).await;
    user(s.store.as_ref(), "alice@example.com", false).await;
    let c = browser();
    let r = login_as(&c, &s.base, "alice@example.com", PW).await;
    let cookie = set_cookies(&r).into_iter().find(|c| c.starts_with("atna_session=")).unwrap();
    let token = cookie["atna_session=".len()..cookie.find(';').unwrap()].to_owned();
    let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    let url = format!("{}/keys", s.base);
    assert_eq!(c.get(&url).send().await.unwrap().status(), StatusCode::OK);
    common::eventually("the idle session to expire", Duration::from_secs(10), || async {
        s.store.session(&hash, atna_server::clock::now()).await.unwrap().is_none()
    })
    .await;
    assert_eq!(c.get(&url).send().await.unwrap().status(), StatusCode::SEE_OTHER);

    // Absolute: even a busy session ends.
    let s = start_with(|s| s.session_absolute_timeout = Duration::from_millis(600)).await;
    user(s.store.as_ref(), "alice@example.com", false).await;
    let c = signed_in(&s, "alice@example.com").await;
    let url = format!("{}/keys", s.base);
    assert_eq!(c.get(&url).send().await.unwrap().status(), StatusCode::OK);
    common::eventually("the busy session to expire", Duration::from_secs(10), || async {
        c.get(&url).send().await.unwrap().status() == StatusCode::SEE_OTHER
    })
    .await;
}

#[tokio::test]
async fn another_users_key_is_a_404_and_stays_untouched() {
    let s = start().await;
    user(s.store.as_ref(), "alice@example.com", false).await;
    let bob = user(s.store.as_ref(), "bob@example.com", false).await;
    let spec = KeySpec {
        rate_limit: None,
        quota: None,
        once: None,
        name: "bobs",
        scopes: &[],
        expires_at: None,
        by_key: None,
        ip_allowlist: &[],
    };
    let (rec, secret) =
        service::create_key(s.store.as_ref(), bob.id, Actor::User(bob.id), spec, atna_server::clock::now())
            .await
            .unwrap();
    let c = signed_in(&s, "alice@example.com").await;
    let (status, html) = page(&c, &format!("{}/keys/{}/delete", s.base, rec.id)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(html.contains("No such API key"));
    let (_, keys) = page(&c, &format!("{}/keys", s.base)).await;
    let r = c.post(format!("{}/keys/{}/delete", s.base, rec.id)).form(&[("csrf", csrf(&keys))]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(s.store.get_key(bob.id, &rec.id).await.unwrap().is_some());
    assert_eq!(whoami(&s.base, secret.expose()).await, StatusCode::OK);
    assert!(!keys.contains(rec.id.as_str()));
    let (status, _) = page(&c, &format!("{}/keys/not-an-id/delete", s.base)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn first_run_setup_link_creates_the_admin_once() {
    let s = start().await;
    let token = s.setup.clone().expect("no users: a setup token");
    let c = browser();
    assert_eq!(page(&c, &format!("{}/setup", s.base)).await.0, StatusCode::FORBIDDEN);
    assert_eq!(page(&c, &format!("{}/setup?token={}", s.base, "f".repeat(64))).await.0, StatusCode::FORBIDDEN);
    let (status, html) = page(&c, &format!("{}/setup?token={token}", s.base)).await;
    assert_eq!(status, StatusCode::OK);
    let form = [
        ("csrf", csrf(&html)),
        ("token", token.clone()),
        ("email", "root@example.com".into()),
        ("password", PW.into()),
        ("confirm", PW.into()),
    ];
    let r = c.post(format!("{}/setup", s.base)).form(&form).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let (status, html) = page(&c, &format!("{}/admin/users", s.base)).await;
    assert_eq!(status, StatusCode::OK, "the first user is an admin and signed in");
    assert!(html.contains("root@example.com"));
    assert_eq!(page(&browser(), &format!("{}/setup?token={token}", s.base)).await.0, StatusCode::NOT_FOUND);
    let r = c.post(format!("{}/setup", s.base)).form(&form).send().await.unwrap();
    assert!([StatusCode::FORBIDDEN, StatusCode::NOT_FOUND].contains(&r.status()), "the link works once");
    assert_eq!(s.store.count_users().await.unwrap(), 1);

    // With a user already there at start, there is no setup token at all.
    let store = common::fresh_store().await;
    user(store.as_ref(), "a@example.com", true).await;
    let s2 = start_on(store, |_| {}).await;
    assert!(s2.setup.is_none());
    assert_eq!(page(&browser(), &format!("{}/setup?token={token}", s2.base)).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn disabling_a_user_ends_sessions_and_stops_keys() {
    let s = start().await;
    user(s.store.as_ref(), "root@example.com", true).await;
    let admin = signed_in(&s, "root@example.com").await;
    let (_, html) = page(&admin, &format!("{}/admin/users", s.base)).await;
    let form = [("csrf", csrf(&html)), ("email", "bob@example.com".into()), ("password", PW.into())];
    let r = admin.post(format!("{}/admin/users", s.base)).form(&form).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);

    let bob = signed_in(&s, "bob@example.com").await;
    assert_eq!(page(&bob, &format!("{}/admin/users", s.base)).await.0, StatusCode::NOT_FOUND, "not for non-admins");
    let html = save_and_add(&bob, &s.base, "bobs-key").await.text().await.unwrap();
    let secret = value_after(&html, "id=\"credential-secret\"");
    assert_eq!(whoami(&s.base, &secret).await, StatusCode::OK);

    let bob_id = s.store.user_by_email(&Email::parse("bob@example.com").unwrap()).await.unwrap().unwrap().id;
    let (_, html) = page(&admin, &format!("{}/admin/users", s.base)).await;
    let r = admin
        .post(format!("{}/admin/users/{bob_id}/disable", s.base))
        .form(&[("csrf", csrf(&html))])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(whoami(&s.base, &secret).await, StatusCode::UNAUTHORIZED, "keys stop at once");
    assert_eq!(page(&bob, &format!("{}/keys", s.base)).await.0, StatusCode::SEE_OTHER, "session ended");
    let r = login_as(&browser(), &s.base, "bob@example.com", PW).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.text().await.unwrap().contains("This account is disabled"));

    let r = admin
        .post(format!("{}/admin/users/{bob_id}/enable", s.base))
        .form(&[("csrf", csrf(&html))])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(whoami(&s.base, &secret).await, StatusCode::OK, "re-enabled: the key works again");
}

#[tokio::test]
async fn password_change_and_sign_out_everywhere() {
    let s = start().await;
    user(s.store.as_ref(), "alice@example.com", false).await;
    let here = signed_in(&s, "alice@example.com").await;
    let elsewhere = signed_in(&s, "alice@example.com").await;
    let (_, html) = page(&here, &format!("{}/account", s.base)).await;
    let url = format!("{}/account/password", s.base);
    let wrong = [
        ("csrf", csrf(&html)),
        ("current", "nope".into()),
        ("new", "new password 1".into()),
        ("confirm", "new password 1".into()),
    ];
    assert_eq!(here.post(&url).form(&wrong).send().await.unwrap().status(), StatusCode::UNPROCESSABLE_ENTITY);
    let right = [
        ("csrf", csrf(&html)),
        ("current", PW.into()),
        ("new", "new password 1".into()),
        ("confirm", "new password 1".into()),
    ];
    assert_eq!(here.post(&url).form(&right).send().await.unwrap().status(), StatusCode::SEE_OTHER);
    assert_eq!(page(&elsewhere, &format!("{}/keys", s.base)).await.0, StatusCode::SEE_OTHER, "other sessions end");
    let (status, html) = page(&here, &format!("{}/account", s.base)).await;
    assert_eq!(status, StatusCode::OK, "this browser stays signed in");
    assert_eq!(login_as(&browser(), &s.base, "alice@example.com", PW).await.status(), StatusCode::UNAUTHORIZED);

    let r = here.post(format!("{}/account/sessions", s.base)).form(&[("csrf", csrf(&html))]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(page(&here, &format!("{}/keys", s.base)).await.0, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_thousand_keys_are_paged_and_searchable() {
    let s = start().await;
    let alice = user(s.store.as_ref(), "alice@example.com", false).await;
    for i in 0..1_030 {
        let name = format!("svc{i:04}-01_01_2026-00_00");
        let spec = KeySpec {
            rate_limit: None,
            quota: None,
            once: None,
            name: &name,
            scopes: &[],
            expires_at: None,
            by_key: None,
            ip_allowlist: &[],
        };
        service::create_key(s.store.as_ref(), alice.id, Actor::User(alice.id), spec, 1_000 + i).await.unwrap();
    }
    let c = signed_in(&s, "alice@example.com").await;
    let (_, first) = page(&c, &format!("{}/keys", s.base)).await;
    assert_eq!(first.matches("data-key-id=").count(), 25);
    assert!(first.contains("1030 keys") && first.contains("rotation due") && first.contains("svc1029-"));
    // Follow "Next page" to the end: every key appears exactly once.
    let mut seen = std::collections::HashSet::new();
    let mut html = first;
    loop {
        for part in html.split("data-key-id=\"").skip(1) {
            assert!(seen.insert(part[..16].to_owned()), "a key appeared twice");
        }
        let Some(at) = html.find("rel=\"next\"") else { break };
        let href_start = html[..at].rfind("href=\"").unwrap() + 6;
        let href = unescape(html[href_start..].split('"').next().unwrap());
        html = page(&c, &format!("{}{href}", s.base)).await.1;
    }
    assert_eq!(seen.len(), 1_030);
    let (_, found) = page(&c, &format!("{}/keys?q=svc100", s.base)).await;
    assert_eq!(found.matches("data-key-id=").count(), 10);
    assert!(found.contains("10 keys matching"));
    let id = CredentialId::parse(&value_after(&found.replace("data-key-id=\"", "value=\""), "<tr ")).unwrap();
    assert!(s.store.get_key(alice.id, &id).await.unwrap().is_some());
}

#[tokio::test]
async fn a_second_delete_says_already_deleted_and_keys_made_by_keys_say_so() {
    let s = start().await;
    let alice = user(s.store.as_ref(), "alice@example.com", false).await;
    let c = signed_in(&s, "alice@example.com").await;
    // A management key makes a key through the API: the list and the delete page say which key made it.
    let scopes = ["keys:manage".to_owned()];
    let spec = KeySpec {
        rate_limit: None,
        quota: None,
        once: None,
        name: "robot",
        scopes: &scopes,
        expires_at: None,
        by_key: None,
        ip_allowlist: &[],
    };
    let now = atna_server::clock::now();
    let (_, robot) = service::create_key(s.store.as_ref(), alice.id, Actor::User(alice.id), spec, now).await.unwrap();
    let made = Client::new()
        .post(format!("{}/v1/keys", s.base))
        .bearer_auth(robot.expose())
        .json(&serde_json::json!({"name": "made-by-robot"}))
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), StatusCode::CREATED);
    let child = made.json::<serde_json::Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let robot_id = &robot.expose()[5..21];
    let (_, list) = page(&c, &format!("{}/keys", s.base)).await;
    assert!(list.contains(&format!("created by key <code>{robot_id}</code>")), "{list}");
    let (_, confirm) = page(&c, &format!("{}/keys/{child}/delete", s.base)).await;
    assert!(confirm.contains(&format!("by key <code>{robot_id}</code>")));

    // The confirmation sent twice (a double click, a second tab): the second answer says it is already done.
    let form = [("csrf", csrf(&confirm))];
    let first = c.post(format!("{}/keys/{child}/delete", s.base)).form(&form).send().await.unwrap();
    assert_eq!(first.status(), StatusCode::SEE_OTHER);
    let again = c.post(format!("{}/keys/{child}/delete", s.base)).form(&form).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::GONE);
    assert!(again.text().await.unwrap().contains("already deleted"));
}

/// "More settings" › "Allowed IP addresses": an optional field of the Generate form. A bad entry is shown inline with
/// what was typed kept (and the section open); a good list is shown compactly in the list and whole on the delete
/// page, and the key works only from those addresses.
#[tokio::test]
async fn the_form_sets_an_ip_allowlist_shown_in_the_list_and_on_the_delete_page() {
    let s = start().await;
    user(s.store.as_ref(), "alice@example.com", false).await;
    let c = signed_in(&s, "alice@example.com").await;
    let (_, html) = page(&c, &format!("{}/keys/new", s.base)).await;
    assert!(html.contains("<summary>More settings</summary>") && html.contains("Allowed IP addresses"));
    assert!(tag_with_id(&html, "ip_allowlist").starts_with("<textarea"), "a labelled field");
    let send = |allow: &'static str, html: String| {
        let form = [
            ("csrf", csrf(&html)),
            ("nonce", value_after(&html, "name=\"nonce\"")),
            ("name", "fenced".into()),
            ("ip_allowlist", allow.into()),
        ];
        c.post(format!("{}/keys/new", s.base)).form(&form).send()
    };
    let r = send("203.0.113.0/24\nnot-an-address", html).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = r.text().await.unwrap();
    assert!(html.contains("`not-an-address` is not an IP address"), "the bad entry is named inline");
    assert!(html.contains("203.0.113.0/24\nnot-an-address</textarea>"), "what was typed is kept");
    assert!(html.contains("more-settings\" open"), "the section with the error is open");
    assert!(tag_with_id(&html, "ip_allowlist").contains("aria-invalid=\"true\""), "the field is marked invalid");
    assert!(!tag_with_id(&html, "name").contains("aria-invalid"), "the name is not");
    let r = send("127.0.0.2, 2001:db8::/32\n", html).await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let html = r.text().await.unwrap();
    let id = value_after(&html, "id=\"credential-id\"");
    let secret = value_after(&html, "id=\"credential-secret\"");
    assert!(html.contains("127.0.0.2/32, 2001:db8::/32"), "the new key's page says where it works");
    assert_eq!(whoami(&s.base, &secret).await, StatusCode::FORBIDDEN, "from 127.0.0.1: outside");
    let inside = Client::builder().local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap()).build().unwrap();
    let r = inside.get(format!("{}/v1/whoami", s.base)).bearer_auth(&secret).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "from 127.0.0.2: inside");

    let (_, list) = page(&c, &format!("{}/keys", s.base)).await;
    assert!(list.contains("only from <code>127.0.0.2/32 +1</code>"), "compact in the list: {list}");
    let (_, confirm) = page(&c, &format!("{}/keys/{id}/delete", s.base)).await;
    assert!(confirm.contains("<code>127.0.0.2/32, 2001:db8::/32</code>"), "whole on the delete page: {confirm}");

    // Ignoring the field keeps today's behaviour: a key that works from anywhere.
    let r = save_and_add(&c, &s.base, "open").await;
    let secret = value_after(&r.text().await.unwrap(), "id=\"credential-secret\"");
    assert_eq!(whoami(&s.base, &secret).await, StatusCode::OK);
}

/// "More settings" › "Rate limit" and "Usage quota": a bad value is shown inline on its field with what was typed
/// kept; good ones are shown on the new key's page, in the list ("1,234 of 10,000 left") and on the delete page, and
/// enforced.
#[tokio::test]
async fn the_form_sets_a_rate_limit_and_a_quota_shown_wherever_the_key_is() {
    let s = start().await;
    user(s.store.as_ref(), "alice@example.com", false).await;
    let c = signed_in(&s, "alice@example.com").await;
    let (_, html) = page(&c, &format!("{}/keys/new", s.base)).await;
    assert!(tag_with_id(&html, "rate_limit").starts_with("<input") && html.contains("<label for=\"rate_limit\">"));
    assert!(tag_with_id(&html, "quota").starts_with("<input") && html.contains("<label for=\"quota\">"));
    let send = |rate: &'static str, quota: &'static str, html: String| {
        let form = [
            ("csrf", csrf(&html)),
            ("nonce", value_after(&html, "name=\"nonce\"")),
            ("name", "metered".into()),
            ("rate_limit", rate.into()),
            ("rate_period", "hour".into()),
            ("quota", quota.into()),
            ("quota_refill", "daily".into()),
        ];
        c.post(format!("{}/keys/new", s.base)).form(&form).send()
    };
    let r = send("0", "10,000", html).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = r.text().await.unwrap();
    assert!(html.contains("Invalid rate limit"), "the reason is shown");
    assert!(tag_with_id(&html, "rate_limit").contains("aria-invalid=\"true\""), "the field is marked invalid");
    assert!(!tag_with_id(&html, "name").contains("aria-invalid"), "the name is not");
    assert!(tag_with_id(&html, "quota").contains("value=\"10,000\""), "what was typed is kept");
    assert!(html.contains("more-settings\" open"), "the section is open");
    let r = send("2", "10,000", html).await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let html = r.text().await.unwrap();
    let id = value_after(&html, "id=\"credential-id\"");
    let secret = value_after(&html, "id=\"credential-secret\"");
    assert!(html.contains("2 requests per hour") && html.contains("10,000 of 10,000 left, refilled daily"), "{html}");
    assert_eq!(whoami(&s.base, &secret).await, StatusCode::OK);
    assert_eq!(whoami(&s.base, &secret).await, StatusCode::OK);
    assert_eq!(whoami(&s.base, &secret).await, StatusCode::TOO_MANY_REQUESTS);
    let (_, list) = page(&c, &format!("{}/keys", s.base)).await;
    assert!(list.contains("at most 2 requests per hour"), "{list}");
    assert!(list.contains("9,998 of 10,000 left, refilled daily"), "uses counted in memory are shown: {list}");
    let (_, confirm) = page(&c, &format!("{}/keys/{id}/delete", s.base)).await;
    assert!(confirm.contains("2 requests per hour") && confirm.contains("9,998 of 10,000 left"), "{confirm}");
}
