// A subscription's 5-hour and 7-day plan gauges (the Accounts page and the Overview).
import { useEffect, useState } from "preact/hooks";
import { api, type AccountInfo, type PlanWindow } from "./api";
import { formatRelative, formatTime, gauge } from "./format";

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
