// The worker page the hub serves at "/": list the hub's files, fetch them straight to disk,
// send files to the hub's inbox. One row per transfer.
//
// A fetch streams into the origin-private file system (OPFS) by default, or into a file the
// user picks (File System Access, where the browser has it): the hub's ReadableStream is
// piped into the file's writable, so the disk's pace is the hub's pace, and memory stays
// flat whatever the size. Each chunk is hashed on the way (incremental SHA-256) and checked
// against the hub's digest at the end; only then is the file named as complete and offered
// for download (from the file, never from a copy in memory). An interrupted fetch keeps its
// partial file and resumes from it ({"offset", "sha256"} of what is there).
//
// The page takes the hub's direct WebSocket when it can reach it, else WebRTC (?via=webrtc or
// ?via=direct to insist), and shows which path it took.
//
// Job mode (docs/architecture.md, "The worker page's job mode"): /?fetch=PATH&window=N|auto&report=1 fetches at once and POSTs
// {"ok", "path", "bytes", "sha256", "seconds"} (or {"ok": false, "error"}) to /report,
// authenticated with the token the hub put in this page (see rxchannel/web/__init__.py).
// /?endpoint=NAME/PATH&report=1 does the same for an endpoint's response body.
//
// Each row says what its stream is, as the hub's first metadata does: a file, or an
// endpoint (with its HTTP status). An endpoint's body goes to storage as a file's does, its
// size checked against the Content-Length when there is one (an HTTP response has no digest).

import {
  ConnectError, ConnectionLostError, IntegrityError, RemoteError, RemoteProtocolError, RxChannelError, Sha256, connect,
} from "./rxchannel.js";

const params = new URLSearchParams(location.search);
// The hub's base URL: where this page was served from (its origin, or a rendezvous's /hubs/NAME/)
const HUB = new URL(".", location.href).href.replace(/\/$/, "");
const $ = (id) => document.getElementById(id);
const REPORT_TOKEN = document.querySelector('meta[name="rxchannel-report-token"]').content;
const FILE_CHANGED = 0x301; // the hub's application code: the file changed while it was served
const ENDPOINT_FAILED = 0x305; // the hub's application code: an endpoint's upstream failed (refused, timed out, reset)
const DEFAULT_WINDOW = 32;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
// The hub's --secret, from the address's fragment (#secret=…): a fragment is never sent to
// a server; the secret signs this page's signaling requests and goes in SETUP (inside DTLS).
const SECRET = new URLSearchParams(location.hash.slice(1)).get("secret") || null;

// ------------------------------------------------------------------ the connection (shared, reconnected on demand)

let current = null;
function hubConnection() {
  if (current === null) {
    const attempt = connect(HUB, {
      via: params.get("via") || "auto", // the hub's direct WebSocket when it opens, else WebRTC
      keepalive: 1000,
      lifetime: Number(params.get("lifetime") || 10000),
      secret: SECRET,
    });
    current = attempt;
    attempt.then((hub) => hub.ended.then(() => { if (current === attempt) current = null; }), () => { if (current === attempt) current = null; });
  }
  return current;
}

// ------------------------------------------------------------------ formatting

// Sizes in binary units (KiB, MiB, GiB), as the CLI prints them and its options take them;
// rates in MB/s (10^6 bytes per second), as the CLI's summaries and --json's mb_per_s.
function formatSize(bytes) {
  if (bytes >= 2 ** 30) return `${(bytes / 2 ** 30).toFixed(2)} GiB`;
  if (bytes >= 2 ** 20) return `${(bytes / 2 ** 20).toFixed(1)} MiB`;
  if (bytes >= 2 ** 10) return `${(bytes / 2 ** 10).toFixed(1)} KiB`;
  return `${bytes} B`;
}

function duration(seconds) {
  if (!Number.isFinite(seconds)) return "?";
  if (seconds < 60) return `${Math.ceil(seconds)} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(seconds / 3600)} h ${Math.round((seconds % 3600) / 60)} min`;
}

