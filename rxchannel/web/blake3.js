// BLAKE3 (the hash mode, 256-bit output) of a whole byte array, in plain JS: the digest of
// each chunk in a hub's file manifest (rxchannel/files/manifest.py), checked by the OPFS
// worker as chunks arrive. It follows the reference implementation of the BLAKE3 paper
// (chunks of 1 KiB in 64-byte blocks, a binary tree of parent nodes merged as chunks
// complete); tests/js/blake3.test.mjs checks it against vectors the Python `blake3`
// package (the Rust implementation) wrote.

const IV = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];
const PERMUTATION = [2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8];
const CHUNK_START = 1, CHUNK_END = 2, PARENT = 4, ROOT = 8;
const CHUNK_LEN = 1024, BLOCK_LEN = 64;

// SCHEDULE[r][i]: which message word round r reads at position i (the permutation applied r times)
const SCHEDULE = [];
for (let r = 0, order = [...Array(16).keys()]; r < 7; r++) {
  SCHEDULE.push(order);
  order = PERMUTATION.map((p) => order[p]);
}

/** The compression function: 16 words of state out (cv: 8 words, m: 16 words). */
function compress(cv, m, counter, blockLen, flags) {
  let s0 = cv[0] | 0, s1 = cv[1] | 0, s2 = cv[2] | 0, s3 = cv[3] | 0, s4 = cv[4] | 0, s5 = cv[5] | 0, s6 = cv[6] | 0, s7 = cv[7] | 0;
  let s8 = IV[0] | 0, s9 = IV[1] | 0, s10 = IV[2] | 0, s11 = IV[3] | 0;
  let s12 = counter | 0, s13 = Math.floor(counter / 0x100000000) | 0, s14 = blockLen | 0, s15 = flags | 0;
  for (let r = 0; r < 7; r++) {
    const o = SCHEDULE[r];
    s0 = (s0 + s4 + m[o[0]]) | 0; s12 ^= s0; s12 = (s12 >>> 16) | (s12 << 16);
    s8 = (s8 + s12) | 0; s4 ^= s8; s4 = (s4 >>> 12) | (s4 << 20);
    s0 = (s0 + s4 + m[o[1]]) | 0; s12 ^= s0; s12 = (s12 >>> 8) | (s12 << 24);
    s8 = (s8 + s12) | 0; s4 ^= s8; s4 = (s4 >>> 7) | (s4 << 25);
    s1 = (s1 + s5 + m[o[2]]) | 0; s13 ^= s1; s13 = (s13 >>> 16) | (s13 << 16);
    s9 = (s9 + s13) | 0; s5 ^= s9; s5 = (s5 >>> 12) | (s5 << 20);
    s1 = (s1 + s5 + m[o[3]]) | 0; s13 ^= s1; s13 = (s13 >>> 8) | (s13 << 24);
    s9 = (s9 + s13) | 0; s5 ^= s9; s5 = (s5 >>> 7) | (s5 << 25);
    s2 = (s2 + s6 + m[o[4]]) | 0; s14 ^= s2; s14 = (s14 >>> 16) | (s14 << 16);
    s10 = (s10 + s14) | 0; s6 ^= s10; s6 = (s6 >>> 12) | (s6 << 20);
    s2 = (s2 + s6 + m[o[5]]) | 0; s14 ^= s2; s14 = (s14 >>> 8) | (s14 << 24);
    s10 = (s10 + s14) | 0; s6 ^= s10; s6 = (s6 >>> 7) | (s6 << 25);
    s3 = (s3 + s7 + m[o[6]]) | 0; s15 ^= s3; s15 = (s15 >>> 16) | (s15 << 16);
    s11 = (s11 + s15) | 0; s7 ^= s11; s7 = (s7 >>> 12) | (s7 << 20);
    s3 = (s3 + s7 + m[o[7]]) | 0; s15 ^= s3; s15 = (s15 >>> 8) | (s15 << 24);
    s11 = (s11 + s15) | 0; s7 ^= s11; s7 = (s7 >>> 7) | (s7 << 25);
    s0 = (s0 + s5 + m[o[8]]) | 0; s15 ^= s0; s15 = (s15 >>> 16) | (s15 << 16);
    s10 = (s10 + s15) | 0; s5 ^= s10; s5 = (s5 >>> 12) | (s5 << 20);
    s0 = (s0 + s5 + m[o[9]]) | 0; s15 ^= s0; s15 = (s15 >>> 8) | (s15 << 24);
    s10 = (s10 + s15) | 0; s5 ^= s10; s5 = (s5 >>> 7) | (s5 << 25);
    s1 = (s1 + s6 + m[o[10]]) | 0; s12 ^= s1; s12 = (s12 >>> 16) | (s12 << 16);
    s11 = (s11 + s12) | 0; s6 ^= s11; s6 = (s6 >>> 12) | (s6 << 20);
    s1 = (s1 + s6 + m[o[11]]) | 0; s12 ^= s1; s12 = (s12 >>> 8) | (s12 << 24);
    s11 = (s11 + s12) | 0; s6 ^= s11; s6 = (s6 >>> 7) | (s6 << 25);
    s2 = (s2 + s7 + m[o[12]]) | 0; s13 ^= s2; s13 = (s13 >>> 16) | (s13 << 16);
    s8 = (s8 + s13) | 0; s7 ^= s8; s7 = (s7 >>> 12) | (s7 << 20);
    s2 = (s2 + s7 + m[o[13]]) | 0; s13 ^= s2; s13 = (s13 >>> 8) | (s13 << 24);
    s8 = (s8 + s13) | 0; s7 ^= s8; s7 = (s7 >>> 7) | (s7 << 25);
    s3 = (s3 + s4 + m[o[14]]) | 0; s14 ^= s3; s14 = (s14 >>> 16) | (s14 << 16);
    s9 = (s9 + s14) | 0; s4 ^= s9; s4 = (s4 >>> 12) | (s4 << 20);
    s3 = (s3 + s4 + m[o[15]]) | 0; s14 ^= s3; s14 = (s14 >>> 8) | (s14 << 24);
    s9 = (s9 + s14) | 0; s4 ^= s9; s4 = (s4 >>> 7) | (s4 << 25);
  }
  const out = new Uint32Array(16);
  out[0] = s0 ^ s8; out[1] = s1 ^ s9; out[2] = s2 ^ s10; out[3] = s3 ^ s11;
  out[4] = s4 ^ s12; out[5] = s5 ^ s13; out[6] = s6 ^ s14; out[7] = s7 ^ s15;
  out[8] = s8 ^ cv[0]; out[9] = s9 ^ cv[1]; out[10] = s10 ^ cv[2]; out[11] = s11 ^ cv[3];
  out[12] = s12 ^ cv[4]; out[13] = s13 ^ cv[5]; out[14] = s14 ^ cv[6]; out[15] = s15 ^ cv[7];
  return out;
}

