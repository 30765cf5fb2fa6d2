// rxchannel browser client: RSocket 1.0 with end-to-end demand over the hub's direct WebSocket
// (when the page can reach it) or a WebRTC DataChannel.
// ES modules, no build step, no dependencies; the hub serves them beside its worker page.
//
//   import { connect } from "/rxchannel.js";
//   const hub = await connect();                                  // ws://…/rsocket, else GET /ice-servers, POST /offer, DataChannel; SETUP
//   console.log(hub.path);                                        // direct, webrtc-host, webrtc-srflx or webrtc-relay
//   const hub = await connect(location.origin, { secret });       // a hub with --secret: signed, and in SETUP
//   for (const { path, size } of await hub.list()) console.log(path, size);
//   const file = hub.fetch("big.bin", { highWaterMark: 32 });     // or { window: "auto" }
//   await file.pipeTo(writable);                                  // the sink paces the hub's disk
//   for await (const chunk of hub.fetch("log.txt")) { ... }       // also async-iterable
//   await hub.push("notes.txt", new Blob(["hello"]));             // into the hub's inbox
//   const items = await (await hub.endpoint("api", "/items")).json(); // an HTTP service behind the hub
//
// Modules: frames.js (codec), metadata.js (composite metadata, routing), fragments.js,
// demand.js (the demand engine, twin of rxchannel.core.InboundDemand), queue.js (the send
// queue), connection.js (Hub: requests, streams, uploads), endpoint.js (hub.endpoint(): a
// Response pulled with demand), connect.js (the path, signaling),
// direct.js (the direct WebSocket as a channel),
// signing.js (signed signaling requests), sha256.js (incremental digest), errors.js.

export { connect, LABEL, selectedPath } from "./connect.js";
export { WebSocketChannel, openDirect } from "./direct.js";
export { CHUNK_SIZE, Hub } from "./connection.js";
export { UPLOAD_CHUNK, requestEndpoint } from "./endpoint.js";
export { Adaptive, DEFAULT_WINDOW, InboundDemand, LimitRate, Manual, Window, checkRequestN, policyFor } from "./demand.js";
export {
  ClosedResourceError, ConnectError, ConnectionLostError, ERROR_CODE, FrameError, IntegrityError, LocalProtocolError,
  RemoteError, RemoteProtocolError, RxChannelError, errorCodeName,
} from "./errors.js";
export { FLAG, MAX_FRAME_SIZE, MAX_REQUEST_N, TYPE, decodeFrame, encodeFrame, encodePayload } from "./frames.js";
export { Reassembly, encodeItem } from "./fragments.js";
export { bearerMetadata, decodeComposite, encodeComposite, parseRequestMetadata, requestMetadata } from "./metadata.js";
export { SendQueue } from "./queue.js";
export { Sha256, sha256Hex } from "./sha256.js";
export { AUTH_SCHEME, signRequest } from "./signing.js";
