// The browser client as it was before issue 15 (git show 7c5e071:rxchannel/web/rxchannel.js), unchanged:
// the baseline of benchmarks/browser.py.
// rxchannel browser client: an RSocket 1.0 requester over one WebRTC DataChannel.
//
// No build step, no dependencies. It speaks the subset a worker needs: SETUP, KEEPALIVE,
// REQUEST_RESPONSE, REQUEST_STREAM, REQUEST_N, CANCEL, PAYLOAD (with reassembly of
// fragments) and ERROR, with composite metadata and routing tags.
//
//   import { connect } from "/rxchannel.js";
//   const hub = await connect();                       // POST /offer, DataChannel, SETUP
//   for await (const chunk of hub.fetch("big.bin", { window: 16 })) { ... }
//
// Demand: at most `window` items are granted and not yet consumed; an item counts as
// consumed when the loop asks for the next one, so a slow page slows the hub's disk reads.

const TYPE = { SETUP: 1, KEEPALIVE: 3, REQUEST_RESPONSE: 4, REQUEST_STREAM: 6, REQUEST_N: 8,
  CANCEL: 9, PAYLOAD: 10, ERROR: 11 };
const FLAG = { METADATA: 0x100, FOLLOWS: 0x80, COMPLETE: 0x40, NEXT: 0x20, RESPOND: 0x80 };
const ROUTING = 0x7e, JSON_MIME = 0x05, COMPOSITE = "message/x.rsocket.composite-metadata.v0";
const encoder = new TextEncoder(), decoder = new TextDecoder();

export class RemoteError extends Error {
  constructor(code, message) { super(message); this.code = code; this.name = "RemoteError"; }
}

function header(streamId, type, flags, size) {
  const buf = new Uint8Array(6 + size);
  const view = new DataView(buf.buffer);
  view.setUint32(0, streamId);
  view.setUint16(4, (type << 10) | flags);
  return { buf, view };
}

