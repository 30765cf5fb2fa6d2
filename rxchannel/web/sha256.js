// Incremental SHA-256 (FIPS 180-4) in plain JavaScript: WebCrypto has no incremental digest,
// and a file streamed to disk must be hashed as it passes, not read back into memory.
//
//   const h = new Sha256(); h.update(chunk); ...; h.hex()
//
// digest()/hex() do not finish the state: more update() calls may follow (a resumed
// transfer hashes its partial file, then continues with what arrives).

const K = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);
const INITIAL = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];

/** Process every whole 64-byte block of bytes[start:end) into state H, using schedule W. */
function blocks(H, W, bytes, start, end) {
  let h0 = H[0], h1 = H[1], h2 = H[2], h3 = H[3], h4 = H[4], h5 = H[5], h6 = H[6], h7 = H[7];
  for (let p = start; p + 64 <= end; p += 64) {
    for (let t = 0; t < 16; t++) {
      const i = p + t * 4;
      W[t] = (bytes[i] << 24) | (bytes[i + 1] << 16) | (bytes[i + 2] << 8) | bytes[i + 3];
    }
    for (let t = 16; t < 64; t++) {
      const x = W[t - 15], y = W[t - 2];
      const s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
      const s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
      W[t] = (W[t - 16] + s0 + W[t - 7] + s1) | 0;
    }
    let a = h0, b = h1, c = h2, d = h3, e = h4, f = h5, g = h6, h = h7;
    for (let t = 0; t < 64; t++) {
      const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
      const ch = (e & f) ^ (~e & g);
      const t1 = (h + S1 + ch + K[t] + W[t]) | 0;
      const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
      const maj = (a & b) ^ (a & c) ^ (b & c);
      const t2 = (S0 + maj) | 0;
      h = g; g = f; f = e; e = (d + t1) | 0;
      d = c; c = b; b = a; a = (t1 + t2) | 0;
    }
    h0 = (h0 + a) | 0; h1 = (h1 + b) | 0; h2 = (h2 + c) | 0; h3 = (h3 + d) | 0;
    h4 = (h4 + e) | 0; h5 = (h5 + f) | 0; h6 = (h6 + g) | 0; h7 = (h7 + h) | 0;
  }
  H[0] = h0; H[1] = h1; H[2] = h2; H[3] = h3; H[4] = h4; H[5] = h5; H[6] = h6; H[7] = h7;
}

export class Sha256 {
  constructor() {
    this._h = new Int32Array(INITIAL);
    this._w = new Int32Array(64);
    this._block = new Uint8Array(64);
    this._filled = 0; // bytes waiting in _block
    this.length = 0; // bytes hashed so far
  }

  /** Feed bytes (Uint8Array, ArrayBuffer or a view). Returns this. */
  update(input) {
    const bytes = input instanceof Uint8Array ? input
      : ArrayBuffer.isView(input) ? new Uint8Array(input.buffer, input.byteOffset, input.byteLength)
        : new Uint8Array(input);
    let at = 0;
    const end = bytes.length;
    this.length += end;
    if (this._filled) {
      const take = Math.min(64 - this._filled, end);
      this._block.set(bytes.subarray(0, take), this._filled);
      this._filled += take;
      at = take;
      if (this._filled < 64) return this;
      blocks(this._h, this._w, this._block, 0, 64);
      this._filled = 0;
    }
    const whole = at + Math.floor((end - at) / 64) * 64;
    if (whole > at) blocks(this._h, this._w, bytes, at, whole);
    if (whole < end) {
      this._block.set(bytes.subarray(whole, end), 0);
      this._filled = end - whole;
    }
    return this;
  }

  /** The digest of everything fed so far (32 bytes); the state is unchanged. */
  digest() {
    const H = new Int32Array(this._h);
    const tail = new Uint8Array(this._filled < 56 ? 64 : 128);
    tail.set(this._block.subarray(0, this._filled));
    tail[this._filled] = 0x80;
    const bits = this.length * 8;
    const view = new DataView(tail.buffer);
    view.setUint32(tail.length - 8, Math.floor(bits / 2 ** 32));
    view.setUint32(tail.length - 4, bits >>> 0);
    blocks(H, new Int32Array(64), tail, 0, tail.length);
    const out = new Uint8Array(32);
    const outView = new DataView(out.buffer);
    for (let i = 0; i < 8; i++) outView.setInt32(i * 4, H[i]);
    return out;
  }

  /** The digest as 64 lowercase hex characters. */
  hex() {
    let text = "";
    for (const b of this.digest()) text += b.toString(16).padStart(2, "0");
    return text;
  }
}

/** SHA-256 of bytes, as hex. */
export function sha256Hex(bytes) {
  return new Sha256().update(bytes).hex();
}
