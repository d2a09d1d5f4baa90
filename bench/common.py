"""Plumbing shared by the benchmarks: throwaway daemons, a brokerctl controller on a fresh store,
interleaved repetitions, a Docker Swarm mode cluster over the daemons (the baseline of the scale
and failover benchmarks) and `brokerctl server` on a store. Imported by the scripts of bench/."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

ALARM_REASONS = ("NodeNotReady", "NodeLost")


def node_docs(addresses: list[str], slots: int, names: list[str] | None = None) -> list[dict]:
    names = names or [f"h{i + 1}" for i in range(len(addresses))]
    return [{"apiVersion": "broker/v1", "kind": "Node", "metadata": {"name": n},
             "spec": {"address": a, "slots": {"default": slots}}} for n, a in zip(names, addresses)]


@contextmanager
def controller(workdir: Path, tag: str, docs: list[dict], alarms: list | None = None,
               watch: Path | None = None, options: tuple[str, ...] = (), launcher: list[str] | None = None) -> Iterator:
    """Apply ``docs`` to a fresh store, run ``brokerctl controller`` on it (``--watch`` it given, then
    ``options``; through ``launcher`` instead of the interpreter when given), yield the Store.

    ``launcher`` runs the controller's module in place of ``python -m`` (a profiler, say): it is
    given ``--db STORE controller ...``.

    On exit the controller is stopped; node health events it raised (NodeNotReady/NodeLost) are
    added to ``alarms``, since under benchmark load they would be false alarms.
    """
    from reconciler.store import Store

    db = workdir / f"{tag}.db"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cli = [sys.executable, "-m", "reconciler", "--db", str(db)]
    if docs:
        subprocess.run([*cli, "apply", "-f", "-"], input="\n---\n".join(map(json.dumps, docs)), text=True,
                       check=True, capture_output=True, env=env)
    extra = ["--watch", str(watch)] if watch is not None else []
    with open(workdir / f"{tag}-controller.log", "w") as log:
        argv = [*launcher, *cli[3:]] if launcher else cli
        ctl = subprocess.Popen([*argv, "controller", *extra, *options], stdout=log, stderr=subprocess.STDOUT, env=env)
        store = Store(db)
        try:
            yield store
            if alarms is not None:
                alarms.extend(e for e in store.events(limit=10_000) if e["reason"] in ALARM_REASONS)
        finally:
            store.close()
            ctl.terminate()
            ctl.wait(30)


def host_args(ap: argparse.ArgumentParser, first_ip: int, addresses: bool = True) -> None:
    if addresses:
        ap.add_argument("--addresses", help="comma-separated tcp:// addresses of running daemons with busybox")
    ap.add_argument("--first-ip", type=int, default=first_ip, help="last octet for the daemons this run starts")


@contextmanager
def hosts(args) -> Iterator[tuple[list[str], list]]:
    """(addresses, DockerHosts): ``--addresses`` if given, else three daemons started (and stopped) here."""
    if getattr(args, "addresses", None):
        yield args.addresses.split(","), []
        return
    import dockerhosts

    # Swarm tasks (the scale and failover baselines) would try to pull their image from a registry
    # before falling back to the local busybox; no registry is reachable here and the pull attempt
    # is no part of the comparison. dockerd reads this at start-up (it is what Docker's own
    # integration tests set); it affects Swarm tasks only. The daemons inherit our environment.
    os.environ.setdefault("DOCKER_SERVICE_PREFER_OFFLINE_IMAGE", "1")
    started = dockerhosts.start_hosts(3, first_ip=args.first_ip)
    try:
        yield [h.address for h in started], started
    finally:
        dockerhosts.stop_hosts(started)


def interleave(reps: int, ours: Callable[[int], float], theirs: Callable[[int], float]) -> tuple[list, list]:
    """Run both ``reps`` times, alternating which goes first, printing each pair."""
    samples = interleave_all(reps, {"brokerctl": ours, "baseline": theirs})
    return samples["brokerctl"], samples["baseline"]


def interleave_all(reps: int, runs: dict[str, Callable[[int], float]]) -> dict[str, list[float]]:
    """Run each of ``runs`` (name -> measurement) ``reps`` times, rotating which goes first, printing each
    repetition's times in the order given. Repetition 0 starts with the last one (for two: the baseline)."""
    names = list(runs)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for run in range(reps):
        first = (-run - 1) % len(names)
        for name in names[first:] + names[:first]:
            samples[name].append(runs[name](run))
        print(f"  run {run + 1}: " + ", ".join(f"{name} {samples[name][-1]:.2f}s" for name in names), flush=True)
    return samples


