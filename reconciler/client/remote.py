"""The verbs of the command line over HTTP: each asks the server's route that calls the local verb
(``reconciler/api``) and hands back what the local verb returns, built from the API's ``views``
objects (tasks as ``TaskRecord``s through ``views.task_record``, events as rows through
``views.event_row``, listings as ``ops.listing.Listing``s, progress as ``ops.polling.Note``s), so the
CLI renders both with the same code and the output cannot drift.

Called by the CLI's commands when ``cli.common.remote`` names a server. Manifests are sent as the
files' text (``spec.sources``), validated by the server: its errors name the files as the local CLI
does; `sync DIR` sends a directory's files so, named by its absolute path here (the sync's source).
``exec`` is a WebSocket (``Connection.websocket``, framed as ``views.EXEC_*``) taking the local verb's
arguments, so the CLI's terminal handling is the same code; ``edit`` runs the editor here and the
edit's verb there. Only the store's own commands (server, controller, token, store) are not over HTTP.
The views, listings and notes are imported by the verbs that build them, so `apply` (the
commonest remote command, whose start-up is most of its time) loads only the HTTP client.
"""

from __future__ import annotations

import base64
import json
import queue
import threading
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, TextIO

from ..errors import BrokerError, UsageError
from ..kinds import Kind
from ..ops.refs import EVENTS, TASKS
from ..spec.sources import FILES_TYPE, sources_body
from .config import Target
from .http import Connection, path_of, raised

if TYPE_CHECKING:
    from ..ops.listing import Filters, Listing
    from ..ops.polling import Note

PLURALS = {Kind.NODE.value: "nodes", Kind.NAMESPACE.value: "namespaces", Kind.JOB.value: "jobs",
           Kind.SERVICE.value: "services", Kind.SECRET.value: "secrets", TASKS: "tasks", EVENTS: "events"}


