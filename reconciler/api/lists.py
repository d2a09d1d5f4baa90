"""What list routes and long-running verbs share: JSON bodies, label selectors, pages, watches and
progress streams.

* ``Json``: a response written with the C JSON encoder (a list of 10,000 tasks is a common answer;
  FastAPI's validating encoder would take several times longer).
* ``page``: ``limit`` and an opaque ``continue`` token. Lists come from the verbs in a stable order
  (resources by namespace and name, tasks by creation), and the token holds the sort key of the last
  object given, so a page never repeats nor skips an object that was there before and after.
* ``watch``: ``watch=true`` streams changes as NDJSON lines ``{"type": "ADDED|MODIFIED|DELETED",
  "object": {...}}``: first every object there is (ADDED), then what changes. The list is read
  again every ``interval`` seconds on a connection of the pool (no thread is held while it waits)
  and compared with the last read.
* ``progress``: a verb that waits (``drain``, ``rollout status``) streams its notes as NDJSON
  ``{"type": "NOTE", "text", "warning"}`` and ends with ``{"type": "RESULT", "result"}`` or
  ``{"type": "ERROR", "error", "message", "details"}`` (the status line was sent before it ended).
* ``chunks``: bytes (a task's output) streamed as they come.

Streams run their blocking steps on threads of their own (``streams``), not on the pool that
serves requests, so a hundred followers of a log cannot starve the API. Called by the route modules.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import weakref
from typing import Any, Callable, Iterable, Iterator, NamedTuple

import anyio
from fastapi import Request
from starlette.responses import Response, StreamingResponse

from ..errors import BrokerError
from ..ops.polling import Note
from ..ops.refs import parse_selector
from .errors import BadRequest, ended_by

log = logging.getLogger("brokerctl.api")

NDJSON = "application/x-ndjson"
WATCH_INTERVAL = 0.5  # seconds between two reads of a watched list
STREAM_THREADS = 256  # threads for the blocking steps of streams, beside the pool that serves requests
_limiters: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, anyio.CapacityLimiter]" = weakref.WeakKeyDictionary()


def streams() -> anyio.CapacityLimiter:
    """The limiter of stream threads of the running event loop (one per loop: a limiter belongs to the
    loop that first used it)."""
    loop = asyncio.get_running_loop()
    if loop not in _limiters:
        _limiters[loop] = anyio.CapacityLimiter(STREAM_THREADS)
    return _limiters[loop]


class Json(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return json_bytes(content)


def json_bytes(content: Any) -> bytes:
    """The body ``Json`` sends for ``content`` (also what ``rendered`` keeps)."""
    return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode()


def selector(text: str | None) -> dict[str, str]:
    """``labelSelector=a=1,b=2``: every label must match (422 for a malformed one)."""
    return parse_selector([text]) if text else {}


def list_body(kind: str, items: list[dict], token: str | None = None, **extra) -> dict:
    """A list as Kubernetes shapes one: ``{"apiVersion", "kind": "JobList", "metadata": {"continue"}, "items"}``."""
    return {"apiVersion": "broker/v1", "kind": f"{kind}List", "metadata": {"continue": token, **extra}, "items": items}


def page(items: list, key: Callable[[Any], list], limit: int | None, after: str | None) -> tuple[list, str | None]:
    """The part of ``items`` (sorted by ``key``) after the ``continue`` token ``after``, at most ``limit``
    long, and the token of the next page (None: this was the last)."""
    if after:
        start = _decode(after)
        items = [i for i in items if key(i) > start]
    if limit is None or len(items) <= limit:
        return items, None
    shown = items[:limit]
    return shown, base64.urlsafe_b64encode(json.dumps(key(shown[-1])).encode()).decode().rstrip("=")


def _decode(token: str) -> list:
    try:
        value = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError):
        value = None
    if not isinstance(value, list):
        raise BadRequest(f"continue token {token!r} is not one this server gave; list again from the start")
    return value


def ndjson(obj: dict) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


# -- watch ------------------------------------------------------------------------------------------


def changes(before: dict, now: dict) -> Iterator[dict]:
    """The watch events that lead from ``before`` to ``now`` (both key -> object, in list order)."""
    for key, obj in now.items():
        old = before.get(key)
        if old is None:
            yield {"type": "ADDED", "object": obj}
        elif old != obj:
            yield {"type": "MODIFIED", "object": obj}
    for key, obj in before.items():
        if key not in now:
            yield {"type": "DELETED", "object": obj}


def watch(request: Request, read: Callable[[], dict], timeout: float | None = None,
          interval: float = WATCH_INTERVAL) -> StreamingResponse:
    """Stream the changes of the list ``read`` returns (key -> object), until the client leaves,
    ``timeout`` seconds pass or the server stops (``app.state.closing``: the stream then ends as a
    timeout does, and the client lists again from where it was)."""
    closing = request.app.state.closing

    async def lines():
        seen: dict = {}
        deadline = None if timeout is None else anyio.current_time() + timeout
        while True:
            now = await anyio.to_thread.run_sync(read, limiter=streams())
            for event in changes(seen, now):
                yield ndjson(event)
            seen = now
            if deadline is not None and anyio.current_time() >= deadline:
                return
            left = interval if deadline is None else max(0.0, deadline - anyio.current_time())
            await anyio.sleep(min(interval, left))
            if closing.is_set() or await request.is_disconnected():
                return

    return StreamingResponse(lines(), media_type=NDJSON)


# -- verbs that wait, and output ----------------------------------------------------------------------

class _Done(NamedTuple):
    """What a generator returned (``_next``)."""

    value: Any


def _next(iterator: Iterator):
    """``next`` for a thread: StopIteration cannot cross into the event loop, so the end comes back as
    ``_Done`` with the generator's return value."""
    try:
        return next(iterator)
    except StopIteration as stop:
        return _Done(stop.value)


