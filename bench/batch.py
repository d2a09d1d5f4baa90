#!/usr/bin/env python3
"""Batch makespan: 60 one-second tasks over 3 hosts with 4 slots each, brokerctl against a Docker
SDK thread pool with the same per-host concurrency.

Run: `python bench/batch.py [--tasks 60] [--slots 4] [--reps 3] [--quick] [--addresses A,B,C]`.
Starts its own throwaway daemons unless ``--addresses`` names running ones.

brokerctl: a controller runs on a fresh store with 3 Nodes of ``--slots`` slots; the clock starts
when the Job (completions = parallelism = tasks, `sleep 1`) is committed and stops when the store
says the Job is Complete (every task collected). Baseline, interleaved with brokerctl: per host a
pool of ``--slots`` threads, each creating, starting, waiting for and removing a `sleep 1`
container, the tasks dealt round-robin. Prints medians and the ratio (target <= 1.15), and the
node health false alarms (NodeNotReady/NodeLost events) seen under this load.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import common  # noqa: E402  (puts the repository on sys.path)
import docker  # noqa: E402

from reconciler.spec.models import Job, Kind  # noqa: E402

TARGET_RATIO = 1.15
COMMAND = ["sleep", "1"]


def baseline(addresses: list[str], tasks: int, slots: int) -> float:
    clients = [docker.DockerClient(base_url=a, version="1.41", timeout=60) for a in addresses]

    def one(client: docker.DockerClient) -> None:
        cid = client.api.create_container("busybox", COMMAND, labels={"brokerctl-bench.batch": "1"})["Id"]
        client.api.start(cid)
        client.api.wait(cid)
        client.api.remove_container(cid, force=True)

    pools = [ThreadPoolExecutor(slots) for _ in clients]
    start = time.perf_counter()
    futures = [pools[i % len(clients)].submit(one, clients[i % len(clients)]) for i in range(tasks)]
    for f in futures:
        f.result()
    elapsed = time.perf_counter() - start
    for p in pools:
        p.shutdown()
    for c in clients:
        c.close()
    return elapsed


def brokerctl(addresses: list[str], tasks: int, slots: int, workdir: Path, run: int, alarms: list) -> float:
    with common.controller(workdir, f"batch-{run}", common.node_docs(addresses, slots), alarms) as store:
        time.sleep(1.5)  # the controller is up and idle
        job = Job.model_validate({"apiVersion": "broker/v1", "kind": "Job", "metadata": {"name": "batch"},
                                  "spec": {"completions": tasks, "parallelism": tasks,
                                           "template": {"image": "busybox", "command": COMMAND}}})
        start = time.perf_counter()
        store.apply([job])
        while (status := store.resource(Kind.JOB, "batch").status).get("phase") not in ("Complete", "Failed"):
            time.sleep(0.05)
        end = time.perf_counter()
        if status["phase"] != "Complete":
            raise RuntimeError(f"batch job failed: {status}")
        return end - start


def main() -> int:
    args = common.arguments(__doc__, reps=3, first_ip=71, options=(("--tasks", int, 60), ("--slots", int, 4)),
                            quick={"tasks": 12, "reps": 1}, quick_help="12 tasks, one repetition: a smoke run")
    alarms: list = []
    with common.hosts(args) as (addresses, _), tempfile.TemporaryDirectory(prefix="bkbatch-") as tmp:
        ours, base = common.interleave(
            args.reps, lambda run: brokerctl(addresses, args.tasks, args.slots, Path(tmp), run, alarms),
            lambda run: baseline(addresses, args.tasks, args.slots))
    mine, theirs = statistics.median(ours), statistics.median(base)
    ratio = mine / theirs
    ideal = -(-args.tasks // (args.slots * len(addresses)))
    print(f"batch of {args.tasks} one-second tasks over {len(addresses)} hosts x {args.slots} slots "
          f"(ideal {ideal} s), median of {args.reps}:")
    print(f"  brokerctl (commit -> Job Complete): {mine:.2f}s (spread {min(ours):.2f}-{max(ours):.2f})")
    print(f"  SDK thread pool, {args.slots} per host:   {theirs:.2f}s (spread {min(base):.2f}-{max(base):.2f})")
    print(f"  ratio {ratio:.2f} (target <= {TARGET_RATIO}: {'met' if ratio <= TARGET_RATIO else 'MISSED'})")
    print(common.alarm_line(alarms))
    common.write_json(args, [common.figure(
        f"Batch makespan, {args.tasks} x 1 s tasks, 3 hosts x {args.slots} slots", ours, base, "s",
        "ratio <= 1.15", ratio <= TARGET_RATIO,
        note=f"baseline: SDK thread pool, {args.slots} per host; node false alarms: {len(alarms)}")])
    return 0


if __name__ == "__main__":
    sys.exit(main())
