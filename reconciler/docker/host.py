"""Docker hosts: with ``client`` (how the process connects, counts and words failures), the only
modules that import ``docker``.

One ``Host`` per Node wraps a Docker SDK client (``client.connect``) with a request timeout on every
call and a connection pool sized for parallel work. It observes (ping, info, one sparse label-filtered
container list) and acts (ensure a container is started, collect a finished one, stop and
remove). Called by ``observe`` and ``act`` in the controller, and by the verbs for ``logs -f`` and
``exec`` (a command in a running task's container).
Errors come back as ``HostError`` (unreachable or refused) or ``StartError`` (the task cannot
start here: image pull failed, bad mount...).
"""

from __future__ import annotations

import json
import math
import re
import socket
import threading
import time
from datetime import datetime
from typing import Callable, Iterable, Iterator

import docker
import docker.tls
from docker import errors as derr
from docker.types import Mount
from docker.utils.socket import frames_iter

from ..errors import HostError
from ..kinds import TaskReason
from ..records import (
    LABEL_MARK,
    LABEL_NAMESPACE,
    LABEL_OWNER,
    LABEL_STORE,
    LABEL_TASK,
    ContainerExit,
    ContainerObs,
    ContainerSpec,
    NodeObs,
)
from .client import TRANSPORT_ERRORS, ApiConnection, brief, connect

LOG_TAIL_LINES = 20_000
INFO_REFRESH_SECONDS = 60.0
COLLECT_SETTLE_SECONDS = 2.0  # how long a collect waits for the daemon to show an exit its event announced
_EXITED = re.compile(r"^Exited \((-?\d+)\)")
_HEALTH = re.compile(r"\((healthy|unhealthy|health: starting)\)\s*$")
_PORT_TAKEN = re.compile(r"port is already allocated|address already in use", re.I)
# Every task container: never privileged, no capabilities beyond Docker's default set, no gaining
# privileges through setuid binaries, its own IPC namespace whatever the daemon's default-ipc-mode,
# no devices, and its own PID namespace (pid_mode is never set). The network mode is the task's, which
# the scheduler allowed on this node (host or container:X only where the Node's allowedNetworks says).
HARDENING = {"privileged": False, "cap_add": None, "security_opt": ["no-new-privileges"], "ipc_mode": "private",
             "devices": None}


class StartError(Exception):
    """The container cannot be started on this host for a reason that is the task's."""

    def __init__(self, reason: TaskReason, message: str):
        self.reason, self.message = reason, message
        super().__init__(f"{reason}: {message}")


