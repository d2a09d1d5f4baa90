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

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import docker  # noqa: E402

from reconciler.models import Job, Kind  # noqa: E402
from reconciler.store import Store  # noqa: E402

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
    db = workdir / f"batch-{run}.db"
    docs = [{"apiVersion": "broker/v1", "kind": "Node", "metadata": {"name": f"h{i + 1}"},
             "spec": {"address": a, "slots": {"default": slots}}} for i, a in enumerate(addresses)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cli = [sys.executable, "-m", "reconciler", "--db", str(db)]
    subprocess.run([*cli, "apply", "-f", "-"], input="\n---\n".join(map(json.dumps, docs)), text=True,
                   check=True, capture_output=True, env=env)
    log = open(workdir / f"controller-{run}.log", "w")
    ctl = subprocess.Popen([*cli, "controller"], stdout=log, stderr=subprocess.STDOUT, env=env)
    store = Store(db)
    try:
        time.sleep(1.5)  # the controller is up and idle
        job = Job.model_validate({"apiVersion": "broker/v1", "kind": "Job", "metadata": {"name": "batch"},
                                  "spec": {"completions": tasks, "parallelism": tasks,
                                           "template": {"image": "busybox", "command": COMMAND}}})
        start = time.perf_counter()
        store.apply([job])
        while True:
            status = store.resource(Kind.JOB, "batch").status
            if status.get("phase") in ("Complete", "Failed"):
                end = time.perf_counter()
                break
            time.sleep(0.05)
        if status["phase"] != "Complete":
            raise RuntimeError(f"batch job failed: {status}")
        alarms.extend(e for e in store.events(limit=10_000) if e["reason"] in ("NodeNotReady", "NodeLost"))
        return end - start
    finally:
        store.close()
        ctl.terminate()
        ctl.wait(30)
        log.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=60)
    ap.add_argument("--slots", type=int, default=4)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="12 tasks, one repetition: a smoke run")
    ap.add_argument("--addresses", help="comma-separated tcp:// addresses of running daemons with busybox")
    ap.add_argument("--first-ip", type=int, default=71, help="last octet for the daemons this run starts")
    args = ap.parse_args()
    if args.quick:
        args.tasks, args.reps = 12, 1
    hosts = []
    if args.addresses:
        addresses = args.addresses.split(",")
    else:
        import dockerhosts

        hosts = dockerhosts.start_hosts(3, first_ip=args.first_ip)
        addresses = [h.address for h in hosts]
    ours, base, alarms = [], [], []
    try:
        with tempfile.TemporaryDirectory(prefix="bkbatch-") as tmp:
            for run in range(args.reps):
                if run % 2:
                    ours.append(brokerctl(addresses, args.tasks, args.slots, Path(tmp), run, alarms))
                    base.append(baseline(addresses, args.tasks, args.slots))
                else:
                    base.append(baseline(addresses, args.tasks, args.slots))
                    ours.append(brokerctl(addresses, args.tasks, args.slots, Path(tmp), run, alarms))
                print(f"  run {run + 1}: brokerctl {ours[-1]:.2f}s, thread pool {base[-1]:.2f}s", flush=True)
    finally:
        if hosts:
            import dockerhosts

            dockerhosts.stop_hosts(hosts)
    mine, theirs = statistics.median(ours), statistics.median(base)
    ratio = mine / theirs
    ideal = -(-args.tasks // (args.slots * len(addresses)))
    print(f"batch of {args.tasks} one-second tasks over {len(addresses)} hosts x {args.slots} slots "
          f"(ideal {ideal} s), median of {args.reps}:")
    print(f"  brokerctl (commit -> Job Complete): {mine:.2f}s (spread {min(ours):.2f}-{max(ours):.2f})")
    print(f"  SDK thread pool, {args.slots} per host:   {theirs:.2f}s (spread {min(base):.2f}-{max(base):.2f})")
    print(f"  ratio {ratio:.2f} (target <= {TARGET_RATIO}: {'met' if ratio <= TARGET_RATIO else 'MISSED'})")
    print(f"  node health false alarms under this load: {len(alarms)}"
          + "".join(f"\n    {e['kind']}/{e['name']} {e['reason']}: {e['message']}" for e in alarms))
    return 0


if __name__ == "__main__":
    sys.exit(main())
