// One RSocket 1.0 connection over one DataChannel, as the requester a browser worker is.
//
//   const hub = await connect();                            // connect.js: POST /offer, DataChannel, SETUP
//   const file = hub.fetch("big.bin", { highWaterMark: 32 }); // a ReadableStream of Uint8Array
//   await file.pipeTo(writable);                            // the sink's pace is the hub's disk pace
//   const receipt = await hub.push("up.bin", blob);         // request-channel into the hub's inbox
//
// Demand is the one engine of demand.js (InboundDemand, checked against the Python core's):
// a stream's pull() asks for the next item, which tells the engine the previous one is
// done and may grant more (REQUEST_N). Items past credit are refused as the Python core
// refuses them: ERROR[INVALID] on the stream, and nothing past the credit is delivered.
// Every frame is decoded with length checks; a malformed frame ends the connection with
// ERROR[CONNECTION_ERROR], never an exception inside the message handler.

import { InboundDemand, Manual, policyFor } from "./demand.js";
import { rechunk, requestEndpoint } from "./endpoint.js";
import {
  ClosedResourceError, ConnectionLostError, ERROR_CODE, FrameError, IntegrityError, LocalProtocolError,
  RemoteError, RemoteProtocolError, errorCodeName,
} from "./errors.js";
import { Reassembly, encodeItem } from "./fragments.js";
import { MAX_REQUEST_N, decodeFrame, encodeFrame, encodePayload } from "./frames.js";
import { COMPOSITE_METADATA, OCTET_STREAM, bearerMetadata, jsonBytes, parseRequestMetadata, requestMetadata } from "./metadata.js";
import { SendQueue } from "./queue.js";
import { Sha256 } from "./sha256.js";

const EMPTY = new Uint8Array(0);
const utf8 = new TextDecoder();
/** Default chunk of an upload: 64 KiB of data per item, as the Python FileSource. */
export const CHUNK_SIZE = 64 * 1024;

const monotonic = () => (globalThis.performance ? performance.now() : Date.now()) / 1000;

/** Never let a promise nobody awaits become an unhandled rejection; callers who await it still see the error. */
function handled(promise) {
  promise.catch(() => {});
  return promise;
}

function deferred() {
  let resolve, reject;
  const promise = handled(new Promise((res, rej) => { resolve = res; reject = rej; }));
  return { promise, resolve, reject };
}

function bytesOf(value) {
  if (value instanceof Uint8Array) return value;
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  throw new LocalProtocolError(`an upload's chunks must be bytes (Uint8Array, ArrayBuffer), got ${typeof value}`);
}

/** One stream's state: two halves, as rxchannel/core/_streams.py (open / done / cancelled / absent). */
class Stream {
  constructor(id, kind, demand, events) {
    this.id = id;
    this.kind = kind; // "RESPONSE" | "STREAM" | "CHANNEL"
    this.inbound = "open";
    this.outbound = kind === "CHANNEL" ? "open" : "absent";
    this.demand = demand;
    this.partial = null;
    this.credit = 0; // what the hub granted us for our outbound half, not yet used
    this.unboundedCredit = false;
    this.events = events; // { item(item), complete(), error(e), credit(), cancel() }
  }
}

