#!/usr/bin/env python3
"""GitOps latency: a manifest file written into a watched directory -> its container running,
against a plain Docker SDK create+start of the same container, measured in the same run.

Run: `python bench/gitops.py [--reps 5] [--quick] [--addresses A,B,C]`.
Starts its own throwaway daemons unless ``--addresses`` names running ones.

brokerctl: `brokerctl controller --watch DIR` with the Nodes already synced; each repetition writes
a new one-replica Service file and polls the hosts (every 20 ms) until its container runs.
Baseline, interleaved: create+start of the same container on the first host, polled the same
way. Prints the medians and the overhead (target: under 1 s beyond container start).
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import common  # noqa: E402  (puts the repository on sys.path)
import docker  # noqa: E402

TARGET_OVERHEAD = 1.0
COMMAND = ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]


def wait_running(clients, label: str, timeout: float = 60) -> float:
    deadline = time.perf_counter() + timeout
    while True:
        if any(c.api.containers(filters={"label": label, "status": "running"}) for c in clients):
            return time.perf_counter()
        if time.perf_counter() > deadline:
            raise TimeoutError(f"no running container labelled {label} after {timeout}s")
        time.sleep(0.02)


def baseline(clients, run: int) -> float:
    label = f"brokerctl-bench.gitops={run}"
    start = time.perf_counter()
    cid = clients[0].api.create_container("busybox", COMMAND, labels={"brokerctl-bench.gitops": str(run)})["Id"]
    clients[0].api.start(cid)
    end = wait_running(clients, label)
    clients[0].api.remove_container(cid, force=True)
    return end - start


def brokerctl(clients, repo: Path, run: int) -> float:
    name = f"git{run}"
    doc = {"apiVersion": "broker/v1", "kind": "Service", "metadata": {"name": name},
           "spec": {"replicas": 1, "template": {"image": "busybox", "command": COMMAND}}}
    start = time.perf_counter()
    (repo / f"{name}.yaml").write_text(json.dumps(doc))
    return wait_running(clients, f"brokerctl.owner=Service/{name}") - start


def main() -> int:
    args = common.arguments(__doc__, reps=5, first_ip=81, quick={"reps": 2}, quick_help="two repetitions: a smoke run")
    with common.hosts(args) as (addresses, _), tempfile.TemporaryDirectory(prefix="bkgit-") as tmp:
        clients = [docker.DockerClient(base_url=a, version="1.41", timeout=30) for a in addresses]
        repo = Path(tmp) / "manifests"
        repo.mkdir()
        (repo / "nodes.yaml").write_text("\n---\n".join(map(json.dumps, common.node_docs(addresses, 8))))
        with common.controller(Path(tmp), "gitops", [], watch=repo):
            wait_nodes = time.time() + 30
            while time.time() < wait_nodes and not (Path(tmp) / "gitops-controller.log").read_text().count("sync #1"):
                time.sleep(0.1)
            time.sleep(1.5)  # nodes probed and Ready
            ours, base = common.interleave(args.reps, lambda run: brokerctl(clients, repo, run),
                                           lambda run: baseline(clients, run))
        for c in clients:
            c.close()
    mine, theirs = statistics.median(ours), statistics.median(base)
    overhead = mine - theirs
    print(f"file write -> container running, median of {args.reps}:")
    print(f"  brokerctl controller --watch: {mine:.2f}s (spread {min(ours):.2f}-{max(ours):.2f})")
    print(f"  SDK create+start:             {theirs:.2f}s (spread {min(base):.2f}-{max(base):.2f})")
    print(f"  overhead {overhead:.2f}s, ratio {mine / theirs:.2f} (target: overhead < {TARGET_OVERHEAD:g}s: "
          f"{'met' if overhead < TARGET_OVERHEAD else 'MISSED'})")
    common.write_json(args, [common.figure(
        "GitOps: file write -> container running", ours, base, "s", "overhead < 1 s", overhead < TARGET_OVERHEAD,
        note=f"baseline: SDK create+start; overhead {overhead:.2f} s")])
    return 0


if __name__ == "__main__":
    sys.exit(main())
