// The desktop app's bridge. The tray app's window loads this same UI from the local server
// with `withGlobalTauri`, so there `window.__TAURI__` exists and `desktop` wraps its commands
// (implemented in src-tauri); in a browser `desktop` is null and the desktop-only parts hide.
// The helpers below it touch no DOM and are unit-tested (desktop.test.ts).

/** One toggle per alert of the core (same rules and cooldowns as Slack, `ALERT_*`), then the app's own. */
export interface NotificationSettings {
  auth_failures: boolean;
  token_spike: boolean;
  oauth: boolean;
  upstream_errors: boolean;
  plan_window: boolean;
  key_expiry: boolean;
  spooling: boolean;
  port_taken: boolean;
}

export interface DesktopSettings {
  port: number;
  start_minimised: boolean;
  start_at_login: boolean;
  usage_polling: boolean;
  /** null: SQLite in the data directory. */
  database_url: string | null;
  notifications: NotificationSettings;
}

export interface DesktopInfo {
  proxy_url: string;
  claude_code: { connected: boolean; settings_path: string };
  settings: DesktopSettings;
  log_dir: string;
  /** Where the proxy reads credential files (`<domain>.credentials.json`). */
  credentials_dir: string;
  /** Environment variables that fix a setting (e.g. "PORT"): shown read-only. */
  env_overrides: string[];
}

type Invoke = (cmd: string, args?: Record<string, unknown>) => Promise<unknown>;

/** Tauri commands reject with the Rust side's message, a plain string: made an Error here. */
export function commandError(e: unknown): Error {
  if (e instanceof Error) return e;
  if (typeof e === "string") return new Error(e);
  const text = (e as { message?: unknown } | null)?.message;
  return new Error(typeof text === "string" ? text : JSON.stringify(e));
}

/** Typed wrappers around `invoke` (argument keys in camelCase: Tauri maps them to snake_case). */
export function desktopBridge(invoke: Invoke) {
  const call = async <T>(cmd: string, args?: Record<string, unknown>): Promise<T> => {
    try {
      return (await invoke(cmd, args)) as T;
    } catch (e) {
      throw commandError(e);
    }
  };
  return {
    info: () => call<DesktopInfo>("desktop_info"),
    /** Rejects with the reason when the settings are invalid (e.g. a database that does not connect). */
    saveSettings: (settings: DesktopSettings) => call<{ message: string }>("save_settings", { settings }),
    /** "PostgreSQL 15 at …", or rejects with why not. */
    testDatabase: (url: string) => call<string>("test_database", { url }),
    /** The Rust side asks for confirmation in a native dialog first. */
    connectClaudeCode: () => call<string>("connect_claude_code"),
    disconnectClaudeCode: () => call<string>("disconnect_claude_code"),
    openLogsFolder: () => call<null>("open_logs_folder"),
    /** Opens `url` in the system browser. */
    openUrl: (url: string) => call<null>("open_url", { url }),
  };
}

export type Desktop = ReturnType<typeof desktopBridge>;

const tauri = typeof window === "undefined" ? undefined : (window as any).__TAURI__;

export const desktop: Desktop | null = tauri?.core?.invoke
  ? desktopBridge((cmd, args) => tauri.core.invoke(cmd, args))
  : null;

/** Whether a link leaves the dashboard (another site, or mail): in the desktop it opens in
 * the system browser instead of a new webview window. */
export function leavesDashboard(href: string, origin: string): boolean {
  let url: URL;
  try {
    url = new URL(href, origin);
  } catch {
    return false;
  }
  if (url.protocol === "mailto:") return true;
  return (url.protocol === "http:" || url.protocol === "https:") && url.origin !== origin;
}

/** In the desktop, sends every click on a link that leaves the dashboard to the system browser. */
export function openExternalLinksWith(d: Desktop) {
  document.addEventListener("click", (e) => {
    if (e.defaultPrevented || e.button !== 0) return;
    const link = (e.target as Element | null)?.closest?.("a[href]") as HTMLAnchorElement | null;
    if (!link || link.hasAttribute("download") || !leavesDashboard(link.href, location.origin)) return;
    e.preventDefault();
    d.openUrl(link.href).catch((err) => console.warn(`open ${link.href}: ${commandError(err).message}`));
  });
}

/** The environment variables that can fix a setting, besides its own name in capitals. */
const ENV_NAMES: Partial<Record<keyof DesktopSettings, string[]>> = {
  port: ["PORT"],
  database_url: ["DATABASE_URL"],
  usage_polling: ["CLAUDE_OAUTH_USAGE_INTERVAL"],
};

function namesFor(field: keyof DesktopSettings): string[] {
  return [...(ENV_NAMES[field] ?? []), field.toUpperCase()];
}

/** The environment variable that fixes `field`, or null when the setting is the user's. */
export function fixedBy(field: keyof DesktopSettings, overrides: string[]): string | null {
  const names = namesFor(field);
  return overrides.find((o) => names.includes(o.trim().toUpperCase())) ?? null;
}

/** Overrides that match no field on the page, to mention all the same. */
export function otherOverrides(overrides: string[], fields: (keyof DesktopSettings)[]): string[] {
  return overrides.filter((o) => !fields.some((f) => fixedBy(f, [o])));
}

/** What is wrong with settings before they are sent, or null. */
export function settingsProblem(s: DesktopSettings): string | null {
  if (!Number.isInteger(s.port) || s.port < 1 || s.port > 65535) return "The port must be a whole number from 1 to 65535.";
  if (s.database_url !== null) {
    const url = s.database_url.trim();
    if (!url) return "Enter the PostgreSQL URL, or choose SQLite.";
    // (A sqlite: URL set up before stays acceptable.)
    if (!/^(postgres(ql)?:\/\/|sqlite:)/i.test(url)) return "A PostgreSQL URL starts with postgres:// or postgresql://.";
  }
  return null;
}
