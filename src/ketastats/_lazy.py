"""Lazy attributes for a package (PEP 562): heavy submodules load on first use.

``ketastats.models`` and ``ketastats.report`` name many functions whose modules import
scipy, statsmodels or matplotlib; a Snakefile or a CLI command that needs one of them
should not pay for the others.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["attach"]


def attach(package: str, names: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``: ``names`` maps an attribute to the
    submodule (relative to ``package``) that defines it; the value is cached on first use.

    Examples
    --------
    >>> getattr_, dir_ = attach("ketastats.models", {"fit_mixed": "engines.lmm"})
    >>> getattr_("fit_mixed").__name__
    'fit_mixed'
    """
    module = sys.modules[package]

    def __getattr__(name: str) -> Any:
        if name in names:
            value = getattr(importlib.import_module(f".{names[name]}", package), name)
            setattr(module, name, value)
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(vars(module)) | set(names))

    return __getattr__, __dir__
