"""The controller loop on real dockerd hosts: published stats, steady-state cost, commit nudges,
slot reuse by the next task, and container-list reuse that an event invalidates."""

from __future__ import annotations

import re
import threading
import time
from datetime import datetime

import pytest

from helpers import (
    SERVE, ControllerProcess, cli, cli_json, job_yaml, nodes_yaml, running, service_status, service_yaml, tasks_of,
    wait_for,
)
from reconciler.store import Store

pytestmark = pytest.mark.timeout(120)

STATS = re.compile(r"(\d+) passes \(last \d+ ms, \d+ rows read, \d+ tasks held\), (\d+) container lists, CPU ([\d.]+)% of a core since start")


def docker_calls(status_text: str) -> dict[str, int]:
    """``Docker API calls: GET /_ping 12, ...`` of ``brokerctl status`` as {endpoint: count}."""
    m = re.search(r"Docker API calls: (.*)$", status_text, re.M)
    if not m:
        return {}
    calls = {}
    for item in m.group(1).split(", "):
        endpoint, n = item.rsplit(" ", 1)
        calls[endpoint] = int(n)
    return calls


def lease_stats(store: Store) -> tuple[float, dict]:
    lease = store.lease()
    assert lease is not None, "no controller lease"
    return lease["heartbeat"], lease["stats"]


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_status_shows_passes_lists_cpu_and_docker_calls(three_nodes, db):
    """`brokerctl status` with a controller running a 2-replica Service prints its stats and API calls."""
    hosts = three_nodes
    with ControllerProcess(db) as ctl:
        cli(db, "apply", "-f", "-", input=service_yaml("web", SERVE.format(before=""), 2), check=True)
        wait_for(lambda: len(running(hosts, "Service/web")) == 2, 30, "2 replicas")

        def stats_with_creates():
            # Stats are published as passes end: wait for those of the pass that saw both replicas run.
            out = cli(db, "status", check=True).stdout
            calls, m = docker_calls(out), STATS.search(out)
            return out if calls.get("POST /containers/create", 0) >= 2 and m and int(m.group(1)) >= 2 else None

        out = wait_for(stats_with_creates, 10, "status showing both creates and a second pass", interval=0.3)
        assert f"controller: running (pid {ctl.proc.pid} " in out, out
        m = STATS.search(out)
        assert m, out
        passes, lists, cpu_percent = int(m.group(1)), int(m.group(2)), float(m.group(3))
        assert passes >= 2, out  # at least the pass that created and the one that saw them run
        assert 1 <= lists, out
        assert 0 <= cpu_percent < 100, out
        calls = docker_calls(out)
        assert calls["GET /containers/json"] >= 1, calls
        assert calls["POST /containers/create"] >= 2, calls  # one per replica
        assert calls["POST /containers/{id}/start"] >= 2, calls
        assert calls["GET /_ping"] >= 3, calls  # every node probed at least once
        assert not [k for k in calls if re.search(r"/containers/[0-9a-f]{12,}", k)], calls  # ids folded
        assert "tasks:      2 Running" in out, out


def test_steady_state_costs_no_creates_and_few_lists(three_nodes, db):
    """With 6 ready replicas and nothing changing: passes go on, but at most one list per node per
    pass, no creates or starts, one /_ping per node per second, and little CPU."""
    hosts = three_nodes
    with ControllerProcess(db):
        cli(db, "apply", "-f", "-", input=service_yaml("steady", SERVE.format(before=""), 6), check=True)
        wait_for(lambda: service_status(db, "steady")["ready"] == 6, 30, "6 ready replicas", interval=0.3)
        assert len(running(hosts, "Service/steady")) == 6
        time.sleep(3)  # settle: the passes after the last start
        store = Store(db)
        try:
            beat1, s1 = lease_stats(store)
            time.sleep(4)
            beat2, s2 = lease_stats(store)
        finally:
            store.close()
    window = beat2 - beat1
    assert 3 <= window <= 5.5, (beat1, beat2)  # heartbeats every ~1 s
    passes, lists = s2["passes"] - s1["passes"], s2["lists"] - s1["lists"]
    calls1, calls2 = s1["dockerCalls"], s2["dockerCalls"]
    delta = {k: n - calls1.get(k, 0) for k, n in calls2.items() if n - calls1.get(k, 0)}
    diag = f"passes {passes}, lists {lists}, calls {delta}, window {window:.2f}s"
    assert passes >= 2, diag  # busy (replicas running): a pass every second
    assert lists <= 3 * passes, diag
    assert "POST /containers/create" not in delta and "POST /containers/{id}/start" not in delta, diag
    assert 3 * 3 <= delta.get("GET /_ping", 0) <= 3 * 6, diag
    cpu = (s2["cpuSeconds"] - s1["cpuSeconds"]) / 4
    assert cpu < 0.5, f"{cpu:.2f} of a core; {diag}"


def test_commit_nudges_an_idle_controller(three_nodes, db):
    """An idle controller acts on `apply` at once: the new replica has a node well within a second
    of the apply process exiting, and the controller reports it listens for nudges."""
    with ControllerProcess(db):
        time.sleep(2)  # idle: its first passes are over, it waits for the 5 s resync
        store = Store(db)  # opened before the apply: its own migration check commits nothing
        try:
            cli(db, "apply", "-f", "-", input=service_yaml("nudged", SERVE.format(before="")), check=True)
            applied = time.monotonic()
            while not [t for t in store.tasks() if t.owner == "Service/nudged" and t.node]:
                assert time.monotonic() - applied < 5, "no task placed within 5 s of the apply"
                time.sleep(0.005)
            took = time.monotonic() - applied
            assert took < 1.0, f"{took:.3f}s from apply to a placed task"
            _, stats = lease_stats(store)
            assert stats["nudges"] is True, stats
        finally:
            store.close()
        wait_for(lambda: running(three_nodes, "Service/nudged"), 30, "replica running")


