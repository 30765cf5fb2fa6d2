"""The shared admission (issue 26): who is evicted when a cap is full, deadlines that shrink
as it fills, and the budget for messages half-sent. A clock the test moves; real loops only
where the sweep runs by itself."""

from __future__ import annotations

import asyncio
import logging

import pytest

from rxchannel.transports import ListenLimits
from rxchannel.transports.admission import ASKED, PROVEN, SILENT, Admission, ThrottledLog, Unfinished, shrunk


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make(clock: Clock, **kw: object) -> tuple[Admission, list[str]]:
    evicted: list[str] = []
    options: dict[str, object] = {"limit": 4, "per_key": 3, "grace": 0.0, "clock": clock} | kw
    admission = Admission("things", ThrottledLog(logging.getLogger("test.admission")), **options)  # type: ignore[arg-type]
    return admission, evicted


def test_deadlines_shrink_as_the_cap_fills() -> None:
    assert shrunk(60, 0.0, 2) == shrunk(60, 0.5, 2) == 60
    assert shrunk(60, 0.9, 2) == shrunk(60, 1.0, 2) == 2
    assert 2 < shrunk(60, 0.7, 2) < 60 and shrunk(60, 0.8, 2) < shrunk(60, 0.7, 2)
    assert shrunk(1.0, 0.95, 2) == 1.0  # never longer than the deadline itself


def test_a_newcomer_evicts_the_least_proven_oldest_from_the_heaviest_address_never_a_proven_one() -> None:
    clock = Clock()
    admission, evicted = make(clock)
    tickets = {}
    for name, key in [("a1", "A"), ("a2", "A"), ("b1", "B"), ("p", "P")]:
        tickets[name] = admission.admit(key, lambda _r, name=name: evicted.append(name))
        clock.now += 1
    tickets["p"].advance(PROVEN)  # type: ignore[union-attr]
    tickets["b1"].advance(ASKED)  # type: ignore[union-attr]
    # full: the silent ones go first, from A (two there), the oldest first
    c = admission.admit("C", lambda _r: evicted.append("C"))
    assert c is not None and evicted == ["a1"]
    clock.now += 1
    d = admission.admit("D", lambda _r: evicted.append("D"))  # A, C hold one silent each: the oldest
    assert evicted == ["a1", "a2"] and d is not None
    clock.now += 1
    c.advance(ASKED)
    d.advance(ASKED)  # now b1 (asked long ago), C and D (asked now) are the only unproven
    assert admission.admit("E", lambda _r: None) is not None
    assert evicted == ["a1", "a2", "b1"], evicted  # asked goes after silent, the oldest first; proven never
    for name in "FGH":
        admission.admit(name, lambda _r: None)
    assert "p" not in evicted and admission.evicted["full"] == 6 and admission.total == 4


def test_when_every_place_is_proven_a_newcomer_waits_in_the_headroom_and_an_idle_one_makes_room() -> None:
    clock = Clock()
    admission, evicted = make(clock, headroom=1, per_key=10)
    busy = {"old": True, "new": False}
    proven = []
    for name in ("old", "new", "x", "y"):
        ticket = admission.admit(name, lambda _r, name=name: evicted.append(name))
        assert ticket is not None
        ticket.idle = lambda name=name: not busy.get(name, True)
        ticket.advance(PROVEN)
        proven.append(ticket)
        clock.now += 1
    late = admission.admit("late", lambda _r: evicted.append("late"))
    assert late is not None and admission.total == 5  # in the headroom
    waiting = admission.admit("later", lambda _r: evicted.append("later"))  # the headroom's unproven one goes
    assert waiting is not None and evicted == ["late"]
    waiting.advance(PROVEN)  # proves itself: the idle one ("new") makes room, the busy ones stay
    assert evicted == ["late", "new"] and admission.total == 4 and admission.evicted["idle"] == 1
    for ticket in proven:
        ticket.idle = lambda: False
    assert admission.admit("x2", lambda _r: None) is not None  # into the headroom again
    assert admission.admit("x3", lambda _r: None) is not None  # evicts x2 (unproven)
    admission.holders and next(iter(reversed(admission.holders))).advance(PROVEN)
    assert admission.admit("x4", lambda _r: None) is None  # every place proven, none idle: refused
    assert "limit 4" in admission.last_refusal and admission.last_cap == "limit"