export class Hub {
  /**
   * Run RSocket over `channel`, an open RTCDataChannel (or anything with its interface).
   * Sends SETUP at once. Options: keepalive and lifetime (ms, what the hub uses to notice
   * this page is gone), secret (a bearer token for a hub started with --secret),
   * maxFrameSize (frames above it are fragmented), maxPayloadSize (largest reassembled item
   * accepted), highWater/lowWater (bytes the channel may buffer), now (a clock in seconds),
   * pc (the RTCPeerConnection, closed with the hub), early (messages the channel delivered
   * before this Hub listened, handled first: see connect.js), path (the path it took, for
   * display: "direct", "webrtc-host", ...).
   */
  constructor(channel, {
    keepalive = 2000, lifetime = 10000, secret = null, maxFrameSize = 64 * 1024, maxPayloadSize = 64 << 20,
    highWater = 1 << 20, lowWater = 256 << 10, now = monotonic, pc = null, early = [], path = null,
  } = {}) {
    this.channel = channel;
    /** The path this connection took ("direct", "webrtc-host", "webrtc-srflx", "webrtc-relay"), when known. */
    this.path = path;
    this.pc = pc;
    this.now = now;
    this.maxFrameSize = Math.max(64, Math.min(maxFrameSize, 0xffffff));
    this.maxPayloadSize = maxPayloadSize;
    this.lifetime = lifetime / 1000;
    this.closed = false;
    /** Why the connection ended (null while open, or after a local close()). */
    this.error = null;
    /** received / granted items, violations (items the hub sent past credit, refused), maxInFlight. */
    this.stats = { received: 0, granted: 0, violations: 0, maxInFlight: 0, ignored: 0 };
    this._streams = new Map();
    this._nextId = 1;
    this._lastSeen = now();
    this._ended = deferred();
    /** Resolves with the error that ended the connection (null for a local close). */
    this.ended = this._ended.promise;
    this._queue = new SendQueue(channel, {
      highWater, lowWater, onError: (e) => this._fail(new ConnectionLostError(`sending on the DataChannel failed: ${e.message}`)),
    });
    channel.binaryType = "arraybuffer";
    this._listeners = {
      message: (event) => this._onMessage(event.data),
      close: () => this._fail(new ConnectionLostError("the DataChannel closed: the hub went away or the network failed; reconnect to continue")),
      error: (event) => this._fail(new ConnectionLostError(`the DataChannel failed: ${(event && event.error && event.error.message) || "unknown error"}`)),
    };
    for (const [name, listener] of Object.entries(this._listeners)) channel.addEventListener(name, listener);
    this._send(encodeFrame({
      type: "SETUP", keepaliveMs: keepalive, lifetimeMs: lifetime, metadataMime: COMPOSITE_METADATA, dataMime: OCTET_STREAM,
      metadata: secret ? bearerMetadata(secret) : null,
    }));
    this._timer = setInterval(() => this._tick(), keepalive);
    for (const data of early) this._onMessage(data);
  }

  // ------------------------------------------------------------------ requests

  /** A request-response; resolves to { data, metadata, info }. */
  async request(route, data = EMPTY, { info = null } = {}) {
    const reply = deferred();
    let got = null;
    this._open("RESPONSE", route, {
      data, info, policy: new Manual(1),
      events: {
        item: (item) => { got = item; },
        complete: () => (got ? reply.resolve(withInfo(got)) : reply.resolve({ data: EMPTY, metadata: null, info: {} })),
        error: (e) => reply.reject(e),
      },
    });
    return reply.promise;
  }

  /**
   * The hub's file listing: [{ path, size }], every page of it (`files` with prefix and the
   * cursor each page's `next` names). `limit` is the page size asked for (default: the
   * hub's own maximum; more than it is refused).
   */
  async list(prefix = "", { limit = null } = {}) {
    const entries = [];
    let cursor = null;
    for (;;) {
      const query = { prefix };
      if (limit !== null) query.limit = limit;
      if (cursor !== null) query.cursor = cursor;
      const reply = await this.request("files", jsonBytes(query));
      const page = JSON.parse(utf8.decode(reply.data));
      if (!Array.isArray(page)) throw new RemoteProtocolError("the hub's listing is not a JSON list", ERROR_CODE.INVALID);
      entries.push(...page);
      cursor = reply.info.next === undefined ? null : reply.info.next;
      if (cursor === null || !page.length) return entries;
    }
  }

  /**
   * A request-stream as a ReadableStream of items { data, metadata, info }. `window` (or
   * `highWaterMark`) is the demand: a number of items kept in flight, "auto" (adaptive), or
   * a policy. Reading pulls: each pull() tells the demand engine the previous item is done.
   * cancel() sends CANCEL. The request goes out at once.
   */
  requestStream(route, { data = EMPTY, info = null, window, highWaterMark } = {}) {
    return this._readable(route, data, info, policyFor(window ?? highWaterMark), (item) => withInfo(item));
  }

