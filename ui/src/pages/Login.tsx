import { useEffect, useState } from "preact/hooks";
import { api, ApiError } from "../api";

/** The key from a login link (`/login#key=…`), removed from the address bar at once. */
function keyFromLink(): string | null {
  const match = /(?:^#|&)key=([^&]+)/.exec(location.hash);
  if (!match) return null;
  history.replaceState(null, "", location.pathname + location.search);
  return decodeURIComponent(match[1]);
}

export function Login(props: { onLoggedIn: () => void }) {
  const [key, setKey] = useState("");
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);

  const submit = async (value: string) => {
    setBusy(true);
    setError("");
    try {
      await api.login(value);
      props.onLoggedIn();
    } catch (e) {
      if (e instanceof ApiError && e.status === 429) setError("Too many failed attempts. Wait a few minutes.");
      else if (e instanceof ApiError && e.status === 401) setError("That key is not right.");
      else setError(e instanceof Error ? e.message : "Login failed.");
    } finally {
      setBusy(false);
    }
  };

  useEffect(() => {
    const linked = keyFromLink();
    if (linked) void submit(linked);
  }, []);

  return (
    <main class="login" id="main">
      <form
        class="card"
        onSubmit={(e) => {
          e.preventDefault();
          void submit(key);
        }}
      >
        <h1>Claude Nexus</h1>
        <p class="muted">
          Enter the dashboard key (<code>DASHBOARD_API_KEY</code>), or open the login link the server printed at start.
        </p>
        <label for="key">Dashboard key</label>
        <input
          id="key"
          name="key"
          type="password"
          autocomplete="current-password"
          required
          value={key}
          onInput={(e) => setKey((e.target as HTMLInputElement).value)}
        />
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
        <button type="submit" disabled={busy}>
          {busy ? "Logging in…" : "Log in"}
        </button>
      </form>
    </main>
  );
}
