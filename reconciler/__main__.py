"""``python -m reconciler`` runs the brokerctl CLI (used by tests and scripts)."""

from .cli.entry import main

main()
