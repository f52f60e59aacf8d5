import { describe, expect, it } from "vitest";
import { eventData, streamAnswer, stripReminders, transcript } from "./transcript";

/** An SSE event as the proxy stores it: the lines as sent. */
const sse = (data: object) => ({ timestamp: "2026-11-28T10:00:00.000Z", data: `event: ${(data as { type: string }).type}\ndata: ${JSON.stringify(data)}\n` });

const request = {
  model: "claude-sonnet-4-5",
  system: [{ type: "text", text: "You are Claude Code." }],
  messages: [
    { role: "system", content: "not a Messages API role, never shown" },
    {
      role: "user",
      content: [
        { type: "text", text: "<system-reminder>\nCLAUDE.md says: be brief\n</system-reminder>" },
        { type: "text", text: "Fix the failing test in parser.rs\n\n<system-reminder>todo list is empty</system-reminder>" },
      ],
    },
    {
      role: "assistant",
      content: [
        { type: "thinking", thinking: "Look at the test first.", signature: "sig" },
        { type: "text", text: "Let me look." },
        { type: "tool_use", id: "toolu_1", name: "Bash", input: { command: "cargo test parser" } },
      ],
    },
    {
      role: "user",
      content: [
        { type: "tool_result", tool_use_id: "toolu_1", content: [{ type: "text", text: "1 failed" }, { type: "image", source: {} }], is_error: true },
      ],
    },
    { role: "user", content: "<system-reminder>only a reminder</system-reminder>" },
    { role: "user", content: "Use <b>no</b> HTML" },
  ],
};

