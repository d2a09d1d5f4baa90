"""GitOps without Docker: `ops.sync` on real directories and SQLite stores, and the
`sync`, `sync status` and `diff` commands."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from watchfiles import Change

from helpers import cli, cli_json
from reconciler.ops import sync as gitops
from reconciler.runtime import watch
from reconciler.spec import manifests
from reconciler.spec.models import Kind, TaskPhase
from reconciler.records import TaskRecord
from reconciler.store import Store

# -- factories ----------------------------------------------------------------------------


def job(name: str, completions: int = 1, labels: dict | None = None) -> str:
    """A Job manifest; the field on line 7 is spec.completions."""
    return (f"apiVersion: broker/v1\nkind: Job\nmetadata:\n  name: {name}\n  labels: {json.dumps(labels or {})}\n"
            f"spec:\n  completions: {completions}\n  template: {{image: busybox}}\n")


def service(name: str, image: str, replicas: int = 2) -> str:
    return (f"apiVersion: broker/v1\nkind: Service\nmetadata: {{name: {name}}}\n"
            f"spec:\n  replicas: {replicas}\n  template: {{image: '{image}'}}\n")


def invalid(name: str) -> str:
    """A Job manifest with a misspelt field: it fails validation."""
    return job(name, 9).replace("completions", "completionz")


def write(directory: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def hand_apply(store: Store, text: str) -> None:
    """What `brokerctl apply -f` does with ``text``."""
    store.apply([item.resource for item in manifests.load_text(text, "hand.yaml")])


def completions(store: Store, name: str) -> int:
    return store.resource(Kind.JOB, name).spec["completions"]


def job_names(store: Store) -> list[str]:
    return [r.name for r in store.resources(Kind.JOB)]


def reasons(store: Store, kind: str, name: str) -> list[str]:
    return [e["reason"] for e in store.events(kind, name)]


def git(directory: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(directory), "-c", "user.name=t", "-c", "user.email=t@example.com",
                           "-c", "commit.gpgsign=false", *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture
def db(tmp_path):
    return tmp_path / "broker.db"


@pytest.fixture
def store(db):
    s = Store(db)
    yield s
    s.close()


@pytest.fixture
def src(tmp_path):
    path = tmp_path / "manifests"
    path.mkdir()
    return path


# -- add, edit, delete ----------------------------------------------------------------------


def test_added_edited_and_deleted_files_create_configure_and_prune(store, src):
    """A new file creates, an edited file configures, a deleted file prunes (with a Pruned event)."""
    write(src, {"a.yaml": job("a"), "b.yaml": job("b"), "sub/c.yaml": job("c")})

    report = gitops.sync(store, src)
    assert report["results"] == [("Job/a", "created"), ("Job/b", "created"), ("Job/c", "created")]
    assert report["pruned"] == [] and report["problems"] == {} and report["refused"] is None
    assert [r.source for r in store.owned_by(str(src))] == [str(src)] * 3

    (src / "a.yaml").write_text(job("a", 3))
    (src / "sub" / "c.yaml").unlink()
    report = gitops.sync(store, src)

    assert report["results"] == [("Job/a", "configured"), ("Job/b", "unchanged")]
    assert report["pruned"] == [("Job/c", "deleted")]
    assert gitops.summary(report) == ["job/a configured", "job/c pruned (deleted)"]
    assert job_names(store) == ["a", "b"]
    assert completions(store, "a") == 3 and store.resource(Kind.JOB, "a").generation == 2
    [pruned] = store.events("Job", "c")
    assert (pruned["reason"], pruned["message"]) == ("Pruned", f"Job/c is no longer in {src}; deleted")

    assert gitops.summary(gitops.sync(store, src)) == []


def test_a_pruned_resource_with_live_tasks_is_deleting_and_waits_when_defined_again(store, src):
    """Pruning goes through delete: a Job with a running task is marked deleting, and a file defining it again waits."""
    write(src, {"a.yaml": job("a"), "b.yaml": job("b"), "c.yaml": job("c")})
    gitops.sync(store, src)
    uid = store.resource(Kind.JOB, "a").uid
    with store.transaction() as tx:
        store.insert_task(tx, TaskRecord(id="a-1", owner_kind=Kind.JOB, owner_name="a", owner_uid=uid, index=0,
                                         attempt=1, phase=TaskPhase.RUNNING, created_at=1.0))

    (src / "a.yaml").unlink()
    assert gitops.sync(store, src)["pruned"] == [("Job/a", "deleting")]
    assert store.resource(Kind.JOB, "a").deleted_at is not None

    (src / "a.yaml").write_text(job("a"))
    report = gitops.sync(store, src)
    assert ("Job/a", "waiting: being deleted") in report["results"] and report["pruned"] == []


def test_a_file_that_changes_a_jobs_template_is_held_back_and_sync_exits_1(db, src):
    """`sync DIR`: a Job whose template changed in its file is reported (delete and re-create, or rename) and
    kept as it was, not pruned; the other files sync; exit 1. `diff DIR` exits 2 with the same problem."""
    write(src, {"a.yaml": job("a"), "b.yaml": job("b")})
    cli(db, "sync", str(src), check=True)
    write(src, {"a.yaml": job("a").replace("{image: busybox}", "{image: busybox, command: [echo, new]}"),
                "b.yaml": job("b", 2)})

    proc = cli(db, "diff", "-f", str(src))
    problem = ("a.yaml: Job 'a': spec.template cannot change while the Job exists (spec.template.command changed); "
               "delete it (`brokerctl delete job a`) and apply it again, or apply it under a new name")
    assert (proc.returncode, proc.stderr) == (2, f"error: {problem}\n")
    proc = cli(db, "sync", str(src))
    assert proc.returncode == 1
    assert proc.stdout.splitlines() == ["job/b configured", "job/a kept: its file is invalid", f"invalid: {problem}"]
    assert [(j["metadata"]["name"], j["spec"]["template"]["command"], j["spec"]["completions"])
            for j in cli_json(db, "get", "jobs")] == [("a", None, 1), ("b", None, 2)]


def test_a_file_all_commented_out_in_a_synced_directory_is_not_invalid(store, src):
    """A synced directory may hold a file with every document commented out (a resource switched off):
    it defines nothing and is no problem, unlike the same file given to `apply -f`."""
    write(src, {"a.yaml": job("a"), "off.yaml": "# " + job("b").replace("\n", "\n# ") + "\n---\n"})
    report = gitops.sync(store, src)
    assert report["problems"] == {} and report["results"] == [("Job/a", "created")]
    assert report["files"] == {"a.yaml": {"state": "ok", "message": "", "resources": ["Job/a"]}}


# -- ownership ------------------------------------------------------------------------------


def test_a_hand_applied_resource_with_the_same_name_is_reported_and_never_pruned(store, src):
    """A directory defining a resource applied by hand gets a per-file problem; it is never changed or pruned."""
    hand_apply(store, job("x", 5))
    write(src, {"x.yaml": job("x", 1), "y.yaml": job("y"), "z.yaml": job("z")})

    report = gitops.sync(store, src)

    assert report["problems"]["x.yaml"].startswith("Job/x already exists, created by hand (brokerctl apply)")
    assert report["files"]["x.yaml"]["state"] == "invalid"
    assert report["results"] == [("Job/y", "created"), ("Job/z", "created")]
    hand = store.resource(Kind.JOB, "x")
    assert (hand.spec["completions"], hand.source, hand.generation) == (5, None, 1)

    (src / "x.yaml").unlink()
    report = gitops.sync(store, src)
    assert report["pruned"] == [] and report["problems"] == {}
    assert job_names(store) == ["x", "y", "z"]
    assert [r.name for r in store.owned_by(str(src))] == ["y", "z"]


def test_a_resource_owned_by_another_directory_is_left_alone(store, tmp_path):
    """A second directory defining a resource the first one created is told so and changes nothing of it."""
    first, second = tmp_path / "first", tmp_path / "second"
    write(first, {"j.yaml": job("j", 1)})
    write(second, {"j.yaml": job("j", 4), "k.yaml": job("k")})
    gitops.sync(store, first)

    report = gitops.sync(store, second)

    assert report["problems"] == {"j.yaml": (
        f"Job/j already exists, created by directory {first}; this directory only manages what it created: "
        "delete that one or rename this one")}
    assert report["results"] == [("Job/k", "created")] and report["pruned"] == []
    owner = store.resource(Kind.JOB, "j")
    assert (owner.spec["completions"], owner.source, owner.generation) == (1, str(first), 1)
    assert [r.name for r in store.owned_by(str(second))] == ["k"]

    (second / "k.yaml").write_text(job("k", 2))
    (second / "j.yaml").unlink()
    assert gitops.sync(store, second)["pruned"] == []
    assert job_names(store) == ["j", "k"] and store.resource(Kind.JOB, "j").source == str(first)


# -- invalid and duplicate files --------------------------------------------------------------


def test_an_invalid_file_holds_its_resources_while_the_rest_syncs_and_recovers_when_fixed(store, src):
    """An invalid file's resources keep their last good state (not changed or pruned); the rest syncs; a fix applies."""
    write(src, {"a.yaml": job("a"), "sub/b.yaml": job("b", 2), "c.yaml": job("c"), "d.yaml": job("d")})
    gitops.sync(store, src)
    before = store.resource(Kind.JOB, "b")

    write(src, {"a.yaml": job("a", 3), "sub/b.yaml": invalid("b")})
    (src / "c.yaml").unlink()
    report = gitops.sync(store, src)

    problem = report["problems"]["sub/b.yaml"]
    assert problem.startswith("sub/b.yaml: document 1 (Job/b), line ") and "spec.completionz: unknown field" in problem
    assert str(src) not in problem
    assert report["kept"] == ["Job/b"] and report["pruned"] == [("Job/c", "deleted")]
    assert report["results"] == [("Job/a", "configured"), ("Job/d", "unchanged")]
    assert store.resource(Kind.JOB, "b") == before
    assert completions(store, "a") == 3 and job_names(store) == ["a", "b", "d"]
    [status] = store.sync_status(str(src))
    assert status["files"]["sub/b.yaml"] == {"state": "invalid", "message": problem, "resources": []}
    assert status["files"]["a.yaml"] == {"state": "ok", "message": "", "resources": ["Job/a"]}
    assert "InvalidManifest" in reasons(store, "Directory", str(src))

    (src / "sub" / "b.yaml").write_text(job("b", 7))
    report = gitops.sync(store, src)

    assert report["problems"] == {} and report["kept"] == [] and ("Job/b", "configured") in report["results"]
    assert completions(store, "b") == 7
    assert store.sync_status(str(src))[0]["files"]["sub/b.yaml"] == {
        "state": "ok", "message": "", "resources": ["Job/b"]}


