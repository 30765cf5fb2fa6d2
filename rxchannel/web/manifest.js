// A hub's file manifest (route manifest/<path>, rxchannel/files/manifest.py) and the check of
// each chunk against it as the chunk arrives, before it is written.
//
//   const manifest = parseManifest(jsonText);          // throws on a malformed one
//   const check = new ChunkCheck(manifest, offset);     // offset: a chunk boundary
//   for (const { index, at, bytes } of check.push(data)) write(bytes, at);   // verified chunks only
//   check.pending                                        // bytes held until their chunk is complete
//
// A chunk that does not match throws ChunkMismatch naming the chunk (and `source`): the
// stream is failed at once and those bytes are never written.

import { blake3Hex } from "./blake3.js";

const HEX64 = /^[0-9a-f]{64}$/;

export class ChunkMismatch extends Error {
  constructor(message, index) {
    super(message);
    this.name = "IntegrityError";
    this.index = index;
  }
}

/** The manifest in `text` (JSON), checked: {size, chunkSize, chunks, sha256, count}. */
export function parseManifest(text) {
  const raw = typeof text === "string" ? JSON.parse(text) : text;
  const count = (n) => Number.isSafeInteger(n) && n >= 0;
  if (!raw || raw.version !== 1 || raw.algorithm !== "blake3") throw new Error("not a version-1 blake3 manifest");
  const { size, chunk_size: chunkSize, chunks, sha256 } = raw;
  if (!count(size) || !count(chunkSize) || chunkSize === 0 || !Array.isArray(chunks)) throw new Error("a malformed manifest");
  if (chunks.length !== Math.ceil(size / chunkSize)) throw new Error(`the manifest lists ${chunks.length} chunks for ${size} bytes`);
  if (!chunks.every((c) => HEX64.test(c)) || !HEX64.test(sha256)) throw new Error("a manifest digest is not 64 hex digits");
  return { size, chunkSize, chunks, sha256, count: chunks.length };
}

/** Chunk `index`'s length in the file the manifest describes. */
export function chunkLength(manifest, index) {
  return Math.min(manifest.chunkSize, manifest.size - index * manifest.chunkSize);
}

/** Whether `bytes` is chunk `index` of the file. */
export function chunkMatches(manifest, index, bytes) {
  return bytes.length === chunkLength(manifest, index) && blake3Hex(bytes) === manifest.chunks[index];
}

/** Bytes of a stream in order from `offset`, released chunk by chunk once each matches. */
export class ChunkCheck {
  constructor(manifest, offset = 0, source = "the hub") {
    if (offset % manifest.chunkSize !== 0 && offset !== manifest.size) throw new Error(`offset ${offset} is not at a chunk boundary`);
    this.manifest = manifest;
    this.index = offset / manifest.chunkSize;
    this.source = source;
    this.buffer = null;
    this.held = 0; // bytes of the current chunk collected so far
  }

  get pending() { return this.held; }

  /** The chunks `data` completes, verified, as [{index, at, bytes}]; throws ChunkMismatch. */
  push(data) {
    const done = [];
    let at = 0;
    while (at < data.length) {
      if (this.index >= this.manifest.count) {
        throw new ChunkMismatch(`${this.source} sent ${data.length - at} bytes past the end of the file`, this.index);
      }
      const length = chunkLength(this.manifest, this.index);
      let bytes;
      if (!this.held && data.length - at >= length) {
        bytes = data.subarray(at, at + length); // a whole chunk in hand: no copy
        at += length;
      } else {
        // collect the chunk in one buffer of its size (items smaller than chunks are copied once)
        if (!this.held) this.buffer = new Uint8Array(length);
        const take = Math.min(length - this.held, data.length - at);
        this.buffer.set(data.subarray(at, at + take), this.held);
        this.held += take;
        at += take;
        if (this.held < length) break;
        bytes = this.buffer;
        this.held = 0;
      }
      if (!chunkMatches(this.manifest, this.index, bytes)) {
        const start = this.index * this.manifest.chunkSize;
        throw new ChunkMismatch(`chunk ${this.index} (bytes ${start}-${start + length - 1}) from ${this.source} does not match the manifest: not written`, this.index);
      }
      done.push({ index: this.index, at: this.index * this.manifest.chunkSize, bytes });
      this.index += 1;
    }
    return done;
  }
}