class Host:
    """``gate``: asked before each request that would change the host (a step of a start or a
    stop included); ``Withheld`` instead of sending it when it answers False."""

    def __init__(self, name: str, address: str, tls: dict | None = None, timeout: float = 5.0,
                 gate: Callable[[], bool] | None = None):
        self.name, self.address, self.tls, self.timeout, self.gate = name, address, tls, timeout, gate
        self._client: docker.DockerClient | None = None
        self._info: tuple[float, dict] | None = None
        self._lock = threading.Lock()
        self._observer = ApiConnection(address, tls, timeout)  # observe's calls, one at a time
        self._observing = threading.Lock()

    @property
    def client(self) -> docker.DockerClient:
        with self._lock:
            if self._client is None:
                self._client = connect(self.address, self.tls, self.timeout, self.gate)
            return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        self._observer.close()  # without the lock: a list in flight on a hung daemon fails now

    # -- observe --------------------------------------------------------------------------

    def observe(self, store_id: str, now: float, list_containers: bool = True) -> NodeObs:
        """Info (cached) and one sparse container list filtered by our store label.

        Health is the ``Prober``'s business; this is only called for nodes it finds answering.
        ``list_containers=False``: info only (a Node whose daemon another Node already uses).
        """
        try:
            with self._observing:  # what it reads every pass goes without the SDK: see ApiConnection
                info = self._cached_info(now)
                raw = self._observer.get("/containers/json", {
                    "all": "1", "filters": json.dumps({"label": [f"{LABEL_STORE}={store_id}"]})}) \
                    if list_containers else None
        except TRANSPORT_ERRORS as exc:
            return NodeObs(self.name, ready=False, message=brief(exc, self.tls))
        containers = tuple(_container_obs(c) for c in raw) if raw is not None else None
        return NodeObs(self.name, ready=True, docker_version=info.get("ServerVersion"),
                       cpus=info.get("NCPU"), memory=info.get("MemTotal"), containers=containers,
                       daemon_id=daemon_identity(info))

    def _cached_info(self, now: float) -> dict:
        if self._info is None or now - self._info[0] > INFO_REFRESH_SECONDS:
            self._info = (now, self._observer.get("/info"))
        return self._info[1]

    # -- act ------------------------------------------------------------------------------

    def start(self, spec: ContainerSpec) -> str:
        """Create (pulling the image if missing) and start; idempotent by container name.

        Named volumes are checked (and made) first; a container already holding the name is
        adopted only if it carries this task's mark. Containers are made with ``HARDENING``; where
        the namespace forbids root, one without a user is refused if its image runs as root.
        """
        api = self.client.api
        self._ensure_volumes(spec)
        try:
            cid = self._create(spec)
        except derr.APIError as exc:
            if exc.status_code != 409:  # 409: a container of that name exists: adopt it if it is ours
                raise StartError(TaskReason.CREATE_FAILED, f"node {self.name}: {_explain(exc)}") from exc
            found = api.inspect_container(spec.name)
            if (found["Config"].get("Labels") or {}).get(LABEL_MARK) != spec.labels.get(LABEL_MARK):
                raise StartError(TaskReason.NAME_TAKEN,
                                 f"node {self.name}: a container named {spec.name} exists that brokerctl did not "
                                 f"make for this task (its {LABEL_MARK} label does not match); it is left alone") from exc
            cid = found["Id"]
        if spec.non_root and not spec.user:
            self._refuse_root_image(cid, spec)
        try:
            api.start(cid)
        except derr.APIError as exc:
            text = _explain(exc)
            if _PORT_TAKEN.search(text):
                # Leave no created container holding the name: the task moves to another node.
                self.remove(cid, grace=0)
                raise StartError(TaskReason.PORT_IN_USE, f"node {self.name}: {text}") from exc
            raise StartError(TaskReason.START_FAILED, f"node {self.name}: {text}") from exc
        return cid

    def _refuse_root_image(self, cid: str, spec: ContainerSpec) -> None:
        """The task's namespace forbids root and the task names no user, so the container runs as its
        image's user, which Docker copied into its config: refuse (and remove) it when that is root,
        or a name, which only the image's /etc/passwd resolves (as Kubernetes' runAsNonRoot does).
        Checked before every start, so a container created by a controller that died before starting
        it is checked too."""
        from ..spec.fields import is_numeric_user, is_root

        user = self.client.api.inspect_container(cid)["Config"].get("User") or ""
        if user and is_numeric_user(user) and not is_root(user):
            return
        self.remove(cid, grace=0)
        namespace = spec.labels.get(LABEL_NAMESPACE, "")
        runs_as = "as root" if not user or is_root(user) else f"as user {user!r}, a name that may be root,"
        raise StartError(TaskReason.RUN_AS_ROOT, f"image {spec.image} runs {runs_as} and namespace {namespace} "
                                                 "forbids root; set template.user")

    def _ensure_volumes(self, spec: ContainerSpec) -> None:
        """Each named volume the task mounts must be one brokerctl made for this store (labelled), or
        listed in the Node's allowedVolumes; a missing one is created, labelled.

        A volume is not just storage: one made with ``-o type=none -o o=bind -o device=/etc`` is the
        host's /etc, so a volume nobody vouched for is refused.
        """
        store = spec.labels.get(LABEL_STORE, "")
        for source, _, _ in spec.mounts:
            if source.startswith("/") or source in spec.allowed_volumes:
                continue
            try:
                volume = self.client.api.inspect_volume(source)
            except derr.NotFound:
                # Two tasks may create the same new volume at once: Docker then returns the existing
                # one, so the labels of what came back are checked like those of any volume.
                volume = self.client.api.create_volume(source, labels={LABEL_STORE: store})
            owner = (volume.get("Labels") or {}).get(LABEL_STORE)
            if owner != store:
                made = f"was created by another brokerctl store ({owner})" if owner else "was not created by brokerctl"
                raise StartError(TaskReason.VOLUME_NOT_ALLOWED,
                                 f"volume {source} on node {self.name} {made} ({_describe_volume(volume)}); "
                                 "list it in the Node's allowedVolumes to allow it")

    def _create(self, spec: ContainerSpec) -> str:
        try:
            return self._create_once(spec)
        except derr.ImageNotFound:
            pass
        try:
            repo, _, tag = spec.image.rpartition(":") if ":" in spec.image.split("/")[-1] else (spec.image, "", "latest")
            self.client.api.pull(repo, tag=tag or "latest", auth_config=spec.pull_auth)
        except derr.APIError as exc:
            raise StartError(TaskReason.IMAGE_PULL_FAILED, pull_failure(spec, self.name, _explain(exc))) from exc
        return self._create_once(spec)

    def _create_once(self, spec: ContainerSpec) -> str:
        api = self.client.api
        mounts = [
            Mount(target=t, source=s, type="bind" if s.startswith("/") else "volume", read_only=ro)
            for s, t, ro in spec.mounts
        ]
        bindings = {f"{c}/{proto}": ((ip, h or None) if ip else h) for ip, h, c, proto in spec.ports}
        host_config = api.create_host_config(mounts=mounts or None, nano_cpus=spec.nano_cpus,
                                             mem_limit=spec.mem_limit, port_bindings=bindings or None,
                                             network_mode=spec.network, **HARDENING)
        created = api.create_container(
            spec.image, command=spec.command, name=spec.name, environment=spec.env, labels=spec.labels,
            working_dir=spec.working_dir, user=spec.user or "", host_config=host_config, detach=True,
            ports=[(c, proto) for _, _, c, proto in spec.ports] or None, healthcheck=spec.healthcheck,
        )
        return created["Id"]

    def collect(self, container_id: str, log_limit: int) -> ContainerExit:
        """Exit code, times and the tail of the output of a finished container (the caller removes it)."""
        api = self.client.api
        state = api.inspect_container(container_id)["State"]
        deadline = time.monotonic() + COLLECT_SETTLE_SECONDS
        while state.get("Running") and time.monotonic() < deadline:  # its die event came first
            time.sleep(0.02)
            state = api.inspect_container(container_id)["State"]
        if state.get("Running"):
            raise derr.DockerException(f"container {container_id[:12]} is still running")
        raw = api.logs(container_id, stdout=True, stderr=True, tail=LOG_TAIL_LINES)
        return ContainerExit(
            exit_code=state.get("ExitCode"),
            oom_killed=bool(state.get("OOMKilled")),
            started_at=parse_time(state.get("StartedAt")),
            finished_at=parse_time(state.get("FinishedAt")),
            error=state.get("Error") or "",
            output=raw[-log_limit:],
            truncated=len(raw) > log_limit,
        )

    def remove(self, container_id: str, grace: float, keep_output: bool = False) -> bytes | None:
        """Stop (SIGTERM, kill after ``grace``) and remove; with ``keep_output``, return its output."""
        api = self.client.api
        output = None
        try:
            if grace > 0:
                api.stop(container_id, timeout=math.ceil(grace))  # whole seconds; never 0 (a kill) for 0.4
            if keep_output:
                output = api.logs(container_id, stdout=True, stderr=True, tail=LOG_TAIL_LINES)
            api.remove_container(container_id, force=True)
        except derr.NotFound:
            pass
        return output

    def kill(self, container_id: str) -> bool:
        """SIGKILL a running container (left for the controller to collect as it finds it exited);
        False if it was not running or is gone."""
        try:
            self.client.api.kill(container_id)
        except derr.NotFound:
            return False
        except derr.APIError as exc:
            if exc.status_code == 409:  # not running
                return False
            raise HostError(f"cannot kill container {container_id[:12]} on node {self.name}: "
                            f"{brief(exc, self.tls)}") from None
        except TRANSPORT_ERRORS as exc:
            raise HostError(f"cannot kill container {container_id[:12]} on node {self.name}: "
                            f"{brief(exc, self.tls)}") from None
        return True

    def logs(self, container_id: str, follow: bool, tail: int | None = None,
             since: float | None = None) -> Iterator[bytes]:
        """Stream output (the last ``tail`` lines, those written after ``since``, epoch seconds, if
        given); a separate client without a read timeout so ``-f`` can wait."""
        client = connect(self.address, self.tls, timeout=None)
        window = {"tail": "all" if tail is None else tail}
        if since is not None:
            window["since"] = max(since, 0.001)  # the SDK drops 0, which would mean "from the start"
        try:
            yield from client.api.logs(container_id, stdout=True, stderr=True, stream=True, follow=follow, **window)
        except derr.NotFound:
            return
        except derr.APIError as exc:
            # 409: the container is dead or being removed (collected); its stored output has the rest.
            if exc.status_code != 409:
                raise
        finally:
            client.close()


    def exec(self, container_id: str, command: list[str], stdin: Iterable[bytes] | None,
             write: Callable[[int, bytes], None], tty: bool = False,
             size: tuple[int, int] | None = None) -> int:
        """Run ``command`` in the running container through Docker's exec API and return its exit code.
        ``stdin``: chunks sent to the command's input (its end closes that input), None for none;
        ``write(stream, data)`` gets its output as it comes, stream 1 (stdout) or 2 (stderr; with
        ``tty`` everything is 1, as a terminal mixes them); ``size``: the terminal's (rows, columns).
        A separate client without a read timeout, since the command may run for long."""
        client = connect(self.address, self.tls, timeout=None)
        try:
            api = client.api
            try:
                exec_id = api.exec_create(container_id, command, stdin=stdin is not None, tty=tty)["Id"]
            except derr.NotFound:
                raise HostError(f"the container {container_id[:12]} is gone from node {self.name}") from None
            except derr.APIError as exc:  # 409: not running (it stopped meanwhile)
                raise HostError(f"cannot run a command in container {container_id[:12]} on node {self.name}: "
                                f"{_explain(exc)}") from None
            conn = api.exec_start(exec_id, tty=tty, socket=True)
            raw = getattr(conn, "_sock", conn)  # the SDK hands a SocketIO over the hijacked connection
            if tty and size:
                api.exec_resize(exec_id, height=size[0], width=size[1])
            if stdin is not None:
                threading.Thread(target=_send_input, args=(raw, stdin), daemon=True, name="exec-stdin").start()
            for stream, data in frames_iter(conn, tty):
                if data:
                    write(stream, data)
            return _exit_code(api, exec_id)
        finally:
            client.close()


