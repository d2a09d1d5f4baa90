"""The HTTP API's routes (``reconciler.api``, served by uvicorn on a thread of the test process, over
real HTTP), on a real store: tokens and roles, the verbs each route calls, the JSON of errors, pages,
label selectors, watches and progress streams. No Docker: tasks and their output are written into
the store as the controller would. The server over real HTTP, against real daemons,
is tests/test_e2e_server.py; every route's 401/403 and the schema checks are tests/test_api_schema.py.

Tests on ``api`` run on both backends (``db_url``)."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from helpers import ServedApp
from reconciler.api.app import Settings, create_app
from reconciler.kinds import Kind, TaskPhase
from reconciler.ops import tokens
from reconciler.records import TaskRecord
from reconciler.store import Store

NODE = {"apiVersion": "broker/v1", "kind": "Node", "metadata": {"name": "h1"},
        "spec": {"address": "tcp://127.0.0.1:2375", "slots": {"default": 2}}}
TEAMS = """\
apiVersion: broker/v1
kind: Namespace
metadata: {name: team-a}
---
apiVersion: broker/v1
kind: Namespace
metadata: {name: team-b}
"""


def job(name: str, namespace: str | None = None, **spec) -> str:
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    return json.dumps({"apiVersion": "broker/v1", "kind": "Job", "metadata": meta,
                       "spec": {"template": {"image": "busybox", "command": "echo hi"}, **spec}}) + "\n"


def service(name: str, namespace: str = "team-a", **spec) -> str:
    return json.dumps({"apiVersion": "broker/v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
                       "spec": {"replicas": 1, "template": {"image": "busybox"}, **spec}}) + "\n"


class Api:
    """The app on a store, with a token per role: ``admin``, ``edit`` and ``view`` (team-a), ``other``
    (edit in team-b). ``call(token, method, path, ...)`` sends a request with that token."""

    def __init__(self, db_url):
        self.store = Store(db_url)
        self.served = ServedApp(create_app(Settings(db=str(db_url), controller=False))).__enter__()
        self.client = httpx.Client(base_url=self.served.url, timeout=10)
        self.tokens: dict[str, str] = {}

    def token(self, role: str, user: str, namespaces: list[str]) -> str:
        return tokens.create(self.store, user, role, namespaces).text

    def call(self, who: str | None, method: str, path: str, body: str | None = None,
             content_type: str = "application/yaml", **kw):
        headers = {"Content-Type": content_type} if body is not None else {}
        if who is not None:
            headers["Authorization"] = f"Bearer {self.tokens[who]}"
        return self.client.request(method, path, content=body, headers=headers, **kw)

    def close(self):
        self.client.close()
        self.served.__exit__()
        self.store.close()


@pytest.fixture
def api(db_url):
    a = Api(db_url)
    a.tokens = {"admin": a.token("admin", "root", []), "edit": a.token("edit", "alice", ["team-a"]),
                "view": a.token("view", "bob", ["team-a"]), "other": a.token("edit", "carol", ["team-b"])}
    assert a.call("admin", "POST", "/api/v1/apply", TEAMS).status_code == 200
    yield a
    a.close()


def add_task(store: Store, owner: str, index: int = 0, namespace: str = "team-a", phase=TaskPhase.SUCCEEDED,
             output: bytes | None = None, **kw) -> str:
    tid = f"{owner}-abcde-{index}-1"
    with store.transaction() as db:
        store.insert_task(db, TaskRecord(id=tid, owner_kind=Kind.JOB, owner_name=owner, owner_uid="u", index=index,
                                         attempt=1, phase=phase, created_at=10.0 + index, namespace=namespace, **kw))
        if output is not None:
            store.save_output(db, tid, output, truncated=False)
    return tid


def error(response) -> tuple[int, str, str]:
    body = response.json()
    assert set(body) == {"error", "message", "details"}, body
    return response.status_code, body["error"], body["message"]


# -- tokens ------------------------------------------------------------------------------------------


def test_a_request_without_a_valid_token_is_401_and_says_how_to_get_one(api):
    for headers in ({}, {"Authorization": "Basic dXNlcjpwdw=="}, {"Authorization": "Bearer nonsense"},
                    {"Authorization": f"Bearer {api.tokens['admin'][:-2]}xx"}):
        response = api.client.get("/api/v1/namespaces/team-a/jobs", headers=headers)
        assert response.status_code == 401 and response.headers["WWW-Authenticate"] == "Bearer"
        assert response.json()["error"] == "Unauthorized"
    assert error(api.client.get("/api/v1/namespaces/team-a/jobs"))[2] == (
        "this API needs a token: send `Authorization: Bearer bk_...` (`brokerctl token create` makes one)")


def test_a_revoked_token_is_refused_from_its_next_request(api):
    assert api.call("edit", "GET", "/api/v1/namespaces/team-a/jobs").status_code == 200
    tokens.revoke(api.store, api.tokens["edit"][3:15])
    assert error(api.call("edit", "GET", "/api/v1/namespaces/team-a/jobs")) == (
        401, "Unauthorized", "the token is not valid: unknown, revoked or mistyped")


# -- apply, diff, get, delete ------------------------------------------------------------------------


def test_apply_get_list_and_delete_a_job_as_the_cli_does(api):
    applied = api.call("edit", "POST", "/api/v1/apply?namespace=team-a", job("nightly"))
    assert applied.status_code == 200
    assert applied.json() == {"results": [{"kind": "Job", "namespace": "team-a", "name": "nightly",
                                           "ref": "team-a/job/nightly", "outcome": "created"}], "warnings": []}
    assert api.call("edit", "POST", "/api/v1/apply", job("nightly", "team-a")).json()["results"][0]["outcome"] == (
        "unchanged")

    got = api.call("view", "GET", "/api/v1/namespaces/team-a/jobs/nightly").json()
    assert (got["kind"], got["metadata"]["namespace"], got["metadata"]["createdBy"]) == ("Job", "team-a", "alice")
    listed = api.call("view", "GET", "/api/v1/namespaces/team-a/jobs").json()
    assert (listed["kind"], [o["metadata"]["name"] for o in listed["items"]]) == ("JobList", ["nightly"])
    assert api.call("view", "GET", "/api/v1/namespaces/team-b/jobs").status_code == 403

    deleted = api.call("edit", "DELETE", "/api/v1/namespaces/team-a/jobs/nightly")
    assert deleted.json() == {"kind": "Job", "namespace": "team-a", "name": "nightly", "outcome": "deleted"}
    again = api.call("edit", "DELETE", "/api/v1/namespaces/team-a/jobs/nightly")
    assert error(again) == (404, "NotFound", "Job 'nightly' not found in namespace 'team-a'; "
                                             "`brokerctl get jobs -n team-a` lists them")


def test_a_job_whose_tasks_still_run_is_deleting_and_a_second_delete_says_what_is_left(api):
    api.call("edit", "POST", "/api/v1/apply", job("long", "team-a"))
    add_task(api.store, "long", phase=TaskPhase.RUNNING, node="h1", container_id="c1")
    first = api.call("edit", "DELETE", "/api/v1/namespaces/team-a/jobs/long")
    assert first.json()["outcome"] == "deleting"
    second = api.call("edit", "DELETE", "/api/v1/namespaces/team-a/jobs/long")
    assert second.json()["outcome"] == "still stopping (1 container); pass --force to abandon them"
    assert api.store.resource(Kind.JOB, "long", "team-a").updated_by == "alice"
    forced = api.call("edit", "DELETE", "/api/v1/namespaces/team-a/jobs/long?force=true")
    assert forced.json()["outcome"].startswith("deleted (--force); 1 container may still run")


def test_invalid_manifests_are_422_with_the_cli_lines_and_write_nothing(api):
    bad = "apiVersion: broker/v1\nkind: Job\nmetadata: {name: x, namespace: team-a}\nspec:\n  template: {imagee: b}\n"
    status, code, message = error(api.call("edit", "POST", "/api/v1/apply?filename=jobs.yaml", bad))
    assert (status, code) == (422, "Invalid")
    details = api.call("edit", "POST", "/api/v1/apply?filename=jobs.yaml", bad).json()["details"]
    assert "jobs.yaml: document 1 (Job/x), line 5: spec.template.imagee: unknown field (did you mean 'image'?)" in details
    assert message == "\n".join(details)

    broken = api.call("edit", "POST", "/api/v1/apply", "kind: Job\nmetadata: {name: [\n")
    assert broken.status_code == 422 and broken.json()["details"][0].startswith("<request>: line ")
    assert error(api.call("edit", "POST", "/api/v1/apply", ""))[:2] == (422, "Invalid")
    assert api.call("admin", "GET", "/api/v1/namespaces/team-a/jobs").json()["items"] == []


def test_apply_reads_json_and_refuses_a_body_it_cannot_read(api):
    doc = json.loads(job("j", "team-a"))
    assert api.call("edit", "POST", "/api/v1/apply", json.dumps([doc]), "application/json").status_code == 200
    assert error(api.call("edit", "POST", "/api/v1/apply", "x", "image/png"))[:2] == (400, "BadRequest")
    assert api.call("edit", "POST", "/api/v1/apply", "").json()["details"] == ["<request>: no documents"]
    raw = api.client.post("/api/v1/apply", content=b"kind: \xff\n", headers={
        "Authorization": f"Bearer {api.tokens['edit']}", "Content-Type": "application/yaml"})
    assert error(raw)[:2] == (400, "BadRequest")


def test_apply_into_a_missing_namespace_is_404_naming_the_fix(api):
    status, code, message = error(api.call("admin", "POST", "/api/v1/apply", job("j", "team-x")))
    assert (status, code) == (404, "NotFound")
    assert message == ("<request>: document 1 (Job/j): namespace 'team-x' does not exist; apply a Namespace named "
                       "team-x first (kind: Namespace), or use -n/--namespace")


def test_roles_are_checked_for_every_document_before_anything_is_written(api):
    mixed = job("mine", "team-a") + "---\n" + job("theirs", "team-b")
    assert error(api.call("edit", "POST", "/api/v1/apply", mixed)) == (
        403, "Forbidden", "user alice (role edit in team-a) may not apply job/theirs in namespace team-b: the token "
                          "reaches only team-a")
    assert error(api.call("view", "POST", "/api/v1/apply", job("mine", "team-a")))[2].endswith(
        "in namespace team-a: the view role only reads")
    assert error(api.call("edit", "POST", "/api/v1/apply", json.dumps(NODE)))[2] == (
        "user alice (role edit in team-a) may not apply node/h1: only an admin token may (nodes, namespaces and "
        "tokens are cluster-wide)")
    assert api.call("admin", "GET", "/api/v1/jobs").json()["items"] == []


def test_an_edit_token_writes_the_secrets_of_its_namespaces_only(api, tmp_path, monkeypatch):
    monkeypatch.setenv("BROKER_SECRETS_KEY", str(tmp_path / "secrets.key"))
    secret = "apiVersion: broker/v1\nkind: Secret\nmetadata: {{name: db, namespace: {ns}}}\nspec: {{stringData: {{pw: x}}}}\n"
    made = api.call("edit", "POST", "/api/v1/apply", secret.format(ns="team-a"))
    assert made.status_code == 200 and made.json()["results"][0]["outcome"] == "created"
    assert error(api.call("edit", "POST", "/api/v1/apply", secret.format(ns="team-b")))[:2] == (403, "Forbidden")
    assert api.call("view", "POST", "/api/v1/apply", secret.format(ns="team-a")).status_code == 403


def test_diff_says_what_apply_would_change_and_writes_nothing(api):
    api.call("edit", "POST", "/api/v1/apply", job("j", "team-a", parallelism=1))
    diffed = api.call("view", "POST", "/api/v1/diff", job("j", "team-a", parallelism=3) + "---\n" + job("k", "team-a"))
    assert diffed.json() == {"changes": [
        {"ref": "team-a/job/j", "outcome": "configured", "fields": ["~ spec.parallelism: 1 -> 3"]},
        {"ref": "team-a/job/k", "outcome": "created", "fields": []}]}
    assert [o["metadata"]["name"] for o in api.call("view", "GET", "/api/v1/namespaces/team-a/jobs").json()["items"]] == [
        "j"]
    assert api.call("view", "POST", "/api/v1/diff", job("j", "team-b")).status_code == 403


def test_lists_of_every_namespace_show_a_token_what_it_reaches(api):
    api.call("admin", "POST", "/api/v1/apply", job("a1", "team-a") + "---\n" + job("b1", "team-b"))
    names = lambda who, path: [o["metadata"]["name"] for o in api.call(who, "GET", path).json()["items"]]  # noqa: E731
    assert names("admin", "/api/v1/jobs") == ["a1", "b1"]
    assert names("view", "/api/v1/jobs") == ["a1"] and names("other", "/api/v1/jobs") == ["b1"]
    assert names("view", "/api/v1/namespaces") == ["team-a"]
    assert names("admin", "/api/v1/namespaces") == ["default", "team-a", "team-b"]
    team = api.call("view", "GET", "/api/v1/namespaces/team-a").json()
    assert (team["kind"], team["status"]["phase"]) == ("Namespace", "Active")
    assert api.call("view", "GET", "/api/v1/namespaces/team-b").status_code == 403


# -- tasks and logs ----------------------------------------------------------------------------------


def test_tasks_and_their_output_are_read_only_under_their_own_namespace(api):
    api.call("admin", "POST", "/api/v1/apply", job("j", "team-a") + "---\n" + job("k", "team-b"))
    mine = add_task(api.store, "j", 0, output=b"hello\nworld\n")
    add_task(api.store, "j", 1, output=b"second\n")
    theirs = add_task(api.store, "k", 0, namespace="team-b", output=b"secret\n")

    listed = api.call("view", "GET", "/api/v1/namespaces/team-a/tasks").json()
    assert [t["id"] for t in listed["items"]] == [mine, "j-abcde-1-1"]
    assert api.call("view", "GET", f"/api/v1/namespaces/team-a/tasks/{mine}").json()["phase"] == "Succeeded"
    logs = api.call("view", "GET", f"/api/v1/namespaces/team-a/tasks/{mine}/logs")
    assert (logs.status_code, logs.content) == (200, b"hello\nworld\n")
    owner = api.call("view", "GET", "/api/v1/namespaces/team-a/jobs/j/logs")
    assert owner.content == (f"[{mine}] hello\n[{mine}] world\n[j-abcde-1-1] second\n").encode()

    for path in (f"/api/v1/namespaces/team-a/tasks/{theirs}", f"/api/v1/namespaces/team-a/tasks/{theirs}/logs"):
        assert error(api.call("view", "GET", path)) == (404, "NotFound", f"task '{theirs}' not found; "
                                                                         "`brokerctl get tasks` lists them")
    assert api.call("view", "GET", f"/api/v1/namespaces/team-b/tasks/{theirs}/logs").status_code == 403
    assert [t["id"] for t in api.call("view", "GET", "/api/v1/tasks").json()["items"]] == [mine, "j-abcde-1-1"]


def test_logs_of_a_pending_task_are_refused_with_the_cli_message(api):
    api.call("edit", "POST", "/api/v1/apply", job("j", "team-a"))
    tid = add_task(api.store, "j", phase=TaskPhase.PENDING, reason="Unschedulable", message="0/0 nodes")
    assert error(api.call("view", "GET", f"/api/v1/namespaces/team-a/tasks/{tid}/logs")) == (
        409, "Failed", f"task {tid} is Pending: it has not started yet, so it has no output (Unschedulable: 0/0 nodes)")


# -- the other verbs ---------------------------------------------------------------------------------


def test_retry_scale_and_rollouts(api):
    api.call("edit", "POST", "/api/v1/apply", job("j", "team-a") + "---\n" + service("web"))
    assert error(api.call("edit", "POST", "/api/v1/namespaces/team-a/jobs/j/retry"))[:2] == (409, "Conflict")
    with api.store.transaction() as db:
        api.store.set_status(db, Kind.JOB, "j", {"phase": "Failed"}, "team-a")
    assert api.call("view", "POST", "/api/v1/namespaces/team-a/jobs/j/retry").status_code == 403
    assert api.call("edit", "POST", "/api/v1/namespaces/team-a/jobs/j/retry").json()["outcome"] == "retried"

    scaled = api.call("edit", "PUT", "/api/v1/namespaces/team-a/services/web/scale", json.dumps({"replicas": 3}),
                      "application/json")
    assert scaled.json() == {"namespace": "team-a", "name": "web", "previous": 1, "replicas": 3}
    assert api.store.resource(Kind.SERVICE, "web", "team-a").updated_by == "alice"
    assert api.call("edit", "PUT", "/api/v1/namespaces/team-a/services/web/scale", json.dumps({"replicas": -1}),
                    "application/json").status_code == 422

    api.call("edit", "POST", "/api/v1/apply", service("web", replicas=3, template={"image": "busybox:2"}))
    history = api.call("view", "GET", "/api/v1/namespaces/team-a/services/web/rollout/history").json()
    assert [(r["revision"], r["image"], r["current"]) for r in history["items"]] == [
        (1, "busybox", False), (2, "busybox:2", True)]
    status = api.call("view", "GET", "/api/v1/namespaces/team-a/services/web/rollout").json()
    assert status["result"] is False and status["notes"][0]["text"].startswith("waiting for service/web: ")
    undone = api.call("edit", "POST", "/api/v1/namespaces/team-a/services/web/rollout/undo").json()
    assert undone["revision"] == 3
    assert api.call("view", "POST", "/api/v1/namespaces/team-a/services/web/rollout/undo").status_code == 403


def test_nodes_are_the_admins(api):
    api.call("admin", "POST", "/api/v1/apply", json.dumps(NODE))
    assert api.call("edit", "GET", "/api/v1/nodes").status_code == 403
    assert [n["metadata"]["name"] for n in api.call("admin", "GET", "/api/v1/nodes").json()["items"]] == ["h1"]
    assert api.call("admin", "POST", "/api/v1/nodes/h1/cordon").json()["outcome"] == "cordoned"
    assert api.call("admin", "POST", "/api/v1/nodes/h1/cordon").json()["outcome"] == "already cordoned"
    assert api.call("admin", "POST", "/api/v1/nodes/h1/uncordon").json()["outcome"] == "uncordoned"
    drained = api.call("admin", "POST", "/api/v1/nodes/h1/drain").json()
    assert drained == {"notes": [{"text": "node/h1 cordoned; draining", "warning": False}], "result": None}
    api.call("admin", "POST", "/api/v1/apply", job("j", "team-a"))
    add_task(api.store, "j", phase=TaskPhase.RUNNING, node="h1")
    assert error(api.call("admin", "DELETE", "/api/v1/nodes/h1"))[:2] == (409, "Conflict")
    assert api.call("admin", "DELETE", "/api/v1/nodes/h1?force=true").json()["outcome"] == "deleted"
    assert error(api.call("admin", "GET", "/api/v1/nodes/h1"))[:2] == (404, "NotFound")


def test_a_namespace_that_holds_anything_is_deleted_only_when_confirmed(api):
    api.call("edit", "POST", "/api/v1/apply", job("j", "team-a"))
    assert api.call("edit", "DELETE", "/api/v1/namespaces/team-a").status_code == 403
    assert error(api.call("admin", "DELETE", "/api/v1/namespaces/team-a")) == (
        409, "Conflict", "namespace 'team-a' holds 1 job (j); pass --yes to delete namespace team-a and everything "
                         "in it")
    assert api.call("admin", "DELETE", "/api/v1/namespaces/team-a?confirm=true").json()["outcome"] == "deleted"
    assert error(api.call("admin", "DELETE", "/api/v1/namespaces/default"))[:2] == (409, "Conflict")


def test_events_of_a_namespace_and_of_the_cluster(api):
    with api.store.transaction() as db:
        api.store.add_event(db, "Job", "j", "Scheduled", "task j-0 on h1", namespace="team-a")
        api.store.add_event(db, "Job", "k", "Scheduled", "task k-0 on h1", namespace="team-b")
        api.store.add_event(db, "Node", "h1", "NodeReady", "node h1 ready")
    mine = api.call("view", "GET", "/api/v1/namespaces/team-a/events").json()
    assert [(e["object"], e["namespace"]) for e in mine["items"]] == [("Job/j", "team-a")]
    assert mine["metadata"]["older"] is False
    ours = api.call("admin", "GET", "/api/v1/namespaces/team-a/events").json()
    assert [e["object"] for e in ours["items"]] == ["Job/j", "Node/h1"]  # as `get events -n team-a`
    assert len(api.call("admin", "GET", "/api/v1/events?limit=2").json()["items"]) == 2
    assert api.call("admin", "GET", "/api/v1/events?limit=2").json()["metadata"]["older"] is True
    assert api.call("view", "GET", "/api/v1/events").status_code == 403
    assert [e["object"] for e in api.call("view", "GET", "/api/v1/namespaces/team-a/events?for=job/j").json()[
        "items"]] == ["Job/j"]


# -- errors ------------------------------------------------------------------------------------------


def test_every_error_is_json_with_a_code_and_the_message(api):
    assert error(api.call("admin", "GET", "/api/v1/nope")) == (404, "NotFound", "no such route: GET /api/v1/nope")
    assert error(api.call("admin", "PATCH", "/api/v1/nodes")) == (405, "MethodNotAllowed",
                                                                  "PATCH is not allowed on /api/v1/nodes")
    assert error(api.call("admin", "GET", "/api/v1/nodes?limit=0")) == (
        422, "Invalid", "invalid request: query.limit: Input should be greater than or equal to 1")
    assert error(api.call("admin", "GET", "/api/v1/namespaces/Team_A/jobs"))[:2] == (422, "Invalid")
    assert error(api.call("admin", "GET", "/api/v1/namespaces/team-a/events?for=job"))[2] == (
        "'job' is not KIND/NAME, e.g. job/hello")


# -- pages, label selectors, watches and progress ----------------------------------------------------


def test_pages_follow_the_list_order_and_neither_repeat_nor_skip(api):
    api.call("admin", "POST", "/api/v1/apply", "---\n".join(job(f"j{i}", "team-a") for i in range(5)))
    first = api.call("view", "GET", "/api/v1/namespaces/team-a/jobs?limit=2").json()
    assert [o["metadata"]["name"] for o in first["items"]] == ["j0", "j1"] and first["metadata"]["continue"]
    api.call("admin", "POST", "/api/v1/apply", job("j00", "team-a"))  # sorts before the token: not shown later
    api.call("admin", "DELETE", "/api/v1/namespaces/team-a/jobs/j2")
    token = first["metadata"]["continue"]
    second = api.call("view", "GET", f"/api/v1/namespaces/team-a/jobs?limit=2&continue={token}").json()
    assert [o["metadata"]["name"] for o in second["items"]] == ["j3", "j4"]
    assert second["metadata"]["continue"] is None  # nothing after it: the last page

    for i in range(5):
        add_task(api.store, "j0", i)
    seen, token = [], None
    while True:
        page = api.call("view", "GET", "/api/v1/namespaces/team-a/tasks?limit=2"
                        + (f"&continue={token}" if token else "")).json()
        seen += [t["id"] for t in page["items"]]
        token = page["metadata"]["continue"]
        if token is None:
            break
    assert seen == [f"j0-abcde-{i}-1" for i in range(5)]
    assert error(api.call("view", "GET", "/api/v1/namespaces/team-a/tasks?continue=bm90IGEgbGlzdA"))[:2] == (
        400, "BadRequest")


def test_label_selectors_keep_the_objects_whose_labels_all_match(api):
    labelled = [json.loads(job(n, "team-a")) for n in ("a", "b", "c")]
    for doc, labels in zip(labelled, ({"tier": "web", "env": "prod"}, {"tier": "web"}, {})):
        doc["metadata"]["labels"] = labels
    api.call("edit", "POST", "/api/v1/apply", json.dumps(labelled), "application/json")
    names = lambda query: [o["metadata"]["name"] for o in api.call(  # noqa: E731
        "view", "GET", f"/api/v1/namespaces/team-a/jobs?labelSelector={query}").json()["items"]]
    assert names("tier=web") == ["a", "b"] and names("tier=web,env=prod") == ["a"] and names("env=dev") == []
    add_task(api.store, "a", 0, labels={"tier": "web"})
    add_task(api.store, "c", 1)
    assert [t["id"] for t in api.call("view", "GET", "/api/v1/namespaces/team-a/tasks?labelSelector=tier%3Dweb")
            .json()["items"]] == ["a-abcde-0-1"]
    assert error(api.call("view", "GET", "/api/v1/namespaces/team-a/jobs?labelSelector=tier"))[1:] == (
        "Invalid", "label selector 'tier' is not key=value")


def watch_lines(api, who: str, path: str):
    """The NDJSON lines of a watch, read as they come (the caller closes the stream)."""
    stream = api.client.stream("GET", path, headers={"Authorization": f"Bearer {api.tokens[who]}"})
    response = stream.__enter__()
    assert response.status_code == 200 and response.headers["content-type"] == "application/x-ndjson"
    return stream, (json.loads(line) for line in response.iter_lines() if line)


def test_a_watch_streams_added_then_modified_then_deleted(api):
    assert api.call("admin", "POST", "/api/v1/apply", job("j", "team-a") + "---\n" + job("other", "team-b")).is_success
    stream, events = watch_lines(api, "view", "/api/v1/namespaces/team-a/jobs?watch=true")
    try:
        first = next(events)
        assert (first["type"], first["object"]["metadata"]["name"]) == ("ADDED", "j")
        api.call("edit", "POST", "/api/v1/apply", job("j", "team-a", parallelism=4))
        changed = next(events)
        assert (changed["type"], changed["object"]["spec"]["parallelism"]) == ("MODIFIED", 4)
        api.call("edit", "POST", "/api/v1/apply", job("k", "team-a"))
        assert (lambda e: (e["type"], e["object"]["metadata"]["name"]))(next(events)) == ("ADDED", "k")
        api.call("edit", "DELETE", "/api/v1/namespaces/team-a/jobs/j")
        gone = next(events)
        assert (gone["type"], gone["object"]["metadata"]["name"]) == ("DELETED", "j")
    finally:
        stream.__exit__(None, None, None)


def test_a_task_watch_of_every_namespace_shows_only_what_the_token_reaches_and_ends_after_its_timeout(api):
    api.call("admin", "POST", "/api/v1/apply", job("j", "team-a") + "---\n" + job("k", "team-b"))
    add_task(api.store, "k", 0, namespace="team-b", phase=TaskPhase.RUNNING)
    mine = add_task(api.store, "j", 0, phase=TaskPhase.RUNNING)
    stream, events = watch_lines(api, "view", "/api/v1/tasks?watch=true&timeoutSeconds=3")
    try:
        assert [(e["type"], e["object"]["id"]) for e in [next(events)]] == [("ADDED", mine)]
        with api.store.transaction() as db:
            api.store.update_task(db, mine, phase=TaskPhase.SUCCEEDED, exit_code=0)
            api.store.update_task(db, "k-abcde-0-1", phase=TaskPhase.FAILED)
        changed = next(events)
        assert (changed["type"], changed["object"]["id"], changed["object"]["phase"]) == ("MODIFIED", mine, "Succeeded")
        assert list(events) == []  # nothing of team-b, and the stream ends at its timeout
    finally:
        stream.__exit__(None, None, None)


def test_a_watch_with_a_page_or_of_a_namespace_not_reached_is_refused(api):
    assert api.call("view", "GET", "/api/v1/namespaces/team-b/jobs?watch=true").status_code == 403
    assert api.call("view", "GET", "/api/v1/namespaces/team-a/jobs?watch=true&timeoutSeconds=0").status_code == 422


def progress_lines(api, who: str, method: str, path: str) -> list[dict]:
    response = api.call(who, method, path)
    assert response.status_code == 200 and response.headers["content-type"] == "application/x-ndjson"
    return [json.loads(line) for line in response.text.splitlines()]


def test_a_drain_that_waits_streams_its_notes_then_its_result(api):
    api.call("admin", "POST", "/api/v1/apply", json.dumps({**NODE, "spec": {"address": "tcp://127.0.0.1:9"}}))
    lines = progress_lines(api, "admin", "POST", "/api/v1/nodes/h1/drain?wait=true")
    assert lines[0] == {"type": "NOTE", "text": "node/h1 cordoned; draining", "warning": False}
    assert lines[1]["type"] == "NOTE" and lines[1]["warning"] and "node/h1 did not answer" in lines[1]["text"]
    assert lines[2:] == [{"type": "NOTE", "text": "node/h1 drained", "warning": False},
                         {"type": "RESULT", "result": None}]


def test_a_rollout_status_that_gives_up_ends_its_stream_with_the_error(api):
    api.call("edit", "POST", "/api/v1/apply", service("web"))
    lines = progress_lines(api, "view", "GET", "/api/v1/namespaces/team-a/services/web/rollout?watch=true&timeout=0.5")
    assert lines[0]["type"] == "NOTE" and lines[0]["text"].startswith("waiting for service/web: ")
    assert lines[-1]["type"] == "ERROR" and lines[-1]["error"] == "Failed"
    assert lines[-1]["message"].startswith("timed out after 0.5s: service/web: ")
    assert error(api.call("view", "GET", "/api/v1/namespaces/team-a/services/nope/rollout?watch=true")) == (
        404, "NotFound", "Service 'nope' not found in namespace 'team-a'; `brokerctl get services -n team-a` lists them")


def test_following_a_finished_tasks_logs_gives_its_stored_output(api):
    api.call("edit", "POST", "/api/v1/apply", job("j", "team-a"))
    tid = add_task(api.store, "j", output=b"done\n")
    response = api.call("view", "GET", f"/api/v1/namespaces/team-a/tasks/{tid}/logs?follow=true")
    assert (response.status_code, response.content) == (200, b"done\n")


# -- health, readiness, metrics, body limit ----------------------------------------------------------


def served(db, **settings) -> ServedApp:
    return ServedApp(create_app(Settings(db=str(db), **{"controller": False, **settings})))


def test_health_needs_no_token_and_readiness_wants_the_store_and_a_fresh_controller(db_url):
    store = Store(db_url)
    try:
        with served(db_url, controller=True) as app, httpx.Client(base_url=app.url) as client:
            assert client.get("/healthz").json() == {"status": "ok", "checks": {"process": "ok"}}
            response = client.get("/readyz")
            assert response.status_code == 503 and response.json() == {"status": "failing", "checks": {
                "store": "ok", "controller": "no controller holds the store's lease"}}
            store.claim_lease("ctl", 10, now=time.time() - 30)
            assert client.get("/readyz").json()["checks"]["controller"].startswith("no heartbeat for 3")
            assert store.renew_lease("ctl", 1, 10)
            ready = client.get("/readyz")
            assert ready.status_code == 200 and ready.json()["checks"]["controller"].startswith("heartbeat 0.")
        with served(db_url, controller=False) as app, httpx.Client(base_url=app.url) as client:
            store.release_lease("ctl")
            assert client.get("/readyz").json() == {"status": "ok", "checks": {"store": "ok"}}
    finally:
        store.close()


def test_readiness_names_a_store_that_cannot_be_opened(tmp_path):
    with served(tmp_path / "gone" / "broker.db") as app, httpx.Client(base_url=app.url) as client:
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.json()["checks"]["store"].startswith(f"no store at {tmp_path / 'gone' / 'broker.db'}: ")
        assert client.get("/healthz").status_code == 200
        metrics = client.get("/metrics")
        assert metrics.status_code == 200 and "brokerctl_store_up 0.0" in metrics.text


def samples(text: str) -> dict[tuple, float]:
    """The samples of a Prometheus exposition: (name, sorted labels) -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_report_the_store_the_controller_and_the_api_itself(api):
    quota = {"apiVersion": "broker/v1", "kind": "Namespace", "metadata": {"name": "team-a"},
             "spec": {"quota": {"cpus": 8, "memory": "1g", "slots": {"gpu": 2}}}}
    api.call("admin", "POST", "/api/v1/apply", json.dumps(quota) + "\n---\n" + json.dumps(NODE) + "\n---\n"
             + job("j", "team-a", template={"image": "busybox", "resources": {"cpus": 0.5, "memory": "256m"}}))
    add_task(api.store, "j", 0, phase=TaskPhase.RUNNING, node="h1")
    add_task(api.store, "j", 1)
    add_task(api.store, "j", 2)
    api.store.claim_lease("ctl", 10)
    stats = {"passes": 3, "passSeconds": 0.75, "passBuckets": {"0.1": 1, "0.5": 2, "1": 3},
             "dockerCalls": {"GET /containers/json": 7}}
    assert api.store.renew_lease("ctl", 1, 10, stats=stats)
    api.call("view", "GET", "/api/v1/namespaces/team-a/jobs")
    api.call("view", "GET", "/api/v1/namespaces/team-a/jobs")
    api.call("view", "GET", "/api/v1/nodes")

    response = api.client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain; version=")
    found = samples(response.text)
    assert found[("brokerctl_store_up", ())] == 1
    assert found[("brokerctl_tasks", (("namespace", "team-a"), ("phase", "Succeeded")))] == 2
    assert found[("brokerctl_tasks", (("namespace", "team-a"), ("phase", "Running")))] == 1
    assert found[("brokerctl_node_condition", (("condition", "Unknown"), ("node", "h1")))] == 1
    assert found[("brokerctl_node_slots", (("execution_type", "default"), ("node", "h1")))] == 2
    assert found[("brokerctl_node_slots_used", (("execution_type", "default"), ("node", "h1")))] == 1
    assert found[("brokerctl_namespace_used", (("namespace", "team-a"), ("resource", "cpus")))] == 0.5
    assert found[("brokerctl_namespace_used", (("namespace", "team-a"), ("resource", "memory_bytes")))] == 256 << 20
    assert found[("brokerctl_namespace_quota", (("namespace", "team-a"), ("resource", "memory_bytes")))] == 1 << 30
    assert found[("brokerctl_namespace_slots_quota", (("execution_type", "gpu"), ("namespace", "team-a")))] == 2
    assert ("brokerctl_namespace_quota", (("namespace", "team-b"), ("resource", "cpus"))) not in found
    assert found[("brokerctl_reconcile_pass_seconds_bucket", (("le", "0.5"),))] == 2
    assert found[("brokerctl_reconcile_pass_seconds_bucket", (("le", "+Inf"),))] == 3
    assert found[("brokerctl_reconcile_pass_seconds_sum", ())] == 0.75
    assert found[("brokerctl_docker_api_calls_total", (("endpoint", "GET /containers/json"),))] == 7
    assert found[("brokerctl_controller_heartbeat_age_seconds", ())] < 10
    route = "/api/v1/namespaces/{namespace}/jobs"
    assert found[("brokerctl_api_requests_total", (("method", "GET"), ("route", route), ("status", "200")))] == 2
    assert found[("brokerctl_api_requests_total", (("method", "GET"), ("route", "/api/v1/nodes"), ("status",
                                                                                                  "403")))] == 1
    assert found[("brokerctl_api_request_duration_seconds_count", (("method", "GET"), ("route", route)))] == 2


