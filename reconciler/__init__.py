"""brokerctl: a declarative container broker for plain Docker hosts.

The package is named ``reconciler``; the console script is ``brokerctl`` (``reconciler.cli``).
Modules: models (manifest types), manifests (YAML loading), store (SQLite), dockerhost (the
Docker API), scheduler and plan (pure decisions), act (side effects), controller (the loop),
render and cli (the user's view).
"""

__version__ = "0.1.0"
