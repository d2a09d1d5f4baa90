"""The ``brokerctl`` console script and ``python -m reconciler``: a remote `apply` answered at once,
every other command line handed to ``app.main``.

`brokerctl apply -f FILE` against a server is what programs and people run most, and it is judged
against `docker run -d`, a Go binary done in about 0.1 s. Through the full command line it would
start typer and click (25-45 ms of CPU) and ``http.client`` (15 ms) to send one request. So a command
line that is exactly a remote apply (the global ``--server/--token/--ca/--context``, then ``apply``
with ``-f/--filename`` and ``-n/--namespace`` alone) is sent from here: the files read and sent as
every remote command sends them, in one request (``client.oneshot.apply``), the results printed as the
`apply` command prints them (``show_applied``). Nothing is decided differently: where the command goes
is ``client.config.choose``'s, what is valid is the server's, and what an error says is
``client.http``'s (imported only then). Any other option (``--wait``, ``--help``, ``--db``, a typo), a
local store, or a problem before the request is sent (no token, a bad URL or context) goes to
``app.main``, which parses, words and exits as it always does.
"""

from __future__ import annotations

import os
import sys
from typing import NamedTuple, NoReturn

from ..errors import BrokerError

GLOBAL_OPTIONS = {"--server": "server", "--token": "token", "--ca": "ca", "--context": "context"}
APPLY_OPTIONS = {"-f": "files", "--filename": "files", "-n": "namespace", "--namespace": "namespace"}


class RemoteApply(NamedTuple):
    """A command line that is a plain remote `apply`: its options, as click would have read them."""

    server: str | None
    token: str | None
    ca: str | None
    context: str | None
    files: list[str]
    namespace: str


def main() -> None:
    try:
        wanted = remote_apply(sys.argv[1:])
        if wanted is not None and _applied(wanted):
            return
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:  # `brokerctl apply ... | head`: the reader left; not an error of ours
        sys.stderr.close()
        sys.exit(0)
    from .app import main as full

    full()


def remote_apply(argv: list[str]) -> RemoteApply | None:
    """The options of ``argv`` when it is a plain `apply` (see the module's doc), else None."""
    if "apply" not in argv:
        return None
    at = argv.index("apply")
    options, files = _options(argv[:at], GLOBAL_OPTIONS), _options(argv[at + 1:], APPLY_OPTIONS)
    if options is None or files is None or not files.get("files"):
        return None
    namespace = files.get("namespace", [os.environ.get("BROKER_NAMESPACE") or "default"])[-1]
    return RemoteApply(*(options.get(name, [None])[-1] for name in ("server", "token", "ca", "context")),
                       files["files"], namespace)


def _options(words: list[str], known: dict[str, str]) -> dict[str, list[str]] | None:
    """``known`` options with their values (``--opt V``, ``--opt=V``, ``-o V``, ``-oV``), each name's
    values in order; None when anything else is there (a flag, an argument, another option)."""
    found: dict[str, list[str]] = {}
    rest = iter(words)
    for word in rest:
        if word.startswith("--") and "=" in word:
            option, value = word.split("=", 1)
        elif word in known:
            option, value = word, next(rest, None)
        elif len(word) > 2 and word[:2] in known:  # -fFILE (no long option is two characters)
            option, value = word[:2], word[2:]
        else:
            return None
        if option not in known or value is None or (value.startswith("-") and value != "-"):
            return None
        found.setdefault(known[option], []).append(value)
    return found


def _applied(wanted: RemoteApply) -> bool:
    """Send the apply when ``wanted`` goes to a server and print what it answered (False: leave the
    command line to ``app.main``); an error the server or the network gave is reported and exits."""
    from ..client.config import choose
    from ..errors import UsageError

    try:
        target = choose(None, wanted.server, wanted.token, wanted.ca, wanted.context)
        if wanted.namespace != "default":
            from ..ops.refs import namespace_name

            namespace_name(wanted.namespace)
    except UsageError:  # app.main says it, with its usual wording and exit code
        return False
    if target is None:  # the local store
        return False
    import json

    from ..client.oneshot import Unanswered, apply

    try:
        answer = apply(target, wanted.files, sys.stdin, wanted.namespace)
    except Unanswered as exc:
        report(_connection(target).unreachable(exc.reason))
    try:
        applied = json.loads(answer.body) if answer.status < 400 else None
        fine = applied is not None and all({"ref", "outcome"} <= item.keys() for item in applied["results"])
    except (ValueError, KeyError, TypeError, AttributeError):  # not an apply's answer
        fine = False
    if not fine:  # the server's error, or an answer no brokerctl server gives, as the full client says it
        report(_connection(target).error(answer.status, answer.body))
    show_applied(applied)
    return True


def _connection(target):
    from ..client.http import Connection

    return Connection(target.server, target.token, target.ca, target.origin)


def show_applied(applied: dict) -> None:
    """An apply's answer as the `apply` command prints it: ``job/x created`` a line, then the warnings."""
    sys.stdout.write("".join(f"{item['ref']} {item['outcome']}\n" for item in applied["results"]))
    sys.stdout.flush()
    if applied.get("warnings"):
        from .common import warn

        for text in applied["warnings"]:
            warn(text)


def report(exc: BrokerError) -> NoReturn:
    """A ``BrokerError`` as the command line reports one: a red ``error:`` line on stderr, its exit code."""
    import typer

    typer.secho(f"error: {exc}", fg="red", err=True)
    sys.exit(exc.exit_code)
