//! Building and running the server: bind, start the background work, serve until told to stop, then flush.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use std::convert::Infallible;
use std::pin::Pin;

use atna_store::Store;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{ConnectInfo, Request};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::Service;

use crate::proxy::{self, Proxy, ProxySettings};
use crate::serve::guard::{guarded, Face};
use crate::serve::{self, Tracker};
use crate::verify::Verifier;
use crate::{api, dashboard, watcher, AppState, Settings};

/// How often old change-feed entries and expired sessions are deleted.
const HOUSEKEEPING_EVERY: std::time::Duration = std::time::Duration::from_secs(60 * 60);

/// A bound, ready-to-run server.
pub struct App {
    listener: TcpListener,
    /// `metrics_listen`: a listener that serves `/metrics` only.
    metrics_listener: Option<TcpListener>,
    /// Reverse-proxy mode: its listener and the proxy.
    proxy: Option<(TcpListener, Arc<Proxy>)>,
    state: AppState,
    router: Router,
    setup_token: Option<String>,
}

impl App {
    /// Binds the listener (port 0 picks a free port) and assembles the routes.
    pub async fn build(settings: Settings, store: Arc<dyn Store>) -> std::io::Result<Self> {
        let listener = TcpListener::bind(settings.listen).await?;
        let metrics_listener = match settings.metrics_listen {
            Some(addr) => Some(TcpListener::bind(addr).await?),
            None => None,
        };
        let proxy_listener = match &settings.proxy {
            Some(p) => Some(TcpListener::bind(p.listen).await?),
            None => None,
        };
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
        if let Err(e) = crate::prefixes::record_at_start(store.as_ref(), &verifier, &settings.key_prefix).await {
            // The follower reads them once the database answers; until then only the configured prefix works.
            tracing::warn!(error = %e, "could not read or record the key prefix yet");
            verifier.set_format(atna_domain::KeyFormat::new(settings.key_prefix.clone(), []));
        }
        let leaks = crate::leaks::Leaks::new(&settings.leaks).await;
        let proxy_settings = settings.proxy.clone();
        let state = AppState::new(store, verifier, settings, leaks);
        let proxy = proxy_listener.zip(proxy_settings).map(|(l, p)| (l, Arc::new(Proxy::new(state.clone(), p))));
        let router = api::router(&state).with_state(state.clone()).merge(dashboard::router(state.clone()));
        Ok(Self { listener, metrics_listener, proxy, state, router, setup_token })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.state.settings.listen)
    }

    /// Where `/metrics` is served when `metrics_listen` moved it off the main listener.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Where the reverse proxy listens, in reverse-proxy mode.
    pub fn proxy_addr(&self) -> Option<SocketAddr> {
        self.proxy.as_ref().and_then(|(l, _)| l.local_addr().ok())
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
                s.settings.key_prefix.clone(),
                s.settings.change_poll_interval,
                stop_rx.clone(),
            ),
            watcher::flush_usage(s.verifier.clone(), s.settings.usage_flush_interval, stop_rx.clone()),
            watcher::sync_limits(
                s.verifier.clone(),
                format!("{} {}", node_identity(self.local_addr()), dashboard::random_token().get(..8).unwrap_or("")),
                s.settings.limits_sync_interval,
                // A key's limit state outlives its cache entry, so a reload never hands back spent quota.
                (s.settings.cache_ttl * 2).max(std::time::Duration::from_secs(600)),
                stop_rx.clone(),
            ),
            watcher::housekeeping(s.store.clone(), &s.settings, HOUSEKEEPING_EVERY, stop_rx.clone()),
        ];
        let reminders = crate::notify::worker::start(s.notifier.clone(), s.settings.policy, stop_rx);
        let metrics = self.metrics_listener.map(|listener| {
            let router = api::metrics_only().with_state(self.state.clone());
            let make = front(router, self.state.clone(), false);
            let (settings, mut stop) = (self.state.settings.clone(), stop_tx.subscribe());
            tokio::spawn(async move {
                serve::run(listener, &settings, make, async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await;
            })
        });
        // The proxy listener stops accepting when the main one does, and drains on its own.
        let (down_tx, down_rx) = watch::channel(false);
        let proxy = self.proxy.map(|(listener, proxy)| {
            let settings = proxy_serve_settings(&self.state.settings, proxy.settings());
            let mut down = down_rx;
            tokio::spawn(async move {
                serve::run(listener, &settings, proxy::per_connection(proxy), async move {
                    let _ = down.wait_for(|d| *d).await;
                })
                .await;
            })
        });
        let shutdown = async move {
            shutdown.await;
            let _ = down_tx.send(true);
        };
        serve::run(self.listener, &self.state.settings, front(self.router, self.state.clone(), true), shutdown).await;
        let _ = stop_tx.send(true);
        if let Some(m) = metrics {
            let _ = m.await;
        }
        if let Some(p) = proxy {
            let _ = p.await;
        }
        for t in tasks.into_iter().chain(reminders) {
            let _ = t.await;
        }
        match self.state.verifier.flush_usage().await {
            Ok(n) => tracing::info!(keys = n, "usage written"),
            Err(e) => tracing::error!(error = %e, "usage could not be written at shutdown"),
        }
        Ok(())
    }
}

/// The accept loop's settings for the proxy listener: the main listener's connection caps and timeouts, with the
/// proxy's own trusted proxies (the deprecated `trust_forwarded_for` does not reach it).
fn proxy_serve_settings(main: &Settings, proxy: &ProxySettings) -> Settings {
    Settings { trusted_proxies: proxy.trusted_proxies.clone(), trust_forwarded_for: false, ..main.clone() }
}

