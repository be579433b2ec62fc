//! File descriptors: raising the soft limit at start, and what the accept loop does when they run out. With no
//! descriptor left, `accept` fails at once while the connection stays queued, so retrying straight away spins a
//! core and floods the log; instead the loop waits (50 ms, doubling to 200 ms), logs once per burst, and says when
//! it accepts again. Meanwhile open connections keep being served, and timers free descriptors.

use std::io;
use std::time::Duration;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (a server holds one descriptor per connection; the usual soft
/// default of 1024 is for interactive programs). Returns the soft limit in effect afterwards.
#[cfg(unix)]
pub fn raise_nofile_limit() -> Option<u64> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `getrlimit`/`setrlimit` only read or write the struct passed, which lives on this stack frame.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return None;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim = raised;
            }
        }
    }
    // `rlim_t` is not `u64` on every target.
    #[allow(clippy::useless_conversion)]
    Some(u64::from(lim.rlim_cur))
}

/// Elsewhere the limit is left alone.
#[cfg(not(unix))]
pub fn raise_nofile_limit() -> Option<u64> {
    None
}

/// The connection cap when none is configured: at most 10,000, and never so many that connections alone exhaust the
/// descriptor limit (some are needed for the database, the log and the listener).
pub fn default_max_connections(nofile: Option<u64>) -> u32 {
    let Some(n) = nofile else { return 10_000 };
    let usable = n.saturating_sub(100).max(n / 2);
    u32::try_from(usable.clamp(1, 10_000)).unwrap_or(10_000)
}

/// Whether an `accept` error means the process or system is out of descriptors (or memory for sockets).
fn is_exhaustion(e: &io::Error) -> bool {
    #[cfg(unix)]
    {
        matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM))
    }
    #[cfg(not(unix))]
    {
        let _ = e;
        false
    }
}

/// Whether an `accept` error concerns only the one connection (the client gave up first): try the next at once.
fn is_per_connection(e: &io::Error) -> bool {
    use io::ErrorKind::*;
    matches!(e.kind(), ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted | WouldBlock)
}

const FIRST_WAIT: Duration = Duration::from_millis(50);
const MAX_WAIT: Duration = Duration::from_millis(200);

/// The accept loop's memory of a burst of failures.
#[derive(Debug, Default)]
pub struct AcceptErrors {
    wait: Duration,
    burst: u64,
}

impl AcceptErrors {
    /// What to do after `accept` failed: `None` to go on at once, or how long to wait first.
    pub fn failed(&mut self, e: &io::Error) -> Option<Duration> {
        if is_per_connection(e) {
            tracing::debug!(error = %e, "a connection was gone before it was accepted");
            return None;
        }
        if self.burst == 0 {
            if is_exhaustion(e) {
                tracing::warn!(error = %e, "cannot accept connections: out of file descriptors; waiting for some to \
                    close (raise `ulimit -n` or lower max_connections)");
            } else {
                tracing::warn!(error = %e, "cannot accept connections; retrying");
            }
        }
        self.burst += 1;
        self.wait = (self.wait * 2).clamp(FIRST_WAIT, MAX_WAIT);
        Some(self.wait)
    }

    /// `accept` worked: ends a burst (and says so in the log).
    pub fn succeeded(&mut self) {
        if self.burst > 0 {
            tracing::info!(failed_attempts = self.burst, "accepting connections again");
            *self = Self::default();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_and_reset_and_lost_clients_do_not_wait() {
        let mut a = AcceptErrors::default();
        let emfile = io::Error::from_raw_os_error(libc::EMFILE);
        let waits: Vec<_> = (0..4).map(|_| a.failed(&emfile).unwrap().as_millis()).collect();
        assert_eq!(waits, [50, 100, 200, 200]);
        a.succeeded();
        assert_eq!(a.failed(&emfile), Some(FIRST_WAIT));
        assert_eq!(a.failed(&io::Error::from(io::ErrorKind::ConnectionAborted)), None);
    }

    #[test]
    fn the_default_cap_leaves_descriptors_for_the_rest() {
        assert_eq!(default_max_connections(None), 10_000);
        assert_eq!(default_max_connections(Some(1_048_576)), 10_000);
        assert_eq!(default_max_connections(Some(1024)), 924);
        assert_eq!(default_max_connections(Some(64)), 32);
        assert_eq!(default_max_connections(Some(0)), 1);
    }
}
