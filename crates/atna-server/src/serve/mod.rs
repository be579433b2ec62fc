//! The accept loop and each connection's life: admission under the connection caps, HTTP/1.1 through hyper (with
//! upgrades), the per-connection timers of [`watchdog`], and a graceful stop. It replaces `axum::serve`, which has
//! no header or idle timeout, no connection cap, and retries a failing `accept` once a second with a log line each.

mod bare;
mod fd;
pub mod guard;
mod limits;
pub mod watchdog;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::Request;
use axum::response::Response;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::Settings;
use limits::{Limits, Refusal};
pub use watchdog::Tracker;

/// What the service for one connection is made from.
pub struct Conn {
    /// The TCP peer.
    pub peer: SocketAddr,
    /// Whether the peer is a trusted proxy ([`Settings::trusts_peer`]), decided once per connection.
    pub trusted: bool,
    /// The connection's timers; the service reports its requests' start and end to it.
    pub tracker: Arc<Tracker>,
}

/// Serves connections from `listener` with services made by `make` until `shutdown` resolves; then stops accepting,
/// lets open requests finish (for up to `request_timeout` and a second) and returns.
pub async fn run<M, S>(listener: TcpListener, settings: &Settings, make: M, shutdown: impl Future<Output = ()>)
where
    M: Fn(Conn) -> S,
    S: hyper::service::Service<Request<Incoming>, Response = Response, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
{
    let nofile = fd::raise_nofile_limit();
    let max = settings.max_connections.map_or_else(
        || fd::default_max_connections(nofile),
        |n| u32::try_from(n.clamp(1, 1_000_000)).unwrap_or(1_000_000),
    );
    tracing::info!(
        file_descriptor_limit = nofile,
        max_connections = max,
        max_connections_per_peer = settings.max_connections_per_peer,
        "connection limits"
    );
    let limits = Limits::new(max, settings.max_connections_per_peer);
    let (stop_tx, stop_rx) = watch::channel(false);
    // No hyper timer: hyper's header timeout would also cut idle keep-alive connections; `watchdog` does both.
    let http = hyper::server::conn::http1::Builder::new();
    let (header, idle) = (settings.header_read_timeout, settings.idle_timeout);
    let mut errors = fd::AcceptErrors::default();
    let mut refused = RefusalLog::default();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(a) => {
                errors.succeeded();
                a
            }
            Err(e) => {
                if let Some(wait) = errors.failed(&e) {
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(wait) => {}
                    }
                }
                continue;
            }
        };
        let trusted = settings.trusts_peer(peer.ip());
        let admission = match limits.admit(peer.ip(), trusted) {
            Ok(a) => a,
            Err(why) => {
                refused.note(why, peer);
                refuse(stream);
                continue;
            }
        };
        // Small responses go out at once instead of waiting for the client's delayed ACK (Nagle).
        let _ = stream.set_nodelay(true);
        let tracker = Tracker::new(header, idle);
        let service = make(Conn { peer, trusted, tracker: tracker.clone() });
        let io = TokioIo::new(watchdog::Tracked::new(stream, tracker.clone(), admission));
        let conn = http.serve_connection(io, service).with_upgrades();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => return log_end(r),
                () = tracker.expired() => return,
                _ = stop.wait_for(|s| *s) => {}
            }
            // Finish the request in flight (if any), then close.
            conn.as_mut().graceful_shutdown();
            tokio::select! {
                r = conn.as_mut() => log_end(r),
                () = tracker.expired() => {}
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let grace = settings.request_timeout + Duration::from_secs(1);
    if !limits.drained(grace).await {
        tracing::warn!(open = limits.open(), "connections still open at shutdown; closing them");
    }
}

fn log_end(r: hyper::Result<()>) {
    if let Err(e) = r {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// Answers a connection over a cap with a 503 if the socket takes it at once, and closes it; never waits on it.
fn refuse(stream: TcpStream) {
    const BODY: &str = r#"{"type":"urn:atna:problem:too_many_connections","title":"Service Unavailable","status":503,"detail":"Too many connections are open; try again shortly.","code":"too_many_connections"}"#;
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\ncontent-length: {}\r\n\
         retry-after: 1\r\nconnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = stream.try_write(head.as_bytes());
}

/// Logs refused connections at most every ten seconds, with how many there were.
#[derive(Default)]
struct RefusalLog {
    last: Option<Instant>,
    since: u64,
}

impl RefusalLog {
    fn note(&mut self, why: Refusal, peer: SocketAddr) {
        self.since += 1;
        if self.last.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
            let cap = match why {
                Refusal::Global => "max_connections",
                Refusal::Peer => "max_connections_per_peer",
            };
            tracing::warn!(cap, peer = %peer.ip(), refused = self.since, "connections refused: over a cap");
            self.last = Some(Instant::now());
            self.since = 0;
        }
    }
}
