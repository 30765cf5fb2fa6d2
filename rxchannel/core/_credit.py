"""Credit, one small object per direction of a stream (Protocol.md "Flow Control").

Credits count items, as Reactive Streams does. Demand adds up and saturates at 2^31-1,
which then means "unbounded" for the rest of the stream.

* :class:`SendCredit` — what the peer granted us for the direction we send on; sending
  without it is refused (STYLE: refuse, don't buffer; waiting belongs to the runtime).
* :class:`InboundDemand` — the one demand engine for a direction we receive on: what we
  granted, what arrived, what the application took and finished with, and when to grant
  more (its :class:`~._policies.ReplenishPolicy`). The connection uses it for remote
  streams, the ReactiveX facade for local sources, and the browser client is checked
  against vectors generated from it, so every facade behaves the same.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from ._errors import LocalProtocolError
from ._frames import MAX_REQUEST_N

__all__ = ["InboundDemand", "ReplenishPolicy", "SendCredit", "check_request_n"]


def check_request_n(n: int) -> int:
    """Validate a local ``request(n)``; returns it capped at 2^31-1.

    Raises:
        LocalProtocolError: ``n`` is not a positive integer (Reactive Streams §3.9).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        raise LocalProtocolError(f"request(n) needs a positive integer, got {n!r} (Reactive Streams rule 3.9)")
    return min(n, MAX_REQUEST_N)


class SendCredit:
    """Credit the peer granted us for one outbound direction.

    ``available`` never goes below zero: :meth:`used` refuses instead.
    """

    __slots__ = ("available", "sent", "unbounded")

    def __init__(self, initial: int = 0):
        self.available = 0
        self.sent = 0
        self.unbounded = False
        if initial:
            self.granted(initial)

    def granted(self, n: int) -> None:
        """The peer sent REQUEST_N (or the initial n of a request)."""
        if self.unbounded:
            return
        self.available = min(MAX_REQUEST_N, self.available + n)
        if self.available == MAX_REQUEST_N:
            self.unbounded = True

    def take(self) -> int:
        """One item is about to be sent, if there is credit: returns the credit left (2^31-1 once
        unbounded), or -1 (and nothing used) when there is none."""
        if self.unbounded:
            self.sent += 1
            return MAX_REQUEST_N
        if self.available <= 0:
            return -1
        self.available -= 1
        self.sent += 1
        return self.available

    def __repr__(self) -> str:
        avail = "unbounded" if self.unbounded else self.available
        return f"SendCredit(available={avail}, sent={self.sent})"


class ReplenishPolicy(Protocol):
    """Decides how much demand to signal for one inbound direction (see ``_policies``)."""

    def initial(self) -> int:
        """The demand sent with the request (REQUEST_STREAM/REQUEST_CHANNEL initial n); may be 0."""

    def demand(self, state: InboundDemand, now: float) -> int:
        """Called after items are acknowledged; returns how many more to grant now (0 for none)."""

    # Optional: ``quiet() -> int``: while ``in_flight`` is above it, :meth:`demand` would grant
    # nothing (-1: never grants). Lets the engine skip the call on most items.


def _quiet(policy: ReplenishPolicy | None) -> int:
    if policy is None:
        return -1
    quiet = getattr(policy, "quiet", None)  # optional: a policy without it is always asked
    return int(quiet()) if quiet is not None else 1 << 62


