// First run: no user exists, `atna serve` prints a one-time setup link that creates the first administrator.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { launch, shot, startServer, PASSWORD } from "./lib.mjs";

let server;
let browser;

before(async () => {
  server = await startServer();
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

test("the printed setup link creates the admin account, once", async () => {
  assert.ok(server.setupUrl, "atna serve printed a setup link");
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${server.base}/login`);
  await page.getByText("No account exists yet").waitFor();

  await page.goto(server.setupUrl);
  await page.getByRole("heading", { name: "Create the administrator account" }).waitFor();
  await shot(page, "00-setup");
  await page.getByLabel("E-mail address").fill("admin@example.com");
  await page.getByLabel("Password", { exact: true }).fill(PASSWORD);
  await page.getByLabel("Password again").fill(PASSWORD);
  await page.getByRole("button", { name: "Create account and sign in" }).click();
  await page.getByRole("heading", { name: "My API Keys" }).waitFor();
  await page.locator("details.profile > summary").click();
  await page.getByRole("menuitem", { name: "Users" }).waitFor();

  const again = await (await browser.newContext()).newPage();
  const resp = await again.goto(server.setupUrl);
  assert.equal(resp.status(), 404, "the link works once");
  await again.getByRole("heading", { name: "Setup is finished" }).waitFor();
  await context.close();
});
