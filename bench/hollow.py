#!/usr/bin/env python3
"""Hollow Docker hosts: many simulated Docker Engine APIs served by one process, for benchmarks only.

Like Kubernetes' kubemark "hollow nodes", this lets a benchmark run brokerctl's controller against
a thousand "Docker hosts" on one machine. Each hollow host listens on its own loopback address
(Linux routes all of 127.0.0.0/8 to ``lo``, so 127.1.x.y needs no setup) and answers the part of
the Docker Engine API that ``reconciler/dockerhost.py`` and the docker SDK use: ping, info,
version, container list (label/status/name/id filters), create (409 on a duplicate name), start,
stop, kill, wait, inspect, logs (multiplexed stream; ``follow``, ``tail``), remove, events
(streamed JSON lines), volumes, and images (every image exists). Everything is kept in memory and
served from one asyncio event loop, so idle keep-alive connections and open event streams cost
a few kilobytes each.

It is not Docker: nothing runs. A container "runs" its command as a small script model (see
``plan_run``): ``sleep N`` takes N seconds, ``echo`` prints, ``exit K`` exits with K, ``trap``
handles SIGTERM; any other command runs until it is stopped. A command that prints nothing
prints one line naming itself. Stop and kill end a container at once (exit 143 and 137). Every
test of behaviour runs against real dockerd; this is only for measuring the controller at a
scale one machine cannot run for real.

Environment knobs of a simulated container (they override the command's script):
``HOLLOW_RUN_SECONDS`` (a number, or ``forever``), ``HOLLOW_EXIT_CODE``, ``HOLLOW_IGNORE_SIGTERM=1``
(a stop waits out its grace period, then kills), ``HOLLOW_HEALTH=unhealthy`` (a health check
fails instead of passing after its first interval).

Failure knobs for failover benchmarks, per host: ``freeze`` (like SIGSTOP of dockerd:
connections are accepted but nothing is answered until ``thaw``), ``kill`` (like SIGKILL:
connections are reset and refused; containers keep running, as under containerd's shims) and
``revive`` (listen again; ``reboot`` ends the containers that were running, exit 137).

Command line (serves until SIGTERM or Ctrl-C; prints one tcp:// address per line once all listen)::

    python bench/hollow.py --hosts 1000 --first 127.1.0.1 [--slots-hint 10] [--start-delay-ms 5]
                           [--port 2375] [--hosts-json FILE] [--control IP:PORT]

The control endpoint (default FIRST:2376) takes ``POST /hosts/{name|ip}/freeze|thaw|kill|revive
[?reboot=1]`` and ``GET /hosts``, ``GET /stats``. From Python::

    hollow = start_hollow(1000, first="127.1.0.1")      # an event loop thread in this process
    hollow = start_hollow(1000, subprocess=True)         # or a child process, driven the same way
    hollow.addresses; hollow.freeze("h3"); hollow.thaw("h3"); hollow.stats(); hollow.hosts(); hollow.stop()

Stdlib only: the HTTP/1.1 server is an ``asyncio.Protocol`` (requests from the docker SDK are
simple: Content-Length bodies, keep-alive, no pipelining), which costs a fraction of a web
framework's CPU per request; the simulator shares the machine with the controller it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import hashlib
import ipaddress
import json
import os
import re
import resource
import secrets
import shlex
import signal
import struct
import subprocess as _subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qsl, unquote

API_VERSION = "1.43"
MIN_API_VERSION = "1.12"
SERVER_VERSION = "24.0.0-hollow"
PORT = 2375
CONTROL_PORT = 2376
GIB = 1 << 30
ZERO_TIME = "0001-01-01T00:00:00Z"
DEFAULT_STOP_GRACE = 10
DEFAULT_HEALTH_INTERVAL = 30.0  # Docker's default health check interval, seconds
MAX_HEAD = 64 * 1024
NOT_FOUND = "page not found"  # dockerd's answer to a route it does not have

# -- the command model (pure) -------------------------------------------------------------------


@dataclass(frozen=True)
class RunPlan:
    """What a simulated container does: ``lines`` printed at offsets (seconds from its start), then
    exit with ``code`` at ``end`` (None: runs until stopped). ``on_term`` is what SIGTERM runs
    (a ``trap``); ``ignore_term``: SIGTERM does nothing, so only a kill ends it."""

    lines: tuple[tuple[float, str], ...] = ()
    end: float | None = None
    code: int = 0
    on_term: RunPlan | None = None
    ignore_term: bool = False


_TERM_NAMES = {"TERM", "SIGTERM", "15"}
_DURATION = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_VAR = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


def script_of(cmd: list[str]) -> str:
    """The shell text a command amounts to: the script of ``sh -c SCRIPT``, else the argv joined."""
    if len(cmd) >= 3 and os.path.basename(cmd[0]) in ("sh", "ash", "bash", "dash") and cmd[1] == "-c":
        return cmd[2]
    return shlex.join(cmd)


def plan_run(cmd: list[str], env: dict[str, str]) -> RunPlan:
    """The run plan of a container's command and environment (the ``HOLLOW_*`` knobs win)."""
    script = script_of(cmd) if cmd else ""
    plan = _plan_script(script, env) if script.strip() else RunPlan()
    if not plan.lines:
        plan = RunPlan(((0.0, f"hollow: {script or 'no command'}"),), plan.end, plan.code, plan.on_term,
                       plan.ignore_term)
    end, code = plan.end, plan.code
    if "HOLLOW_RUN_SECONDS" in env:
        value = env["HOLLOW_RUN_SECONDS"].strip().lower()
        end = None if value in ("forever", "inf", "infinity") else float(value)
    if "HOLLOW_EXIT_CODE" in env:
        code = int(env["HOLLOW_EXIT_CODE"]) & 0xFF
    ignore = plan.ignore_term or env.get("HOLLOW_IGNORE_SIGTERM", "") not in ("", "0")
    return RunPlan(plan.lines, end, code, plan.on_term, ignore)


