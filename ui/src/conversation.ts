// A conversation's tree as a graph: one lane (column) per branch, one row per request in time
// order, and the edges between them; and the conversations API's query. Pure (no DOM), tested
// in conversation.test.ts; graph.tsx draws what `layoutGraph` places.

import type { ConversationBranch, ConversationNode, ConversationSort } from "./api";
import { type Filter, filterQuery, formatCost, formatCount, formatMs, formatTime } from "./format";

/** The conversations API's query for a filter: the requests API's fields (totals cover the
 * requests they select), without status or streaming. */
export function conversationQuery(f: Filter, sort: ConversationSort, extra: Record<string, string> = {}): string {
  return filterQuery({ ...f, status: "", streaming: "" }, { sort, ...extra });
}

/** A conversation's page; with `request`, that request selected (and its branch). */
export function conversationHref(id: string, request?: string): string {
  return `/conversations/${encodeURIComponent(id)}${request ? `?request=${encodeURIComponent(request)}` : ""}`;
}

/** An answer that failed: an error status, the proxy's 499 (client gone), 502 (stream broken)
 * and 504 (stream idle) included. */
export function isFailed(status: number): boolean {
  return status >= 400;
}

/** A request placed in the graph. */
export interface PlacedNode {
  node: ConversationNode;
  lane: number;
  /** Its place in time order: one request per row. */
  row: number;
  /** The first request of its lane (where a branch starts). */
  first: boolean;
  /** The first request of a compaction branch: where the context was summarised. */
  compaction: boolean;
  failed: boolean;
}

export interface Edge {
  from: PlacedNode;
  to: PlacedNode;
  /** `parent`: the request continues (or, across lanes, forks from) `from`; `task`: a
   * sub-task hanging off the request whose `Task` tool call started it. */
  kind: "parent" | "task";
}

export interface GraphLayout {
  /** `main` first, then the other branches in the order of their first request. */
  lanes: ConversationBranch[];
  /** In time order: `nodes[i].row === i`. */
  nodes: PlacedNode[];
  edges: Edge[];
}

/**
 * Places a conversation's requests: a lane per branch, a row per request. Every request gets
 * a lane: a branch that the list of branches lacks is drawn all the same (as a plain branch).
 */
export function layoutGraph(nodes: ConversationNode[], branches: ConversationBranch[]): GraphLayout {
  const firstRow = new Map<string, number>();
  nodes.forEach((n, row) => {
    if (!firstRow.has(n.branch_id)) firstRow.set(n.branch_id, row);
  });
  const known = new Map(branches.map((b) => [b.branch_id, b]));
  for (const [branch_id, row] of firstRow) {
    if (known.has(branch_id)) continue;
    const own = nodes.filter((n) => n.branch_id === branch_id);
    known.set(branch_id, {
      branch_id,
      kind: "branch",
      requests: own.length,
      first_request_id: nodes[row].request_id,
      last_request_id: own[own.length - 1].request_id,
      forked_from: nodes[row].parent_request_id,
    });
  }
  const lanes = [...known.values()]
    .map((b, i) => ({ b, i, main: b.kind === "main" ? 0 : 1, at: firstRow.get(b.branch_id) ?? Infinity }))
    .sort((x, y) => x.main - y.main || x.at - y.at || x.i - y.i)
    .map(({ b }) => b);
  const laneOf = new Map(lanes.map((b, i) => [b.branch_id, i]));

  const placed: PlacedNode[] = nodes.map((node, row) => {
    const lane = laneOf.get(node.branch_id)!;
    const first = firstRow.get(node.branch_id) === row;
    return { node, lane, row, first, compaction: first && lanes[lane].kind === "compact", failed: isFailed(node.status) };
  });

  const byId = new Map(placed.map((p) => [p.node.request_id, p]));
  const edges: Edge[] = [];
  for (const p of placed) {
    // A sub-task hangs off its Task call by its first request; later ones follow in its lane.
    const task = p.first && p.node.parent_task_request_id ? byId.get(p.node.parent_task_request_id) : undefined;
    if (task) edges.push({ from: task, to: p, kind: "task" });
    const parent = p.node.parent_request_id ? byId.get(p.node.parent_request_id) : undefined;
    if (parent && parent !== task) edges.push({ from: parent, to: p, kind: "parent" });
  }
  return { lanes, nodes: placed, edges };
}