  /**
   * A file of the hub (`files/<path>`) as a ReadableStream of Uint8Array chunks, with
   * back-pressure end to end: pipe it into a writable and the writable's pace is the pace
   * of the hub's disk reads. `offset` (with `sha256`, the hex digest of those first bytes)
   * resumes a partial copy. The stream also has:
   *   info   what the hub said about the file so far: {size, offset, restart?, sha256 (at the end)}
   *   ready  a promise of the first item's info ({size, offset, restart?})
   *   stats  {granted, received, inFlight, outstanding, window, rtt}
   */
  fetch(path, { offset = 0, sha256 = null, window, highWaterMark } = {}) {
    if (!Number.isInteger(offset) || offset < 0) throw new LocalProtocolError(`offset must be a non-negative integer, got ${offset}`);
    const data = offset ? jsonBytes(sha256 ? { offset, sha256 } : { offset }) : EMPTY;
    const info = {};
    const ready = deferred();
    let first = true;
    const readable = this._readable(`files/${path}`, data, null, policyFor(window ?? highWaterMark), (item) => item.data, {
      fail: (error) => ready.reject(error),
      // what the hub says about the file is known as it arrives, before the item is read
      arrived: (item) => {
        if (item.metadata && item.metadata.length) Object.assign(info, parseRequestMetadata(item.metadata).info);
        if (first) { first = false; ready.resolve({ ...info }); }
      },
    });
    readable.info = info;
    readable.ready = ready.promise;
    return readable;
  }

  /**
   * An endpoint of the hub (route `endpoints/<name>/<path>`: an HTTP service behind it) as
   * a fetch() Response, resolved once the status and headers have arrived; its body is a
   * ReadableStream pulled with demand, so `await (await hub.endpoint("api", "/items")).json()`
   * works and a slow reader slows the hub's reads of the upstream. `init`: method, headers,
   * query, body (a string or bytes in the request; a Blob or ReadableStream streamed with
   * the hub's demand), size, window, signal. See endpoint.js.
   */
  endpoint(name, path = "/", init = {}) {
    return requestEndpoint(this, name, path, init);
  }

  /**
   * Upload `source` (a ReadableStream of bytes, or a Blob/File) into the hub's inbox as
   * `path` (request-channel `push/<path>`). Items go out only within the hub's REQUEST_N
   * credit and the channel's bufferedAmount; the source is read at most one chunk ahead of
   * credit, so its end is found without credit and the last item carries COMPLETE (and the
   * SHA-256). Resolves to the hub's receipt {path, size, sha256} once it matches what was
   * sent; rejects with RemoteError (refused), IntegrityError (the receipt differs) or
   * ConnectionLostError. `signal` aborts (ERROR[CANCELED] to the hub), `onProgress(bytes)`
   * reports each item sent.
   */
  async push(path, source, { size = null, chunkSize = CHUNK_SIZE, signal = null, onProgress = null } = {}) {
    if (source && typeof source.stream === "function" && typeof source.getReader !== "function") {
      if (size === null) size = source.size;
      source = source.stream();
    }
    if (!source || typeof source.getReader !== "function") throw new LocalProtocolError("push() needs a ReadableStream or a Blob");
    if (!(Number.isInteger(chunkSize) && chunkSize > 0)) throw new LocalProtocolError(`chunkSize must be a positive integer, got ${chunkSize}`);
    const reader = source.getReader();
    const hash = new Sha256();
    const receipt = deferred();
    let got = null, wake = null, bytes = 0;
    const nudge = () => { const w = wake; wake = null; if (w) w(); };
    const s = this._open("CHANNEL", `push/${path}`, {
      info: size !== null ? { size } : null, policy: new Manual(1),
      events: {
        item: (item) => { got = item; },
        complete: () => (got ? receipt.resolve(got) : receipt.reject(new IntegrityError("the hub ended the upload without a receipt"))),
        error: (e) => { receipt.reject(e); nudge(); },
        credit: nudge,
        cancel: () => { // the hub stopped our half: the upload is incomplete, whatever it says next
          receipt.reject(new RemoteError(ERROR_CODE.CANCELED, `the hub cancelled the upload after ${bytes} bytes`));
          nudge();
        },
      },
    });
    const abort = () => {
      const reason = new ClosedResourceError("the upload was cancelled");
      this._sendError(s, ERROR_CODE.CANCELED, "the upload was cancelled by the page");
      receipt.reject(reason);
      nudge();
    };
    if (signal) {
      if (signal.aborted) abort();
      else signal.addEventListener("abort", abort, { once: true });
    }
    // the source, re-cut into items of at most chunkSize bytes, each hashed as it is read
    const chunks = rechunk(reader, chunkSize, bytesOf);
    const nextChunk = async () => {
      const chunk = await chunks.next();
      if (chunk !== null) hash.update(chunk);
      return chunk;
    };
    try {
      let held; // the chunk read ahead (undefined: none yet; null: the source has ended)
      let first = true;
      for (;;) {
        while (s.outbound === "open" && !s.credit && !s.unboundedCredit) await new Promise((resolve) => { wake = resolve; });
        if (s.outbound !== "open") break; // refused, cancelled or failed: the receipt promise says why
        const current = held === undefined ? await nextChunk() : held;
        held = current === null ? null : await nextChunk(); // one ahead of credit: the end needs none
        if (s.outbound !== "open") break;
        const last = held === null;
        const info = {};
        if (first) { if (size !== null) info.size = size; info.offset = 0; }
        if (last) info.sha256 = hash.hex();
        const chunk = current === null ? EMPTY : current;
        if (size !== null && (bytes + chunk.length > size || (last && bytes + chunk.length !== size))) {
          throw new LocalProtocolError(`the source gave ${last ? "" : "more than "}${bytes + chunk.length} bytes, ${size} were announced`);
        }
        await this._sendItem(s, chunk, requestMetadata(null, info), last);
        bytes += chunk.length;
        first = false;
        if (onProgress) onProgress(bytes);
        if (last) break;
      }
      const reply = await receipt.promise;
      const stored = JSON.parse(utf8.decode(reply.data));
      if (stored.sha256 !== hash.hex() || stored.size !== bytes) {
        throw new IntegrityError(`the hub stored ${stored.size} bytes with SHA-256 ${stored.sha256}, but ${bytes} bytes with ${hash.hex()} were sent`);
      }
      return stored;
    } catch (error) {
      if (s.outbound === "open") {
        this._sendError(s, ERROR_CODE.APPLICATION_ERROR, `the upload's source failed: ${error.message}`);
      }
      throw error;
    } finally {
      if (signal) signal.removeEventListener("abort", abort);
      chunks.close();
    }
  }

