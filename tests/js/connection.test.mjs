// The Hub's protocol logic over a stand-in DataChannel: SETUP, demand through a
// ReadableStream, credit enforcement, PAYLOAD flags, malformed frames, the send queue
// under concurrent senders, uploads within credit and bufferedAmount, keepalive deadlines,
// and no unhandled promise rejections anywhere.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";

import { Hub } from "../../rxchannel/web/connection.js";
import {
  ClosedResourceError, ConnectionLostError, IntegrityError, LocalProtocolError, RemoteError, RemoteProtocolError,
} from "../../rxchannel/web/errors.js";
import { decodeFrame, encodeFrame } from "../../rxchannel/web/frames.js";
import { jsonBytes, parseRequestMetadata, requestMetadata } from "../../rxchannel/web/metadata.js";
import { SendQueue } from "../../rxchannel/web/queue.js";
import { FakeChannel, hubsClosedAfterEach, settle, toHex, vectors } from "./helpers.mjs";

const hubs = hubsClosedAfterEach();

function open(options = {}) {
  const channel = new FakeChannel();
  const hub = new Hub(channel, { keepalive: 60_000, ...options });
  hubs.push(hub);
  const frames = () => channel.sent.map((b) => decodeFrame(b));
  const deliver = (frame) => channel.deliver(frame, encodeFrame);
  return { channel, hub, frames, deliver };
}

const bytes = (text) => new TextEncoder().encode(text);
const item = (streamId, data, extra = {}) => ({ type: "PAYLOAD", streamId, data: bytes(data), next: true, ...extra });

test("SETUP goes first, with the keepalive and lifetime asked for and the bearer token of a secret", () => {
  const { frames } = open({ keepalive: 1500, lifetime: 7000, secret: "s3cret" });
  const [setup] = frames();
  assert.equal(setup.type, "SETUP");
  assert.equal(setup.keepaliveMs, 1500);
  assert.equal(setup.lifetimeMs, 7000);
  assert.equal(setup.metadataMime, "message/x.rsocket.composite-metadata.v0");
  assert.equal(setup.dataMime, "application/octet-stream");
  const golden = vectors("metadata.json").bearer.find((b) => b.token === "s3cret");
  assert.equal(toHex(setup.metadata), golden.hex, "the same bearer metadata as the Python core's");
});

test("fetch: REQUEST_STREAM carries the window; reading is what grants more (Window's quarter refill)", async () => {
  const { hub, frames, deliver } = open();
  const file = hub.fetch("dir/big.bin", { highWaterMark: 4, offset: 100, sha256: "ab".repeat(32) });
  const request = frames()[1];
  assert.equal(request.type, "REQUEST_STREAM");
  assert.equal(request.initialN, 4);
  assert.deepEqual(parseRequestMetadata(request.metadata), { route: "files/dir/big.bin", info: {} });
  assert.deepEqual(JSON.parse(new TextDecoder().decode(request.data)), { offset: 100, sha256: "ab".repeat(32) });
  const sid = request.streamId;
  deliver(item(sid, "a", { metadata: requestMetadata(null, { size: 4, offset: 0 }) }));
  for (const d of ["b", "c", "d"]) deliver(item(sid, d));
  await settle();
  assert.equal(frames().filter((f) => f.type === "REQUEST_N").length, 0, "nothing consumed, nothing granted");
  const reader = file.getReader();
  assert.equal(new TextDecoder().decode((await reader.read()).value), "a");
  assert.deepEqual(await file.ready, { size: 4, offset: 0 });
  assert.equal(frames().filter((f) => f.type === "REQUEST_N").length, 0, "the first item is still being used");
  await reader.read();
  const grants = frames().filter((f) => f.type === "REQUEST_N");
  assert.deepEqual(grants.map((f) => [f.streamId, f.n]), [[sid, 1]], "the first item is done: one slot free");
  assert.equal(file.stats.inFlight, 4);
  deliver({ type: "PAYLOAD", streamId: sid, data: bytes("e"), next: true, complete: true, metadata: requestMetadata(null, { sha256: "00" }) });
  const rest = [];
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    rest.push(new TextDecoder().decode(value));
  }
  assert.deepEqual(rest, ["c", "d", "e"]);
  assert.deepEqual(file.info, { size: 4, offset: 0, sha256: "00" });
  assert.equal(hub.stats.violations, 0);
});

