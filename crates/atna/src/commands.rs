//! What each subcommand does. The CLI works on the database directly (no running server needed); a running server
//! learns about its changes through the change feed.

use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use atna_domain::{CredentialId, Email, Password, PasswordHash};
use atna_server::api::dto::Key;
use atna_server::clock;
use atna_server::service::{self, KeySpec};
use atna_server::store_url;
use atna_store::{Actor, ImportSummary, KeyQuery, NewUser, Snapshot, Store, StoreError, User, SNAPSHOT_FORMAT};
use serde_json::json;

use crate::cli::{Cli, Command, KeyCommand, UserCommand};
use crate::config;

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let resolved = config::resolve(&cli.global)?;
    // Checked before the database is opened, so a bad file or a refused overwrite touches nothing.
    let snapshot = match &cli.command {
        Command::Import { file } => Some(read_snapshot(file)?),
        Command::Export { output: Some(path), force: false } if path.exists() => {
            bail!("{} already exists; pass --force to overwrite it", path.display())
        }
        _ => None,
    };
    config::ensure_data_dir(&resolved)?;
    let mut db = resolved.db.clone();
    if matches!(cli.command, Command::Serve(_)) {
        // A node may start before its database: wait for it (a wrong URL or password still fails at once).
        db.wait = Duration::from_secs(resolved.file.database_start_wait_secs.unwrap_or(60));
    }
    let store = store_url::open(&resolved.database_url, &db).await?;
    match cli.command {
        Command::Serve(s) => serve(store, config::settings(&resolved, &s)).await,
        Command::Migrate => {
            println!("migrations applied ({} database)", store.backend());
            Ok(())
        }
        Command::User(c) => user(store.as_ref(), c).await,
        Command::Key(c) => key(store.as_ref(), c).await,
        Command::Export { output, force } => export(store.as_ref(), output.as_deref(), force).await,
        Command::Import { .. } => {
            let snap = snapshot.context("the export file was not read (a bug)")?;
            import(store.as_ref(), &snap).await
        }
    }
}

async fn serve(store: Arc<dyn Store>, settings: atna_server::Settings) -> anyhow::Result<()> {
    let backend = store.backend();
    let app = atna_server::App::build(settings.clone(), store)
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    let addr = app.local_addr();
    tracing::info!(%addr, backend, "atna listening");
    println!("atna listening on http://{addr}");
    if let Some(token) = app.setup_token() {
        println!(
            "No user exists yet. Create the first (admin) account, once, at: http://{addr}/setup?token={token} \
             (valid for 1 hour; restarting this node prints a new link and revokes this one)"
        );
    }
    app.run(shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}

fn read_password(from_stdin: bool) -> anyhow::Result<Password> {
    let text = if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).context("reading the password from stdin")?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    } else if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ")?;
        let again = rpassword::prompt_password("Password (again): ")?;
        if first != again {
            bail!("the passwords differ");
        }
        first
    } else {
        bail!("give the password on standard input with --password-stdin");
    };
    Ok(Password::new(text)?)
}

async fn find_user(store: &dyn Store, email: &str) -> anyhow::Result<User> {
    let email = Email::parse(email)?;
    store.user_by_email(&email).await?.ok_or_else(|| anyhow!("no user {email}; create one with `atna user create`"))
}

