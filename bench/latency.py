#!/usr/bin/env python3
"""Apply -> running latency of a one-replica Service, with the controller already running.

Run: `python bench/latency.py [--reps 7] [--quick] [--addresses A,B,C] [--json FILE]`.

Controller side: the clock starts when the Service is committed to the store (in-process
`Store.apply`) and stops at the container's `start` event as the daemon stamps it (`timeNano`,
the same machine clock), so no polling interval is timed; baseline: a Docker SDK create+start on
the first host, timed to its own `start` event the same way (target ratio <= 1.25).
User's view: `brokerctl apply -f FILE` as a new process -> container started, against
`docker -H ADDRESS run -d` -> container started (target ratio <= 1.5). Remote: the same through
`brokerctl server` (`--no-controller`, beside the same controller, on 127.0.0.1): `brokerctl
--server URL --token T apply -f FILE` -> container started, against `docker run -d` (target ratio
<= 1.5). All interleaved, after one uncounted warm-up pair of each.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import common  # noqa: E402  (puts the repository on sys.path)
import docker  # noqa: E402

from reconciler.spec.models import Service  # noqa: E402

COMMAND = ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]


class Starts:
    """Every container `start` event of the hosts, stamped by the daemon: label -> epoch seconds."""

    def __init__(self, addresses: list[str]):
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()
        self._streams = []
        for a in addresses:
            client = docker.DockerClient(base_url=a, version="1.41", timeout=None)
            stream = client.api.events(filters={"type": "container", "event": "start"}, decode=True)
            self._streams.append((client, stream))
            threading.Thread(target=self._follow, args=(stream,), daemon=True).start()

    def _follow(self, stream) -> None:
        try:
            for event in stream:
                at = event["timeNano"] / 1e9
                with self._lock:
                    for key, value in (event.get("Actor", {}).get("Attributes") or {}).items():
                        self._seen.setdefault(f"{key}={value}", at)
        except Exception:  # closed at the end of the run
            pass

    def wait(self, label: str, timeout: float = 60) -> float:
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if label in self._seen:
                    return self._seen[label]
            if time.monotonic() > deadline:
                raise TimeoutError(f"no container labelled {label} started after {timeout}s")
            time.sleep(0.005)

    def close(self) -> None:
        for client, stream in self._streams:
            stream.close()
            client.close()


def service(name: str) -> dict:
    return {"apiVersion": "broker/v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"replicas": 1, "template": {"image": "busybox", "command": COMMAND}}}


def sdk(clients, starts: Starts, run: str) -> float:
    start = time.time()
    cid = clients[0].api.create_container("busybox", COMMAND, labels={"brokerctl-bench.latency": run})["Id"]
    clients[0].api.start(cid)
    end = starts.wait(f"brokerctl-bench.latency={run}")
    clients[0].api.remove_container(cid, force=True)
    return end - start


def docker_run(address: str, clients, starts: Starts, run: str) -> float:
    start = time.time()
    subprocess.run(["docker", "-H", address, "run", "-d", "--label", f"brokerctl-bench.cli={run}", "busybox",
                    *COMMAND], check=True, capture_output=True)
    end = starts.wait(f"brokerctl-bench.cli={run}")
    for c in clients:
        for x in c.api.containers(all=True, filters={"label": f"brokerctl-bench.cli={run}"}):
            c.api.remove_container(x["Id"], force=True)
    return end - start


def main() -> int:
    args = common.arguments(__doc__, reps=9, first_ip=91, quick={"reps": 2}, quick_help="two repetitions")
    has_docker_cli = shutil.which("docker") is not None
    env = {**os.environ, "PYTHONPATH": str(common.ROOT)}
    with common.hosts(args) as (addresses, _), tempfile.TemporaryDirectory(prefix="bklat-") as tmp:
        clients = [docker.DockerClient(base_url=a, version="1.41", timeout=30) for a in addresses]
        starts = Starts(addresses)
        # 3 x 16 slots: each Service of the run keeps its replica to the end (about 30 in a full run).
        with common.controller(Path(tmp), "latency", common.node_docs(addresses, 16)) as store:
            time.sleep(2)  # nodes probed and Ready, controller idle

            def ours(run: int) -> float:
                name = f"lat{run}"
                store.apply([Service.model_validate(service(name))])
                start = time.time()  # the commit has happened
                return starts.wait(f"brokerctl.owner=Service/{name}") - start

            if not args.quick:  # warm-up, not counted: the first containers on fresh daemons are slower
                ours(-1), sdk(clients, starts, "s-1")
            commit, base = common.interleave(args.reps, ours, lambda run: sdk(clients, starts, f"s{run}"))

            def user(run: int) -> float:
                path = Path(tmp) / f"user{run}.yaml"
                path.write_text(json.dumps(service(f"user{run}")))
                start = time.time()
                subprocess.run([sys.executable, "-m", "reconciler", "--db", str(store.path), "apply", "-f",
                                str(path)], env=env, check=True, capture_output=True)
                return starts.wait(f"brokerctl.owner=Service/user{run}") - start

            server = common.Server(store.path, Path(tmp), env)
            client_env = {k: v for k, v in env.items() if k not in ("BROKER_DB", "BROKER_SERVER")}

            def remote(run: int) -> float:
                path = Path(tmp) / f"remote{run}.yaml"
                path.write_text(json.dumps(service(f"remote{run}")))
                start = time.time()
                subprocess.run([sys.executable, "-m", "reconciler", "--server", server.url, "--token", server.token,
                                "apply", "-f", str(path)], env=client_env, check=True, capture_output=True)
                return starts.wait(f"brokerctl.owner=Service/remote{run}") - start

            cli, run_d, far, run_r = [], [], [], []
            try:
                if has_docker_cli:
                    if not args.quick:
                        user(-1), docker_run(addresses[0], clients, starts, "c-1"), remote(-1)
                    cli, run_d = common.interleave(args.reps, user,
                                                   lambda run: docker_run(addresses[0], clients, starts, f"c{run}"))
                    far, run_r = common.interleave(args.reps, remote,
                                                   lambda run: docker_run(addresses[0], clients, starts, f"r{run}"))
            finally:
                server.stop()
        starts.close()
        for c in clients:
            c.close()
    figures = [common.figure("Apply -> running, controller side (commit -> container started)", commit, base, "s",
                             "ratio <= 1.25", False, note="baseline: SDK create+start on one host")]
    figures[0]["met"] = figures[0]["ratio"] <= 1.25
    if cli:
        f = common.figure("Apply -> running, user's view (`brokerctl apply` -> running)", cli, run_d, "s",
                          "ratio <= 1.5", False, note="baseline: `docker run -d`")
        f["met"] = f["ratio"] <= 1.5
        figures.append(f)
    if far:
        f = common.figure("Apply -> running, remote (`brokerctl --server URL apply` -> running)", far, run_r, "s",
                          "ratio <= 1.5", False, note="baseline: `docker run -d`; the server on 127.0.0.1")
        f["met"] = f["ratio"] <= 1.5
        figures.append(f)
    for f in figures:
        print(f"{f['name']}: {f['median']:.3f}s (spread {min(f['ours']):.3f}-{max(f['ours']):.3f}); baseline "
              f"{f['base_median']:.3f}s; ratio {f['ratio']:.2f} (target {f['target']}: {'met' if f['met'] else 'MISSED'})")
    if not has_docker_cli:
        print("user's view skipped: no `docker` command on PATH")
    common.write_json(args, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