/** What went wrong, in words, and what the user can do about it. */
function explain(error, transfer) {
  const kept = transfer.written > 0 && transfer.storage === "opfs" ? ` (${formatSize(transfer.written)} kept)` : "";
  if ((error && error.name === "AbortError") || (transfer.controller && transfer.controller.signal.aborted)) {
    return { state: "cancelled", reason: "cancelled", todo: transfer.kind === "push" ? "press retry to send it again" : `press retry to resume${kept}` };
  }
  if (error instanceof ConnectError) return { state: "failed", reason: error.message, todo: connectTodo(error) };
  if (error instanceof ConnectionLostError) return { state: "failed", reason: error.message, todo: `press retry to resume${kept}` };
  if (error instanceof EndpointStatusError) return { state: "failed", reason: error.message, todo: "check the path and the service behind the hub" };
  if (error instanceof RemoteError && error.code === ENDPOINT_FAILED) {
    return { state: "failed", reason: error.remoteMessage, todo: "press retry; the service behind the hub may be down" };
  }
  if (error instanceof RemoteError && error.code === FILE_CHANGED) {
    return { state: "failed", reason: error.remoteMessage, todo: "press retry to fetch the new version" };
  }
  if (error instanceof RemoteError && error.code <= 0x004) { // the hub refused our SETUP: say what helps for that reason
    return { state: "failed", reason: error.remoteMessage, todo: setupTodo(error) };
  }
  if (error instanceof RemoteError && transfer.kind === "push") {
    return { state: "failed", reason: `the hub refused: ${error.remoteMessage}`, todo: "rename the file or pick another, then send it" };
  }
  if (error instanceof RemoteError) return { state: "failed", reason: `the hub refused: ${error.remoteMessage}`, todo: "check the name and the hub's files" };
  if (error instanceof RemoteProtocolError) return { state: "failed", reason: error.message, todo: "press retry; report it if it happens again" };
  if (error instanceof IntegrityError) return { state: "failed", reason: error.message, todo: "press retry to fetch it again from the start" };
  if (error && error.name === "QuotaExceededError") {
    return { state: "failed", reason: "the browser's storage is full", todo: "free space (delete finished copies), or use “save to…”" };
  }
  if (error && error.name === "NoModificationAllowedError") {
    return { state: "failed", reason: "another transfer (in this or another tab) is writing this file", todo: "wait for it or cancel it, then press retry" };
  }
  if (error && error.name === "NotAllowedError") return { state: "failed", reason: "the browser refused access to the file", todo: "allow it, or choose another file" };
  return { state: "failed", reason: String((error && error.message) || error), todo: "press retry" };
}

/** What to do about a refused SETUP: the secret only when authentication was the reason. */
function setupTodo(error) {
  if (error.code === 0x003 && /authentication/.test(error.remoteMessage)) {
    return SECRET
      ? "the secret in this page's address (#secret=…) is not the hub's: open the page with the right one"
      : "this hub needs its secret: open this page with it in its address (#secret=…; it never leaves the browser)";
  }
  if (error.code === 0x003) return "press retry in a few seconds";
  return "press retry; if it happens again, report it with the hub's log";
}

/** What to do about a failed connect, by the hub's HTTP status when it refused us. */
function connectTodo(error) {
  const wait = error.retryAfter !== null ? `wait ${error.retryAfter} s, then press retry` : "press retry in a few seconds";
  if (error.status === 401) {
    return SECRET
      ? "the secret in this page's address (#secret=…) is not the hub's: open the page with the right one"
      : "this hub needs its secret: open this page with it in its address (#secret=…; it never leaves the browser)";
  }
  if (error.status === 429) return `this browser's address sent too many requests: ${wait}`;
  if (error.status === 503) return `the hub is busy: ${wait}`;
  if (error.status !== null) return "the hub refused the connection: press retry, or ask its operator";
  return "check that the hub is running, then press retry";
}

/** An endpoint answered with a status of 400 or more (its page's first line says why). */
class EndpointStatusError extends RxChannelError {
  constructor(status, reason, firstLine) {
    super(`the endpoint answered HTTP ${status} ${reason}`.trim() + (firstLine ? `: ${firstLine}` : ""));
    this.name = "EndpointStatusError";
    this.status = status;
  }
}

