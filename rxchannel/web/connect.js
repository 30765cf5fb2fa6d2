// Connecting to a hub: its ICE servers from GET /ice-servers, an RTCPeerConnection with one
// DataChannel, the offer POSTed to the hub's /offer (non-trickle: the offer carries the
// candidates gathered), the answer applied, and RSocket SETUP once the channel is open.
// With a secret, both HTTP requests are signed (signing.js) and SETUP carries it (inside DTLS).
//
// Every wait has a deadline and every path out clears its timers and listeners: a channel
// that closes before it opens, a refused request or a timeout reject with ConnectError
// (saying which; a refusal carries the hub's status and Retry-After) and close the peer
// connection.

import { Hub } from "./connection.js";
import { openDirect } from "./direct.js";
import { ConnectError } from "./errors.js";
import { signRequest } from "./signing.js";

/** The DataChannel label rxchannel opens (rxchannel/webrtc/offerer.py LABEL). */
export const LABEL = "rxchannel";
/** Largest frame sent unfragmented when the peer connection does not say (aiortc's default message size). */
const DEFAULT_MAX_MESSAGE = 64 * 1024;
/** Largest frame sent unfragmented (the hub accepts items of this size in one frame on every path). */
const MAX_FRAME = 256 * 1024;

/** The path a peer connection took, from its selected candidate pair: webrtc-host, -srflx or -relay. */
export async function selectedPath(pc) {
  try {
    const stats = await pc.getStats();
    let pair = null;
    stats.forEach((s) => { if (s.type === "transport" && s.selectedCandidatePairId) pair = stats.get(s.selectedCandidatePairId); });
    if (!pair) stats.forEach((s) => { if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded") pair = s; });
    if (!pair) return "webrtc";
    const types = [stats.get(pair.localCandidateId), stats.get(pair.remoteCandidateId)].map((c) => c && c.candidateType);
    if (types.includes("relay")) return "webrtc-relay";
    if (types.includes("srflx")) return "webrtc-srflx"; // peer-reflexive (learned from a check) is direct: host
    return "webrtc-host";
  } catch {
    return "webrtc";
  }
}

/** The hub's refusal as a ConnectError: its JSON {"error", "status"} and Retry-After, in words. */
async function refused(response, what) {
  const body = await response.json().catch(() => null);
  const reason = body && typeof body.error === "string" ? body.error : `HTTP ${response.status}`;
  const header = response.headers && typeof response.headers.get === "function" ? response.headers.get("Retry-After") : null;
  const retryAfter = header !== null && /^\d+$/.test(header.trim()) ? Number(header) : null;
  const later = retryAfter !== null ? ` (retry after ${retryAfter} s)` : "";
  return new ConnectError(`the hub refused ${what} (${response.status}): ${reason}${later}`, { status: response.status, retryAfter });
}

/** Wait for `event` on `target` (or a rejecting `failEvents`), at most `ms`. Cleans up in every case. */
function waitFor(target, event, { ms, failEvents = [], already = () => false, failure }) {
  return new Promise((resolve, reject) => {
    if (already()) { resolve(); return; }
    const listeners = [];
    const finish = (fn, value) => {
      clearTimeout(timer);
      for (const [name, listener] of listeners) target.removeEventListener(name, listener);
      fn(value);
    };
    const on = (name, listener) => { target.addEventListener(name, listener); listeners.push([name, listener]); };
    on(event, () => { if (already()) finish(resolve); });
    for (const [name, make] of failEvents) on(name, (e) => finish(reject, make(e)));
    const timer = setTimeout(() => finish(reject, failure()), Math.max(0, ms));
  });
}

/**
 * Connect to the hub at `base` (default: the origin that served this page) and return a Hub.
 * Options: secret (the hub's --secret: signs GET /ice-servers and POST /offer, and goes in
 * SETUP), iceServers (RTCIceServer dictionaries used before the hub's own), hubIceServers
 * (false: do not ask the hub for its ICE servers), timeout (ms for the whole connect),
 * gatherTimeout (ms to wait for ICE candidates), via ("auto": the hub's direct WebSocket
 * when it opens within directTimeout ms, else WebRTC; "direct"; "webrtc"), and the Hub's
 * options (keepalive, lifetime, ...). RTCPeerConnection, WebSocket and fetch may be passed
 * in. The Hub's `path` says which path it took ("direct", "webrtc-host", "webrtc-srflx",
 * "webrtc-relay").
 */
export async function connect(base = globalThis.location ? globalThis.location.origin : "", options = {}) {
  const {
    iceServers = [], hubIceServers = true, secret = null, timeout = 20000, gatherTimeout = 2000,
    via = "auto", directTimeout = 3000, WebSocket: Socket = globalThis.WebSocket,
    RTCPeerConnection: PeerConnection = globalThis.RTCPeerConnection, fetch: request = (...a) => globalThis.fetch(...a),
    ...hubOptions
  } = options;
  if (!["auto", "direct", "webrtc"].includes(via)) throw new ConnectError(`via must be auto, direct or webrtc, not ${via}`);
  if (via !== "webrtc") {
    // the direct path first: RSocket over a WebSocket at the hub's /rsocket (signed when there is a secret)
    const url = `${base.replace(/^http/, "ws")}/rsocket`;
    const auth = secret ? await signRequest(secret, "GET", new URL(url, "ws://hub").pathname, "") : null;
    const channel = await openDirect(url, { ms: via === "auto" ? Math.min(directTimeout, timeout) : timeout, auth, WebSocket: Socket });
    if (channel) {
      return new Hub(channel, { maxFrameSize: MAX_FRAME, ...hubOptions, secret, early: channel.takeEarly(), path: "direct" });
    }
    if (via === "direct") {
      throw new ConnectError(`the hub's direct path (${url}) did not open: it serves WebRTC only, or a proxy is in the way; connect with via "auto" or "webrtc"`);
    }
  }
  if (typeof PeerConnection !== "function") throw new ConnectError("this browser has no WebRTC (RTCPeerConnection)");
  const deadline = Date.now() + timeout;
  const left = () => deadline - Date.now();
  const seconds = `${(timeout / 1000).toFixed(0)} s`;

  /** An HTTP request to the hub, signed when there is a secret, within the deadline. */
  async function send(method, route, body, what) {
    const url = `${base}${route}`;
    const headers = body === null ? {} : { "Content-Type": "application/json" };
    if (secret) headers.Authorization = await signRequest(secret, method, new URL(url, "http://hub").pathname, body);
    const aborter = new AbortController();
    const abortTimer = setTimeout(() => aborter.abort(), Math.max(0, left()));
    try {
      const init = { method, headers, signal: aborter.signal, cache: "no-store" };
      if (body !== null) init.body = body;
      return await request(url, init);
    } catch (error) {
      throw new ConnectError(aborter.signal.aborted
        ? `the hub did not answer ${what} within ${seconds}`
        : `cannot reach the hub at ${base}: ${error.message}`);
    } finally {
      clearTimeout(abortTimer);
    }
  }

  let servers = [...iceServers];
  if (hubIceServers) {
    // the hub's STUN servers, and its TURN server with credentials minted for this page
    const response = await send("GET", "/ice-servers", null, "the request for ICE servers");
    if (response.status !== 404) { // 404: a hub that hands out none
      if (!response.ok) throw await refused(response, "the request for ICE servers");
      const given = await response.json().catch(() => null);
      if (!given || !Array.isArray(given.iceServers)) throw new ConnectError("the hub's /ice-servers answer has no iceServers list");
      servers = [...servers, ...given.iceServers];
    }
  }
  const pc = new PeerConnection({ iceServers: servers });
  try {
    const channel = pc.createDataChannel(LABEL, { ordered: true });
    channel.binaryType = "arraybuffer";
    // listen from the instant the channel exists: a message that arrives before the Hub
    // takes the channel over is kept and handed to it, never dropped
    const early = [];
    const keep = (event) => early.push(event.data);
    channel.addEventListener("message", keep);
    await pc.setLocalDescription(await pc.createOffer());
    // no trickle: send the candidates gathered by then (host candidates come at once)
    await waitFor(pc, "icegatheringstatechange", {
      ms: Math.min(gatherTimeout, left()), already: () => pc.iceGatheringState === "complete", failure: () => null,
    }).catch(() => {});
    const offer = JSON.stringify({ sdp: pc.localDescription.sdp, type: pc.localDescription.type });
    const response = await send("POST", "/offer", offer, "the offer");
    if (!response.ok) throw await refused(response, "the offer");
    const answer = await response.json().catch(() => null);
    if (!answer || typeof answer.sdp !== "string") throw new ConnectError("the hub's answer to the offer has no SDP");
    await pc.setRemoteDescription({ type: answer.type || "answer", sdp: answer.sdp });
    await waitFor(channel, "open", {
      ms: left(),
      already: () => channel.readyState === "open",
      failEvents: [
        ["close", () => new ConnectError("the DataChannel closed before it opened: the hub dropped the connection")],
        ["error", (e) => new ConnectError(`the DataChannel failed before it opened: ${(e && e.error && e.error.message) || "unknown error"}`)],
      ],
      failure: () => new ConnectError(
        `the DataChannel did not open within ${seconds}: ICE found no path to the hub (a firewall, or a TURN server is needed)`,
      ),
    });
    const sctp = pc.sctp && pc.sctp.maxMessageSize;
    const maxFrameSize = sctp && Number.isFinite(sctp) ? Math.min(sctp, MAX_FRAME) : DEFAULT_MAX_MESSAGE;
    channel.removeEventListener("message", keep);
    const hub = new Hub(channel, { maxFrameSize, ...hubOptions, secret, pc, early, path: "webrtc" });
    hub.path = await selectedPath(pc); // the Hub listens already: nothing is lost meanwhile
    return hub;
  } catch (error) {
    try { pc.close(); } catch { /* closing anyway */ }
    if (error instanceof ConnectError) throw error;
    throw new ConnectError(`connecting to the hub failed: ${error.message}`);
  }
}