class Remote:
    def __init__(self, target: Target):
        self.target = target
        self.http = Connection(target.server, target.token, target.ca, target.origin)

    def close(self) -> None:
        self.http.close()

    # -- who ----------------------------------------------------------------------------------------

    def whoami(self) -> dict:
        return self.http.call("GET", path_of("whoami"))

    def status(self) -> dict:
        return self.http.call("GET", path_of("status"))

    # -- manifests ----------------------------------------------------------------------------------

    def apply(self, files: list[str], stdin: TextIO | None, namespace: str) -> dict:
        """``{"results": [{ref, outcome, kind, namespace, name}], "warnings": [...]}``."""
        return self.http.call("POST", path_of("apply"), {"namespace": namespace}, sources_body(files, stdin),
                              FILES_TYPE)

    def diff(self, files: list[str], stdin: TextIO | None, namespace: str) -> list[dict]:
        from pathlib import Path

        for given in files:
            if given != "-" and Path(given).is_dir():
                raise UsageError(f"diff -f {given}: a directory is compared as `sync` would apply it, prunes "
                                 "included, which needs the store: run it on the server's host, or diff its files")
        return self.http.call("POST", path_of("diff"), {"namespace": namespace}, sources_body(files, stdin),
                              FILES_TYPE)["changes"]

    def delete_files(self, files: list[str], stdin: TextIO | None, namespace: str, force: bool,
                     yes: bool) -> list[dict]:
        params = {"namespace": namespace, "force": _flag(force), "confirm": _flag(yes)}
        return self.http.call("POST", path_of("delete"), params, sources_body(files, stdin), FILES_TYPE)["results"]

    # -- edit ---------------------------------------------------------------------------------------

    def edit_document(self, kind: Kind, name: str, namespace: str) -> str:
        """``ops.edit.document`` over HTTP: the text to open."""
        return self.http.call("GET", path_of("edit", kind.value.lower(), name), {"namespace": namespace})["text"]

    def apply_edit(self, kind: Kind, name: str, namespace: str, original: str, edited: str, source: str):
        """``ops.edit.apply_edit`` over HTTP: an ``ops.edit.Edited``, or the server's refusal raised as the
        CLI's (a bad edit, a conflict), for the editor loop to reopen the file with."""
        from ..ops.edit import Edited

        body = json.dumps({"original": original, "edited": edited, "filename": source}).encode()
        done = self.http.call("POST", path_of("edit", kind.value.lower(), name), {"namespace": namespace}, body,
                              "application/json")
        return Edited(done["ref"], done["outcome"], done["message"])

    # -- sync ---------------------------------------------------------------------------------------

    def sync(self, source: str, allow_mass_prune: bool, namespace: str) -> dict:
        """`sync DIR` through the server: the directory ``source`` (its absolute path, the sync's name for
        it) read here, file by file, with its git commit; ``{"source", "lines", "failed"}``."""
        from ..ops.checkout import git_commit
        from ..spec.sources import directory_sources

        body = json.dumps({"directory": source, "commit": git_commit(source),
                           "sources": [s.to_json() for s in directory_sources(source)]}).encode()
        params = {"namespace": namespace, "allowMassPrune": _flag(allow_mass_prune)}
        return self.http.call("POST", path_of("sync"), params, body, "application/json")

    def sync_status(self, source: str | None) -> list[dict]:
        """``ops.sync.status`` over HTTP: ``views.sync_status_object``s."""
        return self.http.call("GET", path_of("syncs"), {"directory": source} if source else None)["items"]

    # -- get ----------------------------------------------------------------------------------------

    def _list_path(self, kind: str, namespace: str | None) -> str:
        plural = PLURALS[kind]
        if kind in (Kind.NODE.value, Kind.NAMESPACE.value) or namespace is None:
            return path_of(plural)
        return path_of("namespaces", namespace, plural)

    def _one_path(self, kind: str, name: str, namespace: str | None) -> str:
        if kind == TASKS:
            return path_of("tasks", name)
        if kind in (Kind.NODE.value, Kind.NAMESPACE.value):
            return path_of(PLURALS[kind], name)
        return path_of("namespaces", namespace or "default", PLURALS[kind], name)

    def _params(self, kind: str, filters: Filters, sort_by: str | None = None, limit: int | None = None) -> dict:
        params: dict = {}
        if filters.selector:
            params["labelSelector"] = ",".join(f"{k}={v}" for k, v in filters.selector.items())
        if kind == TASKS:
            if filters.phases:
                params["phase"] = sorted(p.value for p in filters.phases)
            if filters.owner:
                params["owner"] = f"{filters.owner[0].value.lower()}/{filters.owner[1]}"
        if sort_by:
            params["sortBy"] = sort_by
        if limit:
            params["limit"] = limit
        return params

    def listing(self, kinds: list[str], name: str | None, filters: Filters, namespace: str | None,
                sort_by: str | None, limit: int | None) -> list[Listing]:
        """``ops.listing.get`` over HTTP: one ``Listing`` per kind, filtered, sorted and cut by the server."""
        from ..ops import listing

        listing.check(kinds, name, filters, namespace)
        return [self._listing(kind, name, filters, namespace, sort_by, limit) for kind in kinds]

    def _listing(self, kind: str, name, filters: Filters, namespace, sort_by, limit) -> Listing:
        from .. import views
        from ..ops import listing
        from ..ops.listing import Listing

        if kind == EVENTS:
            limit = listing.EVENTS_LIMIT if limit is None else limit
            params = {"limit": limit}
            if filters.events_for:
                params["for"] = f"{filters.events_for[0].value.lower()}/{filters.events_for[1]}"
            body = self.http.call("GET", self._list_path(kind, namespace), params)
            rows = [views.event_row(o) for o in body["items"]]
            rows = listing.sort(rows, sort_by, kind) if sort_by else rows
            return Listing(kind, rows, len(rows), body["metadata"].get("older", False))
        if name:
            found = [self.http.call("GET", self._one_path(kind, name, namespace))]
            want = filters.selector.items()
            if kind == TASKS:
                found = [o for o in found if not filters.phases or o["phase"] in {p.value for p in filters.phases}]
                found = [o for o in found if want <= o["labels"].items()]
            else:
                found = [o for o in found if want <= o["metadata"].get("labels", {}).items()]
            return Listing(kind, self._items(kind, found), len(found))
        body = self.http.call("GET", self._list_path(kind, namespace), self._params(kind, filters, sort_by, limit))
        items = body["items"]
        return Listing(kind, self._items(kind, items), len(items) + (body["metadata"].get("remainingItemCount") or 0))

    @staticmethod
    def _items(kind: str, objects: list[dict]) -> list:
        from .. import views

        return [views.task_record(o) for o in objects] if kind == TASKS else objects

    def watch(self, kinds: list[str], name: str | None, filters: Filters, namespace: str | None,
              shown: list[Listing]) -> Iterator[list]:
        """`get -w` over HTTP: the changes since the listing ``shown``, each as ``ops.watch.Change``s. Resources
        and tasks come from the API's ``watch=true`` streams (one a kind, on threads of their own); events,
        which have no stream, are listed again every second."""
        from ..ops.watch import Change, identity

        last = {(one.kind, identity(one.kind, item)): item for one in shown for item in one.items}
        changes: queue.Queue = queue.Queue()
        for kind in kinds:
            threading.Thread(target=self._watch_kind, args=(kind, name, filters, namespace, changes),
                             daemon=True).start()
        while True:
            kind, item, gone, failure = changes.get()
            if failure is not None:
                raise failure
            key = (kind, identity(kind, item))
            if gone:
                if last.pop(key, None) is not None and kind != EVENTS:
                    yield [Change(kind, item, gone=True)]
            elif last.get(key) != item:
                last[key] = item
                yield [Change(kind, item)]

    def _watch_kind(self, kind: str, name: str | None, filters: Filters, namespace: str | None,
                    out: queue.Queue) -> None:
        try:
            if kind == EVENTS:
                import time

                while True:
                    for item in self._listing(kind, None, filters, namespace, None, None).items:
                        out.put((kind, item, False, None))
                    time.sleep(1.0)
            params = {**self._params(kind, filters), "watch": "true"}
            for event in self.http.lines("GET", self._list_path(kind, namespace), params):
                obj = event["object"]
                if name and (obj["id"] if kind == TASKS else obj["metadata"]["name"]) != name:
                    continue
                out.put((kind, self._items(kind, [obj])[0], event["type"] == "DELETED", None))
        except Exception as exc:  # noqa: BLE001 - handed to the main thread, which raises it
            out.put((kind, None, False, exc))

    def describe(self, kind: Kind, name: str, namespace: str) -> dict:
        """``{"kind", "object", "tasks": [TaskRecord], "events": [event rows], "contents": [...]}``."""
        from .. import views

        found = self.http.call("GET", path_of("describe", kind.value.lower(), name), {"namespace": namespace})
        found["tasks"] = [views.task_record(o) for o in found["tasks"]]
        found["events"] = [views.event_row(o) for o in found["events"]]
        return found

    # -- delete ---------------------------------------------------------------------------------------

    def delete(self, targets: list, force: bool, yes: bool) -> Iterator[tuple[Kind, str, str]]:
        """Each (kind, namespace, name) deleted in turn, yielding (kind, name, outcome) as it is done."""
        for kind, namespace, name in targets:
            params = {"force": _flag(force)}
            if kind is Kind.NAMESPACE:
                params["confirm"] = _flag(yes)
            path = self._one_path(kind.value, name, namespace)
            yield kind, name, self.http.call("DELETE", path, params)["outcome"]

    def selected_targets(self, kinds: list[Kind], selector: dict, namespace: str | None) -> list:
        """`delete KINDS -l key=value` / `--all`: the keys of those that match and are not being deleted."""
        from ..ops.listing import Filters

        keys = []
        for kind in kinds:
            params = self._params(kind.value, Filters(selector))
            for obj in self.http.call("GET", self._list_path(kind.value, namespace), params)["items"]:
                meta = obj["metadata"]
                if meta.get("deletedAt") is None:
                    keys.append((kind, meta.get("namespace") or "", meta["name"]))
        return sorted(keys, key=lambda key: key[0] is Kind.NAMESPACE)

    # -- tasks --------------------------------------------------------------------------------------

    def logs(self, target: str, follow: bool, tail: int | None, since: float | None,
             namespace: str) -> Iterator[bytes]:
        """A task's output (``target`` its id) or, for KIND/NAME, every task's, prefixed as the CLI prints it."""
        from ..ops.refs import parse_ref

        if "/" in target:
            kind, name = parse_ref(target)
            path = path_of("namespaces", namespace, PLURALS[kind.value], name, "logs")
        else:
            path = path_of("tasks", target, "logs")
        params = {"follow": _flag(follow)}
        if tail is not None:
            params["tail"] = tail
        if since is not None:
            params["sinceSeconds"] = since
        response = self.http.stream("GET", path, params)
        try:
            while data := response.read1(65536):
                yield data
        finally:
            response.close()

    def run(self, name: str, image: str, command: list[str] | None, slots_type: str, env: dict,
            namespace: str) -> Iterator:
        """`run` over HTTP: yields ``Note``s and output bytes as they come; returns the task's exit code."""
        body = json.dumps({"name": name, "image": image, "command": command, "slotsType": slots_type,
                           "env": env}).encode()
        result = yield from self._progress(self.http.lines("POST", path_of("namespaces", namespace, "run"), None,
                                                           body, "application/json"))
        return result["exitCode"]

    def _progress(self, lines: Iterator[dict]):
        """The notes (and output) of a waiting verb's answer; returns its result, raises its error."""
        from ..ops.polling import Note

        for line in lines:
            if "type" not in line:  # answered at once: {"notes": [...], "result": ...}
                for note in line.get("notes", []):
                    yield Note(note["text"], note["warning"])
                return line.get("result")
            kind = line["type"]
            if kind == "NOTE":
                yield Note(line["text"], line["warning"])
            elif kind == "OUTPUT":
                yield base64.b64decode(line["data"])
            elif kind == "RESULT":
                return line["result"]
            elif kind == "ERROR":
                raise raised(line["error"], line["message"], line.get("details") or [], exit_code=line.get("exitCode"))
        raise UsageError(f"the server {self.target.server} ended the answer before its result; try again")

    def wait(self, target: str, condition: str, timeout: float, namespace: str) -> str:
        params = {"target": target, "for": condition, "timeout": timeout}
        return self.http.call("GET", path_of("namespaces", namespace, "wait"), params, timeout=timeout + 30)["met"]

    def wait_jobs(self, jobs: list, timeout: float) -> Iterator[Note]:
        params = {"job": [f"{ns}/{name}" for ns, name in jobs], "timeout": timeout}
        return (yield from self._progress(self.http.lines("GET", path_of("jobs", "wait"), params)))

    def retry(self, name: str, namespace: str) -> None:
        self.http.call("POST", path_of("namespaces", namespace, "jobs", name, "retry"))

    def exec(self, task_id: str, command: list[str], stdin: Iterable[bytes] | None,
             write: Callable[[int, bytes], None], tty: bool = False, size: tuple[int, int] | None = None) -> int:
        """``ops.tasks.exec_in`` over the server's exec WebSocket (framed as ``views.EXEC_*``): ``stdin``'s
        chunks sent on a thread (then an empty frame: end of input), the output handed to ``write`` as it
        comes; returns the command's exit code, or raises the error the server reports."""
        params: dict = {"command": list(command), "stdin": _flag(stdin is not None), "tty": _flag(tty)}
        if size:
            params["rows"], params["columns"] = size
        from websockets.exceptions import ConnectionClosedError

        from .. import views

        status = None
        with self.http.websocket(path_of("tasks", task_id, "exec"), params) as socket:
            if stdin is not None:
                threading.Thread(target=_send_input, args=(socket, stdin), daemon=True, name="exec-stdin").start()
            try:
                for message in socket:  # ends when the server closes the socket
                    if not isinstance(message, bytes) or not message:
                        continue
                    channel, data = message[0], message[1:]
                    if channel in (views.EXEC_STDOUT, views.EXEC_STDERR):
                        write(channel, data)
                    elif channel == views.EXEC_STATUS:
                        status = json.loads(data)
            except ConnectionClosedError:
                pass  # the server went away: said below
        if status is None:
            raise BrokerError(f"the server {self.target.server} ended the exec before the command's exit code; "
                              "the command may still be running")
        if "error" in status:
            raise raised(status["error"], status["message"], status.get("details") or [],
                         exit_code=status.get("exitCode"))
        return status["exitCode"]

    # -- services -------------------------------------------------------------------------------------

    def _service(self, namespace: str, name: str, *rest: str) -> str:
        return path_of("namespaces", namespace, "services", name, *rest)

    def scale(self, name: str, replicas: int, namespace: str) -> tuple[int, int]:
        done = self.http.call("PUT", self._service(namespace, name, "scale"), None,
                              json.dumps({"replicas": replicas}).encode(), "application/json")
        return done["previous"], done["replicas"]

    def rollout_status(self, name: str, watch: bool, timeout: float, namespace: str) -> Iterator[Note]:
        params = {"watch": _flag(watch), "timeout": timeout}
        return (yield from self._progress(self.http.lines("GET", self._service(namespace, name, "rollout"), params)))

    def history(self, name: str, revision: int | None, namespace: str) -> list[dict]:
        params = {"revision": revision} if revision is not None else None
        return self.http.call("GET", self._service(namespace, name, "rollout", "history"), params)["items"]

    def undo(self, name: str, to_revision: int | None, namespace: str) -> dict:
        params = {"toRevision": to_revision} if to_revision is not None else None
        done = self.http.call("POST", self._service(namespace, name, "rollout", "undo"), params)
        return {"revision": done["revision"], "hash": done["template"]}

    # -- nodes --------------------------------------------------------------------------------------

    def cordon(self, name: str, on: bool) -> bool:
        done = self.http.call("POST", path_of("nodes", name, "cordon" if on else "uncordon"))
        return done["outcome"] in ("cordoned", "uncordoned")

    def drain(self, name: str, timeout: float, wait: bool) -> Iterator[Note]:
        params = {"timeout": timeout, "wait": _flag(wait)}
        return (yield from self._progress(self.http.lines("POST", path_of("nodes", name, "drain"), params)))


def _send_input(socket, chunks: Iterable[bytes]) -> None:
    """`exec -i`: each chunk of input as a STDIN frame, then an empty one (end of input)."""
    from websockets.exceptions import ConnectionClosed

    from .. import views

    try:
        for chunk in chunks:
            socket.send(views.exec_frame(views.EXEC_STDIN, chunk))
        socket.send(views.exec_frame(views.EXEC_STDIN, b""))
    except ConnectionClosed:
        pass  # the command ended (and the server closed the socket) before reading all its input


def _flag(value: bool) -> str:
    return "true" if value else "false"