// ------------------------------------------------------------------ rows

const transfers = [];
let ticker = null;

class Transfer {
  constructor(kind, path, options) {
    this.id = transfers.length + 1;
    this.kind = kind; // "fetch" | "push" | "endpoint"
    this.type = kind === "endpoint" ? "endpoint" : null; // what the hub's first metadata says the stream is
    this.httpStatus = null;
    this.path = path;
    this.options = options;
    this.state = "connecting";
    this.detail = "";
    this.written = 0; // bytes on disk (fetch) or sent (push)
    this.size = null;
    this.offset = 0; // where this attempt resumed from
    this.sha256 = null;
    this.error = null;
    this.storage = options.storage || null;
    this.stream = null;
    this.samples = [];
    this.attempts = 0;
    transfers.push(this);
    this.row = document.createElement("tr");
    this.row.dataset.id = String(this.id);
    this.row.dataset.kind = kind;
    this.row.dataset.path = path;
    this.row.innerHTML = `<td class="path"></td><td class="state"></td><td><progress value="0" max="1"></progress><div class="detail bytes"></div></td><td class="detail info"></td><td class="actions"></td>`;
    this.row.cells[0].textContent = `${kind === "push" ? "⇡" : "⇣"} ${path}`;
    const empty = $("empty");
    if (empty) empty.remove();
    $("transfers").prepend(this.row);
  }

  /** Public status (tests and the benchmark read it through window.rxchannelPage). */
  status() {
    const stats = this.stream && this.stream.stats;
    return {
      id: this.id, kind: this.kind, path: this.path, state: this.state, detail: this.detail, written: this.written,
      size: this.size, offset: this.offset, sha256: this.sha256, error: this.error, storage: this.storage,
      attempts: this.attempts, inFlight: stats ? stats.inFlight : null, granted: stats ? stats.granted : null,
      via: this.via || null, type: this.type, httpStatus: this.httpStatus,
    };
  }

  set(state, detail = "") {
    this.state = state;
    this.detail = detail;
    this.row.dataset.state = state;
    this.render();
    const active = transfers.some((t) => t.state === "receiving" || t.state === "sending");
    if (active && ticker === null) ticker = setInterval(() => transfers.forEach((t) => t.render()), 250);
    if (!active && ticker !== null) { clearInterval(ticker); ticker = null; }
  }

  progressed(bytes) {
    this.written += bytes;
    const now = performance.now();
    this.samples.push([now, this.written]);
    while (this.samples.length > 2 && now - this.samples[0][0] > 2000) this.samples.shift();
  }

  rate() {
    if (this.samples.length < 2) return 0;
    const [t0, b0] = this.samples[0], [t1, b1] = this.samples[this.samples.length - 1];
    return t1 > t0 ? ((b1 - b0) / (t1 - t0)) * 1000 : 0;
  }

  render() {
    const cells = this.row.cells;
    const what = this.type === "endpoint" ? `endpoint${this.httpStatus !== null ? ` · HTTP ${this.httpStatus}` : ""}` : this.type;
    cells[0].textContent = `${this.kind === "push" ? "⇡" : "⇣"} ${this.path}${what ? ` (${what})` : ""}`;
    this.row.dataset.type = this.type || "";
    cells[1].textContent = this.state;
    const bar = this.row.querySelector("progress");
    bar.max = this.size || 1;
    bar.value = this.state === "verified" ? bar.max : Math.min(this.written, bar.max);
    cells[2].querySelector(".bytes").textContent = this.size !== null ? `${formatSize(this.written)} of ${formatSize(this.size)}` : formatSize(this.written);
    let info = this.detail;
    if (this.state === "receiving" || this.state === "sending") {
      const rate = this.rate();
      const left = this.size !== null ? this.size - this.written : null;
      const parts = [`${(rate / 1e6).toFixed(1)} MB/s`];
      if (left !== null) parts.push(`ETA ${rate > 0 ? duration(left / rate) : "?"}`);
      const stats = this.stream && this.stream.stats;
      if (stats) parts.push(`${stats.inFlight} credits in flight (window ${stats.window ?? "?"})`);
      if (this.offset) parts.push(`resumed at ${formatSize(this.offset)}`);
      info = parts.join(" · ") + (this.detail ? ` · ${this.detail}` : "");
    }
    cells[3].textContent = info;
  }

