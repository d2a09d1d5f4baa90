#!/usr/bin/env python3
"""Failover time: a host's daemon is SIGKILLed or SIGSTOPped under a Service; how long until all
replicas run on the other hosts? brokerctl (controller defaults) beside Docker Swarm mode, on the
same three throwaway daemons, in the same run, interleaved.

Run: `python bench/failover.py [--replicas 6] [--reps 3] [--quick] [--no-swarm]`.

brokerctl: a fresh store, 3 Nodes, a Service spread over them; the clock starts at the signal and
stops when a poll of the two healthy hosts (every 50 ms) sees every replica running there.
Swarm: `swarm init` on the first daemon, the others `join` via their 127.0.0.x addresses; a
replicated service of the same size; the clock stops when the manager reports every replica
running on the healthy nodes. After each measurement the host is restored (restarted after
SIGKILL, SIGCONT after SIGSTOP) and, for brokerctl, fencing is checked: no replica of ours is
left running on the returning host. Prints medians, the ratio Swarm/brokerctl and the targets
(<= 5 s, >= 4x faster than Swarm).
"""

from __future__ import annotations

import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import common  # noqa: E402  (puts the repository on sys.path)
import docker  # noqa: E402

TARGET_SECONDS, TARGET_FACTOR = 5.0, 4.0
COMMAND = ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
FAULTS = {"SIGKILL": signal.SIGKILL, "SIGSTOP": signal.SIGSTOP}


def client(host, timeout: float = 5) -> docker.DockerClient:
    return docker.DockerClient(base_url=host.address, version="1.41", timeout=timeout)


def running(host, label: str) -> int:
    c = client(host, 2)
    try:
        return len(c.api.containers(filters={"label": label, "status": "running"}))
    finally:
        c.close()


def poll(predicate, timeout: float, what: str) -> float:
    deadline = time.perf_counter() + timeout
    while True:
        try:
            if predicate():
                return time.perf_counter()
        except Exception:  # a daemon coming back may refuse a call or two
            pass
        if time.perf_counter() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.05)


def restore(host, sig: int) -> None:
    if sig == signal.SIGKILL:
        host.start()
    else:
        host.kill(signal.SIGCONT)
    poll(lambda: host.ping(timeout=1), 60, f"{host.name} answering")


def brokerctl_once(hosts, sig: int, replicas: int, workdir: Path, run: str) -> tuple[float, bool]:
    """Returns (seconds to all replicas running on the healthy hosts, fenced on return)."""
    name = f"fo{run}"
    label = f"brokerctl.owner=Service/{name}"
    docs = common.node_docs([h.address for h in hosts], replicas, [h.name for h in hosts])
    docs.append({"apiVersion": "broker/v1", "kind": "Service", "metadata": {"name": name},
                 "spec": {"replicas": replicas, "template": {"image": "busybox", "command": COMMAND}}})
    victim, others = hosts[1], [hosts[0], hosts[2]]
    with common.controller(workdir, f"failover-{run}", docs) as store:
        poll(lambda: sum(running(h, label) for h in hosts) == replicas and running(victim, label) > 0, 60,
             "replicas running")
        time.sleep(1.0)
        victim.kill(sig)
        start = time.perf_counter()
        end = poll(lambda: sum(running(h, label) for h in others) >= replicas, 120, "replicas moved")
        restore(victim, sig)
        try:
            poll(lambda: running(victim, label) == 0, 30, "fenced")
            fenced = True
        except TimeoutError:
            fenced = False
        store.scale(name, 0)
        poll(lambda: sum(running(h, label) for h in hosts) == 0, 60, "service scaled to 0")
        return end - start, fenced


