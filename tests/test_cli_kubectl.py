"""What kubectl users reach for, without Docker: --version, shell completion, listings (several kinds,
short names, `get all`, -o name, --sort-by, --limit, task filters), delete by selector or --all, edit,
the schema headers of the shipped manifests."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from helpers import cli, editor, seen

from reconciler.store import Store

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "broker.db"
    Store(path).close()
    return path


def test_version_prints_the_release_of_the_package(db):
    """`--version` prints the version pyproject.toml releases and runs no command."""
    release = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    done = cli(db, "--version", check=True)
    assert done.stdout == f"brokerctl {release}\n"


# -- completion ------------------------------------------------------------------------------------


def _completion_env(**extra) -> dict:
    """The environment a completion script gives brokerctl: the venv's brokerctl on PATH."""
    import os
    import sys

    return {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", **extra}


def test_bash_completion_script_completes_commands_and_options_in_a_real_bash(db):
    """`source <(brokerctl completion bash)` in bash: the function it registers completes a command
    name and an option of `get`, by asking brokerctl itself."""
    import subprocess

    script = ('source <(brokerctl completion bash)\n'
              'complete -p brokerctl\n'
              'COMP_WORDS=(brokerctl ge); COMP_CWORD=1; _brokerctl_completion brokerctl; echo "1:${COMPREPLY[*]}"\n'
              'COMP_WORDS=(brokerctl get --sel); COMP_CWORD=2; _brokerctl_completion brokerctl; '
              'echo "2:${COMPREPLY[*]}"\n')
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=_completion_env(), timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "complete -o default -F _brokerctl_completion brokerctl"
    assert "1:get" in lines and "2:--selector" in lines


@pytest.mark.parametrize("shell, request_env, expected", [
    ("zsh", {"_TYPER_COMPLETE_ARGS": "brokerctl desc"}, '"describe":'),
    ("fish", {"_TYPER_COMPLETE_ARGS": "brokerctl desc", "_TYPER_COMPLETE_FISH_ACTION": "get-args"}, "describe\t"),
])
def test_zsh_and_fish_scripts_ask_brokerctl_and_get_answers_in_their_format(db, shell, request_env, expected):
    """The zsh and fish scripts call brokerctl with _BROKERCTL_COMPLETE=complete_SHELL; such a call is
    answered (a command name with its help) in the format that script reads."""
    import subprocess
    import sys

    script = cli(db, "completion", shell, check=True).stdout
    assert f"_BROKERCTL_COMPLETE=complete_{shell}" in script and "brokerctl" in script
    done = subprocess.run([sys.executable, "-m", "reconciler"], capture_output=True, text=True, timeout=60,
                          env=_completion_env(_BROKERCTL_COMPLETE=f"complete_{shell}", **request_env))
    assert done.returncode == 0, done.stderr
    assert expected in done.stdout


def test_completion_for_an_unknown_shell_is_a_usage_error(db):
    done = cli(db, "completion", "tcsh")
    assert done.returncode == 2 and "use bash, zsh or fish" in done.stderr and not done.stdout


# -- listings --------------------------------------------------------------------------------------

MANIFESTS = """\
apiVersion: broker/v1
kind: Node
metadata: {name: h1}
spec: {address: "tcp://127.0.0.1:2375"}
---
apiVersion: broker/v1
kind: Namespace
metadata: {name: team-a}
---
apiVersion: broker/v1
kind: Job
metadata: {name: hello, labels: {app: demo}}
spec: {completions: 2, template: {image: busybox, command: "echo hi"}}
---
apiVersion: broker/v1
kind: Job
metadata: {name: big}
spec: {completions: 9, template: {image: busybox, command: "echo hi"}}
---
apiVersion: broker/v1
kind: Job
metadata: {name: mid, namespace: team-a, labels: {app: demo}}
spec: {completions: 5, template: {image: busybox, command: "echo hi"}}
---
apiVersion: broker/v1
kind: Service
metadata: {name: web, labels: {app: demo}}
spec: {replicas: 1, template: {image: busybox, command: "sleep 9"}}
"""


@pytest.fixture
def filled(db):
    """Nodes, a namespace, Jobs in two namespaces, a Service, and tasks in several phases (written
    to the store as a controller would)."""
    from reconciler.kinds import Kind, TaskPhase
    from reconciler.records import TaskRecord

    cli(db, "apply", "-f", "-", input=MANIFESTS, check=True)
    s = Store(db)
    rows = [("hello", "default", 0, TaskPhase.SUCCEEDED), ("hello", "default", 1, TaskPhase.RUNNING),
            ("big", "default", 0, TaskPhase.RUNNING), ("big", "default", 1, TaskPhase.PENDING),
            ("mid", "team-a", 0, TaskPhase.RUNNING)]
    with s.transaction() as tx:
        for i, (job, ns, index, phase) in enumerate(rows):
            s.insert_task(tx, TaskRecord(id=f"{job}-{index}-1", owner_kind=Kind.JOB, owner_name=job, owner_uid="u",
                                         index=index, attempt=1, phase=phase, created_at=10.0 + i, namespace=ns))
    s.close()
    return db


def test_several_kinds_at_once_each_with_its_table_and_names_prefixed(filled):
    """`get jobs,svc`: a table per kind in the order asked, a blank line between, each name with its kind."""
    out = cli(filled, "get", "jobs,svc", check=True).stdout
    jobs, services = out.split("\n\n")
    assert jobs.splitlines()[0].split()[:2] == ["NAME", "PHASE"]
    assert [line.split()[0] for line in jobs.splitlines()[1:]] == ["job/big", "job/hello"]
    assert services.splitlines()[0].split()[:2] == ["NAME", "DESIRED"]
    assert [line.split()[0] for line in services.splitlines()[1:]] == ["service/web"]


def test_get_all_lists_jobs_services_and_tasks_of_the_namespace(filled):
    out = cli(filled, "get", "all", "-o", "name", check=True).stdout
    assert out == ("job/big\njob/hello\nservice/web\n"
                   "task/hello-0-1\ntask/hello-1-1\ntask/big-0-1\ntask/big-1-1\n")
    every = cli(filled, "get", "all", "-A", "-o", "name", check=True).stdout.splitlines()
    assert "job/mid" in every and "task/mid-0-1" in every
    empty = cli(filled, "get", "all", "-n", "team-b")
    assert empty.returncode == 0 and empty.stdout == "" and "No resources found in namespace team-b." in empty.stderr


@pytest.mark.parametrize("short, long", [("svc", "services"), ("ns", "namespaces"), ("no", "nodes"),
                                         ("job", "jobs"), ("ev", "events"), ("task", "tasks")])
def test_short_names_list_what_the_long_names_list(filled, short, long):
    assert cli(filled, "get", short, "-o", "json", check=True).stdout == \
        cli(filled, "get", long, "-o", "json", check=True).stdout


def test_short_names_work_wherever_a_kind_is_typed(filled):
    assert cli(filled, "describe", "svc", "web", check=True).stdout.startswith("Service: web")
    assert cli(filled, "describe", "ns", "team-a", check=True).stdout.startswith("Namespace: team-a")
    assert cli(filled, "describe", "no", "h1", check=True).stdout.startswith("Node: h1")


def test_an_unknown_kind_names_the_kinds_and_short_names(filled):
    done = cli(filled, "get", "jobs,pods")
    assert done.returncode == 2
    assert "unknown kind 'pods'" in done.stderr and "services (svc)" in done.stderr and "all" in done.stderr


def test_output_name_prints_kind_slash_name(filled):
    assert cli(filled, "get", "nodes,ns", "-o", "name", check=True).stdout == \
        "node/h1\nnamespace/default\nnamespace/team-a\n"
    assert cli(filled, "get", "jobs", "-l", "app=demo", "-o", "name", check=True).stdout == "job/hello\n"
    events = cli(filled, "get", "events", "-o", "name")
    assert events.returncode == 2 and "events have no names" in events.stderr


@pytest.mark.parametrize("sort_by", [".spec.completions", "{.spec.completions}", "spec.completions"])
def test_sort_by_a_field_path(filled, sort_by):
    """Numbers sort as numbers: 2 < 5 < 9 (as text, "9" would not come last)."""
    out = cli(filled, "get", "jobs", "-A", "--sort-by", sort_by, "-o", "name", check=True).stdout
    assert out == "job/hello\njob/mid\njob/big\n"


def test_sort_by_a_column_name_sorts_by_the_field_it_shows(filled):
    """PHASE sorts tasks by phase; AGE by creation time, oldest first."""
    by_phase = cli(filled, "get", "tasks", "--sort-by", "PHASE", "-o", "name", check=True).stdout.splitlines()
    assert by_phase == ["task/big-1-1", "task/hello-1-1", "task/big-0-1", "task/hello-0-1"]  # Pending, Running, Succeeded
    by_age = cli(filled, "get", "tasks", "--sort-by", "age", "-o", "name", check=True).stdout.splitlines()
    assert by_age == ["task/hello-0-1", "task/hello-1-1", "task/big-0-1", "task/big-1-1"]


def test_sort_by_a_field_no_item_has_is_a_usage_error(filled):
    done = cli(filled, "get", "jobs", "--sort-by", ".spec.complections")
    assert done.returncode == 2
    assert "no job has the field .spec.complections" in done.stderr and "COMPLETIONS" in done.stderr


def test_limit_keeps_the_first_n_after_sorting_and_says_so(filled):
    done = cli(filled, "get", "jobs", "-A", "--sort-by", ".spec.completions", "--limit", "2", "-o", "name",
               check=True)
    assert done.stdout == "job/hello\njob/mid\n"
    assert "showing the first 2 of 3 jobs; --limit 0 for all" in done.stderr
    assert cli(filled, "get", "jobs", "-A", "--limit", "0", "-o", "name", check=True).stdout.count("\n") == 3


def test_task_filters_by_phase_and_owner(filled):
    def names(*args):
        return cli(filled, "get", "tasks", *args, "-o", "name", check=True).stdout.splitlines()

    assert names("--phase", "Running") == ["task/hello-1-1", "task/big-0-1"]
    assert names("--phase", "running,pending") == ["task/hello-1-1", "task/big-0-1", "task/big-1-1"]
    assert names("--phase", "Running", "--phase", "Succeeded", "--owner", "job/hello") == \
        ["task/hello-0-1", "task/hello-1-1"]
    assert names("--owner", "job/mid") == []
    assert names("--owner", "job/mid", "-n", "team-a") == ["task/mid-0-1"]
    assert names("--owner", "job/mid", "-A") == ["task/mid-0-1"]
    assert names("-A", "--phase", "Running") == ["task/hello-1-1", "task/big-0-1", "task/mid-0-1"]


@pytest.mark.parametrize("args, message", [
    (["tasks", "--phase", "Done"], "--phase 'Done' is not a task phase; use Pending, Running"),
    (["tasks", "--owner", "node/h1"], "tasks belong to a job or a service"),
    (["jobs", "--phase", "Running"], "--phase and --owner filter tasks"),
    (["jobs,services", "hello"], "a name is looked up in one kind"),
])
def test_task_filters_and_names_refuse_what_means_nothing(filled, args, message):
    done = cli(filled, "get", *args)
    assert done.returncode == 2 and message in done.stderr and not done.stdout


# -- logs --tail --since (stored output; live containers: tests/test_e2e_cli.py) ----------------------


@pytest.fixture
def finished(db):
    """Two finished tasks of job/hello with stored output: one ended an hour ago, one a minute ago."""
    import time

    from reconciler.kinds import Kind, TaskPhase
    from reconciler.records import TaskRecord

    cli(db, "apply", "-f", "-", input=MANIFESTS, check=True)
    s = Store(db)
    now = time.time()
    with s.transaction() as tx:
        for index, ended in ((0, now - 3600), (1, now - 60)):
            tid = f"hello-{index}-1"
            s.insert_task(tx, TaskRecord(id=tid, owner_kind=Kind.JOB, owner_name="hello", owner_uid="u", index=index,
                                         attempt=1, phase=TaskPhase.SUCCEEDED, exit_code=0, created_at=ended - 5,
                                         started_at=ended - 5, finished_at=ended))
            s.save_output(tx, tid, b"".join(b"%d-line%d\n" % (index, i) for i in range(1, 6)), False)
    s.close()
    return db


def test_logs_tail_prints_the_last_lines_of_each_task(finished):
    assert cli(finished, "logs", "hello-0-1", "--tail", "2", check=True).stdout == "0-line4\n0-line5\n"
    assert cli(finished, "logs", "job/hello", "--tail", "1", check=True).stdout == \
        "[hello-0-1] 0-line5\n[hello-1-1] 1-line5\n"
    assert cli(finished, "logs", "hello-0-1", "--tail", "0", check=True).stdout == ""


def test_logs_since_keeps_the_output_of_tasks_that_ran_in_that_while(finished):
    """Stored output has no time per line: --since 10m shows the task that ended a minute ago, whole,
    and not the one that ended an hour ago."""
    assert cli(finished, "logs", "job/hello", "--since", "10m", check=True).stdout == \
        "".join(f"[hello-1-1] 1-line{i}\n" for i in range(1, 6))
    assert cli(finished, "logs", "hello-0-1", "--since", "10m", check=True).stdout == ""
    assert cli(finished, "logs", "hello-0-1", "--since", "1h30m", "--tail", "1", check=True).stdout == "0-line5\n"


def test_logs_since_refuses_what_is_not_a_duration(finished):
    done = cli(finished, "logs", "job/hello", "--since", "10 minutes")
    assert done.returncode == 2 and "--since '10 minutes' is not a duration: write e.g. 30s, 10m" in done.stderr


# -- delete -l / --all ------------------------------------------------------------------------------


@pytest.fixture
def applied(db):
    cli(db, "apply", "-f", "-", input=MANIFESTS, check=True)
    return db


def _names(db, kinds="jobs,services"):
    return cli(db, "get", kinds, "-A", "-o", "name", check=True).stdout.split()


def test_delete_by_label_deletes_the_matching_ones_of_the_namespace(applied):
    done = cli(applied, "delete", "jobs,svc", "-l", "app=demo", check=True)
    assert done.stdout.splitlines() == ["job/hello deleted", "service/web deleted"]
    assert _names(applied) == ["job/big", "job/mid"]  # team-a's job/mid matches too, but is not in -n default


def test_delete_by_label_in_every_namespace_with_A(applied):
    done = cli(applied, "delete", "jobs", "-l", "app=demo", "-A", check=True)
    assert sorted(done.stdout.splitlines()) == ["job/hello deleted", "team-a/job/mid deleted"]
    assert _names(applied) == ["job/big", "service/web"]


def test_delete_all_of_a_kind_in_a_namespace(applied):
    assert cli(applied, "delete", "jobs", "--all", "-n", "team-a", check=True).stdout == "team-a/job/mid deleted\n"
    assert _names(applied) == ["job/big", "job/hello", "service/web"]
    done = cli(applied, "delete", "all", "--all", check=True)
    assert sorted(done.stdout.splitlines()) == ["job/big deleted", "job/hello deleted", "service/web deleted"]
    assert _names(applied) == []


def test_delete_by_label_that_matches_nothing_says_so_and_changes_nothing(applied):
    done = cli(applied, "delete", "jobs", "-l", "app=other")
    assert (done.returncode, done.stdout) == (0, "") and "No resources found in namespace default." in done.stderr
    assert len(_names(applied)) == 4


@pytest.mark.parametrize("args, message", [
    (["jobs", "hello", "--all"], "--all deletes every one of a kind"),
    (["-l", "app=demo"], "-l deletes every one of a kind"),
    (["tasks", "--all"], "tasks go with their job or service"),
    (["jobs", "hello", "-A"], "-A deletes by -l or --all"),
    (["jobs", "-l", "app"], "label selector 'app' is not key=value"),
])
def test_delete_by_label_or_all_refuses_what_means_nothing(applied, args, message):
    done = cli(applied, "delete", *args)
    assert done.returncode == 2 and message in done.stderr and not done.stdout
    assert len(_names(applied)) == 4


# -- edit -------------------------------------------------------------------------------------------


def test_edit_opens_get_yaml_and_applies_the_saved_change(applied, tmp_path):
    env = editor(tmp_path, "text = text.replace('completions: 2', 'completions: 7')")
    done = cli(applied, "edit", "job/hello", env=env, check=True)
    assert done.stdout == "job/hello edited\n"
    [opened] = seen(env)
    assert "kind: Job" in opened and "name: hello" in opened and opened.startswith("# Edit the object below")
    [job] = json_of(applied, "jobs", "hello")
    assert job["spec"]["completions"] == 7 and job["metadata"]["generation"] == 2


def test_edit_of_a_namespaced_resource_and_short_names(applied, tmp_path):
    env = editor(tmp_path, "text = text.replace('completions: 5', 'completions: 6')")
    assert cli(applied, "edit", "job", "mid", "-n", "team-a", env=env, check=True).stdout == "team-a/job/mid edited\n"
    assert json_of(applied, "jobs", "mid", "-n", "team-a")[0]["spec"]["completions"] == 6
    env = editor(tmp_path, "text = text.replace('replicas: 1', 'replicas: 3')")
    assert cli(applied, "edit", "svc/web", env=env, check=True).stdout == "service/web edited\n"
    assert json_of(applied, "services", "web")[0]["spec"]["replicas"] == 3


def test_edit_saved_unchanged_or_empty_is_cancelled(applied, tmp_path):
    before = cli(applied, "get", "jobs", "-o", "json", check=True).stdout
    env = editor(tmp_path, "text = text + '# a comment changes nothing\\n'")
    assert cli(applied, "edit", "job/hello", env=env, check=True).stdout == "Edit cancelled, no changes made.\n"
    env = editor(tmp_path, "text = ''")
    assert cli(applied, "edit", "job/hello", env=env, check=True).stdout == "Edit cancelled, saved file was empty.\n"
    assert cli(applied, "get", "jobs", "-o", "json", check=True).stdout == before


def test_a_bad_edit_reopens_with_the_error_and_the_fix_is_applied(applied, tmp_path):
    """First save: an invalid value (nothing applied); the file comes back with the error as comments
    above the person's text; the second save fixes it and is applied."""
    env = editor(tmp_path, "if 'could not be applied' in text:\n"
                           "    text = text.replace('completions: -1', 'completions: 4')\n"
                           "else:\n"
                           "    text = text.replace('completions: 2', 'completions: -1')")
    done = cli(applied, "edit", "job/hello", env=env, check=True)
    assert done.stdout == "job/hello edited\n"
    first, second = seen(env)
    error_lines = second.split("completions: -1")[0].splitlines()
    assert any(line.startswith("# ") and "spec.completions" in line for line in error_lines), second
    assert "completions: -1" in second  # the person's edit is kept
    assert json_of(applied, "jobs", "hello")[0]["spec"]["completions"] == 4


def test_a_bad_edit_saved_again_unchanged_gives_up_and_applies_nothing(applied, tmp_path):
    env = editor(tmp_path, "if 'could not be applied' not in text:\n"
                           "    text = text.replace('name: hello', 'name: other')")
    done = cli(applied, "edit", "job/hello", env=env)
    assert done.returncode == 1 and len(seen(env)) == 2
    assert "is job/other, not job/hello" in done.stderr and "nothing was applied" in done.stderr
    assert _names(applied, "jobs") == ["job/big", "job/hello", "job/mid"]


def test_an_edit_of_a_resource_changed_meanwhile_is_refused_and_reopened_at_its_current_version(applied, tmp_path):
    """Someone applies job/hello while it is open in the editor: the save is refused (nothing of it applied,
    the other change kept) and the editor reopens on the current version with the error; the change made
    there is applied."""
    other = tmp_path / "other.json"
    other.write_text(cli(applied, "get", "job", "hello", "-o", "json", check=True).stdout.replace(
        '"completions": 2', '"completions": 9'))
    env = editor(tmp_path, conflicting_edit(applied, other))
    done = cli(applied, "edit", "job/hello", env=env)
    assert (done.returncode, done.stdout) == (0, "job/hello edited\n"), done.stderr
    first, second = seen(env)
    assert "completions: 2" in first
    assert "# job/hello was changed while it was being edited (generation 1 then, 2 now)" in second
    assert "completions: 9" in second and "completions: 7" not in second  # the current version, not the stale one
    assert json_of(applied, "jobs", "hello")[0]["spec"]["completions"] == 8


def conflicting_edit(db, other) -> str:
    """The editor's body: on first opening, another writer applies ``other`` (completions 9) and the
    editor saves completions 7 over the text it was given; reopened, it makes 9 into 8."""
    return ("if 'was changed while it was being edited' in text:\n"
            "    text = text.replace('completions: 9', 'completions: 8')\n"
            "else:\n"
            "    import subprocess\n"
            f"    subprocess.run([sys.executable, '-m', 'reconciler', '--db', {str(db)!r}, 'apply', '-f', {str(other)!r}],"
            " check=True, capture_output=True)\n"
            "    text = text.replace('completions: 2', 'completions: 7')")


def json_of(db, *args):
    import json

    return json.loads(cli(db, "get", *args, "-o", "json", check=True).stdout)


# -- schema headers of the shipped manifests -------------------------------------------------------

SHIPPED = sorted(p for d in ("examples", "manifests") for p in (REPO / d).rglob("*.y*ml"))


@pytest.mark.parametrize("path", [str(p.relative_to(REPO)) for p in SHIPPED])
def test_each_shipped_manifest_names_the_schema_of_its_kind_for_editors(path):
    """The first line is `# yaml-language-server: $schema=REL`, REL relative to the file and naming
    the schemas/ file of the kind every one of its documents is."""
    import yaml

    from reconciler.kinds import Kind
    from reconciler.spec.schema import schema_file

    file = REPO / path
    first = file.read_text().splitlines()[0]
    prefix = "# yaml-language-server: $schema="
    assert first.startswith(prefix), f"{path} starts with {first!r}"
    target = (file.parent / first.removeprefix(prefix)).resolve()
    kinds = {doc["kind"] for doc in yaml.safe_load_all(file.read_text()) if doc}
    assert len(kinds) == 1, f"{path} mixes kinds {kinds}: one schema per file"
    assert target == REPO / "schemas" / schema_file(Kind(kinds.pop())) and target.is_file()


def test_the_shipped_manifests_still_apply_with_their_headers(db, tmp_path):
    """Every shipped file applies, header included. `apply` reads the PEM files a Node's tls names, which
    live on the controller's machine: copies of the files name stand-ins for them, nothing else changed."""
    import re
    import shutil

    assert SHIPPED
    for d in ("examples", "manifests"):
        shutil.copytree(REPO / d, tmp_path / d)
    for copy in (tmp_path / "examples").rglob("*.y*ml"):
        text = copy.read_text()
        for pem in set(re.findall(r"/etc/brokerctl/\w+\.pem", text)):
            (tmp_path / Path(pem).name).write_text("stand-in\n")
            text = text.replace(pem, str(tmp_path / Path(pem).name))
        copy.write_text(text)
    done = cli(db, "apply", "-f", str(tmp_path / "examples"), "-f", str(tmp_path / "manifests"), check=True)
    assert done.stdout.count(" created\n") == sum(
        1 for p in SHIPPED for line in p.read_text().splitlines() if line.startswith("kind: "))


# -- get -w (with a controller: tests/test_e2e_cli.py) ---------------------------------------------


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_watch_prints_the_table_then_each_changed_row_and_ends_on_a_signal_with_0(applied, sig):
    """`get jobs,svc -w`: the tables, then a row for a Job applied by another process, a row for a
    scaled Service; nothing for what did not change; SIGTERM or Ctrl-C ends it with exit 0."""
    import signal

    from helpers import Watching

    watching = Watching(applied, "get", "jobs,svc", "-w")
    try:
        watching.wait_line(lambda line: line.startswith("service/web"), 60, "the first listing")
        cli(applied, "apply", "-f", "-", input=MANIFESTS.split("---\n")[3].replace("name: big", "name: newer"),
            check=True)
        row = watching.wait_line(lambda line: line.startswith("job/newer"), 30, "the new job's row")
        assert row.split()[1:3] == ["Pending", "0/9"]
        cli(applied, "scale", "service", "web", "--replicas", "3", check=True)
        row = watching.wait_line(lambda line: line.startswith("service/web") and line.split()[1] == "3", 30,
                                 "the scaled service's row")
    finally:
        code = watching.stop(getattr(signal, sig))
    assert code == 0, watching.proc.stderr.read()
    after_first = watching.lines[watching.lines.index(next(x for x in watching.lines if x.startswith("job/newer"))):]
    assert not any(line.startswith(("job/big", "job/hello")) for line in after_first)  # unchanged: not printed


def test_watch_with_output_name_and_json_prints_each_change_once(applied):
    import json

    from helpers import Watching

    watching = Watching(applied, "get", "jobs", "-w", "-o", "json")
    try:
        watching.wait_line(lambda line: line == "]", 60, "the first listing")
        cli(applied, "delete", "job", "big", check=True)
        line = watching.wait_line(lambda line: line.startswith("{"), 30, "the deleted job as a JSON line")
    finally:
        assert watching.stop() == 0
    assert json.loads(line)["metadata"]["name"] == "big"


def test_the_store_change_counter_moves_on_another_connections_commit(db_url):
    """``Store.changes`` (what `get -w` polls): its version moves once another connection commits."""
    from reconciler.spec.manifests import load_text
    from reconciler.store import Store

    reader, writer = Store(db_url, create=True), Store(db_url)
    counter = reader.changes()
    try:
        before = counter.version()
        assert counter.version() == before
        writer.apply([load_text("apiVersion: broker/v1\nkind: Namespace\nmetadata: {name: team-z}\n")[0].resource])
        import time

        deadline = time.monotonic() + 10
        while counter.version() == before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert counter.version() != before
    finally:
        counter.stop()
        reader.close()
        writer.close()


# -- exec (against a running task: tests/test_e2e_cli.py) ------------------------------------------


def test_exec_in_a_task_that_is_not_running_says_so(filled):
    done = cli(filled, "exec", "hello-0-1", "--", "sh")
    assert done.returncode == 1 and "task hello-0-1 is Succeeded, not Running" in done.stderr


def test_exec_without_a_command_is_a_usage_error(filled):
    done = cli(filled, "exec", "hello-1-1")
    assert done.returncode == 2 and "name the command after --" in done.stderr


def test_edit_of_a_secret_is_refused_since_its_values_are_never_shown(applied, tmp_path):
    env = editor(tmp_path, "pass")
    done = cli(applied, "edit", "secret/creds", env=env)
    assert done.returncode == 2 and "a Secret's values are never shown" in done.stderr
    assert not Path(env["_seen"]).exists()  # no editor was opened