  actions(buttons) {
    const cell = this.row.cells[4];
    cell.replaceChildren(...buttons.map(([label, handler]) => {
      const button = document.createElement("button");
      button.textContent = label;
      button.className = label.replace(/\W+/g, "-");
      button.onclick = () => handler().catch((error) => this.fail(error));
      return button;
    }));
  }

  fail(error) {
    const { state, reason, todo } = explain(error, this);
    this.error = reason;
    this.set(state, `${reason} — ${todo}`);
    const buttons = [["retry", () => this.start()]];
    if (this.storage === "opfs") buttons.push(["delete", () => this.remove()]);
    this.actions(buttons);
  }

  async start() {
    this.attempts++;
    this.error = null;
    this.controller = new AbortController();
    this.actions([["cancel", async () => this.controller.abort()]]);
    this.set("connecting");
    const started = performance.now();
    try {
      if (this.kind === "fetch") await this.fetch(this.controller.signal);
      else if (this.kind === "endpoint") await this.fetchEndpoint(this.controller.signal);
      else await this.push(this.controller.signal);
      this.actions(this.kind !== "push" && this.storage === "opfs" ? [["download", () => this.download()], ["delete", () => this.remove()]] : []);
    } catch (error) {
      this.fail(error);
    }
    if (this.options.report) await this.report((performance.now() - started) / 1000);
  }

  async report(seconds) {
    const done = this.state === "verified" || this.state === "received";
    const body = done
      ? { ok: true, path: this.path, bytes: this.written, sha256: this.sha256, seconds: Number(seconds.toFixed(3)) }
      : { ok: false, error: this.error || this.state, path: this.path };
    const hub = await current?.catch(() => null);
    Object.assign(body, {
      window: this.options.window ?? DEFAULT_WINDOW, resumedFrom: this.offset, storage: this.storage, attempt: this.attempts,
      stats: hub ? { ...hub.stats } : null, via: this.via || null, type: this.type, httpStatus: this.httpStatus,
    });
    try {
      const response = await fetch(`${HUB}/report`, {
        method: "POST",
        headers: { "Content-Type": "application/json", Authorization: `Bearer ${REPORT_TOKEN}` },
        body: JSON.stringify(body),
      });
      if (!response.ok) this.set(this.state, `${this.detail} (the hub refused the report: HTTP ${response.status})`);
    } catch (error) {
      this.set(this.state, `${this.detail} (the report could not be sent: ${error.message})`);
    }
  }

  // ---------------------------------------------------------------- fetch to disk

  async fetch(signal) {
    const hub = await hubConnection();
    this.via = hub.path;
    signal.throwIfAborted();
    if (this.options.handle) await this.fetchToPickedFile(hub, signal);
    else await this.fetchToStorage(hub, signal);
  }

