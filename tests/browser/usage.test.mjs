// Usage over time in the dashboard: known traffic, then My API Keys shows a 7-day sparkline per row, a key's name opens
// its page with the SVG chart and the same numbers as a table, and the delete page says how much the key was used.
// Screenshots: test-artifacts/screenshots/usage-*.png (docs/images/usage-key-page.png is one of them).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Audit } from "./axe.mjs";
import { createKey, createUser, launch, shot, signIn, startServer, whoami } from "./lib.mjs";

let browser;

before(async () => {
  browser = await launch();
});

after(async () => {
  await browser?.close();
});

/** POST /v1/keys/verify asking for a scope the key lacks: one refused attempt (`insufficient_scope`). */
async function verifyMissingScope(base, secret) {
  const r = await fetch(`${base}/v1/keys/verify`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ key: secret, scopes: ["admin"] }),
  });
  const v = await r.json();
  assert.equal(v.code, "INSUFFICIENT_SCOPE");
}

describe("usage over time", () => {
  test("sparklines in My API Keys, the key page's chart and table, the delete page's recent calls", async () => {
    const server = await startServer();
    const base = server.base;
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    const audit = new Audit();
    try {
      createUser(server, "alice@example.com");
      const billing = createKey(server, "alice@example.com", "billing-service-27_11_2026-09_30");
      const crm = createKey(server, "alice@example.com", "crm-sync-27_11_2026-09_31");
      createKey(server, "alice@example.com", "old-cron-27_11_2026-09_32");
      for (let i = 0; i < 12; i++) assert.equal(await whoami(base, billing.secret), 200);
      for (let i = 0; i < 3; i++) await verifyMissingScope(base, billing.secret);
      for (let i = 0; i < 5; i++) assert.equal(await whoami(base, crm.secret), 200);

      await signIn(page, base, "alice@example.com");
      await page.waitForURL(`${base}/keys`);
      // One sparkline per row; today's bar says its number on hover.
      const rows = page.locator("table.keys tbody tr");
      assert.equal(await rows.count(), 3);
      assert.equal(await page.locator("table.keys svg.sparkline").count(), 3);
      const billingRow = page.locator(`tr[data-key-id="${billing.id}"]`);
      const label = await billingRow.locator("svg.sparkline").getAttribute("aria-label");
      assert.match(label, /^Allowed calls, last 7 days: 0, 0, 0, 0, 0, 0, 12$/);
      await audit.check(page, "My API Keys with sparklines");
      await shot(page, "usage-my-api-keys");

      // The key's name opens its page: chart (SVG with a <title> per bar) and table, no script needed.
      await billingRow.getByRole("link", { name: "billing-service-27_11_2026-09_30" }).click();
      await page.waitForURL(`${base}/keys/${billing.id}`);
      await page.getByRole("heading", { name: "Usage · Last 24 hours" }).waitFor();
      const chart = page.locator("figure.usage-chart svg");
      assert.ok(await chart.isVisible());
      assert.equal(await chart.locator("g.bar").count(), 24, "one bar per hour");
      const titles = await chart.locator("g.bar > title").allTextContents();
      assert.ok(titles.some((t) => /: 12 allowed, 3 refused \(insufficient_scope 3\)$/.test(t)), titles.join("\n"));
      const table = page.locator("#usage-table");
      assert.ok(await table.isVisible());
      assert.equal(await table.locator("tbody tr").count(), 1, "one hour had requests");
      assert.equal(await table.locator('td[data-col="allowed"]').textContent(), "12");
      assert.equal(await table.locator('td[data-col="refused"]').textContent(), "3");
      assert.equal(await table.locator('td[data-col="reasons"]').textContent(), "insufficient_scope 3");
      assert.equal(await page.locator("#usage-total-allowed").textContent(), "12");
      await audit.check(page, "key page");
      await shot(page, "usage-key-page");

      // Other ranges are plain links.
      await page.getByRole("link", { name: "Last 90 days" }).click();
      await page.getByRole("heading", { name: "Usage · Last 90 days" }).waitFor();
      assert.equal(await page.locator("figure.usage-chart g.bar").count(), 90, "one bar per day");
      assert.equal(await page.locator('#usage-table td[data-col="allowed"]').textContent(), "12");

      // The delete page counts allowed calls only, beside the danger note.
      await page.goto(`${base}/keys/${billing.id}/delete`);
      assert.equal(await page.locator("#recent-use").textContent(), "12 calls today — something still uses this key");
      assert.equal(await page.locator(".alert svg.sparkline").count(), 1);
      await audit.check(page, "delete page with recent calls");
      await shot(page, "usage-delete-page");

      // So does the roll page: whatever makes these calls must move to the new key.
      await page.goto(`${base}/keys/${billing.id}/roll`);
      assert.equal(await page.locator("#recent-use").textContent(), "12 calls today — something still uses this key");
      assert.equal(await page.locator("p.recent-use svg.sparkline").count(), 1);
      await audit.check(page, "roll page with recent calls");
      audit.assertClean();
    } finally {
      await context.close();
      await server.stop();
    }
  });
});
