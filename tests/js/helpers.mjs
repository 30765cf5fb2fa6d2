// Shared helpers of the node --test suite (not a test file itself).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { afterEach } from "node:test";

export const WEB = new URL("../../rxchannel/web/", import.meta.url);

/** A vector file written by the Python core (tests/web/js_vectors.py). */
export function vectors(name) {
  return JSON.parse(readFileSync(new URL(`vectors/${name}`, import.meta.url), "utf-8"));
}

export function fromHex(hex) {
  if (hex === null) return null;
  return Uint8Array.from(hex.match(/../g) || [], (b) => parseInt(b, 16));
}

export function toHex(bytes) {
  if (bytes === null || bytes === undefined) return null;
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** A deterministic PRNG (mulberry32), so a failing fuzz case can be replayed from its seed. */
export function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A decoded frame with bytes as hex and bigints as strings: comparable with the vectors. */
export function plain(frame) {
  const out = {};
  for (const [key, value] of Object.entries(frame)) {
    if (value instanceof Uint8Array) out[key] = toHex(value);
    else if (typeof value === "bigint") out[key] = value.toString();
    else out[key] = value;
  }
  return out;
}

/** A vector's frame fields as encodeFrame() takes them. */
export function encodable(fields) {
  const out = {};
  for (const [key, value] of Object.entries(fields)) {
    if (["metadata", "data", "resumeToken"].includes(key)) out[key] = fromHex(value);
    else if (key === "position") out[key] = BigInt(value);
    else out[key] = value;
  }
  return out;
}

/**
 * A stand-in for an RTCDataChannel, for testing the client's logic without a browser: it
 * records what is sent (bufferedAmount grows by each message until drain() is called, which
 * fires "bufferedamountlow" on crossing the threshold, as the real one does) and deliver()
 * dispatches a message from "the hub". Real DataChannels are exercised by tests/web/.
 */
export class FakeChannel extends EventTarget {
  constructor() {
    super();
    this.readyState = "open";
    this.bufferedAmount = 0;
    this.bufferedAmountLowThreshold = 0;
    this.binaryType = "blob";
    this.sent = [];
  }
  send(bytes) {
    if (this.readyState !== "open") throw new Error("InvalidStateError: the channel is not open");
    this.sent.push(Uint8Array.from(bytes));
    this.bufferedAmount += bytes.length;
  }
  /** The transport took `n` bytes (all by default) off the buffer. */
  drain(n = Infinity) {
    const before = this.bufferedAmount;
    this.bufferedAmount = Math.max(0, before - n);
    if (before > this.bufferedAmountLowThreshold && this.bufferedAmount <= this.bufferedAmountLowThreshold) {
      this.dispatchEvent(new Event("bufferedamountlow"));
    }
  }
  /** A message from the hub: a frame object (encoded here) or raw bytes/text. */
  deliver(frame, encode) {
    const event = new Event("message");
    if (frame instanceof Uint8Array || typeof frame === "string") event.data = frame instanceof Uint8Array ? frame.slice().buffer : frame;
    else event.data = encode(frame).slice().buffer;
    this.dispatchEvent(event);
  }
  close() {
    if (this.readyState === "closed") return;
    this.readyState = "closed";
    this.dispatchEvent(new Event("close"));
  }
}

/** Let queued promise callbacks and one macrotask run. */
export function settle() {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * The hubs a test file opens (push each onto the list returned): after each test they are
 * closed, and no promise rejection may have gone unhandled.
 */
export function hubsClosedAfterEach() {
  const unhandled = [];
  process.on("unhandledRejection", (reason) => unhandled.push(reason));
  const hubs = [];
  afterEach(async () => {
    for (const hub of hubs.splice(0)) hub.close();
    await settle();
    assert.deepEqual(unhandled.splice(0).map(String), [], "no promise rejection may go unhandled");
  });
  return hubs;
}
