"""Who a task runs as, without Docker: the rule (``spec.namespace.user_refusal``) and the models, the
store refusing at apply what a namespace's ``runAs`` does not allow (both backends, nothing written),
GitOps holding such a file back, and the planner giving a task without a user its namespace's default.
What only a daemon can show (an image that runs as root, the created container's user) is in
test_e2e_namespaces."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter

from factories import in_namespace, job_res, namespace_res, node_res, run
from reconciler.errors import Forbidden
from reconciler.ops.sync import decide
from reconciler.spec import manifests
from reconciler.spec.models import Kind, Resource, RunAs, is_root, user_refusal
from reconciler.store import SourcedRow, Store
from reconciler.store.db import dump
from reconciler.errors import ManifestError

_RESOURCE = TypeAdapter(Resource)

TEAM_A = {"users": ["1000:1000", "1001"], "default": "1000:1000", "allowRoot": False}


def namespace(name: str, **spec):
    return _RESOURCE.validate_python({"apiVersion": "broker/v1", "kind": "Namespace", "metadata": {"name": name},
                                      "spec": spec})


def workload(kind: str, name: str, namespace: str = "team-a", user: str | None = None, image: str = "busybox"):
    """A Job or Service of ``namespace`` whose template runs as ``user`` (None: names no user)."""
    template = {"image": image, **({"user": user} if user is not None else {})}
    return _RESOURCE.validate_python({"apiVersion": "broker/v1", "kind": kind,
                                      "metadata": {"name": name, "namespace": namespace},
                                      "spec": {"template": template}})


def job(name: str, user: str | None = None, namespace: str = "team-a"):
    return workload("Job", name, namespace, user)


# -- the rule ------------------------------------------------------------------------------------

LISTED_FIX = "use one of runAs.users (1000:1000, 1001), or leave user out to run as the default 1000:1000"


@pytest.mark.parametrize(("run_as", "user", "refusal"), [
    (None, "0", None),  # no runAs: any user, as before
    (TEAM_A, None, None),  # names no user: the default (or the image's user, checked at start)
    (TEAM_A, "1001", None),
    (TEAM_A, "1000:1000", None),
    (TEAM_A, "1000", ("spec.template.user '1000' is not allowed in namespace 'team-a' (runAs.users: 1000:1000, "
                      "1001)", "use one of those users, or leave user out to run as the default 1000:1000")),
    (TEAM_A, "0", ("spec.template.user '0' is root and namespace 'team-a' forbids root (runAs.allowRoot: false)",
                   LISTED_FIX)),
    (TEAM_A, "00:5", ("spec.template.user '00:5' is root and namespace 'team-a' forbids root "
                      "(runAs.allowRoot: false)", LISTED_FIX)),
    (TEAM_A, "root", ("spec.template.user 'root' is root and namespace 'team-a' forbids root "
                      "(runAs.allowRoot: false)", LISTED_FIX)),
    ({"users": ["0", "1000"]}, "0", None),  # root may be listed where it is allowed
    ({"allowRoot": False}, "4242:4242", None),  # no list: any numeric non-root user
    ({"allowRoot": False}, "0:1000", ("spec.template.user '0:1000' is root and namespace 'team-a' forbids root "
                                      "(runAs.allowRoot: false)", "set a numeric uid[:gid] other than 0")),
    ({"allowRoot": False}, "builder", ("spec.template.user 'builder' is a name, which an image may map to root, "
                                       "and namespace 'team-a' forbids root (runAs.allowRoot: false)",
                                       "set a numeric uid[:gid] other than 0")),
    ({"users": ["builder"], "allowRoot": False}, "builder", None),  # a name the operator listed is trusted
    ({"users": ["1001"]}, "1002", ("spec.template.user '1002' is not allowed in namespace 'team-a' (runAs.users: "
                                   "1001)", "use one of those users")),
])
def test_user_refusal_names_the_fault_and_the_fix(run_as, user, refusal):
    policy = None if run_as is None else RunAs.model_validate(run_as)
    assert user_refusal(policy, user, "team-a") == refusal


@pytest.mark.parametrize(("user", "root"), [("0", True), ("00", True), ("0:0", True), ("root", True),
                                            ("root:wheel", True), ("1000", False), ("1000:0", False),
                                            ("rooty", False), ("10", False)])
def test_is_root_reads_the_user_part_as_docker_does(user, root):
    """Docker reads a numeric user as a number, so 00 is uid 0; a root group alone is not root."""
    assert is_root(user) is root


NS_DOC = "apiVersion: broker/v1\nkind: Namespace\nmetadata: {name: team-a}\nspec:\n  runAs: "
JOB_DOC = "apiVersion: broker/v1\nkind: Job\nmetadata: {name: j}\nspec:\n  template: {image: busybox, user: "


def problems_of(text: str) -> list[str]:
    with pytest.raises(ManifestError) as info:
        manifests.load_text(text, "m.yaml")
    return info.value.problems


def test_run_as_without_users_forbids_only_root_and_a_user_id_may_be_a_yaml_number():
    [ns] = manifests.load_text(NS_DOC + "{allowRoot: false, default: 1000}\n", "m.yaml")
    assert ns.resource.spec.runAs.model_dump() == {"users": None, "default": "1000", "allowRoot": False}
    [j] = manifests.load_text(JOB_DOC + "1000}\n", "m.yaml")
    assert j.resource.spec.template.user == "1000"


@pytest.mark.parametrize(("doc", "problem"), [
    (NS_DOC + "{allowRoot: false, default: builder}\n",
     "line 5: spec.runAs: default 'builder' may be root (a name, or uid 0) but allowRoot is false; set a numeric "
     "uid other than 0, or list it in users"),
    (NS_DOC + "{default: '1 0'}\n", "line 5: spec.runAs.default: user '1 0' is not uid[:gid] or a name"),
    (JOB_DOC + "'1000:'}\n", "line 5: spec.template.user: user '1000:' is not uid[:gid] or a name, e.g. "
                             "\"1000:1000\" or \"builder\""),
])
def test_run_as_and_user_problems_name_the_field(doc, problem):
    [found] = problems_of(doc)
    assert problem in found, found


# -- the store, at apply --------------------------------------------------------------------------


@pytest.fixture
def store(db_url):
    s = Store(db_url)
    s.apply([namespace("team-a", runAs=TEAM_A)])
    yield s
    s.close()


def test_an_allowed_user_or_none_is_applied(store):
    assert store.apply([job("listed", "1001"), job("plain")]) == [("team-a/job/listed", "created"),
                                                                  ("team-a/job/plain", "created")]


def test_a_user_outside_the_list_or_root_is_refused_with_the_list_and_nothing_is_written(store):
    where = ["jobs.yaml: document 1 (Job/ok)", "jobs.yaml: document 2 (Job/other)",
             "jobs.yaml: document 3 (Service/root)"]
    with pytest.raises(Forbidden) as info:
        store.apply([job("ok", "1001"), job("other", "1002"), workload("Service", "root", user="0")], where=where)
    assert info.value.exit_code == 1
    assert str(info.value) == (
        "jobs.yaml: document 2 (Job/other): spec.template.user '1002' is not allowed in namespace 'team-a' "
        "(runAs.users: 1000:1000, 1001); use one of those users, or leave user out to run as the default 1000:1000\n"
        "jobs.yaml: document 3 (Service/root): spec.template.user '0' is root and namespace 'team-a' forbids root "
        f"(runAs.allowRoot: false); {LISTED_FIX}")
    assert (info.value.step, info.value.about) == ("run-as", {"kind": "Namespace", "name": "team-a", "user": "1002"})
    assert store.resources(Kind.JOB) == [] and store.resources(Kind.SERVICE) == [], "all or none"
    assert store.apply([job("anyone", "0", namespace="default")]) == [("job/anyone", "created")], \
        "another namespace's rule is not this one's"


def test_a_namespace_and_what_goes_into_it_are_checked_together(store):
    """The rule a Job is held to is its namespace's as the same call leaves it."""
    assert store.apply([job("j", "2000", namespace="team-b"), namespace("team-b", runAs={"users": ["2000"]})])[0] \
        == ("team-b/job/j", "created")
    with pytest.raises(Forbidden, match=r"^Job/late: spec.template.user '1001' is not allowed in namespace 'team-a' "
                                        r"\(runAs.users: 3000\)"):
        store.apply([job("late", "1001"), namespace("team-a", runAs={"users": ["3000"]})])
    assert store.resource(Kind.NAMESPACE, "team-a").spec["runAs"] == {**TEAM_A}, "nothing written"


