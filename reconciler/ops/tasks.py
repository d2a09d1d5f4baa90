"""The task verbs: logs (stored output, else the live stream), exec (a command in a running task's
container), run (a one-off Job, followed to its end), wait (until a resource reaches a condition),
wait_jobs (`apply --wait`), retry.

Called by the CLI's task commands (``cli/tasks.py``, ``cli/resources.py`` for ``apply --wait``)
and meant for the HTTP API. Output comes back as ``Output`` chunks of bytes and progress as
``polling.Note``s; the waiting loops run on a ``polling.Clock`` a test can replace. A Job or
Service is named in a ``namespace`` (``default`` unless given); task ids are the same in every one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, NamedTuple

from ..errors import BrokerError, UsageError
from ..kinds import DEFAULT_NAMESPACE, Kind, TaskPhase, object_ref
from ..records import ResourceRecord, TaskRecord
from .polling import SYSTEM, Clock, Note, ticks
from .tokens import author


@dataclass(frozen=True)
class Output:
    """A chunk of one task's output, as the container wrote it (stdout and stderr interleaved)."""

    task: str
    data: bytes


class TaskDidNotExit(BrokerError):
    """`run`: the task ended without an exit code of its own (it never started, or its node was lost)."""

    exit_code = 125  # what `docker run` exits with when the container could not run


def retry(store, name: str, namespace: str = DEFAULT_NAMESPACE, by: str | None = None) -> None:
    """Re-run a Failed Job's failed completions with a fresh backoffLimit (history is kept)."""
    store.retry_job(name, namespace=namespace, by=author(by))


# -- logs ------------------------------------------------------------------------------------------


class LogWindow(NamedTuple):
    """`logs --tail N --since 10m`: the last ``tail`` lines (None: all) written after ``since`` (seconds
    since the epoch; None: any time). Docker applies both to a live container; stored output has no
    time per line, so there ``since`` keeps or drops a task's output whole: kept when the task was
    still running at ``since`` (finished at or after it)."""

    tail: int | None = None
    since: float | None = None


EVERYTHING = LogWindow()


def log_window(tail: int | None = None, since_seconds: float | None = None, clock: Clock = SYSTEM) -> LogWindow:
    """The window of `logs --tail N --since DURATION`, ``since_seconds`` back from now."""
    return LogWindow(tail, None if since_seconds is None else clock.time() - since_seconds)


def task_logs(store, task_id: str, follow: bool = False, window: LogWindow = EVERYTHING) -> Iterator[Output]:
    """One task's output: kept in the store once its container is gone, else streamed from its node
    (``follow``: until the container stops). A missing or Pending task is refused at the call, before
    any output (a front end can still answer with an error rather than an empty stream)."""
    t = store.task(task_id)
    if t.phase is TaskPhase.PENDING and store.output(t.id) is None:
        why = ": ".join(filter(None, [t.reason, t.message]))
        raise BrokerError(f"task {t.id} is Pending: it has not started yet, so it has no output"
                          + (f" ({why})" if why else ""))
    return output(store, t, follow, window=window)


def owner_logs(store, kind: Kind, name: str, follow: bool = False,
               namespace: str = DEFAULT_NAMESPACE, window: LogWindow = EVERYTHING) -> Iterator[Output]:
    """The output of every task of a Job or Service, oldest task first (``window`` applies to each; a
    missing owner is refused at the call)."""
    store.resource(kind, name, namespace=namespace)
    return _each_output(store, store.tasks(owner=(kind, name), namespace=namespace), follow, window)


def _each_output(store, tasks: list[TaskRecord], follow: bool, window: LogWindow) -> Iterator[Output]:
    for t in tasks:
        yield from output(store, t, follow, window=window)


def prefixed(chunk: Output) -> bytes:
    """A chunk of output with each line starting ``[TASK-ID] ``: how the output of several tasks is shown."""
    tag = f"[{chunk.task}] ".encode()
    return b"".join(tag + line for line in chunk.data.splitlines(keepends=True))


def output(store, t: TaskRecord, follow: bool, skip: int = 0, window: LogWindow = EVERYTHING,
           clock: Clock = SYSTEM) -> Iterator[Output]:
    """The task's stored output past its first ``skip`` bytes (those an earlier live stream gave), or,
    while nothing is stored and the task runs, its live stream from the node; within ``window``."""
    saved = store.output(t.id)
    if saved is not None:
        ended = t.finished_at if t.finished_at is not None else t.created_at
        if window.since is not None and ended < window.since:
            return
        data = saved[0][skip:]
        if window.tail is not None:
            data = b"".join(data.splitlines(keepends=True)[-window.tail:]) if window.tail else b""
        if data:
            yield Output(t.id, data)
        return
    if t.phase is TaskPhase.RUNNING and t.container_id and t.node:
        from .nodes import node_host

        host = node_host(store, t.node)
        streamed = 0
        for chunk in host.logs(t.container_id, follow=follow, tail=window.tail, since=window.since):
            streamed += len(chunk)
            yield Output(t.id, chunk)
        if window == EVERYTHING:
            yield from _stored_rest(store, t.id, streamed, STORED_WAIT if follow else 0.0, clock)


