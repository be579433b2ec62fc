//! The store conformance suite: behaviour every backend must show, written once against the trait.
//!
//! A backend runs it with [`conformance_tests!`](crate::conformance_tests), giving an async closure that returns a
//! fresh, empty, migrated store (or `None` to skip, e.g. when no PostgreSQL server is configured).

use atna_domain::{
    CredentialId, Email, GeneratedKey, KeyName, KeyPrefix, KeyStatus, Password, PasswordHash, Scopes, UserId,
};

use crate::*;

mod notify;
pub use notify::*;

/// Generates one `#[tokio::test]` per conformance check.
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::conformance_tests!(@each $make;
            users_are_unique_by_email, disabling_a_user_is_published, keys_round_trip,
            names_are_unique_among_live_keys, owners_never_see_each_others_keys, listing_pages_newest_first,
            searching_by_name_is_literal_substring_and_ascii_case_blind,
            a_search_pages_through_matches_deep_in_the_list,
            revocation_is_durable_and_published, usage_adds_up_and_latest_wins, sessions_expire_and_end,
            usage_buckets_add_up_by_hour_and_day, usage_buckets_are_pruned_by_age,
            audit_survives_the_key, pruning_drops_old_changes_and_expired_sessions,
            sign_in_throttling_counts_before_judging_and_forgives_success, backoff_throttling_spaces_attempts_out,
            device_tokens_belong_to_one_user_until_they_expire, a_form_nonce_makes_one_key,
            setup_makes_one_first_admin, keys_remember_the_key_that_made_them,
            setup_links_expire_and_a_restart_revokes_its_own, limits_round_trip,
            quotas_are_taken_atomically_and_refilled, rate_limit_uses_are_shared_between_nodes,
            reminders_are_recorded_once_and_digested_once,
            urgent_reminders_go_to_the_outbox_at_once, outbox_claims_are_exclusive_and_leases_pass_on,
            webhooks_are_per_user_and_per_installation, the_scan_pages_through_live_keys_of_enabled_users,
            key_prefixes_are_recorded_once_and_changed_audited,
            leak_reports_act_once_and_replays_change_nothing, auth_records_are_read_in_batches,
            rolling_links_both_keys_and_ends_the_old_one,
            rolling_is_once_and_all_or_nothing, editing_a_key_is_published_and_audited,
            bulk_revocation_takes_exactly_what_matches, audit_pages_filter_and_forget_old_failed_sign_ins);
        $crate::conformance_tests!(@pair $make; export_import_round_trips);
    };
    (@each $make:expr; $($name:ident),*) => {
        $(
            #[tokio::test]
            async fn $name() {
                let Some(store) = ($make)().await else { return };
                $crate::conformance::$name(&store).await;
            }
        )*
    };
    // Checks that need two independent fresh stores (moving data from one to the other).
    (@pair $make:expr; $($name:ident),*) => {
        $(
            #[tokio::test]
            async fn $name() {
                let Some(from) = ($make)().await else { return };
                let Some(to) = ($make)().await else { return };
                $crate::conformance::$name(&from, &to).await;
            }
        )*
    };
}

const T0: i64 = 1_780_000_000_000;

async fn user(s: &dyn Store, email: &str) -> User {
    s.create_user(NewUser {
        email: Email::parse(email).unwrap(),
        // A cheap stand-in: the store only keeps the string.
        password_hash: PasswordHash::from_stored(format!("hash-of-{email}")),
        is_admin: false,
        created_at: T0,
    })
    .await
    .unwrap()
}

fn new_key(owner: UserId, name: &str, created_at: i64) -> (NewKey, GeneratedKey) {
    let g = GeneratedKey::generate();
    let k = NewKey {
        form_nonce: None,
        created_by_key: None,
        id: g.id,
        owner,
        name: KeyName::parse(name).unwrap(),
        hash: g.hash,
        scopes: Scopes::parse(&["keys:manage", "billing:read"]).unwrap(),
        created_at,
        expires_at: Some(created_at + 1000),
        actor: Actor::User(owner).into(),
        rolled_from: None,
        rules: KeyRules::default(),
    };
    (k, g)
}

pub async fn users_are_unique_by_email(s: &dyn Store) {
    assert_eq!(s.count_users().await.unwrap(), 0);
    let a = user(s, "alice@example.com").await;
    assert!(matches!(
        s.create_user(NewUser {
            email: Email::parse("ALICE@example.com").unwrap(),
            password_hash: PasswordHash::from_stored("x".into()),
            is_admin: true,
            created_at: T0
        })
        .await,
        Err(StoreError::Conflict(_))
    ));
    let b = user(s, "bob@example.com").await;
    assert_ne!(a.id, b.id);
    assert_eq!(s.count_users().await.unwrap(), 2);
    let found = s.user_by_email(&a.email).await.unwrap().unwrap();
    assert_eq!((found.id, found.is_admin, found.disabled), (a.id, false, false));
    assert_eq!(s.user_by_id(b.id).await.unwrap().unwrap().email.as_str(), "bob@example.com");
    assert!(s.user_by_id(UserId(999_999)).await.unwrap().is_none());
    let emails: Vec<String> = s.list_users().await.unwrap().into_iter().map(|u| u.email.to_string()).collect();
    assert_eq!(emails, ["alice@example.com", "bob@example.com"]);
    let h = PasswordHash::hash(&Password::new("new password".into()).unwrap());
    assert!(s.set_password(a.id, &h).await.unwrap());
    assert_eq!(s.user_by_id(a.id).await.unwrap().unwrap().password_hash, h);
    assert!(!s.set_password(UserId(999_999), &h).await.unwrap());
}

pub async fn disabling_a_user_is_published(s: &dyn Store) {
    let a = user(s, "alice@example.com").await;
    let (k, _) = new_key(a.id, "k", T0);
    s.insert_key(k.clone()).await.unwrap();
    let before = s.latest_change().await.unwrap();
    s.create_session(session(a.id, [1; 32], T0)).await.unwrap();
    assert!(s.set_user_disabled(a.id, true, T0).await.unwrap());
    assert!(s.user_by_id(a.id).await.unwrap().unwrap().disabled);
    assert!(s.auth_record(&k.id).await.unwrap().unwrap().owner_disabled);
    assert!(s.session(&[1; 32], T0).await.unwrap().is_none(), "disabling ends sessions");
    let changes = s.changes_since(before, 100).await.unwrap();
    assert_eq!(changes.iter().map(|c| c.what.clone()).collect::<Vec<_>>(), [ChangeKind::User(a.id)]);
    assert!(s.set_user_disabled(a.id, false, T0).await.unwrap());
    assert!(!s.auth_record(&k.id).await.unwrap().unwrap().owner_disabled);
    assert!(!s.set_user_disabled(UserId(999_999), true, T0).await.unwrap());
}

pub async fn keys_round_trip(s: &dyn Store) {
    let a = user(s, "alice@example.com").await;
    let (k, g) = new_key(a.id, "billing-26_11_2026-14_05", T0);
    let rec = s.insert_key(k.clone()).await.unwrap();
    assert_eq!(rec.id, k.id);
    assert_eq!(rec.status, KeyStatus::Active);
    assert_eq!((rec.last_used_at, rec.use_count), (None, 0));
    assert_eq!(s.get_key(a.id, &k.id).await.unwrap(), Some(rec.clone()));
    let auth = s.auth_record(&k.id).await.unwrap().unwrap();
    assert!(auth.hash.matches(&g.hash));
    assert_eq!(auth.key, rec);
    assert_eq!(auth.owner_email, a.email);
    assert_eq!(auth.key.scopes, k.scopes);
    assert_eq!(auth.key.expires_at, Some(T0 + 1000));
    assert!(s.auth_record(&CredentialId::generate()).await.unwrap().is_none());
    assert_eq!(s.count_keys(a.id, None).await.unwrap(), 1);
    assert!(rec.rules.ip_allowlist.is_empty(), "no allowlist unless one is given");

    // An IP allowlist reads back parsed, in the order given, on every path that reads keys.
    let (mut k, _) = new_key(a.id, "fenced", T0 + 1);
    k.rules.ip_allowlist = atna_domain::IpAllowlist::parse(&["203.0.113.0/24", "2001:db8::/32"]).unwrap();
    let rec = s.insert_key(k.clone()).await.unwrap();
    assert_eq!(rec.rules, k.rules);
    assert_eq!(s.get_key(a.id, &k.id).await.unwrap().unwrap().rules, k.rules);
    assert_eq!(s.auth_record(&k.id).await.unwrap().unwrap().key.rules, k.rules);
    let listed = s.list_keys(a.id, &KeyQuery { limit: 10, ..Default::default() }).await.unwrap();
    assert_eq!(listed.iter().find(|r| r.id == k.id).unwrap().rules, k.rules);
}

pub async fn names_are_unique_among_live_keys(s: &dyn Store) {
    let a = user(s, "alice@example.com").await;
    let b = user(s, "bob@example.com").await;
    let (k1, _) = new_key(a.id, "crm", T0);
    s.insert_key(k1.clone()).await.unwrap();
    let (k2, _) = new_key(a.id, "crm", T0 + 1);
    assert!(matches!(s.insert_key(k2.clone()).await, Err(StoreError::Conflict(_))));
    assert!(s.auth_record(&k2.id).await.unwrap().is_none(), "nothing of the refused key was stored");
    let (k3, _) = new_key(b.id, "crm", T0);
    s.insert_key(k3).await.unwrap();
    // Once deleted, the name is free again.
    s.revoke_key(Some(a.id), &k1.id, &Actor::User(a.id).into(), T0 + 2).await.unwrap().unwrap();
    s.insert_key(k2).await.unwrap();
}

