import { useEffect, useState } from "preact/hooks";
import { api, type ConversationSort, type ConversationSummary } from "../api";
import { conversationHref, conversationQuery } from "../conversation";
import { FilterForm } from "../filters";
import { emptyFilter, type Filter, formatCost, formatCount, formatSpan, formatTime } from "../format";
import { Link, navigate } from "../router";

const PAGE = 50;

const SORTS: { id: ConversationSort; label: string }[] = [
  { id: "last_activity", label: "Last activity" },
  { id: "tokens", label: "Tokens" },
];

export function ConversationsPage(props: { onError: (e: unknown) => void }) {
  const [filter, setFilter] = useState<Filter>(emptyFilter);
  const [sort, setSort] = useState<ConversationSort>("last_activity");
  const [rows, setRows] = useState<ConversationSummary[]>([]);
  const [cursor, setCursor] = useState<string | null>(null);
  const [loading, setLoading] = useState(true);
  const [error, setError] = useState("");

  const load = async (after: string | null) => {
    setLoading(true);
    try {
      const page = await api.conversations(conversationQuery(filter, sort, { limit: String(PAGE), ...(after ? { cursor: after } : {}) }));
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
    void load(null);
  }, [filter, sort]);

  return (
    <>
      <FilterForm label="Filter conversations" fields={["domain", "account_id", "client_key_id", "model", "since", "until"]} onApply={setFilter} />
      <div class="toolbar" role="group" aria-label="Sort by">
        <span class="muted">Sort by</span>
        {SORTS.map((s) => (
          <button type="button" class={s.id === sort ? "" : "secondary"} aria-pressed={s.id === sort} onClick={() => setSort(s.id)}>
            {s.label}
          </button>
        ))}
      </div>
      {error && <p class="error" role="alert">{error}</p>}
      <div class="table-wrap card">
        <table class="conversations" aria-label="Conversations">
          <thead>
            <tr>
              <th scope="col">Title and models</th>
              <th scope="col">Account</th>
              <th scope="col">Last activity</th>
              <th scope="col" class="num">Requests</th>
              <th scope="col" class="num">Tokens in / out / cache</th>
              <th scope="col" class="num">Cost</th>
              <th scope="col" class="num">Duration</th>
              <th scope="col" class="num">Branches</th>
              <th scope="col" class="num">Sub-tasks</th>
              <th scope="col" class="num">Compactions</th>
              <th scope="col" class="num">Failed</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((c) => (
              <tr key={c.conversation_id} class="clickable" onClick={() => navigate(conversationHref(c.conversation_id))}>
                <td class="title">
                  <Link href={conversationHref(c.conversation_id)}>{c.title ?? "(no title)"}</Link>
                  <span class="muted small models">{c.models.join(", ") || "no model"}</span>
                </td>
                <td>
                  {c.account_id ?? c.domain}
                  {c.account_id && <span class="muted small domain">{c.domain}</span>}
                </td>
                <td>{formatTime(c.last_at)}</td>
                <td class="num">{formatCount(c.requests)}</td>
                <td class="num" title={`cache: ${formatCount(c.cache_creation_input_tokens)} written, ${formatCount(c.cache_read_input_tokens)} read`}>
                  {formatCount(c.input_tokens)} / {formatCount(c.output_tokens)} / {formatCount(c.cache_creation_input_tokens + c.cache_read_input_tokens)}
                </td>
                <td class="num">{formatCost(c.cost_usd)}</td>
                <td class="num">{formatSpan(c.duration_ms)}</td>
                <td class="num">{formatCount(c.branches)}</td>
                <td class="num">{formatCount(c.subtasks)}</td>
                <td class="num">{formatCount(c.compactions)}</td>
                <td class={c.failed > 0 ? "num error" : "num"}>{formatCount(c.failed)}</td>
              </tr>
            ))}
          </tbody>
        </table>
        {!loading && rows.length === 0 && <p class="muted empty">No conversations match.</p>}
      </div>
      <div class="toolbar">
        {loading && <span class="loading">Loading…</span>}
        {cursor && !loading && (
          <button type="button" class="secondary" onClick={() => void load(cursor)}>
            More
          </button>
        )}
      </div>
    </>
  );
}
