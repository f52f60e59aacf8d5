import { useEffect, useState } from "preact/hooks";
import { AlertsCard } from "../alerts";
import { api, type Lockouts, type SecurityCheck } from "../api";
import { formatDuration, formatTime, lockoutRuleText, worstFirst } from "../format";
import { OutcomeLine, type Outcome } from "../outcome";

/** How often the locked-out addresses (and their time left) are read again. */
const LOCKOUTS_REFRESH_MS = 5_000;

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
      <BruteForce onError={props.onError} />
      <AlertsCard onError={props.onError} />
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

/** The proxy port's brute-force protection: its rule, the addresses locked out, and Lift. */
function BruteForce(props: { onError: (e: unknown) => void }) {
  const [lockouts, setLockouts] = useState<Lockouts | null>(null);
  const [outcome, setOutcome] = useState<Outcome | null>(null);
  const [busy, setBusy] = useState<string | null>(null);

  const load = () =>
    api
      .lockouts()
      .then(setLockouts)
      .catch((e) => {
        props.onError(e);
        setOutcome({ ok: false, text: e instanceof Error ? e.message : String(e) });
      });

  useEffect(() => {
    void load();
    const timer = window.setInterval(() => {
      if (document.visibilityState === "visible") void load();
    }, LOCKOUTS_REFRESH_MS);
    return () => window.clearInterval(timer);
  }, []);

  const lift = async (address: string) => {
    setBusy(address);
    setOutcome(null);
    try {
      await api.liftLockout(address);
      setOutcome({ ok: true, text: `Lifted: ${address} can use the proxy again.` });
    } catch (e) {
      props.onError(e);
      setOutcome({ ok: false, text: e instanceof Error ? e.message : String(e) });
    } finally {
      setBusy(null);
      await load();
    }
  };

  return (
    <section class="card" id="brute-force" aria-labelledby="brute-force-title">
      <h2 id="brute-force-title">Brute-force protection</h2>
      {!lockouts ? (
        <p class="loading">Loading…</p>
      ) : (
        <>
          <p data-testid="lockout-rule">
            {lockoutRuleText(lockouts.rule)}
            {lockouts.rule.max_keys > 0 && (
              <span class="muted"> A locked-out address gets 429 for every request, valid keys included; each attempt is still recorded.</span>
            )}
          </p>
          {lockouts.locked.length === 0 ? (
            <p class="muted">No address is locked out.</p>
          ) : (
            <div class="table-wrap">
              <table aria-label="Locked-out addresses">
                <thead>
                  <tr>
                    <th scope="col">Address</th>
                    <th scope="col">Time left</th>
                    <th scope="col">Until</th>
                    <th scope="col" aria-label="Actions" />
                  </tr>
                </thead>
                <tbody>
                  {lockouts.locked.map((l) => (
                    <tr data-address={l.address}>
                      <td>
                        <code>{l.address}</code>
                      </td>
                      <td>{formatDuration(l.remaining_secs)}</td>
                      <td>{formatTime(l.until)}</td>
                      <td>
                        <button type="button" class="secondary" disabled={busy !== null} aria-label={`Lift the lockout of ${l.address}`} onClick={() => void lift(l.address)}>
                          Lift
                        </button>
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )}
        </>
      )}
      <OutcomeLine outcome={outcome} />
    </section>
  );
}
