import { useEffect, useState } from "preact/hooks";
import { api, type SecurityCheck } from "../api";
import { worstFirst } from "../format";

const LABEL: Record<SecurityCheck["status"], string> = { pass: "Pass", warn: "Warning", fail: "Fail", todo: "To do" };

export function SecurityPage(props: { onError: (e: unknown) => void }) {
  const [checks, setChecks] = useState<SecurityCheck[] | null>(null);
  const [error, setError] = useState("");

  const load = () =>
    api
      .security()
      .then((r) => {
        setChecks(r.checks);
        setError("");
      })
      .catch((e) => {
        props.onError(e);
        setError(e instanceof Error ? e.message : String(e));
      });

  useEffect(() => {
    void load();
  }, []);

  const mark = async (id: string, done: boolean) => {
    try {
      await api.markManual(id, done);
      await load();
    } catch (e) {
      props.onError(e);
      setError(e instanceof Error ? e.message : String(e));
    }
  };

  if (!checks) return error ? <p class="error" role="alert">{error}</p> : <p class="loading">Loading…</p>;
  const count = (s: SecurityCheck["status"]) => checks.filter((c) => c.status === s).length;
  return (
    <>
      <div class="toolbar">
        <span>
          {count("pass")} passing · {count("warn")} warnings · {count("fail")} failing · {count("todo")} to do
        </span>
        <span class="spacer" />
        <button type="button" class="secondary" onClick={() => void load()}>
          Check again
        </button>
      </div>
      {error && <p class="error" role="alert">{error}</p>}
      <ul class="checks" aria-label="Security checks">
        {worstFirst(checks).map((c) => (
          <li class={`card check ${c.status}`} data-check={c.id}>
            <div class="check-head">
              <span class={`badge check-${c.status}`}>{LABEL[c.status]}</span>
              <h2>{c.title}</h2>
            </div>
            <p>{c.detail}</p>
            {c.fix && (
              <p class="fix">
                <strong>Fix:</strong> {c.fix}
              </p>
            )}
            {c.manual && (
              <label class="manual">
                <input type="checkbox" checked={c.done_on !== null} onChange={(e) => void mark(c.id, (e.target as HTMLInputElement).checked)} />
                Done{c.done_on ? ` (marked on ${c.done_on})` : ""}
              </label>
            )}
          </li>
        ))}
      </ul>
      <p class="muted small">
        The same checks run in a terminal with <code>claude-nexus doctor</code>, which exits non-zero when one fails.
      </p>
    </>
  );
}