pub async fn owners_never_see_each_others_keys(s: &dyn Store) {
    let a = user(s, "alice@example.com").await;
    let b = user(s, "bob@example.com").await;
    let (k, _) = new_key(a.id, "alice-key", T0);
    s.insert_key(k.clone()).await.unwrap();
    assert!(s.get_key(b.id, &k.id).await.unwrap().is_none());
    assert!(s.list_keys(b.id, &KeyQuery { limit: 10, ..Default::default() }).await.unwrap().is_empty());
    assert!(s.revoke_key(Some(b.id), &k.id, &Actor::User(b.id).into(), T0).await.unwrap().is_none());
    assert_eq!(s.get_key(a.id, &k.id).await.unwrap().unwrap().status, KeyStatus::Active);
    assert_eq!(s.auth_record(&k.id).await.unwrap().unwrap().key.status, KeyStatus::Active);
}

pub async fn listing_pages_newest_first(s: &dyn Store) {
    let a = user(s, "alice@example.com").await;
    let mut ids = Vec::new();
    for i in 0..7 {
        // Two keys share each timestamp, so the ID must break ties.
        let (k, _) = new_key(a.id, &format!("svc-{i}"), T0 + i / 2);
        ids.push((k.created_at, k.id));
        s.insert_key(k).await.unwrap();
    }
    ids.sort();
    ids.reverse();
    let mut seen = Vec::new();
    let mut q = KeyQuery { limit: 3, ..Default::default() };
    loop {
        let page = s.list_keys(a.id, &q).await.unwrap();
        assert!(page.len() <= 3);
        seen.extend(page.iter().map(|k| (k.created_at, k.id)));
        match page.last() {
            Some(last) if page.len() == 3 => q.after = Some((last.created_at, last.id)),
            _ => break,
        }
    }
    assert_eq!(seen, ids);
    let q = KeyQuery { limit: 10, search: Some("VC-3".into()), ..Default::default() };
    let found = s.list_keys(a.id, &q).await.unwrap();
    assert_eq!(found.iter().map(|k| k.name.as_str()).collect::<Vec<_>>(), ["svc-3"]);
    assert_eq!(s.count_keys(a.id, Some("svc")).await.unwrap(), 7);
    assert_eq!(s.count_keys(a.id, Some("%")).await.unwrap(), 0, "search is literal, not a LIKE pattern");
    assert_eq!(s.count_keys(a.id, Some("svc_3")).await.unwrap(), 0, "`_` is not a wildcard either");
    assert_eq!(s.count_keys(a.id, Some("c\\")).await.unwrap(), 0, "nor is a backslash an escape");
    assert_eq!(s.count_keys_upto(a.id, None, 1000).await.unwrap(), 7, "under the cap: the exact count");
    assert_eq!(s.count_keys_upto(a.id, None, 5).await.unwrap(), 5, "over it: the cap");
    assert_eq!(s.count_keys_upto(a.id, Some("VC-3"), 5).await.unwrap(), 1);
    assert_eq!(s.count_keys_upto(a.id, Some("%"), 5).await.unwrap(), 0, "search is literal here too");
    assert_eq!(s.count_keys_upto(a.id, None, 0).await.unwrap(), 0);
}

/// The names a search finds, in listing order.
async fn found(s: &dyn Store, owner: UserId, search: &str) -> Vec<String> {
    let q = KeyQuery { limit: 100, search: Some(search.into()), ..Default::default() };
    s.list_keys(owner, &q).await.unwrap().into_iter().map(|k| k.name.as_str().to_owned()).collect()
}

/// Search semantics, the same on every backend: a substring, literal (`%`, `_`, `\` are characters), case-blind for
/// ASCII letters only; searches of one or two characters (shorter than any trigram) work too.
pub async fn searching_by_name_is_literal_substring_and_ascii_case_blind(s: &dyn Store) {
    let a = user(s, "alice@example.com").await;
    let names = ["Clé-Prod", "ÉTÉ-key", "straße", "100%-off", "a_b", "axb", "back\\slash", "Zed"];
    for (i, name) in names.iter().enumerate() {
        s.insert_key(new_key(a.id, name, T0 + i as i64).0).await.unwrap();
    }
    assert_eq!(found(s, a.id, "clé-prod").await, ["Clé-Prod"], "ASCII letters of either case");
    assert_eq!(found(s, a.id, "tÉ-K").await, ["ÉTÉ-key"], "non-ASCII letters as written");
    assert!(found(s, a.id, "été").await.is_empty(), "non-ASCII letters are not case-folded (on no backend)");
    assert_eq!(found(s, a.id, "STRASSE").await, Vec::<String>::new(), "no Unicode folding either");
    assert_eq!(found(s, a.id, "raße").await, ["straße"]);
    assert_eq!(found(s, a.id, "0%").await, ["100%-off"], "`%` is literal");
    assert_eq!(found(s, a.id, "a_b").await, ["a_b"], "`_` is literal");
    assert_eq!(found(s, a.id, "_").await, ["a_b"]);
    assert_eq!(found(s, a.id, "%").await, ["100%-off"]);
    assert_eq!(found(s, a.id, "k\\s").await, ["back\\slash"], "a backslash is literal");
    assert_eq!(found(s, a.id, "z").await, ["Zed"], "one character");
    assert_eq!(found(s, a.id, "é").await, ["Clé-Prod"], "one non-ASCII character (`É` is another letter)");
    assert_eq!(found(s, a.id, "AX").await, ["axb"], "two characters");
    assert_eq!(found(s, a.id, "-").await, ["100%-off", "ÉTÉ-key", "Clé-Prod"]);
    assert!(found(s, a.id, "nomatch").await.is_empty());
    assert_eq!(s.count_keys(a.id, Some("É")).await.unwrap(), 1);
    assert_eq!(s.count_keys_upto(a.id, Some("B"), 10).await.unwrap(), 3, "a_b, axb, back\\slash");
}

/// A search matching a few keys among many older and newer ones: newest first, paged by the cursor, only the owner's
/// live keys (a revoked match and another owner's match are never listed).
pub async fn a_search_pages_through_matches_deep_in_the_list(s: &dyn Store) {
    let a = user(s, "alice@example.com").await;
    let b = user(s, "bob@example.com").await;
    let mut needles = Vec::new();
    for i in 0..400_i64 {
        let name = if i % 97 == 13 { format!("svc-Needle-{i}") } else { format!("svc-{i:04}") };
        let (k, _) = new_key(a.id, &name, T0 + i / 2);
        if name.contains("Needle") {
            needles.push((k.created_at, k.id, name));
        }
        s.insert_key(k).await.unwrap();
    }
    let (gone, _) = new_key(a.id, "svc-needle-revoked", T0 + 1000);
    s.insert_key(gone.clone()).await.unwrap();
    s.revoke_key(Some(a.id), &gone.id, &Actor::User(a.id).into(), T0 + 1001).await.unwrap().unwrap();
    s.insert_key(new_key(b.id, "svc-needle-of-bob", T0 + 1000).0).await.unwrap();
    needles.sort();
    needles.reverse();
    assert_eq!(needles.len(), 4);
    let mut seen = Vec::new();
    let mut q = KeyQuery { limit: 3, search: Some("NEEDLE".into()), ..Default::default() };
    loop {
        let page = s.list_keys(a.id, &q).await.unwrap();
        seen.extend(page.iter().map(|k| (k.created_at, k.id, k.name.as_str().to_owned())));
        match page.last() {
            Some(last) if page.len() == 3 => q.after = Some((last.created_at, last.id)),
            _ => break,
        }
    }
    assert_eq!(seen, needles);
    assert_eq!(s.count_keys(a.id, Some("needle")).await.unwrap(), 4);
    assert_eq!(s.count_keys_upto(a.id, Some("needle"), 2).await.unwrap(), 2);
    assert_eq!(found(s, b.id, "needle").await, ["svc-needle-of-bob"]);
}

pub async fn revocation_is_durable_and_published(s: &dyn Store) {
    let a = user(s, "alice@example.com").await;
    let (k, _) = new_key(a.id, "k", T0);
    let (other, _) = new_key(a.id, "other", T0);
    s.insert_key(k.clone()).await.unwrap();
    s.insert_key(other.clone()).await.unwrap();
    let before = s.latest_change().await.unwrap();
    let gone = s.revoke_key(Some(a.id), &k.id, &Actor::User(a.id).into(), T0 + 5).await.unwrap().unwrap();
    assert_eq!(gone.id, k.id);
    assert!(s.get_key(a.id, &k.id).await.unwrap().is_none());
    assert_eq!(s.auth_record(&k.id).await.unwrap().unwrap().key.status, KeyStatus::Revoked);
    assert!(s.revoke_key(Some(a.id), &k.id, &Actor::User(a.id).into(), T0 + 6).await.unwrap().is_none(), "only once");
    let changes = s.changes_since(before, 100).await.unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].what, ChangeKind::Key(k.id));
    assert!(changes[0].seq > before);
    assert_eq!(s.latest_change().await.unwrap(), changes[0].seq);
    // The operator may revoke any user's key.
    s.revoke_key(None, &other.id, &Actor::Operator.into(), T0 + 7).await.unwrap().unwrap();
    let changes = s.changes_since(before, 1).await.unwrap();
    assert_eq!(changes.len(), 1, "limit is honoured");
    assert_eq!(s.count_keys(a.id, None).await.unwrap(), 0);
}