def test_a_resource_defined_in_two_files_holds_back_the_later_file(store, src):
    """The later file (in name order) defining a resource again is held with its other resources; the first applies."""
    write(src, {"a.yaml": job("x", 1), "b.yaml": job("y", 1)})
    gitops.sync(store, src)

    (src / "b.yaml").write_text(job("x", 8) + "---\n" + job("y", 8))
    state = gitops.read_dir(src)
    assert state.held == {"b.yaml": "Job/x is also defined in a.yaml"}
    assert [(f, m.metadata.name) for f, m in state.items] == [("a.yaml", "x")]

    report = gitops.sync(store, src)

    assert report["problems"] == {"b.yaml": "Job/x is also defined in a.yaml"}
    assert report["kept"] == ["Job/y"] and report["pruned"] == []
    assert (completions(store, "x"), completions(store, "y")) == (1, 1)


def test_read_dir_skips_editor_temp_files_and_dotfiles(src):
    """Editor leftovers, dotfiles, dot-directories and other suffixes are not read; outside git there is no commit."""
    write(src, {"a.yaml": job("a")})
    for junk in ["a.yaml~", "a.yaml.swp", ".a.yaml.swp", ".#a.yaml", "a.yaml.bak", "a.yaml.tmp", "#a.yaml#",
                 ".hidden.yaml", ".git/x.yaml", ".idea/y.yml", "notes.md"]:
        write(src, {junk: "kind: [\n"})

    state = gitops.read_dir(src)

    assert [(f, m.metadata.name) for f, m in state.items] == [("a.yaml", "a")]
    assert state.held == {} and state.source == str(src) and state.commit is None


