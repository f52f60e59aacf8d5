import { useEffect, useMemo, useState } from "preact/hooks";
import type { ChartConfiguration } from "chart.js";
import { api, type DailyRow, type Monitoring, type RequestSummary } from "../api";
import { ChartView, color } from "../chart";
import { emptyFilter, filterQuery, formatCount, formatTime, pivotDaily, statusClass } from "../format";

/** The security guide's monitoring queries as tables and a chart. */
export function MonitoringPage(props: { onError: (e: unknown) => void }) {
  const [data, setData] = useState<Monitoring | null>(null);
  const [error, setError] = useState("");
  const [account, setAccount] = useState("");
  const [since, setSince] = useState("");
  const [access, setAccess] = useState<RequestSummary[] | null>(null);

  useEffect(() => {
    api
      .monitoring(30)
      .then(setData)
      .catch((e) => {
        props.onError(e);
        setError(e instanceof Error ? e.message : String(e));
      });
  }, []);

  const tokensChart = useMemo<ChartConfiguration | null>(() => {
    if (!data || data.daily_tokens.length === 0) return null;
    const series = pivotDaily(data.daily_tokens);
    return {
      type: "bar",
      data: {
        labels: series.labels,
        datasets: series.datasets.map((d, i) => ({ ...d, backgroundColor: color(i), stack: "tokens" })),
      },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true } },
        plugins: { legend: { position: "bottom" } },
      },
    };
  }, [data]);

  const showAccess = async (e: Event) => {
    e.preventDefault();
    try {
      const page = await api.requests(filterQuery({ ...emptyFilter, account_id: account, since }, { limit: "200" }));
      setAccess(page.items);
    } catch (err) {
      props.onError(err);
      setError(err instanceof Error ? err.message : String(err));
    }
  };

  if (error) return <p class="error" role="alert">{error}</p>;
  if (!data) return <p class="loading">Loading…</p>;
  return (
    <>
      <section class="card">
        <h2>Failed authentication per domain and day</h2>
        <p class="muted small">Requests refused with 401 in the last 30 days; more than 10 a day for a domain deserves a look.</p>
        <DailyTable rows={data.failed_auth} value="Failures" flag={(r) => r.value > 10} />
      </section>
      <section class="card">
        <h2>Daily tokens per account</h2>
        {tokensChart ? <ChartView config={tokensChart} label="Total tokens per day, stacked by account" /> : null}
        <DailyTable rows={data.daily_tokens} value="Tokens" account />
      </section>
      <section class="card">
        <h2>Access by account since a time</h2>
        <form class="filters" onSubmit={showAccess}>
          <label>
            Account
            <input value={account} onInput={(e) => setAccount((e.target as HTMLInputElement).value)} placeholder="any" />
          </label>
          <label>
            Since
            <input type="datetime-local" value={since} onInput={(e) => setSince((e.target as HTMLInputElement).value)} />
          </label>
          <div class="filter-actions">
            <button type="submit">Show</button>
          </div>
        </form>
        {access && (
          <div class="table-wrap">
            <table aria-label="Access">
              <thead>
                <tr>
                  <th scope="col">Time</th>
                  <th scope="col">Account</th>
                  <th scope="col">Domain</th>
                  <th scope="col">Path</th>
                  <th scope="col">Status</th>
                  <th scope="col">Request id</th>
                </tr>
              </thead>
              <tbody>
                {access.map((r) => (
                  <tr key={r.request_id}>
                    <td>{formatTime(r.timestamp)}</td>
                    <td>{r.account_id ?? "–"}</td>
                    <td>{r.domain}</td>
                    <td>{r.path}</td>
                    <td>
                      <span class={`badge ${statusClass(r.status)}`}>{r.status}</span>
                    </td>
                    <td>
                      <code>{r.request_id}</code>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
            {access.length === 0 && <p class="muted empty">No requests.</p>}
          </div>
        )}
      </section>
    </>
  );
}

function DailyTable(props: { rows: DailyRow[]; value: string; account?: boolean; flag?: (r: DailyRow) => boolean }) {
  if (props.rows.length === 0) return <p class="muted">Nothing in the last 30 days.</p>;
  return (
    <div class="table-wrap">
      <table>
        <thead>
          <tr>
            <th scope="col">Day (UTC)</th>
            {props.account && <th scope="col">Account</th>}
            <th scope="col">Domain</th>
            <th scope="col" class="num">
              {props.value}
            </th>
          </tr>
        </thead>
        <tbody>
          {props.rows.map((r) => (
            <tr class={props.flag?.(r) ? "flagged" : undefined}>
              <td>{r.day}</td>
              {props.account && <td>{r.account_id ?? "–"}</td>}
              <td>{r.domain}</td>
              <td class="num">{formatCount(r.value)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
