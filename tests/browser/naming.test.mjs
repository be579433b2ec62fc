// "Provide a name for the key": which box holds the key's name, and the Service name shortcut that fills it in.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createUser, launch, signIn, startServer } from "./lib.mjs";

let server;
let browser;
let context;
let page;

before(async () => {
  server = await startServer();
  browser = await launch();
  createUser(server, "alice@example.com");
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

const STAMP = /-\d\d_\d\d_\d{4}-\d\d_\d\d$/;

/** Opens "+ Generate an API Key" once its script has run (the Service name box only shows with it). */
async function openForm() {
  await page.goto(`${server.base}/keys`);
  await page.getByRole("link", { name: "+ Generate an API Key" }).first().click();
  await page.getByLabel("Service name").waitFor();
}

/** Save & Add; returns the created key's name as the page that shows the secret says it. */
async function saveAndAdd() {
  await page.getByRole("button", { name: "Save & Add" }).click();
  await page.getByLabel("Credential Secret").waitFor();
  return (await page.getByRole("heading", { level: 1 }).textContent()).trim();
}

describe("naming a key", () => {
  test("a whole conventional name typed into Service name is the key's name, stamped once", async () => {
    await openForm();
    // Key by key, as a person types: every keystroke recomposes the name.
    await page.getByLabel("Service name").pressSequentially("billing-service-26_11_2026-14_05");
    assert.equal(await page.getByLabel("Name for the key").inputValue(), "billing-service-26_11_2026-14_05");
    await page.locator("#name-warning").waitFor({ state: "hidden" });
    assert.equal(await saveAndAdd(), "billing-service-26_11_2026-14_05");
  });

  test("a service name alone gets today's date and time", async () => {
    await openForm();
    await page.getByLabel("Service name").pressSequentially("billing-service");
    const name = await page.getByLabel("Name for the key").inputValue();
    assert.match(name, /^billing-service-\d\d_\d\d_\d{4}-\d\d_\d\d$/);
    assert.equal(name.replace(STAMP, "").length, "billing-service".length, `stamped once: ${name}`);
    assert.equal(await saveAndAdd(), name);
  });

  test("the box labelled Name for the key is the one whose value becomes the key's name", async () => {
    await openForm();
    const field = page.getByLabel("Name for the key");
    assert.equal(await field.getAttribute("name"), "name", "the labelled box is the submitted one");
    assert.equal(await page.getByLabel("Service name").getAttribute("name"), null, "Service name is never sent");
    await page.getByLabel("Service name").fill("ignored");
    await field.fill("inventory-27_11_2026-09_30");
    assert.equal(await saveAndAdd(), "inventory-27_11_2026-09_30");
    await page.goto(`${server.base}/keys?q=inventory`);
    await page.locator("tr[data-key-id]").getByText("inventory-27_11_2026-09_30", { exact: true }).waitFor();
  });
});
