// The hub's direct path for the page: RSocket over a WebSocket at /rsocket on the hub's own
// port (rxchannel/transports/websocket.py serves it beside WebRTC signaling), presented to
// Hub with the surface of an RTCDataChannel, so the connection code is the same on both paths.
//
// A WebSocket has bufferedAmount but no bufferedAmountLowThreshold and no
// "bufferedamountlow" event: this adapter watches bufferedAmount while it is above the
// threshold (every few milliseconds, only then) and fires the event when it falls to it,
// so the send queue (queue.js) keeps the same high/low-water marks as over a DataChannel.

/** How often bufferedAmount is re-read while it is above the low-water threshold (ms). */
const WATCH_MS = 5;
const STATES = ["connecting", "open", "closing", "closed"];

export class WebSocketChannel extends EventTarget {
  /** `ws`: a WebSocket (open or opening) carrying one RSocket frame per binary message. */
  constructor(ws) {
    super();
    this.ws = ws;
    ws.binaryType = "arraybuffer";
    this.bufferedAmountLowThreshold = 0;
    this._watch = null;
    // messages that arrive before a Hub takes the channel are kept for it (takeEarly)
    this._early = [];
    this._keep = (event) => this._early.push(event.data);
    this.addEventListener("message", this._keep);
    for (const name of ["open", "message", "close", "error"]) {
      ws.addEventListener(name, (event) => {
        const copy = new Event(name);
        if (name === "message") copy.data = event.data;
        if (name === "close") { copy.code = event.code; copy.reason = event.reason; this._stopWatch(); }
        this.dispatchEvent(copy);
      });
    }
  }

  get readyState() { return STATES[this.ws.readyState] || "closed"; }
  get bufferedAmount() { return this.ws.bufferedAmount; }
  get binaryType() { return "arraybuffer"; }
  set binaryType(_value) { /* always arraybuffer */ }
  get label() { return "rsocket"; }

  send(bytes) {
    this.ws.send(bytes);
    if (this._watch === null && this.ws.bufferedAmount > this.bufferedAmountLowThreshold) {
      this._watch = setInterval(() => {
        if (this.ws.bufferedAmount <= this.bufferedAmountLowThreshold) {
          this._stopWatch();
          this.dispatchEvent(new Event("bufferedamountlow"));
        }
      }, WATCH_MS);
    }
  }

  /** Stop keeping messages and return those kept so far (for a Hub's `early` option). */
  takeEarly() {
    this.removeEventListener("message", this._keep);
    return this._early.splice(0);
  }

  close() {
    this._stopWatch();
    this.ws.close(1000);
  }

  _stopWatch() {
    if (this._watch !== null) clearInterval(this._watch);
    this._watch = null;
  }
}

/**
 * Open the hub's direct WebSocket; resolves the open WebSocketChannel, or null when the hub
 * has no direct path for us (it serves WebRTC only, a proxy refused the upgrade, or it did
 * not open within `ms`): the caller then takes WebRTC. `auth`: the signed request (when the
 * hub has a secret), sent as the `auth` query parameter since a browser's WebSocket cannot
 * carry an Authorization header.
 */
export function openDirect(url, { ms = 3000, auth = null, WebSocket: Socket = globalThis.WebSocket } = {}) {
  if (typeof Socket !== "function") return Promise.resolve(null);
  return new Promise((resolve) => {
    let ws;
    try {
      ws = new Socket(auth ? `${url}?auth=${encodeURIComponent(auth)}` : url);
    } catch {
      resolve(null);
      return;
    }
    const channel = new WebSocketChannel(ws);
    const done = (value) => {
      clearTimeout(timer);
      channel.removeEventListener("open", opened);
      channel.removeEventListener("close", failed);
      resolve(value);
    };
    const opened = () => done(channel);
    const failed = () => done(null);
    const timer = setTimeout(() => { try { ws.close(); } catch { /* never opened */ } done(null); }, ms);
    channel.addEventListener("open", opened);
    channel.addEventListener("close", failed);
  });
}
