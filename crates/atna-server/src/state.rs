//! The state every handler shares.

use std::sync::Arc;

use atna_store::Store;

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
    /// Secret scanners' public keys and the revocation endpoints' limits.
    pub leaks: crate::leaks::Leaks,
}

impl AppState {
    /// Bundles the parts.
    pub fn new(store: Arc<dyn Store>, verifier: Arc<Verifier>, settings: Settings, leaks: crate::leaks::Leaks) -> Self {
        Self(Arc::new(Inner { store, verifier, settings, leaks }))
    }
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}
