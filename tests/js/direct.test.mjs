// The page's direct path: a WebSocket presented as a channel (bufferedamountlow emulated from
// bufferedAmount), openDirect falling back (null) when the hub refuses the upgrade or does
// not answer, and connect() taking the direct path first and WebRTC when it does not open.
// Real WebSockets and WebRTC are exercised by the Chromium tests (tests/web).
import { test } from "node:test";
import assert from "node:assert/strict";

import { connect } from "../../rxchannel/web/connect.js";
import { WebSocketChannel, openDirect } from "../../rxchannel/web/direct.js";
import { ConnectError } from "../../rxchannel/web/errors.js";
import { decodeFrame, encodeFrame } from "../../rxchannel/web/frames.js";

/** A scripted WebSocket: opens, closes (a refused upgrade), or never answers; records what is sent. */
function fakeSocket(outcome) {
  const made = [];
  class FakeSocket extends EventTarget {
    constructor(url) {
      super();
      this.url = url;
      this.readyState = 0;
      this.bufferedAmount = 0;
      this.sent = [];
      made.push(this);
      setTimeout(() => {
        if (outcome === "open" || outcome === "open-and-speak") { this.readyState = 1; this.dispatchEvent(new Event("open")); }
        if (outcome === "open-and-speak") {
          // the hub's first frame in the same task as the open event, before connect() returns
          const event = new Event("message");
          event.data = encodeFrame({ type: "ERROR", streamId: 0, code: 0x003, message: "busy" }).slice().buffer;
          this.dispatchEvent(event);
        }
        if (outcome === "refuse") { this.readyState = 3; this.dispatchEvent(new Event("error")); this.dispatchEvent(new Event("close")); }
      }, 1);
    }
    send(bytes) { this.sent.push(Uint8Array.from(bytes)); this.bufferedAmount += bytes.length; }
    close() { this.readyState = 3; this.dispatchEvent(new Event("close")); }
  }
  return { FakeSocket, made };
}

test("a WebSocket channel fires bufferedamountlow when the socket's buffer falls to the threshold", async () => {
  const { FakeSocket, made } = fakeSocket("open");
  const channel = await openDirect("ws://hub:1/rsocket", { WebSocket: FakeSocket });
  assert.ok(channel instanceof WebSocketChannel);
  channel.bufferedAmountLowThreshold = 100;
  let lows = 0;
  channel.addEventListener("bufferedamountlow", () => lows++);
  channel.send(new Uint8Array(300));
  assert.equal(channel.bufferedAmount, 300);
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(lows, 0, "still above the threshold");
  made[0].bufferedAmount = 100;
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(lows, 1, "fired once on falling to the threshold");
  channel.close();
  assert.equal(channel.readyState, "closed");
});

test("openDirect resolves null when the upgrade is refused or does not open in time", async () => {
  const refused = fakeSocket("refuse");
  assert.equal(await openDirect("ws://hub:1/rsocket", { WebSocket: refused.FakeSocket }), null);
  const silent = fakeSocket("silent");
  assert.equal(await openDirect("ws://hub:1/rsocket", { WebSocket: silent.FakeSocket, ms: 30 }), null);
  assert.equal(silent.made[0].readyState, 3, "the socket that never opened is closed");
});

test("openDirect signs the upgrade in the auth query parameter", async () => {
  const { FakeSocket, made } = fakeSocket("open");
  const channel = await openDirect("ws://hub:1/rsocket", { WebSocket: FakeSocket, auth: "RXCHANNEL-HMAC-SHA256 ts=1,nonce=abcdefgh,mac=00" });
  assert.equal(made[0].url, "ws://hub:1/rsocket?auth=RXCHANNEL-HMAC-SHA256%20ts%3D1%2Cnonce%3Dabcdefgh%2Cmac%3D00");
  channel.close();
});

test("connect takes the direct path first: SETUP goes out on the WebSocket and no offer is made", async () => {
  const { FakeSocket, made } = fakeSocket("open");
  const requests = [];
  const hub = await connect("http://hub:1", {
    WebSocket: FakeSocket, keepalive: 60_000, fetch: async (url) => { requests.push(url); throw new Error("no HTTP expected"); },
    RTCPeerConnection: class { constructor() { throw new Error("no WebRTC expected"); } },
  });
  assert.equal(made[0].url, "ws://hub:1/rsocket");
  assert.equal(hub.path, "direct");
  assert.equal(decodeFrame(made[0].sent[0]).type, "SETUP");
  assert.deepEqual(requests, []);
  hub.close();
});

test("connect falls back to WebRTC when the direct path is refused, and via direct says so instead", async () => {
  const refused = fakeSocket("refuse");
  const asked = [];
  const fetch = async (url) => { asked.push(new URL(url).pathname); throw new TypeError("network down"); };
  await assert.rejects(
    connect("http://hub:1", { WebSocket: refused.FakeSocket, fetch, RTCPeerConnection: class {} }),
    (e) => e instanceof ConnectError && /cannot reach the hub/.test(e.message),
  );
  assert.deepEqual(asked, ["/ice-servers"], "WebRTC signaling was tried after the direct path");
  await assert.rejects(
    connect("http://hub:1", { WebSocket: fakeSocket("refuse").FakeSocket, via: "direct", fetch }),
    (e) => e instanceof ConnectError && /direct path .* did not open/.test(e.message),
  );
});

test("a frame that arrives on the WebSocket with its open event, before the Hub exists, is handed to it", async () => {
  const { FakeSocket } = fakeSocket("open-and-speak");
  const hub = await connect("http://hub:1", { WebSocket: FakeSocket, keepalive: 60_000 });
  assert.equal(hub.closed, true, "the hub's refusal reached the Hub");
  assert.match(String(hub.error && hub.error.message), /busy/);
  hub.close();
});
