// The live event log (GET /v1/events/stream) read with fetch(), because EventSource cannot
// send the Authorization header the service asks of every caller. Server-Sent Events framing
// is parsed here; a dropped connection resumes after the last event seen, as Last-Event-ID
// would.

import { authHeaders, get } from "./api.js";

const RETRY_MS = 2000;

function parse(block) {
  const event = {};
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    event[field] = field === "data" && event.data !== undefined ? `${event.data}\n${value}` : value;
  }
  return event;
}

/**
 * Calls onEvent(event) for every event recorded from now on; onStatus("live" | "reconnecting"
 * | "off") says how the connection is. Returns the function that stops following.
 */
export function follow(onEvent, onStatus = () => {}) {
  const abort = new AbortController();
  let stopped = false;
  let position = null;

  async function connect() {
    position ??= (await get("/v1/events", { limit: 1 })).head;
    const response = await fetch(`/v1/events/stream?after=${position}`, {
      headers: { ...authHeaders(), Accept: "text/event-stream" },
      cache: "no-store",
      signal: abort.signal,
    });
    if (response.status === 401 || response.status === 403) return false;
    if (!response.ok) throw new Error(`stream: HTTP ${response.status}`);
    onStatus("live");
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return true;
      buffer += value.replaceAll("\r\n", "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const event = parse(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
        if (event.id) position = Number(event.id);
        if (event.data) onEvent(JSON.parse(event.data));
      }
    }
  }

  (async () => {
    while (!stopped) {
      try {
        if (!(await connect())) break;
      } catch {
        if (stopped) return;
      }
      onStatus("reconnecting");
      await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
    }
    onStatus("off");
  })();

  return () => {
    stopped = true;
    abort.abort();
  };
}
