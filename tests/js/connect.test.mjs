// connect(): every way out clears its timers and listeners and closes the peer connection;
// a channel that closes before it opens, a refused offer and a timeout each reject with a
// ConnectError that says which. WebRTC itself is exercised by the Chromium tests (tests/web).
import { test } from "node:test";
import assert from "node:assert/strict";

import { connect } from "../../rxchannel/web/connect.js";
import { ConnectError } from "../../rxchannel/web/errors.js";
import { FakeChannel, settle } from "./helpers.mjs";

/** What the page would see from RTCPeerConnection, scripted: the channel opens, closes, or never opens. */
function fakePeerConnection(outcome) {
  const made = [];
  class FakePeerConnection extends EventTarget {
    constructor(config) {
      super();
      this.config = config;
      this.iceGatheringState = "new";
      this.closedCalls = 0;
      this.sctp = { maxMessageSize: 262144 };
      made.push(this);
    }
    createDataChannel(label, options) {
      this.channel = new FakeChannel();
      this.channel.readyState = "connecting";
      this.channel.label = label;
      this.channel.options = options;
      return this.channel;
    }
    async createOffer() { return { type: "offer", sdp: "v=0 offer" }; }
    async setLocalDescription(description) {
      this.localDescription = description;
      setTimeout(() => { this.iceGatheringState = "complete"; this.dispatchEvent(new Event("icegatheringstatechange")); }, 1);
    }
    async setRemoteDescription(description) {
      this.remoteDescription = description;
      if (outcome === "open") setTimeout(() => { this.channel.readyState = "open"; this.channel.dispatchEvent(new Event("open")); }, 1);
      if (outcome === "close") setTimeout(() => this.channel.close(), 1);
    }
    close() { this.closedCalls++; }
  }
  return { FakePeerConnection, made };
}

function answering(status, body) {
  const posts = [];
  const post = async (url, init) => {
    posts.push({ url, body: JSON.parse(init.body) });
    return { ok: status === 200, status, json: async () => body };
  };
  return { post, posts };
}

const timers = () => process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;

test("a channel that opens: the Hub runs over it, the offer went to /offer, no timer is left behind", async () => {
  const { FakePeerConnection, made } = fakePeerConnection("open");
  const { post, posts } = answering(200, { type: "answer", sdp: "v=0 answer" });
  const before = timers();
  const hub = await connect("http://hub:1", { RTCPeerConnection: FakePeerConnection, fetch: post, keepalive: 60_000 });
  assert.equal(posts[0].url, "http://hub:1/offer");
  assert.deepEqual(posts[0].body, { sdp: "v=0 offer", type: "offer" });
  assert.equal(made[0].channel.label, "rxchannel");
  assert.equal(made[0].remoteDescription.sdp, "v=0 answer");
  assert.equal(hub.maxFrameSize, 262144);
  assert.equal(timers(), before + 1, "only the hub's keepalive timer");
  hub.close();
  assert.equal(timers(), before);
  assert.equal(made[0].closedCalls, 1);
});

test("a channel that closes before it opens rejects at once with ConnectError and closes the peer connection", async () => {
  const { FakePeerConnection, made } = fakePeerConnection("close");
  const { post } = answering(200, { type: "answer", sdp: "v=0 answer" });
  const before = timers();
  const started = Date.now();
  await assert.rejects(
    connect("http://hub:1", { RTCPeerConnection: FakePeerConnection, fetch: post, timeout: 30_000 }),
    (e) => e instanceof ConnectError && /closed before it opened/.test(e.message),
  );
  assert.ok(Date.now() - started < 10_000, "not left waiting for the timeout");
  assert.equal(made[0].closedCalls, 1);
  await settle();
  assert.equal(timers(), before, "the open timeout was cleared");
});

test("a channel that never opens rejects with ConnectError at the timeout", async () => {
  const { FakePeerConnection, made } = fakePeerConnection("never");
  const { post } = answering(200, { type: "answer", sdp: "v=0 answer" });
  await assert.rejects(
    connect("http://hub:1", { RTCPeerConnection: FakePeerConnection, fetch: post, timeout: 200 }),
    (e) => e instanceof ConnectError && /did not open within/.test(e.message),
  );
  assert.equal(made[0].closedCalls, 1);
});

test("a refused offer rejects with the hub's reason", async () => {
  const { FakePeerConnection, made } = fakePeerConnection("open");
  const { post } = answering(400, { error: "the offer has no m-line" });
  await assert.rejects(
    connect("http://hub:1", { RTCPeerConnection: FakePeerConnection, fetch: post }),
    (e) => e instanceof ConnectError && /refused the offer: the offer has no m-line/.test(e.message),
  );
  assert.equal(made[0].closedCalls, 1);
});

test("an unreachable hub rejects with ConnectError naming it", async () => {
  const { FakePeerConnection } = fakePeerConnection("open");
  const post = async () => { throw new TypeError("fetch failed"); };
  await assert.rejects(
    connect("http://nowhere:9", { RTCPeerConnection: FakePeerConnection, fetch: post }),
    (e) => e instanceof ConnectError && /cannot reach the hub at http:\/\/nowhere:9/.test(e.message),
  );
});
