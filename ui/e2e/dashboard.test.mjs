// End-to-end tests of the dashboard in headless Chromium, against the real server binary and
// the mock upstream. Started by tests/ui.rs (cargo test), which passes:
//   NEXUS_LOGIN_LINK  the one-time login link the server printed
//   NEXUS_PROXY_URL   the proxy, NEXUS_CLIENT_KEY a client key for it, NEXUS_MODEL the mock's model
//   NEXUS_ALERT_AUTH_FAILURES  the server's ALERT_AUTH_FAILURES (its SLACK_WEBHOOK_URL is a
//                     local receiver, which tests/ui.rs checks afterwards)
//   SCREENSHOT_DIR    where each visited page is saved, CHROMIUM the browser binary
// Every test fails on any console error or uncaught exception in the page.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
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
const alertAuthFailures = Number(env("NEXUS_ALERT_AUTH_FAILURES"));
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

/** Waits for a limits editor to close after Save; if it stays open, fails with what it says
 * (its error, or the values it still holds) and a screenshot, rather than a bare timeout. */
async function saved(page, editor) {
  try {
    await editor.waitFor({ state: "detached", timeout: 15_000 });
  } catch (e) {
    await shot(page, "limits-editor-stayed-open");
    const text = await editor.innerText().catch(() => "(gone)");
    const values = await editor.locator("input").evaluateAll((inputs) => inputs.map((i) => i.value)).catch(() => []);
    throw new Error(`the limits editor stayed open: ${JSON.stringify(text)} values ${JSON.stringify(values)}: ${e.message}`);
  }
}

/** Waits for the layout to settle: Chart.js resizes its canvases on the next frames. */
async function settle(page) {
  await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
  await page.waitForTimeout(150);
}

/**
 * Asserts that nothing sticks out: the page does not scroll sideways, every element of the
 * main content (a chart's canvas included) ends within its card, and the rest within the page.
 * Tables and the conversation graph may scroll inside their own wrapper, and long code inside
 * its block.
 */
