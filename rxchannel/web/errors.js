// Errors, named by who is at fault (docs/architecture.md, "Errors by blame"), as in the Python core (rxchannel/core/_errors.py).
//
//   LocalProtocolError   you misused the API (request(0), sending without credit, a closed stream)
//   RemoteProtocolError  the hub broke the RSocket protocol; `code` is the ERROR code sent back
//   FrameError           bytes that are not a frame (a RemoteProtocolError, CONNECTION_ERROR)
//   RemoteError          the hub's application ended the stream with an ERROR frame (`code`)
//   ConnectionLostError  the DataChannel or the hub died; every open stream gets it
//   ClosedResourceError  the connection was closed here
//   ConnectError         connecting failed (the offer was refused, the channel never opened)
//   IntegrityError       what arrived is not what the hub announced (size or SHA-256)

export const ERROR_CODE = Object.freeze({
  INVALID_SETUP: 0x001,
  UNSUPPORTED_SETUP: 0x002,
  REJECTED_SETUP: 0x003,
  REJECTED_RESUME: 0x004,
  CONNECTION_ERROR: 0x101,
  CONNECTION_CLOSE: 0x102,
  APPLICATION_ERROR: 0x201,
  REJECTED: 0x202,
  CANCELED: 0x203,
  INVALID: 0x204,
});

const CODE_NAME = new Map(Object.entries(ERROR_CODE).map(([name, code]) => [code, name]));

/** The name of an ERROR code ("INVALID"), or its hex value for application codes. */
export function errorCodeName(code) {
  return CODE_NAME.get(code) || `0x${code.toString(16).padStart(8, "0")}`;
}

export class RxChannelError extends Error {
  get name() { return this.constructor.name; }
}

export class LocalProtocolError extends RxChannelError {}

export class RemoteProtocolError extends RxChannelError {
  constructor(message, code = ERROR_CODE.CONNECTION_ERROR, streamId = 0) {
    super(message);
    this.code = code;
    this.streamId = streamId;
  }
}

export class FrameError extends RemoteProtocolError {
  constructor(message) { super(message, ERROR_CODE.CONNECTION_ERROR, 0); }
}

export class RemoteError extends RxChannelError {
  constructor(code, message) {
    super(`${errorCodeName(code)}: ${message}`);
    this.code = code;
    this.remoteMessage = message;
  }
}

export class ConnectionLostError extends RxChannelError {}
export class ClosedResourceError extends RxChannelError {}
/** `status`: the HTTP status of the hub's refusal (401, 429, 503, ...), else null; `retryAfter`: its Retry-After in s. */
export class ConnectError extends RxChannelError {
  constructor(message, { status = null, retryAfter = null } = {}) {
    super(message);
    this.status = status;
    this.retryAfter = retryAfter;
  }
}
export class IntegrityError extends RxChannelError {}
