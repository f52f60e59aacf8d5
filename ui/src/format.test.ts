import { describe, expect, it } from "vitest";
import type { AccountInfo, ClientKeyInfo, GroupRow, LimitEntry, LimitUse, RequestSummary } from "./api";
import {
  accountStatus,
  claudeCodeSnippet,
  passthroughFile,
  formatRelative,
  gauge,
  keyLabel,
  keyRows,
  upsertAccount,
  emptyFilter,
  filterQuery,
  formatCost,
  formatCount,
  formatMs,
  formatSpan,
  localToIso,
  matchesFilter,
  mergeLive,
  stackByModel,
  statusClass,
  worstFirst,
  pivotDaily,
  formatDuration,
  formatSpent,
  formatBudget,
  limitGauges,
  limitForm,
  parseLimitForm,
  limitRows,
  limitError,
  lockoutRuleText,
  spellDurations,
  alertRuleLine,
  cooldownText,
  alertOutcome,
  alertsRefreshMs,
} from "./format";

function summary(over: Partial<RequestSummary>): RequestSummary {
  return {
    request_id: "01",
    timestamp: "2026-11-28T10:00:00.000Z",
    domain: "a.example",
    account_id: "acc_a",
    method: "POST",
    path: "/v1/messages",
    model: "claude-sonnet-4-5",
    status: 200,
    input_tokens: 1,
    output_tokens: 2,
    cache_creation_input_tokens: 0,
    cache_read_input_tokens: 0,
    duration_ms: 10,
    first_token_ms: null,
    streaming: false,
    api_key_hash: null,
    error: null,
    ...over,
  };
}

function group(key: string, model: string, input: number, output: number): GroupRow {
  return {
    key,
    key2: model,
    requests: 1,
    errors: 0,
    input_tokens: input,
    output_tokens: output,
    cache_creation_input_tokens: 0,
    cache_read_input_tokens: 0,
    cost_usd: null,
  };
}

describe("formatting", () => {
  it("counts, costs and durations", () => {
    expect(formatCount(12345)).toBe("12,345");
    expect(formatCount(2_500_000)).toBe("2.5M");
    expect(formatCost(null)).toBe("–");
    expect(formatCost(0)).toBe("$0.00");
    expect(formatCost(0.004)).toBe("<$0.01");
    expect(formatCost(12.345)).toBe("$12.35");
    expect(formatMs(null)).toBe("–");
    expect(formatMs(250)).toBe("250 ms");
    expect(formatMs(1500)).toBe("1.5 s");
    expect(formatMs(125_000)).toBe("2 min 5 s");
    expect(formatSpan(250)).toBe("250 ms");
    expect(formatSpan(59_400)).toBe("59.4 s");
    expect(formatSpan(5_400_000)).toBe("1 h 30 min");
    expect(statusClass(200)).toBe("ok");
    expect(statusClass(429)).toBe("client");
    expect(statusClass(502)).toBe("server");
  });
});

