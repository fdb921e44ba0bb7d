"""Small-cell suppression (CMS cell-size policy): counts 1..threshold are never shown."""

from __future__ import annotations

__all__ = ["suppress_count", "is_small"]


def is_small(n: int | None, threshold: int) -> bool:
    """True when ``n`` is a count that must not be shown (1 <= n <= threshold); 0 is allowed."""
    return n is not None and threshold > 0 and 1 <= int(n) <= threshold


def suppress_count(n: int | None, threshold: int) -> int | str | None:
    """Return ``n`` itself, or the string ``"<{threshold+1}"`` when it is a small cell.

    Examples
    --------
    >>> suppress_count(0, 10), suppress_count(7, 10), suppress_count(42, 10)
    (0, '<11', 42)
    """
    if n is None:
        return None
    return f"<{threshold + 1}" if is_small(n, threshold) else int(n)
