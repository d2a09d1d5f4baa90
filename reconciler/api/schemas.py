"""The documented shapes of what the API returns, for ``/openapi.json`` and the clients built from it.

Routes return the objects of ``views`` as they are (``lists.Json``); these models only describe
them, and the schema tests (schemathesis) check every response against them, so a field added to a
view without its line here is caught. ``spec`` and ``status`` stay open objects: the manifest
schemas (``brokerctl schema KIND``) describe specs. Called by the route modules (``responses=``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Error(Strict):
    error: str = Field(description="Unauthorized, Forbidden, NotFound, Conflict, Invalid, BadRequest, TooLarge, "
                                   "StoreUnavailable, HostError, Failed or Internal")
    message: str = Field(description="What the CLI prints after `error:`")
    details: list[str] = Field(description="Each problem of an invalid manifest or request")


class Metadata(Strict):
    name: str
    namespace: str | None = Field(None, description="Jobs and Services only")
    labels: dict[str, str]
    uid: str
    generation: int
    createdAt: str
    updatedAt: str
    deletedAt: str | None
    createdBy: str | None = Field(description="A token's user, `local:<OS user>`, `gitops:DIR` or `controller`")
    updatedBy: str | None


class Resource(Strict):
    apiVersion: Literal["broker/v1"]
    kind: Literal["Node", "Namespace", "Job", "Service", "Secret"]
    metadata: Metadata
    spec: dict[str, Any]
    status: dict[str, Any]


class ListMeta(Strict):
    continue_: str | None = Field(alias="continue", description="Pass as `continue` for the next page; null: last")
    remainingItemCount: int | None = Field(None, description="How many items a `limit` left out (first page only)")


class ResourceList(Strict):
    apiVersion: Literal["broker/v1"]
    kind: str
    metadata: ListMeta
    items: list[Resource]


class Task(Strict):
    id: str
    owner: str = Field(description="Job/NAME or Service/NAME")
    namespace: str
    index: int
    attempt: int
    node: str | None
    containerId: str | None
    phase: Literal["Pending", "Running", "Succeeded", "Failed", "Lost", "Stopped"]
    exitCode: int | None
    oomKilled: bool
    reason: str
    message: str
    createdAt: str
    startedAt: str | None
    finishedAt: str | None
    notBefore: str | None
    labels: dict[str, str]


class TaskList(Strict):
    apiVersion: Literal["broker/v1"]
    kind: Literal["TaskList"]
    metadata: ListMeta
    items: list[Task]


class Event(Strict):
    time: str
    object: str
    namespace: str | None
    type: str
    reason: str
    message: str
    task: str | None


class EventListMeta(Strict):
    continue_: None = Field(None, alias="continue")
    older: bool = Field(description="There are older events than these (raise `limit`, 0 for all)")


class EventList(Strict):
    apiVersion: Literal["broker/v1"]
    kind: Literal["EventList"]
    metadata: EventListMeta
    items: list[Event]


class AppliedItem(Strict):
    kind: str
    namespace: str | None
    name: str
    ref: str = Field(description="As `brokerctl apply` prints it: job/hello, team-a/job/nightly")
    outcome: Literal["created", "configured", "unchanged"]


class Applied(Strict):
    results: list[AppliedItem]
    warnings: list[str]


class Change(Strict):
    ref: str
    outcome: Literal["created", "configured", "pruned"]
    fields: list[str] = Field(description="`~ spec.replicas: 2 -> 3`, `+ path: new`, `- path: old`")


class Diff(Strict):
    changes: list[Change]


class Outcome(Strict):
    kind: str
    namespace: str | None
    name: str
    outcome: str = Field(description="As the CLI prints it after the ref: deleted, deleting, still stopping (...), "
                                     "cordoned, retried, ...")


class Deleted(Strict):
    kind: str
    namespace: str | None
    name: str
    ref: str
    outcome: str = Field(description="deleted, deleting, still stopping (...)")


class Outcomes(Strict):
    results: list[Deleted]


class Contained(Strict):
    kind: str
    name: str
    deleting: bool


class Description(Strict):
    kind: str
    object: Resource
    tasks: list[Task] = Field(description="A Job's or Service's tasks (history included); a Node's or Namespace's "
                                          "active ones")
    events: list[Event] = Field(description="Its last 20 events, oldest first")
    contents: list[Contained] = Field(description="A Namespace's Jobs, Services and Secrets")


class Identity(Strict):
    user: str
    role: Literal["admin", "edit", "view"]
    namespaces: list[str]


class StoreStatus(Strict):
    store: str
    storeId: str
    controller: dict[str, Any] | None = Field(description="The running controller's lease: pid, hostname, "
                                                          "heartbeat, startedAt, stats")
    heartbeatAge: float | None
    nodes: int
    ready: int
    tasks: dict[str, int]
    epoch: int = Field(description="The last leader's epoch (0: no controller ever led)")
    expiresIn: float | None = Field(description="Seconds until the lease expires (negative: expired that long ago)")
    expired: dict[str, Any] | None = Field(description="An expired lease's holder (pid, hostname): none leads")
    standbys: list[dict[str, Any]] = Field(description="The other controllers recently alive: pid, hostname, seen")


class Waited(Strict):
    met: str = Field(description="The condition reached")


class RunRequest(Strict):
    name: str = Field(description="The one-off Job's name")
    image: str
    command: list[str] | None = None
    slotsType: str = "default"
    env: dict[str, str] = {}


def run_request(body: dict) -> RunRequest:
    """The body of `run`, read after the caller's role is checked (a 422 naming each bad field)."""
    return request_body(RunRequest, body)


