// Pure helpers for the pages: number and time formatting, filters, chart series.
// Everything here is unit-tested (format.test.ts) and touches no DOM.

import type { AccountInfo, AlertEntry, ClientKeyInfo, GroupRow, LimitEntry, LimitSet, LimitSubject, LimitUse, LockoutRule, RequestSummary } from "./api";

const integer = new Intl.NumberFormat("en-US");
const compact = new Intl.NumberFormat("en-US", { notation: "compact", maximumFractionDigits: 1 });

export function formatCount(n: number): string {
  return Math.abs(n) >= 100_000 ? compact.format(n) : integer.format(n);
}

export function formatCost(usd: number | null | undefined): string {
  if (usd === null || usd === undefined) return "–";
  if (usd === 0) return "$0.00";
  if (usd < 0.01) return "<$0.01";
  return `$${usd.toFixed(2)}`;
}

export function formatPercent(fraction: number): string {
  return `${(fraction * 100).toFixed(fraction > 0 && fraction < 0.01 ? 2 : 1)}%`;
}

export function formatMs(ms: number | null | undefined): string {
  if (ms === null || ms === undefined) return "–";
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
}

/** A span of milliseconds: "250 ms", "1.5 s" under a minute, then as `formatDuration` says it. */
export function formatSpan(ms: number): string {
  return ms < 60_000 ? formatMs(ms) : formatDuration(ms / 1000);
}

/** "2026-11-28T14:03:07.123Z" → "2026-11-28 14:03:07" in the viewer's local time. */
export function formatTime(iso: string): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function shortHash(hash: string | null): string {
  return hash ? `${hash.slice(0, 8)}…` : "–";
}

export function totalTokens(t: { input_tokens: number; output_tokens: number }): number {
  return t.input_tokens + t.output_tokens;
}

/** The request list's filters, as the form holds them ("" = any). */
export interface Filter {
  domain: string;
  account_id: string;
  model: string;
  status: string;
  streaming: "" | "true" | "false";
  /** A client key's id (`ck_…` or `file:<domain>`). */
  client_key_id: string;
  since: string;
  until: string;
}

export const emptyFilter: Filter = {
  domain: "",
  account_id: "",
  model: "",
  status: "",
  streaming: "",
  client_key_id: "",
  since: "",
  until: "",
};

/** `datetime-local` text (local time) → RFC 3339 UTC, or "" when empty or invalid. */
export function localToIso(local: string): string {
  if (!local) return "";
  const d = new Date(local);
  return Number.isNaN(d.getTime()) ? "" : d.toISOString();
}

/** The API query string for a filter (and an optional cursor). */
export function filterQuery(f: Filter, extra: Record<string, string> = {}): string {
  const params = new URLSearchParams();
  if (f.domain) params.set("domain", f.domain);
  if (f.account_id) params.set("account_id", f.account_id);
  if (f.model) params.set("model", f.model);
  if (f.status) params.set("status", f.status);
  if (f.streaming) params.set("streaming", f.streaming);
  if (f.client_key_id) params.set("client_key_id", f.client_key_id);
  const since = localToIso(f.since);
  const until = localToIso(f.until);
  if (since) params.set("since", since);
  if (until) params.set("until", until);
  for (const [k, v] of Object.entries(extra)) params.set(k, v);
  return params.toString();
}

/** Whether a live request belongs in the list the filter shows. */
export function matchesFilter(r: RequestSummary, f: Filter): boolean {
  if (f.domain && r.domain !== f.domain) return false;
  if (f.account_id && r.account_id !== f.account_id) return false;
  if (f.model && r.model !== f.model) return false;
  if (f.status && String(r.status) !== f.status.trim()) return false;
  if (f.streaming && String(r.streaming) !== f.streaming) return false;
  if (f.client_key_id && r.client_key_id !== f.client_key_id) return false;
  const at = new Date(r.timestamp).getTime();
  const since = localToIso(f.since);
  const until = localToIso(f.until);
  if (since && at < new Date(since).getTime()) return false;
  if (until && at >= new Date(until).getTime()) return false;
  return true;
}

/** Adds live requests to a list, newest first, without duplicates. */
export function mergeLive(list: RequestSummary[], fresh: RequestSummary[]): RequestSummary[] {
  const seen = new Set(list.map((r) => r.request_id));
  const added = fresh.filter((r) => !seen.has(r.request_id));
  return [...added, ...list].sort((a, b) =>
    a.timestamp === b.timestamp
      ? b.request_id.localeCompare(a.request_id)
      : b.timestamp.localeCompare(a.timestamp),
  );
}

