//! Property tests of the export file format (`atna export` / `atna import`): any JSON, and valid exports with one
//! field mutated, are refused or imported without a panic and without a database error; every valid export reads back
//! to itself, through JSON and through a SQLite store.

use atna_domain::{test_cases, SecretHash};
use atna_store::{ExportedAuditEvent, ExportedKey, ExportedUser, Snapshot, Store, StoreError, SNAPSHOT_FORMAT};
use atna_store_sqlite::SqliteStore;
use proptest::prelude::*;
use serde_json::Value;

fn base62(n: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[0-9A-Za-z]{{{n}}}")).unwrap()
}

/// A valid snapshot: 1–4 users, up to 6 keys (live names unique per owner), up to 6 audit events.
fn snapshot() -> impl Strategy<Value = Snapshot> {
    let users = proptest::collection::vec((any::<bool>(), any::<bool>(), 0i64..1 << 45), 1..4);
    let keys = proptest::collection::vec(
        (
            base62(16),
            0usize..4,
            prop_oneof![Just("active"), Just("disabled"), Just("revoked")],
            proptest::sample::select(vec!["", "keys:manage", "a b:c", "billing:read keys:manage"]),
            proptest::option::of(0i64..1 << 45),
            proptest::option::of(proptest::sample::select(vec!["10.0.0.0/8", "2001:db8::/32 203.0.113.7/32"])),
            0i64..1_000_000,
        ),
        0..6,
    );
    let events = proptest::collection::vec((0i64..1 << 45, 0usize..4, "key\\.(created|deleted)"), 0..6);
    (users, keys, events, 0i64..1 << 45).prop_map(|(users, keys, events, at)| {
        let users: Vec<ExportedUser> = users
            .into_iter()
            .enumerate()
            .map(|(i, (is_admin, disabled, created_at))| ExportedUser {
                id: i as i64 * 3 + 1,
                email: format!("user{i}@example.com"),
                password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
                is_admin,
                disabled,
                created_at,
            })
            .collect();
        let mut seen = std::collections::HashSet::new();
        let keys: Vec<ExportedKey> = keys
            .into_iter()
            .enumerate()
            .filter(|(_, k)| seen.insert(k.0.clone()))
            .map(|(j, (id, owner, status, scopes, expires_at, allow, use_count))| ExportedKey {
                secret_hash: SecretHash::of(&id).to_hex(),
                id,
                owner_id: users[owner % users.len()].id,
                name: format!("key-{j}"),
                scopes: scopes.into(),
                status: status.into(),
                created_at: 1,
                expires_at,
                revoked_at: (status == "revoked").then_some(2),
                last_used_at: None,
                last_used_ip: None,
                use_count,
                created_by_key: None,
                ip_allowlist: allow.map(Into::into),
                ..ExportedKey::default()
            })
            .collect();
        let mut keys = keys;
        keys.sort_by(|a, b| a.id.cmp(&b.id));
        let audit_events = events
            .into_iter()
            .map(|(at, owner, action)| ExportedAuditEvent {
                at,
                owner_id: users[owner % users.len()].id,
                actor_id: None,
                action,
                key_id: keys.first().map(|k| k.id.clone()),
                key_name: keys.first().map(|k| k.name.clone()),
                actor_key_id: None,
                ip: None,
                user_agent: None,
                detail: None,
            })
            .collect();
        Snapshot { format: SNAPSHOT_FORMAT.into(), exported_at: at, users, keys, audit_events, key_prefixes: vec![] }
    })
}

