// The seed doc ("Manage API Keys"), click by click, in headless Chromium against the real atna binary.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { createKey, createUser, launch, shot, signIn, startServer, whoami } from "./lib.mjs";

let server;
let browser;

before(async () => {
  server = await startServer();
  browser = await launch();
  createUser(server, "alice@example.com");
  createUser(server, "bob@example.com");
  createUser(server, "carol@example.com");
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

/** The page's HTML once it has settled (content() fails while a navigation is under way). */
async function settled(page) {
  for (let i = 0; ; i++) {
    try {
      await page.waitForLoadState();
      return await page.content();
    } catch (e) {
      if (i > 20) throw e;
    }
  }
}

function pad(n) { return String(n).padStart(2, "0"); }
function conventionalName(service, d = new Date()) {
  return `${service}-${pad(d.getDate())}_${pad(d.getMonth() + 1)}_${d.getFullYear()}-${pad(d.getHours())}_${pad(d.getMinutes())}`;
}

/** Opens the profile menu (top-right) and picks an entry; `screenshot` names a picture of the open menu. */
async function fromProfileMenu(page, email, entry, screenshot) {
  const summary = page.locator("details.profile > summary");
  await assert.doesNotReject(summary.getByText(email).waitFor());
  await summary.click();
  const item = page.getByRole("menuitem", { name: entry });
  await item.waitFor();
  if (screenshot) await shot(page, screenshot);
  await item.click();
}

/** "+ Generate an API Key" → name → "Save & Add"; returns { id, secret }. */
async function generateKey(page, name) {
  await page.getByRole("link", { name: "+ Generate an API Key" }).first().click();
  await page.getByLabel("Name for the key").fill(name);
  await page.getByRole("button", { name: "Save & Add" }).click();
  const id = await page.getByLabel("Credential ID").inputValue();
  const secret = await page.getByLabel("Credential Secret").inputValue();
  return { id, secret };
}

describe("the seed flow", () => {
  test("log in → My API Keys → + Generate an API Key → Save & Add → use → More Options → Delete → 401", async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();
    await page.goto(server.base);
    assert.match(page.url(), /\/login$/);
    await shot(page, "01-login");

    // 1. Log in to your ATNA Dashboard.
    await signIn(page, server.base, "alice@example.com");
    // 2-3. The dropdown beside your profile name (top-right) → My API Keys.
    await fromProfileMenu(page, "alice@example.com", "My API Keys", "01b-profile-menu");
    await page.getByRole("heading", { name: "My API Keys" }).waitFor();
    // The empty state explains what keys are for and points at the button.
    await page.getByText("You have no API keys yet").waitFor();
    await shot(page, "02-keys-empty");

    // 4. + Generate an API Key.
    await page.getByRole("link", { name: "+ Generate an API Key" }).first().click();
    const nameField = page.getByLabel("Name for the key");
    const prefilled = await nameField.inputValue();
    assert.match(prefilled, /^service_name-\d\d_\d\d_\d{4}-\d\d_\d\d$/, "prefilled with the convention");
    assert.equal(prefilled.slice(0, 13), "service_name-");
    await page.getByText("Recommended:").waitFor();
    // A name off the convention gets a soft warning (not a refusal).
    await nameField.fill("billing");
    await page.locator("#name-warning").waitFor({ state: "visible" });
    // 5. Provide a name following the recommended convention: type the service name, the date and time fill in.
    await nameField.fill(prefilled);
    await page.getByLabel("Service name").fill("billing");
    const name = await nameField.inputValue();
    assert.match(name, /^billing-\d\d_\d\d_\d{4}-\d\d_\d\d$/);
    assert.ok(name === conventionalName("billing") || name.slice(0, 19) === conventionalName("billing").slice(0, 19), name);
    await page.locator("#name-warning").waitFor({ state: "hidden" });
    await shot(page, "03-key-new");

    // 6. Save & Add.
    await page.getByRole("button", { name: "Save & Add" }).click();
    // 7. The Credential ID and Credential Secret, displayed on screen.
    const id = await page.getByLabel("Credential ID").inputValue();
    const secret = await page.getByLabel("Credential Secret").inputValue();
    assert.match(id, /^[0-9A-Za-z]{16}$/);
    assert.ok(secret.startsWith(`atna_${id}_`));
    assert.ok(!page.url().includes(secret), "the secret is never in a URL");
    await page.getByText("will not be shown again").waitFor();
    await page.getByRole("button", { name: "Copy" }).first().waitFor();
    assert.equal(await page.locator("#snippet-env").inputValue(), `export ATNA_API_KEY=${secret}`);
    assert.equal(await page.locator("#snippet-curl").inputValue(), `curl -H "Authorization: Bearer ${secret}" ${server.base}/v1/whoami`);
    await page.getByRole("link", { name: "Secure storage" }).waitFor();
    await shot(page, "04-key-created");

    // The key works: GET /v1/whoami with Authorization: Bearer <secret>.
    assert.equal(await whoami(server.base, secret), 200);

    // Delete: profile menu → My API Keys → More Options (⋮) → Delete.
    await fromProfileMenu(page, "alice@example.com", "My API Keys");
    const row = page.locator(`tr[data-key-id="${id}"]`);
    await row.getByText(name).waitFor();
    await shot(page, "05-keys-list");
    await row.getByLabel("More Options").click();
    await row.getByRole("menuitem", { name: "Delete" }).click();
    // The confirmation says the danger note, with facts.
    await page.getByText("otherwise those services will fail").waitFor();
    const usage = await page.locator("#usage-fact").textContent();
    assert.match(usage, /^used (just now|\d+ seconds? ago) from 127\.0\.0\.1 — services using it will fail$/);
    await shot(page, "06-key-delete-confirm");
    await page.getByRole("button", { name: "Yes, delete this key" }).click();
    await page.getByText("was deleted").waitFor();
    assert.equal(await page.locator(`tr[data-key-id="${id}"]`).count(), 0, "gone from the list");

    // Revoked at once: the same call now gets 401.
    assert.equal(await whoami(server.base, secret), 401);
    await context.close();
  });

  test("the suggested name uses the browser's time zone", async () => {
    // UTC+14: the local date and hour differ from the server's UTC suggestion.
    const context = await browser.newContext({ timezoneId: "Pacific/Kiritimati" });
    const page = await context.newPage();
    await signIn(page, server.base, "alice@example.com");
    const local = () => {
      const parts = new Intl.DateTimeFormat("en-GB", {
        timeZone: "Pacific/Kiritimati", day: "2-digit", month: "2-digit", year: "numeric", hour: "2-digit", minute: "2-digit", hourCycle: "h23",
      }).formatToParts(new Date());
      const p = Object.fromEntries(parts.map((x) => [x.type, x.value]));
      return `service_name-${p.day}_${p.month}_${p.year}-${p.hour}_${p.minute}`;
    };
    const before = local();
    await page.goto(`${server.base}/keys/new`);
    await page.waitForFunction(() => document.readyState === "complete");
    const value = await page.getByLabel("Name for the key").inputValue();
    const afterwards = local();
    assert.ok(value === before || value === afterwards, `${value} is local time (${before})`);
    await context.close();
  });

  test("the secret is not shown again on reload, back or forward", async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await signIn(page, server.base, "alice@example.com");
    const { secret } = await generateKey(page, conventionalName("reload"));
    assert.ok((await page.content()).includes(secret));

    // Reload re-sends the form: the single-use nonce turns it into "already created", without the secret.
    await page.reload();
    await page.getByRole("heading", { name: "This key was already created" }).waitFor();
    await shot(page, "04b-reload-already-created");
    assert.ok(!(await page.content()).includes(secret));

    await page.goBack();
    assert.ok(!(await settled(page)).includes(secret), "back: no secret");
    await page.goForward().catch(() => { /* a no-store POST result may refuse to come back at all */ });
    assert.ok(!(await settled(page)).includes(secret), "forward: no secret");

    // Only one key was made.
    await page.goto(`${server.base}/keys?q=reload`);
    assert.equal(await page.locator("tr[data-key-id]").count(), 1);
    await context.close();
  });

  test("a tampered CSRF token and a cross-site form are refused", async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await signIn(page, server.base, "alice@example.com");
    await page.goto(`${server.base}/keys/new`);
    await page.locator("#new-key-form input[name=csrf]").evaluate((el) => { el.value = "0".repeat(64); });
    await page.getByLabel("Name for the key").fill("tampered");
    const [resp] = await Promise.all([
      page.waitForResponse((r) => r.request().method() === "POST"),
      page.getByRole("button", { name: "Save & Add" }).click(),
    ]);
    assert.equal(resp.status(), 403);
    await page.getByRole("heading", { name: "This form has expired" }).waitFor();

    // Another site (another port) auto-submits a form at the dashboard.
    const attacker = http.createServer((req, res) => {
      res.setHeader("content-type", "text/html");
      res.end(`<form id="f" method="post" action="${server.base}/keys/new">
        <input name="name" value="evil"><input name="nonce" value="x"><input name="csrf" value="x"></form>
        <script>document.getElementById("f").submit()</script>`);
    });
    await new Promise((r) => attacker.listen(0, "127.0.0.1", r));
    const evil = `http://127.0.0.1:${attacker.address().port}/`;
    const [attack] = await Promise.all([
      page.waitForResponse((r) => r.url().startsWith(server.base) && r.request().method() === "POST"),
      page.goto(evil),
    ]);
    assert.equal(attack.status(), 403);
    await page.getByText("came from another site").waitFor();
    attacker.close();

    await page.goto(`${server.base}/keys?q=evil`);
    assert.equal(await page.locator("tr[data-key-id]").count(), 0);
    await page.goto(`${server.base}/keys?q=tampered`);
    assert.equal(await page.locator("tr[data-key-id]").count(), 0);
    await context.close();
  });

  test("another user's key cannot be seen or deleted by changing the ID", async () => {
    const bobs = createKey(server, "bob@example.com", "bobs-service-01_01_2026-09_00");
    const context = await browser.newContext();
    const page = await context.newPage();
    await signIn(page, server.base, "alice@example.com");
    await page.goto(`${server.base}/keys`);
    assert.ok(!(await page.content()).includes(bobs.id));
    const resp = await page.goto(`${server.base}/keys/${bobs.id}/delete`);
    assert.equal(resp.status(), 404);
    await page.getByRole("heading", { name: "No such API key" }).waitFor();
    await shot(page, "07-not-found");
    assert.equal(await whoami(server.base, bobs.secret), 200, "bob's key untouched");
    await context.close();
  });

  test("failed sign-ins are throttled with a clear message, but never lock out the owner's browser", async () => {
    // Carol signed in from her own browser before: it keeps a long-lived, HttpOnly device cookie.
    const own = await browser.newContext();
    const mine = await own.newPage();
    await signIn(mine, server.base, "carol@example.com");
    await mine.waitForURL(/\/keys$/);
    const device = (await own.cookies()).filter((c) => c.name === "atna_device");
    assert.equal(device.length, 1, "a device cookie");
    assert.ok(device[0].httpOnly && device[0].sameSite === "Lax");
    await own.close();

    // A stranger fails five times from this address: then even the right password waits.
    const context = await browser.newContext();
    const page = await context.newPage();
    for (let i = 0; i < 5; i++) {
      await signIn(page, server.base, "carol@example.com", "not my password");
      await page.getByText("Wrong e-mail address or password.").waitFor();
    }
    await signIn(page, server.base, "carol@example.com");
    await page.getByText(/Too many failed sign-ins; try again in \d+ minutes?\./).waitFor();
    await shot(page, "08-login-throttled");
    await context.close();

    // Carol's browser (its device cookie, no session) still gets in from the same address.
    const back = await browser.newContext();
    await back.addCookies(device);
    const again = await back.newPage();
    await signIn(again, server.base, "carol@example.com");
    await again.waitForURL(/\/keys$/);
    await back.close();
  });

  test("account, admin users, and a phone-sized screen", async () => {
    createUser(server, "root@example.com", { admin: true });
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();
    await signIn(page, server.base, "root@example.com");
    await fromProfileMenu(page, "root@example.com", "Account");
    await page.getByRole("heading", { name: "Change password" }).waitFor();
    await shot(page, "09-account");
    await fromProfileMenu(page, "root@example.com", "Users");
    await page.getByRole("heading", { name: "Users" }).waitFor();
    await shot(page, "10-admin-users");

    // Keyboard: the profile menu opens with Enter and closes with Escape.
    await page.locator("details.profile > summary").focus();
    await page.keyboard.press("Enter");
    await page.getByRole("menuitem", { name: "My API Keys" }).waitFor();
    await page.keyboard.press("ArrowDown");
    assert.equal(await page.evaluate(() => document.activeElement.textContent.trim()), "My API Keys");
    await page.keyboard.press("ArrowDown");
    assert.equal(await page.evaluate(() => document.activeElement.textContent.trim()), "Account");
    await page.keyboard.press("Escape");
    await page.getByRole("menuitem", { name: "My API Keys" }).waitFor({ state: "hidden" });

    const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true });
    const p2 = await phone.newPage();
    await signIn(p2, server.base, "alice@example.com");
    await p2.goto(`${server.base}/keys`);
    await p2.getByRole("link", { name: "+ Generate an API Key" }).first().waitFor();
    const overflow = await p2.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    assert.ok(overflow <= 1, `no sideways scrolling on a phone (overflow ${overflow}px)`);
    await shot(p2, "11-phone-keys");
    await phone.close();
    await context.close();
  });
});