describe("filters", () => {
  it("builds the API query from the set fields only", () => {
    expect(filterQuery(emptyFilter)).toBe("");
    const q = new URLSearchParams(
      filterQuery({ ...emptyFilter, domain: "a.example", model: "claude-x", status: "429", streaming: "true", client_key_id: "file:a.example" }, { limit: "50" }),
    );
    expect(Object.fromEntries(q)).toEqual({
      domain: "a.example",
      model: "claude-x",
      status: "429",
      streaming: "true",
      client_key_id: "file:a.example",
      limit: "50",
    });
    expect(localToIso("")).toBe("");
    expect(localToIso("not a date")).toBe("");
    expect(localToIso("2026-11-28T10:00")).toMatch(/^2026-11-2\dT\d\d:00:00\.000Z$/);
  });

  it("decides whether a live request belongs to the list", () => {
    const r = summary({ status: 429, streaming: true });
    expect(matchesFilter(r, emptyFilter)).toBe(true);
    expect(matchesFilter(r, { ...emptyFilter, status: "429" })).toBe(true);
    expect(matchesFilter(r, { ...emptyFilter, status: "200" })).toBe(false);
    expect(matchesFilter(r, { ...emptyFilter, streaming: "false" })).toBe(false);
    expect(matchesFilter(r, { ...emptyFilter, account_id: "acc_b" })).toBe(false);
    expect(matchesFilter(r, { ...emptyFilter, domain: "a.example" })).toBe(true);
    expect(matchesFilter(r, { ...emptyFilter, domain: "b.example" })).toBe(false);
    expect(matchesFilter(r, { ...emptyFilter, model: "claude-sonnet-4-5" })).toBe(true);
    expect(matchesFilter({ ...r, client_key_id: "ck_1" }, { ...emptyFilter, client_key_id: "ck_1" })).toBe(true);
    expect(matchesFilter({ ...r, client_key_id: "ck_1" }, { ...emptyFilter, client_key_id: "ck_2" })).toBe(false);
    expect(matchesFilter(r, { ...emptyFilter, client_key_id: "ck_1" })).toBe(false);
  });

  it("merges live requests newest first without duplicates", () => {
    const old = [summary({ request_id: "b", timestamp: "2026-11-28T10:00:01.000Z" })];
    const merged = mergeLive(old, [
      summary({ request_id: "c", timestamp: "2026-11-28T10:00:02.000Z" }),
      summary({ request_id: "b", timestamp: "2026-11-28T10:00:01.000Z" }),
    ]);
    expect(merged.map((r) => r.request_id)).toEqual(["c", "b"]);
  });
});

describe("stackByModel", () => {
  it("spaces buckets evenly and stacks models", () => {
    const since = new Date("2026-11-28T08:30:00Z");
    const now = new Date("2026-11-28T11:10:00Z");
    const s = stackByModel(
      [group("2026-11-28 09", "m1", 10, 5), group("2026-11-28 11", "m1", 1, 1), group("2026-11-28 11", "m2", 3, 0), group("2020-01-01 00", "m3", 9, 9)],
      "hour",
      since,
      now,
    );
    expect(s.labels).toEqual(["2026-11-28 08", "2026-11-28 09", "2026-11-28 10", "2026-11-28 11"]);
    expect(s.datasets).toEqual([
      { label: "m1", data: [0, 15, 0, 2] },
      { label: "m2", data: [0, 0, 0, 3] },
    ]);
  });

  it("uses days for the longer windows", () => {
    const s = stackByModel([group("2026-11-27", "m", 1, 1)], "day", new Date("2026-11-21T12:00:00Z"), new Date("2026-11-28T12:00:00Z"));
    expect(s.labels.length).toBe(8);
    expect(s.labels[0]).toBe("2026-11-21");
    expect(s.datasets[0].data[6]).toBe(2);
  });
});

describe("worstFirst", () => {
  it("puts failures first and keeps the order within a status", () => {
    const checks = [
      { id: "a", status: "pass" },
      { id: "b", status: "todo" },
      { id: "c", status: "fail" },
      { id: "d", status: "warn" },
      { id: "e", status: "fail" },
    ];
    expect(worstFirst(checks).map((c) => c.id)).toEqual(["c", "e", "d", "b", "a"]);
  });
});

describe("pivotDaily", () => {
  it("orders days and stacks accounts", () => {
    const s = pivotDaily([
      { account_id: "b", domain: "b.example", day: "2026-11-28", value: 5 },
      { account_id: "a", domain: "a.example", day: "2026-11-27", value: 3 },
      { account_id: null, domain: "c.example", day: "2026-11-28", value: 1 },
    ]);
    expect(s.labels).toEqual(["2026-11-27", "2026-11-28"]);
    expect(s.datasets).toEqual([
      { label: "a", data: [3, 0] },
      { label: "b", data: [0, 5] },
      { label: "c.example", data: [0, 1] },
    ]);
  });
});