  /** Into the origin-private file system, written and hashed by a worker (opfs-worker.js). */
  async fetchToStorage(hub, signal) {
    this.storage = "opfs";
    const name = storageName(this.path);
    const disk = new DiskWorker();
    try {
      this.set("connecting", "opening the partial copy");
      // with the hub's manifest, the storage worker checks each chunk before writing it, and a
      // resume keeps only the chunks of the partial copy that still match (opfs-worker.js)
      const manifest = await this.manifestOf(hub);
      const opened = await abortable(
        disk.call({ op: "open", name, resume: this.options.resume !== false, manifest, source: `the hub (${this.via})` }),
        signal,
      );
      this.offset = this.written = opened.offset;
      this.samples = [];
      const file = hub.fetch(this.path, { offset: opened.offset, sha256: opened.sha256, window: this.options.window ?? DEFAULT_WINDOW });
      this.stream = file;
      const first = await this.started(file, signal);
      if (manifest && first.manifest && first.manifest.sha256 !== JSON.parse(manifest).sha256) {
        await file.cancel().catch(() => {});
        throw new IntegrityError("the file changed on the hub since its manifest was read: fetch it again");
      }
      this.chunkVerified = Boolean(manifest);
      this.set("receiving", first.restart ? `started over: ${first.restart}` : "");
      disk.post({ op: "begin", restart: Boolean(first.restart), delay: this.options.delay || 0 });
      const reader = file.getReader();
      const cancel = () => reader.cancel().catch(() => {}); // CANCEL to the hub; the pending read ends
      signal.addEventListener("abort", cancel, { once: true });
      let failure = null;
      try {
        for (;;) {
          // asking for the next item grants the hub more credit: the last one is on disk by now
          const { done, value } = await reader.read();
          if (done) break;
          // the chunk's buffer moves to the worker (no copy); the next read waits until it is written
          const reply = await disk.call({ op: "chunk", data: value }, [value.buffer]);
          this.progressed(reply.written - this.written);
        }
      } catch (error) {
        failure = error;
        reader.cancel(error).catch(() => {}); // a disk failure stops the hub's stream too
      } finally {
        signal.removeEventListener("abort", cancel);
      }
      const outcome = failure ? "failed" : signal.aborted ? "cancelled" : "done";
      const result = await disk.call({ op: "end", outcome });
      this.written = result.written;
      if (failure) throw failure;
      if (outcome === "cancelled") throw new DOMException("the fetch was cancelled", "AbortError");
      this.set("verifying");
      const dir = await storageDir();
      await this.verify(file, result.sha256, () => dir.removeEntry(`${name}.part`).catch(() => {}));
      await dir.removeEntry(name).catch(() => {});
      const part = await dir.getFileHandle(`${name}.part`);
      await part.move(name);
      this.handle = await dir.getFileHandle(name);
      const resumed = this.offset ? ` (resumed at ${formatSize(this.offset)})` : "";
      const chunks = this.chunkVerified ? "each chunk and the " : "";
      this.set("verified", `${chunks}sha256 ${this.sha256.slice(0, 16)}… in this browser's storage${resumed} · via ${this.via}`);
    } finally {
      disk.terminate();
    }
  }

  /** Into a file the user picked (File System Access): written on this thread, in batches. */
  async fetchToPickedFile(hub, signal) {
    const handle = this.options.handle;
    this.storage = "picked";
    const writable = await handle.createWritable();
    const hash = new Sha256();
    this.offset = this.written = 0;
    this.samples = [];
    const file = hub.fetch(this.path, { window: this.options.window ?? DEFAULT_WINDOW });
    this.stream = file;
    let batch = [], batched = 0, closed = false;
    const flush = async () => {
      if (!batched) return;
      const data = batch.length === 1 ? batch[0] : new Blob(batch);
      const size = batched;
      batch = [];
      batched = 0;
      await writable.write(data);
      this.progressed(size);
    };
    const close = async () => { if (!closed) { closed = true; await flush(); await writable.close(); } };
    const sink = new WritableStream({
      async write(chunk) {
        hash.update(chunk);
        batch.push(chunk);
        batched += chunk.length;
        if (batched >= 1 << 20) await flush(); // one write per MiB: each write is a round trip to the browser
      },
      close,
      abort: () => close().catch(() => {}),
    }, new CountQueuingStrategy({ highWaterMark: 1 }));
    try {
      await this.started(file, signal);
    } catch (error) {
      await close().catch(() => {});
      throw error;
    }
    this.set("receiving");
    await file.pipeTo(sink, { signal });
    this.set("verifying");
    await this.verify(file, hash.hex(), async () => { if (handle.remove) await handle.remove().catch(() => {}); });
    this.set("verified", `sha256 ${this.sha256.slice(0, 16)}… saved as ${handle.name}`);
  }