pub async fn usage_adds_up_and_latest_wins(s: &dyn Store) {
    let a = user(s, "alice@example.com").await;
    let (k, _) = new_key(a.id, "k", T0);
    s.insert_key(k.clone()).await.unwrap();
    let u = |count, at, ip: &str| UsageUpdate { id: k.id, count, last_used_at: at, last_used_ip: Some(ip.into()) };
    s.record_usage(&[u(3, T0 + 10, "203.0.113.7")]).await.unwrap();
    // A batch from a node whose clock or flush is behind must not move last-used backwards.
    s.record_usage(&[u(2, T0 + 5, "198.51.100.1")]).await.unwrap();
    let unknown = UsageUpdate { id: CredentialId::generate(), count: 1, last_used_at: T0, last_used_ip: None };
    s.record_usage(&[unknown]).await.unwrap();
    let rec = s.get_key(a.id, &k.id).await.unwrap().unwrap();
    assert_eq!(rec.use_count, 5);
    assert_eq!(rec.last_used_at, Some(T0 + 10));
    assert_eq!(rec.last_used_ip.as_deref(), Some("203.0.113.7"));
    s.record_usage(&[u(1, T0 + 20, "198.51.100.1")]).await.unwrap();
    let rec = s.get_key(a.id, &k.id).await.unwrap().unwrap();
    assert_eq!(
        (rec.use_count, rec.last_used_at, rec.last_used_ip.as_deref()),
        (6, Some(T0 + 20), Some("198.51.100.1"))
    );
    s.record_usage(&[]).await.unwrap();
}

pub async fn usage_buckets_add_up_by_hour_and_day(s: &dyn Store) {
    use atna_domain::VerifyCode::{InsufficientScope, InvalidSecret, Valid};
    const H: i64 = 60 * 60 * 1000;
    let day = Granularity::Day.floor(T0);
    let a = user(s, "alice@example.com").await;
    let (k, _) = new_key(a.id, "k", T0);
    let (other, _) = new_key(a.id, "other", T0);
    s.insert_key(k.clone()).await.unwrap();
    s.insert_key(other.clone()).await.unwrap();
    let c = |id, hour, outcome, count| UsageCount { id, hour, outcome, count };
    // Two nodes flush the same buckets: the counts add up.
    s.record_usage_counts(&[c(k.id, day, Valid, 3), c(k.id, day, InvalidSecret, 1), c(other.id, day, Valid, 7)])
        .await
        .unwrap();
    s.record_usage_counts(&[c(k.id, day, Valid, 2), c(k.id, day + 5 * H, InsufficientScope, 4)]).await.unwrap();
    // The next day, and a refusal-only batch.
    s.record_usage_counts(&[c(k.id, day + 24 * H + H, Valid, 10)]).await.unwrap();
    s.record_usage_counts(&[]).await.unwrap();
    let row = |start, outcome: &str, count| UsageRow { start, outcome: outcome.into(), count };
    let hours = s.usage_buckets(&k.id, Granularity::Hour, day, day + 48 * H).await.unwrap();
    assert_eq!(
        hours,
        [
            row(day, "INVALID_SECRET", 1),
            row(day, "VALID", 5),
            row(day + 5 * H, "INSUFFICIENT_SCOPE", 4),
            row(day + 25 * H, "VALID", 10),
        ]
    );
    // `[from, to)`: the bucket starting at `to` is not included.
    assert_eq!(s.usage_buckets(&k.id, Granularity::Hour, day + H, day + 25 * H).await.unwrap().len(), 1);
    let days = s.usage_buckets(&k.id, Granularity::Day, day, day + 48 * H).await.unwrap();
    assert_eq!(
        days,
        [
            row(day, "INSUFFICIENT_SCOPE", 4),
            row(day, "INVALID_SECRET", 1),
            row(day, "VALID", 5),
            row(day + 24 * H, "VALID", 10),
        ]
    );
    // Sparklines: allowed requests per day for several keys in one query; refusals are not use.
    let mut spark = s.daily_allowed(&[k.id, other.id, CredentialId::generate()], day).await.unwrap();
    spark.sort_by_key(|(id, start, _)| (id.to_string(), *start));
    let mut want = vec![(k.id, day, 5), (k.id, day + 24 * H, 10), (other.id, day, 7)];
    want.sort_by_key(|(id, start, _)| (id.to_string(), *start));
    assert_eq!(spark, want);
    assert_eq!(s.daily_allowed(&[k.id], day + 24 * H).await.unwrap(), [(k.id, day + 24 * H, 10)]);
    assert!(s.daily_allowed(&[], day).await.unwrap().is_empty());
}

pub async fn usage_buckets_are_pruned_by_age(s: &dyn Store) {
    use atna_domain::VerifyCode::Valid;
    const H: i64 = 60 * 60 * 1000;
    let day = Granularity::Day.floor(T0);
    let a = user(s, "alice@example.com").await;
    let (k, _) = new_key(a.id, "k", T0);
    s.insert_key(k.clone()).await.unwrap();
    let c = |hour| UsageCount { id: k.id, hour, outcome: Valid, count: 1 };
    s.record_usage_counts(&[c(day), c(day + H), c(day + 24 * H)]).await.unwrap();
    // Hourly buckets before day + 1 h go; daily ones before day + 1 d go.
    assert_eq!(s.prune_usage(day + H, day + 24 * H).await.unwrap(), 2);
    let hours = s.usage_buckets(&k.id, Granularity::Hour, 0, i64::MAX).await.unwrap();
    assert_eq!(hours.iter().map(|r| r.start).collect::<Vec<_>>(), [day + H, day + 24 * H]);
    let days = s.usage_buckets(&k.id, Granularity::Day, 0, i64::MAX).await.unwrap();
    assert_eq!(days.iter().map(|r| (r.start, r.count)).collect::<Vec<_>>(), [(day + 24 * H, 1)]);
    assert_eq!(s.prune_usage(day + H, day + 24 * H).await.unwrap(), 0);
}

fn session(user: UserId, hash: [u8; 32], now: i64) -> NewSession {
    NewSession {
        token_hash: hash,
        user,
        csrf: "csrf-token".into(),
        created_at: now,
        idle_expires_at: now + 100,
        absolute_expires_at: now + 1000,
    }
}

pub async fn sessions_expire_and_end(s: &dyn Store) {
    let a = user(s, "alice@example.com").await;
    s.create_session(session(a.id, [1; 32], T0)).await.unwrap();
    s.create_session(session(a.id, [2; 32], T0)).await.unwrap();
    let got = s.session(&[1; 32], T0 + 50).await.unwrap().unwrap();
    assert_eq!((got.user.id, got.csrf.as_str()), (a.id, "csrf-token"));
    assert!(s.session(&[1; 32], T0 + 100).await.unwrap().is_none(), "idle timeout");
    s.touch_session(&[1; 32], T0 + 5000).await.unwrap();
    assert!(s.session(&[1; 32], T0 + 500).await.unwrap().is_some());
    assert!(s.session(&[1; 32], T0 + 1000).await.unwrap().is_none(), "absolute timeout");
    assert!(s.session(&[9; 32], T0).await.unwrap().is_none());
    s.delete_session(&[1; 32]).await.unwrap();
    assert!(s.session(&[1; 32], T0 + 50).await.unwrap().is_none());
    assert_eq!(s.delete_user_sessions(a.id).await.unwrap(), 1);
    assert!(s.session(&[2; 32], T0 + 50).await.unwrap().is_none());
}

pub async fn audit_survives_the_key(s: &dyn Store) {
    let a = user(s, "alice@example.com").await;
    let (k, _) = new_key(a.id, "audited", T0);
    s.insert_key(k.clone()).await.unwrap();
    s.revoke_key(None, &k.id, &Actor::Operator.into(), T0 + 1).await.unwrap().unwrap();
    let events = s.audit_events(a.id, 10).await.unwrap();
    let summary: Vec<_> = events.iter().map(|e| (e.action.as_str(), e.actor, e.key_id, e.at)).collect();
    assert_eq!(
        summary,
        [("key.deleted", Actor::Operator, Some(k.id), T0 + 1), ("key.created", Actor::User(a.id), Some(k.id), T0)]
    );
    assert_eq!(events[0].key_name.as_deref(), Some("audited"));
}

pub async fn keys_remember_the_key_that_made_them(s: &dyn Store) {
    let a = user(s, "alice@example.com").await;
    let (parent, _) = new_key(a.id, "parent", T0);
    s.insert_key(parent.clone()).await.unwrap();
    let (mut child, _) = new_key(a.id, "child", T0 + 1);
    child.created_by_key = Some(parent.id);
    child.actor = Actor::Key { user: a.id, key: parent.id }.into();
    assert_eq!(s.insert_key(child.clone()).await.unwrap().created_by_key, Some(parent.id));
    // Deleting the parent leaves the child, which still says where it came from.
    s.revoke_key(Some(a.id), &parent.id, &Actor::User(a.id).into(), T0 + 2).await.unwrap().unwrap();
    let got = s.get_key(a.id, &child.id).await.unwrap().unwrap();
    assert_eq!(got.created_by_key, Some(parent.id));
    assert_eq!(s.auth_record(&child.id).await.unwrap().unwrap().key.created_by_key, Some(parent.id));
    let listed = s.list_keys(a.id, &KeyQuery { limit: 10, ..Default::default() }).await.unwrap();
    assert_eq!(listed.iter().map(|k| (k.id, k.created_by_key)).collect::<Vec<_>>(), [(child.id, Some(parent.id))]);
    // The audit trail says the key acted, not the person in the dashboard.
    let events = s.audit_events(a.id, 10).await.unwrap();
    let created = events.iter().find(|e| e.action == "key.created" && e.key_id == Some(child.id)).unwrap();
    assert_eq!(created.actor, Actor::Key { user: a.id, key: parent.id });
    let by_hand = events.iter().find(|e| e.action == "key.created" && e.key_id == Some(parent.id)).unwrap();
    assert_eq!(by_hand.actor, Actor::User(a.id));
}

