// Reminders as a person sees them: a webhook set on the Account page (its signing secret shown once), a deleted key
// reminded in the daily digest and delivered to that webhook (a real HTTP receiver here), the Reminders page saying
// what was sent and how it went, and the read-only Policy page for administrators.
// Screenshot: test-artifacts/screenshots/reminders.png.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { execFileSync } from "node:child_process";
import { Audit } from "./axe.mjs";
import { atnaBin, createKey, createUser, launch, shot, signIn, startServer } from "./lib.mjs";

let browser;

before(async () => {
  browser = await launch();
});

after(async () => {
  await browser?.close();
});

/** A webhook receiver on 127.0.0.1: answers 204 and keeps each request's headers and body. */
async function receiver() {
  const got = [];
  const srv = http.createServer((req, res) => {
    let body = "";
    req.on("data", (c) => { body += c; });
    req.on("end", () => { got.push({ headers: req.headers, body }); res.writeHead(204).end(); });
  });
  await new Promise((r) => srv.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${srv.address().port}/hooks/atna`, got, close: () => srv.close() };
}

async function until(what, check, ms = 15_000) {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe("reminders", () => {
  test("a webhook set on Account receives the digest, and Reminders says what was sent", async () => {
    const hook = await receiver();
    const server = await startServer({
      config: [
        "webhooks_allow_private_addresses = true",
        "reminder_scan_secs = 1",
        "digest_interval_secs = 1",
        "outbox_poll_ms = 100",
        "[policy]",
        "default_key_lifetime_days = 90",
        "max_key_lifetime_days = 365",
        "",
      ].join("\n"),
    });
    const base = server.base;
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    const audit = new Audit();
    try {
      createUser(server, "alice@example.com", { admin: true });
      await signIn(page, base, "alice@example.com");
      await page.waitForURL(`${base}/keys`);

      await page.goto(`${base}/account`);
      await page.getByLabel("Webhook URL").fill(hook.url);
      await page.getByRole("button", { name: "Save webhook" }).click();
      await page.getByRole("heading", { name: "Webhook saved" }).waitFor();
      const secret = await page.getByLabel("Signing secret").inputValue();
      assert.match(secret, /^whsec_[A-Za-z0-9+/=]{30,}$/);
      await audit.check(page, "webhook secret, shown once");
      await page.goto(`${base}/account`);
      assert.ok((await page.content()).includes(hook.url));
      assert.ok(!(await page.content()).includes(secret), "the secret is never shown again");

      // A key deleted from the command line: its owner hears of it in the next digest.
      const key = createKey(server, "alice@example.com", "old-cron-28_11_2026-08_00");
      const env = { ...process.env };
      delete env.ATNA_BIN;
      if (server.databaseUrl) env.ATNA_DATABASE_URL = server.databaseUrl;
      execFileSync(atnaBin, ["--data-dir", server.dataDir, "key", "delete", key.id], { env, stdio: "pipe" });
      await until("the digest at the webhook", () => hook.got.length > 0);
      const delivery = hook.got[0];
      for (const h of ["webhook-id", "webhook-timestamp", "webhook-signature"]) assert.ok(delivery.headers[h], h);
      assert.match(delivery.headers["webhook-signature"], /^v1,/);
      const payload = JSON.parse(delivery.body);
      assert.equal(payload.type, "reminders.digest");
      assert.ok(JSON.stringify(payload).includes(key.id));

      await until("the delivery recorded", async () => {
        await page.goto(`${base}/reminders`);
        return /delivered/.test(await page.locator(`tr[data-key-id="${key.id}"]`).innerText());
      });
      const row = page.locator(`table.reminders tr[data-key-id="${key.id}"]`);
      const text = await row.innerText();
      assert.match(text, /old-cron-28_11_2026-08_00 was deleted/);
      assert.match(text, /sent /);
      assert.match(text, /Your webhook: delivered .*HTTP 204/);
      assert.equal(await row.getByRole("link", { name: "Roll" }).count(), 0, "a deleted key has nothing to roll");
      await audit.check(page, "Reminders");
      await shot(page, "reminders");

      // Administrators see the policy, read-only, and the installation's webhook form.
      await page.goto(`${base}/admin/policy`);
      await page.getByRole("heading", { name: "Policy" }).waitFor();
      const policy = await page.locator("table.policy").innerText();
      assert.match(policy, /365/);
      assert.match(policy, /90/);
      assert.equal(await page.locator("table.policy input, table.policy select").count(), 0, "read-only");
      await page.getByRole("heading", { name: "Installation webhook" }).waitFor();
      await audit.check(page, "Policy");
      audit.assertClean();
    } finally {
      await context.close();
      await server.stop();
      hook.close();
    }
  });
});
