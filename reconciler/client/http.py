"""One server, spoken to over HTTP(S): requests, JSON answers, streams, and the server's errors
raised as the CLI's own (``BrokerError`` classes, same message, same exit code).

Called by ``remote``. Built on the standard library's ``http.client`` (with ``ssl``) rather than
httpx, which the package does not depend on at run time (the test extra brings it), and which
costs several times the import of ``http.client``: start-up is the point of a remote command.
One kept connection serves a command's requests; a stream (a followed log, a watch, `run`) takes
a connection of its own, and `exec` a WebSocket (``websockets``' synchronous client, imported by that
command alone). TLS is verified against the system's CAs, or ``--ca FILE`` alone. A request
that does not stream accepts gzip (a list of 10,000 tasks is about 4 MB of JSON and a fortieth of
that gzipped, as the server keeps it): its answer is decompressed with ``zlib``.
"""

from __future__ import annotations

import json
import socket
import ssl
import zlib
from http import client as httpclient
from typing import Iterator
from urllib.parse import quote, urlencode, urlsplit

from ..errors import BrokerError, Conflict, Forbidden, HostError, ManifestError, NotFound, StoreError, UsageError
from .oneshot import TIMEOUT  # seconds for a connection and for each read of an answer that does not stream

GZIP_WBITS = 16 + zlib.MAX_WBITS  # zlib's window bits for a gzip stream (header and trailer checked)
ERROR_CLASSES = {"Forbidden": Forbidden, "NotFound": NotFound, "Conflict": Conflict, "StoreUnavailable": StoreError,
                 "HostError": HostError}


class Unauthorized(BrokerError):
    """The server refused the token (missing, unknown or revoked)."""


class Unreachable(BrokerError):
    """The server did not answer (refused, name unknown, TLS not trusted, timed out)."""


def path_of(*parts: str) -> str:
    """``/api/v1/`` + the parts, each quoted (a name cannot add a path segment)."""
    return "/api/v1/" + "/".join(quote(p, safe="") for p in parts)


