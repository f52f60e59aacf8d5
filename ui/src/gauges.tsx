// A subscription's 5-hour and 7-day plan gauges (the Accounts page and the Overview), and a
// key's or an account's limits with their use (the Accounts page).
import { useEffect, useState } from "preact/hooks";
import { api, type AccountInfo, type LimitEntry, type PlanWindow } from "./api";
import { formatRelative, formatTime, gauge, limitGauges } from "./format";

function Gauge(props: { label: string; window: PlanWindow | null }) {
  if (!props.window) return null;
  const g = gauge(props.window.used_percent);
  const used = `${Math.round(props.window.used_percent)}%`;
  const reset = props.window.resets_at;
  return (
    <div class="gauge">
      <span class="gauge-label">{props.label}</span>
      <div
        class="gauge-track"
        role="meter"
        aria-label={`${props.label} window used`}
        aria-valuemin={0}
        aria-valuemax={100}
        aria-valuenow={Math.round(g.width)}
        aria-valuetext={used}
      >
        <div class={`gauge-fill ${g.tone}`} style={{ width: `${g.width}%` }} />
      </div>
      <span class="gauge-value">{used}</span>
      {reset && (
        <span class="gauge-reset muted small" title={formatTime(reset)}>
          {formatRelative(reset).endsWith("ago") ? "reset" : "resets"} {formatRelative(reset)}
        </span>
      )}
    </div>
  );
}

export function PlanGauges(props: { account: AccountInfo }) {
  const w = props.account.windows;
  if (!w) return <span class="muted">–</span>;
  return (
    <div class="gauges">
      <Gauge label="5 h" window={w.five_hour} />
      <Gauge label="7 d" window={w.seven_day} />
    </div>
  );
}

/** The Overview's plan gauges: every subscription account's windows; nothing without one. */
export function PlanUsageCard(props: { onError: (e: unknown) => void }) {
  const [accounts, setAccounts] = useState<AccountInfo[]>([]);
  useEffect(() => {
    let live = true;
    api
      .accounts()
      .then((r) => live && setAccounts(r.accounts.filter((a) => a.type === "oauth")))
      .catch(props.onError);
    return () => {
      live = false;
    };
  }, []);
  if (accounts.length === 0) return null;
  return (
    <section class="card" aria-labelledby="plan-usage-title">
      <h2 id="plan-usage-title">Plan usage</h2>
      <ul class="plan-list">
        {accounts.map((a) => (
          <li>
            <strong>{a.domain}</strong>
            {a.windows ? <PlanGauges account={a} /> : <span class="muted small"> no usage reported yet</span>}
          </li>
        ))}
      </ul>
    </section>
  );
}

/** One gauge per limit set ("3 / 5 requests per minute"), or "No limits". */
export function LimitGauges(props: { entry: LimitEntry | null }) {
  const gauges = props.entry ? limitGauges(props.entry.limits, props.entry.used) : [];
  if (gauges.length === 0) return <span class="muted">No limits</span>;
  return (
    <div class="gauges">
      {gauges.map((g) => {
        const fill = gauge(g.percent);
        return (
          <div class="gauge limit-gauge" data-limit={g.kind.field}>
            <div
              class="gauge-track"
              role="meter"
              aria-label={g.kind.label}
              aria-valuemin={0}
              aria-valuemax={100}
              aria-valuenow={Math.round(fill.width)}
              aria-valuetext={g.text}
            >
              <div class={`gauge-fill ${fill.tone}`} style={{ width: `${fill.width}%` }} />
            </div>
            <span class="gauge-value">{g.text}</span>
          </div>
        );
      })}
    </div>
  );
}
