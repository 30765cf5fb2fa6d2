// RSocket 1.0 frames: encode and decode (Protocol.md "Framing" and "Frame Types").
//
// A frame is a plain object whose `type` names it; byte fields are Uint8Array views into
// the message they came from (decoding copies nothing). decodeFrame() turns the bytes of
// exactly one frame into one object or throws FrameError, never anything else; the
// Python core's decoder (rxchannel/core/_frames.py) is the reference, and the golden
// frames in tests/js/vectors/frames.json are written by it.

import { FrameError, LocalProtocolError } from "./errors.js";

export const TYPE = Object.freeze({
  SETUP: 0x01, LEASE: 0x02, KEEPALIVE: 0x03, REQUEST_RESPONSE: 0x04, REQUEST_FNF: 0x05,
  REQUEST_STREAM: 0x06, REQUEST_CHANNEL: 0x07, REQUEST_N: 0x08, CANCEL: 0x09, PAYLOAD: 0x0a,
  ERROR: 0x0b, METADATA_PUSH: 0x0c, RESUME: 0x0d, RESUME_OK: 0x0e, EXT: 0x3f,
});
const TYPE_NAME = new Map(Object.entries(TYPE).map(([name, code]) => [code, name]));

export const FLAG = Object.freeze({
  IGNORE: 0x200, METADATA: 0x100, FOLLOWS: 0x80, COMPLETE: 0x40, NEXT: 0x20,
  RESPOND: 0x80, // KEEPALIVE
  RESUME_ENABLE: 0x80, // SETUP
  LEASE: 0x40, // SETUP
});

/** Frames (header + body) are limited to 2^24-1 bytes (Protocol.md "Max Frame Size"). */
export const MAX_FRAME_SIZE = 0xffffff;
/** The largest REQUEST_N; demand of this size means "unbounded". */
export const MAX_REQUEST_N = 0x7fffffff;

const EMPTY = new Uint8Array(0);
const utf8 = new TextEncoder();
const utf8Lenient = new TextDecoder("utf-8"); // invalid sequences become U+FFFD, as Python's errors="replace"
const REQUEST_TYPES = new Set(["REQUEST_RESPONSE", "REQUEST_FNF", "REQUEST_STREAM", "REQUEST_CHANNEL"]);

function withHeader(streamId, type, flags, bodyLength) {
  const buf = new Uint8Array(6 + bodyLength);
  const view = new DataView(buf.buffer);
  view.setUint32(0, streamId >>> 0);
  view.setUint16(4, (type << 10) | flags);
  return { buf, view };
}

function putU24(buf, at, n) {
  buf[at] = (n >>> 16) & 0xff;
  buf[at + 1] = (n >>> 8) & 0xff;
  buf[at + 2] = n & 0xff;
}

function ascii(text, what) {
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c > 0x7f) throw new LocalProtocolError(`${what} must be US-ASCII: ${JSON.stringify(text)}`);
    out[i] = c;
  }
  return out;
}

/** The bytes of one PAYLOAD frame (the hot path: no intermediate object). */
export function encodePayload(streamId, data = EMPTY, metadata = null, { next = true, complete = false, follows = false } = {}) {
  let flags = (next ? FLAG.NEXT : 0) | (complete ? FLAG.COMPLETE : 0) | (follows ? FLAG.FOLLOWS : 0);
  if (metadata === null || metadata === undefined) {
    const { buf } = withHeader(streamId, TYPE.PAYLOAD, flags, data.length);
    buf.set(data, 6);
    return buf;
  }
  flags |= FLAG.METADATA;
  const { buf } = withHeader(streamId, TYPE.PAYLOAD, flags, 3 + metadata.length + data.length);
  putU24(buf, 6, metadata.length);
  buf.set(metadata, 9);
  buf.set(data, 9 + metadata.length);
  return buf;
}

/** Header-less body parts: [u24 metadata length][metadata] then data, as the METADATA flag says. */
function metadataAndData(flags, metadata, data) {
  if (metadata === null || metadata === undefined) return { flags, parts: [data] };
  const length = new Uint8Array(3);
  putU24(length, 0, metadata.length);
  return { flags: flags | FLAG.METADATA, parts: [length, metadata, data] };
}

function assemble(streamId, type, flags, parts) {
  const size = parts.reduce((n, p) => n + p.length, 0);
  const { buf } = withHeader(streamId, type, flags, size);
  let at = 6;
  for (const p of parts) { buf.set(p, at); at += p.length; }
  return buf;
}

function u32(n) {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, n >>> 0);
  return out;
}

