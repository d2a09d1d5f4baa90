#!/usr/bin/env python3
"""Fair share: a namespace arriving behind another's backlog gets its share of the slots.

Run: `python bench/fairness.py [--backlog 200] [--late 50] [--seconds 2] [--slots 4] [--reps 2] [--quick]
[--addresses A,B,C | --first-ip N]`. Starts its own throwaway daemons unless ``--addresses`` names running ones.

On 3 hosts of ``--slots`` slots, `team-a` submits ``--backlog`` tasks of ``--seconds`` each; once they
hold every slot, `team-b` (equal share) submits ``--late``. The figure is team-b's part of the
slot-seconds run from the first start after its arrival (the queue's first choice; until then every
slot is held by tasks started before, which no queue order could change) until its last task's
start, from the tasks' start and finish times: fair share should give it half. Target: within 10% of the weights, that is team-b's part
over its fair part (1/2) between 0.9 and 1.1. Baseline, interleaved with it: the same submissions
to a controller run with `--queue fifo` (priority, then first come), where team-b waits behind
the backlog.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common  # noqa: E402  (puts the repository on sys.path)

from reconciler.kinds import TaskPhase  # noqa: E402

TOLERANCE = 0.10  # of the weights
FAIR_PART = 0.5  # team-b's fair part with equal shares


def namespaces() -> list[dict]:
    return [{"apiVersion": "broker/v1", "kind": "Namespace", "metadata": {"name": n}, "spec": {}}
            for n in ("team-a", "team-b")]


def job(namespace: str, name: str, count: int, seconds: float) -> dict:
    return {"apiVersion": "broker/v1", "kind": "Job", "metadata": {"name": name, "namespace": namespace},
            "spec": {"completions": count, "parallelism": count,
                     "template": {"image": "busybox", "command": ["sleep", f"{seconds:g}"]}}}


def apply(db: Path, doc: dict) -> None:
    subprocess.run([sys.executable, "-m", "reconciler", "--db", str(db), "apply", "-f", "-"], input=json.dumps(doc),
                   text=True, check=True, capture_output=True, env={**os.environ, "PYTHONPATH": str(common.ROOT)})


def wait(what: str, done, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.25)


def split(tasks, arrived: float) -> tuple[float, int, int]:
    """team-b's part of the slot-seconds run from the first start after ``arrived`` until team-b's last start,
    and its and everyone's starts in that time."""
    since = min(t.started_at for t in tasks if t.started_at is not None and t.started_at >= arrived)
    until = max(t.started_at for t in tasks if t.namespace == "team-b")
    use = {"team-a": 0.0, "team-b": 0.0}
    starts = {"team-a": 0, "team-b": 0}
    for t in tasks:
        if t.started_at is None:
            continue
        end = until if t.finished_at is None else min(t.finished_at, until)
        use[t.namespace] += max(0.0, end - max(t.started_at, since))
        starts[t.namespace] += since <= t.started_at <= until
    total = use["team-a"] + use["team-b"]
    return (use["team-b"] / total if total else 0.0), starts["team-b"], starts["team-a"] + starts["team-b"]


def run(addresses: list[str], args, workdir: Path, tag: str, queue: str, alarms: list) -> float:
    slots = args.slots * len(addresses)
    docs = common.node_docs(addresses, args.slots) + namespaces()
    with common.controller(workdir, tag, docs, alarms, options=("--queue", queue)) as store:
        db = workdir / f"{tag}.db"
        apply(db, job("team-a", "backlog", args.backlog, args.seconds))
        timeout = 60 + 4 * args.seconds * (args.backlog + args.late) / slots
        wait("team-a on every slot", lambda: sum(t.phase is TaskPhase.RUNNING
                                                 for t in store.tasks(namespace="team-a")) >= slots, timeout)
        arrived = time.time()
        apply(db, job("team-b", "late", args.late, args.seconds))
        wait("team-b's tasks all started", lambda: (late := store.tasks(namespace="team-b")) and len(late) == args.late
             and all(t.started_at is not None for t in late), timeout)
        share, b_starts, starts = split(store.tasks(), arrived)
    print(f"    {queue}: team-b {share:.1%} of the slot-seconds from the first start after its arrival to its last start "
          f"({b_starts} of {starts} starts)", flush=True)
    return share


def main() -> int:
    args = common.arguments(__doc__, reps=2, first_ip=131,
                            options=(("--backlog", int, 200), ("--late", int, 50), ("--seconds", float, 2.0),
                                     ("--slots", int, 4)),
                            quick={"backlog": 40, "late": 10, "seconds": 1.0, "reps": 1},
                            quick_help="40 + 10 one-second tasks, one repetition: a smoke run")
    alarms: list = []
    with common.hosts(args) as (addresses, _), tempfile.TemporaryDirectory(prefix="bkfair-") as tmp:
        fair, fifo = common.interleave(
            args.reps, lambda rep: run(addresses, args, Path(tmp), f"fair-{rep}", "fair", alarms),
            lambda rep: run(addresses, args, Path(tmp), f"fifo-{rep}", "fifo", alarms))
    import statistics

    share, base = statistics.median(fair), statistics.median(fifo)
    ratio = share / FAIR_PART
    met = abs(ratio - 1) <= TOLERANCE
    print(f"fair share: team-a {args.backlog} x {args.seconds:g} s tasks, then team-b {args.late}, equal shares, "
          f"{len(addresses)} hosts x {args.slots} slots; median of {args.reps}:")
    print(f"  fair queue: team-b {share:.1%} of the slot-seconds (its fair part {FAIR_PART:.0%}; ratio {ratio:.2f}, "
          f"target {1 - TOLERANCE:.1f}-{1 + TOLERANCE:.1f}: {'met' if met else 'MISSED'})")
    print(f"  FIFO queue (baseline): team-b {base:.1%}")
    print(common.alarm_line(alarms))
    common.write_json(args, [common.figure(
        f"Fair share: team-b's part after arriving behind {args.backlog} tasks", [s * 100 for s in fair],
        [s * 100 for s in fifo], "%", f"{FAIR_PART * (1 - TOLERANCE):.0%}-{FAIR_PART * (1 + TOLERANCE):.0%}", met,
        ratio=ratio, note="ratio: part / fair part (1/2, equal shares); baseline: controller --queue fifo; "
                          f"node false alarms: {len(alarms)}")])
    return 0


if __name__ == "__main__":
    sys.exit(main())
