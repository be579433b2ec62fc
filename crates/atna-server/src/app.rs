//! Building and running the server: bind, start the background work, serve until told to stop, then flush.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use atna_store::Store;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::{ConnectInfo, Request};
use axum::http::Method;
use axum::response::Response;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::Service;

use crate::verify::Verifier;
use crate::{api, dashboard, watcher, AppState, Settings};

/// How often old change-feed entries and expired sessions are deleted.
const HOUSEKEEPING_EVERY: std::time::Duration = std::time::Duration::from_secs(60 * 60);

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
        // The follower (started by `run`) reads the feed every poll interval: allow a few of those before the cache
        // stops being trusted.
        let max_lag = settings.change_feed_max_lag.max(settings.change_poll_interval * 3);
        let verifier = Arc::new(
            Verifier::new(store.clone(), settings.cache_capacity, settings.cache_ttl, settings.negative_cache_ttl)
                .follows_feed(max_lag),
        );
        // First run: with no user yet, a one-time token lets the first person create the admin account.
        let setup_token = match store.count_users().await {
            Ok(0) => {
                // Recorded (hashed) in the database, so the link works on every node of a cluster. Recording it under
                // this node's identity revokes the link this node printed at its previous start.
                let token = dashboard::random_token();
                let hash = dashboard::session::hash_token(&token);
                let issuer = node_identity(listener.local_addr()?);
                match store.add_setup_token(&hash, &issuer, crate::clock::now()).await {
                    Ok(()) => Some(token),
                    Err(e) => {
                        tracing::warn!(error = %e, "could not record a setup token; no setup link");
                        None
                    }
                }
            }
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(error = %e, "could not count users; no setup link");
                None
            }
        };
        let state = AppState::new(store, verifier, settings);
        let router = api::router(&state).with_state(state.clone()).merge(dashboard::router(state.clone()));
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
            watcher::flush_usage(s.verifier.clone(), s.settings.usage_flush_interval, stop_rx.clone()),
            watcher::housekeeping(s.store.clone(), s.settings.cache_ttl, HOUSEKEEPING_EVERY, stop_rx),
        ];
        let (router, state) = (self.router, self.state.clone());
        let make_service = tower::service_fn(move |conn: axum::serve::IncomingStream<'_, TcpListener>| {
            // Small responses go out at once instead of waiting for the client's delayed ACK (Nagle).
            let _ = conn.io().set_nodelay(true);
            let front = Front { router: router.clone(), state: state.clone(), peer: *conn.remote_addr() };
            std::future::ready(Ok::<_, Infallible>(front))
        });
        let served = axum::serve(self.listener, make_service).with_graceful_shutdown(shutdown).await;
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

/// Who issues a setup token: the host name and the address this process listens on. A restarted node has the same
/// identity (the same host and configured address), so its new link replaces its old one; two nodes never share one,
/// as two processes cannot listen on the same address of the same host. Needs no writable data directory, which a
/// PostgreSQL node may not have.
fn node_identity(addr: SocketAddr) -> String {
    format!("{} {addr}", hostname())
}

/// This machine's host name (empty if it cannot be read: the listen address still tells nodes apart on one host).
fn hostname() -> String {
    #[cfg(unix)]
    {
        let mut buf = [0u8; 256];
        // SAFETY: the buffer is valid for its whole length; gethostname writes at most that many bytes.
        if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0 {
            let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
            return String::from_utf8_lossy(&buf[..end]).into_owned();
        }
    }
    String::new()
}

/// The service each connection gets. `GET /v1/whoami`, the request every API call of every client makes, is answered
/// directly: routing it through the router (path matching, URL-parameter and matched-path extensions, the per-route
/// layers) costs more than verifying the key. Every other request goes to the router, with the peer's address as
/// `ConnectInfo` as usual. `tests/api.rs` checks the direct answers (headers, problem documents) like any route's.
#[derive(Clone)]
struct Front {
    router: Router,
    state: AppState,
    peer: SocketAddr,
}

impl Service<Request> for Front {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        if req.method() == Method::GET && req.uri().path() == "/v1/whoami" {
            let (state, peer) = (self.state.clone(), self.peer.ip());
            return Box::pin(async move { Ok(api::auth::whoami_direct(&state, req.headers(), peer).await) });
        }
        // Forward-auth is every gateway request's sub-request: the same fast lane (any method, no body read).
        if api::forward_auth::is_forward_auth(req.uri().path()) {
            let (state, peer) = (self.state.clone(), self.peer.ip());
            return Box::pin(async move {
                Ok(api::forward_auth::forward_auth_direct(&state, req.uri(), req.headers(), peer).await)
            });
        }
        req.extensions_mut().insert(ConnectInfo(self.peer));
        let mut router = self.router.clone();
        Box::pin(async move { router.call(req).await })
    }
}
