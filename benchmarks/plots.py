"""The benchmark results as plots: SVG written by hand (no plotting dependency), from the JSON
lines ``python -m benchmarks --record FILE`` keeps.

    python -m benchmarks.plots docs/figures/bench-results.jsonl    # rewrites docs/figures/bench-*.svg

Each plot is drawn from the records of one benchmark, when the file has some; the output
depends on the records only (no dates), so a test can check the committed plots are what
the committed results draw.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Sequence
from html import escape
from pathlib import Path
from typing import Any

Record = dict[str, Any]

COLORS = ["#0b5cad", "#c25400", "#2e7d32", "#6a1b9a", "#00838f", "#8d6e63"]
FONT = 'font-family="DejaVu Sans, Helvetica, Arial, sans-serif"'
WIDTH, HEIGHT = 760, 380
LEFT, RIGHT, TOP, BOTTOM = 80, 24, 56, 92


def _fmt(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _nice_max(value: float) -> float:
    """A round axis maximum at or above ``value``."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power:
            return float(step * power)
    return 10.0 * power


class _Chart:
    def __init__(self, title: str, y_label: str):
        self.parts = [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
            f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}">',
            f"<title>{escape(title)}</title>",
            f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>',
            self._text(WIDTH / 2, 26, title, size=15, weight="bold"),
            self._text(18, TOP + (HEIGHT - TOP - BOTTOM) / 2, y_label, size=12, rotate=True),
        ]

    @staticmethod
    def _text(
        x: float, y: float, text: str, *, size: int = 11, anchor: str = "middle", color: str = "#222222",
        weight: str = "normal", rotate: bool = False,
    ) -> str:  # fmt: skip
        turn = f' transform="rotate(-90 {x:.1f} {y:.1f})"' if rotate else ""
        bold = ' font-weight="bold"' if weight == "bold" else ""
        return (
            f'<text x="{x:.1f}" y="{y:.1f}" {FONT} font-size="{size}" fill="{color}" '
            f'text-anchor="{anchor}"{bold}{turn}>{escape(text)}</text>'
        )

    def y_axis(self, top: float) -> Callable[[float], float]:
        plot_h = HEIGHT - TOP - BOTTOM

        def y(value: float) -> float:
            return TOP + plot_h - plot_h * value / top

        for i in range(6):
            value = top * i / 5
            self.parts.append(
                f'<line x1="{LEFT}" y1="{y(value):.1f}" x2="{WIDTH - RIGHT}" y2="{y(value):.1f}" stroke="#e4e4e4"/>'
            )
            self.parts.append(self._text(LEFT - 6, y(value) + 4, _fmt(value), anchor="end", color="#555555"))
        self.parts.append(
            f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{HEIGHT - BOTTOM}" stroke="#222222"/>'
            f'<line x1="{LEFT}" y1="{HEIGHT - BOTTOM}" x2="{WIDTH - RIGHT}" y2="{HEIGHT - BOTTOM}" stroke="#222222"/>'
        )
        return y

    def legend(self, names: Sequence[str]) -> None:
        x = LEFT
        for i, name in enumerate(names):
            color = COLORS[i % len(COLORS)]
            self.parts.append(f'<rect x="{x}" y="{HEIGHT - 26}" width="12" height="12" fill="{color}"/>')
            self.parts.append(self._text(x + 18, HEIGHT - 16, name, anchor="start"))
            x += 30 + 7 * len(name)

    def note(self, text: str) -> None:
        self.parts.append(self._text(WIDTH / 2, 44, text, size=11, color="#666666"))

    def render(self) -> str:
        return "\n".join([*self.parts, "</svg>", ""])


