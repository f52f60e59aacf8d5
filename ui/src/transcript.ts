// A request's conversation as readable turns: the Messages API request (its `messages`) and
// the answer, from the JSON response or reassembled from the stream's events. Pure (no DOM),
// tested in transcript.test.ts. Everything stays text: the page renders it as text, never HTML.

import type { RequestDetail } from "./api";

export type Block =
  | { type: "text"; text: string }
  | { type: "thinking"; text: string }
  | { type: "tool_use"; name: string; input: string }
  | { type: "tool_result"; name: string; content: string; error: boolean }
  /** What has no text to show (an image, a document, redacted thinking): its kind. */
  | { type: "other"; kind: string };

export interface Turn {
  role: "user" | "assistant";
  blocks: Block[];
}

export type Transcript =
  | { stored: false }
  | {
      stored: true;
      /** The messages the request sent (system messages and reminders left out). */
      turns: Turn[];
      /** The answer, when there is one to show. */
      answer: Turn | null;
      /** What keeps the transcript from being whole: an unreadable body, an error answer, a
       * stream cut short. */
      note: string | null;
    };

/** Claude Code's `<system-reminder>` blocks, which it adds to the user's own text. */
const REMINDER = /<system-reminder>[\s\S]*?<\/system-reminder>/g;

export function stripReminders(text: string): string {
  return text.replace(REMINDER, "").trim();
}

type Json = Record<string, unknown>;

const isObject = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);
const str = (v: unknown): string => (typeof v === "string" ? v : "");