async def _pull(iterator: Iterator):
    return await anyio.to_thread.run_sync(_next, iterator, limiter=streams())


def collect(events: Iterator) -> tuple[list[dict], Any]:
    """Run a waiting verb that will not wait (``drain --no-wait``, ``rollout status --no-watch``) to its
    end: its notes and what it returned."""
    notes = []
    while True:
        try:
            item = next(events)
        except StopIteration as stop:
            return notes, stop.value
        if isinstance(item, Note):
            notes.append(note_object(item))


def note_object(note: Note) -> dict:
    return {"text": note.text, "warning": note.warning}


async def progress(events: Iterator, result: Callable[[Any], Any] = lambda value: value,
                   other: Callable[[Any], dict] | None = None) -> Response:
    """Stream a waiting verb's notes, then its result (``result`` of what it returned) or its error.
    An error before the first note is answered as any error is (its own status)."""
    first = await _pull(events)  # BrokerError here: the usual error response
    if isinstance(first, _Done):
        return Json({"notes": [], "result": result(first.value)})
    return StreamingResponse(_lines(events, first, result, other), media_type=NDJSON)


def streamed(events: Iterator, result: Callable[[Any], Any] = lambda value: value,
             other: Callable[[Any], dict] | None = None) -> StreamingResponse:
    """``progress`` that streams from the first step on, so that even an error before any note comes as
    an ``ERROR`` line with the verb's exit code (`brokerctl run` exits as the task did, or 125)."""
    return StreamingResponse(_lines(events, None, result, other), media_type=NDJSON)


async def _lines(events: Iterator, first, result: Callable[[Any], Any], other: Callable[[Any], dict] | None):
    """The NDJSON lines of a waiting verb: ``NOTE``s, what ``other`` makes of anything else it yields
    (``run``'s output), then ``RESULT`` or ``ERROR`` (with ``exitCode``, the CLI's)."""
    item = first
    while True:
        if item is not None:
            if isinstance(item, _Done):
                yield ndjson({"type": "RESULT", "result": result(item.value)})
                return
            if isinstance(item, Note):
                yield ndjson({"type": "NOTE", **note_object(item)})
            elif other is not None:
                yield ndjson(other(item))
        try:
            item = await _pull(events)
        except BrokerError as exc:
            yield ndjson({"type": "ERROR", **ended_by(exc)})
            return


def chunks(data: Iterable[bytes], media_type: str = "text/plain; charset=utf-8") -> StreamingResponse:
    """Bytes as they come (a followed log), each step on a thread of ``streams``. A failure once the
    output has begun ends the stream (the status line was sent)."""
    iterator = iter(data)

    async def body():
        while True:
            try:
                item = await _pull(iterator)
            except BrokerError as exc:
                log.warning("output stream ended: %s", exc)
                return
            if isinstance(item, _Done):
                return
            yield item

    return StreamingResponse(body(), media_type=media_type)