class Swarm(common.Swarm):
    """common.Swarm over the run's own hosts, which it signals."""

    def __init__(self, hosts):
        super().__init__([h.address for h in hosts])
        self.hosts = hosts

    def once(self, sig: int, replicas: int, run: str) -> float:
        victim = self.hosts[1]
        svc = self.manager.services.create("busybox:latest", command=COMMAND, name=f"fo{run}",
                                           mode=docker.types.ServiceMode("replicated", replicas=replicas))
        victim_id = self.node_ids[victim.address]

        def placed(exclude: str | None) -> int:
            tasks = svc.tasks(filters={"desired-state": "running"})
            return sum(t["Status"]["State"] == "running" and t.get("NodeID") != exclude for t in tasks)

        try:
            poll(lambda: placed(None) == replicas and any(
                t.get("NodeID") == victim_id for t in svc.tasks(filters={"desired-state": "running"})), 120,
                "swarm replicas running")
            time.sleep(1.0)
            victim.kill(sig)
            start = time.perf_counter()
            end = poll(lambda: placed(victim_id) >= replicas, 300, "swarm replicas moved")
            return end - start
        finally:
            restore(victim, sig)
            svc.remove()
            poll(lambda: all(running(h, f"com.docker.swarm.service.name=fo{run}") == 0 for h in self.hosts), 120,
                 "swarm service removed")
            poll(lambda: self.manager.nodes.get(victim_id).attrs["Status"]["State"] == "ready", 120,
                 "swarm node ready again")


def main() -> int:
    # It signals the daemons, so it always starts its own (no --addresses).
    args = common.arguments(__doc__, reps=3, first_ip=61, addresses=False,
                            options=(("--replicas", int, 6), ("--no-swarm", bool, False)),
                            quick={"replicas": 3, "reps": 1, "no_swarm": True},
                            quick_help="3 replicas, one repetition, no Swarm: a smoke run")
    ours: dict[str, list[float]] = {f: [] for f in FAULTS}
    theirs: dict[str, list[float]] = {f: [] for f in FAULTS}
    fenced = []
    with common.hosts(args) as (_, hosts), tempfile.TemporaryDirectory(prefix="bkfail-") as tmp:
        swarm = None if args.no_swarm else Swarm(hosts)
        try:
            for rep in range(args.reps):
                for fault, sig in FAULTS.items():
                    tag = f"{rep}{fault[3:].lower()}"
                    seconds, ok = brokerctl_once(hosts, sig, args.replicas, Path(tmp), tag)
                    ours[fault].append(seconds)
                    fenced.append(ok)
                    line = f"  run {rep + 1} {fault}: brokerctl {seconds:.2f}s"
                    if swarm:
                        theirs[fault].append(swarm.once(sig, args.replicas, tag))
                        line += f", Swarm {theirs[fault][-1]:.2f}s"
                    print(line, flush=True)
        finally:
            if swarm:
                swarm.leave()
    print(f"failover of {args.replicas} replicas over 3 hosts, one host faulted, median of {args.reps}:")
    for fault in FAULTS:
        mine = statistics.median(ours[fault])
        line = (f"  {fault}: brokerctl {mine:.2f}s (spread {min(ours[fault]):.2f}-{max(ours[fault]):.2f}; "
                f"target <= {TARGET_SECONDS:g}s: {'met' if mine <= TARGET_SECONDS else 'MISSED'})")
        if theirs[fault]:
            other = statistics.median(theirs[fault])
            factor = other / mine
            line += (f"; Swarm {other:.2f}s (spread {min(theirs[fault]):.2f}-{max(theirs[fault]):.2f}); "
                     f"brokerctl {factor:.1f}x faster (target >= {TARGET_FACTOR:g}x: "
                     f"{'met' if factor >= TARGET_FACTOR else 'MISSED'})")
        print(line)
    print(f"  fencing on return: {sum(fenced)}/{len(fenced)} runs left no stale replica on the returning host")
    figures = []
    for fault in FAULTS:
        mine = statistics.median(ours[fault])
        factor = statistics.median(theirs[fault]) / mine if theirs[fault] else None
        met = mine <= TARGET_SECONDS and (factor is None or factor >= TARGET_FACTOR)
        figures.append(common.figure(
            f"Failover ({fault} of one host's daemon)", ours[fault], theirs[fault] or None, "s",
            f"<= {TARGET_SECONDS:g} s and >= {TARGET_FACTOR:g}x faster than Swarm", met,
            ratio=(1 / factor) if factor else None,
            note=f"baseline: Docker Swarm mode on the same daemons; fencing held in {sum(fenced)}/{len(fenced)} runs"))
    common.write_json(args, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
