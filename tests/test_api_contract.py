"""The API as its OpenAPI document describes it, checked on a `brokerctl server` process over HTTP.

Every route of ``/openapi.json`` is walked: without a token each is 401, and each write is 403 for a
``view`` token and for an ``edit`` token of another namespace (the route being asked is in team-a).
schemathesis then sends each operation a bounded number of generated requests with an admin token: no
answer is a 5xx, and every answer matches the status codes, content types and schemas documented.
No Docker: the server runs with --no-controller on a store without nodes.
"""

from __future__ import annotations

import json

import httpx
import pytest

from helpers import ServerProcess, cli

pytestmark = pytest.mark.timeout(180)

# Requests that change nothing although they are not GETs (what `apply` would change).
READ_POSTS = {("post", "/api/v1/diff")}
PUBLIC = {"/healthz", "/readyz", "/metrics"}
JOB = json.dumps({"apiVersion": "broker/v1", "kind": "Job", "metadata": {"name": "walk", "namespace": "team-a"},
                  "spec": {"template": {"image": "busybox", "command": ["true"]}}})
NAMESPACE = json.dumps({"apiVersion": "broker/v1", "kind": "Namespace", "metadata": {"name": "team-a"}})


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    state = tmp_path_factory.mktemp("contract")
    db = state / "broker.db"
    with ServerProcess(db, state, "--no-controller") as served:
        admin = served.client(served.admin)
        assert admin.post("/api/v1/apply", content=NAMESPACE + "\n---\n" + NAMESPACE.replace("team-a", "team-b"),
                          headers={"Content-Type": "application/yaml"}).status_code == 200
        served.tokens = {"admin": served.admin}
        for name, role, ns in (("view", "view", "team-a"), ("other", "edit", "team-b")):
            made = cli(db, "token", "create", "--user", name, "--role", role, "--namespace", ns, check=True)
            served.tokens[name] = made.stdout.strip().splitlines()[-1]
        yield served


def operations(document: dict):
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            yield method, path, operation


def concrete(path: str) -> str:
    return (path.replace("{namespace}", "team-a").replace("{kind}", "job").replace("{name}", "walk").replace("{task_id}", "walk-abcde-0-1")
            .replace("{uuid}", "2d272b5c-953c-44e9-ad15-6c31187903c9"))


def send(server, token: str | None, method: str, path: str) -> httpx.Response:
    with server.client(token) as client:
        body = JOB if method in ("post", "put", "patch") else None
        if path.endswith("/scale"):
            body = json.dumps({"replicas": 2})
        return client.request(method.upper(), concrete(path), content=body,
                              headers={"Content-Type": "application/yaml" if "apply" in path or "diff" in path
                                       else "application/json"})


def test_every_route_needs_a_token_and_every_write_a_role_that_may_write_there(server):
    document = httpx.get(server.url + "/openapi.json").json()
    walked = list(operations(document))
    writes = [(m, p) for m, p, _ in walked if m != "get" and (m, p) not in READ_POSTS and p not in PUBLIC]
    assert len(walked) > 30 and len(writes) >= 11  # the document lists the routes (a wrong walk fails here)
    assert {("post", "/tasks"), ("post", "/tasks/{uuid}/kill_container"), ("post", "/nodes"),
            ("patch", "/nodes/{uuid}"), ("delete", "/nodes/{uuid}")} <= set(writes)  # Container Broker's too

    for method, path, operation in walked:
        if path in PUBLIC:
            assert "security" not in operation, path
            continue
        assert operation.get("security") == [{"token": []}], f"{method} {path} documents no token"
        refused = send(server, None, method, path)
        assert refused.status_code == 401, f"{method} {path}: {refused.status_code} {refused.text}"
        assert refused.headers["WWW-Authenticate"] == "Bearer"
        assert refused.json()["error"] == "Unauthorized"
        wrong = send(server, "bk_nope_" + "x" * 43, method, path)
        assert wrong.status_code == 401, f"{method} {path} with an unknown token: {wrong.status_code}"

    for method, path in writes:
        for who in ("view", "other"):
            answer = send(server, server.tokens[who], method, path)
            assert answer.status_code == 403, f"{who} token, {method} {path}: {answer.status_code} {answer.text}"
            assert answer.json()["error"] == "Forbidden"
            role = "view" if who == "view" else "edit"
            assert answer.json()["message"].startswith(f"user {who} (role {role} in team-"), answer.json()
    assert send(server, server.tokens["view"], "post", "/api/v1/diff").status_code == 200  # reads only
    assert server.client(server.admin).get("/api/v1/namespaces/team-a/jobs").json()["items"] == []  # nothing written


