"""brokerctl: a declarative container broker for plain Docker hosts.

The package is named ``reconciler``; the console script is ``brokerctl`` (``reconciler.cli.entry``).
Packages by layer, each importing only those below it: ``cli`` (front end) → ``ops`` (the user's
verbs) → ``runtime`` (the controller process) → ``engine`` (pure decisions) → ``store`` (SQL) and
``docker`` (the Docker API) → ``views``, ``records``, ``spec`` (manifest models), ``kinds``,
``errors``. docs/architecture.md has the map.
"""

__version__ = "0.1.0"