pub async fn export_import_round_trips(from: &dyn Store, to: &dyn Store) {
    // The source: an admin with a real argon2 hash, a disabled user, a user without keys; a live key with usage, a
    // deleted key whose name a live key reuses, a key of the disabled user; audit events by users and the operator.
    let password = Password::new("correct horse battery".into()).unwrap();
    let admin = from
        .create_user(NewUser {
            email: Email::parse("admin@example.com").unwrap(),
            password_hash: PasswordHash::hash(&password),
            is_admin: true,
            created_at: T0,
        })
        .await
        .unwrap();
    let bob = user(from, "bob@example.com").await;
    let carol = user(from, "carol@example.com").await;
    let (live, live_g) = new_key(admin.id, "crm", T0 + 1);
    let (gone, gone_g) = new_key(admin.id, "crm-old", T0 + 2);
    let (bobs, bobs_g) = new_key(bob.id, "bobs", T0 + 3);
    for k in [&live, &gone, &bobs] {
        from.insert_key(k.clone()).await.unwrap();
    }
    from.revoke_key(None, &gone.id, &Actor::Operator.into(), T0 + 4).await.unwrap().unwrap();
    let (mut reused, _) = new_key(admin.id, "crm-old", T0 + 5);
    // Made through the API by the live key: the export keeps which key made it and which key acted.
    reused.created_by_key = Some(live.id);
    reused.actor = Actor::Key { user: admin.id, key: live.id }.into();
    reused.rules.ip_allowlist = atna_domain::IpAllowlist::parse(&["198.51.100.0/24", "2001:db8::1"]).unwrap();
    reused.rules.rate_limit = Some(atna_domain::RateLimit::new(100, 60).unwrap());
    let refill = atna_domain::Refill::new(500, atna_domain::RefillInterval::Monthly).unwrap();
    reused.rules.quota = Some(atna_domain::Quota::new(400, Some(refill), T0 + 5).unwrap());
    from.insert_key(reused.clone()).await.unwrap();
    let usage = UsageUpdate { id: live.id, count: 7, last_used_at: T0 + 6, last_used_ip: Some("203.0.113.7".into()) };
    from.record_usage(&[usage]).await.unwrap();
    assert!(from.set_user_disabled(bob.id, true, T0 + 7).await.unwrap());
    from.create_session(session(admin.id, [3; 32], T0)).await.unwrap();
    from.init_key_prefix(&KeyPrefix::default(), T0).await.unwrap();
    from.set_key_prefix(&KeyPrefix::parse("acme").unwrap(), T0 + 8).await.unwrap();
    // The target's own first start recorded another prefix: the import replaces it with the installation's.
    to.init_key_prefix(&KeyPrefix::parse("other").unwrap(), T0).await.unwrap();

    let snap = from.export_all().await.unwrap();
    assert_eq!(snap.format, SNAPSHOT_FORMAT);
    snap.check().unwrap();
    assert_eq!(snap.users.iter().map(|u| u.id).collect::<Vec<_>>(), [admin.id.0, bob.id.0, carol.id.0]);
    let mut key_ids: Vec<String> = [&live, &gone, &bobs, &reused].iter().map(|k| k.id.to_string()).collect();
    key_ids.sort();
    assert_eq!(snap.keys.iter().map(|k| k.id.clone()).collect::<Vec<_>>(), key_ids, "deleted keys too, by ID");
    let exported_gone = snap.keys.iter().find(|k| k.id == gone.id.as_str()).unwrap();
    assert_eq!((exported_gone.status.as_str(), exported_gone.revoked_at), ("revoked", Some(T0 + 4)));
    assert_eq!(exported_gone.secret_hash, gone_g.hash.to_hex());
    assert_eq!(exported_gone.scopes, "billing:read keys:manage");
    let exported_reused = snap.keys.iter().find(|k| k.id == reused.id.as_str()).unwrap();
    assert_eq!(exported_reused.created_by_key.as_deref(), Some(live.id.as_str()));
    assert_eq!(exported_reused.ip_allowlist.as_deref(), Some("198.51.100.0/24 2001:db8::1/128"));
    assert_eq!(exported_gone.ip_allowlist, None);
    assert_eq!((exported_reused.rate_limit, exported_reused.rate_period_seconds), (Some(100), Some(60)));
    assert_eq!(exported_reused.limits().unwrap(), (reused.rules.rate_limit, reused.rules.quota));
    assert_eq!(exported_gone.limits().unwrap(), (None, None));
    let made_by_key = snap.audit_events.iter().find(|e| e.key_id.as_deref() == Some(reused.id.as_str())).unwrap();
    assert_eq!(made_by_key.actor_key_id.as_deref(), Some(live.id.as_str()));
    let prefixes: Vec<_> = snap.key_prefixes.iter().map(|p| (p.prefix.as_str(), p.current)).collect();
    assert_eq!(prefixes, [("acme", true), ("atna", false)]);
    let changed = snap.audit_events.iter().find(|e| e.action == "installation.key_prefix_changed").unwrap();
    assert_eq!(changed.detail.as_deref(), Some("atna -> acme"));
    let expected = ImportSummary { users: 3, keys: 4, revoked_keys: 1, audit_events: 6 };
    assert_eq!(snap.summary(), expected);

    // Refused whole, leaving the target empty: a wrong format, a key whose owner is missing.
    let mut wrong = snap.clone();
    wrong.format = "atna-export/99".into();
    assert!(matches!(to.import_all(&wrong).await, Err(StoreError::InvalidSnapshot(_))));
    let mut orphan = snap.clone();
    orphan.users.retain(|u| u.id != bob.id.0);
    assert!(matches!(to.import_all(&orphan).await, Err(StoreError::InvalidSnapshot(_))));
    assert_eq!(to.count_users().await.unwrap(), 0);

    assert_eq!(to.import_all(&snap).await.unwrap(), expected);

    // Everything reads back the same, IDs included.
    let again = to.export_all().await.unwrap();
    assert_eq!(again.users, snap.users);
    assert_eq!(again.keys, snap.keys);
    assert_eq!(again.audit_events, snap.audit_events);
    assert_eq!(again.key_prefixes, snap.key_prefixes);
    assert_eq!(to.key_prefixes().await.unwrap(), from.key_prefixes().await.unwrap());
    for id in [admin.id, bob.id, carol.id] {
        let (a, b) = (from.user_by_id(id).await.unwrap().unwrap(), to.user_by_id(id).await.unwrap().unwrap());
        assert_eq!(
            (a.email, a.password_hash, a.is_admin, a.disabled),
            (b.email, b.password_hash, b.is_admin, b.disabled)
        );
    }
    let moved_admin = to.user_by_email(&admin.email).await.unwrap().unwrap();
    assert!(moved_admin.password_hash.verify(&password), "people sign in with their old password");
    assert!(moved_admin.is_admin);
    assert!(to.user_by_id(bob.id).await.unwrap().unwrap().disabled);

    // Every key still verifies against its secret, and says what it said before.
    for (k, g) in [(&live, &live_g), (&gone, &gone_g), (&bobs, &bobs_g)] {
        let (a, b) = (from.auth_record(&k.id).await.unwrap().unwrap(), to.auth_record(&k.id).await.unwrap().unwrap());
        assert!(b.hash.matches(&g.hash), "the moved hash matches the secret");
        assert_eq!(b.key, a.key);
        assert_eq!((b.owner_email, b.owner_disabled), (a.owner_email, a.owner_disabled));
    }
    assert_eq!(to.auth_record(&gone.id).await.unwrap().unwrap().key.status, KeyStatus::Revoked);
    assert_eq!(to.auth_record(&reused.id).await.unwrap().unwrap().key.rules, reused.rules, "allowlists move");
    assert!(to.get_key(admin.id, &gone.id).await.unwrap().is_none(), "a deleted key stays deleted");
    assert!(to.auth_record(&bobs.id).await.unwrap().unwrap().owner_disabled);
    let moved = to.get_key(admin.id, &live.id).await.unwrap().unwrap();
    assert_eq!((moved.use_count, moved.last_used_at), (7, Some(T0 + 6)));
    assert_eq!(moved.last_used_ip.as_deref(), Some("203.0.113.7"));
    assert_eq!(to.count_keys(admin.id, None).await.unwrap(), 2);
    assert_eq!(to.audit_events(admin.id, 10).await.unwrap(), from.audit_events(admin.id, 10).await.unwrap());
    assert!(to.session(&[3; 32], T0).await.unwrap().is_none(), "sessions do not move");

    // The target carries on: new users get fresh IDs above the imported ones, names stay unique among live keys.
    let dave = user(to, "dave@example.com").await;
    assert!(dave.id.0 > carol.id.0, "new user {} collides with or sorts below imported IDs", dave.id);
    let (dup, _) = new_key(admin.id, "crm", T0 + 8);
    assert!(matches!(to.insert_key(dup).await, Err(StoreError::Conflict(_))));
    let (dk, _) = new_key(dave.id, "crm", T0 + 8);
    to.insert_key(dk).await.unwrap();

    // A second import is refused and changes nothing.
    let before = to.export_all().await.unwrap();
    assert!(matches!(to.import_all(&snap).await, Err(StoreError::NotEmpty)));
    let after = to.export_all().await.unwrap();
    assert_eq!((after.users, after.keys, after.audit_events), (before.users, before.keys, before.audit_events));
    // So is an import into the (non-empty) source.
    assert!(matches!(from.import_all(&snap).await, Err(StoreError::NotEmpty)));
}

