"""The CLI without Docker: exit codes, error messages, stable output fields, help on every command."""

from __future__ import annotations

import json
import time
import warnings
from datetime import datetime
from pathlib import Path

import pytest

from helpers import cli, cli_json, job_yaml

from reconciler.store import Store

REPO = Path(__file__).resolve().parent.parent


def registered_commands() -> dict[tuple[str, ...], object]:
    """Every command and subcommand the typer app registers, by its words on the command line."""
    with warnings.catch_warnings():  # typer's own use of click's deprecated helpers, not ours
        warnings.simplefilter("ignore", DeprecationWarning)
        import typer.main

        from reconciler.cli.app import app

    return dict(sorted(_command_tree(typer.main.get_command(app)).items()))


def _command_tree(root) -> dict[tuple[str, ...], object]:
    """Every command under a click group by its words, in the order ``--help`` lists them; asked of the group
    as click asks it (the root builds its commands only when asked)."""
    import click

    found, groups = {}, [((), root)]
    while groups:
        path, group = groups.pop(0)
        ctx = click.Context(group)
        for name in group.list_commands(ctx):
            command = found[(*path, name)] = group.get_command(ctx, name)
            if isinstance(command, click.Group):
                groups.append(((*path, name), command))
    return found


def _eager_app():
    """The app as typer builds it with every command of ``app.COMMANDS`` registered up front, each module
    imported (``app.command(name)`` / ``app.add_typer``): how `brokerctl` was built before it registered
    them lazily, and what its help and completion must still be, to the byte."""
    import copy
    import importlib

    import typer
    from typer.core import TyperGroup

    from reconciler.cli import app as root

    eager = copy.copy(root.app)
    eager.info = copy.copy(root.app.info)
    eager.info.cls = TyperGroup
    eager.registered_commands, eager.registered_groups = [], []
    for name, (module, attribute) in root.COMMANDS.items():
        defined = getattr(importlib.import_module(f"reconciler.cli.{module}"), attribute)
        if isinstance(defined, typer.Typer):
            eager.add_typer(defined, name=name)
        else:
            eager.command(name)(defined)
    return eager


COMMANDS = registered_commands()

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
    """An empty store (only apply, sync, run and controller create one; the other commands need it)."""
    path = tmp_path / "broker.db"
    Store(path).close()
    return path


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
        (["get", "widgets"], 2, "unknown kind 'widgets'; use nodes (no), namespaces (ns), jobs, services (svc), secrets"),
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
    proc = cli(blocker / "sub" / "broker.db", "apply", "-f", "-", input=GOOD)
    assert proc.returncode == 1
    assert "cannot open store" in proc.stderr and "--db PATH" in proc.stderr


def test_status_without_controller(db):
    """`status` shows the store path and that no controller runs."""
    out = cli(db, "status", check=True).stdout
    assert f"store:      {db}" in out
    assert "controller: not running" in out


@pytest.mark.parametrize("args, message", [
    (["--queue", "lifo"], "--queue lifo: use fair (fair share between namespaces within a priority) or fifo "
                          "(priority, then first come)"),
    (["--fair-share-half-life", "0h"], "--fair-share-half-life 0h: duration '0h' must be longer than 0"),
    (["--fair-share-half-life", "3600"], "--fair-share-half-life 3600: duration '3600' is not a number and a unit"),
])
def test_controller_refuses_a_bad_queue_or_half_life_before_opening_the_store(tmp_path, args, message):
    proc = cli(tmp_path / "new.db", "controller", *args)
    assert proc.returncode == 2 and proc.stderr.startswith(f"error: {message}")
    assert not (tmp_path / "new.db").exists()


def test_schema_command_matches_generated_file(db):
    """`brokerctl schema job` prints the same JSON Schema as schemas/job.json."""
    out = cli(db, "schema", "job", check=True).stdout
    assert json.loads(out) == json.loads((REPO / "schemas" / "job.json").read_text())


def test_delete_without_tasks_is_immediate(db):
    """Deleting a resource that never ran removes it at once."""
    cli(db, "apply", "-f", "-", input=GOOD, check=True)
    assert cli(db, "delete", "job", "hello", check=True).stdout == "job/hello deleted\n"
    assert cli_json(db, "get", "jobs") == []


def test_the_help_test_covers_every_command():
    """The commands are read from the app, so none can be left out (a hand-kept list once missed scale,
    sync, diff and rollout)."""
    assert {" ".join(path) for path in COMMANDS} >= {
        "apply", "get", "describe", "delete", "logs", "wait", "status", "schema", "controller", "run", "retry",
        "cordon", "uncordon", "drain", "scale", "sync", "diff", "rollout", "rollout status", "rollout history",
        "rollout undo"}