def test_generated_requests_get_documented_answers_and_never_a_server_error(server):
    """schemathesis, a few examples per operation (the suite's time): status code, content type,
    headers and body as the document says; no 5xx."""
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from schemathesis.checks import (content_type_conformance, not_a_server_error, response_headers_conformance,
                                     response_schema_conformance, status_code_conformance)

    schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
              response_schema_conformance]
    headers = {"Authorization": f"Bearer {server.admin}"}
    tried = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @settings(max_examples=5, deadline=None, database=None, phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def check(case):
            if case.query and case.query.get("watch") in (True, "true"):
                case.query["timeoutSeconds"] = 0.3  # a watch streams until its timeout
                case.query["timeout"] = 0.3  # (a rollout's)
            response = case.call(headers=headers, timeout=20)
            case.validate_response(response, checks=checks)
            tried.append(response.status_code)

        check()
    assert len(tried) > 100 and any(200 <= s < 300 for s in tried) and any(400 <= s < 500 for s in tried)
    assert server.client().get("/healthz").status_code == 200


def test_the_exec_websocket_needs_a_token_and_a_role_that_may_write_before_it_is_accepted(server):
    """WebSocket routes are not in /openapi.json: exec's are walked here. Each refusal is the API's JSON
    error in the handshake's answer (the socket is never accepted): 401 without a valid token, 403 for a
    view token and for an edit token of another namespace, 404 for a task that does not exist."""
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    base = server.url.replace("http", "ws", 1) + "/api/v1"
    paths = ("/namespaces/team-a/tasks/walk-abcde-0-1/exec?command=true", "/tasks/walk-abcde-0-1/exec?command=true")

    def refusal(path: str, token: str | None) -> tuple[int, dict, object]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        with pytest.raises(InvalidStatus) as refused:
            connect(base + path, additional_headers=headers, proxy=None, open_timeout=10).close()
        response = refused.value.response
        return response.status_code, json.loads(response.body), response.headers

    for path in paths:
        for token in (None, "bk_nope_" + "x" * 43):
            status, body, headers = refusal(path, token)
            assert (status, body["error"], headers.get("WWW-Authenticate")) == (401, "Unauthorized", "Bearer"), path
    status, body, _ = refusal(paths[0], server.tokens["view"])
    assert (status, body["error"]) == (403, "Forbidden")
    assert body["message"] == ("user view (role view in team-a) may not exec in task walk-abcde-0-1 in namespace "
                               "team-a: the view role only reads")
    status, body, _ = refusal(paths[0], server.tokens["other"])
    assert (status, body["error"]) == (403, "Forbidden") and "the token reaches only team-b" in body["message"]
    for path in paths:
        status, body, _ = refusal(path, server.admin)
        assert (status, body["message"]) == (404, "task 'walk-abcde-0-1' not found; `brokerctl get tasks` lists them")
    status, body, _ = refusal("/tasks/walk-abcde-0-1/exec", server.admin)
    assert (status, body["error"]) == (422, "Invalid") and "name the command after --" in body["message"]
    status, body, _ = refusal("/tasks/walk-abcde-0-1/exec?command=true&rows=-1", server.admin)
    assert (status, body["error"]) == (422, "Invalid") and body["message"].startswith("invalid request: query.rows")
