"""The kubectl habits that read live containers, on real dockerd hosts with a controller: `logs --tail
--since` of a running task, `exec` into a running task, `get -w` following changes."""

from __future__ import annotations

import time

import pytest

from helpers import ControllerProcess, cli, cli_json, job_yaml, nodes_yaml, wait_for

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def one_node(clean_hosts, db):
    cli(db, "apply", "-f", "-", input=nodes_yaml(clean_hosts[:1], {"default": 4}), check=True)
    return clean_hosts[0]


def running_task(db, job: str) -> str:
    """The id of ``job``'s task once it runs."""
    def running():
        tasks = [t for t in cli_json(db, "get", "tasks") if t["owner"] == f"Job/{job}" and t["phase"] == "Running"]
        return tasks[0]["id"] if tasks else None

    return wait_for(running, 40, f"job/{job} running")


def test_logs_tail_and_since_of_a_running_task_ask_the_container(one_node, db):
    """--tail N: the last N lines the container wrote so far; --since: only what it wrote in that while
    (Docker's own window: the early lines are left out, the ticks written since kept)."""
    script = "for i in 1 2 3 4 5; do echo early$i; done; sleep 6; while true; do echo tick; sleep 0.3; done"
    with ControllerProcess(db):
        cli(db, "apply", "-f", "-", input=job_yaml("talk", script, terminationGracePeriodSeconds=0), check=True)
        task = running_task(db, "talk")
        wait_for(lambda: "tick" in cli(db, "logs", task).stdout, 40, "ticks written")
        assert cli(db, "logs", task, "--tail", "2", check=True).stdout == "tick\ntick\n"
        recent = cli(db, "logs", task, "--since", "3s", check=True).stdout.splitlines()
        assert recent and set(recent) == {"tick"}
        assert cli(db, "logs", task, "--since", "1h", check=True).stdout.startswith("early1\n")
        last = cli(db, "logs", "job/talk", "--since", "3s", "--tail", "1", check=True).stdout
        assert last == f"[{task}] tick\n"
        cli(db, "delete", "job", "talk", check=True)


def test_get_watch_follows_a_job_and_its_tasks_as_the_controller_runs_them(one_node, db):
    """`get jobs,tasks -w` with a controller: the task's row as it starts running, then as it succeeds, and
    the Job's row once it is Complete; Ctrl-C ends it with exit 0."""
    import signal

    from helpers import Watching

    with ControllerProcess(db):
        watching = Watching(db, "get", "jobs,tasks", "-w")
        try:
            cli(db, "apply", "-f", "-", input=job_yaml("brief", "sleep 2"), check=True)
            watching.wait_line(lambda line: line.startswith("task/brief-") and " Running " in line, 60, "Running")
            watching.wait_line(lambda line: line.startswith("task/brief-") and " Succeeded " in line, 60, "Succeeded")
            watching.wait_line(lambda line: line.startswith("job/brief ") and " Complete " in line, 60, "Complete")
        finally:
            code = watching.stop(signal.SIGINT)
    assert code == 0