/** Encode a frame object into its bytes (no length prefix). Throws LocalProtocolError for a bad frame. */
export function encodeFrame(frame) {
  const sid = frame.streamId || 0;
  const data = frame.data || EMPTY;
  const metadata = frame.metadata === undefined ? null : frame.metadata;
  switch (frame.type) {
    case "PAYLOAD":
      return encodePayload(sid, data, metadata, {
        next: frame.next !== false, complete: Boolean(frame.complete), follows: Boolean(frame.follows),
      });
    case "REQUEST_RESPONSE": case "REQUEST_FNF": case "REQUEST_STREAM": case "REQUEST_CHANNEL": {
      const type = TYPE[frame.type];
      const base = (frame.follows ? FLAG.FOLLOWS : 0) | (frame.complete ? FLAG.COMPLETE : 0);
      const { flags, parts } = metadataAndData(base, metadata, data);
      if (type === TYPE.REQUEST_STREAM || type === TYPE.REQUEST_CHANNEL) parts.unshift(u32(frame.initialN || 0));
      return assemble(sid, type, flags, parts);
    }
    case "REQUEST_N":
      return assemble(sid, TYPE.REQUEST_N, 0, [u32(frame.n)]);
    case "CANCEL":
      return assemble(sid, TYPE.CANCEL, 0, []);
    case "ERROR":
      return assemble(sid, TYPE.ERROR, 0, [u32(frame.code), utf8.encode(frame.message || "")]);
    case "KEEPALIVE": {
      const position = new Uint8Array(8);
      new DataView(position.buffer).setBigUint64(0, BigInt(frame.position || 0));
      return assemble(sid, TYPE.KEEPALIVE, frame.respond ? FLAG.RESPOND : 0, [position, data]);
    }
    case "METADATA_PUSH":
      return assemble(sid, TYPE.METADATA_PUSH, FLAG.METADATA, [metadata || EMPTY]);
    case "SETUP": {
      const [major, minor] = frame.version || [1, 0];
      const fixed = new Uint8Array(12);
      const view = new DataView(fixed.buffer);
      view.setUint16(0, major); view.setUint16(2, minor);
      view.setUint32(4, frame.keepaliveMs); view.setUint32(8, frame.lifetimeMs);
      const parts = [fixed];
      const token = frame.resumeToken === undefined ? null : frame.resumeToken;
      if (token !== null) {
        const length = new Uint8Array(2);
        new DataView(length.buffer).setUint16(0, token.length);
        parts.push(length, token);
      }
      for (const [mime, what] of [[frame.metadataMime, "metadata MIME type"], [frame.dataMime, "data MIME type"]]) {
        const raw = ascii(mime, what);
        if (raw.length > 255) throw new LocalProtocolError(`${what} is longer than 255 bytes`);
        parts.push(Uint8Array.of(raw.length), raw);
      }
      const base = (frame.lease ? FLAG.LEASE : 0) | (token !== null ? FLAG.RESUME_ENABLE : 0);
      const body = metadataAndData(base, metadata, data);
      return assemble(sid, TYPE.SETUP, body.flags, parts.concat(body.parts));
    }
    case "LEASE": {
      const fixed = new Uint8Array(8);
      const view = new DataView(fixed.buffer);
      view.setUint32(0, frame.ttlMs); view.setUint32(4, frame.count);
      return assemble(sid, TYPE.LEASE, metadata !== null ? FLAG.METADATA : 0, [fixed, metadata || EMPTY]);
    }
    default:
      throw new LocalProtocolError(`cannot encode a frame of type ${JSON.stringify(frame.type)}`);
  }
}

function need(buf, size, what) {
  if (buf.length < size) throw new FrameError(`${what} frame truncated: ${buf.length} bytes, needs at least ${size}`);
}

/** Split buf[offset:] into {metadata, data} using the 24-bit metadata length. Throws FrameError. */
export function splitMetadata(buf, offset, flags) {
  if (!(flags & FLAG.METADATA)) return { metadata: null, data: buf.subarray(offset) };
  if (buf.length - offset < 3) throw new FrameError("metadata flag set but the frame ends before the 3-byte metadata length");
  const length = (buf[offset] << 16) | (buf[offset + 1] << 8) | buf[offset + 2];
  const start = offset + 3;
  if (start + length > buf.length) {
    throw new FrameError(`metadata length ${length} runs past the end of the frame (${buf.length - start} bytes left)`);
  }
  return { metadata: buf.subarray(start, start + length), data: buf.subarray(start + length) };
}

function asBytes(input) {
  if (input instanceof Uint8Array) return input;
  if (input instanceof ArrayBuffer) return new Uint8Array(input);
  if (ArrayBuffer.isView(input)) return new Uint8Array(input.buffer, input.byteOffset, input.byteLength);
  throw new FrameError(`a frame must be binary, got ${typeof input === "string" ? "a text message" : typeof input}`);
}

