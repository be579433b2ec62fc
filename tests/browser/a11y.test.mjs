// Accessibility: axe-core's WCAG 2.1 A and AA rules on every dashboard page, signed out and signed in, in the states
// people see (empty and full lists, open menus, form errors, notices, error pages, a phone-sized screen). Any violation
// fails the test, with each page's rule ids, elements and messages. Each checked page is also saved as a screenshot
// (test-artifacts/screenshots/a11y-*.png) to look at.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Audit } from "./axe.mjs";
import { createKey, createUser, exportSnapshot, launch, shot, signIn, startServer, PASSWORD } from "./lib.mjs";

let browser;

before(async () => {
  browser = await launch();
});

after(async () => {
  await browser?.close();
});

/** Checks the page as it is now (after going to `url`, if given) and saves a screenshot of it. */
async function check(audit, page, what, url) {
  if (url) await page.goto(url);
  await audit.check(page, what);
  await shot(page, `a11y-${what.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/-$/, "")}`);
}

/** Sends the "Generate an API Key" form with `name`. */
async function saveAndAdd(page, base, name) {
  await page.goto(`${base}/keys/new`);
  await page.locator("#name").fill(name);
  await page.getByRole("button", { name: "Save & Add" }).click();
  await page.waitForLoadState();
}

const DAY = 24 * 60 * 60 * 1000;

