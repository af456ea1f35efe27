"""``python -m batchflow`` runs the CLI."""

from batchflow.cli import main

main()