pub async fn pruning_drops_old_changes_and_expired_sessions(s: &dyn Store) {
    let a = user(s, "alice@example.com").await;
    let (old, _) = new_key(a.id, "old", T0);
    let (new, _) = new_key(a.id, "new", T0);
    s.insert_key(old.clone()).await.unwrap();
    s.insert_key(new.clone()).await.unwrap();
    s.revoke_key(None, &old.id, &Actor::Operator.into(), T0 + 10).await.unwrap().unwrap();
    s.revoke_key(None, &new.id, &Actor::Operator.into(), T0 + 20).await.unwrap().unwrap();
    let session = |token: u8, idle: i64, absolute: i64| NewSession {
        token_hash: [token; 32],
        user: a.id,
        csrf: "c".into(),
        created_at: T0,
        idle_expires_at: idle,
        absolute_expires_at: absolute,
    };
    s.create_session(session(1, T0 + 100, T0 + 1000)).await.unwrap(); // idle expired at T0 + 100
    s.create_session(session(2, T0 + 1000, T0 + 100)).await.unwrap(); // absolutely expired at T0 + 100
    s.create_session(session(3, T0 + 1000, T0 + 1000)).await.unwrap(); // alive
    let latest = s.latest_change().await.unwrap();
    assert_eq!(s.throttle_begin(&[ThrottleRule::refuse("a:old", 5, 1000)], T0).await.unwrap(), None);
    assert_eq!(s.throttle_begin(&[ThrottleRule::refuse("a:new", 5, 1000)], T0 + 20).await.unwrap(), None);
    s.add_device_token(&[7; 32], a.id, T0 + 500).await.unwrap(); // expires at T0 + 500
    s.add_device_token(&[8; 32], a.id, T0 + 501).await.unwrap(); // alive

    let pruned = s.prune(T0 + 15, T0 + 500).await.unwrap();
    assert_eq!(pruned, Pruned { changes: 1, sessions: 2, sign_in_attempts: 1, device_tokens: 1, failed_sign_ins: 0 });
    assert_eq!(s.device_token_user(&[8; 32], T0 + 500).await.unwrap(), Some(a.id));
    let left = s.changes_since(0, 10).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].what, ChangeKind::Key(new.id));
    assert_eq!(s.latest_change().await.unwrap(), latest, "the newest entry stays");
    assert!(s.session(&[3; 32], T0 + 500).await.unwrap().is_some());
    assert!(s.session(&[1; 32], T0).await.unwrap().is_none(), "deleted, not just expired");
    // Deleted keys stay deleted: pruning the feed never brings a key back.
    assert_eq!(s.auth_record(&old.id).await.unwrap().unwrap().key.status, KeyStatus::Revoked);
    assert_eq!(s.prune(T0 + 15, T0 + 500).await.unwrap(), Pruned::default());
}

pub async fn sign_in_throttling_counts_before_judging_and_forgives_success(s: &dyn Store) {
    const WINDOW: i64 = 15 * 60 * 1000;
    let keys = |account: &'static str, ip: &'static str| {
        [ThrottleRule::refuse(account, 3, WINDOW), ThrottleRule::refuse(ip, 5, WINDOW)]
    };
    // Three attempts for one account are counted; the fourth is refused until the first leaves the window.
    for i in 0..3 {
        assert_eq!(s.throttle_begin(&keys("a:alice", "i:203.0.113.7"), T0 + i).await.unwrap(), None);
    }
    assert_eq!(s.throttle_begin(&keys("a:alice", "i:203.0.113.7"), T0 + 10).await.unwrap(), Some(WINDOW - 10));
    assert_eq!(s.throttle_begin(&keys("a:alice", "i:203.0.113.7"), T0 + WINDOW).await.unwrap(), None);
    // The address has T0 + 1, T0 + 2 and T0 + WINDOW in its window (the refused attempt was not counted): two more
    // accounts' attempts fit, then it is full.
    assert_eq!(s.throttle_begin(&keys("a:bob", "i:203.0.113.7"), T0 + WINDOW).await.unwrap(), None);
    assert_eq!(s.throttle_begin(&keys("a:erin", "i:203.0.113.7"), T0 + WINDOW).await.unwrap(), None);
    let refused = s.throttle_begin(&keys("a:carol", "i:203.0.113.7"), T0 + WINDOW).await.unwrap();
    assert!(refused.is_some(), "the address has used its five attempts");
    assert_eq!(s.throttle_begin(&keys("a:carol", "i:198.51.100.1"), T0 + WINDOW).await.unwrap(), None);

    // A success forgets the account's attempts and takes back the address's latest one.
    s.throttle_succeed("a:carol", &["i:198.51.100.1"]).await.unwrap();
    for i in 0..3 {
        let r = s.throttle_begin(&keys("a:carol", "i:198.51.100.1"), T0 + WINDOW + 1 + i).await.unwrap();
        assert_eq!(r, None, "carol starts from zero");
    }
    // Three attempts on the address (the fourth was taken back), so two more fit: taking back really removed one.
    assert_eq!(s.throttle_begin(&keys("a:frank", "i:198.51.100.1"), T0 + WINDOW + 9).await.unwrap(), None);
    assert_eq!(s.throttle_begin(&keys("a:gina", "i:198.51.100.1"), T0 + WINDOW + 9).await.unwrap(), None);
    assert!(s.throttle_begin(&keys("a:ivan", "i:198.51.100.1"), T0 + WINDOW + 9).await.unwrap().is_some());

    // Parallel attempts are decided one at a time: no more than the limit get through.
    let rule = [ThrottleRule::refuse("a:dave", 3, WINDOW)];
    let attempts = (0..8).map(|i| s.throttle_begin(&rule, T0 + i));
    let allowed =
        futures::future::join_all(attempts).await.into_iter().filter(|r| r.as_ref().unwrap().is_none()).count();
    assert_eq!(allowed, 3);
}

/// A backoff rule never locks: past its limit each attempt waits twice as long after the newest one, up to `max`.
pub async fn backoff_throttling_spaces_attempts_out(s: &dyn Store) {
    const DAY: i64 = 24 * 60 * 60 * 1000;
    let rule =
        |key: &'static str| ThrottleRule { key, limit: 2, window: DAY, over: Over::Backoff { first: 1000, max: 5000 } };
    let r = [rule("a:hugo")];
    assert_eq!(s.throttle_begin(&r, T0).await.unwrap(), None);
    assert_eq!(s.throttle_begin(&r, T0).await.unwrap(), None);
    // Two attempts: the third waits 1 s after the newest, the fourth 2 s, the fifth 4 s, then 5 s (the cap).
    assert_eq!(s.throttle_begin(&r, T0 + 400).await.unwrap(), Some(600));
    assert_eq!(s.throttle_begin(&r, T0 + 1000).await.unwrap(), None);
    assert_eq!(s.throttle_begin(&r, T0 + 2999).await.unwrap(), Some(1));
    assert_eq!(s.throttle_begin(&r, T0 + 3000).await.unwrap(), None);
    assert_eq!(s.throttle_begin(&r, T0 + 7000).await.unwrap(), None);
    assert_eq!(s.throttle_begin(&r, T0 + 7001).await.unwrap(), Some(4999));
    assert_eq!(s.throttle_begin(&r, T0 + 12_000).await.unwrap(), None);
    // Mixed with a lock-out rule: the longer wait wins, and a refusal counts on neither key.
    let both = [rule("a:hugo"), ThrottleRule::refuse("i:192.0.2.1", 1, DAY)];
    assert_eq!(s.throttle_begin(&both, T0 + 17_000).await.unwrap(), None);
    assert_eq!(s.throttle_begin(&both, T0 + 22_000).await.unwrap(), Some(DAY - 5000));
    assert_eq!(s.throttle_begin(&r, T0 + 22_000).await.unwrap(), None, "the refused attempt was not counted");
    // Attempts that left the window do not count: a day later the key starts from scratch.
    assert_eq!(s.throttle_begin(&r, T0 + 22_000 + DAY).await.unwrap(), None);
    assert_eq!(s.throttle_begin(&r, T0 + 22_000 + DAY).await.unwrap(), None);
    assert!(s.throttle_begin(&r, T0 + 22_000 + DAY).await.unwrap().is_some());
}

pub async fn device_tokens_belong_to_one_user_until_they_expire(s: &dyn Store) {
    let a = user(s, "alice@example.com").await;
    let b = user(s, "bob@example.com").await;
    s.add_device_token(&[1; 32], a.id, T0 + 100).await.unwrap();
    s.add_device_token(&[2; 32], b.id, T0 + 100).await.unwrap();
    assert_eq!(s.device_token_user(&[1; 32], T0).await.unwrap(), Some(a.id));
    assert_eq!(s.device_token_user(&[2; 32], T0 + 99).await.unwrap(), Some(b.id));
    assert_eq!(s.device_token_user(&[1; 32], T0 + 100).await.unwrap(), None, "expired");
    assert_eq!(s.device_token_user(&[3; 32], T0).await.unwrap(), None, "unknown");
    assert!(s.add_device_token(&[1; 32], b.id, T0 + 100).await.is_err(), "a token belongs to one user");
}

pub async fn a_form_nonce_makes_one_key(s: &dyn Store) {
    let a = user(s, "alice@example.com").await;
    let b = user(s, "bob@example.com").await;
    let (mut k, _) = new_key(a.id, "from-form", T0);
    k.form_nonce = Some("nonce-1".into());
    assert!(s.key_by_form_nonce(a.id, "nonce-1").await.unwrap().is_none());
    s.insert_key(k.clone()).await.unwrap();
    assert_eq!(s.key_by_form_nonce(a.id, "nonce-1").await.unwrap().unwrap().id, k.id);
    assert!(s.key_by_form_nonce(b.id, "nonce-1").await.unwrap().is_none(), "another owner's form is not ours");
    // The same form again, even under another name: refused.
    let (mut again, _) = new_key(a.id, "other-name", T0);
    again.form_nonce = Some("nonce-1".into());
    assert!(matches!(s.insert_key(again).await, Err(StoreError::Conflict(_))));
    // Another owner may use the same nonce; keys without a nonce never collide.
    let (mut bobs, _) = new_key(b.id, "bobs", T0);
    bobs.form_nonce = Some("nonce-1".into());
    s.insert_key(bobs).await.unwrap();
    for name in ["api-1", "api-2"] {
        s.insert_key(new_key(a.id, name, T0).0).await.unwrap();
    }
    // A deleted key still answers for its form (so a late resend does not make a new one).
    s.revoke_key(Some(a.id), &k.id, &Actor::User(a.id).into(), T0 + 1).await.unwrap().unwrap();
    assert_eq!(s.key_by_form_nonce(a.id, "nonce-1").await.unwrap().unwrap().status, KeyStatus::Revoked);
}

