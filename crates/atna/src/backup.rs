//! `atna backup`: a consistent copy of a running SQLite installation, the check of a copy, and re-applying after a
//! restore the deletions made since the copy was taken (docs/backups.md).

use std::io::Read;
use std::path::Path;

use anyhow::{anyhow, bail, Context};
use atna_domain::CredentialId;
use atna_server::clock;
use atna_server::service;
use atna_store::{Actor, Store};
use atna_store_sqlite::backup::{self as sqlite_backup, BackupReport, Revocations};

use crate::commands::read_snapshot;
use crate::output::outln;

/// What an operator with PostgreSQL runs instead (docs/backups.md gives the restore too).
const PG_DUMP_HINT: &str = "atna backup copies SQLite databases; for PostgreSQL use pg_dump, which takes a consistent \
     copy of a running database: pg_dump --format=custom --file=atna.dump \"$ATNA_DATABASE_URL\" (restore: see \
     docs/backups.md)";

fn is_postgres(url: &str) -> bool {
    matches!(url.split(':').next(), Some("postgres" | "postgresql"))
}

/// `atna backup --output FILE`: `VACUUM INTO` a new temporary file (mode 0600, created before anything is written
/// into it) next to FILE, synced, checked like `--verify`, then renamed into place. FILE is never half-written: it is
/// the old file or the whole copy.
pub async fn backup(database_url: &str, output: &Path, force: bool) -> anyhow::Result<()> {
    if is_postgres(database_url) {
        bail!("{PG_DUMP_HINT}");
    }
    if !database_url.starts_with("sqlite:") {
        bail!("atna backup copies SQLite databases (sqlite:PATH), not this URL");
    }
    if output.exists() && !force {
        bail!("{} already exists; pass --force to overwrite it", output.display());
    }
    let dir = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = output.file_name().ok_or_else(|| anyhow!("{} is not a file name", output.display()))?;
    // tempfile creates it with mode 0600 and a name no other file has; it is removed if anything below fails.
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{}.", name.to_string_lossy()))
        .suffix(".tmp")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a file in {}", dir.display()))?;
    sqlite_backup::backup_into(database_url, tmp.path()).await.context("backing up")?;
    std::fs::File::open(tmp.path())
        .and_then(|f| f.sync_all())
        .with_context(|| format!("writing {}", output.display()))?;
    let report = sqlite_backup::verify(tmp.path()).await.context("the copy failed its check; nothing was written")?;
    let persisted = if force { tmp.persist(output) } else { tmp.persist_noclobber(output) };
    persisted.map_err(|e| match e.error.kind() {
        std::io::ErrorKind::AlreadyExists => {
            anyhow!("{} already exists; pass --force to overwrite it", output.display())
        }
        _ => anyhow!(e.error).context(format!("cannot create {}", output.display())),
    })?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    outln!("backed up to {}: {}", output.display(), summary(&report));
    eprintln!("it holds password and key hashes: keep it private (it was created with mode 0600)");
    Ok(())
}

fn summary(r: &BackupReport) -> String {
    format!(
        "{} users, {} keys ({} deleted), {} audit events, schema {}",
        r.users,
        r.live_keys + r.deleted_keys,
        r.deleted_keys,
        r.audit_events,
        r.schema_version
    )
}

/// `atna backup --verify FILE`: opens FILE read-only and nothing else; an error (exit status 1) says what is wrong.
pub async fn verify(file: &Path) -> anyhow::Result<()> {
    let r = sqlite_backup::verify(file).await.map_err(|e| {
        let why = match e {
            atna_store::StoreError::Corrupt(m) => m,
            e => e.to_string(),
        };
        anyhow!("{} is not a usable atna backup: {why}", file.display())
    })?;
    outln!("{}: a complete atna backup (integrity check passed)", file.display());
    outln!("  schema:        {} (this atna knows {})", r.schema_version, r.known_version);
    outln!("  users:         {}", r.users);
    outln!("  keys:          {} live, {} deleted", r.live_keys, r.deleted_keys);
    let newest =
        r.newest_event_at.map(|t| format!(" (newest {})", clock::to_datetime(t).format("%Y-%m-%d %H:%M:%S UTC")));
    outln!("  audit events:  {}{}", r.audit_events, newest.unwrap_or_default());
    if r.schema_version > r.known_version {
        outln!("  note: made by a newer atna; restore it with that version or a newer one");
    } else if r.schema_version < r.known_version {
        outln!("  note: made by an older atna; this one migrates it when it first opens it");
    }
    Ok(())
}

/// The deletions recorded in SOURCE: an atna SQLite database (the old live one) or an `atna export` file.
async fn read_revocations(source: &Path) -> anyhow::Result<Revocations> {
    let mut head = [0u8; 16];
    let n = std::fs::File::open(source)
        .and_then(|mut f| f.read(&mut head))
        .with_context(|| format!("cannot read {}", source.display()))?;
    if head[..n] == b"SQLite format 3\0"[..] {
        let url = format!("sqlite://{}", source.display());
        return sqlite_backup::revocations(&url).await.with_context(|| format!("reading {}", source.display()));
    }
    let snap = read_snapshot(source)?;
    let mut out = Revocations::default();
    for k in snap.keys.iter().filter(|k| k.status == "revoked") {
        let id = CredentialId::parse(&k.id).map_err(|e| anyhow!("{}: key {}: {e}", source.display(), k.id))?;
        out.deleted_keys.push((id, k.revoked_at.unwrap_or(0)));
    }
    out.disabled_users = snap.users.iter().filter(|u| u.disabled).map(|u| u.email.clone()).collect();
    Ok(out)
}

/// `atna backup --reapply-deletions-from SOURCE`: on this (restored) database, deletes every key deleted in SOURCE
/// and disables every user disabled there. Running servers learn it through the change feed, as with `atna key
/// delete`. Keys created after the backup are not in it and cannot come back; nothing here creates anything.
pub async fn reapply_deletions(store: &dyn Store, source: &Path) -> anyhow::Result<()> {
    let revs = read_revocations(source).await?;
    let now = clock::now();
    let mut keys = 0;
    for (id, _) in &revs.deleted_keys {
        if let Some(k) = service::delete_key(store, None, None, id, &Actor::Operator.into(), now).await? {
            outln!("deleted key {} ({}): it is deleted in {}", k.id, k.name, source.display());
            keys += 1;
        }
    }
    let mut users = 0;
    for email in &revs.disabled_users {
        let Ok(email) = atna_domain::Email::parse(email) else { continue };
        if let Some(u) = store.user_by_email(&email).await? {
            if !u.disabled {
                store.set_user_disabled(u.id, true, now).await?;
                outln!("disabled user {}: disabled in {}", u.email, source.display());
                users += 1;
            }
        }
    }
    outln!(
        "re-applied {keys} key deletions and {users} user disablements from {} ({} deleted keys and {} disabled users \
         there)",
        source.display(),
        revs.deleted_keys.len(),
        revs.disabled_users.len()
    );
    Ok(())
}