def test_unproven_holders_past_their_shrunk_deadline_are_evicted_by_the_sweep() -> None:
    clock = Clock()
    admission, evicted = make(clock, limit=10, per_key=10, deadlines={SILENT: (60.0, "sent nothing")}, floor=2.0)
    tickets = [admission.admit(f"k{i}", lambda _r, i=i: evicted.append(f"k{i}")) for i in range(9)]
    tickets[8].advance(PROVEN)  # type: ignore[union-attr]
    clock.now += 3
    admission.sweep()  # 90 % full: 2 s
    assert sorted(evicted) == [f"k{i}" for i in range(8)], "every silent one, none proven"
    assert admission.evicted["deadline"] == 8
    again = [admission.admit(f"m{i}", lambda _r, i=i: evicted.append(f"m{i}")) for i in range(2)]
    assert all(again)
    clock.now += 30
    admission.sweep()  # 30 % full: the whole 60 s
    assert not any(e.startswith("m") for e in evicted)
    admission.close()


async def test_the_sweep_runs_by_itself_while_unproven_holders_wait() -> None:
    admission = Admission(
        "things",
        ThrottledLog(logging.getLogger("test.admission")),
        limit=10,
        deadlines={SILENT: (60.0, "sent nothing")},
        floor=0.2,
    )
    gone = asyncio.Event()
    for i in range(9):
        admission.admit(f"k{i}", lambda _r: gone.set())
    await asyncio.wait_for(gone.wait(), 5)
    admission.close()


def test_per_key_cap_evicts_its_own_least_proven_or_refuses() -> None:
    clock = Clock()
    admission, evicted = make(clock, limit=100, per_key=2)
    first = admission.admit("A", lambda _r: evicted.append("first"))
    admission.admit("A", lambda _r: evicted.append("second"))
    assert admission.admit("A", lambda _r: None) is not None and evicted == ["first"]
    assert first is not None and first.gone
    strict, _ = make(clock, limit=100, per_key=1, same_key_evicts=False)
    strict.admit("A", lambda _r: None)
    assert strict.admit("A", lambda _r: None) is None and strict.last_cap == "key"


def test_evictions_and_refusals_are_logged_a_few_lines_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    admission, _ = make(clock, limit=1, per_key=1)
    with caplog.at_level(logging.WARNING, "test.admission"):
        for i in range(1000):
            admission.admit(f"k{i}", lambda _r: None)
    assert admission.evicted["full"] == 999
    assert len(caplog.records) <= 5


def test_unfinished_messages_past_the_budget_shed_the_unproven_stalled_one_never_a_proven_for_an_unproven() -> None:
    clock = Clock()
    admission, _ = make(clock, limit=10, per_key=10)
    dropped: list[str] = []
    budget = Unfinished(100, "messages", ThrottledLog(logging.getLogger("test.admission")), clock=clock)
    proven = admission.admit("P", lambda _r: None)
    assert proven is not None
    proven.advance(PROVEN)
    stalled, fresh = admission.admit("S", lambda _r: None), admission.admit("F", lambda _r: None)
    budget.update("proven", 60, proven, lambda: dropped.append("proven"))
    clock.now += 1
    budget.update("stalled", 30, stalled, lambda: dropped.append("stalled"))
    clock.now += 1
    budget.update("fresh", 30, fresh, lambda: dropped.append("fresh"))  # 120 > 100: the stalled unproven goes
    assert dropped == ["stalled"] and budget.total == 90
    budget.update("fresh", 50, fresh, lambda: dropped.append("fresh"))  # only the proven is left to shed: not it
    assert dropped == ["stalled", "fresh"] and budget.total == 60
    budget.forget("proven")
    assert budget.total == 0


def test_listen_limits_make_an_admission_with_their_deadlines() -> None:
    limits = ListenLimits(max_connections=64, header_timeout=30, setup_timeout=40, pressure_floor=1.5)
    admission = limits.admission("conns", ThrottledLog(logging.getLogger("test.admission")))
    assert admission.limit == 64 and admission.per_key == 32 and admission.headroom == 8
    assert admission.allowed(SILENT) == 30 and admission.allowed(ASKED) == 40 and admission.allowed(PROVEN) is None
    with pytest.raises(ValueError):
        ListenLimits(pressure_floor=0)