  /** Close the connection: every open stream fails with ClosedResourceError. Idempotent. */
  close() {
    this._end(new ClosedResourceError("the connection was closed by this page"), null,
      { type: "ERROR", streamId: 0, code: ERROR_CODE.CONNECTION_CLOSE, message: "the page closed the connection" });
  }

  // ------------------------------------------------------------------ streams we open

  /** What a call on a closed connection throws: the error that ended it, or ClosedResourceError. */
  _closedError() {
    return this.error || new ClosedResourceError("the connection was closed by this page; reconnect");
  }

  _open(kind, route, { data = EMPTY, info = null, policy, events }) {
    if (this.closed) throw this._closedError();
    const demand = new InboundDemand(policy);
    const now = this.now();
    const initialN = kind === "RESPONSE" ? 0 : demand.start(now);
    if (kind !== "RESPONSE" && initialN < 1) throw new LocalProtocolError("a stream must start with a demand of at least 1");
    if (kind === "RESPONSE") demand.start(now);
    if (this._nextId > MAX_REQUEST_N) throw new LocalProtocolError("stream ids are exhausted on this connection; open a new one");
    const s = new Stream(this._nextId, kind, demand, events);
    this._nextId += 2;
    this._streams.set(s.id, s);
    this.stats.granted += initialN;
    const frames = encodeItem(s.id, `REQUEST_${kind}`, requestMetadata(route, info), data, this.maxFrameSize, { initialN });
    this._send(frames);
    return s;
  }

