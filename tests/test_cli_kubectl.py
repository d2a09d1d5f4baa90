"""What kubectl users reach for, without Docker: --version, shell completion, listings (several kinds,
short names, `get all`, -o name, --sort-by, --limit, task filters), delete by selector or --all, edit,
the schema headers of the shipped manifests."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from helpers import cli

from reconciler.store import Store

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "broker.db"
    Store(path).close()
    return path


def test_version_prints_the_release_of_the_package(db):
    """`--version` prints the version pyproject.toml releases and runs no command."""
    release = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    done = cli(db, "--version", check=True)
    assert done.stdout == f"brokerctl {release}\n"


# -- completion ------------------------------------------------------------------------------------


def _completion_env(**extra) -> dict:
    """The environment a completion script gives brokerctl: the venv's brokerctl on PATH."""
    import os
    import sys

    return {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", **extra}


def test_bash_completion_script_completes_commands_and_options_in_a_real_bash(db):
    """`source <(brokerctl completion bash)` in bash: the function it registers completes a command
    name and an option of `get`, by asking brokerctl itself."""
    import subprocess

    script = ('source <(brokerctl completion bash)\n'
              'complete -p brokerctl\n'
              'COMP_WORDS=(brokerctl ge); COMP_CWORD=1; _brokerctl_completion brokerctl; echo "1:${COMPREPLY[*]}"\n'
              'COMP_WORDS=(brokerctl get --sel); COMP_CWORD=2; _brokerctl_completion brokerctl; '
              'echo "2:${COMPREPLY[*]}"\n')
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=_completion_env(), timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "complete -o default -F _brokerctl_completion brokerctl"
    assert "1:get" in lines and "2:--selector" in lines


@pytest.mark.parametrize("shell, request_env, expected", [
    ("zsh", {"_TYPER_COMPLETE_ARGS": "brokerctl desc"}, '"describe":'),
    ("fish", {"_TYPER_COMPLETE_ARGS": "brokerctl desc", "_TYPER_COMPLETE_FISH_ACTION": "get-args"}, "describe\t"),
])
def test_zsh_and_fish_scripts_ask_brokerctl_and_get_answers_in_their_format(db, shell, request_env, expected):
    """The zsh and fish scripts call brokerctl with _BROKERCTL_COMPLETE=complete_SHELL; such a call is
    answered (a command name with its help) in the format that script reads."""
    import subprocess
    import sys

    script = cli(db, "completion", shell, check=True).stdout
    assert f"_BROKERCTL_COMPLETE=complete_{shell}" in script and "brokerctl" in script
    done = subprocess.run([sys.executable, "-m", "reconciler"], capture_output=True, text=True, timeout=60,
                          env=_completion_env(_BROKERCTL_COMPLETE=f"complete_{shell}", **request_env))
    assert done.returncode == 0, done.stderr
    assert expected in done.stdout


def test_completion_for_an_unknown_shell_is_a_usage_error(db):
    done = cli(db, "completion", "tcsh")
    assert done.returncode == 2 and "use bash, zsh or fish" in done.stderr and not done.stdout
