"""The ``batchflow`` command line: a thin click front-end over the library.

Commands are imported lazily so ``batchflow --help`` stays fast (no server, cloud SDK or
image library is imported until a command needs it). Every user-facing failure is a
:class:`batchflow.errors.BatchflowError`, shown as one line with its exit code; a traceback
only with ``--debug``.
"""

from __future__ import annotations

from batchflow.cli._app import main

__all__ = ["main"]
