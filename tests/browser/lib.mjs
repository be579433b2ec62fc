// Helpers for the browser suite: run the real `atna` binary on port 0 with a temporary data directory, create users
// with its CLI, and launch the system's headless Chromium through playwright-core.
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import readline from "node:readline";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = path.dirname(fileURLToPath(import.meta.url));
export const repoRoot = path.resolve(here, "..", "..");
export const atnaBin = process.env.ATNA_BIN || path.join(repoRoot, "target", "debug", "atna");
export const screenshotDir = path.join(repoRoot, "test-artifacts", "screenshots");
export const chromiumPath = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
export const PASSWORD = "correct horse battery";

/**
 * With ATNA_BROWSER_POSTGRES_URL (a PostgreSQL server URL, e.g. postgres://postgres@127.0.0.1:5432/postgres) every
 * server runs on a fresh PostgreSQL database of its own, dropped when it stops; otherwise on SQLite in a temporary
 * data directory.
 */
const pgServer = process.env.ATNA_BROWSER_POSTGRES_URL || "";

function psql(sql) {
  execFileSync("psql", [pgServer, "-q", "-c", sql], { stdio: ["ignore", "pipe", "pipe"] });
}

/** The environment for atna processes working on `server`'s database. */
function envFor(server, extra = {}) {
  const env = { ...process.env, ...extra };
  delete env.ATNA_DATABASE_URL;
  delete env.ATNA_BIN; // the suite's own setting, not atna's (atna warns of unknown ATNA_ variables)
  if (server.databaseUrl) env.ATNA_DATABASE_URL = server.databaseUrl;
  return env;
}

/**
 * Starts `atna serve` on 127.0.0.1:0; resolves once it printed its address and /healthz answers. With `snapshot` (what
 * `atna export` writes, as an object) the database is first loaded with `atna import`, for states no click can make
 * (keys months old, keys past their expiry).
 */
export async function startServer({ snapshot = null, env = {}, config = "" } = {}) {
  const dataDir = mkdtempSync(path.join(tmpdir(), "atna-browser-"));
  const serveArgs = ["--data-dir", dataDir, "serve", "--listen", "127.0.0.1:0"];
  if (config) {
    // A configuration file of the test's own (TOML), e.g. fast reminder scans.
    const file = path.join(dataDir, "atna.toml");
    writeFileSync(file, config);
    serveArgs.push("--config", file);
  }
  let databaseUrl = null;
  if (pgServer) {
    const name = `atna_b_${process.pid}_${Math.random().toString(16).slice(2, 10)}`;
    psql(`CREATE DATABASE ${name}`);
    const url = new URL(pgServer);
    url.pathname = `/${name}`;
    databaseUrl = url.toString();
  }
  if (snapshot) {
    const file = path.join(dataDir, "snapshot.json");
    writeFileSync(file, JSON.stringify(snapshot), { mode: 0o600 });
    execFileSync(atnaBin, ["--data-dir", dataDir, "import", file], { stdio: ["ignore", "pipe", "pipe"], env: envFor({ databaseUrl }) });
    rmSync(file);
  }
  const child = spawn(atnaBin, serveArgs, {
    stdio: ["ignore", "pipe", "pipe"],
    env: envFor({ databaseUrl }, { ATNA_LOG: "warn", ...env }),
  });
  let stderr = "";
  child.stderr.on("data", (d) => { stderr += d; });
  const lines = readline.createInterface({ input: child.stdout });
  let setupUrl = null;
  const base = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`atna did not print its address within 30 s\n${stderr}`)), 30_000);
    child.once("exit", (code) => { clearTimeout(timer); reject(new Error(`atna exited with ${code}\n${stderr}`)); });
    let addr = null;
    lines.on("line", (line) => {
      const listening = /^atna listening on (http:\/\/\S+)/.exec(line);
      if (listening) {
        addr = listening[1];
        // The setup line, if any, follows immediately; give it the next line or resolve on healthz below.
        setImmediate(() => { clearTimeout(timer); resolve(addr); });
      }
      const setup = /(http:\/\/\S+\/setup\?token=[0-9a-f]+)/.exec(line);
      if (setup) setupUrl = setup[1];
    });
  });
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      const r = await fetch(`${base}/healthz`);
      if (r.ok) break;
    } catch { /* not up yet */ }
    if (Date.now() > deadline) throw new Error(`atna at ${base} never became healthy\n${stderr}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const { backend } = await (await fetch(`${base}/readyz`)).json();
  if (backend !== (databaseUrl ? "postgres" : "sqlite")) throw new Error(`atna runs on ${backend}, not the database asked for`);
  return {
    base,
    dataDir,
    databaseUrl,
    get setupUrl() { return setupUrl; },
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once("exit", r));
        child.kill("SIGTERM");
        await exited;
      }
      rmSync(dataDir, { recursive: true, force: true });
      if (databaseUrl) psql(`DROP DATABASE IF EXISTS ${new URL(databaseUrl).pathname.slice(1)} WITH (FORCE)`);
    },
  };
}

/** What `atna export` writes for `server` (an object with `dataDir` and `databaseUrl`), parsed. */
export function exportSnapshot(server) {
  const out = execFileSync(atnaBin, ["--data-dir", server.dataDir, "export"], { stdio: ["ignore", "pipe", "pipe"], env: envFor(server) });
  return JSON.parse(out.toString());
}

/** Creates a user with `atna user create`, as an operator would. */
export function createUser(server, email, { admin = false, password = PASSWORD } = {}) {
  const args = ["--data-dir", server.dataDir, "user", "create", "--email", email, "--password-stdin"];
  if (admin) args.push("--admin");
  execFileSync(atnaBin, args, { input: `${password}\n`, stdio: ["pipe", "pipe", "pipe"], env: envFor(server) });
}

/** Creates a key for a user with `atna key create`; returns { id, secret }. */
export function createKey(server, email, name) {
  const out = execFileSync(
    atnaBin,
    ["--data-dir", server.dataDir, "key", "create", "--user", email, "--name", name, "--json"],
    { env: envFor(server) },
  );
  const v = JSON.parse(out.toString());
  return { id: v.id, secret: v.secret };
}

/** Launches the system Chromium headless. */
export async function launch() {
  return chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
}

/** Saves a full-page screenshot to test-artifacts/screenshots/<name>.png. */
export async function shot(page, name) {
  mkdirSync(screenshotDir, { recursive: true });
  await page.screenshot({ path: path.join(screenshotDir, `${name}.png`), fullPage: true });
}

/** Signs in through the login form. */
export async function signIn(page, base, email, password = PASSWORD) {
  await page.goto(`${base}/login`);
  await page.getByLabel("E-mail address").fill(email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
}

/** GET /v1/whoami with a key, over HTTP; returns the status. */
export async function whoami(base, secret) {
  const r = await fetch(`${base}/v1/whoami`, { headers: { Authorization: `Bearer ${secret}` } });
  await r.arrayBuffer();
  return r.status;
}
