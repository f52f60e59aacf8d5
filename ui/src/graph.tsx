// The conversation graph: `layoutGraph`'s lanes drawn as an SVG, each request a node to click
// (or to reach with Tab and press Enter) that selects it; above, the branches as buttons that
// select a branch's latest request. Colours: a lane's from the chart palette; the rest from
// the theme's variables (style.css), which also win over the palette for a failed request.
import { useEffect, useRef } from "preact/hooks";
import type { ConversationBranch } from "./api";
import { color } from "./chart";
import { branchKind, edgePath, type GraphLayout, LANE_WIDTH, laneX, nodeLabel, nodeLine, type PlacedNode, ROW_HEIGHT, rowY } from "./conversation";
import { formatCount } from "./format";

/** The width of a character of a node's line (12 px monospace, style.css), with some to spare:
 * the graph is as wide as its longest line. */
const CHAR_WIDTH = 7.5;
const RADIUS = 6;

export function Graph(props: {
  layout: GraphLayout;
  selected: PlacedNode | null;
  onSelect: (node: PlacedNode) => void;
  onBranch: (branch: ConversationBranch) => void;
}) {
  const { lanes, nodes, edges } = props.layout;
  const selectedLane = props.selected?.lane ?? -1;
  const lines = nodes.map(nodeLine);
  const lineX = lanes.length * LANE_WIDTH + 8;
  const width = lineX + Math.max(0, ...lines.map((l) => l.length)) * CHAR_WIDTH;
  const height = Math.max(1, nodes.length) * ROW_HEIGHT;

  // The selected request stays in view as the graph scrolls (a long session, a link to a
  // request deep in it); only up and down, the lanes stay where they are.
  const wrap = useRef<HTMLDivElement>(null);
  const selectedRow = props.selected?.row;
  useEffect(() => {
    const box = wrap.current;
    if (!box || selectedRow === undefined) return;
    const top = selectedRow * ROW_HEIGHT;
    if (top < box.scrollTop || top + ROW_HEIGHT > box.scrollTop + box.clientHeight) box.scrollTop = top - box.clientHeight / 2;
  }, [selectedRow]);
  return (
    <>
      <ul class="branches" aria-label="Branches">
        {lanes.map((b, i) => (
          <li key={b.branch_id}>
            <button type="button" class="secondary" aria-pressed={i === selectedLane} onClick={() => props.onBranch(b)}>
              <span class="swatch" style={{ background: color(i) }} aria-hidden="true" />
              {b.branch_id}{" "}
              <span class="muted small">
                {branchKind(b)} · {formatCount(b.requests)} {b.requests === 1 ? "request" : "requests"}
              </span>
            </button>
          </li>
        ))}
      </ul>
      <div class="graph-wrap" ref={wrap}>
        <svg
          class="graph"
          width={width}
          height={height}
          viewBox={`0 0 ${width} ${height}`}
          role="group"
          aria-label="Conversation graph: a lane per branch, requests in time order"
        >
          {selectedLane >= 0 && <rect class="lane-band" x={selectedLane * LANE_WIDTH} y={0} width={LANE_WIDTH} height={height} rx={LANE_WIDTH / 2} />}
          {props.selected && <rect class="row-band" x={0} y={props.selected.row * ROW_HEIGHT} width={width} height={ROW_HEIGHT} />}
          {edges.map((e) => (
            <path key={`${e.from.node.request_id}-${e.to.node.request_id}`} class={`edge ${e.kind}`} d={edgePath(e.from, e.to)} stroke={color(e.to.lane)} />
          ))}
          {nodes.map((p, i) => (
            <Node key={p.node.request_id} p={p} line={lines[i]} x={lineX} selected={p === props.selected} onSelect={props.onSelect} />
          ))}
        </svg>
      </div>
    </>
  );
}

/** A request: its mark in its lane (a diamond where the context was compacted), and its line
 * at `x`, which is part of what one clicks. */
function Node(props: { p: PlacedNode; line: string; x: number; selected: boolean; onSelect: (node: PlacedNode) => void }) {
  const { p } = props;
  const [cx, cy] = [laneX(p.lane), rowY(p.row)];
  const label = nodeLabel(p);
  const select = () => props.onSelect(p);
  const r = p.compaction ? RADIUS + 2 : RADIUS;
  return (
    <g
      class={["node", p.failed && "failed", p.compaction && "compaction", props.selected && "selected"].filter(Boolean).join(" ")}
      role="button"
      tabIndex={0}
      aria-pressed={props.selected}
      aria-label={label}
      data-request-id={p.node.request_id}
      // A click selects without focusing: focus would scroll the graph sideways to show the
      // whole line, and the lanes out of view.
      onMouseDown={(e) => e.preventDefault()}
      onClick={select}
      onKeyDown={(e) => {
        if (e.key !== "Enter" && e.key !== " ") return;
        e.preventDefault();
        select();
      }}
    >
      <title>{label}</title>
      {p.compaction ? (
        <path class="mark" d={`M${cx} ${cy - r}L${cx + r} ${cy}L${cx} ${cy + r}L${cx - r} ${cy}Z`} fill={color(p.lane)} />
      ) : (
        <circle class="mark" cx={cx} cy={cy} r={r} fill={color(p.lane)} />
      )}
      <text x={props.x} y={cy} dy="0.35em">
        {props.line}
      </text>
    </g>
  );
}