async fn user(store: &dyn Store, c: UserCommand) -> anyhow::Result<()> {
    match c {
        UserCommand::Create { email, password_stdin, admin } => {
            let email = Email::parse(&email)?;
            let password = read_password(password_stdin)?;
            let u = store
                .create_user(NewUser {
                    email,
                    password_hash: PasswordHash::hash(&password),
                    is_admin: admin,
                    created_at: clock::now(),
                })
                .await
                .map_err(|e| match e {
                    atna_store::StoreError::Conflict(_) => anyhow!("a user with this e-mail address already exists"),
                    e => e.into(),
                })?;
            println!("created user {} (id {}{})", u.email, u.id, if u.is_admin { ", admin" } else { "" });
        }
        UserCommand::List { json } => {
            let users = store.list_users().await?;
            if json {
                let v: Vec<_> = users
                    .iter()
                    .map(|u| {
                        json!({"id": u.id, "email": u.email.as_str(), "admin": u.is_admin, "disabled": u.disabled,
                               "created_at": clock::to_datetime(u.created_at)})
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                for u in users {
                    let flags = [(u.is_admin, "admin"), (u.disabled, "disabled")]
                        .iter()
                        .filter(|f| f.0)
                        .map(|f| f.1)
                        .collect::<Vec<_>>()
                        .join(",");
                    println!("{:>6}  {}  {}", u.id, u.email, flags);
                }
            }
        }
        UserCommand::Disable { email } => {
            let u = find_user(store, &email).await?;
            store.set_user_disabled(u.id, true, clock::now()).await?;
            println!("disabled {}: sessions ended, keys stop working", u.email);
        }
        UserCommand::Enable { email } => {
            let u = find_user(store, &email).await?;
            store.set_user_disabled(u.id, false, clock::now()).await?;
            println!("enabled {}", u.email);
        }
    }
    Ok(())
}

async fn key(store: &dyn Store, c: KeyCommand) -> anyhow::Result<()> {
    match c {
        KeyCommand::Create { user, name, scopes, expires_at, json } => {
            let u = find_user(store, &user).await?;
            let now = clock::now();
            let spec = KeySpec {
                once: None,
                name: &name,
                scopes: &scopes,
                expires_at: expires_at.map(|t| t.timestamp_millis()),
                grantable: None,
            };
            let (rec, secret) = service::create_key(store, u.id, Actor::Operator, spec, now).await?;
            if json {
                let mut v = serde_json::to_value(Key::new(&rec, now))?;
                v["secret"] = json!(secret.expose());
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("Credential ID:     {}", rec.id);
                println!("Credential Secret: {}", secret.expose());
                println!();
                println!("Copy the secret now and store it securely: it cannot be shown again.");
                if !rec.name.follows_convention() {
                    println!(
                        "Tip: names like <service_name>-<dd_mm_yyyy>-<hh_mm> make keys easy to identify and rotate."
                    );
                }
            }
        }
        KeyCommand::List { user, json } => {
            let u = find_user(store, &user).await?;
            let now = clock::now();
            let mut all = Vec::new();
            let mut q = KeyQuery { limit: 500, ..Default::default() };
            loop {
                let page = store.list_keys(u.id, &q).await?;
                let full = page.len() as i64 == q.limit;
                q.after = page.last().map(|k| (k.created_at, k.id));
                all.extend(page);
                if !full {
                    break;
                }
            }
            if json {
                let v: Vec<Key> = all.iter().map(|k| Key::new(k, now)).collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else if all.is_empty() {
                println!("{} has no keys", u.email);
            } else {
                println!("{:<16}  {:<20}  {:<20}  NAME", "CREDENTIAL ID", "CREATED", "LAST USED");
                for k in &all {
                    let fmt = |t: Option<i64>| {
                        t.map_or("never".to_owned(), |t| clock::to_datetime(t).format("%Y-%m-%d %H:%M UTC").to_string())
                    };
                    println!("{:<16}  {:<20}  {:<20}  {}", k.id, fmt(Some(k.created_at)), fmt(k.last_used_at), k.name);
                }
            }
        }
        KeyCommand::Delete { id } => {
            let parsed = CredentialId::parse(&id).map_err(|_| anyhow!("`{id}` is not a Credential ID"))?;
            match service::delete_key(store, None, None, &parsed, Actor::Operator, clock::now()).await? {
                Some(k) => println!("deleted key {} ({}); it no longer works", k.id, k.name),
                None => bail!("no key {id}"),
            }
        }
    }
    Ok(())
}

fn plural(n: u64, one: &str) -> String {
    format!("{n} {one}{}", if n == 1 { "" } else { "s" })
}

/// "3 users, 12 keys (2 deleted), 40 audit events".
fn describe(s: &ImportSummary) -> String {
    format!(
        "{}, {} ({} deleted), {}",
        plural(s.users, "user"),
        plural(s.keys, "key"),
        s.revoked_keys,
        plural(s.audit_events, "audit event")
    )
}

async fn export(store: &dyn Store, output: Option<&Path>, force: bool) -> anyhow::Result<()> {
    let snap = store.export_all().await?;
    let mut json = serde_json::to_string_pretty(&snap)?;
    json.push('\n');
    let to = match output {
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(json.as_bytes()).and_then(|()| out.flush()).context("writing to standard output")?;
            "standard output".to_owned()
        }
        Some(path) => {
            write_private(path, json.as_bytes(), force)?;
            path.display().to_string()
        }
    };
    eprintln!(
        "exported {} to {to}; it holds password and key hashes: keep it private, delete it once imported",
        describe(&snap.summary())
    );
    Ok(())
}

/// Writes a file only its owner can read (0600), refusing to replace an existing one unless `force`.
fn write_private(path: &Path, bytes: &[u8], force: bool) -> anyhow::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true);
    if force {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut file = opts.open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => anyhow!("{} already exists; pass --force to overwrite it", path.display()),
        _ => anyhow!(e).context(format!("cannot create {}", path.display())),
    })?;
    // A file replaced with --force keeps its old mode unless told otherwise.
    #[cfg(unix)]
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .with_context(|| format!("making {} private", path.display()))?;
    file.write_all(bytes).and_then(|()| file.sync_all()).with_context(|| format!("writing {}", path.display()))
}

/// Reads and checks an export file (`-`: standard input). Every error names the file and says what is wrong with it.
fn read_snapshot(file: &Path) -> anyhow::Result<Snapshot> {
    let (name, text) = if file == Path::new("-") {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).context("reading the export from standard input")?;
        ("standard input".to_owned(), text)
    } else {
        let name = file.display().to_string();
        let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {name}"))?;
        (name, text)
    };
    // The format first, so a file from another version gets that message rather than a confusing field error.
    let head: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| anyhow!("{name} is not an atna export file: it is not valid JSON ({e})"))?;
    match head.get("format") {
        Some(serde_json::Value::String(f)) if f == SNAPSHOT_FORMAT => {}
        Some(serde_json::Value::String(f)) => bail!(
            "{name} is in format `{f}`, but this atna reads only `{SNAPSHOT_FORMAT}`; export again with an atna that \
             writes `{SNAPSHOT_FORMAT}`"
        ),
        _ => bail!("{name} is not an atna export file: it has no \"format\": \"{SNAPSHOT_FORMAT}\" field"),
    }
    let snap: Snapshot = serde_json::from_str(&text).map_err(|e| anyhow!("{name} is not a valid atna export: {e}"))?;
    snap.check().map_err(|e| anyhow!("{name}: {e}"))?;
    Ok(snap)
}

async fn import(store: &dyn Store, snap: &Snapshot) -> anyhow::Result<()> {
    let summary = store.import_all(snap).await.map_err(|e| match e {
        StoreError::NotEmpty => anyhow!("nothing was imported: {e}"),
        e => anyhow!(e).context("nothing was imported"),
    })?;
    println!("imported {} into the {} database", describe(&summary), store.backend());
    println!("Sessions were not moved: everyone signs in again. Delete the export file now.");
    Ok(())
}
