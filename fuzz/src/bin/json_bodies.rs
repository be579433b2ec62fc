//! Fuzz target: the JSON request bodies of the REST API (`POST /v1/keys`, `POST /v1/keys/verify`) and the export
//! file (`atna import`). Each input is tried as every one of them: decoded as the handler decodes it, then, for a new
//! key, created for real in an in-memory SQLite store, as the handler would. Nothing may panic, and a decoded
//! request must come out as a key or as a client error, never as a database error.
//! Run: see docs/development.md ("Fuzzing").

use std::sync::OnceLock;

use atna_domain::{Email, PasswordHash, UserId};
use atna_server::api::dto::{CreateKey, VerifyRequest};
use atna_server::service::{self, CreateKeyError, KeySpec};
use atna_store::{Actor, NewUser, Snapshot, Store};
use atna_store_sqlite::SqliteStore;

struct World {
    rt: tokio::runtime::Runtime,
    store: SqliteStore,
    owner: UserId,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (store, owner) = rt.block_on(async {
            let store = SqliteStore::open("sqlite::memory:", true).await.unwrap();
            let user = store
                .create_user(NewUser {
                    email: Email::parse("fuzz@example.com").unwrap(),
                    password_hash: PasswordHash::from_stored("x".into()),
                    is_admin: false,
                    created_at: 0,
                })
                .await
                .unwrap();
            (store, user.id)
        });
        World { rt, store, owner }
    })
}

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let w = world();
        if let Ok(req) = serde_json::from_slice::<CreateKey>(data) {
            let allow = req.ip_allowlist.clone().unwrap_or_default();
            let spec = KeySpec {
                once: None,
                name: &req.name,
                scopes: &req.scopes,
                expires_at: req.expires_at.map(|t| t.timestamp_millis()),
                ip_allowlist: &allow,
                rate_limit: req.rate_limit,
                quota: req.quota.as_ref(),
                by_key: None,
            };
            let made = w.rt.block_on(service::create_key(&w.store, w.owner, Actor::Operator, spec, 0));
            assert!(!matches!(made, Err(CreateKeyError::Store(_))), "{made:?}");
        }
        if let Ok(req) = serde_json::from_slice::<VerifyRequest>(data) {
            let _ = atna_domain::ParsedKey::parse(&req.key);
        }
        if let Ok(snap) = serde_json::from_slice::<Snapshot>(data) {
            let _ = snap.check();
        }
    });
}
