// connect(): the hub's ICE servers first, then the offer, both signed when there is a secret;
// every way out clears its timers and listeners and closes the peer connection; a channel
// that closes before it opens, a refused request and a timeout each reject with a
// ConnectError that says which (with the hub's status and Retry-After). WebRTC itself is
// exercised by the Chromium tests (tests/web).
import { test } from "node:test";
import assert from "node:assert/strict";

import { connect } from "../../rxchannel/web/connect.js";
import { ConnectError } from "../../rxchannel/web/errors.js";
import { encodeFrame } from "../../rxchannel/web/frames.js";
import { signRequest } from "../../rxchannel/web/signing.js";
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
      if (outcome === "open-and-speak") {
        // the hub's first frame arrives in the same task as the channel's open event, before connect() returns
        setTimeout(() => {
          this.channel.readyState = "open";
          this.channel.dispatchEvent(new Event("open"));
          this.channel.deliver({ type: "ERROR", streamId: 0, code: 0x003, message: "the hub is busy" }, encodeFrame);
        }, 1);
      }
      if (outcome === "close") setTimeout(() => this.channel.close(), 1);
    }
    close() { this.closedCalls++; }
  }
  return { FakePeerConnection, made };
}

/**
 * A scripted hub: GET /ice-servers and POST /offer answer { status, body, headers } (by
 * default the given ICE servers and an answer); every request is recorded.
 */
function fakeHub({ ice = { status: 200, body: { iceServers: [], ttl: null } }, offer = { status: 200, body: { type: "answer", sdp: "v=0 answer" } } } = {}) {
  const requests = [];
  const routes = { "GET /ice-servers": ice, "POST /offer": offer };
  const request = async (url, init) => {
    const { pathname } = new URL(url);
    requests.push({ url, method: init.method, headers: { ...init.headers }, body: init.body ?? null, path: pathname });
    const reply = routes[`${init.method} ${pathname}`] || { status: 404, body: { error: "no route", status: 404 } };
    const headers = new Headers(reply.headers || {});
    return { ok: reply.status >= 200 && reply.status < 300, status: reply.status, headers, json: async () => reply.body };
  };
  return { request, requests, offers: () => requests.filter((r) => r.path === "/offer") };
}

function answering(status, body) {
  return { post: fakeHub({ offer: { status, body } }).request };
}

const timers = () => process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;

test("a channel that opens: ICE servers asked first, the offer went to /offer unsigned, no timer is left behind", async () => {
  const { FakePeerConnection, made } = fakePeerConnection("open");
  const turn = { urls: ["turn:turn.example.org:3478"], username: "1700000000:ab12", credential: "c2VjcmV0" };
  const hub_ = fakeHub({ ice: { status: 200, body: { iceServers: [turn], ttl: 600 } } });
  const before = timers();
  const stun = { urls: "stun:stun.example.org" };
  const hub = await connect("http://hub:1", {
    RTCPeerConnection: FakePeerConnection, fetch: hub_.request, keepalive: 60_000, iceServers: [stun],
  });
  assert.deepEqual(hub_.requests.map((r) => `${r.method} ${r.url}`), ["GET http://hub:1/ice-servers", "POST http://hub:1/offer"]);
  assert.deepEqual(JSON.parse(hub_.requests[1].body), { sdp: "v=0 offer", type: "offer" });
  assert.ok(hub_.requests.every((r) => !("Authorization" in r.headers)), "no secret, no signature");
  assert.deepEqual(made[0].config, { iceServers: [stun, turn] }, "the page's own servers, then the hub's");
  assert.equal(made[0].channel.label, "rxchannel");
  assert.equal(made[0].remoteDescription.sdp, "v=0 answer");
  assert.equal(hub.maxFrameSize, 262144);
  assert.equal(timers(), before + 1, "only the hub's keepalive timer");
  hub.close();
  assert.equal(timers(), before);
  assert.equal(made[0].closedCalls, 1);
});

