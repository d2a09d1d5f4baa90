#!/usr/bin/env python3
"""Pass time vs history: the controller's pass and memory with 300 active tasks, at 0 and at
100,000 finished task rows, on SQLite and on PostgreSQL.

Run: `python bench/history.py [--rows 100000] [--replicas 300] [--window 10] [--reps 3] [--first-ip 201]
[--backends sqlite,postgresql] [--budgets] [--quick] [--json FILE]`.
`--budgets`: the history is split between two Namespaces, each with a budget (too large to be spent)
and a Job whose tasks wait every pass (a nodeSelector no node has), its tasks finished in the last
hour: each pass asks both budgets and both namespaces' fair-share usage, history included.
The active tasks are a Service's replicas on three hollow Docker hosts (bench/hollow.py, in a child
process, on 127.0.0.FIRST_IP and the next two, each on a free port); the history is finished Jobs (1,000 succeeded
completions each), written before the controller starts. PostgreSQL is a throwaway cluster
(scripts/pgcluster.py). Once every replica runs and the first passes have settled the finished
Jobs, the mean pass (from the controller's own counters in its lease row) is measured over windows
of `--window` seconds, with the rows it read per pass and its resident memory (VmRSS; VmHWM also
holds the first pass, which reads everything). Baseline: the same at 0 finished rows on the same
backend. Target (issue 16): the pass at 100,000 rows within 1.5x of the pass at 0 rows, and under
50 ms.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common  # noqa: E402  (puts the repository and scripts/ on sys.path)

from hollow import start_hollow  # noqa: E402
from reconciler.kinds import Kind, TaskPhase  # noqa: E402
from reconciler.records import TaskRecord  # noqa: E402
from reconciler.spec.manifests import load_text  # noqa: E402
from reconciler.store import Store  # noqa: E402
from reconciler.store.db import encode  # noqa: E402
from reconciler.store.tasks import _COLUMN_OF, _FIELDS  # noqa: E402

PER_JOB = 1000  # finished completions per Job of the history
TEAMS = ("team-a", "team-b")  # the Namespaces of --budgets
RATIO_TARGET, PASS_TARGET_MS = 1.5, 50.0


def docs(addresses: list[str], replicas: int, jobs: int, budgets: bool = False) -> str:
    nodes = common.node_docs(addresses, -(-replicas // len(addresses)) + 10)
    service = {"apiVersion": "broker/v1", "kind": "Service", "metadata": {"name": "active"},
               "spec": {"replicas": replicas, "template": {"image": "busybox", "command": ["sleep", "1d"]}}}
    history = [{"apiVersion": "broker/v1", "kind": "Job",
                "metadata": {"name": f"done-{i:04d}"} | ({"namespace": TEAMS[i % 2]} if budgets else {}),
                "spec": {"completions": PER_JOB, "parallelism": 10,
                         "template": {"image": "busybox", "resources": {"cpus": 0.5}}}}
               for i in range(jobs)]
    teams = []
    if budgets:
        for team in TEAMS:
            teams.append({"apiVersion": "broker/v1", "kind": "Namespace", "metadata": {"name": team},
                          "spec": {"budget": {"cpuHours": 1_000_000, "window": "30d"}}})
            teams.append({"apiVersion": "broker/v1", "kind": "Job", "metadata": {"name": "waits", "namespace": team},
                          "spec": {"completions": 5, "parallelism": 5, "nodeSelector": {"pool": "none"},
                                   "template": {"image": "busybox"}}})
    return "\n---\n".join(json.dumps(d) for d in [*nodes, *teams, service, *history])


def fill_history(store: Store, rows: int) -> None:
    """``rows`` succeeded tasks of the finished Jobs, copied in one transaction (COPY on PostgreSQL)."""
    jobs = [r for r in store.resources(Kind.JOB) if r.name.startswith("done-")]
    columns = [_COLUMN_OF.get(name, name) for name in _FIELDS]

    jobs.sort(key=lambda r: r.name)
    # Finished in the hour before now (inside a budget's window), one a few tens of milliseconds after another.
    t0, step = time.time() - 3600, 3000 / max(rows, 1)

    def tasks():
        for i in range(rows):
            res = jobs[i // PER_JOB]
            index = i % PER_JOB
            start = t0 + i * step
            t = TaskRecord(id=f"{res.name}-{res.uid[:5]}-{index}-1", owner_kind=Kind.JOB, owner_name=res.name,
                           namespace=res.namespace, owner_uid=res.uid, index=index, attempt=1,
                           phase=TaskPhase.SUCCEEDED, node="h1", container_id=f"{i:064x}", exit_code=0,
                           reason="Completed", message="exit code 0", created_at=start - 1, started_at=start,
                           finished_at=start + 30)
            yield tuple(encode(getattr(t, name)) for name in _FIELDS)

    with store.transaction():
        store.backend.copy_rows("tasks", columns, tasks())


def memory_mb(pid: int) -> dict[str, float]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024
    return out


def running(store: Store) -> int:
    return sum(t.phase is TaskPhase.RUNNING for t in store.tasks(active_only=True))


def measure(url: str, rows: int, args, workdir: Path, tag: str) -> dict:
    """Every replica running over ``rows`` finished rows: pass time (ms) per window, rows read, memory."""
    hollow = start_hollow(3, first=f"127.0.0.{args.first_ip}", port=0, subprocess=True)  # free ports: no clash
    store = Store(url)
    env = {**os.environ, "PYTHONPATH": str(common.ROOT)}
    ctl = None
    try:
        jobs = -(-rows // PER_JOB)
        store.apply([m.resource for m in load_text(docs(hollow.addresses, args.replicas, jobs, args.budgets),
                                                   "bench.yaml")])
        filled = time.monotonic()
        fill_history(store, rows)
        print(f"  {tag}: {rows:,} finished rows written in {time.monotonic() - filled:.1f}s", flush=True)
        with open(workdir / f"{tag}-controller.log", "w") as log:
            ctl = subprocess.Popen([sys.executable, "-m", "reconciler", "--db", str(url), "controller"],
                                   stdout=log, stderr=subprocess.STDOUT, env=env)
            deadline = time.time() + 120 + args.replicas
            while True:
                lease = store.lease()
                held = lease and lease["stats"].get("tasksHeld")
                waiting = 5 * len(TEAMS) if args.budgets else 0
                if held is not None and held <= args.replicas + waiting + 10 and running(store) == args.replicas:
                    break
                if time.time() > deadline or ctl.poll() is not None:
                    raise TimeoutError(f"{tag}: {args.replicas} replicas not running in time (see {log.name})")
                time.sleep(0.5)
            time.sleep(3)  # the last starts recorded; nothing left to do
            first = memory_mb(ctl.pid)
            windows, read, cpu = [], [], []
            for _ in range(args.reps):
                before = store.lease()["stats"]
                time.sleep(args.window)
                after = store.lease()["stats"]
                passes = after["passes"] - before["passes"]
                windows.append(1000 * (after["passSeconds"] - before["passSeconds"]) / max(passes, 1))
                cpu.append(1000 * (after["passCpuSeconds"] - before["passCpuSeconds"]) / max(passes, 1))
                read.append(after["lastPassRowsRead"])
            mem = memory_mb(ctl.pid)
            if running(store) != args.replicas:
                raise AssertionError(f"{tag}: the replicas did not stay running")
        print(f"  {tag}: mean pass {statistics.median(windows):.1f} ms (windows {', '.join(f'{w:.1f}' for w in windows)}; "
              f"CPU of the loop's thread {statistics.median(cpu):.1f} ms), load average {os.getloadavg()[0]:.1f},"
              f" rows read by the last pass {read[-1]}, RSS {mem['VmRSS']:.0f} MB (peak {first['VmHWM']:.0f} MB)",
              flush=True)
        return {"pass_ms": windows, "cpu_ms": cpu, "rss": mem["VmRSS"], "peak": mem["VmHWM"], "read": read,
                "load": os.getloadavg()[0]}
    finally:
        if ctl is not None:
            ctl.terminate()
            ctl.wait(30)
        store.close()
        hollow.stop()


def main() -> int:
    args = common.arguments(__doc__, reps=3, options=(
        ("--rows", int, 100_000), ("--replicas", int, 300), ("--window", float, 10.0), ("--first-ip", int, 201),
        ("--backends", str, "sqlite,postgresql"), ("--budgets", bool, False)),
        quick={"rows": 5_000, "replicas": 30, "window": 3.0, "reps": 1},
        quick_help="5,000 rows, 30 replicas, one 3 s window")
    import pgcluster

    figures = []
    variant = ", two namespaces with budgets and tasks waiting" if args.budgets else ""
    with tempfile.TemporaryDirectory(prefix="bkhistory-") as tmp:
        for backend in args.backends.split(","):
            cluster = pgcluster.start_cluster(fast=True) if backend == "postgresql" else None
            try:
                def url(tag: str) -> str:
                    if cluster is None:
                        return str(Path(tmp) / f"{tag}.db")
                    cluster.create_database(tag)
                    return cluster.url_for(tag)

                base = measure(url(f"{backend}_empty"), 0, args, Path(tmp), f"{backend}, 0 rows")
                full = measure(url(f"{backend}_history"), args.rows, args, Path(tmp), f"{backend}, {args.rows:,} rows")
            finally:
                if cluster is not None:
                    cluster.remove()
            med, base_med = statistics.median(full["pass_ms"]), statistics.median(base["pass_ms"])
            met = med <= RATIO_TARGET * base_med and med < PASS_TARGET_MS
            figures.append(common.figure(
                f"Controller pass, {args.replicas} active tasks, {args.rows:,} finished task rows{variant} ({backend})",
                full["pass_ms"], base["pass_ms"], "ms", f"<= {RATIO_TARGET:g}x the 0-row pass and < {PASS_TARGET_MS:g} ms",
                met, note=f"baseline: the same at 0 finished rows; rows read per pass {full['read'][-1]} "
                          f"(0 rows: {base['read'][-1]}); CPU of the pass {statistics.median(full['cpu_ms']):.1f} ms "
                          f"(0 rows: {statistics.median(base['cpu_ms']):.1f} ms); load average {full['load']:.1f}"))
            figures.append(common.figure(
                f"Controller memory, {args.replicas} active tasks, {args.rows:,} finished task rows{variant} ({backend})",
                [full["rss"]], [base["rss"]], "MB", "< 300 MB", full["rss"] < 300,
                note=f"VmRSS in the steady state; baseline: the same at 0 finished rows; peak (VmHWM, the first pass "
                     f"reads every row) {full['peak']:.0f} MB, {base['peak']:.0f} MB at 0 rows"))
    for f in figures:
        print(f"{f['name']}: {f['median']:.1f} {f['unit']} (baseline {f['base_median']:.1f}; ratio {f['ratio']:.2f}; "
              f"target {f['target']}: {'met' if f['met'] else 'MISSED'})")
    common.write_json(args, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
