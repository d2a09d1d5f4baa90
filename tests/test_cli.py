"""The CLI without Docker: exit codes, error messages, stable output fields, help on every command."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path

import pytest

from helpers import cli, cli_json, job_yaml

REPO = Path(__file__).resolve().parent.parent
COMMANDS = ["apply", "get", "describe", "delete", "logs", "wait", "status", "schema", "controller", "run", "retry",
            "cordon", "uncordon", "drain"]

GOOD = """\
apiVersion: broker/v1
kind: Node
metadata: {name: h1}
spec: {address: "tcp://127.0.0.1:2375"}
---
apiVersion: broker/v1
kind: Job
metadata: {name: hello, labels: {type: video}}
spec:
  completions: 2
  template: {image: busybox, command: "echo hi"}
"""


@pytest.fixture
def db(tmp_path):
    return tmp_path / "broker.db"


def test_apply_reports_created_configured_unchanged(db, tmp_path):
    """Apply prints one line per resource: created, then unchanged, then configured after an edit."""
    f = tmp_path / "m.yaml"
    f.write_text(GOOD)
    assert cli(db, "apply", "-f", str(f), check=True).stdout == "node/h1 created\njob/hello created\n"
    assert cli(db, "apply", "-f", str(f), check=True).stdout == "node/h1 unchanged\njob/hello unchanged\n"
    f.write_text(GOOD.replace("completions: 2", "completions: 3"))
    assert cli(db, "apply", "-f", str(f), check=True).stdout == "node/h1 unchanged\njob/hello configured\n"
    [job] = cli_json(db, "get", "jobs")
    assert job["metadata"]["generation"] == 2 and job["spec"]["completions"] == 3


def test_invalid_manifest_exits_2_names_file_line_field_and_writes_nothing(db, tmp_path):
    """A bad document anywhere in the call leaves the store exactly as it was."""
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    cli(db, "apply", "-f", str(good), check=True)
    before = cli(db, "get", "jobs", "-o", "json", check=True).stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("completions: 2", "completions: 5") + "---\n" + job_yaml("other", "true").replace(
        '"image": "busybox"', '"imagee": "busybox"'))
    proc = cli(db, "apply", "-f", str(bad))
    assert proc.returncode == 2
    assert f"{bad}: document 3 (Job/other), line 13: spec.template.imagee: unknown field" in proc.stderr
    assert cli(db, "get", "jobs", "-o", "json", check=True).stdout == before


def test_invalid_yaml_exits_2_with_line(db, tmp_path):
    """Broken YAML syntax is reported with its line and nothing is written."""
    f = tmp_path / "broken.yaml"
    f.write_text("apiVersion: broker/v1\nkind: Job\nmetadata: {name: x\n")
    proc = cli(db, "apply", "-f", str(f))
    assert proc.returncode == 2
    assert f"{f}: line" in proc.stderr and "invalid YAML" in proc.stderr
    assert cli_json(db, "get", "jobs") == []


def test_task_and_job_json_fields_are_stable(db):
    """`-o json` prints arrays of objects with the documented field names."""
    cli(db, "apply", "-f", "-", input=GOOD, check=True)
    [job] = cli_json(db, "get", "jobs")
    assert job["kind"] == "Job" and job["metadata"]["labels"] == {"type": "video"}
    assert {"phase", "active", "succeeded", "failed"} <= set(job["status"])
    assert job["status"]["phase"] == "Pending"
    [node] = cli_json(db, "get", "nodes")
    assert node["status"]["ready"] is False and node["status"]["slotsUsed"] == {}
    assert cli_json(db, "get", "tasks") == []
    yaml_out = cli(db, "get", "jobs", "hello", "-o", "yaml", check=True).stdout
    assert "kind: Job" in yaml_out


def test_label_selector_filters(db):
    """`-l key=value` keeps only resources whose labels match."""
    cli(db, "apply", "-f", "-", input=GOOD + "---\n" + job_yaml("plain", "true"), check=True)
    names = [j["metadata"]["name"] for j in cli_json(db, "get", "jobs", "-l", "type=video")]
    assert names == ["hello"]


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["get", "widgets"], 2, "unknown kind 'widgets'; use node, job or service"),
        (["get", "jobs", "nope"], 1, "Job 'nope' not found"),
        (["get", "jobs", "-o", "xml"], 2, "unknown output format 'xml'"),
        (["delete", "job", "nope"], 1, "Job 'nope' not found"),
        (["logs", "no-such-task"], 1, "task 'no-such-task' not found"),
        (["wait", "job/nope", "--for", "condition=Complete", "--timeout", "1"], 1, "Job 'nope' not found"),
        (["wait", "job/x", "--for", "condition=Done"], 2, "use condition=Complete"),
        (["describe", "job", "nope"], 1, "Job 'nope' not found"),
        (["apply", "-f", "/nonexistent/file.yaml"], 2, "/nonexistent/file.yaml"),
        (["wait", "hello", "--for", "condition=Complete"], 2, "is not KIND/NAME"),
    ],
)
def test_errors_are_one_line_on_stderr_with_nonzero_exit(db, args, code, message):
    """User errors print a message naming the object and the fix, and exit non-zero."""
    proc = cli(db, *args)
    assert proc.returncode == code, proc.stderr
    assert message in proc.stderr
    assert proc.stderr.startswith("error: ")
    assert "Traceback" not in proc.stderr


def test_wait_times_out_with_the_current_state(db):
    """`wait` exits non-zero after its timeout and says where the resource stands."""
    cli(db, "apply", "-f", "-", input=GOOD, check=True)
    proc = cli(db, "wait", "job/hello", "--for", "condition=Complete", "--timeout", "0.5")
    assert proc.returncode == 1
    assert "timed out after 0.5s waiting for job/hello condition=Complete (phase Pending, 0/2 succeeded)" in proc.stderr


def test_unusable_store_path_is_a_clear_error(tmp_path):
    """A store path that cannot be created names the path and how to choose another."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    proc = cli(blocker / "sub" / "broker.db", "status")
    assert proc.returncode == 1
    assert "cannot open store" in proc.stderr and "--db PATH" in proc.stderr