async function assertFits(page, where) {
  await settle(page);
  const problems = await page.evaluate(() => {
    const found = [];
    const over = document.documentElement.scrollWidth - window.innerWidth;
    if (over > 0) found.push(`the page scrolls sideways by ${over}px`);
    const main = document.querySelector("main").getBoundingClientRect();
    const name = (el) => el.tagName.toLowerCase() + [...el.classList].map((c) => `.${c}`).join("");
    for (const el of document.querySelectorAll("main *, .topbar *")) {
      if (el.parentElement?.closest(".table-wrap, .graph-wrap, pre")) continue;
      const box = el.getBoundingClientRect();
      if (box.width === 0 || box.height === 0) continue;
      const card = el.parentElement?.closest(".card, .stat");
      const edge = card ? card.getBoundingClientRect().right : el.closest("main") ? main.right : window.innerWidth;
      if (box.right > edge + 1) {
        found.push(`${name(el)} ends at ${Math.round(box.right)}px, past ${card ? name(card) : "the page"} at ${Math.round(edge)}px`);
      }
    }
    return found;
  });
  assert.deepEqual(problems, [], `${where}: ${problems.slice(0, 5).join("; ")}`);
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
  // Bodies are stored: the page has a "Request" section too.
  await page.getByRole("heading", { name: "Request", exact: true, level: 1 }).waitFor();
  await page.getByText("Time to first token").waitFor();
  await shot(page, "request-detail");

  await page.getByRole("link", { name: "Overview" }).click();
  await page.getByRole("heading", { name: "Tokens over time, by model" }).waitFor();
  const requests = page.locator(".stat").filter({ hasText: "Requests" }).locator(".stat-value");
  assert.equal(await requests.innerText(), "1");
  // In a browser: no desktop settings; with an account: no welcome guide.
  assert.equal(await page.getByRole("link", { name: "Settings" }).count(), 0);
  assert.equal(await page.getByRole("heading", { name: /^Welcome/ }).count(), 0);
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

test("every page fits windows from 800 to 1600 px wide, charts inside their cards", async () => {
  for (const width of [800, 1280, 1600]) {
    // A fresh page at each width: a chart sized wrongly at first render stays wrong.
    const { context, page, errors } = await open({ viewport: { width, height: 900 } });
    await page.goto(link);
    await page.getByRole("heading", { name: "Requests by status" }).waitFor();
    await page.locator("main canvas").nth(1).waitFor();
    await assertFits(page, `Overview at ${width}px`);
    await shot(page, `fit-${width}-overview`);

    await page.getByRole("link", { name: "Requests" }).click();
    await page.getByRole("row").filter({ hasText: model }).first().waitFor();
    await assertFits(page, `Requests at ${width}px`);
    await shot(page, `fit-${width}-requests`);

    await page.getByRole("row").filter({ hasText: model }).first().getByRole("link").click();
    await page.getByText("Time to first token").waitFor();
    await assertFits(page, `Request at ${width}px`);

    await page.getByRole("link", { name: "Accounts & keys" }).click();
    await page.getByRole("table", { name: "Accounts" }).getByRole("row").filter({ hasText: "a.example" }).waitFor();
    await assertFits(page, `Accounts & keys at ${width}px`);
    await shot(page, `fit-${width}-accounts`);

    await page.getByRole("link", { name: "Security" }).click();
    await page.locator('[data-check="credential-files"]').waitFor();
    await assertFits(page, `Security at ${width}px`);
    await shot(page, `fit-${width}-security`);

    await page.getByRole("link", { name: "Monitoring" }).click();
    await page.getByRole("heading", { name: "Daily tokens per account" }).waitFor();
    await page.locator("main canvas").first().waitFor();
    await assertFits(page, `Monitoring at ${width}px`);
    await shot(page, `fit-${width}-monitoring`);

    assert.deepEqual(errors, []);
    await context.close();
  }

  // A window made narrower or wider: the charts follow (the desktop app's window resizes).
  const { context, page, errors } = await open({ viewport: { width: 1600, height: 900 } });
  await page.goto(link);
  await page.locator("main canvas").nth(1).waitFor();
  for (const width of [1280, 800, 1600, 1280]) {
    await page.setViewportSize({ width, height: 900 });
    await assertFits(page, `Overview resized to ${width}px`);
  }
  await shot(page, "fit-resized-overview");
  await page.getByRole("link", { name: "Monitoring" }).click();
  await page.locator("main canvas").first().waitFor();
  for (const width of [800, 1600, 1280]) {
    await page.setViewportSize({ width, height: 900 });
    await assertFits(page, `Monitoring resized to ${width}px`);
  }
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

  // The credential file's own client_api_key: listed by its prefix, marked as the file's, and
  // not rotated or revoked here (the note says how to change it).
  const keys = page.getByRole("table", { name: "Client keys" });
  const fileKey = keys.locator('tr[data-source="file"]').filter({ hasText: "a.example" });
  await fileKey.getByText("from the credential file").waitFor();
  assert.equal((await fileKey.locator("code").innerText()).trim(), `${clientKey.slice(0, 13)}…`);
  assert.equal(await fileKey.getByRole("button").count(), 0, "no Rotate or Revoke");
  await page.locator("#file-keys-note").getByText("claude-nexus credentials import").waitFor();
  assert.ok(!(await page.locator("main").innerText()).includes(clientKey), "the page shows the file's key by its prefix only");

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

  // The client key the login wrote into the new file, shown once, as `oauth login` prints it.
  const written = page.getByRole("region", { name: "Client key of the login" });
  const maxKey = (await written.getByTestId("login-key").innerText()).trim();
  assert.match(maxKey, /^cnp_live_/);
  const maxFile = join(dirname(credentialFile), "max.example.credentials.json");
  assert.equal(JSON.parse(readFileSync(maxFile, "utf8")).client_api_key, maxKey);
  assert.equal((await written.locator("pre.snippet").innerText()).trim(), `export ANTHROPIC_BASE_URL=${proxy}\nexport ANTHROPIC_API_KEY=${maxKey}`);
  await written.getByRole("button", { name: "Copy key" }).click();
  await written.getByRole("status").filter({ hasText: "Copied" }).waitFor();
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), maxKey);
  await keys.locator('tr[data-source="file"]').filter({ hasText: "max.example" }).getByText(`${maxKey.slice(0, 13)}…`).waitFor();
  await shot(page, "accounts-oauth");
  await written.getByRole("button", { name: "Done" }).click();
  await written.waitFor({ state: "detached" });
  assert.ok(!(await page.locator("main").innerText()).includes(maxKey), "gone once dismissed");

  // Its first request brings the plan windows: the gauges appear without a reload, and on
  // the Overview.
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

/**
 * Stands in for the desktop app's `window.__TAURI__` (Tauri with `withGlobalTauri`): the
 * commands answer as src-tauri's do, and every call is kept in `window.__invoked`.
 */
function fakeTauri() {
  let settings = {
    port: 3000,
    start_minimised: false,
    start_at_login: true,
    usage_polling: false,
    database_url: null,
    notifications: { auth_failures: true, token_spike: true, oauth: true, upstream_errors: true, plan_window: true, key_expiry: true, spooling: true, port_taken: true },
  };
  let connected = false;
  window.__invoked = [];
  const commands = {
    desktop_info: () => ({
      proxy_url: "http://127.0.0.1:3000",
      claude_code: { connected, settings_path: "/home/me/.claude/settings.json" },
      settings,
      log_dir: "/home/me/.local/share/claude-nexus/logs",
      credentials_dir: "/home/me/.config/claude-nexus/credentials",
      env_overrides: ["PORT"],
    }),
    save_settings: ({ settings: next }) => {
      if (next.database_url?.includes("unreachable")) throw "cannot connect to unreachable:5432: connection refused";
      settings = next;
      return { message: "Saved. The database change takes effect after a restart of the app." };
    },
    test_database: ({ url }) => {
      if (url.includes("unreachable")) throw "cannot connect to unreachable:5432: connection refused";
      return "PostgreSQL 15 at db.example:5432";
    },
    connect_claude_code: () => {
      connected = true;
      return "Claude Code now goes through the proxy.";
    },
    disconnect_claude_code: () => {
      connected = false;
      return "Claude Code no longer goes through the proxy.";
    },
    open_logs_folder: () => null,
    open_url: () => null,
  };
  window.__TAURI__ = {
    core: {
      invoke: async (cmd, args) => {
        window.__invoked.push([cmd, args ?? null]);
        if (!commands[cmd]) throw `unknown command ${cmd}`;
        return commands[cmd](args ?? {});
      },
    },
    opener: { openUrl: async (url) => window.__invoked.push(["opener.openUrl", { url }]) },
  };
}

const invoked = (page, cmd) => page.evaluate((cmd) => window.__invoked.filter(([c]) => c === cmd).map(([, args]) => args), cmd);

test("in the desktop app: Settings, the Claude Code card, and outside links in the system browser", async () => {
  const { context, page, errors } = await open();
  await context.addInitScript(fakeTauri);
  await page.goto(link);
  await page.getByRole("heading", { name: "Overview" }).waitFor();

  await page.getByRole("link", { name: "Settings" }).click();
  await page.getByRole("heading", { name: "Settings", exact: true }).waitFor();
  // PORT is set in the environment: shown, not editable.
  assert.equal(await page.getByLabel("Proxy port", { exact: true }).isDisabled(), true);
  await page.getByText("Set by the environment variable PORT.").waitFor();
  for (const label of [
    "A subscription account needs login or fails to refresh",
    "A plan window is nearly used up",
    "A burst of failed authentications",
    "An account uses unusually many tokens",
    "Many upstream errors",
    "A client key expires soon",
    "The database is unavailable (records kept on disk)",
    "The proxy port is taken",
  ]) {
    assert.equal(await page.getByLabel(label).isChecked(), true, label);
  }
  await page.getByText("The first six are the proxy's alerts, with the same rules and cooldowns as Slack alerts").waitFor();
  await page.getByText("Off by default. The 5-hour and 7-day windows come from the response headers").waitFor();
  await assertFits(page, "Settings at 1280px");
  await shot(page, "desktop-settings");

  await page.getByLabel("A subscription account needs login or fails to refresh").uncheck();
  await page.getByLabel("Many upstream errors").uncheck();
  await page.getByLabel("Poll plan usage").check();
  await page.getByLabel("PostgreSQL", { exact: true }).check();
  // A database that does not connect: the test says so, and Save refuses.
  await page.getByLabel("PostgreSQL URL").fill("postgres://nexus@unreachable/nexus");
  await page.getByRole("button", { name: "Test connection" }).click();
  await page.getByRole("alert").filter({ hasText: "connection refused" }).waitFor();
  await page.getByRole("button", { name: "Save" }).click();
  await page.getByRole("alert").filter({ hasText: "cannot connect to unreachable" }).nth(1).waitFor();
  await page.getByLabel("PostgreSQL URL").fill("postgres://nexus@db.example/nexus");
  await page.getByRole("button", { name: "Test connection" }).click();
  await page.getByRole("status").filter({ hasText: "PostgreSQL 15 at db.example:5432" }).waitFor();
  await page.getByRole("button", { name: "Save" }).click();
  await page.getByRole("status").filter({ hasText: "Saved. The database change takes effect after a restart of the app." }).waitFor();
  const saved = await invoked(page, "save_settings");
  assert.equal(saved.length, 2);
  const last = saved[1].settings;
  assert.equal(last.port, 3000);
  assert.equal(last.usage_polling, true);
  assert.equal(last.database_url, "postgres://nexus@db.example/nexus");
  assert.equal(last.notifications.oauth, false);
  assert.equal(last.notifications.upstream_errors, false);
  assert.equal(last.notifications.plan_window, true);
  assert.equal(last.notifications.key_expiry, true);
  await page.getByRole("button", { name: "Open logs folder" }).click();
  await page.waitForFunction(() => window.__invoked.some(([c]) => c === "open_logs_folder"));
  await shot(page, "desktop-settings-saved");
  await page.setViewportSize({ width: 800, height: 900 });
  await assertFits(page, "Settings at 800px");
  await shot(page, "desktop-settings-800");
  await page.setViewportSize({ width: 1280, height: 800 });

  // Claude Code: connect, then the button offers to disconnect.
  await page.getByRole("link", { name: "Accounts & keys" }).click();
  await page.getByRole("heading", { name: "Claude Code" }).waitFor();
  await page.getByText("Not connected").waitFor();
  await page.getByRole("button", { name: "Connect Claude Code…" }).click();
  await page.getByRole("status").filter({ hasText: "Claude Code now goes through the proxy." }).waitFor();
  await page.getByRole("button", { name: "Disconnect Claude Code" }).waitFor();
  await page.getByText("Connected", { exact: true }).waitFor();
  await shot(page, "desktop-accounts");

  // The OAuth authorize link opens in the system browser, not in a new window of the app.
  await page.getByLabel("Domain for the account").fill("desk.example");
  await page.getByRole("button", { name: "Start login" }).click();
  const authorize = page.getByRole("link", { name: "Open the Claude login page" });
  const href = await authorize.getAttribute("href");
  await authorize.click();
  await page.waitForFunction(() => window.__invoked.some(([c]) => c === "open_url"));
  assert.deepEqual(await invoked(page, "open_url"), [{ url: href }]);
  await page.waitForTimeout(300);
  assert.equal(context.pages().length, 1, "a new window opened");
  await page.getByRole("button", { name: "Cancel" }).click();

  assert.deepEqual(errors, []);
  await context.close();
});

/** Sends a request from the page (its session cookie goes along) and returns the JSON. */
const fetchJson = (page, path) => page.evaluate((path) => fetch(path).then((r) => r.json()), path);

async function untilAccounts(page, test, what) {
  const deadline = Date.now() + 10_000;
  while (!test((await fetchJson(page, "/api/accounts")).accounts)) {
    assert.ok(Date.now() < deadline, `the accounts never ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

test("with no account, the Overview opens on the welcome guide, and its passthrough file adds one", async () => {
  const dir = dirname(credentialFile);
  const away = join(dirname(dir), "credentials-away");
  mkdirSync(away, { recursive: true });
  const files = readdirSync(dir).filter((f) => f.endsWith(".credentials.json"));
  const { context, page, errors } = await open();
  let added = null;
  try {
    for (const f of files) renameSync(join(dir, f), join(away, f));
    await page.goto(link);
    await page.getByRole("heading", { name: "Overview" }).waitFor();
    await untilAccounts(page, (a) => a.length === 0, "went away");
    await page.reload();

    // The guide comes first, with the three ways, recommended first.
    const welcome = page.getByRole("region", { name: "Welcome: add an account to start" });
    await welcome.waitFor();
    const ways = await welcome.locator(".ways > li > h3").allInnerTexts();
    assert.deepEqual(ways, [
      "Use Claude Code's own login (recommended for Pro/Max)",
      "An Anthropic API key, stored in the OS keychain",
      "Log in with a Claude Pro/Max account (OAuth)",
    ]);
    await welcome.getByText("Anthropic's terms limit Claude Pro/Max credentials to Anthropic's own clients, such as Claude Code. Prefer option 1 for Claude Code.").waitFor();
    assert.match(await welcome.innerText(), new RegExp(`export ANTHROPIC_CUSTOM_HEADERS="x-nexus-key: cnp_live_…"`));
    assert.ok((await welcome.innerText()).includes(`export ANTHROPIC_BASE_URL=${proxy}`));
    assert.equal(await welcome.getByRole("button", { name: "Connect Claude Code…" }).count(), 0);
    const first = await page.evaluate(() => document.querySelector("main h1").nextElementSibling?.getAttribute("aria-labelledby"));
    assert.equal(first, "welcome-title", "the guide is the first thing on the page");
    await assertFits(page, "the welcome guide at 1280px");
    await shot(page, "welcome");
    await page.setViewportSize({ width: 800, height: 900 });
    await assertFits(page, "the welcome guide at 800px");
    await shot(page, "welcome-800");

    // In the desktop app, option 1 is a button.
    const desk = await context.newPage();
    await desk.addInitScript(fakeTauri);
    await desk.goto(base + "/");
    await desk.getByRole("region", { name: "Welcome: add an account to start" }).getByRole("button", { name: "Connect Claude Code…" }).waitFor();
    await shot(desk, "welcome-desktop");
    await desk.close();

    // Doing what option 1 says adds the account, and the guide goes away without a reload.
    await page.evaluate(() => {
      window.__noReload = true;
    });
    const name = (await welcome.getByTestId("passthrough-file-name").innerText()).trim();
    const text = (await welcome.getByTestId("passthrough-file").innerText()).trim();
    added = join(dir, name);
    writeFileSync(added, text + "\n", { mode: 0o600 });
    await welcome.waitFor({ state: "detached", timeout: 15_000 });
    assert.equal(await page.evaluate(() => window.__noReload), true, "the page was reloaded");

    // Its client key goes in x-nexus-key: the snippet says so.
    await page.setViewportSize({ width: 1280, height: 800 });
    await page.getByRole("link", { name: "Accounts & keys" }).click();
    const domain = name.replace(/\.credentials\.json$/, "");
    await page.getByRole("table", { name: "Accounts" }).getByRole("row").filter({ hasText: domain }).getByText("Passthrough").first().waitFor();
    await page.getByLabel("Name").fill("passthrough laptop");
    await page.getByRole("combobox", { name: "Account" }).selectOption(domain);
    await page.getByRole("button", { name: "Create key" }).click();
    const newKey = (await page.getByTestId("new-key").innerText()).trim();
    const snippet = (await page.locator("pre.snippet").innerText()).trim();
    assert.equal(snippet, `export ANTHROPIC_BASE_URL=${proxy}\nexport ANTHROPIC_CUSTOM_HEADERS="x-nexus-key: ${newKey}"\nunset ANTHROPIC_API_KEY ANTHROPIC_AUTH_TOKEN`);
    await shot(page, "accounts-passthrough-key");
  } finally {
    if (added) rmSync(added, { force: true });
    for (const f of files) renameSync(join(away, f), join(dir, f));
  }
  await untilAccounts(page, (a) => a.some((x) => x.domain === "a.example"), "came back");
  assert.deepEqual(errors, []);
  await context.close();
});

/** A Messages request through the proxy with `key`; its status and body. */
async function proxyStatus(key) {
  const response = await fetch(`${proxy}/v1/messages`, {
    method: "POST",
    headers: { "x-api-key": key, "content-type": "application/json" },
    body: JSON.stringify({ model, max_tokens: 16, messages: [{ role: "user", content: "Hello" }] }),
  });
  return { status: response.status, body: await response.text() };
}

/** The number before " / " in a gauge's text ("1,234 / 5,000 tokens today" → 1234). */
const usedOf = (text) => Number(text.split(" / ")[0].replaceAll(",", ""));

test("limits set on a key and an account from the Accounts page: gauges fill as requests go through, then the limit refuses", async () => {
  const { context, page, errors } = await open();
  await page.goto(link);
  await page.getByRole("heading", { name: "Overview" }).waitFor();
  await page.getByRole("link", { name: "Accounts & keys" }).click();
  const limits = page.getByRole("table", { name: "Limits and budgets" });
  // The credential file's own key (the one these tests send with), and its account.
  const key = limits.locator('tr[data-subject="key:file:a.example"]');
  const account = limits.locator('tr[data-subject="account:a.example"]');
  await key.getByText("key in a.example's credential file").waitFor();
  await key.getByText("No limits").waitFor();
  await account.getByText("No limits").waitFor();

  // What is not a number is refused in the editor; what the server refuses, with its reason.
  await key.getByRole("button", { name: "Set limits" }).click();
  const editor = page.getByRole("form", { name: /^Limits of / });
  await editor.getByLabel("Requests per minute").fill("three");
  await editor.getByRole("button", { name: "Save limits" }).click();
  await editor.getByRole("alert").filter({ hasText: "Requests per minute: a whole number, or empty for no limit" }).waitFor();
  await editor.getByLabel("Requests per minute").fill("0");
  await editor.getByRole("button", { name: "Save limits" }).click();
  await editor.getByRole("alert").filter({ hasText: "Requests per minute must be a whole number from 1 to" }).waitFor();
  await shot(page, "accounts-limits-refused");
  await key.getByText("No limits").waitFor();

  await editor.getByLabel("Requests per minute").fill("3");
  await editor.getByLabel("Tokens per day").fill("1,000");
  await editor.getByLabel("Dollars per day").fill("5");
  await editor.getByRole("button", { name: "Save limits" }).click();
  await saved(page, editor);
  const perMinute = key.getByRole("meter", { name: "Requests per minute" });
  const perDay = key.getByRole("meter", { name: "Tokens per day" });
  await key.getByText("0 / 3 requests per minute").waitFor();
  assert.equal(await perMinute.getAttribute("aria-valuetext"), "0 / 3 requests per minute");
  assert.match(await key.getByRole("meter", { name: "Dollars per day" }).getAttribute("aria-valuetext"), /^(\$0\.00|<\$0\.01) \/ \$5\.00 today$/);
  // Tokens already spent today (earlier tests' requests) count.
  const tokensBefore = usedOf(await perDay.getAttribute("aria-valuetext"));
  assert.equal(await perDay.getAttribute("aria-valuetext"), `${tokensBefore} / 1,000 tokens today`);

  await account.getByRole("button", { name: "Set limits" }).click();
  await editor.getByLabel("Dollars per month").fill("$200");
  await editor.getByRole("button", { name: "Save limits" }).click();
  await saved(page, editor);
  await account.getByRole("meter", { name: "Dollars per month" }).waitFor();

  // Two requests with the key: the gauges move without a reload. Each mock answer counts
  // 11 input + 5 cache write + 22 output = 38 tokens.
  await page.evaluate(() => {
    window.__noReload = true;
  });
  for (let i = 0; i < 2; i++) assert.equal((await proxyStatus(clientKey)).status, 200);
  await key.getByText("2 / 3 requests per minute").waitFor({ timeout: 15_000 });
  await key.getByText(`${tokensBefore + 76} / 1,000 tokens today`).waitFor({ timeout: 15_000 });
  await key.getByText("<$0.01 / $5.00 today").waitFor();
  await account.getByText("<$0.01 / $200.00 this month").waitFor();
  assert.equal(await page.evaluate(() => window.__noReload), true, "the page was reloaded");

  // The third is the last the minute allows; the fourth is refused before it goes upstream.
  assert.equal((await proxyStatus(clientKey)).status, 200);
  const refused = await proxyStatus(clientKey);
  assert.equal(refused.status, 429);
  assert.match(JSON.parse(refused.body).error.message, /requests_per_minute/);
  await key.getByText("3 / 3 requests per minute").waitFor({ timeout: 15_000 });
  assert.equal(await perMinute.getAttribute("aria-valuenow"), "100");
  await assertFits(page, "Accounts & keys with limits at 1280px");
  await limits.scrollIntoViewIfNeeded();
  await shot(page, "accounts-limits");
  await page.setViewportSize({ width: 800, height: 900 });
  await assertFits(page, "Accounts & keys with limits at 800px");
  await shot(page, "accounts-limits-800");
  await page.setViewportSize({ width: 1280, height: 800 });

  // Changed: the editor holds the limits as set. Removed: the key gets through again.
  await key.getByRole("button", { name: "Change" }).click();
  assert.equal(await editor.getByLabel("Requests per minute").inputValue(), "3");
  assert.equal(await editor.getByLabel("Tokens per day").inputValue(), "1000");
  assert.equal(await editor.getByLabel("Tokens per hour").inputValue(), "");
  await editor.getByRole("button", { name: "Remove limits" }).click();
  await saved(page, editor);
  await key.getByText("No limits").waitFor();
  assert.equal((await proxyStatus(clientKey)).status, 200);
  await account.getByRole("button", { name: "Change" }).click();
  await editor.getByRole("button", { name: "Remove limits" }).click();
  await account.getByText("No limits").waitFor();
  assert.deepEqual((await fetchJson(page, "/api/limits")).limits, []);

  // The one error is the browser's note of the refused limit (0 requests per minute).
  assert.deepEqual(errors, ["Failed to load resource: the server responded with a status of 400 (Bad Request)"]);
  await context.close();
});

/** The lockout test's first wrong key: sent here too, it adds no distinct wrong key to the
 * lockout rule's count, while each attempt still counts as a failed authentication. */
const firstWrongKey = `cnp_live_wrong${"0".repeat(44)}`;

// Before the lockout test: its wrong keys would raise (and then suppress) the same alert.
test("the Security page says where alerts go and their rules, and lists a failed-authentications alert as sent, live", async () => {
  const { context, page, errors } = await open();
  await page.goto(link);
  await page.getByRole("heading", { name: "Overview" }).waitFor();
  await page.getByRole("link", { name: "Security" }).click();
  const section = page.getByRole("region", { name: "Alerts" });
  await section.getByText("Slack webhook (SLACK_WEBHOOK_URL): set (every alert)").waitFor();
  await section.getByText("Credential files with a slack block: none").waitFor();
  assert.equal(await section.getByTestId("no-webhook").count(), 0, "no how-to while a webhook is set");

  // The rules in words, one per line; the plan rule is off on this server.
  const rules = section.getByRole("list", { name: "Alert rules" });
  assert.deepEqual(await rules.getByRole("listitem").allInnerTexts(), [
    `Failed authentications: when more than ${alertAuthFailures} failed authentications on one domain within 10 min`,
    "Token use: when an account uses more than 3× its daily average of the 7 days before",
    "Subscription login: when an OAuth account needs a new login or fails to refresh",
    "Upstream errors: when 50% or more of the upstream's answers are errors within 5 min (at least 20 requests)",
    "Plan usage: Off",
    "Client key expiring: when a client key expires within 7 days",
  ]);
  await section.getByText(/^Each alert goes out at most once per 1 h per subject \(a domain, an account, a key\)/).waitFor();
  const last = section.getByRole("table", { name: "Last alerts" });
  const authAlerts = last.locator('tr[data-kind="auth_failures"]');
  assert.equal(await authAlerts.count(), 0, "an earlier test raised the failed-authentications alert already");

  // One more failed authentication than the rule allows: the alert goes out, and the page
  // shows it without a reload. An earlier test's revoked key counts too (within 10 minutes).
  const since = new Date(Date.now() - 10 * 60_000).toISOString();
  const earlier = (await fetchJson(page, `/api/requests?status=401&domain=127.0.0.1&since=${since}`)).items.filter((r) => r.account_id === null).length;
  assert.ok(earlier <= alertAuthFailures, `${earlier} failed authentications already`);
  await page.evaluate(() => {
    window.__noReload = true;
  });
  for (let i = earlier; i <= alertAuthFailures; i++) assert.equal((await proxyStatus(firstWrongKey)).status, 401);
  const sent = authAlerts.filter({ has: page.locator(".badge", { hasText: /^sent$/ }) });
  await sent.waitFor({ timeout: 15_000 });
  const cells = await sent.getByRole("cell").allInnerTexts();
  assert.match(cells[0], /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/);
  assert.deepEqual(cells.slice(1), [
    "Failed authentications",
    "127.0.0.1",
    `more than ${alertAuthFailures} failed authentications on 127.0.0.1 within 10 min (the latest from 127.0.0.1)`,
    "sent",
  ]);
  assert.equal(await page.evaluate(() => window.__noReload), true, "the page was reloaded");
  await assertFits(page, "Security with an alert at 1280px");
  await section.scrollIntoViewIfNeeded();
  await shot(page, "security-alerts");

  // Two more within the cooldown: not sent, counted on one line (read again every 10 s).
  for (let i = 0; i < 2; i++) assert.equal((await proxyStatus(firstWrongKey)).status, 401);
  await authAlerts.filter({ has: page.locator(".badge", { hasText: "suppressed ×2" }) }).waitFor({ timeout: 15_000 });
  assert.equal(await sent.count(), 1, "the alert that went out is still listed once");
  await page.setViewportSize({ width: 800, height: 900 });
  await assertFits(page, "Security with alerts at 800px");
  // The outcome stays in view in a narrow window (the table does not need scrolling sideways).
  const card = await section.boundingBox();
  const badge = await sent.locator(".badge").boundingBox();
  assert.ok(badge.x + badge.width <= card.x + card.width, `the outcome ends at ${badge.x + badge.width}px, past the card at ${card.x + card.width}px`);
  await shot(page, "security-alerts-800");

  assert.deepEqual(errors, []);
  await context.close();
});

test("the Security page says the brute-force rule, lists an address locked out for guessing keys, and lifts it", async () => {
  const { context, page, errors } = await open();
  await page.goto(link);
  await page.getByRole("heading", { name: "Overview" }).waitFor();
  await page.getByRole("link", { name: "Security" }).click();
  const section = page.getByRole("region", { name: "Brute-force protection" });
  await section
    .getByText("On: more than 20 distinct wrong client keys from one address within 5 min lock it out for 15 min.")
    .waitFor();
  await section.getByText("No address is locked out.").waitFor();

  // One more distinct wrong key than the rule allows locks this address out (a key revoked
  // by an earlier test may already count): then even the right key is refused.
  const { rule } = await fetchJson(page, "/api/security/lockouts");
  try {
    let wrong = 0;
    let status;
    while ((status = (await proxyStatus(`cnp_live_wrong${String(wrong).padStart(44, "0")}`)).status) === 401) {
      wrong += 1;
      assert.ok(wrong <= rule.max_keys + 1, `${wrong} distinct wrong keys and no lockout`);
    }
    assert.equal(status, 429);
    assert.ok(wrong >= rule.max_keys - 1, `locked out after ${wrong} wrong keys`);
    assert.equal((await proxyStatus(clientKey)).status, 429);

    const locked = section.getByRole("table", { name: "Locked-out addresses" }).getByRole("row").filter({ hasText: "127.0.0.1" });
    await locked.waitFor({ timeout: 15_000 });
    assert.match(await locked.innerText(), /1[45] min/);
    await assertFits(page, "Security with a lockout at 1280px");
    await shot(page, "security-lockout");

    await locked.getByRole("button", { name: "Lift" }).click();
    await section.getByRole("status").filter({ hasText: "Lifted: 127.0.0.1 can use the proxy again." }).waitFor();
    await section.getByText("No address is locked out.").waitFor();
    assert.equal((await proxyStatus(clientKey)).status, 200);
  } finally {
    // Whatever failed above, the tests after this one need the proxy.
    if ((await fetchJson(page, "/api/security/lockouts")).locked.length > 0) {
      await page.evaluate(() => fetch("/api/security/lockouts/127.0.0.1", { method: "DELETE" }));
    }
  }

  assert.deepEqual(errors, []);
  await context.close();
});

/** A Messages request through the proxy as Claude Code sends one (JSON, not streamed); the
 * mock answers with `reply` (content blocks, through x-mock-reply) or else its one text. Returns
 * the answer's content, which the next request sends back as the assistant's turn. */
async function claudeCodeTurn(messages, reply) {
  const response = await fetch(`${proxy}/v1/messages`, {
    method: "POST",
    headers: {
      "x-api-key": clientKey,
      "anthropic-version": "2023-06-01",
      "content-type": "application/json",
      ...(reply ? { "x-mock-reply": JSON.stringify(reply) } : {}),
    },
    body: JSON.stringify({ model, max_tokens: 64, messages }),
  });
  const text = await response.text();
  assert.equal(response.status, 200, text);
  return JSON.parse(text).content;
}

const user = (content) => ({ role: "user", content });
const assistant = (content) => ({ role: "assistant", content });

/** The conversation titled `title` once its requests are all recorded (records are written
 * in the background). */
async function untilConversation(page, title, requests) {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const found = (await fetchJson(page, "/api/conversations?limit=100")).items.find((c) => c.title === title);
    if (found?.requests === requests) return found;
    assert.ok(Date.now() < deadline, `no conversation ${JSON.stringify(title)} of ${requests} requests: ${JSON.stringify(found)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

test("a Claude Code session is a conversation: its branches and sub-task in a graph, a transcript, a request's page, new turns live", async () => {
  const { context, page, errors } = await open();
  await page.goto(link);
  await page.getByRole("heading", { name: "Overview" }).waitFor();

  // Three turns, each request sending the whole conversation so far, as Claude Code does.
  const title = "Fix the failing test in parser.rs";
  const u1 = user(title);
  const a1 = assistant(await claudeCodeTurn([u1]));
  const u2 = user("Run the parser tests again");
  const a2 = assistant(await claudeCodeTurn([u1, a1, u2]));
  const u3 = user("Now the whole test suite");
  const a3 = assistant(await claudeCodeTurn([u1, a1, u2, a2, u3]));
  // The user went back and edited the second message (a branch off the first answer), then
  // the third (a branch off the second).
  const edited = "Rewrite the parser instead";
  await claudeCodeTurn([u1, a1, user(edited)]);
  await claudeCodeTurn([u1, a1, u2, a2, user("Only the failing test, please")]);
  // A Task tool call starts a sub-task, whose own first request is the task's prompt; its
  // result comes back to the main conversation.
  const task = { type: "tool_use", id: "toolu_1", name: "Task", input: { description: "Find callers", prompt: "Find all callers of parse()" } };
  const u4 = user("Who else calls parse()?");
  const a4 = assistant(await claudeCodeTurn([u1, a1, u2, a2, u3, a3, u4], [task]));
  assert.deepEqual(a4.content, [task]);
  await claudeCodeTurn([user("Find all callers of parse()")]);
  const callers = "parse() is called from main.rs and lib.rs";
  const u5 = user([{ type: "tool_result", tool_use_id: "toolu_1", content: callers }]);
  const answer = await claudeCodeTurn([u1, a1, u2, a2, u3, a3, u4, a4, u5]);
  const a5 = assistant(answer);
  const sent = 8;

  const summary = await untilConversation(page, title, sent);
  await page.getByRole("link", { name: "Conversations", exact: true }).click();
  const table = page.getByRole("table", { name: "Conversations" });
  const row = table.getByRole("row").filter({ hasText: title });
  await row.waitFor();
  const headers = await table.getByRole("columnheader").allInnerTexts();
  const cells = await row.getByRole("cell").allInnerTexts();
  const cell = (name) => cells[headers.indexOf(name)];
  assert.equal(cell("Requests"), String(sent));
  assert.ok(Number(cell("Branches")) >= 2, `branches: ${cell("Branches")}`);
  assert.ok(Number(cell("Sub-tasks")) >= 1, `sub-tasks: ${cell("Sub-tasks")}`);
  assert.equal(cell("Failed"), "0");
  // Filtered by the client key the session used, picked from the keys by name: still listed.
  const first = (await fetchJson(page, `/api/conversations/${encodeURIComponent(summary.conversation_id)}`)).nodes[0];
  const { client_key_id: keyId } = await fetchJson(page, `/api/requests/${encodeURIComponent(first.request_id)}`);
  assert.ok(keyId, "the session's requests name their client key");
  const filters = page.getByRole("form", { name: "Filter conversations" });
  await filters.getByRole("combobox", { name: "Client key" }).selectOption(keyId);
  const filtered = page.waitForResponse((r) => r.url().includes(`client_key_id=${encodeURIComponent(keyId)}`));
  await filters.getByRole("button", { name: "Apply" }).click();
  await filtered;
  await row.waitFor();
  await assertFits(page, "Conversations at 1280px");
  await shot(page, "conversations");

  // The graph: a node per request, in several lanes; the sub-task hangs off its Task call.
  await row.getByRole("link", { name: title }).click();
  await page.getByRole("heading", { name: title }).waitFor();
  assert.equal(new URL(page.url()).pathname, `/conversations/${encodeURIComponent(summary.conversation_id)}`);
  const tree = await fetchJson(page, `/api/conversations/${encodeURIComponent(summary.conversation_id)}`);
  assert.equal(tree.nodes.length, sent);
  const graph = page.getByRole("group", { name: "Conversation graph" });
  const nodes = graph.getByRole("button");
  await nodes.nth(sent - 1).waitFor();
  const drawn = await nodes.evaluateAll((els) => els.map((e) => e.getAttribute("data-request-id")));
  assert.deepEqual(drawn, tree.nodes.map((n) => n.request_id));
  const lanes = page.getByRole("list", { name: "Branches" }).getByRole("button");
  assert.ok((await lanes.count()) >= 3, `${await lanes.count()} lanes`);
  assert.ok((await graph.locator("path.edge.task").count()) >= 1, "no sub-task edge");

  // The transcript of main's latest request: the user's messages, the Task call and its result
  // folded, and the answer.
  const transcript = page.getByRole("region", { name: /^Transcript of / });
  for (const text of [title, "Run the parser tests again", "Now the whole test suite", "Who else calls parse()?"]) {
    await transcript.getByText(text, { exact: true }).waitFor();
  }
  assert.equal(await transcript.getByText(edited).count(), 0, "another branch's message");
  await transcript.locator("summary").filter({ hasText: "Tool call Task" }).waitFor();
  await transcript.locator("summary").filter({ hasText: "Result of Task" }).click();
  await transcript.getByText(callers).waitFor();
  await transcript.locator(".turn.answer").getByText(answer[0].text).waitFor();
  await assertFits(page, "Conversation at 1280px");
  await shot(page, "conversation");

  // A node of the edited branch: selected, its transcript, and on to its request's page.
  const main = tree.nodes[0].branch_id;
  const fork = tree.nodes.find((n) => n.branch_id !== main && !n.is_subtask);
  const forkNode = graph.locator(`[data-request-id="${fork.request_id}"]`);
  await forkNode.click();
  assert.equal(await forkNode.getAttribute("aria-pressed"), "true");
  await page.getByRole("heading", { name: `Transcript of ${fork.branch_id}` }).waitFor();
  await transcript.getByText(edited, { exact: true }).waitFor();
  const selected = page.getByRole("region", { name: "Selected request" });
  await selected.getByText(fork.branch_id, { exact: true }).waitFor();
  await selected.getByRole("link", { name: "Request details" }).click();
  await page.getByText("Time to first token").waitFor();
  assert.equal(new URL(page.url()).pathname, `/requests/${encodeURIComponent(fork.request_id)}`);
  const back = page.getByRole("link", { name: summary.conversation_id, exact: true });
  await page.getByText(`· branch ${fork.branch_id}`).waitFor();
  await shot(page, "conversation-request");
  await back.click();
  await page.getByRole("heading", { name: title }).waitFor();
  assert.equal(await graph.locator(`[data-request-id="${fork.request_id}"]`).getAttribute("aria-pressed"), "true");

  // One more turn while the page is open: its node appears without a reload, and main's
  // transcript follows it.
  await page.getByRole("status").filter({ hasText: "Live" }).waitFor();
  await page.evaluate(() => {
    window.__noReload = true;
  });
  await claudeCodeTurn([u1, a1, u2, a2, u3, a3, u4, a4, u5, a5, user("Thanks, commit it")]);
  await nodes.nth(sent).waitFor({ timeout: 15_000 });
  assert.equal(await nodes.count(), sent + 1);
  await page.locator(".stat").filter({ hasText: "Requests" }).locator(".stat-value").filter({ hasText: String(sent + 1) }).waitFor();
  assert.equal(await page.evaluate(() => window.__noReload), true, "the page was reloaded");
  await lanes.first().click();
  await transcript.getByText("Thanks, commit it", { exact: true }).waitFor();
  await page.setViewportSize({ width: 800, height: 900 });
  await assertFits(page, "Conversation at 800px");
  await shot(page, "conversation-live-800");

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
