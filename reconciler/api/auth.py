"""Who is asking: the bearer token of each request, and the store connection a handler uses.

``caller`` is the dependency of every route but ``/healthz``, ``/readyz`` and (unless the server
runs with ``--metrics-token``) ``/metrics``: no token, or one that is malformed, unknown or revoked,
is 401 with ``WWW-Authenticate: Bearer`` (a WebSocket reads the same header with ``bearer_token``).
The handler then asks ``ops.tokens.allow`` whether the
caller's role allows its verb where it is asked (403 naming the role and namespace otherwise).
``store`` lends the handler a connection of the app's pool (``stores``) for the request's duration.
"""

from __future__ import annotations

from typing import Annotated, Iterator

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..ops import tokens
from ..ops.tokens import Identity

bearer = HTTPBearer(auto_error=False, scheme_name="token",
                    description="A brokerctl token (`brokerctl token create`): `Authorization: Bearer bk_...`.")


def caller(request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Identity:
    with request.app.state.stores.use() as store:
        return tokens.authenticate(store, credentials.credentials if credentials else None)


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer ...`` header, as ``bearer`` reads it (None: none given), for
    a WebSocket, which FastAPI's security dependencies do not serve."""
    scheme, _, value = (authorization or "").partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def store(request: Request) -> Iterator:
    with request.app.state.stores.use() as connection:
        yield connection


Caller = Annotated[Identity, Depends(caller)]
Store = Annotated[object, Depends(store)]
