import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { api, type ConversationSummary, type ConversationTree } from "../api";
import { type PlacedNode, layoutGraph, selectedNode } from "../conversation";
import { formatCost, formatCount, formatMs, formatSpan, formatTime, statusClass } from "../format";
import { Graph } from "../graph";
import { type Live, LiveStatus, useRequestEvents } from "../live";
import { Link } from "../router";
import { Stat } from "../stat";
import { type Block, type Transcript, type Turn, transcript } from "../transcript";

/** A burst of requests (a sub-task's tool calls) reads the tree once, this long after the first. */
const REFRESH_MS = 500;

export function ConversationPage(props: { id: string; onError: (e: unknown) => void }) {
  const [tree, setTree] = useState<ConversationTree | null>(null);
  const [error, setError] = useState("");
  // What the user chose: a branch (its latest request), or a request; none: main's latest.
  // A link from a request's page (?request=…) chooses that request.
  const [choice, setChoice] = useState(() => ({ branch: null as string | null, request: new URLSearchParams(location.search).get("request") }));
  // Only the latest read is shown: an earlier one may answer after it.
  const reads = useRef(0);

  const load = async () => {
    const read = ++reads.current;
    try {
      const fresh = await api.conversation(props.id);
      if (read !== reads.current) return;
      setTree(fresh);
      setError("");
    } catch (e) {
      if (read !== reads.current) return;
      props.onError(e);
      setError(e instanceof Error ? e.message : String(e));
    }
  };

  useEffect(() => {
    setTree(null);
    void load();
  }, [props.id]);

  // A request of this conversation was recorded: the tree grows (once for a burst).
  const due = useRef<number | null>(null);
  const live = useRequestEvents((record) => {
    if (record.conversation_id !== props.id || due.current !== null) return;
    due.current = window.setTimeout(() => {
      due.current = null;
      void load();
    }, REFRESH_MS);
  });
  useEffect(
    () => () => {
      if (due.current !== null) window.clearTimeout(due.current);
    },
    [],
  );

  const layout = useMemo(() => tree && layoutGraph(tree.nodes, tree.branches), [tree]);

  if (error) {
    return (
      <>
        <BackLink />
        <p class="error" role="alert">{error}</p>
      </>
    );
  }
  if (!tree || !layout) return <p class="loading">Loading…</p>;
  const selected = selectedNode(layout, choice);
  return (
    <>
      <BackLink />
      <Header conversation={tree.conversation} live={live} />
      <div class="conversation-grid">
        <section class="card" aria-labelledby="graph-title">
          <h2 id="graph-title">Requests by branch</h2>
          <Graph
            layout={layout}
            selected={selected}
            onSelect={(p) => setChoice({ branch: p.node.branch_id, request: p.node.request_id })}
            onBranch={(b) => setChoice({ branch: b.branch_id, request: null })}
          />
        </section>
        {selected && <NodeDetails p={selected} />}
      </div>
      {selected && <TranscriptCard p={selected} onError={props.onError} />}
    </>
  );
}

function BackLink() {
  return (
    <p>
      <Link href="/conversations">← All conversations</Link>
    </p>
  );
}

function Header(props: { conversation: ConversationSummary; live: Live }) {
  const c = props.conversation;
  return (
    <section aria-labelledby="conversation-title">
      <div class="toolbar">
        <h2 id="conversation-title" class="conversation-title">
          {c.title ?? "(no title)"}
        </h2>
        <span class="spacer" />
        <LiveStatus live={props.live} />
      </div>
      <p class="muted">
        {c.account_id ? `${c.account_id} (${c.domain})` : c.domain} · {formatTime(c.first_at)} to {formatTime(c.last_at)} · {c.models.join(", ") || "no model"}
      </p>
      <div class="stats" aria-label="Totals">
        <Stat label="Requests" value={formatCount(c.requests)} />
        <Stat label="Failed" value={formatCount(c.failed)} />
        <Stat label="Input tokens" value={formatCount(c.input_tokens)} />
        <Stat label="Output tokens" value={formatCount(c.output_tokens)} />
        <Stat label="Cache write" value={formatCount(c.cache_creation_input_tokens)} />
        <Stat label="Cache read" value={formatCount(c.cache_read_input_tokens)} />
        <Stat label="Estimated cost" value={formatCost(c.cost_usd)} />
        <Stat label="Duration" value={formatSpan(c.duration_ms)} />
        <Stat label="Branches" value={formatCount(c.branches)} />
        <Stat label="Sub-tasks" value={formatCount(c.subtasks)} />
        <Stat label="Compactions" value={formatCount(c.compactions)} />
      </div>
    </section>
  );
}

