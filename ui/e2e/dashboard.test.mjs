// End-to-end tests of the dashboard in headless Chromium, against the real server binary and
// the mock upstream. Started by tests/ui.rs (cargo test), which passes:
//   NEXUS_LOGIN_LINK  the one-time login link the server printed
//   NEXUS_PROXY_URL   the proxy, NEXUS_CLIENT_KEY a client key for it, NEXUS_MODEL the mock's model
//   SCREENSHOT_DIR    where each visited page is saved, CHROMIUM the browser binary
// Every test fails on any console error or uncaught exception in the page.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, mkdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { chromium } from "playwright-core";

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run these tests through cargo test --test ui`);
  return value;
};
const link = env("NEXUS_LOGIN_LINK");
const base = new URL(link).origin;
const key = decodeURIComponent(new URL(link).hash.replace(/^#key=/, ""));
const proxy = env("NEXUS_PROXY_URL");
const clientKey = env("NEXUS_CLIENT_KEY");
const model = env("NEXUS_MODEL");
const shots = env("SCREENSHOT_DIR");
const credentialFile = env("NEXUS_CREDENTIAL_FILE");
mkdirSync(shots, { recursive: true });

let browser;

before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
      "--disable-quic",
    ],
  });
});

after(async () => {
  await browser?.close();
});

/** A fresh page whose console errors are collected; `allowed` patterns are expected ones. */
async function open(options = {}) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, ...options });
  const page = await context.newPage();
  const errors = [];
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(m.text());
  });
  page.on("pageerror", (e) => errors.push(String(e)));
  return { context, page, errors };
}

async function shot(page, name) {
  await page.screenshot({ path: `${shots}/${name}.png`, fullPage: true });
}

async function sendThroughProxy() {
  const response = await fetch(`${proxy}/v1/messages`, {
    method: "POST",
    headers: { "x-api-key": clientKey, "content-type": "application/json" },
    body: JSON.stringify({ model, max_tokens: 16, messages: [{ role: "user", content: "Hello" }] }),
  });
  assert.equal(response.status, 200);
  await response.text();
}

test("the login link logs in, and a proxied request appears on the Requests page without reload", async () => {
  const { context, page, errors } = await open();
  await page.goto(link);
  await page.getByRole("heading", { name: "Overview" }).waitFor();
  // The key left the address bar at once.
  assert.ok(!page.url().includes("key="), page.url());
  await shot(page, "overview-empty");

  await page.getByRole("link", { name: "Requests" }).click();
  await page.getByRole("heading", { name: "Requests" }).waitFor();
  await page.getByRole("status").filter({ hasText: "Live" }).waitFor();
  await shot(page, "requests-empty");
  // A marker that a reload would wipe.
  await page.evaluate(() => {
    window.__noReload = true;
  });

  await sendThroughProxy();
  const row = page.getByRole("row").filter({ hasText: model });
  await row.first().waitFor({ timeout: 15_000 });
  assert.equal(await page.evaluate(() => window.__noReload), true, "the page was reloaded");
  assert.match(await row.first().innerText(), /200/);
  await shot(page, "requests-live");

  await row.first().getByRole("link").click();
  await page.getByRole("heading", { name: "Request" }).waitFor();
  await page.getByText("Time to first token").waitFor();
  await shot(page, "request-detail");

  await page.getByRole("link", { name: "Overview" }).click();
  await page.getByRole("heading", { name: "Tokens over time, by model" }).waitFor();
  const requests = page.locator(".stat").filter({ hasText: "Requests" }).locator(".stat-value");
  assert.equal(await requests.innerText(), "1");
  await page.getByRole("button", { name: "7 days" }).click();
  await page.getByRole("button", { name: "7 days", pressed: true }).waitFor();
  await shot(page, "overview");

  await page.getByRole("link", { name: "Monitoring" }).click();
  await page.getByRole("heading", { name: "Daily tokens per account" }).waitFor();
  await page.getByRole("cell", { name: "acc_ui" }).first().waitFor();
  await page.getByRole("button", { name: "Show" }).click();
  await page.getByRole("table", { name: "Access" }).getByRole("cell", { name: "/v1/messages" }).first().waitFor();
  await shot(page, "monitoring");

  assert.deepEqual(errors, []);
  await context.close();
});

test("the login form refuses a wrong key, accepts the right one, and logout returns to it", async () => {
  const { context, page, errors } = await open();
  await page.goto(base + "/");
  await page.getByLabel("Dashboard key").waitFor();
  await shot(page, "login");

  await page.getByLabel("Dashboard key").fill("not-the-key");
  await page.getByLabel("Dashboard key").press("Enter");
  await page.getByRole("alert").filter({ hasText: "not right" }).waitFor();
  // The browser reports the refused login (401) itself; nothing else may appear.
  assert.ok(errors.length <= 1 && errors.every((e) => /401/.test(e)), errors.join("\n"));
  errors.length = 0;

  await page.getByLabel("Dashboard key").fill(key);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.getByRole("heading", { name: "Overview" }).waitFor();

  // Keyboard: the skip link comes first, then the navigation.
  await page.keyboard.press("Tab");
  assert.equal(await page.evaluate(() => document.activeElement?.textContent), "Skip to content");
  await page.keyboard.press("Tab");
  await page.keyboard.press("Tab");
  assert.equal(await page.evaluate(() => document.activeElement?.textContent), "Requests");
  await page.keyboard.press("Enter");
  await page.getByRole("heading", { name: "Requests" }).waitFor();

  await page.getByRole("button", { name: "Log out" }).click();
  await page.getByLabel("Dashboard key").waitFor();
  assert.deepEqual(errors, []);
  await context.close();
});

test("dark theme follows the system, and a narrow window stays readable", async () => {
  const { context, page, errors } = await open({ colorScheme: "dark" });
  await page.goto(link);
  await page.getByRole("heading", { name: "Overview" }).waitFor();
  await page.getByRole("heading", { name: "By model", exact: true }).waitFor();
  const background = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  assert.equal(background, "rgb(31, 30, 29)");
  await shot(page, "overview-dark");

  await page.setViewportSize({ width: 420, height: 800 });
  await page.getByRole("link", { name: "Requests" }).click();
  await page.getByRole("row").filter({ hasText: model }).first().waitFor();
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `the page scrolls sideways by ${overflow}px`);
  await shot(page, "requests-narrow-dark");
  assert.deepEqual(errors, []);
  await context.close();
});

/** Sends through the proxy with `key` until it answers `want` (keys reload twice a second). */
async function untilProxyAnswers(key, want) {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const response = await fetch(`${proxy}/v1/messages`, {
      method: "POST",
      headers: { "x-api-key": key, "content-type": "application/json" },
      body: JSON.stringify({ model, max_tokens: 16, messages: [{ role: "user", content: "Hello" }] }),
    });
    await response.text();
    if (response.status === want) return;
    assert.ok(Date.now() < deadline, `the proxy still answers ${response.status}, not ${want}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