  /**
   * An endpoint's response body into the origin-private file system (opfs-worker.js writes
   * and hashes it), pulled with demand: the next chunk is asked for once the last is on
   * disk. Nothing resumes (a response has no digest to resume against); the size is
   * checked against the Content-Length when the upstream sent one ("verified"), else the
   * row ends "received".
   */
  async fetchEndpoint(signal) {
    const hub = await hubConnection();
    this.via = hub.path;
    signal.throwIfAborted();
    this.storage = "opfs";
    const [, name, ...rest] = this.path.split("/");
    this.set("connecting", "asking the endpoint");
    const response = await hub.endpoint(name, `/${rest.join("/")}`, { window: this.options.window ?? DEFAULT_WINDOW, signal });
    this.httpStatus = response.status;
    this.stream = response.rxchannel;
    this.size = response.rxchannel.info.size ?? null;
    if (!response.ok) {
      const text = await response.text().catch(() => "");
      throw new EndpointStatusError(response.status, response.statusText, text.split("\n")[0].slice(0, 300));
    }
    const storage = storageName(this.path);
    const disk = new DiskWorker();
    try {
      await abortable(disk.call({ op: "open", name: storage, resume: false }), signal);
      this.offset = this.written = 0;
      this.samples = [];
      await this.checkRoom(this.size);
      this.set("receiving");
      disk.post({ op: "begin", restart: false, delay: this.options.delay || 0 });
      const reader = response.body.getReader();
      let failure = null;
      try {
        for (;;) {
          const { done, value } = await reader.read(); // asking for the next chunk grants the hub more credit
          if (done) break;
          const reply = await disk.call({ op: "chunk", data: value }, [value.buffer]);
          this.progressed(reply.written - this.written);
        }
      } catch (error) {
        failure = error;
        reader.cancel(error).catch(() => {});
      }
      const outcome = failure ? "failed" : signal.aborted ? "cancelled" : "done";
      const result = await disk.call({ op: "end", outcome });
      this.written = result.written;
      if (failure) throw failure;
      if (outcome === "cancelled") throw new DOMException("the fetch was cancelled", "AbortError");
      if (this.size !== null && this.written !== this.size) {
        throw new IntegrityError(`the response ended at ${formatSize(this.written)} of the ${formatSize(this.size)} announced`);
      }
      const dir = await storageDir();
      await dir.removeEntry(storage).catch(() => {});
      await (await dir.getFileHandle(`${storage}.part`)).move(storage);
      this.handle = await dir.getFileHandle(storage);
      this.sha256 = result.sha256;
      const checked = this.size !== null ? "size as announced" : "no size announced";
      this.set(this.size !== null ? "verified" : "received",
        `HTTP ${response.status} · ${checked} · sha256 ${this.sha256.slice(0, 16)}… in this browser's storage · via ${this.via}`);
    } finally {
      disk.terminate();
    }
  }

  /** The hub's manifest of the file (JSON text), or null from a hub that has none to give. */
  async manifestOf(hub) {
    try {
      const reply = await hub.request(`manifest/${this.path}`);
      return new TextDecoder().decode(reply.data);
    } catch (error) {
      if (error instanceof RemoteError) return null; // an older hub, or no such file: files/ says which
      throw error;
    }
  }

  /** The first item's information (size, offset, restart), once the room for the rest is checked. */
  async started(file, signal) {
    try {
      const first = await abortable(file.ready, signal);
      this.type = first.type ?? "file"; // a hub from before types were announced sends only files here
      this.size = first.size ?? null;
      if (first.restart) this.offset = this.written = 0;
      await this.checkRoom(this.size - this.written);
      return first;
    } catch (error) {
      await file.cancel().catch(() => {});
      throw error;
    }
  }

  async verify(file, digest, discard) {
    const expected = file.info.sha256;
    if (this.size !== null && this.written !== this.size) {
      throw new IntegrityError(`the stream ended at ${formatSize(this.written)} of ${formatSize(this.size)}`);
    }
    if (digest !== expected) {
      await discard();
      throw new IntegrityError(`SHA-256 mismatch: the hub announced ${expected}, the copy on disk is ${digest}; it was discarded`);
    }
    this.sha256 = digest;
  }

  async checkRoom(needed) {
    if (this.storage !== "opfs" || !navigator.storage || !navigator.storage.estimate || !(needed > 0)) return;
    const { quota, usage } = await navigator.storage.estimate();
    if (quota - usage < needed) {
      const error = new Error(`needs ${formatSize(needed)}, the browser allows ${formatSize(quota - usage)} more`);
      error.name = "QuotaExceededError";
      throw error;
    }
  }

