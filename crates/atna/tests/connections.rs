//! The real binary under descriptor pressure: with `ulimit -n 64` and more half-open connections than descriptors,
//! it keeps serving (the header timeout frees descriptors), does not spin on failing `accept`s, and logs the
//! exhaustion once per burst instead of once per attempt.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::Server;

/// CPU time (user + system) the process has used so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which is in parentheses and may hold spaces); utime and stime are 14 and 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    // Clock ticks are 1/100 s on Linux.
    Duration::from_millis(ticks * 10)
}

/// A connection that sends half a request; `None` once the server's accept queue is full (connecting times out).
fn half_header(to: SocketAddr) -> Option<TcpStream> {
    let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(2)).ok()?;
    let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: atna\r\n");
    Some(s)
}

/// `GET /healthz` on a new connection; whether a 200 came back within `within`.
fn healthz(to: SocketAddr, within: Duration) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&to, within) else { return false };
    s.set_read_timeout(Some(within)).unwrap();
    if s.write_all(b"GET /healthz HTTP/1.1\r\nHost: atna\r\nConnection: close\r\n\r\n").is_err() {
        return false;
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out.starts_with(b"HTTP/1.1 200")
}

#[test]
fn out_of_descriptors_the_server_keeps_serving_without_spinning() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start_limited(
        64,
        &[
            ("ATNA_DATA_DIR", data.path().to_str().unwrap()),
            ("ATNA_LOG", "info"),
            ("ATNA_HEADER_READ_TIMEOUT_SECS", "1"),
            // No cap may stop the flood before the descriptors run out: this test is about running out.
            ("ATNA_MAX_CONNECTIONS", "100000"),
            ("ATNA_MAX_CONNECTIONS_PER_PEER", "100000"),
        ],
    );
    let pid = server.child.id();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    assert!(limits.lines().any(|l| l.starts_with("Max open files") && l.contains(" 64 ")), "{limits}");
    let to: SocketAddr = server.base.trim_start_matches("http://").parse().unwrap();
    assert!(healthz(to, Duration::from_secs(5)));

    let cpu_before = cpu_time(pid);
    let t0 = Instant::now();
    // Three times as many connections as descriptors, held open by this side throughout.
    let flood: Vec<_> = (0..200).map_while(|_| half_header(to)).collect();
    assert!(flood.len() > 64, "more connections than descriptors ({})", flood.len());
    // A normal client is served while the flood is still open: the header timeout frees descriptors.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut served = false;
    while !served && Instant::now() < deadline {
        served = healthz(to, Duration::from_secs(5));
    }
    assert!(served, "no answer within 20 s while the flood was open");
    let busy = t0.elapsed();
    let cpu = cpu_time(pid) - cpu_before;
    assert!(cpu < busy / 2 + Duration::from_millis(500), "used {cpu:?} of CPU in {busy:?}: spinning on accept?");
    drop(flood);
    assert!(healthz(to, Duration::from_secs(5)), "served once the flood is gone");

    let log = server.stop();
    let warnings = log.matches("cannot accept connections").count();
    assert!(warnings >= 1, "the exhaustion is logged:\n{log}");
    assert!(warnings <= 20, "logged once per burst, not per attempt ({warnings} lines):\n{log}");
    assert!(log.contains("accepting connections again"), "{log}");
}
