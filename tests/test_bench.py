"""The benchmark suite runs end to end in its quick mode (figures are printed, never asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.mark.timeout(540)  # the subprocess's own limit: thirteen benchmarks, slow on a loaded machine
def test_bench_run_quick_writes_the_results_page(docker_hosts, clean_hosts, tmp_path):
    """`bench/run --quick` runs every benchmark (on the test daemons where it can) and writes the page and chart."""
    first_ip = int(docker_hosts[0].ip.rsplit(".", 1)[1])
    addresses = ",".join(h.address for h in clean_hosts)
    proc = subprocess.run([sys.executable, str(BENCH / "run"), "--quick", "--out", str(tmp_path),
                           "--addresses", addresses, "--failover-first-ip", str(first_ip + 40)],
                          capture_output=True, text=True, timeout=540)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    page = (tmp_path / "benchmarks.md").read_text()
    for figure in ("CLI start-up: brokerctl --help", "apply of 200 manifests", "get tasks -o json",
                   "controller resident memory", "Placement rate", "namespaces with quotas", "GitOps: file write", "Batch makespan",
                   "Fair share: team-b's part",
                   "Scale 1 -> 10 replicas", "Failover (SIGKILL", "Failover (SIGSTOP", "Apply -> running, controller side",
                   "Apply -> running, user's view", "Steady state, 6 containers: Docker API calls per pass",
                   "Steady state, 6 containers: controller CPU", "controller pass time",
                   "Controller pass, 30 active tasks, 5,000 finished task rows (sqlite)",
                   "Controller pass, 30 active tasks, 5,000 finished task rows (postgresql)",
                   "Apply -> running, remote",
                   "Hollow 50 nodes: 500-completion Job, apply -> all started", "Hollow 50 nodes, 500 running: controller CPU",
                   "Hollow 50 nodes, 500 running: controller memory", "Hollow 50 nodes, 500 running: Docker API calls per pass",
                   "Hollow failover of 5 of 50 nodes", "Leader takeover (SIGKILL", "Leader takeover (SIGSTOP",
                   "API: GET of 500 tasks (whole list, one response)", "API: sustained Job submissions"):
        assert figure in page, page
    rows = [line for line in page.splitlines() if line.startswith("| ") and not line.startswith(("| figure", "| ---"))]
    assert len(rows) == 32 and all(row.count("|") == 8 for row in rows)
    assert (tmp_path / "benchmarks.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