def test_lazy_registration_keeps_help_completion_and_suggestions_as_typer_builds_them(monkeypatch):
    """The root group builds a command only when it is invoked; what it prints must be what typer prints with
    every command registered up front: `--help`, every command's and subcommand's `--help`, the usage
    error and typo suggestion of an unknown command, and zsh completion of commands and subcommands."""
    import typer.main
    from click.testing import CliRunner

    from reconciler.cli import app as root
    from reconciler.cli.shell import register_completion_classes

    lazy, eager = typer.main.get_command(root.app), typer.main.get_command(_eager_app())
    assert isinstance(lazy, root._LazyGroup) and not lazy.commands  # nothing built before it is asked for
    paths = list(_command_tree(eager))
    assert list(_command_tree(lazy)) == paths and len(paths) > 30

    def both(args: list[str], **env: str) -> tuple:
        runs = [CliRunner().invoke(group, args, prog_name="brokerctl", env=env) for group in (lazy, eager)]
        return tuple((run.exit_code, run.output) for run in runs)

    for args in ([], ["--help"], ["aply"], ["nosuch", "x"], *([*path, "--help"] for path in paths)):
        shown, expected = both(args)
        assert shown == expected, args
    assert "Did you mean 'apply'?" in both(["aply"])[0][1]
    register_completion_classes()
    for typed in ("brokerctl ", "brokerctl ro", "brokerctl rollout ", "brokerctl get --s"):
        shown, expected = both([], _BROKERCTL_COMPLETE="complete_zsh", _TYPER_COMPLETE_ARGS=typed)
        assert shown == expected and shown[1].strip(), typed


@pytest.mark.parametrize("path", list(COMMANDS), ids=" ".join)
def test_every_command_has_help(db, path):
    """Each command and subcommand documents itself in --help: usage, and a description of its own."""
    proc = cli(db, *path, "--help", check=True)
    assert "Usage:" in proc.stdout
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) >= 3
    described = COMMANDS[path].help
    assert described and " ".join(described.split()[:6]) in " ".join(proc.stdout.split())


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


# -- the store: created only on purpose ---------------------------------------------------------------


@pytest.mark.parametrize("args", [["get", "jobs"], ["status"], ["get", "events"], ["describe", "job", "x"],
                                  ["delete", "job", "x"], ["logs", "t"], ["cordon", "n"], ["sync", "status"],
                                  ["diff", "-f", "-"], ["rollout", "history", "service/x"]])
def test_commands_that_read_a_store_do_not_create_one(tmp_path, args):
    """`get` (and every command but apply, sync, run and controller) on a missing store is an error naming
    the path and the fix, and creates nothing; not even the directory."""
    db = tmp_path / "nonexistent" / "dir" / "x.db"
    proc = cli(db, *args, input=GOOD)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr == (f"error: no store at {db}: directory {db.parent} does not exist. `brokerctl apply`, "
                           "`sync`, `run` and `controller` create one; or pass --db PATH (or set BROKER_DB) to use "
                           "an existing store\n")
    assert list(tmp_path.iterdir()) == []


def test_apply_creates_the_store_and_says_so(tmp_path):
    """apply creates a missing store (file 0600, directories 0700) and says so on stderr, once."""
    import os

    db = tmp_path / "new" / "broker.db"
    assert cli(db, "apply", "-f", "-", input=GOOD.replace("image", "imagee")).returncode == 2
    assert not (tmp_path / "new").exists()  # invalid input creates nothing
    first = cli(db, "apply", "-f", "-", input=GOOD, check=True)
    assert first.stderr == f"created store {db}\n"
    assert first.stdout == "node/h1 created\njob/hello created\n"
    assert os.stat(db).st_mode & 0o777 == 0o600 and os.stat(db.parent).st_mode & 0o777 == 0o700
    assert cli(db, "apply", "-f", "-", input=GOOD, check=True).stderr == ""


def test_sync_creates_the_store_and_a_bad_directory_does_not(tmp_path):
    """sync creates the store too; a sync of a directory that does not exist is a usage error that creates nothing."""
    db = tmp_path / "s.db"
    proc = cli(db, "sync", str(tmp_path / "nope"))
    assert proc.returncode == 2 and not db.exists()
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "a.yaml").write_text(GOOD)
    proc = cli(db, "sync", str(tmp_path / "m"), check=True)
    assert proc.stderr == f"created store {db}\n" and db.exists()


# -- reserved labels and env ---------------------------------------------------------------------------