/**
 * Decode exactly one frame (Uint8Array, ArrayBuffer or a view).
 * Throws FrameError when the bytes are not a well-formed frame (answer ERROR[CONNECTION_ERROR]
 * and close); no other exception escapes for any input.
 */
export function decodeFrame(input) {
  const buf = asBytes(input);
  if (buf.length < 6) throw new FrameError(`frame of ${buf.length} bytes is shorter than the 6-byte header`);
  if (buf.length > MAX_FRAME_SIZE) throw new FrameError(`frame of ${buf.length} bytes exceeds the protocol maximum of ${MAX_FRAME_SIZE}`);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const streamId = view.getUint32(0) & 0x7fffffff;
  const typeAndFlags = view.getUint16(4);
  const code = typeAndFlags >> 10, flags = typeAndFlags & 0x3ff;
  const name = TYPE_NAME.get(code);
  if (name === "PAYLOAD") {
    const { metadata, data } = splitMetadata(buf, 6, flags);
    return {
      type: name, streamId, metadata, data,
      follows: Boolean(flags & FLAG.FOLLOWS), complete: Boolean(flags & FLAG.COMPLETE), next: Boolean(flags & FLAG.NEXT),
    };
  }
  if (name === "REQUEST_N") {
    need(buf, 10, name);
    return { type: name, streamId, n: view.getUint32(6) };
  }
  if (REQUEST_TYPES.has(name)) {
    let initialN = 0, offset = 6;
    if (name === "REQUEST_STREAM" || name === "REQUEST_CHANNEL") {
      need(buf, 10, name);
      initialN = view.getUint32(6);
      offset = 10;
    }
    const { metadata, data } = splitMetadata(buf, offset, flags);
    return {
      type: name, streamId, metadata, data, initialN,
      follows: Boolean(flags & FLAG.FOLLOWS),
      complete: Boolean(flags & FLAG.COMPLETE) && name === "REQUEST_CHANNEL",
    };
  }
  if (name === "CANCEL") return { type: name, streamId };
  if (name === "ERROR") {
    need(buf, 10, name);
    return { type: name, streamId, code: view.getUint32(6), message: utf8Lenient.decode(buf.subarray(10)) };
  }
  if (name === "KEEPALIVE") {
    need(buf, 14, name);
    return {
      type: name, streamId, respond: Boolean(flags & FLAG.RESPOND), position: view.getBigUint64(6), data: buf.subarray(14),
    };
  }
  if (name === "METADATA_PUSH") return { type: name, streamId, metadata: buf.subarray(6) };
  if (name === "SETUP") return decodeSetup(buf, view, streamId, flags);
  if (name === "LEASE") {
    need(buf, 14, name);
    return {
      type: name, streamId, ttlMs: view.getUint32(6), count: view.getUint32(10),
      metadata: flags & FLAG.METADATA ? buf.subarray(14) : null,
    };
  }
  // RESUME, RESUME_OK, EXT and reserved types: not processed here (Protocol.md "Handling the Unexpected")
  return { type: "UNSUPPORTED", streamId, frameType: code, ignorable: Boolean(flags & FLAG.IGNORE) };
}

function decodeSetup(buf, view, streamId, flags) {
  need(buf, 18, "SETUP");
  const version = [view.getUint16(6), view.getUint16(8)];
  const keepaliveMs = view.getUint32(10), lifetimeMs = view.getUint32(14);
  let offset = 18, resumeToken = null;
  if (flags & FLAG.RESUME_ENABLE) {
    need(buf, offset + 2, "SETUP");
    const length = view.getUint16(offset);
    offset += 2;
    need(buf, offset + length, "SETUP");
    resumeToken = buf.subarray(offset, offset + length);
    offset += length;
  }
  const mimes = [];
  for (let i = 0; i < 2; i++) {
    need(buf, offset + 1, "SETUP");
    const length = buf[offset];
    offset += 1;
    need(buf, offset + length, "SETUP");
    let mime = "";
    // Latin-1, like the core: a MIME type outside US-ASCII is the peer's
    // mistake, but not one worth refusing the connection over.
    for (let j = offset; j < offset + length; j++) mime += String.fromCharCode(buf[j]);
    mimes.push(mime);
    offset += length;
  }
  const { metadata, data } = splitMetadata(buf, offset, flags);
  return {
    type: "SETUP", streamId, version, keepaliveMs, lifetimeMs, resumeToken,
    lease: Boolean(flags & FLAG.LEASE), metadataMime: mimes[0], dataMime: mimes[1], metadata, data,
  };
}