# -- mass-prune guard ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "owned, removed, refused",
    [
        (4, 2, False),  # exactly half
        (3, 1, False),
        (2, 1, False),  # exactly half
        (4, 3, True),  # more than half
        (3, 2, True),
        (2, 2, True),  # all
        (1, 1, True),  # all
    ],
)
def test_a_sync_pruning_more_than_half_or_all_is_refused(store, src, owned, removed, refused):
    """Pruning more than half (or all) of what the directory owns writes nothing but the refusal (row and event)."""
    names = [f"j{i}" for i in range(owned)]
    write(src, {f"{n}.yaml": job(n) for n in names})
    gitops.sync(store, src)
    for n in names[:removed]:
        (src / f"{n}.yaml").unlink()
    write(src, {"new.yaml": job("new")})

    report = gitops.sync(store, src)

    [status] = store.sync_status(str(src))
    if refused:
        assert report["refused"].startswith(
            f"sync of {src} would prune {removed} of the {owned} resources it owns (Job/j0")
        assert "--allow-mass-prune" in report["refused"]
        assert job_names(store) == names  # nothing pruned, "new" not created
        assert status["refused"] == report["refused"]
        assert reasons(store, "Directory", str(src))[-1] == "SyncRefused"
        assert reasons(store, "Job", "j0") == []
    else:
        assert report["refused"] is None and status["refused"] is None
        assert report["pruned"] == [(f"Job/{n}", "deleted") for n in names[:removed]]
        assert job_names(store) == sorted(names[removed:] + ["new"])
        assert "SyncRefused" not in reasons(store, "Directory", str(src))