def test_reserved_labels_and_env_are_refused_and_a_label_filter_cannot_reach_another_owner(db, tmp_path):
    """brokerctl.* labels and BROKER_* env names exit 2 naming the file, document, line and field, and write
    nothing. Since no resource label can be brokerctl.*, `get tasks -l brokerctl.owner=...` matches no task,
    while a user's own label still selects its owner's tasks."""
    from helpers import ControllerProcess, wait_for

    hello = GOOD[GOOD.index("apiVersion: broker/v1\nkind: Job"):]  # no Node: nothing may run anywhere
    cli(db, "apply", "-f", "-", input=hello + "---\n" + job_yaml("other", "true"), check=True)
    forged = tmp_path / "forged.yaml"
    forged.write_text("apiVersion: broker/v1\nkind: Job\nmetadata:\n  name: mine\n"
                      "  labels: {brokerctl.owner: Job/hello, type: video}\n"
                      "spec:\n  template:\n    image: busybox\n    env: {BROKER_OWNER: Job/hello}\n")
    proc = cli(db, "apply", "-f", str(forged))
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"error: {forged}: document 1 (Job/mine), line 5: metadata.labels.brokerctl.owner: invalid key: "
        "'brokerctl.owner': label keys starting with 'brokerctl.' are reserved (brokerctl sets them on every "
        "container); use another key",
        f"{forged}: document 1 (Job/mine), line 9: spec.template.env.BROKER_OWNER: invalid key: 'BROKER_OWNER': "
        "names starting with 'BROKER_' are reserved (brokerctl sets BROKER_TASK_ID, BROKER_TASK_INDEX, "
        "BROKER_ATTEMPT and BROKER_OWNER); use another name",
    ]
    assert [j["metadata"]["name"] for j in cli_json(db, "get", "jobs")] == ["hello", "other"]

    with ControllerProcess(db):  # without nodes the controller still creates the (Pending) tasks
        wait_for(lambda: len(cli_json(db, "get", "tasks")) == 2, 20, "2 pending tasks")
    assert cli_json(db, "get", "tasks", "-l", "brokerctl.owner=Job/hello") == []
    assert cli_json(db, "get", "tasks", "-l", "brokerctl.owner=Job/other") == []
    assert {t["owner"] for t in cli_json(db, "get", "tasks", "-l", "type=video")} == {"Job/hello"}


# -- caught at apply: the CLI's view ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "edit, line, message",
    [
        (("completions: 2", "completions: true"), 10, "spec.completions: expected an integer, got a boolean"),
        (("completions: 2", "completions: 1000001"), 10, "spec.completions: 1000001 is more than the limit of 1,000,000"),
        (("image: busybox", "image: Busybox"), 11, "spec.template.image: image 'Busybox': repository names must "
                                                  "be lowercase ('busybox'?)"),
        (('"tcp://127.0.0.1:2375"', '"tcp://256.1.1.1:2375"'), 4,
         "spec.address: 'tcp://256.1.1.1:2375': '256.1.1.1' is not an IPv4 address (four numbers 0-255)"),
    ],
)
def test_values_that_could_only_fail_later_exit_2_at_apply(db, tmp_path, edit, line, message):
    """Types, caps, image references and node addresses are checked at apply: exit 2, file/line/field, nothing written."""
    f = tmp_path / "m.yaml"
    f.write_text(GOOD.replace(*edit))
    proc = cli(db, "apply", "-f", str(f))
    assert proc.returncode == 2
    kind_name = "Node/h1" if line == 4 else "Job/hello"
    doc = 1 if line == 4 else 2
    assert proc.stderr == f"error: {f}: document {doc} ({kind_name}), line {line}: {message}\n"
    assert cli_json(db, "get", "jobs") == [] and cli_json(db, "get", "nodes") == []


# -- a Job's template -------------------------------------------------------------------------------------


def test_apply_refuses_a_changed_job_template_but_takes_other_changes(db):
    """Changing a Job's template exits 1 naming the Job and the fix, writing nothing; parallelism still changes."""
    cli(db, "apply", "-f", "-", input=GOOD, check=True)
    before = cli_json(db, "get", "jobs", "hello")

    proc = cli(db, "apply", "-f", "-", input=GOOD.replace("echo hi", "echo bye").replace("completions: 2", "completions: 5"))
    assert proc.returncode == 1
    assert proc.stderr == ("error: Job 'hello': spec.template cannot change while the Job exists "
                           "(spec.template.command changed); delete it (`brokerctl delete job hello`) and apply it "
                           "again, or apply it under a new name\n")
    assert cli_json(db, "get", "jobs", "hello") == before

    proc = cli(db, "apply", "-f", "-", input=GOOD.replace("completions: 2", "completions: 2\n  parallelism: 2"),
               check=True)
    assert proc.stdout == "node/h1 unchanged\njob/hello configured\n"


