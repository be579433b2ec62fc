//! What each subcommand does. The CLI works on the database directly (no running server needed); a running server
//! learns about its changes through the change feed.

use std::io::{BufRead, IsTerminal, Read};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use atna_domain::lifecycle::shown_status;
use atna_domain::{CredentialId, Email, ParsedKey, Password, PasswordHash};
use atna_server::api::dto::{Key, UsageSeries};
use atna_server::lifecycle::{self, KeyChanges, RollSpec};
use atna_server::service::{self, KeySpec};
use atna_server::store_url;
use atna_server::{clock, timeline};
use atna_store::{
    audit_kind, Actor, AuditQuery, Granularity, ImportSummary, KeyFilter, KeyQuery, NewAuditEvent, NewUser, Snapshot,
    Store, StoreError, User, Who, SNAPSHOT_FORMAT,
};
use serde_json::json;

use crate::cli::{Cli, Command, KeyCommand, KeyPrefixCommand, UserCommand};
use crate::output::{self, outln, write_stdout};
use crate::{backup, config, files};

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    // Checking a backup opens that file only: no configuration, no database.
    if let Command::Backup(b) = &cli.command {
        if let Some(file) = &b.verify {
            return backup::verify(file).await;
        }
    }
    let resolved = config::resolve(&cli.global)?;
    if let Command::Backup(b) = &cli.command {
        if let Some(output) = &b.output {
            config::require_database(&resolved)?;
            return backup::backup(&resolved.database_url, output, b.force).await;
        }
    }
    // Checked before the database is opened, so a bad file or a refused overwrite touches nothing.
    let snapshot = match &cli.command {
        Command::Import { file } => Some(read_snapshot(file)?),
        Command::Export { output: Some(path), force: false } if path.exists() => {
            bail!("{} already exists; pass --force to overwrite it", path.display())
        }
        _ => None,
    };
    // Only these make a database where there is none; the others need one, so a wrong folder is an error, not a
    // new empty database that makes `user list` print nothing.
    let creates = matches!(
        cli.command,
        Command::Serve(_) | Command::Migrate | Command::Import { .. } | Command::User(UserCommand::Create { .. })
    );
    if !creates {
        config::require_database(&resolved)?;
    }
    // Resolved (a host name looked up) before the database is touched, so a bad address changes nothing.
    let settings = match &cli.command {
        Command::Serve(s) => Some(config::settings(&resolved, s)?),
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
        Command::Serve(_) => serve(store, settings.context("the settings were not resolved (a bug)")?).await,
        Command::Migrate => {
            outln!("migrations applied ({} database)", store.backend());
            Ok(())
        }
        Command::User(c) => user(store.as_ref(), c).await,
        Command::Key(c) => {
            // The first command to issue a key records the configured prefix, as a first start would.
            if matches!(c, KeyCommand::Create { .. }) {
                store.init_key_prefix(&resolved.key_prefix, clock::now()).await?;
            }
            key(store, c, &resolved.file).await
        }
        Command::KeyPrefix(c) => key_prefix(store.as_ref(), &resolved.key_prefix, c).await,
        Command::KeyFormat { gitleaks, trufflehog, github_pattern } => {
            let format = store.key_prefixes().await?.format(&resolved.key_prefix);
            let text = if gitleaks {
                atna_domain::scanner_rules::gitleaks(&format)
            } else if trufflehog {
                atna_domain::scanner_rules::trufflehog(&format)
            } else if github_pattern {
                atna_domain::scanner_rules::github_pattern(&format)
            } else {
                format!("{}\n", format.regex())
            };
            write_stdout(text.as_bytes());
            Ok(())
        }
        Command::Audit { user, since, kind, key, limit, json } => {
            audit(store.as_ref(), user.as_deref(), since, kind, key.as_deref(), limit, json).await
        }
        Command::Export { output, force } => export(store.as_ref(), output.as_deref(), force).await,
        // main runs it: it has exit statuses of its own.
        Command::Scan(_) => bail!("`atna scan` is not run here (a bug)"),
        Command::Import { .. } => {
            let snap = snapshot.context("the export file was not read (a bug)")?;
            import(store.as_ref(), &snap).await
        }
        Command::Backup(b) => {
            let source = b.reapply_deletions_from.context("no backup action (a bug)")?;
            backup::reapply_deletions(store.as_ref(), &source).await
        }
    }
}

