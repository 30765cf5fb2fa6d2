// The incremental SHA-256 against node:crypto (an independent implementation), for every
// length around the block boundaries and random ways of cutting the input.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";

import { Sha256, sha256Hex } from "../../rxchannel/web/sha256.js";
import { prng } from "./helpers.mjs";

const reference = (bytes) => createHash("sha256").update(bytes).digest("hex");

test("known answers (FIPS 180-4 examples)", () => {
  const ascii = (s) => new TextEncoder().encode(s);
  assert.equal(sha256Hex(ascii("")), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  assert.equal(sha256Hex(ascii("abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  assert.equal(
    sha256Hex(ascii("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")),
    "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
  );
});

test("every length from 0 to 300, fed in random pieces, matches node:crypto", () => {
  const random = prng(7);
  for (let n = 0; n <= 300; n++) {
    const bytes = randomBytes(n);
    const h = new Sha256();
    for (let at = 0; at < n;) {
      const take = Math.min(n - at, Math.floor(random() * 130));
      h.update(bytes.subarray(at, at + take));
      at += take;
    }
    assert.equal(h.hex(), reference(bytes), `length ${n}`);
    assert.equal(h.length, n);
  }
});

test("a digest mid-way leaves the state intact: hashing can continue (a resumed transfer)", () => {
  const bytes = randomBytes(200_000);
  const h = new Sha256().update(bytes.subarray(0, 65_537));
  assert.equal(h.hex(), reference(bytes.subarray(0, 65_537)));
  h.update(bytes.subarray(65_537));
  assert.equal(h.hex(), reference(bytes));
  assert.equal(toArray(h.digest()).length, 32);
});

function toArray(x) { return Array.from(x); }