# -- small things ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("content", ["", "---\n", "# nothing here yet\n---\n# or here\n"])
def test_apply_of_a_file_without_documents_exits_2(db, tmp_path, content):
    """An empty file, or one with only `---` or comments, is `FILE: no documents` (exit 2), like an empty directory."""
    f = tmp_path / "empty.yaml"
    f.write_text(content)
    proc = cli(db, "apply", "-f", str(f))
    assert (proc.returncode, proc.stderr, proc.stdout) == (2, f"error: {f}: no documents\n", "")
    proc = cli(db, "apply", "-f", "-", input=content)
    assert (proc.returncode, proc.stderr) == (2, "error: <stdin>: no documents\n")


def test_a_tab_in_indentation_is_named(db):
    """A tab in indentation says that tabs are not allowed, with line and column."""
    proc = cli(db, "apply", "-f", "-", input=GOOD.replace("  completions: 2", "\tcompletions: 2"))
    assert proc.returncode == 2
    assert proc.stderr == ("error: <stdin>: line 10, column 1: invalid YAML: tabs are not allowed in YAML "
                           "indentation; indent with spaces\n")


def add_events(db, n: int, message: str = "m") -> None:
    s = Store(db)
    with s.transaction() as tx:
        for i in range(n):
            s.add_event(tx, "Job", "hello", f"R{i}", message, ts=1714557600.0 + i)
    s.close()


def test_get_events_says_when_it_shows_only_the_last_n(db):
    """`get events` shows the last 500 and says so on stderr when there are more; --limit N changes N, 0 shows all."""
    add_events(db, 502)
    proc = cli(db, "get", "events", "-o", "json", check=True)
    shown = json.loads(proc.stdout)
    assert len(shown) == 500 and shown[0]["reason"] == "R2" and shown[-1]["reason"] == "R501"
    assert proc.stderr == "showing the last 500 events; --limit N for more (0: all)\n"
    proc = cli(db, "get", "events", "--limit", "3", check=True)
    assert [line.split()[3] for line in proc.stdout.splitlines()[1:]] == ["R499", "R500", "R501"]
    assert proc.stderr == "showing the last 3 events; --limit N for more (0: all)\n"
    proc = cli(db, "get", "events", "--limit", "0", "-o", "json", check=True)
    assert len(json.loads(proc.stdout)) == 502 and proc.stderr == ""
    proc = cli(db, "get", "events", "--limit", "502", "-o", "json", check=True)
    assert len(json.loads(proc.stdout)) == 502 and proc.stderr == ""


def test_piped_table_rows_are_never_wrapped(db):
    """`get events | ...`: a 400-character message stays on its row's one line."""
    long = "x" * 150 + " " + "y" * 250
    add_events(db, 1, long)
    lines = cli(db, "get", "events", check=True).stdout.splitlines()
    assert len(lines) == 2 and lines[1].endswith(long) and "Job/hello" in lines[1]


def test_status_times_in_json_are_iso_8601(db):
    """startTime/completionTime of a Job and a Node's since print as ISO 8601, like createdAt."""
    from reconciler.kinds import Kind

    cli(db, "apply", "-f", "-", input=GOOD, check=True)
    s = Store(db)
    with s.transaction() as tx:
        s.set_status(tx, Kind.JOB, "hello", {"phase": "Complete", "startTime": 1714557601.5,
                                             "completionTime": 1714557605.0})
        s.set_status(tx, Kind.NODE, "h1", {"condition": "Ready", "since": 1714557600.0})
    s.close()
    [job] = cli_json(db, "get", "jobs")
    assert (job["status"]["startTime"], job["status"]["completionTime"]) == (
        "2024-05-01T10:00:01.500Z", "2024-05-01T10:00:05.000Z")
    assert cli_json(db, "get", "nodes")[0]["status"]["since"] == "2024-05-01T10:00:00.000Z"
    assert datetime.fromisoformat(job["metadata"]["createdAt"].replace("Z", "+00:00"))