function parse(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** A tool call's input as indented JSON (as sent when it is not JSON, as a stream may end). */
function inputText(input: unknown): string {
  return typeof input === "string" ? input : JSON.stringify(input ?? {}, null, 2);
}

/** A tool result's content: its text parts, one per line, other parts by their kind. */
function resultText(content: unknown): string {
  if (typeof content === "string") return stripReminders(content);
  if (!Array.isArray(content)) return "";
  return content
    .map((part) => (isObject(part) && part.type === "text" ? stripReminders(str(part.text)) : `[${isObject(part) ? str(part.type) : "?"}]`))
    .filter((t) => t !== "")
    .join("\n");
}

/**
 * One content block as shown, or null when nothing is left of it (a text that was only
 * reminders). `tools` names the tool calls seen so far by id, so that a result says whose it is.
 */
function block(raw: unknown, tools: Map<string, string>): Block | null {
  if (!isObject(raw)) return null;
  switch (raw.type) {
    case "text": {
      const text = stripReminders(str(raw.text));
      return text ? { type: "text", text } : null;
    }
    case "thinking": {
      const text = str(raw.thinking);
      return text ? { type: "thinking", text } : null;
    }
    case "tool_use":
    case "server_tool_use": {
      const name = str(raw.name) || "tool";
      tools.set(str(raw.id), name);
      return { type: "tool_use", name, input: inputText(raw.input) };
    }
    case "tool_result":
      return {
        type: "tool_result",
        name: tools.get(str(raw.tool_use_id)) ?? "tool",
        content: resultText(raw.content),
        error: raw.is_error === true,
      };
    default:
      return { type: "other", kind: str(raw.type) || "unknown" };
  }
}

function blocks(content: unknown, tools: Map<string, string>): Block[] {
  if (typeof content === "string") {
    const text = stripReminders(content);
    return text ? [{ type: "text", text }] : [];
  }
  if (!Array.isArray(content)) return [];
  return content.map((c) => block(c, tools)).filter((b): b is Block => b !== null);
}

/** The request's messages as turns: user and assistant only, those left empty dropped. */
export function requestTurns(request: unknown, tools: Map<string, string>): Turn[] | null {
  if (!isObject(request) || !Array.isArray(request.messages)) return null;
  const turns: Turn[] = [];
  for (const m of request.messages) {
    if (!isObject(m) || (m.role !== "user" && m.role !== "assistant")) continue;
    const shown = blocks(m.content, tools);
    if (shown.length > 0) turns.push({ role: m.role, blocks: shown });
  }
  return turns;
}

/** An Anthropic error object in one line, as the proxy records it: "type: message". */
function describeError(error: unknown): string {
  if (!isObject(error)) return "unknown error";
  return [str(error.type), str(error.message)].filter(Boolean).join(": ") || "unknown error";
}

export interface Answer {
  turn: Turn | null;
  note: string | null;
}

/** The answer in a JSON response: a message, or an error. */
export function jsonAnswer(body: string, tools: Map<string, string>): Answer {
  const message = parse(body);
  if (!isObject(message)) return { turn: null, note: "The answer is not JSON." };
  if (message.type === "error" || message.error !== undefined) {
    return { turn: null, note: `The answer was an error: ${describeError(message.error)}.` };
  }
  return { turn: { role: "assistant", blocks: blocks(message.content, tools) }, note: null };
}

/** The JSON of one stored SSE event: its `data:` lines (the event as sent: `event: …` and
 * `data: …` lines), or the whole text when it has none. */
export function eventData(text: string): unknown {
  const lines = text.split("\n").filter((l) => l.startsWith("data:"));
  if (lines.length === 0) return parse(text);
  return parse(lines.map((l) => l.slice(5).replace(/^ /, "")).join("\n"));
}

/** A content block being streamed: the raw block of `content_block_start`, and what the
 * deltas added (text and thinking, or a tool call's input as JSON text). */
interface Streamed {
  start: Json;
  text: string;
  json: string;
}

/**
 * The answer reassembled from a stream's events: each content block from its
 * `content_block_start`, completed by its `content_block_delta`s (`text_delta`,
 * `thinking_delta`, `input_json_delta`), in the order of their index.
 */
export function streamAnswer(events: { data: string }[], tools: Map<string, string>): Answer {
  const streamed = new Map<number, Streamed>();
  let stopped = false;
  let error: string | null = null;
  for (const e of events) {
    const data = eventData(e.data);
    if (!isObject(data)) continue;
    const index = typeof data.index === "number" ? data.index : -1;
    if (data.type === "content_block_start" && isObject(data.content_block)) {
      streamed.set(index, { start: data.content_block, text: "", json: "" });
    } else if (data.type === "content_block_delta" && isObject(data.delta)) {
      const b = streamed.get(index);
      if (!b) continue;
      b.text += str(data.delta.text) + str(data.delta.thinking);
      b.json += str(data.delta.partial_json);
    } else if (data.type === "message_stop") {
      stopped = true;
    } else if (data.type === "error") {
      error = describeError(data.error);
    }
  }
  const shown = [...streamed.entries()]
    .sort(([a], [b]) => a - b)
    .map(([, b]) => {
      switch (b.start.type) {
        case "text":
          return block({ ...b.start, text: str(b.start.text) + b.text }, tools);
        case "thinking":
          return block({ ...b.start, thinking: str(b.start.thinking) + b.text }, tools);
        case "tool_use":
        case "server_tool_use":
          return block({ ...b.start, input: b.json ? (parse(b.json) ?? b.json) : b.start.input }, tools);
        default:
          return block(b.start, tools);
      }
    })
    .filter((b): b is Block => b !== null);
  const turn = shown.length > 0 ? { role: "assistant" as const, blocks: shown } : null;
  if (error) return { turn, note: `The stream ended with an error: ${error}.` };
  if (!stopped) return { turn, note: "The stream ended before its end (no message_stop): the answer may be cut short." };
  return { turn, note: null };
}

/** A stored request as a transcript: what it sent, then what came back. */
export function transcript(detail: Pick<RequestDetail, "request_body" | "response_body" | "events">): Transcript {
  if (detail.request_body === null) return { stored: false };
  const tools = new Map<string, string>();
  const turns = requestTurns(parse(detail.request_body), tools);
  if (turns === null) return { stored: true, turns: [], answer: null, note: "The request is not a Messages API request (no messages)." };
  const answer =
    detail.response_body !== null
      ? jsonAnswer(detail.response_body, tools)
      : detail.events.length > 0
        ? streamAnswer(detail.events, tools)
        : { turn: null, note: "No answer was stored for this request." };
  return { stored: true, turns, answer: answer.turn, note: answer.note };
}
