"""Half of the benchmarks that run on the test daemons, in their quick mode (tests/test_bench.py says why
the suite is in three files)."""

from __future__ import annotations

import pytest
from test_bench import ON_DAEMONS, rows, run_quick


@pytest.mark.timeout(480)  # the subprocess's own limit is 420 s: slow benchmarks on a loaded machine
def test_bench_run_quick_on_daemons_writes_its_page(docker_hosts, clean_hosts, tmp_path):
    """Apply -> running, GitOps, batch and fair share on the test daemons run and publish."""
    page = run_quick(ON_DAEMONS, tmp_path, "--addresses", ",".join(h.address for h in clean_hosts))
    assert len(rows(page)) == 6 and all(row.count("|") == 8 for row in rows(page))
