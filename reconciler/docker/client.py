"""How this process speaks to Docker daemons: SDK clients (``connect``: the Node's TLS, a larger
pool, the environment ignored, requests that change a host gated by the lease), the standard
library's ``ApiConnection`` for the calls made of every node every pass (ping, list, info), the
count of requests by endpoint (``CALLS``), and one-line wording of why a call failed (``brief``,
TLS failures naming the side and the file).

Called by ``host`` (a Node's Host), ``probe`` (the prober), ``events`` (event streams) and the
controller (``CALLS``, ``TRANSPORT_ERRORS``, ``Withheld``).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import ssl
import threading
import time
from typing import Callable

import docker
import docker.tls
import requests
from docker import errors as derr

from ..errors import HostError

API_VERSION = "1.41"  # Docker 20.10+; newer daemons accept it
POOL_SIZE = 32
_ID_SEGMENT = re.compile(r"^/(containers|images|networks|volumes|exec)/(?!json$|create$|prune$)[^/]+")
# What a failed call raises when the host is down, hung or refusing.
TRANSPORT_ERRORS = (requests.exceptions.RequestException, derr.DockerException, OSError, http.client.HTTPException)
READ_METHODS = ("GET", "HEAD")  # requests that change nothing on a host: never withheld


class Withheld(Exception):
    """A request that would change a host (create, start, stop, kill, remove) was not sent: the
    pool's ``gate`` said no (the controller no longer surely leads; ``runtime.leader``)."""


TLS_FILES = ("caFile", "certFile", "keyFile")
# "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: ... (_ssl.c:1006)" -> code, words
_HUNG_UP = re.compile(r"EOF occurred in violation of protocol")
_SSL_REASON = re.compile(r"\[(?:SSL|X509)(?:: ([A-Z0-9_]+))?\] (.+?)(?: \(_ssl\.c:\d+\)|(?<!\\)['\"]\))")