class Scale(Strict):
    replicas: int = Field(ge=0, le=2**31 - 1, description="How many replicas to keep running")


class Scaled(Strict):
    namespace: str
    name: str
    previous: int
    replicas: int


class Note(Strict):
    text: str
    warning: bool


class Progress(Strict):
    notes: list[Note]
    result: Any = Field(description="What the verb returned (rollout status: true once complete)")


class Revision(Strict):
    revision: int
    template: str
    current: bool
    image: str
    createdAt: str
    cause: str
    spec: dict[str, Any]


class RevisionList(Strict):
    apiVersion: Literal["broker/v1"]
    kind: Literal["RevisionList"]
    metadata: ListMeta
    items: list[Revision]


class Undone(Strict):
    revision: int
    template: str


class EditDocument(Strict):
    text: str = Field(description="The resource as `get -o yaml` shows it, under a header of comments: what "
                                  "`brokerctl edit` opens")


class EditRequest(Strict):
    original: str = Field(description="The text the edit began from (as GET gave it): its generation is checked")
    edited: str = Field(description="The text saved")
    filename: str = Field("<request>", max_length=255, description="How errors name the saved text")


class Edited(Strict):
    ref: str
    outcome: str | None = Field(description="configured or unchanged; null: cancelled (`message` says why)")
    message: str


class SyncSource(Strict):
    given: str
    name: str
    text: str | None
    inDirectory: bool = False
    problem: str = ""


class SyncRequest(Strict):
    directory: str = Field(description="The directory's absolute path on the client: the sync's source")
    commit: str | None = Field(None, description="The last git commit of the directory (short hash and subject)")
    sources: list[SyncSource] = Field(description="Each manifest file of the directory, read by the client "
                                                  "(its path under `directory`)")


class SyncReport(Strict):
    source: str
    lines: list[str] = Field(description="What `brokerctl sync` prints: what changed, was pruned or held back")
    failed: bool = Field(description="A file was held back or the sync refused (the CLI exits 1)")


class SyncFile(Strict):
    state: str
    message: str
    resources: list[str]


class SyncStatus(Strict):
    source: str
    syncedAt: str | None
    commit: str | None
    refused: str | None
    resources: int
    files: dict[str, SyncFile]


class SyncStatusList(Strict):
    items: list[SyncStatus]


def request_body(model: type[BaseModel], body: dict):
    """A JSON body as ``model``, read after the caller's role is checked (a 422 naming each bad field)."""
    from pydantic import ValidationError

    from ..errors import UsageError

    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise UsageError("invalid request: " + "; ".join(f"body.{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                                          for e in exc.errors())) from None


def body_of(model: type[BaseModel]) -> dict:
    """The ``openapi_extra`` of a route whose JSON body is ``model``."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}}


class Health(Strict):
    status: Literal["ok", "failing"]
    checks: dict[str, str]


def responses(model: type[BaseModel] | None = None, *, stream: str | None = None, extra: dict | None = None) -> dict:
    """The ``responses=`` of a route: 200 as ``model`` (and, for a route that can stream, NDJSON or
    text described by ``stream``), and the errors every route may answer."""
    ok: dict = {"description": "OK"}
    if model is not None:
        ok["model"] = model
    if stream:
        ok["content"] = {"application/x-ndjson": {"schema": {"type": "string"}, "example": stream}}
    out = {200: ok, **{code: {"model": Error, "description": text} for code, text in ERRORS.items()}}
    return {**out, **(extra or {})}


ERRORS = {400: "The request cannot be read (a body that is not YAML or JSON, a continue token this server did "
               "not give)", 401: "No valid token", 403: "The token's role does not allow this here", 404: "Not found",
          409: "Refused by the store's state", 413: "A body over 10 MiB", 422: "Invalid input",
          502: "A Docker host failed", 503: "The store cannot be reached"}