pub async fn setup_makes_one_first_admin(s: &dyn Store) {
    let admin = |email: &str| NewUser {
        email: Email::parse(email).unwrap(),
        password_hash: PasswordHash::from_stored("x".into()),
        is_admin: true,
        created_at: T0,
    };
    let (node_a, node_b, forged) = ([1u8; 32], [2u8; 32], [3u8; 32]);
    assert!(!s.setup_open(&node_a, T0).await.unwrap(), "no token recorded yet");
    s.add_setup_token(&node_a, "host-a 10.0.0.1:8080", T0).await.unwrap();
    s.add_setup_token(&node_b, "host-b 10.0.0.2:8080", T0).await.unwrap();
    assert!(s.setup_open(&node_a, T0).await.unwrap() && s.setup_open(&node_b, T0).await.unwrap());
    assert!(!s.setup_open(&forged, T0).await.unwrap());
    assert!(s.create_first_admin(admin("mallory@example.com"), &forged).await.unwrap().is_none());
    assert_eq!(s.count_users().await.unwrap(), 0);
    // Either node's link works, once: two at the same time make one administrator.
    let (first, second) = futures::join!(
        s.create_first_admin(admin("root@example.com"), &node_b),
        s.create_first_admin(admin("other@example.com"), &node_a)
    );
    let made: Vec<User> = [first.unwrap(), second.unwrap()].into_iter().flatten().collect();
    assert_eq!(made.len(), 1);
    assert!(made[0].is_admin);
    assert_eq!(s.count_users().await.unwrap(), 1);
    assert!(!s.setup_open(&node_a, T0).await.unwrap() && !s.setup_open(&node_b, T0).await.unwrap(), "setup is over");
}

pub async fn setup_links_expire_and_a_restart_revokes_its_own(s: &dyn Store) {
    let admin = |at: Millis| NewUser {
        email: Email::parse("root@example.com").unwrap(),
        password_hash: PasswordHash::from_stored("x".into()),
        is_admin: true,
        created_at: at,
    };
    let (first, restarted, other) = ([1u8; 32], [2u8; 32], [3u8; 32]);
    let (node, other_node) = ("host-a 10.0.0.1:8080", "host-b 10.0.0.2:8080");
    s.add_setup_token(&first, node, T0).await.unwrap();
    s.add_setup_token(&other, other_node, T0).await.unwrap();
    let last_moment = T0 + SETUP_TOKEN_TTL - 1;
    assert!(s.setup_open(&first, last_moment).await.unwrap(), "open for an hour");
    assert!(!s.setup_open(&first, T0 + SETUP_TOKEN_TTL).await.unwrap(), "expired after an hour");
    assert!(
        s.create_first_admin(admin(T0 + SETUP_TOKEN_TTL), &first).await.unwrap().is_none(),
        "an expired link makes no administrator"
    );
    assert_eq!(s.count_users().await.unwrap(), 0);
    // The node restarts: its new link works, its old one no longer, the other node's still does.
    s.add_setup_token(&restarted, node, T0 + 10).await.unwrap();
    assert!(!s.setup_open(&first, T0 + 10).await.unwrap(), "revoked by the restart");
    assert!(s.setup_open(&restarted, T0 + 10).await.unwrap());
    assert!(s.setup_open(&other, T0 + 10).await.unwrap(), "another node's link is not affected");
    assert!(s.create_first_admin(admin(T0 + 20), &first).await.unwrap().is_none());
    assert!(s.create_first_admin(admin(T0 + 20), &restarted).await.unwrap().is_some());
}

/// A key with a rate limit and a quota.
fn limited_key(owner: UserId, name: &str, quota: i64, refill: Option<atna_domain::Refill>) -> NewKey {
    let (mut k, _) = new_key(owner, name, T0);
    k.expires_at = None;
    k.rules.rate_limit = Some(atna_domain::RateLimit::new(100, 60).unwrap());
    k.rules.quota = Some(atna_domain::Quota::new(quota, refill, T0).unwrap());
    k
}

pub async fn limits_round_trip(s: &dyn Store) {
    let a = user(s, "alice@example.com").await;
    let refill = atna_domain::Refill::new(10_000, atna_domain::RefillInterval::Daily).unwrap();
    let k = limited_key(a.id, "limited", 1234, Some(refill));
    let rec = s.insert_key(k.clone()).await.unwrap();
    assert_eq!(rec.rules, k.rules);
    assert_eq!(rec.rules.quota.unwrap().total, 10_000);
    assert_eq!(s.get_key(a.id, &k.id).await.unwrap().unwrap().rules, k.rules);
    assert_eq!(s.auth_record(&k.id).await.unwrap().unwrap().key.rules, k.rules);
    let listed = s.list_keys(a.id, &KeyQuery { limit: 10, ..Default::default() }).await.unwrap();
    assert_eq!(listed[0].rules, k.rules);
    let (plain, _) = new_key(a.id, "plain", T0 + 1);
    let rec = s.insert_key(plain).await.unwrap();
    assert_eq!((rec.rules.rate_limit, rec.rules.quota), (None, None));
}

pub async fn quotas_are_taken_atomically_and_refilled(s: &dyn Store) {
    let a = user(s, "alice@example.com").await;
    let once = limited_key(a.id, "once", 10, None);
    let refill = atna_domain::Refill::new(50, atna_domain::RefillInterval::Daily).unwrap();
    let daily = limited_key(a.id, "daily", 5, Some(refill));
    let (plain, _) = new_key(a.id, "plain", T0);
    for k in [&once, &daily, &plain] {
        s.insert_key(k.clone()).await.unwrap();
    }
    let take = |id, n| LimitUses { id, rate_uses: 0, quota_uses: Some(n) };
    let now = T0 + 1000;
    let r = s.sync_limits("n1", &[take(once.id, 3), take(daily.id, 2), take(plain.id, 1)], 0, 0, now).await.unwrap();
    let left: Vec<(CredentialId, i64)> = r.quotas.iter().map(|q| (q.id, q.remaining)).collect();
    assert_eq!(left, [(once.id, 7), (daily.id, 3)], "a key without a quota is left out");
    // Never below zero, however many uses two nodes report.
    let r = s.sync_limits("n2", &[take(once.id, 100)], 0, 0, now).await.unwrap();
    assert_eq!(r.quotas[0].remaining, 0);
    // A day later the daily quota is full again before the uses are taken; the other is not refilled.
    let tomorrow = atna_domain::RefillInterval::Daily.next_after(now) + 5;
    let r = s.sync_limits("n1", &[take(daily.id, 4), take(once.id, 0)], 0, 0, tomorrow).await.unwrap();
    assert_eq!((r.quotas[0].remaining, r.quotas[0].refilled_at), (46, tomorrow - 5));
    assert_eq!(r.quotas[1].remaining, 0);
    // Refilled once per day, not at every sync.
    let r = s.sync_limits("n1", &[take(daily.id, 1)], 0, 0, tomorrow + 10).await.unwrap();
    assert_eq!(r.quotas[0].remaining, 45);
    let rec = s.auth_record(&daily.id).await.unwrap().unwrap().key;
    assert_eq!(rec.rules.quota.unwrap().remaining, 45);
    // Deleted keys still answer (a node may hold uses of a key deleted meanwhile).
    s.revoke_key(None, &daily.id, &Actor::Operator.into(), tomorrow + 20).await.unwrap();
    let r = s.sync_limits("n1", &[take(daily.id, 1)], 0, 0, tomorrow + 30).await.unwrap();
    assert_eq!(r.quotas[0].remaining, 44);
}

pub async fn rate_limit_uses_are_shared_between_nodes(s: &dyn Store) {
    let a = user(s, "alice@example.com").await;
    let k = limited_key(a.id, "shared", 10, None);
    s.insert_key(k.clone()).await.unwrap();
    let uses = |n| LimitUses { id: k.id, rate_uses: n, quota_uses: None };
    // Node 1 reports 7 uses; node 2 reports 3 and learns of node 1's 7, never of its own.
    assert!(s.sync_limits("n1", &[uses(7)], 0, 0, T0 + 100).await.unwrap().remote.is_empty());
    let r = s.sync_limits("n2", &[uses(3)], T0, 0, T0 + 200).await.unwrap();
    assert_eq!(r.remote.iter().map(|u| (u.id, u.at, u.uses)).collect::<Vec<_>>(), [(k.id, T0 + 100, 7)]);
    assert!(r.quotas.is_empty(), "rate uses alone take nothing off a quota");
    let r = s.sync_limits("n1", &[], T0 + 100, 0, T0 + 300).await.unwrap();
    assert_eq!(r.remote.iter().map(|u| u.uses).collect::<Vec<_>>(), [3], "only rows after `since`");
    let seqs: Vec<i64> = s.sync_limits("n3", &[], 0, 0, T0 + 300).await.unwrap().remote.iter().map(|u| u.seq).collect();
    assert_eq!(seqs.len(), 2);
    assert_ne!(seqs[0], seqs[1]);
    // Old rows are forgotten when a node writes.
    s.sync_limits("n3", &[uses(1)], 0, T0 + 150, T0 + 400).await.unwrap();
    let r = s.sync_limits("n4", &[], 0, 0, T0 + 500).await.unwrap();
    assert_eq!(r.remote.iter().map(|u| u.uses).collect::<Vec<_>>(), [3, 1]);
}

