"""The benchmark suite runs end to end in its quick mode (figures are printed, never asserted).

In three files, so that parallel workers can run the parts side by side: here the benchmarks that need
no Docker daemon (simulated hosts, a throwaway PostgreSQL, the store and the CLI alone); those that run
on the test daemons in tests/test_bench_daemons.py and tests/test_bench_daemons_too.py. Each writes the
page of its part; the page of the whole is the union.
"""

from __future__ import annotations

import runpy
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"

WITHOUT_DOCKER = {
    "cli": ("CLI start-up: brokerctl --help", "apply of 200 manifests", "get tasks -o json"),
    "store": ("controller resident memory", "controller pass time"),
    "history": ("Controller pass, 30 active tasks, 5,000 finished task rows (sqlite)",
                "Controller pass, 30 active tasks, 5,000 finished task rows (postgresql)"),
    "placement": ("Placement rate", "namespaces with quotas"),
    "hollow": ("Hollow 50 nodes: 500-completion Job, apply -> all started", "Hollow 50 nodes, 500 running: controller CPU",
               "Hollow 50 nodes, 500 running: controller memory", "Hollow 50 nodes, 500 running: Docker API calls per pass",
               "Hollow failover of 5 of 50 nodes"),
    "api": ("API: GET of 500 tasks (whole list, one response)", "API: sustained Job submissions"),
}
# On the test daemons, in two files (tests/test_bench_daemons*.py) of about equal length.
ON_DAEMONS = {
    "latency": ("Apply -> running, controller side", "Apply -> running, user's view", "Apply -> running, remote"),
    "gitops": ("GitOps: file write",),
    "batch": ("Batch makespan",),
    "fairness": ("Fair share: team-b's part",),
}
ON_DAEMONS_TOO = {
    "scale": ("Scale 1 -> 10 replicas",),
    "steady": ("Steady state, 6 containers: Docker API calls per pass", "Steady state, 6 containers: controller CPU"),
    "failover": ("Failover (SIGKILL", "Failover (SIGSTOP"),
    "takeover": ("Leader takeover (SIGKILL", "Leader takeover (SIGSTOP"),
}


def run_quick(names: dict, out: Path, *options: str) -> str:
    """`bench/run --quick NAMES...` into ``out``; the page it wrote, checked to hold each name's figures."""
    proc = subprocess.run([sys.executable, str(BENCH / "run"), "--quick", "--out", str(out), *names, *options],
                          capture_output=True, text=True, timeout=420)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    page = (out / "benchmarks.md").read_text()
    for figure in (f for figures in names.values() for f in figures):
        assert figure in page, page
    assert (out / "benchmarks.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return page


def rows(page: str) -> list[str]:
    return [line for line in page.splitlines() if line.startswith("| ") and not line.startswith(("| figure", "| ---"))]


def test_every_benchmark_is_in_one_half():
    """The parts here and in tests/test_bench_daemons*.py are the whole suite: a benchmark added to bench/run is run by one of them."""
    suite = runpy.run_path(str(BENCH / "run"), run_name="bench_run")["SUITE"]
    assert sorted(suite) == sorted([*WITHOUT_DOCKER, *ON_DAEMONS, *ON_DAEMONS_TOO])


@pytest.mark.timeout(480)  # the subprocess's own limit is 420 s: slow benchmarks on a loaded machine
def test_bench_run_quick_without_docker_writes_its_page(tmp_path):
    """The benchmarks on simulated hosts, a throwaway PostgreSQL, the store and the CLI run and publish."""
    page = run_quick(WITHOUT_DOCKER, tmp_path)
    assert len(rows(page)) == 19 and all(row.count("|") == 8 for row in rows(page))
