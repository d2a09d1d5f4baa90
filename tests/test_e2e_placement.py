"""Placement on real dockerd hosts: selectors, resource fit, pins, priority, events, apply --wait."""

from __future__ import annotations

import json

import pytest

from helpers import ControllerProcess, broker_containers, cli, cli_json, job_yaml, tasks_of, wait_for

pytestmark = pytest.mark.timeout(180)


def nodes(hosts, labels: list[dict], slots=None) -> str:
    docs = []
    for h, lab in zip(hosts, labels):
        spec = {"address": h.address, **({"slots": slots} if slots else {})}
        docs.append(json.dumps({"apiVersion": "broker/v1", "kind": "Node",
                                "metadata": {"name": h.name, "labels": lab}, "spec": spec}))
    return "\n---\n".join(docs) + "\n"


def test_selector_pin_and_colocation_choose_the_node(clean_hosts, db):
    """nodeSelector, nodeName and colocateWith put tasks on the nodes they name, on real hosts."""
    h1, h2, h3 = clean_hosts
    cli(db, "apply", "-f", "-", input=nodes(clean_hosts, [{"zone": "a"}, {"zone": "b"}, {"zone": "b"}],
                                              {"default": 4}), check=True)
    docs = (job_yaml("zone-b", "sleep 0.2", completions=4, parallelism=4, nodeSelector={"zone": "b"})
            + "---\n" + job_yaml("pinned", "sleep 0.2", completions=2, parallelism=2, nodeName=h1.name)
            + "---\n" + job_yaml("anchor", "sleep 30")
            + "---\n" + job_yaml("buddy", "true", colocateWith="Job/anchor"))
    with ControllerProcess(db):
        cli(db, "apply", "-f", "-", input=docs, check=True)
        for name in ("zone-b", "pinned", "buddy"):
            assert cli(db, "wait", f"job/{name}", "--for", "condition=Complete", "--timeout", "60").returncode == 0
        [anchor] = tasks_of(db, "Job/anchor")
        cli(db, "delete", "job", "anchor", check=True)
    assert {t["node"] for t in tasks_of(db, "Job/zone-b")} <= {h2.name, h3.name}
    assert {t["node"] for t in tasks_of(db, "Job/pinned")} == {h1.name}
    assert [t["node"] for t in tasks_of(db, "Job/buddy")] == [anchor["node"]]


