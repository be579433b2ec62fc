//! The pieces of the gateway suite (`tests/proxies.rs`): an echo service standing in for the service atna protects,
//! and the four real proxies started on a free port with the configuration files of `deploy/`, rendered by replacing
//! their `${PLACEHOLDER}`s and nothing else.

use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::{Json, Router};
use serde_json::{json, Value};

/// The repository root, where `deploy/` and `target/proxies-venv` live.
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The protected service: answers every request with `200` and what it received (method, URI, headers in the order
/// they arrived, body), and counts requests, so a test can tell that a refused request never reached it.
pub struct Echo {
    pub addr: SocketAddr,
    hits: Arc<AtomicUsize>,
}

impl Echo {
    pub async fn start() -> Echo {
        let hits = Arc::new(AtomicUsize::new(0));
        let app = Router::new().fallback(echo).with_state(hits.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Echo { addr, hits }
    }

    /// Requests that reached the service so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

async fn echo(State(hits): State<Arc<AtomicUsize>>, req: Request) -> Json<Value> {
    hits.fetch_add(1, Ordering::SeqCst);
    let (parts, body) = req.into_parts();
    let headers: Vec<Value> = parts
        .headers
        .iter()
        .map(|(name, value)| json!([name.as_str(), String::from_utf8_lossy(value.as_bytes())]))
        .collect();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
    Json(json!({
        "method": parts.method.as_str(),
        "uri": parts.uri.to_string(),
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    }))
}

/// The four gateways the suite covers.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Nginx,
    Caddy,
    Traefik,
    Envoy,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Nginx => "nginx",
            Kind::Caddy => "caddy",
            Kind::Traefik => "traefik",
            Kind::Envoy => "envoy",
        }
    }

    /// `ATNA_NGINX` etc. (what scripts/install-proxies prints), else the usual places.
    fn binary(self) -> Option<PathBuf> {
        let var = format!("ATNA_{}", self.name().to_uppercase());
        if let Some(path) = std::env::var_os(&var).filter(|p| !p.is_empty()) {
            return Some(PathBuf::from(path));
        }
        let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).map(|d| d.join(self.name())).collect())
            .unwrap_or_default();
        candidates.push(PathBuf::from("/usr/sbin").join(self.name()));
        candidates.push(repo_root().join("target/proxies-venv/bin").join(self.name()));
        candidates.into_iter().find(|p| p.is_file())
    }

    /// The proxy's binary, or `None` when it is not installed (after saying so), which `CI=true` turns into a
    /// failure.
    pub fn installed(self) -> Option<PathBuf> {
        let bin = self.binary();
        if bin.is_none() {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!(
                    "{} is not installed, and CI requires the gateway suite (run scripts/install-proxies)",
                    self.name()
                );
            }
            say(&format!("SKIPPED: {} not installed (scripts/install-proxies installs it)", self.name()));
        }
        bin
    }
}

/// Writes a line to stderr past the test harness's capture, so that a skip shows in a passing run too.
pub fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Replaces each `${NAME}` of `vars` in `text`, and checks that no placeholder is left.
fn render(text: &str, vars: &[(&str, String)]) -> String {
    let mut out = text.to_owned();
    for (name, value) in vars {
        out = out.replace(&format!("${{{name}}}"), value);
    }
    assert!(!out.contains("${"), "a placeholder was left unreplaced:\n{out}");
    out
}

