"""Every failure as JSON: ``{"error": CODE, "message": TEXT, "details": [...]}``, with an HTTP status that fits.

``install`` registers the handlers on the app (``app.create_app``). The message is the text the CLI
prints after ``error:`` (the same ``BrokerError``), so a client can show it as the CLI would; for an
invalid manifest ``details`` lists each problem (file, document, line, field), the file being the
request (``<request>``, or the ``filename`` the client passed). Statuses: 400 a request that cannot
be read, 401 no valid token, 403 a role that does not allow the verb, 404 not found, 409 refused by
the state of the store, 413 a body over the limit (``limits``), 422 invalid input, 502 a Docker host
failed, 503 the store cannot be reached; 500 is a bug (logged with its traceback).
"""

from __future__ import annotations

import json
import logging

from fastapi import FastAPI, Request, WebSocket
from fastapi.exceptions import RequestValidationError, WebSocketRequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from ..errors import BrokerError, Conflict, HostError, ManifestError, NotFound, StoreError, UsageError
from ..ops.tokens import Forbidden, Unauthenticated

log = logging.getLogger("brokerctl.api")

# The most specific class first: (class, status, code).
STATUSES = (
    (Unauthenticated, 401, "Unauthorized"),
    (Forbidden, 403, "Forbidden"),
    (ManifestError, 422, "Invalid"),
    (UsageError, 422, "Invalid"),
    (NotFound, 404, "NotFound"),
    (Conflict, 409, "Conflict"),
    (StoreError, 503, "StoreUnavailable"),
    (HostError, 502, "HostError"),
    (BrokerError, 409, "Failed"),  # refused by where things stand (a Pending task has no output yet, ...)
)
CODES = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 405: "MethodNotAllowed",
         409: "Conflict", 413: "TooLarge", 415: "UnsupportedMediaType", 422: "Invalid"}


class BadRequest(BrokerError):
    """A request the API cannot read (a body that is not text, a continue token it did not give)."""


def error_body(code: str, message: str, details: list | None = None) -> dict:
    return {"error": code, "message": message, "details": list(details or [])}


def error_response(status: int, code: str, message: str, details: list | None = None,
                   headers: dict | None = None) -> Response:
    return Response(json.dumps(error_body(code, message, details)), status, headers, media_type="application/json")


def ended_by(exc: BrokerError) -> dict:
    """How a stream that has begun reports an error: the JSON error and the CLI's exit code."""
    _, code = status_of(exc)
    return {**error_body(code, str(exc), getattr(exc, "problems", None)), "exitCode": exc.exit_code}


def status_of(exc: BrokerError) -> tuple[int, str]:
    if isinstance(exc, BadRequest):
        return 400, "BadRequest"
    return next((status, code) for cls, status, code in STATUSES if isinstance(exc, cls))


def broker_error(exc: BrokerError) -> Response:
    status, code = status_of(exc)
    details = exc.problems if isinstance(exc, ManifestError) else []
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return error_response(status, code, str(exc), details, headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(BrokerError)
    async def _broker(request: Request, exc: BrokerError) -> Response:
        return broker_error(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        details = [_validation_line(e) for e in exc.errors()]
        return error_response(422, "Invalid", f"invalid request: {details[0]}" if details else "invalid request",
                              details)

    @app.exception_handler(WebSocketRequestValidationError)
    async def _invalid_socket(websocket: WebSocket, exc: WebSocketRequestValidationError) -> None:
        # refused in the handshake's answer, as the other refusals of a WebSocket (``exec_socket``)
        details = [_validation_line(e) for e in exc.errors()]
        await websocket.send_denial_response(error_response(
            422, "Invalid", f"invalid request: {details[0]}" if details else "invalid request", details))

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> Response:
        message = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no such route: {request.method} {request.url.path}"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        return error_response(exc.status_code, CODES.get(exc.status_code, "Error"), message, [],
                              dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> Response:
        log.exception("%s %s failed", request.method, request.url.path)
        return error_response(500, "Internal", f"internal error ({type(exc).__name__}); the server's log has the "
                                               "details")


def _validation_line(error: dict) -> str:
    """``query.limit: Input should be greater than or equal to 1``."""
    where = ".".join(str(part) for part in error.get("loc", ()))
    return f"{where}: {error.get('msg', 'invalid')}"