def test_allow_mass_prune_prunes_everything_and_clears_the_refusal(store, src):
    """After a refusal, allow_mass_prune prunes all of it, and sync status no longer shows a refusal."""
    write(src, {"a.yaml": job("a"), "b.yaml": job("b")})
    gitops.sync(store, src)
    for f in src.iterdir():
        f.unlink()
    assert gitops.sync(store, src)["refused"] and job_names(store) == ["a", "b"]

    report = gitops.sync(store, src, allow_mass_prune=True)

    assert report["refused"] is None and report["pruned"] == [("Job/a", "deleted"), ("Job/b", "deleted")]
    assert job_names(store) == [] and store.owned_by(str(src)) == []
    assert store.sync_status(str(src))[0]["refused"] is None


# -- drift, dry run -----------------------------------------------------------------------------


@pytest.mark.parametrize("hand", [job("a", 5), job("a", 1, {"team": "ops"})], ids=["spec", "labels"])
def test_a_resource_changed_by_hand_is_put_back_with_a_drift_corrected_event(store, src, hand):
    """A hand change (spec or labels) to a synced resource is undone at the next sync and recorded as drift."""
    write(src, {"a.yaml": job("a", 1), "b.yaml": job("b")})
    gitops.sync(store, src)
    synced = store.resource(Kind.JOB, "a")
    hand_apply(store, hand)
    assert store.resource(Kind.JOB, "a") != synced

    report = gitops.sync(store, src)

    assert report["results"] == [("Job/a", "drift corrected"), ("Job/b", "unchanged")]
    assert report["drift"] == ["Job/a"]
    back = store.resource(Kind.JOB, "a")
    assert (back.spec, back.labels, back.source) == (synced.spec, synced.labels, str(src))
    [event] = [e for e in store.events("Job", "a") if e["reason"] == "DriftCorrected"]
    assert event["type"] == "Warning" and str(src) in event["message"]

    assert gitops.sync(store, src)["results"] == [("Job/a", "unchanged"), ("Job/b", "unchanged")]
    assert reasons(store, "Job", "a").count("DriftCorrected") == 1


