// A leaked key as its owner sees it: a self-managed GitLab's secret detection reports the key (POST /v1/revoke_tokens
// with the pre-shared token), atna revokes it at once, My API Keys shows a "found in public" banner naming the key and
// the place, and Reminders lists the leak (told at once, with no Roll or Delete left to do for a revoked key).
// Screenshot: test-artifacts/screenshots/leak-banner.png.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Audit } from "./axe.mjs";
import { createKey, createUser, launch, shot, signIn, startServer, whoami } from "./lib.mjs";

const TOKEN = "browser-suite-revocation-token-0001";
let browser;

before(async () => {
  browser = await launch();
});

after(async () => {
  await browser?.close();
});

describe("leaked keys", () => {
  test("a reported key is revoked, bannered on My API Keys and listed in Reminders", async () => {
    const server = await startServer({ env: { ATNA_GITLAB_REVOCATION_TOKEN: TOKEN } });
    const base = server.base;
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    const audit = new Audit();
    try {
      createUser(server, "alice@example.com");
      const leaked = createKey(server, "alice@example.com", "crm-sync-28_11_2026-08_00");
      const kept = createKey(server, "alice@example.com", "billing-service-28_11_2026-08_01");
      assert.equal(await whoami(base, leaked.secret), 200);
      const location = "https://gitlab.example.com/acme/crm/-/blob/main/.env";
      const r = await fetch(`${base}/v1/revoke_tokens`, {
        method: "POST",
        headers: { "Content-Type": "application/json", Authorization: TOKEN },
        body: JSON.stringify([{ type: "gitleaks_rule_id_atna-api-key", token: leaked.secret, location }]),
      });
      assert.equal(r.status, 204);
      assert.equal(await whoami(base, leaked.secret), 401, "revoked at once");
      assert.equal(await whoami(base, kept.secret), 200, "the other key is untouched");

      await signIn(page, base, "alice@example.com");
      await page.waitForURL(`${base}/keys`);
      const banner = page.locator(".leak-report");
      assert.equal(await banner.count(), 1);
      const text = await banner.innerText();
      assert.match(text, /crm-sync-28_11_2026-08_00/);
      assert.ok(text.includes(leaked.id), text);
      assert.ok(text.includes(`found in public at ${location}`), text);
      assert.match(text, /was revoked\./);
      assert.equal(await banner.getAttribute("role"), "alert");
      assert.equal(await page.locator(`tr[data-key-id="${leaked.id}"]`).count(), 0, "a deleted key leaves the list");
      assert.equal(await page.locator(`tr[data-key-id="${kept.id}"]`).count(), 1);
      await audit.check(page, "My API Keys with a leak banner");
      await shot(page, "leak-banner");

      await page.goto(`${base}/reminders`);
      const row = page.locator(`table.reminders tr[data-key-id="${leaked.id}"]`);
      assert.equal(await row.count(), 1);
      assert.match(await row.innerText(), /was reported leaked/);
      assert.equal(await row.getByRole("link", { name: "Roll" }).count(), 0, "nothing to roll: the key is gone");
      await audit.check(page, "Reminders with a leak");
      audit.assertClean();
    } finally {
      await context.close();
      await server.stop();
    }
  });
});