def _plan_script(script: str, env: dict[str, str]) -> RunPlan:
    """Walk a shell script's simple commands; the first command not modelled means "runs until
    stopped" (after what was printed before it)."""
    try:
        segments = _segments(script)
    except ValueError:  # unbalanced quotes: not a script we can read
        return RunPlan()
    t, status, background_end = 0.0, 0, 0.0
    lines: list[tuple[float, str]] = []
    on_term, ignore_term = None, False
    for words, before, after in segments:
        if (before == "&&" and status != 0) or (before == "||" and status == 0):
            continue
        if after == "|":
            return RunPlan(tuple(lines), None, 0, on_term, ignore_term)
        name, args = words[0], words[1:]
        if name == "sleep":
            seconds = _seconds(args[0] if args else "")
            if seconds is None:
                return RunPlan(tuple(lines), None, 0, on_term, ignore_term)
            if after == "&":
                background_end = max(background_end, t + seconds)
            else:
                t += seconds
            status = 0
        elif name == "wait":
            t, status = max(t, background_end), 0
        elif name == "echo":
            text = " ".join(a for a in args if a not in ("-n", "-e"))
            lines.append((t, _VAR.sub(lambda m: env.get(m.group(1) or m.group(2), ""), text)))
            status = 0
        elif name in ("true", ":"):
            status = 0
        elif name == "false":
            status = 1
        elif name == "exit":
            code = int(args[0]) & 0xFF if args and args[0].lstrip("-").isdigit() else status
            return RunPlan(tuple(lines), t, code, on_term, ignore_term)
        elif name == "trap" and len(args) >= 2:
            if any(s.upper() in _TERM_NAMES for s in args[1:]):
                if args[0] in ("", "-"):
                    ignore_term, on_term = args[0] == "", None
                else:
                    on_term, ignore_term = _plan_script(args[0], env), False
            status = 0
        else:
            return RunPlan(tuple(lines), None, 0, on_term, ignore_term)
    return RunPlan(tuple(lines), max(t, 0.0), status, on_term, ignore_term)


def _segments(script: str) -> list[tuple[list[str], str, str]]:
    """Simple commands as (words, separator before, separator after)."""
    lexer = shlex.shlex(script.replace("\n", ";"), posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    out, words, before = [], [], ";"
    for token in lexer:
        if token in (";", "&&", "||", "&", "|"):
            if words:
                out.append((words, before, token))
            words, before = [], token if token in ("&&", "||") else ";"
        else:
            words.append(token)
    if words:
        out.append((words, before, ";"))
    return out


def _seconds(text: str) -> float | None:
    m = _DURATION.match(text)
    return float(m.group(1)) * _UNITS[m.group(2)] if m else None


# -- Docker's text formats -------------------------------------------------------------------------


def human_duration(seconds: float) -> str:
    """go-units HumanDuration, as in ``docker ps``'s Status column."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = s // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = round(seconds / 3600)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds // 3600) // 24 // 365} years"


def rfc3339(ns: int) -> str:
    if not ns:
        return ZERO_TIME
    seconds, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{frac:09d}Z"


def _bool(value: str | None) -> bool:
    """Docker's httputils.BoolValue."""
    return value is not None and value.strip().lower() not in ("", "0", "no", "false", "none")


def _signal_number(text: str | None) -> int:
    if not text:
        return signal.SIGKILL
    text = text.upper()
    if text.isdigit():
        return int(text)
    return int(getattr(signal, text if text.startswith("SIG") else "SIG" + text, signal.SIGKILL))


def _filters(query: dict[str, str]) -> dict[str, list[str]]:
    """The ``filters`` parameter: {"label": ["a=b"]} (or the old {"label": {"a=b": true}})."""
    raw = query.get("filters")
    if not raw:
        return {}
    try:
        parsed = json.loads(raw)
    except ValueError:
        raise HTTPError(400, f"invalid filter {raw!r}") from None
    return {k: list(v) if isinstance(v, (list, dict)) else [str(v)] for k, v in parsed.items()}


def _labels_match(wanted: list[str], labels: dict[str, str]) -> bool:
    for item in wanted:
        key, sep, value = item.partition("=")
        if key not in labels or (sep and labels[key] != value):
            return False
    return True


# -- simulated containers -----------------------------------------------------------------------


class Container:
    __slots__ = ("id", "name", "image", "cmd", "env", "labels", "config", "host_config", "created_ns", "state",
                 "started_ns", "finished_ns", "exit_code", "pid", "output", "plan", "timers", "exit_waiters",
                 "remove_waiters", "followers", "stopping", "health", "restarts", "command")

    def __init__(self, cid: str, name: str, config: dict):
        self.id, self.name, self.config = cid, name, config
        self.image = config.get("Image") or ""
        self.cmd = list(config.get("Entrypoint") or []) + list(config.get("Cmd") or [])
        self.command = shlex.join(self.cmd)
        self.env = dict(e.split("=", 1) if "=" in e else (e, "") for e in config.get("Env") or [])
        self.labels = dict(config.get("Labels") or {})
        self.host_config = config.get("HostConfig") or {}
        self.created_ns = time.time_ns()
        self.state = "created"  # created | running | exited | removing
        self.started_ns = self.finished_ns = 0
        self.exit_code, self.pid, self.restarts = 0, 0, 0
        self.output: list[tuple[int, int, bytes]] = []  # (time ns, stream 1/2, bytes)
        self.plan = plan_run(self.cmd, self.env)  # ValueError: a HOLLOW_* knob is not a number
        self.timers: list[asyncio.TimerHandle] = []
        self.exit_waiters: list[asyncio.Future] = []
        self.remove_waiters: list[asyncio.Future] = []
        self.followers: list[Callable[[bytes], None]] = []
        self.stopping: asyncio.Task | None = None
        self.health: str | None = None  # starting | healthy | unhealthy, while running with a check

    @property
    def running(self) -> bool:
        return self.state == "running"

    def status_text(self, now_ns: int) -> str:
        if self.state == "running":
            health = {"starting": " (health: starting)", "healthy": " (healthy)",
                      "unhealthy": " (unhealthy)"}.get(self.health or "", "")
            return f"Up {human_duration((now_ns - self.started_ns) / 1e9)}{health}"
        if self.state == "exited":
            return f"Exited ({self.exit_code}) {human_duration((now_ns - self.finished_ns) / 1e9)} ago"
        if self.state == "removing":
            return "Removal In Progress"
        return "Created"

    def port_bindings(self) -> list[tuple[str, str, int, str]]:
        """(host ip, host port, container port, proto) of each published port."""
        out = []
        for key, binds in (self.host_config.get("PortBindings") or {}).items():
            port, _, proto = key.partition("/")
            for b in binds or []:
                out.append((b.get("HostIp") or "", str(b.get("HostPort") or ""), int(port), proto or "tcp"))
        return out

    def summary(self, now_ns: int) -> dict:
        """One entry of ``GET /containers/json``."""
        ports = [{"IP": ip or "0.0.0.0", "PrivatePort": cport, "PublicPort": int(hport), "Type": proto}
                 for ip, hport, cport, proto in self.port_bindings() if hport.isdigit() and self.running]
        return {"Id": self.id, "Names": [f"/{self.name}"], "Image": self.image, "ImageID": _image_id(self.image),
                "Command": self.command, "Created": self.created_ns // 1_000_000_000, "Ports": ports,
                "Labels": self.labels, "State": self.state, "Status": self.status_text(now_ns),
                "HostConfig": {"NetworkMode": self.host_config.get("NetworkMode") or "default"},
                "NetworkSettings": {"Networks": {}}, "Mounts": []}

    def inspect(self) -> dict:
        state = {"Status": self.state, "Running": self.running, "Paused": False, "Restarting": False,
                 "OOMKilled": False, "Dead": False, "Pid": self.pid if self.running else 0,
                 "ExitCode": self.exit_code, "Error": "", "StartedAt": rfc3339(self.started_ns),
                 "FinishedAt": rfc3339(self.finished_ns)}
        if self.health is not None:
            state["Health"] = {"Status": self.health, "FailingStreak": int(self.health == "unhealthy"), "Log": []}
        config = {"Hostname": self.id[:12], "User": self.config.get("User") or "", "Tty": False,
                  "OpenStdin": False, "Env": [f"{k}={v}" for k, v in self.env.items()],
                  "Cmd": self.config.get("Cmd"), "Entrypoint": self.config.get("Entrypoint"),
                  "Image": self.image, "WorkingDir": self.config.get("WorkingDir") or "",
                  "Labels": self.labels}
        if self.config.get("Healthcheck"):
            config["Healthcheck"] = self.config["Healthcheck"]
        return {"Id": self.id, "Created": rfc3339(self.created_ns), "Path": self.cmd[0] if self.cmd else "",
                "Args": self.cmd[1:], "State": state, "Image": _image_id(self.image), "Name": f"/{self.name}",
                "RestartCount": self.restarts, "Driver": "hollow", "Platform": "linux",
                "HostConfig": self.host_config, "Config": config, "Mounts": [],
                "NetworkSettings": {"Networks": {}}}


@functools.lru_cache(maxsize=1024)
def _image_id(name: str) -> str:
    return "sha256:" + hashlib.sha256(name.encode()).hexdigest()


def _frame(stream: int, data: bytes) -> bytes:
    """One frame of Docker's multiplexed stream (containers without a TTY)."""
    return struct.pack(">BxxxL", stream, len(data)) + data


# -- HTTP ------------------------------------------------------------------------------------------


class HTTPError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    keep_alive: bool

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"{}")
        except ValueError as exc:
            raise HTTPError(400, f"invalid JSON body: {exc}") from None