def bar_chart(
    title: str, y_label: str, groups: Sequence[str], series: Sequence[tuple[str, Sequence[float]]], note: str = ""
) -> str:
    """Grouped bars: one group per label, one bar per series in each."""
    chart = _Chart(title, y_label)
    if note:
        chart.note(note)
    top = _nice_max(max((v for _, values in series for v in values), default=1.0))
    y = chart.y_axis(top)
    plot_w = WIDTH - LEFT - RIGHT
    group_w = plot_w / max(1, len(groups))
    bar_w = min(48.0, group_w * 0.8 / max(1, len(series)))
    for g, group in enumerate(groups):
        first = LEFT + g * group_w + (group_w - bar_w * len(series)) / 2
        for s, (_, values) in enumerate(series):
            value = values[g]
            x = first + s * bar_w
            chart.parts.append(
                f'<rect x="{x:.1f}" y="{y(value):.1f}" width="{bar_w - 3:.1f}" height="{y(0) - y(value):.1f}" '
                f'fill="{COLORS[s % len(COLORS)]}"/>'
            )
            chart.parts.append(chart._text(x + (bar_w - 3) / 2, y(value) - 4, _fmt(value), size=10))
        chart.parts.append(chart._text(LEFT + (g + 0.5) * group_w, HEIGHT - BOTTOM + 18, group, size=11))
    chart.legend([name for name, _ in series])
    return chart.render()


def line_chart(
    title: str,
    x_label: str,
    y_label: str,
    series: Sequence[tuple[str, Sequence[tuple[float, float]]]],
    note: str = "",
) -> str:
    """Lines over a shared x axis (time, usually)."""
    chart = _Chart(title, y_label)
    if note:
        chart.note(note)
    x_top = max((x for _, points in series for x, _ in points), default=1.0) or 1.0
    top = _nice_max(max((v for _, points in series for _, v in points), default=1.0))
    y = chart.y_axis(top)
    plot_w = WIDTH - LEFT - RIGHT

    def x(value: float) -> float:
        return LEFT + plot_w * value / x_top

    for i in range(6):
        value = x_top * i / 5
        chart.parts.append(chart._text(x(value), HEIGHT - BOTTOM + 18, _fmt(value), color="#555555"))
    chart.parts.append(chart._text(LEFT + plot_w / 2, HEIGHT - BOTTOM + 40, x_label, size=12))
    for s, (_, points) in enumerate(series):
        path = " ".join(f"{x(px):.1f},{y(py):.1f}" for px, py in points)
        dash = ' stroke-dasharray="6 4"' if s % 2 else ""
        chart.parts.append(
            f'<polyline points="{path}" fill="none" stroke="{COLORS[s % len(COLORS)]}" stroke-width="2"{dash}/>'
        )
    chart.legend([name for name, _ in series])
    return chart.render()


# ------------------------------------------------------------------ one plot per benchmark


def _of(records: Sequence[Record], suite: str) -> list[Record]:
    return [r for r in records if r.get("suite") == suite]


def plot_slow_worker(records: Sequence[Record]) -> str | None:
    found = _of(records, "slow")
    if not found:
        return None
    run = found[-1]
    mib = 1 << 20
    samples = run["samples"]
    return line_chart(
        f"A worker consuming {run['rate_mb_s']:g} MB/s: the hub reads only what it asked for",
        "seconds",
        "MiB",
        [
            ("hub: bytes read from the file", [(t, read / mib) for t, read, _ in samples]),
            ("worker: bytes consumed", [(t, used / mib) for t, _, used in samples]),
        ],
        note=f"window {run['window']} x {run['chunk'] >> 10} KiB; the hub was at most "
        f"{run['max_lead_bytes'] / mib:.2f} MiB ahead (window + 1 chunk: {run['bound_bytes'] / mib:.2f} MiB)",
    )


