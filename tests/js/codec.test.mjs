// The frame codec, fragmentation and composite metadata against golden bytes written by
// the Python core (tests/js/vectors/*.json), and a fuzzed decoder.
import { test } from "node:test";
import assert from "node:assert/strict";

import { FrameError, RemoteProtocolError } from "../../rxchannel/web/errors.js";
import { decodeFrame, encodeFrame } from "../../rxchannel/web/frames.js";
import { Reassembly, encodeItem } from "../../rxchannel/web/fragments.js";
import {
  MetadataError, bearerMetadata, decodeComposite, encodeComposite, parseRequestMetadata, requestMetadata,
} from "../../rxchannel/web/metadata.js";
import { encodable, fromHex, plain, prng, toHex, vectors } from "./helpers.mjs";

const FRAMES = vectors("frames.json");

test("every golden frame decodes to the fields the Python core encoded", () => {
  for (const { name, hex, frame } of [...FRAMES.encoded, ...FRAMES.decodeOnly]) {
    assert.deepEqual(plain(decodeFrame(fromHex(hex))), frame, name);
  }
});

test("every frame encodes to the Python core's bytes", () => {
  assert.ok(FRAMES.encoded.length >= 20);
  for (const { name, hex, frame } of FRAMES.encoded) {
    assert.equal(toHex(encodeFrame(encodable(frame))), hex, name);
  }
});

test("decoding works on a view into a larger buffer (as a message's ArrayBuffer is shared)", () => {
  const { hex, frame } = FRAMES.encoded.find((c) => c.name === "PAYLOAD NEXT with metadata");
  const bytes = fromHex(hex);
  const big = new Uint8Array(bytes.length + 10);
  big.set(bytes, 7);
  assert.deepEqual(plain(decodeFrame(big.subarray(7, 7 + bytes.length))), frame);
  assert.deepEqual(plain(decodeFrame(bytes.buffer)), frame);
});

test("malformed frames raise FrameError with the Python core's message", () => {
  for (const { name, hex, error } of FRAMES.malformed) {
    assert.throws(() => decodeFrame(fromHex(hex)), (e) => e instanceof FrameError && e.message === error, name);
  }
  assert.throws(() => decodeFrame("text"), FrameError, "a text message is not a frame");
});

test("fuzz: random bytes and mutated golden frames decode or raise FrameError, nothing else", () => {
  const random = prng(20240515);
  const golden = [...FRAMES.encoded, ...FRAMES.decodeOnly].map((c) => fromHex(c.hex));
  let decoded = 0, refused = 0;
  for (let i = 0; i < 20000; i++) {
    let bytes;
    if (i % 2) {
      bytes = new Uint8Array(Math.floor(random() * 40));
      for (let j = 0; j < bytes.length; j++) bytes[j] = Math.floor(random() * 256);
    } else {
      const base = golden[Math.floor(random() * golden.length)];
      const cut = Math.floor(random() * (base.length + 1));
      bytes = base.slice(0, random() < 0.3 ? cut : base.length);
      for (let k = Math.floor(random() * 4); k >= 0 && bytes.length; k--) {
        bytes[Math.floor(random() * bytes.length)] = Math.floor(random() * 256);
      }
    }
    try {
      const frame = decodeFrame(bytes);
      assert.equal(typeof frame.type, "string");
      decoded++;
    } catch (error) {
      assert.ok(error instanceof FrameError, `seed 20240515 case ${i}: ${error && error.stack}`);
      refused++;
    }
  }
  assert.ok(decoded > 1000 && refused > 1000, `both outcomes exercised (${decoded} decoded, ${refused} refused)`);
});

test("fragmentation produces the Python core's frames, and reassembly restores the item", () => {
  for (const c of vectors("fragments.json")) {
    const metadata = fromHex(c.metadata), data = fromHex(c.data);
    const frames = encodeItem(c.streamId, c.type, metadata, data, c.limit, {
      initialN: c.initialN, complete: c.complete, next: c.next,
    });
    assert.deepEqual(frames.map(toHex), c.frames, `${c.type} limit ${c.limit}`);
    frames.forEach((f, i) => assert.ok(f.length <= c.limit || c.frames.length === 1, `frame ${i} fits`));
    const whole = new Reassembly(1 << 20);
    frames.forEach((f, i) => {
      const frame = decodeFrame(f);
      assert.equal(frame.follows, i < frames.length - 1);
      whole.add(c.streamId, frame.metadata, frame.data);
    });
    const result = whole.result();
    assert.equal(toHex(result.data), c.data);
    assert.equal(toHex(result.metadata), c.metadata === null ? null : c.metadata);
  }
});

test("reassembly refuses to grow past its limit with REJECTED", () => {
  const r = new Reassembly(10);
  r.add(1, null, new Uint8Array(6));
  assert.throws(() => r.add(1, new Uint8Array(2), new Uint8Array(3)), (e) => e instanceof RemoteProtocolError && e.code === 0x202);
});

test("request metadata, composite entries and bearer tokens are byte-identical to the Python core", () => {
  const m = vectors("metadata.json");
  for (const { route, info, hex } of m.requests) {
    assert.equal(toHex(requestMetadata(route, info)), hex, `${route} ${JSON.stringify(info)}`);
    const parsed = parseRequestMetadata(fromHex(hex));
    assert.equal(parsed.route, route);
    assert.deepEqual(parsed.info, info || {});
  }
  for (const { entries, hex } of m.composite) {
    assert.equal(toHex(encodeComposite(entries.map(([mime, c]) => [mime, fromHex(c)]))), hex);
    assert.deepEqual(decodeComposite(fromHex(hex)).map(([mime, c]) => [mime, toHex(c)]), entries);
  }
  for (const { token, hex } of m.bearer) assert.equal(toHex(bearerMetadata(token)), hex);
  for (const { hex, error } of m.decodeErrors) {
    assert.throws(() => decodeComposite(fromHex(hex)), (e) => e instanceof MetadataError && e.message === error, hex);
  }
});
