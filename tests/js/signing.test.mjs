// Signed signaling requests: the JS signer gives the very header Python's sign_request gives
// (tests/js/vectors/signing.json, each accepted by the hub's RequestAuth when written).
import { test } from "node:test";
import assert from "node:assert/strict";

import { ConnectError } from "../../rxchannel/web/errors.js";
import { AUTH_SCHEME, randomNonce, signRequest } from "../../rxchannel/web/signing.js";
import { vectors } from "./helpers.mjs";

const SIGNING = vectors("signing.json");

test("every header is the one Python's sign_request writes (WebCrypto HMAC-SHA256)", async () => {
  assert.ok(SIGNING.length >= 4);
  for (const { name, secret, method, path, body, now, nonce, header } of SIGNING) {
    assert.equal(await signRequest(secret, method, path, body, { now, nonce }), header, name);
  }
});

test("the body counts as the UTF-8 bytes sent, whether given as text or bytes", async () => {
  const { secret, method, path, body, now, nonce, header } = SIGNING.find((v) => /UTF-8/.test(v.name));
  assert.equal(await signRequest(secret, method, path, new TextEncoder().encode(body), { now, nonce }), header);
});

test("each part is covered: another path, method, body, secret, clock or nonce gives another MAC", async () => {
  const { secret, method, path, body, now, nonce, header } = SIGNING.find((v) => v.method === "POST");
  const mac = (h) => h.split("mac=")[1];
  const variants = [
    [secret, method, "/ice-servers", body, now, nonce],
    [secret, "GET", path, body, now, nonce],
    [secret, method, path, `${body} `, now, nonce],
    [`${secret}!`, method, path, body, now, nonce],
    [secret, method, path, body, now + 1, nonce],
    [secret, method, path, body, now, `${nonce}x`],
  ];
  for (const [s, m, p, b, t, n] of variants) {
    assert.notEqual(mac(await signRequest(s, m, p, b, { now: t, nonce: n })), mac(header), `${m} ${p} ${t} ${n}`);
  }
});

test("fresh nonces: well formed, different for every request", async () => {
  const seen = new Set();
  for (let i = 0; i < 200; i++) {
    const header = await signRequest("s", "GET", "/ice-servers", "");
    const match = header.match(new RegExp(`^${AUTH_SCHEME} ts=(\\d{1,12}),nonce=([A-Za-z0-9_-]{8,64}),mac=([0-9a-f]{64})$`));
    assert.ok(match, header);
    assert.ok(Math.abs(Number(match[1]) - Date.now() / 1000) <= 2, "the clock is now, in unix seconds");
    seen.add(match[2]);
  }
  assert.equal(seen.size, 200);
  assert.match(randomNonce(), /^[A-Za-z0-9_-]{22}$/);
});

test("without WebCrypto (a page that is not a secure context) signing fails with a ConnectError saying why", async () => {
  await assert.rejects(
    signRequest("s", "GET", "/ice-servers", "", { subtle: null }),
    (e) => e instanceof ConnectError && /secure pages/.test(e.message),
  );
});