def test_a_dry_run_reports_but_writes_nothing(store, src, tmp_path):
    """dry_run reports creates, changes, prunes and drift but leaves resources, events and sync records as they were."""
    write(src, {"a.yaml": job("a"), "b.yaml": job("b"), "c.yaml": job("c"), "d.yaml": job("d")})
    gitops.sync(store, src)
    (src / "a.yaml").write_text(job("a", 2))
    (src / "c.yaml").unlink()
    write(src, {"e.yaml": job("e")})
    hand_apply(store, job("b", 6))
    before = (store.resources(), store.events(), store.sync_status())

    report = gitops.sync(store, src, dry_run=True)

    assert report["results"] == [("Job/a", "configured"), ("Job/b", "drift corrected"), ("Job/d", "unchanged"),
                                 ("Job/e", "created")]
    assert report["pruned"] == [("Job/c", "deleted")]
    assert (store.resources(), store.events(), store.sync_status()) == before

    other = tmp_path / "other"
    write(other, {"o.yaml": job("o")})
    assert gitops.sync(store, other, dry_run=True)["results"] == [("Job/o", "created")]
    assert store.sync_status(str(other)) == [] and store.owned_by(str(other)) == []


# -- Services ---------------------------------------------------------------------------------------


def test_a_service_synced_again_with_a_new_template_records_a_revision(store, src):
    """A template change arriving by sync is a new revision (cause: the file); an unchanged sync adds none."""
    write(src, {"web.yaml": service("web", "nginx:1")})
    gitops.sync(store, src)
    assert gitops.sync(store, src)["results"] == [("Service/web", "unchanged")]
    assert [r["revision"] for r in store.revisions("web")] == [1]

    (src / "web.yaml").write_text(service("web", "nginx:2"))
    assert gitops.sync(store, src)["results"] == [("Service/web", "configured")]

    revisions = store.revisions("web")
    assert [(r["revision"], r["template"]["template"]["image"]) for r in revisions] == [(1, "nginx:1"), (2, "nginx:2")]
    assert revisions[-1]["cause"] == "sync web.yaml"
    assert store.resource(Kind.SERVICE, "web").spec["template"]["image"] == "nginx:2"


# -- watch filter -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path, wanted",
    [
        ("a.yaml", True),
        ("a.yml", True),
        ("a.json", True),
        ("A.YAML", True),
        ("sub/deeper/b.yaml", True),
        ("sub", True),  # a directory came or went
        ("notes.md", False),
        ("a.yaml~", False),
        ("a.yaml.swp", False),
        ("a.yaml.swx", False),
        ("a.yaml.tmp", False),
        ("a.yaml.part", False),
        ("a.yaml.bak", False),
        ("#a.yaml#", False),
        (".a.yaml", False),
        (".#a.yaml", False),
        (".git/config", False),
        (".git/objects/ab", False),
        (".git", False),
        ("sub/.hidden/b.yaml", False),
        ("../elsewhere/a.yaml", False),
    ],
)
def test_watch_filter(tmp_path, path, wanted):
    """Manifest files and directories below the source wake the watcher; dot paths, editor files, the outside don't."""
    source = tmp_path / ".config" / "manifests"  # a dot above the source does not count
    check = watch.wanted(str(source))

    assert check(Change.modified, os.path.normpath(source / path)) is wanted