function NodeDetails(props: { p: PlacedNode }) {
  const n = props.p.node;
  const fields: [string, string][] = [
    ["Branch", props.p.compaction ? `${n.branch_id} (compaction point)` : n.branch_id],
    ["Time", formatTime(n.timestamp)],
    ["Model", n.model ?? "–"],
    ["Latency", formatMs(n.duration_ms)],
    ["Input tokens", formatCount(n.input_tokens)],
    ["Output tokens", formatCount(n.output_tokens)],
    ["Cache write tokens", formatCount(n.cache_creation_input_tokens)],
    ["Cache read tokens", formatCount(n.cache_read_input_tokens)],
    ["Estimated cost", formatCost(n.cost_usd)],
    ["Messages sent", n.message_count === null ? "–" : formatCount(n.message_count)],
  ];
  return (
    <section class="card" aria-labelledby="node-title">
      <h2 id="node-title">
        <span class={`badge ${statusClass(n.status)}`}>{n.status}</span> Selected request
      </h2>
      {n.error && <p class="error">{n.error}</p>}
      <dl class="fields">
        {fields.map(([k, v]) => (
          <>
            <dt>{k}</dt>
            <dd>{v}</dd>
          </>
        ))}
      </dl>
      <p>
        <Link href={`/requests/${encodeURIComponent(n.request_id)}`}>Request details</Link>
      </p>
    </section>
  );
}

/** The selected request's transcript: what it sent (the branch up to it) and its answer. */
function TranscriptCard(props: { p: PlacedNode; onError: (e: unknown) => void }) {
  const id = props.p.node.request_id;
  const [shown, setShown] = useState<{ id: string; transcript: Transcript } | null>(null);
  const [error, setError] = useState("");

  useEffect(() => {
    let current = true;
    setError("");
    api
      .request(id)
      .then((detail) => current && setShown({ id, transcript: transcript(detail) }))
      .catch((e) => {
        props.onError(e);
        if (current) setError(e instanceof Error ? e.message : String(e));
      });
    return () => {
      current = false;
    };
  }, [id]);

  const t = shown?.id === id ? shown.transcript : null;
  return (
    <section class="card" aria-labelledby="transcript-title">
      <h2 id="transcript-title">Transcript of {props.p.node.branch_id}</h2>
      <p class="muted small">The messages of the request of {formatTime(props.p.node.timestamp)}, then its answer.</p>
      {error ? (
        <p class="error" role="alert">{error}</p>
      ) : !t ? (
        <p class="loading">Loading…</p>
      ) : !t.stored ? (
        <p class="muted">Bodies are not stored: set STORAGE_ENABLED=true to see transcripts.</p>
      ) : (
        <>
          <ol class="turns" aria-label="Transcript">
            {t.turns.map((turn) => (
              <TurnView turn={turn} />
            ))}
            {t.answer && <TurnView turn={t.answer} answer />}
          </ol>
          {t.note && <p class="muted">{t.note}</p>}
        </>
      )}
    </section>
  );
}

function TurnView(props: { turn: Turn; answer?: boolean }) {
  const who = props.answer ? "Answer" : props.turn.role === "user" ? "User" : "Assistant";
  return (
    <li class={`turn ${props.turn.role}${props.answer ? " answer" : ""}`}>
      <div class="turn-role">{who}</div>
      {props.turn.blocks.map((b) => (
        <BlockView block={b} />
      ))}
    </li>
  );
}

function BlockView(props: { block: Block }) {
  const b = props.block;
  switch (b.type) {
    case "text":
      return <p class="turn-text">{b.text}</p>;
    case "thinking":
      return <Fold summary="Thinking" text={b.text} />;
    case "tool_use":
      return <Fold kind="Tool call" summary={b.name} text={b.input} />;
    case "tool_result":
      return <Fold kind={b.error ? "Failed result of" : "Result of"} summary={b.name} text={b.content} error={b.error} />;
    default:
      return <p class="muted">[{b.kind}]</p>;
  }
}

/** A folded block: its summary names it (a tool's name), the text is shown on opening. */
function Fold(props: { kind?: string; summary: string; text: string; error?: boolean }) {
  return (
    <details class={props.error ? "fold error" : "fold"}>
      <summary>
        {props.kind && <span class="muted">{props.kind} </span>}
        {props.summary}
      </summary>
      <pre>{props.text}</pre>
    </details>
  );
}
