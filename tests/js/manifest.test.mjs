// Per-chunk verification in the browser (blake3.js, manifest.js) against vectors the Python
// side wrote (tests/web/manifest_vectors.py: the `blake3` package and compute_manifest).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

import { blake3Hex } from "../../rxchannel/web/blake3.js";
import { ChunkCheck, ChunkMismatch, parseManifest } from "../../rxchannel/web/manifest.js";
import { prng } from "./helpers.mjs";

const vectors = JSON.parse(readFileSync(new URL("./vectors/manifest.json", import.meta.url)));
const bytes = (hex) => Uint8Array.from(Buffer.from(hex, "hex"));

test("BLAKE3 of every length the Python package hashed, across block, chunk and tree boundaries", () => {
  for (const { hex, blake3 } of vectors.blake3) assert.equal(blake3Hex(bytes(hex)), blake3, `${hex.length / 2} bytes`);
});

test("a file cut in random pieces comes out chunk by chunk, each verified, in order", () => {
  const manifest = parseManifest(JSON.stringify(vectors.manifest));
  const file = bytes(vectors.file);
  assert.equal(manifest.count, 3);
  const random = prng(30);
  for (let round = 0; round < 20; round++) {
    const check = new ChunkCheck(manifest, 0);
    const out = [];
    for (let at = 0; at < file.length;) {
      const take = Math.min(file.length - at, 1 + Math.floor(random() * 6000));
      for (const chunk of check.push(file.slice(at, at + take))) out.push([chunk.index, chunk.at, chunk.bytes.length]);
      at += take;
    }
    assert.deepEqual(out, [[0, 0, 4096], [1, 4096, 4096], [2, 8192, 1808]]);
    assert.equal(check.pending, 0);
  }
});

test("a flipped byte fails its chunk, naming it, before anything of it is released", () => {
  const manifest = parseManifest(vectors.manifest);
  const file = bytes(vectors.file);
  file[5000] ^= 1; // chunk 1
  const check = new ChunkCheck(manifest, 0, "hub-x");
  assert.equal(check.push(file.subarray(0, 4096)).length, 1);
  assert.throws(() => check.push(file.subarray(4096)), (e) => e instanceof ChunkMismatch && e.index === 1 && /chunk 1 .*from hub-x/.test(e.message));
});

test("resuming starts at a chunk boundary; bytes past the end and malformed manifests are refused", () => {
  const manifest = parseManifest(vectors.manifest);
  const file = bytes(vectors.file);
  const check = new ChunkCheck(manifest, 4096);
  assert.deepEqual(check.push(file.subarray(4096)).map((c) => c.index), [1, 2]);
  assert.throws(() => check.push(new Uint8Array(1)), ChunkMismatch);
  assert.throws(() => new ChunkCheck(manifest, 100));
  assert.throws(() => parseManifest({ ...vectors.manifest, chunks: vectors.manifest.chunks.slice(1) }));
  assert.throws(() => parseManifest({ ...vectors.manifest, algorithm: "md5" }));
});