/// Any JSON value, a few levels deep.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        "\\PC{0,20}".prop_map(Value::from),
        base62(16).prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            proptest::collection::btree_map("[a-z_]{1,12}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Every place in a JSON document: the paths to each value.
fn paths(v: &Value, at: Vec<String>, out: &mut Vec<Vec<String>>) {
    out.push(at.clone());
    match v {
        Value::Object(m) => m.iter().for_each(|(k, x)| paths(x, [at.clone(), vec![k.clone()]].concat(), out)),
        Value::Array(a) => {
            a.iter().enumerate().for_each(|(i, x)| paths(x, [at.clone(), vec![i.to_string()]].concat(), out))
        }
        _ => {}
    }
}

fn value_at<'a>(v: &'a mut Value, path: &[String]) -> &'a mut Value {
    path.iter().fold(v, |v, p| match v {
        Value::Object(m) => m.get_mut(p).unwrap(),
        Value::Array(a) => &mut a[p.parse::<usize>().unwrap()],
        _ => unreachable!(),
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// Imports into a fresh in-memory store: refused as invalid, or imported and exported back equal. Never a database
/// error: whatever `check` lets through, both backends must be able to store.
fn import_round_trip(rt: &tokio::runtime::Runtime, snap: &Snapshot) -> Result<(), TestCaseError> {
    rt.block_on(async {
        let store = SqliteStore::open("sqlite::memory:", true).await.unwrap();
        match store.import_all(snap).await {
            Ok(summary) => {
                prop_assert_eq!(summary, snap.summary());
                let back = store.export_all().await.unwrap();
                // The export lists users and keys by ID; a mutation may have changed an ID, and with it the order.
                let by_id = |mut v: Vec<atna_store::ExportedUser>| {
                    v.sort_by_key(|u| u.id);
                    v
                };
                let by_key_id = |mut v: Vec<atna_store::ExportedKey>| {
                    v.sort_by(|a, b| a.id.cmp(&b.id));
                    v
                };
                prop_assert_eq!(by_id(back.users.clone()), by_id(snap.users.clone()));
                prop_assert_eq!(by_key_id(back.keys.clone()), by_key_id(snap.keys.clone()));
                prop_assert_eq!(&back.audit_events, &snap.audit_events);
            }
            Err(StoreError::InvalidSnapshot(_)) => prop_assert!(snap.check().is_err()),
            Err(e) => prop_assert!(false, "{e}"),
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(test_cases(256)))]

    /// Any text, and any JSON: an error, never a panic.
    #[test]
    fn any_json_is_refused_without_panicking(text in "\\PC{0,64}", value in json()) {
        if let Ok(s) = serde_json::from_str::<Snapshot>(&text) {
            let _ = s.check();
        }
        if let Ok(s) = serde_json::from_value::<Snapshot>(value) {
            let _ = s.check();
        }
    }

    /// A valid export reads back to itself through JSON and through a store.
    #[test]
    fn valid_exports_round_trip(snap in snapshot()) {
        prop_assert!(snap.check().is_ok(), "{:?}", snap.check());
        let text = serde_json::to_string_pretty(&snap).unwrap();
        prop_assert_eq!(&serde_json::from_str::<Snapshot>(&text).unwrap(), &snap);
        import_round_trip(&runtime(), &snap)?;
    }

    /// A valid export with one value replaced by anything, or removed: refused (by the JSON decoder or by `check`)
    /// or imported and read back whole; never a panic, never a database error.
    #[test]
    fn mutated_exports_are_refused_or_imported_whole(snap in snapshot(), pick in any::<prop::sample::Index>(), with in json(), remove in any::<bool>()) {
        let mut doc = serde_json::to_value(&snap).unwrap();
        let mut all = Vec::new();
        paths(&doc, Vec::new(), &mut all);
        let path = pick.get(&all).clone();
        if let (true, Some((last, parent))) = (remove, path.split_last()) {
            match value_at(&mut doc, parent) {
                Value::Object(m) => { m.remove(last); }
                Value::Array(a) => { a.remove(last.parse::<usize>().unwrap()); }
                _ => unreachable!(),
            }
        } else {
            *value_at(&mut doc, &path) = with;
        }
        if let Ok(mutated) = serde_json::from_value::<Snapshot>(doc) {
            import_round_trip(&runtime(), &mutated)?;
        }
    }
}
