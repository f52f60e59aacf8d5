// The Accounts page's "Limits and budgets" card: every account and key with its limits and
// their use (a gauge per limit), and an editor to set, change or remove them.
import { useLayoutEffect, useRef, useState } from "preact/hooks";
import { api, type AccountInfo, type ClientKeyInfo, type LimitEntry } from "./api";
import { LIMIT_KINDS, limitError, limitForm, limitRows, parseLimitForm, type LimitForm, type LimitRow } from "./format";
import { LimitGauges } from "./gauges";
import { OutcomeLine, type Outcome } from "./outcome";

const message = (e: unknown) => (e instanceof Error ? e.message : String(e));
const rowId = (r: LimitRow) => `${r.subject.kind}:${r.subject.id}`;

export function LimitsCard(props: {
  accounts: AccountInfo[] | null;
  keys: ClientKeyInfo[] | null;
  limits: LimitEntry[] | null;
  reload: () => Promise<void>;
  onError: (e: unknown) => void;
}) {
  const [editing, setEditing] = useState<string | null>(null);
  const rows = props.accounts && props.keys && props.limits ? limitRows(props.accounts, props.keys, props.limits) : null;
  return (
    <section class="card" id="limits" aria-labelledby="limits-title">
      <h2 id="limits-title">Limits and budgets</h2>
      <p class="small muted">
        A request over a limit gets 429 before it goes upstream. Tokens count input, cache writes and output; dollars are estimated
        with the price table; hours, days and months are UTC. Token and dollar use is counted when a response ends, so the request
        that crosses a limit completes and the next one is refused.
      </p>
      {!rows ? (
        <p class="loading">Loading…</p>
      ) : rows.length === 0 ? (
        <p class="muted">No accounts or keys yet.</p>
      ) : (
        <div class="table-wrap">
          <table class="limits" aria-label="Limits and budgets">
            <thead>
              <tr>
                <th scope="col">Account or key</th>
                <th scope="col">Limits and use</th>
                <th scope="col" aria-label="Actions" />
              </tr>
            </thead>
            <tbody>
              {rows.flatMap((r) => {
                const id = rowId(r);
                const open = editing === id;
                const row = (
                  <tr key={id} data-subject={id}>
                    <td>
                      <strong>{r.name}</strong>
                      <span class="small muted subject-detail">{r.detail}</span>
                    </td>
                    <td>
                      <LimitGauges entry={r.entry} />
                    </td>
                    <td class="actions">
                      {!open && (
                        <button type="button" class="secondary" aria-label={`${r.entry ? "Change" : "Set"} limits of ${r.name}`} onClick={() => setEditing(id)}>
                          {r.entry ? "Change" : "Set limits"}
                        </button>
                      )}
                    </td>
                  </tr>
                );
                if (!open) return [row];
                return [
                  row,
                  <tr key={`${id}-editor`} class="limit-editor">
                    <td colSpan={3}>
                      <LimitEditor row={r} onClose={() => setEditing(null)} reload={props.reload} onError={props.onError} />
                    </td>
                  </tr>,
                ];
              })}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

function LimitEditor(props: { row: LimitRow; onClose: () => void; reload: () => Promise<void>; onError: (e: unknown) => void }) {
  const [form, setForm] = useState<LimitForm>(() => limitForm(props.row.entry?.limits ?? null));
  const [busy, setBusy] = useState(false);
  const [outcome, setOutcome] = useState<Outcome | null>(null);
  const first = useRef<HTMLInputElement>(null);
  // Focus moves in the same commit that shows the form (a layout effect, not a passive one,
  // which runs after paint): what is typed at once must not land in the first field.
  useLayoutEffect(() => first.current?.focus(), []);

  const run = async (work: () => Promise<void>) => {
    setBusy(true);
    setOutcome(null);
    try {
      await work();
      await props.reload();
      props.onClose();
    } catch (e) {
      props.onError(e);
      setOutcome({ ok: false, text: limitError(message(e)) });
    } finally {
      setBusy(false);
    }
  };

  const save = (e: Event) => {
    e.preventDefault();
    const parsed = parseLimitForm(form);
    if ("error" in parsed) {
      setOutcome({ ok: false, text: parsed.error });
      return;
    }
    void run(async () => {
      await api.setLimits(props.row.subject, parsed.limits);
    });
  };

  return (
    <form class="filters" aria-label={`Limits of ${props.row.name}`} onSubmit={save}>
      {LIMIT_KINDS.map((kind, i) => (
        <label>
          {kind.label}
          <input
            ref={i === 0 ? first : undefined}
            value={form[kind.field]}
            onInput={(e) => setForm({ ...form, [kind.field]: (e.target as HTMLInputElement).value })}
            inputMode={kind.dollars ? "decimal" : "numeric"}
            placeholder="no limit"
            autocomplete="off"
          />
        </label>
      ))}
      <span class="row">
        <button type="submit" disabled={busy}>
          Save limits
        </button>
        {props.row.entry && (
          <button type="button" class="secondary" disabled={busy} onClick={() => void run(() => api.removeLimits(props.row.subject))}>
            Remove limits
          </button>
        )}
        <button type="button" class="secondary" onClick={props.onClose}>
          Cancel
        </button>
      </span>
      <OutcomeLine outcome={outcome} />
    </form>
  );
}
