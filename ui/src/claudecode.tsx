// Claude Code in the desktop app: whether it goes through this proxy, and the button that
// connects or disconnects it (the Accounts page's card and the welcome guide).
import { useEffect, useState } from "preact/hooks";
import type { Desktop, DesktopInfo } from "./desktop";
import { OutcomeLine, type Outcome } from "./outcome";

export function ClaudeCodeConnect(props: { desktop: Desktop }) {
  const [info, setInfo] = useState<DesktopInfo["claude_code"] | null>(null);
  const [busy, setBusy] = useState(false);
  const [result, setResult] = useState<Outcome | null>(null);

  const load = () =>
    props.desktop
      .info()
      .then((i) => setInfo(i.claude_code))
      .catch((e: Error) => setResult({ ok: false, text: e.message }));
  useEffect(() => {
    void load();
  }, []);

  const run = async (action: () => Promise<string>) => {
    setBusy(true);
    setResult(null);
    try {
      setResult({ ok: true, text: await action() });
    } catch (e) {
      setResult({ ok: false, text: (e as Error).message });
    } finally {
      setBusy(false);
      await load();
    }
  };

  return (
    <div class="stack">
      {!info ? (
        <p class="loading">Loading…</p>
      ) : info.connected ? (
        <p>
          <span class="badge ok">Connected</span> Claude Code goes through this proxy with its own login; its settings are in{" "}
          <code>{info.settings_path}</code>.
        </p>
      ) : (
        <p>
          <span class="badge client">Not connected</span> Connecting writes the proxy's address and a client key made for
          Claude Code into <code>{info.settings_path}</code>, after showing you what changes. With no account yet it first adds a
          passthrough account: Claude Code keeps its own login, sent upstream untouched, with the key in{" "}
          <code>x-nexus-key</code>.
        </p>
      )}
      {info && (
        <div>
          {info.connected ? (
            <button type="button" class="secondary" disabled={busy} onClick={() => void run(props.desktop.disconnectClaudeCode)}>
              Disconnect Claude Code
            </button>
          ) : (
            <button type="button" disabled={busy} onClick={() => void run(props.desktop.connectClaudeCode)}>
              Connect Claude Code…
            </button>
          )}
        </div>
      )}
      <OutcomeLine outcome={result} />
    </div>
  );
}

export function ClaudeCodeCard(props: { desktop: Desktop }) {
  return (
    <section class="card" aria-labelledby="claude-code-title">
      <h2 id="claude-code-title">Claude Code</h2>
      <ClaudeCodeConnect desktop={props.desktop} />
    </section>
  );
}
