"""Task lists kept rendered (``reconciler.api.rendered``): served from bytes while the store's change
counter stays where it was, never older than the store, never another token's, pages, selectors and
sorting still right, and gzip to a client that accepts it. Over real HTTP on a real store, both
backends (``db_url``), as tests/test_api.py; the ``Renders`` class and the header parser alone below."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from reconciler.api.rendered import Renders, accepts_gzip
from reconciler.kinds import TaskPhase
from reconciler.ops import listing

from test_api import Api, add_task, job


@pytest.fixture
def api(db_url):
    a = Api(db_url)
    a.tokens = {"admin": a.token("admin", "root", []), "view": a.token("view", "bob", ["team-a"]),
                "other": a.token("view", "carol", ["team-b"])}
    assert a.call("admin", "POST", "/api/v1/apply", "---\n".join(
        [TEAMS, job("j", "team-a"), job("k", "team-b")])).status_code == 200
    yield a
    a.close()


TEAMS = "apiVersion: broker/v1\nkind: Namespace\nmetadata: {name: team-a}\n---\n" \
        "apiVersion: broker/v1\nkind: Namespace\nmetadata: {name: team-b}\n"


@pytest.fixture
def reads(monkeypatch):
    """How many times a task list was read from the store."""
    count = [0]
    real = listing.tasks

    def counted(*args, **kwargs):
        count[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(listing, "tasks", counted)
    return count


def ids(api: Api, who: str, path: str) -> list[str]:
    response = api.call(who, "GET", path)
    assert response.status_code == 200, response.text
    return [t["id"] for t in response.json()["items"]]


def test_a_list_asked_for_again_and_again_is_read_once_until_the_store_changes(api, reads):
    first = add_task(api.store, "j", 0)
    path = "/api/v1/namespaces/team-a/tasks"
    results: list[list[str]] = []

    def ask() -> None:
        results.append(ids(api, "view", path))

    threads = [threading.Thread(target=ask) for _ in range(8)]  # at once: one read, the others wait for it
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [[first]] * 8 and reads[0] == 1
    assert ids(api, "admin", path) == [first] and reads[0] == 2  # an admin's scope is a key of its own

    second = add_task(api.store, "j", 1)
    assert ids(api, "view", path) == [first, second] and reads[0] == 3


def test_a_kept_list_is_never_older_than_the_store(api):
    path = "/api/v1/namespaces/team-a/tasks"
    assert ids(api, "view", path) == []
    tid = add_task(api.store, "j", 0, phase=TaskPhase.RUNNING)
    assert ids(api, "view", path) == [tid]  # a new task
    with api.store.transaction() as db:
        api.store.update_task(db, tid, phase=TaskPhase.SUCCEEDED, exit_code=0)
    assert [t["phase"] for t in api.call("view", "GET", path).json()["items"]] == ["Succeeded"]  # a changed one
    assert api.call("admin", "DELETE", "/api/v1/namespaces/team-a/jobs/j?force=true").status_code == 200
    assert ids(api, "view", path) == []  # purged with its Job
    assert ids(api, "view", "/api/v1/tasks") == []


def test_a_kept_list_is_never_shown_to_a_token_that_does_not_reach_its_namespaces(api):
    mine, theirs = add_task(api.store, "j", 0), add_task(api.store, "k", 0, namespace="team-b")
    assert ids(api, "admin", "/api/v1/tasks") == [mine, theirs]
    assert ids(api, "view", "/api/v1/tasks") == [mine]  # same query and counter, another scope
    assert ids(api, "other", "/api/v1/tasks") == [theirs]
    assert ids(api, "view", "/api/v1/namespaces/team-a/tasks") == [mine]
    refused = api.call("other", "GET", "/api/v1/namespaces/team-a/tasks")  # kept for team-a, still refused
    assert refused.status_code == 403 and mine not in refused.text
    assert api.call(None, "GET", "/api/v1/namespaces/team-a/tasks").status_code == 401


def test_pages_selectors_sorting_and_watches_of_kept_lists_stay_right(api):
    for i in range(4):
        add_task(api.store, "j", i, labels={"tier": "web" if i % 2 else "db"})
    path = "/api/v1/namespaces/team-a/tasks"
    first = api.call("view", "GET", f"{path}?limit=2").json()
    assert [t["index"] for t in first["items"]] == [0, 1]
    token = first["metadata"]["continue"]
    assert [t["index"] for t in api.call("view", "GET", f"{path}?limit=2&continue={token}").json()["items"]] == [2, 3]
    add_task(api.store, "j", 4)
    assert [t["index"] for t in api.call("view", "GET", f"{path}?limit=2&continue={token}").json()["items"]] == [2, 3]
    assert [t["index"] for t in api.call("view", "GET", f"{path}?limit=3&continue={token}").json()["items"]] == [
        2, 3, 4]
    assert [t["index"] for t in api.call("view", "GET", f"{path}?labelSelector=tier%3Dweb").json()["items"]] == [1, 3]
    newest = api.call("view", "GET", f"{path}?sortBy=.index&limit=1").json()
    assert [t["index"] for t in newest["items"]] == [0] and newest["metadata"]["remainingItemCount"] == 4
    with api.client.stream("GET", f"{path}?watch=true&timeoutSeconds=1",
                           headers={"Authorization": f"Bearer {api.tokens['view']}"}) as stream:
        assert stream.headers["content-type"] == "application/x-ndjson"  # a watch streams, never kept
        assert sum(1 for line in stream.iter_lines() if line) == 5


def test_a_client_that_accepts_gzip_gets_the_same_list_compressed(api):
    for i in range(20):
        add_task(api.store, "j", i)
    path = "/api/v1/namespaces/team-a/tasks"
    auth = {"Authorization": f"Bearer {api.tokens['view']}"}
    plain = api.client.get(path, headers={**auth, "Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers and len(plain.json()["items"]) == 20
    for _ in range(2):  # compressed once, then kept: the same bytes
        with api.client.stream("GET", path, headers={**auth, "Accept-Encoding": "gzip"}) as zipped:
            assert zipped.headers["content-encoding"] == "gzip" and "Accept-Encoding" in zipped.headers["vary"]
            raw = b"".join(zipped.iter_raw())
        assert raw[:2] == b"\x1f\x8b" and len(raw) < len(plain.content)
        assert gzip.decompress(raw) == plain.content
    add_task(api.store, "j", 20)
    with api.client.stream("GET", path, headers={**auth, "Accept-Encoding": "gzip"}) as zipped:
        assert len(httpx.Response(200, content=gzip.decompress(b"".join(zipped.iter_raw()))).json()["items"]) == 21
    small = api.client.get("/api/v1/namespaces/team-b/tasks", headers={**auth, "Accept-Encoding": "gzip",
                                                                       "Authorization": f"Bearer {api.tokens['other']}"})
    assert small.json()["items"] == [] and "content-encoding" not in small.headers  # too small to be worth it


# -- the keeper alone ----------------------------------------------------------------------------------


def test_a_body_is_kept_until_a_higher_rev_is_asked_for_and_an_error_keeps_nothing():
    renders, made = Renders(), []

    def render(text: bytes, made_at: int):
        return lambda: made.append(text) or (made_at, text)

    assert renders.get("k", 5, render(b"five", 5)).body == b"five"
    assert renders.get("k", 5, render(b"again", 5)).body == b"five"
    assert renders.get("k", 4, render(b"older", 4)).body == b"five"  # newer than asked for is not stale
    assert renders.get("k", 6, render(b"six", 6)).body == b"six"
    assert renders.get("other", 6, render(b"o", 6)).body == b"o"
    assert made == [b"five", b"six", b"o"] and (renders.hits, renders.misses) == (2, 3)

    def broken() -> tuple[int, bytes]:
        raise ValueError("no")

    with pytest.raises(ValueError):
        renders.get("k", 7, broken)
    assert renders.get("k", 6, render(b"x", 6)).body == b"six"  # the failed render left the last body kept


def test_a_body_is_kept_under_the_counter_its_rows_were_read_at():
    """A render whose connection saw the store as it was before ``rev`` (its counter read lower) is
    served to the request that asked, and kept under what it shows: the next request at ``rev`` renders
    again instead of being given it."""
    renders = Renders()
    assert renders.get("k", 9, lambda: (8, b"lagging")).body == b"lagging"
    assert renders.get("k", 9, lambda: (9, b"current")).body == b"current"
    assert renders.get("k", 9, lambda: (9, b"again")).body == b"current"


def test_the_bodies_used_longest_ago_go_first():
    renders = Renders(max_bytes=10, max_kept=2)
    renders.get("a", 1, lambda: (1, b"aaaa"))
    renders.get("b", 1, lambda: (1, b"bbbb"))
    renders.get("a", 1, lambda: (1, b"new!"))  # a used again: b is now the oldest
    renders.get("c", 1, lambda: (1, b"cccc"))
    assert renders.kept == 2
    assert renders.get("a", 1, lambda: (1, b"gone")).body == b"aaaa"
    assert renders.get("b", 1, lambda: (1, b"read")).body == b"read"
    assert renders.get("big", 1, lambda: (1, b"x" * 11)).body == b"x" * 11  # served, too large to keep
    assert renders.get("big", 1, lambda: (1, b"y" * 11)).body == b"y" * 11
    assert renders.get("a", 1, lambda: (1, b"lost")).body == b"aaaa"  # and it pushed nothing out


def test_only_one_render_runs_for_requests_of_one_key_at_once():
    renders, started, release, made = Renders(), threading.Event(), threading.Event(), []

    def slow() -> tuple[int, bytes]:
        made.append(1)
        started.set()
        release.wait(10)
        return 1, b"body"

    got: list[bytes] = []
    first = threading.Thread(target=lambda: got.append(renders.get("k", 1, slow).body))
    first.start()
    started.wait(10)
    others = [threading.Thread(target=lambda: got.append(renders.get("k", 1, slow).body)) for _ in range(4)]
    for t in others:
        t.start()
    release.set()
    for t in [first, *others]:
        t.join(10)
    assert got == [b"body"] * 5 and made == [1]


@pytest.mark.parametrize("header, accepted", [
    ("gzip", True), ("gzip, deflate", True), ("deflate, gzip;q=0.5", True), ("br;q=1.0, *", True),
    ("GZIP", True), ("x-gzip", True), ("", False), ("identity", False), ("gzip;q=0", False), ("br, deflate", False),
    ("gzip;q=nonsense", False)])
def test_accept_encoding_is_read_as_http_says(header, accepted):
    assert accepts_gzip(header) is accepted


# -- start-up ------------------------------------------------------------------------------------------


def test_a_served_app_is_ready_for_its_first_request_before_it_accepts_one(tmp_path):
    """The first `apply` does not wait for the pool's first connection nor for the manifest loader's import
    (the kinds' models are built as it loads): both are done at start-up, before a request is accepted. In
    a process of its own, which has imported neither."""
    script = (
        "import sys\n"
        "sys.path.insert(0, sys.argv[2])\n"
        "from helpers import ServedApp\n"
        "from reconciler.api.app import Settings, create_app\n"
        "app = create_app(Settings(db=sys.argv[1], controller=False))\n"
        "loaded = 'reconciler.spec.models' in sys.modules\n"
        "with ServedApp(app):\n"
        "    print(loaded, app.state.stores.opened, 'reconciler.spec.models' in sys.modules)\n")
    from reconciler.store import Store

    Store(tmp_path / "s.db").close()
    ran = subprocess.run([sys.executable, "-c", script, str(tmp_path / "s.db"), str(Path(__file__).parent)],
                         capture_output=True, text=True, timeout=60, env={**os.environ})
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split() == ["False", "1", "True"]


def test_a_store_that_cannot_be_opened_at_start_up_does_not_stop_the_app(tmp_path):
    from helpers import ServedApp
    from reconciler.api.app import Settings, create_app

    app = create_app(Settings(db=str(tmp_path / "gone" / "broker.db"), controller=False))
    with ServedApp(app) as served:
        assert httpx.get(f"{served.url}/healthz").status_code == 200
        assert httpx.get(f"{served.url}/readyz").status_code == 503


def test_the_server_says_it_serves_once_its_app_has_started(tmp_path):
    """`brokerctl server` says "serving the API on URL" once the app's start-up (``warm``) is done, so a
    script that waits for that line sends its first request to a ready server."""
    from helpers import ServerProcess

    with ServerProcess(tmp_path / "s.db", tmp_path / "state", "--no-controller") as server:
        log = server.log.read_text()
    assert log.index("Application startup complete") < log.index("serving the API on")
