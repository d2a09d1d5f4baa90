"""Job lifecycle on real dockerd hosts: deadlines, timeouts, suspend/resume, TTL, graceful stop."""

from __future__ import annotations

import pytest

from helpers import ControllerProcess, broker_containers, cli, cli_json, job_yaml, nodes_yaml, tasks_of, wait_for

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def one_node(clean_hosts, db):
    cli(db, "apply", "-f", "-", input=nodes_yaml(clean_hosts[:1], {"default": 4}), check=True)
    return clean_hosts[0]


def test_active_deadline_stops_the_job_as_deadline_exceeded(one_node, db):
    """Past activeDeadlineSeconds the running tasks are stopped and the Job is Failed: DeadlineExceeded."""
    with ControllerProcess(db):
        cli(db, "apply", "-f", "-", input=job_yaml("slow", "sleep 60", completions=2, parallelism=2,
                                                  activeDeadlineSeconds=2, terminationGracePeriodSeconds=1), check=True)
        assert cli(db, "wait", "job/slow", "--for", "condition=Failed", "--timeout", "40").returncode == 0
        wait_for(lambda: not broker_containers(one_node), 30, "containers removed")
    [obj] = cli_json(db, "get", "jobs", "slow")
    assert obj["status"]["reason"] == "DeadlineExceeded"
    assert {t["phase"] for t in tasks_of(db, "Job/slow")} == {"Stopped"}


def test_task_timeout_fails_one_attempt_and_is_retried(one_node, db):
    """An attempt running longer than timeoutSeconds is killed and failed; the retry may succeed."""
    cmd = '[ "$BROKER_ATTEMPT" -ge 2 ] || sleep 60'
    with ControllerProcess(db):
        cli(db, "apply", "-f", "-", input=job_yaml("hang", cmd, timeoutSeconds=1.5, terminationGracePeriodSeconds=0,
                                                  backoff={"initialSeconds": 0.2, "maxSeconds": 1}), check=True)
        assert cli(db, "wait", "job/hang", "--for", "condition=Complete", "--timeout", "60").returncode == 0
    first, second = tasks_of(db, "Job/hang")
    assert (first["phase"], first["reason"]) == ("Failed", "Timeout")
    assert second["phase"] == "Succeeded"


def test_suspend_stops_tasks_and_resume_finishes_the_job(one_node, db):
    """suspend: true stops active tasks and creates none; suspend: false resumes to completion."""
    with ControllerProcess(db):
        cli(db, "apply", "-f", "-", input=job_yaml("pausable", "sleep 3", completions=2, parallelism=2,
                                                  terminationGracePeriodSeconds=0), check=True)
        wait_for(lambda: len(broker_containers(one_node, all=False)) == 2, 30, "2 running")
        cli(db, "apply", "-f", "-", input=job_yaml("pausable", "sleep 3", completions=2, parallelism=2,
                                                  terminationGracePeriodSeconds=0, suspend=True), check=True)
        wait_for(lambda: not broker_containers(one_node), 30, "containers stopped")
        [obj] = cli_json(db, "get", "jobs", "pausable")
        assert obj["status"]["reason"] == "Suspended" and obj["status"]["active"] == 0
        assert all(not t["phase"] in ("Pending", "Running") for t in tasks_of(db, "Job/pausable"))
        cli(db, "apply", "-f", "-", input=job_yaml("pausable", "sleep 3", completions=2, parallelism=2,
                                                  terminationGracePeriodSeconds=0), check=True)
        assert cli(db, "wait", "job/pausable", "--for", "condition=Complete", "--timeout", "60").returncode == 0
    phases = sorted(t["phase"] for t in tasks_of(db, "Job/pausable"))
    assert phases == ["Stopped", "Stopped", "Succeeded", "Succeeded"]


def test_ttl_after_finished_deletes_the_job_and_its_tasks(one_node, db):
    """A finished Job with ttlSecondsAfterFinished disappears with its tasks once the TTL passes."""
    with ControllerProcess(db):
        cli(db, "apply", "-f", "-", input=job_yaml("brief", "true", ttlSecondsAfterFinished=1), check=True)
        wait_for(lambda: cli_json(db, "get", "jobs") == [] and tasks_of(db, "Job/brief") == [], 40, "job expired")
        kept = job_yaml("kept", "true")
        cli(db, "apply", "-f", "-", input=kept, check=True)
        assert cli(db, "wait", "job/kept", "--for", "condition=Complete", "--timeout", "30").returncode == 0
    assert [j["metadata"]["name"] for j in cli_json(db, "get", "jobs")] == ["kept"]


def test_graceful_stop_gives_a_sigterm_trap_its_grace_period(one_node, db):
    """Deleting a job sends SIGTERM first: a task that traps it gets to clean up and its output is kept."""
    script = 'trap "echo got TERM; sleep 1; echo cleaned up; exit 0" TERM; echo started; while true; do sleep 0.2; done'
    with ControllerProcess(db):
        cli(db, "apply", "-f", "-", input=job_yaml("polite", script, terminationGracePeriodSeconds=5), check=True)
        [task] = wait_for(lambda: [t for t in tasks_of(db, "Job/polite") if t["phase"] == "Running"], 30, "running")
        wait_for(lambda: "started" in cli(db, "logs", task["id"]).stdout, 10, "task output")
        cli(db, "apply", "-f", "-", input=job_yaml("polite", script, terminationGracePeriodSeconds=5, suspend=True),
            check=True)
        wait_for(lambda: not broker_containers(one_node), 30, "container stopped")
        out = cli(db, "logs", task["id"], check=True).stdout
    assert "got TERM" in out and "cleaned up" in out