async fn key_prefix(store: &dyn Store, configured: &atna_domain::KeyPrefix, c: KeyPrefixCommand) -> anyhow::Result<()> {
    match c {
        KeyPrefixCommand::Show => {
            let p = store.key_prefixes().await?;
            match &p.current {
                Some(current) => outln!("current: {current}"),
                None => outln!("current: {configured} (configured; recorded at the first start)"),
            }
            let issued: Vec<&str> = p.issued.iter().map(|p| p.as_str()).collect();
            outln!("issued:  {}", if issued.is_empty() { "(none yet)".to_owned() } else { issued.join(", ") });
            if p.current.as_ref().is_some_and(|c| c != configured) {
                outln!("note: key_prefix is configured as {configured}; new keys get the recorded one");
            }
        }
        KeyPrefixCommand::Set { prefix } => {
            let change = store.set_key_prefix(&prefix, clock::now()).await?;
            if change.unchanged {
                outln!("the key prefix already is {prefix}; nothing changed");
            } else {
                let was = change.previous.map_or_else(|| "none".to_owned(), |p| p.to_string());
                outln!(
                    "new keys now start with {prefix}_ (was {was}); keys issued before keep working. Running servers \
                     pick it up from the change feed."
                );
                if &prefix != configured {
                    outln!("note: set key_prefix = \"{prefix}\" in the configuration too, or nodes warn at start");
                }
                outln!("print the scanner rules again: atna key-format --gitleaks");
            }
        }
    }
    Ok(())
}

async fn serve(store: Arc<dyn Store>, settings: atna_server::Settings) -> anyhow::Result<()> {
    let backend = store.backend();
    let stop = shutdown_signal()?;
    let app = atna_server::App::build(settings.clone(), store)
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    let addr = app.local_addr();
    tracing::info!(%addr, backend, "atna listening");
    // A server keeps serving when nobody reads its standard output any more: its address is in the log too.
    let mut text = format!("atna listening on http://{addr}\n");
    if let Some(token) = app.setup_token() {
        text += &format!(
            "No user exists yet. Create the first (admin) account, once, at: http://{addr}/setup?token={token} \
             (valid for 1 hour; restarting this node prints a new link and revokes this one)\n"
        );
    }
    if let (Some(proxy), Some(p)) = (app.proxy_addr(), &settings.proxy) {
        tracing::info!(%proxy, upstream = %p.upstream, "atna proxy listening");
        text += &format!("atna proxy listening on http://{proxy} (upstream {})\n", p.upstream);
    }
    if let Err(e) = output::try_write_stdout(text.as_bytes()) {
        tracing::warn!(error = %e, "could not print the address (and setup link) on standard output");
    }
    app.run(stop).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C. The handlers are installed when this is called, not when it is first polled: a
/// SIGTERM sent as soon as the address is printed (by a supervisor or a test) must stop the server gracefully, not
/// kill it with the default action.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    let stopped = {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
        async move {
            tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        }
    };
    #[cfg(not(unix))]
    let stopped = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    Ok(async move {
        stopped.await;
        tracing::info!("shutting down");
    })
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
            user_event(store, audit_kind::USER_CREATED, &u).await?;
            outln!("created user {} (id {}{})", u.email, u.id, if u.is_admin { ", admin" } else { "" });
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
                outln!("{}", serde_json::to_string_pretty(&v)?);
            } else if users.is_empty() {
                outln!("no users yet; create one with `atna user create`");
            } else {
                outln!("{:>6}  {:<40}  FLAGS", "ID", "E-MAIL");
                for u in users {
                    let flags = [(u.is_admin, "admin"), (u.disabled, "disabled")]
                        .iter()
                        .filter(|f| f.0)
                        .map(|f| f.1)
                        .collect::<Vec<_>>()
                        .join(",");
                    outln!("{:>6}  {:<40}  {}", u.id, u.email, flags);
                }
            }
        }
        UserCommand::Disable { email, force } => {
            let u = find_user(store, &email).await?;
            // Refused rather than warned about: afterwards nobody can manage users in the dashboard, and a warning
            // is easy to miss in a script. The CLI can always undo it, hence --force rather than a hard rule.
            if u.is_admin && !u.disabled && !force {
                let admins = store.list_users().await?.iter().filter(|o| o.is_admin && !o.disabled).count();
                if admins <= 1 {
                    bail!(
                        "{} is the last enabled administrator: disabled, nobody could manage users in the dashboard; \
                         make another administrator first, or pass --force (undo with `atna user enable`)",
                        u.email
                    );
                }
            }
            store.set_user_disabled(u.id, true, clock::now()).await?;
            user_event(store, audit_kind::USER_DISABLED, &u).await?;
            outln!("disabled {}: sessions ended, keys stop working", u.email);
        }
        UserCommand::Enable { email } => {
            let u = find_user(store, &email).await?;
            store.set_user_disabled(u.id, false, clock::now()).await?;
            user_event(store, audit_kind::USER_ENABLED, &u).await?;
            outln!("enabled {}", u.email);
        }
    }
    Ok(())
}

