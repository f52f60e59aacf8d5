import type { ComponentChildren } from "preact";
import { useEffect, useState } from "preact/hooks";
import { api, type RequestDetail } from "../api";
import { conversationHref } from "../conversation";
import { Link } from "../router";
import { formatCount, formatMs, formatTime, shortHash, statusClass } from "../format";

function pretty(body: string): string {
  try {
    return JSON.stringify(JSON.parse(body), null, 2);
  } catch {
    return body;
  }
}

export function RequestDetailPage(props: { id: string; onError: (e: unknown) => void }) {
  const [detail, setDetail] = useState<RequestDetail | null>(null);
  const [error, setError] = useState("");

  useEffect(() => {
    api
      .request(props.id)
      .then(setDetail)
      .catch((e) => {
        props.onError(e);
        setError(e instanceof Error ? e.message : String(e));
      });
  }, [props.id]);

  if (error) return <p class="error" role="alert">{error}</p>;
  if (!detail) return <p class="loading">Loading…</p>;
  const d = detail;
  const fields: [string, ComponentChildren][] = [
    ["Request id", d.request_id],
    ...(d.conversation_id ? [conversationField(d.conversation_id, d.branch_id ?? null, d.request_id)] : []),
    ["Time", formatTime(d.timestamp)],
    ["Method / path", `${d.method} ${d.path}`],
    ["Model", d.model ?? "–"],
    ["Account", `${d.account_id ?? "–"} (${d.domain})`],
    ["Client key", d.client_key_id ? `${d.client_key_id} (${shortHash(d.api_key_hash)})` : shortHash(d.api_key_hash)],
    ["Client IP", d.client_ip ?? "–"],
    ["Streaming", d.streaming ? "yes" : "no"],
    ["Duration", formatMs(d.duration_ms)],
    ["Time to first token", formatMs(d.first_token_ms)],
    ["Input tokens", formatCount(d.input_tokens)],
    ["Output tokens", formatCount(d.output_tokens)],
    ["Cache write tokens", formatCount(d.cache_creation_input_tokens)],
    ["Cache read tokens", formatCount(d.cache_read_input_tokens)],
    ["Upstream request id", d.upstream_request_id ?? "–"],
  ];

  return (
    <>
      <p>
        <Link href="/requests">← All requests</Link>
      </p>
      <section class="card">
        <h2>
          <span class={`badge ${statusClass(d.status)}`}>{d.status}</span> {d.model ?? d.path}
        </h2>
        {d.error && <p class="error">{d.error}</p>}
        <dl class="fields">
          {fields.map(([k, v]) => (
            <>
              <dt>{k}</dt>
              <dd>{v}</dd>
            </>
          ))}
        </dl>
      </section>
      {d.request_body === null && d.response_body === null ? (
        <p class="muted">Bodies are not stored (set STORAGE_ENABLED=true to keep them).</p>
      ) : (
        <>
          <Body title="Request" text={d.request_body} />
          <Body title="Response" text={d.response_body} />
          {d.events.length > 0 && (
            <section class="card">
              <h2>Stream events ({d.events.length})</h2>
              <ol class="events">
                {d.events.map((e) => (
                  <li>
                    <span class="muted">{formatTime(e.timestamp)}</span>
                    <pre>{e.data}</pre>
                  </li>
                ))}
              </ol>
            </section>
          )}
        </>
      )}
    </>
  );
}

/** The conversation the request belongs to, linked with this request selected, and its branch. */
function conversationField(id: string, branch: string | null, request: string): [string, ComponentChildren] {
  return [
    "Conversation",
    <>
      <Link href={conversationHref(id, request)}>{id}</Link>
      {branch && <span class="muted"> · branch {branch}</span>}
    </>,
  ];
}

function Body(props: { title: string; text: string | null }) {
  if (props.text === null) return null;
  return (
    <section class="card">
      <h2>{props.title}</h2>
      <pre class="body">{pretty(props.text)}</pre>
    </section>
  );
}