TRICKY = """\
apiVersion: broker/v1
kind: Service
metadata: {name: web, labels: {v: '1e3'}}
spec:
  replicas: 2
  template:
    image: busybox
    command: [httpd, -f]
    env: {A: '0o17', B: 'no', C: '017', D: '', E: 'on'}
    ports: ['8080:80']
"""


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_get_output_applies_back_unchanged(db, fmt):
    """`get KIND NAME -o yaml|json` and `get KIND -o yaml|json` (lists, with status and read-only metadata)
    apply back as `unchanged`, also after the controller's status and a cordon."""
    from reconciler.kinds import Kind

    cli(db, "apply", "-f", "-", input=GOOD + "---\n" + TRICKY, check=True)
    cli(db, "cordon", "h1", check=True)
    s = Store(db)
    with s.transaction() as tx:
        s.set_status(tx, Kind.JOB, "hello", {"phase": "Running", "startTime": 1714557601.5})
    s.close()
    for args in [["get", "jobs", "hello"], ["get", "services", "web"], ["get", "nodes"], ["get", "jobs"]]:
        out = cli(db, *args, "-o", fmt, check=True).stdout
        proc = cli(db, "apply", "-f", "-", input=out, check=True)
        assert proc.stdout.endswith("unchanged\n") and "configured" not in proc.stdout, (args, proc.stdout)
    assert cli(db, "diff", "-f", "-", input=cli(db, "get", "services", "-o", fmt, check=True).stdout,
               check=True).stdout == "no changes\n"


def test_logs_of_a_pending_task_says_it_has_not_started(db):
    """`logs TASK` of a Pending task exits 1 saying it has not started, and why when the task says."""
    from reconciler.kinds import Kind, TaskPhase
    from reconciler.records import TaskRecord

    cli(db, "apply", "-f", "-", input=GOOD, check=True)
    s = Store(db)
    with s.transaction() as tx:
        for i, (reason, message) in enumerate([("Unschedulable", "no node has free default slots"), ("", "")]):
            s.insert_task(tx, TaskRecord(id=f"job-hello-{i}-1", owner_kind=Kind.JOB, owner_name="hello",
                                         owner_uid="u", index=i, attempt=1, phase=TaskPhase.PENDING, reason=reason,
                                         message=message, created_at=1.0))
    s.close()
    proc = cli(db, "logs", "job-hello-0-1")
    assert (proc.returncode, proc.stdout) == (1, "")
    assert proc.stderr == ("error: task job-hello-0-1 is Pending: it has not started yet, so it has no output "
                           "(Unschedulable: no node has free default slots)\n")
    assert cli(db, "logs", "job-hello-1-1").stderr == (
        "error: task job-hello-1-1 is Pending: it has not started yet, so it has no output\n")


@pytest.mark.parametrize(
    "target, condition, valid",
    [
        ("job/hello", "Ready", "condition=Complete or condition=Failed"),
        ("service/web", "Complete", "condition=Ready"),
        ("service/web", "Failed", "condition=Ready"),
        ("node/h1", "Complete", "condition=Ready"),
    ],
)
def test_wait_rejects_a_condition_the_kind_does_not_have(db, target, condition, valid):
    """Waiting for Ready on a Job (or Complete on a Service or Node) could never end: a usage error naming the valid ones."""
    kind = target.split("/")[0].capitalize()
    proc = cli(db, "wait", target, "--for", f"condition={condition}", "--timeout", "1")
    assert proc.returncode == 2
    assert proc.stderr == (f"error: --for 'condition={condition}': a {kind} has no {condition} condition; "
                           f"use {valid}\n")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--image", "Busy Box"], "spec.template.image: image 'Busy Box' contains whitespace"),
        (["--image", "busybox", "-e", "BROKER_TASK_ID=x"], "spec.template.env.BROKER_TASK_ID: 'BROKER_TASK_ID': "
                                                           "names starting with 'BROKER_' are reserved"),
    ],
)
def test_run_checks_what_apply_checks_before_creating_anything(tmp_path, args, message):
    """`run` validates its Job like apply does: a usage error (exit 2) and no store is created."""
    db = tmp_path / "s.db"
    proc = cli(db, "run", "one", *args, "--", "true")
    assert proc.returncode == 2 and proc.stderr.startswith(f"error: brokerctl run one: {message}")
    assert not db.exists()


# -- namespaces ---------------------------------------------------------------------------------

TEAMS = """\
apiVersion: broker/v1
kind: Namespace
metadata: {name: team-a}
spec: {quota: {cpus: 8, memory: 16g, tasks: 40}, budget: {cpuHours: 500, window: 30d}, share: 2,
       nodeSelector: {pool: shared}}
---
apiVersion: broker/v1
kind: Namespace
metadata: {name: team-b}
"""


def nightly(namespace: str | None = None, completions: int = 1) -> str:
    ns = f", namespace: {namespace}" if namespace else ""
    return (f"apiVersion: broker/v1\nkind: Job\nmetadata: {{name: nightly{ns}}}\n"
            f"spec: {{completions: {completions}, template: {{image: busybox, resources: {{cpus: 0.5, memory: 64m}}}}}}\n")


def teams(db) -> None:
    cli(db, "apply", "-f", "-", input=TEAMS + "---\n" + nightly("team-a") + "---\n" + nightly("team-b") + "---\n"
        + nightly(), check=True)