test("list: every page, each asked for after the cursor the last one named in its metadata (`next`)", async () => {
  const { hub, frames, deliver } = open();
  const pages = [
    [[{ path: "a.bin", size: 1 }, { path: "b/c.bin", size: 2 }], { next: "b/c.bin" }],
    [[{ path: "b/d.bin", size: 3 }, { path: "e.txt", size: 4 }], { next: "e.txt", skipped: { "not UTF-8": 1 } }],
    [[{ path: "f.bin", size: 5 }], null],
  ];
  const listing = hub.list("", {});
  const asked = [];
  for (const [entries, info] of pages) {
    await settle();
    const request = frames().at(-1);
    assert.equal(request.type, "REQUEST_RESPONSE");
    assert.equal(parseRequestMetadata(request.metadata).route, "files");
    asked.push(JSON.parse(new TextDecoder().decode(request.data)));
    deliver({
      type: "PAYLOAD", streamId: request.streamId, data: bytes(JSON.stringify(entries)), next: true, complete: true,
      metadata: info ? requestMetadata(null, info) : null,
    });
  }
  assert.deepEqual((await listing).map((e) => e.path), ["a.bin", "b/c.bin", "b/d.bin", "e.txt", "f.bin"]);
  // no limit unless asked: the hub's own page size (a limit above it would be refused)
  assert.deepEqual(asked, [{ prefix: "" }, { prefix: "", cursor: "b/c.bin" }, { prefix: "", cursor: "e.txt" }]);
});

test("items past credit are refused with ERROR[INVALID]; nothing past the credit is delivered", async () => {
  const { hub, frames, deliver } = open();
  const file = hub.requestStream("numbers", { window: 2 });
  const sid = frames()[1].streamId;
  for (const d of ["1", "2", "3", "4"]) deliver(item(sid, d));
  const errors = frames().filter((f) => f.type === "ERROR");
  assert.equal(errors.length, 1);
  assert.equal(errors[0].streamId, sid);
  assert.equal(errors[0].code, 0x204);
  assert.match(errors[0].message, /past credit/);
  assert.equal(hub.stats.violations, 1);
  const got = [];
  await assert.rejects(async () => {
    for await (const x of file) got.push(new TextDecoder().decode(x.data));
  }, (e) => e instanceof RemoteProtocolError && e.code === 0x204 && /past credit/.test(e.message));
  assert.deepEqual(got, ["1", "2"], "only the items within credit");
});

test("a PAYLOAD without NEXT is not an item: COMPLETE alone ends the stream, neither flag is INVALID", async () => {
  {
    const { hub, frames, deliver } = open();
    const s = hub.requestStream("r", { window: 4 });
    const sid = frames()[1].streamId;
    deliver(item(sid, "x"));
    deliver({ type: "PAYLOAD", streamId: sid, data: bytes("not an item"), next: false, complete: true });
    const got = [];
    for await (const x of s) got.push(new TextDecoder().decode(x.data));
    assert.deepEqual(got, ["x"]);
    assert.equal(hub.stats.received, 1);
  }
  {
    const { hub, frames, deliver } = open();
    const s = hub.requestStream("r", { window: 4 });
    const sid = frames()[1].streamId;
    deliver({ type: "PAYLOAD", streamId: sid, data: bytes("?"), next: false });
    const error = frames().find((f) => f.type === "ERROR");
    assert.equal(error.code, 0x204);
    assert.match(error.message, /neither NEXT nor COMPLETE/);
    await assert.rejects(s.getReader().read(), RemoteProtocolError);
  }
});

