"""Container Broker's API on brokerctl's nouns: its tasks are Jobs (``tasks``), its nodes are Nodes
(``nodes``); here, what both share: the server's settings and creation that an idempotency key makes
happen once.

Called by ``api.containerbroker`` (the routes Container Broker clients call, served as is) and by
``cli.server`` (``--storage-mount``). The pure parts of ``tasks`` and ``nodes`` map records to
Container Broker's objects without I/O or clock (``now`` is passed in), and are unit-tested as such.
"""

from __future__ import annotations

from typing import NamedTuple

from ...errors import UsageError
from ..tokens import author

MAX_KEY = 255  # characters of an idempotency key


class Settings(NamedTuple):
    """What the server was told: the namespace of the tasks, and storage mount names -> host paths."""

    namespace: str = "default"
    storage_mounts: tuple[tuple[str, str], ...] = ()

    @property
    def mounts(self) -> dict[str, str]:
        return dict(self.storage_mounts)


def parse_storage_mount(text: str) -> tuple[str, str]:
    """``--storage-mount NAME=PATH`` -> (NAME, PATH); PATH absolute."""
    name, sep, path = text.partition("=")
    if not sep or not name or not path.startswith("/"):
        raise UsageError(f"--storage-mount {text!r}: use NAME=PATH with an absolute host path, e.g. "
                         "shared=/srv/shared")
    return name, path


def idempotency_key(text: str | None) -> str | None:
    if text is not None and not 0 < len(text) <= MAX_KEY:
        raise UsageError(f"X-Idempotency-Key: 1 to {MAX_KEY} characters")
    return text


class Created(NamedTuple):
    answer: dict  # what the first request was answered
    replayed: bool  # the key was seen: nothing was created this time


def create_once(store, models: list, answer: dict, scope: str, key: str | None, by: str | None,
                now: float) -> Created:
    """Create ``models`` (Conflict if one exists), unless ``key`` came with a request of ``scope`` in the
    last day: then the answer that request got (nothing written)."""
    from ...store import Once

    earlier = store.create(models, None if key is None else Once(scope, key, answer), now=now, by=author(by))
    return Created(answer, False) if earlier is None else Created(earlier, True)