const words = new Uint32Array(16);

/** 64 bytes (fewer: zero-padded) of `bytes` from `at` as 16 little-endian words. */
function block(bytes, at, length) {
  if (length === BLOCK_LEN && at + BLOCK_LEN <= bytes.length) {
    for (let i = 0, j = at; i < 16; i++, j += 4) words[i] = bytes[j] | (bytes[j + 1] << 8) | (bytes[j + 2] << 16) | (bytes[j + 3] << 24);
    return words;
  }
  words.fill(0);
  for (let i = 0; i < length; i++) words[i >> 2] |= bytes[at + i] << (8 * (i & 3));
  return words;
}

/** A node not compressed yet: the root is compressed with ROOT, any other for its chaining value. */
function chunkOutput(bytes, at, length, counter) {
  let cv = IV;
  const blocks = Math.max(1, Math.ceil(length / BLOCK_LEN));
  for (let b = 0; b < blocks - 1; b++) {
    cv = compress(cv, block(bytes, at + b * BLOCK_LEN, BLOCK_LEN), counter, BLOCK_LEN, b === 0 ? CHUNK_START : 0).subarray(0, 8);
  }
  const last = length - (blocks - 1) * BLOCK_LEN;
  return { cv, m: Uint32Array.from(block(bytes, at + (blocks - 1) * BLOCK_LEN, last)), counter, len: last, flags: (blocks === 1 ? CHUNK_START : 0) | CHUNK_END };
}

function parentOutput(left, right) {
  const m = new Uint32Array(16);
  m.set(left, 0);
  m.set(right, 8);
  return { cv: IV, m, counter: 0, len: BLOCK_LEN, flags: PARENT };
}

const chainingValue = (o) => compress(o.cv, o.m, o.counter, o.len, o.flags).subarray(0, 8);

/** BLAKE3 of `bytes` (a Uint8Array), as 64 lowercase hex digits. */
export function blake3Hex(bytes) {
  const stack = [];
  const chunks = Math.max(1, Math.ceil(bytes.length / CHUNK_LEN));
  for (let c = 0; c < chunks - 1; c++) {
    let cv = chainingValue(chunkOutput(bytes, c * CHUNK_LEN, CHUNK_LEN, c));
    // merge completed subtrees: as many as trailing zero bits in the count of chunks done
    for (let done = c + 1; (done & 1) === 0; done >>= 1) cv = chainingValue(parentOutput(stack.pop(), cv));
    stack.push(cv);
  }
  let output = chunkOutput(bytes, (chunks - 1) * CHUNK_LEN, bytes.length - (chunks - 1) * CHUNK_LEN, chunks - 1);
  while (stack.length) output = parentOutput(stack.pop(), chainingValue(output));
  const root = compress(output.cv, output.m, output.counter, output.len, output.flags | ROOT);
  let hex = "";
  for (let i = 0; i < 8; i++) {
    const w = root[i];
    for (let k = 0; k < 4; k++) hex += ((w >>> (8 * k)) & 0xff).toString(16).padStart(2, "0");
  }
  return hex;
}
