"""Exception and warning classes of ketastats.

Every error ketastats raises on purpose derives from :class:`KetastatsError`, so that
callers (the CLI, Snakemake rules, notebooks) can tell a problem with the user's data or
configuration apart from a bug. Messages are written for people: they say what is wrong,
where, and what to do.
"""

from __future__ import annotations

__all__ = [
    "KetastatsError",
    "KetastatsWarning",
    "ConfigError",
    "DataValidationError",
    "IdentifierError",
    "ModelError",
    "ConvergenceWarning",
]


class KetastatsError(Exception):
    """Base class of all errors raised by ketastats on purpose."""


class KetastatsWarning(UserWarning):
    """Base class of all warnings issued by ketastats."""


class ConfigError(KetastatsError):
    """The workflow configuration is invalid (names the key and the fix)."""


class DataValidationError(KetastatsError):
    """Input data break the data contract.

    Carries the full table of problems in ``problems`` (a :class:`pandas.DataFrame` with
    columns ``file, row, column, value, rule, severity, message``), not just the first.
    """

    def __init__(self, message: str, problems=None):
        super().__init__(message)
        self.problems = problems


class IdentifierError(DataValidationError):
    """Input data contain something that looks like a direct identifier (HIPAA Safe Harbor)."""


class ModelError(KetastatsError):
    """A model cannot be fitted as specified (bad formula, unknown column, empty data)."""


class ConvergenceWarning(KetastatsWarning):
    """A model fit did not converge or ended at a singular (boundary) solution."""
