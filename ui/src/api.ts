// The dashboard API, as the server documents it at /api/openapi.json. Every call is
// same-origin: the session cookie goes along by itself and the server checks the Origin.

export interface Tokens {
  input_tokens: number;
  output_tokens: number;
  cache_creation_input_tokens: number;
  cache_read_input_tokens: number;
}

export interface RequestSummary extends Tokens {
  request_id: string;
  timestamp: string;
  domain: string;
  account_id: string | null;
  method: string;
  path: string;
  model: string | null;
  status: number;
  duration_ms: number | null;
  first_token_ms: number | null;
  streaming: boolean;
  api_key_hash: string | null;
  /** The client key's id: `ck_…`, or `file:<domain>` for a credential file's own key. */
  client_key_id?: string | null;
  error: string | null;
  /** Where the request sits in a conversation; absent (or null) when it is not linked to one.
   * The fields mean what they mean in a `ConversationNode`. */
  conversation_id?: string | null;
  branch_id?: string | null;
  parent_request_id?: string | null;
  is_subtask?: boolean | null;
  parent_task_request_id?: string | null;
  message_count?: number | null;
}

export interface RequestDetail extends RequestSummary {
  request_type: string | null;
  client_ip: string | null;
  upstream_request_id: string | null;
  request_body: string | null;
  response_body: string | null;
  events: { timestamp: string; data: string }[];
}

export interface RequestPage {
  items: RequestSummary[];
  next_cursor: string | null;
}

/** A conversation (a Claude Code session): its requests, linked by their messages, in totals. */
export interface ConversationSummary extends Tokens {
  conversation_id: string;
  /** The first user message, masked and cut short by the server; null when it has none. */
  title: string | null;
  domain: string;
  account_id: string | null;
  first_at: string;
  last_at: string;
  requests: number;
  failed: number;
  cost_usd: number | null;
  duration_ms: number;
  branches: number;
  subtasks: number;
  compactions: number;
  models: string[];
}

export interface ConversationPage {
  items: ConversationSummary[];
  next_cursor: string | null;
}

export type ConversationSort = "last_activity" | "tokens";

/** One request of a conversation, as the tree lists it. */
export interface ConversationNode
  extends Tokens, Pick<RequestSummary, "request_id" | "timestamp" | "model" | "status" | "error" | "duration_ms"> {
  /** The request whose answer this one continues: in another branch where a branch forks. */
  parent_request_id: string | null;
  branch_id: string;
  is_subtask: boolean;
  /** For a sub-task's requests: the request whose `Task` tool call started the sub-task. */
  parent_task_request_id: string | null;
  message_count: number | null;
  cost_usd: number | null;
}

/** `main`; `branch`: the user went back and edited; `compact`: the context was summarised and
 * continued (`compact_<HHMMSS>`); `subtask`: a `Task` tool call's own conversation (`subtask_<n>`). */
export type BranchKind = "main" | "branch" | "compact" | "subtask";

export interface ConversationBranch {
  branch_id: string;
  kind: BranchKind;
  requests: number;
  first_request_id: string;
  last_request_id: string;
  /** The first node's `parent_request_id` (a sub-task's: its `parent_task_request_id`). */
  forked_from: string | null;
}

export interface ConversationTree {
  conversation: ConversationSummary;
  /** In time order. */
  nodes: ConversationNode[];
  branches: ConversationBranch[];
}

export interface GroupRow extends Tokens {
  key: string | null;
  key2: string | null;
  requests: number;
  errors: number;
  cost_usd: number | null;
}

export type Window = "24h" | "7d" | "30d";

export interface Overview extends Tokens {
  since: string;
  requests: number;
  errors: number;
  error_rate: number;
  cost_usd: number;
  bucket: "hour" | "day";
  series: GroupRow[];
  by_model: GroupRow[];
  by_status: GroupRow[];
  by_account: GroupRow[];
  by_client_key: GroupRow[];
}

export interface SecurityCheck {
  id: string;
  title: string;
  status: "pass" | "warn" | "fail" | "todo";
  detail: string;
  fix: string | null;
  manual: boolean;
  done_on: string | null;
}

export interface DailyRow {
  account_id: string | null;
  domain: string;
  day: string;
  value: number;
}

export interface Monitoring {
  since: string;
  failed_auth: DailyRow[];
  daily_tokens: DailyRow[];
}

export interface PlanWindow {
  used_percent: number;
  resets_at: string | null;
}

export interface AccountInfo {
  domain: string;
  account_id: string | null;
  type: "api_key" | "oauth" | "passthrough";
  secret: "keychain" | "inline" | "none";
  oauth: {
    status: "ok" | "expiring" | "expired" | "backing_off" | "needs_login";
    expires_at: string | null;
    is_max: boolean;
    last_refresh_at: string | null;
    last_refresh_error: string | null;
  } | null;
  windows: { five_hour: PlanWindow | null; seven_day: PlanWindow | null; source: string } | null;
  /** The credential file's own client_api_key, by its prefix only (not in /api/keys). */
  file_client_key: { id: string; prefix: string } | null;
}

export interface ClientKeyInfo {
  id: string;
  name: string | null;
  prefix: string;
  account: string;
  created_at: string;
  expires_at: string | null;
  revoked_at: string | null;
  last_used_at: string | null;
  rotated_from: string | null;
  status: "active" | "expired" | "revoked";
}

export interface CreatedClientKey extends ClientKeyInfo {
  key: string;
  base_url: string | null;
}

/** A finished OAuth login: the client key it wrote into a new credential file, shown once. */
export interface OAuthFinished {
  domain: string;
  file: string;
  client_key: string | null;
  base_url: string | null;
}