test("a key made on the Accounts page works through the proxy until revoked, and the OAuth login runs", async () => {
  const { context, page, errors } = await open({ permissions: ["clipboard-read", "clipboard-write"] });
  await page.goto(link);
  await page.getByRole("heading", { name: "Overview" }).waitFor();
  await page.getByRole("link", { name: "Accounts & keys" }).click();
  await page.getByRole("heading", { name: "Accounts & keys" }).waitFor();
  const accounts = page.getByRole("table", { name: "Accounts" });
  await accounts.getByRole("row").filter({ hasText: "a.example" }).getByText("In the file").waitFor();
  await shot(page, "accounts");

  // Create: shown once, with a copy button and the Claude Code snippet.
  await page.getByLabel("Name").fill("e2e laptop");
  await page.getByRole("button", { name: "Create key" }).click();
  const newKey = (await page.getByTestId("new-key").innerText()).trim();
  assert.match(newKey, /^cnp_live_/);
  const snippet = await page.locator("pre.snippet").innerText();
  assert.equal(snippet.trim(), `export ANTHROPIC_BASE_URL=${proxy}\nexport ANTHROPIC_API_KEY=${newKey}`);
  await page.getByRole("button", { name: "Copy key" }).click();
  await page.getByRole("status").filter({ hasText: "Copied" }).waitFor();
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), newKey);
  await shot(page, "accounts-key-created");

  // Used through the proxy: its "last used" fills in without a reload.
  await untilProxyAnswers(newKey, 200);
  const keys = page.getByRole("table", { name: "Client keys" });
  const row = keys.getByRole("row").filter({ hasText: "e2e laptop" });
  const id = await row.getAttribute("data-key");
  await page.waitForFunction(
    (id) => document.querySelector(`tr[data-key="${id}"] td:nth-child(6)`)?.textContent !== "never",
    id,
    { timeout: 15_000 },
  );
  assert.ok(!(await keys.innerText()).includes(newKey), "the table shows the prefix only");

  // Revoked (after a confirmation, by keyboard): the next call is refused.
  await row.getByRole("button", { name: "Revoke" }).focus();
  await page.keyboard.press("Enter");
  const focused = (text) => page.waitForFunction((text) => document.activeElement?.textContent === text, text, { timeout: 5_000 });
  await focused("Cancel");
  await page.keyboard.press("Shift+Tab");
  await focused("Yes, revoke");
  await page.keyboard.press("Enter");
  await row.getByText("revoked", { exact: true }).waitFor();
  await untilProxyAnswers(newKey, 401);
  await shot(page, "accounts-key-revoked");

  // The OAuth login against the mock authorization server.
  await page.getByLabel("Domain for the account").fill("max.example");
  await page.getByRole("button", { name: "Start login" }).click();
  const [popup] = await Promise.all([
    context.waitForEvent("page"),
    page.getByRole("link", { name: "Open the Claude login page" }).click(),
  ]);
  await popup.waitForLoadState();
  const shown = (await popup.locator("body").innerText()).trim();
  assert.match(shown, /^mock-code-\d+#.+/);
  await shot(popup, "oauth-authorize");
  await popup.close();
  await page.getByLabel("Paste the code").fill(shown);
  await page.getByRole("button", { name: "Finish login" }).click();
  await page.getByRole("status").filter({ hasText: "Logged in" }).waitFor();
  const max = accounts.getByRole("row").filter({ hasText: "max.example" });
  await max.getByText("Claude login (OAuth)").waitFor();
  await max.getByText("OK", { exact: true }).waitFor();
  await shot(page, "accounts-oauth");

  // Its first request brings the plan windows: the gauges appear without a reload, and on
  // the Overview. (The login gave the new account a client key in its file.)
  const maxFile = join(dirname(credentialFile), "max.example.credentials.json");
  const maxKey = JSON.parse(readFileSync(maxFile, "utf8")).client_api_key;
  const response = await fetch(`${proxy}/v1/messages`, {
    method: "POST",
    headers: { "x-api-key": maxKey, "x-mock": "unified", "content-type": "application/json" },
    body: JSON.stringify({ model, max_tokens: 16, messages: [{ role: "user", content: "Hello" }] }),
  });
  assert.equal(response.status, 200);
  await response.text();
  await max.getByRole("meter", { name: "5 h window used" }).waitFor({ timeout: 15_000 });
  await max.getByRole("meter", { name: "7 d window used" }).waitFor();
  await shot(page, "accounts-plan-gauges");
  await page.getByRole("link", { name: "Overview" }).click();
  await page.getByRole("heading", { name: "Plan usage" }).waitFor();
  await page.getByRole("meter", { name: "5 h window used" }).waitFor();
  await shot(page, "overview-plan-gauges");

  // Dark and narrow: still readable, nothing scrolls sideways but the tables themselves.
  await page.emulateMedia({ colorScheme: "dark" });
  await page.setViewportSize({ width: 420, height: 800 });
  await page.getByRole("link", { name: "Accounts & keys" }).click();
  await accounts.getByRole("row").filter({ hasText: "max.example" }).waitFor();
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `the page scrolls sideways by ${overflow}px`);
  await shot(page, "accounts-narrow-dark");

  assert.deepEqual(errors, []);
  await context.close();
});

// Last: it takes the account away for a moment (a credential file readable by others is refused).
test("a security check fails, its cause is fixed, and it passes; a manual item is marked done", async () => {
  const { context, page, errors } = await open();
  await page.goto(link);
  await page.getByRole("heading", { name: "Overview" }).waitFor();
  await page.getByRole("link", { name: "Security" }).click();
  const files = page.locator('[data-check="credential-files"]');
  await files.getByText("Pass").waitFor();

  chmodSync(credentialFile, 0o644);
  await page.getByRole("button", { name: "Check again" }).click();
  await files.getByText("Fail").waitFor();
  await files.getByText("chmod 600").waitFor();
  await shot(page, "security-fail");

  chmodSync(credentialFile, 0o600);
  await page.getByRole("button", { name: "Check again" }).click();
  await files.getByText("Pass").waitFor();

  const backups = page.locator('[data-check="backups"]');
  await backups.getByRole("checkbox").click();
  await backups.getByText(/marked on \d{4}-\d\d-\d\d/).first().waitFor();
  assert.equal(await backups.getByRole("checkbox").isChecked(), true);
  await shot(page, "security");
  assert.deepEqual(errors, []);
  await context.close();
});
