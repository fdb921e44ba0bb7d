"""Write outputs atomically and deterministically: JSON and Parquet.

Every file ketastats writes under ``data/processed/``, ``reports/`` or a recovery folder goes
through here or :mod:`ketastats.tablecsv`: written to a temporary file beside the target and
renamed into place (:mod:`ketastats._atomic`), so a failed job leaves nothing half-written;
the same object gives the same bytes.

Examples
--------
>>> import math
>>> plain_json({"a": (1, 2.5), "b": math.nan})
{'a': [1, 2.5], 'b': None}
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ._atomic import atomic_path, write_text_atomic

__all__ = ["plain_json", "write_json", "read_json", "write_parquet"]


def plain_json(obj: Any) -> Any:
    """Plain JSON types; NaN and infinities become null."""
    if isinstance(obj, Mapping):
        return {str(k): plain_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain_json(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return plain_json(obj.tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically and deterministically."""
    write_text_atomic(path, json.dumps(plain_json(obj), indent=2, allow_nan=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """The JSON file at ``path``."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_parquet(df: Any, path: str | os.PathLike) -> None:
    """Write a data frame as Parquet atomically (byte-identical for identical frames)."""
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False, engine="pyarrow", compression="zstd")
