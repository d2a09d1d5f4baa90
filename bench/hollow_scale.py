#!/usr/bin/env python3
"""Scale without a thousand daemons: 1,000 hollow Docker hosts x 10 slots, one controller.

Run: `python bench/hollow_scale.py [--nodes 1000] [--slots 10] [--fail 100] [--window 20] [--quick]
[--first 127.5.0.1] [--profile FILE]`. Needs no Docker: the hosts are ``bench/hollow.py`` in a
child process (so its CPU is not the controller's), each on its own 127.5.x.y address and a free
port. Three figures, each against a baseline measured in the same run on the same hollow hosts:

(a) Burst: a Job of nodes x slots completions (parallelism as many), from the start of
    `brokerctl apply -f job.yaml` until the hosts report every container running (the hollow
    process's own count, polled every 0.1 s). Target <= 60 s. Baseline: the same number of
    create + start calls sent directly with the Docker SDK from a pool of 32 threads (the
    controller's worker count) to the same hosts, 10 per host: what the Docker calls alone cost
    here, with no store, planning or bookkeeping. (Its containers are removed before the
    controller starts.)
(b) Steady state with every container running: the controller's CPU (utime + stime from /proc,
    every thread) and resident memory, and its Docker API calls per pass besides the probes
    (its own counters, published with its heartbeat), over ``--reps`` windows of ``--window`` s.
    Targets: CPU < 25% of a core, RSS < 500 MB. Baselines: CPU, a poller that pings and lists
    every node once a second (the least a reconciler that lists on every pass does); RSS, the same
    controller with the Nodes applied and no task, measured before the Job; calls per pass, one
    list per node.
(c) Failover: ``--fail`` spare hosts are applied as Nodes (so the cluster has room), then ``--fail``
    loaded hosts are killed at once (``kill`` on hollow's control endpoint: connections reset and
    refused, like SIGKILL of dockerd; their containers keep "running" there). Measured from the
    first NodeLost event of a killed Node (the loss declared) until the live hosts run every
    completion again. Target <= 5 s. Baseline: the same number of create + start calls sent
    directly with the SDK pool to the spare hosts (timed before they became Nodes), the floor
    of starting those containers again.

``--quick`` (50 nodes, 5 failed, one 3 s window) is the size `bench/run --quick` and the test
suite use. ``--profile FILE`` runs the controller under cProfile (its main thread: the passes)
and writes the stats there when it stops.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import common  # noqa: E402  (puts the repository on sys.path)
import docker  # noqa: E402
import hollow  # noqa: E402
from reconciler.kinds import Kind  # noqa: E402

BURST_TARGET, CPU_TARGET, RSS_TARGET_MB, FAILOVER_TARGET = 60.0, 25.0, 500.0, 5.0
POOL = 32  # the controller's worker threads (runtime.controller.Controller workers)
COMMAND = ["sh", "-c", "sleep 86400"]  # hollow runs it as "sleeps a day": running for the whole run
BASELINE_LABEL = "brokerctl-bench.baseline"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def poll(predicate, timeout: float, what: str, every: float = 0.1) -> float:
    """Call ``predicate`` every ``every`` s until it is true; returns the time.time() it was."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(every)
    return time.time()


def running_on(sim, names: set[str]) -> int:
    """Containers running on the named hollow hosts, as the hosts themselves report it."""
    return sum(h["running"] for h in sim.hosts() if h["name"] in names)


# -- the SDK baseline ----------------------------------------------------------------------------


def sdk_burst(addresses: list[str], per_host: int, tag: str) -> float:
    """Create + start ``per_host`` containers on each address from a pool of POOL threads; returns
    the seconds it took. The containers are removed afterwards (not timed)."""
    clients = {a: docker.DockerClient(base_url=a, version="1.41", timeout=60) for a in addresses}
    work = [(a, f"base-{tag}-{i}-{k}") for i, a in enumerate(addresses) for k in range(per_host)]

    def start(item):
        address, name = item
        api = clients[address].api
        cid = api.create_container("busybox", COMMAND, name=name, labels={BASELINE_LABEL: tag}, detach=True)["Id"]
        api.start(cid)
        return address, cid

    def remove(item):
        address, cid = item
        clients[address].api.remove_container(cid, force=True)

    try:
        with ThreadPoolExecutor(POOL) as pool:
            began = time.perf_counter()
            made = list(pool.map(start, work))
            took = time.perf_counter() - began
            list(pool.map(remove, made))
    finally:
        for c in clients.values():
            c.close()
    return took


# -- the controller --------------------------------------------------------------------------------


PROFILED = """
import cProfile, os, runpy, sys
path, sys.argv = sys.argv[1], ["brokerctl", *sys.argv[2:]]
profile, real_exit = cProfile.Profile(), os._exit
def dump_and_exit(code):  # the controller ends with os._exit when a signal finds it busy
    profile.disable()
    profile.dump_stats(path)
    real_exit(code)
os._exit = dump_and_exit
profile.enable()
try:
    runpy.run_module("reconciler", run_name="__main__")
finally:
    profile.disable()
    profile.dump_stats(path)
"""