  async download() {
    const handle = this.handle || (await (await storageDir()).getFileHandle(storageName(this.path)));
    const file = await handle.getFile(); // backed by the file on disk: no copy in memory
    const url = URL.createObjectURL(file);
    const link = document.createElement("a");
    link.href = url;
    link.download = this.path.split("/").pop();
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000); // the download has started long before
  }

  async remove() {
    const dir = await storageDir();
    const name = storageName(this.path);
    await dir.removeEntry(`${name}.part`).catch(() => {});
    if (this.state === "verified") await dir.removeEntry(name).catch(() => {});
    this.written = 0;
    this.actions([]);
    this.set(this.state, "deleted from this browser's storage");
  }

  // ---------------------------------------------------------------- push

  async push(signal) {
    const hub = await hubConnection();
    this.via = hub.path;
    signal.throwIfAborted();
    const blob = this.options.blob;
    this.size = blob.size;
    this.written = 0;
    this.samples = [];
    this.set("sending");
    const receipt = await hub.push(this.path, blob, { signal, onProgress: (sent) => this.progressed(sent - this.written) });
    this.sha256 = receipt.sha256;
    this.set("verified", `stored as inbox/${receipt.path} · sha256 ${receipt.sha256.slice(0, 16)}… matches`);
  }
}

/** The storage worker of one fetch (opfs-worker.js): one request at a time. */
class DiskWorker {
  constructor() {
    this.worker = new Worker(new URL("./opfs-worker.js", import.meta.url), { type: "module" });
    this.pending = null;
    this.worker.onmessage = ({ data }) => {
      const pending = this.pending;
      this.pending = null;
      if (!pending) return;
      if (data.op === "error") {
        const error = new Error(data.message);
        error.name = data.name;
        pending.reject(error);
      } else {
        pending.resolve(data);
      }
    };
    this.worker.onerror = (event) => {
      event.preventDefault();
      const pending = this.pending;
      this.pending = null;
      if (pending) pending.reject(new Error(`the storage worker failed: ${event.message}`));
    };
  }

  call(message, transfer = []) {
    return new Promise((resolve, reject) => {
      this.pending = { resolve, reject };
      this.worker.postMessage(message, transfer);
    });
  }

  post(message) { this.worker.postMessage(message); }

  terminate() {
    this.worker.terminate(); // releases its access handle, if a failure left one open
    if (this.pending) this.pending.reject(new DOMException("the fetch was cancelled", "AbortError"));
    this.pending = null;
  }
}