def _send_input(raw, chunks: Iterable[bytes]) -> None:
    """Copy ``chunks`` to the exec's input, then close our writing half: the command reads end of file."""
    try:
        for chunk in chunks:
            raw.sendall(chunk)
        raw.shutdown(socket.SHUT_WR)
    except OSError:
        pass  # the command ended (and the connection with it) before reading all its input


def _exit_code(api, exec_id: str) -> int:
    """The exec's exit code; its output can end a moment before Docker records the process's end."""
    deadline = time.monotonic() + COLLECT_SETTLE_SECONDS
    while True:
        state = api.exec_inspect(exec_id)
        if not state.get("Running") and state.get("ExitCode") is not None:
            return state["ExitCode"]
        if time.monotonic() > deadline:
            raise HostError(f"Docker did not report how the command ended (exec {exec_id[:12]})")
        time.sleep(0.02)


class HostPool:
    """Keeps one ``Host`` per node name, rebuilt when the node's address or TLS changes; each
    host's requests that change it pass ``gate`` first (see ``Host``)."""

    def __init__(self, timeout: float = 5.0, gate: Callable[[], bool] | None = None):
        self.timeout, self.gate = timeout, gate
        self._hosts: dict[str, Host] = {}

    def get(self, name: str, address: str, tls: dict | None = None) -> Host:
        host = self._hosts.get(name)
        if host is None or host.address != address or host.tls != tls:
            if host is not None:
                host.close()
            host = self._hosts[name] = Host(name, address, tls, self.timeout, self.gate)
        return host

    def retain(self, names: set[str]) -> None:
        for name in set(self._hosts) - names:
            self._hosts.pop(name).close()


