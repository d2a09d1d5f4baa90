#!/usr/bin/env python3
"""Scale a Service 1 -> 50 replicas over 3 Docker hosts: brokerctl against a direct SDK thread pool and Docker Swarm.

Run: `python bench/scale.py [--replicas 50] [--reps 4] [--quick] [--no-swarm] [--addresses tcp://A,tcp://B,...]`.
Starts its own throwaway daemons (as the tests do) unless ``--addresses`` names running ones
(which must not be in a swarm; they are made one for the run and leave it afterwards).

brokerctl: a controller process runs on a fresh store with the Service at 1 ready replica; the
clock starts when ``scale`` commits the new replica count and stops when a poll of the hosts sees
every replica's container running. Baseline, measured in the same run and interleaved with
brokerctl: a Docker-SDK thread pool creating and starting the same number of new containers
(same image and command) with the same per-host concurrency as the controller (8), timed the same
way. Second baseline, interleaved with both: Docker Swarm mode on the same daemons (`swarm init` on
the first, the others join; see common.Swarm): a replicated service of the same image and command
at 1 running replica is scaled with the SDK's ``service.scale(n)`` (what `docker service scale`
does: inspect, then update the replica count); the clock stops when the same poll of the hosts sees
every task's container (label com.docker.swarm.service.name) running. No target was set for this
one; "faster than Swarm" means a ratio below 1. A warm-up run of each baseline is not counted.
Prints the median of each and the ratios (target vs the thread pool <= 1.2). ``--quick`` and
``--no-swarm`` leave Swarm out.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import common  # noqa: E402  (puts the repository on sys.path)
import docker  # noqa: E402

TARGET_RATIO = 1.2
PER_HOST = 8  # the controller's per-node limit on concurrent Docker calls (act.Actor.per_node)
COMMAND = ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
BASELINE_LABEL = "brokerctl-bench.baseline"
SWARM_LABEL = "com.docker.swarm.service.name"
ALARMS: list[dict] = []  # NodeNotReady / NodeLost events seen during brokerctl runs (false alarms)


def clients(addresses: list[str]) -> list[docker.DockerClient]:
    return [docker.DockerClient(base_url=a, version="1.41", timeout=60) for a in addresses]


def count_running(cls: list[docker.DockerClient], label: str) -> int:
    return sum(len(c.api.containers(filters={"label": label, "status": "running"})) for c in cls)


def wait_running(cls, label: str, want: int, timeout: float = 300) -> float:
    """Poll every 50 ms until ``want`` containers with ``label`` run; returns the time it happened."""
    deadline = time.perf_counter() + timeout
    while True:
        if count_running(cls, label) >= want:
            return time.perf_counter()
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{want} containers labelled {label} not running after {timeout}s")
        time.sleep(0.05)


def remove_all(cls, label: str) -> None:
    for c in cls:
        ids = [x["Id"] for x in c.api.containers(all=True, filters={"label": label})]
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: c.api.remove_container(i, force=True), ids))


def baseline(cls, replicas: int, run: int) -> float:
    """Create+start ``replicas - 1`` containers round-robin over the hosts, PER_HOST at a time per host."""
    label = f"{BASELINE_LABEL}={run}"
    gates = [threading.Semaphore(PER_HOST) for _ in cls]
    first = cls[0].api.create_container("busybox", COMMAND, labels={BASELINE_LABEL: str(run)})
    cls[0].api.start(first["Id"])
    wait_running(cls, label, 1)

    def one(i: int) -> None:
        host = i % len(cls)
        with gates[host]:
            cid = cls[host].api.create_container("busybox", COMMAND, labels={BASELINE_LABEL: str(run)})["Id"]
            cls[host].api.start(cid)

    start = time.perf_counter()
    with ThreadPoolExecutor(PER_HOST * len(cls)) as pool:
        list(pool.map(one, range(1, replicas)))
    end = wait_running(cls, label, replicas)
    remove_all(cls, label)
    return end - start


def brokerctl(cls, addresses: list[str], replicas: int, workdir: Path, run: int) -> float:
    docs = common.node_docs(addresses, replicas)
    docs.append({"apiVersion": "broker/v1", "kind": "Service", "metadata": {"name": f"bench{run}"},
                 "spec": {"replicas": 1, "template": {"image": "busybox", "command": COMMAND}}})
    with common.controller(workdir, f"scale-{run}", docs, ALARMS) as store:
        label = f"brokerctl.owner=Service/bench{run}"
        wait_running(cls, label, 1, timeout=60)
        time.sleep(1.0)  # let the controller go idle
        start = time.perf_counter()
        store.scale(f"bench{run}", replicas)
        end = wait_running(cls, label, replicas)
        store.scale(f"bench{run}", 0)
        deadline = time.time() + 120
        while any(c.api.containers(all=True, filters={"label": label}) for c in cls) and time.time() < deadline:
            time.sleep(0.2)
        return end - start


def swarm(cls, sw: common.Swarm, replicas: int, run: int) -> float:
    """A Swarm service at 1 running replica, scaled to ``replicas``; then removed and its containers waited gone."""
    name = f"bkscale{run}"
    label = f"{SWARM_LABEL}={name}"
    svc = sw.manager.services.create("busybox:latest", command=COMMAND, name=name,
                                     mode=docker.types.ServiceMode("replicated", replicas=1))
    try:
        wait_running(cls, label, 1, timeout=120)
        time.sleep(1.0)  # as for brokerctl: let the manager go idle
        start = time.perf_counter()
        svc.scale(replicas)
        return wait_running(cls, label, replicas) - start
    finally:
        svc.remove()
        deadline = time.time() + 120
        while any(c.api.containers(all=True, filters={"label": label}) for c in cls) and time.time() < deadline:
            time.sleep(0.2)


def main() -> int:
    args = common.arguments(__doc__, reps=4, first_ip=51, options=(("--replicas", int, 50), ("--no-swarm", bool, False)),
                            quick={"replicas": 10, "reps": 1, "no_swarm": True},
                            quick_help="10 replicas, one repetition, no Swarm: a smoke run")
    with common.hosts(args) as (addresses, _), tempfile.TemporaryDirectory(prefix="bkscale-") as tmp:
        cls = clients(addresses)
        sw = None
        try:
            sw = None if args.no_swarm else common.Swarm(addresses)  # leaves again itself if it fails half-way
            runs = {"brokerctl": lambda run: brokerctl(cls, addresses, args.replicas, Path(tmp), run),
                    "thread pool": lambda run: baseline(cls, args.replicas, run)}
            if sw:
                runs["Swarm"] = lambda run: swarm(cls, sw, args.replicas, run)
            if not args.quick:  # warm-up, not counted: first container creations on fresh daemons are slower
                baseline(cls, args.replicas, -1)
                if sw:
                    swarm(cls, sw, args.replicas, -1)
            samples = common.interleave_all(args.reps, runs)
        finally:
            if sw:
                sw.leave()
            for c in cls:
                c.close()
    ours, base, theirs = samples["brokerctl"], samples["thread pool"], samples.get("Swarm")
    mine, pool = statistics.median(ours), statistics.median(base)
    ratio = mine / pool
    print(f"scale 1 -> {args.replicas} replicas over {len(addresses)} hosts, median of {args.reps}:")
    print(f"  brokerctl (commit -> all running): {mine:.2f}s (spread {min(ours):.2f}-{max(ours):.2f})")
    print(f"  SDK thread pool, {PER_HOST} per host:  {pool:.2f}s (spread {min(base):.2f}-{max(base):.2f})")
    print(f"  ratio {ratio:.2f} (target <= {TARGET_RATIO}: {'met' if ratio <= TARGET_RATIO else 'MISSED'})")
    figures = [common.figure(
        f"Scale 1 -> {args.replicas} replicas over 3 hosts", ours, base, "s", "ratio <= 1.2", ratio <= TARGET_RATIO,
        note=f"baseline: SDK thread pool, {PER_HOST} per host; node false alarms: {len(ALARMS)}")]
    if theirs:
        other = statistics.median(theirs)
        vs_swarm = mine / other
        print(f"  Swarm `service scale` (scale call -> all running): {other:.2f}s "
              f"(spread {min(theirs):.2f}-{max(theirs):.2f})")
        print(f"  ratio vs Swarm {vs_swarm:.2f}: brokerctl {other / mine:.1f}x as fast "
              f"(target faster than Swarm, no number set: {'met' if vs_swarm < 1.0 else 'MISSED'})")
        figures.append(common.figure(
            f"Scale 1 -> {args.replicas} replicas over 3 hosts, vs Swarm `service scale`", ours, theirs, "s",
            "faster than Swarm", vs_swarm < 1.0,
            note="baseline: Docker Swarm mode service scale on the same daemons; no numeric target was set "
                 "(met when the ratio is below 1.0)"))
    print(common.alarm_line(ALARMS) + "  (default probes: every 1 s, 1 s timeout, Lost after 3 s)")
    common.write_json(args, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
