"""One HTTP request on a socket of its own, closed after the answer: for the command that must start
fastest, a remote `brokerctl apply -f FILE` (``cli.entry``).

``http.client`` imports ``email`` (and ``ssl``, whatever the scheme) before its first byte is sent:
about 15 ms, as much as the rest of such an `apply` takes on the client. A single request with
``Connection: close`` needs little of it: a request line, headers, a body of known length, and an
answer read to its end (sized by ``Content-Length``, chunked, or up to the close). That much is here,
nothing more: no kept connections, redirects or proxies (``http.Connection`` has none either); TLS,
when the URL says https, with the system's CAs or the ``--ca`` file, as ``http.Connection``.

A request that fails on the way raises ``Unanswered`` holding the failure as it came (``OSError``,
``ssl.SSLError``, ``ConnectionResetError`` for a connection closed without an answer, ``ValueError`` for
an answer cut short or not HTTP): ``http.Connection.unreachable`` words it as every other command does.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, NamedTuple, TextIO
from urllib.parse import urlencode, urlsplit

from ..spec.sources import FILES_TYPE, sources_body

if TYPE_CHECKING:
    from .config import Target

TIMEOUT = 30.0  # seconds for the connection and for each read of the answer (``http.Connection``'s too)


class Unanswered(Exception):
    """The request failed on the way; ``reason`` is why (the socket's, ssl's or the answer's error)."""

    def __init__(self, reason: Exception):
        super().__init__(str(reason))
        self.reason = reason


class Answer(NamedTuple):
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes


def apply(target: Target, files: list[str], stdin: TextIO | None, namespace: str) -> Answer:
    """`apply -f FILES -n NAMESPACE` sent as ``remote.Remote.apply`` sends it: the files' text, for the
    server to validate."""
    headers = {"Authorization": f"Bearer {target.token}", "Accept": "application/json", "Content-Type": FILES_TYPE}
    return request(target.server, target.ca, "POST", "/api/v1/apply?" + urlencode({"namespace": namespace}), headers,
                   sources_body(files, stdin))


def request(server: str, ca: str | None, method: str, target: str, headers: dict[str, str], body: bytes,
            timeout: float = TIMEOUT) -> Answer:
    """``method`` ``target`` (a path and query under ``server``'s path prefix) with ``body``; the whole answer."""
    url = urlsplit(server)
    https = url.scheme == "https"
    host, port = url.hostname or "", url.port or (443 if https else 80)
    head = [f"{method} {url.path.rstrip('/')}{target} HTTP/1.1", f"Host: {url.netloc}", "Connection: close",
            f"Content-Length: {len(body)}", *(f"{name}: {value}" for name, value in headers.items())]
    sent = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body  # before the try: not the network's failure
    try:
        with _connect(host, port, https, ca, timeout) as sock:
            sock.sendall(sent)
            return _read_answer(sock)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise Unanswered(exc) from exc


def _connect(host: str, port: int, https: bool, ca: str | None, timeout: float) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=timeout)
    if not https:
        return sock
    import ssl

    try:
        context = ssl.create_default_context(cafile=ca) if ca else ssl.create_default_context()
        return context.wrap_socket(sock, server_hostname=host)
    except BaseException:
        sock.close()
        raise


def _read_answer(sock: socket.socket) -> Answer:
    received = bytearray()
    while b"\r\n\r\n" not in received:
        if not _receive(sock, received):
            if not received:  # as http.client says it (a TLS server spoken to in plain HTTP, say)
                raise ConnectionResetError("Remote end closed connection without response")
            raise ValueError("the answer ended inside its headers")
    head, _, rest = bytes(received).partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise ValueError(f"not an HTTP answer: {status_line[:80]!r}")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    body = bytearray(rest)
    while _receive(sock, body):  # `Connection: close`: the server closes after its answer
        pass
    if headers.get("transfer-encoding", "").lower() == "chunked":
        return Answer(int(parts[1]), headers, _unchunked(bytes(body)))
    if "content-length" in headers and len(body) < int(headers["content-length"]):
        raise ValueError(f"the answer ended after {len(body)} of its {headers['content-length']} bytes")
    return Answer(int(parts[1]), headers, bytes(body[:int(headers.get("content-length", len(body)))]))


def _receive(sock: socket.socket, into: bytearray) -> bool:
    """Read what has come into ``into``; False once the server has closed."""
    data = sock.recv(65536)
    into += data
    return bool(data)


def _unchunked(data: bytes) -> bytes:
    """The body of a chunked answer (each chunk: its size in hex, CRLF, the bytes, CRLF; size 0 ends it)."""
    out, at = bytearray(), 0
    while True:
        end = data.index(b"\r\n", at)
        size = int(data[at:end].split(b";")[0], 16)
        if size == 0:
            return bytes(out)
        out += data[end + 2:end + 2 + size]
        at = end + 2 + size + 2