# -- CLI: sync, sync status -------------------------------------------------------------------------


def test_sync_and_sync_status_show_directory_commit_files_and_owned_count(db, src):
    """`sync` prints what changed (exit 1 with an invalid file); `sync status`: directory, git commit, files, owned."""
    write(src, {"a.yaml": job("a"), "sub/b.yaml": job("b")})
    git(src, "init", "-q")
    git(src, "add", ".")
    git(src, "commit", "-qm", "first manifests")
    short = git(src, "rev-parse", "--short", "HEAD").strip()
    (src / "c.yaml").write_text(invalid("c"))

    proc = cli(db, "sync", str(src))

    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert lines[:2] == ["job/a created", "job/b created"]
    assert lines[2].startswith("invalid: c.yaml: document 1 (Job/c), line ") and len(lines) == 3

    out = cli(db, "sync", "status", str(src), check=True).stdout.splitlines()
    assert out[0] == f"directory:  {src}"
    assert out[1].startswith("last sync:  ") and "REFUSED" not in out[1]
    assert out[2] == f"commit:     {short} first manifests"
    assert out[3] == "resources:  2 owned"
    assert out[4].split() == ["FILE", "STATE", "RESOURCES", "/", "MESSAGE"]
    rows = [line.split(None, 2) for line in out[5:]]
    assert [r[:2] for r in rows] == [["a.yaml", "ok"], ["c.yaml", "invalid"], ["sub/b.yaml", "ok"]]
    assert rows[0][2].strip() == "Job/a" and "spec.completionz: unknown field" in rows[1][2]


def test_sync_refusal_exits_1_shows_in_sync_status_and_allow_mass_prune_prunes(db, src):
    """A refused `sync` exits 1 and `sync status` says REFUSED; `--allow-mass-prune` prunes and exits 0."""
    write(src, {"a.yaml": job("a"), "b.yaml": job("b")})
    cli(db, "sync", str(src), check=True)
    (src / "a.yaml").unlink()
    (src / "b.yaml").unlink()

    proc = cli(db, "sync", str(src))
    assert proc.returncode == 1
    assert proc.stdout.startswith(f"refused: sync of {src} would prune 2 of the 2 resources it owns")
    status = cli(db, "sync", "status", check=True).stdout.splitlines()
    assert "; REFUSED: sync of" in status[1] and status[2] == "commit:     - (not in a git checkout, or not committed there)"
    assert status[3] == "resources:  2 owned"

    proc = cli(db, "sync", str(src), "--allow-mass-prune", check=True)
    assert proc.stdout == "job/a pruned (deleted)\njob/b pruned (deleted)\n"


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["sync", "status"], 1, "error: no directory has been synced into this store"),
        (["sync", "/nonexistent/manifests"], 2, "error: /nonexistent/manifests: not a directory"),
        (["diff", "-f", "/nonexistent/m.yaml"], 2, "/nonexistent/m.yaml: no such file or directory"),
    ],
)
def test_sync_and_diff_errors(db, args, code, message):
    """`sync status` before any sync, and a missing directory or file, are one error line and a non-zero exit."""
    Store(db).close()  # an empty store: `sync status` and `diff` do not create one
    proc = cli(db, *args)

    assert proc.returncode == code
    assert message in proc.stderr and "Traceback" not in proc.stderr and proc.stdout == ""


# -- CLI: diff --------------------------------------------------------------------------------------