_STATUS_LINES = {s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode() for s in HTTPStatus}
_SERVER_HEADERS = (f"Api-Version: {API_VERSION}\r\nDocker-Experimental: false\r\nOstype: linux\r\n"
                   f"Server: Docker/{SERVER_VERSION} (linux)\r\n").encode()
_VERSION_PREFIX = re.compile(r"^/v\d+(?:\.\d+)?(?=/)")


class Connection(asyncio.Protocol):
    """One client connection to a host (or to the control endpoint): parses requests one at a
    time, runs each handler (a coroutine handler keeps the connection busy until it is done, so
    responses go out in order) and holds everything while its host is frozen."""

    def __init__(self, site: "Site"):
        self.site = site
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.task: asyncio.Task | None = None
        self.closed = False
        self.held: list[bytes] = []  # output written while frozen
        self.close_after = False  # the current request asked for Connection: close
        self.hangup = False  # its response is written: close once it is out

    # asyncio.Protocol
    def connection_made(self, transport) -> None:
        self.transport = transport
        self.site.connections.add(self)

    def connection_lost(self, exc) -> None:
        self.closed = True
        self.site.connections.discard(self)
        if self.task is not None:
            self.task.cancel()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self.pump()

    # requests
    def pump(self) -> None:
        while self.task is None and not self.closed and not self.hangup and not self.site.frozen:
            try:
                req = self._take_request()
            except HTTPError as exc:
                self.close_after = True
                self.reply_error(exc.status, exc.message)
                return
            if req is None:
                return
            self.close_after = not req.keep_alive
            self.site.requests += 1
            try:
                result = self.site.handle(req, self)
            except HTTPError as exc:
                self.reply_error(exc.status, exc.message)
                continue
            except Exception as exc:  # a bug here: answer like a daemon would rather than hang the client
                self.reply_error(500, f"hollow: {type(exc).__name__}: {exc}")
                continue
            if asyncio.iscoroutine(result):
                self.task = asyncio.get_running_loop().create_task(self._run(result))

    async def _run(self, coro) -> None:
        try:
            await coro
        except HTTPError as exc:
            self.reply_error(exc.status, exc.message)
        except asyncio.CancelledError:
            return
        except Exception as exc:
            self.reply_error(500, f"hollow: {type(exc).__name__}: {exc}")
        finally:
            self.task = None
        if not self.closed:
            self.pump()

    def _take_request(self) -> Request | None:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > MAX_HEAD:
                raise HTTPError(431, "request head too large")
            return None
        head = self.buffer[:end].decode("latin-1").split("\r\n")
        try:
            method, target, version = head[0].split(" ", 2)
        except ValueError:
            raise HTTPError(400, f"bad request line {head[0]!r}") from None
        headers = {}
        for line in head[1:]:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            raise HTTPError(501, "chunked request bodies are not simulated")
        length = int(headers.get("content-length") or 0)
        if len(self.buffer) < end + 4 + length:
            return None
        body = bytes(self.buffer[end + 4:end + 4 + length])
        del self.buffer[:end + 4 + length]
        path, _, qs = target.partition("?")
        connection = headers.get("connection", "").lower()
        keep_alive = connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
        return Request(method, unquote(path), dict(parse_qsl(qs, keep_blank_values=True)), headers, body,
                       keep_alive)

    # responses
    def write(self, data: bytes) -> None:
        if self.closed:
            return
        if self.site.frozen:
            self.held.append(data)
        else:
            self.transport.write(data)

    def release(self) -> None:
        """Send what was held while frozen, then serve the requests that waited."""
        held, self.held = self.held, []
        for data in held:
            self.write(data)
        self._hang_up_if_done()
        self.pump()

    def reply(self, status: int, body: bytes = b"", ctype: str = "application/json", head_only: bool = False) -> None:
        length = b"" if status in (204, 304) else b"Content-Length: %d\r\n" % len(body)
        close = b"Connection: close\r\n" if self.close_after else b""
        self.write(_STATUS_LINES[status] + _SERVER_HEADERS + b"Content-Type: " + ctype.encode() + b"\r\n"
                   + length + close + b"\r\n" + (b"" if head_only or status in (204, 304) else body))
        self.hangup = self.close_after
        self._hang_up_if_done()

    def reply_json(self, status: int, obj: Any) -> None:
        self.reply(status, json.dumps(obj, separators=(",", ":")).encode())

    def reply_error(self, status: int, message: str) -> None:
        if message == NOT_FOUND or message.startswith("hollow: "):
            self.site.unanswered += 1
        self.reply_json(status, {"message": message})

    def open_stream(self, ctype: str = "application/json") -> None:
        self.write(_STATUS_LINES[200] + _SERVER_HEADERS + b"Content-Type: " + ctype.encode()
                   + b"\r\nTransfer-Encoding: chunked\r\n\r\n")

    def stream(self, data: bytes) -> None:
        if data:
            self.write(b"%x\r\n%s\r\n" % (len(data), data))

    def close_stream(self) -> None:
        self.write(b"0\r\n\r\n")
        self.hangup = self.close_after
        self._hang_up_if_done()

    def _hang_up_if_done(self) -> None:
        if self.hangup and not self.site.frozen and not self.closed:
            self.transport.close()

    def abort(self) -> None:
        if not self.closed:
            self.transport.abort()


