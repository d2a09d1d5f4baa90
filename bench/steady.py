#!/usr/bin/env python3
"""Steady state: 300 running replicas over 3 Docker hosts and nothing changing. Docker API calls
per reconcile pass and the controller's CPU.

Run: `python bench/steady.py [--replicas 300] [--window 20] [--reps 3] [--quick] [--addresses A,B,C]`.
Starts its own throwaway daemons unless ``--addresses`` names running ones.

A controller runs a Service of ``--replicas`` replicas; once all run and the controller has
settled, each window of ``--window`` seconds reads the controller's own counters (published with
its heartbeat, as `brokerctl status` shows them) at both ends: passes, container lists and every
Docker API call by endpoint; and its CPU time from /proc. Target: one container list per node per
pass at most, plus the probes (one `/_ping` per node per second); CPU under 5% of a core.
Baseline, measured in the same windows: a minimal poller that only pings and lists every node
once a second with the Docker SDK, the least work a reconciler that lists on every pass can do.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common  # noqa: E402  (puts the repository on sys.path)
import docker  # noqa: E402

COMMAND = ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
CPU_TARGET = 5.0  # % of one core


def running(clients, label: str) -> int:
    return sum(len(c.api.containers(filters={"label": label, "status": "running"})) for c in clients)


def main() -> int:
    args = common.arguments(__doc__, reps=3, first_ip=101, options=(("--replicas", int, 300), ("--window", float, 20.0)),
                            quick={"replicas": 6, "window": 3.0, "reps": 1}, quick_help="6 replicas, one 3 s window")
    env = {**os.environ, "PYTHONPATH": str(common.ROOT)}
    per_node = -(-args.replicas // 3) + 10
    samples: dict[str, list] = {"calls": [], "lists": [], "cpu": [], "base_cpu": [], "passes": [], "pings": [],
                                "pass_ms": []}
    with common.hosts(args) as (addresses, _), tempfile.TemporaryDirectory(prefix="bksteady-") as tmp:
        clients = [docker.DockerClient(base_url=a, version="1.41", timeout=60) for a in addresses]
        docs = common.node_docs(addresses, per_node)
        docs.append({"apiVersion": "broker/v1", "kind": "Service", "metadata": {"name": "steady"},
                     "spec": {"replicas": args.replicas, "template": {"image": "busybox", "command": COMMAND}}})
        with common.controller(Path(tmp), "steady", docs) as store:
            label = "brokerctl.owner=Service/steady"
            deadline = time.time() + 60 + 2 * args.replicas
            while running(clients, label) < args.replicas:
                if time.time() > deadline:
                    raise TimeoutError(f"{args.replicas} replicas not running in time")
                time.sleep(1)
            print(f"  {args.replicas} replicas running; settling", flush=True)
            time.sleep(3 if args.quick else 8)  # last starts recorded, rollouts complete, nothing left to do
            pid = store.lease()["pid"]
            for rep in range(args.reps):
                poller = subprocess.Popen(common.poller_command(addresses, 10.0, store.store_id), env=env)
                time.sleep(2)  # the poller's imports are not its steady work
                before, cpu0, base0 = store.lease(), common.cpu_seconds(pid), common.cpu_seconds(poller.pid)
                t0 = time.monotonic()
                time.sleep(args.window)
                after, cpu1, base1 = store.lease(), common.cpu_seconds(pid), common.cpu_seconds(poller.pid)
                elapsed = time.monotonic() - t0
                poller.terminate()
                poller.wait(10)
                a, b = after["stats"], before["stats"]
                passes = a["passes"] - b["passes"]
                calls = {k: n - b["dockerCalls"].get(k, 0) for k, n in a["dockerCalls"].items()}
                calls = {k: n for k, n in calls.items() if n}
                pings = calls.get("GET /_ping", 0)
                other = sum(calls.values()) - pings
                samples["passes"].append(passes / elapsed)
                samples["calls"].append(other / max(passes, 1))
                samples["lists"].append((a["lists"] - b["lists"]) / max(passes, 1))
                samples["pings"].append(pings / elapsed / len(addresses))
                samples["pass_ms"].append(1000 * (a["passSeconds"] - b["passSeconds"]) / max(passes, 1))
                samples["cpu"].append(100 * (cpu1 - cpu0) / elapsed)
                samples["base_cpu"].append(100 * (base1 - base0) / elapsed)
                print(f"  window {rep + 1}: {passes} passes in {elapsed:.1f}s; Docker calls {calls}; controller CPU "
                      f"{samples['cpu'][-1]:.2f}%, poller {samples['base_cpu'][-1]:.2f}%", flush=True)
            if running(clients, label) != args.replicas:
                raise AssertionError("the steady state did not hold: replicas changed during the windows")
        for c in clients:
            c.close()
    med = {k: statistics.median(v) for k, v in samples.items()}
    nodes = len(addresses)
    calls_fig = common.figure(
        f"Steady state, {args.replicas} containers: Docker API calls per pass (besides probes)", samples["calls"],
        [float(nodes)] * args.reps, "calls", f"<= 1 list per node ({nodes})", med["calls"] <= nodes,
        note=f"baseline: one list per node per pass; {med['passes']:.2f} passes/s, {med['lists']:.2f} lists/pass, "
             f"{med['pings']:.2f} probes/s per node, mean pass {med['pass_ms']:.0f} ms")
    cpu_fig = common.figure(
        f"Steady state, {args.replicas} containers: controller CPU", samples["cpu"], samples["base_cpu"], "%",
        "< 5% of a core", med["cpu"] < CPU_TARGET,
        note="baseline: a poller that pings and lists every node once a second (Docker SDK)")
    print(f"steady state, {args.replicas} replicas over {nodes} hosts, median of {args.reps} windows of "
          f"{args.window:g}s:")
    print(f"  passes per second {med['passes']:.2f}, mean pass {med['pass_ms']:.1f} ms")
    print(f"  Docker API calls per pass besides probes {med['calls']:.2f} (container lists {med['lists']:.2f}); "
          f"target <= {nodes}: {'met' if calls_fig['met'] else 'MISSED'}")
    print(f"  probes per node per second {med['pings']:.2f}")
    print(f"  controller CPU {med['cpu']:.2f}% of a core (poller baseline {med['base_cpu']:.2f}%); target < "
          f"{CPU_TARGET:g}%: {'met' if cpu_fig['met'] else 'MISSED'}")
    common.write_json(args, [calls_fig, cpu_fig])
    return 0


if __name__ == "__main__":
    sys.exit(main())