def test_diff_of_a_file_exits_0_without_changes_and_1_with_field_lines(db, src):
    """`diff -f FILE`: "no changes" and exit 0, else one line per resource and one per changed field, exit 1."""
    write(src, {"a.yaml": job("a"), "n.yaml": job("n")})
    cli(db, "sync", str(src), check=True)

    proc = cli(db, "diff", "-f", str(src / "a.yaml"))
    assert (proc.returncode, proc.stdout) == (0, "no changes\n")

    (src / "a.yaml").write_text(job("a", 3, {"team": "x"}))
    (src / "n.yaml").write_text(job("n") + "---\n" + job("fresh"))
    proc = cli(db, "diff", "-f", str(src / "a.yaml"), "-f", str(src / "n.yaml"))
    assert proc.returncode == 1
    assert proc.stdout.splitlines() == [
        "job/a configured",
        "  + metadata.labels.team: 'x'",
        "  ~ spec.completions: 1 -> 3",
        "job/fresh created",
    ]
    store = Store(db)
    try:
        assert completions(store, "a") == 1  # diff wrote nothing
    finally:
        store.close()


def test_diff_of_a_directory_lists_changes_and_prunes(db, src):
    """`diff -f DIR` shows what `sync DIR` would do, including "pruned" lines, and writes nothing."""
    write(src, {"a.yaml": job("a"), "b.yaml": job("b"), "c.yaml": job("c")})
    cli(db, "sync", str(src), check=True)
    assert cli(db, "diff", "-f", str(src)).returncode == 0

    (src / "a.yaml").write_text(job("a", 2))
    (src / "c.yaml").unlink()
    write(src, {"d.yaml": job("d")})
    proc = cli(db, "diff", "-f", str(src))

    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert sorted(line.lower() for line in lines if "pruned" in line) == ["job/c pruned"]
    assert [line for line in lines if "pruned" not in line] == [
        "job/a configured", "  ~ spec.completions: 1 -> 2", "job/d created"]
    assert cli(db, "sync", "status", check=True).stdout.count("c.yaml") == 1  # still as last synced


@pytest.mark.parametrize(
    "case, message",
    [
        ("invalid file", "spec.completionz: unknown field"),
        ("invalid file in directory", "spec.completionz: unknown field"),
        ("hand-applied in directory", "Job/h already exists, created by hand (brokerctl apply)"),
    ],
)
def test_diff_of_invalid_input_exits_2(db, src, case, message):
    """`diff` exits 2 naming the problem when a file is invalid or a directory could not be synced as it is."""
    write(src, {"a.yaml": job("a")})
    if case == "hand-applied in directory":
        store = Store(db)
        hand_apply(store, job("h"))
        store.close()
        write(src, {"h.yaml": job("h", 2)})
    else:
        write(src, {"bad.yaml": invalid("bad")})
    target = src / "bad.yaml" if case == "invalid file" else src

    proc = cli(db, "diff", "-f", str(target))

    assert proc.returncode == 2
    assert message in proc.stderr and proc.stdout == ""


# -- namespaces -------------------------------------------------------------------------------


def namespace(name: str) -> str:
    return f"apiVersion: broker/v1\nkind: Namespace\nmetadata: {{name: {name}}}\n"


def in_ns(text: str, ns: str) -> str:
    return text.replace("metadata:\n  name: ", f"metadata:\n  namespace: {ns}\n  name: ", 1)


def test_a_directory_with_its_namespaces_syncs_into_them_and_the_default_is_the_one_given(store, src):
    """Documents without a namespace go into the one the sync is given; a document's own wins; the
    directory's Namespaces are applied with what goes into them; refs outside default say their namespace."""
    write(src, {"ns.yaml": namespace("team-a") + "---\n" + namespace("team-b"),
                "a.yaml": job("nightly"), "b.yaml": in_ns(job("nightly", 2), "team-b")})

    report = gitops.sync(store, src, namespace="team-a")

    assert report["problems"] == {}
    assert report["results"] == [("Namespace/team-a", "created"), ("Namespace/team-b", "created"),
                                 ("team-a/Job/nightly", "created"), ("team-b/Job/nightly", "created")]
    assert gitops.summary(report) == ["namespace/team-a created", "namespace/team-b created",
                                      "team-a/job/nightly created", "team-b/job/nightly created"]
    assert report["files"]["b.yaml"]["resources"] == ["team-b/Job/nightly"]
    assert store.resource(Kind.JOB, "nightly", namespace="team-b").spec["completions"] == 2
    assert job_names(store) == ["nightly", "nightly"] and store.resources(Kind.JOB, namespace="default") == []

    (src / "b.yaml").unlink()
    report = gitops.sync(store, src, namespace="team-a")
    assert report["pruned"] == [("team-b/Job/nightly", "deleted")]
    [pruned] = store.events("Job", "nightly", namespace="team-b")
    assert pruned["reason"] == "Pruned" and store.events("Job", "nightly", namespace="team-a") == []


