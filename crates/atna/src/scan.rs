//! `atna scan`: finds keys in files and git history (the `atna-scan` crate), and with `--check` asks the store or a
//! running atna whether they are live, and with `--revoke` revokes the live ones.
//!
//! Exit status: 0 when no key was found, 1 when one was, 2 when the scan could not be done in full (a path that
//! cannot be read, a broken repository, a store or server that cannot be asked): a CI step or a pre-commit hook fails
//! either way, and 2 tells "look at the tool" from "look at the code".

use std::collections::HashMap;
use std::process::ExitCode;

use anyhow::{bail, Context};
use atna_domain::{KeyFormat, KeyStatus};
use atna_scan::report::{self, Format};
use atna_scan::{FoundKey, KeyState, Options, Report};
use atna_server::{clock, service, store_url};
use atna_store::{Actor, Store};
use serde::Deserialize;

use crate::cli::{Global, Scan};
use crate::config;
use crate::output::write_stdout;

/// Runs the command and decides the exit status.
pub async fn run(global: &Global, args: Scan) -> ExitCode {
    match scan(global, &args).await {
        Ok(report) => {
            let format = if args.json {
                Format::Json
            } else if args.sarif {
                Format::Sarif
            } else {
                Format::Text
            };
            write_stdout(report::render(&report, format, env!("CARGO_PKG_VERSION")).as_bytes());
            for s in &report.skipped {
                eprintln!("skipped: {}: {}", s.path, s.reason);
            }
            for e in &report.errors {
                eprintln!("error: {e}");
            }
            eprintln!("{}", report::summary(&report));
            if !report.errors.is_empty() {
                ExitCode::from(2)
            } else if !report.findings.is_empty() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("error: {}", crate::output::describe(&e));
            ExitCode::from(2)
        }
    }
}

async fn scan(global: &Global, args: &Scan) -> anyhow::Result<Report> {
    if args.revoke && !args.check {
        bail!("--revoke needs --check");
    }
    if args.max_size_mib == 0 {
        bail!("--max-size must be at least 1 (MiB)");
    }
    let opts = Options { max_size: args.max_size_mib.saturating_mul(1024 * 1024), threads: args.threads };
    let paths = if args.paths.is_empty() { vec![".".into()] } else { args.paths.clone() };
    let (files, history) = {
        let opts = opts.clone();
        let git = args.git;
        tokio::task::spawn_blocking(move || {
            let files = atna_scan::files::scan(&paths, &opts)?;
            let history = if git { Some(atna_scan::git::scan_all(&paths, &opts)?) } else { None };
            Ok::<_, atna_scan::ScanError>((files, history))
        })
        .await
        .context("the scan stopped")??
    };
    let mut report = files;
    if let Some(h) = history {
        report.merge(h);
    }
    if args.check && !report.findings.is_empty() {
        check(global, args, &mut report).await?;
    }
    Ok(report)
}

/// Sets each finding's status, revoking live keys with `--revoke`.
async fn check(global: &Global, args: &Scan, report: &mut Report) -> anyhow::Result<()> {
    let mut keys: Vec<FoundKey> = report.findings.iter().map(|f| f.key.clone()).collect();
    keys.sort_by(|a, b| a.expose().cmp(b.expose()));
    keys.dedup();
    let states = match &args.server {
        Some(url) => check_server(url, &keys, args.revoke).await?,
        None => check_store(global, &keys, args.revoke).await?,
    };
    for f in &mut report.findings {
        f.status = states.get(f.key.expose()).copied();
    }
    Ok(())
}

/// Asks the local store (the database the other commands use). Counts no use.
async fn check_store(global: &Global, keys: &[FoundKey], revoke: bool) -> anyhow::Result<HashMap<String, KeyState>> {
    let resolved = config::resolve(global)?;
    config::require_database(&resolved)?;
    let store = store_url::open(&resolved.database_url, &resolved.db).await?;
    // The prefixes this installation issued (as the verifier knows them): a key of another prefix is none of its keys.
    let format = store.key_prefixes().await?.format(&resolved.key_prefix);
    let mut out = HashMap::new();
    for key in keys {
        let state = store_state(store.as_ref(), &format, key).await?;
        let state = if revoke && state == KeyState::Live {
            let id = key.id();
            match service::delete_key(store.as_ref(), None, None, &id, &Actor::Operator.into(), clock::now()).await? {
                Some(_) => KeyState::Revoked,
                None => KeyState::Deleted,
            }
        } else {
            state
        };
        out.insert(key.expose().to_owned(), state);
    }
    Ok(out)
}

async fn store_state(store: &dyn Store, format: &KeyFormat, key: &FoundKey) -> anyhow::Result<KeyState> {
    // A key of another prefix than this installation issued is not one of its keys.
    let Ok(parsed) = format.parse(key.expose()) else { return Ok(KeyState::Unknown) };
    Ok(match store.auth_record(&parsed.id).await? {
        Some(rec) if rec.hash.matches(&parsed.hash()) => {
            if rec.key.status == KeyStatus::Revoked {
                KeyState::Deleted
            } else {
                KeyState::Live
            }
        }
        _ => KeyState::Unknown,
    })
}

#[derive(Deserialize)]
struct Statuses {
    keys: Vec<ServerStatus>,
}

#[derive(Deserialize)]
struct ServerStatus {
    status: KeyState,
}

/// Asks a running atna (`POST /v1/credentials/status`, then `/v1/credentials/revoke` for the live ones).
async fn check_server(url: &str, keys: &[FoundKey], revoke: bool) -> anyhow::Result<HashMap<String, KeyState>> {
    let base = url.trim_end_matches('/');
    if !(base.starts_with("http://") || base.starts_with("https://")) {
        bail!("--server must be an http:// or https:// URL");
    }
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .context("building the HTTP client")?;
    let mut out = HashMap::new();
    for chunk in keys.chunks(1000) {
        let body = serde_json::json!({ "keys": chunk.iter().map(FoundKey::expose).collect::<Vec<_>>() });
        let res = client
            .post(format!("{base}/v1/credentials/status"))
            .json(&body)
            .send()
            .await
            .with_context(|| format!("asking {base}"))?;
        let status = res.status();
        if !status.is_success() {
            let text = res.text().await.unwrap_or_default();
            bail!("{base}/v1/credentials/status answered {status}: {}", text.chars().take(300).collect::<String>());
        }
        let answer: Statuses = res.json().await.context("reading the status answer")?;
        if answer.keys.len() != chunk.len() {
            bail!("{base} answered for {} keys, not {}", answer.keys.len(), chunk.len());
        }
        let mut live = Vec::new();
        for (key, s) in chunk.iter().zip(answer.keys) {
            if s.status == KeyState::Live {
                live.push(key.expose());
            }
            out.insert(key.expose().to_owned(), s.status);
        }
        if revoke && !live.is_empty() {
            let res = client
                .post(format!("{base}/v1/credentials/revoke"))
                .json(&serde_json::json!({ "keys": live }))
                .send()
                .await
                .with_context(|| format!("revoking at {base}"))?;
            if res.status() != reqwest::StatusCode::ACCEPTED {
                bail!("{base}/v1/credentials/revoke answered {}", res.status());
            }
            for k in live {
                out.insert(k.to_owned(), KeyState::Revoked);
            }
        }
    }
    Ok(out)
}