STORED_WAIT = 10.0  # seconds `logs -f` waits, once the live stream ends, for the controller to store the output


def _stored_rest(store, task_id: str, streamed: int, wait: float, clock: Clock = SYSTEM) -> Iterator[Output]:
    """What the live stream did not give: it ends when the container stops, or finds it already gone
    (collected and removed between reading the task and asking its node), possibly before the last
    lines; the controller stores the whole output as it collects the container. Waits up to ``wait``
    seconds for that (a follower expects the end of the output); nothing if it never comes."""
    for _ in ticks(0.1, until=clock.monotonic() + wait, clock=clock):
        saved = store.output(task_id)
        if saved is not None:
            if saved[0][streamed:]:
                yield Output(task_id, saved[0][streamed:])
            return


# -- exec ------------------------------------------------------------------------------------------


def check_command(task_id: str, command: list[str]) -> None:
    """An exec needs a command (checked before the task is looked up, by the API too)."""
    if not command:
        raise UsageError(f"exec {task_id}: name the command after --, e.g. `brokerctl exec {task_id} -- sh`")


def exec_in(store, task_id: str, command: list[str], stdin: Iterable[bytes] | None,
            write: Callable[[int, bytes], None], tty: bool = False, size: tuple[int, int] | None = None) -> int:
    """Run ``command`` in a Running task's container (Go-Docker's interactive jobs) and return its exit
    code; ``stdin``, ``write``, ``tty`` and ``size`` as ``docker.host.Host.exec`` takes them."""
    check_command(task_id, command)
    t = store.task(task_id)
    if t.phase is not TaskPhase.RUNNING or not t.container_id or not t.node:
        why = ": ".join(filter(None, [t.reason, t.message]))
        raise BrokerError(f"task {t.id} is {t.phase.value}, not Running: there is no container to run a command in"
                          + (f" ({why})" if why else ""))
    from .nodes import node_host

    return node_host(store, t.node).exec(t.container_id, list(command), stdin, write, tty=tty, size=size)


# -- run -------------------------------------------------------------------------------------------


def one_off_job(name: str, image: str, command: list[str] | None, slots_type: str, env: dict[str, str],
                namespace: str = DEFAULT_NAMESPACE):
    """The Job `run` creates (one completion, no retry), validated as `apply` validates a manifest."""
    from pydantic import ValidationError

    from ..spec.models import Job

    doc = {"apiVersion": "broker/v1", "kind": "Job", "metadata": {"name": name, "namespace": namespace},
           "spec": {"executionType": slots_type, "backoffLimit": 0,
                    "template": {"image": image, "command": list(command) if command else None, "env": env}}}
    try:
        return Job.model_validate(doc)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(x) for x in e['loc'] if x != '[key]')}: "
                             f"{e['msg'].removeprefix('Value error, ')}" for e in exc.errors())
        raise UsageError(f"brokerctl run {name}: {problems}") from None


def run(store, job, clock: Clock = SYSTEM, by: str | None = None) -> Iterator[Note | Output]:
    """Create the one-off ``job``, then yield its task's output, live while it runs and the rest from
    the store once it ended. Returns the finished task; ``TaskDidNotExit`` if it has no exit code."""
    name, namespace = job.metadata.name, job.namespace
    try:
        store.resource(Kind.JOB, name, namespace=namespace)
    except BrokerError:
        pass
    else:
        where, flag = (("", "") if namespace == DEFAULT_NAMESPACE
                       else (f" in namespace '{namespace}'", f" -n {namespace}"))
        raise UsageError(f"Job '{name}' already exists{where}; pick another name or "
                         f"`brokerctl delete job {name}{flag}`")
    store.apply([job], by=author(by))
    lease = store.lease()
    if not lease or clock.time() - lease["heartbeat"] > 10:
        yield Note("no controller is running; the job waits until `brokerctl controller` starts", warning=True)
    t = yield from _follow_one_off(store, name, namespace, clock)
    if t.exit_code is None:
        raise TaskDidNotExit(f"task {t.id} {t.phase.value}: {t.reason}: {t.message}")
    return t


def _follow_one_off(store, name: str, namespace: str, clock: Clock) -> Iterator[Output]:
    streamed: int | None = None  # bytes shown live; the stored output fills in what the stream missed
    for _ in ticks(0.1, clock=clock):
        t = _last_task(store, name, namespace)
        if t is not None and t.phase is TaskPhase.RUNNING and streamed is None:
            streamed = 0
            for chunk in output(store, t, follow=True):
                streamed += len(chunk.data)
                yield chunk
            t = _last_task(store, name, namespace)  # the stream ended: the task may be over already
        if t is not None and not t.active:
            yield from output(store, t, follow=False, skip=streamed or 0)
            return t


