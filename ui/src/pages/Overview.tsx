import { useEffect, useMemo, useState } from "preact/hooks";
import type { ChartConfiguration } from "chart.js";
import { api, type GroupRow, type Overview, type Window } from "../api";
import { ChartView, color } from "../chart";
import { PlanUsageCard } from "../gauges";
import { Stat } from "../stat";
import { Welcome } from "../welcome";
import { formatCost, formatCount, formatPercent, shortHash, stackByModel } from "../format";

const WINDOWS: { id: Window; label: string }[] = [
  { id: "24h", label: "24 hours" },
  { id: "7d", label: "7 days" },
  { id: "30d", label: "30 days" },
];

export function OverviewPage(props: { onError: (e: unknown) => void }) {
  const [window, setWindow] = useState<Window>("24h");
  const [data, setData] = useState<Overview | null>(null);
  const [error, setError] = useState("");

  useEffect(() => {
    let live = true;
    api
      .overview(window)
      .then((o) => live && (setData(o), setError("")))
      .catch((e) => {
        props.onError(e);
        if (live) setError(e instanceof Error ? e.message : String(e));
      });
    return () => {
      live = false;
    };
  }, [window]);

  const tokensChart = useMemo<ChartConfiguration | null>(() => {
    if (!data) return null;
    const series = stackByModel(data.series, data.bucket, new Date(data.since), new Date());
    return {
      type: "bar",
      data: {
        labels: series.labels.map((l) => (data.bucket === "hour" ? l.slice(11) + ":00" : l.slice(5))),
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

  const statusChart = useMemo<ChartConfiguration | null>(() => {
    if (!data) return null;
    return {
      type: "doughnut",
      data: {
        labels: data.by_status.map((s) => s.key ?? "?"),
        datasets: [{ data: data.by_status.map((s) => s.requests), backgroundColor: data.by_status.map((s) => statusColor(s.key)) }],
      },
      options: { responsive: true, maintainAspectRatio: false, animation: false, plugins: { legend: { position: "bottom" } } },
    };
  }, [data]);

  return (
    <>
      <Welcome onError={props.onError} />
      <div class="toolbar" role="group" aria-label="Time window">
        {WINDOWS.map((w) => (
          <button
            type="button"
            class={w.id === window ? "" : "secondary"}
            aria-pressed={w.id === window}
            onClick={() => setWindow(w.id)}
          >
            {w.label}
          </button>
        ))}
      </div>
      {error && <p class="error" role="alert">{error}</p>}
      <PlanUsageCard onError={props.onError} />
      {!data ? (
        <p class="loading">Loading…</p>
      ) : (
        <>
          <section class="stats" aria-label="Totals">
            <Stat label="Requests" value={formatCount(data.requests)} />
            <Stat label="Input tokens" value={formatCount(data.input_tokens)} />
            <Stat label="Output tokens" value={formatCount(data.output_tokens)} />
            <Stat label="Cache write" value={formatCount(data.cache_creation_input_tokens)} />
            <Stat label="Cache read" value={formatCount(data.cache_read_input_tokens)} />
            <Stat label="Estimated cost" value={formatCost(data.cost_usd)} />
            <Stat label="Error rate" value={formatPercent(data.error_rate)} />
          </section>
          <div class="grid2">
            <section class="card">
              <h2>Tokens over time, by model</h2>
              {data.series.length === 0 ? <p class="muted">No requests in this window.</p> : tokensChart && <ChartView config={tokensChart} label="Input and output tokens over time, stacked by model" />}
            </section>
            <section class="card">
              <h2>Requests by status</h2>
              {data.by_status.length === 0 ? <p class="muted">No requests in this window.</p> : statusChart && <ChartView config={statusChart} label="Requests by response status" />}
            </section>
          </div>
          <Breakdown title="By model" rows={data.by_model} keyLabel="Model" cost />
          <Breakdown title="By account" rows={data.by_account} keyLabel="Account" key2Label="Domain" />
          <Breakdown title="By client key" rows={data.by_client_key} keyLabel="Key (hash)" hash />
          <p class="muted small">
            Cost is an estimate from the price table (cache writes at 1.25× input, reads at 0.1×); subscription traffic shows its API-equivalent value.
            Override prices with <code>prices.json</code> in the data directory.
          </p>
        </>
      )}
    </>
  );
}

function statusColor(key: string | null): string {
  const status = Number(key);
  if (status >= 500) return "#c0392b";
  if (status >= 400) return "#e08e0b";
  return "#788c5d";
}

function Breakdown(props: { title: string; rows: GroupRow[]; keyLabel: string; key2Label?: string; cost?: boolean; hash?: boolean }) {
  return (
    <section class="card">
      <h2>{props.title}</h2>
      {props.rows.length === 0 ? (
        <p class="muted">No requests in this window.</p>
      ) : (
        <div class="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">{props.keyLabel}</th>
                {props.key2Label && <th scope="col">{props.key2Label}</th>}
                <th scope="col" class="num">Requests</th>
                <th scope="col" class="num">Errors</th>
                <th scope="col" class="num">Input</th>
                <th scope="col" class="num">Output</th>
                <th scope="col" class="num">Cache write</th>
                <th scope="col" class="num">Cache read</th>
                {props.cost && <th scope="col" class="num">Cost</th>}
              </tr>
            </thead>
            <tbody>
              {props.rows.map((r) => (
                <tr>
                  <td>{props.hash ? shortHash(r.key) : (r.key ?? "–")}</td>
                  {props.key2Label && <td>{r.key2 ?? "–"}</td>}
                  <td class="num">{formatCount(r.requests)}</td>
                  <td class="num">{formatCount(r.errors)}</td>
                  <td class="num">{formatCount(r.input_tokens)}</td>
                  <td class="num">{formatCount(r.output_tokens)}</td>
                  <td class="num">{formatCount(r.cache_creation_input_tokens)}</td>
                  <td class="num">{formatCount(r.cache_read_input_tokens)}</td>
                  {props.cost && <td class="num">{formatCost(r.cost_usd)}</td>}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
