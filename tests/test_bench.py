"""Benchmarks run end to end in their quick mode (figures are printed, never asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"


def test_placement_benchmark_quick_run():
    """bench/placement.py --quick places tasks and prints its rate and the baseline ratio."""
    proc = subprocess.run([sys.executable, str(BENCH / "placement.py"), "--quick"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "placements/s" in proc.stdout and "full-scan baseline" in proc.stdout
    placed = int(proc.stdout.split("(")[1].split(" placed")[0])
    assert placed > 0
