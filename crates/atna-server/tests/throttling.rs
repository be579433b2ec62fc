//! Sign-in and password-change throttling over real HTTP: strangers failing for an account never keep its owner out,
//! guessing is still held back per account and network, per network, and per account (spaced out), and the Account
//! page's current-password check is throttled too. Client addresses come from `X-Forwarded-For`, which the server
//! believes because it is told it sits behind a proxy.

mod common;

use std::sync::Arc;

use atna_domain::{Email, Password, PasswordHash};
use atna_server::{App, Settings};
use atna_store::{NewUser, Store};
use reqwest::header::{RETRY_AFTER, SET_COOKIE};
use reqwest::{redirect, Client, Response, StatusCode};

const PW: &str = "correct horse battery";

struct Server {
    base: String,
    _store: Arc<dyn Store>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start() -> Server {
    let store = common::fresh_store().await;
    let settings =
        Settings { listen: "127.0.0.1:0".parse().unwrap(), trust_forwarded_for: true, ..Settings::default() };
    let app = App::build(settings, store.clone()).await.unwrap();
    let base = format!("http://{}", app.local_addr());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run(async move {
        let _ = rx.await;
    }));
    for email in ["alice@example.com", "bob@example.com"] {
        store
            .create_user(NewUser {
                email: Email::parse(email).unwrap(),
                password_hash: PasswordHash::hash(&Password::new(PW.into()).unwrap()),
                is_admin: false,
                created_at: atna_server::clock::now(),
            })
            .await
            .unwrap();
    }
    Server { base, _store: store, _stop: tx }
}

fn browser() -> Client {
    Client::builder().cookie_store(true).redirect(redirect::Policy::none()).build().unwrap()
}

/// The `value` of the first element after `marker`.
fn value_after(html: &str, marker: &str) -> String {
    let at = html.find(marker).unwrap_or_else(|| panic!("{marker} not in page:\n{html}"));
    let rest = &html[at..];
    let v = &rest[rest.find("value=\"").unwrap() + 7..];
    v[..v.find('"').unwrap()].to_owned()
}

/// Signs in with browser `c` from client address `from`.
async fn sign_in(c: &Client, base: &str, from: &str, email: &str, password: &str) -> Response {
    let html = c.get(format!("{base}/login")).header("x-forwarded-for", from).send().await.unwrap();
    let csrf = value_after(&html.text().await.unwrap(), "name=\"csrf\"");
    let form = [("csrf", csrf.as_str()), ("email", email), ("password", password)];
    c.post(format!("{base}/login")).header("x-forwarded-for", from).form(&form).send().await.unwrap()
}

async fn status(c: &Client, base: &str, from: &str, email: &str, password: &str) -> StatusCode {
    sign_in(c, base, from, email, password).await.status()
}

/// Signs browser `c` out; it keeps its other cookies (the device cookie among them).
async fn sign_out(c: &Client, base: &str) {
    let html = c.get(format!("{base}/account")).send().await.unwrap().text().await.unwrap();
    let csrf = value_after(&html, "name=\"csrf\"");
    let r = c.post(format!("{base}/logout")).form(&[("csrf", csrf)]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
}

fn retry_after(r: &Response) -> u64 {
    r.headers().get(RETRY_AFTER).expect("a 429 says when to retry").to_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn strangers_failing_for_an_account_never_keep_its_owner_out() {
    let s = start().await;
    // The owner signed in from this browser before: it keeps a long-lived device cookie.
    let owner = browser();
    let r = sign_in(&owner, &s.base, "198.51.100.1", "alice@example.com", PW).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let device = r
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("atna_device="));
    let device = device.expect("a device cookie");
    assert!(device.contains("HttpOnly") && device.contains("SameSite=Lax") && device.contains("Max-Age=31536000"));
    sign_out(&owner, &s.base).await;

    // An attacker fails five times from one address: that address is refused for the account, even with the
    // right password, for the rest of the 15 minutes.
    let attacker = browser();
    for _ in 0..5 {
        assert_eq!(status(&attacker, &s.base, "203.0.113.7", "alice@example.com", "guess").await, 401);
    }
    let r = sign_in(&attacker, &s.base, "203.0.113.7", "alice@example.com", PW).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!((800..=900).contains(&retry_after(&r)), "about 15 minutes");
    assert!(r.text().await.unwrap().contains("Too many failed sign-ins; try again in 15 minutes."));

    // The owner, on a new browser elsewhere, still gets in.
    assert_eq!(status(&browser(), &s.base, "198.51.100.1", "alice@example.com", PW).await, 303);

    // Spread over many addresses, the attacker's failures are not locked but spaced out: after ten in a day each
    // further one waits 1 s, 2 s, 4 s … after the newest, so one of these soon gets a 429.
    let mut failures = 5;
    let refused = loop {
        assert!(failures < 40, "the per-account count never held the attacker back");
        let r = sign_in(&browser(), &s.base, &format!("192.0.2.{failures}"), "alice@example.com", "guess").await;
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            break r;
        }
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        failures += 1;
    };
    assert!(failures >= 10, "ten failures a day are free, but only {failures} got through");
    assert!((1..=900).contains(&retry_after(&refused)));
    assert!(refused.text().await.unwrap().contains("Too many failed sign-ins; try again in"));

    // The owner's browser gets in even from the attacker's own address, whose count for the account is used up.
    assert_eq!(status(&owner, &s.base, "203.0.113.7", "alice@example.com", PW).await, 303);
    sign_out(&owner, &s.base).await;
    // The cookie belongs to alice: for bob the same browser counts like any other.
    for _ in 0..5 {
        assert_eq!(status(&owner, &s.base, "203.0.113.7", "bob@example.com", "guess").await, 401);
    }
    assert_eq!(status(&owner, &s.base, "203.0.113.7", "bob@example.com", PW).await, 429);
}

