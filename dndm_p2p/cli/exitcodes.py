"""The exit statuses of the ``dndm`` command."""

from __future__ import annotations

__all__ = ["EXIT_OK", "EXIT_PERMANENT", "EXIT_TRANSIENT"]

#: Exit status of a command that did its job (or was stopped by SIGINT/SIGTERM).
EXIT_OK = 0
#: Exit status of a usage error or a permanent error: running it again cannot succeed.
EXIT_PERMANENT = 2
#: Exit status of a transient error: running it again later may succeed.
EXIT_TRANSIENT = 3
