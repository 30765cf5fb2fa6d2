// Demand for a direction we receive on: the JS twin of rxchannel.core.InboundDemand and its
// policies (rxchannel/core/_credit.py, _policies.py). Same verbs, same counts, same grants:
// tests/js/demand.test.mjs replays vectors generated from the Python classes
// (tests/js/vectors/demand.json), so the two cannot drift apart.
//
// An item is *outstanding* from its grant until it arrives, *waiting* until the application
// pulls it, *unacked* until the application is done with it; the policy bounds `inFlight`
// (their sum). Every verb that may grant more returns how many to grant now (0 for none):
// the connection sends that as REQUEST_N. Time is an argument (`now`, in seconds).

import { LocalProtocolError } from "./errors.js";
import { MAX_REQUEST_N } from "./frames.js";

/** Items in flight on a stream when no window is given. */
export const DEFAULT_WINDOW = 16;
const ALWAYS_ASK = 2 ** 62;

/** Validate a local request(n); returns it capped at 2^31-1. Throws LocalProtocolError (Reactive Streams §3.9). */
export function checkRequestN(n) {
  if (typeof n !== "number" || !Number.isInteger(n) || n <= 0) {
    throw new LocalProtocolError(`request(n) needs a positive integer, got ${String(n)} (Reactive Streams rule 3.9)`);
  }
  return Math.min(n, MAX_REQUEST_N);
}

function quietOf(policy) {
  if (policy === null) return -1;
  return typeof policy.quiet === "function" ? policy.quiet() : ALWAYS_ASK;
}

export class InboundDemand {
  constructor(policy = null, { autoAck = true } = {}) {
    this.policy = policy;
    this.autoAck = autoAck;
    this.outstanding = 0;
    this.waiting = 0;
    this.unacked = 0;
    this.grantedTotal = 0;
    this.receivedTotal = 0;
    this.receivedBytes = 0;
    this.ackedTotal = 0;
    this.unbounded = false;
    this.ended = false;
    this.rtt = null;
    this._probe = null; // [time of a grant made while nothing was outstanding, the item number it allowed]
    this._quiet = quietOf(policy);
  }

  /** Granted items the application has not finished with (what a window bounds). */
  get inFlight() { return this.outstanding + this.waiting + this.unacked; }

  /** An item may arrive now. */
  get canReceive() { return this.unbounded || this.outstanding > 0; }

  /** The initial grant: the policy's initial() (0 without a policy). */
  start(now) { return this.policy !== null ? this._grant(this.policy.initial(), now) : 0; }

  /** The application grants n more by hand. Throws LocalProtocolError when n is not positive, even after the end. */
  request(n, now) {
    n = checkRequestN(n);
    return this.ended ? 0 : this._grant(n, now);
  }

  /** An item of `size` bytes arrived. False (and nothing counted) when it had no credit. */
  received(size, now) {
    if (this.ended) return true;
    if (!this.unbounded) {
      if (this.outstanding <= 0) return false;
      this.outstanding -= 1;
    }
    this.waiting += 1;
    this.receivedTotal += 1;
    this.receivedBytes += size;
    const probe = this._probe;
    if (probe !== null && this.receivedTotal >= probe[1]) {
      const sample = now - probe[0];
      this.rtt = this.rtt === null ? sample : Math.min(this.rtt, sample);
      this._probe = null;
    }
    return true;
  }

  /** The application asks for the next item; with autoAck it is done with those it took. */
  wantsNext(now) {
    if (this.autoAck && this.unacked && !this.ended) return this.ack(this.unacked, now);
    return 0;
  }

  /** The application took a waiting item. */
  pulled() {
    if (!this.ended && this.waiting) {
      this.waiting -= 1;
      this.unacked += 1;
    }
  }

  /** The application is done with n items it took. Throws LocalProtocolError for more than were taken. */
  ack(n, now) {
    if (this.ended) return 0;
    if (!(n > 0 && n <= this.unacked)) {
      throw new LocalProtocolError(`ack(${n}) but ${this.unacked} taken item(s) are unacknowledged`);
    }
    return this._acked(n, now);
  }

  /** The direction is over (completed, failed or cancelled): nothing more is granted. */
  end() { this.ended = true; }

  _acked(n, now) {
    this.unacked -= n;
    this.ackedTotal += n;
    if (this.outstanding + this.waiting + this.unacked > this._quiet) return 0; // the policy would grant nothing yet
    const more = this.policy.demand(this, now);
    if (more <= 0) return 0;
    const granted = this._grant(more, now);
    this._quiet = quietOf(this.policy);
    return granted;
  }

  _grant(n, now) {
    if (this.unbounded || n <= 0) return 0;
    if (this.outstanding === 0 && this._probe === null) this._probe = [now, this.receivedTotal + 1];
    n = Math.min(n, MAX_REQUEST_N - this.outstanding);
    this.outstanding += n;
    this.grantedTotal += n;
    if (this.outstanding >= MAX_REQUEST_N) this.unbounded = true;
    return n;
  }
}