def plot_adaptive(records: Sequence[Record]) -> str | None:
    found = _of(records, "adaptive")
    if not found:
        return None
    latencies = sorted({r["one_way_ms"] for r in found})
    policies = list(dict.fromkeys(r["policy"] for r in found))
    value = {(r["one_way_ms"], r["policy"]): r["steady_mb_s"] for r in found}
    return bar_chart(
        "Fixed windows vs adaptive over an emulated path",
        "steady MB/s",
        [f"{ms:g} ms one way" for ms in latencies],
        [(policy, [value.get((ms, policy), 0.0) for ms in latencies]) for policy in policies],
        note=f"memory transport capped at {found[0]['cap_mb_s']:g} MB/s; adaptive is not told the latency",
    )


def plot_tcp(records: Sequence[Record]) -> str | None:
    found = _of(records, "tcp")
    if not found:
        return None
    rows = [r for r in found if "rxchannel_items_s" in r]
    if not rows:
        return None
    groups = [f"{r['payload'] >> 10} KiB, w{r['window']}, {r['loop']}" for r in rows]
    return bar_chart(
        "Request-stream over TCP: rxchannel vs rsocket-py",
        "thousand items/s",
        groups,
        [
            ("rxchannel", [r["rxchannel_items_s"] / 1000 for r in rows]),
            ("rsocket-py", [r["rsocket-py_items_s"] / 1000 for r in rows]),
        ],
        note="two processes on TCP loopback, the same window and refill points",
    )


def plot_share(records: Sequence[Record]) -> str | None:
    found = _of(records, "share")
    if not found:
        return None
    workers = sorted({r["workers"] for r in found})
    read = {(r["workers"], r["route"]): r["read_mib"] for r in found}
    return bar_chart(
        "One file to N workers: what the hub reads",
        "MiB read from the file",
        [f"{n} worker(s)" for n in workers],
        [(f"{route}/", [read.get((n, route), 0.0) for n in workers]) for route in ("files", "share")],
        note=f"a {found[0]['file_mib']:g} MiB file; every worker gets all of it either way",
    )


def plot_datachannel(records: Sequence[Record]) -> str | None:
    rows = [r for r in _of(records, "datachannel") if "rxchannel_mb_s" in r and "raw_aiortc_mb_s" in r]
    if not rows:
        return None
    return bar_chart(
        "WebRTC DataChannel: rxchannel fetch vs raw aiortc",
        "MB/s",
        [f"{r.get('chunk', 0) >> 10} KiB, {r.get('loop', '')}" for r in rows],
        [("rxchannel", [r["rxchannel_mb_s"] for r in rows]), ("raw aiortc", [r["raw_aiortc_mb_s"] for r in rows])],
    )


def plot_paths(records: Sequence[Record]) -> str | None:
    rows = _of(records, "paths")
    if not rows:
        return None
    return bar_chart(
        "A fetch per path and WebRTC stack",
        "MB/s",
        [f"{r['site']}: {r['row']}" for r in rows],
        [("MB/s", [r["mb_per_s"] for r in rows])],
    )


PLOTS: dict[str, Callable[[Sequence[Record]], str | None]] = {
    "bench-slow-worker.svg": plot_slow_worker,
    "bench-adaptive.svg": plot_adaptive,
    "bench-tcp.svg": plot_tcp,
    "bench-share.svg": plot_share,
    "bench-datachannel.svg": plot_datachannel,
    "bench-paths.svg": plot_paths,
}


def read_records(path: Path) -> list[Record]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def draw(records: Sequence[Record]) -> dict[str, str]:
    """Every plot the records allow, by file name."""
    drawn = {}
    for name, plot in PLOTS.items():
        svg = plot(records)
        if svg is not None:
            drawn[name] = svg
    return drawn


def write_plots(results: Path, out: Path) -> list[Path]:
    written = []
    for name, svg in draw(read_records(results)).items():
        target = out / name
        target.write_text(svg, encoding="utf-8")
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    results = Path(args[0]) if args else Path("docs/figures/bench-results.jsonl")
    out = Path(args[1]) if len(args) > 1 else results.parent
    for path in write_plots(results, out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