export interface StackedSeries {
  labels: string[];
  datasets: { label: string; data: number[] }[];
}

/**
 * Turns per-(bucket, model) rows into a stacked series: one label per bucket in the window
 * (empty buckets included, so time is evenly spaced) and one dataset per model, of input +
 * output tokens. Buckets are UTC: "YYYY-MM-DD HH" (hour) or "YYYY-MM-DD" (day).
 */
export function stackByModel(
  rows: GroupRow[],
  bucket: "hour" | "day",
  since: Date,
  now: Date,
): StackedSeries {
  const labels: string[] = [];
  const step = bucket === "hour" ? 3_600_000 : 86_400_000;
  const width = bucket === "hour" ? 13 : 10;
  const start = Math.floor(since.getTime() / step) * step;
  for (let t = start; t <= now.getTime(); t += step) {
    labels.push(new Date(t).toISOString().replace("T", " ").slice(0, width));
  }
  const index = new Map(labels.map((l, i) => [l, i]));
  const models = new Map<string, number[]>();
  for (const row of rows) {
    const i = index.get(row.key ?? "");
    if (i === undefined) continue;
    const model = row.key2 ?? "(none)";
    if (!models.has(model)) models.set(model, new Array(labels.length).fill(0));
    models.get(model)![i] += totalTokens(row);
  }
  const datasets = [...models.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([label, data]) => ({ label, data }));
  return { labels, datasets };
}

/** A status code's class for colouring: ok, client (4xx) or server (5xx). */
export function statusClass(status: number): "ok" | "client" | "server" {
  if (status >= 500) return "server";
  if (status >= 400) return "client";
  return "ok";
}

/** Checks ordered worst first (fail, warn, todo, pass), keeping their order otherwise. */
export function worstFirst<T extends { status: string }>(checks: T[]): T[] {
  const rank: Record<string, number> = { fail: 0, warn: 1, todo: 2, pass: 3 };
  return checks
    .map((c, i) => [c, i] as const)
    .sort(([a, i], [b, j]) => (rank[a.status] ?? 9) - (rank[b.status] ?? 9) || i - j)
    .map(([c]) => c);
}

/** Daily rows (one per account/domain and day) as a stacked series: days oldest first,
 * one dataset per account (or domain when there is no account). */
export function pivotDaily(rows: { account_id: string | null; domain: string; day: string; value: number }[]): StackedSeries {
  const labels = [...new Set(rows.map((r) => r.day))].sort();
  const index = new Map(labels.map((l, i) => [l, i]));
  const series = new Map<string, number[]>();
  for (const r of rows) {
    const name = r.account_id ?? r.domain;
    if (!series.has(name)) series.set(name, new Array(labels.length).fill(0));
    series.get(name)![index.get(r.day)!] += r.value;
  }
  const datasets = [...series.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([label, data]) => ({ label, data }));
  return { labels, datasets };
}

/** The Claude Code snippet for a new key: the proxy's address and the key, ready to paste.
 * A passthrough account's key goes in `x-nexus-key`, and Claude Code keeps its own login. */
export function claudeCodeSnippet(baseUrl: string, key: string, passthrough = false): string {
  if (passthrough) {
    return `export ANTHROPIC_BASE_URL=${baseUrl}\nexport ANTHROPIC_CUSTOM_HEADERS="x-nexus-key: ${key}"\nunset ANTHROPIC_API_KEY ANTHROPIC_AUTH_TOKEN`;
  }
  return `export ANTHROPIC_BASE_URL=${baseUrl}\nexport ANTHROPIC_API_KEY=${key}`;
}

/** The smallest passthrough account: its credential file's name (the domain) and text. */
export const passthroughFile = {
  name: "me.credentials.json",
  text: '{"type": "passthrough", "accountId": "me"}',
};

/** "in 3 h", "in 12 min", "5 d ago": a time relative to `now`, coarse. */
export function formatRelative(iso: string | null, now: Date = new Date()): string {
  if (!iso) return "–";
  const at = new Date(iso).getTime();
  if (Number.isNaN(at)) return iso;
  const diff = at - now.getTime();
  const abs = Math.abs(diff) / 1000;
  const span =
    abs < 60 ? `${Math.round(abs)} s` : abs < 3600 ? `${Math.round(abs / 60)} min` : abs < 172_800 ? `${Math.round(abs / 3600)} h` : `${Math.round(abs / 86_400)} d`;
  return diff >= 0 ? `in ${span}` : `${span} ago`;
}