def test_resources_fit_bounds_concurrency_by_reported_cpus(clean_hosts, db):
    """Tasks asking 1.5 CPUs on 2-CPU hosts run one per host, the rest wait with 'insufficient cpu'."""
    host = clean_hosts[0]
    cli(db, "apply", "-f", "-", input=nodes([host], [{}], {"default": 10}), check=True)
    with ControllerProcess(db):
        cpus = wait_for(lambda: cli_json(db, "get", "nodes")[0]["status"].get("cpus"), 20, "cpus reported")
        per_host = int(cpus // 1.5)
        cli(db, "apply", "-f", "-", input=job_yaml("heavy", "sleep 2", completions=per_host + 1,
                                                  parallelism=per_host + 1, template={"resources": {"cpus": 1.5}}),
            check=True)
        waiting = wait_for(lambda: [t for t in tasks_of(db, "Job/heavy")
                                    if t["phase"] == "Pending" and "insufficient cpu" in t["message"]],
                           30, "a task waiting for cpu")
        assert waiting[0]["message"] == "0/1 nodes: 1 insufficient cpu"
        wait_for(lambda: sum(t["phase"] == "Running" for t in tasks_of(db, "Job/heavy")) == per_host, 30,
                 f"{per_host} running")
        assert len(broker_containers(host, all=False)) <= per_host
        assert cli(db, "wait", "job/heavy", "--for", "condition=Complete", "--timeout", "60").returncode == 0


def test_higher_priority_job_runs_first_when_slots_are_scarce(clean_hosts, db):
    """With one slot, a later high-priority job starts before earlier low-priority ones."""
    cli(db, "apply", "-f", "-", input=nodes(clean_hosts[:1], [{}], {"default": 1}), check=True)
    # The blocker holds the slot while the urgent Job is applied (a CLI process: seconds on a loaded machine).
    backlog = "---\n".join([job_yaml("blocker", "sleep 6")] + [job_yaml(f"low-{i}", "true") for i in range(3)])
    cli(db, "apply", "-f", "-", input=backlog, check=True)
    with ControllerProcess(db):
        wait_for(lambda: any(t["phase"] == "Running" for t in tasks_of(db, "Job/blocker")), 30, "blocker running")
        cli(db, "apply", "-f", "-", input=job_yaml("urgent", "true", priority=10), check=True)
        for name in ("urgent", "low-0", "low-1", "low-2"):
            assert cli(db, "wait", f"job/{name}", "--for", "condition=Complete", "--timeout", "60").returncode == 0
    started = {name: tasks_of(db, f"Job/{name}")[0]["startedAt"] for name in ("urgent", "low-0", "low-1", "low-2")}
    assert started["urgent"] < min(started[f"low-{i}"] for i in range(3))
    assert started["low-0"] < started["low-1"] < started["low-2"]  # FIFO within a priority


def test_sticky_retry_returns_to_the_same_node(clean_hosts, db):
    """A sticky job's retries run on the node of the first attempt."""
    cli(db, "apply", "-f", "-", input=nodes(clean_hosts, [{}, {}, {}], {"default": 2}), check=True)
    with ControllerProcess(db):
        cli(db, "apply", "-f", "-", input=job_yaml("sticky", '[ "$BROKER_ATTEMPT" -ge 3 ]', sticky=True,
                                                  backoff={"initialSeconds": 0.2, "maxSeconds": 0.5}), check=True)
        assert cli(db, "wait", "job/sticky", "--for", "condition=Complete", "--timeout", "60").returncode == 0
    tasks = tasks_of(db, "Job/sticky")
    assert [t["attempt"] for t in tasks] == [1, 2, 3]
    assert len({t["node"] for t in tasks}) == 1


def test_apply_wait_and_events_explain_what_happened(clean_hosts, db):
    """apply --wait exits 0 for a job that completes, 1 for one that fails; get events shows why."""
    cli(db, "apply", "-f", "-", input=nodes(clean_hosts[:1], [{}]), check=True)
    with ControllerProcess(db):
        labelled = json.loads(job_yaml("fine", "true"))
        labelled["metadata"]["labels"] = {"type": "video"}
        ok = cli(db, "apply", "--wait", "--timeout", "60", "-f", "-", input=json.dumps(labelled))
        assert ok.returncode == 0 and "job/fine complete" in ok.stdout
        bad = cli(db, "apply", "--wait", "--timeout", "60", "-f", "-", input=job_yaml("broken", "exit 4", backoffLimit=0))
        assert bad.returncode == 1 and "1 job(s) failed: broken" in bad.stderr
    events = cli_json(db, "get", "events", "--for", "job/broken")
    reasons = [e["reason"] for e in events]
    assert "Scheduled" in reasons and "Failed" in reasons and "BackoffLimitExceeded" in reasons
    assert all(e["object"] == "Job/broken" for e in events)
    assert any("exit code 4" in e["message"] for e in events)
    video = cli_json(db, "get", "tasks", "-l", "type=video")
    assert [t["owner"] for t in video] == ["Job/fine"] and video[0]["labels"] == {"type": "video"}
    table = cli(db, "get", "events", check=True).stdout
    assert "Job/fine" in table and "Job/broken" in table


def test_a_big_task_is_not_starved_by_later_small_ones(clean_hosts, db):
    """A task waiting for a whole host's CPUs runs before smaller tasks that arrived after it."""
    cli(db, "apply", "-f", "-", input=nodes(clean_hosts[:1], [{}], {"default": 8}), check=True)
    with ControllerProcess(db):
        cpus = wait_for(lambda: cli_json(db, "get", "nodes")[0]["status"].get("cpus"), 20, "cpus reported")
        half = {"resources": {"cpus": cpus / 2}}
        cli(db, "apply", "-f", "-", input=job_yaml("blocker", "sleep 2", template=half), check=True)
        wait_for(lambda: any(t["phase"] == "Running" for t in tasks_of(db, "Job/blocker")), 30, "blocker running")
        cli(db, "apply", "-f", "-", input=job_yaml("big", "true", template={"resources": {"cpus": cpus}}), check=True)
        wait_for(lambda: tasks_of(db, "Job/big"), 10, "big task created")
        smalls = "---\n".join(job_yaml(f"small-{i}", "true", template=half) for i in range(3))
        cli(db, "apply", "-f", "-", input=smalls, check=True)
        for name in ("big", "small-0", "small-1", "small-2"):
            assert cli(db, "wait", f"job/{name}", "--for", "condition=Complete", "--timeout", "60").returncode == 0
    big = tasks_of(db, "Job/big")[0]["startedAt"]
    assert all(big < tasks_of(db, f"Job/small-{i}")[0]["startedAt"] for i in range(3))