  _readable(route, data, info, policy, map, {
    fail: onFail = () => {}, arrived = () => {}, kind = "STREAM", events: extra = {}, opened = () => {},
  } = {}) {
    const hub = this;
    const buffer = [];
    let s = null, done = false, failure = null, wake = null;
    const nudge = () => { const w = wake; wake = null; if (w) w(); };
    const fail = (error) => { if (!failure) { failure = error; onFail(error); } nudge(); };
    let cancelled = false;
    const deliver = async (controller) => {
      for (;;) {
        if (cancelled) return; // the stream is closed already: nothing more may be enqueued
        if (buffer.length) {
          const item = buffer.shift();
          s.demand.pulled();
          let value;
          try {
            value = map(item);
          } catch (error) {
            hub._cancelInbound(s);
            fail(error);
            controller.error(error);
            return;
          }
          controller.enqueue(value);
          return;
        }
        if (failure) { controller.error(failure); return; }
        if (done) { controller.close(); return; }
        await new Promise((resolve) => { wake = resolve; });
      }
    };
    if (this.closed) throw this._closedError();
    const readable = new ReadableStream({
      start() {
        s = hub._open(kind, route, {
          data, info, policy,
          events: {
            ...extra, // a channel's outbound half: credit, cancel
            item: (item) => {
              try {
                arrived(item);
              } catch (error) { // metadata the hub should not have sent: stop the stream, say why
                hub._cancelInbound(s);
                fail(error);
                return;
              }
              buffer.push(item);
              nudge();
            },
            complete: () => { done = true; nudge(); },
            error: (error) => { fail(error); if (extra.error) extra.error(error); },
          },
        });
        opened(s);
      },
      pull(controller) {
        hub._grant(s, s.demand.wantsNext(hub.now()));
        hub.stats.maxInFlight = Math.max(hub.stats.maxInFlight, s.demand.inFlight);
        return deliver(controller);
      },
      cancel() {
        cancelled = true;
        buffer.length = 0;
        hub._cancelInbound(s);
        fail(new ClosedResourceError("the stream was cancelled"));
      },
    }, { highWaterMark: 0 });
    Object.defineProperty(readable, "stats", {
      get() {
        const d = s.demand;
        return {
          granted: d.grantedTotal, received: d.receivedTotal, inFlight: d.inFlight, outstanding: d.outstanding,
          window: policy.window ?? null, rtt: d.rtt,
        };
      },
    });
    /** The error that ended the stream (null while it runs or after it completed). */
    Object.defineProperty(readable, "error", { get: () => failure });
    if (!readable[Symbol.asyncIterator]) readable[Symbol.asyncIterator] = () => iterate(readable);
    return readable;
  }

  _grant(s, n) {
    if (n > 0 && s.inbound === "open" && !this.closed) {
      this.stats.granted += n;
      this._send(encodeFrame({ type: "REQUEST_N", streamId: s.id, n }));
    }
  }

  _cancelInbound(s) {
    if (s.inbound !== "open") return;
    s.inbound = "cancelled";
    s.partial = null;
    s.demand.end();
    if (!this.closed) this._send(encodeFrame({ type: "CANCEL", streamId: s.id }));
    this._maybeForget(s);
  }

  _sendItem(s, data, metadata, complete) {
    if (s.outbound !== "open") throw new LocalProtocolError(`stream ${s.id} is not open for sending (outbound is ${s.outbound})`);
    if (!s.unboundedCredit) {
      if (s.credit <= 0) throw new LocalProtocolError("no credit left: wait for the hub's REQUEST_N before sending");
      s.credit -= 1;
    }
    const frames = encodeItem(s.id, "PAYLOAD", metadata && metadata.length ? metadata : null, data, this.maxFrameSize, { complete });
    if (complete) { s.outbound = "done"; this._maybeForget(s); }
    return this._send(frames);
  }

  _sendError(s, code, message) {
    if (!this._streams.has(s.id)) return;
    this._forget(s);
    if (!this.closed) this._send(encodeFrame({ type: "ERROR", streamId: s.id, code, message }));
  }

  _forget(s) {
    s.inbound = s.inbound === "open" ? "cancelled" : s.inbound;
    s.outbound = s.outbound === "open" ? "cancelled" : s.outbound;
    s.partial = null;
    s.demand.end();
    this._streams.delete(s.id);
  }

  _maybeForget(s) {
    if (s.inbound !== "open" && s.outbound !== "open") this._streams.delete(s.id);
  }

  /** Queue frames in order; the returned promise never rejects (false: the connection closed first). */
  _send(frames) {
    return this._queue.send(frames);
  }

