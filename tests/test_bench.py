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


def test_scale_benchmark_quick_run(clean_hosts):
    """bench/scale.py --quick scales a Service on the test daemons and prints both timings and the ratio."""
    addresses = ",".join(h.address for h in clean_hosts)
    proc = subprocess.run([sys.executable, str(BENCH / "scale.py"), "--quick", "--addresses", addresses],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "brokerctl (commit -> all running)" in proc.stdout and "SDK thread pool" in proc.stdout
    ratio = float(proc.stdout.split("ratio ")[1].split()[0])
    assert ratio > 0


def test_batch_benchmark_quick_run(clean_hosts):
    """bench/batch.py --quick runs a Job on the test daemons and prints both makespans, the ratio and alarms."""
    addresses = ",".join(h.address for h in clean_hosts)
    proc = subprocess.run([sys.executable, str(BENCH / "batch.py"), "--quick", "--addresses", addresses],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "brokerctl (commit -> Job Complete)" in proc.stdout and "SDK thread pool" in proc.stdout
    assert float(proc.stdout.split("ratio ")[1].split()[0]) > 0
    assert "node health false alarms under this load:" in proc.stdout


def test_failover_benchmark_quick_run(docker_hosts):
    """bench/failover.py --quick faults its own daemons (SIGKILL, SIGSTOP) and reports failover and fencing."""
    first_ip = docker_hosts[0].ip.rsplit(".", 1)[1]
    proc = subprocess.run([sys.executable, str(BENCH / "failover.py"), "--quick", "--first-ip", str(int(first_ip) + 40)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SIGKILL: brokerctl" in proc.stdout and "SIGSTOP: brokerctl" in proc.stdout
    assert "fencing on return: 2/2 runs" in proc.stdout


def test_gitops_benchmark_quick_run(clean_hosts):
    """bench/gitops.py --quick watches a directory on the test daemons and prints the write -> running overhead."""
    addresses = ",".join(h.address for h in clean_hosts)
    proc = subprocess.run([sys.executable, str(BENCH / "gitops.py"), "--quick", "--addresses", addresses],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "brokerctl controller --watch" in proc.stdout and "SDK create+start" in proc.stdout
    assert float(proc.stdout.split("overhead ")[1].split("s")[0]) < 30
