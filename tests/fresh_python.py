"""What a fresh interpreter loads: for the tests that keep a module's imports light."""

from __future__ import annotations

import subprocess
import sys


def python_output(code: str) -> str:
    """What a fresh interpreter prints running ``code``."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout


def loaded_after(imports: str, *packages: str) -> list[str]:
    """Which of ``packages`` a fresh interpreter holds after ``import {imports}``."""
    return python_output(f"import sys, {imports}; print(*(p for p in {packages!r} if p in sys.modules))").split()