def daemon_identity(info: dict) -> str | None:
    """``ID hostname:DockerRootDir`` from ``docker info``: what one daemon answers on every address.

    The ID alone is not enough: Docker 20.10 derives it from /etc/docker/key.json, which daemons
    sharing a config directory, and machines cloned from one image, have in common.
    """
    if not info.get("ID"):
        return None
    return f"{info['ID']} {info.get('Name', '')}:{info.get('DockerRootDir', '')}"


def _container_obs(raw: dict) -> ContainerObs:
    labels = raw.get("Labels") or {}
    status = raw.get("Status") or ""
    m = _EXITED.match(status)
    h = _HEALTH.search(status)
    return ContainerObs(
        id=raw["Id"], name=(raw.get("Names") or ["?"])[0].lstrip("/"), task_id=labels.get(LABEL_TASK),
        owner=labels.get(LABEL_OWNER), state=raw.get("State") or "unknown", mark=labels.get(LABEL_MARK) or "",
        exit_code=int(m.group(1)) if m else None,
        health=h.group(1).replace("health: ", "") if h else None,
    )


def parse_time(text: str | None) -> float | None:
    """Docker's RFC 3339 nanosecond times -> epoch seconds (None for the zero time)."""
    if not text or text.startswith("0001-"):
        return None
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", text)
    if not m:
        return None
    frac = float(m.group(2) or 0)
    tz = "+00:00" if m.group(3) == "Z" else m.group(3)
    return datetime.fromisoformat(m.group(1) + tz).timestamp() + frac


