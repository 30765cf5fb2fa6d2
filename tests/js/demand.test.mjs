// The JS demand engine replays traces of rxchannel.core.InboundDemand (tests/js/vectors/
// demand.json, written by tests/web/js_vectors.py): every verb's result and the whole state
// after it must be the Python core's, for Window, LimitRate, Manual and Adaptive.
import { test } from "node:test";
import assert from "node:assert/strict";

import { LocalProtocolError } from "../../rxchannel/web/errors.js";
import { Adaptive, InboundDemand, LimitRate, Manual, Window, checkRequestN, policyFor } from "../../rxchannel/web/demand.js";
import { vectors } from "./helpers.mjs";

const { stateFields, traces } = vectors("demand.json");

function policyOf(spec) {
  switch (spec.kind) {
    case "window": return new Window(spec.size, spec.refill);
    case "limit_rate": return LimitRate(spec.high, spec.low);
    case "manual": return new Manual(spec.initial);
    default: return new Adaptive(spec.initial, { minWindow: spec.minWindow, maxWindow: spec.maxWindow, maxBytes: spec.maxBytes });
  }
}

function snapshot(d, policy) {
  const state = [d.outstanding, d.waiting, d.unacked, d.grantedTotal, d.receivedTotal, d.ackedTotal, d.unbounded, d.ended, d.rtt];
  if (policy instanceof Adaptive) state.push(policy.window, policy.rate);
  return state;
}

function run(d, op, args, now) {
  try {
    switch (op) {
      case "start": return d.start(now);
      case "request": return d.request(args[0], now);
      case "received": return d.received(args[0], now);
      case "wants_next": return d.wantsNext(now);
      case "pulled": d.pulled(); return null;
      case "ack": return d.ack(args[0], now);
      case "end": d.end(); return null;
      default: throw new Error(`unknown op ${op}`);
    }
  } catch (error) {
    if (error instanceof LocalProtocolError) return { error: "LocalProtocolError" };
    throw error;
  }
}

test("the vectors exercise every verb, refusals and adaptive growth", () => {
  const ops = new Set(traces.flatMap((t) => t.ops.map((o) => o[0])));
  assert.deepEqual([...ops].sort(), ["ack", "end", "pulled", "received", "request", "start", "wants_next"]);
  assert.ok(traces.some((t) => t.ops.some((o) => o[3] === false)), "an item past credit is refused");
  assert.ok(traces.some((t) => t.ops.some((o) => o[3] && o[3].error)), "misuse raises LocalProtocolError");
});

test("every trace of the Python InboundDemand replays identically in JS", () => {
  let steps = 0;
  traces.forEach((trace, index) => {
    const policy = policyOf(trace.policy);
    const demand = new InboundDemand(policy, { autoAck: trace.autoAck });
    trace.ops.forEach(([op, args, now, result, state], i) => {
      const where = `trace ${index} (${JSON.stringify(trace.policy)}, autoAck ${trace.autoAck}) op ${i} ${op}(${args})`;
      assert.deepEqual(run(demand, op, args, now), result, where);
      const got = snapshot(demand, policy);
      if (JSON.stringify(got) !== JSON.stringify(state)) {
        const diff = stateFields.filter((_, k) => JSON.stringify(got[k]) !== JSON.stringify(state[k]));
        assert.fail(`${where}: ${diff.join(", ")} differ: JS ${JSON.stringify(got)} vs Python ${JSON.stringify(state)}`);
      }
      steps++;
    });
  });
  assert.ok(steps > 5000, `${steps} steps replayed`);
});

test("request(n) refuses what Reactive Streams §3.9 refuses, and saturates at 2^31-1", () => {
  for (const bad of [0, -1, 1.5, NaN, "3", true, null]) assert.throws(() => checkRequestN(bad), LocalProtocolError);
  assert.equal(checkRequestN(2 ** 40), 0x7fffffff);
});

test("policyFor: numbers, 'auto', policies; anything else is a RangeError", () => {
  assert.equal(policyFor(8).size, 8);
  assert.equal(policyFor("12").size, 12);
  assert.ok(policyFor("auto") instanceof Adaptive);
  assert.equal(policyFor(undefined).size, 16);
  const mine = new Manual(2);
  assert.equal(policyFor(mine), mine);
  for (const bad of [0, -3, "fast", {}, 2.5]) assert.throws(() => policyFor(bad), RangeError);
});
