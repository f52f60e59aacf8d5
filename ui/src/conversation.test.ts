import { describe, expect, it } from "vitest";
import type { ConversationBranch, ConversationNode } from "./api";
import { emptyFilter } from "./format";
import { conversationHref, conversationQuery, edgePath, isFailed, laneX, layoutGraph, nodeLabel, nodeLine, rowY, ROW_HEIGHT, selectedNode } from "./conversation";

function node(request_id: string, branch_id: string, over: Partial<ConversationNode> = {}): ConversationNode {
  return {
    request_id,
    timestamp: "2026-11-28T10:00:00.000Z",
    parent_request_id: null,
    branch_id,
    is_subtask: false,
    parent_task_request_id: null,
    message_count: 1,
    model: "claude-sonnet-4-5",
    status: 200,
    error: null,
    input_tokens: 1200,
    output_tokens: 300,
    cache_creation_input_tokens: 0,
    cache_read_input_tokens: 0,
    cost_usd: 0.012,
    duration_ms: 2300,
    ...over,
  };
}

function branch(branch_id: string, kind: ConversationBranch["kind"], first: string, last = first): ConversationBranch {
  return { branch_id, kind, requests: 1, first_request_id: first, last_request_id: last, forked_from: null };
}

// A session: three turns on main, an edit of the second turn (a branch off the first), a Task
// call on main whose sub-task runs two requests, a compaction, and a failed request.
const nodes = [
  node("r1", "main"),
  node("r2", "main", { parent_request_id: "r1" }),
  node("r3", "main", { parent_request_id: "r2" }),
  node("b1", "branch_1", { parent_request_id: "r1" }),
  node("s1", "subtask_1", { is_subtask: true, parent_task_request_id: "r3" }),
  node("s2", "subtask_1", { is_subtask: true, parent_task_request_id: "r3", parent_request_id: "s1" }),
  node("r4", "main", { parent_request_id: "r3", status: 502, error: "stream broken" }),
  node("c1", "compact_142233", { parent_request_id: "r4" }),
];
// Listed in another order than their first requests': the layout orders the lanes.
const branches = [
  branch("compact_142233", "compact", "c1"),
  branch("subtask_1", "subtask", "s1", "s2"),
  branch("branch_1", "branch", "b1"),
  branch("main", "main", "r1", "r4"),
];