class CallCounter:
    """Docker API requests sent by this process, by endpoint (``GET /containers/json``; names and
    ids folded to ``{id}``). Every client made here counts into ``CALLS``; the controller
    publishes the totals with its heartbeat (``brokerctl status``)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self.last_change_at: float | None = None  # wall clock: the last request sent that changes a host

    def sending_change(self) -> None:
        """A request that changes a host goes out now (``brokerctl status``: a controller that stepped
        down shows that it sent none since)."""
        self.last_change_at = time.time()

    def hook(self, response, *args, **kwargs) -> None:
        request = response.request
        path = _ID_SEGMENT.sub(lambda m: f"/{m.group(1)}/{{id}}", re.sub(r"^/v[\d.]+", "", _path(request.url)))
        key = f"{request.method} {path}"
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + 1

    def count(self, method: str, path: str) -> None:
        """A request sent without the SDK (``ApiConnection``)."""
        key = f"{method} {path}"
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


def _path(url: str) -> str:
    rest = url.split("://", 1)[-1]
    slash = rest.find("/")
    return rest[slash:].split("?", 1)[0] if slash >= 0 else "/"


CALLS = CallCounter()


class ApiStatusError(http.client.HTTPException):
    """The daemon answered, with an error status."""


class ApiConnection:
    """GET requests of the Engine API on one kept-alive connection, with the standard library's
    HTTP client: for the calls made of every node every pass or second (``/_ping``, the container
    list, ``/info``). Through the Docker SDK (requests) each costs 1-2 ms of CPU, which at 1,000
    nodes is more than a core; this costs a fifth of that. TLS is the Node's (client certificate;
    its CA verifies the daemon, as the SDK's client does); ``unix://`` goes through the socket
    file. A failed request drops the connection: a restarted daemon needs a new one. Not for
    concurrent use: one request at a time.
    """

    def __init__(self, address: str, tls: dict | None, timeout: float | None):
        self.address, self.tls, self.timeout = address, tls, timeout
        self._conn: http.client.HTTPConnection | None = None

    def get(self, path: str, query: dict[str, str] | None = None, decode: bool = True):
        """The JSON body (or the bytes, without ``decode``) of ``GET /v{API_VERSION}{path}``."""
        from urllib.parse import urlencode

        target = f"/v{API_VERSION}{path}" + (f"?{urlencode(query)}" if query else "")
        try:
            if self._conn is None:
                self._conn = self._connect()
            self._conn.request("GET", target, headers={"Host": "docker"})
            response = self._conn.getresponse()
            body = response.read()
        except BaseException:
            self.close()
            raise
        CALLS.count("GET", path)
        if response.status != 200:
            self.close()
            raise ApiStatusError(f"{path} answered HTTP {response.status}: "
                                 f"{body[:200].decode(errors='replace').strip()}")
        return json.loads(body) if decode else body

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connect(self) -> http.client.HTTPConnection:
        scheme, _, rest = self.address.partition("://")
        if scheme == "unix":
            return _UnixConnection("/" + rest.lstrip("/"), self.timeout)
        host, _, port = rest.rpartition(":")
        host = host.strip("[]")
        if not self.tls:
            return http.client.HTTPConnection(host, int(port), timeout=self.timeout)
        return http.client.HTTPSConnection(host, int(port), timeout=self.timeout, context=tls_context(self.tls))


def tls_context(tls: dict) -> ssl.SSLContext:
    """The Node's TLS as ``connect`` applies it: its caFile (the default CA bundle without one, never
    nothing) verifies the daemon, its certificate and key identify us; HostError naming a file that
    cannot be read (``_readable_tls_files``)."""
    _readable_tls_files(tls)
    context = ssl.create_default_context(cafile=tls.get("caFile") or None)
    if tls.get("certFile") and tls.get("keyFile"):
        context.load_cert_chain(tls["certFile"], tls["keyFile"])
    return context


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float | None):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def connect(address: str, tls: dict | None, timeout: float | None,
            gate: Callable[[], bool] | None = None) -> docker.DockerClient:
    """A client for one Docker address; with ``tls`` (a Node's ``tls``: caFile, certFile, keyFile) over
    HTTPS, the daemon's certificate checked against caFile (the default CA bundle without one).

    The client ignores the environment: requests would let ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``
    replace the Node's caFile (and proxies or .netrc reroute or sign its calls), so what the
    controller trusts would depend on how it was started rather than on the Node. With ``gate``,
    each request that would change the host asks it first (``_gate_changes``).
    """
    tls_config = False
    if tls:
        tls_config = _tls_config(tls)
        address = address.replace("tcp://", "https://", 1)
    try:
        client = docker.DockerClient(base_url=address, version=API_VERSION, timeout=timeout,
                                     tls=tls_config, max_pool_size=POOL_SIZE)
    except derr.DockerException as exc:
        raise HostError(f"cannot use Docker address {address!r}: {exc}") from exc
    client.api.trust_env = False
    if address.startswith(("tcp://", "http://", "https://")):
        # The SDK ignores max_pool_size for tcp: mount a larger pool so parallel calls don't queue.
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=POOL_SIZE)
        client.api.mount("http://", adapter)
        client.api.mount("https://", adapter)
    client.api.hooks["response"].append(CALLS.hook)
    if gate is not None:
        _gate_changes(client.api, gate)
    return client


def _gate_changes(session: requests.Session, gate: Callable[[], bool]) -> None:
    """Ask ``gate`` right before each request that would change the host, so that a multi-call
    operation (stop then remove, create then start) interrupted by a pause sends no further step."""
    send = session.send

    def send_if_allowed(request, **kwargs):
        if request.method not in READ_METHODS:
            if not gate():
                raise Withheld(f"{request.method} {_path(request.url)} not sent: this controller no longer surely leads")
            CALLS.sending_change()
        return send(request, **kwargs)

    session.send = send_if_allowed  # requests.Session.request calls self.send


def _tls_config(tls: dict) -> docker.tls.TLSConfig:
    """The SDK's TLS settings for a Node's ``tls``; HostError naming the field if a file cannot be read
    (the files are read where the controller runs, and may have gone since apply checked them)."""
    _readable_tls_files(tls)
    cert = (tls["certFile"], tls["keyFile"]) if tls.get("certFile") else None
    # verify=True without a CA checks against the default bundle, never nothing.
    return docker.tls.TLSConfig(client_cert=cert, ca_cert=tls.get("caFile"), verify=True)


def _readable_tls_files(tls: dict) -> None:
    """HostError naming the first of a Node's TLS files this process cannot read (they are read where
    the controller runs, and may have gone since apply checked them)."""
    for field in TLS_FILES:
        path = tls.get(field)
        if path and not (os.path.isfile(path) and os.access(path, os.R_OK)):
            why = "no such file" if not os.path.exists(path) else f"not a file this process (uid {os.getuid()}) can read"
            raise HostError(f"tls.{field} {path}: {why}")


def brief(exc: BaseException, tls: dict | None = None) -> str:
    """One line saying why a call to a host failed (through the SDK or an ``ApiConnection``); with the
    Node's ``tls``, TLS failures say which side refused and which file is to blame."""
    text = str(exc).strip() or type(exc).__name__
    answer = getattr(getattr(exc, "response", None), "text", "") or text
    if "HTTP request to an HTTPS server" in answer:
        return "the daemon speaks TLS on this address: give the Node tls: (caFile, certFile, keyFile)"
    if isinstance(exc, (HostError, ApiStatusError)):
        return text[:200]
    broken = (requests.exceptions.ConnectionError, ssl.SSLError, ConnectionError, http.client.HTTPException)
    if tls is not None and isinstance(exc, broken) and (why := tls_failure(text, tls)):
        return why
    if "timed out" in text.lower() or isinstance(exc, (requests.exceptions.Timeout, TimeoutError)):
        return "Docker API timed out"
    if isinstance(exc, (requests.exceptions.ConnectionError, ConnectionError, socket.gaierror)):
        return "connection refused or unreachable"
    return text[:200]