describe("accessibility (axe-core, WCAG 2.1 A/AA)", () => {
  test("every page of a first run: sign-in, setup, keys, generate, secret, delete, account, users, errors", async () => {
    const server = await startServer();
    const audit = new Audit();
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();
    const base = server.base;
    try {
      await check(audit, page, "sign-in before setup", `${base}/login`);
      await page.getByText("No account exists yet").waitFor();

      assert.ok(server.setupUrl, "atna serve printed a setup link");
      await check(audit, page, "setup", server.setupUrl);
      await page.getByLabel("E-mail address").fill("admin@example.com");
      await page.getByLabel("Password", { exact: true }).fill(PASSWORD);
      await page.getByLabel("Password again").fill(`${PASSWORD} typo`);
      await page.getByRole("button", { name: "Create account and sign in" }).click();
      await page.getByRole("alert").waitFor();
      await check(audit, page, "setup with an error");
      await page.getByLabel("Password", { exact: true }).fill(PASSWORD);
      await page.getByLabel("Password again").fill(PASSWORD);
      await page.getByRole("button", { name: "Create account and sign in" }).click();

      await page.getByText("You have no API keys yet").waitFor();
      await check(audit, page, "My API Keys empty");
      await page.locator("details.profile > summary").click();
      await page.getByRole("menuitem", { name: "Account" }).waitFor();
      await check(audit, page, "profile menu open");
      await page.keyboard.press("Escape");

      await check(audit, page, "generate form", `${base}/keys/new`);
      await page.locator("#name").fill("billing");
      await page.locator("#name-warning").waitFor({ state: "visible" });
      await check(audit, page, "generate form with the naming tip");
      await page.getByText("More settings").click();
      await page.getByLabel("Allowed IP addresses").fill("203.0.113.0/24\nnot-an-address");
      await check(audit, page, "generate form with more settings open");
      await page.getByRole("button", { name: "Save & Add" }).click();
      await page.getByRole("alert").filter({ hasText: "not-an-address" }).waitFor();
      await check(audit, page, "generate form with an IP allowlist error");

      await saveAndAdd(page, base, "billing-01_01_2026-09_00");
      await page.getByLabel("Credential Secret").waitFor();
      await check(audit, page, "new secret");
      await page.reload();
      await page.getByRole("heading", { name: "This key was already created" }).waitFor();
      await check(audit, page, "key already created");
      await saveAndAdd(page, base, "plain name");
      await check(audit, page, "new secret for a name off the convention");
      await saveAndAdd(page, base, "billing-01_01_2026-09_00");
      await page.locator("#form-error").waitFor();
      await check(audit, page, "generate form with an error");

      await check(audit, page, "My API Keys with keys", `${base}/keys`);
      const row = page.locator("tr[data-key-id]").first();
      await row.getByLabel("More Options").click();
      await row.getByRole("menuitem", { name: "Delete" }).waitFor();
      await check(audit, page, "More Options menu open");
      await check(audit, page, "search without results", `${base}/keys?q=nothing-matches`);
      await check(audit, page, "search with results", `${base}/keys?q=billing`);

      const id = await page.locator("tr[data-key-id]").first().getAttribute("data-key-id");
      await check(audit, page, "delete confirmation", `${base}/keys/${id}/delete`);
      await page.getByRole("button", { name: "Yes, delete this key" }).click();
      await page.getByText("was deleted").waitFor();
      await check(audit, page, "My API Keys after a deletion");

      await check(audit, page, "account", `${base}/account`);
      await page.getByLabel("Current password").fill("not my password");
      await page.getByLabel("New password", { exact: true }).fill("another long password");
      await page.getByLabel("New password again").fill("another long password");
      await page.getByRole("button", { name: "Change password" }).click();
      await page.getByRole("alert").waitFor();
      await check(audit, page, "account with an error");

      await check(audit, page, "users", `${base}/admin/users`);
      await page.getByLabel("E-mail address").fill("bob@example.com");
      await page.getByLabel("Initial password").fill(PASSWORD);
      await page.getByRole("button", { name: "Create user" }).click();
      await page.getByRole("status").waitFor();
      await check(audit, page, "users with a notice");
      await page.getByLabel("E-mail address").fill("bob@example.com");
      await page.getByLabel("Initial password").fill(PASSWORD);
      await page.getByRole("button", { name: "Create user" }).click();
      await page.getByRole("alert").waitFor();
      await check(audit, page, "users with an error");

      await check(audit, page, "secure storage", `${base}/help/secure-storage`);
      await check(audit, page, "no such key", `${base}/keys/AAAAAAAAAAAAAAAA/delete`);
      await check(audit, page, "page not found", `${base}/no/such/page`);
      await check(audit, page, "method not allowed", `${base}/logout`);
      await page.goto(`${base}/keys/new`);
      await page.locator("#new-key-form input[name=csrf]").evaluate((el) => { el.value = "0".repeat(64); });
      await page.locator("#name").fill("tampered");
      await page.getByRole("button", { name: "Save & Add" }).click();
      await page.getByRole("heading", { name: "This form has expired" }).waitFor();
      await check(audit, page, "form expired (CSRF)");
      await page.goto(`${base}/keys/new`);
      await page.locator("#new-key-form input[name=nonce]").evaluate((el) => el.remove());
      await page.locator("#name").fill("no-nonce");
      await page.getByRole("button", { name: "Save & Add" }).click();
      await page.getByRole("heading", { name: "This form has expired" }).waitFor();
      await check(audit, page, "form expired (no nonce)");

      await page.locator("details.profile > summary").click();
      await page.getByRole("menuitem", { name: "Log out" }).click();
      await page.getByRole("heading", { name: "Sign in to atna" }).waitFor();
      await check(audit, page, "sign-in");
      await signIn(page, base, "admin@example.com", "not my password");
      await page.locator("#login-error").waitFor();
      await check(audit, page, "sign-in with an error");
      await check(audit, page, "secure storage signed out", `${base}/help/secure-storage`);
      await check(audit, page, "setup finished", server.setupUrl);
      await page.getByRole("heading", { name: "Setup is finished" }).waitFor();
    } finally {
      await context.close();
      await server.stop();
    }
    audit.assertClean();
  });

  test("what only time makes (old, idle, used, expired keys; a disabled user), also on a phone", async () => {
    // Keys months old or past their expiry cannot be made by clicking: make them with the CLI, then move their dates
    // back in an export and import that into the server's database.
    const scratch = { dataDir: mkdtempSync(path.join(tmpdir(), "atna-a11y-")), databaseUrl: null };
    let snapshot;
    try {
      createUser(scratch, "root@example.com", { admin: true });
      createUser(scratch, "dave@example.com");
      createKey(scratch, "root@example.com", "old-idle-01_01_2026-09_00");
      createKey(scratch, "root@example.com", "expired-01_02_2026-09_00");
      createKey(scratch, "root@example.com", "busy-01_03_2026-09_00");
      snapshot = exportSnapshot(scratch);
    } finally {
      rmSync(scratch.dataDir, { recursive: true, force: true });
    }
    const now = Date.now();
    const key = (prefix) => snapshot.keys.find((k) => k.name.startsWith(prefix));
    Object.assign(key("old-idle"), { created_at: now - 120 * DAY });
    Object.assign(key("expired"), { created_at: now - 40 * DAY, expires_at: now - DAY });
    Object.assign(key("busy"), { last_used_at: now - 2 * 60 * 60 * 1000, last_used_ip: "203.0.113.7", use_count: 12 });
    snapshot.users.find((u) => u.email === "dave@example.com").disabled = true;

    const server = await startServer({ snapshot });
    const audit = new Audit();
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true });
    try {
      const page = await context.newPage();
      await signIn(page, server.base, "root@example.com");
      await page.getByRole("heading", { name: "My API Keys" }).waitFor();
      await page.getByText("rotation due").waitFor();
      await page.getByText("expired", { exact: true }).waitFor();
      await check(audit, page, "My API Keys with old, expired and used keys");
      await check(audit, page, "delete confirmation of an old key", `${server.base}/keys/${key("old-idle").id}/delete`);
      await check(audit, page, "delete confirmation of a used key", `${server.base}/keys/${key("busy").id}/delete`);
      await check(audit, page, "users with a disabled user", `${server.base}/admin/users`);
      await page.getByText("disabled", { exact: true }).waitFor();

      const p2 = await phone.newPage();
      await signIn(p2, server.base, "root@example.com");
      await p2.getByRole("heading", { name: "My API Keys" }).waitFor();
      await check(audit, p2, "phone My API Keys");
      await p2.locator("details.profile > summary").click();
      await p2.getByRole("menuitem", { name: "Account" }).waitFor();
      await check(audit, p2, "phone profile menu open");
      await check(audit, p2, "phone generate form", `${server.base}/keys/new`);
      await check(audit, p2, "phone users", `${server.base}/admin/users`);
    } finally {
      await phone.close();
      await context.close();
      await server.stop();
    }
    audit.assertClean();
  });
});
