// The Security page's Alerts card: where alerts go (the Slack webhooks set), the rules in
// words with the cooldown, and the last alerts with their outcome. An `alert` event on the
// live feed reads the list again at once; suppressed alerts (which send no event) and
// deliveries that finish show up on the next read, every 10 s while the page is visible
// (every second while one is still being delivered).
import { useEffect, useRef, useState } from "preact/hooks";
import { api, type AlertsReport } from "./api";
import { alertOutcome, alertRuleLine, alertsRefreshMs, cooldownText, formatTime, spellDurations } from "./format";

/** How often the alerts are read again while nothing is being delivered. */
const ALERTS_REFRESH_MS = 10_000;

export function AlertsCard(props: { onError: (e: unknown) => void }) {
  const [report, setReport] = useState<AlertsReport | null>(null);
  const [error, setError] = useState("");
  const timer = useRef<number | null>(null);
  const gone = useRef(false);

  const load = async () => {
    if (gone.current) return;
    if (timer.current !== null) window.clearTimeout(timer.current);
    timer.current = null;
    let next = ALERTS_REFRESH_MS;
    try {
      const fresh = await api.alerts();
      if (gone.current) return;
      setReport(fresh);
      setError("");
      next = alertsRefreshMs(fresh.recent, ALERTS_REFRESH_MS);
    } catch (e) {
      if (gone.current) return;
      props.onError(e);
      setError(e instanceof Error ? e.message : String(e));
    }
    if (timer.current !== null) window.clearTimeout(timer.current);
    timer.current = window.setTimeout(() => {
      timer.current = null;
      if (document.visibilityState === "visible") void load();
      else document.addEventListener("visibilitychange", () => void load(), { once: true });
    }, next);
  };

  useEffect(() => {
    gone.current = false;
    void load();
    const events = new EventSource("/api/events");
    events.addEventListener("alert", () => void load());
    return () => {
      gone.current = true;
      events.close();
      if (timer.current !== null) window.clearTimeout(timer.current);
    };
  }, []);

  return (
    <section class="card alerts" id="alerts" aria-labelledby="alerts-title">
      <h2 id="alerts-title">Alerts</h2>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {!report ? (
        !error && <p class="loading">Loading…</p>
      ) : (
        <>
          <Destinations webhooks={report.webhooks} />
          <h3>Rules</h3>
          <ul class="alert-rules" aria-label="Alert rules">
            {report.rules.map((r) => {
              const line = alertRuleLine(r);
              return (
                <li data-rule={r.kind} class={line.off ? "off" : undefined}>
                  <strong>{line.name}</strong>: {line.text}
                </li>
              );
            })}
          </ul>
          <p class="muted small" data-testid="alert-cooldown">
            {cooldownText(report.cooldown_secs)} Thresholds are set with the <code>ALERT_*</code> settings.
          </p>
          <h3>Last alerts</h3>
          {report.recent.length === 0 ? (
            <p class="muted">No alert since the proxy started.</p>
          ) : (
            <>
              <div class="table-wrap">
                <table class="alerts-list" aria-label="Last alerts">
                  <thead>
                    <tr>
                      <th scope="col">Time</th>
                      <th scope="col">Alert</th>
                      <th scope="col">Subject</th>
                      <th scope="col">What happened</th>
                      <th scope="col">Outcome</th>
                    </tr>
                  </thead>
                  <tbody>
                    {report.recent.map((a) => {
                      const outcome = alertOutcome(a);
                      return (
                        <tr data-kind={a.kind} data-outcome={a.outcome}>
                          <td class="alert-time">
                            {formatTime(a.at)
                              .split(" ")
                              .map((part, i) => (
                                <>
                                  {i > 0 && " "}
                                  <span>{part}</span>
                                </>
                              ))}
                          </td>
                          <td>{a.title}</td>
                          <td class="alert-subject">
                            <code>{a.subject}</code>
                          </td>
                          <td class="alert-text">{spellDurations(a.text)}</td>
                          <td>
                            <span class={`badge ${outcome.tone}`} title={outcome.title}>
                              {outcome.text}
                            </span>
                          </td>
                        </tr>
                      );
                    })}
                  </tbody>
                </table>
              </div>
              <p class="muted small">
                The last 50 since the proxy started, newest first. <em>Suppressed</em>: the same alert about the same subject within
                the cooldown, not sent again. <em>Not sent</em>: no webhook receives it.
              </p>
            </>
          )}
        </>
      )}
    </section>
  );
}

/** Where alerts go: the global webhook and the credential files' own, or how to set one. */
function Destinations(props: { webhooks: AlertsReport["webhooks"] }) {
  const { global, domains } = props.webhooks;
  return (
    <>
      <ul class="alert-targets" aria-label="Where alerts go">
        <li data-testid="webhook-global">
          Slack webhook (<code>SLACK_WEBHOOK_URL</code>):{" "}
          {global ? <span class="ok-text">set</span> : <span class="muted">not set</span>}
          {global && <span class="muted"> (every alert)</span>}
        </li>
        <li data-testid="webhook-domains">
          Credential files with a <code>slack</code> block:{" "}
          {domains.length === 0 ? (
            <span class="muted">none</span>
          ) : (
            <>
              {domains.map((d, i) => (
                <>
                  {i > 0 && ", "}
                  <code>{d}</code>
                </>
              ))}
              <span class="muted"> (their own account's alerts)</span>
            </>
          )}
        </li>
      </ul>
      {!global && domains.length === 0 && (
        <p class="notice" data-testid="no-webhook">
          No webhook is set, so alerts go nowhere but the log (<code>WARN</code>) and the list below. To get them in Slack, set{" "}
          <code>SLACK_WEBHOOK_URL</code> to a Slack incoming webhook (<code>https://</code> only) and restart the proxy, or add a{" "}
          <code>slack</code> block (<code>webhook_url</code>, <code>channel</code>) to a credential file for its account's alerts.
        </p>
      )}
    </>
  );
}