def table(db, *args) -> list[list[str]]:
    return [line.split() for line in cli(db, *args, check=True).stdout.splitlines()]


def test_get_namespaces_shows_status_tasks_share_and_quota(db):
    teams(db)
    s = Store(db)
    from reconciler.kinds import Kind, TaskPhase
    from reconciler.records import TaskRecord

    hour = 3600.0
    with s.transaction() as tx:
        s.insert_task(tx, TaskRecord(id="nightly-x-0-1", owner_kind=Kind.JOB, owner_name="nightly",
                                     owner_uid="x", index=0, attempt=1, phase=TaskPhase.RUNNING, node="h1",
                                     namespace="team-a"))
        # Half an hour at 0.5 cpus inside the 30-day window (0.25 cpu-hours of the budget), and a run before it
        for i, (start, end) in enumerate([(2 * hour, 1.5 * hour), (31 * 24 * hour, 31 * 24 * hour - 1)], 1):
            s.insert_task(tx, TaskRecord(id=f"nightly-x-{i}-1", owner_kind=Kind.JOB, owner_name="nightly",
                                         owner_uid="x", index=i, attempt=1, phase=TaskPhase.SUCCEEDED, node="h1",
                                         namespace="team-a", started_at=time.time() - start,
                                         finished_at=time.time() - end))
    s.close()
    lines = cli(db, "get", "namespaces", check=True).stdout.splitlines()
    assert lines[0].split() == ["NAME", "STATUS", "TASKS", "SHARE", "QUOTA", "BUDGET", "AGE"]
    assert [line.split()[:4] for line in lines[1:]] == [["default", "Active", "0", "1"], ["team-a", "Active", "1", "2"],
                                                        ["team-b", "Active", "0", "1"]]
    assert "cpus 0.5/8, memory 64m/16g, tasks 1/40  0.25/500 cpu-hours in 30d" in lines[2]
    assert lines[3].split()[4:6] == ["-", "-"]
    wide = cli(db, "get", "namespaces", "team-a", "-o", "wide", check=True).stdout.splitlines()
    assert wide[0].split()[-3:] == ["NODE", "SELECTOR", "MOUNTS"] and "pool=shared" in wide[1]
    [ns] = cli_json(db, "get", "namespace", "team-a")
    assert ns["status"] == {"phase": "Active", "running": 1, "used": {
        "cpus": 0.5, "memory": 64 << 20, "tasks": 1, "slots": {"default": 1}, "cpuHours": 0.25}}
    assert cli(db, "get", "namespaces", "-A", check=True).stdout.splitlines()[0].split()[0] == "NAME", \
        "cluster-scoped: no NAMESPACE column"


def test_one_namespace_by_default_every_one_with_a_namespace_column_under_all_namespaces(db):
    """`get jobs` lists the default namespace as before (no NAMESPACE column); -n another; -A every one;
    JSON says each object's namespace."""
    teams(db)
    assert table(db, "get", "jobs")[0] == ["NAME", "PHASE", "COMPLETIONS", "ACTIVE", "FAILED", "AGE"]
    assert [r[0] for r in table(db, "get", "jobs")[1:]] == ["nightly"]
    assert [j["metadata"]["namespace"] for j in cli_json(db, "get", "jobs", "-n", "team-b")] == ["team-b"]
    rows = table(db, "get", "jobs", "-A")
    assert rows[0][:2] == ["NAMESPACE", "NAME"] and [r[:2] for r in rows[1:]] == [
        ["default", "nightly"], ["team-a", "nightly"], ["team-b", "nightly"]]
    assert [j["metadata"]["namespace"] for j in cli_json(db, "get", "jobs", "--all-namespaces")] == [
        "default", "team-a", "team-b"]
    env = cli(db, "get", "jobs", "-o", "json", check=True, env={"BROKER_NAMESPACE": "team-a"}).stdout
    assert [j["metadata"]["namespace"] for j in json.loads(env)] == ["team-a"]
    assert cli(db, "get", "jobs", "nightly", "-n", "team-x").stderr.strip() == (
        "error: Job 'nightly' not found in namespace 'team-x'; `brokerctl get jobs -n team-x` lists them")

    from reconciler.kinds import Kind, TaskPhase
    from reconciler.records import TaskRecord

    s = Store(db)
    with s.transaction() as tx:
        for ns in ("default", "team-a"):
            s.insert_task(tx, TaskRecord(id=f"nightly-{ns}-0-1", owner_kind=Kind.JOB, owner_name="nightly",
                                         owner_uid="x", index=0, attempt=1, phase=TaskPhase.PENDING, namespace=ns))
            s.add_event(tx, "Job", "nightly", "Scheduled", f"in {ns}", namespace=ns)
        s.add_event(tx, "Node", "h1", "NodeReady", "ready")
    s.close()
    assert table(db, "get", "tasks")[0][0] == "ID" and [r[0] for r in table(db, "get", "tasks")[1:]] == [
        "nightly-default-0-1"]
    assert [r[:2] for r in table(db, "get", "tasks", "-A")] == [
        ["NAMESPACE", "ID"], ["default", "nightly-default-0-1"], ["team-a", "nightly-team-a-0-1"]]
    assert [t["namespace"] for t in cli_json(db, "get", "tasks", "-n", "team-a")] == ["team-a"]
    assert [r[-1] for r in table(db, "get", "events", "-n", "team-a")[1:]] == ["team-a", "ready"]
    assert table(db, "get", "events", "-A")[0][:2] == ["NAMESPACE", "AGE"]
    events = cli_json(db, "get", "events", "-A")
    assert [(e["namespace"], e["object"]) for e in events] == [
        ("default", "Job/nightly"), ("team-a", "Job/nightly"), (None, "Node/h1")]
    assert [e["message"] for e in cli_json(db, "get", "events", "--for", "job/nightly", "-n", "team-a")] == [
        "in team-a"]


