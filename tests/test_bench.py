"""Benchmarks run end to end in their quick mode (figures are printed, never asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


def test_placement_benchmark_quick_run():
    """bench/placement.py --quick places tasks and prints its rate and the baseline ratio."""
    proc = subprocess.run([sys.executable, str(BENCH / "placement.py"), "--quick"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "placements/s" in proc.stdout and "full-scan baseline" in proc.stdout
    placed = int(proc.stdout.split("(")[1].split(" placed")[0])
    assert placed > 0


@pytest.mark.parametrize(
    "script, expected, figure",
    [
        ("scale.py", ["brokerctl (commit -> all running)", "SDK thread pool", "false alarms"], "ratio "),
        ("batch.py", ["brokerctl (commit -> Job Complete)", "SDK thread pool", "false alarms"], "ratio "),
        ("gitops.py", ["brokerctl controller --watch", "SDK create+start"], "ratio "),
    ],
)
def test_benchmark_on_the_test_daemons_quick_run(clean_hosts, script, expected, figure):
    """A benchmark's quick mode runs brokerctl and its baseline on the test daemons and prints the ratio."""
    addresses = ",".join(h.address for h in clean_hosts)
    proc = subprocess.run([sys.executable, str(BENCH / script), "--quick", "--addresses", addresses],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert all(text in proc.stdout for text in expected), proc.stdout
    assert float(proc.stdout.split(figure)[1].split()[0].rstrip(",")) > 0


def test_failover_benchmark_quick_run(docker_hosts):
    """bench/failover.py --quick faults its own daemons (SIGKILL, SIGSTOP) and reports failover and fencing."""
    first_ip = docker_hosts[0].ip.rsplit(".", 1)[1]
    proc = subprocess.run([sys.executable, str(BENCH / "failover.py"), "--quick", "--first-ip", str(int(first_ip) + 40)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SIGKILL: brokerctl" in proc.stdout and "SIGSTOP: brokerctl" in proc.stdout
    assert "fencing on return: 2/2 runs" in proc.stdout
