//! Reverse-proxy mode: a second listener in front of an upstream API, for platforms without a gateway. Each request
//! is decided like a forward-auth request (the same verifier, rules and use counting, see
//! [`authorize`](crate::api::forward_auth)), with the scopes of the matching [`routes`] as requirements, then streamed
//! to the upstream through hyper-util's pooled client: bodies both ways frame by frame, never collected, and
//! `Upgrade` requests (WebSocket) switched on both sides and then copied byte for byte.
//!
//! Answers of its own, all `application/problem+json`: 400 `invalid_path` (see [`path`]), 401/403 as forward-auth,
//! 413 `body_too_large`, 502 `upstream_unavailable` (no connection) or `upstream_error` (a broken answer), 504
//! `upstream_timeout`.

pub mod body;
pub mod headers;
pub mod path;
pub mod routes;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::request::Parts;
use axum::http::uri::{Authority, PathAndQuery, Scheme};
use axum::http::{header, HeaderValue, Request, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::api::forward_auth::{authorize, presented_key};
use crate::cidr::Cidr;
use crate::error::ApiError;
use crate::extract::client_ip_of;
use crate::gate;
use crate::metrics::Entry;
use crate::serve::guard::{self, Face};
use crate::serve::{self, Tracker};
use crate::verify::KeyEntry;
use crate::AppState;

pub use routes::Route;

/// The proxy's settings (`upstream`, `proxy_listen` and the `proxy_*` settings).
#[derive(Debug, Clone)]
pub struct ProxySettings {
    /// Where the proxy listens.
    pub listen: SocketAddr,
    /// Where requests go.
    pub upstream: Upstream,
    /// The proxies in front of this listener (its own list: the API's `trusted_proxies` do not apply here).
    pub trusted_proxies: Vec<Cidr>,
    /// Largest request body passed on; `None`: no limit (the upstream decides).
    pub max_body_bytes: Option<u64>,
    /// Whether `Authorization` and the key headers go to the upstream (by default they are removed).
    pub forward_authorization: bool,
    /// How long the upstream has to start its answer once the request (body included) has been passed on.
    pub upstream_timeout: Duration,
    /// Per-route scope requirements.
    pub routes: Vec<Route>,
}

impl ProxySettings {
    /// A proxy on `listen` in front of `upstream`, with the defaults for the rest.
    pub fn new(listen: SocketAddr, upstream: Upstream) -> Self {
        Self {
            listen,
            upstream,
            trusted_proxies: Vec::new(),
            max_body_bytes: None,
            forward_authorization: false,
            upstream_timeout: DEFAULT_UPSTREAM_TIMEOUT,
            routes: Vec::new(),
        }
    }
}

/// Default of `proxy_upstream_timeout_secs` (nginx's `proxy_read_timeout`).
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(60);

/// The upstream: `http://HOST[:PORT]`, with no path (requests keep theirs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream(Authority);

impl FromStr for Upstream {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let uri: Uri = s.parse().map_err(|_| format!("upstream `{s}` is not a URL like http://127.0.0.1:9000"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(format!(
                    "upstream `{s}`: https upstreams are not supported; reach the upstream over http on a private \
                     network or localhost"
                ))
            }
            _ => return Err(format!("upstream `{s}` must start with http://")),
        }
        let Some(authority) = uri.authority().cloned() else {
            return Err(format!("upstream `{s}` has no host"));
        };
        if authority.as_str().contains('@') {
            return Err(format!("upstream `{s}`: user information in the URL is not supported"));
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(format!("upstream `{s}` must not have a path or query: requests keep their own path"));
        }
        Ok(Self(authority))
    }
}

impl std::fmt::Display for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}", self.0)
    }
}

/// The proxy: its settings, the shared state (verifier, metrics) and the pooled client to the upstream.
pub struct Proxy {
    settings: ProxySettings,
    state: AppState,
    client: Client<HttpConnector, Body>,
}

impl Proxy {
    /// A proxy with its own connection pool.
    pub fn new(state: AppState, settings: ProxySettings) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(settings.upstream_timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(1024)
            .build(connector);
        Self { settings, state, client }
    }

    /// The proxy's settings.
    pub fn settings(&self) -> &ProxySettings {
        &self.settings
    }