class Site:
    """A listening address: a hollow host or the control endpoint."""

    def __init__(self, ip: str, port: int):
        self.ip, self.port = ip, port
        self.server: asyncio.AbstractServer | None = None
        self.connections: set[Connection] = set()
        self.frozen = False
        self.requests = 0
        self.unanswered = 0  # requests for routes not simulated, or that failed here ("hollow: ...", 500)

    async def listen(self) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: Connection(self), self.ip, self.port, reuse_address=True,
                                               backlog=256)
        self.port = self.server.sockets[0].getsockname()[1]

    def handle(self, req: Request, conn: Connection):
        raise NotImplementedError


# -- one hollow host ---------------------------------------------------------------------------


class HollowHost(Site):
    """The state of one simulated Docker host and its Engine API routes."""

    def __init__(self, name: str, ip: str, port: int, slots_hint: int, start_delay: float):
        super().__init__(ip, port)
        self.name, self.slots_hint, self.start_delay = name, slots_hint, start_delay
        self.containers: dict[str, Container] = {}  # by id
        self.names: dict[str, Container] = {}
        self.volumes: dict[str, dict] = {}
        self.subscribers: list[tuple[Connection, dict[str, list[str]]]] = []
        self.down = False
        self._pids = 1000

    @property
    def address(self) -> str:
        return f"tcp://{self.ip}:{self.port}"

    @property
    def condition(self) -> str:
        return "down" if self.down else "frozen" if self.frozen else "up"

    # routing
    def handle(self, req: Request, conn: Connection):
        path = _VERSION_PREFIX.sub("", req.path, count=1)
        parts = path.strip("/").split("/")
        method, head = req.method, req.method == "HEAD"
        if path == "/_ping" and method in ("GET", "HEAD"):
            return conn.reply(200, b"OK", "text/plain; charset=utf-8", head_only=head)
        if parts[0] == "containers":
            return self._containers(req, conn, parts[1:])
        if path == "/info" and method == "GET":
            return conn.reply_json(200, self.info())
        if path == "/version" and method == "GET":
            return conn.reply_json(200, self.version())
        if path == "/events" and method == "GET":
            return self.events(req, conn)
        if parts[0] == "volumes":
            return self._volumes(req, conn, parts[1:])
        if parts[0] == "images":
            return self._images(req, conn, path)
        raise HTTPError(404, NOT_FOUND)

    def _containers(self, req: Request, conn: Connection, rest: list[str]):
        method = req.method
        if rest == ["json"] and method == "GET":
            return conn.reply_json(200, self.list(req.query))
        if rest == ["create"] and method == "POST":
            return conn.reply_json(201, self.create(req.query.get("name", ""), req.json()))
        if len(rest) == 1 and method == "DELETE":
            self.remove(self.find(rest[0]), force=_bool(req.query.get("force")))
            return conn.reply(204)
        if len(rest) != 2:
            raise HTTPError(404, NOT_FOUND)
        c, action = self.find(rest[0]), rest[1]
        if action == "json" and method == "GET":
            return conn.reply_json(200, c.inspect())
        if action == "logs" and method == "GET":
            return self.logs(c, req.query, conn)
        if method != "POST":
            raise HTTPError(404, NOT_FOUND)
        if action == "start":
            return self.start(c, conn)
        if action == "stop":
            return self.stop(c, int(req.query.get("t") or DEFAULT_STOP_GRACE), conn)
        if action == "kill":
            if not c.running:
                raise HTTPError(409, f"Container {c.id} is not running")
            self.signal(c, _signal_number(req.query.get("signal")))
            return conn.reply(204)
        if action == "wait":
            return self.wait(c, req.query.get("condition") or "not-running", conn)
        raise HTTPError(404, NOT_FOUND)

    def find(self, ref: str) -> Container:
        c = self.containers.get(ref) or self.names.get(ref.lstrip("/"))
        if c is None and ref:
            hits = [c for cid, c in self.containers.items() if cid.startswith(ref)]
            c = hits[0] if len(hits) == 1 else None
        if c is None:
            raise HTTPError(404, f"No such container: {ref}")
        return c

    # system
    def info(self) -> dict:
        running = sum(c.running for c in self.containers.values())
        return {"ID": hashlib.sha1(self.name.encode()).hexdigest()[:36], "Name": self.name,
                "ServerVersion": SERVER_VERSION, "NCPU": self.slots_hint, "MemTotal": self.slots_hint * 2 * GIB,
                "Containers": len(self.containers), "ContainersRunning": running, "ContainersPaused": 0,
                "ContainersStopped": len(self.containers) - running, "Images": 1, "Driver": "hollow",
                "OperatingSystem": "hollow (simulated Docker host)", "OSType": "linux", "Architecture": "x86_64",
                "KernelVersion": os.uname().release, "Labels": [], "SystemTime": rfc3339(time.time_ns())}

    def version(self) -> dict:
        return {"Version": SERVER_VERSION, "ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION,
                "Os": "linux", "Arch": "amd64", "KernelVersion": os.uname().release, "GoVersion": "hollow",
                "GitCommit": "hollow", "Components": [{"Name": "Engine", "Version": SERVER_VERSION}]}

    # containers
    def list(self, query: dict[str, str]) -> list[dict]:
        show_all, filters = _bool(query.get("all")), _filters(query)
        labels, status = filters.get("label", []), set(filters.get("status", []))
        names, ids = filters.get("name", []), filters.get("id", [])
        now = time.time_ns()
        out = []
        for c in reversed(self.containers.values()):  # newest first, as Docker lists them
            if not show_all and not c.running and not status:
                continue
            if (status and c.state not in status) or (labels and not _labels_match(labels, c.labels)):
                continue
            if names and not any(re.search(n, "/" + c.name) for n in names):
                continue
            if ids and not any(c.id.startswith(i) for i in ids):
                continue
            out.append(c.summary(now))
        limit = int(query.get("limit") or -1)
        return out[:limit] if limit > 0 else out

    def create(self, name: str, config: dict) -> dict:
        if name and not re.match(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$", name):
            raise HTTPError(400, f'Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed')
        name = name.lstrip("/") or f"hollow_{secrets.token_hex(4)}"
        if name in self.names:
            raise HTTPError(409, f'Conflict. The container name "/{name}" is already in use by container '
                                 f'"{self.names[name].id}". You have to remove (or rename) that container to be '
                                 f'able to reuse that name.')
        if not config.get("Image"):
            raise HTTPError(400, "config.Image is required")
        try:
            c = Container(secrets.token_hex(32), name, config)
        except ValueError as exc:
            raise HTTPError(400, f"HOLLOW_* environment knob: {exc}") from None
        for volume in self._named_volumes(c.host_config):
            self.volumes.setdefault(volume, self._volume(volume, {}))
        self.containers[c.id] = self.names[name] = c
        self.emit("create", c)
        return {"Id": c.id, "Warnings": []}

    @staticmethod
    def _named_volumes(host_config: dict) -> list[str]:
        names = [m.get("Source") for m in host_config.get("Mounts") or [] if m.get("Type") == "volume"]
        names += [b.split(":", 1)[0] for b in host_config.get("Binds") or [] if not b.startswith("/")]
        return [n for n in names if n]

    async def start(self, c: Container, conn: Connection) -> None:
        if c.running:
            return conn.reply(304)
        if self.start_delay:
            await asyncio.sleep(self.start_delay)
        if c.state == "removing" or c.id not in self.containers:
            raise HTTPError(404, f"No such container: {c.id}")
        if c.running:
            return conn.reply(304)
        clash = self._port_clash(c)
        if clash:
            raise HTTPError(500, f"driver failed programming external connectivity on endpoint {c.name} "
                                 f"({c.id}): Bind for {clash} failed: port is already allocated")
        self._run(c)
        conn.reply(204)

    def _port_clash(self, c: Container) -> str | None:
        taken = {(ip, hport, proto) for o in self.containers.values() if o.running
                 for ip, hport, _, proto in o.port_bindings() if hport not in ("", "0")}
        for ip, hport, _, proto in c.port_bindings():
            if hport in ("", "0"):
                continue
            for tip, tport, tproto in taken:
                if tport == hport and tproto == proto and (ip in ("", "0.0.0.0") or tip in ("", "0.0.0.0", ip)):
                    return f"{ip or '0.0.0.0'}:{hport}"
        return None

    def _run(self, c: Container) -> None:
        loop = asyncio.get_running_loop()
        if c.started_ns:
            c.restarts += 1
        c.state, c.started_ns, c.finished_ns, c.exit_code = "running", time.time_ns(), 0, 0
        self._pids += 1
        c.pid = self._pids
        plan = c.plan
        began = loop.time()
        for offset, line in plan.lines:
            if offset <= 0:
                self._print(c, line)
            else:
                c.timers.append(loop.call_at(began + offset, self._print, c, line))
        if plan.end is not None:
            c.timers.append(loop.call_at(began + plan.end, self._exit, c, plan.code))
        check = c.config.get("Healthcheck") or {}
        if check.get("Test") and check["Test"][0] != "NONE":
            c.health = "starting"
            interval = (check.get("Interval") or 0) / 1e9 or DEFAULT_HEALTH_INTERVAL
            failing = c.env.get("HOLLOW_HEALTH") == "unhealthy"
            after = max(interval * max(check.get("Retries") or 3, 1), (check.get("StartPeriod") or 0) / 1e9) \
                if failing else interval
            c.timers.append(loop.call_at(began + after, self._set_health, c, "unhealthy" if failing else "healthy"))
        self.emit("start", c)

    def _print(self, c: Container, line: str) -> None:
        data = line.encode() + b"\n"
        c.output.append((time.time_ns(), 1, data))
        frame = _frame(1, data)
        for follower in list(c.followers):
            follower(frame)

    def _set_health(self, c: Container, health: str) -> None:
        if c.running:
            c.health = health
            self.emit(f"health_status: {health}", c)

    def _exit(self, c: Container, code: int) -> None:
        """The container's process ended with ``code``: Docker's ``die``."""
        if not c.running:
            return
        for timer in c.timers:
            timer.cancel()
        c.timers.clear()
        c.state, c.exit_code, c.finished_ns, c.health = "exited", code, time.time_ns(), None
        self.emit("die", c, exitCode=str(code))
        _resolve(c.exit_waiters)
        if c.host_config.get("AutoRemove"):
            self._destroy(c)

    def signal(self, c: Container, signum: int) -> None:
        """Deliver a signal: SIGTERM runs the container's trap (or is ignored), others end it."""
        self.emit("kill", c, signal=str(signum))
        plan = c.plan
        if signum == signal.SIGTERM and plan.ignore_term:
            return
        if signum == signal.SIGTERM and plan.on_term is not None:
            for _, line in plan.on_term.lines:
                self._print(c, line)
            return self._exit(c, plan.on_term.code)
        self._exit(c, 128 + signum)

    def stop(self, c: Container, grace: int, conn: Connection):
        if not c.running:
            return conn.reply(304)

        async def stopped():
            await asyncio.shield(self._stopping(c, grace))
            conn.reply(204)
        return stopped()

    def _stopping(self, c: Container, grace: int) -> asyncio.Task:
        if c.stopping is None or c.stopping.done():
            c.stopping = asyncio.get_running_loop().create_task(self._stop(c, grace))
        return c.stopping

    async def _stop(self, c: Container, grace: int) -> None:
        """SIGTERM, SIGKILL after ``grace`` seconds (never, if negative), then Docker's ``stop``."""
        if not c.running:  # it exited between the request and this task
            return
        self.signal(c, signal.SIGTERM)
        if c.running and grace != 0:
            waiter = asyncio.get_running_loop().create_future()
            c.exit_waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, None if grace < 0 else grace)
            except asyncio.TimeoutError:
                pass
        if c.running:
            self.signal(c, signal.SIGKILL)
        self.emit("stop", c)

    def remove(self, c: Container, force: bool) -> None:
        if c.running and not force:
            raise HTTPError(409, f"You cannot remove a running container {c.id}. Stop the container before "
                                 f"attempting removal or force remove")
        if c.running:
            self.signal(c, signal.SIGKILL)
        self._destroy(c)

    def _destroy(self, c: Container) -> None:
        c.state = "removing"
        self.containers.pop(c.id, None)
        if self.names.get(c.name) is c:
            del self.names[c.name]
        self.emit("destroy", c)
        _resolve(c.exit_waiters)
        _resolve(c.remove_waiters)

    async def wait(self, c: Container, condition: str, conn: Connection) -> None:
        if condition not in ("not-running", "next-exit", "removed"):
            raise HTTPError(400, f"invalid condition: {condition!r}")
        if condition == "removed" and c.state != "removing":
            waiters = c.remove_waiters
        elif condition == "next-exit" or (condition == "not-running" and c.running):
            waiters = c.exit_waiters
        else:
            waiters = None
        if waiters is not None:
            future = asyncio.get_running_loop().create_future()
            waiters.append(future)
            await future
        conn.reply_json(200, {"StatusCode": c.exit_code, "Error": None})

    def logs(self, c: Container, query: dict[str, str], conn: Connection):
        streams = {s for s, key in ((1, "stdout"), (2, "stderr")) if _bool(query.get(key))}
        if not streams:
            raise HTTPError(400, "Bad parameters: you must choose at least one stream")
        stamps, since = _bool(query.get("timestamps")), float(query.get("since") or 0)
        lines = [(ns, s, data) for ns, s, data in c.output if s in streams and ns / 1e9 >= since]
        tail = query.get("tail") or "all"
        if tail != "all" and tail.lstrip("-").isdigit() and int(tail) >= 0:
            lines = lines[len(lines) - int(tail):] if int(tail) else []
        body = b"".join(_frame(s, (rfc3339(ns).encode() + b" " if stamps else b"") + data) for ns, s, data in lines)
        ctype = "application/vnd.docker.multiplexed-stream"
        if not _bool(query.get("follow")) or not c.running:
            return conn.reply(200, body, ctype)

        async def follow():
            conn.open_stream(ctype)
            conn.stream(body)
            ended = asyncio.get_running_loop().create_future()
            c.exit_waiters.append(ended)
            c.followers.append(conn.stream)
            try:
                await ended
            finally:
                c.followers.remove(conn.stream)
            conn.close_stream()
        return follow()

    # events
    def events(self, req: Request, conn: Connection):
        filters = _filters(req.query)

        async def stream():
            conn.open_stream()
            subscriber = (conn, filters)
            self.subscribers.append(subscriber)
            try:
                await asyncio.get_running_loop().create_future()  # until the client goes away
            finally:
                self.subscribers.remove(subscriber)
        return stream()

    def emit(self, action: str, c: Container, **attributes: str) -> None:
        if not self.subscribers:
            return
        ns = time.time_ns()
        attrs = {**c.labels, "image": c.image, "name": c.name, **attributes}
        event = {"status": action, "id": c.id, "from": c.image, "Type": "container", "Action": action,
                 "Actor": {"ID": c.id, "Attributes": attrs}, "scope": "local", "time": ns // 1_000_000_000,
                 "timeNano": ns}
        line = None
        for conn, filters in self.subscribers:
            if _event_matches(filters, action, c, attrs):
                line = line or json.dumps(event, separators=(",", ":")).encode() + b"\n"
                conn.stream(line)

    # volumes and images
    def _volume(self, name: str, spec: dict) -> dict:
        return {"Name": name, "Driver": spec.get("Driver") or "local", "Labels": spec.get("Labels") or {},
                "Options": spec.get("DriverOpts") or {}, "Scope": "local", "CreatedAt": rfc3339(time.time_ns()),
                "Mountpoint": f"/var/lib/docker/volumes/{name}/_data"}

    def _volumes(self, req: Request, conn: Connection, rest: list[str]):
        if rest in ([], [""]) and req.method == "GET":
            return conn.reply_json(200, {"Volumes": list(self.volumes.values()), "Warnings": []})
        if rest == ["create"] and req.method == "POST":
            spec = req.json()
            name = spec.get("Name") or secrets.token_hex(32)
            volume = self.volumes.setdefault(name, self._volume(name, spec))
            return conn.reply_json(201, volume)
        if len(rest) == 1 and req.method in ("GET", "DELETE"):
            if rest[0] not in self.volumes:
                raise HTTPError(404, f"get {rest[0]}: no such volume")
            if req.method == "GET":
                return conn.reply_json(200, self.volumes[rest[0]])
            if any(rest[0] in self._named_volumes(c.host_config) for c in self.containers.values()):
                raise HTTPError(409, f"remove {rest[0]}: volume is in use")
            del self.volumes[rest[0]]
            return conn.reply(204)
        raise HTTPError(404, NOT_FOUND)

    def _images(self, req: Request, conn: Connection, path: str):
        if path == "/images/create" and req.method == "POST":
            image = req.query.get("fromImage", "")
            tag = req.query.get("tag") or "latest"
            conn.open_stream()
            for status in (f"Pulling from {image}", f"Status: Image is up to date for {image}:{tag}"):
                conn.stream(json.dumps({"status": status, "id": tag}).encode() + b"\r\n")
            return conn.close_stream()
        if path.startswith("/images/") and path.endswith("/json") and req.method == "GET":
            name = path[len("/images/"):-len("/json")]
            return conn.reply_json(200, {"Id": _image_id(name), "RepoTags": [name], "RepoDigests": [],
                                         "Created": ZERO_TIME, "Size": 0, "Os": "linux", "Architecture": "amd64",
                                         "Config": {"Cmd": ["sh"], "Env": ["PATH=/bin"]}})
        raise HTTPError(404, NOT_FOUND)

    # failure knobs
    def freeze(self) -> None:
        self.frozen = True

    def thaw(self) -> None:
        self.frozen = False
        for conn in list(self.connections):
            conn.release()

    def kill(self) -> None:
        """Stop listening and reset every connection, as when dockerd dies."""
        self.down, self.frozen = True, False
        if self.server is not None:
            self.server.close()
            self.server = None
        for conn in list(self.connections):
            conn.abort()

    async def revive(self, reboot: bool = False) -> None:
        """Listen again; with ``reboot``, the containers that were running have died (137)."""
        if reboot:
            for c in list(self.containers.values()):
                if c.running:
                    self._exit(c, 128 + signal.SIGKILL)
        if self.server is None:
            await self.listen()
        self.down = False

    def close(self) -> None:
        for c in self.containers.values():
            for timer in c.timers:
                timer.cancel()
        self.kill()


