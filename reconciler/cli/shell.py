"""``brokerctl completion bash|zsh|fish``: the shell's completion script, and the answers to it.

Registered by ``app``. The scripts are typer's own: each calls ``brokerctl`` again with
``_BROKERCTL_COMPLETE=complete_SHELL`` and the words typed so far, and ``app.main`` hands such a
call to ``answer_completion`` before any command runs. Both ends use typer's completion classes,
so the script and the answers always speak the same format. Nothing here is imported unless
completion is asked for.
"""

from __future__ import annotations

import os

import typer

from ..errors import UsageError

PROG = "brokerctl"
COMPLETE_VAR = "_BROKERCTL_COMPLETE"  # what click and typer derive from the program name
SHELLS = ("bash", "zsh", "fish")


def completion(shell: str = typer.Argument(..., help="bash, zsh or fish", metavar="SHELL")) -> None:
    """Print the shell's completion script: `source <(brokerctl completion bash)`, in ~/.zshrc
    `source <(brokerctl completion zsh)`, or `brokerctl completion fish | source`."""
    if shell not in SHELLS:
        raise UsageError(f"completion {shell!r}: no script for that shell; use bash, zsh or fish")
    from typer._completion_shared import get_completion_script

    typer.echo(get_completion_script(prog_name=PROG, complete_var=COMPLETE_VAR, shell=shell))


def completion_requested() -> bool:
    """Is this process a completion script asking what comes next?"""
    return bool(os.environ.get(COMPLETE_VAR))


def register_completion_classes() -> None:
    """Make click answer in the format of typer's scripts (``complete_bash``...): the app is built
    without typer's ``--install-completion`` options, which would otherwise register them."""
    from typer._completion_classes import completion_init

    completion_init()