def _last_task(store, name: str, namespace: str) -> TaskRecord | None:
    tasks = store.tasks(owner=(Kind.JOB, name), namespace=namespace)
    return tasks[-1] if tasks else None


# -- wait ------------------------------------------------------------------------------------------


CONDITIONS = {Kind.JOB: ("Complete", "Failed"), Kind.SERVICE: ("Ready",), Kind.NODE: ("Ready",)}
OPPOSITE = {"Complete": "Failed", "Failed": "Complete"}


@dataclass(frozen=True)
class Condition:
    """What `wait` waits for: the condition ``want`` of ``kind``/``name`` (``target`` as the user wrote it)."""

    target: str
    kind: Kind
    name: str
    want: str
    namespace: str = DEFAULT_NAMESPACE


def condition(target: str, text: str, namespace: str = DEFAULT_NAMESPACE) -> Condition:
    """Read `wait`'s KIND/NAME and ``condition=X``; a condition the kind cannot reach is a UsageError."""
    from .refs import parse_ref

    key, _, want = text.partition("=")
    if key != "condition" or want not in ("Complete", "Failed", "Ready"):
        raise UsageError(f"--for {text!r}: use condition=Complete, condition=Failed or condition=Ready")
    kind, name = parse_ref(target)
    valid = CONDITIONS[kind]
    if want not in valid:
        raise UsageError(f"--for {text!r}: a {kind.value} has no {want} condition; use "
                         + " or ".join(f"condition={c}" for c in valid))
    return Condition(target, kind, name, want, namespace)


@dataclass(frozen=True)
class ConditionState:
    met: frozenset[str]  # the conditions the resource has reached
    detail: str  # where it stands, for people


def condition_state(r: ResourceRecord) -> ConditionState:
    """Which conditions a resource has reached: a Job is Complete or Failed by its phase; a Service is
    Ready when every replica is ready and runs the current template; a Node when its probes say so."""
    st = r.status
    if r.kind is Kind.JOB:
        phase = st.get("phase", "Pending")
        detail = f"phase {phase}, {st.get('succeeded', 0)}/{r.spec['completions']} succeeded"
        if st.get("message"):
            detail += f"; {st['message']}"
        return ConditionState(frozenset({phase} & {"Complete", "Failed"}), detail)
    if r.kind is Kind.SERVICE:
        from .rollout import template_of

        want = r.spec["replicas"]
        ready = st.get("ready", 0) >= want and st.get("updated", 0) >= want and st.get("revision") == template_of(r)
        return ConditionState(frozenset({"Ready"} if ready else ()),
                              f"{st.get('ready', 0)}/{want} ready, {st.get('updated', 0)} up to date")
    cond = st.get("condition", "Unknown")
    return ConditionState(frozenset({"Ready"} if cond == "Ready" else ()), f"condition {cond}: {st.get('message', '')}")


def wait(store, cond: Condition, timeout: float, clock: Clock = SYSTEM) -> None:
    """Return once the resource meets ``cond``; BrokerError when it reaches the opposite outcome or
    ``timeout`` seconds pass (with where it stands)."""
    for _ in ticks(0.2, clock.deadline(timeout), clock):
        state = condition_state(store.resource(cond.kind, cond.name, namespace=cond.namespace))
        if cond.want in state.met:
            return
        opposite = OPPOSITE.get(cond.want)
        if opposite and opposite in state.met:
            raise BrokerError(f"{cond.target} reached {opposite} instead of {cond.want}: {state.detail}")
    raise BrokerError(f"timed out after {timeout:g}s waiting for {cond.target} condition={cond.want} "
                      f"({state.detail})")


def wait_jobs(store, jobs: list, timeout: float, clock: Clock = SYSTEM) -> Iterator[Note]:
    """Wait until every Job of ``jobs`` (names in ``default``, or (namespace, name) pairs) is Complete or
    Failed, yielding a line as each ends; BrokerError if any failed, or if ``timeout`` seconds (0: no
    limit) pass first."""
    pending = {(DEFAULT_NAMESPACE, j) if isinstance(j, str) else tuple(j) for j in jobs}
    failed = []
    for _ in ticks(0.2, clock.deadline(timeout if timeout > 0 else None), clock):
        for namespace, name in sorted(pending):
            st = store.resource(Kind.JOB, name, namespace=namespace).status
            if st.get("phase") in ("Complete", "Failed"):
                pending.discard((namespace, name))
                yield Note(f"{object_ref(Kind.JOB, namespace, name)} {st['phase'].lower()}"
                           + (f": {st['message']}" if st.get("message") else ""))
                if st["phase"] == "Failed":
                    failed.append(name if namespace == DEFAULT_NAMESPACE else f"{namespace}/{name}")
        if not pending:
            break
    if pending:
        raise BrokerError(f"timed out after {timeout:g}s waiting for "
                          f"{', '.join(object_ref(Kind.JOB, ns, n) for ns, n in sorted(pending))}")
    if failed:
        raise BrokerError(f"{len(failed)} job(s) failed: {', '.join(failed)}; see `brokerctl describe job NAME`")
