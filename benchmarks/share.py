"""One file to N workers: ``files/`` (a read per worker) vs ``share/`` (one shared read).

A hub process (``Hub`` over TCP) and N workers (N connections from this process, each
``fetch_file``, verified; ``shared=True`` for ``share/``) fetch one file at once, for
N = 1, 4, 8, the two routes alternating in one run. Per run: the bytes the hub read
from the file (read() calls: the page cache serves most, so this counts reads, not
device I/O), the bytes the hub's transports sent (egress: the same for both routes,
every worker gets the whole file), and the time for all N to finish.

    python -m benchmarks.share [--size 16MiB] [--rounds 3] [--workers 1,4,8] [--json] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ._procs import first_line
from ._report import add_row, add_run_options, median, print_table

MIB = 1 << 20


async def serve(root: str, join_window: float) -> None:
    """The hub process: prints its URL, serves until stdin closes. ``stats`` reports its counters."""
    import rxchannel as rxc
    from rxchannel.hub import Hub, HubLimits

    hub = Hub(root, limits=HubLimits(share_join_window=join_window))
    egress = [0]

    @hub.router.response("stats")
    def stats(request: rxc.Request) -> bytes:
        return json.dumps(
            {"bytes_read": hub.bytes_read, "files_opened": hub.files_opened, "egress": egress[0]}
        ).encode()

    server = await rxc.serve(hub.router, transport="tcp")
    accept = server.accept

    def counting_accept(transport: Any) -> Any:  # count what each connection writes
        write = transport.write

        def counted(frames: list[bytes]) -> None:
            egress[0] += sum(len(f) for f in frames)
            write(frames)

        transport.write = counted
        return accept(transport)

    server.accept = counting_accept  # type: ignore[method-assign]
    print(server.url, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await server.close()
    hub.close()


async def one_run(url: str, n: int, route: str, out_dir: Path, size: int) -> dict[str, Any]:
    import rxchannel as rxc
    from rxchannel.files import fetch_file

    peers = [await rxc.connect(url) for _ in range(n)]
    control = await rxc.connect(url)
    try:
        before = json.loads((await control.request_response("stats")).data)
        start = time.perf_counter()
        results = await asyncio.gather(
            *(
                fetch_file(p, "f.bin", out_dir / f"w{i}.bin", window=32, shared=route == "share")
                for i, p in enumerate(peers)
            )
        )
        seconds = time.perf_counter() - start
        after = json.loads((await control.request_response("stats")).data)
    finally:
        for peer in [*peers, control]:
            await peer.close()
    assert all(r.size == size for r in results) and len({r.sha256 for r in results}) == 1
    shared = sum(r.shared for r in results)
    return {
        "seconds": seconds,
        "read": after["bytes_read"] - before["bytes_read"],
        "opened": after["files_opened"] - before["files_opened"],
        "egress": after["egress"] - before["egress"],
        "shared_fraction": shared / (n * size),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="16MiB")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", default="1,4,8")
    parser.add_argument("--join-window", type=float, default=0.2)
    add_run_options(parser)
    parser.add_argument("--serve", metavar="ROOT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        asyncio.run(serve(args.serve, args.join_window))
        return 0
    from rxchannel.cli.units import parse_size

    size = parse_size(args.size) // (4 if args.quick else 1)
    rounds = 1 if args.quick else args.rounds
    counts = [int(n) for n in args.workers.split(",")]
    scratch = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
    with tempfile.TemporaryDirectory() as root_dir, tempfile.TemporaryDirectory(dir=scratch) as out_root:
        (Path(root_dir) / "f.bin").write_bytes(os.urandom(size))
        hub = subprocess_hub(root_dir, args.join_window)
        try:
            url = first_line(hub)
            samples: dict[tuple[int, str], list[dict[str, Any]]] = {}
            for _ in range(rounds):
                for n in counts:
                    for route in ("files", "share"):  # alternating, same run
                        out_dir = Path(out_root) / f"{route}{n}"
                        out_dir.mkdir()
                        samples.setdefault((n, route), []).append(asyncio.run(one_run(url, n, route, out_dir, size)))
                        shutil.rmtree(out_dir)
        finally:
            assert hub.stdin is not None
            hub.stdin.close()
            hub.wait(timeout=30)
    rows: list[dict[str, Any]] = []
    for (n, route), runs in samples.items():
        row = {
            "bench": "share",
            "route": route,
            "workers": n,
            "file_mib": size / MIB,
            "read_mib": median([r["read"] / MIB for r in runs]),
            "files_opened": median([r["opened"] for r in runs]),
            "egress_mib": median([r["egress"] / MIB for r in runs]),
            "seconds": median([r["seconds"] for r in runs]),
            "aggregate_mb_s": median([n * size / r["seconds"] / 1e6 for r in runs]),
            "shared_fraction": median([r["shared_fraction"] for r in runs]),
            "rounds": len(runs),
        }
        add_row(rows, row, args.json)
    if not args.json:
        print_table(
            f"One {size / MIB:g} MiB file to N workers over TCP: files/ vs share/, "
            f"median of {rounds} alternating rounds",
            ["N", "route", "hub read MiB", "opens", "hub egress MiB", "seconds", "aggregate MB/s", "shared"],
            [
                [
                    r["workers"],
                    f"{r['route']}/",
                    r["read_mib"],
                    int(r["files_opened"]),
                    r["egress_mib"],
                    r["seconds"],
                    r["aggregate_mb_s"],
                    f"{r['shared_fraction']:.0%}",
                ]
                for r in rows
            ],
        )
    return 0


def subprocess_hub(root: str, join_window: float) -> Any:
    import subprocess

    return subprocess.Popen(
        [sys.executable, "-m", "benchmarks.share", "--serve", root, "--join-window", str(join_window)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


if __name__ == "__main__":
    sys.exit(main())