test("fragments are reassembled into one item that counts one credit", async () => {
  const { hub, frames, deliver } = open();
  const s = hub.requestStream("r", { window: 1 });
  const sid = frames()[1].streamId;
  const metadata = requestMetadata(null, { part: "of two fragments" });
  deliver({ type: "PAYLOAD", streamId: sid, metadata: metadata.subarray(0, 5), data: bytes("ab"), follows: true, next: true });
  deliver({ type: "PAYLOAD", streamId: sid, metadata: metadata.subarray(5), data: bytes("cd"), follows: true, next: true });
  deliver({ type: "PAYLOAD", streamId: sid, data: bytes("ef"), next: true, complete: true });
  const reader = s.getReader();
  const { value } = await reader.read();
  assert.equal(new TextDecoder().decode(value.data), "abcdef");
  assert.deepEqual(value.info, { part: "of two fragments" });
  assert.equal((await reader.read()).done, true);
  assert.equal(hub.stats.violations, 0);
});

test("malformed frames end the connection with ERROR[CONNECTION_ERROR], never an exception in the handler", async () => {
  for (const bad of [Uint8Array.of(0, 0, 0, 1, 0x28), "a text message", Uint8Array.of(0, 0, 0, 1, 0x29, 0x00, 0x00, 0x00, 0x09)]) {
    const { channel, hub, frames } = open();
    const s = hub.requestStream("r", { window: 1 });
    assert.doesNotThrow(() => channel.deliver(bad));
    assert.equal(hub.closed, true);
    const last = frames().at(-1);
    assert.equal(last.type, "ERROR");
    assert.equal(last.streamId, 0);
    assert.equal(last.code, 0x101);
    assert.ok(hub.error instanceof RemoteProtocolError);
    await assert.rejects(s.getReader().read(), RemoteProtocolError, "open streams get the error");
    assert.equal(channel.readyState, "closed");
  }
});

