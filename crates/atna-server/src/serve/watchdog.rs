//! Per-connection timers. hyper's own `header_read_timeout` also runs while a kept-alive connection waits for its
//! next request, so it cannot tell "slow headers" (a slowloris client) from "idle"; this tracks the connection's
//! phase instead, from its socket reads and its requests:
//!
//! - opened, or first byte of a new request read: the headers must be complete within `header_read_timeout`;
//! - a request in flight: no connection timer (`request_timeout` bounds the request);
//! - answered, waiting for the next request: closed after `idle_timeout`;
//! - upgraded, or answered with a streaming body: never closed by a timer.
//!
//! Everything runs on the connection's own task (hyper polls the service's futures there), so plain relaxed atomics
//! in an `Arc` suffice; a read costs one atomic load.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::ready;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use super::bare::Heads;

/// One connection's phase and deadline.
pub struct Tracker {
    start: Instant,
    header: Duration,
    idle: Duration,
    /// Milliseconds after `start` when the connection is closed unless a request is in flight.
    deadline_ms: AtomicU64,
    /// No byte of a next request read yet (the idle phase).
    awaiting: AtomicBool,
    in_flight: AtomicU32,
    /// Requests handed to the service so far.
    started: AtomicU64,
    /// Upgraded or streaming: no timer applies any more.
    exempt: AtomicBool,
}

impl Tracker {
    /// A connection that has just opened: its first request's headers are due within `header`.
    pub fn new(header: Duration, idle: Duration) -> Arc<Self> {
        let t = Self {
            start: Instant::now(),
            header,
            idle,
            deadline_ms: AtomicU64::new(0),
            awaiting: AtomicBool::new(false),
            in_flight: AtomicU32::new(0),
            started: AtomicU64::new(0),
            exempt: AtomicBool::new(false),
        };
        t.due_in(header);
        Arc::new(t)
    }

    fn due_in(&self, d: Duration) {
        let at = (self.start.elapsed() + d).as_millis();
        self.deadline_ms.store(u64::try_from(at).unwrap_or(u64::MAX), Relaxed);
    }

    fn bytes_read(&self) {
        if self.awaiting.load(Relaxed) {
            self.awaiting.store(false, Relaxed);
            self.due_in(self.header);
        }
    }

    /// A request was handed to the service.
    pub fn request_started(&self) {
        self.in_flight.fetch_add(1, Relaxed);
        self.started.fetch_add(1, Relaxed);
    }

    /// Its answer is ready. `open_ended`: a `101 Switching Protocols` or a body of unknown length, after which the
    /// connection is exempt from timers (a WebSocket or an event stream may be quiet for long).
    pub fn request_finished(&self, open_ended: bool) {
        if open_ended {
            self.exempt.store(true, Relaxed);
        }
        if self.in_flight.fetch_sub(1, Relaxed) == 1 {
            self.due_in(self.idle);
            self.awaiting.store(true, Relaxed);
        }
    }

    /// Requests handed to the service and not answered yet.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Relaxed)
    }

    /// Resolves when the connection has overstayed its phase and should be closed.
    pub async fn expired(&self) {
        loop {
            if self.exempt.load(Relaxed) {
                return std::future::pending().await;
            }
            let recheck = self.header.min(self.idle);
            if self.in_flight.load(Relaxed) > 0 {
                tokio::time::sleep(recheck).await;
                continue;
            }
            let due = self.start + Duration::from_millis(self.deadline_ms.load(Relaxed));
            if Instant::now() >= due {
                return;
            }
            tokio::time::sleep_until(due).await;
        }
    }
}

/// A connection's socket with its [`Tracker`] and whatever must live as long as the socket (its
/// [`Admission`](super::limits::Admission)), also after an upgrade hands the socket to a handler. It also turns
/// hyper's bare answers to heads it refuses into problem documents ([`bare`](super::bare)).
pub struct Tracked<S, G> {
    io: S,
    tracker: Arc<Tracker>,
    heads: Heads,
    /// The problem answer written instead of hyper's bare one, and how much of it is written.
    replacing: Option<(&'static [u8], usize)>,
    _guard: G,
}

impl<S, G> Tracked<S, G> {
    /// Wraps `io`.
    pub fn new(io: S, tracker: Arc<Tracker>, guard: G) -> Self {
        Self { io, tracker, heads: Heads::default(), replacing: None, _guard: guard }
    }