function u24(n) { return [(n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff]; }

function concat(parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

/** Composite metadata with a routing tag and an optional JSON entry. */
export function requestMetadata(route, info) {
  const tag = encoder.encode(route);
  const parts = [Uint8Array.from([0x80 | ROUTING, ...u24(tag.length + 1), tag.length]), tag];
  if (info) {
    const json = encoder.encode(JSON.stringify(info));
    parts.push(Uint8Array.from([0x80 | JSON_MIME, ...u24(json.length)]), json);
  }
  return concat(parts);
}

/** The JSON entry of an item's composite metadata, or {}. */
export function itemInfo(metadata) {
  let i = 0;
  while (metadata && i < metadata.length) {
    const head = metadata[i++];
    let mime = null;
    if (head & 0x80) mime = head & 0x7f; else i += head + 1;
    const len = (metadata[i] << 16) | (metadata[i + 1] << 8) | metadata[i + 2];
    i += 3;
    if (mime === JSON_MIME) return JSON.parse(decoder.decode(metadata.subarray(i, i + len)));
    i += len;
  }
  return {};
}

function encodeRequest(type, streamId, initialN, metadata, data) {
  const extra = type === TYPE.REQUEST_STREAM ? 4 : 0;
  const { buf, view } = header(streamId, type, FLAG.METADATA, extra + 3 + metadata.length + data.length);
  if (extra) view.setUint32(6, initialN);
  buf.set(u24(metadata.length), 6 + extra);
  buf.set(metadata, 9 + extra);
  buf.set(data, 9 + extra + metadata.length);
  return buf;
}

class Inbound {
  constructor() { this.items = []; this.waiter = null; this.done = false; this.error = null; this.partial = null; }
  push(item) { this.items.push(item); this.wake(); }
  finish(error) { this.done = true; this.error = error || null; this.wake(); }
  wake() { if (this.waiter) { const w = this.waiter; this.waiter = null; w(); } }
  async next() {
    while (!this.items.length) {
      if (this.done) { if (this.error) throw this.error; return null; }
      await new Promise((resolve) => { this.waiter = resolve; });
    }
    return this.items.shift();
  }
}

export class Hub {
  constructor(pc, channel, { keepalive = 2000, lifetime = 10000 } = {}) {
    this.pc = pc;
    this.channel = channel;
    this.streams = new Map();
    this.nextId = 1;
    this.closed = false;
    this.lastSeen = Date.now();
    this.stats = { received: 0, granted: 0, violations: 0, maxInFlight: 0 };
    channel.binaryType = "arraybuffer";
    channel.bufferedAmountLowThreshold = 256 * 1024;
    channel.onmessage = (event) => this._onFrame(new Uint8Array(event.data));
    channel.onclose = () => this._fail(new Error("the DataChannel closed"));
    this._sendSetup(keepalive, lifetime);
    this.timer = setInterval(() => {
      if (Date.now() - this.lastSeen > lifetime) this._fail(new Error("keepalive timeout: the hub is gone"));
      else this._send(this._keepalive(true));
    }, keepalive);
  }

  _sendSetup(keepalive, lifetime) {
    const mimes = [encoder.encode(COMPOSITE), encoder.encode("application/octet-stream")];
    const { buf, view } = header(0, TYPE.SETUP, 0, 12 + 2 + mimes[0].length + mimes[1].length);
    view.setUint16(6, 1); view.setUint16(8, 0); view.setUint32(10, keepalive); view.setUint32(14, lifetime);
    let at = 18;
    for (const m of mimes) { buf[at++] = m.length; buf.set(m, at); at += m.length; }
    this._send(buf);
  }

  _keepalive(respond, data = new Uint8Array(0)) {
    const { buf } = header(0, TYPE.KEEPALIVE, respond ? FLAG.RESPOND : 0, 8 + data.length);
    buf.set(data, 14);
    return buf;
  }

  async _send(frame) {
    // honour bufferedAmount: never let our own queue grow past a high-water mark
    while (this.channel.bufferedAmount > 1024 * 1024) {
      await new Promise((resolve) => { this.channel.onbufferedamountlow = resolve; });
    }
    if (this.channel.readyState === "open") this.channel.send(frame);
  }

  _onFrame(frame) {
    this.lastSeen = Date.now();
    const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
    const streamId = view.getUint32(0) & 0x7fffffff;
    const type = view.getUint16(4) >> 10, flags = view.getUint16(4) & 0x3ff;
    if (type === TYPE.KEEPALIVE) {
      if (flags & FLAG.RESPOND) this._send(this._keepalive(false, frame.subarray(14)));
      return;
    }
    if (type === TYPE.ERROR) {
      const error = new RemoteError(view.getUint32(6), decoder.decode(frame.subarray(10)));
      if (streamId === 0) { this._fail(error); return; }
      const s = this.streams.get(streamId);
      if (s) { this.streams.delete(streamId); s.inbound.finish(error); }
      return;
    }
    if (type !== TYPE.PAYLOAD) return;
    const s = this.streams.get(streamId);
    if (!s) return; // finished or cancelled: late frames are ignored
    let metadata = null, data = frame.subarray(6);
    if (flags & FLAG.METADATA) {
      const len = (frame[6] << 16) | (frame[7] << 8) | frame[8];
      metadata = frame.subarray(9, 9 + len);
      data = frame.subarray(9 + len);
    }
    const follows = (flags & FLAG.FOLLOWS) && !(flags & FLAG.COMPLETE);
    if (s.inbound.partial || follows) {
      const p = s.inbound.partial || (s.inbound.partial = { meta: [], data: [], next: false });
      if (metadata) p.meta.push(metadata.slice());
      p.data.push(data.slice());
      p.next = p.next || Boolean(flags & FLAG.NEXT);
      if (follows) return;
      metadata = p.meta.length ? concat(p.meta) : null;
      data = concat(p.data);
      s.inbound.partial = null;
    } else {
      data = data.slice();
      metadata = metadata && metadata.slice();
    }
    if (flags & FLAG.NEXT || data.length) {
      this.stats.received++;
      s.received++;
      if (s.received > s.granted) this.stats.violations++;
      s.inbound.push({ data, metadata, info: metadata ? itemInfo(metadata) : {} });
    }
    if (flags & FLAG.COMPLETE || s.single) { this.streams.delete(streamId); s.inbound.finish(); }
  }

  _fail(error) {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    for (const s of this.streams.values()) s.inbound.finish(error);
    this.streams.clear();
  }

  _open(type, route, { info, data = new Uint8Array(0), initialN = 0, single = false }) {
    if (this.closed) throw new Error("the connection is closed");
    const id = this.nextId; this.nextId += 2;
    const s = { inbound: new Inbound(), granted: type === TYPE.REQUEST_STREAM ? initialN : 1, received: 0, single };
    this.streams.set(id, s);
    this._send(encodeRequest(type, id, initialN, requestMetadata(route, info), data));
    return [id, s];
  }

  /** A request-response; resolves to { data, metadata, info }. */
  async request(route, data = new Uint8Array(0)) {
    const [, s] = this._open(TYPE.REQUEST_RESPONSE, route, { data, single: true });
    return s.inbound.next();
  }

  /** The hub's file listing: [{ path, size }]. */
  async list(prefix = "") {
    const reply = await this.request("files", prefix ? encoder.encode(JSON.stringify({ prefix })) : undefined);
    return JSON.parse(decoder.decode(reply.data));
  }

  /** A file's chunks, pulled with at most `window` in flight. Leaving the loop cancels. */
  async *fetch(path, { window = 16, offset = 0 } = {}) {
    const data = offset ? encoder.encode(JSON.stringify({ offset })) : new Uint8Array(0);
    const [id, s] = this._open(TYPE.REQUEST_STREAM, `files/${path}`, { data, initialN: window });
    this.stats.granted += window;
    let consumed = 0;
    try {
      while (true) {
        const item = await s.inbound.next();
        if (item === null) return;
        this.stats.maxInFlight = Math.max(this.stats.maxInFlight, s.granted - consumed);
        yield item;
        consumed++;
        const free = window - (s.granted - consumed);
        if (free >= Math.max(1, window >> 2) && this.streams.has(id)) {
          s.granted += free;
          this.stats.granted += free;
          const { buf, view } = header(id, TYPE.REQUEST_N, 0, 4);
          view.setUint32(6, free);
          this._send(buf);
        }
      }
    } finally {
      if (this.streams.has(id)) {
        this.streams.delete(id);
        this._send(header(id, TYPE.CANCEL, 0, 0).buf);
      }
    }
  }

  close() { this._fail(new Error("closed")); this.pc.close(); }
}

/** Connect to the hub that served this page (or `base`): offer/answer over HTTP, then SETUP. */
export async function connect(base = location.origin, options = {}) {
  const pc = new RTCPeerConnection({ iceServers: options.iceServers || [] });
  const channel = pc.createDataChannel("rxchannel", { ordered: true });
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((resolve) => {
    if (pc.iceGatheringState === "complete") resolve();
    pc.onicegatheringstatechange = () => pc.iceGatheringState === "complete" && resolve();
    setTimeout(resolve, 2000); // no trickle: send what we have
  });
  const response = await fetch(`${base}/offer`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ sdp: pc.localDescription.sdp, type: pc.localDescription.type }),
  });
  if (!response.ok) throw new Error(`the hub refused the offer: ${response.status}`);
  await pc.setRemoteDescription(await response.json());
  await new Promise((resolve, reject) => {
    channel.onopen = resolve;
    setTimeout(() => reject(new Error("the DataChannel did not open")), 15000);
  });
  return new Hub(pc, channel, options);
}