function account(over: Partial<AccountInfo>): AccountInfo {
  return { domain: "a.example", account_id: "acc", type: "api_key", secret: "keychain", oauth: null, windows: null, file_client_key: null, ...over };
}

describe("accounts and keys", () => {
  it("builds the Claude Code snippet from the proxy address and the key", () => {
    expect(claudeCodeSnippet("http://127.0.0.1:3000", "cnp_live_x")).toBe(
      "export ANTHROPIC_BASE_URL=http://127.0.0.1:3000\nexport ANTHROPIC_API_KEY=cnp_live_x",
    );
  });

  it("sends a passthrough account's key in x-nexus-key and leaves Claude Code its login", () => {
    expect(claudeCodeSnippet("http://127.0.0.1:3000", "cnp_live_x", true)).toBe(
      'export ANTHROPIC_BASE_URL=http://127.0.0.1:3000\nexport ANTHROPIC_CUSTOM_HEADERS="x-nexus-key: cnp_live_x"\nunset ANTHROPIC_API_KEY ANTHROPIC_AUTH_TOKEN',
    );
  });

  it("shows a passthrough credential file the proxy accepts", () => {
    expect(passthroughFile.name).toMatch(/^[a-z0-9._-]+\.credentials\.json$/);
    expect(JSON.parse(passthroughFile.text)).toEqual({ type: "passthrough", accountId: "me" });
  });

  it("says times relative to now", () => {
    const now = new Date("2026-11-28T12:00:00Z");
    expect(formatRelative("2026-11-28T15:00:00Z", now)).toBe("in 3 h");
    expect(formatRelative("2026-11-28T11:48:00Z", now)).toBe("12 min ago");
    expect(formatRelative("2026-11-23T12:00:00Z", now)).toBe("5 d ago");
    expect(formatRelative(null, now)).toBe("–");
  });

  it("names an account's state", () => {
    expect(accountStatus(account({}))).toEqual({ text: "Ready", tone: "ok" });
    const oauth = (status: NonNullable<AccountInfo["oauth"]>["status"]) =>
      account({ type: "oauth", oauth: { status, expires_at: null, is_max: true, last_refresh_at: null, last_refresh_error: null } });
    expect(accountStatus(oauth("needs_login"))).toEqual({ text: "Needs login", tone: "server" });
    expect(accountStatus(oauth("expiring")).tone).toBe("client");
    expect(accountStatus(oauth("ok")).text).toBe("OK");
  });

  it("fills gauges within 0–100 and warns near the limit", () => {
    expect(gauge(37)).toEqual({ width: 37, tone: "ok" });
    expect(gauge(80).tone).toBe("client");
    expect(gauge(120)).toEqual({ width: 100, tone: "server" });
    expect(gauge(-1).width).toBe(0);
  });

  it("upserts accounts by domain, sorted", () => {
    const list = [account({ domain: "b.example" }), account({ domain: "c.example" })];
    const fresh = account({ domain: "a.example" });
    expect(upsertAccount(list, fresh).map((a) => a.domain)).toEqual(["a.example", "b.example", "c.example"]);
    const changed = upsertAccount(list, account({ domain: "b.example", secret: "inline" }));
    expect(changed.length).toBe(2);
    expect(changed[0].secret).toBe("inline");
  });

  it("lists the credential files' own keys after the database's, marked as from a file", () => {
    const dbKey: ClientKeyInfo = {
      id: "ck_1",
      name: "laptop",
      prefix: "cnp_live_Ab12…",
      account: "a.example",
      created_at: "2026-11-28T10:00:00Z",
      expires_at: null,
      revoked_at: null,
      last_used_at: null,
      rotated_from: null,
      status: "active",
    };
    const accounts = [
      account({ domain: "c.example", file_client_key: { id: "file:c.example", prefix: "cnp_live_Cc33…" } }),
      account({ domain: "a.example" }),
      account({ domain: "b.example", file_client_key: { id: "file:b.example", prefix: "cnp_live_Bb22…" } }),
    ];
    const rows = keyRows([dbKey], accounts);
    expect(rows.map((r) => [r.source, r.id, r.account])).toEqual([
      ["database", "ck_1", "a.example"],
      ["file", "file:b.example", "b.example"],
      ["file", "file:c.example", "c.example"],
    ]);
    expect(rows[1]).toEqual({ source: "file", id: "file:b.example", prefix: "cnp_live_Bb22…", account: "b.example" });
    expect(keyRows([], [account({})])).toEqual([]);
    expect(rows.map(keyLabel)).toEqual(["laptop · cnp_live_Ab12…", "b.example file key · cnp_live_Bb22…", "c.example file key · cnp_live_Cc33…"]);
    expect(keyLabel({ source: "database", ...dbKey, name: null, status: "revoked" })).toBe("ck_1 · cnp_live_Ab12… (revoked)");
  });
});