/// `--rate-limit 100/60s` as the API's rule.
fn rate_limit_arg(s: &str) -> anyhow::Result<atna_server::api::dto::RateLimitRule> {
    atna_domain::RateLimit::parse_spec(s)
        .map_err(|e| anyhow::anyhow!("--rate-limit {s}: {e}"))
        .map(atna_server::api::dto::RateLimitRule::of)
}

/// `--quota N [--quota-refill daily|monthly [--quota-refill-amount N]]` as the API's rule.
fn quota_arg(remaining: i64, refill: Option<String>, amount: Option<i64>) -> atna_server::api::dto::QuotaRule {
    atna_server::api::dto::QuotaRule {
        remaining,
        refill: refill
            .map(|interval| atna_server::api::dto::QuotaRefill { amount: amount.unwrap_or(remaining), interval }),
    }
}

async fn key(shared: Arc<dyn Store>, c: KeyCommand, file: &config::FileConfig) -> anyhow::Result<()> {
    let store = shared.as_ref();
    match c {
        KeyCommand::Create {
            user,
            name,
            scopes,
            expires_at,
            allow_ip,
            rate_limit,
            quota,
            quota_refill,
            quota_refill_amount,
            json,
        } => {
            let rate_limit = rate_limit.as_deref().map(rate_limit_arg).transpose()?;
            let quota = quota.map(|remaining| quota_arg(remaining, quota_refill, quota_refill_amount));
            let u = find_user(store, &user).await?;
            if u.disabled {
                eprintln!(
                    "warning: {} is disabled: this key will not work until `atna user enable {}`",
                    u.email, u.email
                );
            }
            let now = clock::now();
            let spec = KeySpec {
                rate_limit,
                quota: quota.as_ref(),
                once: None,
                name: &name,
                scopes: &scopes,
                expires_at: expires_at.map(|t| t.timestamp_millis()),
                ip_allowlist: &allow_ip,
                by_key: None,
            };
            // The installation's policy holds here too: no expiry given is its default, beyond its maximum is refused.
            let policy = config::policy(file)?;
            let lifetime = service::Lifetime { policy: &policy, never: false };
            let (rec, secret) = service::create_key_under(store, u.id, Actor::Operator, spec, lifetime, now, |r, s| {
                (r.clone(), s.clone())
            })
            .await?;
            if json {
                let mut v = serde_json::to_value(Key::under(&rec, now, &policy))?;
                v["secret"] = json!(secret.expose());
                outln!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                outln!("Credential ID:     {}", rec.id);
                outln!("Credential Secret: {}", secret.expose());
                if !rec.rules.ip_allowlist.is_empty() {
                    outln!("Allowed from:      {}", rec.rules.ip_allowlist);
                }
                if let Some(rl) = rec.rules.rate_limit {
                    outln!("Rate limit:        {rl}");
                }
                if let Some(q) = rec.rules.quota {
                    outln!("Quota:             {}", q.describe(now));
                }
                outln!();
                outln!("Copy the secret now and store it securely: it cannot be shown again.");
                if !rec.name.follows_convention() {
                    outln!(
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
                let policy = config::policy(file)?;
                let v: Vec<Key> = all.iter().map(|k| Key::under(k, now, &policy)).collect();
                outln!("{}", serde_json::to_string_pretty(&v)?);
            } else if all.is_empty() {
                outln!("{} has no keys", u.email);
            } else {
                outln!(
                    "{:<16}  {:<7}  {:<20}  {:<20}  {:<20}  {:<20}  {:<20}  {:<12}  {:<20}  NAME",
                    "CREDENTIAL ID",
                    "STATUS",
                    "CREATED",
                    "EXPIRES",
                    "LAST USED",
                    "SCOPES",
                    "ALLOWED FROM",
                    "RATE LIMIT",
                    "QUOTA"
                );
                for k in &all {
                    let fmt = |t: Option<i64>, none: &str| {
                        t.map_or(none.to_owned(), |t| clock::to_datetime(t).format("%Y-%m-%d %H:%M UTC").to_string())
                    };
                    let scopes = if k.scopes.is_empty() {
                        "-".to_owned()
                    } else {
                        k.scopes.iter().collect::<Vec<_>>().join(",")
                    };
                    // The first range and how many more, like the dashboard's list.
                    let allowed = match k.rules.ip_allowlist.ranges() {
                        [] => "anywhere".to_owned(),
                        [one] => one.to_string(),
                        [first, rest @ ..] => format!("{first} +{}", rest.len()),
                    };
                    let rate = k.rules.rate_limit.map_or("none".to_owned(), |r| r.to_string());
                    // "1,234 of 10,000 left" without its refill, which only the JSON and the dashboard say.
                    let quota = k.rules.quota.map_or("none".to_owned(), |q| {
                        let mut d = q.describe(now);
                        d.truncate(d.find(", refilled").unwrap_or(d.len()));
                        d
                    });
                    outln!(
                        "{:<16}  {:<7}  {:<20}  {:<20}  {:<20}  {:<20}  {:<20}  {:<12}  {:<20}  {}",
                        k.id,
                        shown_status(k.status, k.expires_at, now),
                        fmt(Some(k.created_at), ""),
                        fmt(k.expires_at, "never"),
                        fmt(k.last_used_at, "never"),
                        scopes,
                        allowed,
                        rate,
                        quota,
                        k.name
                    );
                }
            }
        }
        KeyCommand::Usage { id, days, hourly, json } => {
            let id = credential_id_of(&id)?;
            let Some(a) = store.auth_record(&id).await? else { bail!("no key {id}") };
            let now = clock::now();
            let g = if hourly { Granularity::Hour } else { Granularity::Day };
            let to = g.floor(now) + g.millis();
            let from = Granularity::Day.floor(now) - (i64::from(days) - 1) * Granularity::Day.millis();
            let buckets = timeline::series(store, None, &id, g, from, to).await?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&UsageSeries::new(g, buckets))?);
            } else {
                outln!(
                    "Usage of {} ({}) per {}, last {} (UTC): █ allowed, ░ refused",
                    a.key.name,
                    id,
                    g.as_str(),
                    plural(u64::from(days), "day")
                );
                for line in crate::output::usage_chart(&buckets, g) {
                    outln!("{line}");
                }
            }
        }
        KeyCommand::Delete { id } => {
            let parsed = credential_id_of(&id)?;
            let now = clock::now();
            match service::delete_key(store, None, None, &parsed, &Actor::Operator.into(), now).await? {
                Some(k) => {
                    // The owner hears of it in their next digest (a running server sends it).
                    let notifier = atna_server::notify::Notifier::new(shared.clone(), config::notify(file)?);
                    notifier.enqueue_logged(&k, atna_domain::ReminderKind::Deleted, now).await;
                    outln!("deleted key {} ({}); it no longer works", k.id, k.name)
                }
                None => bail!("no key {parsed}"),
            }
        }
        KeyCommand::Roll { id, overlap, json } => {
            let id = credential_id_of(&id)?;
            let now = clock::now();
            let policy = config::policy(file)?;
            let spec = RollSpec { overlap_secs: overlap, name: None, by_key: None, once: None, policy: &policy };
            let who: Who = Actor::Operator.into();
            let present =
                |old: &atna_store::KeyRecord, new: &atna_store::KeyRecord, secret: &atna_domain::ApiKeySecret| {
                    (old.clone(), new.clone(), secret.clone())
                };
            let ((old, new, secret), _) =
                lifecycle::roll_key(store, None, None, &id, who, spec, now, present).await.map_err(lifecycle_error)?;
            // The owner hears of it in their next digest (a running server sends it).
            let notifier = atna_server::notify::Notifier::new(shared.clone(), config::notify(file)?);
            notifier.enqueue_logged(&old, atna_domain::ReminderKind::Rolled, now).await;
            if json {
                let mut v = serde_json::to_value(Key::new(&new, now))?;
                v["secret"] = json!(secret.expose());
                v["old_key"] = serde_json::to_value(Key::new(&old, now))?;
                outln!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                outln!("Credential ID:     {}", new.id);
                outln!("Credential Secret: {}", secret.expose());
                outln!("Name:              {}", new.name);
                outln!();
                let until = old.expires_at.map_or_else(|| "never".into(), |t| clock::to_datetime(t).to_rfc3339());
                outln!("The old key {} ({}) keeps working until {until}.", old.id, old.name);
                outln!(
                    "Copy the secret now and store it securely: it cannot be shown again. Move your services to it."
                );
            }
        }
        KeyCommand::Disable { id } => {
            let id = credential_id_of(&id)?;
            let k = lifecycle::set_key_status(store, None, None, &id, true, &Actor::Operator.into(), clock::now())
                .await
                .map_err(lifecycle_error)?;
            outln!(
                "disabled key {} ({}); running servers refuse it at once (`atna key enable {}` undoes it)",
                k.id,
                k.name,
                k.id
            );
        }
        KeyCommand::Enable { id } => {
            let id = credential_id_of(&id)?;
            let k = lifecycle::set_key_status(store, None, None, &id, false, &Actor::Operator.into(), clock::now())
                .await
                .map_err(lifecycle_error)?;
            outln!("enabled key {} ({})", k.id, k.name);
        }
        KeyCommand::Update {
            id,
            name,
            scopes,
            no_scopes,
            expires_at,
            no_expiry,
            allow_ip,
            allow_anywhere,
            rate_limit,
            no_rate_limit,
            quota,
            quota_refill,
            quota_refill_amount,
            no_quota,
            json,
        } => {
            let id = credential_id_of(&id)?;
            let changes = KeyChanges {
                name,
                scopes: (no_scopes || !scopes.is_empty()).then_some(scopes),
                expires_at: if no_expiry { Some(None) } else { expires_at.map(|t| Some(t.timestamp_millis())) },
                ip_allowlist: if allow_anywhere {
                    Some(None)
                } else {
                    (!allow_ip.is_empty()).then_some(Some(allow_ip))
                },
                status: None,
                rate_limit: if no_rate_limit {
                    Some(None)
                } else {
                    rate_limit.as_deref().map(rate_limit_arg).transpose()?.map(Some)
                },
                quota: if no_quota {
                    Some(None)
                } else {
                    quota.map(|q| Some(quota_arg(q, quota_refill, quota_refill_amount)))
                },
            };
            let now = clock::now();
            let policy = config::policy(file)?;
            let who = Actor::Operator.into();
            let k = lifecycle::update_key(store, None, None, &id, changes, &who, None, &policy, now)
                .await
                .map_err(lifecycle_error)?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&Key::new(&k, now))?);
            } else {
                outln!("updated key {} ({})", k.id, k.name);
            }
        }
        KeyCommand::RevokeAll { user, created_before, dry_run, json } => {
            let owner = match &user {
                Some(e) => Some(find_user(store, e).await?),
                None => None,
            };
            let now = clock::now();
            let filter = KeyFilter {
                owner: owner.as_ref().map(|u| u.id),
                created_before: created_before.map(|t| t.timestamp_millis()),
            };
            let preview = lifecycle::preview_revoke(store, None, &filter, now).await?;
            let n = preview.keys.len();
            if dry_run {
                if json {
                    let keys: Vec<Key> = preview.keys.iter().map(|k| Key::new(k, now)).collect();
                    let v = json!({"count": n, "used_last_day": preview.used_last_day,
                                   "used_last_week": preview.used_last_week, "keys": keys});
                    outln!("{}", serde_json::to_string_pretty(&v)?);
                } else {
                    outln!(
                        "would revoke {} ({} used in the last day, {} in the last week):",
                        plural(n as u64, "key"),
                        preview.used_last_day,
                        preview.used_last_week
                    );
                    for k in &preview.keys {
                        let used = k.last_used_at.map_or_else(
                            || "never used".to_owned(),
                            |t| format!("last used {}", clock::to_datetime(t).format("%Y-%m-%d %H:%M UTC")),
                        );
                        outln!("  {}  {}  (owner {}, {used})", k.id, k.name, k.owner);
                    }
                }
                return Ok(());
            }
            let mut detail = serde_json::Map::new();
            if let Some(u) = &owner {
                detail.insert("user".into(), json!(u.email.as_str()));
            }
            if let Some(t) = created_before {
                detail.insert("created_before".into(), json!(t.to_rfc3339()));
            }
            let filter = lifecycle::as_previewed(filter, now);
            let gone = lifecycle::revoke_all(store, None, &filter, detail, &Actor::Operator.into(), now).await?;
            if json {
                let ids: Vec<String> = gone.iter().map(|k| k.id.to_string()).collect();
                outln!("{}", serde_json::to_string_pretty(&json!({"revoked": gone.len(), "keys": ids}))?);
            } else {
                outln!("revoked {}; running servers refuse them at once", plural(gone.len() as u64, "key"));
            }
        }
    }
    Ok(())
}

