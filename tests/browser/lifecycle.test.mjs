// A key's life in the dashboard, as a person clicks it: ⋮ More Options → Roll key…, Edit, Disable, Enable; the
// Activity page that records it; and an administrator's bulk revocation from the Users page.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createKey, createUser, launch, shot, signIn, startServer, whoami } from "./lib.mjs";

let server;
let browser;
let context;
let page;

before(async () => {
  server = await startServer();
  browser = await launch();
  createUser(server, "alice@example.com", { admin: true });
  createUser(server, "bob@example.com");
  context = await browser.newContext();
  page = await context.newPage();
  await signIn(page, server.base, "alice@example.com");
  await page.getByRole("heading", { name: "My API Keys" }).waitFor();
});

after(async () => {
  await context?.close();
  await browser?.close();
  await server?.stop();
});

/** Opens the ⋮ More Options menu of the key row with this Credential ID. */
async function menu(id) {
  await page.goto(`${server.base}/keys`);
  const row = page.locator(`tr[data-key-id="${id}"]`);
  await row.getByLabel("More Options").click();
  return row;
}

describe("a key's life in the dashboard", () => {
  test("Roll key… shows the new secret once and keeps the old key working for the overlap", async () => {
    const old = createKey(server, "alice@example.com", "billing-service-26_11_2026-14_05");
    const row = await menu(old.id);
    await row.getByRole("menuitem", { name: "Roll key…" }).click();
    await page.getByRole("heading", { name: /Roll “billing-service-26_11_2026-14_05”/ }).waitFor();
    // 24 hours is the default; the name is the same service with the date and time in the browser's zone.
    assert.equal(await page.getByLabel("The old key keeps working").inputValue(), "86400");
    const name = await page.getByLabel("Name for the new key").inputValue();
    assert.match(name, /^billing-service-\d\d_\d\d_\d{4}-\d\d_\d\d$/);
    const form = await page.locator("#roll-form").evaluate((f) => new URLSearchParams(new FormData(f)).toString());
    await page.getByRole("button", { name: "Roll key" }).click();
    const secret = await page.getByLabel("Credential Secret").inputValue();
    assert.match(secret, /^atna_/);
    assert.equal((await page.getByRole("heading", { level: 1 }).textContent()).trim(), name);
    assert.match(await page.locator("#rolled-note").textContent(), /keeps working until/);
    await shot(page, "lifecycle-rolled");
    assert.equal(await whoami(server.base, secret), 200);
    assert.equal(await whoami(server.base, old.secret), 200, "the old key works during the overlap");
    // The same form sent again (a reload, a second node): the key it made, never a second key or the secret again.
    const again = await page.request.post(`${server.base}/keys/${old.id}/roll`, {
      headers: { "content-type": "application/x-www-form-urlencoded", origin: server.base },
      data: form,
    });
    const html = await again.text();
    assert.match(html, /already created/i);
    assert.ok(!html.includes(secret), "the secret is not shown again");
    // The list says what happened to the old key.
    await page.goto(`${server.base}/keys`);
    const note = await page.locator(`tr[data-key-id="${old.id}"] .rolled-note`).textContent();
    assert.match(note, new RegExp(`rolled → ${name}, stops working in (23|24) hours`));
  });

  test("Disable stops the key at once, Enable brings it back", async () => {
    const k = createKey(server, "alice@example.com", "worker-26_11_2026-14_05");
    let row = await menu(k.id);
    await row.getByRole("menuitem", { name: "Disable" }).click();
    await page.locator("#key-notice").waitFor();
    assert.equal(await page.locator(`tr[data-key-id="${k.id}"] .status`).textContent(), "disabled");
    assert.equal(await whoami(server.base, k.secret), 401);
    row = await menu(k.id);
    await row.getByRole("menuitem", { name: "Enable" }).click();
    await page.locator("#key-notice").waitFor();
    assert.equal(await page.locator(`tr[data-key-id="${k.id}"] .status`).textContent(), "active");
    assert.equal(await whoami(server.base, k.secret), 200);
  });

  test("the delete page suggests disabling first", async () => {
    const k = createKey(server, "alice@example.com", "maybe-unused");
    await page.goto(`${server.base}/keys/${k.id}/delete`);
    assert.match(await page.locator("#disable-first").textContent(), /disable it for a few days first, and watch who complains/i);
    await page.getByRole("button", { name: "Disable instead" }).click();
    await page.locator("#key-notice").waitFor();
    assert.equal(await whoami(server.base, k.secret), 401);
  });

  test("Edit renames the key and limits where it works", async () => {
    const k = createKey(server, "alice@example.com", "crm");
    const row = await menu(k.id);
    await row.getByRole("menuitem", { name: "Edit" }).click();
    await page.getByLabel("Name for the key").fill("crm-26_11_2026-14_05");
    await page.getByLabel("Allowed IP addresses").fill("203.0.113.0/24");
    await page.getByRole("button", { name: "Save changes" }).click();
    await page.locator("#key-notice").waitFor();
    const edited = page.locator(`tr[data-key-id="${k.id}"]`);
    assert.match(await edited.locator(".name strong").textContent(), /crm-26_11_2026-14_05/);
    assert.match(await edited.locator(".ip-allowlist").textContent(), /203\.0\.113\.0\/24/);
    assert.equal(await whoami(server.base, k.secret), 403, "not from this address any more");
    // A bad range is explained on the form, with what was typed kept.
    await page.goto(`${server.base}/keys/${k.id}/edit`);
    await page.getByLabel("Allowed IP addresses").fill("not-an-address");
    await page.getByRole("button", { name: "Save changes" }).click();
    await page.getByRole("alert").waitFor();
    assert.equal(await page.getByLabel("Allowed IP addresses").inputValue(), "not-an-address");
  });

  test("Activity lists what happened, newest first", async () => {
    await page.getByText("alice@example.com").first().click();
    await page.getByRole("menuitem", { name: "Activity", exact: true }).click();
    await page.getByRole("heading", { name: "Activity" }).waitFor();
    const kinds = await page.locator("table.activity tbody tr").evaluateAll((rows) => rows.map((r) => r.dataset.kind));
    for (const k of ["key.rolled", "key.disabled", "key.enabled", "key.edited", "session.signed_in"]) {
      assert.ok(kinds.includes(k), `${k} in ${kinds}`);
    }
    assert.equal(kinds[0], "key.edited", "newest first");
    await page.getByLabel("Kind").selectOption("key.rolled");
    await page.getByRole("button", { name: "Filter" }).click();
    const only = await page.locator("table.activity tbody tr").evaluateAll((rows) => rows.map((r) => r.dataset.kind));
    assert.deepEqual([...new Set(only)], ["key.rolled"]);
    await shot(page, "lifecycle-activity");
  });

  test("an administrator revokes every key of a user after a preview", async () => {
    const a = createKey(server, "bob@example.com", "bob-one");
    const b = createKey(server, "bob@example.com", "bob-two");
    await page.goto(`${server.base}/admin/users`);
    await page.locator('tr[data-user="bob@example.com"]').getByRole("link", { name: "Revoke keys…" }).click();
    await page.getByRole("heading", { name: "Revoke 2 keys?" }).waitFor();
    await page.getByRole("button", { name: "Revoke 2 keys" }).click();
    await page.getByText("Revoked 2 keys").waitFor();
    assert.equal(await whoami(server.base, a.secret), 401);
    assert.equal(await whoami(server.base, b.secret), 401);
    await page.goto(`${server.base}/admin/activity?kind=keys.revoked`);
    assert.equal(await page.locator("table.activity tbody tr").count(), 1, "one event for the whole action");
  });
});