def test_applying_into_a_missing_namespace_exits_1_naming_the_document_and_writes_nothing(db, tmp_path):
    f = tmp_path / "job.yaml"
    f.write_text(nightly() + "---\n" + nightly("team-x").replace("nightly", "other", 1))
    proc = cli(db, "apply", "-f", str(f))
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr == (f"error: {f}: document 2 (Job/other): namespace 'team-x' does not exist; apply a "
                           "Namespace named team-x first (kind: Namespace), or use -n/--namespace\n")
    assert cli_json(db, "get", "jobs", "-A") == []
    proc = cli(db, "apply", "-f", str(f), "-n", "team-y")
    assert proc.returncode == 1 and f"{f}: document 1 (Job/nightly): namespace 'team-y' does not exist" in proc.stderr
    bad = cli(db, "get", "jobs", "-n", "Team_A")
    assert bad.returncode == 2 and "--namespace 'Team_A' is not a namespace name" in bad.stderr
    mixed = cli(db, "get", "jobs", "nightly", "-A")
    assert mixed.returncode == 2 and "use -n NAMESPACE, not -A" in mixed.stderr


def test_apply_and_delete_say_the_namespace_outside_default_and_get_output_applies_back(db):
    out = cli(db, "apply", "-f", "-", input=TEAMS + "---\n" + nightly("team-a") + "---\n" + nightly(), check=True)
    assert out.stdout.splitlines() == ["namespace/team-a created", "namespace/team-b created",
                                       "team-a/job/nightly created", "job/nightly created"]
    for fmt in ("yaml", "json"):
        text = cli(db, "get", "jobs", "-A", "-o", fmt, check=True).stdout
        assert cli(db, "apply", "-f", "-", input=text, check=True).stdout.splitlines() == [
            "job/nightly unchanged", "team-a/job/nightly unchanged"]
        text = cli(db, "get", "namespaces", "-o", fmt, check=True).stdout
        assert cli(db, "apply", "-f", "-", input=text, check=True).stdout.splitlines() == [
            "namespace/default unchanged", "namespace/team-a unchanged", "namespace/team-b unchanged"]
    changed = nightly(completions=3)
    assert cli(db, "diff", "-f", "-", "-n", "team-a", input=changed).stdout.splitlines() == [
        "team-a/job/nightly configured", "  ~ spec.completions: 1 -> 3"]
    assert cli(db, "delete", "job", "nightly", "-n", "team-a", check=True).stdout == "team-a/job/nightly deleted\n"
    assert [j["metadata"]["namespace"] for j in cli_json(db, "get", "jobs", "-A")] == ["default"]


def test_deleting_a_namespace_lists_what_it_holds_and_needs_yes(db):
    teams(db)
    proc = cli(db, "delete", "namespace", "team-b")
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr == ("error: namespace 'team-b' holds 1 job (nightly); pass --yes to delete namespace team-b "
                           "and everything in it\n")
    assert [j["metadata"]["namespace"] for j in cli_json(db, "get", "jobs", "-A")] == ["default", "team-a", "team-b"]
    assert cli(db, "delete", "namespace", "team-b", "--yes", check=True).stdout == "namespace/team-b deleted\n"
    assert [j["metadata"]["namespace"] for j in cli_json(db, "get", "jobs", "-A")] == ["default", "team-a"]
    assert [n["metadata"]["name"] for n in cli_json(db, "get", "namespaces")] == ["default", "team-a"]
    refused = cli(db, "delete", "namespace", "default", "-y")
    assert refused.returncode == 1 and "namespace 'default' cannot be deleted" in refused.stderr