def test_one_slot_is_reused_by_the_next_task_without_overlap(clean_hosts, db):
    """One node with one slot, a 3-completion Job with parallelism 3: tasks run one after another
    (never two containers running), each next one taking the slot of the one that exited."""
    h1 = clean_hosts[0]
    cli(db, "apply", "-f", "-", input=nodes_yaml([h1], {"default": 1}), check=True)
    cli(db, "apply", "-f", "-", input=job_yaml("serial", "echo start; sleep 1", completions=3, parallelism=3),
        check=True)
    samples: list[int] = []
    errors: list[Exception] = []
    stop = threading.Event()

    def sample() -> None:
        client = h1.client()
        try:
            while not stop.is_set():
                try:
                    found = client.api.containers(filters={"label": "brokerctl.owner=Job/serial",
                                                           "status": "running"})
                    samples.append(len(found))
                except Exception as exc:  # noqa: BLE001 - reported below
                    errors.append(exc)
                stop.wait(0.05)
        finally:
            client.close()

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        with ControllerProcess(db):
            done = cli(db, "wait", "job/serial", "--for", "condition=Complete", "--timeout", "40")
            assert done.returncode == 0, done.stdout + done.stderr
    finally:
        stop.set()
        sampler.join()
    assert not errors, errors
    assert len(samples) > 20 and max(samples) == 1, samples  # it ran, never two at once
    [job] = cli_json(db, "get", "jobs", "serial")
    assert job["status"]["phase"] == "Complete" and job["status"]["succeeded"] == 3
    tasks = tasks_of(db, "Job/serial")
    assert len(tasks) == 3 and {t["phase"] for t in tasks} == {"Succeeded"}, tasks
    assert {t["node"] for t in tasks} == {h1.name}
    spans = sorted((_ts(t["startedAt"]), _ts(t["finishedAt"])) for t in tasks)
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert start >= end - 0.05, spans  # Docker's own timestamps: no overlap either
    logs = cli(db, "logs", "job/serial", check=True).stdout
    for t in tasks:
        assert f"[{t['id']}] start" in logs, logs


def test_removed_replica_is_replaced_though_lists_are_reused(three_nodes, db):
    """With a 30 s resync a quiet node's container list is reused for up to 30 s; a replica removed
    from outside must still be replaced within 5 s, because its destroy event invalidates the list."""
    hosts = three_nodes
    with ControllerProcess(db, "--resync", "30"):
        cli(db, "apply", "-f", "-", input=service_yaml("keep", SERVE.format(before=""), 2), check=True)
        wait_for(lambda: len(running(hosts, "Service/keep")) == 2, 30, "2 replicas")
        wait_for(lambda: service_status(db, "keep")["running"] == 2, 10, "status shows 2 running")
        time.sleep(2)  # quiet: passes now reuse the lists
        before = {c["Id"]: c for c in running(hosts, "Service/keep")}
        victim = next(iter(before.values()))
        victim_task = victim["Labels"]["brokerctl.task"]
        host = next(h for h in hosts if any(c["Id"] == victim["Id"] for c in running([h], "Service/keep")))
        client = host.client()
        try:
            client.api.remove_container(victim["Id"], force=True)
        finally:
            client.close()
        removed = time.monotonic()
        now = wait_for(lambda: (r := running(hosts, "Service/keep")) and len(r) == 2
                       and {c["Id"] for c in r} != set(before) and r, 5, "replacement running",
                       interval=0.05)
        took = time.monotonic() - removed
    ids = {c["Id"] for c in now}
    assert victim["Id"] not in ids and len(ids - set(before)) == 1, (before.keys(), ids)
    tasks = tasks_of(db, "Service/keep")
    assert len([t for t in tasks if t["phase"] == "Running"]) == 2, tasks
    [gone] = [t for t in tasks if t["id"] == victim_task]
    assert gone["phase"] != "Running", gone
    print(f"replaced in {took:.2f}s")


def test_next_task_takes_the_slot_promptly_after_an_exit(clean_hosts, db):
    """One slot, three sequential tasks: each next one starts within 2 s of the previous exit
    (the die event wakes the controller, and the exited container's slot goes to it in that pass)."""
    h1 = clean_hosts[0]
    cli(db, "apply", "-f", "-", input=nodes_yaml([h1], {"default": 1}), check=True)
    cli(db, "apply", "-f", "-", input=job_yaml("prompt", "sleep 0.5", completions=3, parallelism=3), check=True)
    with ControllerProcess(db):
        done = cli(db, "wait", "job/prompt", "--for", "condition=Complete", "--timeout", "40")
        assert done.returncode == 0, done.stdout + done.stderr
    spans = sorted((_ts(t["startedAt"]), _ts(t["finishedAt"])) for t in tasks_of(db, "Job/prompt"))
    gaps = [round(start - end, 2) for (_, end), (start, _) in zip(spans, spans[1:])]
    assert len(gaps) == 2 and max(gaps) < 2.0, f"seconds from one exit to the next start: {gaps}"