def _describe_volume(volume: dict) -> str:
    """``driver local, options type=none o=bind device=/etc``: what an operator needs to judge a volume."""
    options = volume.get("Options") or {}
    text = f"driver {volume.get('Driver') or '?'}"
    if options:
        ordered = sorted(options.items(), key=lambda kv: (_OPTION_ORDER.get(kv[0], len(_OPTION_ORDER)), kv[0]))
        text += ", options " + " ".join(f"{k}={v}" for k, v in ordered)
    return text


_OPTION_ORDER = {"type": 0, "o": 1, "device": 2}


_NO_CREDENTIALS = re.compile(r"no basic auth credentials|may require 'docker login'", re.I)
_REFUSED = re.compile(r"unauthorized|authentication required|access to the resource is denied", re.I)


def pull_failure(spec: ContainerSpec, node: str, text: str) -> str:
    """Why a pull failed, naming the registry when it refused the pull: dockerd says "no basic auth
    credentials" to a pull without any and "unauthorized: authentication required" to wrong ones."""
    where = f"image {spec.image!r} could not be pulled on node {node}: {text}"
    secret = spec.secrets.pull if spec.secrets else None
    if not (_NO_CREDENTIALS.search(text) or _REFUSED.search(text)):
        return where
    from ..spec.fields import (
        image_registry,  # on a failed pull only: the manifest models are not loaded here
    )

    registry = image_registry(spec.image)
    if secret is None:
        return f"registry {registry}: unauthorized (no credentials; set template.imagePullSecret); {where}"
    return (f"registry {registry}: unauthorized (it refused the credentials of secret {secret}; check its "
            f"username and password); {where}")


def _explain(exc: derr.APIError) -> str:
    return str(exc.explanation or exc).strip()