def test_describe_a_namespace_shows_its_use_and_what_it_contains(db):
    teams(db)
    out = cli(db, "describe", "namespace", "team-a", check=True).stdout
    assert out.startswith("Namespace: team-a\n") and "phase: Active" in out
    assert out.endswith("contains:\n  job/nightly\n")
    out = cli(db, "describe", "job", "nightly", "-n", "team-b", check=True).stdout
    assert "namespace: team-b" in out


def test_scale_wait_retry_and_rollout_take_the_namespace(db):
    from reconciler.kinds import Kind

    web = ("apiVersion: broker/v1\nkind: Service\nmetadata: {name: web, namespace: team-a}\n"
           "spec: {replicas: 1, template: {image: busybox, resources: {cpus: 1, memory: 64m}}}\n")
    cli(db, "apply", "-f", "-", input=TEAMS + "---\n" + web + "---\n" + nightly("team-a"), check=True)
    assert cli(db, "scale", "service", "web", "--replicas", "3", "-n", "team-a", check=True).stdout == \
        "team-a/service/web scaled from 1 to 3\n"
    assert cli(db, "scale", "service", "web", "--replicas", "3").returncode == 1, "no web in default"
    cli(db, "apply", "-f", "-", input=web.replace("image: busybox", "image: 'busybox:1'"), check=True)
    assert [r.split()[0] for r in cli(db, "rollout", "history", "service/web", "-n", "team-a",
                                      check=True).stdout.splitlines()[1:]] == ["1", "2"]
    assert cli(db, "rollout", "undo", "service/web", "-n", "team-a", check=True).stdout.startswith(
        "team-a/service/web rolled back to template ")
    assert cli(db, "rollout", "status", "service/web", "--no-watch").returncode == 1, "no web in default"
    s = Store(db)
    with s.transaction() as tx:
        s.set_status(tx, Kind.JOB, "nightly", {"phase": "Failed"}, namespace="team-a")
    s.close()
    assert cli(db, "wait", "job/nightly", "--for", "condition=Failed", "-n", "team-a", "--timeout", "1",
               check=True).stdout == "job/nightly condition met: Failed\n"
    assert cli(db, "retry", "job", "nightly", "-n", "team-a", check=True).stdout == "team-a/job/nightly retried\n"
    assert "Job 'nightly' not found" in cli(db, "logs", "job/nightly").stderr
    assert cli(db, "logs", "job/nightly", "-n", "team-a", check=True).stdout == ""


def test_the_two_teams_example_applies_with_its_namespaces(db):
    out = cli(db, "apply", "-f", str(REPO / "examples" / "two-teams"), check=True).stdout
    assert out.splitlines() == ["namespace/team-a created", "namespace/team-b created", "team-a/job/nightly created",
                                "team-b/job/nightly created"]
    assert [(j["metadata"]["namespace"], j["spec"]["completions"]) for j in cli_json(db, "get", "jobs", "-A")] == [
        ("team-a", 4), ("team-b", 2)]
    rows = {line.split()[0]: line for line in cli(db, "get", "namespaces", check=True).stdout.splitlines()[1:]}
    assert "2      cpus 0/4, memory 0/2g, tasks 0/8  0/100 cpu-hours in 7d" in rows["team-a"]
    assert "1      cpus 0/2, tasks 0/4               -" in rows["team-b"]
    # What the files define goes, Namespaces last; nothing else is in them, so no --yes is needed.
    out = cli(db, "delete", "-f", str(REPO / "examples" / "two-teams"), check=True).stdout
    assert out.splitlines() == ["team-a/job/nightly deleted", "team-b/job/nightly deleted", "namespace/team-a deleted",
                                "namespace/team-b deleted"]


def test_server_hands_its_queue_options_to_the_controller_it_runs(tmp_path, monkeypatch):
    """`server --queue fifo --fair-share-half-life 2h` reaches the in-process controller's settings, as
    `controller` takes them."""
    from typer.testing import CliRunner

    import reconciler.api.server as api_server
    from reconciler.cli.app import app

    seen = {}
    monkeypatch.setattr(api_server, "serve", lambda settings, say: seen.setdefault("loop", settings.loop))
    result = CliRunner().invoke(app, ["--db", str(tmp_path / "s.db"), "server", "--queue", "fifo",
                                      "--fair-share-half-life", "2h"])
    assert result.exit_code == 0, result.output
    assert (seen["loop"].queue, seen["loop"].fair_share_half_life) == ("fifo", 7200.0)
