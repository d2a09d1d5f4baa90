"""Which commit a synced directory is at: the last git commit touching it, for `sync status`.

Called by ``ops.sync`` (a directory read here) and by the remote client's `sync DIR`, which sends it
with the directory's files. Imports only the standard library, so a remote command stays light.
"""

from __future__ import annotations

import subprocess


def git_commit(directory: str) -> str | None:
    """The last commit touching ``directory`` when it is in a git work tree (short hash and subject)."""
    try:
        out = subprocess.run(["git", "-C", directory, "log", "-1", "--format=%h %s", "--", "."], capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None