const noUse: LimitUse = { requests_last_minute: 0, tokens_this_hour: 0, tokens_today: 0, usd_today: 0, usd_this_month: 0 };

function clientKey(over: Partial<ClientKeyInfo>): ClientKeyInfo {
  return {
    id: "ck_1",
    name: "laptop",
    prefix: "cnp_live_Ab12…",
    account: "a.example",
    created_at: "2026-11-28T10:00:00Z",
    expires_at: null,
    revoked_at: null,
    last_used_at: null,
    rotated_from: null,
    status: "active",
    ...over,
  };
}

describe("limits and budgets", () => {
  it("says each limit set as use / limit, in the page's order, and nothing for the rest", () => {
    const gauges = limitGauges(
      { usd_per_day: 5, requests_per_minute: 5, tokens_per_day: 2_000_000, tokens_per_hour: null },
      { ...noUse, requests_last_minute: 3, tokens_today: 12_345, usd_today: 1.2 },
    );
    expect(gauges.map((g) => [g.kind.field, g.text, g.percent])).toEqual([
      ["requests_per_minute", "3 / 5 requests per minute", 60],
      ["tokens_per_day", "12,345 / 2M tokens today", (12_345 / 2_000_000) * 100],
      ["usd_per_day", "$1.20 / $5.00 today", 24],
    ]);
    expect(limitGauges({}, noUse)).toEqual([]);
  });

  it("shows use past a limit (the request that crossed it completed) and tiny spend", () => {
    const [tokens, month] = limitGauges({ tokens_per_hour: 100, usd_per_month: 200 }, { ...noUse, tokens_this_hour: 114, usd_this_month: 0.0004 });
    expect(tokens.text).toBe("114 / 100 tokens this hour");
    expect(tokens.percent).toBeCloseTo(114);
    expect(month.text).toBe("<$0.01 / $200.00 this month");
  });

  it("formats dollars spent to the cent and budgets as set", () => {
    expect(formatSpent(0)).toBe("$0.00");
    expect(formatSpent(0.004)).toBe("<$0.01");
    expect(formatSpent(1234.5)).toBe("$1,234.50");
    expect(formatBudget(5)).toBe("$5.00");
    expect(formatBudget(0.005)).toBe("$0.005");
    expect(formatBudget(1000)).toBe("$1,000.00");
  });

  it("fills the editor from limits set, empty for no limit", () => {
    expect(limitForm({ requests_per_minute: 30, usd_per_day: 2.5, tokens_per_hour: null })).toEqual({
      requests_per_minute: "30",
      tokens_per_hour: "",
      tokens_per_day: "",
      usd_per_day: "2.5",
      usd_per_month: "",
    });
    expect(Object.values(limitForm(null))).toEqual(["", "", "", "", ""]);
  });

  it("reads the editor: empty is no limit, separators and $ allowed", () => {
    const form = { ...limitForm(null), requests_per_minute: " 30 ", tokens_per_day: "2,000,000", usd_per_month: "$200.50" };
    expect(parseLimitForm(form)).toEqual({ limits: { requests_per_minute: 30, tokens_per_day: 2_000_000, usd_per_month: 200.5 } });
    expect(parseLimitForm(limitForm(null))).toEqual({ limits: {} });
    expect(parseLimitForm({ ...limitForm(null), usd_per_day: ".5" })).toEqual({ limits: { usd_per_day: 0.5 } });
  });

  it("refuses what is not a number, and leaves the range to the server", () => {
    expect(parseLimitForm({ ...limitForm(null), tokens_per_hour: "1.5" })).toEqual({ error: "Tokens per hour: a whole number, or empty for no limit" });
    expect(parseLimitForm({ ...limitForm(null), requests_per_minute: "ten" })).toEqual({
      error: "Requests per minute: a whole number, or empty for no limit",
    });
    expect(parseLimitForm({ ...limitForm(null), usd_per_day: "5 dollars" })).toEqual({
      error: "Dollars per day: an amount of dollars such as 5 or 2.50, or empty for no limit",
    });
    // 0 and negative amounts go to the server, whose answer says the range.
    expect(parseLimitForm({ ...limitForm(null), requests_per_minute: "0", usd_per_day: "-1" })).toEqual({
      limits: { requests_per_minute: 0, usd_per_day: -1 },
    });
  });

  it("names the fields of the server's refusals as the editor does", () => {
    expect(limitError("requests_per_minute must be a whole number from 1 to 9223372036854775807")).toBe(
      "Requests per minute must be a whole number from 1 to 9223372036854775807",
    );
    expect(limitError("usd_per_month must be a positive amount of dollars")).toBe("Dollars per month must be a positive amount of dollars");
    expect(limitError("Not found")).toBe("Not found");
  });

  it("lists accounts, then keys as the keys table does, then limits of subjects that are gone", () => {
    const entry = (kind: "key" | "account", id: string): LimitEntry => ({ subject: { kind, id }, limits: { requests_per_minute: 5 }, used: noUse });
    const accounts = [
      account({ domain: "b.example", file_client_key: { id: "file:b.example", prefix: "cnp_live_Bb22…" } }),
      account({ domain: "a.example" }),
    ];
    const keys = [
      clientKey({}),
      clientKey({ id: "ck_2", name: null, prefix: "cnp_live_Zz99…", status: "expired" }),
      clientKey({ id: "ck_3", status: "revoked" }),
      clientKey({ id: "ck_4", name: "old", status: "revoked" }),
    ];
    const entries = [entry("key", "file:b.example"), entry("account", "a.example"), entry("key", "ck_4"), entry("key", "ck_gone"), entry("account", "gone.example")];
    const rows = limitRows(accounts, keys, entries);
    expect(rows.map((r) => [r.subject.kind, r.subject.id, r.name, r.detail, r.entry !== null])).toEqual([
      ["account", "a.example", "a.example", "account", true],
      ["account", "b.example", "b.example", "account", false],
      ["key", "ck_1", "laptop", "key cnp_live_Ab12… of a.example", false],
      ["key", "ck_2", "cnp_live_Zz99…", "key cnp_live_Zz99… of a.example (expired)", false],
      ["key", "ck_4", "old", "key cnp_live_Ab12… of a.example (revoked)", true],
      ["key", "file:b.example", "cnp_live_Bb22…", "key in b.example's credential file", true],
      ["key", "ck_gone", "ck_gone", "key not found", true],
      ["account", "gone.example", "gone.example", "account not loaded", true],
    ]);
  });

  it("says spans of seconds in two units at most", () => {
    expect(formatDuration(45)).toBe("45 s");
    expect(formatDuration(300)).toBe("5 min");
    expect(formatDuration(872)).toBe("14 min 32 s");
    expect(formatDuration(3600)).toBe("1 h");
    expect(formatDuration(5400)).toBe("1 h 30 min");
    expect(formatDuration(2 * 86_400 + 3 * 3600 + 59)).toBe("2 d 3 h");
  });

  it("says the brute-force rule in words, or that it is off", () => {
    expect(lockoutRuleText({ max_keys: 20, window_secs: 300, duration_secs: 900 })).toBe(
      "On: more than 20 distinct wrong client keys from one address within 5 min lock it out for 15 min.",
    );
    expect(lockoutRuleText({ max_keys: 1, window_secs: 60, duration_secs: 3600 })).toBe(
      "On: more than 1 distinct wrong client key from one address within 1 min lock it out for 1 h.",
    );
    expect(lockoutRuleText({ max_keys: 0, window_secs: 300, duration_secs: 900 })).toMatch(/^Off: /);
  });
});