    /// Whether writes are still HTTP/1 answers of this connection's own (not an upgraded protocol's bytes).
    fn inspected(&self) -> bool {
        !self.tracker.exempt.load(Relaxed)
    }
}

impl<S: AsyncWrite + Unpin, G: Unpin> Tracked<S, G> {
    /// Whether hyper's bare refusal is going out and is (being) replaced: decided on a write that starts with
    /// `first` and is `whole` (the answer in one buffer).
    fn replaces(&mut self, first: &[u8], whole: bool) -> bool {
        if self.replacing.is_none() && whole && self.inspected() {
            self.replacing = self.heads.replacement(first, self.tracker.started.load(Relaxed)).map(|a| (a, 0));
        }
        self.replacing.is_some()
    }

    /// Counts a response head among what a write starting with `first` put out.
    fn count_head(&mut self, first: &[u8], res: &Poll<io::Result<usize>>) {
        if let Poll::Ready(Ok(n)) = res {
            if self.inspected() {
                self.heads.wrote(first, *n, self.tracker.started.load(Relaxed));
            }
        }
    }

    /// Writes the problem answer in place of hyper's `buf`; reports `buf` written once the answer is. Anything
    /// hyper writes after it (nothing, as it closes the connection) is dropped.
    fn poll_replace(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let Some((answer, done)) = &mut self.replacing else { unreachable!("called while replacing") };
        while *done < answer.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &answer[*done..]))?;
            if n == 0 {
                return Poll::Ready(Ok(0));
            }
            *done += n;
        }
        Poll::Ready(Ok(buf.len()))
    }
}

impl<S: AsyncRead + Unpin, G: Unpin> AsyncRead for Tracked<S, G> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(res, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.tracker.bytes_read();
        }
        res
    }
}

impl<S: AsyncWrite + Unpin, G: Unpin> AsyncWrite for Tracked<S, G> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.replaces(buf, true) {
            return this.poll_replace(cx, buf);
        }
        let res = Pin::new(&mut this.io).poll_write(cx, buf);
        this.count_head(buf, &res);
        res
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let first = bufs.iter().find(|b| !b.is_empty()).map_or(&[][..], |b| &b[..]);
        let whole = bufs.iter().filter(|b| !b.is_empty()).count() == 1;
        if this.replaces(first, whole) {
            return this.poll_replace(cx, first);
        }
        let res = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.count_head(first, &res);
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn phases_have_their_own_deadlines() {
        let (header, idle) = (Duration::from_secs(10), Duration::from_secs(60));
        let t = Tracker::new(header, idle);
        let t0 = Instant::now();
        t.expired().await;
        assert_eq!(t0.elapsed(), header, "a silent new connection gets the header timeout");

        let t = Tracker::new(header, idle);
        t.request_started();
        t.request_finished(false);
        let t0 = Instant::now();
        t.expired().await;
        assert_eq!(t0.elapsed(), idle, "an answered connection gets the idle timeout");

        let t = Tracker::new(header, idle);
        t.request_started();
        t.request_finished(false);
        tokio::time::advance(Duration::from_secs(30)).await;
        t.bytes_read();
        let t0 = Instant::now();
        t.expired().await;
        assert_eq!(t0.elapsed(), header, "a started next request gets the header timeout again");

        let t = Tracker::new(header, idle);
        t.request_started();
        let busy = tokio::time::timeout(Duration::from_secs(3600), t.expired()).await;
        assert!(busy.is_err(), "no timer while a request is in flight");
        t.request_started();
        t.request_finished(true);
        t.request_finished(false);
        let open = tokio::time::timeout(Duration::from_secs(3600), t.expired()).await;
        assert!(open.is_err(), "no timer after an upgrade or a streaming answer");
    }
}
