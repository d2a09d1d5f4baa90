"""GitOps: keep the store following a directory of manifests.

Called by ``brokerctl sync DIR`` (one shot), ``brokerctl diff`` and ``brokerctl controller
--watch DIR`` (a thread of the controller process with its own store connection, so that its
commits wake the reconcile loop like any other writer). ``read_dir`` loads every manifest file of
the directory separately, so one invalid file holds back only what it defines; ``sync`` hands the
result to ``Store.sync`` (one transaction: apply, prune what the directory created and no longer
defines, correct drift). ``Watcher`` runs a sync at start, after every debounced burst of file
changes (watchfiles) and every ``interval`` seconds (which is what puts hand-made changes back).
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import manifests
from .errors import ManifestError, UsageError

log = logging.getLogger("brokerctl.gitops")

EDITOR_TEMP = ("~", ".swp", ".swx", ".tmp", ".part", ".bak")


@dataclass
class DirState:
    source: str  # the directory, absolute
    items: list = field(default_factory=list)  # (file, model) of every valid file
    held: dict = field(default_factory=dict)  # file -> problem, for files that did not load
    commit: str | None = None


def source_of(directory: str | Path) -> str:
    path = Path(directory).resolve()
    if not path.is_dir():
        raise UsageError(f"{directory}: not a directory; sync and --watch take a directory of manifests")
    return str(path)


def read_dir(directory: str | Path) -> DirState:
    """Load each manifest file on its own; a resource defined twice holds back the later file."""
    state = DirState(source_of(directory))
    seen: dict[str, str] = {}
    for path in manifests.iter_manifest_files(Path(state.source)):
        name = str(path.relative_to(state.source))
        if name.endswith(EDITOR_TEMP):
            continue
        try:
            loaded = manifests.load_paths([str(path)], allow_empty=True)  # a file all commented out is fine
        except ManifestError as exc:
            state.held[name] = "; ".join(line.replace(str(path), name, 1) for line in exc.problems)
            continue
        twice = [f"{i.resource.ref} is also defined in {seen[i.resource.ref]}" for i in loaded if i.resource.ref in seen]
        if twice:
            state.held[name] = "; ".join(twice)
            continue
        for item in loaded:
            seen[item.resource.ref] = name
            state.items.append((name, item.resource))
    state.commit = git_commit(state.source)
    return state


def git_commit(directory: str) -> str | None:
    """The last commit touching ``directory`` when it is in a git work tree (short hash and subject)."""
    try:
        out = subprocess.run(["git", "-C", directory, "log", "-1", "--format=%h %s", "--", "."], capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def sync(store, directory: str | Path, allow_mass_prune: bool = False, dry_run: bool = False) -> dict:
    state = read_dir(directory)
    return store.sync(state.source, state.items, state.held, allow_mass_prune=allow_mass_prune,
                      commit=state.commit, dry_run=dry_run)


def summary(report: dict) -> list[str]:
    """Lines for people: what changed, what was pruned, what was held back and why."""
    def low(ref: str) -> str:
        kind, _, name = ref.partition("/")
        return f"{kind.lower()}/{name}"

    lines = [f"{low(ref)} {outcome}" for ref, outcome in report["results"] if outcome != "unchanged"]
    lines += [f"{low(ref)} pruned ({outcome})" for ref, outcome in report["pruned"]]
    lines += [f"{low(ref)} kept: its file is invalid" for ref in report["kept"]]
    lines += [f"invalid: {problem if problem.startswith(file) else f'{file}: {problem}'}"
              for file, problem in sorted(report["problems"].items())]
    if report["refused"]:
        lines.append(f"refused: {report['refused']}")
    return lines


def wanted(source: str):
    """A watchfiles filter: manifest files below ``source``, no dotfiles or dot-directories, no editor temp files."""
    root = Path(source)

    def check(change, path: str) -> bool:
        try:
            parts = Path(path).relative_to(root).parts
        except ValueError:
            return False
        name = parts[-1] if parts else ""
        if any(p.startswith(".") for p in parts) or name.startswith("#") or name.endswith(EDITOR_TEMP):
            return False
        return name.lower().endswith(manifests.MANIFEST_SUFFIXES) or "." not in name  # a directory came or went

    return check


class Watcher:
    """Syncs ``directory`` into the store at ``db`` at start, on file changes and every ``interval`` s."""

    def __init__(self, db: str | Path, directory: str | Path, *, interval: float = 10.0, poll: bool = False,
                 allow_mass_prune: bool = False, quiet_ms: int = 100):
        self.db, self.source = db, source_of(directory)
        self.interval, self.poll, self.allow_mass_prune, self.quiet_ms = interval, poll, allow_mass_prune, quiet_ms
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

        from .store import Store

        store = Store(self.db)
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
            report = sync(store, self.source, self.allow_mass_prune)
        except Exception:  # one bad sync must not end the watch
            log.exception("sync of %s failed", self.source)
            return
        self.syncs += 1
        lines = summary(report)
        level = logging.WARNING if report["problems"] or report["refused"] else logging.INFO
        if lines or why != "interval":
            log.log(level, "sync #%d of %s (%s) in %.0f ms%s", self.syncs, self.source, why,
                    (time.monotonic() - started) * 1000, "".join(f"\n  {line}" for line in lines) or ": no changes")
