// Connecting to a hub: an RTCPeerConnection with one DataChannel, the offer POSTed to the
// hub's /offer (non-trickle: the offer carries the candidates gathered), the answer
// applied, and RSocket SETUP once the channel is open.
//
// Every wait has a deadline and every path out clears its timers and listeners: a channel
// that closes before it opens, a refused offer or a timeout reject with ConnectError
// (saying which) and close the peer connection.

import { Hub } from "./connection.js";
import { ConnectError } from "./errors.js";

/** The DataChannel label rxchannel opens (rxchannel/transports/signaling.py LABEL). */
export const LABEL = "rxchannel";
/** Largest frame sent unfragmented when the peer connection does not say (aiortc's default message size). */
const DEFAULT_MAX_MESSAGE = 64 * 1024;

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
 * Options: iceServers (RTCIceServer dictionaries; none by default), timeout (ms for the
 * whole connect), gatherTimeout (ms to wait for ICE candidates), and the Hub's options
 * (keepalive, lifetime, secret, ...). RTCPeerConnection and fetch may be passed in.
 */
export async function connect(base = globalThis.location ? globalThis.location.origin : "", options = {}) {
  const {
    iceServers = [], timeout = 20000, gatherTimeout = 2000,
    RTCPeerConnection: PeerConnection = globalThis.RTCPeerConnection, fetch: post = (...a) => globalThis.fetch(...a),
    ...hubOptions
  } = options;
  if (typeof PeerConnection !== "function") throw new ConnectError("this browser has no WebRTC (RTCPeerConnection)");
  const deadline = Date.now() + timeout;
  const left = () => deadline - Date.now();
  const pc = new PeerConnection({ iceServers });
  try {
    const channel = pc.createDataChannel(LABEL, { ordered: true });
    channel.binaryType = "arraybuffer";
    await pc.setLocalDescription(await pc.createOffer());
    // no trickle: send the candidates gathered by then (host candidates come at once)
    await waitFor(pc, "icegatheringstatechange", {
      ms: Math.min(gatherTimeout, left()), already: () => pc.iceGatheringState === "complete", failure: () => null,
    }).catch(() => {});
    const aborter = new AbortController();
    const abortTimer = setTimeout(() => aborter.abort(), Math.max(0, left()));
    let answer;
    try {
      const response = await post(`${base}/offer`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ sdp: pc.localDescription.sdp, type: pc.localDescription.type }),
        signal: aborter.signal,
      });
      const body = await response.json().catch(() => null);
      if (!response.ok || !body || typeof body.sdp !== "string") {
        const reason = body && body.error ? body.error : `HTTP ${response.status}`;
        throw new ConnectError(`the hub refused the offer: ${reason}`);
      }
      answer = body;
    } catch (error) {
      if (error instanceof ConnectError) throw error;
      throw new ConnectError(aborter.signal.aborted
        ? `the hub did not answer the offer within ${(timeout / 1000).toFixed(0)} s`
        : `cannot reach the hub at ${base}: ${error.message}`);
    } finally {
      clearTimeout(abortTimer);
    }
    await pc.setRemoteDescription({ type: answer.type || "answer", sdp: answer.sdp });
    await waitFor(channel, "open", {
      ms: left(),
      already: () => channel.readyState === "open",
      failEvents: [
        ["close", () => new ConnectError("the DataChannel closed before it opened: the hub dropped the connection")],
        ["error", (e) => new ConnectError(`the DataChannel failed before it opened: ${(e && e.error && e.error.message) || "unknown error"}`)],
      ],
      failure: () => new ConnectError(
        `the DataChannel did not open within ${(timeout / 1000).toFixed(0)} s: ICE found no path to the hub (a firewall, or a TURN server is needed)`,
      ),
    });
    const sctp = pc.sctp && pc.sctp.maxMessageSize;
    const maxFrameSize = sctp && Number.isFinite(sctp) ? Math.min(sctp, 256 * 1024) : DEFAULT_MAX_MESSAGE;
    return new Hub(channel, { maxFrameSize, ...hubOptions, pc });
  } catch (error) {
    try { pc.close(); } catch { /* closing anyway */ }
    if (error instanceof ConnectError) throw error;
    throw new ConnectError(`connecting to the hub failed: ${error.message}`);
  }
}