    /// Answers one request: refused with a problem document, or the upstream's answer.
    pub async fn handle(&self, mut req: Request<Body>, peer: SocketAddr, trusted: bool) -> Response {
        let started = Instant::now();
        let upgrade = headers::wants_upgrade(req.headers()).then(|| hyper::upgrade::on(&mut req));
        let (parts, body) = req.into_parts();
        let decided = self.decide(&parts, body.size_hint().exact(), peer, trusted).await;
        self.state.verifier.metrics().checked(Entry::Proxy, started, &decided);
        match decided {
            Ok((entry, admitted, target)) => {
                let mut res = self.forward(parts, body, &entry, target, peer, trusted, upgrade).await;
                // The key's rate limit, as forward-auth says it: the client learns what is left without asking.
                admitted.write_headers(&entry, res.headers_mut());
                res
            }
            Err(e) => refusal(e),
        }
    }

    /// Whether the request may pass, and the path and query it goes to the upstream with.
    async fn decide(
        &self,
        req: &Parts,
        body_len: Option<u64>,
        peer: SocketAddr,
        trusted: bool,
    ) -> Result<(Arc<KeyEntry>, gate::Admitted, PathAndQuery), ApiError> {
        let path = path::normalise(req.uri.path())?;
        let h = &req.headers;
        let key = presented_key(h, &self.state.settings.api_key_headers)?;
        let requirements = routes::requirements(&self.settings.routes, &req.method, &path);
        // Before the key is checked: a refused request consumes nothing (no use counted, no limit touched).
        if let (Some(max), Some(len)) = (self.settings.max_body_bytes, body_len) {
            if len > max {
                return Err(too_large(max));
            }
        }
        let ip = Some(client_ip_of(h, peer.ip(), trusted, &self.settings.trusted_proxies));
        let (entry, admitted) = authorize(&self.state, key, &requirements, &gate::Context::ip(ip)).await?;
        let target = match req.uri.query() {
            Some(q) => format!("{path}?{q}"),
            None => path,
        };
        let target = PathAndQuery::try_from(target)
            .map_err(|_| ApiError::bad_request("invalid_path", "The request target cannot be passed on as it is."))?;
        Ok((entry, admitted, target))
    }

    #[allow(clippy::too_many_arguments)]
    async fn forward(
        &self,
        mut parts: Parts,
        body: Body,
        entry: &KeyEntry,
        target: PathAndQuery,
        peer: SocketAddr,
        trusted: bool,
        client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    ) -> Response {
        let hop = headers::Hop {
            peer: peer.ip(),
            trusted,
            forward_key: self.settings.forward_authorization,
            key_headers: &self.state.settings.api_key_headers,
        };
        let upgrade_value = client_upgrade.as_ref().and_then(|_| parts.headers.get(header::UPGRADE).cloned());
        headers::to_upstream(&mut parts.headers, &hop, entry.identity(), upgrade_value);
        let uri = Uri::builder()
            .scheme(Scheme::HTTP)
            .authority(self.settings.upstream.0.clone())
            .path_and_query(target)
            .build();
        let Ok(uri) = uri else { return refusal(ApiError::internal()) };
        parts.uri = uri;
        parts.version = axum::http::Version::HTTP_11;
        parts.extensions = Default::default();
        let (body, sent) = body::Sent::new(body);
        let body = match self.settings.max_body_bytes {
            Some(max) => Body::new(http_body_util::Limited::new(body, usize::try_from(max).unwrap_or(usize::MAX))),
            None => Body::new(body),
        };
        let answer = self.client.request(Request::from_parts(parts, body));
        let timeout = self.settings.upstream_timeout;
        let answered = tokio::select! {
            r = answer => r,
            () = async { sent.notified().await; tokio::time::sleep(timeout).await } => {
                self.state.verifier.metrics().proxy_upstream_timeouts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(upstream = %self.settings.upstream, timeout_s = timeout.as_secs(), "upstream did not answer in time");
                return refusal(ApiError::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "upstream_timeout",
                    "The upstream did not answer in time; try again later.",
                ));
            }
        };
        let mut res = match answered {
            Ok(res) => res,
            Err(e) => return self.upstream_failed(&e),
        };
        let switched = res.status() == StatusCode::SWITCHING_PROTOCOLS;
        if switched {
            let Some(client_side) = client_upgrade else {
                tracing::warn!("the upstream switched protocols without being asked to");
                self.state.verifier.metrics().proxy_upstream_errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return refusal(upstream_error());
            };
            let upstream_side = hyper::upgrade::on(&mut res);
            tokio::spawn(tunnel(client_side, upstream_side));
        }
        headers::to_client(res.headers_mut(), switched);
        res.map(Body::new)
    }

    fn upstream_failed(&self, e: &(dyn std::error::Error + 'static)) -> Response {
        if caused_by::<http_body_util::LengthLimitError>(e) {
            let max = self.settings.max_body_bytes.unwrap_or(u64::MAX);
            return refusal(too_large(max));
        }
        self.state.verifier.metrics().proxy_upstream_errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let connect = e.downcast_ref::<hyper_util::client::legacy::Error>().is_some_and(|e| e.is_connect());
        tracing::warn!(upstream = %self.settings.upstream, error = %chain(e), "upstream request failed");
        if connect {
            refusal(ApiError::new(
                StatusCode::BAD_GATEWAY,
                "upstream_unavailable",
                "The upstream cannot be reached; try again later.",
            ))
        } else {
            refusal(upstream_error())
        }
    }
}