test("a request from the hub is refused; ERROR on stream 0 ends the connection with its code", async () => {
  const { hub, frames, deliver } = open();
  deliver({ type: "REQUEST_RESPONSE", streamId: 2, metadata: null, data: bytes("hi") });
  const refusal = frames().at(-1);
  assert.deepEqual([refusal.type, refusal.streamId, refusal.code], ["ERROR", 2, 0x202]);
  const reply = hub.request("files");
  deliver({ type: "ERROR", streamId: 0, code: 0x003, message: "authentication failed: wrong shared secret" });
  await assert.rejects(reply, (e) => e instanceof RemoteError && e.code === 0x003 && /refused this page's SETUP/.test(e.message));
  assert.equal(await hub.ended, hub.error);
});

test("the send queue keeps every frame, in order, whatever the number of concurrent senders", async () => {
  const channel = new FakeChannel();
  const queue = new SendQueue(channel, { highWater: 1000, lowWater: 100 });
  channel.bufferedAmount = 5000; // clogged: nothing may be sent until it drains
  const frames = Array.from({ length: 60 }, (_, i) => Uint8Array.of(i, ...new Uint8Array(299)));
  const results = frames.map((f) => queue.send(f));
  await settle();
  assert.equal(channel.sent.length, 0, "over the high-water mark nothing is sent");
  for (let round = 0; round < 100 && channel.sent.length < frames.length; round++) {
    channel.drain(); // each drain fires bufferedamountlow once; the queue sends until it is full again
    await settle();
    assert.ok(channel.bufferedAmount <= 1000 + 300, "never more than one frame past the high-water mark");
  }
  assert.equal(channel.sent.length, frames.length, "every sender was woken up");
  assert.deepEqual(await Promise.all(results), frames.map(() => true));
  assert.deepEqual(channel.sent.map((f) => f[0]), frames.map((_, i) => i), "every frame once, in the order queued");
  queue.close();
  assert.equal(await queue.send(Uint8Array.of(1)), false, "after close: false, not a rejection");
});

function countingSource(chunks) {
  let pulled = 0;
  const stream = new ReadableStream({
    pull(controller) {
      if (pulled < chunks.length) controller.enqueue(chunks[pulled]);
      else controller.close();
      pulled++;
    },
  }, { highWaterMark: 0 });
  return { stream, pulled: () => Math.min(pulled, chunks.length + 1) };
}

test("push: items only within credit, the source read at most one ahead, the end found without credit", async () => {
  const { hub, channel, frames, deliver } = open();
  const chunks = Array.from({ length: 5 }, (_, i) => new Uint8Array(1000).fill(i + 1));
  const { stream, pulled } = countingSource(chunks);
  const done = hub.push("in/x.bin", stream, { size: 5000 });
  const request = frames()[1];
  assert.equal(request.type, "REQUEST_CHANNEL");
  assert.deepEqual(parseRequestMetadata(request.metadata), { route: "push/in/x.bin", info: { size: 5000 } });
  const sid = request.streamId;
  const items = () => frames().filter((f) => f.type === "PAYLOAD" && f.streamId === sid);
  await settle();
  assert.equal(items().length, 0, "no credit yet: nothing sent");
  assert.equal(pulled(), 0, "no credit yet: the source is not read");
  let granted = 0;
  for (const n of [2, 1, 2]) {
    deliver({ type: "REQUEST_N", streamId: sid, n });
    granted += n;
    await settle(); await settle();
    assert.equal(items().length, granted, "exactly as many items as granted");
    assert.ok(pulled() <= granted + 1, `read ${pulled()} with ${granted} granted`);
  }
  const sent = items();
  assert.ok(sent.at(-1).complete && sent.at(-1).next, "the 5th item (credit exactly used up) carries COMPLETE");
  assert.ok(sent.slice(0, -1).every((f) => !f.complete));
  const first = parseRequestMetadata(sent[0].metadata).info;
  assert.deepEqual(first, { size: 5000, offset: 0 });
  const whole = Buffer.concat(sent.map((f) => f.data));
  const digest = createHash("sha256").update(whole).digest("hex");
  assert.equal(parseRequestMetadata(sent.at(-1).metadata).info.sha256, digest);
  deliver({ type: "PAYLOAD", streamId: sid, data: jsonBytes({ path: "in/x.bin", size: 5000, sha256: digest }), next: true, complete: true });
  assert.deepEqual(await done, { path: "in/x.bin", size: 5000, sha256: digest });
  assert.equal(channel.sent.length, frames().length);
});

test("push: an empty source sends one empty item with the digest; a wrong receipt is an IntegrityError", async () => {
  const { hub, frames, deliver } = open();
  const done = hub.push("empty", new Blob([]));
  const sid = frames()[1].streamId;
  deliver({ type: "REQUEST_N", streamId: sid, n: 16 });
  await settle(); await settle();
  const [only] = frames().filter((f) => f.type === "PAYLOAD");
  assert.equal(only.data.length, 0);
  assert.ok(only.complete);
  assert.deepEqual(parseRequestMetadata(only.metadata).info, {
    size: 0, offset: 0, sha256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
  });
  deliver({ type: "PAYLOAD", streamId: sid, data: jsonBytes({ path: "empty", size: 0, sha256: "ff".repeat(32) }), next: true, complete: true });
  await assert.rejects(done, IntegrityError);
});

test("push: the hub's refusal rejects with its error and cancels the source", async () => {
  const { hub, frames, deliver } = open();
  let cancelled = null;
  const stream = new ReadableStream({ pull(c) { c.enqueue(new Uint8Array(10)); }, cancel(reason) { cancelled = reason ?? "cancelled"; } });
  const done = hub.push("exists.bin", stream);
  const sid = frames()[1].streamId;
  deliver({ type: "REQUEST_N", streamId: sid, n: 2 });
  await settle();
  deliver({ type: "ERROR", streamId: sid, code: 0x202, message: "inbox/exists.bin already exists" });
  await assert.rejects(done, (e) => e instanceof RemoteError && e.code === 0x202 && /already exists/.test(e.message));
  await settle();
  assert.notEqual(cancelled, null, "the source was released");
});

test("push waits for bufferedAmount to fall before sending more", async () => {
  const { hub, channel, frames, deliver } = open({ highWater: 2000, lowWater: 500 });
  const { stream } = countingSource(Array.from({ length: 8 }, () => new Uint8Array(1500)));
  const done = hub.push("big", stream);
  const sid = frames()[1].streamId;
  channel.drain();
  deliver({ type: "REQUEST_N", streamId: sid, n: 100 });
  for (let i = 0; i < 5; i++) await settle();
  const payloads = () => frames().filter((f) => f.type === "PAYLOAD").length;
  assert.ok(payloads() <= 2, `${payloads()} items sent into a full channel`);
  while (payloads() < 8) { channel.drain(); for (let i = 0; i < 3; i++) await settle(); }
  const digest = parseRequestMetadata(frames().filter((f) => f.type === "PAYLOAD").at(-1).metadata).info.sha256;
  deliver({ type: "PAYLOAD", streamId: sid, data: jsonBytes({ path: "big", size: 12000, sha256: digest }), next: true, complete: true });
  assert.equal((await done).size, 12000);
});

test("cancel sends CANCEL once; late items are ignored, not errors", async () => {
  const { hub, frames, deliver } = open();
  const s = hub.requestStream("r", { window: 8 });
  const sid = frames()[1].streamId;
  deliver(item(sid, "1"));
  for await (const x of s) { assert.equal(new TextDecoder().decode(x.data), "1"); break; }
  deliver(item(sid, "late"));
  const cancels = frames().filter((f) => f.type === "CANCEL");
  assert.deepEqual(cancels.map((f) => f.streamId), [sid]);
  assert.equal(frames().filter((f) => f.type === "ERROR").length, 0);
  assert.ok(hub.stats.ignored >= 1);
});

test("a silent hub is declared gone at the lifetime from SETUP; streams get ConnectionLostError", async () => {
  let now = 100;
  const { hub, frames } = open({ keepalive: 5, lifetime: 1000, now: () => now });
  const s = hub.requestStream("r", { window: 1 });
  now += 0.5;
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal(hub.closed, false);
  assert.ok(frames().some((f) => f.type === "KEEPALIVE" && f.respond));
  now += 1;
  const error = await hub.ended;
  assert.ok(error instanceof ConnectionLostError);
  assert.match(error.message, /keepalive limit 1\.0 s/);
  await assert.rejects(s.getReader().read(), ConnectionLostError);
});

test("close() ends every stream with ClosedResourceError and tells the hub", async () => {
  const { hub, channel, frames } = open();
  const reply = hub.request("files");
  hub.close();
  await assert.rejects(reply, ClosedResourceError);
  assert.equal(frames().at(-1).code, 0x102);
  assert.equal(channel.readyState, "closed");
  assert.throws(() => hub.fetch("x"), ClosedResourceError);
});

test("push: a source that does not give the size announced fails before the last item goes out", async () => {
  const { hub, frames, deliver } = open();
  const { stream } = countingSource([new Uint8Array(10), new Uint8Array(10)]);
  const done = hub.push("short", stream, { size: 25 });
  const sid = frames()[1].streamId;
  deliver({ type: "REQUEST_N", streamId: sid, n: 8 });
  await assert.rejects(done, (e) => e instanceof LocalProtocolError && /gave 20 bytes, 25 were announced/.test(e.message));
  const sent = frames().filter((f) => f.streamId === sid);
  assert.ok(!sent.some((f) => f.type === "PAYLOAD" && f.complete), "nothing that looks complete went out");
  assert.equal(sent.at(-1).type, "ERROR", "the hub is told the upload failed");
});

test("push: a CANCEL from the hub ends the upload with an error instead of waiting forever", async () => {
  const { hub, frames, deliver } = open();
  const stream = new ReadableStream({ pull(c) { c.enqueue(new Uint8Array(10)); } });
  const done = hub.push("endless", stream);
  const sid = frames()[1].streamId;
  deliver({ type: "REQUEST_N", streamId: sid, n: 2 });
  await settle();
  deliver({ type: "CANCEL", streamId: sid });
  await assert.rejects(done, (e) => e instanceof RemoteError && e.code === 0x203);
});

test("push: aborting sends ERROR[CANCELED] to the hub and rejects; the source is released", async () => {
  const { hub, frames, deliver } = open();
  let released = false;
  const stream = new ReadableStream({ pull(c) { c.enqueue(new Uint8Array(10)); }, cancel() { released = true; } });
  const controller = new AbortController();
  const done = hub.push("aborted", stream, { signal: controller.signal });
  const sid = frames()[1].streamId;
  deliver({ type: "REQUEST_N", streamId: sid, n: 3 });
  await settle();
  controller.abort();
  await assert.rejects(done, ClosedResourceError);
  const error = frames().filter((f) => f.streamId === sid).at(-1);
  assert.deepEqual([error.type, error.code], ["ERROR", 0x203]);
  await settle();
  assert.ok(released);
});
