"""End to end against real dockerd hosts: apply, controller, containers, CLI."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from helpers import (
    ControllerProcess, broker_containers, cli, cli_json, job_yaml, nodes_yaml, tasks_of, wait_for,
)

pytestmark = pytest.mark.timeout(180)


def test_six_completion_job_runs_across_nodes_and_keeps_logs(clean_hosts, db):
    """A 6-completion job succeeds on more than one node, and its logs outlive the containers."""
    cli(db, "apply", "-f", "-", input=nodes_yaml(clean_hosts, {"default": 2}), check=True)
    job = job_yaml("six", "echo line-from-$BROKER_TASK_INDEX; sleep 0.5", completions=6, parallelism=6)
    out = cli(db, "apply", "-f", "-", input=job, check=True).stdout
    assert out.strip() == "job/six created"
    with ControllerProcess(db):
        assert cli(db, "wait", "job/six", "--for", "condition=Complete", "--timeout", "60").returncode == 0
        wait_for(lambda: not any(broker_containers(h) for h in clean_hosts), 20, "containers removed")
    tasks = tasks_of(db, "Job/six")
    assert sorted(t["index"] for t in tasks) == list(range(6))
    assert {t["phase"] for t in tasks} == {"Succeeded"}
    assert all(t["exitCode"] == 0 and t["startedAt"] and t["finishedAt"] for t in tasks)
    assert len({t["node"] for t in tasks}) > 1
    [job_obj] = cli_json(db, "get", "jobs", "six")
    assert job_obj["status"]["phase"] == "Complete" and job_obj["status"]["succeeded"] == 6
    logs = cli(db, "logs", "job/six", check=True).stdout
    for t in tasks:
        assert f"[{t['id']}] line-from-{t['index']}" in logs
    single = cli(db, "logs", tasks[0]["id"], check=True).stdout
    assert single == f"line-from-{tasks[0]['index']}\n"


def test_failing_command_is_retried_then_job_fails_with_exit_code(clean_hosts, db):
    """A command exiting 7 is retried backoffLimit times with backoff, then the Job is Failed."""
    cli(db, "apply", "-f", "-", input=nodes_yaml(clean_hosts[:1]), check=True)
    job = job_yaml("flaky", "echo attempt $BROKER_ATTEMPT; exit 7", backoffLimit=2,
                        backoff={"initialSeconds": 0.5, "maxSeconds": 1})
    cli(db, "apply", "-f", "-", input=job, check=True)
    with ControllerProcess(db):
        waited = cli(db, "wait", "job/flaky", "--for", "condition=Complete", "--timeout", "60")
    assert waited.returncode != 0
    assert "Failed instead of Complete" in waited.stderr
    tasks = tasks_of(db, "Job/flaky")
    assert [t["attempt"] for t in tasks] == [1, 2, 3]
    assert [t["exitCode"] for t in tasks] == [7, 7, 7]
    assert {t["phase"] for t in tasks} == {"Failed"}
    # Backoff: attempt 3 waited at least 1 s (0.5 * 2^1) after attempt 2 finished.
    from datetime import datetime

    def ts(text):
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()

    assert ts(tasks[2]["startedAt"]) - ts(tasks[1]["finishedAt"]) >= 0.9
    [job_obj] = cli_json(db, "get", "jobs", "flaky")
    assert job_obj["status"]["phase"] == "Failed"
    assert job_obj["status"]["reason"] == "BackoffLimitExceeded"
    assert "exited with code 7" in job_obj["status"]["message"]
    assert "attempt 3" in cli(db, "logs", tasks[2]["id"]).stdout


def test_slots_bound_concurrency_and_excess_waits_pending(clean_hosts, db):
    """With one node of 2 slots, never more than 2 task containers run; the rest wait Pending."""
    host = clean_hosts[0]
    cli(db, "apply", "-f", "-", input=nodes_yaml([host], {"default": 2}), check=True)
    cli(db, "apply", "-f", "-", input=job_yaml("bounded", "sleep 1", completions=6, parallelism=6), check=True)
    samples = []
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            samples.append(len(broker_containers(host, all=False)))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    with ControllerProcess(db):
        sampler.start()
        pending = wait_for(lambda: [t for t in tasks_of(db, "Job/bounded") if t["phase"] == "Pending"
                                    and "no free default slot" in t["message"]], 20, "a Pending task with a reason")
        assert pending[0]["message"].startswith("0/1 nodes: 1 no free default slot")
        assert cli(db, "wait", "job/bounded", "--for", "condition=Complete", "--timeout", "60").returncode == 0
        stop.set()
        sampler.join()
    assert max(samples) == 2
    assert {t["phase"] for t in tasks_of(db, "Job/bounded")} == {"Succeeded"}


def test_missing_image_fails_the_task_with_a_reason_naming_the_image(clean_hosts, db):
    """An image that cannot be pulled fails the task with ImagePullFailed naming the image."""
    cli(db, "apply", "-f", "-", input=nodes_yaml(clean_hosts[:1]), check=True)
    cli(db, "apply", "-f", "-", input=job_yaml("noimg", "true", image="nonexistent.invalid/nothing:1",
                                                     backoffLimit=0), check=True)
    with ControllerProcess(db):
        assert cli(db, "wait", "job/noimg", "--for", "condition=Failed", "--timeout", "60").returncode == 0
    [task] = tasks_of(db, "Job/noimg")
    assert task["phase"] == "Failed"
    assert task["reason"] == "ImagePullFailed"
    assert "nonexistent.invalid/nothing:1" in task["message"]
    described = cli(db, "describe", "job", "noimg", check=True).stdout
    assert "ImagePullFailed" in described


def test_unlabelled_containers_are_never_touched(clean_hosts, db):
    """A container started by hand (no brokerctl labels) survives the controller's passes."""
    host = clean_hosts[0]
    client = host.client()
    mine = client.containers.run("busybox", ["sleep", "300"], detach=True, name="hand-made")
    try:
        cli(db, "apply", "-f", "-", input=nodes_yaml([host]), check=True)
        cli(db, "apply", "-f", "-", input=job_yaml("quick", "true"), check=True)
        with ControllerProcess(db):
            assert cli(db, "wait", "job/quick", "--for", "condition=Complete", "--timeout", "60").returncode == 0
            time.sleep(1.5)  # a few more passes
        mine.reload()
        assert mine.status == "running"
    finally:
        mine.remove(force=True)