def test_a_file_into_a_missing_namespace_is_held_back_and_the_rest_syncs(store, src):
    write(src, {"a.yaml": job("a"), "x.yaml": in_ns(job("x"), "team-x")})
    report = gitops.sync(store, src)
    assert report["problems"] == {"x.yaml": (
        "team-x/Job/x: namespace 'team-x' does not exist; apply a Namespace named team-x first (kind: Namespace), or "
        "use -n/--namespace")}
    assert report["results"] == [("Job/a", "created")] and job_names(store) == ["a"]

    write(src, {"team-x.yaml": namespace("team-x")})  # the directory defines it: both sync now
    report = gitops.sync(store, src)
    assert report["problems"] == {} and ("team-x/Job/x", "created") in report["results"]


def test_a_namespace_no_longer_defined_is_pruned_only_once_nothing_else_is_in_it(store, src):
    """Pruning a Namespace deletes what is in it: a Job applied into it by hand keeps it (a problem of its
    file); once that Job is gone the Namespace is pruned. Its own Jobs go in the same sync, Namespace last."""
    write(src, {"ns.yaml": namespace("team-b"), "j.yaml": in_ns(job("mine"), "team-b")})
    gitops.sync(store, src)
    hand_apply(store, in_ns(job("theirs"), "team-b"))

    for name in ("ns.yaml", "j.yaml"):
        (src / name).unlink()
    report = gitops.sync(store, src, allow_mass_prune=True)
    assert report["pruned"] == [("team-b/Job/mine", "deleted")]
    assert report["problems"] == {"ns.yaml": (
        f"Namespace/team-b is no longer in {src} but still holds team-b/job/theirs; not pruned: delete those first, "
        "or the namespace with everything in it (`brokerctl delete namespace team-b --yes`)")}
    assert store.resource(Kind.NAMESPACE, "team-b").deleted_at is None

    store.mark_deleted(Kind.JOB, "theirs", namespace="team-b")
    report = gitops.sync(store, src, allow_mass_prune=True)
    assert report["problems"] == {} and report["pruned"] == [("Namespace/team-b", "deleted")]
    assert [r.name for r in store.resources(Kind.NAMESPACE)] == ["default"]


def test_sync_takes_the_namespace_on_the_command_line(db, src):
    write(src, {"ns.yaml": namespace("team-a"), "a.yaml": job("a")})
    out = cli(db, "sync", str(src), "-n", "team-a", check=True).stdout
    assert out.splitlines() == ["namespace/team-a created", "team-a/job/a created"]
    write(src, {"a.yaml": job("a", 4)})
    out = cli(db, "sync", str(src), check=True, env={"BROKER_NAMESPACE": "team-a"}).stdout
    assert out.splitlines() == ["team-a/job/a configured"], "$BROKER_NAMESPACE is the default of -n"
    bad = cli(db, "sync", str(src), "-n", "Team_A")
    assert bad.returncode == 2 and "--namespace 'Team_A' is not a namespace name" in bad.stderr


def test_the_watchers_step_syncs_into_the_namespace_the_controller_was_given(store, src):
    write(src, {"ns.yaml": namespace("team-a"), "a.yaml": job("a")})
    lines, trouble = gitops.watch_step(str(src), namespace="team-a")(store)
    assert (lines, trouble) == (["namespace/team-a created", "team-a/job/a created"], False)
    assert store.resource(Kind.JOB, "a", namespace="team-a").source == str(src)