/// A lifecycle error as the command line says it.
fn lifecycle_error(e: lifecycle::LifecycleError) -> anyhow::Error {
    match e {
        lifecycle::LifecycleError::NoSuchKey => anyhow!("no such key (or it was deleted)"),
        e => anyhow!("{e}"),
    }
}

/// Records a user event done by the operator.
async fn user_event(store: &dyn Store, action: &'static str, u: &User) -> anyhow::Result<()> {
    let event = NewAuditEvent {
        at: clock::now(),
        owner: u.id,
        who: Actor::Operator.into(),
        action,
        key_id: None,
        key_name: None,
        detail: Some(json!({ "email": u.email.as_str() }).to_string()),
    };
    store.append_audit(&event).await?;
    Ok(())
}

/// `atna audit`: pages through the trail, newest first, printing as it goes.
async fn audit(
    store: &dyn Store,
    user: Option<&str>,
    since: Option<chrono::DateTime<chrono::Utc>>,
    kind: Option<String>,
    key: Option<&str>,
    limit: Option<i64>,
    json_lines: bool,
) -> anyhow::Result<()> {
    let owner = match user {
        Some(e) => Some(find_user(store, e).await?.id),
        None => None,
    };
    let key = key.map(credential_id_of).transpose()?;
    let emails: std::collections::HashMap<i64, String> =
        store.list_users().await?.into_iter().map(|u| (u.id.0, u.email.to_string())).collect();
    let mut left = limit.unwrap_or(i64::MAX);
    let mut q = AuditQuery {
        owner,
        key,
        action: kind,
        since: since.map(|t| t.timestamp_millis()),
        until: None,
        after: None,
        limit: 500,
    };
    if !json_lines {
        outln!("{:<24}  {:<22}  {:<30}  {:<30}  {:<16}  {:<15}  DETAIL", "AT", "KIND", "BY", "USER", "KEY", "IP");
    }
    while left > 0 {
        q.limit = left.min(500);
        let page = store.audit_page(&q).await?;
        for e in &page {
            let j = atna_server::audit::AuditEventJson::new(e);
            if json_lines {
                let mut v = serde_json::to_value(&j)?;
                if let Some(u) = j.user_id.and_then(|u| emails.get(&u)) {
                    v["user_email"] = json!(u);
                }
                outln!("{}", serde_json::to_string(&v)?);
            } else {
                let by = match e.actor {
                    Actor::Operator => "operator".to_owned(),
                    Actor::User(u) => emails.get(&u.0).cloned().unwrap_or_else(|| format!("user {u}")),
                    Actor::Key { key, .. } => format!("key {key}"),
                };
                let about = j.user_id.map(|u| emails.get(&u).cloned().unwrap_or_else(|| format!("user {u}")));
                outln!(
                    "{:<24}  {:<22}  {:<30}  {:<30}  {:<16}  {:<15}  {}",
                    clock::to_datetime(e.at).format("%Y-%m-%d %H:%M:%S UTC"),
                    e.action,
                    by,
                    about.unwrap_or_else(|| "-".into()),
                    e.key_id.map_or_else(|| "-".into(), |k| k.to_string()),
                    e.ip.as_deref().unwrap_or("-"),
                    e.detail.as_deref().unwrap_or("")
                );
            }
        }
        left -= page.len() as i64;
        if (page.len() as i64) < q.limit {
            break;
        }
        q.after = page.last().map(|e| (e.at, e.id));
    }
    Ok(())
}

