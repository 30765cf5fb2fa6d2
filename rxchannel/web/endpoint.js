// An endpoint of the hub (route endpoints/<name>/<path>: an HTTP service the hub reaches and
// the page cannot) as a fetch() Response whose body is pulled with demand.
//
//   const response = await hub.endpoint("api", "/items?limit=5", { headers: { accept: "application/json" } });
//   response.status, response.headers.get("content-type")  // from the first item's metadata
//   const items = await response.json();                    // each chunk read is one credit back to the hub
//   await (await hub.endpoint("api", "/export")).body.pipeTo(writable);  // the writable paces the upstream
//   await hub.endpoint("api", "/upload", { method: "PUT", body: file });  // a Blob or ReadableStream: streamed
//
// The request: a REQUEST_STREAM whose JSON metadata carries method, headers and query (a
// string or bytes body rides in its data), or a REQUEST_CHANNEL when the body is a Blob or a
// ReadableStream: its chunks go out only within the hub's credit, i.e. as the hub writes them
// upstream. The answer's first item says {type: "endpoint", status, reason, headers, size};
// the hub passes on only its allow-list of headers. Leaving the body unread and cancelling
// it (or aborting `signal`) sends CANCEL, and the hub aborts the upstream request.

import { policyFor } from "./demand.js";
import { ERROR_CODE, LocalProtocolError, RemoteProtocolError } from "./errors.js";
import { parseRequestMetadata } from "./metadata.js";

const EMPTY = new Uint8Array(0);
const utf8 = new TextEncoder();
/** Bytes per item of a streamed request body, as the Python client's. */
export const UPLOAD_CHUNK = 64 * 1024;
/** Statuses whose Response has no body (the fetch standard's "null body status"). */
const NULL_BODY = new Set([101, 103, 204, 205, 304]);

function bytesOf(value) {
  if (value instanceof Uint8Array) return value;
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  if (typeof value === "string") return utf8.encode(value);
  throw new LocalProtocolError(`a request body's chunks must be bytes or strings, got ${typeof value}`);
}

/**
 * `reader`'s chunks (made bytes by `bytesOf`) re-cut into items of at most `chunkSize` bytes:
 * `next()` resolves to the next item, or null once the source has ended; `close()` releases
 * an ended source and cancels one that has not ended.
 */
export function rechunk(reader, chunkSize, bytesOf) {
  let pending = EMPTY, at = 0, ended = false;
  return {
    next: async () => {
      while (at >= pending.length) {
        if (ended) return null;
        const { done, value } = await reader.read();
        if (done) { ended = true; return null; }
        pending = bytesOf(value);
        at = 0;
      }
      const chunk = pending.subarray(at, at + chunkSize);
      at += chunk.length;
      return chunk;
    },
    close: () => {
      if (!ended) reader.cancel().catch(() => {});
      else reader.releaseLock();
    },
  };
}

/** Headers as the hub takes them: an object of lower-case names to strings. */
function headerObject(headers) {
  const out = {};
  const entries = typeof headers.entries === "function" && !Array.isArray(headers) ? headers.entries() : Array.isArray(headers) ? headers : Object.entries(headers);
  for (const [name, value] of entries) out[String(name).toLowerCase()] = String(value);
  return out;
}