def controller(workdir: Path, docs: list[dict], profile: str | None):
    """``common.controller``; with ``profile``, the controller's main thread (its passes) runs under cProfile."""
    launcher = [sys.executable, "-c", PROFILED, str(Path(profile).resolve())] if profile else None
    return common.controller(workdir, "hollow", docs, launcher=launcher)


def controller_pid(store) -> int:
    """The controller's pid from its lease (the profiled run's python, not the wrapper shell)."""
    poll(lambda: store.lease() is not None, 60, "the controller's lease")
    return int(store.lease()["pid"])


def ready_nodes(store, names: set[str]) -> int:
    return sum(r.name in names and r.status.get("condition") == "Ready" for r in store.resources(Kind.NODE))


def job_doc(name: str, completions: int) -> dict:
    return {"apiVersion": "broker/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"completions": completions, "parallelism": completions,
                     "template": {"image": "busybox", "command": COMMAND}}}


def apply(store_path: Path, *docs: dict) -> None:
    """``brokerctl apply -f -`` of ``docs``, as a user would run it."""
    env = {**os.environ, "PYTHONPATH": str(common.ROOT)}
    subprocess.run([sys.executable, "-m", "reconciler", "--db", str(store_path), "apply", "-f", "-"],
                   input="\n---\n".join(map(json.dumps, docs)), text=True, check=True, capture_output=True, env=env)


def steady_window(store, pid: int, seconds: float) -> dict:
    before, cpu0, t0 = store.lease()["stats"], common.cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    after, cpu1 = store.lease()["stats"], common.cpu_seconds(pid)
    elapsed = time.monotonic() - t0
    passes = after["passes"] - before["passes"]
    calls = {k: n - before["dockerCalls"].get(k, 0) for k, n in after["dockerCalls"].items()}
    calls = {k: n for k, n in calls.items() if n}
    pings = calls.get("GET /_ping", 0)
    return {"cpu": 100 * (cpu1 - cpu0) / elapsed, "rss": rss_mb(pid), "passes": passes / elapsed,
            "calls": (sum(calls.values()) - pings) / max(passes, 1), "pings": pings / elapsed,
            "lists": (after["lists"] - before["lists"]) / max(passes, 1),
            "pass_ms": 1000 * (after["passSeconds"] - before["passSeconds"]) / max(passes, 1), "by_call": calls}


def poller_cpu(addresses: list[str], store_id: str, seconds: float) -> float:
    env = {**os.environ, "PYTHONPATH": str(common.ROOT)}
    proc = subprocess.Popen(common.poller_command(addresses, 30.0, store_id), env=env)
    try:
        time.sleep(2)  # its imports and first connections are not its steady work
        cpu0, t0 = common.cpu_seconds(proc.pid), time.monotonic()
        time.sleep(seconds)
        return 100 * (common.cpu_seconds(proc.pid) - cpu0) / (time.monotonic() - t0)
    finally:
        proc.terminate()
        proc.wait(10)


def lost_declared(store, names: set[str]) -> list[float]:
    """When each of ``names`` was declared Lost (its NodeLost event)."""
    return sorted(e["ts"] for e in store.events(limit=None)
                  if e["kind"] == "Node" and e["reason"] == "NodeLost" and e["name"] in names)