def test_a_namespace_may_not_start_refusing_the_users_of_what_it_holds(store):
    """A new runAs that the users of stored Jobs and Services would break is refused, naming them; once
    they are deleted (or the same call changes them) it applies; dropping runAs always applies."""
    store.apply([job("nightly", "1001"), workload("Service", "web", user="1000:1000"), job("plain")])
    with pytest.raises(Forbidden) as info:
        store.apply([namespace("team-a", runAs={"users": ["1000:1000"]})], where=["ns.yaml: document 1 "
                                                                                  "(Namespace/team-a)"])
    assert str(info.value) == (
        "ns.yaml: document 1 (Namespace/team-a): spec.runAs of namespace 'team-a' would refuse what it holds "
        "(job/nightly runs as '1001'); delete those first (a Job's template cannot change; a Service's can), or "
        "keep allowing their users")
    assert store.resource(Kind.NAMESPACE, "team-a").spec["runAs"] == TEAM_A
    with pytest.raises(Forbidden, match=r"service/web runs as '1000:1000'"):
        store.apply([namespace("team-a", runAs={"users": ["1001"]})])

    store.apply([namespace("team-a", runAs={"users": ["1001"]}), workload("Service", "web", user="1001")])
    assert store.resource(Kind.SERVICE, "web", namespace="team-a").spec["template"]["user"] == "1001"
    assert store.apply([namespace("team-a")]) == [("namespace/team-a", "configured")]