SWARM_PORT = 2377


def docker_client(address: str, timeout: float = 30):
    import docker

    return docker.DockerClient(base_url=address, version="1.41", timeout=timeout)


class Swarm:
    """Docker Swarm mode over the daemons at ``addresses`` (``tcp://127.0.0.x:PORT``), for a baseline.

    ``swarm init`` on the first daemon, advertising and listening on its 127.0.0.x ip; the others join
    it as workers the same way (every node, the manager included, runs tasks). ``leave()`` (or leaving
    the ``with`` block) takes every daemon out of the swarm again, workers first, so daemons that were
    not started for this run (``--addresses``) are handed back as they were.

    Services must use the local ``busybox`` image: create them with this Docker SDK (API 1.41) and no
    registry auth, so the manager never asks a registry to pin the tag; that the workers do not try to
    pull it either is set on the daemons (DOCKER_SERVICE_PREFER_OFFLINE_IMAGE, see ``hosts``).
    """

    def __init__(self, addresses: list[str]):
        self.addresses = list(addresses)
        self.ips = [a.split("://", 1)[1].rsplit(":", 1)[0] for a in self.addresses]
        self.joined: list[str] = []
        self.manager = docker_client(self.addresses[0])
        try:
            states = {a: self._state(a) for a in self.addresses}
            busy = [a for a, state in states.items() if state not in ("inactive", "")]
            if busy:
                raise RuntimeError(f"already in a swarm (LocalNodeState {', '.join(states[a] for a in busy)}): "
                                   f"{', '.join(busy)}; `docker -H ADDRESS swarm leave --force` first")
            remote = f"{self.ips[0]}:{SWARM_PORT}"
            self.manager.swarm.init(advertise_addr=self.ips[0], listen_addr=remote)
            self.joined.append(self.addresses[0])
            token = self.manager.swarm.attrs["JoinTokens"]["Worker"]
            for address, ip in zip(self.addresses[1:], self.ips[1:]):
                c = docker_client(address)
                try:
                    c.swarm.join(remote_addrs=[remote], join_token=token, advertise_addr=ip,
                                 listen_addr=f"{ip}:{SWARM_PORT}")
                finally:
                    c.close()
                self.joined.append(address)
            self.node_ids = {a: self._info(a)["Swarm"]["NodeID"] for a in self.addresses}
        except BaseException:
            self.leave()
            raise

    def _info(self, address: str) -> dict:
        c = docker_client(address, 10)
        try:
            return c.info()
        finally:
            c.close()

    def _state(self, address: str) -> str:
        return self._info(address).get("Swarm", {}).get("LocalNodeState", "")

    def leave(self) -> None:
        """Every daemon that joined leaves, workers first, the manager last (forced: it is the last manager)."""
        errors = []
        for address in reversed(self.joined):
            c = docker_client(address)
            try:
                c.swarm.leave(force=True)
            except Exception as e:  # keep going: the other daemons must leave too
                errors.append(f"{address}: {e}")
            finally:
                c.close()
        self.joined = []
        self.manager.close()
        if errors:
            print(f"  warning: swarm leave failed on {'; '.join(errors)}", file=sys.stderr)

    def __enter__(self) -> "Swarm":
        return self

    def __exit__(self, *exc) -> None:
        self.leave()


def alarm_line(alarms: list) -> str:
    return f"  node health false alarms under this load: {len(alarms)}" + "".join(
        f"\n    {e['kind']}/{e['name']} {e['reason']}: {e['message']}" for e in alarms)