test("with a secret both requests are signed over their own method, path and exact body", async () => {
  const { FakePeerConnection } = fakePeerConnection("open");
  const hub_ = fakeHub();
  const hub = await connect("http://hub:1", { RTCPeerConnection: FakePeerConnection, fetch: hub_.request, secret: "s3cret" });
  hub.close();
  assert.equal(hub_.requests.length, 2);
  for (const { method, path, body, headers } of hub_.requests) {
    const match = headers.Authorization.match(/^RXCHANNEL-HMAC-SHA256 ts=(\d+),nonce=([A-Za-z0-9_-]{8,64}),mac=[0-9a-f]{64}$/);
    assert.ok(match, headers.Authorization);
    const expected = await signRequest("s3cret", method, path, body ?? "", { now: Number(match[1]), nonce: match[2] });
    assert.equal(headers.Authorization, expected, `${method} ${path}`);
  }
  const [get, post] = hub_.requests;
  assert.notEqual(get.headers.Authorization.split("nonce=")[1].split(",")[0], post.headers.Authorization.split("nonce=")[1].split(",")[0]);
});

test("a refused request for ICE servers (401) rejects with the hub's reason and status; no peer connection, no offer", async () => {
  const { FakePeerConnection, made } = fakePeerConnection("open");
  const error = "authentication failed: wrong shared secret (--secret)";
  const hub_ = fakeHub({ ice: { status: 401, body: { error, status: 401 } } });
  await assert.rejects(
    connect("http://hub:1", { RTCPeerConnection: FakePeerConnection, fetch: hub_.request, secret: "wrong" }),
    (e) => e instanceof ConnectError && e.status === 401 && e.retryAfter === null
      && e.message === `the hub refused the request for ICE servers (401): ${error}`,
  );
  assert.equal(made.length, 0, "no RTCPeerConnection was made");
  assert.equal(hub_.offers().length, 0, "no offer was sent");
});

test("a rate-limited offer (429) rejects with its Retry-After and closes the peer connection", async () => {
  const { FakePeerConnection, made } = fakePeerConnection("open");
  const error = "too many offers from 127.0.0.1: the limit is 2/s per address, 10 at once (raise it with --offer-rate)";
  const hub_ = fakeHub({ offer: { status: 429, body: { error, status: 429 }, headers: { "Retry-After": "3" } } });
  await assert.rejects(
    connect("http://hub:1", { RTCPeerConnection: FakePeerConnection, fetch: hub_.request }),
    (e) => e instanceof ConnectError && e.status === 429 && e.retryAfter === 3
      && e.message === `the hub refused the offer (429): ${error} (retry after 3 s)`,
  );
  assert.equal(made[0].closedCalls, 1);
});

test("a hub without /ice-servers (404) is dialled with the page's own servers; hubIceServers: false does not ask", async () => {
  const { FakePeerConnection, made } = fakePeerConnection("open");
  const stun = { urls: "stun:stun.example.org" };
  const without = fakeHub({ ice: { status: 404, body: null } });
  (await connect("http://hub:1", { RTCPeerConnection: FakePeerConnection, fetch: without.request, iceServers: [stun] })).close();
  assert.deepEqual(made[0].config, { iceServers: [stun] });
  const hub_ = fakeHub();
  (await connect("http://hub:1", { RTCPeerConnection: FakePeerConnection, fetch: hub_.request, hubIceServers: false })).close();
  assert.deepEqual(hub_.requests.map((r) => r.path), ["/offer"]);
});

test("an /ice-servers answer without a list rejects before any peer connection", async () => {
  const { FakePeerConnection, made } = fakePeerConnection("open");
  const hub_ = fakeHub({ ice: { status: 200, body: { servers: [] } } });
  await assert.rejects(
    connect("http://hub:1", { RTCPeerConnection: FakePeerConnection, fetch: hub_.request }),
    (e) => e instanceof ConnectError && /no iceServers list/.test(e.message),
  );
  assert.equal(made.length, 0);
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
    (e) => e instanceof ConnectError && e.status === 400 && /refused the offer \(400\): the offer has no m-line/.test(e.message),
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

test("a frame that arrives with the channel's open event, before the Hub exists, is handed to it, not lost", async () => {
  const { FakePeerConnection } = fakePeerConnection("open-and-speak");
  const hub = await connect("http://hub:1", { RTCPeerConnection: FakePeerConnection, fetch: fakeHub().request, keepalive: 60_000 });
  assert.equal(hub.closed, true, "the hub's refusal reached the Hub");
  assert.match(String(hub.error && hub.error.message), /the hub is busy/);
  hub.close();
});
