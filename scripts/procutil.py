"""Small process and port helpers shared by the throwaway-server scripts (dockerhosts, pgcluster,
dockerregistry). Standard library only."""

from __future__ import annotations

import socket


def free_port(ip: str = "127.0.0.1") -> int:
    """A port nobody listens on at ``ip`` right now (the caller binds it soon after)."""
    with socket.socket() as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


def listening(ip: str, port: int) -> bool:
    try:
        socket.create_connection((ip, port), timeout=1).close()
        return True
    except OSError:
        return False


def pid_running(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat.rsplit(b")", 1)[1].split()[0] != b"Z"
