"""The one exception family of brokerctl.

Every error a user can cause is a ``BrokerError`` whose message names the object and the fix.
The CLI catches ``BrokerError`` in one place, prints it on stderr and exits with ``exit_code``.
Raised by manifests, store, dockerhost and controller.
"""

from __future__ import annotations


class BrokerError(Exception):
    """Base error; ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class ManifestError(BrokerError):
    """One or more manifest documents failed to parse or validate (nothing was written)."""

    exit_code = 2

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class UsageError(BrokerError):
    """Bad flags or arguments on the command line."""

    exit_code = 2


class NotFound(BrokerError):
    """A resource or task that the user named does not exist."""


class Conflict(BrokerError):
    """The request clashes with the store's state (e.g. a resource still being deleted)."""


class StoreError(BrokerError):
    """The store cannot be opened or is in use in a way that forbids the request."""


class HostError(BrokerError):
    """A Docker host could not be reached or refused a request."""