def test_a_rollback_to_a_template_whose_user_is_no_longer_allowed_is_refused(store):
    store.apply([workload("Service", "web", user="1000:1000")], now=1.0)
    store.apply([workload("Service", "web", user="1001")], now=2.0)
    store.apply([namespace("team-a", runAs={"users": ["1001"]})])
    with pytest.raises(Forbidden, match=r"^Service/web: spec.template.user '1000:1000' is not allowed in namespace "
                                        r"'team-a' \(runAs.users: 1001\); use one of those users$"):
        store.undo("web", namespace="team-a")
    assert store.resource(Kind.SERVICE, "web", namespace="team-a").spec["template"]["user"] == "1001"


# -- GitOps ---------------------------------------------------------------------------------------


def row(model, source: str | None = "/src") -> SourcedRow:
    synced = {"spec": model.spec.model_dump(mode="json"), "labels": {}}
    return SourcedRow(model.kind, model.metadata.name, source, f"{model.metadata.name}.yaml",
                      dump(synced) if source else None, dump(synced["spec"]), dump({}), None, model.namespace)


def test_a_sync_holds_back_a_file_whose_user_its_namespace_refuses():
    """As an invalid file: what the other files define is applied, the refused one is reported."""
    team_a = namespace("team-a", runAs=TEAM_A)
    decision = decide("/src", [("ok.yaml", job("ok", "1001")), ("bad.yaml", job("bad", "4000"))], {},
                      [row(team_a, source=None)])
    assert [c.ref for c in decision.changes] == ["team-a/Job/ok"]
    assert decision.problems == {"bad.yaml": "team-a/Job/bad: spec.template.user '4000' is not allowed in namespace "
                                             "'team-a' (runAs.users: 1000:1000, 1001); use one of those users, or "
                                             "leave user out to run as the default 1000:1000"}


def test_a_sync_holds_back_a_namespace_whose_new_run_as_strands_what_stays_and_checks_the_rest_against_the_old():
    """The directory tightens team-a's runAs while a Job applied by hand still runs as 1001: the Namespace's
    file is held back, so the directory's own Job is held to the stored runAs, which refuses 3000 too."""
    stored = namespace("team-a", runAs=TEAM_A)
    tighter = namespace("team-a", runAs={"users": ["3000"]})
    items = [("ns.yaml", tighter), ("j.yaml", job("j", "3000"))]
    decision = decide("/src", items, {}, [row(stored), row(job("by-hand", "1001"), source=None)])
    assert decision.changes == []
    assert decision.problems["ns.yaml"] == (
        "Namespace/team-a: spec.runAs of namespace 'team-a' would refuse what it holds (job/by-hand runs as "
        "'1001'); delete those first (a Job's template cannot change; a Service's can), or keep allowing their users")
    assert decision.problems["j.yaml"].startswith("team-a/Job/j: spec.template.user '3000' is not allowed in "
                                                  "namespace 'team-a' (runAs.users: 1000:1000, 1001)")

    # Without the Job made by hand, the directory's new runAs and its Job go in together.
    decision = decide("/src", items, {}, [row(stored)])
    assert ([c.ref for c in decision.changes], decision.problems) == (["Namespace/team-a", "team-a/Job/j"], {})


# -- the planner: the user a container is created with -------------------------------------------


def test_a_task_without_a_user_runs_as_its_namespaces_default_and_root_is_checked_only_where_forbidden():
    team_a = namespace_res("team-a", runAs=TEAM_A)
    team_b = namespace_res("team-b", runAs={"users": ["7"]})  # root allowed, no default
    named = in_namespace(job_res("named", template={"image": "busybox", "user": "1001"}), "team-a")
    plain = in_namespace(job_res("plain"), "team-a")
    other = in_namespace(job_res("other"), "team-b")
    elsewhere = job_res("elsewhere")
    p = run([node_res("a", {"default": 8}), team_a, team_b, named, plain, other, elsewhere], [])
    created = {s.task_id.split("-")[0]: (s.spec.user, s.spec.non_root) for s in p.starts}
    assert created == {"named": ("1001", True), "plain": ("1000:1000", True), "other": (None, False),
                       "elsewhere": (None, False)}