pub async fn key_prefixes_are_recorded_once_and_changed_audited(s: &dyn Store) {
    assert_eq!(s.key_prefixes().await.unwrap(), KeyPrefixes::default(), "nothing recorded before the first start");
    let acme = KeyPrefix::parse("acme").unwrap();
    let beta = KeyPrefix::parse("beta").unwrap();
    let first = s.init_key_prefix(&acme, T0).await.unwrap();
    assert_eq!((first.current.as_ref(), first.issued.as_slice()), (Some(&acme), std::slice::from_ref(&acme)));
    // A later start with another configured prefix does not change the recorded one.
    assert_eq!(s.init_key_prefix(&beta, T0 + 1).await.unwrap(), first);
    let before = s.latest_change().await.unwrap();
    let change = s.set_key_prefix(&beta, T0 + 2).await.unwrap();
    assert_eq!(change, KeyPrefixChange { previous: Some(acme.clone()), unchanged: false });
    let now = s.key_prefixes().await.unwrap();
    assert_eq!(now.current.as_ref(), Some(&beta));
    assert_eq!(now.issued, [acme.clone(), beta.clone()], "older prefixes stay accepted");
    assert_eq!(now.format(&KeyPrefix::default()).prefixes(), [beta.clone(), acme.clone()]);
    let changes = s.changes_since(before, 10).await.unwrap();
    assert_eq!(changes.iter().map(|c| c.what.clone()).collect::<Vec<_>>(), [ChangeKind::Installation]);
    let events = s.audit_events(INSTALLATION_OWNER, 10).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!((events[0].action.as_str(), events[0].actor), ("installation.key_prefix_changed", Actor::Operator));
    assert_eq!(events[0].detail.as_deref(), Some("acme -> beta"));
    // Setting the current prefix again writes nothing.
    assert!(s.set_key_prefix(&beta, T0 + 3).await.unwrap().unchanged);
    assert_eq!(s.latest_change().await.unwrap(), changes[0].seq);
    // Back to an earlier one: it becomes current again, nothing is issued twice.
    s.set_key_prefix(&acme, T0 + 4).await.unwrap();
    let back = s.key_prefixes().await.unwrap();
    assert_eq!((back.current, back.issued.len()), (Some(acme), 2));
}

pub async fn leak_reports_act_once_and_replays_change_nothing(s: &dyn Store) {
    let a = user(s, "alice@example.com").await;
    let (live, _) = new_key(a.id, "live", T0);
    let (gone, _) = new_key(a.id, "gone", T0);
    let (other, _) = new_key(a.id, "other", T0);
    for k in [&live, &gone, &other] {
        s.insert_key(k.clone()).await.unwrap();
    }
    s.revoke_key(None, &gone.id, &Actor::Operator.into(), T0 + 1).await.unwrap().unwrap();
    let before = s.latest_change().await.unwrap();
    let report = |k: &NewKey, url: &str| NewLeakReport { key: k.id, source: "github", url: url.into() };
    let url = "https://github.com/o/r/blob/abc/config.yml";
    let batch = [report(&live, url), report(&gone, url)];
    let got = s.record_leaks(&batch, LeakAction::Revoke, T0 + 5).await.unwrap();
    let outcomes: Vec<_> = got.iter().map(|(k, o)| (k.id, k.status, *o)).collect();
    assert_eq!(
        outcomes,
        [(live.id, KeyStatus::Revoked, LeakOutcome::Revoked), (gone.id, KeyStatus::Revoked, LeakOutcome::Unchanged)]
    );
    let changes = s.changes_since(before, 10).await.unwrap();
    assert_eq!(changes.iter().map(|c| c.what.clone()).collect::<Vec<_>>(), [ChangeKind::Key(live.id)]);
    let events = s.audit_events(a.id, 100).await.unwrap();
    let leaked: Vec<_> = events.iter().filter(|e| e.action == "key.leaked").collect();
    assert_eq!(leaked.len(), 2);
    assert!(leaked.iter().all(|e| e.detail.as_deref() == Some(&format!("github {url}") as &str)));
    let n_events = events.len();

    // The same report again: nothing is revoked, recorded or published.
    let again = s.record_leaks(&batch, LeakAction::Revoke, T0 + 6).await.unwrap();
    assert!(again.iter().all(|(_, o)| *o == LeakOutcome::Replayed));
    assert_eq!(s.audit_events(a.id, 100).await.unwrap().len(), n_events);
    assert_eq!(s.latest_change().await.unwrap(), changes[0].seq);

    // Another policy: disable keeps the key listed but stopped; notify leaves it alone.
    let d = s.record_leaks(&[report(&other, "")], LeakAction::Disable, T0 + 7).await.unwrap();
    assert_eq!((d[0].0.status, d[0].1), (KeyStatus::Disabled, LeakOutcome::Disabled));
    assert_eq!(s.auth_record(&other.id).await.unwrap().unwrap().key.status, KeyStatus::Disabled);
    let n = s.record_leaks(&[report(&other, "https://x.test/2")], LeakAction::Notify, T0 + 8).await.unwrap();
    assert_eq!(n[0].1, LeakOutcome::Unchanged);

    let listed = s.leak_reports(a.id, 10).await.unwrap();
    let rows: Vec<_> = listed.iter().map(|r| (r.key_id, r.url.as_str(), r.outcome, r.status)).collect();
    assert_eq!(rows[0], (other.id, "https://x.test/2", LeakOutcome::Unchanged, Some(KeyStatus::Disabled)));
    assert_eq!(rows[1], (other.id, "", LeakOutcome::Disabled, Some(KeyStatus::Disabled)));
    assert_eq!(listed.len(), 4);
    assert!(listed.iter().any(|r| r.key_id == live.id && r.outcome == LeakOutcome::Revoked));
    assert_eq!(listed[0].key_name.as_deref(), Some("other"));
    assert!(s.leak_reports(UserId(999_999), 10).await.unwrap().is_empty());
}

pub async fn auth_records_are_read_in_batches(s: &dyn Store) {
    let a = user(s, "alice@example.com").await;
    let mut ids = Vec::new();
    for i in 0..600 {
        let (k, _) = new_key(a.id, &format!("k{i}"), T0);
        s.insert_key(k.clone()).await.unwrap();
        ids.push(k.id);
    }
    s.revoke_key(None, &ids[3], &Actor::Operator.into(), T0 + 1).await.unwrap().unwrap();
    let mut asked = ids.clone();
    asked.push(GeneratedKey::generate().id);
    let got = s.auth_records(&asked).await.unwrap();
    let mut found: Vec<CredentialId> = got.iter().map(|r| r.key.id).collect();
    found.sort();
    ids.sort();
    assert_eq!(found, ids, "every existing key (deleted ones too), across more than one chunk; unknown IDs skipped");
    assert!(got.iter().all(|r| r.owner_email == a.email));
    assert!(s.auth_records(&[]).await.unwrap().is_empty());
}

pub async fn rolling_links_both_keys_and_ends_the_old_one(s: &dyn Store) {
    let a = user(s, "alice@example.com").await;
    let (mut old, _) = new_key(a.id, "billing", T0);
    old.expires_at = None;
    s.insert_key(old.clone()).await.unwrap();
    let before = s.latest_change().await.unwrap();
    let (mut new, _) = new_key(a.id, "billing-2", T0 + 10);
    new.rolled_from = Some(old.id);
    let who = Who::new(Actor::User(a.id), Some("203.0.113.9".into()), Some("test-agent"));
    new.actor = who.clone();
    let rolled = s.roll_key(Some(a.id), &old.id, new.clone(), T0 + 100).await.unwrap().unwrap();
    assert_eq!((rolled.rolled_to, rolled.expires_at), (Some(new.id), Some(T0 + 100)));
    let got = s.get_key(a.id, &new.id).await.unwrap().unwrap();
    assert_eq!((got.rolled_from, got.rolled_to), (Some(old.id), None));
    assert_eq!(s.get_key(a.id, &old.id).await.unwrap().unwrap().rolled_to, Some(new.id));
    let auth = s.auth_record(&old.id).await.unwrap().unwrap();
    assert_eq!(auth.key.expires_at, Some(T0 + 100));
    // Every node forgets the old key's cached expiry.
    let changes = s.changes_since(before, 10).await.unwrap();
    assert!(changes.iter().any(|c| c.what == ChangeKind::Key(old.id)));
    let events = s.audit_events(a.id, 10).await.unwrap();
    let rolled_event = events.iter().find(|e| e.action == audit_kind::KEY_ROLLED).unwrap();
    assert_eq!(rolled_event.key_id, Some(old.id));
    assert_eq!(
        (rolled_event.ip.as_deref(), rolled_event.user_agent.as_deref()),
        (Some("203.0.113.9"), Some("test-agent"))
    );
    assert!(rolled_event.detail.as_deref().unwrap().contains(new.id.as_str()));
    let created = events.iter().find(|e| e.action == audit_kind::KEY_CREATED && e.key_id == Some(new.id)).unwrap();
    assert!(created.detail.as_deref().unwrap().contains(old.id.as_str()));
    // An old key that expires before the overlap ends keeps its own expiry.
    let (mut soon, _) = new_key(a.id, "soon", T0);
    soon.expires_at = Some(T0 + 50);
    s.insert_key(soon.clone()).await.unwrap();
    let (mut next, _) = new_key(a.id, "soon-2", T0 + 10);
    next.rolled_from = Some(soon.id);
    assert_eq!(s.roll_key(None, &soon.id, next, T0 + 1000).await.unwrap().unwrap().expires_at, Some(T0 + 50));
}