def main() -> int:
    args = common.arguments(
        __doc__, reps=3,
        options=(("--nodes", int, 1000), ("--slots", int, 10), ("--fail", int, 100), ("--window", float, 20.0),
                 ("--first", str, "127.5.0.1"), ("--profile", str, None)),
        quick={"nodes": 50, "fail": 5, "window": 3.0, "reps": 1},
        quick_help="50 nodes, 5 failed, one 3 s window: a smoke run")
    nodes, slots, fail = args.nodes, args.slots, args.fail
    total = nodes * slots
    if not 0 < fail <= nodes:
        raise SystemExit(f"--fail {fail}: must be between 1 and --nodes ({nodes})")
    t_start = time.monotonic()
    sim = hollow.start_hollow(nodes + fail, first=args.first, port=0, slots_hint=slots, subprocess=True)
    print(f"  {nodes + fail} hollow hosts up from {args.first} ({nodes} Nodes, {fail} spare)", flush=True)
    loaded = [f"h{i + 1}" for i in range(nodes)]
    spare = [f"h{nodes + i + 1}" for i in range(fail)]
    address = dict(zip(sim.names, sim.addresses))
    # The failed hosts are spread over the cluster (every nodes/fail-th), not one end of it.
    victims = set(loaded[:: max(1, nodes // fail)][:fail])
    fig: dict[str, list[float]] = {k: [] for k in ("cpu", "rss", "calls", "passes", "pings", "lists", "pass_ms",
                                                   "poller")}
    try:
        with tempfile.TemporaryDirectory(prefix="bkhollow-") as tmp:
            workdir = Path(tmp)
            base_burst = sdk_burst([address[n] for n in loaded], slots, "burst")
            base_failover = sdk_burst([address[n] for n in spare], slots, "failover")
            print(f"  baseline: {total} create+start by the SDK pool in {base_burst:.2f}s; {fail * slots} on the "
                  f"spare hosts in {base_failover:.2f}s", flush=True)
            with controller(workdir, common.node_docs([address[n] for n in loaded], slots, loaded),
                            args.profile) as store:
                pid = controller_pid(store)
                poll(lambda: ready_nodes(store, set(loaded)) == nodes, 120, f"{nodes} Nodes Ready", every=0.5)
                time.sleep(2)
                idle_rss = rss_mb(pid)
                began = time.time()
                apply(workdir / "hollow.db", job_doc("burst", total))
                done = poll(lambda: sim.stats()["running"] >= total, 600, f"{total} containers running")
                burst = done - began
                print(f"  (a) {total} completions from apply to all started: {burst:.2f}s", flush=True)
                time.sleep(3 if args.quick else 8)  # the last starts recorded; nothing left to do
                for rep in range(args.reps):
                    w = steady_window(store, pid, args.window)
                    for k in ("cpu", "rss", "calls", "passes", "pings", "lists", "pass_ms"):
                        fig[k].append(w[k])
                    fig["poller"].append(poller_cpu([address[n] for n in loaded], store.store_id, args.window))
                    print(f"  (b) window {rep + 1}: controller CPU {w['cpu']:.1f}%, RSS {w['rss']:.0f} MB, "
                          f"{w['passes']:.2f} passes/s, mean pass {w['pass_ms']:.0f} ms, Docker calls {w['by_call']}; "
                          f"poller CPU {fig['poller'][-1]:.1f}%", flush=True)
                if sim.stats()["running"] != total:
                    raise AssertionError("the steady state did not hold: containers changed during the windows")
                apply(workdir / "hollow.db", *common.node_docs([address[n] for n in spare], slots, spare))
                poll(lambda: ready_nodes(store, set(spare)) == fail, 120, f"{fail} spare Nodes Ready", every=0.5)
                time.sleep(2)
                killed_at = time.time()
                for name in sorted(victims):
                    sim.kill(name)
                live = set(loaded + spare) - victims
                moved = poll(lambda: running_on(sim, live) >= total, 300, "the lost tasks running elsewhere")
                declared = lost_declared(store, victims)
                if len(declared) != len(victims):
                    raise AssertionError(f"{len(declared)} NodeLost events for {len(victims)} killed Nodes")
                failover = moved - declared[0]
                print(f"  (c) {len(victims)} hosts killed: declared Lost {declared[0] - killed_at:.2f}-"
                      f"{declared[-1] - killed_at:.2f}s after the kill; all {fail * slots} tasks running elsewhere "
                      f"{failover:.2f}s after the first declaration", flush=True)
    finally:
        sim.stop()
    med = {k: statistics.median(v) for k, v in fig.items()}
    figures = [
        common.figure(f"Hollow {nodes} nodes: {total}-completion Job, apply -> all started", [burst], [base_burst],
                      "s", f"<= {BURST_TARGET:g} s", burst <= BURST_TARGET,
                      note=f"baseline: {total} create+start through the Docker SDK from {POOL} threads, same hosts"),
        common.figure(f"Hollow {nodes} nodes, {total} running: controller CPU", fig["cpu"], fig["poller"], "%",
                      f"< {CPU_TARGET:g}% of a core", med["cpu"] < CPU_TARGET,
                      note=f"baseline: a poller that pings and lists every node once a second; "
                           f"{med['passes']:.2f} passes/s, mean pass {med['pass_ms']:.0f} ms, "
                           f"{med['pings'] / nodes:.2f} probes/s per node"),
        common.figure(f"Hollow {nodes} nodes, {total} running: controller memory", fig["rss"], [idle_rss], "MB",
                      f"< {RSS_TARGET_MB:g} MB", med["rss"] < RSS_TARGET_MB,
                      note="baseline: the same controller with the Nodes and no task"),
        common.figure(f"Hollow {nodes} nodes, {total} running: Docker API calls per pass", fig["calls"],
                      [float(nodes)] * len(fig["calls"]), "calls", f"<= 1 list per node ({nodes})",
                      med["calls"] <= nodes,
                      note=f"besides the probes; baseline: one list per node per pass; {med['lists']:.1f} lists/pass"),
        common.figure(f"Hollow failover of {len(victims)} of {nodes} nodes: Lost -> all running elsewhere",
                      [failover], [base_failover], "s", f"<= {FAILOVER_TARGET:g} s", failover <= FAILOVER_TARGET,
                      note=f"baseline: {fail * slots} create+start through the SDK pool; Lost declared "
                           f"{declared[0] - killed_at:.1f} s after the kill"),
    ]
    print(f"hollow scale, {nodes} nodes x {slots} slots ({time.monotonic() - t_start:.0f}s in all):")
    for f in figures:
        base = f" (baseline {f['base_median']:.2f} {f['unit']}, ratio {f['ratio']:.2f})" if f["ratio"] else ""
        print(f"  {f['name']}: {f['median']:.2f} {f['unit']}{base}; target {f['target']}: "
              f"{'met' if f['met'] else 'MISSED'}")
    common.write_json(args, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
