"""Admission under pressure: one mechanism for everything a hub caps (connections, pending
WebRTC offers, relayed requests, file streams, whole-file buffers).

A full cap must not become the denial of service: the most trusted servers keep a holder
cheap until it proves itself and, when full, close the least-proven holder rather than
refuse the newcomer (HAProxy and nginx drop idle pre-request connections first). Here:

* every holder has a **rank**: :data:`SILENT` (connected, nothing complete received: no
  HTTP request, no SETUP; an offer answered whose peer has not been heard from),
  :data:`ASKED` (an HTTP request or a WebSocket upgrade received, an offer whose ICE
  checks arrived, but no SETUP yet) and :data:`PROVEN` (a SETUP accepted: with a secret,
  authenticated);
* when the cap (in all, or for one key: an address, a connection) is full, a newcomer
  **evicts** an unproven holder: the lowest rank first, then the key holding the most
  unproven ones, then the one that has waited longest. A proven holder is never evicted
  for an unproven newcomer;
* a few places beyond the cap (``headroom``) take a newcomer when every holder is proven
  (a flood of SETUPs that never request anything): once it proves itself, the oldest
  *idle* proven holder (no stream open for a while) makes room for it;
* unproven holders have **deadlines that shrink as the cap fills**: the full time up to
  half full, then shorter and shorter, down to ``floor`` seconds from 90 % full
  (:meth:`Admission.allowed`);
* each eviction and refusal is counted and logged through a :class:`ThrottledLog` (an
  attack must not become a log flood).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ASKED", "PROVEN", "SILENT", "Admission", "ThrottledLog", "Ticket", "Unfinished", "shrunk"]

#: connected, nothing complete received yet
SILENT = 0
#: a request received (an HTTP request, a WebSocket upgrade, ICE checks), not proven yet
ASKED = 1
#: proven: a SETUP accepted (authenticated when the hub has a secret)
PROVEN = 2

_RANKS = {SILENT: "silent", ASKED: "unproven", PROVEN: "proven"}


@dataclass(eq=False)
class ThrottledLog:
    """Logs at most ``burst`` messages per ``interval`` seconds, then says how many it held back."""

    logger: logging.Logger
    burst: int = field(default=5, kw_only=True)
    interval: float = field(default=10.0, kw_only=True)
    _window_start: float = field(default=0.0, init=False, repr=False)
    _count: int = field(default=0, init=False, repr=False)
    _held_back: int = field(default=0, init=False, repr=False)

    def warning(self, message: str, *args: object, **kwargs: Any) -> None:
        """Log ``message % args`` (``kwargs``: ``extra=`` and the like), unless over the rate."""
        now = time.monotonic()
        if now - self._window_start >= self.interval:
            if self._held_back:
                self.logger.warning("... and %d more like it in the last %.0f s", self._held_back, self.interval)
            self._window_start, self._count, self._held_back = now, 0, 0
        if self._count < self.burst:
            self._count += 1
            self.logger.warning(message, *args, **kwargs)
        else:
            self._held_back += 1


def shrunk(base: float, fill: float, floor: float) -> float:
    """A deadline of ``base`` seconds when the cap is ``fill`` full (0..1): ``base`` up to
    half full, then geometrically shorter, ``floor`` from 90 % on (never longer than ``base``)."""
    if base <= floor or fill <= 0.5:
        return base
    if fill >= 0.9:
        return floor
    return float(base * (floor / base) ** ((fill - 0.5) / 0.4))


class Ticket:
    """One holder in an :class:`Admission`: what it costs is counted until :meth:`leave`.

    Attributes:
        key: what the per-key cap counts (an address, a connection).
        rank: :data:`SILENT`, :data:`ASKED` or :data:`PROVEN`.
        since: when it reached its rank (the clock of its admission).
        idle: for a proven holder, says whether it may make room for a newer proven one
            (no stream open for a while); None: never.
    """

    __slots__ = ("_evict", "admission", "cause", "gone", "idle", "key", "rank", "since")

    def __init__(self, admission: Admission, key: str, rank: int, evict: Callable[[str], object], now: float):
        self.admission = admission
        self.key = key
        self.rank = rank
        self.since = now
        self._evict = evict
        self.idle: Callable[[], bool] | None = None
        self.gone = False
        #: why it was evicted, once it was: ``full`` (a newcomer took its place), ``deadline``, ``idle``
        self.cause = ""

    def advance(self, rank: int) -> None:
        """Raise this holder to ``rank`` (never lowers it); becoming proven over the cap makes
        an idle proven holder leave (see :class:`Admission`)."""
        if self.gone or rank <= self.rank:
            return
        self.admission._advance(self, rank)

    def rekey(self, key: str) -> None:
        """Count this holder under ``key`` from now on (a request relayed for a client: its address)."""
        if not self.gone and key != self.key:
            self.admission._rekey(self, key)

    def touch(self) -> None:
        """The holder made progress: its deadline counts from now."""
        self.since = self.admission.clock()

    def leave(self) -> None:
        """It is gone (closed, opened, finished): its place is free. Idempotent."""
        if not self.gone:
            self.admission._leave(self)

    def __repr__(self) -> str:
        return f"Ticket({self.key!r}, {_RANKS.get(self.rank, self.rank)})"


class Admission:
    """Counts holders in all and by key, admits newcomers by evicting the least proven, and
    enforces deadlines that shrink as it fills (see the module docstring).

    Args:
        what: what it counts, plural, for messages (``"TCP connections"``).
        log: where evictions and refusals are logged (throttled).
        limit: holders at once.
        per_key: holders at once for one key.
        headroom: places over ``limit`` for newcomers when every holder is proven.
        deadlines: for each unproven rank, (seconds it may stay at that rank when the
            admission is at most half full, what it failed to do, for the log): e.g.
            ``{SILENT: (60.0, "sent no request")}``.
        floor: what the deadlines shrink to at 90 % full.
        grace: seconds during which a newcomer is evicted only after every older holder of
            its rank (a burst of arrivals must not evict the connections that arrived a
            moment ago and are still sending their first request).
        limit_hint: how to raise ``limit`` (``": --max-connections"``), for refusals.
        key_name: what a key is (``address``, ``connection``), for refusals.
        same_key_evicts: a newcomer whose key is at ``per_key`` evicts that key's own
            least-proven holder (a NAT's workers are not locked out by one of them); when
            False it is refused (what it costs to admit one is worth keeping for others).
    """

    def __init__(
        self,
        what: str,
        log: ThrottledLog,
        *,
        limit: int,
        per_key: int | None = None,
        headroom: int = 0,
        deadlines: Mapping[int, tuple[float, str]] | None = None,
        floor: float = 2.0,
        grace: float = 0.25,
        limit_hint: str = "",
        key_name: str = "address",
        same_key_evicts: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ):
        if limit <= 0 or (per_key is not None and per_key <= 0) or headroom < 0:
            raise ValueError("limit and per_key must be positive, headroom not negative")
        self.what = what
        self.log = log
        self.limit = limit
        self.per_key = per_key if per_key is not None else limit
        self.headroom = headroom
        self.deadlines = dict(deadlines or {})
        self.floor = floor
        self.grace = grace
        self.limit_hint = limit_hint
        self.key_name = key_name
        self.same_key_evicts = same_key_evicts
        self.clock = clock
        self.holders: dict[Ticket, None] = {}  # in order of admission
        self.by_key: Counter[str] = Counter()
        self.refused = 0
        #: evictions by cause (``full``, ``deadline``, ``idle``, or the caller's own)
        self.evicted: Counter[str] = Counter()
        self.peak = 0
        #: why the last refused newcomer was refused (to tell it), and which cap: ``key`` or ``limit``
        self.last_refusal = ""
        self.last_cap = ""
        self._sweeper: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------------ reading

    @property
    def total(self) -> int:
        return len(self.holders)

    @property
    def fill(self) -> float:
        """How full the admission is: holders / limit."""
        return len(self.holders) / self.limit

    def allowed(self, rank: int) -> float | None:
        """Seconds a holder may now stay at ``rank`` (None: no deadline), shrunk by the fill."""
        deadline = self.deadlines.get(rank)
        return None if deadline is None else shrunk(deadline[0], self.fill, self.floor)

    # ------------------------------------------------------------------ admitting

    def admit(self, key: str | None, evict: Callable[[str], object], *, rank: int = SILENT) -> Ticket | None:
        """Count a newcomer in, evicting a less-proven holder when a cap is full; None when
        it is refused (:attr:`last_refusal` says why, and the refusal was logged, throttled).

        ``evict(reason)`` is called (once) if the holder is later made to leave: it must
        close what the holder holds; the ticket has left by then.
        """
        key = key or "?"
        if self.by_key[key] >= self.per_key:
            victim = self._victim(rank, same_key=key) if self.same_key_evicts else None
            if victim is None:
                self._refuse(
                    key,
                    f"{self.by_key[key]} {self.what} open from {key} (limit {self.per_key} per {self.key_name})",
                    "key",
                )
                return None
            self._evict(victim, "full", f"made room for a newer one from the same address ({self.what})")
        elif len(self.holders) >= self.limit:
            victim = self._victim(rank, newcomer=key)
            if victim is not None:
                self._evict(victim, "full", f"made room for a newcomer: {len(self.holders)} {self.what} open")
            elif len(self.holders) >= self.limit + self.headroom:
                total = len(self.holders)
                self._refuse(key, f"{total} {self.what} open (limit {self.limit}{self.limit_hint})", "limit")
                return None
        ticket = Ticket(self, key, rank, evict, self.clock())
        self.holders[ticket] = None
        self.by_key[key] += 1
        self.peak = max(self.peak, len(self.holders))
        self._arm()
        return ticket

    def _refuse(self, key: str, reason: str, cap: str) -> None:
        self.refused += 1
        self.last_refusal, self.last_cap = reason, cap
        self.log.warning("refused %s from %s: %s", self.what, key, reason)

    def _victim(
        self,
        rank: int,
        *,
        newcomer: str | None = None,
        same_key: str | None = None,
        proven_only: bool = False,
        besides: Ticket | None = None,
    ) -> Ticket | None:
        """Whom a newcomer of ``rank`` may displace: an unproven holder (lowest rank, then the
        key with the most unproven holders, then the oldest), or for a proven newcomer an
        idle proven one."""
        unproven = Counter(t.key for t in self.holders if t.rank < PROVEN)
        young = self.clock() - self.grace
        best: Ticket | None = None
        best_key: tuple[int, bool, int, float] | None = None
        for ticket in self.holders:
            if (same_key is not None and ticket.key != same_key) or ticket is besides:
                continue
            if proven_only and ticket.rank < PROVEN:
                continue
            if ticket.rank >= PROVEN and (rank < PROVEN or ticket.idle is None or not ticket.idle()):
                continue
            order = (ticket.rank, ticket.since > young, -unproven[ticket.key], ticket.since)
            if best_key is None or order < best_key:
                best, best_key = ticket, order
        return best

    def _evict(self, ticket: Ticket, cause: str, reason: str) -> None:
        self.evicted[cause] += 1
        ticket.cause = cause
        self._leave(ticket)
        self.log.warning("evicted one of the %s from %s (%s): %s", self.what, ticket.key, _RANKS[ticket.rank], reason)
        ticket._evict(reason)

    def _advance(self, ticket: Ticket, rank: int) -> None:
        ticket.rank = rank
        ticket.since = self.clock()
        # a newcomer that waited in the headroom proved itself: idle proven holders make room
        # until the cap holds again, so that the headroom is free for the next newcomers
        while rank >= PROVEN and len(self.holders) > self.limit:
            victim = self._victim(PROVEN, proven_only=True, besides=ticket)
            if victim is None:
                break
            self._evict(victim, "idle", f"made room for a newly proven one: {len(self.holders)} {self.what} open")

    def _rekey(self, ticket: Ticket, key: str) -> None:
        self.by_key[ticket.key] -= 1
        if not self.by_key[ticket.key]:
            del self.by_key[ticket.key]
        ticket.key = key
        self.by_key[key] += 1

    def _leave(self, ticket: Ticket) -> None:
        ticket.gone = True
        if self.holders.pop(ticket, 0) is None:
            self.by_key[ticket.key] -= 1
            if not self.by_key[ticket.key]:
                del self.by_key[ticket.key]

    def summary(self) -> str:
        """What it admitted under pressure: evictions by cause, refusals, the peak."""
        causes = ", ".join(f"{cause} {n}" for cause, n in sorted(self.evicted.items()))
        evicted = sum(self.evicted.values())
        return f"{self.what}: evicted {evicted} ({causes or 'none'}), refused {self.refused}, peak {self.peak}"

    # ------------------------------------------------------------------ deadlines

    def _arm(self) -> None:
        if self._sweeper is not None or not self.deadlines:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._sweeper = loop.call_later(self._tick(), self.sweep)

    def _tick(self) -> float:
        return max(0.05, min(0.5, self.floor / 4))

    def sweep(self) -> None:
        """Evict every unproven holder past its (shrunk) deadline; runs by itself while there are any."""
        self._sweeper = None
        now = self.clock()
        expired = []
        waiting = False
        for ticket in self.holders:
            deadline = self.deadlines.get(ticket.rank)
            if deadline is None:
                continue
            waiting = True
            if now - ticket.since > shrunk(deadline[0], self.fill, self.floor):
                expired.append((ticket, deadline[1]))
        for ticket, did_not in expired:
            if not ticket.gone:
                allowed = shrunk(self.deadlines[ticket.rank][0], self.fill, self.floor)
                self._evict(ticket, "deadline", f"{did_not} within {allowed:.1f} s ({self.fill:.0%} full)")
        if waiting:
            self._arm()

    def close(self) -> None:
        """Stop the deadline sweeps (the holders are closed by their owner)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None


@dataclass(eq=False)
class Unfinished:
    """What messages not yet received whole (a WebSocket message, a TCP frame half-sent) hold
    on all the connections of one listener, and who is dropped when they hold too much.

    A transport reports its connection's unfinished bytes after each read (:meth:`update`);
    when the sum passes ``limit``, connections are dropped until it is back under: first
    the unproven ones (by their :class:`Ticket`), then whoever has made no progress for the
    longest. A proven connection is never dropped for an unproven one: the sender that
    pushed the sum over is dropped instead.
    """

    limit: int
    what: str
    log: ThrottledLog = field(repr=False)
    clock: Callable[[], float] = field(default=time.monotonic, kw_only=True, repr=False)
    total: int = field(default=0, init=False)
    peak: int = field(default=0, init=False)
    dropped: int = field(default=0, init=False)
    #: owner -> [bytes, since (last growth), ticket, drop]
    _held: dict[object, list[Any]] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.limit <= 0:
            raise ValueError("limit must be positive")

    def update(self, owner: object, size: int, ticket: Ticket | None, drop: Callable[[], object]) -> None:
        """``owner``'s unfinished message now holds ``size`` bytes (0: none)."""
        entry = self._held.get(owner)
        if entry is None:
            if not size:
                return
            entry = self._held[owner] = [0, self.clock(), ticket, drop]
        self.total += size - entry[0]
        if size > entry[0]:
            entry[1] = self.clock()
        entry[0] = size
        if not size:
            del self._held[owner]
            return
        self.peak = max(self.peak, self.total)
        while self.total > self.limit:
            self._shed(owner)

    def _shed(self, pusher: object) -> None:
        def rank(entry: list[Any]) -> int:
            ticket = entry[2]
            return PROVEN if ticket is None else int(ticket.rank)

        victim = min(self._held, key=lambda owner: (rank(self._held[owner]), self._held[owner][1]))
        if rank(self._held[victim]) >= PROVEN and rank(self._held[pusher]) < PROVEN:
            victim = pusher
        size, _, ticket, drop = self._held.pop(victim)
        self.total -= size
        self.dropped += 1
        if ticket is not None:
            ticket.admission.evicted["unfinished"] += 1
        self.log.warning(
            "dropped a connection holding %d KiB of unfinished %s: they hold more than %d MiB in all",
            size >> 10,
            self.what,
            self.limit >> 20,
        )
        drop()

    def forget(self, owner: object) -> None:
        """``owner`` is gone: what it held is free."""
        entry = self._held.pop(owner, None)
        if entry is not None:
            self.total -= entry[0]