describe("transcript", () => {
  it("strips Claude Code's system reminders, however many and wherever they are", () => {
    expect(stripReminders("<system-reminder>a\nb</system-reminder>\nHello\n<system-reminder>c</system-reminder>")).toBe("Hello");
    expect(stripReminders("one <system-reminder>x</system-reminder>two")).toBe("one two");
    expect(stripReminders("no reminder")).toBe("no reminder");
  });

  it("says so when bodies are not stored", () => {
    expect(transcript({ request_body: null, response_body: null, events: [] })).toEqual({ stored: false });
  });

  it("turns the request's messages into user and assistant turns, with tool calls and their results named", () => {
    const t = transcript({ request_body: JSON.stringify(request), response_body: null, events: [] });
    expect(t).toEqual({
      stored: true,
      turns: [
        { role: "user", blocks: [{ type: "text", text: "Fix the failing test in parser.rs" }] },
        {
          role: "assistant",
          blocks: [
            { type: "thinking", text: "Look at the test first." },
            { type: "text", text: "Let me look." },
            { type: "tool_use", name: "Bash", input: '{\n  "command": "cargo test parser"\n}' },
          ],
        },
        { role: "user", blocks: [{ type: "tool_result", name: "Bash", content: "1 failed\n[image]", error: true }] },
        { role: "user", blocks: [{ type: "text", text: "Use <b>no</b> HTML" }] },
      ],
      answer: null,
      note: "No answer was stored for this request.",
    });
  });

  it("takes the answer from a JSON response", () => {
    const response = { type: "message", role: "assistant", content: [{ type: "text", text: "Fixed." }, { type: "tool_use", id: "toolu_2", name: "Task", input: { prompt: "Find all callers of parse()" } }] };
    const t = transcript({ request_body: JSON.stringify(request), response_body: JSON.stringify(response), events: [] });
    expect(t.stored && t.answer).toEqual({
      role: "assistant",
      blocks: [
        { type: "text", text: "Fixed." },
        { type: "tool_use", name: "Task", input: '{\n  "prompt": "Find all callers of parse()"\n}' },
      ],
    });
    expect(t.stored && t.note).toBe(null);
  });

  it("says when the answer was an error, or is not JSON", () => {
    const error = { type: "error", error: { type: "overloaded_error", message: "Overloaded" } };
    const t = transcript({ request_body: JSON.stringify(request), response_body: JSON.stringify(error), events: [] });
    expect(t.stored && [t.answer, t.note]).toEqual([null, "The answer was an error: overloaded_error: Overloaded."]);
    const u = transcript({ request_body: JSON.stringify(request), response_body: "<html>", events: [] });
    expect(u.stored && u.note).toBe("The answer is not JSON.");
  });

  it("says when the request is not a Messages request", () => {
    const t = transcript({ request_body: "{}", response_body: null, events: [] });
    expect(t).toEqual({ stored: true, turns: [], answer: null, note: "The request is not a Messages API request (no messages)." });
    expect(transcript({ request_body: "not json", response_body: null, events: [] })).toEqual(t);
  });

  it("reassembles a streamed answer: text, thinking and tool calls from their deltas, in index order", () => {
    const events = [
      sse({ type: "message_start", message: { id: "msg_1", content: [] } }),
      sse({ type: "content_block_start", index: 0, content_block: { type: "thinking", thinking: "" } }),
      sse({ type: "content_block_delta", index: 0, delta: { type: "thinking_delta", thinking: "Callers, " } }),
      sse({ type: "content_block_delta", index: 0, delta: { type: "thinking_delta", thinking: "then tests." } }),
      sse({ type: "content_block_delta", index: 0, delta: { type: "signature_delta", signature: "sig" } }),
      sse({ type: "content_block_start", index: 1, content_block: { type: "text", text: "" } }),
      sse({ type: "content_block_delta", index: 1, delta: { type: "text_delta", text: "Hello" } }),
      sse({ type: "content_block_start", index: 2, content_block: { type: "tool_use", id: "toolu_9", name: "Grep", input: {} } }),
      sse({ type: "content_block_delta", index: 2, delta: { type: "input_json_delta", partial_json: '{"pattern":' } }),
      // Blocks may interleave: each delta goes to its own index.
      sse({ type: "content_block_delta", index: 1, delta: { type: "text_delta", text: " there" } }),
      sse({ type: "content_block_delta", index: 2, delta: { type: "input_json_delta", partial_json: '"parse\\\\("}' } }),
      sse({ type: "ping" }),
      sse({ type: "message_delta", delta: { stop_reason: "tool_use" }, usage: { output_tokens: 9 } }),
      sse({ type: "message_stop" }),
    ];
    expect(streamAnswer(events, new Map())).toEqual({
      turn: {
        role: "assistant",
        blocks: [
          { type: "thinking", text: "Callers, then tests." },
          { type: "text", text: "Hello there" },
          { type: "tool_use", name: "Grep", input: '{\n  "pattern": "parse\\\\("\n}' },
        ],
      },
      note: null,
    });
  });

  it("uses the stream only when there is no JSON response, and says when it was cut short or failed", () => {
    const start = sse({ type: "content_block_start", index: 0, content_block: { type: "text", text: "" } });
    const delta = sse({ type: "content_block_delta", index: 0, delta: { type: "text_delta", text: "Half an ans" } });
    const cut = transcript({ request_body: JSON.stringify(request), response_body: null, events: [start, delta] });
    expect(cut.stored && cut.answer).toEqual({ role: "assistant", blocks: [{ type: "text", text: "Half an ans" }] });
    expect(cut.stored && cut.note).toBe("The stream ended before its end (no message_stop): the answer may be cut short.");

    const failed = streamAnswer([start, sse({ type: "error", error: { type: "overloaded_error", message: "Overloaded" } })], new Map());
    expect(failed).toEqual({ turn: null, note: "The stream ended with an error: overloaded_error: Overloaded." });

    // A tool call whose input never arrived whole keeps the text that did.
    const partial = streamAnswer(
      [
        sse({ type: "content_block_start", index: 0, content_block: { type: "tool_use", id: "t", name: "Edit", input: {} } }),
        sse({ type: "content_block_delta", index: 0, delta: { type: "input_json_delta", partial_json: '{"file_path":"src/pa' } }),
      ],
      new Map(),
    );
    expect(partial.turn).toEqual({ role: "assistant", blocks: [{ type: "tool_use", name: "Edit", input: '{"file_path":"src/pa' }] });
  });

  it("reads an event's data lines, or the event as plain JSON", () => {
    expect(eventData('event: ping\ndata: {"type":"ping"}\n')).toEqual({ type: "ping" });
    expect(eventData('data: {"type":\ndata: "ping"}')).toEqual({ type: "ping" });
    expect(eventData('{"type":"ping"}')).toEqual({ type: "ping" });
    expect(eventData("event: ping\n")).toBe(undefined);
  });
});
