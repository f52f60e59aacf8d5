import { describe, expect, it } from "vitest";
import type { AccountInfo, ClientKeyInfo, GroupRow, RequestSummary } from "./api";
import {
  accountStatus,
  claudeCodeSnippet,
  passthroughFile,
  formatRelative,
  gauge,
  keyRows,
  upsertAccount,
  emptyFilter,
  filterQuery,
  formatCost,
  formatCount,
  formatMs,
  localToIso,
  matchesFilter,
  mergeLive,
  stackByModel,
  statusClass,
  worstFirst,
  pivotDaily,
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
    expect(statusClass(200)).toBe("ok");
    expect(statusClass(429)).toBe("client");
    expect(statusClass(502)).toBe("server");
  });
});

describe("filters", () => {
  it("builds the API query from the set fields only", () => {
    expect(filterQuery(emptyFilter)).toBe("");
    const q = new URLSearchParams(
      filterQuery({ ...emptyFilter, model: "claude-x", status: "429", streaming: "true" }, { limit: "50" }),
    );
    expect(Object.fromEntries(q)).toEqual({ model: "claude-x", status: "429", streaming: "true", limit: "50" });
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
    expect(matchesFilter(r, { ...emptyFilter, model: "claude-sonnet-4-5" })).toBe(true);
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
  });
});
