"""The GitOps policy (`ops.syncpolicy.decide`, `ops.sync.sync_events`) as a pure function of the directory's models and the
stored rows, without a store; and the one sync test that needs a Job's template held back in a real store."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter

from reconciler.ops.sync import sync_events, sync_items
from reconciler.ops.syncpolicy import decide
from reconciler.spec.models import Kind, Resource
from reconciler.store import SourcedRow, Store
from reconciler.store.db import dump

_RESOURCE = TypeAdapter(Resource)
SRC = "/src"


def job(name: str, labels: dict | None = None, **spec):
    """A validated Job model, as ``read_dir`` hands it over."""
    return _RESOURCE.validate_python({"apiVersion": "broker/v1", "kind": "Job",
                                      "metadata": {"name": name, "labels": labels or {}},
                                      "spec": {"template": {"image": "busybox"}, **spec}})


def wanted(model) -> dict:
    return {"spec": model.spec.model_dump(mode="json"), "labels": dict(model.metadata.labels)}


def row(model, source: str | None = SRC, file: str | None = None, synced=None, deleted_at: float | None = None,
        **stored) -> SourcedRow:
    """A stored resource as the store's ``sourced_rows`` gives it: ``model`` as applied, ``stored`` overriding
    its spec or labels (a hand change), ``synced`` what the directory last wrote (default: ``model``'s)."""
    now = {**wanted(model), **stored}
    last = wanted(model) if synced is None and source else synced
    return SourcedRow(model.kind, model.metadata.name, source, file or f"{model.metadata.name}.yaml",
                      dump(last) if last else None, dump(now["spec"]), dump(now["labels"]), deleted_at)


def items(*models) -> list:
    return [(f"{m.metadata.name}.yaml", m) for m in models]


def test_a_new_directory_creates_everything_in_name_order():
    decision = decide(SRC, items(job("b"), job("a")), {}, [])

    assert [(c.ref, c.file, c.drifted, c.waiting) for c in decision.changes] == [
        ("Job/a", "a.yaml", False, False), ("Job/b", "b.yaml", False, False)]
    assert decision.changes[0].wanted == wanted(job("a"))
    assert (decision.prune, decision.kept, decision.owned, decision.refused, decision.problems) == ([], [], 0, None, {})
    assert decision.files == {"b.yaml": {"state": "ok", "message": "", "resources": ["Job/b"]},
                              "a.yaml": {"state": "ok", "message": "", "resources": ["Job/a"]}}


@pytest.mark.parametrize("owner, said", [(None, "hand (brokerctl apply)"), ("/other", "directory /other")])
def test_what_the_directory_did_not_create_is_a_problem_of_its_file_and_never_pruned(owner, said):
    """A resource made by hand or by another directory is not applied from here, and not pruned when absent."""
    x, y = job("x"), job("y")
    decision = decide(SRC, items(x, job("z")), {}, [row(x, source=owner), row(y, source=owner)])

    problem = f"Job/x already exists, created by {said}; this directory only manages what it created: " \
              "delete that one or rename this one"
    assert decision.problems == {"x.yaml": problem}
    assert decision.files["x.yaml"] == {"state": "invalid", "message": problem, "resources": []}
    assert [c.ref for c in decision.changes] == ["Job/z"]
    assert (decision.prune, decision.owned) == ([], 0)


def test_owned_resources_no_longer_defined_are_pruned_unless_their_file_is_held():
    """Held (invalid) files keep what they defined; other missing resources are pruned; the count of what
    the directory owns leaves out what is already being deleted."""
    a, b, c, d, gone = job("a"), job("b"), job("c"), job("d"), job("gone")
    rows = [row(a), row(b), row(c), row(d), row(gone, deleted_at=5.0)]

    decision = decide(SRC, items(a, d), {"b.yaml": "b.yaml: bad"}, rows)

    assert [r.name for r in decision.prune] == ["c"]
    assert decision.kept == ["Job/b"]
    assert decision.owned == 4 and decision.refused is None
    assert decision.files["b.yaml"] == {"state": "invalid", "message": "b.yaml: bad", "resources": []}


@pytest.mark.parametrize("owned, removed, refused", [(2, 1, False), (3, 1, False), (3, 2, True), (2, 2, True),
                                                      (1, 1, True)])
def test_pruning_all_or_more_than_half_is_refused_unless_allowed(owned, removed, refused):
    models = [job(f"j{i}") for i in range(owned)]
    rows = [row(m) for m in models]
    left = items(*models[removed:])

    decision = decide(SRC, left, {}, rows)

    if refused:
        names = ", ".join(f"Job/j{i}" for i in range(removed))
        assert decision.refused == (
            f"sync of {SRC} would prune {removed} of the {owned} resources it owns ({names}); refused in case of a "
            "bad checkout. Restore the files, or pass --allow-mass-prune if this is intended")
        assert decide(SRC, left, {}, rows, allow_mass_prune=True).refused is None
    else:
        assert decision.refused is None
    assert len(decision.prune) == removed


def test_a_refusal_lists_at_most_five_names():
    rows = [row(job(f"j{i}")) for i in range(7)]
    refused = decide(SRC, [], {}, rows).refused
    assert "(Job/j0, Job/j1, Job/j2, Job/j3, Job/j4, ...); refused" in refused


def test_a_hand_change_since_the_last_sync_is_drift_and_a_directory_change_is_not():
    """Drift: the stored spec or labels differ from what the directory last wrote, and the directory still
    wants that. A changed file is an ordinary change, whatever was done by hand."""
    a, b, c = job("a", completions=2), job("b", labels={"team": "x"}), job("c", completions=3)
    rows = [row(a, spec={**wanted(a)["spec"], "completions": 9}),  # spec changed by hand
            row(b, labels={}),  # labels changed by hand
            row(c, synced=wanted(job("c")))]  # the file changed since the last sync
    decision = decide(SRC, items(a, b, c), {}, rows)

    assert [(ch.ref, ch.drifted) for ch in decision.changes] == [("Job/a", True), ("Job/b", True), ("Job/c", False)]


def test_a_resource_being_deleted_waits_and_is_not_owned():
    a = job("a")
    decision = decide(SRC, items(a), {}, [row(a, deleted_at=5.0)])

    assert [(c.ref, c.waiting) for c in decision.changes] == [("Job/a", True)]
    assert decision.owned == 0 and decision.prune == []


def test_a_file_changing_an_owned_jobs_template_is_held_back_whole():
    """Everything of that file is held (not applied, not pruned), like an invalid file; other files proceed."""
    a, a2 = job("a"), job("a2")
    changed = job("a", template={"image": "busybox", "command": ["x"]})
    rows = [row(a, file="a.yaml"), row(a2, file="a.yaml")]

    decision = decide(SRC, [("a.yaml", changed), ("b.yaml", job("b"))], {}, rows)

    assert decision.problems == {"a.yaml": (
        "Job 'a': spec.template cannot change while the Job exists (spec.template.command changed); delete it "
        "(`brokerctl delete job a`) and apply it again, or apply it under a new name")}
    assert [c.ref for c in decision.changes] == ["Job/b"]
    assert sorted(decision.kept) == ["Job/a", "Job/a2"] and decision.prune == []


def test_events_are_the_refusal_alone_or_prunes_drift_and_problems():
    report = {"refused": "too much", "pruned": [("Job/c", "deleted")], "drift": [], "problems": {"x.yaml": "bad"}}
    assert [tuple(e) for e in sync_events(SRC, report)] == [("Directory", SRC, "SyncRefused", "too much", "Warning",
                                                             "")]

    report.update(refused=None, drift=["Job/a"], problems={"y.yaml": "y.yaml: bad", "x.yaml": "worse"})
    assert [tuple(e) for e in sync_events(SRC, report)] == [
        ("Job", "c", "Pruned", f"Job/c is no longer in {SRC}; deleted", "Normal", "default"),
        ("Job", "a", "DriftCorrected", f"Job/a was changed outside {SRC}; the directory's version is back", "Warning",
         "default"),
        ("Directory", SRC, "InvalidManifest", "x.yaml: worse", "Warning", ""),
        ("Directory", SRC, "InvalidManifest", "y.yaml: bad", "Warning", ""),
    ]


def test_a_synced_file_changing_a_jobs_template_is_held_back_whole(db_url):
    """sync: the file is reported invalid and what it defines keeps its last state (not changed, not pruned);
    the directory's other files still sync (on each backend: the sync's reads and writes share one transaction)."""
    store = Store(db_url)
    try:
        sync_items(store, "/src", [("a.yaml", job("a")), ("a.yaml", job("a2")), ("b.yaml", job("b"))], {}, now=10.0)
        a_before = store.resource(Kind.JOB, "a")

        report = sync_items(store, "/src", [("a.yaml", job("a", template={"image": "busybox", "command": ["x"]})),
                                            ("b.yaml", job("b", completions=2))], {}, now=20.0)

        assert report["problems"] == {"a.yaml": (
            "Job 'a': spec.template cannot change while the Job exists (spec.template.command changed); delete it "
            "(`brokerctl delete job a`) and apply it again, or apply it under a new name")}
        assert report["results"] == [("Job/b", "configured")] and report["pruned"] == []
        assert sorted(report["kept"]) == ["Job/a", "Job/a2"]
        assert store.resource(Kind.JOB, "a") == a_before and store.resource(Kind.JOB, "a2").spec["completions"] == 1
        assert store.resource(Kind.JOB, "b").spec["completions"] == 2
    finally:
        store.close()


def namespace(name: str):
    return _RESOURCE.validate_python({"apiVersion": "broker/v1", "kind": "Namespace", "metadata": {"name": name}})


def test_jobs_go_only_into_namespaces_that_exist_or_that_a_valid_file_of_the_directory_defines():
    """`default` always exists; team-a exists; team-b is defined by a file of the directory; team-c's file is
    held back (invalid), so what goes into team-c is held back too; team-d is being deleted."""
    jobs = [("a.yaml", job("a").in_namespace("team-a")), ("b.yaml", job("b").in_namespace("team-b")),
            ("c.yaml", job("c").in_namespace("team-c")), ("d.yaml", job("d").in_namespace("team-d")),
            ("e.yaml", job("e"))]
    defined = [("ns-b.yaml", namespace("team-b")), ("ns-c.yaml", namespace("team-c"))]
    rows = [row(namespace("team-a"), source=None), row(namespace("team-d"), source=None, deleted_at=5.0)]

    decision = decide(SRC, [*defined, *jobs], {"ns-c.yaml": "ns-c.yaml: bad"}, rows)

    assert [c.ref for c in decision.changes] == ["Namespace/team-b", "Job/e", "team-a/Job/a", "team-b/Job/b"]
    assert decision.problems == {
        "ns-c.yaml": "ns-c.yaml: bad",
        "c.yaml": "team-c/Job/c: namespace 'team-c' does not exist; apply a Namespace named team-c first (kind: "
                  "Namespace), or use -n/--namespace",
        "d.yaml": "team-d/Job/d: namespace 'team-d' is being deleted; wait until `brokerctl get namespaces` no "
                  "longer lists it, apply the Namespace again, then this"}


def test_a_job_that_does_not_request_what_its_namespaces_quota_caps_is_held_back():
    """The quota the directory defines for the namespace counts, else the stored one; a Job that requests what
    is capped, or goes into a namespace without caps, is applied."""
    capped = _RESOURCE.validate_python({"apiVersion": "broker/v1", "kind": "Namespace", "metadata": {"name": "team-b"},
                                        "spec": {"quota": {"memory": "1g"}}})
    stored = _RESOURCE.validate_python({"apiVersion": "broker/v1", "kind": "Namespace", "metadata": {"name": "team-a"},
                                        "spec": {"quota": {"cpus": 4, "tasks": 3}}})
    files = [("ns-b.yaml", capped), ("a.yaml", job("a").in_namespace("team-a")),
             ("b.yaml", job("b").in_namespace("team-b")),
             ("ok.yaml", job("ok", template={"image": "busybox", "resources": {"cpus": 1}}).in_namespace("team-a")),
             ("free.yaml", job("free"))]

    decision = decide(SRC, files, {}, [row(stored, source=None)])

    assert [c.ref for c in decision.changes] == ["Namespace/team-b", "Job/free", "team-a/Job/ok"]
    assert decision.problems == {
        "a.yaml": "team-a/Job/a: spec.template.resources.cpus: namespace 'team-a' caps cpus (quota.cpus: 4), so every "
                  "task in it must request cpus; set spec.template.resources.cpus, or remove quota.cpus from Namespace "
                  "team-a",
        "b.yaml": "team-b/Job/b: spec.template.resources.memory: namespace 'team-b' caps memory (quota.memory: 1g), so "
                  "every task in it must request memory; set spec.template.resources.memory, or remove quota.memory "
                  "from Namespace team-b"}