/** The words for an account's state: its OAuth status, or how it is set up. */
export function accountStatus(a: AccountInfo): { text: string; tone: "ok" | "client" | "server" } {
  if (!a.oauth) return { text: a.type === "passthrough" ? "Passthrough" : "Ready", tone: "ok" };
  switch (a.oauth.status) {
    case "needs_login":
      return { text: "Needs login", tone: "server" };
    case "expired":
      return { text: "Expired", tone: "server" };
    case "backing_off":
      return { text: "Refresh failing", tone: "client" };
    case "expiring":
      return { text: "Expiring", tone: "client" };
    default:
      return { text: "OK", tone: "ok" };
  }
}

/** A plan gauge's fill, 0–100, and its tone (warn from 75 %, full at 95 %). */
export function gauge(usedPercent: number): { width: number; tone: "ok" | "client" | "server" } {
  const width = Math.max(0, Math.min(100, usedPercent));
  return { width, tone: width >= 95 ? "server" : width >= 75 ? "client" : "ok" };
}

/** Replaces or adds an account (by domain), keeping the list sorted by domain. */
export function upsertAccount(list: AccountInfo[], fresh: AccountInfo): AccountInfo[] {
  return [...list.filter((a) => a.domain !== fresh.domain), fresh].sort((a, b) => a.domain.localeCompare(b.domain));
}

/** A row of the Client keys table: a key of the database, or a credential file's own key. */
export type KeyRow = ({ source: "database" } & ClientKeyInfo) | { source: "file"; id: string; prefix: string; account: string };

/** The database's keys as listed (newest first), then the credential files' own keys by domain. */
export function keyRows(keys: ClientKeyInfo[], accounts: AccountInfo[]): KeyRow[] {
  const fromFiles = accounts
    .flatMap((a) => (a.file_client_key ? [{ source: "file" as const, ...a.file_client_key, account: a.domain }] : []))
    .sort((a, b) => a.account.localeCompare(b.account));
  return [...keys.map((k) => ({ source: "database" as const, ...k })), ...fromFiles];
}

/** How a key is offered in the filters: its name (or id) and prefix, a file's key by its
 * domain, a key no longer in use marked so. */
export function keyLabel(k: KeyRow): string {
  if (k.source === "file") return `${k.account} file key · ${k.prefix}`;
  return `${k.name ?? k.id} · ${k.prefix}${k.status === "active" ? "" : ` (${k.status})`}`;
}

/** "45 s", "5 min", "14 min 32 s", "1 h 30 min", "2 d 3 h": a span of seconds, two units at most. */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const two = (big: number, bigUnit: string, small: number, smallUnit: string) =>
    small ? `${big} ${bigUnit} ${small} ${smallUnit}` : `${big} ${bigUnit}`;
  if (s < 60) return `${s} s`;
  if (s < 3600) return two(Math.floor(s / 60), "min", s % 60, "s");
  if (s < 86_400) return two(Math.floor(s / 3600), "h", Math.floor((s % 3600) / 60), "min");
  return two(Math.floor(s / 86_400), "d", Math.floor((s % 86_400) / 3600), "h");
}

const usd = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD", minimumFractionDigits: 2, maximumFractionDigits: 4 });
const usdCents = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD" });

/** Dollars spent: "$0.00", "<$0.01", "$1,234.50". */
export function formatSpent(dollars: number): string {
  if (dollars === 0) return "$0.00";
  if (dollars > 0 && dollars < 0.01) return "<$0.01";
  return usdCents.format(dollars);
}

/** A dollar limit as set: "$5.00", "$1,000.00", "$0.005" (never rounded to a different limit). */
export function formatBudget(dollars: number): string {
  return usd.format(dollars);
}

/** One limit: its field, the use that counts against it, and the words for both. */
export interface LimitKind {
  field: keyof LimitSet;
  used: keyof LimitUse;
  /** The editor's label: "Requests per minute". */
  label: string;
  /** What the use is, after the numbers: "3 / 5 requests per minute", "$1.20 / $5.00 today". */
  window: string;
  dollars: boolean;
}

/** The limits in the order the page shows them (the API's fields, one window each, UTC). */
export const LIMIT_KINDS: readonly LimitKind[] = [
  { field: "requests_per_minute", used: "requests_last_minute", label: "Requests per minute", window: "requests per minute", dollars: false },
  { field: "tokens_per_hour", used: "tokens_this_hour", label: "Tokens per hour", window: "tokens this hour", dollars: false },
  { field: "tokens_per_day", used: "tokens_today", label: "Tokens per day", window: "tokens today", dollars: false },
  { field: "usd_per_day", used: "usd_today", label: "Dollars per day", window: "today", dollars: true },
  { field: "usd_per_month", used: "usd_this_month", label: "Dollars per month", window: "this month", dollars: true },
];