pub async fn rolling_is_once_and_all_or_nothing(s: &dyn Store) {
    let a = user(s, "alice@example.com").await;
    let b = user(s, "bob@example.com").await;
    let (old, _) = new_key(a.id, "billing", T0);
    s.insert_key(old.clone()).await.unwrap();
    // A name that is taken: nothing is written, the old key is not linked.
    let (taken, _) = new_key(a.id, "billing", T0 + 1);
    assert!(matches!(s.roll_key(Some(a.id), &old.id, taken, T0 + 100).await, Err(StoreError::Conflict(_))));
    let still = s.get_key(a.id, &old.id).await.unwrap().unwrap();
    assert_eq!((still.rolled_to, still.expires_at), (None, old.expires_at));
    // Someone else's key is not there to roll.
    let (other, _) = new_key(b.id, "x", T0 + 1);
    assert!(s.roll_key(Some(b.id), &old.id, other, T0 + 100).await.unwrap().is_none());
    let (first, _) = new_key(a.id, "billing-2", T0 + 2);
    s.roll_key(Some(a.id), &old.id, first, T0 + 100).await.unwrap().unwrap();
    let (second, _) = new_key(a.id, "billing-3", T0 + 3);
    let second_id = second.id;
    assert!(s.roll_key(Some(a.id), &old.id, second, T0 + 100).await.unwrap().is_none(), "rolled once");
    assert!(s.get_key(a.id, &second_id).await.unwrap().is_none(), "and the second new key was not kept");
}

pub async fn editing_a_key_is_published_and_audited(s: &dyn Store) {
    let a = user(s, "alice@example.com").await;
    let b = user(s, "bob@example.com").await;
    let (k, _) = new_key(a.id, "crm", T0);
    s.insert_key(k.clone()).await.unwrap();
    let (other, _) = new_key(a.id, "other", T0);
    s.insert_key(other.clone()).await.unwrap();
    let who: Who = Actor::User(a.id).into();
    let disable = KeyPatch { status: Some(KeyStatus::Disabled), ..KeyPatch::default() };
    assert!(s.update_key(Some(b.id), &k.id, &disable, &who, T0 + 1).await.unwrap().is_none(), "not bob's");
    let before = s.latest_change().await.unwrap();
    let (was, now) = s.update_key(Some(a.id), &k.id, &disable, &who, T0 + 1).await.unwrap().unwrap();
    assert_eq!((was.status, now.status), (KeyStatus::Active, KeyStatus::Disabled));
    assert_eq!(s.auth_record(&k.id).await.unwrap().unwrap().key.status, KeyStatus::Disabled);
    let changes = s.changes_since(before, 10).await.unwrap();
    assert_eq!(changes.iter().map(|c| c.what.clone()).collect::<Vec<_>>(), [ChangeKind::Key(k.id)]);
    let edit = KeyPatch {
        name: Some(KeyName::parse("crm-renamed").unwrap()),
        scopes: Some(Scopes::parse(&["billing:read"]).unwrap()),
        expires_at: Some(None),
        status: Some(KeyStatus::Active),
        ..KeyPatch::default()
    };
    let (_, now) = s.update_key(None, &k.id, &edit, &Actor::Operator.into(), T0 + 2).await.unwrap().unwrap();
    assert_eq!((now.name.as_str(), now.expires_at, now.status), ("crm-renamed", None, KeyStatus::Active));
    assert_eq!(now.scopes.to_stored(), "billing:read");
    let rename = KeyPatch { name: Some(KeyName::parse("other").unwrap()), ..KeyPatch::default() };
    assert!(matches!(s.update_key(None, &k.id, &rename, &who, T0 + 3).await, Err(StoreError::Conflict(_))));
    let kinds: Vec<String> = s.audit_events(a.id, 10).await.unwrap().into_iter().map(|e| e.action).collect();
    assert_eq!(kinds[..3], ["key.edited", "key.enabled", "key.disabled"]);
    let edited = &s.audit_events(a.id, 1).await.unwrap()[0];
    let detail = edited.detail.as_deref().unwrap();
    assert!(detail.contains("crm-renamed") && detail.contains("expires_at") && detail.contains("scopes"), "{detail}");
    // Deleted keys cannot be edited back to life.
    s.revoke_key(None, &k.id, &who, T0 + 4).await.unwrap().unwrap();
    assert!(s.update_key(None, &k.id, &edit, &who, T0 + 5).await.unwrap().is_none());
}

pub async fn bulk_revocation_takes_exactly_what_matches(s: &dyn Store) {
    let a = user(s, "alice@example.com").await;
    let b = user(s, "bob@example.com").await;
    let mut ids = Vec::new();
    for (owner, name, at) in [(a.id, "a1", T0), (a.id, "a2", T0 + 10), (b.id, "b1", T0), (b.id, "b2", T0 + 10)] {
        let (k, _) = new_key(owner, name, at);
        s.insert_key(k.clone()).await.unwrap();
        ids.push(k.id);
    }
    let old = KeyFilter { owner: None, created_before: Some(T0 + 5) };
    let preview: Vec<_> = s.keys_matching(&old).await.unwrap().iter().map(|k| k.id).collect();
    assert_eq!(preview.len(), 2);
    assert!(preview.contains(&ids[0]) && preview.contains(&ids[2]));
    let before = s.latest_change().await.unwrap();
    let admin: Who = Actor::User(b.id).into();
    let gone = s.revoke_keys(&old, &admin, serde_json::Map::new(), T0 + 20).await.unwrap();
    let mut gone_ids: Vec<_> = gone.iter().map(|k| k.id).collect();
    gone_ids.sort_by(|x, y| x.as_str().cmp(y.as_str()));
    let mut want = preview.clone();
    want.sort_by(|x, y| x.as_str().cmp(y.as_str()));
    assert_eq!(gone_ids, want);
    assert!(gone.iter().all(|k| k.status == KeyStatus::Revoked));
    let mut changed: Vec<_> = s.changes_since(before, 10).await.unwrap().into_iter().map(|c| c.what).collect();
    changed.sort_by_key(|c| format!("{c:?}"));
    assert_eq!(changed, [ChangeKind::User(a.id), ChangeKind::User(b.id)]);
    assert_eq!(s.auth_record(&ids[0]).await.unwrap().unwrap().key.status, KeyStatus::Revoked);
    assert_eq!(s.auth_record(&ids[1]).await.unwrap().unwrap().key.status, KeyStatus::Active);
    // One event for the whole action.
    let q = AuditQuery { action: Some(audit_kind::KEYS_REVOKED.into()), limit: 10, ..AuditQuery::default() };
    let events = s.audit_page(&q).await.unwrap();
    assert_eq!(events.len(), 1);
    assert!(events[0].detail.as_deref().unwrap().contains("\"count\":2"));
    // One user's keys, whenever made.
    let bobs = KeyFilter { owner: Some(b.id), created_before: None };
    assert_eq!(s.keys_matching(&bobs).await.unwrap().iter().map(|k| k.id).collect::<Vec<_>>(), [ids[3]]);
    assert_eq!(s.revoke_keys(&bobs, &admin, serde_json::Map::new(), T0 + 30).await.unwrap().len(), 1);
    assert!(s.keys_matching(&bobs).await.unwrap().is_empty());
}

pub async fn audit_pages_filter_and_forget_old_failed_sign_ins(s: &dyn Store) {
    let a = user(s, "alice@example.com").await;
    let b = user(s, "bob@example.com").await;
    let event = |owner: UserId, action: &'static str, at: i64| NewAuditEvent {
        at,
        owner,
        who: Who::new(Actor::User(owner), Some("198.51.100.1".into()), Some("agent")),
        action,
        key_id: None,
        key_name: None,
        detail: None,
    };
    for i in 0..5 {
        s.append_audit(&event(a.id, audit_kind::SIGNED_IN, T0 + i)).await.unwrap();
        s.append_audit(&event(b.id, audit_kind::SESSION_ENDED, T0 + i)).await.unwrap();
    }
    let failed = NewAuditEvent { who: Actor::Operator.into(), ..event(NO_USER, audit_kind::SIGN_IN_FAILED, T0) };
    s.append_audit(&failed).await.unwrap();
    // Pages of 3, newest first, resuming after the cursor: every event once.
    let mut seen = Vec::new();
    let mut q = AuditQuery { limit: 3, ..AuditQuery::default() };
    loop {
        let page = s.audit_page(&q).await.unwrap();
        seen.extend(page.iter().map(|e| (e.at, e.id)));
        if (page.len() as i64) < q.limit {
            break;
        }
        let last = page.last().unwrap();
        q.after = Some((last.at, last.id));
    }
    assert_eq!(seen.len(), 11);
    assert!(seen.windows(2).all(|w| w[0] > w[1]), "newest first, no repeats: {seen:?}");
    let alice = AuditQuery { owner: Some(a.id), limit: 100, ..AuditQuery::default() };
    let got = s.audit_page(&alice).await.unwrap();
    assert_eq!(got.len(), 5);
    assert!(got.iter().all(|e| e.action == "session.signed_in" && e.ip.as_deref() == Some("198.51.100.1")));
    let window = AuditQuery { since: Some(T0 + 1), until: Some(T0 + 3), ..alice.clone() };
    assert_eq!(s.audit_page(&window).await.unwrap().iter().map(|e| e.at).collect::<Vec<_>>(), [T0 + 2, T0 + 1]);
    let ended = AuditQuery { action: Some("session.ended".into()), limit: 100, ..AuditQuery::default() };
    assert!(s.audit_page(&ended).await.unwrap().iter().all(|e| e.owner == b.id));
    // Failed sign-ins leave after their retention; everything else stays.
    let day = 24 * 60 * 60 * 1000;
    assert_eq!(s.prune(T0, T0 + 29 * day).await.unwrap().failed_sign_ins, 0);
    assert_eq!(s.prune(T0, T0 + 31 * day).await.unwrap().failed_sign_ins, 1);
    assert_eq!(s.audit_page(&AuditQuery { limit: 100, ..AuditQuery::default() }).await.unwrap().len(), 10);
}