def _event_matches(filters: dict[str, list[str]], action: str, c: Container, attrs: dict[str, str]) -> bool:
    if "type" in filters and "container" not in filters["type"]:
        return False
    if "event" in filters and action.split(":", 1)[0] not in filters["event"]:
        return False
    if "container" in filters and not any(f in (c.id, c.name) or c.id.startswith(f) for f in filters["container"]):
        return False
    if "image" in filters and c.image not in filters["image"]:
        return False
    return "label" not in filters or _labels_match(filters["label"], attrs)


def _resolve(futures: list[asyncio.Future]) -> None:
    for f in futures:
        if not f.done():
            f.set_result(None)
    futures.clear()


# -- the simulator: many hosts, one loop ---------------------------------------------------------


def host_ips(count: int, first: str) -> list[str]:
    """``count`` consecutive loopback addresses from ``first``."""
    start = ipaddress.IPv4Address(first)
    loopback = ipaddress.IPv4Network("127.0.0.0/8")
    ips = [start + i for i in range(count)] if count > 0 else []
    if count < 1 or start not in loopback or ips[-1] not in loopback or ips[-1] == loopback.broadcast_address:
        raise ValueError(f"cannot place {count} hosts in 127.0.0.0/8 from {first}")
    return [str(ip) for ip in ips]


