"""The GitOps watcher: a thread of the controller process that syncs a directory while the
controller leads: when it takes the lead, on file changes and every interval.

Made by ``ops.controller.run``, which hands it the sync step (``ops.sync.watch_step``): the
watcher owns when to sync, the verb owns what a sync does. The controller starts it with its
epoch each time it becomes leader and stops it when it steps down (``runtime.controller``); the
watcher's store connection is fenced with that epoch like the controller's own, so a sync by a
leader that was overtaken is refused and the watcher ends."""

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
    and every ``interval`` s. ``step(store)`` returns the lines to log and whether they are a warning.
    ``start(holder, epoch)`` fences its connection with the leader's epoch; it can be started again
    after ``stop`` (the next term of leadership)."""

    def __init__(self, db: str | Path, source: str, step: Callable[[object], tuple[list[str], bool]], *,
                 interval: float = 10.0, poll: bool = False, quiet_ms: int = 100, secrets_key: Path | None = None):
        self.db, self.source, self.step = db, source, step
        self.secrets_key = secrets_key  # the controller's: the watcher seals the directory's Secrets with it
        self.interval, self.poll, self.quiet_ms = interval, poll, quiet_ms
        self.syncs = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, holder: str | None = None, epoch: int | None = None, idle_limit: float | None = None) -> "Watcher":
        """``idle_limit``: seconds a transaction of the watcher may idle before the server ends it (the
        lease's duration: a paused process must not keep the write lock from the next leader)."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(holder, epoch, idle_limit, self._stop), daemon=True,
                                        name="gitops")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self, holder: str | None, epoch: int | None, idle_limit: float | None, stop: threading.Event) -> None:
        import watchfiles

        from ..store import Store

        store = Store(self.db, secrets_key=self.secrets_key)
        if idle_limit is not None:
            store.set_idle_limit(idle_limit)
        if holder is not None and epoch is not None:
            store.fence(holder, epoch)
        try:
            if not self._sync(store, "start"):
                return
            for changes in watchfiles.watch(
                # A burst (an editor's save, a git pull) is one sync: changes are grouped until none
                # came for quiet_ms, for at most 1.6 s.
                self.source, watch_filter=wanted(self.source), stop_event=stop, force_polling=self.poll or None,
                debounce=1600, step=self.quiet_ms, rust_timeout=int(self.interval * 1000),
                yield_on_timeout=True, raise_interrupt=False,
            ):
                if stop.is_set():
                    break
                if not self._sync(store, f"{len(changes)} file change(s)" if changes else "interval"):
                    return
        finally:
            store.close()

    def _sync(self, store, why: str) -> bool:
        """One sync; False when the watch must end (the leader this watcher syncs for was overtaken)."""
        from ..store import Fenced

        started = time.monotonic()
        try:
            lines, trouble = self.step(store)
        except Fenced as exc:
            log.warning("sync of %s refused: %s", self.source, exc)
            return False
        except Exception:  # one bad sync must not end the watch
            log.exception("sync of %s failed", self.source)
            return True
        self.syncs += 1
        level = logging.WARNING if trouble else logging.INFO
        if lines or why != "interval":
            log.log(level, "sync #%d of %s (%s) in %.0f ms%s", self.syncs, self.source, why,
                    (time.monotonic() - started) * 1000, "".join(f"\n  {line}" for line in lines) or ": no changes")
        return True

