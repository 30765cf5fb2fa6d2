"""The diagrams of the README and docs/, written as SVG by hand (no dependency).

    python docs/figures/diagrams.py            # rewrites docs/figures/*.svg
    python docs/figures/diagrams.py --check    # exit 1 if a committed file differs

The output is deterministic (no dates, no random ids), so ``tests/test_figures.py`` can
check that the committed SVGs are what this source draws.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from html import escape
from pathlib import Path

HERE = Path(__file__).resolve().parent

INK = "#222222"
MUTED = "#666666"
DATA = "#0b5cad"  # items going downstream
CREDIT = "#c25400"  # demand going upstream
BOX = "#f4f6f8"
NET = "#fff8e6"
FONT = 'font-family="DejaVu Sans, Helvetica, Arial, sans-serif"'


class Svg:
    """A few drawing primitives; :meth:`text` keeps every element in one place."""

    def __init__(self, width: int, height: int, title: str):
        self.width, self.height = width, height
        self.parts = [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
            f"<title>{escape(title)}</title>",
            "<defs>",
            *(
                f'<marker id="arrow-{name}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
                f'markerHeight="7" orient="auto-start-reverse">'
                f'<path d="M 0 0 L 10 5 L 0 10 z" fill="{color}"/></marker>'
                for name, color in (("data", DATA), ("credit", CREDIT), ("ink", INK))
            ),
            "</defs>",
            f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
        ]

    def box(self, x: int, y: int, w: int, h: int, lines: list[str], *, fill: str = BOX, dashed: bool = False) -> None:
        dash = ' stroke-dasharray="6 4"' if dashed else ""
        self.parts.append(f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="8" fill="{fill}" stroke="{INK}"{dash}/>')
        top = y + h / 2 - (len(lines) - 1) * 9
        for i, line in enumerate(lines):
            weight = ' font-weight="bold"' if i == 0 else ""
            color = INK if i == 0 else MUTED
            size = 14 if i == 0 else 12
            self.text(x + w / 2, top + i * 18 + 5, line, size=size, color=color, extra=weight)

    def text(
        self,
        x: float,
        y: float,
        text: str,
        *,
        size: int = 12,
        color: str = INK,
        anchor: str = "middle",
        extra: str = "",
    ) -> None:
        self.parts.append(
            f'<text x="{x:g}" y="{y:g}" {FONT} font-size="{size}" fill="{color}" text-anchor="{anchor}"{extra}>'
            f"{escape(text)}</text>"
        )

    def arrow(self, x1: float, y1: float, x2: float, y2: float, *, kind: str = "ink", dashed: bool = False) -> None:
        color = {"data": DATA, "credit": CREDIT, "ink": INK}[kind]
        dash = ' stroke-dasharray="5 4"' if dashed else ""
        self.parts.append(
            f'<line x1="{x1:g}" y1="{y1:g}" x2="{x2:g}" y2="{y2:g}" stroke="{color}" stroke-width="2"{dash} '
            f'marker-end="url(#arrow-{kind})"/>'
        )

    def render(self) -> str:
        return "\n".join([*self.parts, "</svg>", ""])


def demand_path() -> str:
    """Sink → credit → wire → source: demand goes up, data comes down, and nothing runs ahead."""
    svg = Svg(1000, 360, "The demand path: the sink's demand crosses the wire as credit; the source reads only that")
    headline = "Demand travels from the sink back to the source; data comes only as far as it was asked for"
    svg.text(500, 28, headline, size=15)
    svg.box(20, 95, 180, 100, ["source", "a file on the hub's disk,", "an iterable, an Observable"])
    svg.box(240, 95, 200, 100, ["sender (hub)", "sends at most the credit,", "then waits for the transport"])
    svg.box(560, 95, 200, 100, ["receiver (worker)", "keeps n items in flight,", "grants more as they are used"])
    svg.box(800, 95, 180, 100, ["sink", "disk, an Rx Observer,", "an async for loop, a pipe"])
    svg.parts.append(
        f'<rect x="460" y="70" width="80" height="150" rx="8" fill="{NET}" stroke="{INK}" stroke-dasharray="6 4"/>'
    )
    svg.text(500, 62, "the wire", size=13, extra=' font-weight="bold"')
    svg.text(500, 242, "RSocket over TCP, WebSocket or a WebRTC DataChannel", size=11, color=MUTED)
    for x1, x2, label in ((200, 240, "read"), (440, 560, "PAYLOAD"), (760, 800, "item")):  # data, downstream
        svg.arrow(x1, 120, x2, 120, kind="data")
        svg.text((x1 + x2) / 2, 111, label, size=11, color=DATA)
    for x1, x2, label in ((800, 760, "used"), (560, 440, "REQUEST_N(n)"), (240, 200, "pull")):  # demand, upstream
        svg.arrow(x1, 170, x2, 170, kind="credit")
        svg.text((x1 + x2) / 2, 189, label, size=11, color=CREDIT)
    steps = [
        "1  the sink is done with an item: written to disk, on_next returned, the loop asked for the next",
        "2  the receiver grants that credit back: one REQUEST_N for what was used",
        "3  the sender may send that many more, and pulls exactly that many from its source",
    ]
    for i, step in enumerate(steps):
        svg.text(20, 284 + i * 22, step, size=12, anchor="start")
    svg.text(980, 284, "items downstream", size=12, color=DATA, anchor="end")
    svg.text(980, 306, "demand upstream", size=12, color=CREDIT, anchor="end")
    return svg.render()


def deployment() -> str:
    """Three ways a worker reaches a hub: directly, through a rendezvous, through TURN."""
    svg = Svg(960, 360, "Deployment shapes: direct, through a rendezvous, relayed by TURN")
    panels = [
        (
            0,
            "direct",
            ["the hub has an address", "workers can reach (LAN,", "public IP, a forwarded port)"],
        ),
        (
            320,
            "rendezvous",
            ["the hub has no open port:", "it dials out and registers;", "signaling is relayed, data is not"],
        ),
        (
            640,
            "TURN",
            ["both behind NAT (symmetric,", "carrier-grade): the data", "goes through a relay"],
        ),
    ]
    for x, name, notes in panels:
        svg.parts.append(f'<rect x="{x + 8}" y="8" width="304" height="344" rx="10" fill="none" stroke="#d0d4d8"/>')
        svg.text(x + 160, 34, name, size=16, extra=' font-weight="bold"')
        for i, note in enumerate(notes):
            svg.text(x + 160, 56 + i * 16, note, size=12, color=MUTED)
    # direct: worker -> hub
    svg.box(30, 140, 110, 60, ["worker", "rxchannel fetch"])
    svg.box(180, 140, 110, 60, ["hub", "rxchannel serve"])
    svg.arrow(140, 160, 180, 160, kind="credit")
    svg.arrow(180, 182, 140, 182, kind="data")
    svg.text(160, 236, "http://HUB:8765", size=12)
    svg.text(160, 256, "direct WebSocket if it opens,", size=11, color=MUTED)
    svg.text(160, 272, "else WebRTC (--via auto)", size=11, color=MUTED)
    svg.text(160, 312, "the simplest shape: one port", size=11, color=MUTED)
    svg.text(160, 328, "(TCP 8765; UDP for WebRTC)", size=11, color=MUTED)
    # rendezvous: hub dials out, worker dials the rendezvous, data peer to peer
    svg.box(420, 110, 120, 50, ["rendezvous", "public address"], fill=NET)
    svg.box(345, 240, 100, 56, ["worker"])
    svg.box(515, 240, 100, 56, ["hub", "no open port"])
    svg.arrow(565, 240, 505, 162, kind="ink", dashed=True)
    svg.arrow(395, 240, 455, 162, kind="ink", dashed=True)
    svg.arrow(445, 262, 515, 262, kind="credit")
    svg.arrow(515, 280, 445, 280, kind="data")
    svg.text(480, 200, "offers and", size=11, color=MUTED)
    svg.text(480, 214, "answers", size=11, color=MUTED)
    svg.text(560, 210, "registers NAME", size=11, color=MUTED, anchor="start")
    svg.text(480, 318, "data: WebRTC, worker to hub", size=11, color=MUTED)
    svg.text(480, 336, "dial http://RDV:8700/hubs/NAME", size=11)
    # TURN: both behind NAT, data relayed
    svg.box(740, 110, 120, 50, ["TURN (coturn)", "public address"], fill=NET)
    svg.box(665, 240, 100, 56, ["worker", "behind NAT"])
    svg.box(835, 240, 100, 56, ["hub", "behind NAT"])
    svg.arrow(745, 240, 780, 162, kind="credit")
    svg.arrow(795, 162, 760, 240, kind="data")
    svg.arrow(885, 240, 850, 162, kind="data")
    svg.arrow(835, 162, 870, 240, kind="credit")
    svg.text(800, 318, "--turn-url / --turn-secret on the hub:", size=11, color=MUTED)
    svg.text(800, 336, "workers get minted credentials", size=11, color=MUTED)
    svg.text(800, 228, "relayed", size=11, color=MUTED)
    return svg.render()


FIGURES: dict[str, Callable[[], str]] = {
    "demand-path.svg": demand_path,
    "deployment.svg": deployment,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed files instead of writing")
    parser.add_argument("--out", type=Path, default=HERE, help="where to write (default: docs/figures)")
    args = parser.parse_args(argv)
    stale = []
    for name, draw in FIGURES.items():
        target = args.out / name
        drawn = draw()
        if args.check:
            if not target.exists() or target.read_text(encoding="utf-8") != drawn:
                stale.append(name)
        else:
            target.write_text(drawn, encoding="utf-8")
    if stale:
        print(f"out of date: {', '.join(stale)} (run: python docs/figures/diagrams.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