/**
 * The request the page shows: the one chosen when the graph holds it, else the latest of the
 * chosen branch, else the latest of the first lane (main). Following a branch's latest, the
 * selection moves on as the conversation grows.
 */
export function selectedNode(layout: GraphLayout, choice: { branch: string | null; request: string | null }): PlacedNode | null {
  const chosen = choice.request ? layout.nodes.find((p) => p.node.request_id === choice.request) : undefined;
  if (chosen) return chosen;
  const lane = Math.max(0, layout.lanes.findIndex((b) => b.branch_id === choice.branch));
  return layout.nodes.filter((p) => p.lane === lane).pop() ?? null;
}

/** The graph's grid, in SVG user units (px). */
export const LANE_WIDTH = 28;
export const ROW_HEIGHT = 30;

export function laneX(lane: number): number {
  return LANE_WIDTH / 2 + lane * LANE_WIDTH;
}

export function rowY(row: number): number {
  return ROW_HEIGHT / 2 + row * ROW_HEIGHT;
}

/**
 * An edge as an SVG path: straight down within a lane; into another lane, a curve within one
 * row's height right below `from`, then straight down that lane to `to`. The lane is empty
 * there: a branch's lane starts at its first request, the one a fork leads to.
 */
export function edgePath(from: { lane: number; row: number }, to: { lane: number; row: number }): string {
  const [x1, y1, x2, y2] = [laneX(from.lane), rowY(from.row), laneX(to.lane), rowY(to.row)];
  if (x1 === x2) return `M${x1} ${y1}V${y2}`;
  const bend = Math.min(ROW_HEIGHT, y2 - y1);
  const mid = y1 + bend / 2;
  return `M${x1} ${y1}C${x1} ${mid} ${x2} ${mid} ${x2} ${y1 + bend}V${y2}`;
}

/** What a branch is, in words. */
export function branchKind(b: ConversationBranch): string {
  switch (b.kind) {
    case "main":
      return "main";
    case "compact":
      return "after a compaction";
    case "subtask":
      return "sub-task";
    default:
      return "branch";
  }
}

/** A node's status in words: "200", or "failed: 502 (stream broken)". */
function statusText(p: PlacedNode): string {
  if (!p.failed) return String(p.node.status);
  return `failed: ${p.node.status}${p.node.error ? ` (${p.node.error})` : ""}`;
}

/** A node's line beside the graph: "14:03:07 · 1,200 in / 300 out · $0.01 · 2.3 s", with its
 * branch's name where the branch starts and its status when it failed. */
export function nodeLine(p: PlacedNode): string {
  const n = p.node;
  return [
    p.first && n.branch_id !== "main" ? n.branch_id : null,
    formatTime(n.timestamp).slice(11),
    p.compaction ? "compaction" : null,
    p.failed ? String(n.status) : null,
    `${formatCount(n.input_tokens)} in / ${formatCount(n.output_tokens)} out`,
    formatCost(n.cost_usd),
    formatMs(n.duration_ms),
  ]
    .filter((part) => part !== null)
    .join(" · ");
}

/** A node's name for its tooltip and for screen readers: all of the line, and the date. */
export function nodeLabel(p: PlacedNode): string {
  const n = p.node;
  return [
    `${n.branch_id}${p.compaction ? ", compaction point" : ""}`,
    formatTime(n.timestamp),
    statusText(p),
    `${formatCount(n.input_tokens)} in / ${formatCount(n.output_tokens)} out`,
    `cost ${formatCost(n.cost_usd)}`,
    `latency ${formatMs(n.duration_ms)}`,
  ].join(" · ");
}
