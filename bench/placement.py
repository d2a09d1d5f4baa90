#!/usr/bin/env python3
"""Placement rate of the pure scheduler core: 100,000 tasks onto 5,000 simulated nodes.

Run: `python bench/placement.py [--nodes 5000] [--tasks 100000] [--namespaces 50] [--quick]`.
Prints placements per second for the indexed pipeline (``Pipeline.place``, what the controller
uses), the ratio to the 20,000/s target, and, as a baseline measured in the same run, the
full-scan placement (``Pipeline.place_one`` per task) on a sample of the same workload.
The workload mixes execution types, selectors, cpu requests and both placement modes.

Then the same workload spread over ``--namespaces`` namespaces (two Jobs each), offered through the
fair-share queue (``fairshare.FairQueue``, as the controller does by default), once without quotas
and once with a quota on every namespace (tasks, cpus, gpu slots; a third of them tight enough to
refuse), whose figure is published with its own full-scan baseline.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from reconciler.engine.fairshare import FairQueue, QueuePolicy  # noqa: E402
from reconciler.engine.quotas import NamespaceLimits  # noqa: E402
from reconciler.engine.scheduler import NodeView, Request, default_pipeline  # noqa: E402

TARGET_PER_SECOND = 20_000


def make_nodes(count: int, seed: int) -> list[NodeView]:
    rng = random.Random(seed)
    nodes = []
    for i in range(count):
        slots = {"default": rng.choice([16, 24, 32])}
        if i % 10 == 0:
            slots["gpu"] = 4
        nodes.append(NodeView(f"node-{i:05d}", ready=rng.random() > 0.02, schedulable=rng.random() > 0.01,
                              slots=slots, labels={"zone": rng.choice("abc")}, cpus=64, memory=256 << 30))
    return nodes


def make_requests(count: int, seed: int) -> list[Request]:
    rng = random.Random(seed)
    out = []
    for i in range(count):
        kind = rng.random()
        if kind < 0.05:
            out.append(Request(f"t{i}", "gpu", cpus=2.0))
        elif kind < 0.35:
            out.append(Request(f"t{i}", "default", cpus=1.0, selector=(("zone", "a"),)))
        elif kind < 0.5:
            out.append(Request(f"t{i}", "default", placement="binpack"))
        else:
            out.append(Request(f"t{i}", "default", cpus=0.5, memory=256 << 20))
    return out


def in_namespaces(reqs: list[Request], count: int, seed: int) -> list[Request]:
    """``reqs`` spread over ``count`` namespaces at random, each with two Jobs (owners), priority 0."""
    rng = random.Random(seed)
    out = []
    for r in reqs:
        ns = f"ns-{rng.randrange(count):02d}"
        out.append(replace(r, namespace=ns, owner=("Job", ns, f"job-{rng.randrange(2)}")))
    return out


def quotas(count: int, tasks: int) -> dict[str, NamespaceLimits]:
    """A quota on every namespace: generous for two thirds, and for every third one about half its fair part of
    the tasks, cpus and gpu slots, so that its refusals are part of the run."""
    each = tasks // count
    out = {}
    for i in range(count):
        tight = i % 3 == 0
        out[f"ns-{i:02d}"] = NamespaceLimits(f"ns-{i:02d}", tasks=each // 2 if tight else each * 2,
                                             cpus=each * 0.3 if tight else each * 2.0,
                                             slots={"gpu": each // 40 if tight else each})
    return out


def run_namespaced(nodes: int, tasks: int, seed: int, count: int, with_quotas: bool) -> tuple[float, int]:
    """The workload over ``count`` namespaces through the fair-share queue, with or without quotas."""
    views, reqs = make_nodes(nodes, seed), in_namespaces(make_requests(tasks, seed), count, seed)
    limits = quotas(count, tasks) if with_quotas else None
    policy = QueuePolicy()
    start = time.perf_counter()
    queue = FairQueue(reqs, {}, {}, policy.commitment)
    placed = default_pipeline().place(queue, views, limits, on_placed=queue.placed)
    elapsed = time.perf_counter() - start
    return elapsed, sum(p.node is not None for p in placed)


def run_namespaced_full_scan(nodes: int, tasks: int, seed: int, count: int) -> tuple[float, int]:
    views = make_nodes(nodes, seed)
    reqs = in_namespaces(make_requests(tasks, seed), count, seed)
    limits, pipeline, reserved, ok = quotas(count, tasks), default_pipeline(), {}, 0
    start = time.perf_counter()
    for r in reqs:
        held = reserved.setdefault(r.execution_type, {})
        p = pipeline.place_one(r, views, held, limits)
        for name in p.waits_on:
            held.setdefault(name, r.task_id)
        ok += p.node is not None
    return time.perf_counter() - start, ok


def run_indexed(nodes: int, tasks: int, seed: int) -> tuple[float, int]:
    views, reqs = make_nodes(nodes, seed), make_requests(tasks, seed)
    start = time.perf_counter()
    placed = default_pipeline().place(reqs, views)
    elapsed = time.perf_counter() - start
    return elapsed, sum(p.node is not None for p in placed)


def run_full_scan(nodes: int, tasks: int, seed: int) -> tuple[float, int]:
    views, reqs = make_nodes(nodes, seed), make_requests(tasks, seed)
    pipeline, reserved, ok = default_pipeline(), {}, 0
    start = time.perf_counter()
    for r in reqs:
        held = reserved.setdefault(r.execution_type, {})
        p = pipeline.place_one(r, views, held)
        for name in p.waits_on:
            held.setdefault(name, r.task_id)
        ok += p.node is not None
    return time.perf_counter() - start, ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=5000)
    ap.add_argument("--tasks", type=int, default=100_000)
    ap.add_argument("--baseline-tasks", type=int, default=500, help="tasks for the full-scan baseline")
    ap.add_argument("--namespaces", type=int, default=50, help="namespaces of the quota case")
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    ap.add_argument("--json", help="also write the figures as JSON to this file (used by bench/run)")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    if args.quick:
        args.nodes, args.tasks, args.baseline_tasks = 500, 5000, 100
    elapsed, placed = run_indexed(args.nodes, args.tasks, args.seed)
    rate = args.tasks / elapsed
    base_elapsed, _ = run_full_scan(args.nodes, args.baseline_tasks, args.seed)
    base_rate = args.baseline_tasks / base_elapsed
    print(f"placement: {args.tasks} tasks on {args.nodes} nodes in {elapsed:.2f}s "
          f"({placed} placed, {args.tasks - placed} left Pending)")
    print(f"  indexed pipeline:  {rate:,.0f} placements/s  (target {TARGET_PER_SECOND:,}/s: "
          f"ratio {rate / TARGET_PER_SECOND:.2f}, {'met' if rate >= TARGET_PER_SECOND else 'MISSED'})")
    print(f"  full-scan baseline: {base_rate:,.0f} placements/s on the first {args.baseline_tasks} tasks "
          f"(indexed is {rate / base_rate:.0f}x)")
    figures = [figure(f"Placement rate, {args.nodes} nodes / {args.tasks} tasks", rate, base_rate,
                      "baseline: full scan per task")]

    ns = args.namespaces
    free_elapsed, free_placed = run_namespaced(args.nodes, args.tasks, args.seed, ns, with_quotas=False)
    q_elapsed, q_placed = run_namespaced(args.nodes, args.tasks, args.seed, ns, with_quotas=True)
    q_base_elapsed, _ = run_namespaced_full_scan(args.nodes, args.baseline_tasks, args.seed, ns)
    free_rate, q_rate = args.tasks / free_elapsed, args.tasks / q_elapsed
    q_base_rate = args.baseline_tasks / q_base_elapsed
    print(f"placement over {ns} namespaces, fair-share queue: {args.tasks} tasks on {args.nodes} nodes")
    print(f"  without quotas:    {free_rate:,.0f} placements/s  ({free_placed} placed)")
    print(f"  with quotas:       {q_rate:,.0f} placements/s  ({q_placed} placed, {args.tasks - q_placed} left Pending; "
          f"target {TARGET_PER_SECOND:,}/s: ratio {q_rate / TARGET_PER_SECOND:.2f}, "
          f"{'met' if q_rate >= TARGET_PER_SECOND else 'MISSED'})")
    print(f"  full-scan baseline with quotas: {q_base_rate:,.0f} placements/s on the first {args.baseline_tasks} tasks")
    figures.append(figure(f"Placement rate, {args.nodes} nodes / {args.tasks} tasks, {ns} namespaces with quotas",
                          q_rate, q_base_rate, f"fair-share queue; {free_rate:,.0f}/s without quotas; "
                                                 "baseline: full scan per task"))
    if args.json:
        import json

        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0


def figure(name: str, rate: float, base_rate: float, note: str) -> dict:
    return {"name": name, "unit": "placements/s", "ours": [rate], "base": [base_rate], "median": rate,
            "base_median": base_rate, "ratio": TARGET_PER_SECOND / rate, "target": f">= {TARGET_PER_SECOND:,}/s",
            "met": rate >= TARGET_PER_SECOND, "note": f"ratio: target / measured (lower is better); {note}"}


if __name__ == "__main__":
    sys.exit(main())
