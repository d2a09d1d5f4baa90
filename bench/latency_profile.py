#!/usr/bin/env python3
"""Where apply -> running goes, call by call: the controller runs in this process with
``Host.start`` timed, on three throwaway daemons; each of ``--applies`` one-replica Services is
committed and the script prints, at the median, commit -> the Docker create call begins (the
controller's own share) and the create+start calls themselves (the baseline's whole work).

Run: `python bench/latency_profile.py [--applies 12]`. For the user's view (a new `brokerctl`
process per apply), `python -X importtime -m reconciler apply -f FILE` shows the import costs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import common  # noqa: E402  (puts the repository on sys.path)

from reconciler.runtime.controller import Controller  # noqa: E402
from reconciler.docker.host import Host  # noqa: E402
from reconciler.spec.models import Node, Service  # noqa: E402
from reconciler.store import Store  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--applies", type=int, default=12)
    common.host_args(ap, first_ip=111)
    args = ap.parse_args()
    calls: dict[str, tuple[float, float]] = {}
    original = Host.start

    def timed_start(self, spec):
        began = time.perf_counter()
        cid = original(self, spec)
        calls[spec.labels["brokerctl.owner"]] = (began, time.perf_counter())
        return cid

    Host.start = timed_start
    with common.hosts(args) as (addresses, _), tempfile.TemporaryDirectory(prefix="bkprof-") as tmp:
        db = Path(tmp) / "s.db"
        store = Store(db)
        store.apply([Node.model_validate(doc) for doc in common.node_docs(addresses, 8)])
        ctl = Controller(Store(db))
        stop = threading.Event()
        loop = threading.Thread(target=ctl.run, args=(stop,))
        loop.start()
        try:
            time.sleep(3)  # nodes probed, controller idle
            before, inside = [], []
            for i in range(args.applies):
                store.apply([Service.model_validate({
                    "apiVersion": "broker/v1", "kind": "Service", "metadata": {"name": f"p{i}"},
                    "spec": {"replicas": 1, "template": {"image": "busybox", "command": ["sleep", "600"]}}})])
                committed = time.perf_counter()
                while f"Service/p{i}" not in calls:
                    time.sleep(0.001)
                began, ended = calls[f"Service/p{i}"]
                before.append(began - committed)
                inside.append(ended - began)
                time.sleep(1.5)
        finally:
            stop.set()
            loop.join()
            store.close()
    print(f"commit -> Docker create call begins: median {1000 * statistics.median(before):.1f} ms "
          f"(all: {', '.join(f'{1000 * d:.0f}' for d in before)})")
    print(f"create+start calls: median {1000 * statistics.median(inside):.1f} ms")
    print(f"controller counters: {ctl.stats()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