#[tokio::test]
async fn one_network_is_blocked_across_accounts_and_ipv6_counts_by_64() {
    let s = start().await;
    let c = browser();
    // Twenty failures from one address, four per account (under the per-account-and-address five).
    for i in 0..20 {
        let account = format!("nobody{}@example.com", i / 4);
        assert_eq!(status(&c, &s.base, "203.0.113.7", &account, "guess").await, 401);
    }
    let r = sign_in(&c, &s.base, "203.0.113.7", "bob@example.com", PW).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "the address is blocked for every account");
    assert!(retry_after(&r) > 800);
    assert_eq!(status(&browser(), &s.base, "203.0.113.8", "bob@example.com", PW).await, 303, "the next address is not");

    // IPv6: the whole /64 is one network, whichever addresses in it the failures come from.
    for i in 0..20 {
        let from = format!("2001:db8:1:2::{:x}", i + 1);
        assert_eq!(status(&c, &s.base, &from, &format!("v6-{}@example.com", i / 4), "guess").await, 401);
    }
    assert_eq!(status(&c, &s.base, "2001:db8:1:2:ffff::1", "bob@example.com", PW).await, 429);
    assert_eq!(status(&browser(), &s.base, "2001:db8:1:3::1", "bob@example.com", PW).await, 303, "the next /64 is not");
}

/// A browser signed in as alice, and the Account page's CSRF token.
async fn signed_in(s: &Server) -> (Client, String) {
    let c = browser();
    assert_eq!(status(&c, &s.base, "198.51.100.1", "alice@example.com", PW).await, 303);
    let html = c.get(format!("{}/account", s.base)).send().await.unwrap().text().await.unwrap();
    let csrf = value_after(&html, "name=\"csrf\"");
    (c, csrf)
}

async fn change_password(c: &Client, base: &str, csrf: &str, current: &str) -> Response {
    let form = [("csrf", csrf), ("current", current), ("new", "new password 1"), ("confirm", "new password 1")];
    c.post(format!("{base}/account/password")).form(&form).send().await.unwrap()
}

#[tokio::test]
async fn the_current_password_is_no_unthrottled_oracle() {
    let s = start().await;
    let (c, csrf) = signed_in(&s).await;
    for _ in 0..5 {
        assert_eq!(change_password(&c, &s.base, &csrf, "guess").await.status(), 422);
    }
    let r = change_password(&c, &s.base, &csrf, "guess").await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!((800..=900).contains(&retry_after(&r)));
    assert!(r.text().await.unwrap().contains("Too many wrong current passwords; try again in 15 minutes."));
    // The right password is refused too: it is not even checked until the wait is over.
    let r = change_password(&c, &s.base, &csrf, PW).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    // Still the old password: sign-in with it works, with the new one it does not.
    assert_eq!(status(&browser(), &s.base, "198.51.100.2", "alice@example.com", "new password 1").await, 401);
    assert_eq!(status(&browser(), &s.base, "198.51.100.2", "alice@example.com", PW).await, 303);
}

#[tokio::test]
async fn concurrent_current_password_guesses_by_one_user_are_refused_not_queued() {
    let s = start().await;
    let (c, csrf) = signed_in(&s).await;
    let guesses = (0..5).map(|_| change_password(&c, &s.base, &csrf, "guess"));
    let answers = futures::future::join_all(guesses).await;
    let mut busy = 0;
    for r in answers {
        match r.status() {
            StatusCode::UNPROCESSABLE_ENTITY => {}
            StatusCode::TOO_MANY_REQUESTS => {
                assert!(retry_after(&r) >= 1);
                busy += usize::from(r.text().await.unwrap().contains("Another password change of yours"));
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(busy > 0, "a second check of the same user's password while one runs is refused at once");
    // The user's slot is free again once the checks end: the right password is checked (and accepted).
    let r = change_password(&c, &s.base, &csrf, PW).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "{}", r.text().await.unwrap());
}