def test_status_without_controller(db):
    """`status` shows the store path and that no controller runs."""
    out = cli(db, "status", check=True).stdout
    assert f"store:      {db}" in out
    assert "controller: not running" in out


def test_schema_command_matches_generated_file(db):
    """`brokerctl schema job` prints the same JSON Schema as schemas/job.json."""
    out = cli(db, "schema", "job", check=True).stdout
    assert json.loads(out) == json.loads((REPO / "schemas" / "job.json").read_text())


def test_delete_without_tasks_is_immediate(db):
    """Deleting a resource that never ran removes it at once."""
    cli(db, "apply", "-f", "-", input=GOOD, check=True)
    assert cli(db, "delete", "job", "hello", check=True).stdout == "job/hello deleted\n"
    assert cli_json(db, "get", "jobs") == []


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(db, command):
    """Each command documents itself in --help."""
    proc = cli(db, command, "--help", check=True)
    assert "Usage:" in proc.stdout
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) >= 3


def test_delete_by_file_removes_what_the_file_defines(db, tmp_path):
    """`delete -f FILE` deletes every resource the file defines."""
    f = tmp_path / "m.yaml"
    f.write_text(GOOD)
    cli(db, "apply", "-f", str(f), check=True)
    assert cli(db, "delete", "-f", str(f), check=True).stdout == "node/h1 deleted\njob/hello deleted\n"
    assert cli_json(db, "get", "jobs") == [] and cli_json(db, "get", "nodes") == []


@pytest.mark.parametrize("args", [["get"], ["run", "x"], ["apply"], ["get", "jobs", "--bogus"]])
def test_usage_errors_exit_2_without_traceback(db, args):
    """Missing arguments and unknown flags print usage help and exit 2, never a traceback."""
    proc = cli(db, *args)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "Error:" in proc.stderr


# -- cordon, uncordon, drain ------------------------------------------------------------------

NODES = """\
apiVersion: broker/v1
kind: Node
metadata: {name: h1}
spec: {address: "tcp://127.0.0.1:2375"}
---
apiVersion: broker/v1
kind: Node
metadata: {name: h2}
spec: {address: "tcp://127.0.0.1:2376"}
"""


def node_state(db) -> dict:
    """name -> (spec.unschedulable, status.draining, status.drainDeadline) from `get nodes -o json`."""
    return {n["metadata"]["name"]: (n["spec"]["unschedulable"], n["status"]["draining"], n["status"]["drainDeadline"])
            for n in cli_json(db, "get", "nodes")}


def status_column(db) -> dict:
    """name -> STATUS cell of the `get nodes` table."""
    lines = cli(db, "get", "nodes", check=True).stdout.splitlines()
    assert lines[0].split()[:2] == ["NAME", "STATUS"]
    return {line.split()[0]: line.split()[1] for line in lines[1:] if line.strip()}


