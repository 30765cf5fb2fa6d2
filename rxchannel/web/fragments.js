// Fragmentation and reassembly (Protocol.md "Fragmentation And Reassembly"), as
// rxchannel/core/_fragments.py: metadata first, then data; the first frame keeps its type
// (REQUEST_* or PAYLOAD), the rest are PAYLOAD frames; every frame but the last has
// FOLLOWS. A fragmented item still counts as one credit.

import { ERROR_CODE, RemoteProtocolError } from "./errors.js";
import { encodeFrame, encodePayload } from "./frames.js";

/** Smallest frame limit accepted: the header plus fixed fields must leave room for content. */
export const MIN_FRAME_SIZE = 64;
const HEADER = 6;
const METADATA_LENGTH = 3;
const EMPTY = new Uint8Array(0);

/**
 * Cut (metadata, data) into [[metadata|null, data], ...] parts that each fit maxFrameSize.
 * `firstExtra` counts fixed fields of the first frame (4 for the initial n of
 * REQUEST_STREAM / REQUEST_CHANNEL). One part when no fragmentation is needed.
 */
export function split(metadata, data, maxFrameSize, firstExtra = 0) {
  let total = HEADER + firstExtra + data.length;
  if (metadata !== null) total += METADATA_LENGTH + metadata.length;
  if (total <= maxFrameSize) return [[metadata, data]];
  const parts = [];
  let mPos = 0, dPos = 0, extra = firstExtra;
  const mLen = metadata === null ? -1 : metadata.length;
  for (;;) {
    let room = maxFrameSize - HEADER - extra;
    extra = 0;
    let partMeta = null;
    if (metadata !== null && (mPos < mLen || (mLen === 0 && !parts.length))) {
      room -= METADATA_LENGTH;
      partMeta = metadata.subarray(mPos, mPos + Math.max(room, 0));
      mPos += partMeta.length;
      room -= partMeta.length;
    }
    let partData = EMPTY;
    if (room > 0 && (metadata === null || mPos >= mLen)) {
      partData = data.subarray(dPos, dPos + room);
      dPos += partData.length;
    }
    parts.push([partMeta, partData]);
    if ((metadata === null || mPos >= mLen) && dPos >= data.length) return parts;
  }
}

/**
 * The frames of one request or payload, fragmented to `limit` bytes per frame.
 * `firstType` is a TYPE name ("PAYLOAD", "REQUEST_STREAM", ...).
 */
export function encodeItem(streamId, firstType, metadata, data, limit, { initialN = 0, complete = false, next = true } = {}) {
  const isRequest = firstType !== "PAYLOAD";
  if (!isRequest && data.length + (metadata !== null ? metadata.length : 0) + 64 < limit) {
    return [encodePayload(streamId, data, metadata, { next, complete })];
  }
  const extra = firstType === "REQUEST_STREAM" || firstType === "REQUEST_CHANNEL" ? 4 : 0;
  const parts = split(metadata, data, limit, extra);
  const last = parts.length - 1;
  return parts.map(([partMeta, partData], i) => {
    const follows = i < last;
    if (i === 0 && isRequest) {
      return encodeFrame({
        type: firstType, streamId, metadata: partMeta, data: partData, initialN, follows, complete: complete && !follows,
      });
    }
    return encodePayload(streamId, partData, partMeta, { next, complete: complete && !follows, follows });
  });
}

/** Collects the fragments of one item, refusing to grow past `limit` bytes. */
export class Reassembly {
  constructor(limit) {
    this.limit = limit;
    this.size = 0;
    this.metadata = null;
    this.data = [];
  }

  /** Append one fragment. Throws RemoteProtocolError (REJECTED) past the limit. */
  add(streamId, metadata, data) {
    this.size += data.length + (metadata ? metadata.length : 0);
    if (this.size > this.limit) {
      throw new RemoteProtocolError(
        `fragmented payload exceeds the reassembly limit of ${this.limit} bytes`, ERROR_CODE.REJECTED, streamId,
      );
    }
    if (metadata !== null) (this.metadata || (this.metadata = [])).push(metadata);
    if (data.length) this.data.push(data);
  }

  /** {metadata, data} of the whole item. */
  result() {
    return { metadata: this.metadata === null ? null : join(this.metadata), data: join(this.data) };
  }
}

function join(parts) {
  if (parts.length === 1) return parts[0];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}