class InboundDemand:
    """Demand for one direction we receive on.

    An item is *outstanding* from the grant until it arrives, *waiting* until the
    application pulls it, and *unacked* until the application is done with it. The policy
    bounds ``in_flight`` (their sum). With ``auto_ack`` (the default) an item is done when
    the application asks for the next one (:meth:`wants_next`); otherwise the
    application acknowledges with :meth:`ack` (an asynchronous sink, once it has written).

    Every verb that may grant more returns how many to grant *now* (0 for none): the
    connection sends it as REQUEST_N, a local source simply allows that many more pulls.
    Once the direction has ended (:meth:`end`), every verb is a no-op returning 0: late
    acknowledgements are harmless (Reactive Streams §3.6).

    ``rtt`` is the shortest observed time from a grant made while nothing was in flight to
    the arrival of the first item it allowed: a round trip through the peer, measured
    with the ``now`` the caller passes (the core reads no clock).
    """

    __slots__ = (
        "_probe",
        "_quiet",
        "acked_total",
        "auto_ack",
        "ended",
        "granted_total",
        "on_grant",
        "outstanding",
        "policy",
        "quiet_left",
        "received_bytes",
        "received_total",
        "rtt",
        "unacked",
        "unbounded",
        "untold",
        "waiting",
    )

    def __init__(self, policy: ReplenishPolicy | None = None, *, auto_ack: bool = True):
        self.policy = policy
        self.auto_ack = auto_ack
        self.outstanding = 0
        self.waiting = 0
        self.unacked = 0
        self.granted_total = 0
        self.received_total = 0
        self.received_bytes = 0
        self.acked_total = 0
        self.unbounded = False
        self.ended = False
        self.rtt: float | None = None
        self._probe: tuple[float, int] | None = None
        self._quiet = _quiet(policy)
        #: where a grant goes besides the verb's return value: a connection queues REQUEST_N
        #: for it (set once the request that carried the initial demand is out)
        self.on_grant: Callable[[int], object] | None = None
        #: consumer takes (:meth:`take_one`) that cannot let the policy grant, left to make,
        #: and those made and not yet accounted (one step, :meth:`took`, with the next verb)
        self.quiet_left = 0
        self.untold = 0

    @property
    def in_flight(self) -> int:
        """Granted items the application has not finished with (what a window bounds)."""
        self.settle()
        return self.outstanding + self.waiting + self.unacked

    @property
    def can_receive(self) -> bool:
        """An item may arrive (be taken from a local source) now."""
        return self.unbounded or self.outstanding > 0

    # ------------------------------------------------------------ verbs

    def start(self, now: float) -> int:
        """The initial grant: the policy's ``initial()`` (0 without a policy)."""
        return self._grant(self.policy.initial(), now) if self.policy is not None else 0

    def request(self, n: int, now: float) -> int:
        """The application grants ``n`` more by hand.

        Raises:
            LocalProtocolError: ``n`` is not positive (Reactive Streams §3.9), checked
                even after the end.
        """
        n = check_request_n(n)
        self.settle()
        return 0 if self.ended else self._grant(n, now)

    def received(self, size: int, now: float) -> bool:
        """An item of ``size`` bytes arrived. False (and nothing counted) when it had no credit."""
        if self.ended:
            return True
        if not self.unbounded:
            if self.outstanding <= 0:
                return False
            self.outstanding -= 1
        self.waiting += 1
        self.received_total += 1
        self.received_bytes += size
        probe = self._probe
        if probe is not None and self.received_total >= probe[1]:
            sample = now - probe[0]
            self.rtt = sample if self.rtt is None else min(self.rtt, sample)
            self._probe = None
        return True

    def wants_next(self, now: float) -> int:
        """The application asks for the next item; with ``auto_ack`` it is done with those it took."""
        self.settle()
        if self.auto_ack and self.unacked and not self.ended:
            return self.ack(self.unacked, now)
        return 0

    def pulled(self) -> None:
        """The application took a waiting item."""
        if not self.ended and self.waiting:
            self.waiting -= 1
            self.unacked += 1

    def take_next(self, now: float) -> int:
        """:meth:`wants_next` then :meth:`pulled` in one step: the application takes a waiting item."""
        granted = self.wants_next(now) if self.auto_ack and self.unacked else 0
        if not self.ended and self.waiting:
            self.waiting -= 1
            self.unacked += 1
        return granted

    def take_one(self, now: float) -> int:
        """The consumer takes one item already delivered (``async for``'s step): with auto-ack
        the ones it took before are done. Returns the grant it made (0 mostly).

        The per-item cost of a stream: a take that cannot let the policy grant (counted by
        :meth:`quiet_takes`) only moves two counters; they are accounted in one step with
        the next take that can, or the next verb (:meth:`settle`). Same grants, at the
        same takes, as telling each one.
        """
        if self.quiet_left:
            self.quiet_left -= 1
            self.untold += 1
            return 0
        self.settle()
        granted = self.take_next(now)
        self.quiet_left = self.quiet_takes()
        return granted

    def settle(self) -> None:
        """Account the quiet takes not told yet (every verb does this first)."""
        if self.untold:
            told, self.untold, self.quiet_left = self.untold, 0, 0
            self.took(told)

    def quiet_takes(self) -> int:
        """How many of the waiting items the application may take next (auto-ack) without any
        of those takes letting the policy grant more.

        Such takes may be told later in one step (:meth:`took`) with the same outcome as
        telling each: demand changes only when a take acknowledges enough for the policy to
        grant, and the take that may do so is never among them. This is what keeps the
        per-item cost of ``async for`` low; a policy without ``quiet()`` gets 0 (every take
        is told, as it may measure each one).
        """
        if not self.auto_ack or self.ended or self.unbounded:
            return 0
        # the k-th take from here leaves outstanding + waiting - (k - 1) in flight once it has
        # acknowledged what was taken before it; the policy is asked only at or under _quiet
        quiet = self.outstanding + self.waiting - self._quiet
        return quiet if quiet < self.waiting else self.waiting

    def took(self, n: int) -> None:
        """``n`` takes of :meth:`quiet_takes` happened: account them (each acknowledges what
        was taken before it, with auto-ack, and takes one waiting item)."""
        if n <= 0 or self.ended:
            return
        acked = self.unacked + n - 1
        self.unacked = 1
        self.waiting -= n
        self.acked_total += acked

    def ack(self, n: int, now: float) -> int:
        """The application is done with ``n`` items it took.

        Raises:
            LocalProtocolError: more than were taken and not yet acknowledged.
        """
        self.settle()
        if self.ended:
            return 0
        if not 0 < n <= self.unacked:
            raise LocalProtocolError(f"ack({n}) but {self.unacked} taken item(s) are unacknowledged")
        return self._acked(n, now)

    def take(self, limit: int, now: float) -> int:
        """A local source's step (no wire, so items arrive as they are taken): with auto-ack, the
        items taken before are done; then up to ``limit`` more are taken, as many as the demand
        allows. Returns how many (0: none may be taken now). Accounting a whole batch at once
        keeps the per-item cost of a synchronous pipeline low; the in-flight bound is the same.
        """
        if self.ended:
            return 0
        if self.auto_ack and self.unacked:
            self._acked(self.unacked, now)
        if self.unbounded:
            taken = limit
        else:
            taken = min(limit, self.outstanding)
            self.outstanding -= taken
        self.unacked += taken
        self.received_total += taken
        return taken

    def _acked(self, n: int, now: float) -> int:
        self.unacked -= n
        self.acked_total += n
        if self.outstanding + self.waiting + self.unacked > self._quiet:
            return 0  # the policy would grant nothing yet: skip asking it
        assert self.policy is not None
        more = self.policy.demand(self, now)
        if more <= 0:
            return 0
        granted = self._grant(more, now)
        self._quiet = _quiet(self.policy)
        return granted

    def end(self) -> None:
        """The direction is over (completed, failed or cancelled): nothing more is granted."""
        self.settle()
        self.ended = True

    # ------------------------------------------------------------ ledger

    def _grant(self, n: int, now: float) -> int:
        if self.unbounded or n <= 0:
            return 0
        if self.outstanding == 0 and self._probe is None:
            self._probe = (now, self.received_total + 1)
        n = min(n, MAX_REQUEST_N - self.outstanding)
        self.outstanding += n
        self.granted_total += n
        if self.outstanding >= MAX_REQUEST_N:
            self.unbounded = True
        if self.on_grant is not None:
            self.on_grant(n)
        return n

    def __repr__(self) -> str:
        out = "unbounded" if self.unbounded else self.outstanding
        return f"InboundDemand(outstanding={out}, waiting={self.waiting}, unacked={self.unacked})"