def json_arg(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--json", help="also write the figures as JSON to this file (used by bench/run)")


def arguments(doc: str, *, reps: int, quick: dict, quick_help: str, options: tuple = (),
              first_ip: int | None = None, addresses: bool = True) -> argparse.Namespace:
    """A benchmark's command line: its own ``options`` (``(flag, type, default)``; type ``bool`` makes a
    switch), ``--reps``, ``--quick`` (which sets the values in ``quick``), the daemon options when
    ``first_ip`` is given, and ``--json``."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    for flag, kind, default in options:
        if kind is bool:
            ap.add_argument(flag, action="store_true")
        else:
            ap.add_argument(flag, type=kind, default=default)
    ap.add_argument("--reps", type=int, default=reps)
    ap.add_argument("--quick", action="store_true", help=quick_help)
    if first_ip is not None:
        host_args(ap, first_ip, addresses)
    json_arg(ap)
    args = ap.parse_args()
    if args.quick:
        for name, value in quick.items():
            setattr(args, name, value)
    return args


def figure(name: str, ours: list[float], base: list[float] | None, unit: str, target: str, met: bool,
           ratio: float | None = None, note: str = "") -> dict:
    """One row of the results page: brokerctl's samples, the baseline's, the ratio and the target."""
    import statistics

    mine = statistics.median(ours)
    theirs = statistics.median(base) if base else None
    if ratio is None and theirs:
        ratio = mine / theirs
    return {"name": name, "unit": unit, "ours": ours, "base": base or [], "median": mine, "base_median": theirs,
            "ratio": ratio, "target": target, "met": met, "note": note}


def write_json(args, figures: list[dict]) -> None:
    if getattr(args, "json", None):
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")


def serving_url(proc: subprocess.Popen, log: Path, what: str, timeout: float = 30) -> str:
    """The base URL a server process prints in its log ("serving the API on URL/api/v1/") once it serves;
    RuntimeError with the log if it exits or says nothing within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not (found := re.search(r"serving the API on (\S+)/api/v1/", log.read_text())):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start:\n{log.read_text()}")
        time.sleep(0.05)
    return found.group(1)


class Server:
    """`brokerctl server --no-controller` on the store ``db``, on a free port of 127.0.0.1: ``url``, ``token``
    (the admin token of its first start, written under ``tmp``). Used by bench/latency.py and bench/api.py."""

    def __init__(self, db: Path, tmp: Path, env: dict):
        self.log = tmp / "server.log"
        self.proc = subprocess.Popen([sys.executable, "-m", "reconciler", "--db", str(db), "server", "--listen",
                                      "127.0.0.1:0", "--no-controller"], stdout=open(self.log, "w"),
                                     stderr=subprocess.STDOUT, env={**env, "XDG_STATE_HOME": str(tmp / "state")})
        self.url = serving_url(self.proc, self.log, "the server")
        self.token = (tmp / "state" / "brokerctl" / "admin.token").read_text().strip()
        time.sleep(0.5)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


TICK = os.sysconf("SC_CLK_TCK")
# The baseline of the controller's steady-state CPU (bench/steady.py, bench/hollow_scale.py): the
# least any poller must do, a ping and a filtered container list of every host once a second.
POLLER = """
import sys, time, docker
cls = [docker.DockerClient(base_url=a, version="1.41", timeout=float(sys.argv[3])) for a in sys.argv[1].split(",")]
while True:
    began = time.monotonic()
    for c in cls:
        c.api.ping()
        c.api.containers(all=True, filters={"label": "brokerctl.store=" + sys.argv[2]})
    time.sleep(max(0.0, 1.0 - (time.monotonic() - began)))
"""


def poller_command(addresses: list[str], timeout: float, store_id: str) -> list[str]:
    """The command line of a ``POLLER`` process for the store ``store_id`` on ``addresses``."""
    return [sys.executable, "-c", POLLER, ",".join(addresses), store_id, str(timeout)]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime, all threads
