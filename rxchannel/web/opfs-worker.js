// The disk side of a fetch into the origin-private file system, in a dedicated worker.
//
// A FileSystemSyncAccessHandle (workers only) writes in place: what is written is in the
// partial file at once (flushed every few MiB), so a fetch interrupted in any way (even a
// crashed tab) resumes from it, and resuming copies nothing. Hashing happens here too,
// off the page's main thread. The page hands over one chunk at a time (its buffer
// transferred, not copied) and reads the next one from the hub's stream only when this
// worker says the last one is written: the disk's pace is the pace of the hub's credits.
//
// With the hub's manifest (route manifest/<path>), every chunk is checked against it before it
// is written (manifest.js): a chunk that does not match fails the fetch at once, naming it,
// and is never written; a resume keeps the chunks of the partial file that still match, up
// to the first that does not (a torn or tampered .part is cut there, not trusted).
//
// Messages, handled strictly in order (one fetch per worker):
//   {op: "open", name, resume, manifest?} -> {op: "opened", offset, sha256, kept}   (sha256 of the prefix kept, or null)
//   {op: "begin", restart, delay?}      (restart: the hub started over at 0; delay: ms per chunk, a slow disk for tests)
//   {op: "chunk", data}                 -> {op: "written", written}
//   {op: "end", outcome}                -> {op: outcome ("done" | "failed" | "cancelled"), written, sha256}
// A failure replies {op: "error", name, message} and closes the file.

import { Sha256 } from "./sha256.js";
import { ChunkCheck, chunkLength, chunkMatches, parseManifest } from "./manifest.js";

const FLUSH_EVERY = 8 << 20;
let access = null, hash = null, written = 0, unflushed = 0, delay = 0, manifest = null, check = null;

async function open({ name, resume, manifest: described, source }) {
  const root = await navigator.storage.getDirectory();
  const dir = await root.getDirectoryHandle("rxchannel", { create: true });
  const part = await dir.getFileHandle(`${name}.part`, { create: true });
  access = await part.createSyncAccessHandle(); // fails while another transfer writes this file
  hash = new Sha256();
  written = access.getSize();
  manifest = described ? parseManifest(described) : null;
  if (manifest) {
    written = resume ? keepVerified(written) : 0;
    access.truncate(written);
    check = new ChunkCheck(manifest, written, source || "the hub");
    return { op: "opened", offset: written, sha256: written ? hash.hex() : null, kept: written };
  }
  if (resume && written > 0) {
    const block = new Uint8Array(1 << 20);
    for (let at = 0; at < written;) {
      const n = access.read(block, { at });
      if (n <= 0) break;
      hash.update(block.subarray(0, n));
      at += n;
    }
  } else {
    access.truncate(0);
    written = 0;
  }
  return { op: "opened", offset: written, sha256: written ? hash.hex() : null, kept: written };
}

/** The bytes of the partial file's chunks that match the manifest, from the first up to one that does not. */
function keepVerified(size) {
  let at = 0;
  for (let index = 0; index < manifest.count; index++) {
    const length = chunkLength(manifest, index);
    if (at + length > size) break;
    const bytes = new Uint8Array(length);
    if (access.read(bytes, { at }) !== length || !chunkMatches(manifest, index, bytes)) break;
    hash.update(bytes);
    at += length;
  }
  return at;
}
function begin(message) {
  delay = message.delay || 0;
  if (message.restart) {
    access.truncate(0);
    hash = new Sha256();
    written = 0;
    if (check) check = new ChunkCheck(manifest, 0, check.source);
  }
}

async function chunk({ data }) {
  if (check) {
    for (const verified of check.push(data)) store(verified.bytes);  // throws before writing a bad chunk
  } else {
    store(data);
  }
  if (delay) await new Promise((resolve) => setTimeout(resolve, delay));
  return { op: "written", written };
}

function store(data) {
  for (let at = 0; at < data.length;) at += access.write(data.subarray(at), { at: written + at });
  hash.update(data);
  written += data.length;
  unflushed += data.length;
  if (unflushed >= FLUSH_EVERY) {
    access.flush();
    unflushed = 0;
  }
}

function end({ outcome }) {
  if (check && outcome === "done" && check.pending) {
    throw new Error(`the stream ended inside chunk ${check.index} (${check.pending} bytes of it unverified)`);
  }
  close();
  return { op: outcome, written, sha256: hash.hex() };
}

function close() {
  if (access) {
    const handle = access;
    access = null;
    try { handle.flush(); } finally { handle.close(); }
  }
}

const steps = { open, begin, chunk, end };
let queue = Promise.resolve();

onmessage = ({ data }) => {
  queue = queue.then(async () => {
    try {
      const reply = await steps[data.op](data);
      if (reply) postMessage(reply);
    } catch (error) {
      try { close(); } catch { /* the handle is unusable already */ }
      postMessage({ op: "error", name: (error && error.name) || "Error", message: String((error && error.message) || error) });
    }
  });
};