describe("alerts", () => {
  it("spells the server's durations after \"within\", and nothing else", () => {
    expect(spellDurations("more than 3 failed authentications on one domain within 10m")).toBe(
      "more than 3 failed authentications on one domain within 10 min",
    );
    expect(spellDurations("errors within 1h 30m (at least 20 requests)")).toBe("errors within 1 h 30 min (at least 20 requests)");
    expect(spellDurations("a client key expires within 7days")).toBe("a client key expires within 7 days");
    expect(spellDurations("within 45s, within 1day")).toBe("within 45 s, within 1 day");
    // Names that look like durations stay as they are.
    expect(spellDurations("failed authentications on 5m.example within 10m")).toBe("failed authentications on 5m.example within 10 min");
    expect(spellDurations("a subscription's 5-hour or 7-day window is 90% used")).toBe("a subscription's 5-hour or 7-day window is 90% used");
  });

  it("writes each rule with its name, and a rule turned off as off", () => {
    expect(alertRuleLine({ kind: "auth_failures", rule: "more than 3 failed authentications on one domain within 10m" })).toEqual({
      name: "Failed authentications",
      text: "when more than 3 failed authentications on one domain within 10 min",
      off: false,
    });
    expect(alertRuleLine({ kind: "plan_window", rule: "off" })).toEqual({ name: "Plan usage", text: "Off", off: true });
    expect(alertRuleLine({ kind: "new_rule", rule: "something" }).name).toBe("new_rule");
  });

  it("says the cooldown in words", () => {
    expect(cooldownText(3600)).toMatch(/^Each alert goes out at most once per 1 h per subject \(a domain, an account, a key\);/);
    expect(cooldownText(90 * 60)).toMatch(/at most once per 1 h 30 min per subject/);
    expect(cooldownText(600)).toMatch(/at most once per 10 min per subject/);
    expect(cooldownText(0)).toMatch(/^No cooldown \(ALERT_COOLDOWN is 0\)/);
  });

  it("shows the outcome as a badge, suppressed ones with their count", () => {
    const badge = (outcome: Parameters<typeof alertOutcome>[0]["outcome"], times = 1) => {
      const b = alertOutcome({ outcome, times });
      return `${b.text}/${b.tone}`;
    };
    expect(badge("sent")).toBe("sent/ok");
    expect(badge("failed")).toBe("failed/server");
    expect(badge("not_sent")).toBe("not sent/muted");
    expect(badge("sending")).toBe("sending/client");
    expect(badge("suppressed")).toBe("suppressed/muted");
    expect(badge("suppressed", 17)).toBe("suppressed ×17/muted");
    expect(alertOutcome({ outcome: "suppressed", times: 17 }).title).toMatch(/^17 times within the cooldown/);
    expect(alertOutcome({ outcome: "suppressed", times: 1 }).title).toMatch(/^Once within the cooldown/);
    expect(alertOutcome({ outcome: "not_sent", times: 1 }).title).toMatch(/No webhook/);
  });

  it("reads the list again soon while an alert is being delivered", () => {
    expect(alertsRefreshMs([{ outcome: "sent" }, { outcome: "sending" }], 10_000)).toBe(1_000);
    expect(alertsRefreshMs([{ outcome: "sent" }, { outcome: "suppressed" }], 10_000)).toBe(10_000);
    expect(alertsRefreshMs([], 10_000)).toBe(10_000);
  });
});