describe("conversation graph", () => {
  const layout = layoutGraph(nodes, branches);
  const at = (id: string) => layout.nodes.find((p) => p.node.request_id === id)!;

  it("puts main first, then the branches in the order of their first request", () => {
    expect(layout.lanes.map((b) => b.branch_id)).toEqual(["main", "branch_1", "subtask_1", "compact_142233"]);
  });

  it("places every request in its branch's lane, one row each in time order", () => {
    expect(layout.nodes.map((p) => [p.node.request_id, p.lane, p.row])).toEqual([
      ["r1", 0, 0],
      ["r2", 0, 1],
      ["r3", 0, 2],
      ["b1", 1, 3],
      ["s1", 2, 4],
      ["s2", 2, 5],
      ["r4", 0, 6],
      ["c1", 3, 7],
    ]);
  });

  it("marks where branches start, the compaction point and the failed request", () => {
    expect(layout.nodes.filter((p) => p.first).map((p) => p.node.request_id)).toEqual(["r1", "b1", "s1", "c1"]);
    expect(layout.nodes.filter((p) => p.compaction).map((p) => p.node.request_id)).toEqual(["c1"]);
    expect(layout.nodes.filter((p) => p.failed).map((p) => p.node.request_id)).toEqual(["r4"]);
    expect([200, 399, 400, 429, 499, 502, 504].map(isFailed)).toEqual([false, false, true, true, true, true, true]);
  });

  it("links each request to its parent, across lanes where a branch forks, and a sub-task to its Task call", () => {
    expect(layout.edges.map((e) => [e.from.node.request_id, e.to.node.request_id, e.kind])).toEqual([
      ["r1", "r2", "parent"],
      ["r2", "r3", "parent"],
      ["r1", "b1", "parent"],
      ["r3", "s1", "task"],
      ["s1", "s2", "parent"],
      ["r3", "r4", "parent"],
      ["r4", "c1", "parent"],
    ]);
  });

  it("draws one edge when a sub-task's first request names its Task call as parent too", () => {
    const { edges } = layoutGraph(
      [node("t", "main"), node("s", "subtask_1", { parent_request_id: "t", parent_task_request_id: "t" })],
      [branch("main", "main", "t"), branch("subtask_1", "subtask", "s")],
    );
    expect(edges.map((e) => e.kind)).toEqual(["task"]);
  });

  it("leaves out edges to requests the tree does not hold", () => {
    const { edges } = layoutGraph([node("x", "main", { parent_request_id: "gone" })], [branch("main", "main", "x")]);
    expect(edges).toEqual([]);
  });

  it("still draws a request whose branch is not listed, in a lane of its own", () => {
    const layout = layoutGraph([node("r1", "main"), node("b1", "branch_9", { parent_request_id: "r1" })], [branch("main", "main", "r1")]);
    expect(layout.lanes.map((b) => [b.branch_id, b.kind, b.first_request_id, b.forked_from])).toEqual([
      ["main", "main", "r1", null],
      ["branch_9", "branch", "b1", "r1"],
    ]);
    expect(layout.nodes.map((p) => p.lane)).toEqual([0, 1]);
  });

  it("selects the request chosen, else the latest of the branch chosen, else main's latest", () => {
    const pick = (branch: string | null, request: string | null) => selectedNode(layout, { branch, request })?.node.request_id;
    expect(pick(null, null)).toBe("r4");
    expect(pick("subtask_1", null)).toBe("s2");
    expect(pick("subtask_1", "r2")).toBe("r2");
    expect(pick("gone", "gone")).toBe("r4");
    expect(selectedNode(layoutGraph([], []), { branch: null, request: null })).toBe(null);
  });

  it("draws edges straight down a lane, or curving into the next lane below the fork", () => {
    expect(edgePath({ lane: 0, row: 0 }, { lane: 0, row: 2 })).toBe(`M${laneX(0)} ${rowY(0)}V${rowY(2)}`);
    const y0 = rowY(0);
    expect(edgePath({ lane: 0, row: 0 }, { lane: 1, row: 3 })).toBe(
      `M${laneX(0)} ${y0}C${laneX(0)} ${y0 + ROW_HEIGHT / 2} ${laneX(1)} ${y0 + ROW_HEIGHT / 2} ${laneX(1)} ${y0 + ROW_HEIGHT}V${rowY(3)}`,
    );
  });

  it("says what a request cost and took, and why it failed", () => {
    expect(nodeLine(at("r2"))).toMatch(/^\d\d:\d\d:\d\d · 1,200 in \/ 300 out · \$0\.01 · 2\.3 s$/);
    expect(nodeLine(at("b1"))).toMatch(/^branch_1 · \d\d:\d\d:\d\d · 1,200 in/);
    expect(nodeLine(at("c1"))).toMatch(/^compact_142233 · \d\d:\d\d:\d\d · compaction · 1,200 in/);
    expect(nodeLine(at("r4"))).toMatch(/^\d\d:\d\d:\d\d · 502 · 1,200 in/);
    expect(nodeLabel(at("r4"))).toMatch(/^main · 2026-11-2\d \d\d:\d\d:\d\d · failed: 502 \(stream broken\) · 1,200 in \/ 300 out · cost \$0\.01 · latency 2\.3 s$/);
    expect(nodeLabel(at("c1"))).toMatch(/^compact_142233, compaction point · /);
  });
});

describe("conversations query", () => {
  it("links to a conversation, and to a request in it", () => {
    expect(conversationHref("c 1")).toBe("/conversations/c%201");
    expect(conversationHref("c1", "r/1")).toBe("/conversations/c1?request=r%2F1");
  });

  it("asks for the sort and the set fields, the time range as from and to", () => {
    expect(conversationQuery(emptyFilter, "last_activity")).toBe("sort=last_activity");
    const q = new URLSearchParams(
      conversationQuery(
        {
          ...emptyFilter,
          domain: "a.example",
          account_id: "acc",
          client_key_id: "ck_1",
          model: "m",
          status: "500",
          streaming: "true",
          since: "2026-11-28T10:00",
          until: "2026-11-29T10:00",
        },
        "tokens",
        { cursor: "c1", limit: "50" },
      ),
    );
    expect(Object.fromEntries(q)).toEqual({
      domain: "a.example",
      account_id: "acc",
      client_key_id: "ck_1",
      model: "m",
      sort: "tokens",
      cursor: "c1",
      limit: "50",
      since: expect.stringMatching(/^2026-11-2\dT\d\d:00:00\.000Z$/),
      until: expect.stringMatching(/^2026-11-2\dT\d\d:00:00\.000Z$/),
    });
  });
});