class Connection:
    def __init__(self, server: str, token: str, ca: str | None = None, origin: str = "--server"):
        self.server, self.token, self.ca, self.origin = server, token, ca, origin
        url = urlsplit(server)
        self.https = url.scheme == "https"
        self.host, self.port = url.hostname or "", url.port or (443 if self.https else 80)
        self.prefix = url.path.rstrip("/")
        self._kept: httpclient.HTTPConnection | None = None
        self._ssl: ssl.SSLContext | None = None

    # -- connections ----------------------------------------------------------------------------------

    def _context(self) -> ssl.SSLContext:
        if self._ssl is None:
            try:
                self._ssl = ssl.create_default_context(cafile=self.ca) if self.ca else ssl.create_default_context()
            except (OSError, ssl.SSLError) as exc:
                raise UsageError(f"--ca {self.ca}: cannot load it as PEM CA certificates ({exc})") from None
        return self._ssl

    def _open(self, timeout: float | None) -> httpclient.HTTPConnection:
        if self.https:
            return httpclient.HTTPSConnection(self.host, self.port, timeout=timeout, context=self._context())
        return httpclient.HTTPConnection(self.host, self.port, timeout=timeout)

    def _send(self, method: str, path: str, params: dict | None, body: bytes | None, content_type: str | None,
              timeout: float | None, kept: bool, gzipped: bool = False) -> httpclient.HTTPResponse:
        target = self.prefix + path + (f"?{urlencode(params, doseq=True)}" if params else "")
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        if gzipped:
            headers["Accept-Encoding"] = "gzip"
        for attempt in (1, 2):
            conn = self._kept if kept and self._kept is not None else self._open(timeout)
            try:
                conn.request(method, target, body=body, headers=headers)
                response = conn.getresponse()
            except (ConnectionResetError, BrokenPipeError, httpclient.RemoteDisconnected) as exc:
                conn.close()
                self._kept = None if kept else self._kept
                if attempt == 1 and kept:  # a kept connection the server closed meanwhile: once more, anew
                    continue
                raise self.unreachable(exc) from None
            except (OSError, httpclient.HTTPException) as exc:
                conn.close()
                raise self.unreachable(exc) from None
            if kept:
                self._kept = conn
            return response
        raise AssertionError("unreachable")

    def unreachable(self, exc: Exception) -> BrokerError:
        """What the CLI says of a request that failed on the way (refused, unresolved, TLS, timed out)."""
        where = f"the server {self.server}" + (f" ({self.origin})" if self.origin else "")
        if isinstance(exc, ssl.SSLCertVerificationError):
            return Unreachable(f"{where}: its TLS certificate is not trusted ({exc.verify_message}); give the CA "
                               "that signed it with --ca FILE (`brokerctl login URL --token T --ca FILE`)")
        if isinstance(exc, ssl.SSLError):
            return Unreachable(f"{where}: TLS failed ({exc.reason or exc}); is it serving https? "
                               "(`brokerctl server --tls-cert/--tls-key`)")
        if isinstance(exc, socket.gaierror):
            return Unreachable(f"{where}: cannot resolve {self.host!r} ({exc.strerror}); check the URL")
        if isinstance(exc, (TimeoutError, socket.timeout)):
            return Unreachable(f"{where} did not answer in time; check that it runs and the URL")
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        return Unreachable(f"cannot reach {where}: {reason}; check the URL and that `brokerctl server` runs there")

    def websocket(self, path: str, params: dict | None = None):
        """A WebSocket to ``path`` (a ``websockets.sync.client.ClientConnection``): the token in its
        ``Authorization`` header, TLS as for requests, no proxy (as ``http.client``); a refusal (the
        server's JSON error in a denial response) raised as the CLI's error."""
        from websockets.exceptions import InvalidHandshake, InvalidStatus
        from websockets.sync.client import connect

        url = urlsplit(self.server)
        target = (f"{'wss' if self.https else 'ws'}://{url.netloc}{self.prefix}{path}"
                  + (f"?{urlencode(params, doseq=True)}" if params else ""))
        try:
            return connect(target, additional_headers={"Authorization": f"Bearer {self.token}"},
                           ssl=self._context() if self.https else None, proxy=None, compression=None,
                           open_timeout=TIMEOUT, max_size=None)
        except InvalidStatus as exc:
            raise self.error(exc.response.status_code, exc.response.body or b"") from None
        except (OSError, InvalidHandshake) as exc:
            raise self.unreachable(exc) from None

    def close(self) -> None:
        if self._kept is not None:
            self._kept.close()
            self._kept = None

    # -- requests -------------------------------------------------------------------------------------

    def call(self, method: str, path: str, params: dict | None = None, body: bytes | None = None,
             content_type: str | None = None, timeout: float | None = TIMEOUT) -> dict:
        """One request; its JSON answer, or the server's error raised as the CLI's."""
        response = self._send(method, path, params, body, content_type, timeout, kept=timeout == TIMEOUT,
                              gzipped=True)
        data = response.read()
        if (response.getheader("Content-Encoding") or "").lower() == "gzip":
            try:
                data = zlib.decompress(data, GZIP_WBITS)
            except zlib.error as exc:
                raise BrokerError(f"the server {self.server} sent a gzip answer that does not decompress ({exc}); "
                                  "try again, or check what stands between you and it") from None
        if response.status >= 400:
            raise self.error(response.status, data)
        return json.loads(data) if data else {}

    def stream(self, method: str, path: str, params: dict | None = None, body: bytes | None = None,
               content_type: str | None = None) -> httpclient.HTTPResponse:
        """A request whose answer streams (no read timeout), on a connection of its own; errors raised."""
        response = self._send(method, path, params, body, content_type, None, kept=False)
        if response.status >= 400:
            raise self.error(response.status, response.read())
        return response

    def lines(self, method: str, path: str, params: dict | None = None, body: bytes | None = None,
              content_type: str | None = None) -> Iterator[dict]:
        """The NDJSON objects of a streamed answer, as they come (a JSON object: itself alone)."""
        response = self.stream(method, path, params, body, content_type)
        try:
            if "ndjson" not in (response.getheader("Content-Type") or ""):
                yield json.loads(response.read())
                return
            while line := response.readline():
                if line.strip():
                    yield json.loads(line)
        finally:
            response.close()

    def error(self, status: int, data: bytes) -> BrokerError:
        """The server's JSON error as the CLI's exception."""
        try:
            body = json.loads(data)
            code, message, details = body["error"], body["message"], body.get("details") or []
        except (ValueError, KeyError, TypeError):
            return BrokerError(f"the server {self.server} answered {status} without a brokerctl error: "
                               f"{data[:200].decode(errors='replace')!r}; is it a brokerctl server?")
        return raised(code, message, details, status, self)


def raised(code: str, message: str, details: list, status: int = 0, conn: Connection | None = None,
           exit_code: int | None = None) -> BrokerError:
    """The ``BrokerError`` of an error the server reported (as a status, or an ``ERROR`` line of a stream)."""
    if code == "Unauthorized":
        where = (f"{conn.server}" + (f" ({conn.origin})" if conn.origin else "")) if conn else "the server"
        exc: BrokerError = Unauthorized(f"{where} refused the token: {message}; `brokerctl login URL --token T` "
                                        "with a valid one (`brokerctl token create` on the server's host)")
    elif code == "Invalid":
        exc = ManifestError(details) if details and "\n".join(details) == message else UsageError(message)
    elif code in ERROR_CLASSES:
        exc = ERROR_CLASSES[code](message)
    else:
        exc = BrokerError(message)
    if exit_code is not None and exit_code != exc.exit_code:
        exc.exit_code = exit_code
    return exc
