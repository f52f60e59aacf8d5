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
  error: string | null;
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
      message = ((await response.json()) as { error?: string }).error ?? message;
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
  request: (id: string) => call<RequestDetail>("GET", `/api/requests/${encodeURIComponent(id)}`),
};