def test_metrics_need_a_token_when_the_server_says_so(db_url):
    store = Store(db_url)
    try:
        text = tokens.create(store, "scraper", "view", ["default"]).text
        with served(db_url, metrics_token=True) as app, httpx.Client(base_url=app.url) as client:
            assert error(client.get("/metrics"))[:2] == (401, "Unauthorized")
            assert client.get("/metrics", headers={"Authorization": f"Bearer {text}"}).status_code == 200
            assert client.get("/healthz").status_code == 200
    finally:
        store.close()


def test_a_body_over_the_limit_is_refused_with_413_before_it_is_read(api, tmp_path):
    big = "# " + "x" * (10 * 1024 * 1024) + "\n" + job("j", "team-a")
    refused = api.call("edit", "POST", "/api/v1/apply", big)
    assert error(refused) == (413, "TooLarge", "request body over 10 MiB; split the manifests into several requests")

    def chunks():  # no Content-Length: counted as it comes
        for _ in range(11):
            yield b"#" * (1024 * 1024)

    chunked = api.client.post("/api/v1/apply", content=chunks(), headers={
        "Authorization": f"Bearer {api.tokens['edit']}", "Content-Type": "application/yaml"})
    assert chunked.status_code == 413 and chunked.json()["error"] == "TooLarge"
    assert api.call("admin", "GET", "/api/v1/jobs").json()["items"] == []
    assert api.call("edit", "POST", "/api/v1/apply", "# " + "x" * (9 * 1024 * 1024) + "\n" + job("j", "team-a")
                    ).status_code == 200