  // ------------------------------------------------------------------ frames from the hub

  _onMessage(data) {
    if (this.closed) return;
    this._lastSeen = this.now();
    try {
      this._onFrame(decodeFrame(data));
    } catch (error) {
      if (error instanceof RemoteProtocolError && error.code < 0x200) {
        this._connectionError(error.message);
      } else {
        // a bug here must not leave the connection half alive: end it, say why
        this._connectionError(`the page could not process a frame: ${error && error.message}`);
        if (globalThis.console) console.error(error);
      }
    }
  }

  _onFrame(f) {
    switch (f.type) {
      case "PAYLOAD": case "REQUEST_N": case "CANCEL": {
        const s = this._streams.get(f.streamId);
        if (!s) { this.stats.ignored++; return; } // finished or cancelled: late frames are expected
        if (f.type === "PAYLOAD") this._onPayload(s, f);
        else if (f.type === "REQUEST_N") this._onCredit(s, f.n);
        else this._onCancel(s);
        return;
      }
      case "ERROR": {
        if (f.streamId === 0) {
          const setup = f.code <= ERROR_CODE.REJECTED_RESUME;
          const error = new RemoteError(f.code, setup ? `the hub refused this page's SETUP: ${f.message}` : f.message);
          this._end(error, error);
          return;
        }
        const s = this._streams.get(f.streamId);
        if (!s) { this.stats.ignored++; return; }
        this._forget(s);
        s.events.error(new RemoteError(f.code, f.message));
        return;
      }
      case "KEEPALIVE":
        if (f.respond) this._send(encodeFrame({ type: "KEEPALIVE", respond: false, data: f.data }));
        return;
      case "REQUEST_RESPONSE": case "REQUEST_STREAM": case "REQUEST_CHANNEL": case "REQUEST_FNF":
        if (f.streamId === 0 || f.streamId % 2 === 1) {
          this._connectionError(`${f.type} on stream ${f.streamId}: the server must use even stream ids`);
        } else if (f.type !== "REQUEST_FNF") {
          this._send(encodeFrame({ type: "ERROR", streamId: f.streamId, code: ERROR_CODE.REJECTED, message: "a browser worker serves no requests" }));
        }
        return;
      case "UNSUPPORTED":
        if (!f.ignorable) this._connectionError(`frame type 0x${f.frameType.toString(16)} is not supported here and its IGNORE flag is not set`);
        else this.stats.ignored++;
        return;
      default: // SETUP, LEASE, METADATA_PUSH: nothing for a worker to do (Handling the Unexpected)
        this.stats.ignored++;
    }
  }

  _onPayload(s, f) {
    const more = f.follows && !f.complete; // COMPLETE with FOLLOWS: FOLLOWS is ignored
    let { metadata, data } = f;
    let isItem;
    if (s.partial === null) {
      if (s.inbound === "cancelled") { this.stats.ignored++; return; } // in flight when we cancelled
      if (s.inbound !== "open") {
        this._violation(s, s.inbound === "done" ? "PAYLOAD after the sender completed this direction"
          : `PAYLOAD is not allowed from the responder of a ${s.kind} stream`);
        return;
      }
      isItem = f.next || more;
      if (!isItem && !f.complete) { this._violation(s, "PAYLOAD with neither NEXT nor COMPLETE set"); return; }
      if (isItem) {
        if (!s.demand.received(data.length + (metadata ? metadata.length : 0), this.now())) {
          this.stats.violations++;
          this._violation(s, `PAYLOAD past credit: ${s.demand.grantedTotal} item(s) were granted and all were used (Reactive Streams rule 1.1)`);
          return;
        }
        this.stats.received++;
        if (more) {
          s.partial = new Reassembly(this.maxPayloadSize);
          if (!this._addFragment(s, metadata, data)) return;
          return;
        }
      }
    } else {
      isItem = true;
      if (!this._addFragment(s, metadata, data)) return;
      if (more) return;
      ({ metadata, data } = s.partial.result());
      s.partial = null;
    }
    if (isItem) s.events.item({ data, metadata });
    if (f.complete || s.kind === "RESPONSE") {
      s.inbound = "done";
      s.demand.end();
      this._maybeForget(s);
      s.events.complete();
    }
  }

