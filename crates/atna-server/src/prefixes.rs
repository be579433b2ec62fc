//! The installation's key prefixes on a running node: recorded at the first start, read again whenever the change
//! feed says the installation changed (`atna key-prefix set` publishes that), so every node accepts the same
//! prefixes and issues the same one.

use atna_domain::KeyPrefix;
use atna_store::{Store, StoreError};

use crate::verify::Verifier;

/// At start: records `configured` as the prefix unless one is recorded already, says so when the recorded one
/// differs (this node then issues the recorded one: it is an installation fact), and gives the verifier every
/// recorded prefix.
pub async fn record_at_start(store: &dyn Store, verifier: &Verifier, configured: &KeyPrefix) -> Result<(), StoreError> {
    let recorded = store.init_key_prefix(configured, crate::clock::now()).await?;
    if let Some(current) = recorded.current.as_ref().filter(|c| *c != configured) {
        tracing::warn!(
            configured = %configured,
            recorded = %current,
            "key_prefix is set to `{configured}` but this installation issues keys as `{current}_` (recorded in the \
             database); new keys keep getting `{current}_`. To change it for every node, run `atna key-prefix set \
             {configured}`; otherwise set key_prefix = \"{current}\""
        );
    }
    verifier.set_format(recorded.format(configured));
    Ok(())
}

/// Reads the recorded prefixes again (the installation changed).
pub async fn reload(store: &dyn Store, verifier: &Verifier, configured: &KeyPrefix) -> Result<(), StoreError> {
    let recorded = store.key_prefixes().await?;
    verifier.set_format(recorded.format(configured));
    Ok(())
}