export interface LimitGauge {
  kind: LimitKind;
  /** "3 / 5 requests per minute", "<$0.01 / $5.00 today". */
  text: string;
  /** Use as a percentage of the limit (may pass 100: the request that crossed it completes). */
  percent: number;
}

/** A gauge for each limit that is set, in `LIMIT_KINDS` order; none when nothing is set. */
export function limitGauges(limits: LimitSet, used: LimitUse): LimitGauge[] {
  return LIMIT_KINDS.flatMap((kind) => {
    const limit = limits[kind.field];
    if (limit === null || limit === undefined) return [];
    const use = used[kind.used];
    const text = kind.dollars
      ? `${formatSpent(use)} / ${formatBudget(limit)} ${kind.window}`
      : `${formatCount(use)} / ${formatCount(limit)} ${kind.window}`;
    return [{ kind, text, percent: limit > 0 ? (use / limit) * 100 : 100 }];
  });
}

/** The limits editor's fields, as typed ("" = no limit). */
export type LimitForm = Record<keyof LimitSet, string>;

/** The editor's fields for limits as set. */
export function limitForm(limits: LimitSet | null): LimitForm {
  const form = {} as LimitForm;
  for (const kind of LIMIT_KINDS) {
    const value = limits?.[kind.field];
    form[kind.field] = value === null || value === undefined ? "" : String(value);
  }
  return form;
}

/**
 * The limits to send for what the editor holds: an empty field is no limit; counts are whole
 * numbers (thousands separators allowed), dollars any number ("$" allowed). Whether a number
 * is in range (above 0) is the server's to say; this only refuses what is not a number.
 */
export function parseLimitForm(form: LimitForm): { limits: LimitSet } | { error: string } {
  const limits: LimitSet = {};
  for (const kind of LIMIT_KINDS) {
    const text = form[kind.field].trim().replace(/[,_\s]/g, "");
    if (!text) continue;
    if (kind.dollars) {
      const value = Number(text.replace(/^\$/, ""));
      if (!/^-?\$?(\d+\.?\d*|\.\d+)$/.test(text) || !Number.isFinite(value)) {
        return { error: `${kind.label}: an amount of dollars such as 5 or 2.50, or empty for no limit` };
      }
      limits[kind.field] = value;
    } else {
      if (!/^-?\d+$/.test(text)) return { error: `${kind.label}: a whole number, or empty for no limit` };
      limits[kind.field] = Number(text);
    }
  }
  return { limits };
}

/** The server's refusal of limits, with its field names as the editor labels them
 * ("requests_per_minute must be …" → "Requests per minute must be …"). */
export function limitError(message: string): string {
  return LIMIT_KINDS.reduce((text, kind) => text.replaceAll(kind.field, kind.label), message);
}

/** A row of the Limits card: an account or a key, and its limits when it has any. */
export interface LimitRow {
  subject: LimitSubject;
  /** The account's domain; the key's name (its prefix when it has none). */
  name: string;
  /** What it is: "account", "key cnp_live_Ab12… of a.example", … */
  detail: string;
  entry: LimitEntry | null;
}

/**
 * Accounts (by domain), then keys as the Client keys table lists them (revoked ones left out
 * unless they still have limits), then any other subject that has limits (a key or account
 * that is gone), so that every limit set can be seen and removed.
 */
export function limitRows(accounts: AccountInfo[], keys: ClientKeyInfo[], entries: LimitEntry[]): LimitRow[] {
  const byId = new Map(entries.map((e) => [`${e.subject.kind}:${e.subject.id}`, e]));
  const take = (subject: LimitSubject) => {
    const id = `${subject.kind}:${subject.id}`;
    const entry = byId.get(id) ?? null;
    byId.delete(id);
    return entry;
  };
  const rows: LimitRow[] = [...accounts]
    .sort((a, b) => a.domain.localeCompare(b.domain))
    .map((a) => {
      const subject = { kind: "account" as const, id: a.domain };
      return { subject, name: a.domain, detail: "account", entry: take(subject) };
    });
  for (const k of keyRows(keys, accounts)) {
    const subject = { kind: "key" as const, id: k.id };
    const entry = take(subject);
    if (k.source === "database" && k.status === "revoked" && !entry) continue;
    rows.push(
      k.source === "file"
        ? { subject, name: k.prefix, detail: `key in ${k.account}'s credential file`, entry }
        : {
            subject,
            name: k.name ?? k.prefix,
            detail: `key ${k.prefix} of ${k.account}${k.status === "active" ? "" : ` (${k.status})`}`,
            entry,
          },
    );
  }
  for (const entry of byId.values()) {
    rows.push({
      subject: entry.subject,
      name: entry.subject.id,
      detail: entry.subject.kind === "account" ? "account not loaded" : "key not found",
      entry,
    });
  }
  return rows;
}