  _addFragment(s, metadata, data) {
    try {
      s.partial.add(s.id, metadata, data);
      return true;
    } catch (error) {
      this._violation(s, error.message, error.code);
      return false;
    }
  }

  _onCredit(s, n) {
    if (s.outbound === "absent") { this._violation(s, `REQUEST_N is not allowed from the responder of a ${s.kind} stream`); return; }
    if (s.outbound !== "open") { this.stats.ignored++; return; } // raced our COMPLETE or CANCEL
    if (!(n >= 1 && n <= MAX_REQUEST_N)) { this._violation(s, `REQUEST_N of ${n} is outside 1..${MAX_REQUEST_N}`); return; }
    s.credit = Math.min(MAX_REQUEST_N, s.credit + n);
    if (s.credit === MAX_REQUEST_N) s.unboundedCredit = true;
    s.events.credit && s.events.credit();
  }

  _onCancel(s) {
    if (s.outbound === "absent") { this._violation(s, `CANCEL is not allowed from the responder of a ${s.kind} stream`); return; }
    if (s.outbound !== "open") { this.stats.ignored++; return; }
    s.outbound = "cancelled";
    this._maybeForget(s);
    s.events.cancel && s.events.cancel();
  }

  /** The hub broke the protocol on one stream: ERROR[code] to it, and the stream ends with that error here. */
  _violation(s, message, code = ERROR_CODE.INVALID) {
    this._forget(s);
    this._send(encodeFrame({ type: "ERROR", streamId: s.id, code, message }));
    s.events.error(new RemoteProtocolError(`the hub broke the protocol: ${message} (${errorCodeName(code)} sent)`, code, s.id));
  }

  _connectionError(message) {
    const error = new RemoteProtocolError(`the hub broke the protocol: ${message}`);
    this._end(error, error, { type: "ERROR", streamId: 0, code: ERROR_CODE.CONNECTION_ERROR, message });
  }

  _tick() {
    const silent = this.now() - this._lastSeen;
    if (silent > this.lifetime) {
      const error = new ConnectionLostError(
        `no frame from the hub for ${silent.toFixed(1)} s (keepalive limit ${this.lifetime.toFixed(1)} s): the hub or the network is gone; reconnect to continue`,
      );
      this._end(error, error, { type: "ERROR", streamId: 0, code: ERROR_CODE.CONNECTION_ERROR, message: "keepalive timeout" });
    } else {
      this._send(encodeFrame({ type: "KEEPALIVE", respond: true }));
    }
  }

  _fail(error) {
    this._end(error, error);
  }

  /**
   * End the connection: every open stream gets `forStreams`; `ended` resolves with `recorded`.
   * `last`, a frame object, is sent straight away (ahead of anything still queued) if the
   * channel is open; what is still queued is dropped.
   */
  _end(forStreams, recorded, last = null) {
    if (this.closed) return;
    this.closed = true;
    this.error = recorded;
    clearInterval(this._timer);
    if (last !== null && this.channel.readyState === "open") {
      try { this.channel.send(encodeFrame(last)); } catch { /* the channel is going anyway */ }
    }
    this._queue.close();
    for (const [name, listener] of Object.entries(this._listeners)) this.channel.removeEventListener(name, listener);
    try { this.channel.close(); } catch { /* already closed */ }
    if (this.pc) try { this.pc.close(); } catch { /* already closed */ }
    const streams = [...this._streams.values()];
    this._streams.clear();
    for (const s of streams) {
      s.inbound = s.inbound === "open" ? "cancelled" : s.inbound;
      s.outbound = s.outbound === "open" ? "cancelled" : s.outbound;
      s.demand.end();
      s.events.error(forStreams);
    }
    this._ended.resolve(recorded);
  }
}

function withInfo(item) {
  return { data: item.data, metadata: item.metadata, info: item.metadata && item.metadata.length ? parseRequestMetadata(item.metadata).info : {} };
}

async function* iterate(readable) {
  const reader = readable.getReader();
  let finished = false;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) { finished = true; return; }
      yield value;
    }
  } finally {
    if (!finished) await reader.cancel();
    reader.releaseLock();
  }
}
