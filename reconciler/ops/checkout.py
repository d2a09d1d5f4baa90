"""A synced directory as a sync names it: its ``source`` (its absolute path on the machine that reads it)
and the last git commit touching it, for `sync status`.

Called by ``ops.sync`` (a directory read here), the CLI's ``sync`` and the remote client's `sync DIR`,
which sends both with the directory's files. Imports only the standard library (and the errors), so a
remote command stays light.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from ..errors import UsageError


def source_of(directory: str | Path) -> str:
    """A synced directory's name, its ``source``: its absolute path (a usage error if it is none)."""
    path = Path(directory).resolve()
    if not path.is_dir():
        raise UsageError(f"{directory}: not a directory; sync and --watch take a directory of manifests")
    return str(path)


def git_commit(directory: str) -> str | None:
    """The last commit touching ``directory`` when it is in a git work tree (short hash and subject)."""
    try:
        out = subprocess.run(["git", "-C", directory, "log", "-1", "--format=%h %s", "--", "."], capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None
