"""The one exception family of brokerctl.

Every error a user can cause is a ``BrokerError`` whose message names the object and the fix.
The CLI catches ``BrokerError`` in one place, prints it on stderr and exits with ``exit_code``.
Raised by manifests, store, dockerhost and controller.

The store's errors that suggest a next step are built here, one constructor per kind of error
(``NotFound.resource``, ``Conflict.node_busy``, ...). Their message is the fault (``subject``)
followed by the step phrased for the command line; ``step`` names that step and ``about`` holds
what it is about (kind, name, path...), so that a front end other than the CLI (an HTTP API) can
phrase the step its own way from ``subject``, ``step`` and ``about`` without copying these texts.
Steps: ``list`` (list the objects of ``kind``), ``wait-gone`` (wait until it is deleted, then
apply again), ``recreate`` (delete the Job, apply it again), ``drain`` (drain the node first),
``history`` (list a Service's revisions), ``create-store``, ``choose-store``, ``check-database`` (start the
PostgreSQL server or correct its URL), ``use-moved-store`` (the store the data moved to),
``create-namespace`` (apply the Namespace first), ``confirm`` (repeat with --yes), ``set-request`` (request
what the namespace's quota caps), ``run-as`` (run as a user the namespace's ``runAs`` allows). A resource outside
the ``default`` namespace has its ``namespace`` in ``about`` too.
"""

from __future__ import annotations


class BrokerError(Exception):
    """Base error; ``exit_code`` is what the CLI exits with. ``subject``: the fault without the
    suggested step (the whole message when there is none); ``step``, ``about``: see the module."""

    exit_code = 1

    def __init__(self, message: str = "", *, subject: str | None = None, step: str | None = None, **about):
        super().__init__(message)
        self.subject = message if subject is None else subject
        self.step = step
        self.about = about

    @classmethod
    def _with_step(cls, subject: str, command_line: str, step: str, sep: str = "; ", **about):
        """The CLI's message: the fault, then the next step as the command line says it."""
        return cls(f"{subject}{sep}{command_line}", subject=subject, step=step, **about)


def combined(problems: list[BrokerError]) -> BrokerError:
    """Several errors of one request as one: the first's type and step, every message on its own line."""
    if len(problems) == 1:
        return problems[0]
    first = problems[0]
    return type(first)("\n".join(map(str, problems)), subject="\n".join(p.subject for p in problems),
                       step=first.step, **first.about)


class ManifestError(BrokerError):
    """One or more manifest documents failed to parse or validate (nothing was written)."""

    exit_code = 2

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class UsageError(BrokerError):
    """Bad flags or arguments on the command line."""

    exit_code = 2

    @classmethod
    def out_of_range(cls, option: str, value, subject: str) -> "UsageError":
        """A value outside its bounds; the CLI names the option it came from (``--replicas 7: ...``)."""
        return cls(f"--{option} {value}: {subject}", subject=subject, option=option, value=value)


def _in(namespace: str | None) -> tuple[str, str, dict]:
    """How a message says a namespace other than ``default``: (" in namespace 'x'", " -n x", about)."""
    if not namespace or namespace == "default":
        return "", "", {}
    return f" in namespace '{namespace}'", f" -n {namespace}", {"namespace": namespace}


class NotFound(BrokerError):
    """A resource or task that the user named does not exist."""

    @classmethod
    def resource(cls, kind: str, name: str, namespace: str | None = None) -> "NotFound":
        where, flag, about = _in(namespace)
        return cls._with_step(f"{kind} '{name}' not found{where}", f"`brokerctl get {kind.lower()}s{flag}` lists them",
                              "list", kind=kind, name=name, **about)

    @classmethod
    def namespace(cls, name: str, what: str = "") -> "NotFound":
        """A namespace that a resource is applied into does not exist; ``what`` names the resource
        (``job.yaml: document 2 (Job/nightly)``) and starts the message."""
        return cls._with_step(f"{what + ': ' if what else ''}namespace '{name}' does not exist",
                              f"apply a Namespace named {name} first (kind: Namespace), or use -n/--namespace",
                              "create-namespace", kind="Namespace", name=name)

    @classmethod
    def task(cls, task_id: str) -> "NotFound":
        return cls._with_step(f"task '{task_id}' not found", "`brokerctl get tasks` lists them", "list",
                              kind="Task", name=task_id)


