// hub.endpoint(): the request a page sends for an endpoint, the Response it gets (status and
// headers from the first item's metadata, a body pulled with demand), uploads within credit,
// refusals, bodiless statuses. A stand-in DataChannel plays the hub (the real one is in
// tests/web/test_endpoint_browser.py).
import { test } from "node:test";
import assert from "node:assert/strict";

import { Hub } from "../../rxchannel/web/connection.js";
import { RemoteError, RemoteProtocolError } from "../../rxchannel/web/errors.js";
import { decodeFrame, encodeFrame } from "../../rxchannel/web/frames.js";
import { parseRequestMetadata, requestMetadata } from "../../rxchannel/web/metadata.js";
import { FakeChannel, hubsClosedAfterEach, settle } from "./helpers.mjs";

const hubs = hubsClosedAfterEach();

function open() {
  const channel = new FakeChannel();
  const hub = new Hub(channel, { keepalive: 60_000 });
  hubs.push(hub);
  const frames = () => channel.sent.map((b) => decodeFrame(b));
  const deliver = (frame) => channel.deliver(frame, encodeFrame);
  return { channel, hub, frames, deliver };
}

const bytes = (text) => new TextEncoder().encode(text);
const head = (info) => requestMetadata(null, { type: "endpoint", reason: "OK", headers: {}, ...info });

test("GET: route, method, headers and query in the request; status and headers from the first item; json() pulls with demand", async () => {
  const { hub, frames, deliver } = open();
  const pending = hub.endpoint("api", "/items?x=1", { headers: { Accept: "application/json" }, query: { y: "2" }, window: 2 });
  await settle();
  const request = frames()[1];
  assert.equal(request.type, "REQUEST_STREAM");
  assert.equal(request.initialN, 2);
  assert.deepEqual(parseRequestMetadata(request.metadata), {
    route: "endpoints/api/items?x=1", info: { headers: { accept: "application/json" }, query: { y: "2" } },
  });
  const sid = request.streamId;
  deliver({ type: "PAYLOAD", streamId: sid, next: true, data: bytes('{"items": ['), metadata: head({ status: 200, headers: { "content-type": "application/json", etag: '"v1"' }, size: 19 }) });
  const response = await pending;
  assert.equal(response.status, 200);
  assert.equal(response.ok, true);
  assert.equal(response.headers.get("content-type"), "application/json");
  assert.equal(response.headers.get("etag"), '"v1"');
  assert.equal(response.rxchannel.info.size, 19);
  const body = response.json();
  deliver({ type: "PAYLOAD", streamId: sid, next: true, data: bytes("1, 2") });
  await settle();
  deliver({ type: "PAYLOAD", streamId: sid, next: true, complete: true, data: bytes(", 3]}") });
  assert.deepEqual(await body, { items: [1, 2, 3] });
  assert.equal(hub.stats.violations, 0);
  // reading is what granted more: never more than the window of 2 in flight
  assert.ok(hub.stats.maxInFlight <= 2, `maxInFlight ${hub.stats.maxInFlight}`);
});

test("an error status is a Response like any other; a refusal rejects with the hub's error", async () => {
  const { hub, frames, deliver } = open();
  const missing = hub.endpoint("api", "missing");
  await settle();
  deliver({ type: "PAYLOAD", streamId: frames()[1].streamId, next: true, complete: true, data: bytes("no such thing\n"), metadata: head({ status: 404, reason: "Not Found" }) });
  const response = await missing;
  assert.equal(response.status, 404);
  assert.equal(response.ok, false);
  assert.equal(response.statusText, "Not Found");
  assert.equal(await response.text(), "no such thing\n");

  const refused = hub.endpoint("api", "../x");
  await settle();
  deliver({ type: "ERROR", streamId: frames().at(-1).streamId, code: 0x202, message: "'../x': '.' and '..' are not allowed" });
  await assert.rejects(refused, (error) => error instanceof RemoteError && /not allowed/.test(error.message));
});

test("a stream that is not an endpoint's is refused, and cancelled", async () => {
  const { hub, frames, deliver } = open();
  const pending = hub.endpoint("api", "x");
  await settle();
  const sid = frames()[1].streamId;
  deliver({ type: "PAYLOAD", streamId: sid, next: true, data: bytes("x"), metadata: requestMetadata(null, { type: "file", size: 1 }) });
  await assert.rejects(pending, RemoteProtocolError);
  assert.ok(frames().some((f) => f.type === "CANCEL" && f.streamId === sid));
});

test("HEAD and 204 have no body; the one empty item is consumed", async () => {
  const { hub, frames, deliver } = open();
  const pending = hub.endpoint("api", "x", { method: "head" });
  await settle();
  const request = frames()[1];
  assert.equal(parseRequestMetadata(request.metadata).info.method, "HEAD");
  deliver({ type: "PAYLOAD", streamId: request.streamId, next: true, complete: true, data: new Uint8Array(0), metadata: head({ status: 200 }) });
  const response = await pending;
  assert.equal(response.body, null);
  assert.equal(response.status, 200);
});

test("a Blob body goes as a request-channel, a chunk only within the hub's credit, the end with the last", async () => {
  const { hub, frames, deliver } = open();
  const blob = new Blob([new Uint8Array(150 * 1024).fill(7)]);
  const pending = hub.endpoint("api", "upload", { body: blob });
  await settle();
  const request = frames()[1];
  assert.equal(request.type, "REQUEST_CHANNEL");
  assert.deepEqual(parseRequestMetadata(request.metadata).info, { method: "POST", size: 150 * 1024 });
  const sid = request.streamId;
  const sent = () => { // items (their fragments joined): [{length, complete}]
    const items = [];
    let length = 0;
    for (const f of frames().filter((f) => f.type === "PAYLOAD" && f.streamId === sid)) {
      length += f.data.length;
      if (!f.follows) { items.push({ length, complete: f.complete }); length = 0; }
    }
    return items;
  };
  await settle();
  assert.equal(sent().length, 0, "nothing goes out before the hub grants credit");
  deliver({ type: "REQUEST_N", streamId: sid, n: 1 });
  for (let i = 0; i < 5; i++) await settle();
  assert.equal(sent().length, 1);
  assert.equal(sent()[0].length, 64 * 1024);
  deliver({ type: "REQUEST_N", streamId: sid, n: 5 });
  for (let i = 0; i < 5; i++) await settle();
  const items = sent();
  assert.deepEqual(items.map((f) => f.length), [65536, 65536, 22528]);
  assert.equal(items.at(-1).complete, true);
  deliver({ type: "PAYLOAD", streamId: sid, next: true, complete: true, data: bytes('{"bytes": 153600}'), metadata: head({ status: 201, reason: "Created" }) });
  const response = await pending;
  assert.equal(response.status, 201);
  assert.deepEqual(await response.json(), { bytes: 153600 });
});

test("aborting the signal before the head arrives cancels the stream", async () => {
  const { hub, frames } = open();
  const controller = new AbortController();
  const pending = hub.endpoint("api", "slow", { signal: controller.signal });
  await settle();
  controller.abort();
  await assert.rejects(pending, (error) => error.name === "AbortError");
  assert.ok(frames().some((f) => f.type === "CANCEL" && f.streamId === frames()[1].streamId));
});