def test_a_second_controller_stands_by_and_leads_once_the_first_stops(clean_hosts, db):
    """A second controller on the same store does not run passes: it says who leads and stands by,
    `status` lists it as a standby, and it leads as soon as the first stops."""
    cli(db, "apply", "-f", "-", input=nodes_yaml(clean_hosts[:1]), check=True)
    with ControllerProcess(db) as first, ControllerProcess(db) as second:
        wait_for(lambda: f"standby: pid {first.proc.pid} on" in second.log.read_text(), 20, "the standby's log line")
        wait_for(lambda: "standbys:   pid" in cli(db, "status", check=True).stdout, 20, "the standby in status")
        status = cli(db, "status", check=True).stdout
        assert f"running (pid {first.proc.pid}" in status and f"standbys:   pid {second.proc.pid} on" in status
        assert first.stop() == 0
        wait_for(lambda: "leader at epoch" in second.log.read_text(), 20, "the standby to lead")
        assert f"running (pid {second.proc.pid}" in cli(db, "status", check=True).stdout


def test_sigterm_leaves_containers_and_restart_adopts_them(clean_hosts, db):
    """A stopped controller leaves tasks running; the next one adopts them without duplicates."""
    cli(db, "apply", "-f", "-", input=nodes_yaml(clean_hosts[:1]), check=True)
    cli(db, "apply", "-f", "-", input=job_yaml("long", "sleep 3; echo done", completions=2, parallelism=2),
        check=True)
    first = ControllerProcess(db).start()
    wait_for(lambda: sum(t["phase"] == "Running" for t in tasks_of(db, "Job/long")) == 2, 30, "2 running")
    assert first.stop() == 0
    running = broker_containers(clean_hosts[0], all=False)
    assert len(running) == 2
    with ControllerProcess(db):
        assert cli(db, "wait", "job/long", "--for", "condition=Complete", "--timeout", "60").returncode == 0
    tasks = tasks_of(db, "Job/long")
    assert len(tasks) == 2 and {t["attempt"] for t in tasks} == {1}
    assert {t["containerId"] for t in tasks} == {c["Id"] for c in running}
    assert "done" in cli(db, "logs", "job/long").stdout