/// The Credential ID an operator gave: the ID itself, or a whole pasted key, whose ID is taken from it (saying so).
/// Never prints the argument back unless it is short and not an atna key: it may be a secret.
fn credential_id_of(arg: &str) -> anyhow::Result<CredentialId> {
    if let Ok(id) = CredentialId::parse(arg) {
        return Ok(id);
    }
    // Any installation's prefix: a key issued before a prefix change, or pasted from another prefix, still names its ID.
    match ParsedKey::parse_any(arg) {
        Ok(key) => {
            eprintln!("took the Credential ID {} from the pasted key", key.id);
            Ok(key.id)
        }
        Err(e) if arg.len() > 2 * atna_domain::credential::ID_LEN && arg.contains('_') => {
            bail!("the argument is neither a Credential ID nor a whole atna key: {e} (it is not shown: it may be a secret)")
        }
        Err(_) if arg.chars().count() > 2 * atna_domain::credential::ID_LEN => {
            bail!("the argument is not a Credential ID (16 letters and digits, as `atna key list` shows); it is not shown, as it may be a secret")
        }
        Err(_) => bail!("`{arg}` is not a Credential ID (16 letters and digits, as `atna key list` shows)"),
    }
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
            write_stdout(json.as_bytes());
            "standard output".to_owned()
        }
        Some(path) => {
            files::write_private(path, json.as_bytes(), force)?;
            path.display().to_string()
        }
    };
    eprintln!(
        "exported {} to {to}; it holds password and key hashes: keep it private, delete it once imported",
        describe(&snap.summary())
    );
    Ok(())
}

/// Reads and checks an export file (`-`: standard input). Every error names the file and says what is wrong with it.
pub(crate) fn read_snapshot(file: &Path) -> anyhow::Result<Snapshot> {
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
    outln!("imported {} into the {} database", describe(&summary), store.backend());
    outln!("Sessions were not moved: everyone signs in again. Delete the export file now.");
    Ok(())
}