function positiveInteger(value, what) {
  if (typeof value !== "number" || !Number.isInteger(value) || value <= 0) {
    throw new RangeError(`${what} must be a positive integer, got ${String(value)}`);
  }
}

/** No automatic replenishment: the application calls request(n) itself. */
export class Manual {
  constructor(initial = 0) {
    if (typeof initial !== "number" || !Number.isInteger(initial) || initial < 0) {
      throw new RangeError(`Manual(initial) needs a non-negative integer, got ${String(initial)}`);
    }
    this._initial = initial;
  }
  initial() { return this._initial; }
  demand() { return 0; }
  quiet() { return -1; }
}

/** Keep at most `size` items in flight; ask for more once `refill` slots are free (default: a quarter). */
export class Window {
  constructor(size, refill = null) {
    positiveInteger(size, "window size");
    if (refill === null) refill = Math.max(1, Math.floor(size / 4));
    if (!(Number.isInteger(refill) && refill >= 1 && refill <= size)) throw new RangeError(`refill must be in 1..${size}, got ${refill}`);
    this.size = size;
    this.refill = refill;
  }
  get window() { return this.size; }
  initial() { return this.size; }
  demand(state) {
    const free = this.size - state.inFlight;
    return free >= this.refill ? free : 0;
  }
  quiet() { return this.size - this.refill; }
}

/** Request `high` items, then top up to `high` whenever only `low` remain in flight. */
export function LimitRate(high, low) {
  if (!(Number.isInteger(high) && Number.isInteger(low) && low >= 0 && low < high)) {
    throw new RangeError(`limit_rate needs 0 <= low < high, got high=${high}, low=${low}`);
  }
  return new Window(high, high - low);
}

/**
 * A window tuned from the measured round trip and consumption rate: it aims at
 * 1.5 x rate x rtt items (rate: items acknowledged per second over the last round trip),
 * so it grows by half each round trip while the window limits throughput and follows the
 * consumer down when it slows. Bounded by minWindow..maxWindow and by maxBytes divided by
 * the average item size seen so far.
 */
export class Adaptive {
  constructor(initial = 4, { minWindow = 1, maxWindow = 1 << 16, maxBytes = 64 << 20 } = {}) {
    if (!(minWindow >= 1 && minWindow <= initial && initial <= maxWindow) || !(maxBytes > 0)) {
      throw new RangeError("need 1 <= minWindow <= initial <= maxWindow and maxBytes > 0");
    }
    this.window = initial;
    this.minWindow = minWindow;
    this.maxWindow = maxWindow;
    this.maxBytes = maxBytes;
    this.rate = null;
    this._mark = null;
  }
  initial() { return this.window; }
  quiet() { return ALWAYS_ASK; } // it measures on every acknowledgement
  demand(state, now) {
    this._measure(state, now);
    const free = this.window - state.inFlight;
    return free >= Math.max(1, Math.floor(this.window / 4)) ? free : 0;
  }
  _measure(state, now) {
    if (this._mark === null) {
      this._mark = [now, state.ackedTotal];
      return;
    }
    const [since, ackedThen] = this._mark;
    const rtt = state.rtt ? state.rtt : 0.01;
    const elapsed = now - since;
    const acked = state.ackedTotal - ackedThen;
    if (elapsed < Math.max(rtt, 0.001) || acked < 2) return;
    this._mark = [now, state.ackedTotal];
    const sample = acked / elapsed;
    // grow at once, shrink gently: one slow interval must not collapse the window
    this.rate = this.rate === null || sample > this.rate ? sample : 0.5 * this.rate + 0.5 * sample;
    const target = Math.trunc(1.5 * this.rate * rtt) + 1;
    let cap = this.maxWindow;
    if (state.receivedTotal) {
      const average = Math.max(1, Math.floor(state.receivedBytes / state.receivedTotal));
      cap = Math.min(cap, Math.max(this.minWindow, Math.floor(this.maxBytes / average)));
    }
    this.window = Math.max(this.minWindow, Math.min(cap, target));
  }
}

/** A policy from a window size, "auto" (Adaptive), a policy, or null/undefined (the default window). */
export function policyFor(window) {
  if (window === null || window === undefined) return new Window(DEFAULT_WINDOW);
  if (window === "auto") return new Adaptive();
  if (typeof window === "number") return new Window(window);
  if (typeof window === "string" && /^[0-9]+$/.test(window)) return new Window(Number(window));
  if (window && typeof window.initial === "function" && typeof window.demand === "function") return window;
  throw new RangeError(`window must be a positive number of items, "auto" or a policy, got ${String(window)}`);
}