fn upstream_error() -> ApiError {
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        "upstream_error",
        "The upstream's answer could not be passed on; try again later.",
    )
}

/// Copies bytes both ways between the client's and the upstream's switched connections until either side closes.
async fn tunnel(client: hyper::upgrade::OnUpgrade, upstream: hyper::upgrade::OnUpgrade) {
    match tokio::try_join!(client, upstream) {
        Ok((c, u)) => {
            let (mut c, mut u) = (TokioIo::new(c), TokioIo::new(u));
            if let Err(e) = tokio::io::copy_bidirectional(&mut c, &mut u).await {
                tracing::debug!(error = %e, "an upgraded connection ended with an error");
            }
        }
        Err(e) => tracing::debug!(error = %e, "a protocol switch did not complete"),
    }
}

fn too_large(max: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!("The request body is larger than this proxy passes on ({max} bytes)."),
    )
}

/// A refusal: the problem document, never cached.
fn refusal(e: ApiError) -> Response {
    let mut res = e.into_response();
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

fn caused_by<T: std::error::Error + 'static>(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.is::<T>() {
            return true;
        }
        cur = err.source();
    }
    false
}

fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(err) = cur {
        out.push_str(": ");
        out.push_str(&err.to_string());
        cur = err.source();
    }
    out
}

/// Makes each proxy connection's service (for [`serve::run`]).
pub fn per_connection(proxy: Arc<Proxy>) -> impl Fn(serve::Conn) -> ProxyConn {
    move |c: serve::Conn| {
        ProxyConn(Arc::new(ConnParts { proxy: proxy.clone(), peer: c.peer, trusted: c.trusted, tracker: c.tracker }))
    }
}

/// One proxy connection's service.
#[derive(Clone)]
pub struct ProxyConn(Arc<ConnParts>);

struct ConnParts {
    proxy: Arc<Proxy>,
    peer: SocketAddr,
    trusted: bool,
    tracker: Arc<Tracker>,
}

impl hyper::service::Service<Request<Incoming>> for ProxyConn {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let this = self.0.clone();
        Box::pin(async move {
            this.tracker.request_started();
            // No deadline here: the proxy keeps its own time (see `ProxySettings::upstream_timeout`).
            let res = guard::unwound(Face::Api, this.proxy.handle(req.map(Body::new), this.peer, this.trusted)).await;
            let upgraded = res.status() == StatusCode::SWITCHING_PROTOCOLS;
            let tracker = this.tracker.clone();
            Ok(res.map(|b| Body::new(body::Finished::new(b, tracker, upgraded))))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstreams_are_plain_http_origins() {
        assert_eq!("http://127.0.0.1:9000".parse::<Upstream>().unwrap().to_string(), "http://127.0.0.1:9000");
        assert_eq!("http://api.internal/".parse::<Upstream>().unwrap().to_string(), "http://api.internal");
        for (bad, want) in [
            ("https://api.internal", "https upstreams are not supported"),
            ("127.0.0.1:9000", "must start with http://"),
            ("http://api.internal/v1", "must not have a path"),
            ("http://api.internal/?x=1", "must not have a path"),
            ("http://u:p@api.internal", "user information"),
            ("not a url", "is not a URL"),
        ] {
            let e = bad.parse::<Upstream>().unwrap_err();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }
}