class Hollow:
    """Every hollow host of a run, served by the running event loop."""

    def __init__(self, count: int, first: str = "127.1.0.1", port: int = PORT, slots_hint: int = 10,
                 start_delay_ms: float = 0, control: tuple[str, int] | None = None):
        self.hosts = [HollowHost(f"h{i + 1}", ip, port, slots_hint, start_delay_ms / 1000)
                      for i, ip in enumerate(host_ips(count, first))]
        self._by_key = {k: h for h in self.hosts for k in (h.name, h.ip)}
        self.control = Control(self, *control) if control else None

    @property
    def addresses(self) -> list[str]:
        return [h.address for h in self.hosts]

    def host(self, key: str) -> HollowHost:
        """A host by name (``h3``), IP or tcp:// address."""
        ip = key.split("://", 1)[-1].rsplit(":", 1)[0] if "://" in key else key
        try:
            return self._by_key[ip]
        except KeyError:
            raise KeyError(f"no hollow host {key!r}") from None

    async def start(self) -> None:
        _raise_file_limit(3 * len(self.hosts) + 256)
        try:
            for h in self.hosts:
                await h.listen()
            if self.control:
                await self.control.listen()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for h in self.hosts:
            h.close()
        if self.control:
            self.control.close()

    async def shutdown(self) -> None:
        """Close everything and end the handlers of the connections closed."""
        self.close()
        for _ in range(3):  # connection_lost runs, then the handlers see their cancellation
            await asyncio.sleep(0)
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def stats(self) -> dict:
        containers = [c for h in self.hosts for c in h.containers.values()]
        return {"hosts": len(self.hosts), "up": sum(h.condition == "up" for h in self.hosts),
                "containers": len(containers), "running": sum(c.running for c in containers),
                "requests": sum(h.requests for h in self.hosts),
                "unanswered": sum(h.unanswered for h in self.hosts),
                "connections": sum(len(h.connections) for h in self.hosts),
                "event_streams": sum(len(h.subscribers) for h in self.hosts), "rss_bytes": rss_bytes()}

    def describe(self) -> list[dict]:
        return [{"name": h.name, "address": h.address, "ip": h.ip, "state": h.condition,
                 "containers": len(h.containers), "running": sum(c.running for c in h.containers.values())}
                for h in self.hosts]