/** The brute-force rule in words. */
export function lockoutRuleText(rule: LockoutRule): string {
  if (rule.max_keys === 0) return "Off: wrong client keys never lock an address out (AUTH_LOCKOUT_KEYS is 0).";
  const keys = rule.max_keys === 1 ? "1 distinct wrong client key" : `${rule.max_keys} distinct wrong client keys`;
  return `On: more than ${keys} from one address within ${formatDuration(rule.window_secs)} lock it out for ${formatDuration(rule.duration_secs)}.`;
}

/** The server's durations in words as the rest of the page writes them: "within 10m" →
 * "within 10 min", "within 1h 30m" → "within 1 h 30 min", "within 7days" → "within 7 days"
 * (the alert rules and texts use the short form, always after "within"). */
export function spellDurations(text: string): string {
  const unit: Record<string, string> = { ms: "ms", s: "s", m: "min", h: "h" };
  const part = "\\d+(?:ms|s|m|h|days?|months?|years?)";
  return text.replace(new RegExp(`\\bwithin (${part}(?: ${part})*)\\b`, "g"), (_, span: string) =>
    `within ${span.replace(/(\d+)([a-z]+)/g, (_m: string, n: string, u: string) => `${n} ${unit[u] ?? u}`)}`,
  );
}

/** Each alert rule's name, as its alerts are titled. */
const ALERT_RULES: Record<string, string> = {
  auth_failures: "Failed authentications",
  token_spike: "Token use",
  oauth: "Subscription login",
  upstream_errors: "Upstream errors",
  plan_window: "Plan usage",
  key_expiry: "Client key expiring",
};

/** An alert rule as a line of the page: its name, and what sets it off ("Off" when it is off). */
export function alertRuleLine(rule: { kind: string; rule: string }): { name: string; text: string; off: boolean } {
  const name = ALERT_RULES[rule.kind] ?? rule.kind;
  if (rule.rule === "off") return { name, text: "Off", off: true };
  const text = spellDurations(rule.rule);
  return { name, text: `when ${text}`, off: false };
}

/** The cooldown in words. */
export function cooldownText(seconds: number): string {
  if (seconds <= 0) return "No cooldown (ALERT_COOLDOWN is 0): an alert goes out every time its rule is crossed.";
  return `Each alert goes out at most once per ${formatDuration(seconds)} per subject (a domain, an account, a key); the next one says how many were suppressed in between.`;
}

/** An alert's outcome as a small badge: its words, its colour, and what it means. */
export function alertOutcome(alert: Pick<AlertEntry, "outcome" | "times">): { text: string; tone: "ok" | "client" | "server" | "muted"; title: string } {
  switch (alert.outcome) {
    case "sent":
      return { text: "sent", tone: "ok", title: "Delivered to every webhook set for it." };
    case "failed":
      return { text: "failed", tone: "server", title: "A webhook refused it or could not be reached, after retries (the log says why)." };
    case "not_sent":
      return { text: "not sent", tone: "muted", title: "No webhook is set for it: logged and listed here only." };
    case "sending":
      return { text: "sending", tone: "client", title: "Being delivered (failed attempts are retried after 1, 5 and 30 s)." };
    case "suppressed": {
      const times = Math.max(1, alert.times);
      return {
        text: times > 1 ? `suppressed ×${times}` : "suppressed",
        tone: "muted",
        title: `${times === 1 ? "Once" : `${times} times`} within the cooldown since the last one that went out: not sent again.`,
      };
    }
    default:
      return { text: String(alert.outcome), tone: "muted", title: "" };
  }
}

/** How long to wait before reading the alerts again: soon while one is still being delivered. */
export function alertsRefreshMs(recent: Pick<AlertEntry, "outcome">[], idleMs: number): number {
  return recent.some((a) => a.outcome === "sending") ? 1_000 : idleMs;
}
