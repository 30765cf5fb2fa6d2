// The send queue of one DataChannel: frames go out in the order they were queued, and the
// channel's own buffer never grows past a high-water mark (docs/architecture.md, "Flow control: two levels", level 2).
//
// Only the queue's single writer ever waits for "bufferedamountlow": any number of callers
// may send concurrently without replacing each other's wake-up (the old client assigned
// onbufferedamountlow per waiter, so earlier waiters were never woken and their frames
// lost or reordered). send() returns a promise that never rejects: true once the frames
// are handed to the channel, false if the queue closed first. A failing channel.send()
// is reported once, through onError.

export class SendQueue {
  constructor(channel, { highWater = 1 << 20, lowWater = 256 << 10, onError = () => {} } = {}) {
    if (!(lowWater <= highWater)) throw new RangeError("lowWater must not exceed highWater");
    this.channel = channel;
    this.highWater = highWater;
    this.onError = onError;
    this.closed = false;
    this._items = [];
    this._running = false;
    this._wake = null;
    channel.bufferedAmountLowThreshold = lowWater;
    this._onLow = () => this._wakeUp();
    channel.addEventListener("bufferedamountlow", this._onLow);
  }

  /** Frames waiting for room in the channel. */
  get queued() {
    return this._items.reduce((n, item) => n + item.frames.length, 0);
  }

  /** Queue one frame or the frames of one item (kept together). Resolves true once sent, false if closed first. */
  send(frames) {
    if (!Array.isArray(frames)) frames = [frames];
    if (this.closed) return Promise.resolve(false);
    return new Promise((resolve) => {
      this._items.push({ frames, resolve });
      if (!this._running) this._run();
    });
  }

  /** Stop: frames not yet sent are dropped and their senders get false. Idempotent. */
  close() {
    if (this.closed) return;
    this.closed = true;
    this.channel.removeEventListener("bufferedamountlow", this._onLow);
    for (const item of this._items.splice(0)) item.resolve(false);
    this._wakeUp();
  }

  _wakeUp() {
    const wake = this._wake;
    this._wake = null;
    if (wake) wake();
  }

  async _run() {
    this._running = true;
    try {
      while (this._items.length && !this.closed) {
        if (this.channel.readyState === "closing" || this.channel.readyState === "closed") {
          this.close(); // nothing will drain any more: the connection reports the close itself
          return;
        }
        if (this.channel.bufferedAmount > this.highWater) {
          // the channel fires bufferedamountlow when its buffer falls to the threshold; a
          // slow re-check covers a channel that closes (or an event lost) meanwhile
          await new Promise((resolve) => {
            const timer = setTimeout(() => this._wakeUp(), 1000);
            this._wake = () => { clearTimeout(timer); resolve(); };
          });
          continue;
        }
        const item = this._items.shift();
        try {
          for (const frame of item.frames) this.channel.send(frame);
        } catch (error) {
          item.resolve(false);
          this.close();
          this.onError(error);
          return;
        }
        item.resolve(true);
      }
    } finally {
      this._running = false;
    }
  }
}