class Control(Site):
    """The control endpoint: failure knobs and counters over HTTP, for a simulator in another process."""

    def __init__(self, hollow: Hollow, ip: str, port: int):
        super().__init__(ip, port)
        self.hollow = hollow

    def handle(self, req: Request, conn: Connection):
        parts = req.path.strip("/").split("/")
        if req.method == "GET" and parts == ["stats"]:
            return conn.reply_json(200, self.hollow.stats())
        if req.method == "GET" and parts == ["hosts"]:
            return conn.reply_json(200, self.hollow.describe())
        if req.method == "POST" and len(parts) == 3 and parts[0] == "hosts":
            try:
                host = self.hollow.host(parts[1])
            except KeyError as exc:
                raise HTTPError(404, str(exc.args[0])) from None
            action = parts[2]
            if action in ("freeze", "thaw", "kill"):
                getattr(host, action)()
                return conn.reply_json(200, {"host": host.name, "state": host.condition})
            if action == "revive":
                async def revive():
                    await host.revive(reboot=_bool(req.query.get("reboot")))
                    conn.reply_json(200, {"host": host.name, "state": host.condition})
                return revive()
        raise HTTPError(404, NOT_FOUND)

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for conn in list(self.connections):
            conn.abort()


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _raise_file_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard == resource.RLIM_INFINITY else
                                                    min(max(wanted, soft), hard), hard))


# -- Python API for benchmarks -------------------------------------------------------------------


