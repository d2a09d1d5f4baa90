"""Quotas, budgets and fair share on real dockerd hosts: tasks over a namespace's quota wait with its reason and
start as room frees, a spent budget holds new tasks back until the rolling window lets go of old use, and a
namespace arriving behind another's backlog gets about half the slots from then on (the split is printed)."""

from __future__ import annotations

import json
import time
from datetime import datetime

import pytest

from helpers import ControllerProcess, cli, cli_json, job_yaml, nodes_yaml, wait_for

pytestmark = pytest.mark.timeout(300)


def namespace(name: str, **spec) -> str:
    return json.dumps({"apiVersion": "broker/v1", "kind": "Namespace", "metadata": {"name": name}, "spec": spec}) + "\n"


def ts(text: str | None) -> float | None:
    return None if text is None else datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def most_at_once(tasks: list[dict]) -> int:
    """The most tasks that were running at the same moment, from their start and finish times."""
    edges = sorted([(ts(t["startedAt"]), 1) for t in tasks] + [(ts(t["finishedAt"]), -1) for t in tasks])
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


def test_tasks_over_the_quota_wait_with_its_reason_and_start_as_room_frees(clean_hosts, db):
    """team-a may run 2 tasks at once; its 5-task Job on 12 free slots runs 2 at a time, the others Pending with
    `quota: team-a uses 2/2 tasks` (never failed), and completes."""
    cli(db, "apply", "-f", "-", check=True, input=nodes_yaml(clean_hosts, {"default": 4}) + "---\n"
        + namespace("team-a", quota={"tasks": 2}))
    cli(db, "apply", "-n", "team-a", "-f", "-", check=True,
        input=job_yaml("capped", "sleep 2", completions=5, parallelism=5))
    with ControllerProcess(db):
        def waiting() -> list[str]:
            return [t["message"] for t in cli_json(db, "get", "tasks", "-n", "team-a") if t["node"] is None]

        reasons = wait_for(lambda: len(waiting()) == 3 and waiting(), 30, "3 tasks waiting for the quota")
        assert set(reasons) == {"quota: team-a uses 2/2 tasks"}
        rows = cli(db, "get", "namespaces", check=True).stdout
        assert "tasks 2/2" in rows
        cli(db, "wait", "job/capped", "-n", "team-a", "--for", "condition=Complete", "--timeout", "90", check=True)
    tasks = cli_json(db, "get", "tasks", "-n", "team-a")
    assert len(tasks) == 5 and {t["phase"] for t in tasks} == {"Succeeded"}, "none failed for the quota"
    assert most_at_once(tasks) <= 2
    events = [e["message"] for e in cli_json(db, "get", "events", "-n", "team-a") if e["reason"] == "FailedScheduling"]
    assert events and all(m.endswith(": quota: team-a uses 2/2 tasks") for m in events)


def test_a_spent_budget_holds_new_tasks_until_the_window_lets_go_of_old_use(clean_hosts, db):
    """team-b may use 0.0005 cpu-hours (1.8 cpu-seconds) in any 15 s. Its first task (1 cpu, 4 s) starts with the
    budget unspent and runs to the end though it spends it on the way; the next waits with the budget's reason
    (`get namespaces` shows the use) and starts by itself once that run has slid out of the window."""
    cli(db, "apply", "-f", "-", check=True, input=nodes_yaml(clean_hosts[:1], {"default": 4}) + "---\n"
        + namespace("team-b", budget={"cpuHours": 0.0005, "window": "15s"}))
    one_cpu = {"resources": {"cpus": 1}}
    cli(db, "apply", "-n", "team-b", "-f", "-", check=True, input=job_yaml("first", "sleep 4", template=one_cpu))
    with ControllerProcess(db):
        cli(db, "wait", "job/first", "-n", "team-b", "--for", "condition=Complete", "--timeout", "60", check=True)
        cli(db, "apply", "-n", "team-b", "-f", "-", check=True, input=job_yaml("second", "true", template=one_cpu))
        applied = time.time()

        def message() -> str:
            return next((t["message"] for t in cli_json(db, "get", "tasks", "-n", "team-b")
                         if t["owner"] == "Job/second"), "")

        held = wait_for(lambda: message().startswith("budget:") and message(), 20, "the second task held back")
        assert held.startswith("budget: team-b used 0.00") and held.endswith("/0.0005 cpu-hours in 15s")
        [ns] = [n for n in cli_json(db, "get", "namespaces") if n["metadata"]["name"] == "team-b"]
        assert ns["status"]["used"]["cpuHours"] >= 0.0005
        cli(db, "wait", "job/second", "-n", "team-b", "--for", "condition=Complete", "--timeout", "60", check=True)
    tasks = {t["owner"]: t for t in cli_json(db, "get", "tasks", "-n", "team-b")}
    first, second = tasks["Job/first"], tasks["Job/second"]
    assert first["phase"] == "Succeeded" and ts(first["finishedAt"]) - ts(first["startedAt"]) >= 3.5, \
        "the running task was not stopped when the budget ran out"
    # It ran 1 cpu for ~4 s: the window holds under 1.8 cpu-seconds of it only once its end is ~13 s old.
    assert ts(second["startedAt"]) >= ts(first["finishedAt"]) + 12
    assert ts(second["startedAt"]) > applied


def test_a_namespace_arriving_behind_a_backlog_gets_about_half_the_slots(clean_hosts, db):
    """team-a submits 200 two-second tasks on 12 slots; once they fill the pool, team-b submits 50. From then until
    team-b's last task starts, team-b runs on about half the slots (slot-seconds from the tasks' start and finish
    times; printed), where a FIFO queue would give it none until team-a's backlog was done."""
    cli(db, "apply", "-f", "-", check=True, input=nodes_yaml(clean_hosts, {"default": 4}) + "---\n"
        + namespace("team-a") + "---\n" + namespace("team-b"))
    cli(db, "apply", "-n", "team-a", "-f", "-", check=True,
        input=job_yaml("backlog", "sleep 2", completions=200, parallelism=200))
    with ControllerProcess(db):
        wait_for(lambda: sum(t["phase"] == "Running" for t in cli_json(db, "get", "tasks", "-n", "team-a")) >= 12,
                 60, "team-a on every slot", interval=0.5)
        cli(db, "apply", "-n", "team-b", "-f", "-", check=True,
            input=job_yaml("late", "sleep 2", completions=50, parallelism=50))
        arrived = time.time()
        cli(db, "wait", "job/late", "-n", "team-b", "--for", "condition=Complete", "--timeout", "200", check=True)
        tasks = cli_json(db, "get", "tasks", "-A")
    b_starts = [ts(t["startedAt"]) for t in tasks if t["namespace"] == "team-b"]
    until = max(b_starts)
    use = {"team-a": 0.0, "team-b": 0.0}
    starts = {"team-a": 0, "team-b": 0}
    for t in tasks:
        start, end = ts(t["startedAt"]), ts(t["finishedAt"]) or until
        if start is None:
            continue
        use[t["namespace"]] += max(0.0, min(end, until) - max(start, arrived))
        starts[t["namespace"]] += arrived <= start <= until
    share = use["team-b"] / (use["team-a"] + use["team-b"])
    print(f"\nfair share, {until - arrived:.1f} s from team-b's arrival to its last start: team-b "
          f"{share:.1%} of the slot-seconds ({use['team-b']:.0f} of {use['team-a'] + use['team-b']:.0f}), "
          f"{starts['team-b']} of {starts['team-a'] + starts['team-b']} starts")
    assert 0.35 <= share <= 0.65, (share, use, starts)
