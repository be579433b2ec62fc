//! What each subcommand does. The CLI works on the database directly (no running server needed); a running server
//! learns about its changes through the change feed.

use std::io::{BufRead, IsTerminal};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use atna_domain::{CredentialId, Email, Password, PasswordHash};
use atna_server::api::dto::Key;
use atna_server::clock;
use atna_server::service::{self, KeySpec};
use atna_server::store_url;
use atna_store::{Actor, KeyQuery, NewUser, Store, User};
use serde_json::json;

use crate::cli::{Cli, Command, KeyCommand, UserCommand};
use crate::config;

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let resolved = config::resolve(&cli.global)?;
    config::ensure_data_dir(&resolved)?;
    let store = store_url::open(&resolved.database_url, &resolved.db).await?;
    match cli.command {
        Command::Serve(s) => serve(store, config::settings(&resolved, &s)).await,
        Command::Migrate => {
            println!("migrations applied ({} database)", store.backend());
            Ok(())
        }
        Command::User(c) => user(store.as_ref(), c).await,
        Command::Key(c) => key(store.as_ref(), c).await,
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
        println!("No user exists yet. Create the first (admin) account, once, at: http://{addr}/setup?token={token}");
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