/** A promise that rejects with an AbortError once `signal` aborts (or never, without one). */
function abortable(promise, signal, onAbort) {
  if (!signal) return promise;
  return new Promise((resolve, reject) => {
    const abort = () => { onAbort(); reject(signal.reason ?? new DOMException("the request was aborted", "AbortError")); };
    if (signal.aborted) { abort(); return; }
    signal.addEventListener("abort", abort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", abort));
  });
}

/**
 * `hub.endpoint(name, path, init)`: see the top of this module. Resolves to a Response once
 * the head has arrived; rejects with RemoteError when the hub refuses (no such endpoint, a
 * path out of it, a limit) or the upstream fails (code 0x305: refused, timed out, reset).
 * A status of 400 or more is a Response like any other (response.ok is false).
 */
export async function requestEndpoint(hub, name, path = "/", init = {}) {
  const { method = null, headers = null, query = null, body = null, window, highWaterMark, signal = null } = init;
  let { size = null } = init;
  if (!name || String(name).includes("/")) throw new LocalProtocolError(`${JSON.stringify(name)} is not an endpoint name`);
  const route = `endpoints/${name}/${String(path).replace(/^\/+/, "")}`;
  const info = {};
  if (method) info.method = String(method).toUpperCase();
  if (headers) info.headers = headerObject(headers);
  if (query !== null) info.query = query instanceof URLSearchParams ? query.toString() : query;
  let data = EMPTY, upload = null;
  if (body !== null && body !== undefined) {
    if (typeof body.getReader === "function") upload = body;
    else if (typeof body.stream === "function") { upload = body.stream(); if (size === null) size = body.size; }
    else data = body instanceof URLSearchParams ? utf8.encode(body.toString()) : bytesOf(body);
    if (!info.method) info.method = "POST";
  }
  if (upload && size !== null) info.size = size;
  signal?.throwIfAborted();

  let head = null, resolveHead, rejectHead;
  const ready = new Promise((resolve, reject) => { resolveHead = resolve; rejectHead = reject; });
  ready.catch(() => {});
  let wake = null;
  const nudge = () => { const w = wake; wake = null; if (w) w(); };
  let stream = null;
  const readable = hub._readable(route, data, info, policyFor(window ?? highWaterMark), (item) => item.data, {
    kind: upload ? "CHANNEL" : "STREAM",
    arrived: (item) => {
      if (head !== null) return;
      head = item.metadata && item.metadata.length ? parseRequestMetadata(item.metadata).info : {};
      resolveHead(head);
    },
    fail: (error) => rejectHead(error),
    events: upload ? { credit: nudge, cancel: nudge, error: nudge } : {},
    opened: (s) => { stream = s; },
  });
  if (upload) sendBody(hub, stream, upload, () => new Promise((resolve) => { wake = resolve; }));
  await abortable(ready, signal, () => readable.cancel().catch(() => {}));
  if (head.type !== "endpoint" || !Number.isInteger(head.status) || head.status < 200 || head.status > 599) {
    await readable.cancel().catch(() => {});
    throw new RemoteProtocolError(`${route} did not answer as an endpoint (type ${head.type}, status ${head.status})`, ERROR_CODE.INVALID);
  }
  const nullBody = NULL_BODY.has(head.status) || info.method === "HEAD";
  if (nullBody) readable.cancel().catch(() => {}); // its one empty item; nothing is sent if it already completed
  const response = new Response(nullBody ? null : readable, {
    status: head.status, statusText: head.reason || "", headers: new Headers(head.headers || {}),
  });
  if (signal && !nullBody) signal.addEventListener("abort", () => readable.cancel().catch(() => {}), { once: true });
  /** What the hub said ({type, status, reason, headers, size}) and the stream's demand figures. */
  Object.defineProperty(response, "rxchannel", { value: { route, info: head, get stats() { return readable.stats; } } });
  return response;
}

/**
 * Send `source` (a ReadableStream) as a channel's items, re-cut to UPLOAD_CHUNK bytes, each
 * only within the hub's credit; read at most one chunk ahead, so the end goes out with the
 * last chunk (COMPLETE needs no credit). A failing source ends the stream with ERROR.
 */
async function sendBody(hub, s, source, waitForCredit) {
  const chunks = rechunk(source.getReader(), UPLOAD_CHUNK, bytesOf);
  const nextChunk = chunks.next;
  try {
    let held; // undefined: nothing read ahead yet; null: the source has ended
    for (;;) {
      while (s.outbound === "open" && !s.credit && !s.unboundedCredit) await waitForCredit();
      if (s.outbound !== "open") break; // refused, cancelled or failed: the response says why
      const current = held === undefined ? await nextChunk() : held;
      held = current === null ? null : await nextChunk();
      if (s.outbound !== "open") break;
      const last = held === null;
      await hub._sendItem(s, current === null ? EMPTY : current, null, last);
      if (last) break;
    }
  } catch (error) {
    if (s.outbound === "open") { // ERROR ends both halves: the response fails with the source's error
      hub._sendError(s, ERROR_CODE.APPLICATION_ERROR, `the request body's source failed: ${error.message}`);
      s.events.error(error);
    }
  } finally {
    chunks.close();
  }
}
