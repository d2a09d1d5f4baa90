"""Rendered list responses, kept while the store has not changed: a list of 10,000 tasks asked for
again and again is read, built and encoded once, then served as the bytes it was.

``Renders.answer(request, scope, rev, render)`` serves the body ``render()`` makes, from memory
when the same route and query string, for the same ``scope`` (what the caller may see: every
namespace for an admin, else its token's namespaces), was rendered at the store's change counter
``rev`` (``Store.current_rev``) or later. The route reads ``rev`` itself, after its token and role
checks, so what is served is never older than the store was when the request came, and is never
another scope's. ``render`` reads the counter again on the connection it reads the rows on, before
them, and the body is kept under that value: what it shows is at least that new, even if that
connection's view of the store lagged the one that read ``rev``. The counter moves with every commit that
touches a task or resource row, so a body is reused only while nothing it shows can have changed;
only routes whose bodies are made of those rows alone use this (the task lists).

A body is made once however many requests ask for it at once: they wait for the first (one lock
per key, from a fixed set shared by hash, so keys cost no lock of their own), then share its bytes. A caller that sends ``Accept-Encoding: gzip`` gets the body
compressed, also once per body (as the Kubernetes API server compresses large lists for clients
that accept it). A newer body replaces the key's older one; past ``max_bytes`` in all or
``max_kept`` bodies, those used longest ago go first. Called by the route modules (``tasks``); one per app (``app.state.renders``).
"""

from __future__ import annotations

import gzip
import threading
from collections import OrderedDict
from typing import Callable, Hashable

from fastapi import Request
from starlette.responses import Response

MAX_BYTES = 256 * 2**20  # bodies and their compressed copies kept in all
MAX_KEPT = 256  # bodies kept (each query string is a key of its own: pages, selectors)
STRIPES = 64  # locks that renders are made under, a key's chosen by its hash
GZIP_LEVEL = 1  # JSON lists compress about 10x at level 1, for a fraction of the time of the default 9
GZIP_AT_LEAST = 1024  # smaller bodies go as they are: compressing them saves nothing worth a header


class Rendered:
    """One body, its compressed copy once asked for, and the rev it was made at."""

    def __init__(self, rev: int, body: bytes):
        self.rev, self.body = rev, body
        self._gzipped: bytes | None = None
        self._lock = threading.Lock()

    def gzipped(self) -> bytes:
        with self._lock:
            if self._gzipped is None:
                self._gzipped = gzip.compress(self.body, GZIP_LEVEL, mtime=0)
            return self._gzipped

    @property
    def size(self) -> int:
        return len(self.body) + len(self._gzipped or b"")


class Renders:
    def __init__(self, max_bytes: int = MAX_BYTES, max_kept: int = MAX_KEPT):
        self.max_bytes, self.max_kept = max_bytes, max_kept
        self.hits = self.misses = 0
        self._kept: OrderedDict[Hashable, Rendered] = OrderedDict()  # least recently used first
        self._stripes = [threading.Lock() for _ in range(STRIPES)]
        self._lock = threading.Lock()

    def answer(self, request: Request, scope: Hashable, rev: int, render: Callable[[], tuple[int, bytes]],
               media_type: str = "application/json") -> Response:
        """The response to ``request``: the kept body of its key if it was made at ``rev`` or later,
        else the one ``render()`` makes (it returns the counter it read before the rows, and the body),
        kept for the next request. Errors of ``render`` are raised, nothing kept."""
        key = (request.url.path, request.url.query, scope)
        rendered = self.get(key, rev, render)
        headers = {"Vary": "Accept-Encoding"}
        if len(rendered.body) >= GZIP_AT_LEAST and accepts_gzip(request.headers.get("accept-encoding", "")):
            body = rendered.gzipped()
            self._account(key, rendered)
            headers["Content-Encoding"] = "gzip"
        else:
            body = rendered.body
        return Response(body, media_type=media_type, headers=headers)

    def get(self, key: Hashable, rev: int, render: Callable[[], tuple[int, bytes]]) -> Rendered:
        """The kept ``Rendered`` of ``key`` made at ``rev`` or later, or a new one (one render at a time
        per key: those who come meanwhile wait for it and take it)."""
        with self._stripes[hash(key) % STRIPES]:
            with self._lock:
                kept = self._kept.get(key)
                if kept is not None and kept.rev >= rev:
                    self._kept.move_to_end(key)
                    self.hits += 1
                    return kept
                self.misses += 1
            rendered = Rendered(*render())
            self._account(key, rendered)
            return rendered

    def _account(self, key: Hashable, rendered: Rendered) -> None:
        """Keep ``rendered`` as ``key``'s body (unless a newer one is kept), then drop the bodies used
        longest ago while over ``max_bytes`` or ``max_kept`` (one larger than ``max_bytes`` is served,
        not kept)."""
        with self._lock:
            kept = self._kept.get(key)
            if kept is not None and kept.rev > rendered.rev:
                return
            if rendered.size > self.max_bytes:
                self._kept.pop(key, None)
                return
            self._kept[key] = rendered
            self._kept.move_to_end(key)
            while self._kept and (len(self._kept) > self.max_kept
                                  or sum(r.size for r in self._kept.values()) > self.max_bytes):
                self._kept.popitem(last=False)

    @property
    def kept(self) -> int:
        with self._lock:
            return len(self._kept)


def accepts_gzip(header: str) -> bool:
    """Whether an ``Accept-Encoding`` header accepts gzip (``gzip``, ``x-gzip`` or ``*``, without ``q=0``)."""
    for part in header.split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip().lower() not in ("gzip", "x-gzip", "*"):
            continue
        q = params.strip().lower()
        if q.startswith("q="):
            try:
                return float(q[2:]) > 0
            except ValueError:
                return False
        return True
    return False
