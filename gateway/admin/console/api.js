// Every data call carries the admin token from sessionStorage in the Authorization header; the token never goes
// into a URL (URLs end up in logs, history and Referer headers).

const KEY = "agent-gateway.admin-token";
const BASE = new URL("../", import.meta.url); // the admin API root: the console is served at <root>/console/

export const token = {
  get: () => sessionStorage.getItem(KEY),
  set: (value) => sessionStorage.setItem(KEY, value),
  clear: () => sessionStorage.removeItem(KEY),
};

/** A refusal from the admin API, carrying its RFC 9457 problem document. */
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
  }
}

function headers(extra = {}) {
  return { Authorization: `Bearer ${token.get()}`, ...extra };
}

export function url(path) {
  return new URL(path.replace(/^\//, ""), BASE);
}

/** Call the admin API; resolves to the parsed JSON answer (null for 204), rejects with an ApiError. */
export async function api(path, { method = "GET", body } = {}) {
  const init = { method, headers: headers({ Accept: "application/json" }), cache: "no-store" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(url(path), init);
  if (response.status === 204) return null;
  const text = await response.text();
  let document = null;
  try {
    document = text ? JSON.parse(text) : null;
  } catch {
    document = { detail: text };
  }
  if (!response.ok) throw new ApiError(response.status, document);
  return document;
}

function parseFrame(frame) {
  let name = "message";
  const data = [];
  for (const line of frame.split("\n")) {
    if (line.startsWith("event:")) name = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
  }
  return data.length ? { name, data: JSON.parse(data.join("\n")) } : null;
}

/**
 * Read the server-sent events of `GET /events` until the stream ends or `signal` aborts. fetch() with a stream
 * reader instead of EventSource, because EventSource cannot send the Authorization header.
 */
export async function follow(onEvent, signal) {
  const response = await fetch(url("/events"), {
    headers: headers({ Accept: "text/event-stream" }),
    cache: "no-store",
    signal,
  });
  if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => null));
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = parseFrame(buffer.slice(0, end));
      buffer = buffer.slice(end + 2);
      if (event) onEvent(event.name, event.data);
    }
  }
}
