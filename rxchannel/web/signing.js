// Signed signaling requests: what a hub started with --secret asks of GET /ice-servers and
// POST /offer (rxchannel/webrtc/offers.py, sign_request and RequestAuth).
//
//   Authorization: RXCHANNEL-HMAC-SHA256 ts=<unix seconds>,nonce=<8-64 of [A-Za-z0-9_-]>,mac=<hex>
//   mac = hex(HMAC-SHA256(secret, ts + "\n" + nonce + "\n" + METHOD + "\n" + path + "\n" + hex(SHA-256(body))))
//
// The secret itself never leaves this page in a request: only the MAC does. The hub refuses
// a signature more than 300 s from its clock, or one it has seen before (so every request
// gets a fresh nonce). WebCrypto does the hashing; browsers offer it only in a secure
// context (https, or http on localhost).

import { ConnectError } from "./errors.js";

export const AUTH_SCHEME = "RXCHANNEL-HMAC-SHA256";

const utf8 = new TextEncoder();

function hex(buffer) {
  let text = "";
  for (const b of new Uint8Array(buffer)) text += b.toString(16).padStart(2, "0");
  return text;
}

function bytesOf(body) {
  if (body === null || body === undefined) return new Uint8Array(0);
  if (typeof body === "string") return utf8.encode(body);
  if (body instanceof Uint8Array) return body;
  if (ArrayBuffer.isView(body)) return new Uint8Array(body.buffer, body.byteOffset, body.byteLength);
  if (body instanceof ArrayBuffer) return new Uint8Array(body);
  throw new TypeError("a signed body must be a string, bytes or empty");
}

/** A fresh nonce: 16 random bytes as base64url (22 characters of [A-Za-z0-9_-]). */
export function randomNonce() {
  const bytes = globalThis.crypto.getRandomValues(new Uint8Array(16));
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** The text the MAC covers; `body` is a string (UTF-8) or bytes. */
export async function stringToSign(ts, nonce, method, path, body, subtle = globalThis.crypto && globalThis.crypto.subtle) {
  const digest = await subtle.digest("SHA-256", bytesOf(body));
  return `${ts}\n${nonce}\n${method.toUpperCase()}\n${path}\n${hex(digest)}`;
}

/**
 * The Authorization header value for a signaling request to a hub with `secret`.
 * `path` is the URL's path only (e.g. "/offer"), `body` exactly the bytes sent (a string
 * is sent as UTF-8; a GET has none). Options: now (unix seconds), nonce, subtle (WebCrypto).
 */
export async function signRequest(secret, method, path, body, {
  now = Date.now() / 1000, nonce = randomNonce(), subtle = globalThis.crypto && globalThis.crypto.subtle,
} = {}) {
  if (!subtle) {
    throw new ConnectError(
      "this page cannot sign requests for the hub's secret: the browser offers WebCrypto only to secure pages "
      + "(https://, or http://localhost); open the hub through an HTTPS reverse proxy",
    );
  }
  if (!/^[A-Za-z0-9_-]{8,64}$/.test(nonce)) throw new TypeError("a nonce is 8 to 64 characters of [A-Za-z0-9_-]");
  const ts = Math.floor(now);
  const key = await subtle.importKey("raw", utf8.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  const mac = await subtle.sign("HMAC", key, utf8.encode(await stringToSign(ts, nonce, method, path, body, subtle)));
  return `${AUTH_SCHEME} ts=${ts},nonce=${nonce},mac=${hex(mac)}`;
}
