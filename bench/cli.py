#!/usr/bin/env python3
"""CLI start-up: wall time of `brokerctl --help` and `brokerctl get nodes` (3 nodes in the store),
against `python -c pass` measured in the same run (the interpreter's own start-up).

Run: `python bench/cli.py [--reps 10] [--quick] [--json FILE]`. Target: < 0.3 s each.
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

TARGET = 0.3


def timed(argv: list[str], env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> int:
    args = common.arguments(__doc__, reps=10, quick={"reps": 3}, quick_help="three repetitions")
    env = {**os.environ, "PYTHONPATH": str(common.ROOT)}
    with tempfile.TemporaryDirectory(prefix="bkcli-") as tmp:
        db = str(Path(tmp) / "b.db")
        brokerctl = [sys.executable, "-m", "reconciler", "--db", db]
        docs = common.node_docs([f"tcp://127.0.0.{i}:2375" for i in (91, 92, 93)], 4)
        subprocess.run([*brokerctl, "apply", "-f", "-"], input="\n---\n".join(map(json.dumps, docs)), text=True,
                       env=env, check=True, capture_output=True)
        runs = {"help": [], "get": [], "python": []}
        for _ in range(args.reps):
            runs["python"].append(timed([sys.executable, "-c", "pass"], env))
            runs["help"].append(timed([*brokerctl, "--help"], env))
            runs["get"].append(timed([*brokerctl, "get", "nodes"], env))
    figures = [
        common.figure("CLI start-up: brokerctl --help", runs["help"], runs["python"], "s", "< 0.3 s",
                      sorted(runs["help"])[len(runs["help"]) // 2] < TARGET, note="baseline: python -c pass"),
        common.figure("CLI start-up: brokerctl get nodes", runs["get"], runs["python"], "s", "< 0.3 s",
                      sorted(runs["get"])[len(runs["get"]) // 2] < TARGET, note="baseline: python -c pass"),
    ]
    for f in figures:
        print(f"{f['name']}: median {f['median']:.3f}s (spread {min(f['ours']):.3f}-{max(f['ours']):.3f}); "
              f"python -c pass {f['base_median']:.3f}s; target < {TARGET}s: {'met' if f['met'] else 'MISSED'}")
    common.write_json(args, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