/** A key's or an account's limits; a missing (or null) limit is no limit. */
export interface LimitSet {
  requests_per_minute?: number | null;
  tokens_per_hour?: number | null;
  tokens_per_day?: number | null;
  usd_per_day?: number | null;
  usd_per_month?: number | null;
}

/** What a key or an account has used of its current windows (UTC hour, day and month). */
export interface LimitUse {
  requests_last_minute: number;
  tokens_this_hour: number;
  tokens_today: number;
  usd_today: number;
  usd_this_month: number;
}

/** A key (its id: `ck_…`, or `file:<domain>` for a credential file's key) or an account (its domain). */
export interface LimitSubject {
  kind: "key" | "account";
  id: string;
}

export interface LimitEntry {
  subject: LimitSubject;
  limits: LimitSet;
  used: LimitUse;
}

/** The brute-force rule: more than `max_keys` distinct wrong client keys from one address
 * within `window_secs` lock it out for `duration_secs` (`max_keys` 0: off). */
export interface LockoutRule {
  max_keys: number;
  window_secs: number;
  duration_secs: number;
}

export interface Lockouts {
  rule: LockoutRule;
  locked: { address: string; remaining_secs: number; until: string }[];
}

/** One alert, newest first in `AlertsReport.recent`. */
export interface AlertEntry {
  /** ISO-8601 UTC; for a suppressed entry, the latest suppression. */
  at: string;
  /** `auth_failures`, `token_spike`, `oauth`, `upstream_errors`, `plan_window`, `key_expiry`. */
  kind: string;
  title: string;
  /** What it is about: a domain, an account, a key id, `upstream`. */
  subject: string;
  text: string;
  /** `not_sent`: no webhook receives it; `suppressed`: within the cooldown, not sent. */
  outcome: "sending" | "sent" | "failed" | "not_sent" | "suppressed";
  /** For `suppressed`: how many times since the last one that went out. */
  times: number;
}

/** The alert rules in words (`rule` is "off" for a rule turned off), where alerts go, the last alerts. */
export interface AlertsReport {
  rules: { kind: string; rule: string }[];
  cooldown_secs: number;
  /** `global`: SLACK_WEBHOOK_URL is set; `domains`: credential files with a `slack` block. */
  webhooks: { global: boolean; domains: string[] };
  recent: AlertEntry[];
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  const response = await fetch(path, {
    method,
    credentials: "same-origin",
    headers: body === undefined ? {} : { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) {
    let message = response.statusText;
    try {
      const error = ((await response.json()) as { error?: string }).error;
      message = error ?? message;
    } catch {
      // not JSON: keep the status text
    }
    throw new ApiError(response.status, message);
  }
  if (response.status === 204) return undefined as T;
  return (await response.json()) as T;
}

export const api = {
  session: () => call<{ authenticated: boolean; version: string }>("GET", "/api/session"),
  login: (key: string) => call<void>("POST", "/api/login", { key }),
  logout: () => call<void>("POST", "/api/logout"),
  overview: (window: Window) => call<Overview>("GET", `/api/overview?window=${window}`),
  requests: (query: string) => call<RequestPage>("GET", `/api/requests?${query}`),
  monitoring: (days: number) => call<Monitoring>("GET", `/api/monitoring?days=${days}`),
  security: () => call<{ checks: SecurityCheck[] }>("GET", "/api/security"),
  markManual: (id: string, done: boolean) =>
    call<void>("PUT", `/api/security/manual/${encodeURIComponent(id)}`, { done }),
  accounts: () => call<{ accounts: AccountInfo[] }>("GET", "/api/accounts"),
  addAccount: (body: { domain: string; api_key: string; account_id?: string }) =>
    call<AccountInfo>("POST", "/api/accounts", body),
  oauthStart: (domain: string) =>
    call<{ login_id: string; authorize_url: string }>("POST", "/api/oauth/start", { domain }),
  oauthFinish: (login_id: string, code: string) => call<OAuthFinished>("POST", "/api/oauth/finish", { login_id, code }),
  keys: () => call<{ base_url: string | null; keys: ClientKeyInfo[] }>("GET", "/api/keys"),
  createKey: (body: { name: string; account?: string; expires_days?: number }) =>
    call<CreatedClientKey>("POST", "/api/keys", body),
  rotateKey: (id: string) => call<CreatedClientKey>("POST", `/api/keys/${encodeURIComponent(id)}/rotate`),
  revokeKey: (id: string) => call<void>("POST", `/api/keys/${encodeURIComponent(id)}/revoke`),
  limits: () => call<{ limits: LimitEntry[] }>("GET", "/api/limits"),
  setLimits: (subject: LimitSubject, limits: LimitSet) =>
    call<LimitEntry>("PUT", `/api/limits/${subject.kind}/${encodeURIComponent(subject.id)}`, limits),
  removeLimits: (subject: LimitSubject) => call<void>("DELETE", `/api/limits/${subject.kind}/${encodeURIComponent(subject.id)}`),
  lockouts: () => call<Lockouts>("GET", "/api/security/lockouts"),
  liftLockout: (address: string) => call<void>("DELETE", `/api/security/lockouts/${encodeURIComponent(address)}`),
  alerts: () => call<AlertsReport>("GET", "/api/security/alerts"),
  request: (id: string) => call<RequestDetail>("GET", `/api/requests/${encodeURIComponent(id)}`),
  conversations: (query: string) => call<ConversationPage>("GET", `/api/conversations?${query}`),
  conversation: (id: string) => call<ConversationTree>("GET", `/api/conversations/${encodeURIComponent(id)}`),
};