class Conflict(BrokerError):
    """The request clashes with the store's state (e.g. a resource still being deleted)."""

    @classmethod
    def being_deleted(cls, kind: str, name: str, namespace: str | None = None) -> "Conflict":
        where, flag, about = _in(namespace)
        return cls._with_step(
            f"{kind} '{name}' is being deleted{where}",
            f"wait until `brokerctl get {kind.lower()}s{flag}` no longer lists it (the controller removes its "
            "containers first), then apply again", "wait-gone", kind=kind, name=name, **about)

    @classmethod
    def namespace_being_deleted(cls, name: str, what: str = "") -> "Conflict":
        """A resource is applied into a namespace that is being deleted; ``what`` as for ``NotFound.namespace``."""
        return cls._with_step(
            f"{what + ': ' if what else ''}namespace '{name}' is being deleted",
            "wait until `brokerctl get namespaces` no longer lists it, apply the Namespace again, then this",
            "wait-gone", kind="Namespace", name=name)

    @classmethod
    def quota_needs_request(cls, namespace: str, field: str, cap, what: str = "") -> "Conflict":
        """A Job or Service without a ``field`` (cpus, memory) request goes into a namespace whose quota
        caps it, so its tasks could not be counted; ``what`` as for ``NotFound.namespace``."""
        return cls._with_step(
            f"{what + ': ' if what else ''}spec.template.resources.{field}: namespace '{namespace}' caps {field} "
            f"(quota.{field}: {f'{cap:g}' if isinstance(cap, float) else cap}), so every task in it must request {field}",
            f"set spec.template.resources.{field}, or remove quota.{field} from Namespace {namespace}",
            "set-request", kind="Namespace", name=namespace, field=field)

    @classmethod
    def default_namespace(cls) -> "Conflict":
        return cls("namespace 'default' cannot be deleted: it is where resources go when none is named; "
                   "delete what is in it instead", kind="Namespace", name="default")

    @classmethod
    def unconfirmed(cls, name: str, contents: str) -> "Conflict":
        """Deleting a namespace that holds resources, without --yes; ``contents``: what it holds."""
        return cls._with_step(f"namespace '{name}' holds {contents}",
                              f"pass --yes to delete namespace {name} and everything in it", "confirm",
                              kind="Namespace", name=name)

    @classmethod
    def immutable_template(cls, name: str, changed: list[str]) -> "Conflict":
        """``changed``: the template fields (``command``, ``image``...) the new spec changes."""
        fields = ", ".join(f"spec.template.{k}" for k in changed)
        return cls._with_step(
            f"Job '{name}': spec.template cannot change while the Job exists ({fields} changed)",
            f"delete it (`brokerctl delete job {name}`) and apply it again, or apply it under a new name",
            "recreate", kind="Job", name=name, changed=changed)

    @classmethod
    def node_busy(cls, name: str, active: int) -> "Conflict":
        return cls._with_step(
            f"Node '{name}' has {active} active task(s)",
            f"drain it first (`brokerctl drain {name}`), or pass --force (the tasks are replaced elsewhere and "
            "their containers are left running on that host, untracked)", "drain", kind="Node", name=name)

    @classmethod
    def no_earlier_revision(cls, name: str) -> "Conflict":
        return cls._with_step(f"Service '{name}' has no earlier revision to roll back to",
                              f"`brokerctl rollout history service/{name}` lists them", "history",
                              kind="Service", name=name)


class Forbidden(BrokerError):
    """A namespace's policy refuses what was asked (a user its ``runAs`` does not allow)."""

    @classmethod
    def run_as(cls, what: str, namespace: str, user: str, fault: str, fix: str) -> "Forbidden":
        """A Job or Service whose template user ``runAs`` refuses; ``fault`` and ``fix`` from
        ``spec.namespace.user_refusal``, ``what`` as for ``NotFound.namespace``."""
        return cls._with_step(f"{what + ': ' if what else ''}{fault}", fix, "run-as",
                              kind="Namespace", name=namespace, user=user)

    @classmethod
    def run_as_strands(cls, what: str, namespace: str, refused: list[tuple[str, str]]) -> "Forbidden":
        """A Namespace's new ``runAs`` would refuse the users of what it holds: ``refused`` is
        (``job/x``, user) of each."""
        named = ", ".join(f"{ref} runs as {user!r}" for ref, user in refused[:5])
        named += ", ..." if len(refused) > 5 else ""
        return cls._with_step(
            f"{what + ': ' if what else ''}spec.runAs of namespace '{namespace}' would refuse what it holds ({named})",
            "delete those first (a Job's template cannot change; a Service's can), or keep allowing their users",
            "run-as", kind="Namespace", name=namespace, refused=[ref for ref, _ in refused])


class StoreError(BrokerError):
    """The store cannot be opened or is in use in a way that forbids the request."""

    @classmethod
    def missing(cls, path, why: str) -> "StoreError":
        """No store file at ``path``; ``why``: which part of the path is missing."""
        return cls._with_step(
            f"no store at {path}: {why}", "`brokerctl apply`, `sync`, `run` and `controller` create one; or pass "
            "--db PATH (or set BROKER_DB) to use an existing store", "create-store", sep=". ", path=str(path))

    @classmethod
    def cannot_open(cls, path, problem) -> "StoreError":
        return cls._with_step(f"cannot open store {path}: {problem}", "pass --db PATH or set BROKER_DB",
                              "choose-store", path=str(path))

    @classmethod
    def cannot_connect(cls, url: str, problem: str) -> "StoreError":
        """A PostgreSQL store that cannot be reached; ``url`` without its password."""
        return cls._with_step(f"cannot connect to store {url}: {problem}",
                              "check that the PostgreSQL server is running and accepts this user and database, "
                              "or pass --db URL (or set BROKER_DB) to use another store", "check-database", path=url)

    @classmethod
    def moved(cls, path, to: str) -> "StoreError":
        """A store copied to ``to`` by ``brokerctl store migrate``: its containers are that store's now."""
        return cls._with_step(f"store {path} was moved to {to} by `brokerctl store migrate`",
                              f"run the controller there (`brokerctl --db {to} controller`)", "use-moved-store",
                              path=str(path), to=to)


class HostError(BrokerError):
    """A Docker host could not be reached or refused a request."""
