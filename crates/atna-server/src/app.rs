//! Building and running the server: bind, start the background work, serve until told to stop, then flush.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use atna_store::Store;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::verify::Verifier;
use crate::{api, dashboard, watcher, AppState, Settings};

/// A bound, ready-to-run server.
pub struct App {
    listener: TcpListener,
    state: AppState,
    router: Router,
    setup_token: Option<String>,
}

impl App {
    /// Binds the listener (port 0 picks a free port) and assembles the routes.
    pub async fn build(settings: Settings, store: Arc<dyn Store>) -> std::io::Result<Self> {
        let listener = TcpListener::bind(settings.listen).await?;
        let verifier = Arc::new(Verifier::new(
            store.clone(),
            settings.cache_capacity,
            settings.cache_ttl,
            settings.negative_cache_ttl,
        ));
        // First run: with no user yet, a one-time token lets the first person create the admin account.
        let setup_token = match store.count_users().await {
            Ok(0) => Some(dashboard::random_token()),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(error = %e, "could not count users; no setup link");
                None
            }
        };
        let state = AppState::new(store, verifier, settings);
        let router =
            api::router(&state).with_state(state.clone()).merge(dashboard::router(state.clone(), setup_token.clone()));
        Ok(Self { listener, state, router, setup_token })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.state.settings.listen)
    }

    /// The first-run setup token, when no user existed at start: `/setup?token=…` creates the first admin.
    pub fn setup_token(&self) -> Option<&str> {
        self.setup_token.as_deref()
    }

    /// The shared state (for tests and embedding).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then finishes open requests and writes the usage still in memory.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let s = &self.state;
        let (stop_tx, stop_rx) = watch::channel(false);
        let tasks = [
            watcher::follow_changes(
                s.store.clone(),
                s.verifier.clone(),
                s.settings.change_poll_interval,
                stop_rx.clone(),
            ),
            watcher::flush_usage(s.verifier.clone(), s.settings.usage_flush_interval, stop_rx),
        ];
        let service = self.router.into_make_service_with_connect_info::<SocketAddr>();
        let served = axum::serve(self.listener, service).with_graceful_shutdown(shutdown).await;
        let _ = stop_tx.send(true);
        for t in tasks {
            let _ = t.await;
        }
        match self.state.verifier.flush_usage().await {
            Ok(n) => tracing::info!(keys = n, "usage written"),
            Err(e) => tracing::error!(error = %e, "usage could not be written at shutdown"),
        }
        served
    }
}