fn deploy_file(rel: &str) -> String {
    fs::read_to_string(repo_root().join("deploy").join(rel)).unwrap_or_else(|e| panic!("deploy/{rel}: {e}"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running proxy, stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Proxy {
    pub kind: Kind,
    pub base: String,
    child: Child,
    dir: tempfile::TempDir,
}

impl Proxy {
    /// Starts `kind` (its binary `bin`) in front of atna (`atna`, host:port) and the echo service, and returns once
    /// it passes requests to atna. A proxy that exits at once is started again on another port (another process
    /// may have taken the free port it was given); three failures fail the test.
    pub async fn start(kind: Kind, bin: &Path, atna: &str, upstream: SocketAddr) -> Proxy {
        let mut attempt = 1;
        loop {
            let mut proxy = Self::spawn(kind, bin, atna, upstream);
            match proxy.ready().await {
                Ok(()) => return proxy,
                Err(why) if attempt == 3 => panic!("{why}"),
                Err(_) => attempt += 1,
            }
        }
    }

    fn spawn(kind: Kind, bin: &Path, atna: &str, upstream: SocketAddr) -> Proxy {
        let dir = tempfile::tempdir().unwrap();
        #[cfg(unix)]
        {
            // nginx started as root runs its workers as `nobody`; they must reach the temp paths inside.
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        }
        let d = dir.path();
        let port = free_port();
        let (atna_host, atna_port) = atna.rsplit_once(':').unwrap();
        let vars = [
            ("ATNA_ADDR", atna.to_owned()),
            ("ATNA_HOST", atna_host.to_owned()),
            ("ATNA_PORT", atna_port.to_owned()),
            ("UPSTREAM_ADDR", upstream.to_string()),
            ("UPSTREAM_HOST", upstream.ip().to_string()),
            ("UPSTREAM_PORT", upstream.port().to_string()),
            ("LISTEN_PORT", port.to_string()),
        ];
        let log = fs::File::create(d.join("proxy.log")).unwrap();
        let mut cmd = Command::new(bin);
        cmd.current_dir(d).stdin(Stdio::null()).stdout(log.try_clone().unwrap()).stderr(log);
        match kind {
            Kind::Nginx => {
                // The deploy file is a server block for the http {} context; this is the smallest main file
                // around it, with every path nginx writes inside the temporary directory.
                fs::write(d.join("atna.conf"), render(&deploy_file("nginx/atna.conf"), &vars)).unwrap();
                let p = d.display();
                let main = format!(
                    "daemon off;\nworker_processes 1;\npid {p}/nginx.pid;\nerror_log {p}/error.log notice;\n\
                     events {{ worker_connections 256; }}\n\
                     http {{\n  access_log off;\n  client_body_temp_path {p}/body;\n  proxy_temp_path {p}/proxy;\n  \
                     fastcgi_temp_path {p}/fastcgi;\n  uwsgi_temp_path {p}/uwsgi;\n  scgi_temp_path {p}/scgi;\n  \
                     include {p}/atna.conf;\n}}\n"
                );
                fs::write(d.join("nginx.conf"), main).unwrap();
                cmd.arg("-p").arg(d).arg("-c").arg(d.join("nginx.conf")).arg("-e").arg(d.join("error.log"));
            }
            Kind::Caddy => {
                fs::write(d.join("Caddyfile"), render(&deploy_file("caddy/Caddyfile"), &vars)).unwrap();
                // Caddy keeps state under $HOME / XDG directories: keep it in the temporary directory.
                cmd.env("HOME", d).env("XDG_CONFIG_HOME", d).env("XDG_DATA_HOME", d);
                cmd.args(["run", "--adapter", "caddyfile", "--config"]).arg(d.join("Caddyfile"));
            }
            Kind::Traefik => {
                fs::write(d.join("traefik.yml"), render(&deploy_file("traefik/traefik.yml"), &vars)).unwrap();
                fs::write(d.join("dynamic.yml"), render(&deploy_file("traefik/dynamic.yml"), &vars)).unwrap();
                // traefik.yml names dynamic.yml relative to the working directory.
                cmd.arg("--configFile").arg(d.join("traefik.yml"));
            }
            Kind::Envoy => {
                fs::write(d.join("envoy.yaml"), render(&deploy_file("envoy/envoy.yaml"), &vars)).unwrap();
                // No hot restart: it needs shared memory named by a base ID that parallel Envoys would share.
                cmd.arg("-c").arg(d.join("envoy.yaml")).args(["--disable-hot-restart", "-l", "warn"]);
            }
        }
        let child = cmd.spawn().unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        Proxy { kind, base: format!("http://127.0.0.1:{port}"), child, dir }
    }

    /// What the proxy logged so far (for failure messages).
    pub fn log(&self) -> String {
        let mut all = fs::read_to_string(self.dir.path().join("proxy.log")).unwrap_or_default();
        all.push_str(&fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default());
        all
    }

    /// Waits until a request without a key comes back as atna's `401` through the proxy: the proxy listens, has
    /// loaded its routes, and reaches atna. Polls with a deadline; `Err` if the proxy exited.
    async fn ready(&mut self) -> Result<(), String> {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Err(format!("{} exited with {status} before it was ready:\n{}", self.kind.name(), self.log()));
            }
            if let Ok(res) = client.get(format!("{}/", self.base)).send().await {
                if res.status() == 401 {
                    return Ok(());
                }
            }
            assert!(Instant::now() < deadline, "{} not ready within 30 s:\n{}", self.kind.name(), self.log());
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // SIGTERM first: nginx's master then stops its workers, which a SIGKILL would leave running.
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
