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
