import { useEffect, useState } from "preact/hooks";
import { api, type RequestSummary } from "../api";
import { FilterForm } from "../filters";
import { LiveStatus, useRequestEvents } from "../live";
import { Link, navigate } from "../router";
import {
  emptyFilter,
  type Filter,
  filterQuery,
  formatCount,
  formatMs,
  formatTime,
  matchesFilter,
  mergeLive,
  statusClass,
} from "../format";

const PAGE = 50;

export function RequestsPage(props: { onError: (e: unknown) => void }) {
  const [filter, setFilter] = useState<Filter>(emptyFilter);
  const [rows, setRows] = useState<RequestSummary[]>([]);
  const [cursor, setCursor] = useState<string | null>(null);
  const [loading, setLoading] = useState(true);
  const [error, setError] = useState("");

  const load = async (f: Filter, after: string | null) => {
    setLoading(true);
    try {
      const page = await api.requests(filterQuery(f, { limit: String(PAGE), ...(after ? { cursor: after } : {}) }));
      setRows((old) => (after ? [...old, ...page.items] : page.items));
      setCursor(page.next_cursor);
      setError("");
    } catch (e) {
      props.onError(e);
      setError(e instanceof Error ? e.message : String(e));
    } finally {
      setLoading(false);
    }
  };

  useEffect(() => {
    void load(filter, null);
  }, [filter]);

  // New requests join the list if the filter fits.
  const live = useRequestEvents((summary) => {
    if (matchesFilter(summary, filter)) setRows((old) => mergeLive(old, [summary]));
  });

  const exportHref = (format: string) => `/api/requests/export?${filterQuery(filter, { format })}`;

  return (
    <>
      <FilterForm
        label="Filter requests"
        fields={["account_id", "client_key_id", "model", "status", "streaming", "since", "until"]}
        onApply={setFilter}
      />
      <div class="toolbar">
        <LiveStatus live={live} />
        <span class="spacer" />
        <a class="button secondary" href={exportHref("csv")} download>
          Export CSV
        </a>
        <a class="button secondary" href={exportHref("json")} download>
          Export JSON
        </a>
      </div>
      {error && <p class="error" role="alert">{error}</p>}
      <div class="table-wrap card">
        <table class="requests">
          <thead>
            <tr>
              <th scope="col">Time</th>
              <th scope="col">Status</th>
              <th scope="col">Method / path</th>
              <th scope="col">Model</th>
              <th scope="col">Account</th>
              <th scope="col" class="num">In</th>
              <th scope="col" class="num">Out</th>
              <th scope="col" class="num">Duration</th>
              <th scope="col" class="num">First token</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((r) => (
              <tr key={r.request_id} class="clickable" onClick={() => navigate(`/requests/${encodeURIComponent(r.request_id)}`)}>
                <td>
                  <Link href={`/requests/${encodeURIComponent(r.request_id)}`}>{formatTime(r.timestamp)}</Link>
                </td>
                <td>
                  <span class={`badge ${statusClass(r.status)}`}>{r.status}</span>
                </td>
                <td>
                  {r.method} {r.path}
                  {r.streaming && <span class="tag">stream</span>}
                </td>
                <td>{r.model ?? "–"}</td>
                <td>{r.account_id ?? r.domain}</td>
                <td class="num">{formatCount(r.input_tokens)}</td>
                <td class="num">{formatCount(r.output_tokens)}</td>
                <td class="num">{formatMs(r.duration_ms)}</td>
                <td class="num">{formatMs(r.first_token_ms)}</td>
              </tr>
            ))}
          </tbody>
        </table>
        {!loading && rows.length === 0 && <p class="muted empty">No requests match.</p>}
      </div>
      <div class="toolbar">
        {loading && <span class="loading">Loading…</span>}
        {cursor && !loading && (
          <button type="button" class="secondary" onClick={() => void load(filter, cursor)}>
            Load older
          </button>
        )}
      </div>
    </>
  );
}
