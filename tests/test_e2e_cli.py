"""The kubectl habits that read live containers, on real dockerd hosts with a controller: `logs --tail
--since` of a running task, `exec` into a running task, `get -w` following changes."""

from __future__ import annotations

import time

import pytest

from helpers import ControllerProcess, cli, cli_json, in_terminal, job_yaml, nodes_yaml, wait_for

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


@pytest.fixture
def sleeper(one_node, db):
    """A running task whose container sleeps, with a controller; yields its id."""
    with ControllerProcess(db):
        cli(db, "apply", "-f", "-", input=job_yaml("sleeper", "sleep 300", terminationGracePeriodSeconds=0),
            check=True)
        yield running_task(db, "sleeper")
        cli(db, "delete", "job", "sleeper", check=True)


def test_exec_runs_a_command_in_the_task_container_and_passes_its_exit_code_back(sleeper, db):
    """stdout and stderr come back apart, the command's exit code is brokerctl's; the command runs in
    the task's own container (it sees the task's environment)."""
    done = cli(db, "exec", sleeper, "--", "sh", "-c", 'echo out-$BROKER_TASK_ID; echo err >&2; exit 3')
    assert (done.returncode, done.stdout, done.stderr) == (3, f"out-{sleeper}\n", "err\n")
    assert cli(db, "exec", sleeper, "--", "true").returncode == 0
    missing = cli(db, "exec", sleeper, "--", "no-such-command")
    assert missing.returncode in (126, 127) and "no-such-command" in missing.stdout + missing.stderr


def test_exec_with_i_pipes_stdin_to_the_command_until_it_ends(sleeper, db):
    done = cli(db, "exec", "-i", sleeper, "--", "tr", "a-z", "A-Z", input="hello\nworld\n")
    assert (done.returncode, done.stdout) == (0, "HELLO\nWORLD\n")
    big = "x" * 300_000
    done = cli(db, "exec", "-i", sleeper, "--", "wc", "-c", input=big)
    assert (done.returncode, done.stdout.strip()) == (0, "300000")
    without = cli(db, "exec", sleeper, "--", "sh", "-c", "cat; echo done", input="ignored\n")
    assert (without.returncode, without.stdout) == (0, "done\n")  # no -i: the command's stdin is empty


def test_exec_t_without_a_terminal_warns_and_runs_without_one(sleeper, db):
    done = cli(db, "exec", "-t", sleeper, "--", "sh", "-c", "[ -t 1 ] && echo tty || echo no-tty")
    assert (done.returncode, done.stdout) == (0, "no-tty\n")
    assert "stdin is not a terminal" in done.stderr


def test_exec_it_on_a_terminal_gives_the_command_one(sleeper, db):
    """Run from a terminal (a pty), -it gives the command a terminal of its own: it reads the keys typed
    and its exit code comes back."""
    import os

    code, printed = in_terminal(["--db", str(db), "exec", "-it", sleeper, "--", "sh", "-c",
                                 '[ -t 0 ] && echo has-tty; read x; echo "got-$x"; exit 4'],
                                {**os.environ, "NO_COLOR": "1"}, b"has-tty", b"abc\r", b"got-abc")
    assert code == 4, printed
    assert b"has-tty" in printed and b"got-abc" in printed