def tls_failure(text: str, tls: dict) -> str | None:
    """Why a TLS connection failed, from the error's text: the daemon's certificate not verified
    (naming the CA file), the client's certificate refused by the daemon, or no TLS at the address;
    None if the text shows no TLS failure (the host is down or unreachable)."""
    m = _SSL_REASON.search(text)
    code, reason = (m.group(1) or "", m.group(2).replace("\\'", "'")) if m else ("", text[:200])
    if code == "CERTIFICATE_VERIFY_FAILED":
        against = f"tls.caFile {tls['caFile']}" if tls.get("caFile") else "the default CA bundle (tls names no caFile)"
        return f"TLS: the daemon's certificate could not be verified with {against} ({reason})"
    # The daemon ends the handshake with an alert, or (TLS 1.3, where the client's certificate is
    # checked after the client thinks the handshake is done) just closes the connection.
    hung_up = _HUNG_UP.search(text)
    if "ALERT" in code or hung_up:
        reason = hung_up.group(0) if hung_up and "ALERT" not in code else reason
        if not tls.get("certFile"):
            return (f"TLS: the daemon refused the handshake ({reason}): it requires a client certificate and tls "
                    "names none; set tls.certFile and tls.keyFile to a pair signed by the CA the daemon trusts")
        return (f"TLS: the daemon refused the handshake ({reason}): it does not accept the client certificate "
                f"tls.certFile {tls['certFile']}; it needs one signed by the CA the daemon trusts (its --tlscacert)")
    if code == "WRONG_VERSION_NUMBER":
        return (f"TLS: the address does not answer in TLS ({reason}); drop tls: or use the daemon's TLS port "
                "(2376 by convention, dockerd --tlsverify)")
    return f"TLS: {reason}" if m else None
