"""Request bodies over the limit (10 MiB) are refused with 413, before they are read whole.

``BodyLimit`` is ASGI middleware (added by ``app.create_app``): a ``Content-Length`` over the limit
is answered at once, without reading a byte of the body; a body sent without one (chunked) is
counted as it arrives and refused as soon as it passes the limit. ``manifest_text`` is the body of
``apply`` and ``diff``: text, as YAML or JSON.
"""

from __future__ import annotations

from fastapi import Request

from .errors import BadRequest, error_response

MAX_BODY = 10 * 1024 * 1024
FILES_TYPE = "application/vnd.brokerctl.files+json"  # the files a remote `brokerctl apply -f` read, named
MANIFEST_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "application/json",
                  "text/plain", FILES_TYPE)


class TooLarge(Exception):
    """Raised inside the app once a chunked body passes the limit."""


class BodyLimit:
    def __init__(self, app, limit: int = MAX_BODY):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await self._refuse(scope, receive, send)
        seen = 0
        started = False

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise TooLarge
            return message

        async def watched(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except TooLarge:
            if started:
                raise
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope, receive, send):
        response = error_response(413, "TooLarge", f"request body over {self.limit // (1024 * 1024)} MiB; "
                                                   "split the manifests into several requests",
                                  headers={"Connection": "close"})
        await response(scope, receive, send)


async def manifest_text(request: Request) -> str:
    """The body of ``apply``/``diff``: YAML or JSON text (``Content-Type`` application/yaml or
    application/json; text/plain is read the same way), or (``FILES_TYPE``) a JSON object
    ``{"sources": [...]}`` of the files a remote CLI read (``spec.sources.Source.to_json``)."""
    kind = request.headers.get("content-type", "application/yaml").split(";")[0].strip().lower()
    if kind not in MANIFEST_TYPES:
        raise BadRequest(f"Content-Type {kind}: send the manifests as application/yaml or application/json")
    body = await request.body()
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"the body is not UTF-8 text (byte {exc.start}); send the manifests as YAML or JSON "
                         "text") from None
