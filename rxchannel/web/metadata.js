// Composite metadata and routing (RSocket extensions CompositeMetadata.md and Routing.md),
// as rxchannel/core/_metadata.py: a request carries a routing tag and, optionally, an
// application/json entry (size, offset, digest...). The bytes match the Python core's
// exactly (tests/js/vectors/metadata.json is written by it).

import { LocalProtocolError, RemoteProtocolError, ERROR_CODE } from "./errors.js";

export const COMPOSITE_METADATA = "message/x.rsocket.composite-metadata.v0";
export const ROUTING = "message/x.rsocket.routing.v0";
export const AUTHENTICATION = "message/x.rsocket.authentication.v0";
export const JSON_MIME = "application/json";
export const OCTET_STREAM = "application/octet-stream";

const WELL_KNOWN = new Map([
  [0x01, "application/cbor"], [0x05, JSON_MIME], [0x06, OCTET_STREAM], [0x21, "text/plain"],
  [0x7a, "message/x.rsocket.mime-type.v0"], [0x7b, "message/x.rsocket.accept-mime-types.v0"],
  [0x7c, AUTHENTICATION], [0x7d, "message/x.rsocket.tracing-zipkin.v0"], [0x7e, ROUTING], [0x7f, COMPOSITE_METADATA],
]);
const WELL_KNOWN_IDS = new Map([...WELL_KNOWN].map(([id, mime]) => [mime, id]));
const BEARER = 0x81; // well-known authentication type "bearer"

const utf8 = new TextEncoder();
const utf8Strict = new TextDecoder("utf-8", { fatal: true });

/** Metadata that cannot be parsed: the stream is refused with ERROR[INVALID]. */
export class MetadataError extends RemoteProtocolError {
  constructor(message, streamId = 0) { super(message, ERROR_CODE.INVALID, streamId); }
}

function concat(parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

/** Encode [[mime, Uint8Array], ...] as composite metadata. Throws LocalProtocolError for a bad entry. */
export function encodeComposite(entries) {
  const parts = [];
  for (const [mime, content] of entries) {
    if (mime.startsWith("well-known:")) {
      parts.push(Uint8Array.of(0x80 | (parseInt(mime.slice(11), 16) & 0x7f)));
    } else if (WELL_KNOWN_IDS.has(mime)) {
      parts.push(Uint8Array.of(0x80 | WELL_KNOWN_IDS.get(mime)));
    } else {
      if (!/^[\x00-\x7f]{1,128}$/.test(mime)) throw new LocalProtocolError(`MIME type ${JSON.stringify(mime)} must be 1..128 ASCII characters`);
      parts.push(Uint8Array.of(mime.length - 1), utf8.encode(mime));
    }
    if (content.length > 0xffffff) throw new LocalProtocolError("a composite metadata entry is limited to 16 MiB");
    parts.push(Uint8Array.of((content.length >>> 16) & 0xff, (content.length >>> 8) & 0xff, content.length & 0xff), content);
  }
  return concat(parts);
}

/** Decode composite metadata into [[mime, Uint8Array], ...]. Throws MetadataError. */
export function decodeComposite(metadata) {
  const entries = [];
  let i = 0;
  const end = metadata.length;
  while (i < end) {
    const head = metadata[i++];
    let mime;
    if (head & 0x80) {
      mime = WELL_KNOWN.get(head & 0x7f) || `well-known:0x${(head & 0x7f).toString(16).padStart(2, "0")}`;
    } else {
      const length = head + 1;
      if (i + length > end) throw new MetadataError("composite metadata: MIME type runs past the end");
      mime = "";
      for (let j = i; j < i + length; j++) {
        if (metadata[j] > 0x7f) throw new MetadataError("composite metadata: MIME type is not ASCII");
        mime += String.fromCharCode(metadata[j]);
      }
      i += length;
    }
    if (i + 3 > end) throw new MetadataError("composite metadata: entry length runs past the end");
    const length = (metadata[i] << 16) | (metadata[i + 1] << 8) | metadata[i + 2];
    i += 3;
    if (i + length > end) throw new MetadataError(`composite metadata: entry of ${length} bytes runs past the end`);
    entries.push([mime, metadata.subarray(i, i + length)]);
    i += length;
  }
  return entries;
}

/** Encode routing tags (each 1..255 bytes of UTF-8). */
export function encodeRoute(...tags) {
  const parts = [];
  for (const tag of tags) {
    const raw = utf8.encode(tag);
    if (raw.length < 1 || raw.length > 255) {
      throw new LocalProtocolError(`route tag ${JSON.stringify(tag.slice(0, 40))}... must be 1..255 bytes of UTF-8`);
    }
    parts.push(Uint8Array.of(raw.length), raw);
  }
  return concat(parts);
}

/** Decode routing tags. Throws MetadataError. */
export function decodeRoute(content) {
  const tags = [];
  let i = 0;
  while (i < content.length) {
    const length = content[i++];
    if (i + length > content.length) throw new MetadataError("routing metadata: tag runs past the end");
    try {
      tags.push(utf8Strict.decode(content.subarray(i, i + length)));
    } catch {
      throw new MetadataError("routing metadata: tag is not UTF-8");
    }
    i += length;
  }
  return tags;
}

/**
 * JSON as Python's json.dumps(value, separators=(",", ":")) writes it: compact, and
 * everything outside printable ASCII escaped (ensure_ascii), so both sides send the same bytes.
 */
export function jsonBytes(value) {
  const text = JSON.stringify(value).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
  return utf8.encode(text);
}

/** Composite metadata for a request: a routing tag and an optional JSON entry. */
export function requestMetadata(route, info = null) {
  const entries = [];
  if (route !== null && route !== undefined) entries.push([ROUTING, encodeRoute(route)]);
  if (info && Object.keys(info).length) entries.push([JSON_MIME, jsonBytes(info)]);
  return encodeComposite(entries);
}

/** {route, info} of a request's (or an item's) composite metadata. Throws MetadataError. */
export function parseRequestMetadata(metadata) {
  let route = null;
  const info = {};
  if (!metadata || !metadata.length) return { route, info };
  for (const [mime, content] of decodeComposite(metadata)) {
    if (mime === ROUTING) {
      const tags = decodeRoute(content);
      if (tags.length && route === null) route = tags[0];
    } else if (mime === JSON_MIME) {
      let value;
      try {
        value = JSON.parse(utf8Strict.decode(content));
      } catch {
        throw new MetadataError("the application/json metadata entry is not valid JSON");
      }
      if (value === null || typeof value !== "object" || Array.isArray(value)) {
        throw new MetadataError("the application/json metadata entry must be an object");
      }
      Object.assign(info, value);
    }
  }
  return { route, info };
}

/** Composite metadata carrying a bearer token (SETUP authentication, as rxchannel/core/_auth.py). */
export function bearerMetadata(token) {
  return encodeComposite([[AUTHENTICATION, concat([Uint8Array.of(BEARER), utf8.encode(token)])]]);
}