def test_cordon_and_uncordon_say_what_changed_and_show_in_get_nodes(db):
    """cordon/uncordon print one line saying whether they changed the node; get nodes shows SchedulingDisabled."""
    cli(db, "apply", "-f", "-", input=NODES, check=True)

    assert cli(db, "cordon", "h1", check=True).stdout == "node/h1 cordoned\n"
    assert cli(db, "cordon", "node/h1", check=True).stdout == "node/h1 already cordoned\n"
    assert node_state(db) == {"h1": (True, False, None), "h2": (False, False, None)}
    assert status_column(db) == {"h1": "Unknown,SchedulingDisabled", "h2": "Unknown"}

    assert cli(db, "uncordon", "h1", check=True).stdout == "node/h1 uncordoned\n"
    assert cli(db, "uncordon", "h1", check=True).stdout == "node/h1 already schedulable\n"
    assert node_state(db) == {"h1": (False, False, None), "h2": (False, False, None)}


def test_drain_no_wait_cordons_sets_a_deadline_and_uncordon_ends_it(db):
    """drain --no-wait returns at once with the node cordoned and draining until now + --timeout; uncordon ends it."""
    cli(db, "apply", "-f", "-", input=NODES, check=True)

    before = time.time()
    assert cli(db, "drain", "node/h2", "--timeout", "120", "--no-wait", check=True).stdout == (
        "node/h2 cordoned; draining\n")
    after = time.time()
    state = node_state(db)
    assert state["h1"] == (False, False, None)
    unschedulable, draining, deadline = state["h2"]
    assert unschedulable is True and draining is True
    assert before + 120 - 0.01 <= datetime.fromisoformat(deadline.replace("Z", "+00:00")).timestamp() <= after + 120
    assert status_column(db) == {"h1": "Unknown", "h2": "Unknown,SchedulingDisabled,Draining"}

    assert cli(db, "uncordon", "h2", check=True).stdout == "node/h2 uncordoned\n"
    assert node_state(db)["h2"] == (False, False, None)


def test_drain_of_a_node_without_tasks_finishes_at_once(db):
    """drain (waiting) on a node with no active task reports it drained right away, no controller needed."""
    cli(db, "apply", "-f", "-", input=NODES, check=True)

    proc = cli(db, "drain", "h1", "--timeout", "5", timeout=20, check=True)

    assert proc.stdout == "node/h1 cordoned; draining\nnode/h1 drained\n"


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["cordon", "nope"], 1, "error: Node 'nope' not found; `brokerctl get nodes` lists them"),
        (["uncordon", "node/nope"], 1, "error: Node 'nope' not found; `brokerctl get nodes` lists them"),
        (["drain", "nope", "--no-wait"], 1, "error: Node 'nope' not found; `brokerctl get nodes` lists them"),
        (["cordon", "job/h1"], 2, "error: 'job/h1' is not a node"),
    ],
)
def test_cordon_uncordon_drain_of_an_unknown_node_is_one_error_line(db, args, code, message):
    """An unknown node (or a reference to something else) exits non-zero with one error line and no output."""
    proc = cli(db, *args)

    assert proc.returncode == code
    assert proc.stderr.splitlines() == [message] and proc.stdout == ""


def test_a_log_stream_on_a_container_being_removed_ends_quietly(monkeypatch):
    """The controller may collect and remove a container while `run` or `logs -f` streams it; the
    daemon then answers 409 ("dead or marked for removal"). The stream ends (the stored output has
    the rest) instead of failing the command; other API errors still raise."""
    import docker.errors as derr
    import requests

    from reconciler import dockerhost

    def answer(status: int):
        response = requests.Response()
        response.status_code = status

        class Api:
            def logs(self, *args, **kwargs):
                yield b"partial\n"
                raise derr.APIError("logs", response=response, explanation="can not get logs")

        class Client:
            api = Api()
            closed = False

            def close(self):
                Client.closed = True

        monkeypatch.setattr(dockerhost, "_connect", lambda *a, **k: Client())
        return Client

    client = answer(409)
    host = dockerhost.Host("h1", "tcp://127.0.0.1:2375")
    assert list(host.logs("c1", follow=True)) == [b"partial\n"]
    assert client.closed
    answer(500)
    with pytest.raises(derr.APIError):
        list(host.logs("c1", follow=True))
