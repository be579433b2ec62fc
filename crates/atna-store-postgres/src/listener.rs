//! The node's ear on the change feed: a dedicated connection that `LISTEN`s on [`CHANNEL`](crate::CHANNEL) and wakes
//! the change follower, reconnecting by itself when the connection or the server goes away.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use atna_store::Wake;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// Shared between the listening task and [`Listener::wait`].
#[derive(Default)]
struct Signal {
    /// Woken by every notification (a stored permit covers one that arrives between two waits).
    notify: Notify,
    /// Set when notifications may have been missed: the connection broke, or it was (re-)established.
    lost: AtomicBool,
    /// The server process ID of the listening connection while it listens, 0 otherwise.
    backend_pid: AtomicU32,
}

pub(crate) struct Listener {
    signal: Arc<Signal>,
    task: JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Listener {
    /// Starts listening in the background. It never gives up: while the server is away it retries with backoff.
    pub(crate) fn start(opts: PgConnectOptions, connect_timeout: Duration) -> Arc<Self> {
        let signal = Arc::new(Signal::default());
        let task = tokio::spawn(listen_forever(opts, connect_timeout, signal.clone()));
        Arc::new(Self { signal, task })
    }

    /// The PostgreSQL backend PID of the listening connection, while it is listening.
    pub(crate) fn backend_pid(&self) -> Option<u32> {
        Some(self.signal.backend_pid.load(Ordering::Acquire)).filter(|&p| p != 0)
    }

    /// Waits for a notification or the timeout; `Wake::Lost` when notifications may have been missed since the last
    /// call (the caller then forgets its cache and re-reads the feed).
    pub(crate) async fn wait(&self, timeout: Duration) -> Wake {
        if self.signal.lost.swap(false, Ordering::AcqRel) {
            return Wake::Lost;
        }
        let woke = tokio::time::timeout(timeout, self.signal.notify.notified()).await.is_ok();
        if self.signal.lost.swap(false, Ordering::AcqRel) {
            Wake::Lost
        } else if woke {
            Wake::Notified
        } else {
            Wake::Timeout
        }
    }
}

async fn listen_forever(opts: PgConnectOptions, connect_timeout: Duration, signal: Arc<Signal>) {
    let mut backoff = Duration::from_millis(100);
    let mut first = true;
    loop {
        match listen_once(&opts, connect_timeout, &signal, &mut first, &mut backoff).await {
            Ok(()) => tracing::warn!("change notifications: connection closed; reconnecting"),
            Err(e) => tracing::warn!(error = %e, "change notifications: connection lost; reconnecting"),
        }
        signal.backend_pid.store(0, Ordering::Release);
        // Whatever was sent while we were away is gone: the follower must forget its cache and re-read the feed.
        signal.lost.store(true, Ordering::Release);
        signal.notify.notify_one();
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// One connection's life: connect, `LISTEN`, forward notifications until it breaks.
async fn listen_once(
    opts: &PgConnectOptions,
    connect_timeout: Duration,
    signal: &Signal,
    first: &mut bool,
    backoff: &mut Duration,
) -> Result<(), sqlx::Error> {
    // A pool of one, used only to open this connection; dropped (and closed) with it.
    let pool = PgPoolOptions::new().max_connections(1).acquire_timeout(connect_timeout).connect_lazy_with(opts.clone());
    let mut listener = PgListener::connect_with(&pool).await?;
    listener.eager_reconnect(false);
    listener.listen(crate::CHANNEL).await?;
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&mut listener).await?;
    signal.backend_pid.store(pid as u32, Ordering::Release);
    *backoff = Duration::from_millis(100);
    if *first {
        *first = false;
    } else {
        // Listening again: anything published while we were away is only in the feed.
        tracing::info!("change notifications: listening again");
        signal.lost.store(true, Ordering::Release);
        signal.notify.notify_one();
    }
    loop {
        match listener.try_recv().await? {
            Some(_) => signal.notify.notify_one(),
            None => return Ok(()),
        }
    }
}
