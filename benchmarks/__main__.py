"""Run every benchmark: ``python -m benchmarks [--json] [--quick]``."""

from __future__ import annotations

import sys

from . import tcp_throughput

if __name__ == "__main__":
    sys.exit(tcp_throughput.main(sys.argv[1:]))
