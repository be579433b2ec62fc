//! The state every handler shares.

use std::sync::Arc;

use atna_store::Store;

use crate::notify::Notifier;
use crate::per_address::PerAddress;
use crate::verify::Verifier;
use crate::Settings;

/// Cheap to clone: everything is behind one `Arc`.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

/// What the handlers share.
pub struct Inner {
    pub store: Arc<dyn Store>,
    pub verifier: Arc<Verifier>,
    pub settings: Settings,
    /// Records reminders (key deleted, rolled, …) and wakes this node's delivery worker.
    pub notifier: Notifier,
    /// The per-address limit of the key holders' endpoints (`/v1/credentials/…`).
    pub holder_limit: PerAddress,
    /// Secret scanners' public keys and the revocation endpoints' limits.
    pub leaks: crate::leaks::Leaks,
}

impl AppState {
    /// Bundles the parts.
    pub fn new(store: Arc<dyn Store>, verifier: Arc<Verifier>, settings: Settings, leaks: crate::leaks::Leaks) -> Self {
        let notifier = Notifier::new(store.clone(), settings.notify.clone());
        Self(Arc::new(Inner { store, verifier, settings, notifier, holder_limit: PerAddress::default(), leaks }))
    }
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}
