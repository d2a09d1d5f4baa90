"""The GitOps watcher: a thread of the controller process that syncs a directory at start,
on file changes and every interval.

Started by ``ops.controller.run``, which hands it the sync step (``ops.sync.watch_step``): the
watcher owns when to sync, the verb owns what a sync does."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Callable

from ..spec import manifests

log = logging.getLogger("brokerctl.gitops")


def wanted(source: str):
    """A watchfiles filter: manifest files below ``source``, no dotfiles or dot-directories, no editor temp files."""
    root = Path(source)

    def check(change, path: str) -> bool:
        try:
            parts = Path(path).relative_to(root).parts
        except ValueError:
            return False
        name = parts[-1] if parts else ""
        if any(p.startswith(".") for p in parts) or name.startswith("#") or name.endswith(manifests.EDITOR_TEMP):
            return False
        return name.lower().endswith(manifests.MANIFEST_SUFFIXES) or "." not in name  # a directory came or went

    return check


class Watcher:
    """Runs ``step`` (a sync of directory ``source`` into the store ``db``: a path or URL, opened on a
    connection of its own so that its commits wake the controller) at start, on file changes
    and every ``interval`` s. ``step(store)`` returns the lines to log and whether they are a warning."""

    def __init__(self, db: str | Path, source: str, step: Callable[[object], tuple[list[str], bool]], *,
                 interval: float = 10.0, poll: bool = False, quiet_ms: int = 100, secrets_key: Path | None = None):
        self.db, self.source, self.step = db, source, step
        self.secrets_key = secrets_key  # the controller's: the watcher seals the directory's Secrets with it
        self.interval, self.poll, self.quiet_ms = interval, poll, quiet_ms
        self.syncs = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="gitops")

    def start(self) -> "Watcher":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        import watchfiles

        from ..store import Store

        store = Store(self.db, secrets_key=self.secrets_key)
        try:
            self._sync(store, "start")
            for changes in watchfiles.watch(
                # A burst (an editor's save, a git pull) is one sync: changes are grouped until none
                # came for quiet_ms, for at most 1.6 s.
                self.source, watch_filter=wanted(self.source), stop_event=self._stop, force_polling=self.poll or None,
                debounce=1600, step=self.quiet_ms, rust_timeout=int(self.interval * 1000),
                yield_on_timeout=True, raise_interrupt=False,
            ):
                if self._stop.is_set():
                    break
                self._sync(store, f"{len(changes)} file change(s)" if changes else "interval")
        finally:
            store.close()

    def _sync(self, store, why: str) -> None:
        started = time.monotonic()
        try:
            lines, trouble = self.step(store)
        except Exception:  # one bad sync must not end the watch
            log.exception("sync of %s failed", self.source)
            return
        self.syncs += 1
        level = logging.WARNING if trouble else logging.INFO
        if lines or why != "interval":
            log.log(level, "sync #%d of %s (%s) in %.0f ms%s", self.syncs, self.source, why,
                    (time.monotonic() - started) * 1000, "".join(f"\n  {line}" for line in lines) or ": no changes")