def test_delete_job_stops_and_removes_its_containers(clean_hosts, db):
    """Deleting a running Job stops its containers and removes it from the store."""
    cli(db, "apply", "-f", "-", input=nodes_yaml(clean_hosts[:1]), check=True)
    cli(db, "apply", "-f", "-", input=job_yaml("doomed", ["sleep", "300"], completions=2, parallelism=2),
        check=True)
    with ControllerProcess(db):
        wait_for(lambda: len(broker_containers(clean_hosts[0], all=False)) == 2, 30, "2 containers running")
        assert cli(db, "delete", "job", "doomed", check=True).stdout.strip() == "job/doomed deleting"
        wait_for(lambda: not broker_containers(clean_hosts[0]), 40, "containers removed")
        wait_for(lambda: cli_json(db, "get", "jobs") == [], 10, "job purged")
    assert tasks_of(db, "Job/doomed") == []


def test_ten_concurrent_applies_race_the_controller_without_losses(clean_hosts, db):
    """Ten apply processes at once, with the controller writing, all succeed and nothing is lost."""
    cli(db, "apply", "-f", "-", input=nodes_yaml(clean_hosts, {"default": 4}), check=True)
    with ControllerProcess(db):
        cli(db, "apply", "-f", "-", input=job_yaml("warmup", "sleep 1", completions=4, parallelism=4), check=True)
        procs = [
            subprocess.Popen([sys.executable, "-m", "reconciler", "--db", str(db), "apply", "-f", "-"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(10)
        ]
        for i, p in enumerate(procs):
            p.stdin.write(job_yaml(f"racer-{i}", "echo racer $BROKER_TASK_ID"))
            p.stdin.close()
        results = [(p.wait(60), p.stdout.read(), p.stderr.read()) for p in procs]
        for code, out, err in results:
            assert code == 0, err
            assert "locked" not in err
        for i in range(10):
            assert cli(db, "wait", f"job/racer-{i}", "--for", "condition=Complete", "--timeout", "60").returncode == 0
    names = {j["metadata"]["name"] for j in cli_json(db, "get", "jobs")}
    assert {f"racer-{i}" for i in range(10)} <= names


def test_logs_follow_streams_a_running_task(clean_hosts, db):
    """`logs -f` streams a running task's output until its container exits."""
    cli(db, "apply", "-f", "-", input=nodes_yaml(clean_hosts[:1]), check=True)
    cli(db, "apply", "-f", "-", input=job_yaml("chatty", "for i in 1 2 3; do echo tick $i; sleep 1; done"),
        check=True)
    with ControllerProcess(db):
        [task] = wait_for(lambda: [t for t in tasks_of(db, "Job/chatty") if t["phase"] == "Running"], 30,
                          "task running")
        followed = cli(db, "logs", "-f", task["id"], timeout=30, check=True).stdout
        assert cli(db, "wait", "job/chatty", "--for", "condition=Complete", "--timeout", "30").returncode == 0
    assert "tick 1\ntick 2\ntick 3\n" in followed
    assert cli(db, "logs", task["id"], check=True).stdout == "tick 1\ntick 2\ntick 3\n"


def test_controller_reacts_to_a_store_change_before_its_resync(clean_hosts, db):
    """An apply wakes an idle controller at once, not at its (here 60 s) periodic resync."""
    cli(db, "apply", "-f", "-", input=nodes_yaml(clean_hosts[:1]), check=True)
    with ControllerProcess(db, "--resync", "60"):
        time.sleep(1)  # let it go idle
        cli(db, "apply", "-f", "-", input=job_yaml("prompt", "true"), check=True)
        assert cli(db, "wait", "job/prompt", "--for", "condition=Complete", "--timeout", "20").returncode == 0


def test_pending_reason_is_explained_by_describe(clean_hosts, db):
    """A task no node can take stays Pending, and describe says why."""
    cli(db, "apply", "-f", "-", input=nodes_yaml(clean_hosts[:2], {"default": 1}), check=True)
    cli(db, "apply", "-f", "-", input=job_yaml("gpu-work", "true", executionType="gpu"), check=True)
    with ControllerProcess(db):
        wait_for(lambda: any(t["message"] for t in tasks_of(db, "Job/gpu-work")), 20, "a pending reason")
    out = cli(db, "describe", "job", "gpu-work", check=True).stdout
    assert "0/2 nodes: 2 no gpu slots" in out
    [task] = tasks_of(db, "Job/gpu-work")
    assert task["phase"] == "Pending" and task["reason"] == "Unschedulable"
