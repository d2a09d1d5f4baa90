"""The other half of the benchmarks that run on the test daemons, in their quick mode (tests/test_bench.py says why
the suite is in three files)."""

from __future__ import annotations

import pytest
from test_bench import ON_DAEMONS_TOO, rows, run_quick


@pytest.mark.timeout(480)  # the subprocess's own limit is 420 s: slow benchmarks on a loaded machine
def test_bench_run_quick_on_daemons_too_writes_its_page(docker_hosts, clean_hosts, tmp_path):
    """Scale, steady state, failover (on daemons of its own, as it kills them) and leader takeover run and
    publish."""
    first_ip = int(docker_hosts[0].ip.rsplit(".", 1)[1])
    page = run_quick(ON_DAEMONS_TOO, tmp_path, "--addresses", ",".join(h.address for h in clean_hosts),
                     "--failover-first-ip", str(first_ip + 40))
    assert len(rows(page)) == 7 and all(row.count("|") == 8 for row in rows(page))
