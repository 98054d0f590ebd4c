"""The command line's own error for a user mistake.

A bad argument, option, endpoint or environment setting is reported as one line naming
the option or variable and the problem (never a secret value), with exit code 2, before
anything is changed. Refusals that depend on the secret's state are DriverError (exit 1).
"""

from __future__ import annotations


class UsageError(ValueError):
    """A bad argument, option, endpoint or environment setting: exit code 2."""