def test_bind_mounts_need_an_allowed_path_on_the_node(clean_hosts, db, tmp_path):
    """A bind mount under the node's allowedMounts works; docker.sock stays Pending with the reason."""
    import json

    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "input.txt").write_text("from the host\n")
    host = clean_hosts[0]
    node = {"apiVersion": "broker/v1", "kind": "Node", "metadata": {"name": host.name},
            "spec": {"address": host.address, "allowedMounts": [str(shared)]}}
    cli(db, "apply", "-f", "-", input=json.dumps(node), check=True)
    with ControllerProcess(db):
        cli(db, "apply", "-f", "-", input=job_yaml("reader", "cat /in/input.txt",
                                                  template={"mounts": [{"source": str(shared), "target": "/in",
                                                                        "readOnly": True}]}), check=True)
        cli(db, "apply", "-f", "-", input=job_yaml("escalate", "true",
                                                  template={"mounts": [{"source": "/var/run/docker.sock",
                                                                        "target": "/var/run/docker.sock"}]}), check=True)
        assert cli(db, "wait", "job/reader", "--for", "condition=Complete", "--timeout", "60").returncode == 0
        [blocked] = wait_for(lambda: [t for t in tasks_of(db, "Job/escalate") if t["message"]], 20, "a reason")
    assert cli(db, "logs", "job/reader", check=True).stdout.endswith("from the host\n")
    assert blocked["phase"] == "Pending"
    assert blocked["message"] == ("0/1 nodes: 1 bind mount /var/run/docker.sock not in allowedMounts "
                                  "(exact paths; a subpath needs {path, subpaths: true} and readOnly)")


def test_run_streams_output_and_exits_with_the_task_code(one_node, db):
    """`brokerctl run` places a one-off job, prints its output and exits with its exit code."""
    with ControllerProcess(db):
        ok = cli(db, "run", "hello-run", "--image", "busybox", "-e", "WHO=world", "--",
                 "sh", "-c", "echo hello $WHO; sleep 1; echo bye")
        assert ok.returncode == 0, ok.stderr
        assert ok.stdout == "hello world\nbye\n"
        bad = cli(db, "run", "bad-run", "--image", "busybox", "--", "sh", "-c", "echo oops >&2; exit 3")
        assert bad.returncode == 3 and "oops" in bad.stdout
        missing = cli(db, "run", "noimage-run", "--image", "nonexistent.invalid/x:1", "--", "true")
        assert missing.returncode == 125 and "ImagePullFailed" in missing.stderr
        again = cli(db, "run", "hello-run", "--image", "busybox", "--", "true")
        assert again.returncode == 2 and "already exists" in again.stderr
    [task] = tasks_of(db, "Job/bad-run")
    assert task["exitCode"] == 3 and task["phase"] == "Failed"


def test_retry_reruns_a_failed_jobs_failed_completions(one_node, tmp_path, db):
    """`retry job` gives a Failed job a fresh failure budget; succeeded completions are not re-run."""
    import json

    flag = tmp_path / "flag"
    flag.mkdir()
    node = {"apiVersion": "broker/v1", "kind": "Node", "metadata": {"name": one_node.name},
            "spec": {"address": one_node.address, "slots": {"default": 4}, "allowedMounts": [str(flag)]}}
    cli(db, "apply", "-f", "-", input=json.dumps(node), check=True)
    # completion 0 always succeeds; completion 1 fails (once 0 has finished, so the failure cannot
    # stop 0 mid-run) until a file appears on the host
    cmd = ('if [ "$BROKER_TASK_INDEX" = 0 ]; then touch /flag/zero; else '
           'while [ ! -e /flag/zero ]; do sleep 0.1; done; sleep 1; [ -e /flag/ok ]; fi')
    with ControllerProcess(db):
        cli(db, "apply", "-f", "-", input=job_yaml("partial", cmd, completions=2, parallelism=2, backoffLimit=0,
                                                  template={"mounts": [{"source": str(flag), "target": "/flag"}]}),
            check=True)
        assert cli(db, "wait", "job/partial", "--for", "condition=Failed", "--timeout", "60").returncode == 0
        (flag / "ok").write_text("")
        assert cli(db, "retry", "job", "partial", check=True).stdout == "job/partial retried\n"
        assert cli(db, "wait", "job/partial", "--for", "condition=Complete", "--timeout", "60").returncode == 0
        refused = cli(db, "retry", "job", "partial")
    assert refused.returncode == 1 and "is Complete, not Failed" in refused.stderr
    tasks = tasks_of(db, "Job/partial")
    assert [(t["index"], t["attempt"], t["phase"]) for t in tasks] == [
        (0, 1, "Succeeded"), (1, 1, "Failed"), (1, 2, "Succeeded")]
