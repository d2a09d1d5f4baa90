"""Plumbing shared by the benchmarks: throwaway daemons, a brokerctl controller on a fresh store,
and interleaved repetitions. Imported by bench/scale.py, bench/batch.py and bench/failover.py."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
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
               watch: Path | None = None) -> Iterator:
    """Apply ``docs`` to a fresh store, run ``brokerctl controller`` on it (``--watch`` it given), yield the Store.

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
        ctl = subprocess.Popen([*cli, "controller", *extra], stdout=log, stderr=subprocess.STDOUT, env=env)
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

    started = dockerhosts.start_hosts(3, first_ip=args.first_ip)
    try:
        yield [h.address for h in started], started
    finally:
        dockerhosts.stop_hosts(started)


def interleave(reps: int, ours: Callable[[int], float], theirs: Callable[[int], float]) -> tuple[list, list]:
    """Run both ``reps`` times, alternating which goes first, printing each pair."""
    mine, base = [], []
    for run in range(reps):
        if run % 2:
            mine.append(ours(run))
            base.append(theirs(run))
        else:
            base.append(theirs(run))
            mine.append(ours(run))
        print(f"  run {run + 1}: brokerctl {mine[-1]:.2f}s, baseline {base[-1]:.2f}s", flush=True)
    return mine, base


def alarm_line(alarms: list) -> str:
    return f"  node health false alarms under this load: {len(alarms)}" + "".join(
        f"\n    {e['kind']}/{e['name']} {e['reason']}: {e['message']}" for e in alarms)


def json_arg(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--json", help="also write the figures as JSON to this file (used by bench/run)")


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