class HollowThread:
    """A ``Hollow`` on an event loop in a daemon thread of this process."""

    def __init__(self, hollow: Hollow):
        self.hollow = hollow
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name="hollow", daemon=True)
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self) -> "HollowThread":
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            raise self._error
        return self

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self.hollow.start())
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            self._loop.close()
            return
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            self._loop.run_until_complete(self.hollow.shutdown())
            self._loop.close()

    def _call(self, fn: Callable, *args):
        async def call():
            result = fn(*args)
            return await result if asyncio.iscoroutine(result) else result
        return asyncio.run_coroutine_threadsafe(call(), self._loop).result(30)

    @property
    def addresses(self) -> list[str]:
        return self.hollow.addresses

    @property
    def names(self) -> list[str]:
        return [h.name for h in self.hollow.hosts]

    def freeze(self, host: str) -> None:
        self._call(lambda: self.hollow.host(host).freeze())

    def thaw(self, host: str) -> None:
        self._call(lambda: self.hollow.host(host).thaw())

    def kill(self, host: str) -> None:
        self._call(lambda: self.hollow.host(host).kill())

    def revive(self, host: str, reboot: bool = False) -> None:
        self._call(lambda: self.hollow.host(host).revive(reboot))

    def stats(self) -> dict:
        return self._call(self.hollow.stats)

    def hosts(self) -> list[dict]:
        return self._call(self.hollow.describe)

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)

    def __enter__(self) -> "HollowThread":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class HollowProcess:
    """``bench/hollow.py`` as a child process, driven through its control endpoint."""

    def __init__(self, count: int, first: str, port: int, slots_hint: int, start_delay_ms: float,
                 timeout: float = 120):
        control_ip = first
        self._log = tempfile.NamedTemporaryFile(prefix="hollow-", suffix=".log", delete=False)
        cmd = [sys.executable, str(Path(__file__).resolve()), "--hosts", str(count), "--first", first,
               "--port", str(port), "--slots-hint", str(slots_hint), "--start-delay-ms", str(start_delay_ms),
               "--control", f"{control_ip}:{0 if port == 0 else CONTROL_PORT}"]
        self.proc = _subprocess.Popen(cmd, stdout=_subprocess.PIPE, stderr=self._log, text=True)
        self.addresses = [self.proc.stdout.readline().strip() for _ in range(count)]
        if not all(self.addresses) or self.proc.poll() is not None:
            self.stop()
            raise RuntimeError(f"bench/hollow.py did not start:\n{Path(self._log.name).read_text()}")
        deadline = time.monotonic() + timeout
        while not (match := re.search(r"control (http://\S+)", Path(self._log.name).read_text())):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"bench/hollow.py gave no control address:\n{Path(self._log.name).read_text()}")
            time.sleep(0.05)
        self.control = match.group(1)
        self.names = [f"h{i + 1}" for i in range(count)]

    def _request(self, method: str, path: str) -> Any:
        req = urllib.request.Request(self.control + path, method=method)
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())

    def freeze(self, host: str) -> None:
        self._request("POST", f"/hosts/{_key(host)}/freeze")

    def thaw(self, host: str) -> None:
        self._request("POST", f"/hosts/{_key(host)}/thaw")

    def kill(self, host: str) -> None:
        self._request("POST", f"/hosts/{_key(host)}/kill")

    def revive(self, host: str, reboot: bool = False) -> None:
        self._request("POST", f"/hosts/{_key(host)}/revive" + ("?reboot=1" if reboot else ""))

    def stats(self) -> dict:
        return self._request("GET", "/stats")

    def hosts(self) -> list[dict]:
        return self._request("GET", "/hosts")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except _subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self._log.close()
        Path(self._log.name).unlink(missing_ok=True)

    def __enter__(self) -> "HollowProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _key(host: str) -> str:
    return host.split("://", 1)[-1].rsplit(":", 1)[0] if "://" in host else host


def start_hollow(count: int, first: str = "127.1.0.1", port: int = PORT, *, slots_hint: int = 10,
                 start_delay_ms: float = 0, subprocess: bool = False) -> HollowThread | HollowProcess:
    """Start ``count`` hollow hosts on consecutive loopback addresses from ``first``; returns a handle
    with ``addresses`` (tcp://IP:PORT), ``freeze``/``thaw``/``kill``/``revive`` (by name, IP or
    address), ``stats()`` and ``stop()``. ``port=0`` gives each host a free port of its own (tests);
    ``subprocess=True`` serves them from a child process, so their CPU is not the caller's."""
    if subprocess:
        return HollowProcess(count, first, port, slots_hint, start_delay_ms)
    return HollowThread(Hollow(count, first, port, slots_hint, start_delay_ms)).start()


# -- command line --------------------------------------------------------------------------------


def _address(text: str) -> tuple[str, int]:
    ip, _, port = text.rpartition(":")
    return ip, int(port)


async def _serve_until_signalled(hollow: Hollow, hosts_json: str | None) -> None:
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    began = time.monotonic()
    await hollow.start()
    if hosts_json:
        Path(hosts_json).write_text(json.dumps([{"name": h.name, "address": h.address, "ip": h.ip}
                                                for h in hollow.hosts], indent=2) + "\n")
    sys.stdout.write("".join(a + "\n" for a in hollow.addresses))
    sys.stdout.flush()
    control = f"; control http://{hollow.control.ip}:{hollow.control.port}" if hollow.control else ""
    print(f"hollow: {len(hollow.hosts)} hosts up in {time.monotonic() - began:.2f}s{control}", file=sys.stderr,
          flush=True)
    await done.wait()
    await hollow.shutdown()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Serve simulated Docker hosts (benchmarks only; see the module doc).")
    ap.add_argument("--hosts", type=int, default=1, help="how many hosts")
    ap.add_argument("--first", default="127.1.0.1", help="the first host's loopback IP (the others follow it)")
    ap.add_argument("--port", type=int, default=PORT, help="port of every host (0: a free port each)")
    ap.add_argument("--slots-hint", type=int, default=10,
                    help="CPUs each host reports in /info (a Node without slots gets one slot per CPU)")
    ap.add_argument("--start-delay-ms", type=float, default=0, help="time a container start takes")
    ap.add_argument("--hosts-json", help="also write the hosts as JSON to this file")
    ap.add_argument("--control", default=None, help=f"control endpoint IP:PORT (default FIRST:{CONTROL_PORT}; "
                                                    "'none' for no endpoint)")
    args = ap.parse_args(argv)
    control = None if args.control == "none" else _address(args.control or f"{args.first}:{CONTROL_PORT}")
    try:
        hollow = Hollow(args.hosts, args.first, args.port, args.slots_hint, args.start_delay_ms, control)
        asyncio.run(_serve_until_signalled(hollow, args.hosts_json))
    except (ValueError, OSError) as exc:
        print(f"hollow: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
