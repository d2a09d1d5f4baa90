#!/usr/bin/env python3
"""Store figures: `brokerctl apply` of 1,000 manifests in one call, `brokerctl get tasks -o json`
over 100,000 task rows, and the controller's resident memory and pass time with 100,000 task rows.

Run: `python bench/store.py [--rows 100000] [--manifests 1000] [--quick] [--json FILE]`.
Baselines, measured in the same run: the same rows written / read with plain sqlite3 from Python
(what the store costs on top of SQLite), and the resident memory of an idle interpreter that has
imported the package, and a plain sqlite3 read of the task rows. Targets: apply < 2 s, get < 2 s,
controller RSS < 300 MB, pass < 1 s (our own: a pass should fit in a busy controller's 1 s resync).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common  # noqa: E402  (puts the repository on sys.path)

from reconciler.spec.models import Job, Kind, TaskPhase  # noqa: E402
from reconciler.records import TaskRecord  # noqa: E402
from reconciler.store import Store  # noqa: E402


def job(i: int) -> dict:
    return {"apiVersion": "broker/v1", "kind": "Job", "metadata": {"name": f"job-{i:05d}", "labels": {"batch": "b"}},
            "spec": {"completions": 2, "suspend": True, "template": {"image": "busybox", "command": f"echo {i}"}}}


def timed(argv: list[str], env: dict, stdin: str | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(argv, input=stdin, text=True, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def fill_tasks(db: Path, rows: int) -> None:
    store = Store(db)
    store.apply([Job.model_validate(
        {**job(0), "metadata": {"name": "big"}, "spec": {"completions": 1, "template": {"image": "busybox"}}})])
    res = store.resource(Kind.JOB, "big")
    with store.transaction() as tx:
        for i in range(rows):
            store.insert_task(tx, TaskRecord(
                id=f"big-{res.uid[:5]}-{i}-1", owner_kind=Kind.JOB, owner_name="big", owner_uid=res.uid, index=i,
                attempt=1, phase=TaskPhase.SUCCEEDED, node="h1", container_id=f"{i:064x}", exit_code=0,
                reason="Completed", message="exit code 0", created_at=1.0, started_at=2.0, finished_at=3.0))
    store.close()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    args = common.arguments(__doc__, reps=3, options=(("--rows", int, 100_000), ("--manifests", int, 1000)),
                            quick={"rows": 10_000, "manifests": 200, "reps": 1},
                            quick_help="10,000 rows, 200 manifests, one repetition")
    env = {**os.environ, "PYTHONPATH": str(common.ROOT)}
    text = "\n---\n".join(json.dumps(job(i)) for i in range(args.manifests))
    applies, raw_writes, gets, raw_reads, rss, idle, passes, raw_scans = [], [], [], [], [], [], [], []
    with tempfile.TemporaryDirectory(prefix="bkstore-") as tmp:
        for rep in range(args.reps):
            db = Path(tmp) / f"apply-{rep}.db"
            cli = [sys.executable, "-m", "reconciler", "--db", str(db)]
            applies.append(timed([*cli, "apply", "-f", "-"], env, text))
            raw = sqlite3.connect(Path(tmp) / f"raw-{rep}.db")
            start = time.perf_counter()
            raw.execute("CREATE TABLE r (kind TEXT, name TEXT, spec TEXT, PRIMARY KEY (kind, name))")
            raw.executemany("INSERT INTO r VALUES (?, ?, ?)",
                            [("Job", f"job-{i:05d}", json.dumps(job(i)["spec"])) for i in range(args.manifests)])
            raw.commit()
            raw.close()
            raw_writes.append(time.perf_counter() - start)
        db = Path(tmp) / "tasks.db"
        fill_tasks(db, args.rows)
        cli = [sys.executable, "-m", "reconciler", "--db", str(db)]
        for _ in range(args.reps):
            gets.append(timed([*cli, "get", "tasks", "-o", "json"], env))
            start = time.perf_counter()
            conn = sqlite3.connect(db)
            cur = conn.execute("SELECT * FROM tasks")
            cols = [d[0] for d in cur.description]
            json.dumps([dict(zip(cols, r)) for r in cur.fetchall()])
            conn.close()
            raw_reads.append(time.perf_counter() - start)
        for _ in range(args.reps):
            with open(Path(tmp) / "ctl.log", "w") as log:
                ctl = subprocess.Popen([*cli, "controller", "--resync", "1"], stdout=log, stderr=subprocess.STDOUT,
                                       env=env)
                time.sleep(6)  # several passes over every row
                rss.append(rss_mb(ctl.pid))
                stats = Store(db).lease()["stats"]
                passes.append(stats["passSeconds"] / max(stats["passes"], 1))
                ctl.terminate()
                ctl.wait(30)
            start = time.perf_counter()
            conn = sqlite3.connect(db)
            conn.execute("SELECT * FROM tasks").fetchall()
            conn.close()
            raw_scans.append(time.perf_counter() - start)
            base = subprocess.Popen([sys.executable, "-c", "import reconciler.runtime.controller, time; time.sleep(3)"],
                                    env=env)
            time.sleep(2)
            idle.append(rss_mb(base.pid))
            base.wait()
    figures = [
        common.figure(f"apply of {args.manifests} manifests in one call", applies, raw_writes, "s", "< 2 s",
                      sorted(applies)[len(applies) // 2] < 2.0, note="baseline: the same rows with plain sqlite3"),
        common.figure(f"get tasks -o json over {args.rows:,} rows", gets, raw_reads, "s", "< 2 s",
                      sorted(gets)[len(gets) // 2] < 2.0, note="baseline: the same rows read to JSON with sqlite3"),
        common.figure(f"controller resident memory, {args.rows:,} task rows", rss, idle, "MB", "< 300 MB",
                      sorted(rss)[len(rss) // 2] < 300, note="baseline: idle interpreter with the package imported"),
        common.figure(f"controller pass time, {args.rows:,} task rows", passes, raw_scans, "s", "< 1 s",
                      sorted(passes)[len(passes) // 2] < 1.0,
                      note="mean over the passes of 6 s with --resync 1; baseline: the rows read with plain sqlite3; "
                           "target chosen here: a pass fits in the 1 s resync of a busy controller"),
    ]
    for f in figures:
        print(f"{f['name']}: {f['median']:.2f} {f['unit']} (baseline {f['base_median']:.2f}; ratio {f['ratio']:.1f}; "
              f"target {f['target']}: {'met' if f['met'] else 'MISSED'})")
    common.write_json(args, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