/** `promise`, or an AbortError as soon as `signal` aborts. */
function abortable(promise, signal) {
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(new DOMException("the fetch was cancelled", "AbortError"));
    if (signal.aborted) { onAbort(); return; }
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

function storageName(path) {
  return encodeURIComponent(path); // OPFS names cannot hold "/"
}

async function storageDir() {
  if (!navigator.storage || !navigator.storage.getDirectory) throw new Error("this browser has no origin-private file system");
  const root = await navigator.storage.getDirectory();
  return root.getDirectoryHandle("rxchannel", { create: true });
}

// ------------------------------------------------------------------ the page

function fetchFile(path, options = {}) {
  const transfer = new Transfer("fetch", path, options);
  transfer.done = transfer.start();
  return transfer;
}

function fetchEndpoint(path, options = {}) {
  const transfer = new Transfer("endpoint", path.startsWith("endpoints/") ? path : `endpoints/${path}`, options);
  transfer.done = transfer.start();
  return transfer;
}

function pushFile(name, blob, options = {}) {
  const transfer = new Transfer("push", name, { ...options, blob });
  transfer.done = transfer.start();
  return transfer;
}

async function saveAs(path) {
  const handle = await window.showSaveFilePicker({ suggestedName: path.split("/").pop() });
  return fetchFile(path, { handle });
}

async function showFiles() {
  const status = $("status");
  try {
    const hub = await hubConnection();
    status.className = "";
    status.textContent = `connected · via ${hub.path}`;
    const files = await hub.list();
    const rows = files.map(({ path, size }) => {
      const row = document.createElement("tr");
      row.dataset.path = path;
      row.innerHTML = `<td class="path"></td><td class="size"></td><td></td>`;
      row.cells[0].textContent = path;
      row.cells[1].textContent = formatSize(size);
      const fetchButton = document.createElement("button");
      fetchButton.textContent = "fetch";
      fetchButton.className = "fetch";
      fetchButton.onclick = () => fetchFile(path);
      row.cells[2].append(fetchButton);
      if (typeof window.showSaveFilePicker === "function") {
        const saveButton = document.createElement("button");
        saveButton.textContent = "save to…";
        saveButton.onclick = () => saveAs(path).catch((error) => {
          if (error.name !== "AbortError") { status.className = "bad"; status.textContent = `save to… failed: ${error.message}`; }
        });
        row.cells[2].append(saveButton);
      }
      return row;
    });
    $("files").replaceChildren(...rows);
    if (!files.length) $("files").innerHTML = `<tr><td colspan="3" class="muted">the hub shares no files</td></tr>`;
    $("send").disabled = false;
    showEndpoints(hub);
  } catch (error) {
    status.className = "bad";
    const todo = error instanceof ConnectError ? ` — ${connectTodo(error)}` : "";
    status.textContent = `cannot list the hub's files: ${error.message}${todo} `;
    const retry = document.createElement("button");
    retry.textContent = "retry";
    retry.onclick = () => { status.className = ""; status.textContent = "connecting to the hub…"; showFiles(); };
    status.append(retry);
  }
}

/** The hub's endpoint names (route "endpoints"), for the form that fetches one's response. */
async function showEndpoints(hub) {
  let names = [];
  try {
    names = JSON.parse(new TextDecoder().decode((await hub.request("endpoints")).data));
  } catch { /* a hub from before endpoints: none to show */ }
  if (!Array.isArray(names) || !names.length) return;
  $("endpoint-name").replaceChildren(...names.map((name) => Object.assign(document.createElement("option"), { textContent: name })));
  $("endpoints").hidden = false;
}

$("endpoint-fetch").onclick = () => {
  const path = $("endpoint-path").value.trim().replace(/^\/+/, "");
  fetchEndpoint(`${$("endpoint-name").value}/${path}`);
};

// The hub rendered its files into the page (a first paint that needs no connection): their
// fetch buttons work from the start; showFiles() refreshes the list over the connection.
for (const button of document.querySelectorAll("#files tr[data-path] button.fetch")) {
  button.onclick = () => fetchFile(button.closest("tr").dataset.path);
}

$("upload").onchange = () => { $("send").disabled = !$("upload").files.length; };
$("send").onclick = () => {
  const [file] = $("upload").files;
  if (file) pushFile(file.name, file);
};

/** For scripts driving the page (tests, benchmarks): start transfers and read their state. */
window.rxchannelPage = {
  fetchFile: (path, options) => fetchFile(path, options).id,
  /** Stream an endpoint's response body ("NAME/PATH" or "endpoints/NAME/PATH") to storage, as a row. */
  fetchEndpoint: (path, options) => fetchEndpoint(path, options).id,
  /** hub.endpoint() on the page's connection: a Response pulled with demand. */
  endpoint: async (name, path, init) => (await hubConnection()).endpoint(name, path, init),
  pushFile: (name, blob, options) => pushFile(name, blob, options).id,
  status: () => transfers.map((t) => t.status()),
  transfer: (id) => transfers[id - 1],
  connection: () => current,
};

/** The options a job named in the page's address runs with (?window=, ?delay=, ?report=1). */
function jobOptions() {
  const window_ = params.get("window") || String(DEFAULT_WINDOW);
  return {
    window: window_ === "auto" ? "auto" : Number(window_),
    delay: Number(params.get("delay") || 0),
    report: params.get("report") === "1",
  };
}
const endpointJob = params.get("endpoint");
if (endpointJob) fetchEndpoint(endpointJob, jobOptions());
const job = params.get("fetch");
if (job) fetchFile(job, jobOptions());
showFiles();
