"""``/healthz`` (the process answers) and ``/readyz`` (it can serve: the store answers and, when this
server runs the controller, the controller's heartbeat is fresh). No token needed.

Registered by ``app``. A load balancer or an orchestrator asks these; ``/readyz`` is 503 with the
failing check named while the server cannot do its work.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from ..errors import StoreError
from ..ops import controller
from . import schemas
from .lists import Json

router = APIRouter()


@router.get("/healthz", responses={200: {"model": schemas.Health}}, tags=["health"])
def healthz() -> Json:
    """The process is alive and answers (nothing else is checked)."""
    return Json({"status": "ok", "checks": {"process": "ok"}})


@router.get("/readyz", responses={200: {"model": schemas.Health}, 503: {"model": schemas.Health}}, tags=["health"])
def readyz(request: Request) -> Json:
    """The store answers, and the controller of this server (unless it runs with --no-controller) wrote its
    heartbeat within the last 10 s."""
    checks, ok = {}, True
    try:
        with request.app.state.stores.use() as store:
            age = controller.heartbeat_age(store)
        checks["store"] = "ok"
    except StoreError as exc:
        checks["store"], ok, age = str(exc), False, None
    if request.app.state.settings.controller and checks["store"] == "ok":
        if age is None:
            checks["controller"], ok = "no controller holds the store's lease", False
        elif age >= controller.LIVE_HEARTBEAT:
            checks["controller"], ok = f"no heartbeat for {age:.1f}s", False
        else:
            checks["controller"] = f"heartbeat {max(age, 0.0):.1f}s ago"
    return Json({"status": "ok" if ok else "failing", "checks": checks}, status_code=200 if ok else 503)