/// Makes each connection's [`Front`]; `fast_lanes` answers whoami and forward-auth without the router (the main
/// listener only).
fn front(router: Router, state: AppState, fast_lanes: bool) -> impl Fn(serve::Conn) -> Front {
    move |c: serve::Conn| {
        Front(Arc::new(FrontParts {
            router: router.clone(),
            state: state.clone(),
            peer: c.peer,
            trusted: c.trusted,
            tracker: c.tracker,
            fast_lanes,
        }))
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
pub(crate) fn hostname() -> String {
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
/// `ConnectInfo` as usual. Both run under [`guarded`] (request timeout, panics answered 500) and report to the
/// connection's [`Tracker`]. `tests/api.rs` checks the direct answers (headers, problem documents) like any route's.
#[derive(Clone)]
struct Front(Arc<FrontParts>);

/// What [`Front`] holds for its connection, behind one `Arc` so that each request clones one pointer.
struct FrontParts {
    router: Router,
    state: AppState,
    peer: SocketAddr,
    trusted: bool,
    tracker: Arc<Tracker>,
    /// Whether whoami and forward-auth take the direct path (not on the metrics listener).
    fast_lanes: bool,
}

impl FrontParts {
    async fn handle(&self, req: Request) -> Response {
        if !self.fast_lanes {
            let mut req = req;
            req.extensions_mut().insert(ConnectInfo(self.peer));
            let Ok(res) = self.router.clone().call(req).await;
            return res;
        }
        if req.method() == Method::GET && req.uri().path() == "/v1/whoami" {
            return api::auth::whoami_direct(&self.state, req.headers(), self.peer.ip(), self.trusted).await;
        }
        // Forward-auth is every gateway request's sub-request: the same fast lane (any method, no body read).
        if api::forward_auth::is_forward_auth(req.uri().path()) {
            let (state, peer) = (&self.state, self.peer.ip());
            return api::forward_auth::forward_auth_direct(state, req.uri(), req.headers(), peer, self.trusted).await;
        }
        let mut req = req;
        req.extensions_mut().insert(ConnectInfo(self.peer));
        let Ok(res) = self.router.clone().call(req).await;
        res
    }
}

impl<B> hyper::service::Service<axum::http::Request<B>> for Front
where
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn call(&self, req: axum::http::Request<B>) -> Self::Future {
        let this = self.0.clone();
        Box::pin(async move {
            this.tracker.request_started();
            let face = Face::of(req.uri().path());
            let res = guarded(face, this.state.settings.request_timeout, this.handle(req.map(Body::new))).await;
            let open_ended =
                res.status() == StatusCode::SWITCHING_PROTOCOLS || res.body().size_hint().exact().is_none();
            this.tracker.request_finished(open_ended);
            Ok(res)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing;
    use hyper::service::Service as _;
    use std::time::Duration;

    /// The production per-connection stack around a router whose handlers panic or hang.
    async fn front(router: Router) -> (Front, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(atna_store_sqlite::SqliteStore::open_file(&dir.path().join("atna.db")).await.unwrap());
        let settings = Settings {
            listen: "127.0.0.1:0".parse().unwrap(),
            request_timeout: Duration::from_millis(300),
            ..Settings::default()
        };
        let app = App::build(settings, store).await.unwrap();
        let tracker = Tracker::new(Duration::from_secs(10), Duration::from_secs(60));
        let peer = "127.0.0.1:1".parse().unwrap();
        (
            Front(Arc::new(FrontParts {
                router,
                state: app.state.clone(),
                peer,
                trusted: false,
                tracker,
                fast_lanes: true,
            })),
            dir,
        )
    }

    /// Status, content type and body of `GET path`.
    async fn fetch(f: &Front, path: &str) -> (StatusCode, String, String) {
        let req = axum::http::Request::get(path).body(Body::empty()).unwrap();
        let res = f.call(req).await.unwrap();
        let status = res.status();
        let ct = res.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        let body = axum::body::to_bytes(res.into_body(), 1 << 20).await.unwrap();
        (status, ct, String::from_utf8_lossy(&body).into_owned())
    }

    fn hanging_and_panicking() -> Router {
        async fn boom() -> &'static str {
            panic!("boom")
        }
        Router::new()
            .route("/v1/boom", routing::get(boom))
            .route("/boom", routing::get(boom))
            .route("/v1/stuck", routing::get(std::future::pending::<&'static str>))
            .route("/stuck", routing::get(std::future::pending::<&'static str>))
            .route("/v1/fine", routing::get(|| async { "fine" }))
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_500_and_the_connection_goes_on() {
        let (f, _dir) = front(hanging_and_panicking()).await;
        let (status, ct, body) = fetch(&f, "/v1/boom").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(ct, "application/problem+json");
        assert!(body.contains(r#""code":"internal_error""#), "{body}");
        let (status, ct, body) = fetch(&f, "/boom").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(ct.starts_with("text/html") && body.contains("Something went wrong"), "{ct} {body}");
        // The connection's tracker saw the request end, and the next request is served.
        assert_eq!(f.0.tracker.in_flight(), 0);
        assert_eq!(fetch(&f, "/v1/fine").await.2, "fine");
    }

    #[tokio::test]
    async fn a_request_that_takes_too_long_answers_503() {
        let (f, _dir) = front(hanging_and_panicking()).await;
        let t0 = std::time::Instant::now();
        let (status, ct, body) = fetch(&f, "/v1/stuck").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(ct, "application/problem+json");
        assert!(body.contains(r#""code":"request_timeout""#), "{body}");
        assert!(t0.elapsed() >= Duration::from_millis(300) && t0.elapsed() < Duration::from_secs(5));
        let (status, ct, _) = fetch(&f, "/stuck").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(ct.starts_with("text/html"));
        assert_eq!(f.0.tracker.in_flight(), 0);
    }
}
