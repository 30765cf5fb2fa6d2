"""ReactiveX facade and backpressure operators, over real peers (TCP, memory) where the wire is the point.

Tests named ``test_rule_*`` check the flow-control rules (docs/architecture.md, "Flow
control: two levels") through the Rx API.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import reactivex
from reactivex import operators as ops
from reactivex.subject import Subject

import rxchannel as rx
from rxchannel import reactive as rxc
from rxchannel.core import RequestNFrame, Role
from rxchannel.hub import Hub, HubLimits
from rxchannel.operators import (
    adaptive,
    limit_rate,
    on_backpressure_buffer,
    on_backpressure_drop,
    on_backpressure_latest,
    request_n,
    stop_and_wait,
    windowed,
)
from rxchannel.runtime import Peer
from rxchannel.transports import memory_pair
from tests.support import (
    Collect,
    ErrorCatcher,
    FrameTap,
    GuardedSource,
    eventually,
    make_file,
    run_in_virtual_time,
    serve_boom,
    serve_counter,
    settle,
)


@pytest.fixture
def peers(tcp_peers: tuple[Peer, Peer, rx.Router]) -> tuple[Peer, Peer, rx.Router]:
    return tcp_peers


def ints(items: list[Any]) -> list[int]:
    return [int(p.data) for p in items]


# ---------------------------------------------------------------- operators


@pytest.mark.parametrize(
    ("operator", "count", "ahead"),
    [(lambda: windowed(5), 200, 5), (stop_and_wait, 30, 1)],
    ids=["windowed-keeps-the-source-within-the-window", "stop-and-wait-has-one-item-in-flight"],
)
async def test_the_remote_source_runs_at_most_the_window_ahead(
    peers: Any, no_leaked_tasks: None, operator: Any, count: int, ahead: int
) -> None:
    client, server, router = peers
    source = serve_counter(router)
    obs = Collect()
    bounds: list[int] = []
    obs.on_item = lambda _item: bounds.append(source.pulled - len(obs.items))
    rxc.request_stream(client, "n", str(count).encode()).pipe(operator()).subscribe(obs)
    await obs.wait()
    assert ints(obs.items) == list(range(count))
    assert max(bounds) <= ahead, f"the source ran {max(bounds)} items ahead of a window of {ahead}"


async def test_limit_rate_sends_fewer_request_n_frames_than_windowed(peers: Any) -> None:
    client, server, router = peers
    serve_counter(router)
    frames: dict[str, int] = {}
    tap = FrameTap(client)
    for name, op in (("windowed", windowed(8, refill=1)), ("limit_rate", limit_rate(8, 2))):
        tap.frames.clear()
        obs = Collect()
        rxc.request_stream(client, "n", b"200").pipe(op).subscribe(obs)
        await obs.wait()
        assert len(obs.items) == 200
        frames[name] = sum(isinstance(f, RequestNFrame) for f in tap.decoded())
    assert frames["limit_rate"] * 3 <= frames["windowed"], frames


async def test_request_n_grants_exactly_what_demand_emits(peers: Any, no_leaked_tasks: None) -> None:
    client, server, router = peers
    source = GuardedSource(100)
    router.stream("n")(source)
    demand: Subject[int] = Subject()
    obs = Collect()
    subscription = rxc.request_stream(client, "n", b"").pipe(request_n(demand)).subscribe(obs)
    await asyncio.sleep(0)  # the subscription's pump starts
    assert client.connection.open_streams == 0, "nothing may be requested before demand"
    demand.on_next(3)
    await eventually(lambda: len(obs.items) == 3, what="3 items for a demand of 3")
    demand.on_next(2)
    await eventually(lambda: len(obs.items) == 5, what="2 more items")
    subscription.dispose()
    async with asyncio.timeout(5):
        await source.closed.wait()
    assert [int.from_bytes(p.data[:4], "big") for p in obs.items] == [0, 1, 2, 3, 4]
    # checked at every pull: never beyond the grant + 1 held item; and exactly 3 + 2 were granted
    assert source.violations == [] and source.max_granted == 5


async def test_rule_request_n_not_positive_is_an_error_for_the_subscriber(peers: Any) -> None:
    client, server, router = peers
    serve_counter(router)
    demand: Subject[int] = Subject()
    obs = Collect()
    rxc.request_stream(client, "n", b"10").pipe(request_n(demand)).subscribe(obs)
    demand.on_next(2)
    demand.on_next(0)
    await obs.wait()
    assert isinstance(obs.error, rx.LocalProtocolError) and "positive" in str(obs.error)


def test_adaptive_completes_and_grows_its_window_over_latency() -> None:
    """In virtual time: a 20 ms round trip and an instant consumer; the window must grow
    from 2 until the link, not the window, limits the rate."""

    async def main() -> tuple[int, int, float]:
        router = rx.Router()
        serve_counter(router)
        a, b = memory_pair(latency=0.01, bandwidth=2e6)  # 20 ms RTT, 2 MB/s
        server = Peer(b, Role.SERVER, router=router)
        client = Peer(a, Role.CLIENT)
        policy = rx.Adaptive(2)
        obs = Collect()
        start = asyncio.get_running_loop().time()
        rxc.request_stream(client, "n", b"3000").pipe(_with_policy(policy)).subscribe(obs)
        await obs.wait(600)
        elapsed = asyncio.get_running_loop().time() - start
        await client.close()
        await server.close()
        return len(obs.items), policy.window, elapsed

    items, window, elapsed = run_in_virtual_time(main)
    assert items == 3000
    # a window of 2 over a 20 ms round trip moves 100 items/s: 30 s for 3000; adaptive grows
    assert window > 8, f"the window stayed at {window} across a 20 ms round trip"
    assert elapsed < 3000 / 100 / 4, f"{elapsed:.2f} virtual seconds: the window barely grew"


def _with_policy(policy: Any) -> Any:
    """Like adaptive(), but hands back the one policy instance so the test can read it."""

    def apply(source: Any) -> Any:
        return source.with_demand(policy=lambda: policy)

    return apply


def test_operators_check_their_arguments_when_built() -> None:
    with pytest.raises(ValueError):
        windowed(0)
    with pytest.raises(ValueError):
        windowed(4, refill=5)
    with pytest.raises(ValueError):
        limit_rate(4, 4)
    with pytest.raises(ValueError):
        adaptive(0)
    with pytest.raises(ValueError):
        on_backpressure_buffer(-1)
    with pytest.raises(ValueError):
        on_backpressure_buffer(4, overflow="explode")
    with pytest.raises(TypeError):
        request_n(3)  # type: ignore[arg-type]


def test_demand_operators_refuse_sources_without_demand() -> None:
    with pytest.raises(TypeError, match="right after"):
        reactivex.of(1, 2).pipe(windowed(4))
    with pytest.raises(TypeError, match="overflow policy"):
        rxc.to_async_iterable(reactivex.of(1))


# ---------------------------------------------------------------- rules and standard operators


async def test_filter_between_stream_and_sink_does_not_leak_credit(peers: Any) -> None:
    client, server, router = peers
    serve_counter(router)
    obs = Collect()
    rxc.request_stream(client, "n", b"300").pipe(windowed(4), ops.filter(lambda p: int(p.data) % 100 == 99)).subscribe(
        obs
    )
    await obs.wait()  # with leaked credit the stream would stall after 4 items
    assert ints(obs.items) == [99, 199, 299]


async def test_take_cancels_upstream_across_the_wire_and_closes_the_file(tmp_path: Path) -> None:
    root = tmp_path / "root"
    make_file(root / "f.bin", 2_000_000, seed=1)
    hub = Hub(root, limits=HubLimits(chunk_size=16 * 1024))
    a, b = memory_pair()
    server = Peer(b, Role.SERVER, router=hub.router)
    client = Peer(a, Role.CLIENT)
    obs = Collect()
    rxc.request_stream(client, "files/f.bin").pipe(windowed(4), ops.take(3)).subscribe(obs)
    await obs.wait()
    assert len(obs.items) == 3
    await eventually(lambda: not hub.sources and not server.connection.open_streams, what="the hub closing the file")
    await client.close()
    await server.close()


async def test_rule_cancel_is_idempotent_and_nothing_arrives_after_dispose(peers: Any) -> None:
    client, server, router = peers
    source = serve_counter(router)
    obs = Collect()
    subscription = rxc.request_stream(client, "n", b"1000000").pipe(windowed(8)).subscribe(obs)
    await eventually(lambda: len(obs.items) >= 5, what="5 items")
    subscription.dispose()
    obs.closed = True  # from here on, any item is a failure recorded by the observer
    subscription.dispose()
    async with asyncio.timeout(5):
        await source.closed.wait()
    # the CANCEL reached the source; items that were in flight then are dropped on arrival
    await eventually(lambda: not server.peers or not any(p.connection.open_streams for p in server.peers))
    assert obs.after_close == [] and obs.terminals == []


async def test_errors_cross_the_wire_both_ways(peers: Any) -> None:
    client, server, router = peers

    serve_boom(router, "sensor unplugged")

    sink = ErrorCatcher()
    router.channel("sink")(sink)

    obs = Collect()
    rxc.request_stream(client, "boom").subscribe(obs)
    await obs.wait()
    assert [p.data for p in obs.items] == [b"1"]
    assert isinstance(obs.error, rx.RemoteError) and obs.error.message == "sensor unplugged"

    failing = reactivex.concat(reactivex.of(b"a"), reactivex.throw(rx.ApplicationError("local source failed")))
    source = failing.pipe(on_backpressure_buffer(4))
    obs2 = Collect()
    rxc.request_channel(client, "sink", source).subscribe(obs2)
    async with asyncio.timeout(5):
        error = await sink.error
    assert isinstance(error, rx.RemoteError) and "local source failed" in str(error)


async def test_request_response_observable(peers: Any) -> None:
    client, server, router = peers
    router.response("echo")(lambda request: request.data.upper())
    obs = Collect()
    rxc.request_response(client, "echo", b"hi").subscribe(obs)
    await obs.wait()
    assert [p.data for p in obs.items] == [b"HI"]


async def test_end_to_end_demand_with_standard_operators_in_the_middle(tmp_path: Path) -> None:
    """A slow sink three transforms away from a remote file: the hub reads within the window."""
    chunk, window = 8 * 1024, 4
    root = tmp_path / "root"
    make_file(root / "f.bin", 120 * chunk, seed=3)
    hub = Hub(root, limits=HubLimits(chunk_size=chunk))
    router_server = await rx.serve_tcp(hub.router)
    client = await rx.connect_tcp("127.0.0.1", router_server.port)
    consumed = 0
    violations: list[tuple[int, int]] = []

    def slow_sink(batch: list[int]) -> None:
        import time

        time.sleep(0.002)  # a CPU-heavy sink: on_next returns late

    def count(item: rx.Payload) -> rx.Payload:
        nonlocal consumed
        consumed += 1
        for source in hub.sources:
            read_chunks = -(-source.read_offset // chunk)
            if read_chunks > consumed + window + 1:
                violations.append((read_chunks, consumed))
        return item

    obs = Collect()
    rxc.request_stream(client, "files/f.bin").pipe(
        windowed(window),
        ops.map(count),
        ops.map(lambda p: len(p.data)),
        ops.filter(lambda n: n > 0),
        ops.scan(lambda acc, n: acc + n, 0),
        ops.buffer_with_count(5),
        ops.do_action(slow_sink),
    ).subscribe(obs)
    await obs.wait(30)
    assert obs.items[-1][-1] == 120 * chunk
    assert not violations, f"the hub read ahead of demand: {violations[:3]}"
    await client.close()
    await router_server.close()


# ---------------------------------------------------------------- hot sources


def test_on_backpressure_buffer_error_fails_loudly_when_full() -> None:
    async def main() -> Collect:
        hot: Subject[int] = Subject()
        demand: Subject[int] = Subject()
        obs = Collect()
        hot.pipe(on_backpressure_buffer(3), request_n(demand)).subscribe(obs)
        for i in range(3):
            hot.on_next(i)
        await settle()
        assert obs.items == [], "nothing is emitted without demand"
        hot.on_next(3)  # the fourth with nobody asking
        demand.on_next(10)
        await obs.wait()
        return obs

    obs = run_in_virtual_time(main)
    assert obs.items == [0, 1, 2]
    assert isinstance(obs.error, rxc.BufferOverflowError)


@pytest.mark.parametrize(
    "operator, expected",
    [
        (on_backpressure_buffer(2, "drop_oldest"), [0, 4, 5]),
        (on_backpressure_buffer(2, "drop_latest"), [0, 1, 2]),
        (on_backpressure_drop(), [0]),
        (on_backpressure_latest(), [0, 5]),
    ],
    ids=["drop_oldest", "drop_latest", "drop", "latest"],
)
def test_overflow_policies(operator: Any, expected: list[int]) -> None:
    async def main() -> list[int]:
        hot: Subject[int] = Subject()
        demand: Subject[int] = Subject()
        obs = Collect()
        hot.pipe(operator, request_n(demand)).subscribe(obs)
        await settle()
        demand.on_next(1)
        await settle()  # the pump is now waiting for an item
        for i in range(6):
            hot.on_next(i)
        await settle()
        demand.on_next(5)
        await settle()
        hot.on_completed()
        await obs.wait()
        return obs.items

    assert run_in_virtual_time(main) == expected


async def test_rx_file_sink_acks_drive_demand(peers: Any, tmp_path: Path) -> None:
    client, server, router = peers
    data = make_file(tmp_path / "src.bin", 300_000, seed=4)
    source = rxc.file_source(tmp_path / "src.bin", chunk_size=10_000)

    @router.channel("compress")
    async def compress(request: rx.Request) -> AsyncIterator[bytes]:
        assert request.inbound is not None
        compressor = zlib.compressobj()
        async for item in request.inbound:
            yield compressor.compress(item.data)
        yield compressor.flush()

    sink = rxc.RxFileSink(tmp_path / "out.z")
    replies = rxc.request_channel(client, "compress", source)
    replies.pipe(windowed(2, acks=sink.acks), ops.map(lambda p: p.data)).subscribe(sink)
    async with asyncio.timeout(20):
        await sink.done
    assert zlib.decompress((tmp_path / "out.z").read_bytes()) == data
    assert not (tmp_path / "out.z.part").exists()


def test_local_iterable_source_honours_acks_from_an_async_sink() -> None:
    async def main() -> None:
        acks: Subject[int] = Subject()
        pulled = 0

        def numbers() -> Any:
            nonlocal pulled
            for i in range(20):
                pulled += 1
                yield i

        obs = Collect()
        rxc.from_iterable(numbers()).pipe(windowed(3, acks=acks)).subscribe(obs)
        await settle()
        # one item is held beyond the grant, so the end is found without demand
        assert obs.items == [0, 1, 2] and pulled == 3 + 1, "no acknowledgement yet: the window is full"
        acks.on_next(2)
        await settle()
        assert obs.items == [0, 1, 2, 3, 4] and pulled == 5 + 1
        acked = 2
        while not obs.done.done():  # now the sink acknowledges every item it has "written"
            if acked < len(obs.items):
                acks.on_next(1)
                acked += 1
            await settle()
        await obs.wait()
        assert obs.items == list(range(20))

    run_in_virtual_time(main)


async def test_handlers_may_return_demand_observables_but_not_hot_ones(peers: Any, caplog: Any) -> None:
    client, server, router = peers
    router.stream("demand")(lambda request: rxc.from_iterable([b"a", b"b", b"c"]))
    router.stream("hot")(lambda request: reactivex.of(b"a", b"b"))
    assert [p.data async for p in client.request_stream("demand", window=1)] == [b"a", b"b", b"c"]
    with pytest.raises(rx.RemoteError, match="TypeError"):
        await client.request_stream("hot").collect()
    assert "Observable with no demand" in caplog.text


@pytest.mark.parametrize("kind", ["iterable", "async iterable", "hot"])
async def test_exact_demand_on_a_local_source_completes_without_more(kind: str) -> None:
    """request_n(N) on an N-item local source: N items and on_completed, no extra request (RS §2.9)."""
    count = 17
    hot: Subject[int] = Subject()
    if kind == "iterable":
        source: Any = rxc.from_iterable(range(count))
    elif kind == "async iterable":

        async def numbers() -> AsyncIterator[int]:
            for i in range(count):
                yield i

        source = rxc.from_async_iterable(numbers)
    else:
        source = hot.pipe(on_backpressure_buffer(count))
    demand: Subject[int] = Subject()
    obs = Collect()
    source.pipe(request_n(demand)).subscribe(obs)
    await asyncio.sleep(0)
    demand.on_next(count)
    if kind == "hot":
        for i in range(count):
            hot.on_next(i)
        hot.on_completed()
    await obs.wait()
    assert obs.items == list(range(count)) and obs.terminals == ["completed"]


async def test_a_finite_demand_observable_grants_what_it_emits_and_no_more() -> None:
    """A demand Observable that completes means "no more requests", not "stop": the items it
    granted still arrive (only a remote sink's demand ends the pipeline it drives)."""
    exact = Collect()
    rxc.from_iterable(range(3)).pipe(request_n(reactivex.of(3))).subscribe(exact)
    await exact.wait()
    assert exact.items == [0, 1, 2] and exact.terminals == ["completed"]
    partial = Collect()
    rxc.from_iterable(range(10)).pipe(request_n(reactivex.of(2, 3))).subscribe(partial)
    for _ in range(50):
        await asyncio.sleep(0)
    assert partial.items == [0, 1, 2, 3, 4] and partial.terminals == []
