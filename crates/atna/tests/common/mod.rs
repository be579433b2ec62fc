//! Driving the real `atna` binary: one-shot commands and running servers, configured through `ATNA_*` variables.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_atna");

/// Runs `atna ARGS` on the default (SQLite) database in `data`.
pub fn atna(data: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    atna_env(&[("ATNA_DATA_DIR", data.to_str().unwrap())], args, stdin)
}

/// The database variables of a test's atna: SQLite in `data`, or with `ATNA_TEST_BACKEND=postgres` (and
/// `ATNA_TEST_POSTGRES_URL`) a fresh PostgreSQL schema.
pub async fn database(data: &Path) -> Vec<(&'static str, String)> {
    let mut env = vec![("ATNA_DATA_DIR", data.to_str().unwrap().to_owned())];
    if std::env::var("ATNA_TEST_BACKEND").as_deref() == Ok("postgres") {
        let server =
            atna_store_postgres::testdb::server_url().expect("ATNA_TEST_BACKEND=postgres needs ATNA_TEST_POSTGRES_URL");
        env.push(("ATNA_DATABASE_URL", atna_store_postgres::testdb::fresh_schema_url(&server).await));
    }
    env
}

/// Runs `atna ARGS` with these variables (and no `ATNA_DATABASE_URL` unless given).
pub fn atna_env(env: &[(&str, &str)], args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("ATNA_DATABASE_URL")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

pub fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A port nothing listens on right now (the OS picks it; a server started on it soon after gets it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running `atna serve`.
pub struct Server {
    pub child: Child,
    pub base: String,
    stdout: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
}

impl Server {
    /// `atna serve` on the default (SQLite) database in `data`, logging at `log`.
    pub fn start(data: &Path, log: &str) -> Server {
        Self::start_env(&[("ATNA_DATA_DIR", data.to_str().unwrap()), ("ATNA_LOG", log)])
    }

    /// `atna serve` on port 0 with these variables; returns once it printed its address.
    pub fn start_env(env: &[(&str, &str)]) -> Server {
        Self::start_on("127.0.0.1:0", env)
    }

    /// Like [`Server::start_env`], with at most `nofile` open file descriptors (soft and hard limit).
    pub fn start_limited(nofile: u32, env: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", &format!("ulimit -n {nofile} && exec \"$0\" serve --listen 127.0.0.1:0"), BIN]);
        cmd.env_remove("ATNA_DATABASE_URL").envs(env.iter().copied());
        Self::spawn(cmd)
    }

    /// `atna serve --listen LISTEN` with these variables; returns once it printed its address.
    pub fn start_on(listen: &str, env: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--listen", listen]).env_remove("ATNA_DATABASE_URL").envs(env.iter().copied());
        Self::spawn(cmd)
    }

    /// Runs `cmd` (which starts `atna serve`, perhaps through a shell) and returns once it printed its address.
    pub fn spawn(mut cmd: Command) -> Server {
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let (etx, erx) = mpsc::channel();
        let mut stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut all = String::new();
            let _ = stderr.read_to_string(&mut all);
            let _ = etx.send(all);
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let base = loop {
            let line = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("server printed its address");
            if let Some(url) = line.strip_prefix("atna listening on ") {
                break url.trim().to_owned();
            }
        };
        Server { child, base, stdout: rx, stderr: erx }
    }

    /// The first-run setup link the server printed after its address (it prints one only while no user exists).
    pub fn setup_link(&self) -> Option<String> {
        let line = self.stdout.recv_timeout(Duration::from_secs(5)).ok()?;
        line.split_whitespace().find(|w| w.contains("/setup?token=")).map(str::to_owned)
    }

    /// The next line the server prints on standard output (after its address), if one comes within `wait`.
    pub fn next_line(&self, wait: Duration) -> Option<String> {
        self.stdout.recv_timeout(wait).ok()
    }

    pub async fn whoami(&self, key: &str) -> u16 {
        let res = reqwest::Client::new().get(format!("{}/v1/whoami", self.base)).bearer_auth(key).send().await.unwrap();
        res.status().as_u16()
    }

    /// SIGTERM, wait for exit, return everything it logged.
    pub fn stop(mut self) -> String {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let status = self.child.wait().unwrap();
        assert!(status.success(), "graceful exit, got {status}");
        self.stderr.recv_timeout(Duration::from_secs(10)).unwrap()
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

/// A server a failed assertion left running is killed, not leaked past the test.
impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
