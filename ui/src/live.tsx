// The live feed of requests (server-sent events from /api/events, which the browser reconnects
// by itself) for the pages that grow as requests arrive: Requests, a conversation.
import { useEffect, useRef, useState } from "preact/hooks";
import type { RequestSummary } from "./api";

export type Live = "connecting" | "live" | "offline";

/** Calls `onRecord` with each new request's record while the page is open; the feed's state. */
export function useRequestEvents(onRecord: (record: RequestSummary) => void): Live {
  const [live, setLive] = useState<Live>("connecting");
  // The latest callback, so that it sees the page's current state without reconnecting.
  const handler = useRef(onRecord);
  handler.current = onRecord;
  useEffect(() => {
    const events = new EventSource("/api/events");
    events.onopen = () => setLive("live");
    events.onerror = () => setLive("offline");
    events.addEventListener("request", (e) => handler.current(JSON.parse((e as MessageEvent<string>).data) as RequestSummary));
    return () => events.close();
  }, []);
  return live;
}

export function LiveStatus(props: { live: Live }) {
  return (
    <span class={`live ${props.live}`} role="status">
      {props.live === "live" ? "● Live" : props.live === "connecting" ? "Connecting…" : "Live updates paused"}
    </span>
  );
}
