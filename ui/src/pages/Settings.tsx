import { useEffect, useState } from "preact/hooks";
import { OutcomeLine, type Outcome } from "../outcome";
import {
  type Desktop,
  type DesktopInfo,
  type DesktopSettings,
  type NotificationSettings,
  fixedBy,
  otherOverrides,
  settingsProblem,
} from "../desktop";

const NOTIFICATIONS: { key: keyof NotificationSettings; label: string }[] = [
  { key: "oauth", label: "A subscription account needs login or fails to refresh" },
  { key: "plan_window", label: "A plan window is nearly used up" },
  { key: "auth_failures", label: "A burst of failed authentications" },
  { key: "token_spike", label: "An account uses unusually many tokens" },
  { key: "upstream_errors", label: "Many upstream errors" },
  { key: "key_expiry", label: "A client key expires soon" },
  { key: "spooling", label: "The database is unavailable (records kept on disk)" },
  { key: "port_taken", label: "The proxy port is taken" },
];

/** The fields this page shows, for naming the environment overrides it does not. */
const FIELDS: (keyof DesktopSettings)[] = ["port", "start_at_login", "start_minimised", "usage_polling", "database_url", "notifications"];


/** The desktop app's settings (shown only in the app). */
export function SettingsPage(props: { desktop: Desktop }) {
  const [info, setInfo] = useState<DesktopInfo | null>(null);
  const [draft, setDraft] = useState<DesktopSettings | null>(null);
  const [port, setPort] = useState("");
  const [database, setDatabase] = useState<"sqlite" | "url">("sqlite");
  const [url, setUrl] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState("");
  const [tested, setTested] = useState<Outcome | null>(null);
  const [saved, setSaved] = useState<Outcome | null>(null);

  const load = () =>
    props.desktop
      .info()
      .then((i) => {
        setInfo(i);
        setDraft(i.settings);
        setPort(String(i.settings.port));
        setDatabase(i.settings.database_url === null ? "sqlite" : "url");
        setUrl(i.settings.database_url ?? "");
      })
      .catch((e: Error) => setError(e.message));
  useEffect(() => {
    void load();
  }, []);

  if (!info || !draft) return error ? <p class="error" role="alert">{error}</p> : <p class="loading">Loading…</p>;

  const fixed = (field: keyof DesktopSettings) => fixedBy(field, info.env_overrides);
  const others = otherOverrides(info.env_overrides, FIELDS);
  const set = (change: Partial<DesktopSettings>) => setDraft({ ...draft, ...change });
  const notify = (key: keyof NotificationSettings, on: boolean) => set({ notifications: { ...draft.notifications, [key]: on } });

  const test = async () => {
    setBusy(true);
    setTested(null);
    try {
      setTested({ ok: true, text: await props.desktop.testDatabase(url.trim()) });
    } catch (e) {
      setTested({ ok: false, text: (e as Error).message });
    } finally {
      setBusy(false);
    }
  };

  const save = async (e: Event) => {
    e.preventDefault();
    setSaved(null);
    const settings: DesktopSettings = {
      ...draft,
      port: port.trim() === "" ? Number.NaN : Number(port),
      database_url: database === "sqlite" ? null : url.trim(),
    };
    const problem = settingsProblem(settings);
    if (problem) {
      setSaved({ ok: false, text: problem });
      return;
    }
    setBusy(true);
    try {
      const result = await props.desktop.saveSettings(settings);
      setSaved({ ok: true, text: result.message });
      await load();
    } catch (err) {
      setSaved({ ok: false, text: (err as Error).message });
    } finally {
      setBusy(false);
    }
  };

  return (
    <div class="settings">
      <form aria-label="Settings" onSubmit={save}>
        <div class="settings-grid">
          <section class="card" aria-labelledby="app-title">
            <h2 id="app-title">The app</h2>
            <div class="stack">
              <label>
                Proxy port
                <input
                  value={port}
                  onInput={(e) => setPort((e.target as HTMLInputElement).value)}
                  class="short"
                  inputMode="numeric"
                  size={6}
                  disabled={!!fixed("port")}
                  aria-describedby="port-note"
                />
              </label>
              <span id="port-note" class="muted small">
                {fixed("port") ? `Set by the environment variable ${fixed("port")}.` : "Clients use it in ANTHROPIC_BASE_URL; a change takes effect after a restart."}
              </span>
              <Toggle label="Start at login" checked={draft.start_at_login} onChange={(v) => set({ start_at_login: v })} fixedBy={fixed("start_at_login")} />
              <Toggle label="Start minimised (in the tray)" checked={draft.start_minimised} onChange={(v) => set({ start_minimised: v })} fixedBy={fixed("start_minimised")} />
            </div>
          </section>
          <section class="card" aria-labelledby="notifications-title">
            <h2 id="notifications-title">Notifications</h2>
            <div class="stack" role="group" aria-labelledby="notifications-title">
              {NOTIFICATIONS.map((n) => (
                <Toggle label={n.label} checked={draft.notifications[n.key]} onChange={(v) => notify(n.key, v)} fixedBy={fixed("notifications")} />
              ))}
            </div>
            <p class="muted small">
              The first six are the proxy's alerts, with the same rules and cooldowns as Slack alerts (set with the ALERT_* variables, listed
              on the Security page).
            </p>
          </section>
          <section class="card" aria-labelledby="usage-title">
            <h2 id="usage-title">Plan usage</h2>
            <div class="stack">
              <Toggle label="Poll plan usage" checked={draft.usage_polling} onChange={(v) => set({ usage_polling: v })} fixedBy={fixed("usage_polling")} />
              <p class="muted small">
                Off by default. The 5-hour and 7-day windows come from the response headers of your own requests either way; polling
                asks Anthropic's /api/oauth/usage every few minutes.
              </p>
            </div>
          </section>
          <section class="card" aria-labelledby="database-title">
            <h2 id="database-title">Database</h2>
            <div class="stack">
              <div class="stack" role="radiogroup" aria-labelledby="database-title">
                <label class="toggle">
                  <input
                    type="radio"
                    name="database"
                    checked={database === "sqlite"}
                    disabled={!!fixed("database_url")}
                    onChange={() => setDatabase("sqlite")}
                  />
                  <span>SQLite (default, in the data directory)</span>
                </label>
                <label class="toggle">
                  <input type="radio" name="database" checked={database === "url"} disabled={!!fixed("database_url")} onChange={() => setDatabase("url")} />
                  <span>PostgreSQL</span>
                </label>
              </div>
              {database === "url" && (
                <>
                  <label>
                    PostgreSQL URL
                    <input
                      value={url}
                      onInput={(e) => {
                        setUrl((e.target as HTMLInputElement).value);
                        setTested(null);
                      }}
                      placeholder="postgres://user:password@host:5432/nexus"
                      autocomplete="off"
                      spellcheck={false}
                      disabled={!!fixed("database_url")}
                    />
                  </label>
                  <div class="row">
                    <button type="button" class="secondary" disabled={busy || !url.trim() || !!fixed("database_url")} onClick={() => void test()}>
                      Test connection
                    </button>
                    <OutcomeLine outcome={tested} inline />
                  </div>
                  <p class="muted small">Saving checks the connection too.</p>
                </>
              )}
              {fixed("database_url") && <p class="muted small">Set by the environment variable {fixed("database_url")}.</p>}
            </div>
          </section>
        </div>
        {others.length > 0 && <p class="muted small">Also set by the environment: {others.join(", ")}.</p>}
        <div class="row save-row">
          <button type="submit" disabled={busy}>
            Save
          </button>
          <OutcomeLine outcome={saved} inline />
        </div>
      </form>
      <section class="card" aria-labelledby="logs-title">
        <h2 id="logs-title">Logs</h2>
        <div class="row">
          <code class="path">{info.log_dir}</code>
          <button
            type="button"
            class="secondary"
            onClick={() => props.desktop.openLogsFolder().catch((e: Error) => setError(e.message))}
          >
            Open logs folder
          </button>
        </div>
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
      </section>
    </div>
  );
}

function Toggle(props: { label: string; checked: boolean; onChange: (on: boolean) => void; fixedBy: string | null }) {
  return (
    <label class="toggle">
      <input
        type="checkbox"
        checked={props.checked}
        disabled={!!props.fixedBy}
        onChange={(e) => props.onChange((e.target as HTMLInputElement).checked)}
      />
      <span>
        {props.label}
        {props.fixedBy && <span class="muted small"> (set by the environment variable {props.fixedBy})</span>}
      </span>
    </label>
  );
}
