//! Tools of the pressure suites (`attacks.rs`, `soak.rs`): a process's open descriptors and memory from `/proc`, a
//! normal client measured while something else happens, raw sockets from a chosen loopback address, and percentiles.

#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Whether the long mode was asked for (`ATNA_ATTACK_LONG=1`).
pub fn long_mode() -> bool {
    std::env::var("ATNA_ATTACK_LONG").is_ok_and(|v| v == "1")
}

/// Open file descriptors of process `pid`.
pub fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// Resident memory of process `pid`, in bytes.
pub fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    kb * 1024
}

/// Waits (polling, up to `within`) until `pid` holds at most `limit` descriptors; returns the last count seen.
pub async fn fds_back_to(pid: u32, limit: usize, within: Duration) -> usize {
    let deadline = Instant::now() + within;
    loop {
        let n = fds(pid);
        if n <= limit || Instant::now() >= deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Raises this process's soft descriptor limit to its hard limit (the long modes open 10,000 sockets); returns it.
pub fn raise_own_nofile() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `getrlimit`/`setrlimit` only read and write the struct on this stack frame.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = lim.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
    #[allow(clippy::useless_conversion)]
    u64::from(lim.rlim_cur)
}

/// The `q`-quantile (0..=1) of `xs`, which it sorts.
pub fn quantile(xs: &mut [Duration], q: f64) -> Duration {
    if xs.is_empty() {
        return Duration::ZERO;
    }
    xs.sort_unstable();
    let i = ((xs.len() - 1) as f64 * q).round() as usize;
    xs[i]
}

/// "p50 1.2 ms, p99 3.4 ms, max 5.6 ms (n = 789)".
pub fn summary(xs: &mut [Duration]) -> String {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!(
        "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (n = {})",
        ms(quantile(xs, 0.5)),
        ms(quantile(xs, 0.99)),
        ms(quantile(xs, 1.0)),
        xs.len()
    )
}

/// A client on 127.0.0.1 calling `GET /v1/whoami` with a valid key in a loop (a new connection each time, so it
/// also goes through the accept loop and the connection caps an attack presses on), recording every answer.
pub struct NormalClient {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<(u16, Duration)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl NormalClient {
    pub fn start(base: &str, key: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let seen: Arc<Mutex<Vec<(u16, Duration)>>> = Arc::default();
        let (url, key, stop2, seen2) = (format!("{base}/v1/whoami"), key.to_owned(), stop.clone(), seen.clone());
        let task = tokio::spawn(async move {
            let http =
                reqwest::Client::builder().pool_max_idle_per_host(0).timeout(Duration::from_secs(60)).build().unwrap();
            while !stop2.load(Ordering::Relaxed) {
                let t0 = Instant::now();
                let status = match http.get(&url).bearer_auth(&key).send().await {
                    Ok(res) => {
                        let s = res.status().as_u16();
                        let _ = res.bytes().await;
                        s
                    }
                    Err(e) => {
                        eprintln!("normal client: {e}");
                        0
                    }
                };
                seen2.lock().unwrap().push((status, t0.elapsed()));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        Self { stop, seen, task }
    }

    /// Takes the answers recorded since the last call.
    pub fn take(&self) -> Vec<(u16, Duration)> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }

    /// Takes the answers since the last call, asserts every one was a 200, and prints their latency under `label`.
    pub fn report(&self, label: &str) -> String {
        let seen = self.take();
        assert!(!seen.is_empty(), "{label}: the normal client made no request");
        let bad: Vec<_> = seen.iter().filter(|(s, _)| *s != 200).collect();
        assert!(
            bad.is_empty(),
            "{label}: the normal client got {} answers other than 200: {:?}",
            bad.len(),
            &bad[..bad.len().min(5)]
        );
        let mut lat: Vec<Duration> = seen.iter().map(|(_, d)| *d).collect();
        let line = format!("{label}: normal client whoami {}", summary(&mut lat));
        eprintln!("{line}");
        line
    }

    pub async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
    }
}

/// A TCP connection to `to` from the loopback address `from` (any port).
pub async fn connect_from(from: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let sock = TcpSocket::new_v4()?;
    sock.bind(SocketAddr::new(from, 0))?;
    sock.connect(to).await
}

/// Reads what the server sends until it closes the connection (or `within` passes: then `None`).
pub async fn read_until_closed(s: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let read = async {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(within, read).await.ok()?;
    Some(out)
}

/// The status code of a raw HTTP/1.1 answer (`0` if there is none).
pub fn status_of(answer: &[u8]) -> u16 {
    std::str::from_utf8(answer.get(9..12).unwrap_or_default()).ok().and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// Sends `request` on a new connection and reads the answer until the server closes.
pub async fn raw(to: SocketAddr, request: &[u8], within: Duration) -> Vec<u8> {
    let mut s = TcpStream::connect(to).await.unwrap();
    s.write_all(request).await.unwrap();
    read_until_closed(&mut s, within).await.expect("the server answered and closed in time")
}
