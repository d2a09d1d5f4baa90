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
from dataclasses import dataclass, field
from pathlib import Path

from ..spec import manifests
from ..errors import ManifestError, UsageError

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


def status(store, source: str | None = None) -> list[dict]:
    """What the last sync of each directory (or of ``source``) did, as ``views.sync_status_object``s."""
    from .. import views
    from ..errors import BrokerError

    rows = store.sync_status(source)
    if not rows:
        raise BrokerError("no directory has been synced into this store; run `brokerctl sync DIR` or "
                          "`brokerctl controller --watch DIR`")
    return [views.sync_status_object(r, len([o for o in store.owned_by(r["source"]) if o.deleted_at is None]))
            for r in rows]
