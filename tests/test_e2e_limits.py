"""No manifest stalls the controller, on real dockerd hosts.

A Job of 10^6 completions at parallelism 10^6 and a Service of 10^6 replicas run beside small
Jobs: the small Jobs finish as before, the controller keeps heartbeating, stays small in memory
and answers SIGTERM. Pass times with and without the huge resources are printed (not asserted:
speed is never a timed assertion here).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from helpers import ControllerProcess, broker_containers, cli, cli_json, tasks_of, wait_for
from reconciler.store import Store

pytestmark = pytest.mark.timeout(300)

MILLION = 10**6


def doc(kind: str, name: str, command, **spec) -> str:
    return json.dumps({"apiVersion": "broker/v1", "kind": kind, "metadata": {"name": name},
                       "spec": {**spec, "template": {"image": "busybox", "command": command}}}) + "\n"


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def pass_window(store: Store, seconds: float) -> tuple[int, float, float]:
    """Passes and their mean and last duration over the next ``seconds``, from the lease stats."""
    # the leader publishes its stats with a renewal (every second): a fast first Job can end before that
    first = wait_for(lambda: (stats := store.lease()["stats"]) and "passes" in stats and stats, 10,
                     "the leader's first stats in its lease")
    time.sleep(seconds)
    last = store.lease()["stats"]
    passes = last["passes"] - first["passes"]
    mean = (last["passSeconds"] - first["passSeconds"]) / passes if passes else 0.0
    return passes, mean, last["lastPassSeconds"]


def run_small_job(db: Path, name: str) -> float:
    """Apply a 5-completion echo Job; seconds until it is Complete (at most 60: "not stalled")."""
    began = time.monotonic()
    cli(db, "apply", "-f", "-", input=doc("Job", name, ["echo", "hi"], completions=5, parallelism=5), check=True)
    done = cli(db, "wait", f"job/{name}", "--for", "condition=Complete", "--timeout", "60")
    assert done.returncode == 0, f"{name} did not complete in 60 s beside the huge resources: {done.stderr}"
    return time.monotonic() - began


def test_huge_job_and_service_do_not_stall_the_controller(clean_hosts, db):
    """The huge Job and Service fill slot types of their own (so the small Jobs keep the default
    slots) and keep at most 100 tasks each waiting for a node; small Jobs complete as fast as
    before; status says running; memory stays small; SIGTERM is answered."""
    nodes = "\n---\n".join(
        json.dumps({"apiVersion": "broker/v1", "kind": "Node", "metadata": {"name": h.name},
                    "spec": {"address": h.address, "slots": {"default": 4, "bulk": 1, "svc": 2}}})
        for h in clean_hosts)
    cli(db, "apply", "-f", "-", input=nodes, check=True)
    store = Store(db)
    ctl = ControllerProcess(db).start()
    try:
        alone = run_small_job(db, "small-before")
        quiet = pass_window(store, 5)

        cli(db, "apply", "-f", "-", input=doc("Job", "huge", "sleep 3600", completions=MILLION, parallelism=MILLION,
                                             executionType="bulk")
            + "---\n" + doc("Service", "wide", "sleep 3600", replicas=MILLION, executionType="svc"), check=True)
        wait_for(lambda: sum(t["phase"] == "Running" for t in tasks_of(db, "Service/wide")) == 6
                 and sum(t["phase"] == "Running" for t in tasks_of(db, "Job/huge")) == 3, 60,
                 "the huge resources filling their slots")
        busy = pass_window(store, 5)
        beside = run_small_job(db, "small-beside")
        during = pass_window(store, 5)

        status = cli(db, "status", check=True).stdout
        rss = rss_mib(ctl.proc.pid)
        huge = tasks_of(db, "Job/huge")
        wide = tasks_of(db, "Service/wide")
        began = time.monotonic()
        ctl.proc.send_signal(15)
        ctl.proc.wait(30)
        took = time.monotonic() - began
    finally:
        ctl.stop()

    print(f"\nsmall Job alone: complete in {alone:.1f}s; beside the huge ones: {beside:.1f}s")
    for label, (passes, mean, last) in (("alone", quiet), ("huge applied", busy), ("small Job beside", during)):
        print(f"passes over 5 s, {label}: {passes}, mean {mean * 1000:.1f} ms, last {last * 1000:.1f} ms")
    print(f"controller VmRSS {rss:.0f} MiB; huge Job {len(huge)} tasks, huge Service {len(wide)} tasks; "
          f"exited {took:.2f}s after SIGTERM")
    assert "controller: running" in status, status
    assert rss < 1024, f"controller uses {rss:.0f} MiB"
    assert took < 3.0 and ctl.proc.returncode == 0
    for tasks, slots in ((huge, 3), (wide, 6)):
        assert sum(t["phase"] == "Running" for t in tasks) == slots
        assert sum(t["phase"] == "Pending" and not t["node"] for t in tasks) == 100 == len(tasks) - slots


def test_two_nodes_on_one_daemon_count_it_once(clean_hosts, db):
    """n1 (tcp) and n2 (the same daemon's unix socket, applied later): n2 is NotReady naming n1, its
    slots are not counted, a Job's tasks all land on n1, and `drain n2` finishes while they run.
    n3 is another daemon with the same Docker ID (the test daemons share /etc/docker/key.json,
    as cloned machines do): it is not taken for a twin."""
    host = clean_hosts[0]
    other = clean_hosts[1]
    for name, address, daemon in (("n1", host.address, "h1"), ("n2", host.unix_address, "h1"),
                                  ("n3", other.address, "h2")):
        cli(db, "apply", "-f", "-", input=json.dumps({"apiVersion": "broker/v1", "kind": "Node",
                                                       "metadata": {"name": name, "labels": {"daemon": daemon}},
                                                       "spec": {"address": address, "slots": {"default": 3}}}),
            check=True)
        time.sleep(0.05)  # distinct creation times: n1 is older
    with ControllerProcess(db):
        def twin():
            nodes = {n["metadata"]["name"]: n["status"] for n in cli_json(db, "get", "nodes")}
            ready = nodes["n1"]["condition"] == nodes["n3"]["condition"] == "Ready"
            return nodes if nodes["n2"].get("twinOf") and ready else None

        nodes = wait_for(twin, 30, "n2 found to be n1's daemon")
        cli(db, "apply", "-f", "-", input=doc("Job", "work", "sleep 4", completions=6, parallelism=6,
                                             nodeSelector={"daemon": "h1"}), check=True)
        wait_for(lambda: sum(t["phase"] == "Running" for t in tasks_of(db, "Job/work")) == 3, 30, "3 running")
        table = cli(db, "get", "nodes", check=True).stdout
        drained = cli(db, "drain", "n2", "--timeout", "5", timeout=30)
        assert cli(db, "wait", "job/work", "--for", "condition=Complete", "--timeout", "60").returncode == 0
        events = cli_json(db, "get", "events")
    daemon = nodes["n1"]["daemonId"].split()[0]
    assert nodes["n2"]["daemonId"] == nodes["n1"]["daemonId"]
    assert nodes["n3"]["condition"] == "Ready" and "twinOf" not in nodes["n3"]
    assert nodes["n3"]["daemonId"].split()[0] == daemon and nodes["n3"]["daemonId"] != nodes["n1"]["daemonId"]
    assert nodes["n2"]["condition"] == "NotReady" and nodes["n2"]["slots"] == {}
    assert nodes["n2"]["message"] == f"same Docker daemon as node n1 (ID {daemon[:12]}…); remove one of them"
    rows = {line.split()[0]: line for line in table.splitlines()[1:]}
    assert "default 3/3" in rows["n1"] and "NotReady" in rows["n2"] and "default" not in rows["n2"]
    assert drained.returncode == 0 and "node/n2 drained" in drained.stdout, drained.stdout + drained.stderr
    assert {t["node"] for t in tasks_of(db, "Job/work")} == {"n1"}
    assert [e["message"] for e in events if e["reason"] == "SameDaemon"] == [
        f"node n2: same Docker daemon as node n1 (ID {daemon[:12]}…); remove one of them"]
    assert all(" on n1 " in e["message"] for e in events if e["reason"] in ("Scheduled", "Started"))


def test_a_container_in_a_long_grace_period_keeps_its_job_until_it_is_gone(clean_hosts, db):
    """A Job whose container ignores SIGTERM (grace 20 s) is deleted twice: the second delete says it
    is still stopping and the Job stays Terminating. A controller restart mid-grace neither kills the
    container early (the old behaviour: a fresh 10 s grace) nor loses it: it goes at the deadline of
    the first stop, then the Job is purged."""
    host = clean_hosts[0]
    cli(db, "apply", "-f", "-", input=json.dumps({"apiVersion": "broker/v1", "kind": "Node",
                                                   "metadata": {"name": host.name},
                                                   "spec": {"address": host.address}}), check=True)
    stubborn = "trap 'echo got TERM' TERM; echo started; while true; do sleep 0.2; done"
    ctl = ControllerProcess(db).start()
    try:
        cli(db, "apply", "-f", "-", input=doc("Job", "slow-stop", stubborn, terminationGracePeriodSeconds=20),
            check=True)
        wait_for(lambda: [t for t in tasks_of(db, "Job/slow-stop") if t["phase"] == "Running"], 30, "running")
        deleted_at = time.monotonic()
        assert cli(db, "delete", "job", "slow-stop", check=True).stdout == "job/slow-stop deleting\n"
        wait_for(lambda: [t for t in tasks_of(db, "Job/slow-stop") if t["phase"] == "Stopped"], 10, "stopped")
        time.sleep(1.0)
        again = cli(db, "delete", "job", "slow-stop")
        assert again.returncode == 0
        assert again.stdout == "job/slow-stop still stopping (1 container); pass --force to abandon them\n"
        assert "Terminating" in cli(db, "get", "jobs", check=True).stdout
        assert ctl.stop() == 0
    finally:
        ctl.stop()
    restarted = time.monotonic()
    with ControllerProcess(db):
        time.sleep(max(0.0, deleted_at + 15 - time.monotonic()))  # past restart + 10 s, before the deadline
        assert broker_containers(host, all=False), "killed before the end of its grace period"
        rows = cli_json(db, "get", "jobs")
        assert [(j["metadata"]["name"], j["status"].get("terminating")) for j in rows] == [("slow-stop", True)]
        wait_for(lambda: not broker_containers(host), 20, "the container gone after its grace period")
        gone = time.monotonic()
        wait_for(lambda: cli_json(db, "get", "jobs") == [], 10, "the Job purged once its container is gone")
    print(f"\ncontroller restarted {restarted - deleted_at:.1f}s into a 20 s grace period; "
          f"container gone {gone - deleted_at:.1f}s after the delete")
    assert gone - deleted_at >= 19
