"""A userspace link emulator: an Ethernet bridge between two interfaces with delay, loss and a rate cap.

This kernel has no ``netem``, so a namespace in the middle of a link runs this instead:
it reads every frame arriving on one interface with an ``AF_PACKET`` socket and writes it
to the other after the emulated delay, unless it is lost or over the rate (then it waits
in a bounded queue, as in a router; a full queue drops, as a router's does).

    python -m tests.linkemu IFACE_A IFACE_B [--delay-ms 20] [--loss 0.01] [--rate-mbit 50]
        [--queue-ms 200] [--seed N]

Both interfaces must be up and carry no address (the hosts on either side share one
subnet, as if the emulator were a switch). It prints ``ready`` once both sockets are
open and runs until SIGTERM. Each direction is shaped on its own.
"""

from __future__ import annotations

import argparse
import heapq
import random
import select
import signal
import socket
import sys
import threading
import time

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4


class Direction:
    """One direction of the link: frames from ``rx`` go out on ``tx`` after delay/loss/rate."""

    def __init__(self, rx: socket.socket, tx: socket.socket, args: argparse.Namespace, rng: random.Random):
        self.rx, self.tx = rx, tx
        self.delay = args.delay_ms / 1000
        self.loss = args.loss
        self.rate = args.rate_mbit * 1e6 / 8 if args.rate_mbit else None  # bytes per second
        self.queue_limit = args.queue_ms / 1000
        self.rng = rng
        self.heap: list[tuple[float, int, bytes]] = []
        self.next_free = 0.0  # when the rate-limited line is free again
        self.seq = 0
        self.lock = threading.Condition()
        self.stats = {"frames": 0, "lost": 0, "dropped": 0}

    def receive_forever(self, stop: threading.Event) -> None:
        while not stop.is_set():
            ready, _, _ = select.select([self.rx], [], [], 0.2)
            if not ready:
                continue
            frame, address = self.rx.recvfrom(65536)
            if address[2] == PACKET_OUTGOING:
                continue  # our own writes on this interface
            self.stats["frames"] += 1
            if self.loss and self.rng.random() < self.loss:
                self.stats["lost"] += 1
                continue
            now = time.monotonic()
            depart = now
            if self.rate:
                start = max(now, self.next_free)
                if start - now > self.queue_limit:
                    self.stats["dropped"] += 1  # the queue is full: tail drop
                    continue
                self.next_free = start + len(frame) / self.rate
                depart = self.next_free
            with self.lock:
                self.seq += 1
                heapq.heappush(self.heap, (depart + self.delay, self.seq, frame))
                self.lock.notify()

    def send_forever(self, stop: threading.Event) -> None:
        while not stop.is_set():
            with self.lock:
                while not self.heap and not stop.is_set():
                    self.lock.wait(0.2)
                if not self.heap:
                    continue
                due = self.heap[0][0]
                wait = due - time.monotonic()
                if wait > 0:
                    self.lock.wait(wait)
                    continue
                _, _, frame = heapq.heappop(self.heap)
            try:
                self.tx.send(frame)
            except OSError:
                self.stats["dropped"] += 1


def open_raw(iface: str) -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((iface, 0))
    return sock


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("iface_a")
    parser.add_argument("iface_b")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="one-way delay, each direction")
    parser.add_argument("--loss", type=float, default=0.0, help="probability a frame is lost")
    parser.add_argument("--rate-mbit", type=float, default=0.0, help="line rate, each direction (0: unlimited)")
    parser.add_argument("--queue-ms", type=float, default=200.0, help="most queueing delay before tail drop")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    a, b = open_raw(args.iface_a), open_raw(args.iface_b)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    directions = [Direction(a, b, args, rng), Direction(b, a, args, rng)]
    threads = [
        threading.Thread(target=fn, args=(stop,), daemon=True)
        for d in directions
        for fn in (d.receive_forever, d.send_forever)
    ]
    for thread in threads:
        thread.start()
    print("ready", flush=True)
    try:
        while not stop.is_set():
            stop.wait(0.5)
    except KeyboardInterrupt:
        stop.set()
    for direction, name in zip(directions, ("a->b", "b->a"), strict=True):
        print(name, direction.stats, file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
