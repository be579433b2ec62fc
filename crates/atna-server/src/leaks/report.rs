//! What a leak report does: find which tokens are keys of this installation (format, prefix and checksum offline,
//! then one batched read and a constant-time hash compare), apply the leak action to them in one transaction, forget
//! changed keys on this node (other nodes learn from the change feed), and log each one.

use std::collections::HashMap;

use atna_domain::{KeyFormat, SecretHash};
use atna_store::{LeakOutcome, NewLeakReport};
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::AppState;

/// The longest source URL kept (longer ones are cut, on a character boundary).
const MAX_URL: usize = 2048;

/// One token in GitHub's report.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
pub struct GithubToken {
    pub token: String,
    #[serde(rename = "type")]
    pub token_type: String,
    /// Where it was found.
    #[serde(default)]
    pub url: Option<String>,
    /// What kind of place (`content`, `commit`, `npm`, …).
    #[serde(default)]
    pub source: Option<String>,
}

/// One token in GitLab's partner report.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
pub struct GitlabToken {
    #[serde(rename = "type")]
    pub token_type: String,
    pub token: String,
    #[serde(default)]
    pub url: Option<String>,
}

/// One token in self-managed GitLab's revocation request.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
pub struct RevokeToken {
    #[serde(rename = "type")]
    pub token_type: String,
    pub token: String,
    #[serde(default)]
    pub location: Option<String>,
}

/// GitHub's feedback for one token.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Feedback {
    /// SHA-256 of the token, lowercase hex.
    pub token_hash: String,
    pub token_type: String,
    /// `true_positive` (a key of this installation, live or not) or `false_positive`.
    pub label: &'static str,
}

/// The `type` values self-managed GitLab may send.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct RevocableTokenTypes {
    pub types: Vec<String>,
}

impl RevocableTokenTypes {
    /// GitLab names a type after the secret-detection rule that found it (`gitleaks_rule_id_` + the rule's ID); the
    /// rule `atna key-format --gitleaks` prints is `<prefix>-api-key`. Any type is accepted: the token decides.
    pub fn of(format: &KeyFormat) -> Self {
        Self { types: format.prefixes().iter().map(|p| format!("gitleaks_rule_id_{p}-api-key")).collect() }
    }
}

/// GitHub's feedback: one label per token, in order.
pub fn feedback(tokens: &[GithubToken], labels: &[bool]) -> Vec<Feedback> {
    tokens
        .iter()
        .zip(labels)
        .map(|(t, &hit)| Feedback {
            token_hash: SecretHash::from_slice(&Sha256::digest(t.token.as_bytes()))
                .map(|h| h.to_hex())
                .unwrap_or_default(),
            token_type: t.token_type.clone(),
            label: if hit { "true_positive" } else { "false_positive" },
        })
        .collect()
}

fn cut(url: &str) -> String {
    let mut end = url.len().min(MAX_URL);
    while !url.is_char_boundary(end) {
        end -= 1;
    }
    url[..end].to_owned()
}

/// Acts on reported `(token, url)` pairs; returns, per pair, whether the token is a key of this installation.
pub async fn act(state: &AppState, source: &'static str, found: &[(&str, &str)]) -> Result<Vec<bool>, ApiError> {
    let format = state.verifier.format();
    let parsed: Vec<_> = found.iter().map(|(token, _)| format.parse(token).ok()).collect();
    let ids: Vec<_> = parsed.iter().flatten().map(|p| p.id).collect();
    let records: HashMap<_, _> = if ids.is_empty() {
        HashMap::new()
    } else {
        state.store.auth_records(&ids).await?.into_iter().map(|a| (a.key.id, a)).collect()
    };
    let mut labels = Vec::with_capacity(found.len());
    let mut reports = Vec::new();
    for ((_, url), p) in found.iter().zip(&parsed) {
        let hit = p.as_ref().and_then(|p| records.get(&p.id).filter(|a| a.hash.matches(&p.hash())));
        labels.push(hit.is_some());
        if let Some(a) = hit {
            reports.push(NewLeakReport { key: a.key.id, source, url: cut(url) });
        }
    }
    let misses = labels.iter().filter(|h| !**h).count();
    if !reports.is_empty() {
        let now = crate::clock::now();
        let outcomes = state.store.record_leaks(&reports, state.settings.leaks.action, now).await?;
        for ((rec, outcome), r) in outcomes.iter().zip(&reports) {
            if matches!(outcome, LeakOutcome::Revoked | LeakOutcome::Disabled) {
                state.verifier.evict(&rec.id);
            }
            if *outcome != LeakOutcome::Replayed {
                tracing::warn!(
                    target: "atna::leaks",
                    scanner = source,
                    key_id = %rec.id,
                    owner = rec.owner.0,
                    url = %r.url,
                    outcome = outcome.as_str(),
                    action = state.settings.leaks.action.as_str(),
                    "key found in public"
                );
                // The owner is told at once (e-mail, webhooks), whatever the action was.
                state.notifier.enqueue_logged(rec, atna_domain::ReminderKind::Leaked, now).await;
            }
        }
    }
    tracing::info!(target: "atna::leaks", scanner = source, tokens = found.len(), keys = found.len() - misses, "leak report handled");
    Ok(labels)
}
